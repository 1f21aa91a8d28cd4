/* SPDX-License-Identifier: Apache-2.0 */
/* exec() with shared-memory connections open (docs/DESIGN-smc.md,
 * "fork, exec, dup, close, shutdown, kill -9"). A connection's state is
 * this process's memory and dies with the image; its TCP socket alone
 * carries none of its bytes. So the exec calls are interposed: each
 * connection with a number the exec keeps (no FD_CLOEXEC) has its
 * memfd, control socket and eventfds left open across the exec and is
 * described in ANOLE_SMC_EXEC, added to the envp given to the exec (the
 * caller's environ is never changed); the new image's constructor maps
 * it again. If the exec fails, every flag is put back as it was.
 *
 * glibc's exec family calls its internal execve, which interposition
 * does not see, so each entry point is interposed itself. system(),
 * popen() and posix_spawn*() run their child the same internal way:
 * there a shared-memory number is hidden from the child (FD_CLOEXEC
 * for the call's length), so the child finds no descriptor (EBADF)
 * rather than a bare TCP socket that would hang or swallow bytes.
 *
 * The exec side runs where a vfork() child may run it: no allocation,
 * nothing but the descriptor flags of this process and one flag in
 * shared memory is changed, and the state to undo lives on the stack. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "smc/execenv.h"
#include "smc/preload.h"

extern char **environ;

#define EXEC_MAXFDS 256  /* kept numbers of shared-memory connections */
#define EXEC_MAXCONN 64  /* connections passed */
#define EXEC_MARKS 256   /* connections closed by the exec, marked */
#define EXEC_ENVLEN 16384

enum exec_mode {
	EXEC_PASS,  /* the new image loads this library: hand over */
	EXEC_HIDE,  /* it does not (no LD_PRELOAD of it in envp): close */
	SPAWN_HIDE, /* a child started by libc's internal exec: hide */
};

struct exec_saved {
	int fd, flags;
};

/* What an exec changed, to undo if it fails. */
struct exec_plan {
	int nsaved, nmarks, nconn;
	struct exec_saved saved[EXEC_MAXFDS + 6 * EXEC_MAXCONN];
	_Atomic uint32_t *marks[EXEC_MARKS];
	size_t envoff;
	char env[EXEC_ENVLEN];
};

/* fcntl straight to the kernel: no lookup, nothing of ours, in a vfork
 * child too */
static int fd_flags(int fd)
{
	return (int)syscall(SYS_fcntl, fd, F_GETFD);
}

static int fd_set_flags(int fd, int flags)
{
	return (int)syscall(SYS_fcntl, fd, F_SETFD, flags);
}

/* @fd's FD_CLOEXEC set to @on, the old flags kept for plan_undo. */
static int plan_cloexec(struct exec_plan *p, int fd, bool on)
{
	int old = fd_flags(fd), nflags;

	if (old < 0)
		return -EBADF;
	nflags = on ? old | FD_CLOEXEC : old & ~FD_CLOEXEC;
	if (nflags == old)
		return 0;
	if (p->nsaved == (int)(sizeof(p->saved) / sizeof(p->saved[0])))
		return -E2BIG;
	if (fd_set_flags(fd, nflags))
		return -errno;
	p->saved[p->nsaved++] = (struct exec_saved){fd, old};
	return 0;
}

/* The peer is to read the control socket's EOF as a close (EOF after
 * the data), as TCP gives it when an exec closes a socket. */
static void plan_mark(struct exec_plan *p, struct smc_conn *c)
{
	if (!c->map || atomic_load(&c->tx.h->gone_is_close) || p->nmarks == EXEC_MARKS)
		return;
	atomic_store(&c->tx.h->gone_is_close, 1);
	p->marks[p->nmarks++] = &c->tx.h->gone_is_close;
}

static void plan_undo(struct exec_plan *p)
{
	while (p->nsaved > 0) {
		p->nsaved--;
		fd_set_flags(p->saved[p->nsaved].fd, p->saved[p->nsaved].flags);
	}
	while (p->nmarks > 0)
		atomic_store(p->marks[--p->nmarks], 0);
}

