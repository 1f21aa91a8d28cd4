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

static uint64_t meta_limit(const struct anole_image *img, uint64_t pos)
{
	if (pos & META_MBOX)
		return img->has_mbox ? META_MBOX | img->mbox.size : META_MBOX;
	return img->size;
}

int img_corrupt_(struct anole_image *img, uint64_t nid, uint64_t off, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	const char *space = off & META_MBOX ? "metabox byte offset" : "byte offset";
	off &= ~META_MBOX;
	if (nid == UINT64_MAX)
		return anole_err(&img->err, EFSCORRUPTED, "%s: %s %llu: %s", img->path, space,
				 (unsigned long long)off, what);
	return anole_err(&img->err, EFSCORRUPTED, "%s: nid %llu, %s %llu: %s", img->path,
			 (unsigned long long)nid, space, (unsigned long long)off, what);
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

uint64_t img_meta_end(const struct anole_image *img, uint64_t pos)
{
	return meta_limit(img, pos);
}

int img_metabox_inode(struct anole_image *img, struct anole_inode *ino)
{
	if (!img->has_mbox)
		return 0;
	*ino = img->mbox;
	return 1;
}

/* One block of the metabox inode's data, read through the reader itself
 * (it is usually compressed), into a buffer of its own: that read may use
 * the block cache too. */
static int mbox_block(struct anole_image *img, uint64_t nid, uint64_t off, uint8_t *out)
{
	if (img->in_mbox_read) /* the metabox inode is never in the metabox */
		return img_corrupt(img, nid, META_MBOX | off, "the metabox reads itself");
	size_t n = (size_t)MIN((uint64_t)img->blksz, img->mbox.size - off);
	img->in_mbox_read = true;
	ssize_t got = anole_pread(img, &img->mbox, img->mbox_buf, n, off);
	img->in_mbox_read = false;
	if (got < 0)
		return (int)got;
	if ((size_t)got != n)
		return img_corrupt(img, nid, META_MBOX | off, "short read of the metabox");
	memset(img->mbox_buf + n, 0, img->blksz - n);
	memcpy(out, img->mbox_buf, img->blksz);
	return 0;
}

static int image_block(struct anole_image *img, uint64_t blk, uint8_t *out)
{
	int r = pread_full(img->fd, out, img->blksz, blk << img->blkbits);
	if (r < 0)
		return anole_err(&img->err, r == -ENODATA ? EFSCORRUPTED : -r,
				 "%s: byte offset %llu: %s", img->path,
				 (unsigned long long)(blk << img->blkbits),
				 r == -ENODATA ? "image is truncated" : strerror(-r));
	return 0;
}

/* Read metadata bytes through a small block cache: from the image, or
 * (positions with META_MBOX) from the metabox inode's data. */
int img_meta_read(struct anole_image *img, uint64_t nid, uint64_t off, void *buf, size_t len)
{
	uint64_t limit = meta_limit(img, off);
	if (off > limit || len > limit - off)
		return img_corrupt(img, nid, off, "%zu bytes of metadata run past the %s end (%llu)",
				   len, off & META_MBOX ? "metabox" : "image",
				   (unsigned long long)(limit & ~META_MBOX));
	uint8_t *p = buf;
	while (len) {
		uint64_t blk = off >> img->blkbits; /* metabox blocks keep a bit of their own */
		uint32_t in = (uint32_t)(off & (img->blksz - 1));
		size_t n = MIN(len, (size_t)(img->blksz - in));
		struct cached_block *c = &img->cache[blk % CACHE_SLOTS];
		if (!c->valid || c->blk != blk) {
			c->valid = false;
			int r = off & META_MBOX
					? mbox_block(img, nid, (off & ~META_MBOX) - in, c->data)
					: image_block(img, blk, c->data);
			if (r < 0)
				return r;
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

/* How a device slot names its blob, for messages: anole's lazy images
 * carry the blob's SHA-256 in hex, other tools anything or nothing. */
static void tag_text(const uint8_t tag[64], char *out, size_t size, bool *is_digest)
{
	*is_digest = true;
	for (int k = 0; k < 64; k++)
		*is_digest &= tag[k] && strchr("0123456789abcdef", tag[k]);
	if (*is_digest) {
		snprintf(out, size, "sha256:%.64s", (const char *)tag);
		return;
	}
	size_t o = (size_t)snprintf(out, size, "tag \"");
	for (int k = 0; k < 64 && tag[k] && o + 6 < size; k++)
		o += (size_t)snprintf(out + o, size - o, tag[k] >= 0x20 && tag[k] < 0x7f &&
						 tag[k] != '"' && tag[k] != '\\' ? "%c" : "\\x%02x",
				      tag[k]);
	snprintf(out + o, size - o, "\"");
	if (!tag[0])
		snprintf(out, size, "no tag");
}

/* The file of device @i: the caller's, or (a sha256 tag) the blob beside
 * the image, as DIR/blobs/sha256/HEX, then as DIR/HEX. */
static int open_device(struct anole_image *img, unsigned int i, const uint8_t tag[64],
		       const char **found, char *p1, char *p2, size_t psize)
{
	const char *what = img->devs[i].tag;
	bool digest;
	tag_text(tag, img->devs[i].tag, sizeof(img->devs[i].tag), &digest);
	if (img->opts.devices && i < img->opts.ndevices && img->opts.devices[i]) {
		*found = img->opts.devices[i];
		int fd = open(*found, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return anole_err(&img->err, errno, "%s: device %u (%s): %s: %s", img->path,
					 i + 1, what, *found, strerror(errno));
		return fd;
	}
	if (!digest)
		return anole_err(&img->err, ENOENT,
				 "%s: device %u (%s) is not known: name its file with --device "
				 "(one per device, in device table order)",
				 img->path, i + 1, what);
	const char *slash = strrchr(img->path, '/');
	int dlen = slash ? (int)(slash - img->path) + 1 : 0;
	snprintf(p1, psize, "%.*sblobs/sha256/%.64s", dlen, img->path, (const char *)tag);
	snprintf(p2, psize, "%.*s%.64s", dlen, img->path, (const char *)tag);
	int fd = open(*found = p1, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = open(*found = p2, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return anole_err(&img->err, ENOENT,
				 "%s: needs data blob %s (neither %s nor %s exists)", img->path, what,
				 p1, p2);
	return fd;
}

/* One device table slot: its file, its size, and the block range of the
 * unified address space it covers (none when uniaddr is 0: then only
 * chunk indexes naming its device id reach it). */
static int open_slot(struct anole_image *img, const struct erofs_super_block *sb, unsigned int i)
{
	struct erofs_deviceslot slot;
	uint64_t at = (uint64_t)sb->devt_slotoff * sizeof(slot) + i * sizeof(slot);
	/* (before the block cache exists) */
	if (at + sizeof(slot) > img->size || pread_full(img->fd, &slot, sizeof(slot), at) < 0)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset %llu: device table outside the image", img->path,
				 (unsigned long long)at);
	bool b48 = sb->feature_incompat & EROFS_INCOMPAT_48BIT;
	uint64_t blocks = slot.blocks | (b48 ? (uint64_t)slot.blocks_hi << 32 : 0);
	uint64_t uniaddr = slot.uniaddr | (b48 ? (uint64_t)slot.uniaddr_hi << 32 : 0);
	char p1[4200], p2[4200];
	const char *found = NULL;
	struct img_dev *d = &img->devs[i];
	d->fd = open_device(img, i, slot.tag, &found, p1, p2, sizeof(p1));
	if (d->fd < 0)
		return d->fd;
	img->ndevs = i + 1;
	if (!(d->path = strdup(found)))
		return anole_err(&img->err, ENOMEM, "out of memory");
	d->size = blocks << img->blkbits;
	if (uniaddr) {
		d->start = uniaddr << img->blkbits;
		d->len = d->size;
	}
	struct stat st;
	if (fstat(d->fd, &st) < 0 || (uint64_t)st.st_size < d->size)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: device %u: %s has %llu bytes, the device table says %llu",
				 img->path, i + 1, d->path, (unsigned long long)st.st_size,
				 (unsigned long long)d->size);
	return 0;
}

/* The device table (DEVICE_TABLE): each slot's blob is opened now, so a
 * missing one is one line at once, naming the slot and its tag. */
static int open_devices(struct anole_image *img, const struct erofs_super_block *sb)
{
	unsigned int n = sb->extra_devices;
	if (n > MAX_DEVICES)
		return anole_err(&img->err, EFSCORRUPTED, "%s: byte offset 1110: %u extra devices",
				 img->path, n);
	if (img->opts.devices && img->opts.ndevices > n)
		return anole_err(&img->err, EINVAL, "%s: %zu devices given, the image has %u",
				 img->path, img->opts.ndevices, n);
	img->devs = calloc(n, sizeof(*img->devs));
	if (!img->devs)
		return anole_err(&img->err, ENOMEM, "out of memory");
	img->devid_mask = erofs_devid_mask(n);
	for (unsigned int i = 0; i < n; i++) {
		int r = open_slot(img, sb, i);
		if (r < 0)
			return r;
	}
	img->info.extra_devices = n;
	return 0;
}

/* The file and offset holding the data bytes [pa, pa+len) of device @dev
 * (a chunk index's masked device id), or with @dev 0 of the unified
 * address space: a device whose range holds @pa, else the image. An
 * error names @nid when they are not all there. */
static int img_locate_dev(struct anole_image *img, uint64_t nid, unsigned int dev, uint64_t pa,
			  uint64_t len, int *fd, uint64_t *off)
{
	const struct img_dev *d = NULL;
	if (dev) {
		if (dev > img->ndevs)
			return img_corrupt(img, nid, pa, "data on device %u, the image has %u", dev,
					   img->ndevs);
		d = &img->devs[dev - 1];
		*off = pa;
	}
	for (unsigned int i = 0; !dev && !d && i < img->ndevs; i++) { /* the first, as Linux */
		const struct img_dev *u = &img->devs[i];
		if (u->start && pa >= u->start && pa - u->start < u->len) {
			d = u;
			*off = pa - u->start;
		}
	}
	if (!d) {
		if (pa > img->size || len > img->size - pa)
			return img_corrupt(img, nid, pa, "data at byte %llu lies outside the image",
					   (unsigned long long)pa);
		*fd = img->fd;
		*off = pa;
		return 0;
	}
	unsigned int i = (unsigned int)(d - img->devs);
	if (*off > d->size || len > d->size - *off)
		return img_corrupt(img, nid, pa, "data at byte %llu lies outside device %u",
				   (unsigned long long)*off, i + 1);
	*fd = d->fd;
	int r = img->opts.before_read ? img->opts.before_read(img->opts.ctx, i, *off, len) : 0;
	if (r < 0)
		return anole_err(&img->err, -r, "%s: data blob %u, bytes %llu-%llu: %s", img->path,
				 i + 1, (unsigned long long)*off,
				 (unsigned long long)(*off + len - 1), strerror(-r));
	return 0;
}

/* The file and offset holding the data bytes [pa, pa+len) of the unified
 * address space (see img_locate_dev). */
int img_locate(struct anole_image *img, uint64_t nid, uint64_t pa, uint64_t len, int *fd,
		      uint64_t *off)
{
	return img_locate_dev(img, nid, 0, pa, len, fd, off);
}

/* SB_CHKSUM: the CRC32C of the superblock's block from byte 1024 on,
 * with the checksum field as zero (erofs_sb_csum_len() bytes). */
static int sb_checksum(struct anole_image *img, const uint8_t *blk0, size_t have, uint32_t want)
{
	uint32_t len = erofs_sb_csum_len(img->blksz);
	if (EROFS_SUPER_OFFSET + len > have)
		return anole_err(&img->err, EFSCORRUPTED, "%s: image is truncated in block 0",
				 img->path);
	uint8_t tmp[4096];
	memcpy(tmp, blk0 + EROFS_SUPER_OFFSET, len);
	memset(tmp + 4, 0, 4);
	uint32_t crc = anole_crc32c(~0u, tmp, len);
	if (crc != want)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1028: superblock checksum 0x%08x, expected 0x%08x",
				 img->path, want, crc);
	return 0;
}

/* Block count, root nid and the special inodes: 48BIT widens the first
 * two (when rootnid_8b is set), METABOX adds the metabox nid in the first
 * extension slot. */
static int sb_geometry(struct anole_image *img, const uint8_t *blk0, size_t have,
		       const struct erofs_super_block *sb, uint64_t *blocks)
{
	struct anole_image_info *i = &img->info;
	uint32_t sb_size = 128 + sb->sb_extslots * EROFS_SB_EXTSLOT_SIZE;
	if (EROFS_SUPER_OFFSET + sb_size > have)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1037: a superblock of %u bytes does not fit block 0",
				 img->path, sb_size);
	if (sb->dirblkbits)
		return anole_err(&img->err, EOPNOTSUPP,
				 "%s: byte offset 1114: directory blocks of 2^%u blocks are not "
				 "supported (nor by Linux)", img->path, sb->dirblkbits);
	*blocks = sb->blocks;
	i->root_nid = sb->root_nid;
	if ((sb->feature_incompat & EROFS_INCOMPAT_48BIT) && sb->rootnid_8b) {
		i->root_nid = sb->rootnid_8b;
		*blocks |= (uint64_t)sb->blocks_hi << 32;
	}
	if (sb->feature_incompat & EROFS_INCOMPAT_METABOX) {
		if (sb_size < EROFS_SB_METABOX_NID_OFF + 8)
			return anole_err(&img->err, EFSCORRUPTED,
					 "%s: byte offset 1037: METABOX, but no superblock slot "
					 "for the metabox nid", img->path);
		memcpy(&i->metabox_nid, blk0 + EROFS_SUPER_OFFSET + EROFS_SB_METABOX_NID_OFF, 8);
		if (i->metabox_nid >> EROFS_NID_METABOX_BIT)
			return anole_err(&img->err, EFSCORRUPTED,
					 "%s: byte offset 1152: the metabox inode is in the metabox",
					 img->path);
	}
	if (sb->packed_nid >> EROFS_NID_METABOX_BIT)
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1120: the packed inode is in the metabox", img->path);
	if (sb->feature_incompat & EROFS_INCOMPAT_FRAGMENTS)
		i->packed_nid = sb->packed_nid;
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
	if ((sb.feature_compat & EROFS_COMPAT_SB_CHKSUM) &&
	    (r = sb_checksum(img, blk0, have, sb.checksum)) < 0)
		return r;
	uint32_t unknown = sb.feature_incompat & ~(ANOLE_READER_INCOMPAT | ANOLE_READER_INCOMPAT_META);
	if (unknown)
		return anole_err(&img->err, EOPNOTSUPP,
				 "%s: byte offset 1104: incompatible features 0x%x not supported "
				 "(compressed images need a newer anole)",
				 img->path, unknown);
	uint64_t blocks;
	if ((r = sb_geometry(img, blk0, have, &sb, &blocks)) < 0)
		return r;
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
	if (sb.xattr_blkaddr >= blocks && sb.xattr_blkaddr &&
	    !(sb.feature_compat & EROFS_COMPAT_SHARED_EA_IN_METABOX))
		return anole_err(&img->err, EFSCORRUPTED,
				 "%s: byte offset 1068: xattr block %u beyond %llu blocks",
				 img->path, sb.xattr_blkaddr, (unsigned long long)blocks);

	struct anole_image_info *i = &img->info;
	i->blkszbits = sb.blkszbits;
	i->blocks = blocks;
	i->inodes = sb.inos;
	i->meta_blkaddr = sb.meta_blkaddr;
	i->xattr_blkaddr = sb.xattr_blkaddr;
	i->feature_compat = sb.feature_compat;
	i->feature_incompat = sb.feature_incompat;
	i->epoch = sb.epoch;
	i->fixed_nsec = sb.fixed_nsec;
	i->checksum = sb.checksum;
	i->xattr_prefix_count = sb.xattr_prefix_count;
	img->xattr_filter = (sb.feature_compat & EROFS_COMPAT_XATTR_FILTER) &&
			    !sb.xattr_filter_reserved;
	i->xattr_prefix_start = sb.xattr_prefix_start;
	memcpy(i->uuid, sb.uuid, 16);
	memcpy(i->label, sb.volume_name, 16);
	i->label[16] = 0;
	/* as the kernel: a device table counts only with its feature bit */
	if ((sb.feature_incompat & EROFS_INCOMPAT_DEVICE_TABLE) && sb.extra_devices &&
	    (r = open_devices(img, &sb)) < 0)
		return r;
	return 0;
}

/* METABOX: the inode whose data holds the metadata of the inodes whose
 * nids have bit 63 set; a regular file, usually compressed. */
static int load_metabox(struct anole_image *img)
{
	if (!(img->info.feature_incompat & EROFS_INCOMPAT_METABOX))
		return 0;
	int r = anole_inode_read(img, img->info.metabox_nid, &img->mbox);
	if (r < 0)
		return r;
	if (!S_ISREG(img->mbox.mode))
		return img_corrupt(img, img->mbox.nid, img->mbox.pos,
				   "the metabox inode is not a regular file");
	if (!(img->mbox_buf = malloc(img->blksz)))
		return anole_err(&img->err, ENOMEM, "out of memory");
	img->has_mbox = true;
	return 0;
}

/* Up to @len bytes of the long xattr prefix table from byte @start of
 * where the kernel looks for it: the metabox, else the packed inode,
 * unless PLAIN_XATTR_PFX (or neither exists) puts it in the image. */
static ssize_t read_prefix_table(struct anole_image *img, uint64_t start, char *buf, size_t len)
{
	bool plain = img->info.feature_compat & EROFS_COMPAT_PLAIN_XATTR_PFX;
	if (!plain && !img->has_mbox && zmap_packed_nid(img)) {
		struct anole_inode packed;
		int r = zmap_packed_inode(img, &packed);
		return r < 0 ? r : anole_pread(img, &packed, buf, len, start);
	}
	if (!plain && img->has_mbox)
		start |= META_MBOX;
	uint64_t limit = meta_limit(img, start);
	if (start > limit)
		return img_corrupt(img, UINT64_MAX, start, "long xattr prefixes start past the end");
	len = (size_t)MIN((uint64_t)len, limit - start);
	int r = img_meta_read(img, UINT64_MAX, start, buf, len);
	return r < 0 ? r : (ssize_t)len;
}

static int load_xattr_prefixes(struct anole_image *img)
{
	unsigned int n = img->info.xattr_prefix_count;
	if (!n)
		return 0;
	uint64_t start = (uint64_t)img->info.xattr_prefix_start << 2;
	size_t len = xattr_prefixes_max_size(n), bad;
	_cleanup_free_ char *buf = malloc(len);
	img->lpfx = calloc(n, sizeof(*img->lpfx));
	if (!buf || !img->lpfx)
		return anole_err(&img->err, ENOMEM, "out of memory");
	ssize_t got = read_prefix_table(img, start, buf, len);
	if (got < 0)
		return (int)got;
	char why[100];
	if (xattr_prefixes_parse((const uint8_t *)buf, (size_t)got, n, img->lpfx, &bad, why,
				 sizeof(why)) < 0)
		return anole_err(&img->err, EFSCORRUPTED, "%s: long xattr prefix table, byte %zu: %s",
				 img->path, (size_t)start + bad, why);
	img->nlpfx = n;
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
	if (r >= 0)
		r = load_metabox(img);
	if (r >= 0)
		r = load_xattr_prefixes(img);
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
	free(img->mbox_buf);
	free(img->lpfx);
	zmap_image_free(img->z);
	free(img->path);
	free(img);
}

const char *anole_image_device(const struct anole_image *img, unsigned int i)
{
	return i < img->ndevs ? img->devs[i].path : NULL;
}

const char *anole_image_device_tag(const struct anole_image *img, unsigned int i)
{
	return i < img->ndevs ? img->devs[i].tag : NULL;
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

/* Are blocks [blk, blk+n) in the image or wholly in one device of the
 * unified address space (@dev 0), or in device @dev? */
static bool blocks_exist(const struct anole_image *img, unsigned int dev, uint64_t blk,
			 uint64_t n)
{
	if (dev) {
		uint64_t l = dev <= img->ndevs ? img->devs[dev - 1].size >> img->blkbits : 0;
		return blk < l && n <= l - blk;
	}
	for (unsigned int i = 0; i < img->ndevs; i++) {
		uint64_t s = img->devs[i].start >> img->blkbits, l = img->devs[i].len >> img->blkbits;
		if (s && blk >= s && blk - s < l)
			return n <= l - (blk - s);
	}
	return blk < img->info.blocks && n <= img->info.blocks - blk;
}

static int check_flat_range(struct anole_image *img, const struct anole_inode *ino,
			    uint64_t nblocks)
{
	if (!nblocks)
		return 0;
	if (!blocks_exist(img, 0, ino->startblk, nblocks))
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
		ino->xattr_icount = raw.e.i_xattr_icount;
		ino->mode = raw.e.i_mode;
		ino->size = raw.e.i_size;
		*iu = raw.e.i_u;
		*startblk_hi = raw.e.i_startblk_hi;
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
		*iu = raw.c.i_u;
		ino->ino = raw.c.i_ino;
		ino->uid = raw.c.i_uid;
		ino->gid = raw.c.i_gid;
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
		if (!blocks_exist(img, *dev, blk, cblocks))
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

int anole_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	      uint64_t *run_end)
{
	uint64_t phys, run;
	unsigned int dev;
	if (off >= ino->size) {
		*hole = false;
		*run_end = ino->size;
		return 0;
	}
	int r = map_one(img, ino, off, hole, &phys, &run, &dev);
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
			if (dir->dot_omitted && len == 1 && name[0] == '.')
				return img_corrupt(img, dir->nid, dir->pos,
						   "a directory without '.' has a '.' entry");
			memcpy(prev, name, len);
			prevlen = len;
			first = false;
			int r = fn(ctx, name, len, de.nid, de.file_type);
			if (r)
				return r;
		}
	}
	/* the kernel lists an omitted "." after the stored entries */
	return dir->dot_omitted ? fn(ctx, ".", 1, dir->nid, EROFS_FT_DIR) : 0;
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

/* An entry's full name: its short prefix, or a long prefix's short
 * prefix and infix, then its own suffix. 1: an entry Linux does not list
 * (no handler for its prefix index: 0 is mkfs.erofs's padding and hidden
 * xattrs), to skip. */
static int xattr_name(struct anole_image *img, uint64_t nid, uint64_t at,
		      const struct erofs_xattr_entry *e, const char *body, char *name, size_t size,
		      unsigned int *base, size_t *prefix_len)
{
	unsigned int index = e->e_name_index;
	const struct xattr_lprefix *lp = NULL;
	if (index & EROFS_XATTR_LONG_PREFIX) {
		unsigned int k = index & EROFS_XATTR_LONG_PREFIX_MASK;
		if (k >= img->nlpfx)
			return img_corrupt(img, nid, at, "xattr with long prefix %u of %u", k,
					   img->nlpfx);
		lp = &img->lpfx[k];
		index = lp->base_index;
	}
	const char *prefix = xattr_prefix(index);
	if (!prefix)
		return 1;
	bool whole = index == EROFS_XATTR_INDEX_POSIX_ACL_ACCESS ||
		     index == EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT;
	size_t infix = lp ? lp->infix_len : 0;
	if ((whole && e->e_name_len) || (!whole && !e->e_name_len && !infix))
		return img_corrupt(img, nid, at, "xattr name of length %u under prefix %s",
				   e->e_name_len, prefix);
	if (memchr(body, 0, e->e_name_len))
		return img_corrupt(img, nid, at, "xattr name contains a NUL byte");
	if (strlen(prefix) + infix + e->e_name_len > EROFS_NAME_LEN)
		return img_corrupt(img, nid, at, "xattr name longer than %u bytes", EROFS_NAME_LEN);
	snprintf(name, size, "%s%.*s%.*s", prefix, (int)infix, lp ? lp->infix : "",
		 (int)e->e_name_len, body);
	*base = index;
	*prefix_len = strlen(prefix);
	return 0;
}

/* Hand an entry to @fn, unless Linux does not list it; one whose bit is
 * set in the inode's name filter (@filter) Linux lists but cannot get. */
static int emit_entry(struct anole_image *img, uint64_t nid, uint64_t at,
		      const struct erofs_xattr_entry *e, const char *body, uint32_t filter,
		      anole_xattr_fn fn, void *ctx)
{
	char name[600]; /* (the name is checked to fit 255 bytes) */
	unsigned int base;
	size_t plen;
	int r = xattr_name(img, nid, at, e, body, name, sizeof(name), &base, &plen);
	if (r)
		return r < 0 ? r : 0;
	if (filter & (1u << xattr_filter_bit(base, name + plen, strlen(name + plen))))
		return img_corrupt(img, nid, at, "xattr %s is there, but the name filter says not",
				   name);
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
	uint32_t filter = img->xattr_filter ? h.h_name_filter : 0;
	uint64_t shared_base = (uint64_t)img->info.xattr_blkaddr << img->blkbits;
	if (img->info.feature_compat & EROFS_COMPAT_SHARED_EA_IN_METABOX)
		shared_base |= META_MBOX;
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
		if ((r = emit_entry(img, ino->nid, spos, &e, sbody, filter, fn, ctx)))
			return r;
	}
	while (off + sizeof(struct erofs_xattr_entry) <= ino->xattr_isize) {
		struct erofs_xattr_entry e;
		memcpy(&e, body + off, sizeof(e));
		size_t esize = erofs_xattr_entry_size(e.e_name_len, e.e_value_size);
		if (esize > ino->xattr_isize - off)
			return img_corrupt(img, ino->nid, at + off, "xattr entry overflows the xattr area");
		if ((r = emit_entry(img, ino->nid, at + off, &e, body + off + sizeof(e), filter, fn,
				    ctx)))
			return r;
		off += esize;
	}
	return 0;
}
