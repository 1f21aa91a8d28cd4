/* SPDX-License-Identifier: Apache-2.0 */
/* anole_build(): pick the source for SOURCE from the table and build. */
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

static bool claims_layout(const char *source, const struct stat *st,
			  const struct anole_build_options *opts)
{
	(void)st;
	(void)opts;
	return !strncmp(source, "oci:", 4);
}

static bool claims_registry(const char *source, const struct stat *st,
			    const struct anole_build_options *opts)
{
	(void)st;
	(void)opts;
	return !strncmp(source, "docker://", 9);
}

/* stdin, any file not a directory, and whatever --layers=separate is given
 * (a layer is a tar) */
static bool claims_tar(const char *source, const struct stat *st,
		       const struct anole_build_options *opts)
{
	return !strcmp(source, "-") || opts->layers_separate || (st && !S_ISDIR(st->st_mode));
}

static bool claims_dir(const char *source, const struct stat *st,
		       const struct anole_build_options *opts)
{
	(void)source;
	(void)opts;
	return st && S_ISDIR(st->st_mode);
}

/* In the order they are asked: prefixes first, then what the file is. */
static const struct build_source sources[] = {
	{"OCI image layout", claims_layout, source_layout},
	{"registry image", claims_registry, source_registry},
	{"tar file", claims_tar, source_tar},
	{"directory", claims_dir, build_dir},
};

int anole_build(const char *source, const char *image, const struct anole_build_options *opts,
		struct anole_build_stats *stats, struct anole_error *err)
{
	static const struct anole_build_options defaults;
	if (!opts)
		opts = &defaults;
	struct stat st;
	bool local = stat(source, &st) == 0;
	int serr = errno;
	for (size_t i = 0; i < ARRAY_SIZE(sources); i++)
		if (sources[i].claims(source, local ? &st : NULL, opts))
			return sources[i].build(source, image, opts, stats, err);
	if (!local)
		return anole_err(err, serr, "%s: %s", source, strerror(serr));
	return anole_err(err, EINVAL, "%s: not a directory, tar file or image reference", source);
}
