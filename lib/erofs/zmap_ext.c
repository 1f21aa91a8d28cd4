/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files mapped through encoded extent records
 * (Z_EROFS_ADVISE_EXTENTS): 4-byte records with implied addresses, one
 * per lcluster, or 8- and 16-byte ones, searched.
 */
#include "erofs/zmap_int.h"

/* ---- mapping: encoded extents (Z_EROFS_ADVISE_EXTENTS) ----------------- */

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

int zmap_ext(struct zrec *m, uint64_t ofs, struct zextent *x)
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
