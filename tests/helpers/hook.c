/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD hooks for the shell tests: what another local user (or a
 * kill) would do, at a chosen step of a real anole process, every time.
 *
 *   ANOLE_HOOK_SWAP=PATH:TARGET  right after the first open, openat, mkdir
 *                                or mkdirat that names PATH's last
 *                                component: PATH, if there, is renamed
 *                                PATH.moved, and PATH becomes a symlink to
 *                                TARGET (a user who owns PATH's parent)
 *   ANOLE_HOOK_KILL=NAME         SIGKILL right after an entry named NAME
 *                                is created (open with O_CREAT, mkdir)
 */
/* each of open and open64 defined as itself, not one redirected to the other */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool swapped;

static const char *last(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* After a call that named @path: swap if it names the watched one, die
 * if it created the watched name. */
static void after(const char *path, bool created)
{
	const char *kill_at = getenv("ANOLE_HOOK_KILL");
	if (created && kill_at && !strcmp(last(path), kill_at))
		raise(SIGKILL);
	const char *spec = getenv("ANOLE_HOOK_SWAP");
	const char *colon = spec ? strchr(spec, ':') : NULL;
	if (swapped || !colon)
		return;
	char watched[4096], moved[4200];
	snprintf(watched, sizeof(watched), "%.*s", (int)(colon - spec), spec);
	if (strcmp(last(path), last(watched)))
		return;
	swapped = true;
	snprintf(moved, sizeof(moved), "%s.moved", watched);
	struct stat st;
	if (!lstat(watched, &st) && rename(watched, moved) < 0)
		perror("hook: rename");
	if (symlink(colon + 1, watched) < 0)
		perror("hook: symlink");
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static mode_t mode_of(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

#define OPEN_HOOK(name, ...)                                                                       \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, flags);                                                               \
		mode_t mode = mode_of(flags, ap);                                                  \
		va_end(ap);                                                                        \
		int fd = NEXT(name)(__VA_ARGS__, flags, mode);                                     \
		int e = errno;                                                                     \
		after(path, fd >= 0 && (flags & O_CREAT));                                         \
		errno = e;                                                                         \
		return fd;                                                                         \
	}

int open(const char *path, int flags, ...) OPEN_HOOK(open, path)
int open64(const char *path, int flags, ...) OPEN_HOOK(open64, path)
int openat(int dirfd, const char *path, int flags, ...) OPEN_HOOK(openat, dirfd, path)
int openat64(int dirfd, const char *path, int flags, ...) OPEN_HOOK(openat64, dirfd, path)

int mkdir(const char *path, mode_t mode)
{
	int r = NEXT(mkdir)(path, mode), e = errno;
	after(path, r == 0);
	errno = e;
	return r;
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	int r = NEXT(mkdirat)(dirfd, path, mode), e = errno;
	after(path, r == 0);
	errno = e;
	return r;
}
