/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer merge's tree: nodes found by (parent, name) in one hash table,
 * and, in separate mode, what lower layers left at each directory path
 * (dirmeta) for the layers above them. See layers.c.
 */
#include "source/layers_int.h"

/* ---- nodes ------------------------------------------------------------- */

uint64_t lm_fnv1a_step(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return h;
}

uint64_t lm_fnv1a(uint64_t h, const char *s, size_t len)
{
	h = lm_fnv1a_step(h, s, len);
	return h ^ (h >> 31);
}

static uint64_t node_hash(const struct mnode *parent, const char *name, size_t len)
{
	return lm_fnv1a(0xcbf29ce484222325ull ^ ((uintptr_t)parent * 0x9e3779b97f4a7c15ull), name,
			len);
}

/* Not kept in the node: a million nodes would take 8 MB for it. */
static uint64_t mnode_hash(const struct mnode *n)
{
	return node_hash(n->parent, n->name, n->namelen);
}

size_t lm_tab_find(const struct layers *l, const struct mnode *parent, const char *name,
		   size_t len, uint64_t h)
{
	size_t j = (size_t)h & (l->tabcap - 1);
	for (; l->tab[j]; j = (j + 1) & (l->tabcap - 1)) {
		const struct mnode *n = l->tab[j];
		if (n->parent == parent && n->namelen == len &&
		    !memcmp(n->name, name, len))
			break;
	}
	return j;
}

int lm_tab_grow(struct layers *l)
{
	if ((l->tabcount + 1) * 4 < l->tabcap * 3)
		return 0;
	size_t ncap = l->tabcap ? l->tabcap * 2 : 4096;
	struct mnode **n = calloc(ncap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < l->tabcap; i++) {
		if (!l->tab[i])
			continue;
		size_t j = (size_t)mnode_hash(l->tab[i]) & (ncap - 1);
		while (n[j])
			j = (j + 1) & (ncap - 1);
		n[j] = l->tab[i];
	}
	free(l->tab);
	l->tab = n;
	l->tabcap = ncap;
	return 0;
}

struct mnode *lm_lookup(struct layers *l, struct mnode *parent, const char *name, size_t len)
{
	return l->tab[lm_tab_find(l, parent, name, len, node_hash(parent, name, len))];
}

