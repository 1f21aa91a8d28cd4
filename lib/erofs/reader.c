/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EROFS image reader. It trusts nothing: every offset, size, nid and
 * name is checked against the image before use, and every failure leaves
 * one line naming the nid and byte offset at fault.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "erofs/reader.h"
#include "erofs/xattr.h"
#include "erofs/zmap.h"

#define CACHE_SLOTS 64

struct cached_block {
	uint64_t blk;
	bool valid;
	uint8_t *data;
};

/* An extra device (a data blob) in the unified block address space. */
struct img_dev {
	int fd;
	uint64_t start, len; /* bytes of the unified address space it covers */
	char *path;
};

struct anole_image {
	int fd;
	char *path;
	struct img_dev *devs;
	unsigned int ndevs;
	struct anole_image_info info;
	struct anole_error err;
	unsigned int blkbits;
	uint32_t blksz;
	uint64_t size; /* blocks * blksz, never more than the file */
	struct cached_block cache[CACHE_SLOTS];
	uint8_t *cache_mem;
	struct zimage *z; /* compressed files (zmap.c) */
	struct anole_image_options opts;
};

int img_corrupt_(struct anole_image *img, uint64_t nid, uint64_t off, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (nid == UINT64_MAX)
		return anole_err(&img->err, EFSCORRUPTED, "%s: byte offset %llu: %s", img->path,
				 (unsigned long long)off, what);
	return anole_err(&img->err, EFSCORRUPTED, "%s: nid %llu, byte offset %llu: %s", img->path,
			 (unsigned long long)nid, (unsigned long long)off, what);
}

struct anole_error *img_err(struct anole_image *img)
{
	return &img->err;
}

const char *img_path(const struct anole_image *img)
{
	return img->path;
}

uint32_t img_blksz(const struct anole_image *img)
{
	return img->blksz;
}

struct zimage *img_zimage(const struct anole_image *img)
{
	return img->z;
}

