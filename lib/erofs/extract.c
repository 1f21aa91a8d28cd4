/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole_extract(): restore an image's tree under a directory.
 *
 * Safety: every entry is created relative to a directory file descriptor
 * that anole itself created and opened with O_NOFOLLOW, with O_EXCL-style
 * creation, and every attribute is then set through a descriptor of what
 * was created, so no name from the image (nor a symlink it contains) can
 * make anole write outside the target. Names "." and ".." never become
 * entries. Regular files are created and written by the pool's threads
 * (xpool.h) in the same way, relative to a directory descriptor held open
 * until they are finished; their attributes, and their directory's, are
 * set here once their data is written.
 *
 * All or nothing: DIR is opened once (its last component without
 * following a symlink) and the tree is built in a private work directory
 * (.anole-extract.XXXXXX, 0700, locked; see util/safefs.h) beside a DIR
 * that does not exist yet, or inside an empty one. Only the finished tree
 * is moved into place; a failure removes it and leaves DIR as it was. One
 * left by a killed extract is removed by the next extract in that place.
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

#include "anole/erofs_fs.h"
#include "erofs/reader.h"
#include "erofs/xpool.h"
#include "util/safefs.h"

#define WORK_PREFIX ".anole-extract."
#define FILES_OPEN_MAX 128 /* files made here that the pool still writes (each
			      holds a descriptor until finished here) */
#define FILES_QUEUED_MAX 4096 /* files queued at most: the pool's own hold no
				 descriptor until they run, and a deep queue
				 keeps the threads busy while this one waits
				 for a disk read in mkdir or the like */
#define SMALL_FILE (256u << 10) /* at most this big: the pool creates it too */
#define COPY_PART (8u << 20) /* bytes copied by one part: a big file near the
				  end of the walk must not leave one thread
				  copying it alone */

/* A directory extract made and holds open while the pool creates files
 * in it; its attributes wait for those files (a creation would change its
 * times, and its mode could forbid it). */
struct xdir {
	int fd;
	unsigned int refs; /* the walk's (until it leaves), one per queued file */
	struct anole_inode ino;
	char *rel;
	struct xdir *next, **pprev; /* pprev: in the extractor's dirs list */
	bool mode_set; /* made with its final mode */
};

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
	/* What a new file under the root gets without asking: its owner, and
	 * its mode bits unless the umask (or a default ACL, which
	 * @final_mode false stands for) takes them away. */
	uid_t new_uid;
	gid_t new_gid;
	mode_t umask;
	bool final_mode;
	struct link_seen *links;
	size_t nlinks, lcap;
	struct strbuf rel; /* path relative to the target, for links and messages */
	const char *here;  /* else the path for messages: a file the pool wrote */
	char *buf;
	struct xpool *pool;
	struct xfile *files, **files_tail; /* the pool's, oldest first */
	size_t nfiles, nopen; /* queued; those of them made here */
	struct xdir *dirs;  /* walked, waiting for their files */
	struct xdir *ready; /* walked, their files written: attributes next */
	size_t ndirs; /* in those lists (each holds a descriptor) */
	size_t dirs_max, open_max; /* what the queue may keep open (fd_budget) */
};

static const char *here(const struct extractor *x)
{
	return x->here ? x->here : x->rel.len ? x->rel.buf : ".";
}

static int xerr(struct extractor *x, int e, const char *what)
{
	return anole_err(x->err, e, "%s: %s: %s", here(x), what, strerror(e));
}

/* Whether what extract makes under the root already has @ino's owner. */
static bool has_new_owner(const struct extractor *x, const struct anole_inode *ino)
{
	return ino->uid == x->new_uid && ino->gid == x->new_gid;
}

/* Whether creating with @mode gives exactly @mode: no bit the umask (or a
 * default ACL) takes away, no set-ID or sticky bit (chown would clear
 * those, and a set-group-ID directory would pass its group on). */
static bool mode_is_given(const struct extractor *x, mode_t mode)
{
	return x->final_mode && !(mode & 07000) && !(mode & x->umask);
}

/* A directory is made with its final mode when that is given and lets
 * the walk create in it (as root, any mode does); else 0700, and its mode
 * is set once its files are written. */