/* Connection @c (its kept numbers are those of @live with it) into the
 * plan: its descriptors left open across the exec, its entry written. */
static int plan_pass(struct exec_plan *p, struct smc_conn *c, const int *live, struct smc_conn **lc,
		     int nlive)
{
	const int own[6] = {c->memfd, c->ctl, c->rx_data, c->rx_space, c->tx_data, c->tx_space};
	struct smc_exec_ent e = {
		.server = c->server,
		.flags = (atomic_load(&c->rd_shut) ? SMC_EXEC_RD_SHUT : 0) |
			 (atomic_load(&c->wr_shut) ? SMC_EXEC_WR_SHUT : 0) |
			 (atomic_load(&c->peer_gone) ? SMC_EXEC_PEER_GONE : 0),
		.memfd = c->memfd,
		.ctl = c->ctl,
		.efd = {c->rx_data, c->rx_space, c->tx_data, c->tx_space},
		.ring = c->rx.size,
		.tx_bytes = atomic_load(&c->tx_bytes),
		.rx_bytes = atomic_load(&c->rx_bytes),
		.dport = c->dport,
	};
	int rc;

	for (int i = 0; i < nlive; i++) {
		if (lc[i] != c)
			continue;
		if (e.nnum == SMC_EXEC_MAXNUM)
			return -E2BIG;
		e.num[e.nnum++] = live[i];
	}
	if (p->nconn == EXEC_MAXCONN)
		return -E2BIG;
	for (int i = 0; i < 6; i++)
		if ((rc = plan_cloexec(p, own[i], false)))
			return rc;
	rc = smc_exec_format(p->env, sizeof(p->env), &p->envoff, &e);
	p->nconn += !rc;
	return rc;
}

static bool seen(struct smc_conn *const *lc, int n, const struct smc_conn *c)
{
	for (int i = 0; i < n; i++)
		if (lc[i] == c)
			return true;
	return false;
}

/* The plan for an exec or spawn in @mode, carried out; 0, or -errno
 * with everything undone. */
static int plan_make(struct exec_plan *p, enum exec_mode mode)
{
	int live[EXEC_MAXFDS];
	struct smc_conn *lc[EXEC_MAXFDS];
	int nlive = 0, rc = 0;

	p->nsaved = p->nmarks = p->nconn = 0;
	memcpy(p->env, SMC_EXEC_ENV "=" SMC_EXEC_VERSION, sizeof(SMC_EXEC_ENV "=" SMC_EXEC_VERSION));
	p->envoff = strlen(p->env);
	for (int fd = 0, top = smc_tab_top(); fd < top; fd++) {
		struct smc_conn *c = smc_conn_of(fd);
		int fl = c ? fd_flags(fd) : -1;

		if (fl < 0 || (fl & FD_CLOEXEC))
			continue;
		/* a handshake still open is settled or made TCP (its numbers
		 * would each have to agree on the outcome, as for dup) */
		if (atomic_load(&c->state) == SMC_CLI_PENDING || atomic_load(&c->state) == SMC_SRV_PENDING) {
			smc_settle(c, false);
			smc_conn_to_tcp(c);
		}
		if (atomic_load(&c->state) != SMC_ON)
			continue;
		if (nlive == EXEC_MAXFDS)
			return -E2BIG;
		live[nlive] = fd;
		lc[nlive++] = c;
	}
	for (int i = 0; i < nlive && !rc; i++) {
		struct smc_conn *c = lc[i];

		if (seen(lc, i, c))
			continue;
		if (mode == EXEC_PASS && c->memfd >= 0) {
			rc = plan_pass(p, c, live + i, lc + i, nlive - i);
			continue;
		}
		/* hidden from the new image or the child: every kept number */
		for (int k = i; k < nlive && !rc; k++)
			if (lc[k] == c)
				rc = plan_cloexec(p, live[k], true);
		if (mode != SPAWN_HIDE)
			plan_mark(p, c);
	}
	/* connections the exec closes (every number FD_CLOEXEC): the kernel
	 * closes the control socket, the peer reads EOF after the data */
	for (int fd = 0, top = smc_tab_top(); fd < top && !rc && mode != SPAWN_HIDE; fd++) {
		struct smc_conn *c = smc_conn_of(fd);

		if (c && atomic_load(&c->state) == SMC_ON && !seen(lc, nlive, c))
			plan_mark(p, c);
	}
	if (rc)
		plan_undo(p);
	return rc;
}

