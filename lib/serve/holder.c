/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The holder: the process that reads the fanotify group's events. It must
 * outlive any worker crash, so it does as little as it can: read events,
 * pass them on, answer them as told, keep descriptors, restart the worker,
 * and restart the keeper (keeper.c), which restarts it in turn.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/fan.h"
#include "serve/paths.h"
#include "serve/serve.h"
#include "util/util.h"

/* this many worker starts within 10 s is a crash loop */
#define CRASH_LOOP 10
/* workers that cannot serve in a row before the holder gives up */
#define NOSERVE_TRIES 5

static uint64_t next_event_id = 1;
static pid_t keeper_pid; /* the keeper, when it is our child */

/* Never blocks: the worker may be blocked sending to us. */
static int send_msg(int sock, const struct hmsg *m)
{
	ssize_t n = send(sock, m, sizeof(*m), MSG_NOSIGNAL | MSG_DONTWAIT);
	return n == (ssize_t)sizeof(*m) ? 0 : -errno;
}

void fan_answer(int group, int evfd, uint32_t response)
{
	struct fanotify_response r = {.fd = evfd, .response = response};
	if (write(group, &r, sizeof(r)) < 0 && (response & FAN_DENY)) {
		r.response = FAN_DENY; /* a kernel without errno in answers */
		(void)!write(group, &r, sizeof(r));
	}
}

static void answer(struct holder_state *h, size_t i, uint32_t response)
{
	fan_answer(h->group, h->pending[i].fd, response);
	close(h->pending[i].fd);
	h->pending[i] = h->pending[--h->npending];
}

