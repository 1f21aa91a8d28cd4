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
#include "compress/codec.h"
#include "erofs/zindex.h"

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
	/* the last decompressed extent, for sequential reads */
	uint64_t z_nid, z_la;
	uint32_t z_llen;
	bool z_valid;
	uint8_t *z_out, *z_in;
	uint64_t packed_nid; /* 0: none */
	struct anole_inode packed;
	bool packed_loaded;
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
static int img_locate(struct anole_image *img, uint64_t nid, uint64_t pa, uint64_t len, int *fd,
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
	if (sb.feature_incompat & EROFS_INCOMPAT_FRAGMENTS)
		img->packed_nid = sb.packed_nid;
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
	free(img->z_out);
	free(img->z_in);
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

static int read_zheader(struct anole_image *img, struct anole_inode *ino, uint32_t iu,
			uint64_t body_end);
static int find_tail(struct anole_image *img, struct anole_inode *ino);

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
		return read_zheader(img, ino, iu, body_end);
	default:
		return img_corrupt(img, nid, pos, "unknown data layout %u", ino->layout);
	}
}

/* ---- compressed files ---------------------------------------------------- */

static int read_zheader(struct anole_image *img, struct anole_inode *ino, uint32_t iu,
			uint64_t body_end)
{
	if (!S_ISREG(ino->mode))
		return img_corrupt(img, ino->nid, ino->pos, "compressed layout on a non-regular file");
	struct z_erofs_map_header h;
	uint64_t hpos = ROUND_UP_8(body_end);
	int r = img_meta_read(img, ino->nid, hpos, &h, sizeof(h));
	if (r < 0)
		return r;
	if (h.h_clusterbits & 0x80) {
		/* the whole file lives in the packed inode */
		uint64_t v;
		memcpy(&v, &h, sizeof(v));
		ino->z_frag_whole = true;
		ino->z_frag_off = v & ~(1ull << 63);
		ino->z_tail_la = 0;
		ino->z_blocks = iu;
		if (!img->packed_nid)
			return img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
		return 0;
	}
	ino->z_advise = h.h_advise;
	ino->z_algorithms = h.h_algorithmtype;
	ino->z_lclusterbits = (uint8_t)(img->blkbits + (h.h_clusterbits & 7));
	ino->z_blocks = iu;
	if (h.h_advise & (Z_EROFS_ADVISE_INLINE_PCLUSTER | Z_EROFS_ADVISE_INTERLACED_PCLUSTER |
			  Z_EROFS_ADVISE_COMPACTED_2B))
		return anole_err(&img->err, EOPNOTSUPP,
				 "%s: nid %llu: compression features 0x%x (tail packing, fragments) "
				 "are not supported yet",
				 img->path, (unsigned long long)ino->nid, h.h_advise);
	if ((h.h_algorithmtype & 15) >= Z_EROFS_COMPRESSION_MAX ||
	    (h.h_algorithmtype >> 4) >= Z_EROFS_COMPRESSION_MAX)
		return img_corrupt(img, ino->nid, hpos, "unknown compression algorithms 0x%x",
				   h.h_algorithmtype);
	if (ino->z_lclusterbits > 20)
		return img_corrupt(img, ino->nid, hpos, "logical cluster size 2^%u",
				   ino->z_lclusterbits);
	uint64_t nlcl = DIV_ROUND_UP(ino->size, 1ull << ino->z_lclusterbits);
	uint64_t start = Z_EROFS_FULL_INDEX_START(body_end), bytes = nlcl * 8;
	if (ino->layout == EROFS_INODE_COMPRESSED_COMPACT) {
		if (ino->z_lclusterbits != 12 ||
		    !(h.h_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1) !=
			    !(h.h_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2))
			return anole_err(&img->err, EOPNOTSUPP,
					 "%s: nid %llu: this compact index variant is not supported",
					 img->path, (unsigned long long)ino->nid);
		start = ROUND_UP_8(body_end) + sizeof(struct z_erofs_map_header);
		bytes = zindex_compact4_size(nlcl);
	}
	if (nlcl > img->size / 8 || start + bytes > img->size)
		return img_corrupt(img, ino->nid, hpos, "%llu lcluster indexes run past the image end",
				   (unsigned long long)nlcl);
	ino->z_tail_la = ino->size;
	if (h.h_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) {
		if (!img->packed_nid)
			return img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
		ino->z_frag_off = h.h_fragmentoff;
		if (ino->size)
			return find_tail(img, ino);
	}
	return 0;
}

