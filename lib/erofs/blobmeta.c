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

static int alloc_table(struct digest_table *t, uint64_t count)
{
	t->d = calloc(MAX(count, 1), sizeof(*t->d));
	t->off = calloc(count + 1, sizeof(*t->off));
	if (t->d && t->off)
		return 0;
	digest_table_release(t);
	return -ENOMEM;
}

static int new_table(struct digest_table *t, const char *magic, uint64_t blob_size,
		     unsigned range_bits, uint64_t count)
{
	memset(t, 0, sizeof(*t));
	if (range_bits < ANOLE_RANGE_BITS_MIN || range_bits > ANOLE_RANGE_BITS_MAX)
		return -EINVAL;
	memcpy(t->head.magic, magic, 8);
	t->head.range_bits = range_bits;
	t->head.blob_size = blob_size;
	t->head.count = count;
	return alloc_table(t, count);
}

/* Version 1: every range 1 << range_bits bytes but the last. */
static void fixed_ranges(struct digest_table *t)
{
	for (uint64_t i = 0; i < t->head.count; i++)
		t->off[i] = i << t->head.range_bits;
	t->off[t->head.count] = t->head.blob_size;
	t->max_len = MIN(t->head.blob_size, 1ull << t->head.range_bits);
}

int digest_table_init(struct digest_table *t, uint64_t blob_size, unsigned range_bits)
{
	uint64_t count = range_bits < 64 ? DIV_ROUND_UP(blob_size, 1ull << range_bits) : 0;
	int r = new_table(t, ANOLE_DIGEST_TABLE_MAGIC, blob_size, range_bits, count);
	if (r >= 0)
		fixed_ranges(t);
	return r;
}

int digest_table_init_cuts(struct digest_table *t, uint64_t blob_size, unsigned range_bits,
			   const uint64_t *starts, uint64_t count)
{
	int r = new_table(t, ANOLE_DIGEST_TABLE_MAGIC_V2, blob_size, range_bits, count);
	if (r < 0)
		return r;
	if (!count && blob_size) {
		digest_table_release(t);
		return -EINVAL;
	}
	memcpy(t->off, starts, count * sizeof(*starts));
	t->off[count] = blob_size;
	for (uint64_t i = 0; i < count; i++) {
		uint64_t len = t->off[i + 1] - t->off[i];
		if (t->off[i + 1] <= t->off[i] || len > ANOLE_RANGE_MAX || (!i && t->off[0])) {
			digest_table_release(t);
			return -EINVAL;
		}
		t->max_len = MAX(t->max_len, len);
	}
	return 0;
}

uint64_t digest_table_range_at(const struct digest_table *t, uint64_t off)
{
	uint64_t lo = 0, hi = t->head.count;
	while (hi - lo > 1) { /* off[lo] <= off < off[hi] */
		uint64_t mid = lo + (hi - lo) / 2;
		if (t->off[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

void digest_table_release(struct digest_table *t)
{
	free(t->d);
	free(t->off);
	t->d = NULL;
	t->off = NULL;
}

static bool is_v2(const struct anole_digest_table_head *h)
{
	return !memcmp(h->magic, ANOLE_DIGEST_TABLE_MAGIC_V2, 8);
}

int digest_table_encode(const struct digest_table *t, struct strbuf *out)
{
	if (strbuf_add(out, &t->head, sizeof(t->head)) < 0 ||
	    strbuf_add(out, t->d, t->head.count * sizeof(*t->d)) < 0)
		return -ENOMEM;
	for (uint64_t i = 0; is_v2(&t->head) && i < t->head.count; i++) {
		uint32_t len = (uint32_t)digest_table_range_len(t, i);
		if (strbuf_add(out, &len, sizeof(len)) < 0)
			return -ENOMEM;
	}
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
	bool v2 = is_v2(&h);
	if (!v2 && memcmp(h.magic, ANOLE_DIGEST_TABLE_MAGIC, 8))
		return anole_err(err, EBADMSG, "%s: not a digest table", what);
	/* bounded: readers size buffers and shift by it */
	if (h.range_bits < ANOLE_RANGE_BITS_MIN || h.range_bits > ANOLE_RANGE_BITS_MAX)
		return anole_err(err, EBADMSG, "%s: digest table ranges of 2^%u bytes (not 4 KiB to 1 MiB)",
				 what, h.range_bits);
	/* v2: count comes from the length, so nothing below can wrap */
	size_t entry = v2 ? sizeof(struct digest) + sizeof(uint32_t) : sizeof(struct digest);
	uint64_t count = v2 ? (len - sizeof(h)) / entry : DIV_ROUND_UP(blob_size, 1ull << h.range_bits);
	if (h.blob_size != blob_size || h.count != count || (v2 && count > blob_size) ||
	    len != sizeof(h) + count * entry)
		return anole_err(err, EBADMSG,
				 "%s: digest table describes %llu bytes in %llu ranges, the blob "
				 "has %llu",
				 what, (unsigned long long)h.blob_size,
				 (unsigned long long)h.count, (unsigned long long)blob_size);
	t->head = h;
	if (alloc_table(t, count) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	const char *p = (const char *)data + sizeof(h);
	memcpy(t->d, p, count * sizeof(*t->d));
	if (!v2) {
		fixed_ranges(t);
		return 0;
	}
	p += count * sizeof(*t->d);
	uint64_t at = 0;
	for (uint64_t i = 0; i < count; i++) {
		uint32_t n;
		memcpy(&n, p + i * sizeof(n), sizeof(n));
		/* whole 4 KiB blocks but the last: a table of tiny ranges
		 * would make every read-ahead a walk over millions */
		if (!n || n > ANOLE_RANGE_MAX || n > blob_size - at ||
		    (n % 4096 && i + 1 < count)) {
			digest_table_release(t);
			return anole_err(err, EBADMSG, "%s: digest table range %llu of %u bytes "
					 "(ranges hold 4 KiB blocks up to 1 MiB, inside the blob)", what,
					 (unsigned long long)i, n);
		}
		t->off[i] = at;
		at += n;
		t->max_len = MAX(t->max_len, n);
	}
	t->off[count] = at;
	if (at != blob_size) {
		digest_table_release(t);
		return anole_err(err, EBADMSG, "%s: digest table ranges hold %llu bytes, the blob "
				 "has %llu", what, (unsigned long long)at, (unsigned long long)blob_size);
	}
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
