/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files: mapping (which extent holds a file byte, and where its
 * stored bytes are) and decoding, with the kernel's rules (fs/erofs/zmap.c,
 * decompressor*.c in Linux 6.18): full and compact lcluster indexes, big
 * pclusters, partially referenced pclusters, the inline tail
 * (ztailpacking), fragments in the packed inode, encoded extents, plain
 * pclusters shifted or interlaced. Everything read from the image is
 * checked before use; every loop moves strictly towards an end.
 */
#include "erofs/zmap.h"

#include <sys/stat.h>

#include "compress/codec.h"
#include "erofs/reader.h"
#include "erofs/zindex.h"

/* Decoded extents kept for the next reads: the packed inode's in several
 * slots (files read in tree order read their fragments out of the
 * order mkfs.erofs packed them: with one slot, a 1 MiB lzma pcluster was
 * decoded again for each small file in it), up to PACKED_CACHE bytes,
 * least recently used out first; the others' in one. */
#define PACKED_SLOTS 32
#define PACKED_CACHE (48u << 20)

struct zslot {
	uint64_t used; /* when last read, for the packed inode's */
	bool valid;
	uint8_t where, form;
	bool partial;
	uint64_t pa, llen;
	uint32_t plen;
	uint32_t out_blkoff; /* interlaced extents' output depends on it */
	uint8_t *buf;
	size_t cap;
};

/* A walk of 4-byte extent records (implied addresses), kept so that the
 * next map of the same file goes on from it instead of from the start. */
struct zwalk {
	bool valid;
	uint64_t nid, lstart, pos, pa;
};

struct zimage {
	uint16_t algs;     /* available_compr_algs (lz4 alone without COMPR_CFGS) */
	bool zero_padding; /* ZERO_PADDING */
	bool big;          /* COMPR_CFGS, which also allows big pclusters */
	uint32_t lzma_dict, zstd_window;
	uint64_t packed_nid;
	struct anole_inode packed;
	bool packed_loaded;
	struct zslot slot[PACKED_SLOTS + 1]; /* [0..PACKED_SLOTS): the packed inode's */
	uint64_t tick;
	uint8_t *in;
	size_t incap;
	struct zwalk walk;
};

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

/* ---- the superblock's compression configuration ------------------------ */

static int check_cfg(struct anole_image *img, struct zimage *z, unsigned int alg,
		     const uint8_t *rec, uint32_t len, uint64_t at)
{
	uint32_t need[] = {sizeof(struct z_erofs_lz4_cfgs), sizeof(struct z_erofs_lzma_cfgs),
			   sizeof(struct z_erofs_deflate_cfgs), sizeof(struct z_erofs_zstd_cfgs)};
	if (len < need[alg])
		return img_corrupt(img, UINT64_MAX, at, "%s configuration of %u bytes",
				   codec_alg_name(alg), len);
	switch (alg) {
	case Z_EROFS_COMPRESSION_LZ4: {
		struct z_erofs_lz4_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.max_pclusterblks > Z_EROFS_PCLUSTER_MAX_SIZE / img_blksz(img))
			return img_corrupt(img, UINT64_MAX, at,
					   "lz4 configuration: pclusters of %u blocks",
					   c.max_pclusterblks);
		return 0;
	}
	case Z_EROFS_COMPRESSION_LZMA: {
		struct z_erofs_lzma_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.format || c.dict_size < 4096 || c.dict_size > Z_EROFS_LZMA_MAX_DICT_SIZE)
			return img_corrupt(img, UINT64_MAX, at,
					   "lzma configuration: format %u, dictionary of %u bytes",
					   c.format, c.dict_size);
		z->lzma_dict = c.dict_size;
		return 0;
	}
	case Z_EROFS_COMPRESSION_DEFLATE: {
		struct z_erofs_deflate_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.windowbits > 15)
			return anole_err(img_err(img), EOPNOTSUPP,
					 "%s: byte offset %llu: deflate window of 2^%u bytes is not "
					 "supported", img_path(img), (unsigned long long)at,
					 c.windowbits);
		return 0;
	}
	default: {
		struct z_erofs_zstd_cfgs c;
		memcpy(&c, rec, sizeof(c));
		/* the kernel keeps zstd windows within a pcluster (1 MiB) */
		if (c.format || c.windowlog > 10)
			return img_corrupt(img, UINT64_MAX, at,
					   "zstd configuration: format %u, window of 2^%u bytes",
					   c.format, c.windowlog + 10u);
		z->zstd_window = 1u << (c.windowlog + 10);
		return 0;
	}
	}
}

