/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Container layers merged into one tree, top layer first.
 *
 * Layers are fed top-down, so when an entry is read we already know whether
 * a higher layer replaced it, deleted it (.wh.NAME) or made its directory
 * opaque (.wh..wh..opq): hidden entries are skipped and their data is never
 * stored. The result is what applying the layers in order gives (umoci,
 * containerd): a directory merges with the directory below it unless a
 * whiteout or an opaque marker cuts it off; anything else hides what is
 * below it; within one layer a later entry replaces an earlier one. Paths
 * through a lower layer's symlink resolve inside the root: when the
 * symlink arrives, what higher layers put under it moves to its target.
 *
 * A whiteout or opaque marker creates nothing: the directories it names
 * are "ghosts" until a real entry shows they exist. Under a non-directory
 * of its own layer it deletes nothing (umoci repack writes whiteouts for
 * the old children of a directory it made a symlink or a file).
 *
 * In separate mode each layer becomes its own image and the markers are
 * kept the way overlayfs reads them: a 0/0 character device for a whiteout
 * and trusted.overlay.opaque=y on an opaque directory.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "source/source.h"
#include "util/dyn_archive.h"
#include "util/strmap.h"
#include "util/arena.h"

enum mkind { MK_DIR, MK_OTHER, MK_WHITEOUT, MK_DEAD };

struct mnode {
	struct mnode *parent, *first, *next; /* children, in arrival order */
	struct tinode *inode;                /* NULL for whiteouts */
	/* layers fit in 16 bits (layers_add() checks), so that a node with
	 * a name of up to 6 bytes takes 48 bytes of the arena, not 56 */
	uint16_t layer; /* the layer that put it here */
	uint16_t floor; /* dirs: layers below this add no children */
	uint16_t meta_floor; /* implied dirs: below this, metadata is of a
				deleted directory */
	uint8_t kind;
	bool explicit_dir : 1; /* a layer entry gave this dir its metadata */
	bool opaque : 1;       /* separate mode: gets trusted.overlay.opaque */
	bool ghost : 1;        /* a dir made only to hold whiteouts: not in the
				  image unless a real entry turns up in it */
	uint16_t namelen;
	char name[];
};

_Static_assert(sizeof(void *) != 8 || offsetof(struct mnode, name) <= 42, "struct mnode grew");

/* A file of the current layer, for hard links to find: one per entry,
 * so a million-file layer keeps it small (16 bytes, and its name in a
 * shared buffer after its directory's path, which files of one directory
 * share) and only hidden files get more. */
struct lfile {
	uintptr_t ref; /* its struct tinode, or a struct lhidden with the low bit set */
	uint64_t path; /* offset of its entry in files.paths, see remember_file() */
};

/* A hidden file: its data went to the scratch file, not the image. */
struct lhidden {
	struct tinode *inode;
	bool materialized; /* a visible link has since stored its data */
	uint64_t scratch_off;
	struct data_extent *ext; /* sparse: its data runs */
	size_t next;
};

/* path -> lfile: open addressing over indexes into @v (+1; 0 = free). */
struct files {
	uint32_t *slot;
	size_t cap;
	struct lfile *v;
	size_t n, vcap;
	struct strbuf paths;
	uint64_t last_dir; /* the directory path stored last, and its length */
	size_t last_dirlen;
};

struct layers {
	struct tree_writer *tw;
	struct anole_error *err;
	bool separate;
	struct mnode *root;
	struct mnode **tab; /* (parent, name) -> live node */
	size_t tabcap, tabcount;
	struct arena nodes; /* every node, freed at once */

	/* the layer being read */
	uint32_t layer;
	const char *what;
	struct blob_stream *bs;
	struct files files;
	struct strbuf path; /* normalized path of the current entry */
	struct strbuf ename; /* "LAYER: 'PATH'", see entry_name() */
	struct xattr_setbuf xs;
	int spool_fd;       /* one file's data, for the writer to read */
	int big_fd;         /* the same for files too big for memory */
	int scratch_fd;     /* data of hidden files hard links may need */
	uint64_t scratch_len;
	char *buf;
	struct layers_stats stats;
	struct dirmeta *dm; /* separate mode: directories of lower layers */
	const char *const *lower; /* separate mode: images of the layers below */
	size_t nlower;
	struct strmap *pend; /* target path -> struct pending: hard links into
				lower layers */
};

/* Links of a higher layer to a file a lower layer will bring. */
struct pending {
	char *path;
	char *first_link; /* for messages */
	uint32_t layer; /* of the links: the target comes from below it */
	bool resolved;
	struct mnode **links;
	size_t n, cap;
};

/* What a directory looked like in the layers below, for the directories a
 * layer implies without an entry of its own (parents of changed files):
 * stacked with overlayfs, the upper copy's metadata is what shows. */
struct dmeta {
	char *path;
	uint32_t mode, uid, gid, mtime_nsec;
	int64_t mtime;
	char *symlink; /* the path is a symlink to this, not a directory */
	bool gone;     /* a later layer deleted or replaced it */
	/* layer + 1 that last made it, and that last cut off what lower
	 * layers had under it: a record made before a cut above it is stale */
	uint32_t born, cut;
	struct strbuf xattrs; /* name\0, u16 size, value; repeated */
};

struct dirmeta {
	struct strmap *m; /* path -> struct dmeta */
};

#define SPOOL_MEM_MAX (64ull << 20)
/* A sparse entry's size is only a claim. 2^56 bytes is what the writer's
 * chunk maps cover (2^24 chunks of 4 GiB). */
#define MAX_FILE_SIZE (1ull << 56)
#define IO_BUF (1u << 20)

/* ---- nodes ------------------------------------------------------------- */

static uint64_t fnv1a_step(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t len)
{
	h = fnv1a_step(h, s, len);
	return h ^ (h >> 31);
}

static uint64_t node_hash(const struct mnode *parent, const char *name, size_t len)
{
	return fnv1a(0xcbf29ce484222325ull ^ ((uintptr_t)parent * 0x9e3779b97f4a7c15ull), name,
		     len);
}

/* Not kept in the node: a million nodes would take 8 MB for it. */
static uint64_t mnode_hash(const struct mnode *n)
{
	return node_hash(n->parent, n->name, n->namelen);
}

