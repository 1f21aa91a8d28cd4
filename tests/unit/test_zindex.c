/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compact lcluster indexes. anole's writer makes 4-byte packs: what it
 * encodes must decode to the same extents. mkfs.erofs also makes 2-byte
 * packs (16 lclusters in 32 bytes) between 4-byte ones: packs built here
 * from the format's rules, for every lcluster size, must decode as the
 * full indexes they stand for say.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "erofs/zindex.h"
#include "util/util.h"

/* ---- the truth: full indexes ------------------------------------------- */

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

static unsigned int type_of(const struct z_erofs_lcluster_index *d)
{
	return d->di_advise & Z_EROFS_LI_LCLUSTER_TYPE_MASK;
}

/* Walk back from every lcluster to its head, through the decoded packs. */
static void check_roundtrip(const struct z_erofs_lcluster_index *idx, uint64_t n)
{
	uint8_t packs[4096];
	assert_true(zindex_compact4_size(n) <= sizeof(packs));
	assert_true(zindex_compactable(idx, n));
	zindex_compact4(idx, n, packs);
	for (uint64_t lcn = 0; lcn < n; lcn++) {
		struct zlcluster d;
		assert_int_equal(zindex_unpack(packs + (lcn / 2) * 8, 8, 12, true, lcn & 1, true, &d), 0);
		unsigned int want = type_of(&idx[lcn]);
		assert_int_equal(d.type, want);
		if (want != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			assert_int_equal(d.pblk, idx[lcn].di_u.blkaddr);
			assert_int_equal(d.clusterofs, idx[lcn].di_clusterofs);
			continue;
		}
		uint16_t wd0 = idx[lcn].di_u.delta[0];
		uint16_t wback = wd0 & Z_EROFS_LI_D0_CBLKCNT ? 1 : wd0;
		assert_int_equal(d.delta[0], wback);
		if (wd0 & Z_EROFS_LI_D0_CBLKCNT) /* the block count survives */
			assert_int_equal(d.cblks, wd0 & ~Z_EROFS_LI_D0_CBLKCNT);
		else if (d.cblkcnt) /* the packs say "one block" after a head */
			assert_true(wd0 == 1 && d.cblks == 1);
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

/* Extents that fill a physical cluster start anywhere in an lcluster:
 * their heads keep the offset in compact packs too. */
static void unaligned_heads(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index idx[64];
	uint64_t lcn = add_extent(idx, 0, 9, 3, 70);
	lcn = add_extent(idx, lcn, 12, 4, 73);
	idx[9].di_clusterofs = 1234; /* the second starts at 9 * 4096 + 1234 */
	lcn = add_extent(idx, lcn, 3, 1, 77);
	idx[21].di_clusterofs = 4095;
	lcn = add_extent(idx, lcn, 2, 0, 78); /* plain blocks start on a block */
	lcn = add_extent(idx, lcn, 4, 2, 80);
	idx[lcn - 4].di_clusterofs = 1;
	check_roundtrip(idx, lcn);
	check_roundtrip(idx, lcn - 1);
}

static void not_contiguous(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index idx[16];
	uint64_t lcn = add_extent(idx, 0, 4, 2, 10);
	lcn = add_extent(idx, lcn, 4, 2, 5); /* points back: deduplicated */
	assert_false(zindex_compactable(idx, lcn));
}

/* ---- packs of both sizes, written from the format's rules -------------- */

#define MAXLCL 4000

struct truth {
	struct z_erofs_lcluster_index idx[MAXLCL + 16]; /* zeros past the end: plain heads */
	uint64_t n;
	bool big;
};

static uint32_t rnd(uint32_t *s, uint32_t below)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 8) % below;
}

/* Random extents laid out one after another from block 1000: heads of
 * three kinds at any offset in their lcluster, plain ones one lcluster
 * long, big pclusters with their block count after the head. */
