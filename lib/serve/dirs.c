/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's two directories, runtime (socket, pid files, log, locks)
 * and cache (blobs, partial files, ranges maps). Whoever can write in
 * either can make the daemon write through a symlink of theirs, or serve
 * bytes of their choosing to a lazy mount. So both must be ours alone:
 * owned by us, writable by nobody else, under parents that only we or
 * root can change (a sticky /tmp is fine: nobody can rename our entry
 * there). Nothing below a private directory is reachable by other users,
 * so its contents need no such check; the files in it are opened with
 * O_NOFOLLOW all the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve.h"
#include "util/util.h"

/* One component of the resolved path: @last is the directory itself. */
static int check_one(const char *path, const char *dir, bool last, struct anole_error *err)
{
	uid_t me = geteuid();
	struct stat st;
	if (lstat(path, &st) < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return anole_err(err, ENOTDIR, "%s: not a directory (it changed while checked)",
				 path);
	if (st.st_uid != me && (last || st.st_uid != 0))
		return anole_err(err, EACCES,
				 "%s: Permission denied: owned by uid %u, not by you (uid %u); "
				 "refusing it",
				 path, (unsigned)st.st_uid, (unsigned)me);
	bool others_write = st.st_mode & (S_IWGRP | S_IWOTH);
	if (last && others_write)
		return anole_err(err, EACCES,
				 "%s: mode %04o lets other users write in it; refusing it (chmod 700 "
				 "it, or remove it)",
				 path, (unsigned)(st.st_mode & 07777));
	if (!last && others_write && !(st.st_mode & S_ISVTX))
		return anole_err(err, EACCES,
				 "%s: mode %04o lets other users replace what is in it; refusing %s "
				 "below it",
				 path, (unsigned)(st.st_mode & 07777), dir);
	/* readable by others but ours alone to write: nothing can have been
	 * planted, so making it private is safe */
	if (last && (st.st_mode & 077) && chmod(path, 0700) < 0)
		return anole_err(err, errno, "%s: chmod: %s", path, strerror(errno));
	return 0;
}

int serve_dir_check(const char *dir, bool create, struct anole_error *err)
{
	if (!*dir || *dir != '/')
		return anole_err(err, EINVAL, "%s: not an absolute path", dir);
	int r = create ? mkdir_parents(dir, 0700) : 0;
	if (r < 0)
		return anole_err(err, -r, "%s: %s", dir, strerror(-r));
	_cleanup_free_ char *real = realpath(dir, NULL);
	if (!real)
		return anole_err(err, errno, "%s: %s", dir, strerror(errno));
	/* every parent from /, then the directory itself */
	for (char *s = real;; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;
		*s = 0;
		r = check_one(s == real ? "/" : real, dir, !c, err);
		*s = c;
		if (r < 0 || !c)
			return r;
	}
}

int serve_paths_check(const struct serve_paths *p, bool create, struct anole_error *err)
{
	int r = serve_paths_whole(p, err);
	if (r >= 0)
		r = serve_dir_check(p->runtime, create, err);
	return r < 0 ? r : serve_dir_check(p->cache, create, err);
}

int serve_open_own(const char *path, int flags, mode_t mode, struct anole_error *err)
{
	int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, mode);
	struct stat st;
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return anole_err(err, EACCES, "%s: not a file of ours; refusing it", path);
	}
	return fd;
}