static size_t tab_find(const struct layers *l, const struct mnode *parent, const char *name,
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

static int tab_grow(struct layers *l)
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

static struct mnode *lookup(struct layers *l, struct mnode *parent, const char *name, size_t len)
{
	return l->tab[tab_find(l, parent, name, len, node_hash(parent, name, len))];
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
static void move_node(struct layers *l, struct mnode *c, struct mnode *dst)
{
	tab_remove(l, c);
	c->parent = dst;
	size_t j = tab_find(l, dst, c->name, c->namelen, mnode_hash(c));
	if (!l->tab[j])
		l->tabcount++;
	l->tab[j] = c; /* over a node the caller declared dead */
	/* (callers pass a directory; lookup() above takes a NULL parent for
	 * the root's, which misleads the analyser) */
	c->next = dst->first; // NOLINT(clang-analyzer-core.NullDereference)
	dst->first = c;
}

static struct tinode *new_inode(struct layers *l)
{
	return tw_inode_new(l->tw);
}

/* The record of @key in @m (records start with their own copy of the key,
 * char *path); a zeroed one is made when @create and it is absent. */
static void *record(struct strmap *m, const char *key, size_t len, size_t size, bool create)
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
static const char *entry_name(struct layers *l, const char *path)
{
	l->ename.len = 0;
	strbuf_addf(&l->ename, "%s: '%s'", l->what, path);
	return l->ename.buf ? l->ename.buf : path;
}

static struct dmeta *dm_slot(struct dirmeta *dm, const char *path, size_t len, bool create)
{
	return record(dm->m, path, len, sizeof(struct dmeta), create);
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

static bool dm_is_dir(const struct dmeta *d)
{
	return d && S_ISDIR(d->mode) && !d->gone && !d->symlink;
}

/* Everything lower layers left under the directory @path is gone (an
 * opaque marker, a whiteout or a non-directory over it): a later layer
 * that makes the directory again starts it empty. Records below it go
 * stale (dm_step), rather than being found and marked here. */
static void dm_cut(struct layers *l, const char *path, size_t len)
{
	struct dmeta *d = dm_slot(l->dm, path, len, true);
	if (d)
		d->cut = l->layer + 1;
}

/* The record of the prefix [0, @len) of l->path, walking down from the
 * root: NULL when absent or stale. @cutoff carries the latest cut of the
 * prefixes above it (start with dm_step(l, 0, &zero)). */
static const struct dmeta *dm_step(struct layers *l, size_t len, uint32_t *cutoff)
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

static void dm_remember(struct layers *l, const struct tinode *ino)
{
	struct dmeta *d = l->dm ? dm_slot(l->dm, l->path.buf, l->path.len, true) : NULL;
	if (d) /* (out of memory only costs the metadata) */
		dm_set(d, l, ino);
}

/* A non-directory at l->path: a symlink later layers may write through,
 * or the end of a directory they would have taken metadata from. */
static void dm_other(struct layers *l, const struct tinode *ino)
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

static void dm_gone(struct layers *l, const char *path, size_t len)
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
static void dm_implied(struct layers *l, size_t len, const struct dmeta *d, struct tinode *ino)
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
			      entry_name(l, l->path.buf));
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
static struct mnode *put_node(struct layers *l, struct mnode *parent, const char *name, size_t len,
			      enum mkind kind)
{
	if (tab_grow(l) < 0)
		return NULL;
	struct mnode *n = arena_alloc(&l->nodes, offsetof(struct mnode, name) + len);
	if (!n)
		return NULL;
	n->parent = parent;
	n->namelen = (uint16_t)len;
	memcpy(n->name, name, len);
	n->kind = (uint8_t)kind;
	n->layer = (uint16_t)l->layer;
	size_t j = tab_find(l, parent, name, len, mnode_hash(n));
	if (l->tab[j])
		l->tab[j]->kind = MK_DEAD; /* its subtree is unreachable now */
	else
		l->tabcount++;
	l->tab[j] = n;
	n->next = parent->first;
	parent->first = n;
	return n;
}

static struct tinode *implicit_dir_inode(struct layers *l)
{
	struct tinode *ino = new_inode(l);
	if (ino)
		ino->mode = S_IFDIR | 0755;
	return ino;
}

static struct mnode *put_implicit_dir(struct layers *l, struct mnode *parent, const char *name,
				      size_t len, bool ghost)
{
	struct tinode *ino = implicit_dir_inode(l);
	struct mnode *n = ino ? put_node(l, parent, name, len, MK_DIR) : NULL;
	if (n) {
		n->inode = ino;
		n->ghost = ghost;
	}
	return n;
}

/* A real entry lives in @n: it and the ghosts above it are in the image
 * (the parents of a real node are real). */
static void unghost(struct mnode *n)
{
	for (; n && n->ghost; n = n->parent)
		n->ghost = false;
}

/* Layers below this one add nothing under directory @n (an opaque
 * marker, or the directory replaced a whiteout or a non-directory of
 * this layer), and with @deleted give it no metadata either. In
 * separate mode overlayfs learns it from the opaque mark. */
static void cut_below(struct layers *l, struct mnode *n, bool deleted)
{
	n->floor = (uint16_t)MAX(n->floor, l->layer);
	if (deleted)
		n->meta_floor = (uint16_t)MAX(n->meta_floor, l->layer);
	n->opaque |= l->separate;
}

/* ---- paths ------------------------------------------------------------- */

/*
 * Normalize a tar path into l->path: leading '/' and "./" go, empty and "."
 * components go. ".." is refused: a layer has no business naming it, and
 * refusing is simpler to reason about than clamping.
 */
static int normalize(struct layers *l, const char *raw, struct strbuf *out)
{
	out->len = 0;
	if (out->buf)
		out->buf[0] = 0;
	const char *p = raw;
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return anole_err(l->err, EPERM, "%s: '%s': '..' in a path is refused",
					 l->what, raw);
		if (len > EROFS_NAME_LEN)
			return anole_err(l->err, ENAMETOOLONG,
					 "%s: '%.64s...': a name is longer than %d bytes", l->what,
					 raw, EROFS_NAME_LEN);
		if (len && !(len == 1 && p[0] == '.')) {
			if (out->len)
				strbuf_add(out, "/", 1);
			strbuf_add(out, p, len);
		}
		p = end;
	}
	if (!out->buf)
		strbuf_add(out, "", 0);
	return out->buf ? 0 : anole_err(l->err, ENOMEM, "out of memory");
}

/* Where an entry goes: VISIBLE; HIDDEN (a higher layer deleted or
 * replaced a directory on its way); CUT (a directory above it is opaque to
 * this layer: only a directory a higher layer implied can still take its
 * metadata from here). */
enum { VISIBLE = 0, HIDDEN = 1, CUT = 2 };

/*
 * Separate mode: the directory prefix [0, len) of l->path is a symlink a
 * lower layer made; rewrite l->path through it (inside the root, ".."
 * stopping there), as umoci and containerd resolve parent paths.
 */
static int through_symlink(struct layers *l, size_t len, const char *target)
{
	struct strbuf in = {0}, out = {0};
	if (target[0] != '/') {
		const char *slash = memrchr(l->path.buf, '/', len);
		if (slash)
			strbuf_add(&in, l->path.buf, (size_t)(slash - l->path.buf + 1));
	}
	strbuf_addf(&in, "%s/%s", target, l->path.buf + len + 1);
	if (!in.buf)
		return anole_err(l->err, ENOMEM, "out of memory");
	size_t *starts = calloc(in.len / 2 + 2, sizeof(*starts)), depth = 0;
	if (!starts) {
		strbuf_release(&in);
		return anole_err(l->err, ENOMEM, "out of memory");
	}
	for (char *c = in.buf, *end; *c; c = end) {
		end = strchrnul(c, '/');
		size_t n = (size_t)(end - c);
		if (*end)
			end++;
		if (!n || (n == 1 && c[0] == '.'))
			continue;
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (depth)
				out.len = starts[--depth];
			continue;
		}
		starts[depth++] = out.len;
		if (out.len)
			strbuf_add(&out, "/", 1);
		strbuf_add(&out, c, n);
	}
	strbuf_add(&out, "", 0);
	free(starts);
	strbuf_release(&in);
	if (!out.buf)
		return anole_err(l->err, ENOMEM, "out of memory");
	out.buf[out.len] = 0;
	strbuf_release(&l->path);
	l->path = out;
	return 0;
}

/* A directory of this layer's path that no node holds yet (@d: what
 * the layers below left there): made, or for a whiteout or opaque marker
 * (@marker) maybe not. */
static int implied_dir(struct layers *l, struct mnode *dir, const char *name, size_t len,
		       bool marker, const struct dmeta *d, struct mnode **out)
{
	/* separate mode knows the layers below: a marker in a directory
	 * they do not have deletes nothing */
	if (marker && l->separate && !dm_is_dir(d))
		return HIDDEN;
	if (!(*out = put_implicit_dir(l, dir, name, len, marker && !l->separate)))
		return anole_err(l->err, ENOMEM, "out of memory");
	dm_implied(l, (size_t)(name + len - l->path.buf), d, (*out)->inode);
	return VISIBLE;
}

