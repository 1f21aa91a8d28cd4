/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EROFS image reader: the superblock, metadata reads through the
 * block cache, the metabox, opening and closing an image (erofs/image.h
 * lists the other parts). It trusts nothing: every offset, size, nid and
 * name is checked against the image before use, and every failure leaves
 * one line naming the nid and byte offset at fault.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/image.h"
#include "erofs/zmap.h"

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
	    (r = img_open_devices(img, &sb)) < 0)
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
		r = img_load_xattr_prefixes(img);
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

const struct anole_image_info *anole_image_info(const struct anole_image *img)
{
	return &img->info;
}

const struct anole_error *anole_image_error(const struct anole_image *img)
{
	return &img->err;
}
