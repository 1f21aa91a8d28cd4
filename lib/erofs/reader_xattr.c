/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Xattrs: the long name prefix table, and an inode's inline and shared
 * entries, listed as Linux lists them.
 */
#include "anole/erofs_fs.h"
#include "erofs/image.h"
#include "erofs/zmap.h"

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

int img_load_xattr_prefixes(struct anole_image *img)
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