/*
 * Find or make the directory that holds the last component of l->path
 * (VISIBLE), or say why there is none (HIDDEN, CUT). @marker: the entry
 * is a whiteout or opaque marker, which makes only ghosts, and which
 * under a non-directory of its own layer is HIDDEN: that directory is
 * gone in this layer, so its whiteouts delete nothing.
 */
static int walk_parents(struct layers *l, bool marker, struct mnode **out)
{
	struct mnode *dir = *out = l->root;
	const char *p = l->path.buf;
	bool cut = false;
	int hops = 0;
	uint32_t cutoff = 0;
	dm_step(l, 0, &cutoff);
	for (;;) {
		cut |= dir->floor > l->layer;
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		size_t len = (size_t)(slash - p), plen = (size_t)(slash - l->path.buf);
		const struct dmeta *d = dm_step(l, plen, &cutoff);
		struct mnode *n = lookup(l, dir, p, len);
		if (n && n->kind == MK_WHITEOUT) {
			if (n->layer > l->layer)
				return HIDDEN;
			/* ".wh.a" then "a/b" in one layer: a fresh directory */
			if (!(n = put_implicit_dir(l, dir, p, len, marker && !l->separate)))
				return anole_err(l->err, ENOMEM, "out of memory");
			cut_below(l, n, true);
		} else if (n && n->kind != MK_DIR) {
			if (n->layer > l->layer || marker)
				return HIDDEN;
			return anole_err(l->err, ENOTDIR,
					 "%s: '%s': '%.*s' is not a directory in this layer "
					 "(paths through symlinks or files are refused)",
					 l->what, l->path.buf, (int)plen, l->path.buf);
		} else if (!n) {
			if (cut)
				return HIDDEN;
			if (d && d->symlink && !d->gone) {
				if (++hops > 40)
					return anole_err(l->err, ELOOP, "%s: '%s': too many symlinks",
							 l->what, l->path.buf);
				int r = through_symlink(l, plen, d->symlink);
				if (r < 0)
					return r;
				dir = l->root;
				p = l->path.buf;
				cut = false;
				cutoff = 0;
				dm_step(l, 0, &cutoff);
				continue;
			}
			int r = implied_dir(l, dir, p, len, marker, d, &n);
			if (r)
				return r;
		} else if (n->ghost && !marker && !cut && n->meta_floor <= l->layer) {
			unghost(n); /* this layer had the directory */
		}
		dir = n;
		p = slash + 1;
	}
	*out = dir;
	return cut ? CUT : VISIBLE;
}

static const char *base_name(const struct strbuf *path)
{
	const char *s = strrchr(path->buf, '/');
	return s ? s + 1 : path->buf;
}

/* ---- whiteouts --------------------------------------------------------- */

static int opaque(struct layers *l)
{
	/* l->path ends in ".wh..wh..opq"; its parent is the directory */
	struct mnode *dir;
	int r = walk_parents(l, true, &dir);
	if (r)
		return r < 0 ? r : 0;
	cut_below(l, dir, false);
	if (l->dm)
		dm_cut(l, l->path.buf, (size_t)(base_name(&l->path) - l->path.buf) - (dir != l->root));
	l->stats.opaque_dirs++;
	return 0;
}

static int whiteout(struct layers *l, const char *wname, size_t len)
{
	if (!len || len > EROFS_NAME_LEN || (len == 1 && wname[0] == '.') ||
	    (len == 2 && wname[0] == '.' && wname[1] == '.'))
		return anole_err(l->err, EINVAL, "%s: '%s': invalid whiteout", l->what,
				 l->path.buf);
	char name[EROFS_NAME_LEN + 1]; /* walk_parents may rewrite l->path */
	memcpy(name, wname, len);
	name[len] = 0;
	struct mnode *dir;
	int r = walk_parents(l, true, &dir);
	if (r) /* nothing below is visible there to delete */
		return r < 0 ? r : 0;
	l->stats.whiteouts++;
	struct mnode *n = lookup(l, dir, name, len);
	if (l->dm && (!n || n->kind == MK_DIR)) {
		/* what the layers below had there is gone (a directory of
		 * this layer stays, without their children) */
		struct strbuf wp = {0};
		strbuf_add(&wp, l->path.buf, (size_t)(base_name(&l->path) - l->path.buf));
		strbuf_add(&wp, name, len);
		if (wp.buf && n)
			dm_cut(l, wp.buf, wp.len);
		else if (wp.buf)
			dm_gone(l, wp.buf, wp.len);
		strbuf_release(&wp);
	}
	if (n) {
		/* A whiteout only hides lower layers: a directory of this or a
		 * higher layer stops merging with what is below. */
		if (n->kind == MK_DIR)
			cut_below(l, n, true);
		return 0;
	}
	if (!(n = put_node(l, dir, name, len, MK_WHITEOUT)))
		return anole_err(l->err, ENOMEM, "out of memory");
	if (l->separate) {
		/* overlayfs's whiteout: a 0/0 character device */
		if (!(n->inode = new_inode(l)))
			return anole_err(l->err, ENOMEM, "out of memory");
		n->inode->mode = S_IFCHR;
	}
	return 0;
}

/* ---- entries ----------------------------------------------------------- */

/* Merge the children of @src into the directory @dst: where both have a
 * name, the higher layer's node wins and directories merge. */
static void merge_into(struct layers *l, struct mnode *dst, struct mnode *src, int depth)
{
	struct mnode *c = src->first, *next;
	src->first = NULL;
	for (; c; c = next) {
		next = c->next;
		if (c->kind == MK_DEAD)
			continue;
		if (c->kind != MK_WHITEOUT && !c->ghost)
			unghost(dst);
		struct mnode *ex = lookup(l, dst, c->name, c->namelen);
		if (!ex) {
			move_node(l, c, dst);
		} else if (ex->kind == MK_DIR && c->kind == MK_DIR && depth < 64) {
			merge_into(l, ex, c, depth + 1);
			if (!c->ghost)
				unghost(ex);
			c->kind = MK_DEAD;
		} else if (c->layer > ex->layer) {
			ex->kind = MK_DEAD;
			move_node(l, c, dst); /* tab_find now lands on ex's slot: replace */
		} else {
			c->kind = MK_DEAD;
		}
	}
}

/*
 * A lower layer's symlink where higher layers implied a directory: those
 * layers wrote through the symlink (umoci and containerd resolve parent
 * paths inside the root), so their entries move to the symlink's target.
 * Returns true when they moved.
 */
static bool follow_symlink(struct layers *l, struct mnode *n, const char *target)
{
	struct strbuf p = {0};
	if (target[0] != '/') {
		const char *slash = strrchr(l->path.buf, '/');
		if (slash)
			strbuf_add(&p, l->path.buf, (size_t)(slash - l->path.buf + 1));
	}
	strbuf_add(&p, target, strlen(target));
	if (!p.buf)
		return false;
	/* resolve lexically, ".." stopping at the root */
	struct mnode *dir = l->root;
	bool ok = true;
	for (char *c = p.buf, *end; ok && *c; c = end) {
		end = strchrnul(c, '/');
		size_t len = (size_t)(end - c);
		if (*end)
			*end++ = 0;
		if (!len || (len == 1 && c[0] == '.'))
			continue;
		if (len == 2 && c[0] == '.' && c[1] == '.') {
			dir = dir->parent ? dir->parent : l->root;
			continue;
		}
		struct mnode *next = len <= EROFS_NAME_LEN ? lookup(l, dir, c, len) : NULL;
		if (!next && len <= EROFS_NAME_LEN && dir->floor <= l->layer)
			next = put_implicit_dir(l, dir, c, len, n->ghost);
		ok = next && next->kind == MK_DIR && next != n;
		dir = next;
	}
	strbuf_release(&p);
	/* never into itself (a loop) */
	for (struct mnode *a = dir; ok && a; a = a->parent)
		ok = a != n;
	if (!ok)
		return false;
	merge_into(l, dir, n, 0);
	return true;
}