/* One record per algorithm the superblock lists, in algorithm order, each
 * 4-aligned and led by its 16-bit size (0 meaning 64 KiB). */
static int parse_cfgs(struct anole_image *img, struct zimage *z, const struct erofs_super_block *sb)
{
	uint64_t off = EROFS_SUPER_OFFSET + sizeof(*sb) + 16ull * sb->sb_extslots;
	for (unsigned int alg = 0; alg < Z_EROFS_COMPRESSION_MAX; alg++) {
		if (!(z->algs & (1u << alg)))
			continue;
		off = ROUND_UP(off, 4);
		uint16_t len16;
		int r = img_meta_read(img, UINT64_MAX, off, &len16, sizeof(len16));
		if (r < 0)
			return r;
		uint32_t len = len16 ? len16 : 65536u;
		uint8_t rec[16] = {0};
		if ((r = img_meta_read(img, UINT64_MAX, off + 2, rec, MIN(len, sizeof(rec)))) < 0 ||
		    (len > sizeof(rec) &&
		     (r = img_meta_read(img, UINT64_MAX, off + 2 + len - 1, rec + 15, 1)) < 0))
			return r;
		if ((r = check_cfg(img, z, alg, rec, len, off)) < 0)
			return r;
		off += 2 + len;
	}
	return 0;
}

int zmap_image_init(struct anole_image *img, struct zimage **out)
{
	struct zimage *z = calloc(1, sizeof(*z));
	if (!z)
		return anole_err(img_err(img), ENOMEM, "out of memory");
	*out = z;
	struct erofs_super_block sb;
	int r = img_meta_read(img, UINT64_MAX, EROFS_SUPER_OFFSET, &sb, sizeof(sb));
	if (r < 0)
		return r;
	z->zero_padding = sb.feature_incompat & EROFS_INCOMPAT_ZERO_PADDING;
	z->big = sb.feature_incompat & EROFS_INCOMPAT_COMPR_CFGS;
	if (sb.feature_incompat & EROFS_INCOMPAT_FRAGMENTS)
		z->packed_nid = sb.packed_nid;
	if (!(sb.feature_incompat & EROFS_INCOMPAT_COMPR_CFGS)) {
		z->algs = 1u << Z_EROFS_COMPRESSION_LZ4;
		return 0;
	}
	z->algs = sb.available_compr_algs;
	if (z->algs & ~((1u << Z_EROFS_COMPRESSION_MAX) - 1))
		return anole_err(img_err(img), EOPNOTSUPP,
				 "%s: byte offset 1108: unknown compression algorithms 0x%x",
				 img_path(img), z->algs);
	return parse_cfgs(img, z, &sb);
}

void zmap_image_free(struct zimage *z)
{
	if (!z)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(z->slot); i++)
		free(z->slot[i].buf);
	free(z->in);
	free(z);
}

uint64_t zmap_packed_nid(const struct anole_image *img)
{
	return img_zimage(img)->packed_nid;
}

/* ---- mapping: the kernel's z_erofs_map_blocks_fo ------------------------ */

/* One mapping's context, and what it learned so far (the kernel's
 * z_erofs_maprecorder). */
struct zrec {
	struct anole_image *img;
	const struct anole_inode *ino;
	unsigned int blkbits, lbits;
	uint64_t body_end, nlcl;
	uint64_t lcn;
	struct zlcluster l;    /* lcluster @lcn */
	unsigned int headtype; /* the extent's head */
	uint32_t cblks;        /* a block count met on the way */
	bool partialref;
	uint64_t nextpackoff;  /* the byte after lcluster @lcn's index (pack) */
};

static bool is_compact(const struct anole_inode *ino)
{
	return ino->layout == EROFS_INODE_COMPRESSED_COMPACT;
}

/* Encoded extents: the advice's bits 1-2 are then the record size */
static bool is_ext(const struct anole_inode *ino)
{
	return !is_compact(ino) && (ino->z_advise & Z_EROFS_ADVISE_EXTENTS);
}

