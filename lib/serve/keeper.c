/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keeper: the third holder of the fanotify group. When every process
 * holding the group is gone the kernel drops the marks, lets the waiting
 * reads through and reads the partial cache files' holes as zeros. The
 * holder and the worker each survive the other's death; the keeper is
 * for the two dying together (kill -9 of both, an OOM kill of both, a
 * signal to a process group). It holds the group, the instance lock and
 * a copy of the cache files' write descriptors, reads nothing while a
 * holder lives, and when its holder dies:
 *   1. stops the worker (a new holder brings its own: adopting a live
 *      one would need the two to agree on event ids and descriptors),
 *   2. lets a new holder start, which takes the reader lock and fails
 *      (EIO) what the dead one had taken,
 *   3. backs off when holders keep dying, and meanwhile answers every
 *      read EIO itself: reads fail rather than see zeros.
 * It is small on purpose: no parsing, no network, no threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/fan.h"
#include "serve/paths.h"
#include "serve/serve.h"
#include "util/util.h"

/* holders started within HOLDER_LOOP_SECONDS that make a crash loop */
#define HOLDER_LOOP 5
#define HOLDER_LOOP_SECONDS 10
#define DENY_WINDOW_MAX 32

void daemon_log(const char *who, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	/* one write: the three processes share the log */
	char out[1200];
	int n = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ anole %s: %s\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, now.tv_nsec / 1000000, who, line);
	(void)!write(STDERR_FILENO, out, (size_t)MIN(n, (int)sizeof(out) - 1));
}

int daemon_lock(int lockfd, int which, bool wait)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", lockfd);
	int fd = open(proc, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = which, .l_len = 1};
	int r;
	while ((r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		int e = errno == EACCES ? EAGAIN : errno;
		close(fd);
		return -e;
	}
	return fd;
}

void serve_deny_all(int group)
{
	/* every process of the daemon inherits this limit (the first one
	 * lowered it to DENY_ALL_FDS at most; nobody raises it) */
	struct rlimit rl = {.rlim_cur = DENY_ALL_FDS};
	getrlimit(RLIMIT_NOFILE, &rl);
	int n = (int)MIN(rl.rlim_cur, (rlim_t)DENY_ALL_FDS);
	for (int fd = 0; fd < n; fd++) {
		struct fanotify_response r = {.fd = fd, .response = FAN_DENY_WITH(EIO)};
		if (write(group, &r, sizeof(r)) < 0 && errno == EINVAL) {
			r.response = FAN_DENY; /* a kernel without errno in answers */
			(void)!write(group, &r, sizeof(r));
		}
	}
}

void daemon_process_setup(const char *name, int oom_score_adj)
{
	/* a signal to the process group or session of one reaches no other */
	setsid();
	prctl(PR_SET_NAME, name);
	/* the kernel prefers killing the worker, which is restarted, to the
	 * small processes that keep the group (lowering needs root) */
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		char v[16];
		int n = snprintf(v, sizeof(v), "%d\n", oom_score_adj);
		(void)!write(fd, v, (size_t)n);
		close(fd);
	}
	/* while anything is mounted the service must not stop: unmount to
	 * end it (it then ends by itself); SIGKILL cannot be ignored */
	static const int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,
				      SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU};
	for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
		signal(ignored[i], SIG_IGN);
}

int hmsg_send(int sock, const struct hmsg *m, int fd, int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	}
	ssize_t n;
	while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags)) < 0 && errno == EINTR)
		;
	return n == (ssize_t)sizeof(*m) ? 0 : n < 0 ? -errno : -EIO;
}

ssize_t hmsg_recv(int sock, struct hmsg *m, int *fd, int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n;
	*fd = -1;
	while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return -errno;
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(*fd));
	if (n > 0 && n != (ssize_t)sizeof(*m)) { /* not ours: skip it */
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		m->type = 0;
	}
	m->tag[sizeof(m->tag) - 1] = 0;
	return n;
}

void kept_put(struct holder_state *h, const char *tag, int fd)
{
	for (size_t i = 0; i < h->nkept; i++)
		if (!strcmp(h->kept[i].tag, tag)) {
			close(h->kept[i].fd);
			h->kept[i].fd = fd;
			return;
		}
	struct kept_fd *k = realloc(h->kept, (h->nkept + 1) * sizeof(*k));
	if (!k) {
		close(fd);
		return;
	}
	h->kept = k;
	snprintf(k[h->nkept].tag, sizeof(k->tag), "%s", tag);
	k[h->nkept++].fd = fd;
}

