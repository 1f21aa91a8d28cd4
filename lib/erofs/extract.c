/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole_extract(): restore an image's tree under a directory.
 *
 * Safety: every entry is created relative to a directory file descriptor
 * that anole itself created and opened with O_NOFOLLOW, with O_EXCL-style
 * creation, so no name from the image (nor a symlink it contains) can make
 * anole write outside the target. Names "." and ".." never become entries.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

#include "anole/erofs_fs.h"
#include "erofs/reader.h"


struct link_seen {
	uint64_t nid;
	char *relpath; /* relative to the target root */
};

struct extractor {
	struct anole_image *img;
	struct anole_error *err;
	const struct anole_extract_options *opts;
	int rootfd;
	bool as_root;
	bool warned_xattr;
	struct link_seen *links;
	size_t nlinks, lcap;
	struct strbuf rel; /* path relative to the target, for links and messages */
	char *buf;
};

static int xerr(struct extractor *x, int e, const char *what)
{
	return anole_err(x->err, e, "%s: %s: %s", x->rel.len ? x->rel.buf : ".", what, strerror(e));
}

struct xattr_apply {
	struct extractor *x;
	int fd;          /* for files and directories */
	const char *lpath; /* for everything else */
};

static int apply_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	struct xattr_apply *a = ctx;
	int r = a->fd >= 0 ? fsetxattr(a->fd, name, value, size, 0)
			   : lsetxattr(a->lpath, name, value, size, 0);
	if (r == 0)
		return 0;
	if (!a->x->as_root && (errno == EPERM || errno == ENOTSUP)) {
		if (!a->x->warned_xattr && !a->x->opts->quiet)
			fprintf(stderr, "anole: warning: cannot set xattr %s on %s (not root?); "
					"skipping such attributes\n",
				name, a->x->rel.buf);
		a->x->warned_xattr = true;
		return 0;
	}
	return anole_err(a->x->err, errno, "%s: cannot set xattr %s: %s", a->x->rel.buf, name,
			 strerror(errno));
}

/* Owner, xattrs, mode, times — in that order: chown clears setuid bits and
 * file capabilities, so it comes first. */
static int restore_attrs(struct extractor *x, int dirfd, const char *name, int fd,
			 const struct anole_inode *ino)
{
	char lpath[64 + 256];
	int r;
	bool self = !name; /* the target root itself */

	if (x->as_root && x->opts->restore_owner) {
		r = self ? fchown(fd, ino->uid, ino->gid)
			 : fchownat(dirfd, name, ino->uid, ino->gid, AT_SYMLINK_NOFOLLOW);
		if (r < 0)
			return xerr(x, errno, "cannot set owner");
	}
	if (!self)
		snprintf(lpath, sizeof(lpath), "/proc/self/fd/%d/%s", dirfd, name);
	struct xattr_apply a = {.x = x, .fd = fd, .lpath = lpath};
	if ((r = anole_xattrs(x->img, ino, apply_xattr, &a)) < 0)
		return r;
	if (!S_ISLNK(ino->mode)) {
		r = self || fd >= 0 ? fchmod(fd, ino->mode & 07777)
				    : fchmodat(dirfd, name, ino->mode & 07777, 0);
		if (r < 0)
			return xerr(x, errno, "cannot set mode");
	}
	struct timespec ts[2] = {{ino->mtime, ino->mtime_nsec}, {ino->mtime, ino->mtime_nsec}};
	r = self || fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
	if (r < 0)
		return xerr(x, errno, "cannot set times");
	return 0;
}

static int write_file(struct extractor *x, int fd, const struct anole_inode *ino)
{
	for (uint64_t off = 0; off < ino->size;) {
		bool hole;
		uint64_t end;
		int r = anole_map(x->img, ino, off, &hole, &end);
		if (r < 0)
			return r;
		if (end <= off)
			return img_corrupt(x->img, ino->nid, ino->pos, "data map makes no progress");
		if (hole) { /* leave it unwritten: holes stay holes */
			off = end;
			continue;
		}
		size_t n = (size_t)MIN(end - off, (uint64_t)(1u << 20));
		ssize_t got = anole_pread(x->img, ino, x->buf, n, off);
		if (got <= 0)
			return got < 0 ? (int)got : img_corrupt(x->img, ino->nid, ino->pos, "short read");
		if (pwrite_full(fd, x->buf, (size_t)got, off) < 0)
			return xerr(x, errno, "cannot write");
		off += (uint64_t)got;
	}
	if (ftruncate(fd, (off_t)ino->size) < 0)
		return xerr(x, errno, "cannot set size");
	return 0;
}

static struct link_seen *find_link(struct extractor *x, uint64_t nid)
{
	for (size_t i = 0; i < x->nlinks; i++)
		if (x->links[i].nid == nid)
			return &x->links[i];
	return NULL;
}

static int remember_link(struct extractor *x, uint64_t nid)
{
	if (x->nlinks == x->lcap) {
		size_t ncap = x->lcap ? x->lcap * 2 : 64;
		struct link_seen *n = realloc(x->links, ncap * sizeof(*n));
		if (!n)
			return anole_err(x->err, ENOMEM, "out of memory");
		x->links = n;
		x->lcap = ncap;
	}
	x->links[x->nlinks].nid = nid;
	x->links[x->nlinks].relpath = strdup(x->rel.buf);
	if (!x->links[x->nlinks].relpath)
		return anole_err(x->err, ENOMEM, "out of memory");
	x->nlinks++;
	return 0;
}

/* Open the directory holding an earlier link without following any
 * symlink and without leaving the target. */
