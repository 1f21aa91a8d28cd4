/* SPDX-License-Identifier: Apache-2.0 */
/* The digest table and chunk index of a data blob (anole/lazy_fs.h). */
#ifndef ANOLE_BLOBMETA_H
#define ANOLE_BLOBMETA_H

#include "anole/lazy_fs.h"
#include "util/digest.h"
#include "util/util.h"

/* Digests of 1 << range_bits byte ranges, filled as a blob is read. */
struct digest_table {
	struct anole_digest_table_head head;
	struct digest *d;
};
int digest_table_init(struct digest_table *t, uint64_t blob_size, unsigned range_bits);
void digest_table_release(struct digest_table *t);
/* Serialise to a new buffer. */
int digest_table_encode(const struct digest_table *t, struct strbuf *out);
/* Parse and check a table for a blob of @blob_size bytes. */
int digest_table_decode(const void *data, size_t len, uint64_t blob_size, struct digest_table *t,
			struct anole_error *err, const char *what);

struct chunk_index {
	struct anole_chunk_index_head head;
	struct anole_chunk_entry *e;
};
void chunk_index_release(struct chunk_index *c);
int chunk_index_encode(const struct chunk_index *c, struct strbuf *out);
/* Load and check a chunk index (every entry inside the blob). */
int chunk_index_load(const char *path, struct chunk_index *c, struct anole_error *err);

#endif
