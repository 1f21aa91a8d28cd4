/* SPDX-License-Identifier: Apache-2.0 */
/* Compact lcluster indexes: what is encoded decodes to the same extents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "erofs/zindex.h"

/* Append an extent of @nlcl lclusters: compressed into @cblocks blocks at
 * @blk (cblocks 0 = plain, one block per lcluster). */
static uint64_t add_extent(struct z_erofs_lcluster_index *idx, uint64_t lcn, uint32_t nlcl,
			   uint32_t cblocks, uint32_t blk)
{
	for (uint32_t k = 0; k < nlcl; k++) {
		struct z_erofs_lcluster_index *d = &idx[lcn + k];
		memset(d, 0, sizeof(*d));
		if (!cblocks) {
			d->di_advise = Z_EROFS_LCLUSTER_TYPE_PLAIN;
			d->di_u.blkaddr = blk + k;
		} else if (!k) {
			d->di_advise = Z_EROFS_LCLUSTER_TYPE_HEAD1;
			d->di_u.blkaddr = blk;
		} else {
			d->di_advise = Z_EROFS_LCLUSTER_TYPE_NONHEAD;
			d->di_u.delta[0] = k == 1 ? (uint16_t)(Z_EROFS_LI_D0_CBLKCNT | cblocks) : (uint16_t)k;
			d->di_u.delta[1] = (uint16_t)(nlcl - k);
		}
	}
	return lcn + nlcl;
}

/* Walk back from every lcluster to its head, through the decoded packs. */
static void check_roundtrip(const struct z_erofs_lcluster_index *idx, uint64_t n)
{
	uint8_t packs[4096];
	assert_true(zindex_compact4_size(n) <= sizeof(packs));
	assert_true(zindex_compactable(idx, n));
	zindex_compact4(idx, n, packs);
	for (uint64_t lcn = 0; lcn < n; lcn++) {
		struct zidx_decoded d;
		assert_int_equal(zindex_decode4(packs + (lcn / 2) * 8, lcn & 1, &d), 0);
		unsigned int want = idx[lcn].di_advise & 3;
		assert_int_equal(d.type, want);
		if (want != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			assert_int_equal(d.blkaddr, idx[lcn].di_u.blkaddr);
			continue;
		}
		uint16_t wd0 = idx[lcn].di_u.delta[0];
		uint16_t back = d.delta[0] & Z_EROFS_LI_D0_CBLKCNT ? 1 : d.delta[0];
		uint16_t wback = wd0 & Z_EROFS_LI_D0_CBLKCNT ? 1 : wd0;
		assert_int_equal(back, wback);
		if (wd0 & Z_EROFS_LI_D0_CBLKCNT)
			assert_int_equal(d.delta[0], wd0); /* the block count survives */
		/* the lookahead may stop short at a pack end, never overshoot */
		assert_true(d.delta[1] >= 1 && d.delta[1] <= idx[lcn].di_u.delta[1]);
	}
}

static void mixed_extents(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index idx[300];
	uint64_t lcn = 0;
	uint32_t blk = 100;
	lcn = add_extent(idx, lcn, 4, 2, blk), blk += 2;   /* head at pack start */
	lcn = add_extent(idx, lcn, 1, 0, blk), blk += 1;   /* one plain block */
	lcn = add_extent(idx, lcn, 3, 1, blk), blk += 1;   /* head at pack end */
	lcn = add_extent(idx, lcn, 2, 0, blk), blk += 2;   /* two plain blocks */
	lcn = add_extent(idx, lcn, 64, 17, blk), blk += 17;
	lcn = add_extent(idx, lcn, 5, 3, blk), blk += 3;
	lcn = add_extent(idx, lcn, 7, 0, blk), blk += 7;
	lcn = add_extent(idx, lcn, 2, 1, blk), blk += 1;
	check_roundtrip(idx, lcn);   /* odd and even totals */
	check_roundtrip(idx, lcn - 1);
}

static void fragment_tail(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index idx[64];
	uint64_t lcn = add_extent(idx, 0, 8, 3, 40);
	/* the tail: a head with no blocks, then plain back references */
	uint64_t tail = lcn;
	for (; lcn < tail + 5; lcn++) {
		memset(&idx[lcn], 0, sizeof(idx[lcn]));
		idx[lcn].di_advise = lcn == tail ? Z_EROFS_LCLUSTER_TYPE_HEAD1 : Z_EROFS_LCLUSTER_TYPE_NONHEAD;
		if (lcn != tail) {
			idx[lcn].di_u.delta[0] = (uint16_t)(lcn - tail);
			idx[lcn].di_u.delta[1] = (uint16_t)(tail + 5 - lcn);
		}
	}
	check_roundtrip(idx, lcn);
}

static void not_contiguous(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index idx[16];
	uint64_t lcn = add_extent(idx, 0, 4, 2, 10);
	lcn = add_extent(idx, lcn, 4, 2, 5); /* points back: deduplicated */
	assert_false(zindex_compactable(idx, lcn));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mixed_extents),
		cmocka_unit_test(fragment_tail),
		cmocka_unit_test(not_contiguous),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
