/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole_check(): walk every directory from the root, read every inode,
 * xattr and data byte, and cross-check what the walk saw (link counts,
 * "." and "..", file types, the inode count) against what is stored.
 */
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/reader.h"
#include "erofs/zmap.h"


static int collect(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int type)
{
	struct dent_list *l = ctx;
	struct dent *v = array_grow(l->v, &l->cap, l->n + 1, sizeof(*v), 64);
	if (!v)
		return -ENOMEM;
	l->v = v;
	struct dent *d = &l->v[l->n++];
	d->nid = nid;
	d->type = (uint8_t)type;
	d->len = (uint8_t)len;
	memcpy(d->name, name, len);
	d->name[len] = 0;
	return 0;
}

int read_dir_entries(struct anole_image *img, const struct anole_inode *dir, struct dent_list *out)
{
	out->n = 0;
	int r = anole_readdir(img, dir, collect, out);
	if (r == -ENOMEM)
		return anole_err(img_err(img), ENOMEM, "out of memory");
	return r;
}

struct nidset {
	uint64_t *v;
	size_t n, cap;
};

static int nidset_add(struct nidset *s, uint64_t nid)
{
	uint64_t *v = array_grow(s->v, &s->cap, s->n + 1, sizeof(*v), 1024);
	if (!v)
		return -ENOMEM;
	s->v = v;
	s->v[s->n++] = nid;
	return 0;
}

/* Open addressing set of directory nids, to catch loops. */
struct dirset {
	uint64_t *slot; /* nid + 1; 0 = empty */
	size_t n, cap;
};

static int dirset_insert(struct dirset *s, uint64_t nid, bool *was_there)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 1024;
		uint64_t *n = calloc(ncap, sizeof(*n));
		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->slot[i])
				continue;
			size_t j = (size_t)(s->slot[i] * 0x9e3779b97f4a7c15ull) & (ncap - 1);
			while (n[j])
				j = (j + 1) & (ncap - 1);
			n[j] = s->slot[i];
		}
		free(s->slot);
		s->slot = n;
		s->cap = ncap;
	}
	size_t j = (size_t)((nid + 1) * 0x9e3779b97f4a7c15ull) & (s->cap - 1);
	while (s->slot[j] && s->slot[j] != nid + 1)
		j = (j + 1) & (s->cap - 1);
	*was_there = s->slot[j] != 0;
	if (!*was_there) {
		s->slot[j] = nid + 1;
		s->n++;
	}
	return 0;
}

struct checker {
	struct anole_image *img;
	struct anole_check_stats *stats;
	struct nidset links; /* one entry per non-directory link */
	struct nidset nlinks; /* parallel: the stored nlink */
	struct dirset dirs;
	struct dirset multi; /* inodes with several links, already read */
	struct strbuf path;
	char *buf;
};

static int count_xattr(void *ctx, const char *name, const void *v, size_t n)
{
	(void)ctx, (void)name, (void)v, (void)n;
	return 0;
}

static int fail_at(struct checker *c, int r)
{
	/* Say where in the tree the reader's complaint was found. */
	struct anole_error *e = img_err(c->img);
	if (e->code && c->path.buf && !strstr(e->msg, " (at ")) {
		size_t len = strlen(e->msg);
		snprintf(e->msg + len, sizeof(e->msg) - len, " (at %s)", c->path.buf);
	}
	return r;
}

/* Out of line: keeps its buffer out of the recursion's frames. */
static __attribute__((noinline)) int check_data(struct checker *c, const struct anole_inode *ino)
{
	if (S_ISLNK(ino->mode)) {
		char target[4096];
		int r = anole_readlink(c->img, ino, target, sizeof(target));
		return r < 0 ? r : 0;
	}
	for (uint64_t off = 0; off < ino->size;) {
		bool hole;
		uint64_t end;
		int r = anole_map(c->img, ino, off, &hole, &end);
		if (r < 0)
			return r;
		if (!hole) {
			size_t n = (size_t)MIN(end - off, (uint64_t)(1u << 20));
			ssize_t got = anole_pread(c->img, ino, c->buf, n, off);
			if (got < 0)
				return (int)got;
			end = off + (uint64_t)got;
			c->stats->bytes += (uint64_t)got;
		}
		off = end;
	}
	return 0;
}