static int load_compact(struct zrec *m, uint64_t lcn, bool lookahead)
{
	const struct anole_inode *ino = m->ino;
	uint64_t ebase = ROUND_UP_8(m->body_end) + sizeof(struct z_erofs_map_header), pos;
	uint64_t totalidx = DIV_ROUND_UP(ino->size, 1ull << m->blkbits);
	unsigned int packsize;
	uint8_t pack[Z_COMPACT2_PACK];
	int r = zindex_compact_pos(ebase, totalidx, ino->z_advise & Z_EROFS_ADVISE_COMPACTED_2B,
				   m->lbits, lcn, &pos, &packsize);
	if (r == -EOPNOTSUPP)
		return anole_err(img_err(m->img), EOPNOTSUPP,
				 "%s: nid %llu: compact indexes of lclusters of 2^%u bytes are not "
				 "supported", img_path(m->img), (unsigned long long)ino->nid, m->lbits);
	if (r < 0)
		return img_corrupt(m->img, ino->nid, ino->pos, "lcluster %llu beyond the %llu indexes",
				   (unsigned long long)lcn, (unsigned long long)totalidx);
	uint64_t at = pos & ~(uint64_t)(packsize - 1);
	if ((r = img_meta_read(m->img, ino->nid, at, pack, packsize)) < 0)
		return r;
	m->nextpackoff = at + packsize;
	unsigned int i = (unsigned int)((pos - at) >> (packsize == Z_COMPACT2_PACK ? 1 : 2));
	r = zindex_unpack(pack, packsize, m->lbits, ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1, i,
			  lookahead, &m->l);
	if (r < 0)
		return img_corrupt(m->img, ino->nid, pos, "lcluster %llu: bad compact index",
				   (unsigned long long)lcn);
	return 0;
}

static int load_full(struct zrec *m, uint64_t lcn)
{
	const struct anole_inode *ino = m->ino;
	uint64_t pos = Z_EROFS_FULL_INDEX_START(m->body_end) + lcn * sizeof(struct z_erofs_lcluster_index);
	struct z_erofs_lcluster_index d;
	int r = img_meta_read(m->img, ino->nid, pos, &d, sizeof(d));
	if (r < 0)
		return r;
	m->nextpackoff = pos + sizeof(d);
	if (zindex_full(&d, ino->z_advise & (Z_EROFS_ADVISE_BIG_PCLUSTER_1 |
					     Z_EROFS_ADVISE_BIG_PCLUSTER_2), &m->l) < 0)
		return img_corrupt(m->img, ino->nid, pos,
				   "lcluster %llu: a block count without big pclusters",
				   (unsigned long long)lcn);
	return 0;
}

static int load(struct zrec *m, uint64_t lcn, bool lookahead)
{
	int r = is_compact(m->ino) ? load_compact(m, lcn, lookahead) : load_full(m, lcn);
	if (r < 0)
		return r;
	m->lcn = lcn;
	if (m->l.type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		if (m->l.cblkcnt)
			m->cblks = m->l.cblks;
		return 0;
	}
	if (m->l.clusterofs >> m->lbits)
		return img_corrupt(m->img, m->ino->nid, m->ino->pos,
				   "lcluster %llu: extent starts at byte %u of %u",
				   (unsigned long long)lcn, m->l.clusterofs, 1u << m->lbits);
	m->partialref = m->l.partialref;
	return 0;
}

/* Back from lcluster m->lcn by @dist, and on by the distances met, to the
 * extent's head: its logical address in *la. */
static int lookback(struct zrec *m, unsigned int dist, uint64_t *la)
{
	while (dist && m->lcn >= dist) {
		int r = load(m, m->lcn - dist, false);
		if (r < 0)
			return r;
		if (m->l.type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			dist = m->l.delta[0];
			continue;
		}
		m->headtype = m->l.type;
		*la = (m->lcn << m->lbits) | m->l.clusterofs;
		return 0;
	}
	return img_corrupt(m->img, m->ino->nid, m->ino->pos, "lcluster %llu: bad lookback distance %u",
			   (unsigned long long)m->lcn, dist);
}