struct zidx {
	unsigned int type;
	uint16_t clusterofs;
	uint32_t blkaddr;
	uint16_t delta[2];
};

static int load_zidx(struct anole_image *img, const struct anole_inode *ino, uint64_t lcn,
		     struct zidx *z)
{
	if (ino->layout == EROFS_INODE_COMPRESSED_COMPACT) {
		uint64_t at = ROUND_UP_8(ino->pos + ino->inode_isize + ino->xattr_isize) +
			      sizeof(struct z_erofs_map_header) + (lcn / 2) * Z_COMPACT4_PACK;
		uint8_t pack[Z_COMPACT4_PACK];
		struct zidx_decoded d;
		int r = img_meta_read(img, ino->nid, at, pack, sizeof(pack));
		if (r < 0)
			return r;
		if (zindex_decode4(pack, (unsigned int)(lcn & 1), &d) < 0)
			return img_corrupt(img, ino->nid, at, "lcluster %llu: bad compact index",
					   (unsigned long long)lcn);
		*z = (struct zidx){.type = d.type, .clusterofs = d.clusterofs,
				   .blkaddr = d.blkaddr, .delta = {d.delta[0], d.delta[1]}};
		return 0;
	}
	uint64_t pos = Z_EROFS_FULL_INDEX_START(ino->pos + ino->inode_isize + ino->xattr_isize) +
		       lcn * sizeof(struct z_erofs_lcluster_index);
	struct z_erofs_lcluster_index d;
	int r = img_meta_read(img, ino->nid, pos, &d, sizeof(d));
	if (r < 0)
		return r;
	z->type = d.di_advise & Z_EROFS_LI_LCLUSTER_TYPE_MASK;
	if (z->type == Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
		z->delta[0] = d.di_u.delta[0];
		z->delta[1] = d.di_u.delta[1];
		return 0;
	}
	if (d.di_advise & Z_EROFS_LI_PARTIAL_REF)
		return anole_err(&img->err, EOPNOTSUPP,
				 "%s: nid %llu: partially referenced pclusters (dedupe) are not "
				 "supported yet",
				 img->path, (unsigned long long)ino->nid);
	z->clusterofs = d.di_clusterofs;
	z->blkaddr = d.di_u.blkaddr;
	if (z->clusterofs >= (1u << ino->z_lclusterbits))
		return img_corrupt(img, ino->nid, pos, "lcluster %llu: offset %u beyond the cluster",
				   (unsigned long long)lcn, z->clusterofs);
	return 0;
}

/* The last extent of a file with a fragment is that fragment: find where
 * it begins; its head's block address holds the offset's high half. */
static int find_tail(struct anole_image *img, struct anole_inode *ino)
{
	uint64_t lcn = (ino->size - 1) >> ino->z_lclusterbits;
	struct zidx z;
	int r = load_zidx(img, ino, lcn, &z);
	for (unsigned int steps = 0; r >= 0 && z.type == Z_EROFS_LCLUSTER_TYPE_NONHEAD; steps++) {
		uint16_t back = z.delta[0] & Z_EROFS_LI_D0_CBLKCNT ? 1 : z.delta[0];
		if (!back || back > lcn || steps > 65536)
			return img_corrupt(img, ino->nid, ino->pos, "fragment extent has no head");
		lcn -= back;
		r = load_zidx(img, ino, lcn, &z);
	}
	if (r < 0)
		return r;
	ino->z_tail_la = (lcn << ino->z_lclusterbits) + z.clusterofs;
	/* only full indexes carry the offset's high half (compact heads'
	 * addresses are implied by their neighbours) */
	if (ino->layout == EROFS_INODE_COMPRESSED_FULL)
		ino->z_frag_off |= (uint64_t)z.blkaddr << 32;
	if (ino->z_tail_la >= ino->size)
		return img_corrupt(img, ino->nid, ino->pos, "fragment starts past the end of the file");
	return 0;
}

