/* SPDX-License-Identifier: Apache-2.0 */
/* anole_build(): pick the source for SOURCE and drive the image writer. */
#include <sys/stat.h>

#include "erofs/tree.h"
#include "source/source.h"

static int build_dir(const char *source, const char *image, const struct anole_build_options *opts,
		     struct anole_build_stats *stats, struct anole_error *err)
{
	struct tree_writer *tw;
	int r = tw_new(&tw, image, opts, err);
	if (r < 0)
		return r;
	r = source_dir(tw, source, err);
	if (r >= 0)
		r = tw_finish(tw, stats);
	tw_free(tw);
	return r;
}

int anole_build(const char *source, const char *image, const struct anole_build_options *opts,
		struct anole_build_stats *stats, struct anole_error *err)
{
	static const struct anole_build_options defaults;
	if (!opts)
		opts = &defaults;
	if (source_is_image_ref(source) || opts->layers_separate || !strcmp(source, "-"))
		return source_image(source, image, opts, stats, err);
	struct stat st;
	if (stat(source, &st) < 0)
		return anole_err(err, errno, "%s: %s", source, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return build_dir(source, image, opts, stats, err);
	return source_image(source, image, opts, stats, err);
}