/* The pcluster's size: one block, or the count the first non-head keeps. */
static int compressedlen(struct zrec *m, uint32_t *plen)
{
	uint16_t advise = m->ino->z_advise;
	uint64_t lcn = m->lcn + 1;
	if ((m->headtype == Z_EROFS_LCLUSTER_TYPE_HEAD1 && !(advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1)) ||
	    (m->headtype != Z_EROFS_LCLUSTER_TYPE_HEAD1 && !(advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2)) ||
	    lcn >= m->nlcl)
		m->cblks = 1;
	if (!m->cblks) {
		int r = load(m, lcn, false);
		if (r < 0)
			return r;
		if (m->l.type == Z_EROFS_LCLUSTER_TYPE_NONHEAD && m->l.delta[0] != 1)
			return img_corrupt(m->img, m->ino->nid, m->ino->pos,
					   "lcluster %llu: no block count after its head",
					   (unsigned long long)lcn);
		if (m->l.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD || !m->cblks)
			m->cblks = 1;
	}
	if (m->cblks > Z_EROFS_PCLUSTER_MAX_SIZE >> m->blkbits)
		return img_corrupt(m->img, m->ino->nid, m->ino->pos,
				   "pcluster of %u blocks at lcluster %llu", m->cblks,
				   (unsigned long long)(lcn - 1));
	*plen = m->cblks << m->blkbits;
	return 0;
}

/* The extent's length: on from its head @headlcn to the next head, or to
 * the end of the file. */
static int decompressedlen(struct zrec *m, uint64_t headlcn, uint64_t la, uint64_t *llen)
{
	uint64_t lcn = headlcn;
	for (;;) {
		if (lcn >= m->nlcl) {
			*llen = m->ino->size - la;
			return 0;
		}
		int r = load(m, lcn, true);
		if (r < 0)
			return r;
		if (m->l.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			if (lcn != headlcn)
				break;
			m->l.delta[1] = 1;
		} else if (!m->l.delta[1]) {
			m->l.delta[1] = 1; /* as the kernel takes it from old mkfs */
		}
		lcn += m->l.delta[1];
	}
	*llen = (lcn << m->lbits) + m->l.clusterofs - la;
	return 0;
}

/* What finding the tail extent (the kernel's EROFS_GET_BLOCKS_FINDTAIL)
 * learns about the inode. */
struct ztail {
	uint64_t la;        /* where the tail extent begins */
	uint64_t idata_pos; /* the inline pcluster: right after the last index */
	uint32_t pblk;      /* its head's block address: a fragment offset's high half */
};

static int extent_form(struct zrec *m, struct zextent *x)
{
	const struct anole_inode *ino = m->ino;
	struct zimage *z = img_zimage(m->img);
	if (m->headtype == Z_EROFS_LCLUSTER_TYPE_PLAIN) {
		x->form = ino->z_advise & Z_EROFS_ADVISE_INTERLACED_PCLUSTER ? ZFORM_INTERLACED
									    : ZFORM_SHIFTED;
		return 0;
	}
	unsigned int alg = m->headtype == Z_EROFS_LCLUSTER_TYPE_HEAD2 ? ino->z_algorithms >> 4
								      : ino->z_algorithms & 15u;
	if (!(z->algs & (1u << alg)))
		return img_corrupt(m->img, ino->nid, ino->pos,
				   "extent at %llu: algorithm %u is not among the superblock's "
				   "(0x%x)", (unsigned long long)x->la, alg, z->algs);
	x->form = (uint8_t)alg;
	return 0;
}

/* Where the head lcluster of the extent holding @ofs is: *la, and the
 * kernel's idea of the extent's end (*end). */
static int find_head(struct zrec *m, uint64_t ofs, const struct anole_inode *ino, uint64_t *la,
		     uint64_t *end, struct ztail *t)
{
	uint64_t lcn = ofs >> m->lbits;
	uint32_t endoff = (uint32_t)(ofs & ((1ull << m->lbits) - 1));
	int r = load(m, lcn, false);
	if (r < 0)
		return r;
	if (t)
		t->idata_pos = m->nextpackoff;
	*end = (lcn + 1) << m->lbits;
	if (m->l.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD && endoff >= m->l.clusterofs) {
		m->headtype = m->l.type;
		*la = (lcn << m->lbits) | m->l.clusterofs;
		if (ino->z_idata_size && *end > ino->size)
			*end = ino->size;
		return 0;
	}
	unsigned int dist = m->l.delta[0];
	if (m->l.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		/* the extent before this lcluster's head */
		if (!lcn)
			return img_corrupt(m->img, ino->nid, ino->pos,
					   "the first lcluster's extent starts at byte %u",
					   m->l.clusterofs);
		*end = (lcn << m->lbits) | m->l.clusterofs;
		dist = 1;
	}
	return lookback(m, dist, la);
}

