/* SPDX-License-Identifier: Apache-2.0 */
/* The digest table and chunk index of a data blob (anole/lazy_fs.h). */
#ifndef ANOLE_BLOBMETA_H
#define ANOLE_BLOBMETA_H

#include "anole/lazy_fs.h"
#include "util/digest.h"
#include "util/util.h"

/* Digests of a blob's ranges, filled as a blob is read. */
struct digest_table {
	struct anole_digest_table_head head;
	struct digest *d;
	uint64_t *off;    /* count + 1 entries: range i is [off[i], off[i + 1]) */
	uint64_t max_len; /* the longest range */
};
/* Fixed ranges of 1 << range_bits bytes (version 1). */
int digest_table_init(struct digest_table *t, uint64_t blob_size, unsigned range_bits);
/* Ranges starting at @starts (version 2): starts[0] is 0, they increase,
 * and no range is longer than ANOLE_RANGE_MAX. */
int digest_table_init_cuts(struct digest_table *t, uint64_t blob_size, unsigned range_bits,
			   const uint64_t *starts, uint64_t count);
/* The range holding byte @off (< blob_size). */
uint64_t digest_table_range_at(const struct digest_table *t, uint64_t off);
static inline uint64_t digest_table_range_len(const struct digest_table *t, uint64_t i)
{
	return t->off[i + 1] - t->off[i];
}
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
