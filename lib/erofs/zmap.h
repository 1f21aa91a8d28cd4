/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files, read as the kernel's fs/erofs/zmap.c maps them and its
 * decompressors decode them. Two separate steps: zmap_extent() maps a file
 * offset to its extent (it reads metadata: lcluster indexes or encoded
 * extent records, the map header, the inline tail's place); zdecode()
 * turns an extent's stored bytes into the file's bytes, a pure function of
 * those bytes and the extent's form and lengths, so that extents can be
 * decoded on any thread. The reader (reader.c) calls in through the hooks
 * at the end.
 */
#ifndef ANOLE_ZMAP_H
#define ANOLE_ZMAP_H

#include "anole/erofs_fs.h"
#include "util/util.h"

/* How an extent's bytes are stored: an algorithm (Z_EROFS_COMPRESSION_*),
 * or plain, from the pcluster's start (shifted) or rotated within its
 * block so that each byte keeps its offset in the block (interlaced). */
enum {
	ZFORM_SHIFTED = Z_EROFS_COMPRESSION_MAX,
	ZFORM_INTERLACED,
};

/* Where an extent's bytes are. */
enum zwhere {
	ZX_BLOCKS,   /* pcluster at byte @pa of the unified data address space */
	ZX_INLINE,   /* inline after the indexes, image byte @pa (ztailpacking) */
	ZX_FRAGMENT, /* in the packed inode, from byte @frag_off */
	ZX_HOLE,     /* nowhere: zeros (encoded extents without data) */
};

struct zextent {
	uint64_t la, llen; /* the file's bytes [la, la + llen) */
	uint64_t pa;       /* ZX_BLOCKS, ZX_INLINE */
	uint32_t plen;     /* stored bytes there */
	uint8_t where;     /* enum zwhere */
	uint8_t form;      /* ZX_BLOCKS, ZX_INLINE: Z_EROFS_COMPRESSION_* or ZFORM_* */
	bool partial;      /* the pcluster decodes to more: this extent is its
			      first llen bytes (Z_EROFS_LI_PARTIAL_REF, dedupe) */
	uint64_t frag_off; /* ZX_FRAGMENT: the packed inode's byte at @la */
};

/* The decoding of one extent's stored bytes. */
struct zdecode_req {
	const uint8_t *in;    /* the stored bytes */
	uint32_t inlen;
	uint8_t form;         /* as struct zextent */
	bool partial;         /* as struct zextent */
	bool zero_padding;    /* ZERO_PADDING: lz4 data ends at the pcluster's
				 end, after zeros (the other algorithms always) */
	uint32_t blksz;
	uint32_t in_blkoff;   /* where @in starts in its block (pa % blksz) */
	uint32_t out_blkoff;  /* where the extent starts in its block (la % blksz) */
	uint32_t window;      /* the image's lzma dictionary or zstd window; 0 none */
};
/* Decode the extent's @outlen bytes into @out. Returns 0, -EFSCORRUPTED,
 * or -ENOMEM. */
int zdecode(const struct zdecode_req *rq, uint8_t *out, size_t outlen);

/* ---- hooks for reader.c ---------------------------------------------- */

struct zimage;
/* After the superblock is read: the compression configuration records,
 * checked as the kernel checks them, and the packed inode's nid. */
int zmap_image_init(struct anole_image *img, struct zimage **out);
void zmap_image_free(struct zimage *z);
/* A compressed inode's map header (and, as the kernel finds it at first
 * use, where its tail extent begins). @body_end: the end of its xattrs. */
int zmap_inode_init(struct anole_image *img, struct anole_inode *ino, uint32_t iu,
		    uint64_t body_end);
/* The extent holding byte @off (< size) of a compressed inode. */
int zmap_extent(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		struct zextent *x);
/* anole_map for compressed inodes: *phys is the pcluster's address (0
 * when inline or in the packed inode). */
int zmap_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	     uint64_t *phys, uint64_t *run);
/* anole_pread for compressed inodes; @off + @len within the file. */
ssize_t zmap_pread(struct anole_image *img, const struct anole_inode *ino, void *buf, size_t len,
		   uint64_t off);
/* For decoding an extent (ZX_BLOCKS, ZX_INLINE) away from the reader, on
 * another thread: its x->plen stored bytes read into @in, the request that
 * decodes them (@in kept), and the error to report when zdecode() returned
 * @r < 0. Only zdecode() itself may run on another thread. */
int zmap_stored(struct anole_image *img, const struct anole_inode *ino, const struct zextent *x,
		uint8_t *in);
/* Where those stored bytes lie, for another thread to read: *fd at *at
 * (checked to be within it), or *fd -1 when not in a file (ZX_INLINE:
 * read them with zmap_stored). */
int zmap_stored_at(struct anole_image *img, const struct anole_inode *ino,
		   const struct zextent *x, int *fd, uint64_t *at);
void zmap_request(struct anole_image *img, const struct zextent *x, const uint8_t *in,
		  struct zdecode_req *rq);
int zmap_decode_error(struct anole_image *img, const struct anole_inode *ino,
		      const struct zextent *x, int r);
/* The packed inode's nid (0: none), and the inode itself. */
uint64_t zmap_packed_nid(const struct anole_image *img);
int zmap_packed_inode(struct anole_image *img, struct anole_inode *out);

#endif