/* Read metadata bytes through a small block cache. */
int img_meta_read(struct anole_image *img, uint64_t nid, uint64_t off, void *buf, size_t len)
{
	if (off > img->size || len > img->size - off)
		return img_corrupt(img, nid, off, "%zu bytes of metadata run past the image end (%llu)",
				   len, (unsigned long long)img->size);
	uint8_t *p = buf;
	while (len) {
		uint64_t blk = off >> img->blkbits;
		uint32_t in = (uint32_t)(off & (img->blksz - 1));
		size_t n = MIN(len, (size_t)(img->blksz - in));
		struct cached_block *c = &img->cache[blk % CACHE_SLOTS];
		if (!c->valid || c->blk != blk) {
			int r = pread_full(img->fd, c->data, img->blksz, blk << img->blkbits);
			if (r < 0) {
				c->valid = false;
				return anole_err(&img->err, r == -ENODATA ? EFSCORRUPTED : -r,
						 "%s: byte offset %llu: %s", img->path,
						 (unsigned long long)(blk << img->blkbits),
						 r == -ENODATA ? "image is truncated" : strerror(-r));
			}
			c->blk = blk;
			c->valid = true;
		}
		memcpy(p, c->data + in, n);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

#define MAX_DEVICES 256

/*
 * The device table names each blob by a 64-hex-digit tag (its SHA-256);
 * the blob is looked up beside the image, as DIR/blobs/sha256/TAG, then as
 * DIR/TAG. Only unified addressing is supported: each device covers a
 * block range of its own.
 */
static int open_devices(struct anole_image *img, const struct erofs_super_block *sb)
{
	if (sb->extra_devices > MAX_DEVICES)
		return anole_err(&img->err, EFSCORRUPTED, "%s: byte offset 1110: %u extra devices",
				 img->path, sb->extra_devices);
	img->devs = calloc(sb->extra_devices, sizeof(*img->devs));
	if (!img->devs)
		return anole_err(&img->err, ENOMEM, "out of memory");
	const char *slash = strrchr(img->path, '/');
	int dlen = slash ? (int)(slash - img->path) + 1 : 0;
	for (unsigned int i = 0; i < sb->extra_devices; i++) {
		struct erofs_deviceslot slot;
		uint64_t at = (uint64_t)sb->devt_slotoff * sizeof(slot) + i * sizeof(slot);
		/* (before the block cache exists) */
		if (at + sizeof(slot) > img->size || pread_full(img->fd, &slot, sizeof(slot), at) < 0)
			return anole_err(&img->err, EFSCORRUPTED,
					 "%s: byte offset %llu: device table outside the image",
					 img->path, (unsigned long long)at);
		char tag[65];
		memcpy(tag, slot.tag, 64);
		tag[64] = 0;
		for (int k = 0; k < 64; k++)
			if (!strchr("0123456789abcdef", tag[k]) || !tag[k])
				return anole_err(&img->err, EFSCORRUPTED,
						 "%s: byte offset %llu: device %u: tag is not a "
						 "sha256 digest", img->path, (unsigned long long)at, i + 1);
		uint64_t blocks = slot.blocks | (uint64_t)slot.blocks_hi << 32;
		uint64_t uniaddr = slot.uniaddr | (uint64_t)slot.uniaddr_hi << 32;
		if (!uniaddr || uniaddr < sb->blocks || uniaddr + blocks > (1ull << 32))
			return anole_err(&img->err, EOPNOTSUPP,
					 "%s: byte offset %llu: device %u does not map a block range "
					 "of its own (unified addressing)", img->path,
					 (unsigned long long)at, i + 1);
		char p1[4200], p2[4200];
		snprintf(p1, sizeof(p1), "%.*sblobs/sha256/%s", dlen, img->path, tag);
		snprintf(p2, sizeof(p2), "%.*s%s", dlen, img->path, tag);
		struct img_dev *d = &img->devs[i];
		const char *found = p1;
		if (img->opts.devices && i < img->opts.ndevices && img->opts.devices[i]) {
			found = img->opts.devices[i];
			d->fd = open(found, O_RDONLY | O_CLOEXEC);
			if (d->fd < 0)
				return anole_err(&img->err, errno, "%s: data blob sha256:%s: %s: %s",
						 img->path, tag, found, strerror(errno));
		} else {
			d->fd = open(p1, O_RDONLY | O_CLOEXEC);
		}
		if (d->fd < 0)
			d->fd = open(found = p2, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0)
			return anole_err(&img->err, ENOENT,
					 "%s: needs data blob sha256:%s (neither %s nor %s exists)",
					 img->path, tag, p1, p2);
		img->ndevs = i + 1;
		if (!(d->path = strdup(found)))
			return anole_err(&img->err, ENOMEM, "out of memory");
		struct stat st;
		d->start = uniaddr << img->blkbits;
		d->len = blocks << img->blkbits;
		if (fstat(d->fd, &st) < 0 || (uint64_t)st.st_size < d->len)
			return anole_err(&img->err, EFSCORRUPTED, "%s: data blob sha256:%s is truncated",
					 img->path, tag);
	}
	img->info.extra_devices = sb->extra_devices;
	return 0;
}

/* The file and offset holding the data bytes [pa, pa+len) of the unified
 * address space, or an error naming @nid when no device has them all. */
int img_locate(struct anole_image *img, uint64_t nid, uint64_t pa, uint64_t len, int *fd,
		      uint64_t *off)
{
	for (unsigned int i = 0; i < img->ndevs; i++) {
		const struct img_dev *d = &img->devs[i];
		if (pa >= d->start && pa - d->start < d->len) {
			if (len > d->len - (pa - d->start))
				break;
			*fd = d->fd;
			*off = pa - d->start;
			int r = img->opts.before_read
					? img->opts.before_read(img->opts.ctx, i, *off, len)
					: 0;
			if (r < 0)
				return anole_err(&img->err, -r,
						 "%s: data blob %u, bytes %llu-%llu: %s", img->path,
						 i + 1, (unsigned long long)*off,
						 (unsigned long long)(*off + len - 1), strerror(-r));
			return 0;
		}
	}
	if (pa > img->size || len > img->size - pa)
		return img_corrupt(img, nid, pa, "data at byte %llu lies outside the image",
				   (unsigned long long)pa);
	*fd = img->fd;
	*off = pa;
	return 0;
}

static int read_super(struct anole_image *img)
{
	uint8_t blk0[4096];
	struct stat st;

	if (fstat(img->fd, &st) < 0)
		return anole_err(&img->err, errno, "%s: %s", img->path, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return anole_err(&img->err, EISDIR, "%s: is a directory, not an image", img->path);
	img->info.file_size = (uint64_t)st.st_size;
	if ((uint64_t)st.st_size < EROFS_SUPER_OFFSET + sizeof(struct erofs_super_block))
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: %llu bytes is too small for an EROFS image", img->path,
				 (unsigned long long)st.st_size);
	size_t have = (size_t)MIN((uint64_t)st.st_size, sizeof(blk0));
	int r = pread_full(img->fd, blk0, have, 0);
	if (r < 0)
		return anole_err(&img->err, -r, "%s: cannot read: %s", img->path, strerror(-r));
	struct erofs_super_block sb;
	memcpy(&sb, blk0 + EROFS_SUPER_OFFSET, sizeof(sb));
	if (sb.magic != EROFS_MAGIC)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1024: bad magic 0x%08x, not an EROFS image",
				 img->path, sb.magic);
	if (sb.blkszbits < 9 || sb.blkszbits > 12)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1036: block size 2^%u not supported (512..4096)",
				 img->path, sb.blkszbits);
	img->blkbits = sb.blkszbits;
	img->blksz = 1u << sb.blkszbits;
	if (sb.feature_compat & EROFS_COMPAT_SB_CHKSUM) {
		/* as the kernel: from byte 1024 to the end of block 0, or one
		 * block's worth when blocks are not larger than 1 KiB */
		uint32_t end = EROFS_SUPER_OFFSET +
			       (img->blksz > EROFS_SUPER_OFFSET ? img->blksz - EROFS_SUPER_OFFSET
								 : img->blksz);
		if (end > have)
			return anole_err(&img->err, EFSCORRUPTED, "%s: image is truncated in block 0",
					 img->path);
		uint8_t tmp[4096];
		memcpy(tmp, blk0 + EROFS_SUPER_OFFSET, end - EROFS_SUPER_OFFSET);
		memset(tmp + 4, 0, 4);
		uint32_t crc = anole_crc32c(~0u, tmp, end - EROFS_SUPER_OFFSET);
		if (crc != sb.checksum)
			return anole_err(&img->err, EFSCORRUPTED,
					 "%s: byte offset 1028: superblock checksum 0x%08x, expected "
					 "0x%08x",
					 img->path, sb.checksum, crc);
	}
	uint32_t unknown = sb.feature_incompat & ~ANOLE_READER_INCOMPAT;
	if (unknown)
		return anole_err(&img->err, EOPNOTSUPP,
				 "%s: byte offset 1104: incompatible features 0x%x not supported "
				 "(compressed images need a newer anole)",
				 img->path, unknown);
	uint64_t blocks = sb.blocks;
	if (blocks << img->blkbits > (uint64_t)st.st_size)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: image is truncated: superblock says %llu bytes, file has %llu",
				 img->path, (unsigned long long)(blocks << img->blkbits),
				 (unsigned long long)st.st_size);
	img->size = blocks << img->blkbits;
	if (sb.meta_blkaddr >= blocks)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1064: metadata block %u beyond %llu blocks",
				 img->path, sb.meta_blkaddr, (unsigned long long)blocks);
	if (sb.xattr_blkaddr >= blocks && sb.xattr_blkaddr)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1068: xattr block %u beyond %llu blocks",
				 img->path, sb.xattr_blkaddr, (unsigned long long)blocks);

	struct anole_image_info *i = &img->info;
	i->blkszbits = sb.blkszbits;
	i->blocks = blocks;
	i->inodes = sb.inos;
	i->root_nid = sb.root_nid;
	i->meta_blkaddr = sb.meta_blkaddr;
	i->xattr_blkaddr = sb.xattr_blkaddr;
	i->feature_compat = sb.feature_compat;
	i->feature_incompat = sb.feature_incompat;
	i->epoch = sb.epoch;
	i->fixed_nsec = sb.fixed_nsec;
	i->checksum = sb.checksum;
	memcpy(i->uuid, sb.uuid, 16);
	memcpy(i->label, sb.volume_name, 16);
	i->label[16] = 0;
	if (sb.extra_devices && (r = open_devices(img, &sb)) < 0)
		return r;
	return 0;
}

