/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tree removal and private work directories through directory file
 * descriptors (see safefs.h). The rule everywhere: a name is looked up
 * only in a directory we hold open, with O_NOFOLLOW, and every later step
 * on what it named goes through the descriptor we got.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "util/safefs.h"
#include "util/util.h"

#define RM_MAX_DEPTH 65536

void fd_path(int fd, char buf[static 32])
{
	snprintf(buf, 32, "/proc/self/fd/%d", fd);
}

/* The mount @fd is on: statx's mount id, unique per mount; else (a kernel
 * before 5.8) the device, which tells file systems apart but not two
 * mounts of one. */
static int mount_of(int fd, uint64_t *id)
{
	struct statx stx;
	*id = 0;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (stx.stx_mask & STATX_MNT_ID)
		*id = stx.stx_mnt_id;
	else
		*id = (1ull << 63) | ((uint64_t)stx.stx_dev_major << 32) | stx.stx_dev_minor;
	return 0;
}

int dir_list(int fd, struct strbuf *out)
{
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		return -e;
	}
	int r = 0;
	struct dirent *e;
	while (r >= 0 && (errno = 0, e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char type = (char)e->d_type;
		if (strbuf_add(out, &type, 1) < 0 ||
		    strbuf_add(out, e->d_name, strlen(e->d_name) + 1) < 0)
			r = -ENOMEM;
	}
	if (r >= 0 && errno)
		r = -errno;
	closedir(d);
	return r;
}

/* The directory @name in @dirfd, never through a symlink. Without root,
 * one of ours we may not read (mode 0000, say) gets u+rwx first, through
 * the inode we opened rather than the name. */
static int open_subdir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	if (errno != EACCES || geteuid() == 0)
		return -errno;
	_cleanup_close_ int pfd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	char proc[32];
	if (pfd < 0 || fstat(pfd, &st) < 0)
		return -errno;
	if (st.st_uid != geteuid())
		return -EACCES;
	fd_path(pfd, proc);
	if (chmod(proc, (st.st_mode & 07777) | 0700) < 0)
		return -errno;
	fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd >= 0 ? fd : -errno;
}

/* Without root, a directory of ours that we may not write or search
 * cannot be emptied: grant ourselves that, as it is going anyway. */
static void make_removable(int fd)
{
	struct stat st;
	uid_t me = geteuid();
	if (me && !fstat(fd, &st) && st.st_uid == me && (st.st_mode & 0700) != 0700)
		fchmod(fd, (st.st_mode & 07777) | 0700);
}

/* One entry of a directory being emptied, whatever it turns out to be:
 * removed unless it is a directory; a directory on our mount is opened
 * (*child) to be walked into. */
static int rm_or_open(int dirfd, const char *name, unsigned char type, uint64_t mnt, int *child)
{
	*child = -1;
	if (type != DT_DIR && type != DT_UNKNOWN) {
		if (!unlinkat(dirfd, name, 0) || errno == ENOENT)
			return 0;
		if (errno != EISDIR) /* EISDIR: a directory now, swapped in */
			return -errno;
	}
	int fd = open_subdir(dirfd, name);
	if (fd == -ENOTDIR || fd == -ELOOP) /* not a directory (now): the entry itself */
		return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	uint64_t here;
	int r = mount_of(fd, &here);
	if (r >= 0 && here != mnt)
		r = -EXDEV; /* a mount point: what is mounted there is not ours to remove */
	if (r < 0)
		close(fd);
	else
		*child = fd;
	return r;
}

/* A directory we emptied goes; if it is no longer a directory (swapped
 * for a link, say), the entry goes all the same, unfollowed. */
static int rm_emptied(int dirfd, const char *name)
{
	if (!unlinkat(dirfd, name, AT_REMOVEDIR) || errno == ENOENT)
		return 0;
	if (errno == ENOTDIR && (!unlinkat(dirfd, name, 0) || errno == ENOENT))
		return 0;
	return -errno;
}