static mode_t dir_create_mode(const struct extractor *x, const struct anole_inode *ino)
{
	mode_t mode = ino->mode & 07777;
	return mode_is_given(x, mode) && (x->as_root || (mode & 0700) == 0700) ? mode : 0700;
}

struct xattr_apply {
	struct extractor *x;
	int fd;           /* a file or directory opened for real */
	const char *path; /* else /proc/self/fd/N of its O_PATH descriptor */
};

static int apply_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	struct xattr_apply *a = ctx;
	int r = a->fd >= 0 ? fsetxattr(a->fd, name, value, size, 0)
			   : setxattr(a->path, name, value, size, 0);
	if (r == 0)
		return 0;
	if (!a->x->as_root && (errno == EPERM || errno == ENOTSUP)) {
		if (!a->x->warned_xattr && !a->x->opts->quiet)
			fprintf(stderr, "anole: warning: cannot set xattr %s on %s (not root?); "
					"skipping such attributes\n",
				name, here(a->x));
		a->x->warned_xattr = true;
		return 0;
	}
	return anole_err(a->x->err, errno, "%s: cannot set xattr %s: %s", here(a->x), name,
			 strerror(errno));
}

/* Owner, xattrs, mode, times — in that order: chown clears setuid bits and
 * file capabilities, so it comes first. All through @fd, what we created,
 * never its name. @fd is an O_PATH descriptor for symlinks and special
 * files (opening those for real could block or reach a device); the calls
 * that take only paths get /proc/self/fd/N, which reaches the very inode
 * (for a symlink, the link itself). @how: what need not be done, as
 * creating it already did it (RA_*). */
enum {
	RA_OWNER = 1, /* it was made under the root: its owner, if the image
			 names that one, is right (has_new_owner) */
	RA_MODE = 2,  /* it was made with its final mode */
};
static int restore_attrs(struct extractor *x, int fd, bool opath, const struct anole_inode *ino,
			 unsigned int how)
{
	char proc[32];
	fd_path(fd, proc);
	if (x->as_root && x->opts->restore_owner && !(how & RA_OWNER && has_new_owner(x, ino)) &&
	    fchownat(fd, "", ino->uid, ino->gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return xerr(x, errno, "cannot set owner");
	struct xattr_apply a = {.x = x, .fd = opath ? -1 : fd, .path = proc};
	int r = anole_xattrs(x->img, ino, apply_xattr, &a);
	if (r < 0)
		return r;
	mode_t mode = ino->mode & 07777;
	if (!S_ISLNK(ino->mode) && !(how & RA_MODE) &&
	    (opath ? chmod(proc, mode) : fchmod(fd, mode)) < 0)
		return xerr(x, errno, "cannot set mode");
	struct timespec ts[2] = {{ino->mtime, ino->mtime_nsec}, {ino->mtime, ino->mtime_nsec}};
	if (utimensat(fd, "", ts, AT_EMPTY_PATH) < 0)
		return xerr(x, errno, "cannot set times");
	return 0;
}

/* What we just made as @name, opened once without following it (an
 * O_PATH descriptor) and checked to be of the type we made. */
static int restore_created(struct extractor *x, int dirfd, const char *name,
			   const struct anole_inode *ino)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return xerr(x, errno, "cannot open what was created");
	if ((st.st_mode & S_IFMT) != (ino->mode & S_IFMT))
		return xerr(x, EEXIST, "replaced while extracting");
	return restore_attrs(x, fd, true, ino, RA_OWNER);
}

/* ---- regular files: created and written on the pool's threads ------------ */

/* A new file whose writes, queued in ascending order, ended at @wend: its
 * size set to @size unless the last write already made it that. One
 * syscall per file saved; ext4 journals even a truncate to the same size. */
static int set_size(struct extractor *x, int fd, uint64_t wend, uint64_t size)
{
	if (wend != size && ftruncate(fd, (off_t)size) < 0)
		return xerr(x, errno, "cannot set size");
	return 0;
}

/* One reference to @d gone; when it was the last, @d moves to the list
 * settle_dirs() finishes (the top directory, in neither, is finished at
 * the commit). */
static void dir_unref(struct extractor *x, struct xdir *d)
{
	if (--d->refs || !d->pprev)
		return;
	*d->pprev = d->next;
	if (d->next)
		d->next->pprev = d->pprev;
	d->next = x->ready;
	d->pprev = NULL;
	x->ready = d;
}

/* A written file's size, attributes (after its data: a write would drop
 * file capabilities) and descriptor; its failure, if it had one. */
static int finish_file(struct extractor *x, struct xfile *f)
{
	int r = 0;
	x->here = f->rel;
	if (f->err)
		r = f->err_decode   ? zmap_decode_error(x->img, &f->ino, &f->bad, f->err)
		    : f->err_create ? xerr(x, -f->err, "cannot create file")
		    : f->err_short  ? img_corrupt(x->img, f->ino.nid, f->ino.pos, "image is truncated")
		    : f->err_what   ? xerr(x, -f->err, f->err_what)
				    : xerr(x, -f->err, "cannot write");
	else if (f->finish)
		r = 0; /* the pool did the rest */
	else if ((r = set_size(x, f->fd, f->wend, f->ino.size)) >= 0)
		r = restore_attrs(x, f->fd, false, &f->ino, RA_OWNER);
	x->here = NULL;
	dir_unref(x, f->owner);
	return r;
}

static void file_free(struct xfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->rel);
	free(f);
}