/* Linear probing: delete by shifting later entries of the run back. */
static void tab_remove(struct layers *l, struct mnode *n)
{
	size_t mask = l->tabcap - 1, i = (size_t)mnode_hash(n) & mask;
	while (l->tab[i] != n) {
		if (!l->tab[i])
			return;
		i = (i + 1) & mask;
	}
	l->tab[i] = NULL;
	l->tabcount--;
	for (size_t j = (i + 1) & mask; l->tab[j]; j = (j + 1) & mask) {
		size_t home = (size_t)mnode_hash(l->tab[j]) & mask;
		/* move it back unless its home lies cyclically in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			l->tab[i] = l->tab[j];
			l->tab[j] = NULL;
			i = j;
		}
	}
}

/* Re-parent @c (with its subtree) under @dst. */
void lm_move_node(struct layers *l, struct mnode *c, struct mnode *dst)
{
	tab_remove(l, c);
	c->parent = dst;
	size_t j = lm_tab_find(l, dst, c->name, c->namelen, mnode_hash(c));
	if (!l->tab[j])
		l->tabcount++;
	l->tab[j] = c; /* over a node the caller declared dead */
	/* (callers pass a directory; lm_lookup() above takes a NULL parent for
	 * the root's, which misleads the analyser) */
	c->next = dst->first; // NOLINT(clang-analyzer-core.NullDereference)
	dst->first = c;
}

struct tinode *lm_new_inode(struct layers *l)
{
	return tw_inode_new(l->tw);
}

/* The record of @key in @m (records start with their own copy of the key,
 * char *path); a zeroed one is made when @create and it is absent. */
void *lm_record(struct strmap *m, const char *key, size_t len, size_t size, bool create)
{
	void **slot = m ? strmap_slot(m, key, len, create) : NULL;
	if (!slot || *slot)
		return slot ? *slot : NULL;
	char **rec = calloc(1, size);
	if (rec && !(*rec = strndup(key, len))) {
		free(rec);
		rec = NULL;
	}
	return *slot = rec;
}

/* "LAYER: 'PATH'": how other modules' messages (xattrs, the writer) name
 * an entry, so that every error names the layer and the entry. */
const char *lm_entry_name(struct layers *l, const char *path)
{
	l->ename.len = 0;
	strbuf_addf(&l->ename, "%s: '%s'", l->what, path);
	return l->ename.buf ? l->ename.buf : path;
}

struct dmeta *dm_slot(struct dirmeta *dm, const char *path, size_t len, bool create)
{
	return lm_record(dm->m, path, len, sizeof(struct dmeta), create);
}

int dirmeta_new(struct dirmeta **out)
{
	*out = calloc(1, sizeof(**out));
	if (*out && !((*out)->m = strmap_new())) {
		free(*out);
		*out = NULL;
	}
	return *out ? 0 : -ENOMEM;
}

static void free_dmeta(void *p)
{
	struct dmeta *d = p;
	if (!d)
		return;
	free(d->path);
	free(d->symlink);
	strbuf_release(&d->xattrs);
	free(d);
}

void dirmeta_free(struct dirmeta *dm)
{
	if (!dm)
		return;
	strmap_free(dm->m, free_dmeta);
	free(dm);
}

void layers_use_dirmeta(struct layers *l, struct dirmeta *dm, const char *const *lower,
			size_t nlower)
{
	l->dm = dm;
	l->lower = lower;
	l->nlower = nlower;
}

static int dm_add_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	struct strbuf *sb = ctx;
	uint16_t sz = (uint16_t)size;
	strbuf_add(sb, name, strlen(name) + 1);
	strbuf_add(sb, &sz, 2);
	strbuf_add(sb, value, size);
	return 0;
}

bool dm_is_dir(const struct dmeta *d)
{
	return d && S_ISDIR(d->mode) && !d->gone && !d->symlink;
}

/* Everything lower layers left under the directory @path is gone (an
 * opaque marker, a whiteout or a non-directory over it): a later layer
 * that makes the directory again starts it empty. Records below it go
 * stale (dm_step), rather than being found and marked here. */
void dm_cut(struct layers *l, const char *path, size_t len)
{
	struct dmeta *d = dm_slot(l->dm, path, len, true);
	if (d)
		d->cut = l->layer + 1;
}

/* The record of the prefix [0, @len) of l->path, walking down from the
 * root: NULL when absent or stale. @cutoff carries the latest cut of the
 * prefixes above it (start with dm_step(l, 0, &zero)). */
const struct dmeta *dm_step(struct layers *l, size_t len, uint32_t *cutoff)
{
	const struct dmeta *d = l->dm ? dm_slot(l->dm, l->path.buf, len, false) : NULL;
	if (!d)
		return NULL;
	bool stale = d->born < *cutoff;
	*cutoff = MAX(*cutoff, d->cut);
	return stale ? NULL : d;
}

static void dm_set(struct dmeta *d, struct layers *l, const struct tinode *ino)
{
	d->mode = ino->mode;
	d->uid = ino->uid;
	d->gid = ino->gid;
	d->mtime = ino->mtime;
	d->mtime_nsec = ino->mtime_nsec;
	free(d->symlink);
	d->symlink = NULL;
	d->gone = false;
	d->born = l->layer + 1;
	d->xattrs.len = 0;
	xattr_set_foreach(tw_xattrs(l->tw), ino->xattr_set, dm_add_xattr, &d->xattrs);
}

void dm_remember(struct layers *l, const struct tinode *ino)
{
	struct dmeta *d = l->dm ? dm_slot(l->dm, l->path.buf, l->path.len, true) : NULL;
	if (d) /* (out of memory only costs the metadata) */
		dm_set(d, l, ino);
}

/* A non-directory at l->path: a symlink later layers may write through,
 * or the end of a directory they would have taken metadata from. */
void dm_other(struct layers *l, const struct tinode *ino)
{
	if (!l->dm)
		return;
	bool link = S_ISLNK(ino->mode);
	struct dmeta *d = dm_slot(l->dm, l->path.buf, l->path.len, link);
	if (!d)
		return;
	if (dm_is_dir(d))
		d->cut = l->layer + 1;
	free(d->symlink);
	d->symlink = link ? strdup(ino->u.symlink) : NULL;
	d->gone = !link;
	d->born = l->layer + 1;
}

void dm_gone(struct layers *l, const char *path, size_t len)
{
	struct dmeta *d = l->dm ? dm_slot(l->dm, path, len, false) : NULL;
	if (d) {
		d->gone = true;
		d->cut = l->layer + 1;
	}
}

/* A directory this layer implies at the first @len bytes of l->path,
 * whose record is @d (dm_step): it shows the metadata the layers below
 * gave it (stacked with overlayfs, the upper copy's is what shows), and
 * when they had none it is remembered, so that later layers know it
 * exists. */
void dm_implied(struct layers *l, size_t len, const struct dmeta *d, struct tinode *ino)
{
	if (!l->dm)
		return;
	if (!dm_is_dir(d)) {
		struct dmeta *nd = dm_slot(l->dm, l->path.buf, len, true);
		if (nd)
			dm_set(nd, l, ino);
		return;
	}
	/* xattrs go into this image's own table */
	struct xattr_table *t = tw_xattrs(l->tw);
	for (size_t off = 0; off < d->xattrs.len;) {
		const char *name = d->xattrs.buf + off;
		size_t nl = strlen(name) + 1;
		uint16_t sz;
		memcpy(&sz, name + nl, 2);
		xattr_set_add(t, &l->xs, name, name + nl + 2, sz, l->err,
			      lm_entry_name(l, l->path.buf));
		off += nl + 2 + sz;
	}
	if (xattr_set_intern(t, &l->xs, &ino->xattr_set) < 0)
		ino->xattr_set = 0;
	ino->mode = d->mode;
	ino->uid = d->uid;
	ino->gid = d->gid;
	ino->mtime = d->mtime;
	ino->mtime_nsec = d->mtime_nsec;
}

/* Put a new node at (parent, name), replacing whatever lives there. */
struct mnode *lm_put_node(struct layers *l, struct mnode *parent, const char *name, size_t len,
			  enum mkind kind)
{
	if (lm_tab_grow(l) < 0)
		return NULL;
	struct mnode *n = arena_alloc(&l->nodes, offsetof(struct mnode, name) + len);
	if (!n)
		return NULL;
	n->parent = parent;
	n->namelen = (uint16_t)len;
	memcpy(n->name, name, len);
	n->kind = (uint8_t)kind;
	n->layer = (uint16_t)l->layer;
	size_t j = lm_tab_find(l, parent, name, len, mnode_hash(n));
	if (l->tab[j])
		l->tab[j]->kind = MK_DEAD; /* its subtree is unreachable now */
	else
		l->tabcount++;
	l->tab[j] = n;
	n->next = parent->first;
	parent->first = n;
	return n;
}

struct tinode *lm_implicit_dir_inode(struct layers *l)
{
	struct tinode *ino = lm_new_inode(l);
	if (ino)
		ino->mode = S_IFDIR | 0755;
	return ino;
}

struct mnode *lm_put_implicit_dir(struct layers *l, struct mnode *parent, const char *name,
				  size_t len, bool ghost)
{
	struct tinode *ino = lm_implicit_dir_inode(l);
	struct mnode *n = ino ? lm_put_node(l, parent, name, len, MK_DIR) : NULL;
	if (n) {
		n->inode = ino;
		n->ghost = ghost;
	}
	return n;
}

/* A real entry lives in @n: it and the ghosts above it are in the image
 * (the parents of a real node are real). */
void lm_unghost(struct mnode *n)
{
	for (; n && n->ghost; n = n->parent)
		n->ghost = false;
}

/* Layers below this one add nothing under directory @n (an opaque
 * marker, or the directory replaced a whiteout or a non-directory of
 * this layer), and with @deleted give it no metadata either. In
 * separate mode overlayfs learns it from the opaque mark. */
void lm_cut_below(struct layers *l, struct mnode *n, bool deleted)
{
	n->floor = (uint16_t)MAX(n->floor, l->layer);
	if (deleted)
		n->meta_floor = (uint16_t)MAX(n->meta_floor, l->layer);
	n->opaque |= l->separate;
}

