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

/* One lcluster decoded from a pack, in the terms of a full index. */
struct zidx_decoded {
	unsigned int type;
	uint16_t clusterofs;
	uint32_t blkaddr;
	uint16_t delta[2]; /* delta[0] keeps the CBLKCNT flag when present */
};
/* Returns 0, or -1 when the pack is inconsistent. */
int zindex_decode4(const uint8_t pack[Z_COMPACT4_PACK], unsigned int i, struct zidx_decoded *out);

#endif