static void dir_free(struct xdir *d)
{
	close(d->fd);
	free(d->rel);
	free(d);
}

static void dirs_free(struct xdir *d)
{
	while (d) {
		struct xdir *next = d->next;
		dir_free(d);
		d = next;
	}
}

/* The attributes of walked directories whose files are all written. */
static int settle_dirs(struct extractor *x)
{
	int r = 0;
	while (r >= 0 && x->ready) {
		struct xdir *d = x->ready;
		x->here = d->rel;
		r = restore_attrs(x, d->fd, false, &d->ino, RA_OWNER | (d->mode_set ? RA_MODE : 0));
		x->here = NULL;
		x->ready = d->next;
		x->ndirs--;
		dir_free(d);
	}
	return r;
}

/* Finish the files the pool has written, oldest first; with @wait, all
 * of them, else while too many are open or queued. Then the directories
 * that waited for them. */
static int reap(struct extractor *x, bool wait)
{
	int r = 0;
	while (r >= 0 && x->files) {
		struct xfile *f = x->files;
		bool must = wait || x->nopen > x->open_max || x->nfiles > FILES_QUEUED_MAX ||
			    x->ndirs > x->dirs_max || xpool_full(x->pool);
		if (!xpool_file_done(x->pool, f)) {
			if (!must)
				break;
			xpool_step(x->pool);
			continue;
		}
		r = finish_file(x, f);
		x->files = f->next;
		if (!x->files)
			x->files_tail = &x->files;
		x->nfiles--;
		x->nopen -= f->made_here;
		file_free(f);
	}
	return r < 0 ? r : settle_dirs(x);
}

/* @f's bytes [@off, @end) as the reader gives them, read straight into
 * the pool's batches. */
static int queue_raw(struct extractor *x, struct xfile *f, uint64_t off, uint64_t end)
{
	const struct anole_inode *ino = &f->ino;
	while (off < end) {
		size_t n = (size_t)MIN(end - off, (uint64_t)(1u << 20));
		uint8_t *buf = xpool_reserve(x->pool, n);
		if (!buf)
			return anole_err(x->err, ENOMEM, "out of memory");
		ssize_t got = anole_pread(x->img, ino, buf, n, off);
		if (got <= 0)
			return got < 0 ? (int)got : img_corrupt(x->img, ino->nid, ino->pos, "short read");
		if (xpool_add_raw(x->pool, f, off, (size_t)got) < 0)
			return anole_err(x->err, ENOMEM, "out of memory");
		off += (uint64_t)got;
		f->wend = off;
	}
	return 0;
}

/* Extent @z of a compressed file, from @off, for the pool: stored bytes
 * that lie in a file are read by the pool (and when stored as they are,
 * copied by the kernel); a pcluster inline in the metadata is read here;
 * else (a fragment) the reader's bytes are queued as they are. */