int anole_image_open(const char *path, struct anole_image **out, struct anole_error *err)
{
	return anole_image_open_with(path, NULL, out, err);
}

int anole_image_open_with(const char *path, const struct anole_image_options *opts,
			  struct anole_image **out, struct anole_error *err)
{
	struct anole_image *img = calloc(1, sizeof(*img));
	if (!img)
		return anole_err(err, ENOMEM, "out of memory");
	if (opts)
		img->opts = *opts;
	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	img->path = strdup(path);
	if (img->fd < 0 || !img->path) {
		int e = img->fd < 0 ? errno : ENOMEM;
		anole_image_close(img);
		return anole_err(err, e, "%s: %s", path, strerror(e));
	}
	int r = read_super(img);
	if (r >= 0) {
		img->cache_mem = malloc((size_t)CACHE_SLOTS * img->blksz);
		if (!img->cache_mem)
			r = anole_err(&img->err, ENOMEM, "out of memory");
		for (int k = 0; r >= 0 && k < CACHE_SLOTS; k++)
			img->cache[k].data = img->cache_mem + (size_t)k * img->blksz;
	}
	if (r >= 0)
		r = zmap_image_init(img, &img->z);
	if (r < 0) {
		if (err && !err->code)
			*err = img->err;
		anole_image_close(img);
		return r;
	}
	img->opts.devices = NULL; /* the caller's; opened by now */
	*out = img;
	return 0;
}