/* A directory of the walk: its entries, read whole, and which it is. */
struct level {
	struct strbuf names;
	size_t next;    /* offset of the next entry */
	const char *in; /* the entry being walked into */
	dev_t dev;
	ino_t ino;
};

static int level_enter(struct level *l, int fd)
{
	struct stat st;
	*l = (struct level){0};
	make_removable(fd);
	if (fstat(fd, &st) < 0)
		return -errno;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return dir_list(fd, &l->names);
}

/* Depth-first, one directory open at a time, so that depth costs memory
 * and not descriptors (a tree as deep as an image may make is far deeper
 * than RLIMIT_NOFILE). Going back up opens "..", which must be the
 * directory we came from: if someone moved ours away meanwhile, the walk
 * stops there rather than work in a stranger's directory. */
static int rm_contents(int top, uint64_t mnt)
{
	struct level *lv = calloc(16, sizeof(*lv));
	size_t n = 1, cap = 16;
	int fd = fcntl(top, F_DUPFD_CLOEXEC, 0);
	if (!lv || fd < 0) {
		int e = fd < 0 ? errno : ENOMEM;
		free(lv);
		if (fd >= 0)
			close(fd);
		return -e;
	}
	int first = level_enter(&lv[0], fd);
	while (n) {
		struct level *l = &lv[n - 1];
		if (l->next < l->names.len) {
			unsigned char type = (unsigned char)l->names.buf[l->next];
			const char *name = l->names.buf + l->next + 1;
			l->next += strlen(name) + 2;
			int child, r = rm_or_open(fd, name, type, mnt, &child);
			if (child >= 0 && n == cap) {
				struct level *m = n < RM_MAX_DEPTH ? realloc(lv, 2 * cap * sizeof(*m)) : NULL;
				r = m ? 0 : n < RM_MAX_DEPTH ? -ENOMEM : -ELOOP;
				lv = m ? m : lv;
				cap = m ? 2 * cap : cap;
			}
			if (child >= 0 && r >= 0) {
				lv[n - 1].in = name;
				close(fd);
				fd = child;
				r = level_enter(&lv[n++], fd);
			} else if (child >= 0) {
				close(child);
			}
			if (r < 0 && first >= 0)
				first = r;
			continue;
		}
		strbuf_release(&l->names);
		if (--n == 0)
			break;
		int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct stat st;
		if (up < 0 || fstat(up, &st) < 0 || st.st_dev != lv[n - 1].dev ||
		    st.st_ino != lv[n - 1].ino) {
			if (up >= 0)
				close(up);
			first = first < 0 ? first : -ESTALE;
			break;
		}
		close(fd);
		fd = up;
		int r = rm_emptied(fd, lv[n - 1].in);
		if (r < 0 && first >= 0)
			first = r;
	}
	for (size_t i = 0; i < n; i++)
		strbuf_release(&lv[i].names);
	free(lv);
	close(fd);
	return first;
}

int rm_tree_contents(int fd)
{
	uint64_t mnt;
	int r = mount_of(fd, &mnt);
	return r < 0 ? r : rm_contents(fd, mnt);
}

int rm_tree_at(int dirfd, const char *name)
{
	uint64_t mnt;
	int child = -1, r = mount_of(dirfd, &mnt);
	if (r >= 0)
		r = rm_or_open(dirfd, name, DT_UNKNOWN, mnt, &child);
	if (r < 0 || child < 0)
		return r;
	r = rm_contents(child, mnt);
	close(child);
	int e = rm_emptied(dirfd, name);
	return r < 0 ? r : e;
}

/* Whether @name in @dirfd is still the inode @fd holds. */
static bool same_entry(int dirfd, const char *name, int fd)
{
	struct stat a, b;
	return !fstat(fd, &a) && !fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* @name in @parent as a work directory of ours: a directory, not a link,
 * owned by this user, mode 0700, on @parent's mount. Only this user (or
 * root) can make one, and nobody else can put anything inside. */
