/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inodes, and the data of flat, inline and chunk-based files (compressed
 * ones go to erofs/zmap.h): every field checked against the image.
 */
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "erofs/image.h"
#include "erofs/zmap.h"

/* ---- inodes ------------------------------------------------------------ */

/* Are the data blocks of a flat file in the image? */
static int check_flat_range(struct anole_image *img, const struct anole_inode *ino,
			    uint64_t nblocks)
{
	if (!nblocks)
		return 0;
	if (!img_blocks_exist(img, 0, ino->startblk, nblocks))
		return img_corrupt(img, ino->nid, ino->pos,
				   "data blocks %llu..%llu lie outside the image (%llu blocks)",
				   (unsigned long long)ino->startblk,
				   (unsigned long long)(ino->startblk + nblocks - 1),
				   (unsigned long long)img->info.blocks);
	return 0;
}

/* Where inode @nid lies: in the metadata area, or (bit 63) in the
 * metabox inode's data. */
static int inode_pos(struct anole_image *img, uint64_t nid, uint64_t *pos)
{
	uint64_t slot = nid & EROFS_NID_MASK;
	uint64_t base = nid >> EROFS_NID_METABOX_BIT
				? META_MBOX
				: (uint64_t)img->info.meta_blkaddr << img->blkbits;
	uint64_t limit = meta_limit(img, base);
	*pos = base;
	if (slot > ((limit & ~META_MBOX) >> EROFS_ISLOT_BITS) ||
	    base + (slot << EROFS_ISLOT_BITS) + 32 > limit)
		return img_corrupt(img, nid, base, "nid out of range");
	*pos = base + (slot << EROFS_ISLOT_BITS);
	return 0;
}

/* The fields both inode versions have, by the same names (of their
 * own widths). */
#define INODE_COMMON(ino, iu, raw)                        \
	do {                                              \
		(ino)->xattr_icount = (raw).i_xattr_icount; \
		(ino)->mode = (raw).i_mode;               \
		(ino)->size = (raw).i_size;               \
		*(iu) = (raw).i_u;                        \
		(ino)->ino = (raw).i_ino;                 \
		(ino)->uid = (raw).i_uid;                 \
		(ino)->gid = (raw).i_gid;                 \
	} while (0)

/* The inode's core (32 or 64 bytes). Returns its i_u word; *startblk_hi
 * gets the start block's high bits (i_nb: in extended inodes and, with
 * format bit 4, in compact non-directories, whose nlink is then 1) and
 * *mask the start block's width. */
static int inode_core(struct anole_image *img, struct anole_inode *ino, uint32_t *iu,
		      uint64_t *startblk_hi, uint64_t *mask)
{
	union {
		struct erofs_inode_compact c;
		struct erofs_inode_extended e;
	} raw;
	uint64_t nid = ino->nid, pos = ino->pos;
	int r = img_meta_read(img, nid, pos, &raw, 32);
	if (r < 0)
		return r;
	uint16_t fmt = raw.c.i_format;
	if (fmt & ~EROFS_I_KNOWN_BITS)
		return img_corrupt(img, nid, pos, "unsupported inode format bits 0x%x", fmt);
	bool bit4 = (fmt >> EROFS_I_NLINK_1_BIT) & 1;
	ino->extended = fmt & EROFS_I_VERSION_MASK;
	ino->layout = (fmt >> EROFS_I_DATALAYOUT_SHIFT) & EROFS_I_DATALAYOUT_MASK;
	*mask = (1ull << 48) - 1;
	if (ino->extended) {
		if ((r = img_meta_read(img, nid, pos, &raw, 64)) < 0)
			return r;
		ino->inode_isize = 64;
		INODE_COMMON(ino, iu, raw.e);
		*startblk_hi = raw.e.i_startblk_hi;
		ino->mtime = (int64_t)raw.e.i_mtime;
		ino->mtime_nsec = raw.e.i_mtime_nsec;
		ino->nlink = raw.e.i_nlink;
		if (ino->mtime_nsec >= 1000000000u)
			return img_corrupt(img, nid, pos + 44, "mtime nanoseconds %u out of range",
					   ino->mtime_nsec);
	} else {
		ino->inode_isize = 32;
		INODE_COMMON(ino, iu, raw.c);
		ino->mtime = (int64_t)(img->info.epoch + raw.c.i_mtime);
		ino->mtime_nsec = img->info.fixed_nsec;
		bool nlink1 = bit4 && !S_ISDIR(ino->mode);
		ino->nlink = nlink1 ? 1 : raw.c.i_nlink;
		*startblk_hi = nlink1 ? raw.c.i_startblk_hi : 0;
		if (!nlink1)
			*mask = 0xffffffffu;
	}
	ino->dot_omitted = bit4 && S_ISDIR(ino->mode);
	ino->xattr_isize = erofs_xattr_ibody_size(ino->xattr_icount);
	if (ino->size > (1ull << 62))
		return img_corrupt(img, nid, pos + 8, "file size %llu is absurd",
				   (unsigned long long)ino->size);
	if (pos + ino->inode_isize + ino->xattr_isize > meta_limit(img, pos))
		return img_corrupt(img, nid, pos, "inode and xattrs run past the %s end",
				   pos & META_MBOX ? "metabox" : "image");
	return 0;
}