/* place() when a higher layer put node @n at the path: only a directory
 * a higher layer implied takes its metadata from a real one below. */
static int place_below(struct layers *l, struct mnode *dir, struct mnode *n, bool cut,
		       bool is_dir, const char *symlink, struct mnode **out, bool *update)
{
	bool implied = n->kind == MK_DIR && !n->explicit_dir && n->meta_floor <= l->layer;
	if (implied && is_dir && !(cut && n->ghost)) {
		unghost(n);
		*out = n;
		*update = true;
		return VISIBLE;
	}
	if (cut)
		return HIDDEN;
	if (implied && (symlink || n->ghost)) {
		/* Higher layers wrote through this symlink, or their markers
		 * named something under this non-directory: the symlink or
		 * file stays, what they put here moves to the target (or,
		 * markers only, deletes nothing). */
		if (symlink && n->floor <= l->layer && follow_symlink(l, n, symlink))
			n->kind = MK_DEAD;
		if (n->kind == MK_DEAD || n->ghost) {
			if (!(*out = put_node(l, dir, n->name, n->namelen, MK_OTHER)))
				return anole_err(l->err, ENOMEM, "out of memory");
			return VISIBLE;
		}
	}
	/* A non-directory here ended whatever directory lower layers
	 * had at this path before the higher one came. */
	if (n->kind == MK_DIR && !is_dir)
		cut_below(l, n, true);
	return HIDDEN;
}

/* Where an entry of l->path goes: a new node, an existing directory whose
 * metadata it gives (*update), or HIDDEN. @symlink is the target when the
 * entry is a symlink. */
static int place(struct layers *l, bool is_dir, const char *symlink, struct mnode **out,
		 bool *update)
{
	*update = false;
	if (!l->path.len) { /* the root */
		if (!is_dir)
			return anole_err(l->err, EINVAL, "%s: the root entry is not a directory",
					 l->what);
		*out = l->root;
		*update = !l->root->explicit_dir || l->root->layer == l->layer;
		if (*update)
			l->root->layer = (uint16_t)l->layer;
		return *update ? VISIBLE : HIDDEN;
	}
	struct mnode *dir;
	int r = walk_parents(l, false, &dir);
	if (r < 0 || r == HIDDEN)
		return r;
	bool cut = r == CUT;
	const char *name = base_name(&l->path);
	size_t len = strlen(name);
	struct mnode *n = lookup(l, dir, name, len);
	if (n && n->layer > l->layer)
		return place_below(l, dir, n, cut, is_dir, symlink, out, update);
	if (cut)
		return HIDDEN;
	if (n && n->kind == MK_DIR && is_dir) {
		*out = n; /* the same layer names it again: new metadata */
		*update = true;
		unghost(n);
		return VISIBLE;
	}
	/* After a whiteout or a non-directory of this layer at its path, a
	 * directory starts empty (umoci removed the lower one). */
	bool replaced = n && n->kind != MK_DIR;
	if (!(n = put_node(l, dir, name, len, is_dir ? MK_DIR : MK_OTHER)))
		return anole_err(l->err, ENOMEM, "out of memory");
	if (replaced && is_dir)
		cut_below(l, n, false);
	*out = n;
	return VISIBLE;
}

/* Same name twice in one header: the later wins (as pax says). An empty
 * value is an empty xattr, as GNU tar and containerd (which reads Go's
 * PAXRecords) restore it; umoci 0.4.7 drops it (Go's Header.Xattrs
 * skips empty values). */
static int entry_xattrs(struct layers *l, struct archive_entry *e, struct tinode *ino)
{
	struct xa {
		const char *name;
		const void *value;
		size_t size;
	} v[1024];
	size_t n = 0;
	bool has_acl = false;
	int r;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &v[n].name, &v[n].value, &v[n].size) == ARCHIVE_OK) {
		if (!v[n].name)
			continue;
		if (++n == ARRAY_SIZE(v))
			return anole_err(l->err, E2BIG, "%s: '%s': too many xattrs", l->what,
					 l->path.buf);
	}
	for (size_t i = 0; i < n; i++) {
		bool later = false;
		for (size_t j = i + 1; j < n && !later; j++)
			later = !strcmp(v[i].name, v[j].name);
		if (later)
			continue;
		has_acl |= !strncmp(v[i].name, "system.posix_acl_", 17);
		if ((r = xattr_set_add(tw_xattrs(l->tw), &l->xs, v[i].name, v[i].value, v[i].size,
				       l->err, entry_name(l, l->path.buf))) < 0)
			return r;
	}
	if (!has_acl && (r = source_acl_xattrs(tw_xattrs(l->tw), &l->xs, e, &ino->mode, l->err,
					       entry_name(l, l->path.buf))) < 0)
		return r;
	r = xattr_set_intern(tw_xattrs(l->tw), &l->xs, &ino->xattr_set);
	return r < 0 ? anole_err(l->err, -r, "out of memory") : 0;
}

static int fill_inode(struct layers *l, struct archive_entry *e, struct tinode *ino)
{
	ino->mode = archive_entry_mode(e);
	ino->uid = (uint32_t)archive_entry_uid(e);
	ino->gid = (uint32_t)archive_entry_gid(e);
	ino->mtime = archive_entry_mtime(e);
	ino->mtime_nsec = (uint32_t)archive_entry_mtime_nsec(e);
	if (ino->mtime_nsec >= 1000000000u)
		ino->mtime_nsec = 0;
	/* libarchive reads pax "-5.25" as -5 s and 0.25 s, meaning -5.25 s */
	if (ino->mtime < 0 && ino->mtime_nsec) {
		ino->mtime -= 1;
		ino->mtime_nsec = 1000000000u - ino->mtime_nsec;
	}
	if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX ||
	    archive_entry_gid(e) < 0 || archive_entry_gid(e) > UINT32_MAX)
		return anole_err(l->err, ERANGE, "%s: '%s': uid or gid out of range", l->what,
				 l->path.buf);
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		if (archive_entry_size(e) < 0)
			return anole_err(l->err, EINVAL, "%s: '%s': negative size", l->what,
					 l->path.buf);
		ino->size = (uint64_t)archive_entry_size(e);
		if (ino->size > MAX_FILE_SIZE)
			return anole_err(l->err, EFBIG,
					 "%s: '%s': %llu bytes, more than the 2^56 anole stores "
					 "in a file", l->what, l->path.buf,
					 (unsigned long long)ino->size);
		break;
	case AE_IFDIR:
	case AE_IFIFO:
		break;
	case AE_IFCHR:
	case AE_IFBLK:
		ino->rdev = (uint32_t)makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
		break;
	case AE_IFLNK: {
		const char *t = source_entry_symlink(e);
		if (!t || !*t)
			return anole_err(l->err, EINVAL, "%s: '%s': symlink without a target",
					 l->what, l->path.buf);
		size_t tlen = strlen(t);
		if (tlen > 4095)
			return anole_err(l->err, ENAMETOOLONG, "%s: '%s': symlink target too long",
					 l->what, l->path.buf);
		if (!(ino->u.symlink = strdup(t)))
			return anole_err(l->err, ENOMEM, "out of memory");
		ino->size = tlen;
		break;
	}
	default:
		return anole_err(l->err, EINVAL, "%s: '%s': unsupported entry type 0%o", l->what,
				 l->path.buf, archive_entry_filetype(e));
	}
	return entry_xattrs(l, e, ino);
}