void kept_drop(struct holder_state *h, const char *tag)
{
	for (size_t i = 0; i < h->nkept; i++)
		if (!strcmp(h->kept[i].tag, tag)) {
			close(h->kept[i].fd);
			h->kept[i] = h->kept[--h->nkept];
			return;
		}
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct keeper {
	struct holder_state *h;
	int ofd;   /* our open of holder.pid: the keeper lock */
	int sock;  /* to the holder; -1: there is none */
	int hpfd;  /* pidfd of the holder (-1: none) */
	int worker; /* pidfd of the worker the holder last reported; -1: none */
	double starts[HOLDER_LOOP];
	unsigned nstarts;
	unsigned deny_seconds;
	bool failed;  /* the last holder could not be started */
	bool denying; /* reads have been failing since the last holder */
};

static void keeper_pidfile(bool remove)
{
	struct serve_paths p;
	serve_paths_init(&p);
	_cleanup_serve_files_ struct serve_files f = {0};
	struct anole_error e = {0};
	if (serve_files_init(&f, &p, &e) < 0)
		return;
	const char *path = f.keeper_pid;
	char line[32], have[32] = "";
	snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (!remove) {
		outfile_write(path, line, strlen(line));
		return;
	}
	/* (a new daemon's keeper may have written it already) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && read(fd, have, sizeof(have) - 1) > 0 && !strcmp(have, line))
		unlink(path);
	if (fd >= 0)
		close(fd);
}

static void watch_worker(struct keeper *k, pid_t pid)
{
	if (k->worker >= 0)
		close(k->worker);
	/* opened while the worker is the holder's unreaped child: the
	 * descriptor names that process even after its pid is reused */
	k->worker = pid > 0 ? pidfd_open(pid, 0) : -1;
}

/* A holder's messages: kept descriptors, its worker, the end. */
static void holder_message(struct keeper *k)
{
	while (k->sock >= 0) {
		struct hmsg m;
		int fd;
		ssize_t n = hmsg_recv(k->sock, &m, &fd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			return;
		if (n <= 0) { /* the holder is gone */
			close(k->sock);
			k->sock = -1;
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
			return;
		}
		switch (m.type) {
		case HMSG_KEEP:
			if (fd >= 0)
				kept_put(k->h, m.tag, fd);
			fd = -1;
			break;
		case HMSG_DROP:
			kept_drop(k->h, m.tag);
			break;
		case HMSG_KEEP_RESET:
			while (k->h->nkept)
				kept_drop(k->h, k->h->kept[0].tag);
			break;
		case HMSG_WORKER:
			watch_worker(k, (pid_t)m.id);
			break;
		case HMSG_QUIT:
			keeper_pidfile(true);
			_exit(0);
		}
		if (fd >= 0)
			close(fd);
	}
}

/* The worker of a dead holder goes too: the next holder starts its own. */
static void stop_worker(struct keeper *k)
{
	if (k->worker < 0)
		return;
	if (pidfd_send_signal(k->worker, SIGKILL, NULL, 0) == 0 || errno != ESRCH) {
		struct pollfd p = {.fd = k->worker, .events = POLLIN};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
	}
	close(k->worker);
	k->worker = -1;
}

static void deny_event(void *ctx, struct hmsg *ev)
{
	int group = *(int *)ctx;
	fan_answer(group, ev->evfd, FAN_DENY_WITH(EIO));
	close(ev->evfd);
}

/* No holder can be kept alive: answer every read EIO for @seconds, as
 * the reader (each one answered before the next is read, so none is
 * left when the lock goes back). */
static void deny_window(struct keeper *k, unsigned seconds, const char *why)
{
	int rd = daemon_lock(k->h->lock, DLOCK_READER, true);
	if (rd < 0)
		return;
	serve_deny_all(k->h->group);
	if (!k->denying)
		daemon_log("keeper", "%s; failing every read (EIO) until a holder runs", why);
	k->denying = true;
	double end = mono() + seconds;
	for (double left; (left = end - mono()) > 0;) {
		struct pollfd p = {.fd = k->h->group, .events = POLLIN};
		if (poll(&p, 1, (int)(left * 1000) + 1) > 0 && (p.revents & POLLIN))
			fan_read_events(k->h->group, deny_event, &k->h->group);
	}
	close(rd);
}

static void start_holder(struct keeper *k)
{
	stop_worker(k);
	/* holders that keep dying: reads fail for 1, 2, 4 ... 32 s between
	 * tries; none could be started (fork failed): tried again each second */
	double now = mono();
	if (k->nstarts >= HOLDER_LOOP &&
	    now - k->starts[k->nstarts % HOLDER_LOOP] < HOLDER_LOOP_SECONDS) {
		deny_window(k, k->deny_seconds, "holders keep failing");
		k->deny_seconds = MIN(k->deny_seconds * 2, DENY_WINDOW_MAX);
	} else if (k->failed) {
		deny_window(k, 1, "no holder can be started");
	} else {
		k->deny_seconds = 1;
	}
	int sv[2] = {-1, -1};
	pid_t pid = -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0 && (pid = fork()) == 0) {
		close(sv[0]);
		close(k->ofd);
		if (k->hpfd >= 0)
			close(k->hpfd);
		struct holder_state h = *k->h;
		h.keeper = sv[1];
		h.sock = h.reader = h.status = -1;
		h.fresh = false;
		h.npending = 0;
		h.pending = NULL;
		struct anole_error err = {0};
		daemon_process_setup("anole holder", -1000);
		int r = holder_run(&h, &err);
		if (r < 0)
			daemon_log("holder", "%s", err.msg);
		_exit(r < 0 ? 1 : 0);
	}
	int e = errno;
	if (sv[1] >= 0)
		close(sv[1]);
	if (pid < 0) {
		daemon_log("keeper", "cannot start a holder: %s", strerror(e));
		if (sv[0] >= 0)
			close(sv[0]);
		k->failed = true;
		return;
	}
	k->failed = k->denying = false;
	k->starts[k->nstarts++ % HOLDER_LOOP] = mono();
	k->sock = sv[0];
	if (k->hpfd >= 0)
		close(k->hpfd);
	k->hpfd = pidfd_open(pid, 0);
	daemon_log("keeper", "the holder was gone; started holder %d", (int)pid);
}

/* A keeper that waited for the lock while another acted may find its
 * holder long gone and another reading: it has nothing to keep. */
static bool stale(struct keeper *k)
{
	holder_message(k);
	if (k->sock >= 0 || k->hpfd < 0)
		return false;
	/* gone for good first: its reader lock goes with its last descriptor */
	struct pollfd p = {.fd = k->hpfd, .events = POLLIN};
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	int rd = daemon_lock(k->h->lock, DLOCK_READER, false);
	if (rd >= 0)
		close(rd);
	return rd == -EAGAIN;
}

void keeper_main(struct holder_state *h, int ofd, int sock, pid_t holder, pid_t worker)
{
	daemon_process_setup("anole keeper", -1000);
	struct keeper k = {.h = h, .ofd = ofd, .sock = sock, .hpfd = -1, .worker = -1,
			   .deny_seconds = 1};
	watch_worker(&k, worker);
	if (holder > 0 && (k.hpfd = pidfd_open(holder, 0)) < 0 && errno == ESRCH && k.sock >= 0) {
		/* gone already, and reaped: nothing of it is left */
		close(k.sock);
		k.sock = -1;
	}
	/* one keeper acts at a time: a new one waits for the old to die */
	if (k.ofd < 0 && (k.ofd = daemon_lock(h->lock, DLOCK_KEEPER, true)) < 0) {
		daemon_log("keeper", "cannot take the keeper lock: %s", strerror(-k.ofd));
		_exit(1);
	}
	if (stale(&k))
		_exit(0);
	keeper_pidfile(false);
	daemon_log("keeper", "keeping the group (pid %d)", (int)getpid());
	for (;;) {
		if (k.sock < 0) {
			start_holder(&k);
			continue;
		}
		struct pollfd p = {.fd = k.sock, .events = POLLIN};
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p.revents)
			holder_message(&k);
	}
}

