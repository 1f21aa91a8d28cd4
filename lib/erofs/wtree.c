/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's tree: inodes and directory entries as sources add them,
 * paths for messages, and directories sorted by name before layout.
 */
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/writer.h"
#include "util/arena.h"

/* arena_foreach() walks inodes in steps of their size */
_Static_assert(sizeof(struct tinode) % 8 == 0, "struct tinode is not a multiple of 8 bytes");

struct tinode *tw_inode_new(struct tree_writer *tw)
{
	return arena_alloc(&tw->imem, sizeof(struct tinode));
}

int tw_register_inode(struct tree_writer *tw, struct tinode *ino)
{
	if (tw->ninodes == tw->icap) {
		size_t ncap = tw->icap ? tw->icap * 2 : 1024;
		struct tinode **n = realloc(tw->inodes, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		tw->inodes = n;
		tw->icap = ncap;
	}
	if (tw->opts.clamp_mtime && ino->mtime > tw->opts.mtime_clamp) {
		ino->mtime = tw->opts.mtime_clamp;
		ino->mtime_nsec = 0;
	}
	tw->inodes[tw->ninodes++] = ino;
	ino->ino = (uint32_t)tw->ninodes;
	if (S_ISDIR(ino->mode)) {
		ino->u.dir = calloc(1, sizeof(struct tdir));
		if (!ino->u.dir)
			return -ENOMEM;
	}
	return 0;
}

int tw_root(struct tree_writer *tw, struct tinode **root)
{
	if (tw->ninodes)
		return anole_err(tw->err, EINVAL, "root added twice");
	if (!S_ISDIR((*root)->mode))
		return anole_err(tw->err, ENOTDIR, "the root of an image must be a directory");
	int r = tw_register_inode(tw, *root);
	if (r < 0) {
		*root = NULL;
		return anole_err(tw->err, -r, "out of memory");
	}
	(*root)->nlink = 1;
	return 0;
}

void tdentry_path(const struct tdentry *d, struct strbuf *out)
{
	if (!d) {
		strbuf_add(out, "/", 1);
		return;
	}
	const struct tdentry *chain[4096];
	size_t n = 0;
	for (; d && n < ARRAY_SIZE(chain); d = d->parent)
		chain[n++] = d;
	while (n--) {
		strbuf_add(out, "/", 1);
		escape_name(chain[n]->name, chain[n]->namelen, out);
	}
}

/* check and extract would refuse the image: say so now, with the end of
 * the path */
static int too_deep(struct tree_writer *tw, const struct tdir *pd, const char *name,
		    size_t namelen)
{
	struct strbuf p = {0};
	tdentry_path(pd->parent, &p);
	strbuf_add(&p, "/", 1);
	escape_name(name, namelen, &p);
	int r = anole_err(tw->err, ELOOP,
			  "'%s%s': directories nested deeper than %d (check and extract refuse "
			  "deeper trees)",
			  p.len > 120 ? "..." : "", p.buf ? p.buf + (p.len > 120 ? p.len - 120 : 0) : "",
			  ANOLE_MAX_DEPTH);
	strbuf_release(&p);
	return r;
}

int tw_add(struct tree_writer *tw, struct tinode *parent, const char *name, size_t namelen,
	   struct tinode *inode, struct tdentry **out)
{
	if (!namelen || namelen > EROFS_NAME_LEN || memchr(name, '/', namelen) ||
	    memchr(name, 0, namelen) || (namelen == 1 && name[0] == '.') ||
	    (namelen == 2 && name[0] == '.' && name[1] == '.'))
		return anole_err(tw->err, EINVAL, "invalid file name '%.*s'", (int)MIN(namelen, 255),
				 name);
	if (!S_ISDIR(parent->mode))
		return anole_err(tw->err, ENOTDIR, "parent of '%.*s' is not a directory",
				 (int)namelen, name);
	struct tdir *pd = parent->u.dir;
	if (S_ISDIR(inode->mode) && !inode->nlink && pd->depth >= ANOLE_MAX_DEPTH)
		return too_deep(tw, pd, name, namelen);
	/* a dentry that fails below stays in the arena until the writer goes */
	struct tdentry *d = arena_alloc(&tw->mem, offsetof(struct tdentry, name) + namelen);
	if (!d)
		return anole_err(tw->err, ENOMEM, "out of memory");
	d->inode = inode;
	d->parent = pd->parent;
	d->namelen = (uint16_t)namelen;
	memcpy(d->name, name, namelen);
	/* dentry->parent names the parent *dentry* so paths can be rebuilt */
	if (pd->nchild == pd->cap) {
		uint32_t ncap = pd->cap ? pd->cap * 2 : 8;
		struct tdentry **n = realloc(pd->child, ncap * sizeof(*n));
		if (!n)
			return anole_err(tw->err, ENOMEM, "out of memory");
		pd->child = n;
		pd->cap = ncap;
	}
	if (!inode->nlink) {
		int r = tw_register_inode(tw, inode);
		if (r < 0)
			return anole_err(tw->err, -r, "out of memory");
	} else if (S_ISDIR(inode->mode)) {
		return anole_err(tw->err, EMLINK, "directory '%.*s' linked twice", (int)namelen,
				 name);
	} else {
		tw->stats.hardlinks++;
	}
	if (inode->nlink == UINT32_MAX)
		return anole_err(tw->err, EMLINK, "too many links to '%.*s'", (int)namelen, name);
	inode->nlink++;
	pd->child[pd->nchild++] = d;
	if (S_ISDIR(inode->mode)) {
		pd->nsubdirs++;
		inode->u.dir->parent = d;
		inode->u.dir->depth = pd->depth + 1;
	}
	if (out)
		*out = d;
	return 0;
}

static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, MIN(alen, blen));
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int cmp_dentry(const void *x, const void *y)
{
	const struct tdentry *a = *(const struct tdentry *const *)x;
	const struct tdentry *b = *(const struct tdentry *const *)y;
	return cmp_name(a->name, a->namelen, b->name, b->namelen);
}