static int queue_extent(struct extractor *x, struct xfile *f, const struct zextent *z,
			uint64_t off)
{
	const struct anole_inode *ino = &f->ino;
	uint64_t end = z->la + z->llen;
	if ((z->where != ZX_BLOCKS && z->where != ZX_INLINE) ||
	    (z->form >= Z_EROFS_COMPRESSION_MAX && z->form != ZFORM_SHIFTED &&
	     z->form != ZFORM_INTERLACED))
		return queue_raw(x, f, off, end);
	if (z->plen > (1u << 20))
		return img_corrupt(x->img, ino->nid, z->pa, "pcluster of %u bytes", z->plen);
	int fd, r;
	uint64_t at;
	struct zdecode_req rq;
	if ((r = zmap_stored_at(x->img, ino, z, &fd, &at)) < 0)
		return r;
	f->wend = end;
	if (fd >= 0 && z->form == ZFORM_SHIFTED && z->llen <= z->plen) {
		r = xpool_add_copy(x->pool, f, off, (size_t)(end - off), fd, at + (off - z->la));
	} else if (fd >= 0) {
		zmap_request(x->img, z, NULL, &rq);
		r = xpool_add_at(x->pool, f, &rq, z, off - z->la, end - off, fd, at);
	} else {
		uint8_t *in = xpool_reserve(x->pool, z->plen);
		if (!in)
			return anole_err(x->err, ENOMEM, "out of memory");
		if ((r = zmap_stored(x->img, ino, z, in)) < 0)
			return r;
		zmap_request(x->img, z, in, &rq);
		r = xpool_add(x->pool, f, &rq, z, off - z->la, end - off);
	}
	return r < 0 ? anole_err(x->err, -r, "out of memory") : 0;
}

static int queue_extents(struct extractor *x, struct xfile *f)
{
	for (uint64_t off = 0; off < f->ino.size;) {
		struct zextent z;
		int r = zmap_extent(x->img, &f->ino, off, &z);
		if (r >= 0 && z.where != ZX_HOLE)
			r = queue_extent(x, f, &z, off);
		if (r < 0)
			return r;
		off = z.la + z.llen; /* > off: zmap_extent checked it holds off */
	}
	return 0;
}

/* An uncompressed file's data runs, copied from the image by the pool
 * where they lie in a file (else read here); holes stay unwritten. */
static int queue_plain(struct extractor *x, struct xfile *f)
{
	const struct anole_inode *ino = &f->ino;
	for (uint64_t off = 0; off < ino->size;) {
		bool hole;
		uint64_t end, at;
		int fd;
		int r = img_data_at(x->img, ino, off, &hole, &end, &fd, &at);
		if (r < 0)
			return r;
		if (fd < 0 && !hole)
			r = queue_raw(x, f, off, end);
		for (uint64_t o = off; fd >= 0 && o < end && r >= 0; o += COPY_PART) {
			size_t n = (size_t)MIN(end - o, (uint64_t)COPY_PART);
			if ((r = xpool_add_copy(x->pool, f, o, n, fd, at + (o - off))) < 0)
				r = anole_err(x->err, -r, "out of memory");
			f->wend = o + n;
		}
		if (r < 0)
			return r;
		off = end;
	}
	return 0;
}

static bool is_compressed(const struct anole_inode *ino)
{
	return ino->layout == EROFS_INODE_COMPRESSED_FULL ||
	       ino->layout == EROFS_INODE_COMPRESSED_COMPACT;
}

/* How the pool finishes @f, which it creates: all there unless it has
 * xattrs (they need the reader, which stays on this thread). Owner and
 * mode only when creating it did not already give them: most files of a
 * root-owned tree then need neither chown nor chmod. */
static void plan_finish(const struct extractor *x, struct xfile *f)
{
	const struct anole_inode *ino = &f->ino;
	mode_t mode = ino->mode & 07777;
	f->cmode = 0600;
	if (ino->xattr_icount)
		return;
	f->finish = true;
	f->chown = x->as_root && x->opts->restore_owner && !has_new_owner(x, ino);
	f->chmod = true;
	if (mode_is_given(x, mode)) {
		f->cmode = mode;
		f->chmod = false;
	}
}

/* A regular file, written by the pool. A small one with one link the pool
 * also creates, and finishes when it can (plan_finish); else (a later
 * hard link must find it) it is created here and the pool owns its
 * descriptor. Its attributes, unless the pool set them, follow in
 * reap(). */