/* File types, and what each may carry; 1 for files with data. */
static int inode_type(struct anole_image *img, struct anole_inode *ino, uint32_t iu)
{
	uint64_t nid = ino->nid, pos = ino->pos;
	switch (ino->mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
		break;
	case S_IFCHR:
	case S_IFBLK:
		ino->rdev = (uint32_t)makedev((iu & 0xfff00) >> 8, (iu & 0xff) | ((iu >> 12) & 0xfff00));
		/* fall through */
	case S_IFIFO:
	case S_IFSOCK:
		if (ino->size)
			return img_corrupt(img, nid, pos, "special file with size %llu",
					   (unsigned long long)ino->size);
		/* the kernel refuses unknown layouts whatever the file type */
		if (ino->layout != EROFS_INODE_FLAT_PLAIN && ino->layout != EROFS_INODE_FLAT_INLINE)
			return img_corrupt(img, nid, pos, "data layout %u on a special file",
					   ino->layout);
		return 0;
	default:
		return img_corrupt(img, nid, pos, "bad file type in mode 0%o", ino->mode);
	}
	if (S_ISLNK(ino->mode) && (ino->size == 0 || ino->size > 4095))
		return img_corrupt(img, nid, pos, "symlink target length %llu",
				   (unsigned long long)ino->size);
	/* "..", and "." unless omitted */
	if (S_ISDIR(ino->mode) &&
	    ino->size < (ino->dot_omitted ? 1 : 2) * sizeof(struct erofs_dirent))
		return img_corrupt(img, nid, pos, "directory size %llu is too small",
				   (unsigned long long)ino->size);
	return 1;
}

static int chunk_header(struct anole_image *img, struct anole_inode *ino, uint32_t iu,
			uint64_t body_end)
{
	uint64_t nid = ino->nid, pos = ino->pos;
	if (!S_ISREG(ino->mode))
		return img_corrupt(img, nid, pos, "chunk-based layout on a non-regular file");
	ino->chunkformat = (uint16_t)iu;
	if (ino->chunkformat & ~(EROFS_CHUNK_FORMAT_BLKBITS_MASK | EROFS_CHUNK_FORMAT_INDEXES |
				 EROFS_CHUNK_FORMAT_48BIT))
		return img_corrupt(img, nid, pos, "unsupported chunk format 0x%x", ino->chunkformat);
	unsigned int cbits = img->blkbits + (ino->chunkformat & EROFS_CHUNK_FORMAT_BLKBITS_MASK);
	if (cbits > 48)
		return img_corrupt(img, nid, pos, "chunk size 2^%u is absurd", cbits);
	unsigned int unit = ino->chunkformat & EROFS_CHUNK_FORMAT_INDEXES ? 8 : 4;
	uint64_t n = DIV_ROUND_UP(ino->size, 1ull << cbits);
	uint64_t start = ROUND_UP(body_end, unit), limit = meta_limit(img, start);
	if (n > (limit & ~META_MBOX) / unit || start + n * unit > limit)
		return img_corrupt(img, nid, pos, "chunk map of %llu entries runs past the %s end",
				   (unsigned long long)n, start & META_MBOX ? "metabox" : "image");
	return 0;
}

