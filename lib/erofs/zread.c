/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files' bytes: an extent's stored bytes decoded (zdecode, a
 * pure function that may run on any thread), the decoded extents kept
 * for the next reads, and zmap_pread().
 */
#include "erofs/zmap_int.h"

/* ---- decoding: pure ---------------------------------------------------- */

/* The compressed stream: after the zeros that pad it to the pcluster's end
 * (ZERO_PADDING), looked for in the first block only, as the kernel does. */
static int strip_padding(const struct zdecode_req *rq, const uint8_t **in, size_t *inlen)
{
	size_t scan = MIN((size_t)rq->inlen, (size_t)(rq->blksz - rq->in_blkoff % rq->blksz));
	size_t k = 0;
	while (k < scan && !rq->in[k])
		k++;
	if (k == scan)
		return -EFSCORRUPTED;
	*in = rq->in + k;
	*inlen = rq->inlen - k;
	return 0;
}

int zdecode(const struct zdecode_req *rq, uint8_t *out, size_t outlen)
{
	if (!rq->blksz || outlen > Z_EROFS_PCLUSTER_MAX_DSIZE)
		return -EFSCORRUPTED;
	if (rq->form == ZFORM_SHIFTED) {
		if (outlen > rq->inlen)
			return -EFSCORRUPTED;
		memcpy(out, rq->in, outlen);
		return 0;
	}
	if (rq->form == ZFORM_INTERLACED) {
		/* the extent's first byte sits at its own offset in the last
		 * block; the bytes after that block's end wrap to the start */
		size_t cur = rq->blksz - rq->out_blkoff % rq->blksz;
		if (outlen > rq->inlen || cur > rq->inlen)
			return -EFSCORRUPTED;
		size_t first = MIN(cur, outlen);
		memcpy(out, rq->in + rq->inlen - cur, first);
		memcpy(out + first, rq->in, outlen - first);
		return 0;
	}
	if (rq->form >= Z_EROFS_COMPRESSION_MAX)
		return -EFSCORRUPTED;
	unsigned int flags = rq->partial ? CODEC_PARTIAL : 0;
	const uint8_t *in = rq->in;
	size_t inlen = rq->inlen;
	if (rq->form != Z_EROFS_COMPRESSION_LZ4 || rq->zero_padding) {
		if (strip_padding(rq, &in, &inlen) < 0)
			return -EFSCORRUPTED;
	} else {
		/* lz4 before ZERO_PADDING: the stream starts the pcluster
		 * and whatever follows it is not part of it */
		flags |= CODEC_PARTIAL;
	}
	return codec_decompress(rq->form, in, inlen, out, outlen, flags, rq->window);
}

/* ---- reads -------------------------------------------------------------- */

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	uint8_t *nb = realloc(*buf, need);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = need;
	return 0;
}

static int read_stored(struct anole_image *img, const struct anole_inode *ino,
		       const struct zextent *x, uint8_t *in)
{
	if (x->where == ZX_INLINE)
		return img_meta_read(img, ino->nid, x->pa, in, x->plen);
	int fd;
	uint64_t at;
	int r = img_locate(img, ino->nid, x->pa, x->plen, &fd, &at);
	if (r < 0)
		return r;
	r = pread_full(fd, in, x->plen, at);
	if (r == -ENODATA)
		return img_corrupt(img, ino->nid, x->pa, "image is truncated");
	if (r < 0)
		return anole_err(img_err(img), -r, "%s: nid %llu, byte offset %llu: %s",
				 img_path(img), (unsigned long long)ino->nid,
				 (unsigned long long)x->pa, strerror(-r));
	return 0;
}

void zmap_request(struct anole_image *img, const struct zextent *x, const uint8_t *in,
		  struct zdecode_req *rq)
{
	struct zimage *z = img_zimage(img);
	uint32_t blksz = img_blksz(img);
	*rq = (struct zdecode_req){
		.in = in, .inlen = x->plen, .form = x->form, .partial = x->partial,
		.zero_padding = z->zero_padding, .blksz = blksz,
		.in_blkoff = (uint32_t)(x->pa & (blksz - 1)),
		.out_blkoff = (uint32_t)(x->la & (blksz - 1)),
		.window = x->form == Z_EROFS_COMPRESSION_LZMA ? z->lzma_dict
			  : x->form == Z_EROFS_COMPRESSION_ZSTD ? z->zstd_window : 0,
	};
}

int zmap_stored_at(struct anole_image *img, const struct anole_inode *ino,
		   const struct zextent *x, int *fd, uint64_t *at)
{
	*fd = -1;
	return x->where == ZX_BLOCKS ? img_locate(img, ino->nid, x->pa, x->plen, fd, at) : 0;
}

int zmap_stored(struct anole_image *img, const struct anole_inode *ino, const struct zextent *x,
		uint8_t *in)
{
	return read_stored(img, ino, x, in);
}

int zmap_decode_error(struct anole_image *img, const struct anole_inode *ino,
		      const struct zextent *x, int r)
{
	if (r == -ENOMEM)
		return anole_err(img_err(img), ENOMEM, "out of memory");
	return img_corrupt(img, ino->nid, x->pa,
			   "corrupt compressed data (%s, %u bytes for file bytes %llu..%llu)",
			   x->form >= Z_EROFS_COMPRESSION_MAX ? "plain" : codec_alg_name(x->form),
			   x->plen, (unsigned long long)x->la,
			   (unsigned long long)(x->la + x->llen - 1));
}

