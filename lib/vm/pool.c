/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cgroups of anole run --vm (docs/DESIGN-vm.md): a run's QEMU and
 * virtiofsd go into a cgroup of their own, with a memory limit, taken from
 * a pool created before (anole vm pool N, and every run's return), so that
 * a start makes no cgroup. cgroup v2 where its memory controller is
 * enabled at the root, else v1's memory hierarchy (with pids' beside it),
 * else none.
 *
 * Ownership is an flock on the cgroup's directory, held by the run: the
 * kernel drops it when the run dies however it dies, so a directory whose
 * lock can be taken and which holds no process is free, whatever its name.
 * On v1 a taken one is renamed free.N -> run.PID (v2 refuses to rename a
 * cgroup: there it keeps its name), and a watcher process renames it back
 * if anole is killed before it could.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"
#include "vm/pool.h"

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define POOL_KEEP 64 /* free cgroups a run's end keeps; more are removed */
/* QEMU: main, RCU, vCPU and up to 64 I/O workers; virtiofsd: 1 + 64 per
 * volume, 8 volumes at most */
#define PIDS_MAX "1024"
#define RECLAIM_SECONDS 30 /* the watcher's wait for a killed run's processes */

/* The hierarchies: v2's root, or v1's memory and pids roots. */
struct hier {
	enum vm_cgroup_kind kind;
	char mem[64], pids[64]; /* roots; pids "" when none */
};

static bool is_fs(const char *path, long magic)
{
	struct statfs s;
	return statfs(path, &s) == 0 && s.f_type == magic;
}

static ssize_t read_small(int dirfd, const char *name, char *buf, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = '\0';
	return n;
}

static int write_str(int dirfd, const char *name, const char *s)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = write_full(fd, s, strlen(s));
	close(fd);
	return r;
}

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* v2 where the root delegates its memory controller (a pure v2 mount, or
 * the unified one of a hybrid), else v1's memory hierarchy. */
static enum vm_cgroup_kind detect(struct hier *h, const char **why)
{
	static const char *const v2[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
	char buf[512];
	*h = (struct hier){.kind = VM_CG_NONE};
	for (size_t i = 0; i < ARRAY_SIZE(v2); i++) {
		if (!is_fs(v2[i], CGROUP2_SUPER_MAGIC))
			continue;
		char path[96];
		snprintf(path, sizeof(path), "%s/cgroup.subtree_control", v2[i]);
		if (read_small(AT_FDCWD, path, buf, sizeof(buf)) < 0 || !has_word(buf, "memory"))
			continue;
		h->kind = VM_CG_V2;
		snprintf(h->mem, sizeof(h->mem), "%s", v2[i]);
		if (has_word(buf, "pids"))
			snprintf(h->pids, sizeof(h->pids), "%s", v2[i]);
		return h->kind;
	}
	if (is_fs("/sys/fs/cgroup/memory", CGROUP_SUPER_MAGIC) &&
	    !access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK)) {
		h->kind = VM_CG_V1;
		snprintf(h->mem, sizeof(h->mem), "/sys/fs/cgroup/memory");
		if (is_fs("/sys/fs/cgroup/pids", CGROUP_SUPER_MAGIC))
			snprintf(h->pids, sizeof(h->pids), "/sys/fs/cgroup/pids");
		return h->kind;
	}
	*why = "no memory controller: neither cgroup v2's at the root nor v1's";
	return VM_CG_NONE;
}

/* ROOT/anole-vm, made if missing; its fd, or -errno. @v2: -1 on v1,
 * else whether the children get pids too. */
static int open_base(const char *root, int v2)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/" VM_CGROUP_DIR, root);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* v2: the children get the controllers (no process lives here) */
	if (v2 >= 0) {
		int r = write_str(fd, "cgroup.subtree_control", v2 ? "+memory +pids" : "+memory");
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	return fd;
}