/* Whether the image @envp starts will load this library. */
static bool envp_preloads_us(char *const *envp)
{
	for (size_t i = 0; envp && envp[i]; i++)
		if (!strncmp(envp[i], "LD_PRELOAD=", 11) && strstr(envp[i], "libanole-smc"))
			return true;
	return false;
}

static size_t envp_count(char *const *envp)
{
	size_t n = 0;

	while (envp && envp[n])
		n++;
	return n;
}

/* @envp without any ANOLE_SMC_EXEC, plus the plan's, into @out. */
static void envp_with(char **out, char *const *envp, const struct exec_plan *p)
{
	size_t k = 0, nl = strlen(SMC_EXEC_ENV);

	for (size_t i = 0; envp && envp[i]; i++)
		if (strncmp(envp[i], SMC_EXEC_ENV, nl) || envp[i][nl] != '=')
			out[k++] = envp[i];
	out[k++] = (char *)p->env;
	out[k] = NULL;
}

/* ---- the interposed calls ---- */

static int (*r_execve)(const char *, char *const[], char *const[]);
static int (*r_execvpe)(const char *, char *const[], char *const[]);
static int (*r_fexecve)(int, char *const[], char *const[]);
static int (*r_execveat)(int, const char *, char *const[], char *const[], int);
static int (*r_posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			    const posix_spawnattr_t *, char *const[], char *const[]);
static int (*r_posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			     const posix_spawnattr_t *, char *const[], char *const[]);
static int (*r_system)(const char *);
static FILE *(*r_popen)(const char *, const char *);

/* Looked up when the library loads: a vfork() child must not enter
 * the dynamic linker's locks. */
static void exec_lookup(void)
{
	r_execve = (__typeof__(r_execve))dlsym(RTLD_NEXT, "execve");
	r_execvpe = (__typeof__(r_execvpe))dlsym(RTLD_NEXT, "execvpe");
	r_fexecve = (__typeof__(r_fexecve))dlsym(RTLD_NEXT, "fexecve");
	r_execveat = (__typeof__(r_execveat))dlsym(RTLD_NEXT, "execveat");
	r_posix_spawn = (__typeof__(r_posix_spawn))dlsym(RTLD_NEXT, "posix_spawn");
	r_posix_spawnp = (__typeof__(r_posix_spawnp))dlsym(RTLD_NEXT, "posix_spawnp");
	r_system = (__typeof__(r_system))dlsym(RTLD_NEXT, "system");
	r_popen = (__typeof__(r_popen))dlsym(RTLD_NEXT, "popen");
}

enum exec_kind { K_EXECVE, K_EXECVPE, K_FEXECVE, K_EXECVEAT };

struct exec_call {
	enum exec_kind kind;
	int dirfd, flags;
	const char *path;
	char *const *argv;
};

static int exec_real(const struct exec_call *x, char *const *envp)
{
	switch (x->kind) {
	case K_EXECVE:
		return r_execve ? r_execve(x->path, x->argv, envp) : (int)smc_fail(-ENOSYS);
	case K_EXECVPE:
		return r_execvpe ? r_execvpe(x->path, x->argv, envp) : (int)smc_fail(-ENOSYS);
	case K_FEXECVE:
		return r_fexecve ? r_fexecve(x->dirfd, x->argv, envp) : (int)smc_fail(-ENOSYS);
	default:
		return r_execveat ? r_execveat(x->dirfd, x->path, x->argv, envp, x->flags)
				  : (int)smc_fail(-ENOSYS);
	}
}

