/* SPDX-License-Identifier: Apache-2.0 */
/* anole_export(): an image's tree as a pax tar (placeholder). */
#include "anole/anole.h"
#include "util/util.h"

int anole_export(struct anole_image *img, const char *out, const struct anole_export_options *opts,
		 struct anole_error *err)
{
	(void)img;
	(void)out;
	(void)opts;
	return anole_err(err, ENOSYS, "export is not implemented yet");
}