static int add_pending(struct holder_state *h, const struct hmsg *ev, int fd)
{
	struct pending_event *p = realloc(h->pending, (h->npending + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	h->pending = p;
	p[h->npending++] = (struct pending_event){.ev = *ev, .fd = fd};
	return 0;
}

/* Events the worker has not been sent yet (its queue was full), in order. */
static bool send_pending(struct holder_state *h)
{
	for (size_t i = 0; i < h->npending; i++) {
		if (h->pending[i].sent)
			continue;
		if (send_msg(h->sock, &h->pending[i].ev) < 0)
			return false;
		h->pending[i].sent = true;
	}
	return true;
}

void fan_read_events(int group, void (*fn)(void *ctx, struct hmsg *ev), void *ctx)
{
	char buf[16384] __attribute__((aligned(8)));
	ssize_t len = read(group, buf, sizeof(buf));
	if (len <= 0)
		return;
	struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
	for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
		if (m->fd < 0)
			continue;
		struct stat st;
		const struct fan_range_info *ri = (const void *)(m + 1);
		bool has_range = m->event_len >= sizeof(*m) + sizeof(*ri) &&
				 ri->hdr.info_type == FAN_EVENT_INFO_TYPE_RANGE;
		if (!(m->mask & FAN_PRE_ACCESS) || fstat(m->fd, &st) < 0 || !has_range) {
			/* nothing we asked for: let it through untouched */
			fan_answer(group, m->fd, FAN_ALLOW);
			close(m->fd);
			continue;
		}
		struct hmsg ev = {.type = HMSG_EVENT, .evfd = m->fd, .dev = st.st_dev,
				  .ino = st.st_ino, .off = ri->offset, .count = ri->count};
		fn(ctx, &ev);
	}
}

/* Each pre-content event waits for the worker. */
static void holder_event(void *ctx, struct hmsg *ev)
{
	struct holder_state *h = ctx;
	ev->id = next_event_id++;
	if (add_pending(h, ev, ev->evfd) < 0) {
		fan_answer(h->group, ev->evfd, FAN_DENY_WITH(EIO));
		close(ev->evfd);
		return;
	}
	/* unsent ones go later; lost with a worker, the next inherits them */
	send_pending(h);
}

/* The starting client reads "KIND message" lines until every copy of
 * the pipe is closed (docs: client.c start_and_connect). */
static void status_say(struct holder_state *h, const char *kind, const char *msg)
{
	if (h->status < 0)
		return;
	char line[700];
	int n = snprintf(line, sizeof(line), "%s %s\n", kind, msg);
	(void)!write(h->status, line, (size_t)MIN(n, (int)sizeof(line) - 1));
}

static void status_done(struct holder_state *h)
{
	if (h->status >= 0)
		close(h->status);
	h->status = -1;
}

/* The keeper's copy of the kept descriptors must be whole: a worker it
 * starts writes only through them (any other descriptor of a marked file
 * would wait for its own writes). Never blocks: when the keeper's queue
 * is full, it gets the whole list again later (keeper_catch_up). */
static void keeper_tell(struct holder_state *h, const struct hmsg *m, int fd)
{
	if (h->keeper >= 0 && !h->keeper_behind && hmsg_send(h->keeper, m, fd, MSG_DONTWAIT) < 0)
		h->keeper_behind = true;
}

static void keeper_catch_up(struct holder_state *h)
{
	struct hmsg m = {.type = HMSG_KEEP_RESET};
	if (h->keeper < 0 || hmsg_send(h->keeper, &m, -1, MSG_DONTWAIT) < 0)
		return;
	for (size_t i = 0; i < h->nkept; i++) {
		m = (struct hmsg){.type = HMSG_KEEP};
		snprintf(m.tag, sizeof(m.tag), "%s", h->kept[i].tag);
		if (hmsg_send(h->keeper, &m, h->kept[i].fd, MSG_DONTWAIT) < 0)
			return; /* (the next try starts over) */
	}
	m = (struct hmsg){.type = HMSG_WORKER, .id = (uint64_t)h->worker_pid};
	if (hmsg_send(h->keeper, &m, -1, MSG_DONTWAIT) >= 0)
		h->keeper_behind = false;
}

/* One message from the worker; false when the worker is gone. */
static bool worker_message(struct holder_state *h, bool *quit, bool *drained, bool *ready)
{
	struct hmsg m;
	int fd;
	ssize_t n = hmsg_recv(h->sock, &m, &fd, MSG_DONTWAIT);
	if (n == -EAGAIN)
		return *drained = true;
	if (n <= 0)
		return false;
	switch (m.type) {
	case HMSG_ANSWER:
		for (size_t i = 0; i < h->npending; i++)
			if (h->pending[i].ev.id == m.id) {
				answer(h, i, m.response);
				break;
			}
		break;
	case HMSG_KEEP:
		if (fd < 0)
			break;
		/* the keeper keeps a copy, for a worker after us both */
		keeper_tell(h, &m, fd);
		kept_put(h, m.tag, fd);
		fd = -1;
		break;
	case HMSG_DROP:
		keeper_tell(h, &m, -1);
		kept_drop(h, m.tag);
		break;
	case HMSG_QUIT:
		*quit = true;
		break;
	case HMSG_READY:
		*ready = true;
		status_done(h);
		break;
	}
	if (fd >= 0)
		close(fd);
	return true;
}

/* A new worker starts only once the keeper knows its pid: a worker the
 * keeper does not know of could outlive a holder unstopped. */
static pid_t start_worker(struct holder_state *h)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return -errno;
	}
	if (pid == 0) {
		close(sv[0]);
		if (h->reader >= 0)
			close(h->reader); /* the reader lock stays the holder's */
		if (h->keeper >= 0)
			close(h->keeper);
		struct holder_state child = *h;
		child.sock = sv[1];
		child.reader = child.keeper = -1;
		daemon_process_setup("anole worker", 0);
		struct hmsg go;
		int fd;
		while (hmsg_recv(child.sock, &go, &fd, 0) > 0)
			if (go.type == HMSG_GO)
				serve_worker(&child);
		_exit(0); /* the holder died before saying go */
	}
	close(sv[1]);
	if (h->sock >= 0)
		close(h->sock);
	h->sock = sv[0];
	h->worker_pid = pid;
	for (size_t i = 0; i < h->npending; i++)
		h->pending[i].sent = true; /* the child has its copy */
	struct hmsg m = {.type = HMSG_WORKER, .id = (uint64_t)pid};
	keeper_tell(h, &m, -1);
	m = (struct hmsg){.type = HMSG_GO};
	hmsg_send(h->sock, &m, -1, 0);
	return pid;
}

