/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hard links of the layer merge: the current layer's files by path, hidden
 * files kept in a scratch file in case a visible link names them, and links
 * into lower layers (pending until the lower layer brings the target, or
 * copied from its image in separate mode). See layers.c.
 */
#include "source/layers_int.h"

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
	return file_slot(l, path, len, lm_fnv1a(PATH_HASH0, path, len));
}

/* The file of this layer at @path, or NULL. Valid until the next
 * lm_remember_file(). */
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

void lm_files_reset(struct layers *l)
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
		uint64_t h = lm_fnv1a(lm_fnv1a_step(PATH_HASH0, dir, dl), name, nl);
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
	/* (v is set whenever vcap is: said for clang's analyzer, which
	 * cannot see it across the split) */
	if (fs->v && fs->n < fs->vcap)
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

int lm_remember_file(struct layers *l, struct tinode *ino, struct lhidden *hid)
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
int lm_remember_hidden(struct layers *l, struct tinode *ino, uint64_t scratch_off,
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
	return lm_remember_file(l, ino, h);
}

/* A hidden file's data, kept in case a visible hard link names it. */
int lm_keep_hidden(struct layers *l, struct archive *a, struct archive_entry *e,
		   struct tinode *ino)
{
	struct data_extent *ext = NULL;
	size_t next = 0;
	if (lm_sparse_runs(e, ino->size, &ext, &next) < 0)
		return anole_err(l->err, ENOMEM, "out of memory");
	if (l->scratch_fd < 0 && (l->scratch_fd = tmpfile_unnamed("/var/tmp")) < 0) {
		free(ext);
		return anole_err(l->err, -l->scratch_fd, "cannot create a temporary file: %s",
				 strerror(-l->scratch_fd));
	}
	uint64_t off = ROUND_UP(l->scratch_len, 4096);
	int r = lm_copy_entry_data(l, a, ino->size, l->scratch_fd, off, ext != NULL);
	if (r < 0) {
		free(ext);
		return r;
	}
	l->scratch_len = off + ino->size;
	return lm_remember_hidden(l, ino, off, ext, next);
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
	if ((r = lm_spool_fd_for(l, ino->size, &fd)) < 0)
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
	r = tw_file_data(l->tw, ino, fd, h->ext, h->next, lm_entry_name(l, file_path(l, f, &path)));
	strbuf_release(&path);
	return r;
}

static struct pending *pending_slot(struct layers *l, const char *path, bool create)
{
	return lm_record(l->pend, path, strlen(path), sizeof(struct pending), create);
}

void lm_free_pending(void *v)
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
			     lm_entry_name(l, l->path.buf));
}

/* Copy a file of an image below into this layer's spool and inode. */
static int copy_lower_file(struct layers *l, struct anole_image *img, const struct anole_inode *ai,
			   struct tinode *ino)
{
	tinode_set_meta(ino, ai->mode, ai->uid, ai->gid, ai->mtime, ai->mtime_nsec);
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
	if ((r = lm_spool_fd_for(l, ai->size, &fd)) < 0)
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
	return tw_file_data(l->tw, ino, fd, NULL, 0, lm_entry_name(l, l->path.buf));
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
		struct tinode *ino = r >= 0 ? lm_new_inode(l) : NULL;
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
		if (r >= 0 && (r = lm_place(l, false, NULL, &t, &update)) == VISIBLE) {
			t->inode = ino;
			r = lm_remember_file(l, ino, NULL);
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
struct pending *lm_waiting_for(struct layers *l)
{
	struct pending *p = strmap_count(l->pend) ? pending_slot(l, l->path.buf, false) : NULL;
	return p && !p->resolved && p->layer > l->layer ? p : NULL;
}

void lm_resolve_links(struct pending *p, struct tinode *ino)
{
	for (size_t i = 0; i < p->n; i++)
		p->links[i]->inode = ino;
	p->resolved = true;
}

int lm_hard_link(struct layers *l, const char *target_raw)
{
	struct strbuf target = {0};
	int r = lm_normalize(l, target_raw, &target);
	if (r < 0)
		goto out;
	struct lfile *f = file_find(l, target.buf);
	struct pending *wait = lm_waiting_for(l);
	struct mnode *n;
	bool update;
	r = lm_place(l, false, NULL, &n, &update);
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
		lm_resolve_links(wait, ino);
	/* The link's own path now names the same file, for later links. */
	if (r >= 0 && file_find(l, l->path.buf) != f)
		r = lm_remember_file(l, ino, NULL);
out:
	strbuf_release(&target);
	return r;
}