/* Whether the program in @fd, started by exec, loads this library
 * (given an envp that preloads it): not if it is statically linked (an
 * ELF without PT_INTERP: Go programs), of another class, or set-user-ID
 * or set-group-ID to someone else (ld.so then ignores a preload named
 * by its path). ld.so run as a program has no PT_INTERP either and is
 * taken for static: its program gets the connections closed, which is
 * loud, where a static one given them would wait on a bare socket. A
 * script, or anything that cannot be read, is taken to load it: its
 * interpreter usually does, and what cannot be read usually fails to
 * exec. */
static bool image_loads_us(int fd)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[64];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st))
		return true;
	if (((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
	    ((st.st_mode & S_ISGID) && st.st_gid != getegid()))
		return false;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG))
		return true;
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ph[0]))
		return false;
	n = eh.e_phnum > 64 ? 64 : eh.e_phnum;
	n = pread(fd, ph, sizeof(ph[0]) * (size_t)n, (off_t)eh.e_phoff);
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(ph[0]); i++)
		if (ph[i].p_type == PT_INTERP)
			return true;
	return false;
}

/* The file @file names for execvp: as the shell's PATH search finds
 * it (the caller's PATH, glibc's default without one); fd or -1. */
static int open_on_path(const char *file)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (strchr(file, '/'))
		return open(file, O_RDONLY | O_CLOEXEC);
	for (const char *d = path && *path ? path : "/bin:/usr/bin"; *d;) {
		size_t dl = strcspn(d, ":"), fl = strlen(file);

		if (dl + fl + 2 <= sizeof(buf)) {
			int fd;

			memcpy(buf, d, dl);
			buf[dl] = '/';
			memcpy(buf + dl + (dl ? 1 : 0), file, fl + 1);
			fd = access(buf, X_OK) ? -1 : open(buf, O_RDONLY | O_CLOEXEC);
			if (fd >= 0)
				return fd;
		}
		d += dl + (d[dl] == ':');
	}
	return -1;
}

/* image_loads_us for what @x execs. */
static bool exec_loads_us(const struct exec_call *x)
{
	int fd;
	bool yes;

	if (x->kind == K_FEXECVE)
		return image_loads_us(x->dirfd);
	if (x->kind == K_EXECVEAT && !*x->path && (x->flags & AT_EMPTY_PATH))
		return image_loads_us(x->dirfd);
	if (x->kind == K_EXECVEAT)
		fd = openat(x->dirfd, x->path, O_RDONLY | O_CLOEXEC |
						  (x->flags & AT_SYMLINK_NOFOLLOW ? O_NOFOLLOW : 0));
	else if (x->kind == K_EXECVPE)
		fd = open_on_path(x->path);
	else
		fd = open(x->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	yes = image_loads_us(fd);
	syscall(SYS_close, fd); /* not our close(): a vfork child may run this */
	return yes;
}

/* One exec: planned, run, undone if it came back. A new image that
 * will not load the library gets the connections closed, not a bare
 * socket it would wait on. */
static int exec_run(const struct exec_call *x, char *const *envp)
{
	struct exec_plan p;
	bool pass = envp_preloads_us(envp) && (!smc_tab_top() || exec_loads_us(x));
	int rc = plan_make(&p, pass ? EXEC_PASS : EXEC_HIDE), e;

	if (rc)
		return (int)smc_fail(rc);
	if (!p.nconn) {
		rc = exec_real(x, envp);
	} else {
		char *nenv[envp_count(envp) + 2];

		envp_with(nenv, envp, &p);
		rc = exec_real(x, nenv);
	}
	e = errno;
	plan_undo(&p);
	errno = e;
	return rc;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	struct exec_call x = {K_EXECVE, -1, 0, path, argv};

	return exec_run(&x, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct exec_call x = {K_EXECVPE, -1, 0, file, argv};

	return exec_run(&x, envp);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct exec_call x = {K_FEXECVE, fd, 0, NULL, argv};

	return exec_run(&x, envp);
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct exec_call x = {K_EXECVEAT, dirfd, flags, path, argv};

	return exec_run(&x, envp);
}

/* execl, execle, execlp: the list as an array on the stack (as glibc,
 * @arg is the first of the list, which ends with a NULL). */
static int execl_any(enum exec_kind kind, const char *path, const char *arg, va_list *ap, bool withenv)
{
	va_list cp;
	size_t n = 1;

	va_copy(cp, *ap);
	while (va_arg(cp, const char *))
		n++;
	va_end(cp);

	const char *argv[n + 1];
	char *const *envp;

	argv[0] = arg;
	for (size_t i = 1; i <= n; i++)
		argv[i] = va_arg(*ap, const char *);
	envp = withenv ? va_arg(*ap, char *const *) : environ;
	if (kind == K_EXECVPE)
		return execvpe(path, (char *const *)argv, envp);
	return execve(path, (char *const *)argv, envp);
}

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	int rc;

	va_start(ap, arg);
	rc = execl_any(K_EXECVE, path, arg, &ap, false);
	va_end(ap);
	return rc;
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	int rc;

	va_start(ap, arg);
	rc = execl_any(K_EXECVE, path, arg, &ap, true);
	va_end(ap);
	return rc;
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	int rc;

	va_start(ap, arg);
	rc = execl_any(K_EXECVPE, file, arg, &ap, false);
	va_end(ap);
	return rc;
}

/* A child started by libc's own exec: shared-memory numbers hidden for
 * the call's length; 0 or -errno (nothing changed then). */
static int spawn_begin(struct exec_plan *p)
{
	return plan_make(p, SPAWN_HIDE);
}

static void spawn_end(struct exec_plan *p)
{
	int e = errno;

	plan_undo(p);
	errno = e;
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct exec_plan p;
	int rc = spawn_begin(&p);

	if (rc)
		return -rc;
	rc = r_posix_spawn ? r_posix_spawn(pid, path, fa, attr, argv, envp) : ENOSYS;
	spawn_end(&p);
	return rc;
}

EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct exec_plan p;
	int rc = spawn_begin(&p);

	if (rc)
		return -rc;
	rc = r_posix_spawnp ? r_posix_spawnp(pid, file, fa, attr, argv, envp) : ENOSYS;
	spawn_end(&p);
	return rc;
}