static int spool_fd_for(struct layers *l, uint64_t size, int *fd)
{
	if (size <= SPOOL_MEM_MAX) {
		if (l->spool_fd < 0 && (l->spool_fd = memfd_create("anole-spool", MFD_CLOEXEC)) < 0)
			return anole_err(l->err, errno, "cannot create a spool file: %s",
					 strerror(errno));
		*fd = l->spool_fd;
		return 0;
	}
	if (l->big_fd < 0 && (l->big_fd = tmpfile_unnamed("/var/tmp")) < 0)
		return anole_err(l->err, -l->big_fd, "cannot create a temporary file: %s",
				 strerror(-l->big_fd));
	*fd = l->big_fd;
	return 0;
}

/* Data runs of a sparse entry (merged, clipped to the size). */
static int sparse_runs(struct archive_entry *e, uint64_t size, struct data_extent **out,
		       size_t *n)
{
	*out = NULL;
	*n = 0;
	int count = archive_entry_sparse_reset(e);
	if (count <= 0)
		return 0;
	struct data_extent *v = calloc((size_t)count, sizeof(*v));
	if (!v)
		return -ENOMEM;
	la_int64_t off, len;
	while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) {
		if (off < 0 || len <= 0 || (uint64_t)off >= size)
			continue;
		uint64_t o = (uint64_t)off, ln = MIN((uint64_t)len, size - o);
		if (*n && v[*n - 1].off + v[*n - 1].len >= o) {
			uint64_t end = MAX(v[*n - 1].off + v[*n - 1].len, o + ln);
			v[*n - 1].len = end - v[*n - 1].off;
		} else if (*n < (size_t)count) {
			v[(*n)++] = (struct data_extent){o, ln};
		}
	}
	*out = v;
	return 0;
}

/* Copy the entry's data to @fd at @base (holes stay holes). */
static int copy_entry_data(struct layers *l, struct archive *a, uint64_t size, int fd,
			   uint64_t base, bool sparse)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	uint64_t written = 0, end = 0;
	int r;
	if (sparse && ftruncate(fd, (off_t)base) < 0)
		return anole_err(l->err, errno, "%s: '%s': spool file: %s", l->what,
				 l->path.buf, strerror(errno));
	while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
		if (off < 0 || (uint64_t)off > size || len > size - (uint64_t)off)
			return anole_err(l->err, EINVAL, "%s: '%s': data beyond the file's size",
					 l->what, l->path.buf);
		if (len && (r = pwrite_full(fd, buf, len, base + (uint64_t)off)) < 0)
			return anole_err(l->err, -r, "%s: '%s': spool file: %s", l->what,
					 l->path.buf, strerror(-r));
		written += len;
		end = MAX(end, (uint64_t)off + len);
	}
	if (r != ARCHIVE_EOF)
		return tar_error(l->bs, a, l->path.buf, l->err);
	if (sparse) {
		if (ftruncate(fd, (off_t)(base + size)) < 0)
			return anole_err(l->err, errno, "%s: '%s': spool file: %s", l->what,
					 l->path.buf, strerror(errno));
	} else if (written != size || end != size) {
		return anole_err(l->err, EIO, "%s: '%s': %llu of %llu data bytes", l->what,
				 l->path.buf, (unsigned long long)written, (unsigned long long)size);
	}
	return 0;
}

static int store_data(struct layers *l, struct archive *a, struct archive_entry *e,
		      struct tinode *ino)
{
	_cleanup_free_ struct data_extent *ext = NULL;
	size_t next = 0;
	int fd, r;
	if (sparse_runs(e, ino->size, &ext, &next) < 0)
		return anole_err(l->err, ENOMEM, "out of memory");
	if ((r = spool_fd_for(l, ino->size, &fd)) < 0 ||
	    (r = copy_entry_data(l, a, ino->size, fd, 0, ext != NULL)) < 0)
		return r;
	return tw_file_data(l->tw, ino, fd, ext, next, entry_name(l, l->path.buf));
}

/* ---- hard links -------------------------------------------------------- */

#define PATH_HASH0 0xcbf29ce484222325ull

static struct lhidden *file_hidden(const struct lfile *f)
{
	return f->ref & 1 ? (struct lhidden *)(f->ref - 1) : NULL;
}

static struct tinode *file_inode(const struct lfile *f)
{
	const struct lhidden *h = file_hidden(f);
	return h ? h->inode : (struct tinode *)f->ref;
}

/* A file's entry in files.paths: how far back its directory's path is (4
 * bytes, unaligned), then its name. The directory's path ends in '/', or
 * is empty; both are NUL-terminated. */
static void file_key(const struct layers *l, const struct lfile *f, const char **dir,
		     const char **name)
{
	const char *e = l->files.paths.buf + f->path;
	uint32_t back;
	memcpy(&back, e, sizeof(back));
	*dir = e - back;
	*name = e + sizeof(back);
}

/* Its path, for messages. */
static const char *file_path(const struct layers *l, const struct lfile *f, struct strbuf *out)
{
	const char *dir, *name;
	file_key(l, f, &dir, &name);
	out->len = 0;
	if (strbuf_add(out, dir, strlen(dir)) < 0 || strbuf_add(out, name, strlen(name) + 1) < 0)
		return "?";
	return out->buf;
}

static bool file_is(const struct layers *l, const struct lfile *f, const char *path, size_t len)
{
	const char *dir, *name;
	file_key(l, f, &dir, &name);
	size_t dl = strlen(dir);
	return dl <= len && !memcmp(dir, path, dl) && !strncmp(name, path + dl, len - dl) &&
	       !name[len - dl];
}

/* The slot of @path: its entry's, or the free one where it would go. */
static size_t file_slot(const struct layers *l, const char *path, size_t len, uint64_t hash)
{
	const struct files *fs = &l->files;
	size_t mask = fs->cap - 1, j = (size_t)hash & mask;
	for (; fs->slot[j]; j = (j + 1) & mask)
		if (file_is(l, &fs->v[fs->slot[j] - 1], path, len))
			break;
	return j;
}

static size_t path_slot(const struct layers *l, const char *path, size_t len)
{
	return file_slot(l, path, len, fnv1a(PATH_HASH0, path, len));
}

/* The file of this layer at @path, or NULL. Valid until the next
 * remember_file(). */
static struct lfile *file_find(struct layers *l, const char *path)
{
	if (!l->files.n)
		return NULL;
	uint32_t i = l->files.slot[path_slot(l, path, strlen(path))];
	return i ? &l->files.v[i - 1] : NULL;
}

static void free_hidden(struct lhidden *h)
{
	if (h)
		free(h->ext);
	free(h);
}

static void files_reset(struct layers *l)
{
	struct files *fs = &l->files;
	for (size_t i = 0; i < fs->n; i++)
		free_hidden(file_hidden(&fs->v[i]));
	free(fs->slot);
	free(fs->v);
	strbuf_release(&fs->paths);
	memset(fs, 0, sizeof(*fs));
	l->scratch_len = 0;
	if (l->scratch_fd >= 0 && ftruncate(l->scratch_fd, 0) < 0) {
		/* only wastes space */
	}
}