static int check_dir(struct checker *c, const struct anole_inode *dir, uint64_t parent, int depth)
{
	if (depth > ANOLE_MAX_DEPTH)
		return img_corrupt(c->img, dir->nid, dir->pos, "directory tree deeper than %d",
				   ANOLE_MAX_DEPTH);
	struct dent_list l = {0};
	int r = read_dir_entries(c->img, dir, &l);
	uint32_t subdirs = 0;
	bool dot = false, dotdot = false;
	size_t plen = c->path.len;

	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		struct dent *d = &l.v[i];
		if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) {
			bool is_dot = d->len == 1;
			uint64_t want = is_dot ? dir->nid : parent;
			if (d->nid != want || d->type != EROFS_FT_DIR)
				r = img_corrupt(c->img, dir->nid, dir->pos,
						"'%s' points to nid %llu, expected %llu", d->name,
						(unsigned long long)d->nid, (unsigned long long)want);
			*(is_dot ? &dot : &dotdot) = true;
			continue;
		}
		if (plen > 1)
			strbuf_add(&c->path, "/", 1);
		escape_name(d->name, d->len, &c->path);

		struct anole_inode ino;
		r = anole_inode_read(c->img, d->nid, &ino);
		if (r >= 0 && mode_to_ftype(ino.mode) != d->type)
			r = img_corrupt(c->img, d->nid, ino.pos,
					"directory entry says type %u, inode mode is 0%o", d->type,
					ino.mode);
		if (r >= 0)
			r = anole_xattrs(c->img, &ino, count_xattr, NULL);
		bool seen;
		if (r >= 0 && S_ISDIR(ino.mode)) {
			if (dirset_insert(&c->dirs, ino.nid, &seen) < 0)
				r = anole_err(img_err(c->img), ENOMEM, "out of memory");
			else if (seen)
				r = img_corrupt(c->img, ino.nid, ino.pos,
						"directory reached twice (a loop or a hard-linked "
						"directory)");
			else {
				subdirs++;
				c->stats->dirs++;
				c->stats->inodes++;
				r = check_dir(c, &ino, dir->nid, depth + 1);
			}
		} else if (r >= 0) {
			/* a hard-linked inode is counted and read at its first link */
			bool first = true;
			if (ino.nlink > 1 && dirset_insert(&c->multi, ino.nid, &seen) >= 0)
				first = !seen;
			if (nidset_add(&c->links, ino.nid) < 0 || nidset_add(&c->nlinks, ino.nlink) < 0)
				r = anole_err(img_err(c->img), ENOMEM, "out of memory");
			if (r >= 0 && first && S_ISREG(ino.mode))
				c->stats->files++;
			if (r >= 0 && first && (S_ISREG(ino.mode) || S_ISLNK(ino.mode)))
				r = check_data(c, &ino);
		}
		if (r < 0)
			r = fail_at(c, r);
		c->path.len = plen;
		c->path.buf[plen] = 0;
	}
	free(l.v);
	if (r < 0)
		return r;
	if (!dot || !dotdot)
		return fail_at(c, img_corrupt(c->img, dir->nid, dir->pos, "directory lacks '%s'",
					     dot ? ".." : "."));
	/* a compact inode too small for the count holds 1 (mkfs.erofs, ext4) */
	uint64_t want = 2ull + subdirs;
	if (dir->nlink != want && !(dir->nlink == 1 && want > UINT16_MAX && !dir->extended))
		return fail_at(c, img_corrupt(c->img, dir->nid, dir->pos,
					     "directory nlink %u, but it has %u subdirectories",
					     dir->nlink, subdirs));
	return 0;
}