static void make_truth(struct truth *t, uint64_t n, unsigned int lbits, bool big, uint32_t seed)
{
	uint32_t blk = 1000;
	memset(t, 0, sizeof(*t));
	t->n = n;
	t->big = big;
	for (uint64_t lcn = 0; lcn < n;) {
		uint32_t kind = rnd(&seed, 4), len = kind == 0 ? 1 : 1 + rnd(&seed, kind == 3 ? 300 : 40);
		len = (uint32_t)MIN((uint64_t)len, n - lcn);
		uint32_t cblks = big ? 1 + rnd(&seed, len) : 1;
		struct z_erofs_lcluster_index *h = &t->idx[lcn];
		h->di_advise = kind == 0 ? Z_EROFS_LCLUSTER_TYPE_PLAIN
			       : kind == 2 ? Z_EROFS_LCLUSTER_TYPE_HEAD2 : Z_EROFS_LCLUSTER_TYPE_HEAD1;
		h->di_clusterofs = lcn ? (uint16_t)rnd(&seed, 1u << lbits) : 0;
		h->di_u.blkaddr = blk;
		for (uint32_t k = 1; k < len; k++) {
			struct z_erofs_lcluster_index *d = &t->idx[lcn + k];
			d->di_advise = Z_EROFS_LCLUSTER_TYPE_NONHEAD;
			d->di_u.delta[0] = k == 1 && big ? (uint16_t)(Z_EROFS_LI_D0_CBLKCNT | cblks)
							 : (uint16_t)k;
			d->di_u.delta[1] = (uint16_t)(len - k);
		}
		blk += len > 1 ? cblks : 1;
		lcn += len;
	}
}

/* Put entry value @v at bit @pos, little-endian. */
static void put_bits(uint8_t *p, unsigned int pos, unsigned int nbits, uint32_t v)
{
	for (unsigned int k = 0; k < nbits; k++, pos++)
		if (v >> k & 1)
			p[pos / 8] |= (uint8_t)(1u << (pos & 7));
}

/* One pack of @vcnt entries for lclusters [first, first + vcnt). */
static void write_pack(const struct truth *t, uint64_t first, unsigned int vcnt,
		       unsigned int packsize, unsigned int lbits, uint8_t *out)
{
	unsigned int lobits = lbits > 12 ? lbits : 12, encodebits = (packsize - 4) * 8 / vcnt;
	int firsthead = -1;
	memset(out, 0, packsize);
	for (unsigned int i = 0; i < vcnt; i++) {
		uint64_t lcn = first + i;
		if (lcn >= t->n)
			continue; /* a plain head at offset 0: zeros */
		const struct z_erofs_lcluster_index *d = &t->idx[lcn];
		unsigned int type = type_of(d), lo;
		if (type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			lo = d->di_clusterofs;
			if (firsthead < 0)
				firsthead = (int)i;
		} else if (d->di_u.delta[0] & Z_EROFS_LI_D0_CBLKCNT) {
			lo = d->di_u.delta[0];
		} else if (i + 1 == vcnt) { /* the last keeps its distance ahead */
			lo = MIN(d->di_u.delta[1], Z_EROFS_LI_D0_CBLKCNT - 1u);
		} else {
			lo = d->di_u.delta[0];
		}
		put_bits(out, encodebits * i, lobits + 2, type << lobits | lo);
	}
	/* the address heads count from: before the first head, the blocks
	 * of a pcluster whose count the pack holds ahead of it (big), or the
	 * one block every head adds (not big) */
	uint32_t base = 0;
	if (firsthead >= 0) {
		base = t->idx[first + (unsigned int)firsthead].di_u.blkaddr;
		uint16_t d0 = t->idx[first].di_u.delta[0];
		if (!t->big)
			base -= 1;
		else if (firsthead > 0 && (d0 & Z_EROFS_LI_D0_CBLKCNT))
			base -= d0 & ~Z_EROFS_LI_D0_CBLKCNT;
	}
	memcpy(out + packsize - 4, &base, 4);
}

/* The compact area of an inode whose map header ends at @ebase. */
static size_t write_compact(const struct truth *t, uint64_t ebase, bool twobyte,
			    unsigned int lbits, uint8_t *out)
{
	size_t len = 0;
	for (uint64_t lcn = 0; lcn < t->n;) {
		uint64_t pos;
		unsigned int packsize;
		assert_int_equal(zindex_compact_pos(ebase, t->n, twobyte, lbits, lcn, &pos, &packsize), 0);
		unsigned int vcnt = packsize == 8 ? 2 : 16;
		assert_int_equal(pos % packsize, 0); /* packs start aligned */
		write_pack(t, lcn, vcnt, packsize, lbits, out + (pos - ebase));
		len = (size_t)(pos - ebase) + packsize;
		lcn += vcnt;
	}
	return len;
}

/* The next head's distance from @lcn (or the end's). */
static uint64_t next_head(const struct truth *t, uint64_t lcn)
{
	uint64_t k = lcn + 1;
	while (k < t->n && type_of(&t->idx[k]) == Z_EROFS_LCLUSTER_TYPE_NONHEAD)
		k++;
	return k - lcn;
}

