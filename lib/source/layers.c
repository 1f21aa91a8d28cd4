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

#include "source/layers_int.h"

/* ---- paths ------------------------------------------------------------- */

/*
 * Normalize a tar path into l->path: leading '/' and "./" go, empty and "."
 * components go. ".." is refused: a layer has no business naming it, and
 * refusing is simpler to reason about than clamping.
 */
int lm_normalize(struct layers *l, const char *raw, struct strbuf *out)
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
	if (!(*out = lm_put_implicit_dir(l, dir, name, len, marker && !l->separate)))
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
		struct mnode *n = lm_lookup(l, dir, p, len);
		if (n && n->kind == MK_WHITEOUT) {
			if (n->layer > l->layer)
				return HIDDEN;
			/* ".wh.a" then "a/b" in one layer: a fresh directory */
			if (!(n = lm_put_implicit_dir(l, dir, p, len, marker && !l->separate)))
				return anole_err(l->err, ENOMEM, "out of memory");
			lm_cut_below(l, n, true);
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
			lm_unghost(n); /* this layer had the directory */
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
	lm_cut_below(l, dir, false);
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
	struct mnode *n = lm_lookup(l, dir, name, len);
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
			lm_cut_below(l, n, true);
		return 0;
	}
	if (!(n = lm_put_node(l, dir, name, len, MK_WHITEOUT)))
		return anole_err(l->err, ENOMEM, "out of memory");
	if (l->separate) {
		/* overlayfs's whiteout: a 0/0 character device */
		if (!(n->inode = lm_new_inode(l)))
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
			lm_unghost(dst);
		struct mnode *ex = lm_lookup(l, dst, c->name, c->namelen);
		if (!ex) {
			lm_move_node(l, c, dst);
		} else if (ex->kind == MK_DIR && c->kind == MK_DIR && depth < 64) {
			merge_into(l, ex, c, depth + 1);
			if (!c->ghost)
				lm_unghost(ex);
			c->kind = MK_DEAD;
		} else if (c->layer > ex->layer) {
			ex->kind = MK_DEAD;
			lm_move_node(l, c, dst); /* lm_tab_find now lands on ex's slot: replace */
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
		struct mnode *next = len <= EROFS_NAME_LEN ? lm_lookup(l, dir, c, len) : NULL;
		if (!next && len <= EROFS_NAME_LEN && dir->floor <= l->layer)
			next = lm_put_implicit_dir(l, dir, c, len, n->ghost);
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

/* lm_place() when a higher layer put node @n at the path: only a directory
 * a higher layer implied takes its metadata from a real one below. */
static int place_below(struct layers *l, struct mnode *dir, struct mnode *n, bool cut,
		       bool is_dir, const char *symlink, struct mnode **out, bool *update)
{
	bool implied = n->kind == MK_DIR && !n->explicit_dir && n->meta_floor <= l->layer;
	if (implied && is_dir && !(cut && n->ghost)) {
		lm_unghost(n);
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
			if (!(*out = lm_put_node(l, dir, n->name, n->namelen, MK_OTHER)))
				return anole_err(l->err, ENOMEM, "out of memory");
			return VISIBLE;
		}
	}
	/* A non-directory here ended whatever directory lower layers
	 * had at this path before the higher one came. */
	if (n->kind == MK_DIR && !is_dir)
		lm_cut_below(l, n, true);
	return HIDDEN;
}

/* Where an entry of l->path goes: a new node, an existing directory whose
 * metadata it gives (*update), or HIDDEN. @symlink is the target when the
 * entry is a symlink. */
int lm_place(struct layers *l, bool is_dir, const char *symlink, struct mnode **out,
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
	struct mnode *n = lm_lookup(l, dir, name, len);
	if (n && n->layer > l->layer)
		return place_below(l, dir, n, cut, is_dir, symlink, out, update);
	if (cut)
		return HIDDEN;
	if (n && n->kind == MK_DIR && is_dir) {
		*out = n; /* the same layer names it again: new metadata */
		*update = true;
		lm_unghost(n);
		return VISIBLE;
	}
	/* After a whiteout or a non-directory of this layer at its path, a
	 * directory starts empty (umoci removed the lower one). */
	bool replaced = n && n->kind != MK_DIR;
	if (!(n = lm_put_node(l, dir, name, len, is_dir ? MK_DIR : MK_OTHER)))
		return anole_err(l->err, ENOMEM, "out of memory");
	if (replaced && is_dir)
		lm_cut_below(l, n, false);
	*out = n;
	return VISIBLE;
}


/* ---- one entry --------------------------------------------------------- */

static int layer_entry(struct layers *l, struct archive *a, struct archive_entry *e)
{
	const char *raw = source_entry_path(e);
	if (!raw)
		return anole_err(l->err, EINVAL, "%s: an entry without a usable name", l->what);
	int r = lm_normalize(l, raw, &l->path);
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
		return lm_hard_link(l, link);

	unsigned int type = archive_entry_filetype(e);
	bool is_dir = type == AE_IFDIR;
	struct mnode *n = NULL;
	bool update;
	struct pending *wait = lm_waiting_for(l);
	if (wait && is_dir)
		return anole_err(l->err, EPERM, "%s: '%s': a higher layer hard-links this directory",
				 l->what, l->path.buf);
	int vis = lm_place(l, is_dir, type == AE_IFLNK ? source_entry_symlink(e) : NULL, &n, &update);
	if (vis < 0)
		return vis;
	if (vis == HIDDEN) {
		l->stats.hidden++;
		if (is_dir)
			return 0;
	}
	struct tinode *ino = lm_new_inode(l);
	if (!ino)
		return anole_err(l->err, ENOMEM, "out of memory");
	if ((r = lm_fill_inode(l, e, ino)) < 0)
		return r;
	if (wait)
		lm_resolve_links(wait, ino);
	if (vis == HIDDEN && wait) {
		/* hidden here, but a higher layer's link shows it */
		if ((r = lm_remember_file(l, ino, NULL)) < 0)
			return r;
		return type == AE_IFREG ? lm_store_data(l, a, e, ino) : 0;
	}
	if (vis == HIDDEN) {
		/* kept for hard links of this layer that a higher one left */
		if (type == AE_IFREG && ino->size)
			return lm_keep_hidden(l, a, e, ino);
		return lm_remember_hidden(l, ino, 0, NULL, 0);
	}
	if (update) {
		/* keep the directory (and its children), take the metadata */
		tinode_set_meta(n->inode, ino->mode, ino->uid, ino->gid, ino->mtime,
				ino->mtime_nsec);
		n->inode->xattr_set = ino->xattr_set;
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
	if ((r = lm_remember_file(l, ino, NULL)) < 0)
		return r;
	return type == AE_IFREG ? lm_store_data(l, a, e, ino) : 0;
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
	lm_files_reset(l);
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
	struct tinode *rootino = l->buf ? lm_implicit_dir_inode(l) : NULL;
	struct mnode *root = rootino ? arena_alloc(&l->nodes, sizeof(*root)) : NULL;
	if (!root || lm_tab_grow(l) < 0) {
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
	strmap_free(l->pend, lm_free_pending);
	lm_files_reset(l);
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

