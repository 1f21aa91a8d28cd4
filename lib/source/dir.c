/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directory source: walks a tree with openat() relative to directory file
 * descriptors (so deep trees never hit PATH_MAX), in byte order of names,
 * so the same tree always yields the same image.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "source/source.h"

struct hl_entry {
	dev_t dev;
	ino_t ino;
	struct tinode *inode;
};

struct walk {
	struct tree_writer *tw;
	struct anole_error *err;
	struct strbuf path; /* for messages only */
	struct hl_entry *hl;
	size_t hl_count, hl_cap;
	struct xattr_setbuf xs;
	char *xnames, *xvalue;
	size_t xnames_cap;
	char *link; /* a symlink's target; walk_entry recurses 4096 deep, so
		       its big buffers are here, not on the stack */
};

static size_t hl_slot(const struct walk *w, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)dev * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)ino * 0xff51afd7ed558ccdull);
	return (size_t)(h ^ (h >> 29)) & (w->hl_cap - 1);
}

static struct tinode **hl_find(struct walk *w, dev_t dev, ino_t ino)
{
	if ((w->hl_count + 1) * 2 > w->hl_cap) {
		size_t ncap = w->hl_cap ? w->hl_cap * 2 : 256;
		struct hl_entry *n = calloc(ncap, sizeof(*n));
		if (!n)
			return NULL;
		struct hl_entry *old = w->hl;
		size_t ocap = w->hl_cap;
		w->hl = n;
		w->hl_cap = ncap;
		for (size_t i = 0; i < ocap; i++) {
			if (!old[i].inode)
				continue;
			size_t j = hl_slot(w, old[i].dev, old[i].ino);
			while (w->hl[j].inode)
				j = (j + 1) & (ncap - 1);
			w->hl[j] = old[i];
		}
		free(old);
	}
	size_t j = hl_slot(w, dev, ino);
	while (w->hl[j].inode && !(w->hl[j].dev == dev && w->hl[j].ino == ino))
		j = (j + 1) & (w->hl_cap - 1);
	if (!w->hl[j].inode) {
		/* a new entry: counted now, so the table grows before it
		 * fills (the probe above needs an empty slot to stop) */
		w->hl[j].dev = dev;
		w->hl[j].ino = ino;
		w->hl_count++;
	}
	return &w->hl[j].inode;
}

static int read_xattrs(struct walk *w, int dirfd, const char *name, struct tinode *ino)
{
	/* Through /proc so that symlinks and devices are read without being
	 * opened or followed; the root is read through its own fd. */
	char p[64 + 256];
	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dirfd, name ? name : "");
#define LIST(buf, size) (name ? llistxattr(p, buf, size) : flistxattr(dirfd, buf, size))
#define GET(xn, buf, size) (name ? lgetxattr(p, xn, buf, size) : fgetxattr(dirfd, xn, buf, size))

	ssize_t n;
	for (;;) {
		n = w->xnames_cap ? LIST(w->xnames, w->xnames_cap) : -1;
		if (n >= 0)
			break;
		if (!w->xnames_cap)
			errno = ERANGE;
		if (errno == ENOTSUP || errno == ENODATA)
			return 0;
		if (errno != ERANGE)
			return anole_err(w->err, errno, "%s: cannot list xattrs: %s", w->path.buf,
					 strerror(errno));
		ssize_t need = LIST(NULL, 0);
		if (need < 0)
			return anole_err(w->err, errno, "%s: cannot list xattrs: %s", w->path.buf,
					 strerror(errno));
		char *nb = realloc(w->xnames, (size_t)need + 1);
		if (!nb)
			return anole_err(w->err, ENOMEM, "out of memory");
		w->xnames = nb;
		w->xnames_cap = (size_t)need + 1;
	}
	if (!w->xvalue && !(w->xvalue = malloc(65536 + 1)))
		return anole_err(w->err, ENOMEM, "out of memory");
	for (ssize_t off = 0; off < n; off += (ssize_t)strlen(w->xnames + off) + 1) {
		const char *xn = w->xnames + off;
		ssize_t vlen = GET(xn, w->xvalue, 65536 + 1);
		if (vlen < 0) {
			if (errno == ENODATA)
				continue; /* removed while we looked */
			return anole_err(w->err, errno, "%s: cannot read xattr %s: %s", w->path.buf,
					 xn, strerror(errno));
		}
		int r = xattr_set_add(tw_xattrs(w->tw), &w->xs, xn, w->xvalue, (size_t)vlen, w->err,
				      w->path.buf);
		if (r < 0)
			return r;
	}