static int load_packed(struct anole_image *img)
{
	if (img->packed_loaded)
		return 0;
	int r = anole_inode_read(img, img->packed_nid, &img->packed);
	if (r < 0)
		return r;
	bool compressed = img->packed.layout == EROFS_INODE_COMPRESSED_FULL ||
			  img->packed.layout == EROFS_INODE_COMPRESSED_COMPACT;
	if (!S_ISREG(img->packed.mode) ||
	    (compressed && (img->packed.z_frag_whole || img->packed.z_tail_la < img->packed.size)))
		return img_corrupt(img, img->packed_nid, img->packed.pos,
				   "the packed inode is not a plain or compressed regular file");
	img->packed_loaded = true;
	return 0;
}

struct zmap {
	uint64_t la, llen, pa, plen;
	bool compressed;
	unsigned int alg;
};

/* Find the extent holding byte @off of a compressed file. */
static int zmap(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		struct zmap *m)
{
	unsigned int lbits = ino->z_lclusterbits;
	uint64_t nlcl = DIV_ROUND_UP(ino->size, 1ull << lbits);
	uint64_t lcn = off >> lbits;
	struct zidx z;
	int r;

	if ((r = load_zidx(img, ino, lcn, &z)) < 0)
		return r;
	if (z.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD && (off & ((1ull << lbits) - 1)) < z.clusterofs) {
		/* this lcluster's head starts after @off: the bytes before it
		 * belong to the previous extent */
		if (!lcn)
			return img_corrupt(img, ino->nid, ino->pos, "first lcluster starts at %u",
					   z.clusterofs);
		lcn--;
		if ((r = load_zidx(img, ino, lcn, &z)) < 0)
			return r;
	}
	for (unsigned int steps = 0; z.type == Z_EROFS_LCLUSTER_TYPE_NONHEAD; steps++) {
		uint16_t back = z.delta[0] & Z_EROFS_LI_D0_CBLKCNT ? 1 : z.delta[0];
		if (!back || back > lcn || steps > 65536)
			return img_corrupt(img, ino->nid, ino->pos,
					   "lcluster %llu: bad lookback distance %u",
					   (unsigned long long)lcn, back);
		lcn -= back;
		if ((r = load_zidx(img, ino, lcn, &z)) < 0)
			return r;
	}
	uint64_t head = lcn;
	m->la = (head << lbits) + z.clusterofs;
	m->pa = (uint64_t)z.blkaddr << img->blkbits;
	m->compressed = z.type != Z_EROFS_LCLUSTER_TYPE_PLAIN;
	m->alg = z.type == Z_EROFS_LCLUSTER_TYPE_HEAD2 ? ino->z_algorithms >> 4
						      : ino->z_algorithms & 15;
	bool big = z.type == Z_EROFS_LCLUSTER_TYPE_HEAD1
			   ? ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1
			   : ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2;

	/* where the extent ends: the next head, or the end of the file */
	uint64_t cblocks = 1;
	uint64_t end = ino->size;
	lcn = head + 1;
	for (unsigned int steps = 0; lcn < nlcl; steps++) {
		if ((r = load_zidx(img, ino, lcn, &z)) < 0)
			return r;
		if (z.type != Z_EROFS_LCLUSTER_TYPE_NONHEAD) {
			end = (lcn << lbits) + z.clusterofs;
			break;
		}
		if (lcn == head + 1 && big && (z.delta[0] & Z_EROFS_LI_D0_CBLKCNT))
			cblocks = z.delta[0] & ~Z_EROFS_LI_D0_CBLKCNT;
		if (!z.delta[1] || steps > 65536)
			return img_corrupt(img, ino->nid, ino->pos,
					   "lcluster %llu: bad lookahead distance",
					   (unsigned long long)lcn);
		lcn += z.delta[1];
	}
	if (end <= m->la || end > ino->size || off < m->la || off >= end)
		return img_corrupt(img, ino->nid, ino->pos, "extent at %llu has no data for offset %llu",
				   (unsigned long long)m->la, (unsigned long long)off);
	m->llen = end - m->la;
	m->plen = cblocks << img->blkbits;
	if (!cblocks || m->plen > Z_EROFS_PCLUSTER_MAX_SIZE || m->llen > Z_EROFS_PCLUSTER_MAX_DSIZE)
		return img_corrupt(img, ino->nid, ino->pos,
				   "extent at %llu: %llu compressed bytes for %llu bytes",
				   (unsigned long long)m->la, (unsigned long long)m->plen,
				   (unsigned long long)m->llen);
	if (!m->compressed && m->plen < m->llen)
		m->plen = ROUND_UP(m->llen, img->blksz); /* plain data spans its extent */
	int fd;
	uint64_t at;
	return img_locate(img, ino->nid, m->pa, m->plen, &fd, &at);
}