static void check_decode(const struct truth *t, uint64_t ebase, bool twobyte, unsigned int lbits,
			 unsigned int *seen2b)
{
	static uint8_t area[MAXLCL * 4 + 64];
	memset(area, 0, sizeof(area));
	write_compact(t, ebase, twobyte, lbits, area);
	for (uint64_t lcn = 0; lcn < t->n; lcn++) {
		uint64_t pos;
		unsigned int packsize;
		struct zlcluster d;
		assert_int_equal(zindex_compact_pos(ebase, t->n, twobyte, lbits, lcn, &pos, &packsize), 0);
		uint64_t at = pos & ~(uint64_t)(packsize - 1);
		unsigned int i = (unsigned int)((pos - at) >> (packsize == 8 ? 2 : 1));
		*seen2b += packsize == 32;
		assert_int_equal(zindex_unpack(area + (at - ebase), packsize, lbits, t->big, i, true, &d), 0);
		const struct z_erofs_lcluster_index *w = &t->idx[lcn];
		assert_int_equal(d.type, type_of(w));
		if (d.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			assert_int_equal(d.clusterofs, w->di_clusterofs);
			assert_int_equal(d.pblk, w->di_u.blkaddr);
			continue;
		}
		uint16_t wd0 = w->di_u.delta[0];
		if (wd0 & Z_EROFS_LI_D0_CBLKCNT) {
			assert_true(d.cblkcnt);
			assert_int_equal(d.cblks, wd0 & ~Z_EROFS_LI_D0_CBLKCNT);
			assert_int_equal(d.delta[0], 1);
		} else {
			assert_false(d.cblkcnt);
			assert_int_equal(d.delta[0], wd0);
		}
		/* ahead: exact within the pack, and through the distance its
		 * last entry keeps; short of the next head, never past it */
		uint64_t want = next_head(t, lcn);
		unsigned int vcnt = packsize == 8 ? 2 : 16;
		assert_true(d.delta[1] >= 1 && d.delta[1] <= want);
		const struct z_erofs_lcluster_index *l = &t->idx[lcn + (vcnt - 1 - i)];
		if (i + want < vcnt || (type_of(l) == Z_EROFS_LCLUSTER_TYPE_NONHEAD &&
					!(l->di_u.delta[0] & Z_EROFS_LI_D0_CBLKCNT)))
			assert_int_equal(d.delta[1], want);
	}
}

/* Both pack sizes, every lcluster size the kernel reads them for, every
 * alignment of the index start, big pclusters or not. */
static void packs_every_geometry(void **state)
{
	(void)state;
	static struct truth t;
	unsigned int seen2b = 0;
	uint32_t seed = 1;
	for (unsigned int lbits = 9; lbits <= 14; lbits++)
		for (unsigned int align = 0; align < 32; align += 8)
			for (int big = 0; big < 2; big++)
				for (uint64_t n = 1; n < MAXLCL; n = n * 3 + (seed & 7)) {
					make_truth(&t, n, lbits, big, seed++);
					bool twobyte = lbits <= 12;
					check_decode(&t, 4096 + align, twobyte, lbits, &seen2b);
					check_decode(&t, 4096 + align, false, lbits, &seen2b);
				}
	assert_true(seen2b > 10000);
}

/* Where each lcluster's entry is: 4-byte packs to a 32-byte boundary,
 * 2-byte packs for whole groups of 16, 4-byte packs for the rest. */
