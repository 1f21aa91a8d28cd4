/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files mapped through lcluster indexes, full or compact, as
 * the kernel's z_erofs_map_blocks_fo maps them: big pclusters, partially
 * referenced pclusters, the inline tail and fragments.
 */
#include "erofs/zmap_int.h"

/* ---- mapping: the kernel's z_erofs_map_blocks_fo ------------------------ */

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

int zmap_fo(struct zrec *m, uint64_t ofs, struct zextent *x, struct ztail *t)
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