EXPORT int system(const char *cmd)
{
	struct exec_plan p;
	int rc;

	/* system(NULL) asks whether a shell exists: no child */
	if (!cmd || !r_system)
		return r_system ? r_system(cmd) : (int)smc_fail(-ENOSYS);
	rc = spawn_begin(&p);
	if (rc)
		return (int)smc_fail(rc);
	rc = r_system(cmd);
	spawn_end(&p);
	return rc;
}

EXPORT FILE *popen(const char *cmd, const char *mode)
{
	struct exec_plan p;
	FILE *f;
	int rc = spawn_begin(&p);

	if (rc) {
		errno = -rc;
		return NULL;
	}
	f = r_popen ? r_popen(cmd, mode) : NULL;
	spawn_end(&p);
	return f;
}

/* ---- the new image ---- */

static bool sock_is(int fd, int dom, int type)
{
	int t = -1, d = -1;
	socklen_t l1 = sizeof(t), l2 = sizeof(d);

	return !getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l1) && t == type &&
	       !getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &l2) && d == dom;
}

static bool is_eventfd(int fd)
{
	char path[48], link[32];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = 0;
	return !strcmp(link, "anon_inode:[eventfd]");
}

/* The memfd of a connection with rings of @ring bytes: sealed against
 * resizing, exactly the mapping's size. */
static bool is_ring_memfd(int fd, uint32_t ring)
{
	struct stat st;
	int seals;

	if (ring < 4096 || ring > (64u << 20) || (ring & (ring - 1)))
		return false;
	seals = fstat(fd, &st) ? -1 : (int)syscall(SYS_fcntl, fd, F_GET_SEALS);
	return seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW) &&
	       S_ISREG(st.st_mode) && (uint64_t)st.st_size == smc_map_len(ring);
}

