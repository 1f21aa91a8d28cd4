/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device table: extra devices (data blobs, blob devices, tars) found
 * and opened, and where the data bytes of a device or of the unified
 * data address space are.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/image.h"

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
/* The device table (DEVICE_TABLE): each slot's blob is opened now, so a
 * missing one is one line at once, naming the slot and its tag. */
int img_open_devices(struct anole_image *img, const struct erofs_super_block *sb)
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
int img_locate_dev(struct anole_image *img, uint64_t nid, unsigned int dev, uint64_t pa,
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

/* Are blocks [blk, blk+n) in the image or wholly in one device of the
 * unified address space (@dev 0), or in device @dev? */
bool img_blocks_exist(const struct anole_image *img, unsigned int dev, uint64_t blk, uint64_t n)
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

const char *anole_image_device(const struct anole_image *img, unsigned int i)
{
	return i < img->ndevs ? img->devs[i].path : NULL;
}

const char *anole_image_device_tag(const struct anole_image *img, unsigned int i)
{
	return i < img->ndevs ? img->devs[i].tag : NULL;
}
