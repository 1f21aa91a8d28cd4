/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compacted lcluster indexes (4-byte amortized packs): two lclusters in 8
 * bytes, 16 bits each (type and offset or distance), then the block
 * address of the pack's first head; later heads' addresses are implied by
 * the compressed block counts before them, so a file's pclusters must be
 * contiguous and in order.
 */
#ifndef ANOLE_ZINDEX_H
#define ANOLE_ZINDEX_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "anole/erofs_fs.h"

#define Z_COMPACT4_PACK 8u

/* Bytes the compact form of @n lclusters takes. */
static inline uint64_t zindex_compact4_size(uint64_t n)
{
	return ((n + 1) / 2) * Z_COMPACT4_PACK;
}

/* Can these full indexes be expressed compactly (contiguous pclusters)? */
bool zindex_compactable(const struct z_erofs_lcluster_index *full, uint64_t n);
void zindex_compact4(const struct z_erofs_lcluster_index *full, uint64_t n, uint8_t *out);

/*
 * Reading compact indexes, as the kernel's fs/erofs/zmap.c does. A pack
 * holds @vcnt lclusters: 2 in 8 bytes ("4-byte" packs) or 16 in 32 bytes
 * ("2-byte" packs, Z_EROFS_ADVISE_COMPACTED_2B, lclusters of at most 4 KiB),
 * each entry 2 type bits above max(lclusterbits, 12) low bits, bit-packed
 * little-endian, then the 32-bit block address the pack's block count
 * starts from. An inode's packs start 8-aligned after its map header:
 * 4-byte packs up to a 32-byte boundary, then 2-byte packs for as many
 * whole groups of 16 as remain (when advised), then 4-byte packs again.
 */
#define Z_COMPACT2_PACK 32u

/* One lcluster, in the terms of a full index. */
struct zlcluster {
	unsigned int type;   /* Z_EROFS_LCLUSTER_TYPE_* */
	uint16_t clusterofs; /* heads: where the extent starts in the lcluster */
	uint16_t delta[2];   /* non-heads: back to the head (1 with a block
				count), ahead to the next head */
	uint32_t pblk;       /* heads: the pcluster's first block */
	bool cblkcnt;        /* a non-head holding its pcluster's block count
				(D0_CBLKCNT), in cblks */
	uint32_t cblks;
	bool partialref;     /* full heads: Z_EROFS_LI_PARTIAL_REF */
};

/* Where lcluster @lcn's entry lies, relative to the map header's end
 * @ebase (an absolute byte offset, 8-aligned), for an inode with
 * @totalidx entries: *pos its byte offset, *packsize 8 or 32. Returns 0,
 * -EINVAL past the last entry, -EOPNOTSUPP for a geometry the kernel does
 * not read. */
int zindex_compact_pos(uint64_t ebase, uint64_t totalidx, bool twobyte, unsigned int lclusterbits,
		       uint64_t lcn, uint64_t *pos, unsigned int *packsize);
/* Decode entry @i of the pack at @pack (@packsize bytes). @lookahead also
 * computes delta[1] (its distance to the next head, as far as the pack
 * tells). Returns 0, -EFSCORRUPTED or -EOPNOTSUPP. */
int zindex_unpack(const uint8_t *pack, unsigned int packsize, unsigned int lclusterbits,
		  bool big_pcluster, unsigned int i, bool lookahead, struct zlcluster *out);
/* A full index entry. @big: the inode advises a big pcluster of either
 * head kind. Returns 0 or -EFSCORRUPTED. */
int zindex_full(const struct z_erofs_lcluster_index *d, bool big, struct zlcluster *out);

#endif