static int queue_file(struct extractor *x, struct xdir *dir, const char *name,
		      const struct anole_inode *ino)
{
	int fd = -1;
	if (ino->nlink > 1 || ino->size > SMALL_FILE) {
		fd = openat(dir->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return xerr(x, errno, "cannot create file");
	}
	struct xfile *f = calloc(1, sizeof(*f));
	if (!f) {
		if (fd >= 0)
			close(fd);
		return anole_err(x->err, ENOMEM, "out of memory");
	}
	*f = (struct xfile){.fd = fd, .dirfd = dir->fd, .ino = *ino, .rel = strdup(x->rel.buf),
			    .owner = dir, .made_here = fd >= 0};
	*x->files_tail = f;
	x->files_tail = &f->next;
	x->nfiles++;
	x->nopen += f->made_here;
	dir->refs++;
	if (!f->rel) {
		f->err = -ENOMEM; /* never queued: reap reports it */
		return anole_err(x->err, ENOMEM, "out of memory");
	}
	f->name = strrchr(f->rel, '/') ? strrchr(f->rel, '/') + 1 : f->rel;
	if (fd < 0)
		plan_finish(x, f);
	int r = fd >= 0 ? 0 : xpool_create(x->pool, f);
	if (r < 0)
		r = anole_err(x->err, -r, "out of memory");
	else
		r = is_compressed(ino) ? queue_extents(x, f) : queue_plain(x, f);
	if (r < 0)
		f->finish = false;
	if (xpool_seal(x->pool, f) < 0 && r >= 0)
		r = anole_err(x->err, ENOMEM, "out of memory");
	return r < 0 ? r : reap(x, false);
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
	struct link_seen *links = array_grow(x->links, &x->lcap, x->nlinks + 1, sizeof(*links), 64);
	if (!links)
		return anole_err(x->err, ENOMEM, "out of memory");
	x->links = links;
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

static int extract_dir(struct extractor *x, struct xdir *dir, int depth);

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
	return restore_created(x, dirfd, d->name, ino);
}

/* A directory: made, walked, and left for settle_dirs() to finish. */
static int extract_subdir(struct extractor *x, int dirfd, const struct dent *d,
			  const struct anole_inode *ino, int depth)
{
	mode_t mode = dir_create_mode(x, ino);
	if (mkdirat(dirfd, d->name, mode) < 0)
		return xerr(x, errno, "cannot create directory");
	int fd = openat(dirfd, d->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return xerr(x, errno, "cannot open directory");
	struct xdir *sub = calloc(1, sizeof(*sub));
	if (sub)
		*sub = (struct xdir){.fd = fd, .refs = 1, .ino = *ino, .rel = strdup(x->rel.buf),
				     .mode_set = mode == (ino->mode & 07777) && mode_is_given(x, mode)};
	if (!sub || !sub->rel) {
		close(fd);
		free(sub);
		return anole_err(x->err, ENOMEM, "out of memory");
	}
	sub->next = x->dirs;
	if (sub->next)
		sub->next->pprev = &sub->next;
	sub->pprev = &x->dirs;
	x->dirs = sub;
	x->ndirs++;
	int r = extract_dir(x, sub, depth + 1);
	dir_unref(x, sub);
	/* now, if it has no file left to wait for: a tree of only
	 * directories must not keep them all open */
	return r < 0 || sub->refs ? r : settle_dirs(x);
}

static int extract_entry(struct extractor *x, struct xdir *dir, const struct dent *d, int depth)
{
	int dirfd = dir->fd;
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
	case S_IFDIR:
		return extract_subdir(x, dirfd, d, &ino, depth);
	case S_IFREG:
		return queue_file(x, dir, d->name, &ino);
	case S_IFLNK:
		return extract_symlink(x, dirfd, d, &ino);
	default:
		if (mknodat(dirfd, d->name, (ino.mode & S_IFMT) | 0600, ino.rdev) < 0)
			return xerr(x, errno, "cannot create special file");
		return restore_created(x, dirfd, d->name, &ino);
	}
}

static int extract_dir(struct extractor *x, struct xdir *xd, int depth)
{
	const struct anole_inode *dir = &xd->ino;
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
		r = extract_entry(x, xd, d, depth);
		x->rel.len = plen;
		if (x->rel.buf)
			x->rel.buf[plen] = 0;
	}
	free(l.v);
	return r;
}

