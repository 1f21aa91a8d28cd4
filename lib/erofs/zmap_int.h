/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files' state and mapping steps, shared by their files only:
 *   zmap.c        the superblock's compression configuration, an inode's
 *                 map header and tail, zmap_extent() and zmap_map()
 *   zmap_index.c  lcluster indexes, full and compact (the kernel's
 *                 z_erofs_map_blocks_fo)
 *   zmap_ext.c    encoded extent records (Z_EROFS_ADVISE_EXTENTS)
 *   zread.c       decoding (zdecode), the decoded-extent cache and
 *                 zmap_pread()
 */
#ifndef ANOLE_ZMAP_INT_H
#define ANOLE_ZMAP_INT_H

#include <sys/stat.h>

#include "compress/codec.h"
#include "erofs/reader.h"
#include "erofs/zindex.h"
#include "erofs/zmap.h"

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

static inline bool is_compact(const struct anole_inode *ino)
{
	return ino->layout == EROFS_INODE_COMPRESSED_COMPACT;
}

/* Encoded extents: the advice's bits 1-2 are then the record size */
static inline bool is_ext(const struct anole_inode *ino)
{
	return !is_compact(ino) && (ino->z_advise & Z_EROFS_ADVISE_EXTENTS);
}

/* What finding the tail extent (the kernel's EROFS_GET_BLOCKS_FINDTAIL)
 * learns about the inode. */
struct ztail {
	uint64_t la;        /* where the tail extent begins */
	uint64_t idata_pos; /* the inline pcluster: right after the last index */
	uint32_t pblk;      /* its head's block address: a fragment offset's high half */
};

/* Encoded extents: a record's size, and where the records start. */
static inline unsigned int ext_recsz(const struct anole_inode *ino)
{
	return 4u << ((ino->z_advise >> 1) & 3u);
}

static inline uint64_t ext_start(const struct anole_inode *ino, uint64_t body_end)
{
	uint64_t hend = ROUND_UP_8(body_end) + sizeof(struct z_erofs_map_header);
	return ROUND_UP(hend, (uint64_t)ext_recsz(ino));
}

/* zmap_index.c: the extent holding byte @ofs from lcluster indexes; with
 * @t, what finding the tail extent learns. */
int zmap_fo(struct zrec *m, uint64_t ofs, struct zextent *x, struct ztail *t);
/* zmap_ext.c: the extent holding byte @ofs from encoded extent records. */
int zmap_ext(struct zrec *m, uint64_t ofs, struct zextent *x);

#endif
