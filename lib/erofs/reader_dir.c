/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directories, their blocks checked entry by entry as the kernel reads
 * them, and path lookup.
 */
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/image.h"

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