/* Keep the slots at most half full with one more file. */
static int files_rehash(struct layers *l)
{
	struct files *fs = &l->files;
	if ((fs->n + 1) * 2 <= fs->cap)
		return 0;
	size_t ncap = fs->cap ? fs->cap * 2 : 2048;
	uint32_t *ns = calloc(ncap, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	free(fs->slot);
	fs->slot = ns;
	fs->cap = ncap;
	for (size_t i = 0; fs->v && i < fs->n; i++) {
		/* the hash of the whole path, as path_slot() takes it */
		const char *dir, *name;
		file_key(l, &fs->v[i], &dir, &name);
		size_t dl = strlen(dir), nl = strlen(name);
		uint64_t h = fnv1a(fnv1a_step(PATH_HASH0, dir, dl), name, nl);
		size_t j = (size_t)h & (ncap - 1);
		while (fs->slot[j])
			j = (j + 1) & (ncap - 1);
		fs->slot[j] = (uint32_t)i + 1;
	}
	return 0;
}

/* Room for one more file: the entries grow by half. */
static int files_grow(struct layers *l)
{
	struct files *fs = &l->files;
	if (files_rehash(l) < 0)
		return -ENOMEM;
	if (fs->n < fs->vcap)
		return 0;
	size_t ncap = fs->vcap ? fs->vcap + fs->vcap / 2 : 1024;
	struct lfile *nv = ncap < UINT32_MAX ? realloc(fs->v, ncap * sizeof(*nv)) : NULL;
	if (!nv)
		return -ENOMEM;
	fs->v = nv;
	fs->vcap = ncap;
	return 0;
}

/* Append the current entry's path to files.paths: its directory's path
 * (unless the file stored last was in the same directory), then the
 * entry. Returns the entry's offset, or -1. */
static int64_t add_path(struct files *fs, const struct strbuf *path)
{
	const char *slash = strrchr(path->buf, '/');
	size_t dl = slash ? (size_t)(slash - path->buf) + 1 : 0;
	bool same = fs->paths.len && fs->last_dirlen == dl &&
		    fs->paths.len - fs->last_dir < UINT32_MAX / 2 &&
		    !memcmp(fs->paths.buf + fs->last_dir, path->buf, dl);
	if (!same) {
		fs->last_dir = fs->paths.len;
		fs->last_dirlen = dl;
		if (strbuf_add(&fs->paths, path->buf, dl) < 0 || strbuf_add(&fs->paths, "", 1) < 0)
			return -1;
	}
	uint64_t off = fs->paths.len;
	uint32_t back = (uint32_t)(off - fs->last_dir);
	if (strbuf_add(&fs->paths, &back, sizeof(back)) < 0 ||
	    strbuf_add(&fs->paths, path->buf + dl, path->len - dl + 1) < 0)
		return -1;
	return (int64_t)off;
}

static int remember_file(struct layers *l, struct tinode *ino, struct lhidden *hid)
{
	struct files *fs = &l->files;
	struct lfile *f = file_find(l, l->path.buf);
	if (!f) {
		int64_t off = files_grow(l) < 0 ? -1 : add_path(fs, &l->path);
		if (off < 0) {
			free_hidden(hid);
			return anole_err(l->err, ENOMEM, "out of memory");
		}
		f = &fs->v[fs->n++];
		*f = (struct lfile){.path = (uint64_t)off};
		fs->slot[path_slot(l, l->path.buf, l->path.len)] = (uint32_t)fs->n;
	}
	free_hidden(file_hidden(f));
	if (hid)
		hid->inode = ino;
	f->ref = hid ? (uintptr_t)hid | 1 : (uintptr_t)ino;
	return 0;
}

/* Remember a hidden file, its data (if any) at @scratch_off. */
static int remember_hidden(struct layers *l, struct tinode *ino, uint64_t scratch_off,
			   struct data_extent *ext, size_t next)
{
	struct lhidden *h = calloc(1, sizeof(*h));
	if (!h) {
		free(ext);
		return anole_err(l->err, ENOMEM, "out of memory");
	}
	h->scratch_off = scratch_off;
	h->ext = ext;
	h->next = next;
	return remember_file(l, ino, h);
}

/* A hidden file's data, kept in case a visible hard link names it. */
static int keep_hidden(struct layers *l, struct archive *a, struct archive_entry *e,
		       struct tinode *ino)
{
	struct data_extent *ext = NULL;
	size_t next = 0;
	if (sparse_runs(e, ino->size, &ext, &next) < 0)
		return anole_err(l->err, ENOMEM, "out of memory");
	if (l->scratch_fd < 0 && (l->scratch_fd = tmpfile_unnamed("/var/tmp")) < 0) {
		free(ext);
		return anole_err(l->err, -l->scratch_fd, "cannot create a temporary file: %s",
				 strerror(-l->scratch_fd));
	}
	uint64_t off = ROUND_UP(l->scratch_len, 4096);
	int r = copy_entry_data(l, a, ino->size, l->scratch_fd, off, ext != NULL);
	if (r < 0) {
		free(ext);
		return r;
	}
	l->scratch_len = off + ino->size;
	return remember_hidden(l, ino, off, ext, next);
}

static int copy_fd(struct layers *l, int from, uint64_t foff, int to, uint64_t toff, uint64_t len)
{
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)IO_BUF);
		int r = pread_full(from, l->buf, n, foff);
		if (r >= 0)
			r = pwrite_full(to, l->buf, n, toff);
		if (r < 0)
			return anole_err(l->err, -r, "%s: '%s': temporary file: %s", l->what,
					 l->path.buf, strerror(-r));
		foff += n;
		toff += n;
		len -= n;
	}
	return 0;
}

static int materialize(struct layers *l, struct lfile *f)
{
	struct lhidden *h = file_hidden(f);
	struct tinode *ino = h->inode;
	int fd, r;
	h->materialized = true;
	if (!S_ISREG(ino->mode) || !ino->size)
		return 0;
	if ((r = spool_fd_for(l, ino->size, &fd)) < 0)
		return r;
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)ino->size) < 0)
		return anole_err(l->err, errno, "%s: '%s': spool file: %s", l->what,
				 l->path.buf, strerror(errno));
	if (h->ext) {
		for (size_t i = 0; i < h->next; i++)
			if ((r = copy_fd(l, l->scratch_fd, h->scratch_off + h->ext[i].off, fd,
					 h->ext[i].off, h->ext[i].len)) < 0)
				return r;
	} else if ((r = copy_fd(l, l->scratch_fd, h->scratch_off, fd, 0, ino->size)) < 0) {
		return r;
	}
	struct strbuf path = {0};
	r = tw_file_data(l->tw, ino, fd, h->ext, h->next, entry_name(l, file_path(l, f, &path)));
	strbuf_release(&path);
	return r;
}

static struct pending *pending_slot(struct layers *l, const char *path, bool create)
{
	return record(l->pend, path, strlen(path), sizeof(struct pending), create);
}

static void free_pending(void *v)
{
	struct pending *p = v;
	if (!p)
		return;
	free(p->path);
	free(p->first_link);
	free(p->links);
	free(p);
}

/* A link of this layer whose target a lower layer brings (as umoci and
 * containerd, applying layers in order, allow). */
static int link_from_lower(struct layers *l, struct mnode *n, const char *target);

static int link_down(struct layers *l, struct mnode *n, const char *target)
{
	if (l->separate)
		return link_from_lower(l, n, target);
	struct pending *p = pending_slot(l, target, true);
	if (!p)
		return anole_err(l->err, ENOMEM, "out of memory");
	if (!p->n)
		p->layer = l->layer;
	if (p->resolved || p->layer != l->layer)
		return anole_err(l->err, ENOTSUP, "%s: '%s': hard link to '%s' across several layers",
				 l->what, l->path.buf, target);
	if (p->n == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 4;
		struct mnode **v = realloc(p->links, ncap * sizeof(*v));
		if (!v)
			return anole_err(l->err, ENOMEM, "out of memory");
		p->links = v;
		p->cap = ncap;
	}
	p->links[p->n++] = n;
	if (!p->first_link && !(p->first_link = strdup(l->path.buf)))
		return anole_err(l->err, ENOMEM, "out of memory");
	return 0;
}

