/* SPDX-License-Identifier: Apache-2.0 */
/* Between the lazy image's files: manifest.c reads a lazy image's
 * manifest and config, pull.c copies blobs verified, convert.c builds and
 * pushes an image. docs/FORMAT.md ("Lazy images") is the specification. */
#ifndef ANOLE_LAZY_INT_H
#define ANOLE_LAZY_INT_H

#include "lazy/lazy.h"
#include "oci/oci.h"

#define MAX_SMALL (256ull << 20) /* digest tables, chunk indexes, configs */

/* Manifest and config of the image @s names (manifest.c). */
int lazy_read(struct store *s, bool with_config, struct strbuf *body,
	      struct anole_lazy_info **out, struct anole_error *err);
/* Fetch blob @digest into layout @dst unless there, checked against
 * @table (when given) and its digest; *fetched tells which (pull.c). */
int lazy_ensure_local(struct store *src, struct store *dst, const char *digest,
		      uint64_t size, const struct digest_table *table, bool *fetched,
		      struct anole_error *err);

#endif