/* What a worker hands over: the group, the locks, the kept descriptors. */
int keeper_adopt(int sock, struct anole_error *err)
{
	struct holder_state h = {.group = -1, .sock = -1, .keeper = -1, .lock = -1, .reader = -1,
				 .status = -1};
	int ofd = -1;
	pid_t worker = 0;
	for (;;) {
		struct hmsg m;
		int fd;
		ssize_t n = hmsg_recv(sock, &m, &fd, 0);
		if (n <= 0)
			return anole_err(err, n < 0 ? (int)-n : EPIPE,
					 "adopting the daemon: the worker went away");
		int *slot = m.type == HMSG_ADOPT_GROUP	 ? &h.group
			    : m.type == HMSG_ADOPT_LOCK	 ? &h.lock
			    : m.type == HMSG_ADOPT_KEEPER ? &ofd
							  : NULL;
		if (slot && fd >= 0 && *slot < 0) {
			*slot = fd;
			continue;
		}
		if (m.type == HMSG_KEEP && fd >= 0) {
			kept_put(&h, m.tag, fd);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (m.type == HMSG_ADOPT_DONE) {
			worker = (pid_t)m.id;
			break;
		}
	}
	if (h.group < 0 || h.lock < 0 || ofd < 0)
		return anole_err(err, EPROTO, "adopting the daemon: the worker sent too little");
	struct hmsg ready = {.type = HMSG_READY};
	hmsg_send(sock, &ready, -1, 0);
	close(sock);
	daemon_log("keeper", "the holder and the keeper were gone; taking over from worker %d",
		   (int)worker);
	keeper_main(&h, ofd, -1, 0, worker);
}
