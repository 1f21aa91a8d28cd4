/* SPDX-License-Identifier: Apache-2.0 */
#include "erofs/zindex.h"

#include <string.h>

#include "util/util.h"

#define LOBITS 12 /* max(lcluster bits, bit of D0_CBLKCNT + 1) for 4 KiB lclusters */

static unsigned int type_of(const struct z_erofs_lcluster_index *d)
{
	return d->di_advise & Z_EROFS_LI_LCLUSTER_TYPE_MASK;
}

bool zindex_compactable(const struct z_erofs_lcluster_index *full, uint64_t n)
{
	uint64_t expect = 0;
	bool first = true, big_next = false;
	for (uint64_t lcn = 0; lcn < n; lcn++) {
		const struct z_erofs_lcluster_index *d = &full[lcn];
		if (type_of(d) == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			uint16_t d0 = d->di_u.delta[0];
			if (d0 & Z_EROFS_LI_D0_CBLKCNT) {
				if (!big_next)
					return false;
				expect += (d0 & ~Z_EROFS_LI_D0_CBLKCNT) - 1u;
			} else if (d0 >= Z_EROFS_LI_D0_CBLKCNT) {
				return false;
			}
			big_next = false;
			continue;
		}
		/* a fragment tail's head holds no block address: it is last */
		bool last_head = true;
		for (uint64_t k = lcn + 1; k < n; k++)
			if (type_of(&full[k]) != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
				last_head = false;
				break;
			}
		if (!first && d->di_u.blkaddr != expect && !(last_head && d->di_u.blkaddr == 0))
			return false;
		if (first)
			expect = d->di_u.blkaddr;
		first = false;
		/* a head's clusterofs fits its 12 low bits, as in a full index */
		expect += 1; /* one block unless a CBLKCNT follows */
		big_next = true;
	}
	return true;
}

static void entry(const struct z_erofs_lcluster_index *full, uint64_t n, uint64_t lcn,
		  unsigned int i, unsigned int *type, unsigned int *lo)
{
	if (lcn >= n) { /* padding of the last pack */
		*type = Z_EROFS_LCLUSTER_TYPE_PLAIN;
		*lo = 0;
		return;
	}
	const struct z_erofs_lcluster_index *d = &full[lcn];
	*type = type_of(d);
	if (*type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		*lo = d->di_clusterofs;
		return;
	}
	uint16_t d0 = d->di_u.delta[0];
	if (d0 == 1) /* the first after a head: say so with a block count */
		d0 = Z_EROFS_LI_D0_CBLKCNT | 1;
	if (!(d0 & Z_EROFS_LI_D0_CBLKCNT) && i == 1) /* the last of a pack keeps the distance ahead */
		*lo = d->di_u.delta[1] < Z_EROFS_LI_D0_CBLKCNT ? d->di_u.delta[1]
							       : Z_EROFS_LI_D0_CBLKCNT - 1;
	else
		*lo = d0;
}

