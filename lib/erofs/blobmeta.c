/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Digest tables and chunk indexes: small, fixed-layout files that describe
 * a data blob. Both are stored by their SHA-256 like the blob itself, and
 * both are checked field by field when read, as they come from registries.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/blobmeta.h"

#define MAX_CHUNK_INDEX (1ull << 31)

int digest_table_init(struct digest_table *t, uint64_t blob_size, unsigned range_bits)
{
	memset(t, 0, sizeof(*t));
	if (range_bits < ANOLE_RANGE_BITS_MIN || range_bits > ANOLE_RANGE_BITS_MAX)
		return -EINVAL;
	memcpy(t->head.magic, ANOLE_DIGEST_TABLE_MAGIC, 8);
	t->head.range_bits = range_bits;
	t->head.blob_size = blob_size;
	t->head.count = DIV_ROUND_UP(blob_size, 1ull << range_bits);
	t->d = calloc(MAX(t->head.count, 1), sizeof(*t->d));
	return t->d ? 0 : -ENOMEM;
}

void digest_table_release(struct digest_table *t)
{
	free(t->d);
	t->d = NULL;
}

int digest_table_encode(const struct digest_table *t, struct strbuf *out)
{
	if (strbuf_add(out, &t->head, sizeof(t->head)) < 0 ||
	    strbuf_add(out, t->d, t->head.count * sizeof(*t->d)) < 0)
		return -ENOMEM;
	return 0;
}

int digest_table_decode(const void *data, size_t len, uint64_t blob_size, struct digest_table *t,
			struct anole_error *err, const char *what)
{
	memset(t, 0, sizeof(*t));
	struct anole_digest_table_head h;
	if (len < sizeof(h))
		return anole_err(err, EBADMSG, "%s: digest table of %zu bytes is too short", what,
				 len);
	memcpy(&h, data, sizeof(h));
	if (memcmp(h.magic, ANOLE_DIGEST_TABLE_MAGIC, 8))
		return anole_err(err, EBADMSG, "%s: not a digest table", what);
	/* bounded: readers size buffers and shift by it */
	if (h.range_bits < ANOLE_RANGE_BITS_MIN || h.range_bits > ANOLE_RANGE_BITS_MAX)
		return anole_err(err, EBADMSG, "%s: digest table ranges of 2^%u bytes (not 4 KiB to 1 MiB)",
				 what, h.range_bits);
	uint64_t count = DIV_ROUND_UP(blob_size, 1ull << h.range_bits);
	if (h.blob_size != blob_size || h.count != count ||
	    len != sizeof(h) + count * sizeof(struct digest))
		return anole_err(err, EBADMSG,
				 "%s: digest table describes %llu bytes in %llu ranges, the blob "
				 "has %llu",
				 what, (unsigned long long)h.blob_size,
				 (unsigned long long)h.count, (unsigned long long)blob_size);
	t->head = h;
	t->d = malloc(MAX(count, 1) * sizeof(*t->d));
	if (!t->d)
		return anole_err(err, ENOMEM, "out of memory");
	memcpy(t->d, (const char *)data + sizeof(h), count * sizeof(*t->d));
	return 0;
}

void chunk_index_release(struct chunk_index *c)
{
	free(c->e);
	c->e = NULL;
}

int chunk_index_encode(const struct chunk_index *c, struct strbuf *out)
{
	if (strbuf_add(out, &c->head, sizeof(c->head)) < 0 ||
	    strbuf_add(out, c->e, c->head.count * sizeof(*c->e)) < 0)
		return -ENOMEM;
	return 0;
}

int chunk_index_load(const char *path, struct chunk_index *c, struct anole_error *err)
{
	memset(c, 0, sizeof(*c));
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	struct anole_chunk_index_head h;
	int r = (uint64_t)st.st_size >= sizeof(h) ? pread_full(fd, &h, sizeof(h), 0) : -EBADMSG;
	/* count is bounded before it is multiplied, so the size check cannot wrap */
	if (r < 0 || memcmp(h.magic, ANOLE_CHUNK_INDEX_MAGIC, 8) || h.blkszbits != 12 ||
	    (uint64_t)st.st_size > MAX_CHUNK_INDEX || h.count > MAX_CHUNK_INDEX / sizeof(*c->e) ||
	    (uint64_t)st.st_size != sizeof(h) + h.count * sizeof(*c->e) ||
	    h.pcluster < 4096 || h.pcluster > Z_EROFS_PCLUSTER_MAX_SIZE || h.pcluster % 4096 ||
	    h.blob_blocks > (1ull << 31))
		return anole_err(err, EBADMSG, "%s: not a chunk index of 4 KiB blocks", path);
	uint32_t max_blocks = h.pcluster / 4096;
	c->head = h;
	c->e = malloc(MAX(h.count, 1) * sizeof(*c->e));
	if (!c->e)
		return anole_err(err, ENOMEM, "out of memory");
	if ((r = pread_full(fd, c->e, h.count * sizeof(*c->e), sizeof(h))) < 0) {
		chunk_index_release(c);
		return anole_err(err, -r, "%s: %s", path, strerror(-r));
	}
	for (uint64_t i = 0; i < h.count; i++) {
		const struct anole_chunk_entry *e = &c->e[i];
		if (!e->nblocks || e->nblocks > max_blocks || (e->cblocks && e->cblocks != e->nblocks) ||
		    (uint64_t)e->blkaddr + e->nblocks > h.blob_blocks) {
			chunk_index_release(c);
			return anole_err(err, EBADMSG, "%s: entry %llu lies outside the blob", path,
					 (unsigned long long)i);
		}
	}
	return 0;
}