static ssize_t read_fragment(struct anole_image *img, const struct anole_inode *ino, char *buf,
			     size_t len, uint64_t off)
{
	int r = load_packed(img);
	if (r < 0)
		return r;
	uint64_t at = ino->z_frag_off + (off - ino->z_tail_la);
	if (at < ino->z_frag_off || at > img->packed.size || len > img->packed.size - at)
		return img_corrupt(img, ino->nid, ino->pos,
				   "fragment at %llu runs past the packed inode (%llu bytes)",
				   (unsigned long long)ino->z_frag_off,
				   (unsigned long long)img->packed.size);
	struct anole_inode packed = img->packed;
	ssize_t n = anole_pread(img, &packed, buf, len, at);
	if (n >= 0 && (size_t)n != len)
		return img_corrupt(img, ino->nid, ino->pos, "short fragment read");
	return n;
}

static ssize_t zread(struct anole_image *img, const struct anole_inode *ino, char *buf, size_t len,
		     uint64_t off)
{
	size_t done = 0, total = len;
	if (off + len > ino->z_tail_la) {
		/* the part in the packed inode */
		uint64_t from = MAX(off, ino->z_tail_la);
		ssize_t n = read_fragment(img, ino, buf + (from - off), (size_t)(off + len - from), from);
		if (n < 0)
			return n;
		len = (size_t)(from - off);
	}
	while (done < len) {
		struct zmap m;
		int r = zmap(img, ino, off + done, &m);
		if (r < 0)
			return r;
		size_t n = (size_t)MIN((uint64_t)(len - done), m.la + m.llen - (off + done));
		int fd;
		uint64_t at;
		if ((r = img_locate(img, ino->nid, m.pa, m.plen, &fd, &at)) < 0)
			return r;
		if (!m.compressed) {
			r = pread_full(fd, buf + done, n, at + (off + done - m.la));
			if (r < 0)
				return img_corrupt(img, ino->nid, m.pa, "cannot read plain extent");
			done += n;
			continue;
		}
		if (!img->z_valid || img->z_nid != ino->nid || img->z_la != m.la) {
			if (!img->z_out) {
				img->z_out = malloc(Z_EROFS_PCLUSTER_MAX_DSIZE);
				img->z_in = malloc(Z_EROFS_PCLUSTER_MAX_SIZE);
				if (!img->z_out || !img->z_in)
					return anole_err(&img->err, ENOMEM, "out of memory");
			}
			img->z_valid = false;
			r = pread_full(fd, img->z_in, m.plen, at);
			if (r < 0)
				return img_corrupt(img, ino->nid, m.pa, "cannot read compressed extent");
			r = codec_decompress(m.alg, img->z_in, m.plen, img->z_out, m.llen);
			if (r == -ENOMEM)
				return anole_err(&img->err, ENOMEM, "out of memory");
			if (r < 0)
				return img_corrupt(img, ino->nid, m.pa,
						   "corrupt compressed data (%s, %llu bytes at file "
						   "offset %llu)",
						   codec_alg_name(m.alg), (unsigned long long)m.plen,
						   (unsigned long long)m.la);
			img->z_valid = true;
			img->z_nid = ino->nid;
			img->z_la = m.la;
			img->z_llen = (uint32_t)m.llen;
		}
		memcpy(buf + done, img->z_out + (off + done - m.la), n);
		done += n;
	}
	return (ssize_t)total;
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
	case EROFS_INODE_COMPRESSED_COMPACT: {
		if (off >= ino->z_tail_la) {
			*phys = 0;
			*run = ino->size - off;
			return 0;
		}
		struct zmap m;
		int r = zmap(img, ino, off, &m);
		if (r < 0)
			return r;
		*phys = m.pa;
		*run = m.la + m.llen - off;
		return 0;
	}
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
		return zread(img, ino, buf, len, off);
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
