/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The image reader's own state, shared by its files only (check, extract
 * and the rest use erofs/reader.h's accessors):
 *   reader.c        the superblock, the metadata block cache and the
 *                   metabox, opening and closing an image
 *   reader_dev.c    the device table: extra devices' files, the unified
 *                   data address space, where data bytes are
 *   reader_inode.c  inodes, and flat, inline and chunk-based data
 *   reader_dir.c    directories and path lookup
 *   reader_xattr.c  xattrs and the long xattr name prefix table
 *   zmap*.c, zread.c  compressed files (erofs/zmap.h)
 */
#ifndef ANOLE_IMAGE_H
#define ANOLE_IMAGE_H

#include "anole/erofs_fs.h"
#include "erofs/reader.h"
#include "erofs/xattr.h"

#define CACHE_SLOTS 64

struct cached_block {
	uint64_t blk;
	bool valid;
	uint8_t *data;
};

/* An extra device: a data blob, a blob device or a tar, addressed by
 * device id (chunk indexes) or through the unified block address space. */
struct img_dev {
	int fd;
	uint64_t start, len; /* bytes of the unified address space it covers (start 0: none) */
	uint64_t size;       /* its bytes, from the device table */
	char *path;
	char tag[300]; /* "sha256:HEX", "no tag" or tag "TEXT" */
};

struct anole_image {
	int fd;
	char *path;
	struct img_dev *devs;
	unsigned int ndevs;
	uint16_t devid_mask; /* chunk indexes' device ids are masked, as the kernel does */
	struct anole_image_info info;
	struct anole_error err;
	unsigned int blkbits;
	uint32_t blksz;
	uint64_t size; /* blocks * blksz, never more than the file */
	struct cached_block cache[CACHE_SLOTS];
	uint8_t *cache_mem;
	struct zimage *z; /* compressed files (zmap.c) */
	/* METABOX: inodes whose nid has bit 63 set live in this inode's data */
	struct anole_inode mbox;
	bool has_mbox, in_mbox_read;
	uint8_t *mbox_buf; /* one block, read before it enters the cache */
	struct xattr_lprefix *lpfx; /* long xattr name prefixes */
	unsigned int nlpfx;
	bool xattr_filter; /* inodes' h_name_filter is what Linux's getxattr trusts */
	struct anole_image_options opts;
};

/* Metadata positions with this bit lie in the metabox inode's data, not
 * in the image: img_meta_read() follows it, bounds follow meta_limit(). */
#define META_MBOX (1ull << 63)

/* Where the metadata space holding @pos ends: the image, or the metabox. */
static inline uint64_t meta_limit(const struct anole_image *img, uint64_t pos)
{
	if (pos & META_MBOX)
		return img->has_mbox ? META_MBOX | img->mbox.size : META_MBOX;
	return img->size;
}

/* reader_dev.c */
/* The device table (DEVICE_TABLE): each slot's blob opened now. */
int img_open_devices(struct anole_image *img, const struct erofs_super_block *sb);
/* The file and offset holding the data bytes [pa, pa+len) of device @dev
 * (a chunk index's masked device id), or with @dev 0 of the unified
 * address space. */
int img_locate_dev(struct anole_image *img, uint64_t nid, unsigned int dev, uint64_t pa,
		   uint64_t len, int *fd, uint64_t *off);
/* Are blocks [blk, blk+n) in the image or wholly in one device of the
 * unified address space (@dev 0), or in device @dev? */
bool img_blocks_exist(const struct anole_image *img, unsigned int dev, uint64_t blk, uint64_t n);

/* reader_xattr.c */
/* The long xattr name prefix table (xattr_prefix_count entries). */
int img_load_xattr_prefixes(struct anole_image *img);

#endif