static int map_fo(struct zrec *m, uint64_t ofs, struct zextent *x, struct ztail *t)
{
	const struct anole_inode *ino = m->ino;
	bool frag = ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
	uint64_t end;
	int r = find_head(m, ofs, ino, &x->la, &end, t);
	if (r < 0)
		return r;
	uint64_t headlcn = m->lcn;
	uint32_t pblk = m->l.pblk;
	x->partial = m->partialref;
	bool tail = t ? true : headlcn == ino->z_tail_la >> m->lbits;
	if (t) {
		t->la = x->la;
		t->pblk = pblk;
	}
	if (ino->z_idata_size && tail) {
		x->where = ZX_INLINE;
		x->pa = t ? t->idata_pos : ino->z_idata_pos;
		x->plen = ino->z_idata_size;
		if ((x->pa & (img_blksz(m->img) - 1)) + x->plen > img_blksz(m->img))
			return img_corrupt(m->img, ino->nid, x->pa,
					   "inline pcluster of %u bytes crosses a block boundary",
					   x->plen);
		x->llen = ino->size - x->la; /* the last extent */
	} else if (frag && tail) {
		x->where = ZX_FRAGMENT;
		x->partial = false;
		x->llen = ino->size - x->la;
		x->frag_off = ino->z_frag_off;
	} else {
		x->where = ZX_BLOCKS;
		x->pa = (uint64_t)pblk << m->blkbits;
		if ((r = compressedlen(m, &x->plen)) < 0 ||
		    (r = decompressedlen(m, headlcn, x->la, &x->llen)) < 0)
			return r;
	}
	return extent_form(m, x);
}

/* ---- mapping: encoded extents (Z_EROFS_ADVISE_EXTENTS) ----------------- */

static unsigned int ext_recsz(const struct anole_inode *ino)
{
	return 4u << ((ino->z_advise >> 1) & 3u);
}

static uint64_t ext_start(const struct anole_inode *ino, uint64_t body_end)
{
	uint64_t hend = ROUND_UP_8(body_end) + sizeof(struct z_erofs_map_header);
	return ROUND_UP(hend, (uint64_t)ext_recsz(ino));
}

static int read_rec(struct zrec *m, uint64_t pos, struct z_erofs_extent *e)
{
	memset(e, 0, sizeof(*e));
	return img_meta_read(m->img, m->ino->nid, pos, e, ext_recsz(m->ino));
}

/* Records of 4 or 8 bytes, one per lcluster: the last one starting at or
 * before @ofs. 4-byte ones imply their addresses, one after another from a
 * 64-bit start, so they are walked from the first (or from the last walk
 * of this file). */
static int ext_by_lcluster(struct zrec *m, uint64_t ofs, uint64_t *lstart, uint64_t *pa,
			   uint32_t *plen)
{
	const struct anole_inode *ino = m->ino;
	struct zwalk *w = &img_zimage(m->img)->walk;
	unsigned int recsz = ext_recsz(ino);
	uint64_t L = 1ull << m->lbits, pos = ext_start(ino, m->body_end), next = 0;
	struct z_erofs_extent e;
	int r;
	if (recsz == 4 && w->valid && w->nid == ino->nid && w->lstart <= ofs) {
		*lstart = w->lstart, pos = w->pos, next = w->pa;
	} else if (recsz == 4) {
		if ((r = img_meta_read(m->img, ino->nid, pos, &next, sizeof(next))) < 0)
			return r;
		*lstart = 0, pos += sizeof(next);
	} else {
		*lstart = ofs & ~(L - 1);
		pos += (*lstart >> m->lbits) * recsz;
	}
	for (;;) {
		if ((r = read_rec(m, pos, &e)) < 0)
			return r;
		*plen = e.plen;
		*pa = recsz == 4 ? next : e.pstart_lo;
		if (recsz == 4)
			*w = (struct zwalk){true, ino->nid, *lstart, pos, next};
		next += e.plen & Z_EROFS_EXTENT_PLEN_MASK;
		if (*lstart + L > ofs)
			return 0;
		*lstart += L;
		pos += recsz;
	}
}