/* The entries of a directory as stored: "." and ".." merged in by name. */
static struct dref *dir_refs(struct tinode *dir, struct tinode *parent, uint32_t *n)
{
	struct tdir *d = dir->u.dir;
	struct dref *r = malloc((d->nchild + 2) * sizeof(*r));
	if (!r)
		return NULL;
	uint32_t k = 0, i = 0;
	struct dref dots[2] = {{".", 1, dir}, {"..", 2, parent}};
	unsigned int di = 0;
	while (i < d->nchild || di < 2) {
		if (di < 2 && (i == d->nchild || cmp_name(dots[di].name, dots[di].len,
							    d->child[i]->name,
							    d->child[i]->namelen) < 0)) {
			r[k++] = dots[di++];
		} else {
			r[k++] = (struct dref){d->child[i]->name, d->child[i]->namelen,
					       d->child[i]->inode};
			i++;
		}
	}
	*n = k;
	return r;
}

static struct tinode *parent_of(struct tree_writer *tw, struct tinode *dir)
{
	struct tdentry *d = dir->u.dir->parent;
	if (!d)
		return tw->inodes[0];
	/* the dentry's parent field names the grandparent dentry; the parent
	 * directory inode is found through it, or the root */
	return d->parent ? d->parent->inode : tw->inodes[0];
}

void tw_inode_path(struct tree_writer *tw, struct tinode *ino, struct strbuf *out)
{
	/* Directories know their dentry; for others, search is not worth it. */
	if (S_ISDIR(ino->mode))
		tdentry_path(ino->u.dir->parent, out);
	else
		strbuf_addf(out, "inode #%u", ino->ino);
	(void)tw;
}

int tw_sort_dirs(struct tree_writer *tw)
{
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		if (!S_ISDIR(ino->mode))
			continue;
		struct tdir *d = ino->u.dir;
		if (d->nchild)
			qsort(d->child, d->nchild, sizeof(*d->child), cmp_dentry);
		for (uint32_t k = 1; k < d->nchild; k++) {
			if (!cmp_dentry(&d->child[k - 1], &d->child[k])) {
				struct strbuf p = {0};
				tw_inode_path(tw, ino, &p);
				int r = anole_err(tw->err, EEXIST, "%s: duplicate entry '%.*s'",
						  p.buf, (int)d->child[k]->namelen,
						  d->child[k]->name);
				strbuf_release(&p);
				return r;
			}
		}
	}
	return 0;
}


struct dref *tw_dir_refs(struct tree_writer *tw, struct tinode *dir, uint32_t *n)
{
	return dir_refs(dir, parent_of(tw, dir), n);
}