static bool is_empty(int dirfd)
{
	char buf[16];
	return read_small(dirfd, "cgroup.procs", buf, sizeof(buf)) == 0;
}

/* A DIR of @base from its first entry: a fresh open, as a dup would share
 * (and start at) the offset of an earlier readdir. */
static DIR *open_dir(int base)
{
	int fd = openat(base, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	return d;
}

static size_t count_free(int base)
{
	DIR *d = open_dir(base);
	size_t n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		n += !strncmp(e->d_name, "free.", 5);
	closedir(d);
	return n;
}

/* @name under @base locked by us and holding no process: still the same
 * directory under that name (a run may have renamed it between our
 * readdir and our lock). Its fd, or -1. */
static int lock_free(int base, const char *name)
{
	int fd = openat(base, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat a, b;
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &a) < 0 ||
	    fstatat(base, name, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_ino != b.st_ino ||
	    !is_empty(fd)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A locked, empty cgroup back to the pool: renamed free.N (v1), or
 * removed when POOL_KEEP are free. The pids twin follows. */
static void give_back(int mem, int pids, const char *name, bool v2)
{
	if (count_free(mem) >= POOL_KEEP + (v2 ? 1 : 0)) {
		unlinkat(mem, name, AT_REMOVEDIR);
		if (pids >= 0)
			unlinkat(pids, name, AT_REMOVEDIR);
		return;
	}
	if (v2)
		return; /* it kept its name free.N */
	char to[32];
	for (unsigned n = 0; n < 100000; n++) {
		snprintf(to, sizeof(to), "free.%u", n);
		if (renameat(mem, name, mem, to) == 0)
			break;
		if (errno != EEXIST && errno != ENOTEMPTY)
			return;
	}
	/* (a twin that cannot follow goes: a take makes it again) */
	if (pids >= 0 && renameat(pids, name, pids, to) < 0)
		unlinkat(pids, name, AT_REMOVEDIR);
}

/* The pids twin of @name, renamed from @was or made; its fd or -1. */
static int pids_twin(int pids, const char *was, const char *name)
{
	if (pids < 0)
		return -1;
	/* (mkdir fails harmlessly where the rename or an earlier run made it) */
	if (!strcmp(was, name) || renameat(pids, was, pids, name) < 0)
		mkdirat(pids, name, 0755);
	return openat(pids, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* The first free one of @base whose name starts with @prefix, renamed to
 * cg->name on v1: 0, or -1 when there is none. */
static int claim_free(struct vm_cgroup *cg, int mem, int pids, const char *prefix)
{
	bool v1 = cg->kind == VM_CG_V1;
	DIR *d = open_dir(mem);
	for (struct dirent *e; d && (e = readdir(d));) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) || strlen(e->d_name) >= sizeof(cg->name))
			continue;
		int fd = lock_free(mem, e->d_name);
		if (fd < 0)
			continue;
		if (v1 && strcmp(e->d_name, cg->name) && renameat(mem, e->d_name, mem, cg->name) < 0) {
			close(fd);
			continue;
		}
		if (!v1)
			memcpy(cg->name, e->d_name, strlen(e->d_name) + 1);
		cg->dirfd = fd;
		cg->pids_dirfd = pids_twin(pids, e->d_name, cg->name);
		closedir(d);
		return 0;
	}
	if (d)
		closedir(d);
	return -1;
}

/* A dead run's run.* first (v1: so that stale ones do not pile up), then
 * a free.*; else a new one. */
static int claim(struct vm_cgroup *cg, int mem, int pids)
{
	bool v1 = cg->kind == VM_CG_V1;
	if ((v1 && claim_free(cg, mem, pids, "run.") == 0) || claim_free(cg, mem, pids, "free.") == 0)
		return 0;
	/* none free: a new one (v2: the first free.N not there) */
	for (unsigned n = 0; n < 4 * POOL_KEEP + 4096; n++) {
		if (!v1)
			snprintf(cg->name, sizeof(cg->name), "free.%u", n);
		if (mkdirat(mem, cg->name, 0755) < 0 && (errno != EEXIST || !v1)) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		int fd = lock_free(mem, cg->name);
		if (fd >= 0) {
			cg->dirfd = fd;
			cg->pids_dirfd = pids_twin(pids, cg->name, cg->name);
			return 0;
		}
		if (v1)
			return -EBUSY;
	}
	return -EBUSY;
}

static void __attribute__((noreturn)) watch(int rd, int mem, int pids, const char *name)
{
	/* apart from the terminal's signals, and from every fd of anole's
	 * (a lazy mount's blob files would keep it busy) */
	setpgid(0, 0);
	int keep[3] = {fcntl(rd, F_DUPFD_CLOEXEC, 100), fcntl(mem, F_DUPFD_CLOEXEC, 100),
		       pids >= 0 ? fcntl(pids, F_DUPFD_CLOEXEC, 100) : -1};
	int null = open("/dev/null", O_RDWR);
	if (keep[0] < 0 || keep[1] < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
	    dup2(null, 2) < 0 || dup2(keep[0], 3) < 0 || dup2(keep[1], 4) < 0 ||
	    (keep[2] >= 0 && dup2(keep[2], 5) < 0))
		_exit(1);
	close_range(keep[2] >= 0 ? 6 : 5, ~0U, 0);
	char c;
	ssize_t n;
	while ((n = read(3, &c, 1)) < 0 && errno == EINTR)
		;
	if (n == 1)
		_exit(0); /* anole gave it back */
	/* anole died: its QEMU dies with it (PR_SET_PDEATHSIG) */
	struct timespec step = {0, 50000000L};
	for (int i = 0; i < RECLAIM_SECONDS * 20; i++) {
		int fd = openat(4, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			_exit(0); /* taken by a run already */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && is_empty(fd)) {
			give_back(4, keep[2] >= 0 ? 5 : -1, name, false);
			_exit(0);
		}
		close(fd);
		nanosleep(&step, NULL);
	}
	_exit(1); /* left for a later run to reclaim */
}

static void start_watcher(struct vm_cgroup *cg, int mem, int pids)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	cg->watcher = fork();
	if (cg->watcher == 0)
		watch(p[0], mem, pids, cg->name);
	close(p[0]);
	if (cg->watcher < 0)
		close(p[1]);
	else
		cg->watch_fd = p[1];
}

static int set_limits(const struct vm_cgroup *cg, uint64_t limit)
{
	char num[32];
	snprintf(num, sizeof(num), "%llu", (unsigned long long)limit);
	bool v1 = cg->kind == VM_CG_V1;
	int r = write_str(cg->dirfd, v1 ? "memory.limit_in_bytes" : "memory.max", num);
	if (r >= 0 && cg->pids_dirfd >= 0)
		r = write_str(cg->pids_dirfd, "pids.max", PIDS_MAX);
	return r;
}

static void close_cg(struct vm_cgroup *cg)
{
	int fds[] = {cg->dirfd, cg->pids_dirfd, cg->base, cg->pids_base};
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	cg->dirfd = cg->pids_dirfd = cg->base = cg->pids_base = -1;
	cg->kind = VM_CG_NONE;
}

void vm_cgroup_take(struct vm_cgroup *cg, uint64_t limit, const char **why)
{
	*cg = (struct vm_cgroup){.kind = VM_CG_NONE, .dirfd = -1, .pids_dirfd = -1, .base = -1,
				 .pids_base = -1, .watch_fd = -1, .watcher = -1};
	const char *env = getenv("ANOLE_VM_CGROUP");
	if (env && !strcmp(env, "none")) {
		*why = "ANOLE_VM_CGROUP=none";
		return;
	}
	struct hier h;
	cg->kind = detect(&h, why);
	if (cg->kind == VM_CG_NONE)
		return;
	bool v2 = cg->kind == VM_CG_V2;
	int mem = open_base(h.mem, v2 ? *h.pids != '\0' : -1);
	int pids = mem >= 0 && !v2 && *h.pids ? open_base(h.pids, -1) : -1;
	int r = mem;
	snprintf(cg->name, sizeof(cg->name), "run.%ld", (long)getpid());
	if (r >= 0)
		r = claim(cg, mem, v2 ? -1 : pids);
	if (r >= 0 && v2 && *h.pids)
		cg->pids_dirfd = dup(cg->dirfd); /* v2: one directory for both */
	if (r >= 0)
		r = set_limits(cg, limit);
	if (r >= 0 && !v2)
		start_watcher(cg, mem, pids);
	if (r < 0) {
		static char msg[200];
		snprintf(msg, sizeof(msg), "%s/" VM_CGROUP_DIR ": %s", h.mem, strerror(-r));
		*why = msg;
		if (cg->dirfd >= 0 && is_empty(cg->dirfd))
			give_back(mem, pids, cg->name, v2);
		close_cg(cg);
		if (mem >= 0)
			close(mem);
		if (pids >= 0)
			close(pids);
		return;
	}
	cg->base = mem;
	cg->pids_base = pids;
}

int vm_cgroup_enter(const struct vm_cgroup *cg)
{
	if (cg->kind == VM_CG_NONE)
		return 0;
	int r = write_str(cg->dirfd, "cgroup.procs", "0");
	if (r >= 0 && cg->kind == VM_CG_V1 && cg->pids_dirfd >= 0)
		r = write_str(cg->pids_dirfd, "cgroup.procs", "0");
	return r;
}

void vm_cgroup_release(struct vm_cgroup *cg)
{
	if (cg->kind == VM_CG_NONE)
		return;
	bool v2 = cg->kind == VM_CG_V2, back = false;
	if (is_empty(cg->dirfd)) {
		give_back(cg->base, cg->pids_base, cg->name, v2);
		back = true;
	}
	close_cg(cg);
	/* the watcher: done ("d"), or (EOF) wait for the processes and
	 * give it back */
	if (cg->watch_fd >= 0) {
		if (back)
			(void)!write(cg->watch_fd, "d", 1);
		close(cg->watch_fd);
		cg->watch_fd = -1;
		if (back)
			while (waitpid(cg->watcher, NULL, 0) < 0 && errno == EINTR)
				;
	}
}

int vm_cgroup_fill(unsigned n, char *where, size_t where_len, struct anole_error *err)
{
	struct hier h;
	const char *why = "";
	if (detect(&h, &why) == VM_CG_NONE)
		return anole_err(err, ENOTSUP, "%s", why);
	bool v2 = h.kind == VM_CG_V2;
	int mem = open_base(h.mem, v2 ? *h.pids != '\0' : -1);
	if (mem < 0)
		return anole_err(err, -mem, "%s/" VM_CGROUP_DIR ": %s", h.mem, strerror(-mem));
	int pids = !v2 && *h.pids ? open_base(h.pids, -1) : -1;
	int r = 0;
	/* counted once: each new one is one more, and at most n are made */
	size_t have = count_free(mem), made = 0;
	for (unsigned k = 0; have + made < n && k < n + 65536; k++) {
		char name[32];
		snprintf(name, sizeof(name), "free.%u", k);
		if (mkdirat(mem, name, 0755) < 0) {
			if (errno == EEXIST)
				continue;
			r = anole_err(err, errno, "%s/" VM_CGROUP_DIR "/%s: %s", h.mem, name,
				      strerror(errno));
			break;
		}
		made++;
		if (pids >= 0)
			mkdirat(pids, name, 0755);
	}
	snprintf(where, where_len, "%s/" VM_CGROUP_DIR " (cgroup %s)", h.mem, v2 ? "v2" : "v1");
	close(mem);
	if (pids >= 0)
		close(pids);
	return r < 0 ? r : (int)(have + made);
}