#undef LIST
#undef GET
	int r = xattr_set_intern(tw_xattrs(w->tw), &w->xs, &ino->xattr_set);
	if (r < 0)
		return anole_err(w->err, -r, "out of memory");
	return 0;
}

static void fill_inode(struct tinode *ino, const struct stat *st)
{
	ino->mode = st->st_mode;
	ino->uid = st->st_uid;
	ino->gid = st->st_gid;
	ino->mtime = st->st_mtim.tv_sec;
	ino->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
	if (S_ISREG(st->st_mode))
		ino->size = (uint64_t)st->st_size;
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		ino->rdev = (uint32_t)st->st_rdev;
}

/* Data runs of a sparse file, or NULL (with *n = 0) for a dense one. */
static int data_extents(int fd, const struct stat *st, struct data_extent **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if ((uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size)
		return 0;
	off_t hole = lseek(fd, 0, SEEK_HOLE);
	if (hole < 0 || hole >= st->st_size)
		return 0;
	size_t cap = 16;
	struct data_extent *e = malloc(cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	off_t pos = 0;
	while (pos < st->st_size) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0 || data >= st->st_size)
			break;
		off_t end = lseek(fd, data, SEEK_HOLE);
		if (end < 0 || end > st->st_size)
			end = st->st_size;
		if (*n == cap) {
			cap *= 2;
			struct data_extent *ne = realloc(e, cap * sizeof(*e));
			if (!ne) {
				free(e);
				return -ENOMEM;
			}
			e = ne;
		}
		e[(*n)++] = (struct data_extent){(uint64_t)data, (uint64_t)(end - data)};
		pos = end;
	}
	*out = e;
	return 0;
}

static int add_file_data(struct walk *w, int dirfd, const char *name, struct tinode *ino)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return anole_err(w->err, errno, "%s: cannot open: %s", w->path.buf, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return anole_err(w->err, errno, "%s: %s", w->path.buf, strerror(errno));
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != ino->size)
		return anole_err(w->err, EAGAIN, "%s: file changed while being read", w->path.buf);
	_cleanup_free_ struct data_extent *ext = NULL;
	size_t next;
	int r = data_extents(fd, &st, &ext, &next);
	if (r < 0)
		return anole_err(w->err, -r, "out of memory");
	return tw_file_data(w->tw, ino, fd, ext, next, w->path.buf);
}

struct name {
	size_t len;
	char s[];
};

static int cmp_names(const void *a, const void *b)
{
	const struct name *x = *(struct name *const *)a, *y = *(struct name *const *)b;
	int c = memcmp(x->s, y->s, MIN(x->len, y->len));
	return c ? c : (x->len < y->len ? -1 : x->len > y->len);
}

static int list_dir(struct walk *w, int dirfd, struct name ***out, size_t *count)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return anole_err(w->err, errno, "%s: %s", w->path.buf, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return anole_err(w->err, errno, "%s: %s", w->path.buf, strerror(errno));
	}
	rewinddir(d);
	struct name **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		size_t len = strlen(de->d_name);
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			struct name **nv = realloc(v, cap * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
		}
		v[n] = malloc(sizeof(struct name) + len + 1);
		if (!v[n]) {
			r = -ENOMEM;
			break;
		}
		v[n]->len = len;
		memcpy(v[n]->s, de->d_name, len + 1);
		n++;
	}
	if (!r && errno)
		r = -errno;
	closedir(d);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return anole_err(w->err, -r, "%s: cannot read directory: %s", w->path.buf,
				 strerror(-r));
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_names);
	*out = v;
	*count = n;
	return 0;
}