/* @e's numbers: one TCP socket, none taken by an earlier entry. */
static bool nums_ok(const struct smc_exec_ent *e)
{
	struct stat first, st;

	for (int i = 0; i < e->nnum; i++) {
		for (int k = 0; k < i; k++)
			if (e->num[k] == e->num[i])
				return false;
		if (smc_tab_get(e->num[i]) || !smc_tcp_stream(e->num[i]) ||
		    fstat(e->num[i], i ? &st : &first))
			return false;
		if (i && (st.st_dev != first.st_dev || st.st_ino != first.st_ino))
			return false;
	}
	return true;
}

/* @e's own descriptors: what they claim, kept open by the exec (an
 * adopted one has FD_CLOEXEC again, so no two entries share one), and
 * none of them a number. */
static bool own_ok(const struct smc_exec_ent *e)
{
	const int fds[6] = {e->memfd, e->ctl, e->efd[0], e->efd[1], e->efd[2], e->efd[3]};

	for (int i = 0; i < 6; i++) {
		int fl = fd_flags(fds[i]);

		if (fl < 0 || (fl & FD_CLOEXEC))
			return false;
		for (int k = 0; k < i; k++)
			if (fds[k] == fds[i])
				return false;
		for (int k = 0; k < e->nnum; k++)
			if (e->num[k] == fds[i])
				return false;
	}
	if (!is_ring_memfd(e->memfd, e->ring) || !sock_is(e->ctl, AF_UNIX, SOCK_SEQPACKET))
		return false;
	for (int i = 0; i < 4; i++)
		if (!is_eventfd(e->efd[i]))
			return false;
	return true;
}

/* One entry of the variable taken over. Numbers that are not one TCP
 * socket of ours are left alone (nothing attached to what the process
 * does not hold as claimed); numbers whose state does not check are
 * made a connection that fails (ECONNRESET, EPIPE) rather than the bare
 * TCP socket, which carries none of its bytes. */
static void exec_resume_one(const struct smc_exec_ent *e)
{
	const int own[6] = {e->memfd, e->ctl, e->efd[0], e->efd[1], e->efd[2], e->efd[3]};
	struct smc_conn *c = NULL;

	if (!nums_ok(e))
		return;
	if (own_ok(e)) {
		/* the library's again, whether or not they can be mapped:
		 * not inherited by a further exec */
		for (int i = 0; i < 6; i++)
			fd_set_flags(own[i], FD_CLOEXEC);
		c = smc_conn_resume(e);
	}
	if (!c)
		c = smc_conn_broken(e->num[0], e->server);
	if (!c)
		return;
	c->refs = e->nnum;
	if (e->nnum > 1) {
		/* the library's own number, as dup gives it (preload.c) */
		c->priv = (int)syscall(SYS_fcntl, e->num[0], F_DUPFD_CLOEXEC, 0);
		if (c->priv >= 0)
			c->fd = c->priv;
	}
	for (int i = 0; i < e->nnum; i++)
		smc_tab_set(e->num[i], c);
}

static void exec_resume(const char *value)
{
	struct smc_exec_ent e;
	size_t pos = 0;
	int rc;

	while ((rc = smc_exec_parse(value, &pos, &e)) != 0)
		if (rc > 0)
			exec_resume_one(&e);
}

__attribute__((constructor)) static void exec_init(void)
{
	const char *v;
	char *copy;

	exec_lookup();
	v = getenv(SMC_EXEC_ENV);
	if (!v)
		return;
	copy = strdup(v);
	/* the program and its children never see it */
	unsetenv(SMC_EXEC_ENV);
	if (copy)
		exec_resume(copy);
	free(copy);
}

/* exit(): the kernel closes what is left open, as TCP's close would; the
 * peer is to read that as a close (EOF after the data) rather than the
 * death of a killed process. Only takes effect once every process
 * holding the connection (forked ones too) let go of it. */
__attribute__((destructor)) static void exec_exit(void)
{
	for (int fd = 0, top = smc_tab_top(); fd < top; fd++) {
		struct smc_conn *c = smc_conn_of(fd);

		if (c && atomic_load(&c->state) == SMC_ON && c->map)
			atomic_store(&c->tx.h->gone_is_close, 1);
	}
}