/* DIR, opened once: its parent as the caller names it, then DIR in it
 * without following a symlink. Everything after works from these. */
struct target {
	const char *path;
	char *buf;        /* a copy of path, cut into parent and base */
	const char *base; /* DIR's last component */
	int parent;
	int dir;      /* -1: DIR does not exist yet */
	struct stat st; /* DIR as found, put back after a failure */
};

static int target_open(const char *path, struct target *t, struct anole_error *err)
{
	*t = (struct target){.path = path, .parent = -1, .dir = -1};
	size_t n = strlen(path);
	char *p = t->buf = strdup(path);
	if (!p)
		return anole_err(err, ENOMEM, "out of memory");
	t->base = p;
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
	char *slash = strrchr(p, '/');
	const char *parent = ".";
	if (slash) {
		*slash = 0;
		parent = slash == p ? "/" : p;
		t->base = slash[1] ? slash + 1 : ".";
	}
	t->parent = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->parent < 0 && errno == EACCES) /* unreadable: nothing stale to list there */
		t->parent = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (t->parent < 0 || !*t->base)
		return anole_err(err, t->parent < 0 ? errno : ENOENT, "%s: %s", path,
				 strerror(t->parent < 0 ? errno : ENOENT));
	t->dir = openat(t->parent, t->base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (t->dir < 0 && errno == ENOENT)
		return 0;
	int e = errno;
	struct stat st;
	if (t->dir < 0 && !fstatat(t->parent, t->base, &st, AT_SYMLINK_NOFOLLOW) &&
	    S_ISLNK(st.st_mode))
		return anole_err(err, ELOOP, "%s: is a symbolic link; name the directory itself",
				 path);
	if (t->dir >= 0 && fstat(t->dir, &t->st) < 0) {
		e = errno;
		close(t->dir);
		t->dir = -1;
	}
	return t->dir < 0 ? anole_err(err, e, "%s: %s", path, strerror(e)) : 0;
}

static void target_close(struct target *t)
{
	if (t->dir >= 0)
		close(t->dir);
	if (t->parent >= 0)
		close(t->parent);
	free(t->buf);
}

/* An existing DIR must be empty, once what killed extracts left there is
 * gone. */
static int target_empty(const struct target *t, struct anole_error *err)
{
	struct strbuf names = {0};
	int r = dir_list(t->dir, &names);
	if (r < 0)
		r = anole_err(err, -r, "%s: %s", t->path, strerror(-r));
	else if (names.len)
		r = anole_err(err, ENOTEMPTY, "%s: target directory is not empty", t->path);
	strbuf_release(&names);
	return r;
}

/* After a failure, DIR's owner, mode and times as they were (making and
 * removing the work directory in it changed its times). */
static void target_put_back(const struct target *t)
{
	struct stat now;
	if (t->dir < 0 || fstat(t->dir, &now) < 0)
		return;
	int r = 0;
	if (now.st_uid != t->st.st_uid || now.st_gid != t->st.st_gid)
		r |= fchown(t->dir, t->st.st_uid, t->st.st_gid);
	if ((now.st_mode & 07777) != (t->st.st_mode & 07777))
		r |= fchmod(t->dir, t->st.st_mode & 07777);
	struct timespec ts[2] = {t->st.st_atim, t->st.st_mtim};
	r |= futimens(t->dir, ts);
	(void)r; /* best effort: the failure being reported is the first one */
}

/* A directory moved to another parent must be writable (its ".."
 * changes): without root, lend ours u+w for the move. */
static int move_entry(int from, const char *name, int to, const char *newname)
{
	if (!renameat2(from, name, to, newname, RENAME_NOREPLACE))
		return 0;
	if (errno != EACCES || geteuid() == 0)
		return -errno;
	_cleanup_close_ int fd = openat(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || fchmod(fd, (st.st_mode & 07777) | 0200) < 0)
		return -EACCES;
	int r = renameat2(from, name, to, newname, RENAME_NOREPLACE) < 0 ? -errno : 0;
	fchmod(fd, st.st_mode & 07777);
	return r;
}

