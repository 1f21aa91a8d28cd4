/* SPDX-License-Identifier: Apache-2.0 */
/*
 * safefs: tree removal through directory descriptors and private work
 * directories. The races are made deterministic with the linker's --wrap
 * (tests/unit/meson.build): the hooks below run inside the walk, at the
 * step where another user would swap a directory for a symlink to a
 * victim tree, and the victim must come through untouched.
 */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/safefs.h"

/* ---- hooks: swap BASE/t/a for a symlink to BASE/victim ------------------ */

static char base[256];
static const char *swap_on;   /* the name whose openat/unlinkat triggers it */
static bool swap_on_unlink;   /* at its unlinkat, else at its openat */
static int swaps;

static void swap_now(void)
{
	char a[300], moved[300], victim[300];
	snprintf(a, sizeof(a), "%s/t/a", base);
	snprintf(moved, sizeof(moved), "%s/t/a.moved", base);
	snprintf(victim, sizeof(victim), "%s/victim", base);
	swap_on = NULL;
	assert_int_equal(rename(a, moved), 0);
	assert_int_equal(symlink(victim, a), 0);
	swaps++;
}

int __real_openat64(int dirfd, const char *path, int flags, ...);
int __real_openat(int dirfd, const char *path, int flags, ...);
int __real_unlinkat(int dirfd, const char *path, int flags);

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

/* openat, whichever name the library calls it by */
#define WRAP_OPENAT(name)                                                                          \
	int __wrap_##name(int dirfd, const char *path, int flags, ...);                            \
	int __wrap_##name(int dirfd, const char *path, int flags, ...)                             \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, flags);                                                               \
		mode_t mode = mode_arg(flags, ap);                                                 \
		va_end(ap);                                                                        \
		if (swap_on && !swap_on_unlink && !strcmp(path, swap_on))                         \
			swap_now();                                                                \
		return __real_##name(dirfd, path, flags, mode);                                    \
	}
WRAP_OPENAT(openat64)
WRAP_OPENAT(openat)

int __wrap_unlinkat(int dirfd, const char *path, int flags);
int __wrap_unlinkat(int dirfd, const char *path, int flags)
{
	int r = __real_unlinkat(dirfd, path, flags);
	if (swap_on && swap_on_unlink && !strcmp(path, swap_on))
		swap_now();
	return r;
}

/* ---- helpers ------------------------------------------------------------ */

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(base, sizeof(base), "%s/anole-safefs.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(base));
	swap_on = NULL;
	swaps = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char path[300];
	snprintf(path, sizeof(path), "%s/t/m", base);
	umount2(path, MNT_DETACH); /* the mount test's, if it failed early */
	return rm_tree_at(AT_FDCWD, base) == 0 ? 0 : -1;
}

static char *at(const char *rel)
{
	static char path[8][4400];
	static int slot;
	slot = (slot + 1) % 8;
	snprintf(path[slot], sizeof(path[slot]), "%s/%s", base, rel);
	return path[slot];
}