void anole_image_close(struct anole_image *img)
{
	if (!img)
		return;
	if (img->fd >= 0)
		close(img->fd);
	for (unsigned int i = 0; i < img->ndevs; i++) {
		close(img->devs[i].fd);
		free(img->devs[i].path);
	}
	free(img->devs);
	free(img->cache_mem);
	zmap_image_free(img->z);
	free(img->path);
	free(img);
}

const char *anole_image_device(const struct anole_image *img, unsigned int i)
{
	return i < img->ndevs ? img->devs[i].path : NULL;
}

const struct anole_image_info *anole_image_info(const struct anole_image *img)
{
	return &img->info;
}

const struct anole_error *anole_image_error(const struct anole_image *img)
{
	return &img->err;
}

/* ---- inodes ------------------------------------------------------------ */

/* Are blocks [blk, blk+n) in the image or wholly in one data blob? */
static bool blocks_exist(const struct anole_image *img, uint64_t blk, uint64_t n)
{
	if (blk < img->info.blocks && n <= img->info.blocks - blk)
		return true;
	for (unsigned int i = 0; i < img->ndevs; i++) {
		uint64_t s = img->devs[i].start >> img->blkbits, l = img->devs[i].len >> img->blkbits;
		if (blk >= s && blk - s < l && n <= l - (blk - s))
			return true;
	}
	return false;
}

static int check_flat_range(struct anole_image *img, const struct anole_inode *ino,
			    uint64_t nblocks)
{
	if (!nblocks)
		return 0;
	if (!blocks_exist(img, ino->startblk, nblocks))
		return img_corrupt(img, ino->nid, ino->pos,
				   "data blocks %llu..%llu lie outside the image (%llu blocks)",
				   (unsigned long long)ino->startblk,
				   (unsigned long long)(ino->startblk + nblocks - 1),
				   (unsigned long long)img->info.blocks);
	return 0;
}