static void pack_positions(void **state)
{
	(void)state;
	uint64_t pos;
	unsigned int ps;
	/* the map header ends 8 bytes past a 32-byte boundary: 6 first */
	const uint64_t e = 4096 + 8;
	for (uint64_t lcn = 0; lcn < 40; lcn++) {
		assert_int_equal(zindex_compact_pos(e, 40, true, 12, lcn, &pos, &ps), 0);
		if (lcn < 6)
			assert_true(pos == e + 4 * lcn && ps == 8);
		else if (lcn < 38)
			assert_true(pos == e + 24 + 2 * (lcn - 6) && ps == 32);
		else
			assert_true(pos == e + 24 + 64 + 4 * (lcn - 38) && ps == 8);
	}
	/* fewer than the first 4-byte stretch: no 2-byte packs */
	assert_int_equal(zindex_compact_pos(e, 5, true, 12, 4, &pos, &ps), 0);
	assert_true(pos == e + 16 && ps == 8);
	/* 4-byte packs only, without the advice */
	assert_int_equal(zindex_compact_pos(e, 40, false, 12, 39, &pos, &ps), 0);
	assert_true(pos == e + 4 * 39 && ps == 8);
	/* aligned start: 2-byte packs at once */
	assert_int_equal(zindex_compact_pos(4096, 40, true, 12, 0, &pos, &ps), 0);
	assert_true(pos == 4096 && ps == 32);
	/* past the end, lclusters too big for compact indexes */
	assert_int_equal(zindex_compact_pos(e, 40, true, 12, 40, &pos, &ps), -EINVAL);
	assert_int_equal(zindex_compact_pos(e, 40, false, 15, 0, &pos, &ps), -EINVAL);
	/* 2-byte packs hold lclusters of at most 4 KiB */
	assert_int_equal(zindex_compact_pos(4096, 40, true, 13, 0, &pos, &ps), -EOPNOTSUPP);
}

/* What the kernel refuses in a pack. */
static void bad_packs(void **state)
{
	(void)state;
	uint8_t p[32] = {0};
	struct zlcluster d;
	/* a block count where pclusters are not big */
	put_bits(p, 16, 14, Z_EROFS_LCLUSTER_TYPE_NONHEAD << 12 | Z_EROFS_LI_D0_CBLKCNT | 3);
	assert_int_equal(zindex_unpack(p, 8, 12, false, 1, false, &d), -EFSCORRUPTED);
	assert_int_equal(zindex_unpack(p, 8, 12, true, 1, false, &d), 0);
	assert_true(d.cblkcnt && d.cblks == 3 && d.delta[0] == 1);
	/* big pclusters: a head after a plain back reference of 1 */
	memset(p, 0, sizeof(p));
	put_bits(p, 0, 14, Z_EROFS_LCLUSTER_TYPE_NONHEAD << 12 | 1);
	put_bits(p, 16, 14, Z_EROFS_LCLUSTER_TYPE_HEAD1 << 12);
	assert_int_equal(zindex_unpack(p, 8, 12, true, 1, false, &d), -EFSCORRUPTED);
	assert_int_equal(zindex_unpack(p, 8, 12, false, 1, false, &d), 0);
	/* geometry: 2-byte packs for 8 KiB lclusters, entries past the pack */
	assert_int_equal(zindex_unpack(p, 32, 13, true, 0, false, &d), -EOPNOTSUPP);
	assert_int_equal(zindex_unpack(p, 8, 15, true, 0, false, &d), -EOPNOTSUPP);
	assert_int_equal(zindex_unpack(p, 8, 12, true, 2, false, &d), -EINVAL);
	assert_int_equal(zindex_unpack(p, 16, 12, true, 0, false, &d), -EOPNOTSUPP);
}

/* Full indexes: heads keep PARTIAL_REF, block counts need big pclusters. */
static void full_entries(void **state)
{
	(void)state;
	struct z_erofs_lcluster_index i = {.di_advise = Z_EROFS_LCLUSTER_TYPE_HEAD2 |
							Z_EROFS_LI_PARTIAL_REF,
					   .di_clusterofs = 77, .di_u.blkaddr = 1234};
	struct zlcluster d;
	assert_int_equal(zindex_full(&i, false, &d), 0);
	assert_true(d.type == Z_EROFS_LCLUSTER_TYPE_HEAD2 && d.partialref && d.clusterofs == 77 &&
		    d.pblk == 1234);
	i = (struct z_erofs_lcluster_index){.di_advise = Z_EROFS_LCLUSTER_TYPE_NONHEAD,
					    .di_u.delta = {Z_EROFS_LI_D0_CBLKCNT | 9, 5}};
	assert_int_equal(zindex_full(&i, false, &d), -EFSCORRUPTED);
	assert_int_equal(zindex_full(&i, true, &d), 0);
	assert_true(d.cblkcnt && d.cblks == 9 && d.delta[0] == 1 && d.delta[1] == 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mixed_extents),
		cmocka_unit_test(fragment_tail),
		cmocka_unit_test(unaligned_heads),
		cmocka_unit_test(not_contiguous),
		cmocka_unit_test(packs_every_geometry),
		cmocka_unit_test(pack_positions),
		cmocka_unit_test(bad_packs),
		cmocka_unit_test(full_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