static void start_keeper(struct holder_state *h)
{
	int sv[2];
	if (h->group < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	pid_t me = getpid(), pid = fork();
	if (pid == 0) {
		close(sv[0]);
		if (h->reader >= 0)
			close(h->reader);
		if (h->sock >= 0)
			close(h->sock);
		if (h->status >= 0)
			close(h->status);
		for (size_t i = 0; i < h->npending; i++)
			close(h->pending[i].fd);
		struct holder_state k = *h;
		k.sock = k.reader = k.status = k.keeper = -1;
		k.npending = 0;
		keeper_main(&k, -1, sv[1], me, h->worker_pid);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		daemon_log("holder", "cannot start a keeper: %s", strerror(errno));
		return;
	}
	h->keeper = sv[0];
	h->keeper_behind = false; /* (it has our list: fork copied it) */
	keeper_pid = pid;
}

/* The keeper's socket: it says nothing, so anything there is its end. */
static void keeper_gone(struct holder_state *h, double *last)
{
	struct hmsg m;
	int fd;
	ssize_t n;
	while ((n = hmsg_recv(h->keeper, &m, &fd, MSG_DONTWAIT)) > 0)
		if (fd >= 0)
			close(fd);
	if (n == -EAGAIN)
		return;
	close(h->keeper);
	h->keeper = -1;
	if (keeper_pid > 0)
		waitpid(keeper_pid, NULL, 0);
	keeper_pid = 0;
	/* one that dies at once again is not restarted in a tight loop */
	double t = now_seconds();
	if (t - *last < 1)
		usleep(200 * 1000);
	*last = now_seconds();
	daemon_log("holder", "the keeper is gone; starting another");
	start_keeper(h);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pid_file(const struct holder_state *h)
{
	char line[32];
	int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (ftruncate(h->lock, 0) < 0 || pwrite_full(h->lock, line, (size_t)len, 0) < 0)
		daemon_log("holder", "holder.pid: %s", strerror(errno));
}

/* A worker is gone: start another, unless the service ends or workers
 * cannot serve at all. Returns the new worker's pid, 0 when the service
 * ends, or -errno. */
static pid_t worker_gone(struct holder_state *h, pid_t worker, bool quit, double *starts,
			 unsigned *nstarts, unsigned *noserve, struct anole_error *err)
{
	int status = 0;
	waitpid(worker, &status, 0);
	if (quit && !h->npending)
		return 0;
	/* a worker that cannot listen and has nothing to serve: back off
	 * (0.1, 0.2, 0.4, 0.8 s), then give up */
	if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_NOSERVE) {
		if (++*noserve >= NOSERVE_TRIES) {
			daemon_log("holder", "the worker could not serve %u times (why: above); giving up",
				   *noserve);
			while (h->npending)
				answer(h, 0, FAN_DENY_WITH(EIO));
			return anole_err(err, EIO, "the anole daemon cannot serve: see its log");
		}
		usleep((100u << (*noserve - 1)) * 1000u);
	} else if (*nstarts >= CRASH_LOOP && now() - starts[*nstarts % CRASH_LOOP] < 10) {
		/* a worker that keeps dying cannot serve: fail the waiting
		 * readers (EIO, never zeros) and back off */
		daemon_log("holder", "the worker keeps failing; failing %zu reads", h->npending);
		while (h->npending)
			answer(h, 0, FAN_DENY_WITH(EIO));
		sleep(1);
	} else {
		usleep(100 * 1000);
	}
	starts[(*nstarts)++ % CRASH_LOOP] = now();
	daemon_log("holder", "worker %d ended (status %d); starting another", (int)worker, status);
	pid_t pid = start_worker(h);
	return pid < 0 ? anole_err(err, -pid, "cannot restart the worker: %s", strerror(-pid)) : pid;
}

int holder_run(struct holder_state *h, struct anole_error *err)
{
	signal(SIGPIPE, SIG_IGN);
	if (h->group >= 0) {
		/* one reader at a time, and a new one first fails what a dead
		 * one took: the kernel matches answers by descriptor number */
		if ((h->reader = daemon_lock(h->lock, DLOCK_READER, true)) < 0)
			return anole_err(err, -h->reader, "the reader lock: %s", strerror(-h->reader));
		if (!h->fresh)
			serve_deny_all(h->group);
	}
	pid_file(h);
	if (h->keeper < 0)
		start_keeper(h);
	pid_t worker = start_worker(h);
	if (worker < 0)
		return anole_err(err, -worker, "cannot start the worker: %s", strerror(-worker));
	double starts[CRASH_LOOP] = {0}, keeper_started = now_seconds();
	unsigned nstarts = 1, noserve = 0;
	starts[0] = now();
	bool quit = false;
	bool backlog = false;
	for (;;) {
		struct pollfd p[3] = {{.fd = h->group, .events = POLLIN},
				      {.fd = h->sock, .events = POLLIN | (backlog ? POLLOUT : 0)},
				      {.fd = h->keeper,
				       .events = POLLIN | (h->keeper_behind ? POLLOUT : 0)}};
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN)
			fan_read_events(h->group, holder_event, h);
		if (p[2].revents & POLLOUT)
			keeper_catch_up(h);
		if (p[2].revents & ~POLLOUT)
			keeper_gone(h, &keeper_started);
		/* everything the worker said, then what it has not been sent */
		bool alive = true, drained = false, ready = false;
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			while (alive && !drained)
				alive = worker_message(h, &quit, &drained, &ready);
		if (ready)
			noserve = 0;
		if (alive) {
			backlog = !send_pending(h);
			continue;
		}
		worker = worker_gone(h, worker, quit, starts, &nstarts, &noserve, err);
		if (worker <= 0)
			break;
		quit = false;
	}
	/* the keeper ends with us */
	struct hmsg m = {.type = HMSG_QUIT};
	if (h->keeper >= 0)
		hmsg_send(h->keeper, &m, -1, 0);
	struct serve_paths paths;
	serve_paths_init(&paths);
	_cleanup_serve_files_ struct serve_files f = {0};
	struct anole_error e = {0};
	if (serve_files_init(&f, &paths, &e) >= 0)
		unlink(f.holder_pid);
	return worker < 0 ? worker : 0;
}