static bool slot_holds(const struct zslot *s, const struct zextent *x, uint32_t out_blkoff)
{
	return s->valid && s->where == x->where && s->form == x->form &&
	       s->partial == x->partial && s->pa == x->pa && s->plen == x->plen &&
	       s->llen == x->llen && s->out_blkoff == out_blkoff;
}

/* The slot for extent @x: the one holding it, else the one to decode it
 * into (the packed inode's: a free one or the least recently used). */
static struct zslot *slot_for(struct zimage *z, bool packed, const struct zextent *x,
			      uint32_t out_blkoff)
{
	if (!packed)
		return &z->slot[PACKED_SLOTS];
	struct zslot *lru = &z->slot[0];
	for (size_t i = 0; i < PACKED_SLOTS; i++) {
		struct zslot *s = &z->slot[i];
		if (slot_holds(s, x, out_blkoff) || !s->valid) {
			lru = s;
			if (s->valid)
				break;
		} else if (lru->valid && s->used < lru->used) {
			lru = s;
		}
	}
	lru->used = ++z->tick;
	return lru;
}

/* Keep the packed inode's slots within PACKED_CACHE bytes, @keep aside. */
static void slots_trim(struct zimage *z, const struct zslot *keep)
{
	for (;;) {
		size_t total = 0;
		struct zslot *lru = NULL;
		for (size_t i = 0; i < PACKED_SLOTS; i++) {
			struct zslot *s = &z->slot[i];
			total += s->cap;
			if (s != keep && s->cap && (!lru || s->used < lru->used))
				lru = s;
		}
		if (total <= PACKED_CACHE || !lru)
			return;
		free(lru->buf);
		*lru = (struct zslot){0};
	}
}

/* The decoded bytes of extent @x, from an earlier read when it was the same. */
static int decoded(struct anole_image *img, const struct anole_inode *ino,
		   const struct zextent *x, const uint8_t **out)
{
	struct zimage *z = img_zimage(img);
	bool packed = ino->nid == z->packed_nid;
	uint32_t blksz = img_blksz(img);
	uint32_t out_blkoff = x->form == ZFORM_INTERLACED ? (uint32_t)(x->la & (blksz - 1)) : 0;
	struct zslot *s = slot_for(z, packed, x, out_blkoff);
	if (slot_holds(s, x, out_blkoff)) {
		*out = s->buf;
		return 0;
	}
	s->valid = false;
	int r;
	if (x->where == ZX_INLINE) {
		/* An inline tail is read through the metadata path, which may
		 * decode the (compressed) metabox and so reuse z->in and the
		 * slots: read it into a buffer of its own, then copy. */
		_cleanup_free_ uint8_t *tail = malloc(x->plen ? x->plen : 1);
		if (!tail)
			return anole_err(img_err(img), ENOMEM, "out of memory");
		if ((r = read_stored(img, ino, x, tail)) < 0)
			return r;
		if (grow(&z->in, &z->incap, x->plen) < 0)
			return anole_err(img_err(img), ENOMEM, "out of memory");
		memcpy(z->in, tail, x->plen);
	} else {
		if (grow(&z->in, &z->incap, x->plen) < 0)
			return anole_err(img_err(img), ENOMEM, "out of memory");
		if ((r = read_stored(img, ino, x, z->in)) < 0)
			return r;
	}
	if (grow(&s->buf, &s->cap, x->llen) < 0)
		return anole_err(img_err(img), ENOMEM, "out of memory");
	struct zdecode_req rq;
	zmap_request(img, x, z->in, &rq);
	r = zdecode(&rq, s->buf, x->llen);
	if (r < 0)
		return zmap_decode_error(img, ino, x, r);
	*s = (struct zslot){s->used, true,	x->where, x->form, x->partial,
			    x->pa,   x->llen, x->plen,	out_blkoff, s->buf, s->cap};
	if (packed)
		slots_trim(z, s);
	*out = s->buf;
	return 0;
}

static int read_fragment(struct anole_image *img, const struct anole_inode *ino, void *buf,
			 size_t len, uint64_t at)
{
	struct anole_inode packed;
	int r = zmap_packed_inode(img, &packed);
	if (r < 0)
		return r;
	if (at > packed.size || len > packed.size - at)
		return img_corrupt(img, ino->nid, ino->pos,
				   "fragment at %llu runs past the packed inode (%llu bytes)",
				   (unsigned long long)at, (unsigned long long)packed.size);
	ssize_t n = anole_pread(img, &packed, buf, len, at);
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : img_corrupt(img, ino->nid, ino->pos, "short fragment read");
}

ssize_t zmap_pread(struct anole_image *img, const struct anole_inode *ino, void *buf, size_t len,
		   uint64_t off)
{
	uint8_t *p = buf;
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done;
		struct zextent x;
		const uint8_t *d = NULL;
		int r = zmap_extent(img, ino, pos, &x);
		if (r < 0)
			return r;
		size_t n = (size_t)MIN((uint64_t)(len - done), x.la + x.llen - pos);
		if (x.where == ZX_HOLE)
			memset(p + done, 0, n);
		else if (x.where == ZX_FRAGMENT)
			r = read_fragment(img, ino, p + done, n, x.frag_off + (pos - x.la));
		else if ((r = decoded(img, ino, &x, &d)) >= 0)
			memcpy(p + done, d + (pos - x.la), n);
		if (r < 0)
			return r;
		done += n;
	}
	return (ssize_t)done;
}