static int walk_entry(struct walk *w, int dirfd, struct tinode *dir, const struct name *nm);

static int walk_dir(struct walk *w, int dirfd, struct tinode *dir)
{
	struct name **names = NULL;
	size_t n = 0;
	int r = list_dir(w, dirfd, &names, &n);
	if (r < 0)
		return r;
	size_t plen = w->path.len;
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (plen > 1 || w->path.buf[0] != '/')
			strbuf_add(&w->path, "/", 1);
		strbuf_add(&w->path, names[i]->s, names[i]->len);
		r = walk_entry(w, dirfd, dir, names[i]);
		w->path.len = plen;
		w->path.buf[plen] = 0;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

static int walk_entry(struct walk *w, int dirfd, struct tinode *dir, const struct name *nm)
{
	struct stat st;
	int r;

	if (fstatat(dirfd, nm->s, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return anole_err(w->err, errno, "%s: %s", w->path.buf, strerror(errno));
	tw_progress(w->tw, "scan", false);

	struct tinode **seen = NULL;
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		seen = hl_find(w, st.st_dev, st.st_ino);
		if (!seen)
			return anole_err(w->err, ENOMEM, "out of memory");
		if (*seen)
			return tw_add(w->tw, dir, nm->s, nm->len, *seen, NULL);
	}

	struct tinode *ino = tw_inode_new(w->tw);
	if (!ino)
		return anole_err(w->err, ENOMEM, "out of memory");
	fill_inode(ino, &st);
	/* on failure, the inode stays with the writer, unused */
	if ((r = read_xattrs(w, dirfd, nm->s, ino)) < 0)
		return r;
	if (S_ISLNK(st.st_mode)) {
		const size_t size = 4097;
		ssize_t len = w->link || (w->link = malloc(size))
				      ? readlinkat(dirfd, nm->s, w->link, size)
				      : (errno = ENOMEM, -1);
		if (len < 0 || len >= (ssize_t)size) {
			return anole_err(w->err, len < 0 ? errno : ENAMETOOLONG,
					 "%s: cannot read symlink: %s", w->path.buf,
					 len < 0 ? strerror(errno) : "target too long");
		}
		ino->u.symlink = strndup(w->link, (size_t)len);
		ino->size = (uint64_t)len;
		if (!ino->u.symlink)
			return anole_err(w->err, ENOMEM, "out of memory");
	} else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISCHR(st.st_mode) &&
		   !S_ISBLK(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
		return anole_err(w->err, EINVAL, "%s: unknown file type 0%o", w->path.buf,
				 st.st_mode & S_IFMT);
	}
	/* From here the writer owns the inode. */
	if ((r = tw_add(w->tw, dir, nm->s, nm->len, ino, NULL)) < 0)
		return r;
	if (seen)
		*seen = ino;
	if (S_ISREG(st.st_mode))
		return add_file_data(w, dirfd, nm->s, ino);
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dirfd, nm->s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return anole_err(w->err, errno, "%s: cannot open directory: %s", w->path.buf,
					 strerror(errno));
		r = walk_dir(w, fd, ino);
		close(fd);
		return r;
	}
	return 0;
}

int source_dir(struct tree_writer *tw, const char *path, struct anole_error *err)
{
	struct walk w = {.tw = tw, .err = err};
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	strbuf_add(&w.path, path, strlen(path));

	struct tinode *root = tw_inode_new(tw);
	int r = root ? 0 : anole_err(err, ENOMEM, "out of memory");
	if (!r) {
		fill_inode(root, &st);
		r = read_xattrs(&w, fd, NULL, root);
	}
	if (!r)
		r = tw_root(tw, &root);
	if (!r)
		r = walk_dir(&w, fd, root);
	strbuf_release(&w.path);
	free(w.hl);
	free(w.xnames);
	free(w.xvalue);
	free(w.link);
	xattr_setbuf_release(&w.xs);
	return r;
}