int anole_inode_read(struct anole_image *img, uint64_t nid, struct anole_inode *ino)
{
	uint64_t pos = ((uint64_t)img->info.meta_blkaddr << img->blkbits) +
		       (nid << EROFS_ISLOT_BITS);
	union {
		struct erofs_inode_compact c;
		struct erofs_inode_extended e;
	} raw;
	int r;

	if (nid > (img->size >> EROFS_ISLOT_BITS) || pos + 32 > img->size)
		return img_corrupt(img, nid, pos, "nid out of range");
	if ((r = img_meta_read(img, nid, pos, &raw, 32)) < 0)
		return r;
	memset(ino, 0, sizeof(*ino));
	ino->nid = nid;
	ino->pos = pos;
	uint16_t fmt = raw.c.i_format;
	if (fmt & ~EROFS_I_KNOWN_BITS)
		return img_corrupt(img, nid, pos, "unsupported inode format bits 0x%x", fmt);
	ino->extended = fmt & EROFS_I_VERSION_MASK;
	ino->layout = (fmt >> EROFS_I_DATALAYOUT_SHIFT) & EROFS_I_DATALAYOUT_MASK;
	uint32_t iu;
	if (ino->extended) {
		if ((r = img_meta_read(img, nid, pos, &raw, 64)) < 0)
			return r;
		ino->inode_isize = 64;
		ino->xattr_icount = raw.e.i_xattr_icount;
		ino->mode = raw.e.i_mode;
		ino->size = raw.e.i_size;
		iu = raw.e.i_u;
		ino->ino = raw.e.i_ino;
		ino->uid = raw.e.i_uid;
		ino->gid = raw.e.i_gid;
		ino->mtime = (int64_t)raw.e.i_mtime;
		ino->mtime_nsec = raw.e.i_mtime_nsec;
		ino->nlink = raw.e.i_nlink;
		if (ino->mtime_nsec >= 1000000000u)
			return img_corrupt(img, nid, pos + 44, "mtime nanoseconds %u out of range",
					   ino->mtime_nsec);
	} else {
		ino->inode_isize = 32;
		ino->xattr_icount = raw.c.i_xattr_icount;
		ino->mode = raw.c.i_mode;
		ino->size = raw.c.i_size;
		iu = raw.c.i_u;
		ino->ino = raw.c.i_ino;
		ino->uid = raw.c.i_uid;
		ino->gid = raw.c.i_gid;
		ino->mtime = (int64_t)(img->info.epoch + raw.c.i_mtime);
		ino->mtime_nsec = img->info.fixed_nsec;
		ino->nlink = raw.c.i_nlink;
	}
	ino->xattr_isize = erofs_xattr_ibody_size(ino->xattr_icount);
	if (ino->size > (1ull << 62))
		return img_corrupt(img, nid, pos + 8, "file size %llu is absurd",
				   (unsigned long long)ino->size);
	uint64_t body_end = pos + ino->inode_isize + ino->xattr_isize;
	if (body_end > img->size)
		return img_corrupt(img, nid, pos, "inode and xattrs run past the image end");

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
	if (S_ISDIR(ino->mode) && ino->size < 2 * sizeof(struct erofs_dirent))
		return img_corrupt(img, nid, pos, "directory size %llu is too small",
				   (unsigned long long)ino->size);

	uint64_t full = ino->size >> img->blkbits, tail = ino->size & (img->blksz - 1);
	switch (ino->layout) {
	case EROFS_INODE_FLAT_PLAIN:
		ino->startblk = iu;
		return check_flat_range(img, ino, DIV_ROUND_UP(ino->size, img->blksz));
	case EROFS_INODE_FLAT_INLINE:
		ino->startblk = iu;
		if (tail && (body_end & (img->blksz - 1)) + tail > img->blksz)
			return img_corrupt(img, nid, pos, "inline data crosses a block boundary");
		if (body_end + tail > img->size)
			return img_corrupt(img, nid, pos, "inline data runs past the image end");
		return check_flat_range(img, ino, full);
	case EROFS_INODE_CHUNK_BASED: {
		if (!S_ISREG(ino->mode))
			return img_corrupt(img, nid, pos, "chunk-based layout on a non-regular file");
		ino->chunkformat = (uint16_t)iu;
		if (ino->chunkformat & ~(EROFS_CHUNK_FORMAT_BLKBITS_MASK | EROFS_CHUNK_FORMAT_INDEXES))
			return img_corrupt(img, nid, pos, "unsupported chunk format 0x%x",
					   ino->chunkformat);
		unsigned int cbits = img->blkbits + (ino->chunkformat & EROFS_CHUNK_FORMAT_BLKBITS_MASK);
		if (cbits > 48)
			return img_corrupt(img, nid, pos, "chunk size 2^%u is absurd", cbits);
		unsigned int unit = ino->chunkformat & EROFS_CHUNK_FORMAT_INDEXES ? 8 : 4;
		uint64_t n = DIV_ROUND_UP(ino->size, 1ull << cbits);
		uint64_t start = ROUND_UP(body_end, unit);
		if (n > img->size / unit || start + n * unit > img->size)
			return img_corrupt(img, nid, pos, "chunk map of %llu entries runs past the "
					   "image end", (unsigned long long)n);
		return 0;
	}
	case EROFS_INODE_COMPRESSED_FULL:
	case EROFS_INODE_COMPRESSED_COMPACT:
		return zmap_inode_init(img, ino, iu, body_end);
	default:
		return img_corrupt(img, nid, pos, "unknown data layout %u", ino->layout);
	}
}