static int open_beneath(struct extractor *x, const char *relpath, const char **base)
{
	_cleanup_free_ char *dir = strdup(relpath);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	*base = strrchr(relpath, '/') ? strrchr(relpath, '/') + 1 : relpath;
	if (!slash)
		return fcntl(x->rootfd, F_DUPFD_CLOEXEC, 0);
	*slash = 0;
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, x->rootfd, dir, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

static int extract_dir(struct extractor *x, int dirfd, const struct anole_inode *dir, int depth);

/* Out of line: its buffer must not sit in every frame of the recursion. */
static __attribute__((noinline)) int extract_symlink(struct extractor *x, int dirfd,
						     const struct dent *d,
						     const struct anole_inode *ino)
{
	char target[4096];
	int r = anole_readlink(x->img, ino, target, sizeof(target));
	if (r < 0)
		return r;
	if (symlinkat(target, dirfd, d->name) < 0)
		return xerr(x, errno, "cannot create symlink");
	return restore_attrs(x, dirfd, d->name, -1, ino);
}

static int extract_entry(struct extractor *x, int dirfd, const struct dent *d, int depth)
{
	struct anole_inode ino;
	int r = anole_inode_read(x->img, d->nid, &ino);
	if (r < 0)
		return r;

	if (!S_ISDIR(ino.mode) && ino.nlink > 1) {
		struct link_seen *l = find_link(x, ino.nid);
		if (l) {
			const char *base;
			int pfd = open_beneath(x, l->relpath, &base);
			if (pfd < 0)
				return xerr(x, -pfd, "cannot reach the first link");
			r = linkat(pfd, base, dirfd, d->name, 0);
			int e = errno;
			close(pfd);
			return r < 0 ? xerr(x, e, "cannot create hard link") : 0;
		}
		if ((r = remember_link(x, ino.nid)) < 0)
			return r;
	}

	switch (ino.mode & S_IFMT) {
	case S_IFDIR: {
		if (mkdirat(dirfd, d->name, 0700) < 0)
			return xerr(x, errno, "cannot create directory");
		_cleanup_close_ int fd = openat(dirfd, d->name,
						O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return xerr(x, errno, "cannot open directory");
		if ((r = extract_dir(x, fd, &ino, depth + 1)) < 0)
			return r;
		return restore_attrs(x, dirfd, d->name, fd, &ino);
	}
	case S_IFREG: {
		_cleanup_close_ int fd = openat(dirfd, d->name,
						O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
						0600);
		if (fd < 0)
			return xerr(x, errno, "cannot create file");
		if ((r = write_file(x, fd, &ino)) < 0)
			return r;
		return restore_attrs(x, dirfd, d->name, fd, &ino);
	}
	case S_IFLNK:
		return extract_symlink(x, dirfd, d, &ino);
	default:
		if (mknodat(dirfd, d->name, (ino.mode & S_IFMT) | 0600, ino.rdev) < 0)
			return xerr(x, errno, "cannot create special file");
		return restore_attrs(x, dirfd, d->name, -1, &ino);
	}
}

static int extract_dir(struct extractor *x, int dirfd, const struct anole_inode *dir, int depth)
{
	if (depth > ANOLE_MAX_DEPTH)
		return img_corrupt(x->img, dir->nid, dir->pos, "directory tree deeper than %d",
				   ANOLE_MAX_DEPTH);
	struct dent_list l = {0};
	int r = read_dir_entries(x->img, dir, &l);
	size_t plen = x->rel.len;
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		struct dent *d = &l.v[i];
		if (!strcmp(d->name, ".") || !strcmp(d->name, ".."))
			continue;
		if (d->nid == dir->nid)
			r = img_corrupt(x->img, dir->nid, dir->pos, "entry '%s' points to its own "
					"directory", d->name);
		if (r < 0)
			break;
		if (plen)
			strbuf_add(&x->rel, "/", 1);
		strbuf_add(&x->rel, d->name, d->len);
		r = extract_entry(x, dirfd, d, depth);
		x->rel.len = plen;
		if (x->rel.buf)
			x->rel.buf[plen] = 0;
	}
	free(l.v);
	return r;
}

static int prepare_target(const char *dir, struct anole_error *err)
{
	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return anole_err(err, errno, "%s: cannot create: %s", dir, strerror(errno));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", dir, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return anole_err(err, errno, "%s: %s", dir, strerror(errno));
	}
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			r = anole_err(err, ENOTEMPTY, "%s: target directory is not empty", dir);
			break;
		}
	closedir(d);
	return r;
}

int anole_extract(struct anole_image *img, const char *dir,
		  const struct anole_extract_options *opts, struct anole_error *err)
{
	struct anole_extract_options defaults = {.restore_owner = true};
	struct extractor x = {.img = img, .err = err, .opts = opts ? opts : &defaults,
			      .rootfd = -1, .as_root = geteuid() == 0};
	struct anole_inode root;
	int r = prepare_target(dir, err);
	if (r < 0)
		return r;
	x.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	x.buf = malloc(1u << 20);
	strbuf_add(&x.rel, "", 0);
	if (x.rootfd < 0 || !x.buf) {
		r = anole_err(err, x.rootfd < 0 ? errno : ENOMEM, "%s: %s", dir,
			      strerror(x.rootfd < 0 ? errno : ENOMEM));
		goto out;
	}
	r = anole_inode_read(img, anole_image_info(img)->root_nid, &root);
	if (r >= 0)
		r = extract_dir(&x, x.rootfd, &root, 0);
	if (r >= 0)
		r = restore_attrs(&x, -1, NULL, x.rootfd, &root);
	if (r < 0 && !err->code)
		*err = *anole_image_error(img);
out:
	if (x.rootfd >= 0)
		close(x.rootfd);
	for (size_t i = 0; i < x.nlinks; i++)
		free(x.links[i].relpath);
	free(x.links);
	free(x.buf);
	strbuf_release(&x.rel);
	return r;
}