static int copy_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	struct layers *l = ctx;
	return xattr_set_add(tw_xattrs(l->tw), &l->xs, name, value, size, l->err,
			     entry_name(l, l->path.buf));
}

/* Copy a file of an image below into this layer's spool and inode. */
static int copy_lower_file(struct layers *l, struct anole_image *img, const struct anole_inode *ai,
			   struct tinode *ino)
{
	ino->mode = ai->mode;
	ino->uid = ai->uid;
	ino->gid = ai->gid;
	ino->mtime = ai->mtime;
	ino->mtime_nsec = ai->mtime_nsec;
	ino->rdev = ai->rdev;
	int r = anole_xattrs(img, ai, copy_xattr, l);
	if (r < 0)
		return r;
	if ((r = xattr_set_intern(tw_xattrs(l->tw), &l->xs, &ino->xattr_set)) < 0)
		return anole_err(l->err, -r, "out of memory");
	if (S_ISLNK(ai->mode)) {
		char buf[4097];
		r = anole_readlink(img, ai, buf, sizeof(buf));
		if (r < 0)
			return anole_err(l->err, -r, "%s: '%s': cannot read the symlink", l->what,
					 l->path.buf);
		ino->size = strlen(buf);
		return (ino->u.symlink = strdup(buf)) ? 0 : anole_err(l->err, ENOMEM, "out of memory");
	}
	if (!S_ISREG(ai->mode))
		return 0;
	ino->size = ai->size;
	int fd;
	if ((r = spool_fd_for(l, ai->size, &fd)) < 0)
		return r;
	for (uint64_t off = 0; off < ai->size;) {
		ssize_t got = anole_pread(img, ai, l->buf, IO_BUF, off);
		if (got <= 0)
			return anole_err(l->err, got < 0 ? (int)-got : EIO, "%s: '%s': %s", l->what,
					 l->path.buf, anole_image_error(img)->msg);
		if ((r = pwrite_full(fd, l->buf, (size_t)got, off)) < 0)
			return anole_err(l->err, -r, "%s: '%s': spool file: %s", l->what,
					 l->path.buf, strerror(-r));
		off += (uint64_t)got;
	}
	return tw_file_data(l->tw, ino, fd, NULL, 0, entry_name(l, l->path.buf));
}

/*
 * Separate mode: a hard link to a file of a lower layer. As a runtime
 * applying the layer over a mounted stack would, copy the file up into
 * this layer and link both names to the copy.
 */
static int link_from_lower(struct layers *l, struct mnode *n, const char *target)
{
	char path[8192];
	snprintf(path, sizeof(path), "/%s", target);
	for (size_t j = l->nlower; j-- > 0;) {
		struct anole_image *img;
		struct anole_error ierr = {0};
		if (anole_image_open(l->lower[j], &img, &ierr) < 0)
			return anole_err(l->err, ierr.code, "%s", ierr.msg);
		struct anole_inode ai;
		int r = anole_lookup(img, path, &ai);
		if (r == -ENOENT || r == -ENOTDIR) {
			anole_image_close(img);
			continue;
		}
		if (r >= 0 && (S_ISDIR(ai.mode) || (S_ISCHR(ai.mode) && !ai.rdev)))
			r = anole_err(l->err, ENOENT, "%s: '%s': hard link to '%s', which a lower "
				      "layer deleted or made a directory", l->what, l->path.buf, target);
		struct tinode *ino = r >= 0 ? new_inode(l) : NULL;
		if (r >= 0 && !ino)
			r = anole_err(l->err, ENOMEM, "out of memory");
		struct strbuf link = {0};
		strbuf_add(&link, l->path.buf, l->path.len + 1);
		if (r >= 0) {
			/* the copy-up: the target's own name in this layer */
			strbuf_release(&l->path);
			strbuf_add(&l->path, target, strlen(target) + 1);
			l->path.len--;
			r = copy_lower_file(l, img, &ai, ino);
		}
		struct mnode *t = NULL;
		bool update;
		if (r >= 0 && (r = place(l, false, NULL, &t, &update)) == VISIBLE) {
			t->inode = ino;
			r = remember_file(l, ino, NULL);
		}
		strbuf_release(&l->path);
		l->path = link;
		l->path.len = strlen(link.buf);
		anole_image_close(img);
		if (r < 0)
			return r;
		n->inode = ino;
		return 0;
	}
	return anole_err(l->err, ENOENT, "%s: '%s': hard link to '%s': no lower layer has that file",
			 l->what, l->path.buf, target);
}

/* Does a link of a higher layer wait for this path? */
static struct pending *waiting_for(struct layers *l)
{
	struct pending *p = strmap_count(l->pend) ? pending_slot(l, l->path.buf, false) : NULL;
	return p && !p->resolved && p->layer > l->layer ? p : NULL;
}

static void resolve_links(struct pending *p, struct tinode *ino)
{
	for (size_t i = 0; i < p->n; i++)
		p->links[i]->inode = ino;
	p->resolved = true;
}

static int hard_link(struct layers *l, const char *target_raw)
{
	struct strbuf target = {0};
	int r = normalize(l, target_raw, &target);
	if (r < 0)
		goto out;
	struct lfile *f = file_find(l, target.buf);
	struct pending *wait = waiting_for(l);
	struct mnode *n;
	bool update;
	r = place(l, false, NULL, &n, &update);
	if (r < 0 || (r == HIDDEN && !wait)) {
		if (r == HIDDEN)
			l->stats.hidden++, r = 0;
		goto out;
	}
	if (!f && !l->layer && !l->separate) {
		r = anole_err(l->err, ENOENT,
			      "%s: '%s': hard link to '%s', which is not an earlier entry of this "
			      "layer (nor of one below)", l->what, l->path.buf, target_raw);
		goto out;
	}
	if (!f) { /* not in this layer: a lower one brings it */
		r = r == VISIBLE ? link_down(l, n, target.buf) : 0;
		if (r >= 0 && wait)
			r = anole_err(l->err, ENOTSUP, "%s: '%s': hard link chain across layers",
				      l->what, l->path.buf);
		goto out;
	}
	struct tinode *ino = file_inode(f);
	if (r == VISIBLE) {
		n->inode = ino;
		l->stats.hardlinks++;
	}
	if (file_hidden(f) && !file_hidden(f)->materialized)
		r = materialize(l, f);
	if (r >= 0 && wait)
		resolve_links(wait, ino);
	/* The link's own path now names the same file, for later links. */
	if (r >= 0 && file_find(l, l->path.buf) != f)
		r = remember_file(l, ino, NULL);
out:
	strbuf_release(&target);
	return r;
}

/* ---- one entry --------------------------------------------------------- */