/* ---- data -------------------------------------------------------------- */

/* Where byte @off of a file lives: *phys, or a hole; *run is how many bytes
 * from @off on share that answer. */
static int map_one(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		   bool *hole, uint64_t *phys, uint64_t *run)
{
	uint64_t body_end = ino->pos + ino->inode_isize + ino->xattr_isize;
	uint64_t full_bytes = ino->size & ~(uint64_t)(img->blksz - 1);
	*hole = false;
	switch (ino->layout) {
	case EROFS_INODE_FLAT_PLAIN:
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
		bool idx8 = ino->chunkformat & EROFS_CHUNK_FORMAT_INDEXES;
		unsigned int unit = idx8 ? 8 : 4;
		uint64_t c = off >> cbits;
		uint64_t at = ROUND_UP(body_end, unit) + c * unit;
		uint64_t blk;
		if (idx8) {
			struct erofs_inode_chunk_index ci;
			int r = img_meta_read(img, ino->nid, at, &ci, sizeof(ci));
			if (r < 0)
				return r;
			if (ci.device_id || ci.startblk_hi)
				return img_corrupt(img, ino->nid, at, "chunk %llu on device %u",
						   (unsigned long long)c, ci.device_id);
			blk = ci.startblk_lo;
		} else {
			uint32_t b;
			int r = img_meta_read(img, ino->nid, at, &b, sizeof(b));
			if (r < 0)
				return r;
			blk = b;
		}
		uint64_t cend = MIN(ino->size, (c + 1) << cbits);
		*run = cend - off;
		if (blk == EROFS_NULL_ADDR) {
			*hole = true;
			return 0;
		}
		uint64_t cblocks = DIV_ROUND_UP(cend - (c << cbits), img->blksz);
		if (!blocks_exist(img, blk, cblocks))
			return img_corrupt(img, ino->nid, at,
					   "chunk %llu at block %llu lies outside the image",
					   (unsigned long long)c, (unsigned long long)blk);
		*phys = (blk << img->blkbits) + (off - (c << cbits));
		return 0;
	}
	case EROFS_INODE_COMPRESSED_FULL:
	case EROFS_INODE_COMPRESSED_COMPACT:
		return zmap_map(img, ino, off, hole, phys, run);
	}
	return img_corrupt(img, ino->nid, ino->pos, "cannot map data of layout %u", ino->layout);
}