static int cmp_u64pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

static int check_links(struct checker *c)
{
	size_t n = c->links.n;
	_cleanup_free_ uint64_t *pairs = malloc(n * 2 * sizeof(uint64_t) + 1);
	if (!pairs)
		return anole_err(img_err(c->img), ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		pairs[2 * i] = c->links.v[i];
		pairs[2 * i + 1] = c->nlinks.v[i];
	}
	qsort(pairs, n, 2 * sizeof(uint64_t), cmp_u64pair);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && pairs[2 * j] == pairs[2 * i])
			j++;
		if (pairs[2 * i + 1] != j - i)
			return anole_err(img_err(c->img), EFSCORRUPTED,
					 "%s: nid %llu: nlink is %llu but %zu directory entries link it",
					 img_path(c->img), (unsigned long long)pairs[2 * i],
					 (unsigned long long)pairs[2 * i + 1], j - i);
		c->stats->inodes++;
		i = j;
	}
	return 0;
}

/* The packed and metabox inodes lie outside the tree: read all of them
 * too, not counting their bytes again (they are the files' fragments, the
 * inodes' metadata). */
static int check_special(struct checker *c, struct anole_inode *ino)
{
	uint64_t bytes = c->stats->bytes;
	int r = check_data(c, ino);
	c->stats->bytes = bytes;
	return r;
}

static int check_packed(struct checker *c)
{
	if (!zmap_packed_nid(c->img))
		return 0;
	struct anole_inode packed;
	int r = zmap_packed_inode(c->img, &packed);
	return r < 0 ? r : check_special(c, &packed);
}

static int check_metabox(struct checker *c)
{
	struct anole_inode mbox;
	int r = img_metabox_inode(c->img, &mbox);
	return r <= 0 ? r : check_special(c, &mbox);
}

int anole_check(struct anole_image *img, struct anole_check_stats *stats)
{
	struct anole_check_stats local = {0};
	struct checker c = {.img = img, .stats = stats ? stats : &local};
	const struct anole_image_info *info = anole_image_info(img);
	struct anole_inode root;
	bool seen;
	int r;

	memset(c.stats, 0, sizeof(*c.stats));
	c.buf = malloc(1u << 20);
	strbuf_add(&c.path, "/", 1);
	if (!c.buf || !c.path.buf) {
		r = anole_err(img_err(img), ENOMEM, "out of memory");
		goto out;
	}
	r = anole_inode_read(img, info->root_nid, &root);
	if (r >= 0 && !S_ISDIR(root.mode))
		r = img_corrupt(img, root.nid, root.pos, "root inode is not a directory");
	if (r >= 0)
		r = anole_xattrs(img, &root, count_xattr, NULL);
	if (r >= 0)
		r = dirset_insert(&c.dirs, root.nid, &seen);
	if (r >= 0) {
		c.stats->dirs = c.stats->inodes = 1;
		r = check_dir(&c, &root, root.nid, 0);
	}
	if (r >= 0)
		r = check_links(&c);
	if (r >= 0)
		r = check_packed(&c);
	if (r >= 0)
		r = check_metabox(&c);
	/* mkfs.erofs counts the packed and metabox inodes too, anole's writer
	 * does not: either agrees */
	uint64_t special = (zmap_packed_nid(img) != 0) + (info->metabox_nid != 0);
	if (r >= 0 && info->inodes == c.stats->inodes + special)
		c.stats->inodes += special;
	if (r >= 0 && c.stats->inodes != info->inodes)
		r = anole_err(img_err(img), EFSCORRUPTED,
			      "%s: byte offset 1040: superblock counts %llu inodes, the tree has %llu",
			      img_path(img), (unsigned long long)info->inodes,
			      (unsigned long long)c.stats->inodes);
out:
	free(c.buf);
	free(c.links.v);
	free(c.nlinks.v);
	free(c.dirs.slot);
	free(c.multi.slot);
	strbuf_release(&c.path);
	return r;
}