void zindex_compact4(const struct z_erofs_lcluster_index *full, uint64_t n, uint8_t *out)
{
	for (uint64_t lcn = 0; lcn < n; lcn += 2) {
		unsigned int t[2], lo[2];
		entry(full, n, lcn, 0, &t[0], &lo[0]);
		entry(full, n, lcn + 1, 1, &t[1], &lo[1]);
		uint32_t base = 0;
		if (t[0] != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			base = full[lcn].di_u.blkaddr;
		else if (lcn + 1 < n && t[1] != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			base = full[lcn + 1].di_u.blkaddr -
			       ((lo[0] & Z_EROFS_LI_D0_CBLKCNT) ? (lo[0] & ~Z_EROFS_LI_D0_CBLKCNT) : 0);
		uint16_t v0 = (uint16_t)((t[0] << LOBITS) | lo[0]);
		uint16_t v1 = (uint16_t)((t[1] << LOBITS) | lo[1]);
		uint8_t *p = out + (lcn / 2) * Z_COMPACT4_PACK;
		memcpy(p, &v0, 2);
		memcpy(p + 2, &v1, 2);
		memcpy(p + 4, &base, 4);
	}
}

/* Entry @i of a pack: its low bits, and its type in *type. */
static unsigned int entry_bits(const uint8_t *pack, unsigned int lobits, unsigned int encodebits,
			       unsigned int i, unsigned int *type)
{
	unsigned int pos = encodebits * i;
	uint32_t v;
	memcpy(&v, pack + pos / 8, 4); /* never past the pack: its address follows */
	v >>= pos & 7;
	*type = (v >> lobits) & 3u;
	return v & ((1u << lobits) - 1);
}

/* How many lclusters on from entry @i the next head is, as far as the
 * pack tells: the last entry of a pack stores its own distance ahead. */
static uint16_t lookahead(const uint8_t *pack, unsigned int lobits, unsigned int encodebits,
			  unsigned int vcnt, unsigned int i)
{
	unsigned int lo = 0, type, d1 = 0;
	do {
		lo = entry_bits(pack, lobits, encodebits, i, &type);
		if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			return (uint16_t)d1;
		++d1;
	} while (++i < vcnt);
	if (!(lo & Z_EROFS_LI_D0_CBLKCNT))
		d1 += lo - 1;
	return (uint16_t)d1;
}

/* Blocks of the pclusters before head @i in its pack: every earlier head
 * has one, or (big pclusters) the count its first non-head records. */
static int blocks_before(const uint8_t *pack, unsigned int lobits, unsigned int encodebits,
			 bool big_pcluster, int i, uint32_t *nblk)
{
	unsigned int type, lo;
	uint32_t n = big_pcluster ? 0 : 1;
	while (i > 0) {
		--i;
		lo = entry_bits(pack, lobits, encodebits, (unsigned int)i, &type);
		if (!big_pcluster) {
			if (type == Z_EROFS_LCLUSTER_TYPE_NONHEAD)
				i -= (int)lo;
			if (i >= 0)
				++n;
			continue;
		}
		if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			++n;
		} else if (lo & Z_EROFS_LI_D0_CBLKCNT) {
			--i; /* its head: counted here */
			n += lo & ~Z_EROFS_LI_D0_CBLKCNT;
		} else if (lo <= 1) {
			return -EFSCORRUPTED; /* the first non-head carries the count */
		} else {
			i -= (int)lo - 2;
		}
	}
	*nblk = n;
	return 0;
}

int zindex_unpack(const uint8_t *pack, unsigned int packsize, unsigned int lclusterbits,
		  bool big_pcluster, unsigned int i, bool la, struct zlcluster *out)
{
	unsigned int vcnt, type;
	if (packsize == Z_COMPACT4_PACK && lclusterbits <= 14)
		vcnt = 2;
	else if (packsize == Z_COMPACT2_PACK && lclusterbits <= 12)
		vcnt = 16;
	else
		return -EOPNOTSUPP;
	if (i >= vcnt)
		return -EINVAL;
	unsigned int lobits = lclusterbits > 12 ? lclusterbits : 12;
	unsigned int encodebits = (packsize - 4) * 8 / vcnt;
	unsigned int lo = entry_bits(pack, lobits, encodebits, i, &type);

	memset(out, 0, sizeof(*out));
	out->type = type;
	if (type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		if (la)
			out->delta[1] = lookahead(pack, lobits, encodebits, vcnt, i);
		if (lo & Z_EROFS_LI_D0_CBLKCNT) {
			if (!big_pcluster)
				return -EFSCORRUPTED;
			out->cblkcnt = true;
			out->cblks = lo & ~Z_EROFS_LI_D0_CBLKCNT;
			out->delta[0] = 1;
		} else if (i + 1 != vcnt) {
			out->delta[0] = (uint16_t)lo;
		} else {
			/* the last entry holds its distance ahead: the one
			 * back comes from its neighbour */
			lo = entry_bits(pack, lobits, encodebits, i - 1, &type);
			if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
				lo = 0;
			else if (lo & Z_EROFS_LI_D0_CBLKCNT)
				lo = 1;
			out->delta[0] = (uint16_t)(lo + 1);
		}
		return 0;
	}
	out->clusterofs = (uint16_t)lo;
	uint32_t nblk, base;
	if (blocks_before(pack, lobits, encodebits, big_pcluster, (int)i, &nblk) < 0)
		return -EFSCORRUPTED;
	memcpy(&base, pack + packsize - 4, 4);
	out->pblk = base + nblk;
	return 0;
}

int zindex_compact_pos(uint64_t ebase, uint64_t totalidx, bool twobyte, unsigned int lclusterbits,
		       uint64_t lcn, uint64_t *pos, unsigned int *packsize)
{
	if (lcn >= totalidx || lclusterbits > 14)
		return -EINVAL;
	/* 4-byte packs up to the first 32-byte boundary */
	uint64_t initial = ((32 - ebase % 32) / 4) & 7;
	uint64_t twob = 0;
	if (twobyte && initial < totalidx)
		twob = (totalidx - initial) / 16 * 16;
	unsigned int shift = 2;
	*pos = ebase;
	if (lcn >= initial) {
		*pos += initial * 4;
		lcn -= initial;
		if (lcn < twob) {
			shift = 1;
		} else {
			*pos += twob * 2;
			lcn -= twob;
		}
	}
	*pos += lcn << shift;
	*packsize = shift == 1 ? Z_COMPACT2_PACK : Z_COMPACT4_PACK;
	if (shift == 1 && lclusterbits > 12)
		return -EOPNOTSUPP;
	return 0;
}

int zindex_full(const struct z_erofs_lcluster_index *d, bool big, struct zlcluster *out)
{
	memset(out, 0, sizeof(*out));
	out->type = d->di_advise & Z_EROFS_LI_LCLUSTER_TYPE_MASK;
	if (out->type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		out->partialref = d->di_advise & Z_EROFS_LI_PARTIAL_REF;
		out->clusterofs = d->di_clusterofs;
		out->pblk = d->di_u.blkaddr;
		return 0;
	}
	out->delta[0] = d->di_u.delta[0];
	out->delta[1] = d->di_u.delta[1];
	if (out->delta[0] & Z_EROFS_LI_D0_CBLKCNT) {
		if (!big)
			return -EFSCORRUPTED;
		out->cblkcnt = true;
		out->cblks = out->delta[0] & ~Z_EROFS_LI_D0_CBLKCNT;
		out->delta[0] = 1;
	}
	return 0;
}