/* Records of 16 or 32 bytes carry their logical start: binary search. */
static int ext_search(struct zrec *m, uint64_t ofs, uint64_t *lstart, uint64_t *lend,
		      uint64_t *pa, uint32_t *plen, bool *last)
{
	const struct anole_inode *ino = m->ino;
	unsigned int recsz = ext_recsz(ino);
	uint64_t pos = ext_start(ino, m->body_end), l = 0, r = ino->z_extents;
	*lstart = *lend = ino->size;
	while (l < r) {
		uint64_t mid = l + (r - l) / 2;
		struct z_erofs_extent e;
		int err = read_rec(m, pos + mid * recsz, &e);
		if (err < 0)
			return err;
		uint64_t la = e.lstart_lo | (recsz > 16 ? (uint64_t)e.lstart_hi << 32 : 0);
		if (la > ofs) {
			if (la > *lend)
				return img_corrupt(m->img, ino->nid, pos + mid * recsz,
						   "extent record %llu out of order",
						   (unsigned long long)mid);
			r = mid;
			*lend = la;
		} else {
			l = mid + 1;
			if (la == ofs)
				r = MIN(l + 1, r);
			*lstart = la;
			*plen = e.plen;
			*pa = e.pstart_lo | (uint64_t)e.pstart_hi << 32;
		}
	}
	*last = l >= ino->z_extents;
	return 0;
}

static int map_ext(struct zrec *m, uint64_t ofs, struct zextent *x)
{
	const struct anole_inode *ino = m->ino;
	struct zimage *z = img_zimage(m->img);
	unsigned int recsz = ext_recsz(ino);
	uint64_t lstart = 0, lend = ino->size, pa = 0;
	uint32_t plen = 0;
	bool last;
	int r;
	if (recsz <= 8) {
		uint64_t L = 1ull << m->lbits;
		if ((r = ext_by_lcluster(m, ofs, &lstart, &pa, &plen)) < 0)
			return r;
		last = lstart + L >= ROUND_UP(ino->size, L);
		lend = MIN(lstart + L, ino->size);
	} else if ((r = ext_search(m, ofs, &lstart, &lend, &pa, &plen, &last)) < 0) {
		return r;
	}
	memset(x, 0, sizeof(*x));
	x->la = ofs;
	x->where = ZX_HOLE;
	if (lstart < lend) {
		x->la = lstart;
		if (last && (ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)) {
			x->where = ZX_FRAGMENT;
			x->frag_off = plen | (recsz > 4 ? pa << 32 : 0);
		} else if (plen & Z_EROFS_EXTENT_PLEN_MASK) {
			unsigned int fmt = plen >> Z_EROFS_EXTENT_PLEN_FMT_BIT;
			x->where = ZX_BLOCKS;
			x->pa = pa;
			x->plen = plen & Z_EROFS_EXTENT_PLEN_MASK;
			x->partial = plen & Z_EROFS_EXTENT_PLEN_PARTIAL;
			if (fmt)
				x->form = (uint8_t)(fmt - 1);
			else if ((ino->z_advise & Z_EROFS_ADVISE_INTERLACED_PCLUSTER) &&
				 !(pa & (img_blksz(m->img) - 1)))
				x->form = ZFORM_INTERLACED;
			else
				x->form = ZFORM_SHIFTED;
			if (x->form > ZFORM_INTERLACED)
				return anole_err(img_err(m->img), EOPNOTSUPP,
						 "%s: nid %llu: extent at %llu: unknown algorithm %u",
						 img_path(m->img), (unsigned long long)ino->nid,
						 (unsigned long long)lstart, x->form);
			if (x->form < Z_EROFS_COMPRESSION_MAX && !(z->algs & (1u << x->form)))
				return img_corrupt(m->img, ino->nid, ino->pos,
						   "extent at %llu: algorithm %u is not among the "
						   "superblock's (0x%x)", (unsigned long long)lstart,
						   x->form, z->algs);
		}
	}
	if (lend <= x->la)
		return img_corrupt(m->img, ino->nid, ino->pos, "no extent holds byte %llu",
				   (unsigned long long)ofs);
	x->llen = lend - x->la;
	return 0;
}

/* ---- the inode's map header ---------------------------------------------- */

static void rec_init(struct zrec *m, struct anole_image *img, const struct anole_inode *ino)
{
	memset(m, 0, sizeof(*m));
	m->img = img;
	m->ino = ino;
	m->blkbits = (unsigned int)__builtin_ctz(img_blksz(img));
	m->lbits = ino->z_lclusterbits;
	m->body_end = ino->pos + ino->inode_isize + ino->xattr_isize;
	m->nlcl = DIV_ROUND_UP(ino->size, 1ull << m->lbits);
}