int anole_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	      uint64_t *run_end)
{
	uint64_t phys, run;
	if (off >= ino->size) {
		*hole = false;
		*run_end = ino->size;
		return 0;
	}
	int r = map_one(img, ino, off, hole, &phys, &run);
	if (r < 0)
		return r;
	*run_end = off + run;
	return 0;
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
		int r = map_one(img, ino, off + done, &hole, &phys, &run);
		if (r < 0)
			return r;
		size_t n = (size_t)MIN(run, (uint64_t)(len - done));
		if (hole) {
			memset((char *)buf + done, 0, n);
		} else {
			int fd;
			uint64_t at;
			if ((r = img_locate(img, ino->nid, phys, n, &fd, &at)) < 0)
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

/* ---- directories ------------------------------------------------------- */

int anole_readdir(struct anole_image *img, const struct anole_inode *dir, anole_dirent_fn fn,
		  void *ctx)
{
	if (!S_ISDIR(dir->mode))
		return anole_err(&img->err, ENOTDIR, "nid %llu is not a directory",
				 (unsigned long long)dir->nid);
	_cleanup_free_ char *blk = malloc(img->blksz);
	char prev[EROFS_NAME_LEN + 1];
	size_t prevlen = 0;
	bool first = true;
	if (!blk)
		return anole_err(&img->err, ENOMEM, "out of memory");

	for (uint64_t boff = 0; boff < dir->size; boff += img->blksz) {
		uint32_t maxsize = (uint32_t)MIN((uint64_t)img->blksz, dir->size - boff);
		ssize_t n = anole_pread(img, dir, blk, maxsize, boff);
		if (n < 0)
			return (int)n;
		if ((uint32_t)n != maxsize)
			return img_corrupt(img, dir->nid, dir->pos, "short directory read");
		struct erofs_dirent de;
		if (maxsize < sizeof(de))
			return img_corrupt(img, dir->nid, dir->pos,
					   "directory block at %llu too small for an entry",
					   (unsigned long long)boff);
		memcpy(&de, blk, sizeof(de));
		uint32_t count = de.nameoff / sizeof(de);
		if (de.nameoff % sizeof(de) || !count || de.nameoff >= maxsize)
			return img_corrupt(img, dir->nid, dir->pos,
					   "directory block at %llu: bad first name offset %u",
					   (unsigned long long)boff, de.nameoff);
		for (uint32_t i = 0; i < count; i++) {
			memcpy(&de, blk + i * sizeof(de), sizeof(de));
			uint32_t end;
			if (i + 1 < count) {
				struct erofs_dirent nx;
				memcpy(&nx, blk + (i + 1) * sizeof(de), sizeof(nx));
				end = nx.nameoff;
			} else {
				end = de.nameoff;
				while (end < maxsize && blk[end])
					end++;
			}
			if (de.nameoff < count * sizeof(de) || end > maxsize || end <= de.nameoff)
				return img_corrupt(img, dir->nid, dir->pos,
						   "directory block at %llu, entry %u: bad name "
						   "offset %u",
						   (unsigned long long)boff, i, de.nameoff);
			const char *name = blk + de.nameoff;
			size_t len = end - de.nameoff;
			if (len > EROFS_NAME_LEN || memchr(name, '/', len) || memchr(name, 0, len))
				return img_corrupt(img, dir->nid, dir->pos,
						   "directory block at %llu, entry %u: invalid name",
						   (unsigned long long)boff, i);
			if (de.file_type > EROFS_FT_SYMLINK)
				return img_corrupt(img, dir->nid, dir->pos,
						   "entry '%.*s': bad file type %u", (int)len, name,
						   de.file_type);
			if (!first) {
				int c = memcmp(prev, name, MIN(prevlen, len));
				if (c > 0 || (c == 0 && prevlen >= len))
					return img_corrupt(img, dir->nid, dir->pos,
							   "entry '%.*s' out of order or duplicate",
							   (int)len, name);
			}
			memcpy(prev, name, len);
			prevlen = len;
			first = false;
			int r = fn(ctx, name, len, de.nid, de.file_type);
			if (r)
				return r;
		}
	}
	return 0;
}

struct find_ctx {
	const char *name;
	size_t len;
	uint64_t nid;
	bool found;
};

static int find_cb(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int ft)
{
	struct find_ctx *f = ctx;
	(void)ft;
	if (len == f->len && !memcmp(name, f->name, len)) {
		f->nid = nid;
		f->found = true;
		return 1;
	}
	return 0;
}

int anole_lookup_child(struct anole_image *img, const struct anole_inode *dir, const char *name,
		       size_t len, struct anole_inode *ino)
{
	struct find_ctx f = {.name = name, .len = len};
	int r = anole_readdir(img, dir, find_cb, &f);
	if (r < 0)
		return r;
	if (!f.found)
		return 0;
	r = anole_inode_read(img, f.nid, ino);
	return r < 0 ? r : 1;
}

int anole_lookup(struct anole_image *img, const char *path, struct anole_inode *ino)
{
	int r = anole_inode_read(img, img->info.root_nid, ino);
	if (r < 0)
		return r;
	const char *p = path;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			return 0;
		const char *e = strchrnul(p, '/');
		if (!S_ISDIR(ino->mode))
			return anole_err(&img->err, ENOTDIR, "%s: %.*s: not a directory", path,
					 (int)(p - path), path);
		struct anole_inode dir = *ino;
		r = anole_lookup_child(img, &dir, p, (size_t)(e - p), ino);
		if (r < 0)
			return r;
		if (!r)
			return anole_err(&img->err, ENOENT, "%s: no such file or directory in %s",
					 path, img->path);
		p = e;
	}
}

/* ---- xattrs ------------------------------------------------------------ */

static int emit_entry(struct anole_image *img, uint64_t nid, uint64_t at,
		      const struct erofs_xattr_entry *e, const char *body, anole_xattr_fn fn,
		      void *ctx)
{
	const char *prefix = xattr_prefix(e->e_name_index);
	if (!prefix)
		return img_corrupt(img, nid, at, "xattr with unknown name index %u", e->e_name_index);
	bool whole = e->e_name_index == EROFS_XATTR_INDEX_POSIX_ACL_ACCESS ||
		     e->e_name_index == EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT;
	if ((whole && e->e_name_len) || (!whole && !e->e_name_len))
		return img_corrupt(img, nid, at, "xattr name of length %u under prefix %s",
				   e->e_name_len, prefix);
	if (memchr(body, 0, e->e_name_len))
		return img_corrupt(img, nid, at, "xattr name contains a NUL byte");
	char name[300];
	snprintf(name, sizeof(name), "%s%.*s", prefix, (int)e->e_name_len, body);
	return fn(ctx, name, body + e->e_name_len, e->e_value_size);
}

int anole_xattrs(struct anole_image *img, const struct anole_inode *ino, anole_xattr_fn fn,
		 void *ctx)
{
	if (!ino->xattr_isize)
		return 0;
	uint64_t at = ino->pos + ino->inode_isize;
	_cleanup_free_ char *body = malloc(ino->xattr_isize);
	if (!body)
		return anole_err(&img->err, ENOMEM, "out of memory");
	int r = img_meta_read(img, ino->nid, at, body, ino->xattr_isize);
	if (r < 0)
		return r;
	struct erofs_xattr_ibody_header h;
	memcpy(&h, body, sizeof(h));
	size_t off = sizeof(h) + 4 * (size_t)h.h_shared_count;
	if (off > ino->xattr_isize)
		return img_corrupt(img, ino->nid, at, "%u shared xattr ids overflow the xattr area",
				   h.h_shared_count);
	uint64_t shared_base = (uint64_t)img->info.xattr_blkaddr << img->blkbits;
	_cleanup_free_ char *sbody = NULL;
	for (unsigned int i = 0; i < h.h_shared_count; i++) {
		uint32_t id;
		memcpy(&id, body + sizeof(h) + 4 * (size_t)i, 4);
		uint64_t spos = shared_base + 4ull * id;
		struct erofs_xattr_entry e;
		if ((r = img_meta_read(img, ino->nid, spos, &e, sizeof(e))) < 0)
			return r;
		size_t blen = (size_t)e.e_name_len + e.e_value_size;
		free(sbody);
		sbody = malloc(blen + 1);
		if (!sbody)
			return anole_err(&img->err, ENOMEM, "out of memory");
		if ((r = img_meta_read(img, ino->nid, spos + sizeof(e), sbody, blen)) < 0)
			return r;
		if ((r = emit_entry(img, ino->nid, spos, &e, sbody, fn, ctx)))
			return r;
	}
	while (off + sizeof(struct erofs_xattr_entry) <= ino->xattr_isize) {
		struct erofs_xattr_entry e;
		memcpy(&e, body + off, sizeof(e));
		size_t esize = erofs_xattr_entry_size(e.e_name_len, e.e_value_size);
		if (esize > ino->xattr_isize - off)
			return img_corrupt(img, ino->nid, at + off, "xattr entry overflows the xattr area");
		if ((r = emit_entry(img, ino->nid, at + off, &e, body + off + sizeof(e), fn, ctx)))
			return r;
		off += esize;
	}
	return 0;
}
