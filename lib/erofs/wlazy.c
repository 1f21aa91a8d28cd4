/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's separate data (--separate-data, convert): the data blob
 * beside the image, the base blobs it may point into, the device table,
 * and the blob's digest table and chunk index (anole/lazy_fs.h).
 */
#include "anole/erofs_fs.h"
#include "erofs/writer.h"
#include "erofs/blobmeta.h"
#include "erofs/zpipe.h"

static char *blob_dir(const struct tree_writer *tw)
{
	const char *slash = strrchr(tw->image_path, '/');
	char *d = NULL;
	if (asprintf(&d, "%.*s%sblobs/sha256", slash ? (int)(slash - tw->image_path) : 0,
		     tw->image_path, slash ? "/" : "") < 0)
		return NULL;
	return d;
}

int tw_open_blob(struct tree_writer *tw)
{
	_cleanup_free_ char *dir = blob_dir(tw);
	_cleanup_free_ char *probe = NULL;
	if (!dir || asprintf(&probe, "%s/x", dir) < 0)
		return anole_err(tw->err, ENOMEM, "out of memory");
	int r = mkdir_parents(dir, 0755);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: %s", dir, strerror(-r));
	r = outfile_open(&tw->blob, probe);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: cannot create the data blob: %s", dir,
				 strerror(-r));
	tw->data_fd = tw->blob.fd;
	tw->data_base = DATA_DEVICE_BASE;
	tw->next_blk = DATA_DEVICE_BASE;
	return 0;
}

/* Offer every extent of the base blobs to the pipeline's dedupe map. The
 * bases take the unified addresses from DATA_DEVICE_BASE up, in order; the
 * image's own blob comes after them. */
int tw_load_bases(struct tree_writer *tw)
{
	if (!tw->opts.separate_data || !tw->zp || !tw->opts.dedupe)
		return anole_err(tw->err, EINVAL,
				 "base blobs need separate data, compression and dedupe");
	if (tw->opts.nbases > 64)
		return anole_err(tw->err, E2BIG, "%zu base blobs: at most 64", tw->opts.nbases);
	tw->bases = calloc(tw->opts.nbases, sizeof(*tw->bases));
	if (!tw->bases)
		return anole_err(tw->err, ENOMEM, "out of memory");
	uint64_t uni = DATA_DEVICE_BASE;
	for (size_t i = 0; i < tw->opts.nbases; i++) {
		const struct anole_base_blob *b = &tw->opts.bases[i];
		struct wbase *w = &tw->bases[tw->nbases++];
		if (digest_parse(b->digest, &w->d) < 0)
			return anole_err(tw->err, EINVAL, "base blob '%s': not a sha256 digest",
					 b->digest);
		struct chunk_index ci;
		int r = chunk_index_load(b->chunks_path, &ci, tw->err);
		if (r < 0)
			return r;
		if (b->size && b->size != ci.head.blob_blocks << 12) {
			chunk_index_release(&ci);
			return anole_err(tw->err, EBADMSG,
					 "%s: chunk index describes %llu blocks, blob %s has %llu bytes",
					 b->chunks_path, (unsigned long long)ci.head.blob_blocks,
					 b->digest, (unsigned long long)b->size);
		}
		w->uni = uni;
		w->blocks = ci.head.blob_blocks;
		for (uint64_t k = 0; k < ci.head.count && r >= 0; k++) {
			const struct anole_chunk_entry *e = &ci.e[k];
			struct digest key;
			memcpy(key.b, e->key, sizeof(key.b));
			r = zpipe_preload(tw->zp, &key,
					  zpipe_where(uni + e->blkaddr, e->cblocks, e->nblocks));
		}
		chunk_index_release(&ci);
		if (r < 0)
			return anole_err(tw->err, -r, "out of memory");
		uni += w->blocks;
		if (uni > (1ull << 31))
			return anole_err(tw->err, EFBIG, "base blobs exceed 2^31 blocks");
	}
	tw->data_base = tw->next_blk = uni;
	return 0;
}

void tw_note_reuse(struct tree_writer *tw, uint64_t blk, uint64_t len)
{
	for (size_t i = 0; i < tw->nbases; i++) {
		struct wbase *w = &tw->bases[i];
		if (blk >= w->uni && blk < w->uni + w->blocks) {
			w->used = true;
			w->reused += len;
			return;
		}
	}
}