/* The byte after the inode's last index or extent record. */
static int index_end(struct zrec *m, uint64_t *end)
{
	const struct anole_inode *ino = m->ino;
	if (is_ext(ino)) {
		uint64_t n = ext_recsz(ino) > 8 ? ino->z_extents : m->nlcl;
		*end = ext_start(ino, m->body_end) + n * ext_recsz(ino) + (ext_recsz(ino) == 4 ? 8 : 0);
		return 0;
	}
	if (!is_compact(ino)) {
		*end = Z_EROFS_FULL_INDEX_START(m->body_end) + m->nlcl * 8;
		return 0;
	}
	uint64_t ebase = ROUND_UP_8(m->body_end) + sizeof(struct z_erofs_map_header), pos;
	uint64_t totalidx = DIV_ROUND_UP(ino->size, 1ull << m->blkbits);
	unsigned int packsize;
	int r = zindex_compact_pos(ebase, totalidx, ino->z_advise & Z_EROFS_ADVISE_COMPACTED_2B,
				   m->lbits, totalidx - 1, &pos, &packsize);
	if (r == -EINVAL)
		return img_corrupt(m->img, ino->nid, ino->pos,
				   "compact indexes of lclusters of 2^%u bytes", m->lbits);
	*end = (pos & ~(uint64_t)(packsize - 1)) + packsize;
	return 0;
}

static int check_header(struct anole_image *img, struct anole_inode *ino, uint64_t hpos)
{
	struct zimage *z = img_zimage(img);
	uint16_t big = Z_EROFS_ADVISE_BIG_PCLUSTER_1 | Z_EROFS_ADVISE_BIG_PCLUSTER_2;
	if (!is_ext(ino) && (ino->z_advise & big) && !z->big)
		return img_corrupt(img, ino->nid, hpos,
				   "big pclusters without the superblock's feature");
	if (is_compact(ino) && !(ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1) !=
				       !(ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2))
		return img_corrupt(img, ino->nid, hpos,
				   "compact indexes with big pclusters of one head kind only");
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !z->packed_nid)
		return img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
	return 0;
}

/* Find the tail extent, as the kernel does before the first map. */
static int find_tail(struct anole_image *img, struct anole_inode *ino)
{
	struct zrec m;
	struct zextent x;
	struct ztail t = {0};
	rec_init(&m, img, ino);
	int r = is_ext(ino)
			? map_ext(&m, ino->size - 1, &x)
			: map_fo(&m, ino->size - 1, &x, &t);
	if (r < 0)
		return r;
	if (is_ext(ino)) {
		if (x.where == ZX_FRAGMENT) {
			ino->z_tail_la = x.la;
			ino->z_frag_off = x.frag_off;
		}
		return 0;
	}
	ino->z_tail_la = t.la;
	ino->z_idata_pos = t.idata_pos;
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !is_compact(ino))
		ino->z_frag_off |= (uint64_t)t.pblk << 32;
	/* a fragment from the first lcluster on: the whole file is in it */
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !(t.la >> ino->z_lclusterbits)) {
		ino->z_frag_whole = true;
		ino->z_tail_la = 0;
	}
	return 0;
}

int zmap_inode_init(struct anole_image *img, struct anole_inode *ino, uint32_t iu, uint64_t body_end)
{
	struct zimage *z = img_zimage(img);
	struct z_erofs_map_header h;
	uint64_t hpos = ROUND_UP_8(body_end), end;
	ino->z_blocks = iu;
	ino->z_tail_la = ino->size;
	if (!ino->size)
		return 0; /* the kernel never reads an empty file's map */
	int r = img_meta_read(img, ino->nid, hpos, &h, sizeof(h));
	if (r < 0)
		return r;
	if (h.h_clusterbits & 0x80) {
		/* the whole file lives in the packed inode */
		uint64_t v;
		memcpy(&v, &h, sizeof(v));
		ino->z_advise = Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
		ino->z_frag_whole = true;
		ino->z_frag_off = v & ~(1ull << 63);
		ino->z_tail_la = 0;
		return z->packed_nid ? 0
				     : img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
	}
	ino->z_advise = h.h_advise;
	ino->z_lclusterbits = (uint8_t)(__builtin_ctz(img_blksz(img)) + (h.h_clusterbits & 15));
	if (ino->layout == EROFS_INODE_COMPRESSED_FULL && (h.h_advise & Z_EROFS_ADVISE_EXTENTS)) {
		uint16_t hi = (uint16_t)(h.h_algorithmtype | h.h_clusterbits << 8);
		ino->z_extents = h.h_fragmentoff | (uint64_t)hi << 32;
		if (ext_recsz(ino) <= 8)
			ino->z_extents = 0;
	} else {
		ino->z_algorithms = h.h_algorithmtype;
		if (h.h_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)
			ino->z_frag_off = h.h_fragmentoff;
		else if (h.h_advise & Z_EROFS_ADVISE_INLINE_PCLUSTER)
			ino->z_idata_size = (uint16_t)(h.h_fragmentoff >> 16);
	}
	if ((r = check_header(img, ino, hpos)) < 0)
		return r;
	struct zrec m;
	rec_init(&m, img, ino);
	if ((r = index_end(&m, &end)) < 0)
		return r;
	if (end > img_meta_end(img, hpos)) /* the image's, or the metabox's */
		return img_corrupt(img, ino->nid, hpos, "lcluster indexes run past the %s end",
				   hpos >> EROFS_NID_METABOX_BIT ? "metabox" : "image");
	if (ino->z_idata_size || (ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER))
		return find_tail(img, ino);
	return 0;
}