/* ANOLE_DAEMON_STATUS_FD, ANOLE_DAEMON_ADOPT: descriptors from whoever
 * started us, taken out of the environment the worker passes on. */
static int env_fd(const char *name)
{
	const char *v = getenv(name);
	char *end;
	long fd = v ? strtol(v, &end, 10) : -1;
	unsetenv(name);
	return fd >= 3 && fd < DENY_ALL_FDS && !*end && fcntl((int)fd, F_GETFD) >= 0 ? (int)fd : -1;
}

/* holder.pid: the instance lock, ours alone, no symlink followed. */
static int instance_lock(const struct serve_paths *paths, struct anole_error *err)
{
	_cleanup_serve_files_ struct serve_files f = {0};
	int r = serve_files_init(&f, paths, err);
	if (r < 0)
		return r;
	const char *pidpath = f.holder_pid;
	int fd = serve_open_own(pidpath, O_RDWR | O_CREAT, 0644, err);
	if (fd < 0)
		return fd;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = DLOCK_INSTANCE,
			   .l_len = 1};
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		close(fd);
		return anole_err(err, EBUSY, "%s: another anole daemon runs", pidpath);
	}
	return fd;
}

static int daemon_start(struct holder_state *h, struct anole_error *err)
{
	struct serve_paths paths;
	serve_paths_init(&paths);
	int r = serve_paths_check(&paths, true, err);
	if (r < 0)
		return r;
	if ((h->lock = instance_lock(&paths, err)) < 0)
		return h->lock;
	/* every descriptor number stays below what serve_deny_all covers */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur > DENY_ALL_FDS) {
		rl.rlim_cur = DENY_ALL_FDS;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	h->group = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK |
					 FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS,
				 O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (h->group < 0) {
		/* no kernel path: mounts fall back to FUSE */
		snprintf(h->no_group_why, sizeof(h->no_group_why),
			 "fanotify pre-content events: %s; they need Linux 6.14+ and root",
			 strerror(errno));
		daemon_log("holder", "%s", h->no_group_why);
	}
	daemon_process_setup("anole holder", -1000);
	return holder_run(h, err);
}

int serve_daemon(struct anole_error *err)
{
	struct holder_state h = {.group = -1, .sock = -1, .keeper = -1, .lock = -1,
				 .reader = -1, .fresh = true};
	h.status = env_fd("ANOLE_DAEMON_STATUS_FD");
	int adopt = env_fd("ANOLE_DAEMON_ADOPT");
	if (adopt >= 0)
		return keeper_adopt(adopt, err);
	int r = daemon_start(&h, err);
	if (r < 0)
		status_say(&h, r == -EBUSY ? "busy" : "error", err->msg);
	return r;
}