static void put(const char *rel, const char *text)
{
	FILE *f = fopen(at(rel), "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void mkd(const char *rel)
{
	assert_int_equal(mkdir(at(rel), 0755), 0);
}

static bool exists(const char *rel)
{
	struct stat st;
	return lstat(at(rel), &st) == 0;
}

static size_t entries(const char *rel)
{
	DIR *d = opendir(at(rel));
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static int open_dir(const char *rel)
{
	int fd = open(at(rel), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

/* the victim: what a swapped symlink points at, with the tree's names */
static void make_victim(void)
{
	mkd("victim");
	put("victim/x", "precious");
	put("victim/y", "precious");
	put("victim/z", "precious");
}

static void victim_intact(void)
{
	assert_true(exists("victim/x"));
	assert_true(exists("victim/y"));
	assert_true(exists("victim/z"));
}

/* ---- removal ------------------------------------------------------------ */

static void removes_all_follows_nothing(void **state)
{
	(void)state;
	make_victim();
	mkd("t");
	put("t/f", "f");
	mkd("t/d");
	put("t/d/g", "g");
	mkd("t/d/e");
	assert_int_equal(symlink(at("victim"), at("t/ldir")), 0);
	assert_int_equal(symlink(at("victim/x"), at("t/lfile")), 0);
	assert_int_equal(mkfifo(at("t/fifo"), 0600), 0);
	/* deeper than a path would comfortably go */
	char rel[4096] = "t/deep";
	mkd(rel);
	for (int i = 0; i < 300; i++) {
		strcat(rel, "/dd");
		mkd(rel);
	}
	put("t/deep/dd/f", "f");
	int fd = open_dir("t");
	/* depth costs no descriptors: 300 levels with 16 of them */
	struct rlimit was, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
	low = was;
	low.rlim_cur = 16;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int r = rm_tree_contents(fd);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
	assert_int_equal(r, 0);
	close(fd);
	assert_int_equal(entries("t"), 0);
	victim_intact();
	/* a symlink named directly is removed, not followed */
	assert_int_equal(symlink(at("victim"), at("link")), 0);
	fd = open_dir("");
	assert_int_equal(rm_tree_at(fd, "link"), 0);
	assert_int_equal(rm_tree_at(fd, "t"), 0);
	assert_int_equal(rm_tree_at(fd, "nosuch"), 0);
	close(fd);
	assert_false(exists("link"));
	assert_false(exists("t"));
	victim_intact();
}

/* BASE/t/a/{x,y,z} removed while the hook swaps t/a for a symlink to the
 * victim at @name's openat (or unlinkat): the victim stays whole, and the
 * symlink itself goes with the tree. */
static void remove_with_swap(const char *name, bool at_unlink)
{
	make_victim();
	mkd("t");
	mkd("t/a");
	put("t/a/x", "x");
	put("t/a/y", "y");
	put("t/a/z", "z");
	swap_on = name;
	swap_on_unlink = at_unlink;
	int fd = open_dir("t");
	assert_int_equal(rm_tree_contents(fd), 0);
	close(fd);
	assert_int_equal(swaps, 1);
	victim_intact();
	assert_false(exists("t/a"));
}

/* Just before the directory is opened: the step at which a walk by path
 * would follow it. */
static void swapped_before_open(void **state)
{
	(void)state;
	remove_with_swap("a", false);
}

/* After the walk went in: the rest of it stays in the directory it
 * opened, wherever that now is. */
static void swapped_mid_walk(void **state)
{
	(void)state;
	remove_with_swap("x", true);
	assert_int_equal(entries("t/a.moved"), 0);
}

/* A mount below the tree is not entered, and says so. */
static void stays_on_its_mount(void **state)
{
	(void)state;
	mkd("t");
	mkd("t/m");
	put("t/f", "f");
	if (geteuid() != 0 || mount("tmpfs", at("t/m"), "tmpfs", 0, "size=1m") < 0)
		skip();
	put("t/m/kept", "kept");
	int fd = open_dir("t");
	assert_int_equal(rm_tree_contents(fd), -EXDEV);
	close(fd);
	assert_true(exists("t/m/kept"));
	assert_false(exists("t/f"));
	assert_int_equal(umount2(at("t/m"), 0), 0);
}

/* Without root: directories of ours that we may not write or search
 * (as an unprivileged extract restores them) are removed all the same. */
static void removes_own_readonly_dirs(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip(); /* needs a second user */
	mkd("t");
	assert_int_equal(chmod(base, 0755), 0);
	assert_int_equal(chown(at("t"), 65534, 65534), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		int ok = !mkdir(at("t/r"), 0755) && !mkdir(at("t/r/s"), 0755) &&
			 !mkdir(at("t/r/s/n"), 0755) && !chmod(at("t/r/s/n"), 0) &&
			 !chmod(at("t/r/s"), 0555) && !chmod(at("t/r"), 0500);
		int fd = open(at("t"), O_RDONLY | O_DIRECTORY);
		_exit(ok && fd >= 0 && rm_tree_contents(fd) == 0 ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(entries("t"), 0);
}

/* ---- work directories --------------------------------------------------- */

static void workdir_is_private_and_locked(void **state)
{
	(void)state;
	int pfd = open_dir("");
	struct workdir w;
	assert_int_equal(workdir_create(&w, pfd, "anole-test."), 0);
	assert_int_equal(strncmp(w.name, "anole-test.", 11), 0);
	assert_int_equal(strlen(w.name), 17);
	struct stat st;
	assert_int_equal(fstatat(pfd, w.name, &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, geteuid());
	int other = openat(pfd, w.name, O_RDONLY | O_DIRECTORY);
	assert_true(other >= 0);
	assert_int_equal(flock(other, LOCK_EX | LOCK_NB), -1); /* held */
	close(other);
	assert_int_equal(mkdirat(w.fd, "sub", 0755), 0);
	char name[64];
	strcpy(name, w.name);
	assert_int_equal(workdir_remove(&w), 0);
	assert_int_equal(w.fd, -1);
	assert_false(exists(name));
	assert_int_equal(workdir_remove(&w), 0); /* twice: nothing */
	close(pfd);
}

/* An abandoned one (its lock free) goes; everything else stays. */
static void clean_removes_only_abandoned_own(void **state)
{
	(void)state;
	int pfd = open_dir("");
	struct workdir live, dead;
	assert_int_equal(workdir_create(&live, pfd, "wd."), 0);
	assert_int_equal(workdir_create(&dead, pfd, "wd."), 0);
	char dead_name[64];
	strcpy(dead_name, dead.name);
	assert_int_equal(mkdirat(dead.fd, "sub", 0700), 0);
	close(dead.fd); /* killed: its lock goes with its descriptors */
	close(dead.parent);
	make_victim();
	/* look-alikes: not a directory of ours, or not 0700 */
	mkd("wd.open");
	put("wd.open/kept", "kept");
	assert_int_equal(symlink(at("victim"), at("wd.link")), 0);
	bool as_root = geteuid() == 0;
	if (as_root) { /* another user's */
		mkd("wd.other");
		assert_int_equal(chmod(at("wd.other"), 0700), 0);
		put("wd.other/kept", "kept");
		assert_int_equal(chown(at("wd.other"), 65534, 65534), 0);
	}
	/* a convert of before: its NAME.lock held, or free */
	mkd("wd.old1");
	mkd("wd.old2");
	assert_int_equal(chmod(at("wd.old1"), 0700), 0);
	assert_int_equal(chmod(at("wd.old2"), 0700), 0);
	put("wd.old1/kept", "kept");
	put("wd.old1.lock", "");
	put("wd.old2.lock", "");
	int held = open(at("wd.old1.lock"), O_RDONLY);
	assert_int_equal(flock(held, LOCK_EX), 0);

	workdir_clean(pfd, "wd.");
	assert_false(exists(dead_name));
	assert_true(exists(live.name));
	assert_true(exists("wd.open/kept"));
	assert_true(exists("wd.link"));
	victim_intact();
	if (as_root)
		assert_true(exists("wd.other/kept"));
	assert_true(exists("wd.old1/kept"));
	assert_true(exists("wd.old1.lock"));
	assert_false(exists("wd.old2"));
	assert_false(exists("wd.old2.lock"));
	close(held);
	assert_int_equal(workdir_remove(&live), 0);
	close(pfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(removes_all_follows_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(swapped_before_open, setup, teardown),
		cmocka_unit_test_setup_teardown(swapped_mid_walk, setup, teardown),
		cmocka_unit_test_setup_teardown(stays_on_its_mount, setup, teardown),
		cmocka_unit_test_setup_teardown(removes_own_readonly_dirs, setup, teardown),
		cmocka_unit_test_setup_teardown(workdir_is_private_and_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(clean_removes_only_abandoned_own, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