int anole_inode_read(struct anole_image *img, uint64_t nid, struct anole_inode *ino)
{
	uint64_t pos, startblk_hi = 0, mask;
	uint32_t iu;
	int r = inode_pos(img, nid, &pos);
	if (r < 0)
		return r;
	memset(ino, 0, sizeof(*ino));
	ino->nid = nid;
	ino->pos = pos;
	if ((r = inode_core(img, ino, &iu, &startblk_hi, &mask)) < 0 ||
	    (r = inode_type(img, ino, iu)) <= 0)
		return r;

	uint64_t body_end = pos + ino->inode_isize + ino->xattr_isize;
	uint64_t full = ino->size >> img->blkbits, tail = ino->size & (img->blksz - 1);
	ino->startblk = iu | startblk_hi << 32;
	switch (ino->layout) {
	case EROFS_INODE_FLAT_PLAIN:
		/* a start block of all ones (as wide as the inode's): a hole */
		if (!((ino->startblk ^ UINT64_MAX) & mask)) {
			ino->startblk = UINT64_MAX;
			return 0;
		}
		return check_flat_range(img, ino, DIV_ROUND_UP(ino->size, img->blksz));
	case EROFS_INODE_FLAT_INLINE:
		if (tail && (body_end & (img->blksz - 1)) + tail > img->blksz)
			return img_corrupt(img, nid, pos, "inline data crosses a block boundary");
		if (body_end + tail > meta_limit(img, body_end))
			return img_corrupt(img, nid, pos, "inline data runs past the %s end",
					   pos & META_MBOX ? "metabox" : "image");
		return check_flat_range(img, ino, full);
	case EROFS_INODE_CHUNK_BASED:
		ino->startblk = 0;
		return chunk_header(img, ino, iu, body_end);
	case EROFS_INODE_COMPRESSED_FULL:
	case EROFS_INODE_COMPRESSED_COMPACT:
		ino->startblk = 0;
		return zmap_inode_init(img, ino, iu, body_end);
	default:
		return img_corrupt(img, nid, pos, "unknown data layout %u", ino->layout);
	}
}

/* ---- data -------------------------------------------------------------- */

/* Chunk @c of a chunk-based file: its block (as wide as the index says),
 * its device (a masked id; 0: the unified address space), or a hole. */
static int chunk_block(struct anole_image *img, const struct anole_inode *ino, uint64_t c,
		       uint64_t at, bool *hole, uint64_t *blk, unsigned int *dev)
{
	*hole = false;
	if (!(ino->chunkformat & EROFS_CHUNK_FORMAT_INDEXES)) {
		uint32_t b;
		int r = img_meta_read(img, ino->nid, at, &b, sizeof(b));
		*blk = b;
		*hole = b == EROFS_NULL_ADDR;
		return r;
	}
	struct erofs_inode_chunk_index ci;
	int r = img_meta_read(img, ino->nid, at, &ci, sizeof(ci));
	if (r < 0)
		return r;
	uint64_t mask = ino->chunkformat & EROFS_CHUNK_FORMAT_48BIT ? (1ull << 48) - 1 : 0xffffffffu;
	*blk = ((uint64_t)ci.startblk_hi << 32 | ci.startblk_lo) & mask;
	*hole = !((*blk ^ UINT64_MAX) & mask);
	*dev = ci.device_id & img->devid_mask;
	if (!*hole && *dev > img->ndevs)
		return img_corrupt(img, ino->nid, at, "chunk %llu on device %u, the image has %u",
				   (unsigned long long)c, *dev, img->ndevs);
	return 0;
}

/* Where byte @off of a file lives: *phys on device *dev (0: the unified
 * address space; META_MBOX: a tail inline in the metabox), or a hole;
 * *run is how many bytes from @off on share that answer. */
static int map_one(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		   bool *hole, uint64_t *phys, uint64_t *run, unsigned int *dev)
{
	uint64_t body_end = ino->pos + ino->inode_isize + ino->xattr_isize;
	uint64_t full_bytes = ino->size & ~(uint64_t)(img->blksz - 1);
	*hole = false;
	*dev = 0;
	switch (ino->layout) {
	case EROFS_INODE_FLAT_PLAIN:
		*hole = ino->startblk == UINT64_MAX;
		*phys = (ino->startblk << img->blkbits) + off;
		*run = ino->size - off;
		return 0;
	case EROFS_INODE_FLAT_INLINE:
		if (off < full_bytes) {
			*phys = (ino->startblk << img->blkbits) + off;
			*run = full_bytes - off;
		} else {
			*phys = body_end + (off - full_bytes);
			*run = ino->size - off;
		}
		return 0;
	case EROFS_INODE_CHUNK_BASED: {
		unsigned int cbits = img->blkbits + (ino->chunkformat & EROFS_CHUNK_FORMAT_BLKBITS_MASK);
		unsigned int unit = ino->chunkformat & EROFS_CHUNK_FORMAT_INDEXES ? 8 : 4;
		uint64_t c = off >> cbits;
		uint64_t at = ROUND_UP(body_end, unit) + c * unit;
		uint64_t blk;
		int r = chunk_block(img, ino, c, at, hole, &blk, dev);
		if (r < 0)
			return r;
		uint64_t cend = MIN(ino->size, (c + 1) << cbits);
		*run = cend - off;
		if (*hole)
			return 0;
		uint64_t cblocks = DIV_ROUND_UP(cend - (c << cbits), img->blksz);
		if (!img_blocks_exist(img, *dev, blk, cblocks))
			return img_corrupt(img, ino->nid, at,
					   "chunk %llu at block %llu lies outside the %s",
					   (unsigned long long)c, (unsigned long long)blk,
					   *dev ? "device" : "image");
		*phys = (blk << img->blkbits) + (off - (c << cbits));
		return 0;
	}
	case EROFS_INODE_COMPRESSED_FULL:
	case EROFS_INODE_COMPRESSED_COMPACT:
		return zmap_map(img, ino, off, hole, phys, run);
	}
	return img_corrupt(img, ino->nid, ino->pos, "cannot map data of layout %u", ino->layout);
}