static int open_own(int parent, const char *name)
{
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	uint64_t m1, m2;
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700 ||
	    mount_of(fd, &m1) < 0 || mount_of(parent, &m2) < 0 || m1 != m2) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

int workdir_create(struct workdir *w, int parent, const char *prefix)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	*w = (struct workdir){.parent = -1, .fd = -1};
	size_t n = strlen(prefix);
	if (n + 7 > sizeof(w->name))
		return -ENAMETOOLONG;
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char rnd[6];
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return -EIO;
		memcpy(w->name, prefix, n);
		for (size_t i = 0; i < sizeof(rnd); i++)
			w->name[n + i] = chars[rnd[i] % (sizeof(chars) - 1)];
		w->name[n + sizeof(rnd)] = 0;
		if (mkdirat(parent, w->name, 0700) < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		int fd = open_own(parent, w->name);
		if (fd == -EPERM) { /* a umask without u+rwx */
			_cleanup_close_ int p = openat(parent, w->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			char proc[32];
			fd_path(p, proc);
			if (p >= 0 && !chmod(proc, 0700))
				fd = open_own(parent, w->name);
		}
		if (fd < 0 && fd != -ENOENT)
			return fd;
		/* a cleaner that found it before it was locked may have removed
		 * it: then it is gone from its name, and we make another */
		if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (fd >= 0 && same_entry(parent, w->name, fd)) {
			w->fd = fd;
			w->parent = fcntl(parent, F_DUPFD_CLOEXEC, 0);
			if (w->parent >= 0)
				return 0;
			int e = errno;
			workdir_remove(w);
			return -e;
		}
		if (fd >= 0)
			close(fd);
	}
	return -EEXIST;
}

int workdir_remove(struct workdir *w)
{
	int r = 0;
	if (w->fd >= 0) {
		r = rm_tree_contents(w->fd);
		/* by name, so only while the name is still ours; the lock is
		 * held until it is gone */
		if (r >= 0 && same_entry(w->parent, w->name, w->fd) &&
		    unlinkat(w->parent, w->name, AT_REMOVEDIR) < 0)
			r = -errno;
		close(w->fd);
	}
	if (w->parent >= 0)
		close(w->parent);
	*w = (struct workdir){.parent = -1, .fd = -1};
	return r;
}

/* NAME.lock beside a work directory, where converts made before work
 * directories were locked themselves kept their lock: -EBUSY while one
 * holds it, else its descriptor (locked by us now) or -ENOENT. A lock file
 * not ours (a regular file of this user) is ignored. */
static int legacy_lock(int parent, const char *lock)
{
	int fd = openat(parent, lock, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return -ENOENT;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -EBUSY;
	}
	return fd;
}

void workdir_clean(int parent, const char *prefix)
{
	struct strbuf names = {0};
	size_t plen = strlen(prefix);
	if (dir_list(parent, &names) < 0)
		names.len = 0;
	for (size_t off = 0; off < names.len;) {
		const char *name = names.buf + off + 1;
		size_t n = strlen(name);
		off += n + 2;
		if (strncmp(name, prefix, plen) || (n > 5 && !strcmp(name + n - 5, ".lock")))
			continue;
		_cleanup_close_ int fd = open_own(parent, name);
		if (fd < 0)
			continue;
		char lockname[NAME_MAX + 8];
		snprintf(lockname, sizeof(lockname), "%s.lock", name);
		_cleanup_close_ int lock = legacy_lock(parent, lockname);
		if (lock == -EBUSY || flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue; /* in use */
		if (rm_tree_contents(fd) >= 0 && same_entry(parent, name, fd))
			unlinkat(parent, name, AT_REMOVEDIR);
		if (lock >= 0 && same_entry(parent, lockname, lock))
			unlinkat(parent, lockname, 0);
	}
	strbuf_release(&names);
}