static int layer_entry(struct layers *l, struct archive *a, struct archive_entry *e)
{
	const char *raw = source_entry_path(e);
	if (!raw)
		return anole_err(l->err, EINVAL, "%s: an entry without a usable name", l->what);
	int r = normalize(l, raw, &l->path);
	if (r < 0)
		return r;
	const char *base = base_name(&l->path);
	if (!strncmp(base, ".wh.", 4)) {
		if (!strcmp(base, ".wh..wh..opq"))
			return opaque(l);
		if (!strncmp(base, ".wh..wh.", 8))
			return 0; /* aufs bookkeeping, meaningless here */
		return whiteout(l, base + 4, strlen(base + 4));
	}
	const char *link = source_entry_hardlink(e);
	if (link)
		return hard_link(l, link);

	unsigned int type = archive_entry_filetype(e);
	bool is_dir = type == AE_IFDIR;
	struct mnode *n = NULL;
	bool update;
	struct pending *wait = waiting_for(l);
	if (wait && is_dir)
		return anole_err(l->err, EPERM, "%s: '%s': a higher layer hard-links this directory",
				 l->what, l->path.buf);
	int vis = place(l, is_dir, type == AE_IFLNK ? source_entry_symlink(e) : NULL, &n, &update);
	if (vis < 0)
		return vis;
	if (vis == HIDDEN) {
		l->stats.hidden++;
		if (is_dir)
			return 0;
	}
	struct tinode *ino = new_inode(l);
	if (!ino)
		return anole_err(l->err, ENOMEM, "out of memory");
	if ((r = fill_inode(l, e, ino)) < 0)
		return r;
	if (wait)
		resolve_links(wait, ino);
	if (vis == HIDDEN && wait) {
		/* hidden here, but a higher layer's link shows it */
		if ((r = remember_file(l, ino, NULL)) < 0)
			return r;
		return type == AE_IFREG ? store_data(l, a, e, ino) : 0;
	}
	if (vis == HIDDEN) {
		/* kept for hard links of this layer that a higher one left */
		if (type == AE_IFREG && ino->size)
			return keep_hidden(l, a, e, ino);
		return remember_hidden(l, ino, 0, NULL, 0);
	}
	if (update) {
		/* keep the directory (and its children), take the metadata */
		struct tinode *d = n->inode;
		d->mode = ino->mode;
		d->uid = ino->uid;
		d->gid = ino->gid;
		d->mtime = ino->mtime;
		d->mtime_nsec = ino->mtime_nsec;
		d->xattr_set = ino->xattr_set;
		n->explicit_dir = true;
		dm_remember(l, ino);
		return 0;
	}
	n->inode = ino;
	n->explicit_dir = is_dir;
	if (is_dir) {
		dm_remember(l, ino);
		return 0;
	}
	dm_other(l, ino);
	if ((r = remember_file(l, ino, NULL)) < 0)
		return r;
	return type == AE_IFREG ? store_data(l, a, e, ino) : 0;
}

int layers_add(struct layers *l, struct blob_stream *bs, struct archive *a, uint32_t layer)
{
	struct archive_entry *e;
	int r;
	if (layer > UINT16_MAX)
		return anole_err(l->err, E2BIG, "%s: more than %u layers", bs->what, UINT16_MAX);
	l->layer = layer;
	l->what = bs->what;
	l->bs = bs;
	while ((r = tar_next(bs, a, &e, l->err)) > 0) {
		l->stats.entries++;
		if ((r = layer_entry(l, a, e)) < 0)
			break;
		tw_progress(l->tw, "layers", false);
	}
	files_reset(l);
	return r;
}

/* ---- the result -------------------------------------------------------- */

static int mark_opaque(struct layers *l, struct tinode *ino)
{
	struct xattr_table *t = tw_xattrs(l->tw);
	int r = xattr_setbuf_load(t, &l->xs, ino->xattr_set);
	if (r < 0)
		return anole_err(l->err, -r, "out of memory");
	if ((r = xattr_set_add(t, &l->xs, "trusted.overlay.opaque", "y", 1, l->err, "opaque")) < 0)
		return r;
	r = xattr_set_intern(t, &l->xs, &ino->xattr_set);
	return r < 0 ? anole_err(l->err, -r, "out of memory") : 0;
}

static void find_unresolved(const char *key, void *value, void *ctx)
{
	const struct pending *p = value, **lost = ctx;
	(void)key;
	if (!p->resolved && !*lost)
		*lost = p;
}

int layers_finish(struct layers *l)
{
	const struct pending *lost = NULL;
	strmap_foreach(l->pend, find_unresolved, &lost);
	if (lost)
		return anole_err(l->err, ENOENT, "'%s': hard link to '%s': no lower layer has that file",
				 lost->first_link ? lost->first_link : "?", lost->path);
	struct tinode *root = l->root->inode;
	if (!l->root->explicit_dir) {
		strbuf_add(&l->path, "", 0);
		l->path.len = 0;
		dm_implied(l, 0, l->dm ? dm_slot(l->dm, "", 0, false) : NULL, root);
	}
	int r = tw_root(l->tw, &root);
	if (r < 0)
		return r;
	/* Breadth first with an explicit queue: deep trees need no stack. */
	size_t cap = 1024, head = 0, tail = 0;
	struct mnode **q = malloc(cap * sizeof(*q));
	if (!q)
		return anole_err(l->err, ENOMEM, "out of memory");
	q[tail++] = l->root;
	while (head < tail && r >= 0) {
		struct mnode *dir = q[head++];
		if (dir->opaque && (r = mark_opaque(l, dir->inode)) < 0)
			break;
		for (struct mnode *c = dir->first; c && r >= 0; c = c->next) {
			/* Separate mode keeps whiteouts (they have an inode),
			 * except in an opaque directory: there they would
			 * hide nothing, and overlayfs shows them as devices. */
			if (c->kind == MK_DEAD || c->ghost ||
			    (c->kind == MK_WHITEOUT && (!c->inode || dir->opaque)))
				continue;
			r = tw_add(l->tw, dir->inode, c->name, c->namelen, c->inode, NULL);
			if (r < 0 || c->kind != MK_DIR)
				continue;
			if (tail == cap) {
				struct mnode **nq = realloc(q, 2 * cap * sizeof(*q));
				if (!nq) {
					r = anole_err(l->err, ENOMEM, "out of memory");
					break;
				}
				q = nq;
				cap *= 2;
			}
			q[tail++] = c;
		}
	}
	free(q);
	return r;
}

const struct layers_stats *layers_stats(const struct layers *l)
{
	return &l->stats;
}

int layers_new(struct tree_writer *tw, bool separate, struct anole_error *err, struct layers **out)
{
	struct layers *l = calloc(1, sizeof(*l));
	if (!l)
		return anole_err(err, ENOMEM, "out of memory");
	l->tw = tw;
	l->err = err;
	l->separate = separate;
	l->spool_fd = l->big_fd = l->scratch_fd = -1;
	l->pend = strmap_new();
	l->buf = l->pend ? malloc(IO_BUF) : NULL;
	struct tinode *rootino = l->buf ? implicit_dir_inode(l) : NULL;
	struct mnode *root = rootino ? arena_alloc(&l->nodes, sizeof(*root)) : NULL;
	if (!root || tab_grow(l) < 0) {
		layers_free(l);
		return anole_err(err, ENOMEM, "out of memory");
	}
	root->kind = MK_DIR;
	root->inode = rootino;
	root->layer = 0;
	l->root = root;
	*out = l;
	return 0;
}

void layers_free(struct layers *l)
{
	if (!l)
		return;
	/* Inodes never linked are the writer's (the compression pipeline may
	 * still hold them): it frees every inode it made. */
	arena_release(&l->nodes);
	free(l->tab);
	strmap_free(l->pend, free_pending);
	files_reset(l);
	strbuf_release(&l->path);
	strbuf_release(&l->ename);
	xattr_setbuf_release(&l->xs);
	if (l->spool_fd >= 0)
		close(l->spool_fd);
	if (l->big_fd >= 0)
		close(l->big_fd);
	if (l->scratch_fd >= 0)
		close(l->scratch_fd);
	free(l->buf);
	free(l);
}