/* anole_map, and where the run lies (map_one's *phys and *dev). */
static int map_run(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		   bool *hole, uint64_t *run_end, uint64_t *phys, unsigned int *dev)
{
	uint64_t run;
	if (off >= ino->size) {
		*hole = false;
		*run_end = ino->size;
		return 0;
	}
	int r = map_one(img, ino, off, hole, phys, &run, dev);
	if (r < 0)
		return r;
	/* callers walk runs: each must move on and stay in the file */
	if (!run || run > ino->size - off)
		return img_corrupt(img, ino->nid, ino->pos, "data map makes no progress");
	*run_end = off + run;
	return 0;
}

int anole_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	      uint64_t *run_end)
{
	uint64_t phys;
	unsigned int dev;
	return map_run(img, ino, off, hole, run_end, &phys, &dev);
}

int img_data_at(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
		uint64_t *run_end, int *fd, uint64_t *at)
{
	uint64_t phys;
	unsigned int dev;
	*fd = -1;
	int r = map_run(img, ino, off, hole, run_end, &phys, &dev);
	if (r < 0 || *hole || off >= ino->size || (phys & META_MBOX) ||
	    ino->layout == EROFS_INODE_COMPRESSED_FULL ||
	    ino->layout == EROFS_INODE_COMPRESSED_COMPACT)
		return r;
	return img_locate_dev(img, ino->nid, dev, phys, *run_end - off, fd, at);
}

ssize_t anole_pread(struct anole_image *img, const struct anole_inode *ino, void *buf, size_t len,
		    uint64_t off)
{
	if (!S_ISREG(ino->mode) && !S_ISDIR(ino->mode) && !S_ISLNK(ino->mode))
		return anole_err(&img->err, EINVAL, "nid %llu has no data",
				 (unsigned long long)ino->nid);
	if (off >= ino->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, ino->size - off);
	if (ino->layout == EROFS_INODE_COMPRESSED_FULL ||
	    ino->layout == EROFS_INODE_COMPRESSED_COMPACT)
		return zmap_pread(img, ino, buf, len, off);
	size_t done = 0;
	while (done < len) {
		bool hole;
		uint64_t phys, run;
		unsigned int dev;
		int r = map_one(img, ino, off + done, &hole, &phys, &run, &dev);
		if (r < 0)
			return r;
		size_t n = (size_t)MIN(run, (uint64_t)(len - done));
		if (hole) {
			memset((char *)buf + done, 0, n);
		} else if (phys & META_MBOX) { /* a tail inline in the metabox */
			if ((r = img_meta_read(img, ino->nid, phys, (char *)buf + done, n)) < 0)
				return r;
		} else {
			int fd;
			uint64_t at;
			if ((r = img_locate_dev(img, ino->nid, dev, phys, n, &fd, &at)) < 0)
				return r;
			r = pread_full(fd, (char *)buf + done, n, at);
			if (r < 0)
				return anole_err(&img->err, r == -ENODATA ? EFSCORRUPTED : -r,
						 "%s: nid %llu, byte offset %llu: %s", img->path,
						 (unsigned long long)ino->nid,
						 (unsigned long long)phys,
						 r == -ENODATA ? "image is truncated" : strerror(-r));
		}
		done += n;
	}
	return (ssize_t)done;
}

int anole_readlink(struct anole_image *img, const struct anole_inode *ino, char *buf, size_t size)
{
	if (!S_ISLNK(ino->mode))
		return anole_err(&img->err, EINVAL, "nid %llu is not a symlink",
				 (unsigned long long)ino->nid);
	if (size <= ino->size)
		return anole_err(&img->err, ENAMETOOLONG, "symlink target too long");
	ssize_t n = anole_pread(img, ino, buf, (size_t)ino->size, 0);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	if (memchr(buf, 0, (size_t)n))
		return img_corrupt(img, ino->nid, ino->pos, "symlink target contains a NUL byte");
	return (int)n;
}