/* ---- hooks: maps and reads ----------------------------------------------- */

int zmap_extent(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		struct zextent *x)
{
	struct zrec m;
	memset(x, 0, sizeof(*x));
	if (off >= ino->size)
		return img_corrupt(img, ino->nid, ino->pos, "no extent past the end of the file");
	if (ino->z_frag_whole) {
		*x = (struct zextent){.la = 0, .llen = ino->size, .where = ZX_FRAGMENT,
				      .frag_off = ino->z_frag_off};
		return 0;
	}
	rec_init(&m, img, ino);
	int r = is_ext(ino) ? map_ext(&m, off, x) : map_fo(&m, off, x, NULL);
	if (r < 0)
		return r;
	if (off < x->la || off - x->la >= x->llen || x->la + x->llen > ino->size)
		return img_corrupt(img, ino->nid, ino->pos,
				   "extent at %llu (%llu bytes) does not hold byte %llu",
				   (unsigned long long)x->la, (unsigned long long)x->llen,
				   (unsigned long long)off);
	if (x->where != ZX_BLOCKS && x->where != ZX_INLINE)
		return 0;
	/* what the kernel refuses to decode (z_erofs_map_sanity_check) */
	bool plain = x->form >= Z_EROFS_COMPRESSION_MAX;
	if (x->plen > Z_EROFS_PCLUSTER_MAX_SIZE || x->llen > Z_EROFS_PCLUSTER_MAX_DSIZE ||
	    !x->plen || (plain && x->llen > x->plen) || x->pa + x->plen < x->pa)
		return img_corrupt(img, ino->nid, ino->pos,
				   "extent at %llu: %u stored bytes (%s) for %llu bytes",
				   (unsigned long long)x->la, x->plen,
				   plain ? "plain" : codec_alg_name(x->form), (unsigned long long)x->llen);
	return 0;
}

int zmap_packed_inode(struct anole_image *img, struct anole_inode *out)
{
	struct zimage *z = img_zimage(img);
	if (!z->packed_loaded) {
		int r = anole_inode_read(img, z->packed_nid, &z->packed);
		if (r < 0)
			return r;
		bool compressed = z->packed.layout == EROFS_INODE_COMPRESSED_FULL ||
				  z->packed.layout == EROFS_INODE_COMPRESSED_COMPACT;
		/* its own data never lies in a fragment */
		if (!S_ISREG(z->packed.mode) ||
		    (compressed && (z->packed.z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)))
			return img_corrupt(img, z->packed_nid, z->packed.pos,
					   "the packed inode is not a plain or compressed regular file");
		z->packed_loaded = true;
	}
	*out = z->packed;
	return 0;
}

int zmap_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	     uint64_t *phys, uint64_t *run)
{
	struct zextent x;
	int r = zmap_extent(img, ino, off, &x);
	if (r < 0)
		return r;
	*hole = x.where == ZX_HOLE;
	*phys = x.where == ZX_BLOCKS ? x.pa : 0;
	*run = x.la + x.llen - off;
	if (x.where != ZX_BLOCKS)
		return 0;
	int fd;
	uint64_t at;
	return img_locate(img, ino->nid, x.pa, x.plen, &fd, &at);
}

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