static int cmp_chunk_key(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

struct chunk_collect {
	struct tree_writer *tw;
	struct anole_chunk_entry *e;
	size_t n;
};

static int collect_chunk(void *ctx, const struct digest *d, uint64_t where)
{
	struct chunk_collect *c = ctx;
	uint64_t blk = ZPIPE_WHERE_BLK(where);
	if (blk < c->tw->data_base)
		return 0; /* in a base blob: that blob's index lists it */
	struct anole_chunk_entry *e = &c->e[c->n++];
	memcpy(e->key, d->b, sizeof(e->key));
	e->blkaddr = (uint32_t)(blk - c->tw->data_base);
	e->cblocks = ZPIPE_WHERE_CBLOCKS(where);
	e->nblocks = ZPIPE_WHERE_NBLOCKS(where);
	return 0;
}

/* The extents stored in the blob (none without compression). */
static int collect_extents(struct tree_writer *tw, struct chunk_collect *c)
{
	*c = (struct chunk_collect){.tw = tw};
	const struct digest_map *seen = tw->zp ? zpipe_seen(tw->zp) : NULL;
	if (!seen)
		return 0;
	c->e = calloc(MAX(digest_map_count(seen), (size_t)1), sizeof(*c->e));
	if (!c->e)
		return anole_err(tw->err, ENOMEM, "out of memory");
	digest_map_foreach(seen, collect_chunk, c);
	return 0;
}

/* Takes @c's entries: the index later images reuse extents by. */
static int make_chunk_index(struct tree_writer *tw, uint64_t blocks, struct chunk_collect *c)
{
	struct chunk_index ci = {0};
	memcpy(ci.head.magic, ANOLE_CHUNK_INDEX_MAGIC, 8);
	ci.head.blkszbits = tw->blkbits;
	ci.head.algorithm = codec_erofs_alg(tw->zspec.kind);
	ci.head.pcluster = tw->pcluster;
	ci.head.blob_blocks = blocks;
	if (c->n)
		qsort(c->e, c->n, sizeof(*c->e), cmp_chunk_key);
	ci.head.count = c->n;
	ci.e = c->e;
	c->e = NULL;
	int r = chunk_index_encode(&ci, &tw->blob_chunks);
	chunk_index_release(&ci);
	return r < 0 ? anole_err(tw->err, ENOMEM, "out of memory") : 0;
}

static int cmp_entry_addr(const void *a, const void *b)
{
	const struct anole_chunk_entry *x = a, *y = b;
	return (x->blkaddr > y->blkaddr) - (x->blkaddr < y->blkaddr);
}

/* Range starts, cut so that no range reaches into a compressed extent
 * from outside it: a lazy mount fetches an extent the kernel needs whole,
 * and nothing around it. A compressed extent is one range; plain
 * stretches are cut every @unit bytes; neighbouring small pieces share a
 * range up to @unit, so the table stays small. */
struct cuts {
	uint64_t *start;
	uint64_t n, cap, open_len, unit;
};

static int cut_piece(struct cuts *c, uint64_t at, uint64_t len)
{
	if (c->n && c->open_len && c->open_len + len <= c->unit) {
		c->open_len += len;
	} else {
		if (c->n == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 1024;
			uint64_t *s = realloc(c->start, cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			c->start = s;
			c->cap = cap;
		}
		c->start[c->n++] = at;
		c->open_len = len;
	}
	if (c->open_len >= c->unit)
		c->open_len = 0; /* full: the next piece starts a range */
	return 0;
}

static int cut_plain(struct cuts *c, uint64_t from, uint64_t to)
{
	int r = 0;
	for (uint64_t at = from; at < to && r >= 0; at += c->unit)
		r = cut_piece(c, at, MIN(c->unit, to - at));
	return r;
}

static int cut_ranges(struct tree_writer *tw, struct chunk_collect *ext, uint64_t len,
		      struct cuts *c)
{
	if (ext->n)
		qsort(ext->e, ext->n, sizeof(*ext->e), cmp_entry_addr);
	uint64_t pos = 0;
	int r = 0;
	for (size_t i = 0; i < ext->n && r >= 0; i++) {
		const struct anole_chunk_entry *e = &ext->e[i];
		uint64_t at = (uint64_t)e->blkaddr << tw->blkbits;
		uint64_t end = MIN(at + ((uint64_t)e->nblocks << tw->blkbits), len);
		if (at < pos || end <= at)
			continue; /* cannot happen; an overlap would only cost bytes */
		r = cut_plain(c, pos, at);
		if (r >= 0)
			r = e->cblocks ? cut_piece(c, at, end - at) : cut_plain(c, at, end);
		pos = end;
	}
	if (r >= 0)
		r = cut_plain(c, pos, len);
	return r;
}

/* Name the data blob by its SHA-256 and make its digest table (per
 * range) and chunk index. */
int tw_seal_blob(struct tree_writer *tw)
{
	uint64_t blocks = tw->next_blk - tw->data_base, len = blocks << tw->blkbits;
	unsigned bits = tw->opts.range_bits ? tw->opts.range_bits : ANOLE_RANGE_BITS_DEFAULT;
	if (bits < ANOLE_RANGE_BITS_MIN || bits > ANOLE_RANGE_BITS_MAX)
		return anole_err(tw->err, EINVAL, "digest table ranges of 2^%u bytes: choose 4 KiB to "
				 "1 MiB", bits);
	struct chunk_collect ext;
	int r = collect_extents(tw, &ext);
	if (r < 0)
		return r;
	struct cuts cuts = {.unit = 1ull << bits};
	struct digest_table t = {0};
	if ((r = cut_ranges(tw, &ext, len, &cuts)) >= 0)
		r = digest_table_init_cuts(&t, len, bits, cuts.start, cuts.n);
	free(cuts.start);
	struct sha256_stream *h = r >= 0 ? sha256_stream_new() : NULL;
	if (!h) {
		if (r >= 0)
			digest_table_release(&t);
		free(ext.e);
		return anole_err(tw->err, r == -EINVAL ? EINVAL : ENOMEM,
				 r == -EINVAL ? "data blob: bad range cuts" : "out of memory");
	}
	_Static_assert(COPY_BUF >= ANOLE_RANGE_MAX, "a range per read");
	for (uint64_t i = 0; i < t.head.count && r >= 0; i++) {
		size_t n = (size_t)digest_table_range_len(&t, i);
		if ((r = pread_full(tw->data_fd, tw->buf, n, t.off[i])) < 0)
			break;
		sha256_stream_update(h, tw->buf, n);
		sha256(tw->buf, n, &t.d[i]);
	}
	struct digest d;
	sha256_stream_final(h, &d);
	sha256_stream_free(h);
	if (r >= 0 && digest_table_encode(&t, &tw->blob_table) < 0)
		r = -ENOMEM;
	digest_table_release(&t);
	if (r < 0) {
		free(ext.e);
		return anole_err(tw->err, -r, "data blob: %s", strerror(-r));
	}
	char s[DIGEST_STR_LEN + 1];
	digest_format(&d, s);
	memcpy(tw->blob_hex, s + 7, 65);
	return make_chunk_index(tw, blocks, &ext);
}

/* Device table blocks: room for every base blob and the image's own. */
uint64_t tw_devt_blocks(const struct tree_writer *tw)
{
	size_t slots = tw->nbases + 1;
	return DIV_ROUND_UP(slots * sizeof(struct erofs_deviceslot), tw->blksz);
}

/* One slot per blob the image reads: the used base blobs, then its own. */
int tw_write_devices(struct tree_writer *tw, bool own)
{
	struct erofs_deviceslot slot;
	char hex[DIGEST_STR_LEN + 1];
	uint64_t pos = DEVT_BLOCK << tw->blkbits;
	for (size_t i = 0; i <= tw->nbases; i++) {
		memset(&slot, 0, sizeof(slot));
		if (i < tw->nbases) {
			const struct wbase *w = &tw->bases[i];
			if (!w->used)
				continue;
			digest_format(&w->d, hex);
			memcpy(slot.tag, hex + 7, sizeof(slot.tag));
			slot.blocks = (uint32_t)w->blocks;
			slot.uniaddr = (uint32_t)w->uni;
			tw->stats.bases_used |= 1ull << i;
			tw->stats.base_reused_bytes += w->reused;
		} else {
			if (!own)
				break;
			/* 64 hex digits, no NUL */
			memcpy(slot.tag, tw->blob_hex, sizeof(slot.tag));
			slot.blocks = (uint32_t)(tw->next_blk - tw->data_base);
			slot.uniaddr = (uint32_t)tw->data_base;
		}
		int r = pwrite_full(tw->out.fd, &slot, sizeof(slot), pos);
		if (r < 0)
			return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
					 strerror(-r));
		pos += sizeof(slot);
		tw->ndevs++;
	}
	return 0;
}

/* Put the blob under its digest (over an equal one, if there), then its
 * digest table and chunk index under theirs. */
int tw_commit_blob(struct tree_writer *tw)
{
	_cleanup_free_ char *dir = blob_dir(tw), *final = NULL;
	if (!dir || asprintf(&final, "%s/%s", dir, tw->blob_hex) < 0)
		return anole_err(tw->err, ENOMEM, "out of memory");
	int r = outfile_commit(&tw->blob, final);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: %s", final, strerror(-r));
	struct digest d;
	if ((r = cas_put(dir, tw->blob_table.buf, tw->blob_table.len, &d)) >= 0) {
		digest_format(&d, tw->stats.blob_digests);
		r = cas_put(dir, tw->blob_chunks.buf, tw->blob_chunks.len, &d);
		digest_format(&d, tw->stats.blob_chunks);
	}
	return r < 0 ? anole_err(tw->err, -r, "%s: cannot store the blob's tables: %s", dir,
				 strerror(-r))
		     : 0;
}