/* Undo what a failed commit moved into DIR: each entry only while its
 * name still holds what we moved; back into the work directory while it
 * exists (@to), else removed in place. */
static void unmove(struct target *t, int to, const struct strbuf *names, const ino_t *inos,
		   size_t n)
{
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = names->buf + off + 1;
		off += strlen(name) + 2;
		struct stat st;
		if (fstatat(t->dir, name, &st, AT_SYMLINK_NOFOLLOW) || st.st_ino != inos[i])
			continue;
		if (to >= 0)
			move_entry(t->dir, name, to, name);
		else
			rm_tree_at(t->dir, name);
	}
}

/* DIR exists: the tree's top entries move into it, the work directory
 * goes (while DIR may still be written: the image's root may be 0555),
 * then DIR takes the image root's attributes. A failure undoes it. */
static int commit_into(struct extractor *x, struct target *t, struct workdir *w,
		       const struct anole_inode *root)
{
	struct strbuf names = {0};
	int r = dir_list(x->rootfd, &names);
	ino_t *inos = calloc(names.len + 1, sizeof(*inos));
	size_t moved = 0, off = 0;
	if (r >= 0 && !inos)
		r = -ENOMEM;
	while (r >= 0 && off < names.len) {
		const char *name = names.buf + off + 1;
		off += strlen(name) + 2;
		struct stat st;
		if (fstatat(x->rootfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			r = -errno;
		else if ((r = move_entry(x->rootfd, name, t->dir, name)) >= 0)
			inos[moved++] = st.st_ino;
	}
	if (r < 0) {
		unmove(t, x->rootfd, &names, inos, moved);
		r = anole_err(x->err, -r, "%s: %s", t->path, strerror(-r));
	} else {
		close(x->rootfd);
		x->rootfd = -1;
		workdir_remove(w);
		if ((r = restore_attrs(x, t->dir, false, root, 0)) < 0) {
			target_put_back(t); /* DIR writable again */
			unmove(t, -1, &names, inos, moved);
		}
	}
	free(inos);
	strbuf_release(&names);
	return r;
}

/* DIR does not exist: the tree takes its name (unless something else
 * took it meanwhile), then the image root's attributes. */
static int commit_new(struct extractor *x, struct target *t, struct workdir *w,
		      const struct anole_inode *root)
{
	int r = move_entry(w->fd, "root", t->parent, t->base);
	if (r < 0)
		return anole_err(x->err, -r, "%s: %s", t->path,
				 r == -EEXIST ? "appeared while extracting; left alone" : strerror(-r));
	struct stat st, now;
	r = restore_attrs(x, x->rootfd, false, root, 0);
	if (r < 0 && !fstat(x->rootfd, &st) &&
	    !fstatat(t->parent, t->base, &now, AT_SYMLINK_NOFOLLOW) && st.st_ino == now.st_ino &&
	    st.st_dev == now.st_dev)
		move_entry(t->parent, t->base, w->fd, "root");
	return r;
}

/* The process's umask, from the kernel's report (umask() would set it,
 * racing other threads); 0777 (nothing kept) if it cannot be read. */
static mode_t current_umask(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	unsigned int m;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Umask: %o", &m) == 1)
			return (mode_t)m & 0777;
	return 0777;
}

/* What new files under the root get (x->new_uid and the rest): the
 * directories extract makes below it inherit its set-group-ID bit and
 * group, and its default ACL, if any (which replaces the umask: then
 * every mode is set explicitly). */
static void learn_defaults(struct extractor *x)
{
	struct stat st;
	x->new_uid = geteuid();
	x->new_gid = getegid();
	x->umask = current_umask();
	if (fstat(x->rootfd, &st) < 0) {
		x->new_uid = (uid_t)-1; /* never matches: always chown, chmod */
		return;
	}
	if (st.st_mode & S_ISGID)
		x->new_gid = st.st_gid;
	x->final_mode = fgetxattr(x->rootfd, "system.posix_acl_default", NULL, 0) < 0 &&
			(errno == ENODATA || errno == ENOTSUP);
}

/* The work directory for the tree, and the tree's root in it. */
static int make_work(struct extractor *x, struct target *t, struct workdir *w)
{
	int home = t->dir >= 0 ? t->dir : t->parent;
	workdir_clean(home, WORK_PREFIX);
	int r = t->dir >= 0 ? target_empty(t, x->err) : 0;
	if (r >= 0 && (r = workdir_create(w, home, WORK_PREFIX)) < 0)
		return anole_err(x->err, -r, "%s: cannot make a work directory: %s", t->path,
				 strerror(-r));
	if (r >= 0 && (mkdirat(w->fd, "root", 0700) < 0 ||
		       (x->rootfd = openat(w->fd, "root",
					   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0))
		r = anole_err(x->err, errno, "%s: %s", t->path, strerror(errno));
	if (r >= 0)
		learn_defaults(x);
	return r;
}

static rlim_t fd_limit(void)
{
	struct rlimit rl;
	return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
}

/* Decoding threads: as asked, else one per core; at most what the
 * descriptor limit leaves room for (each may hold a file, a pipe and
 * its own descriptor of the image). */
static unsigned int extract_threads(const struct anole_extract_options *opts)
{
	long n = opts->threads ? (long)opts->threads : sysconf(_SC_NPROCESSORS_ONLN);
	rlim_t lim = fd_limit();
	long room = lim > 32 ? (long)MIN((lim - 32) / 5, (rlim_t)64) : 0;
	n = MIN(n, room);
	return n < 1 ? 1 : (unsigned int)n;
}

/* Descriptors the queue may hold: directories with files still queued,
 * files made here; a quarter each of what the limit leaves beside the
 * threads', so a low limit slows extract down rather than failing it. */
static void fd_budget(struct extractor *x, unsigned int threads)
{
	rlim_t lim = fd_limit(), used = 16 + 4 * (rlim_t)threads;
	rlim_t q = lim > used ? (lim - used) / 4 : 0;
	q = q < 4 ? 4 : q > 1024 ? 1024 : q;
	x->dirs_max = (size_t)q;
	x->open_max = MIN((size_t)q, (size_t)FILES_OPEN_MAX);
}

int anole_extract(struct anole_image *img, const char *dir,
		  const struct anole_extract_options *opts, struct anole_error *err)
{
	struct anole_extract_options defaults = {.restore_owner = true};
	struct extractor x = {.img = img, .err = err, .opts = opts ? opts : &defaults,
			      .rootfd = -1, .as_root = geteuid() == 0};
	x.files_tail = &x.files;
	unsigned int threads = extract_threads(x.opts);
	fd_budget(&x, threads);
	struct xdir top = {.fd = -1};
	struct anole_inode *root = &top.ino;
	struct target t;
	struct workdir w = {.parent = -1, .fd = -1};
	int r = target_open(dir, &t, err);
	if (r >= 0)
		r = make_work(&x, &t, &w);
	x.buf = malloc(1u << 20);
	strbuf_add(&x.rel, "", 0);
	if (r >= 0 && !x.buf)
		r = anole_err(err, ENOMEM, "out of memory");
	if (r >= 0 && (r = xpool_new(threads, &x.pool)) < 0)
		r = anole_err(err, -r, "cannot start decoding threads: %s", strerror(-r));
	if (r >= 0)
		r = anole_inode_read(img, anole_image_info(img)->root_nid, root);
	if (r >= 0) {
		top.fd = x.rootfd; /* its attributes: at the commit */
		r = extract_dir(&x, &top, 0);
	}
	if (r >= 0)
		r = reap(&x, true);
	xpool_free(x.pool); /* after a failure: what is queued still runs, then is dropped */
	while (x.files) {
		struct xfile *f = x.files;
		x.files = f->next;
		file_free(f);
	}
	dirs_free(x.dirs); /* after a failure */
	dirs_free(x.ready);
	if (r >= 0)
		r = t.dir >= 0 ? commit_into(&x, &t, &w, root) : commit_new(&x, &t, &w, root);
	if (r < 0 && !err->code)
		*err = *anole_image_error(img);
	if (x.rootfd >= 0)
		close(x.rootfd);
	workdir_remove(&w);
	if (r < 0)
		target_put_back(&t); /* the work directory changed its times */
	target_close(&t);
	for (size_t i = 0; i < x.nlinks; i++)
		free(x.links[i].relpath);
	free(x.links);
	free(x.buf);
	strbuf_release(&x.rel);
	return r;
}
