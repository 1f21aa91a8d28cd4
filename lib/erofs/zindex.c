/* SPDX-License-Identifier: Apache-2.0 */
#include "erofs/zindex.h"

#include <string.h>

#define LOBITS 12 /* max(lcluster bits, bit of D0_CBLKCNT + 1) for 4 KiB lclusters */
#define LOMASK ((1u << LOBITS) - 1)

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
		if (d->di_clusterofs)
			return false;
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

int zindex_decode4(const uint8_t pack[Z_COMPACT4_PACK], unsigned int i, struct zidx_decoded *out)
{
	uint16_t v[2];
	uint32_t base;
	memcpy(&v[0], pack, 2);
	memcpy(&v[1], pack + 2, 2);
	memcpy(&base, pack + 4, 4);
	unsigned int t[2] = {(v[0] >> LOBITS) & 3u, (v[1] >> LOBITS) & 3u};
	unsigned int lo[2] = {v[0] & LOMASK, v[1] & LOMASK};

	memset(out, 0, sizeof(*out));
	out->type = t[i];
	if (t[i] != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		out->clusterofs = (uint16_t)lo[i];
		uint32_t nblk = 0;
		if (i == 1 && t[0] == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			if (lo[0] & Z_EROFS_LI_D0_CBLKCNT)
				nblk = lo[0] & ~Z_EROFS_LI_D0_CBLKCNT;
			else if (lo[0] <= 1)
				return -1;
		} else if (i == 1) {
			nblk = 1;
		}
		out->blkaddr = base + nblk;
		return 0;
	}
	if (lo[i] & Z_EROFS_LI_D0_CBLKCNT)
		out->delta[0] = (uint16_t)lo[i];
	else if (i == 0)
		out->delta[0] = (uint16_t)lo[0];
	else if (t[0] != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
		out->delta[0] = 1;
	else
		out->delta[0] = (uint16_t)((lo[0] & Z_EROFS_LI_D0_CBLKCNT) ? 2 : lo[0] + 1);

	/* distance to the next head, as far as this pack tells */
	if (i == 0) {
		if (t[1] != Z_EROFS_LCLUSTER_TYPE_NONHEAD)
			out->delta[1] = 1;
		else
			out->delta[1] = (uint16_t)(2 + ((lo[1] & Z_EROFS_LI_D0_CBLKCNT) ? 0 : lo[1] - 1));
	} else {
		out->delta[1] = (uint16_t)((lo[1] & Z_EROFS_LI_D0_CBLKCNT) ? 1 : lo[1]);
	}
	if (!out->delta[0] || !out->delta[1])
		return -1;
	return 0;
}
