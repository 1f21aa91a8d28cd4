/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The holder: the process that owns the fanotify group. It must outlive
 * any worker crash, so it does as little as it can: read events, pass them
 * on, answer them as told, keep descriptors, restart the worker.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/fan.h"
#include "serve/serve.h"
#include "util/util.h"

/* this many worker starts within 10 s is a crash loop */
#define CRASH_LOOP 10

static uint64_t next_event_id = 1;

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

static void keep_fd(struct holder_state *h, const struct hmsg *m, int fd)
{
	for (size_t i = 0; i < h->nkept; i++)
		if (!strcmp(h->kept[i].tag, m->tag)) {
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
	snprintf(k[h->nkept].tag, sizeof(k->tag), "%s", m->tag);
	k[h->nkept++].fd = fd;
}

static void drop_fd(struct holder_state *h, const char *tag)
{
	for (size_t i = 0; i < h->nkept; i++)
		if (!strcmp(h->kept[i].tag, tag)) {
			close(h->kept[i].fd);
			h->kept[i] = h->kept[--h->nkept];
			return;
		}
}

/* One message from the worker; false when the worker is gone. */
static bool worker_message(struct holder_state *h, bool *quit, bool *drained)
{
	struct hmsg m;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(h->sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && errno == EAGAIN)
		return *drained = true;
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	int fd = -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	if (n != (ssize_t)sizeof(m)) {
		if (fd >= 0)
			close(fd);
		return true;
	}
	m.tag[sizeof(m.tag) - 1] = 0;
	switch (m.type) {
	case HMSG_ANSWER:
		for (size_t i = 0; i < h->npending; i++)
			if (h->pending[i].ev.id == m.id) {
				answer(h, i, m.response);
				break;
			}
		break;
	case HMSG_KEEP:
		if (fd >= 0)
			keep_fd(h, &m, fd);
		fd = -1;
		break;
	case HMSG_DROP:
		drop_fd(h, m.tag);
		break;
	case HMSG_QUIT:
		*quit = true;
		break;
	}
	if (fd >= 0)
		close(fd);
	return true;
}

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
		struct holder_state child = *h;
		child.sock = sv[1];
		serve_worker(&child);
	}
	close(sv[1]);
	if (h->sock >= 0)
		close(h->sock);
	h->sock = sv[0];
	for (size_t i = 0; i < h->npending; i++)
		h->pending[i].sent = true; /* the child has its copy */
	return pid;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int serve_daemon(struct anole_error *err)
{
	struct serve_paths paths;
	serve_paths_init(&paths);
	if (mkdir(paths.runtime, 0700) < 0 && errno != EEXIST)
		return anole_err(err, errno, "%s: %s", paths.runtime, strerror(errno));
	char pidpath[600];
	snprintf(pidpath, sizeof(pidpath), "%s/holder.pid", paths.runtime);
	_cleanup_close_ int lock = open(pidpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock < 0)
		return anole_err(err, errno, "%s: %s", pidpath, strerror(errno));
	if (lockf(lock, F_TLOCK, 0) < 0)
		return anole_err(err, EBUSY, "%s: another anole daemon runs", pidpath);
	char line[32];
	int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (ftruncate(lock, 0) < 0 || pwrite_full(lock, line, (size_t)len, 0) < 0)
		return anole_err(err, errno, "%s: cannot write", pidpath);

	struct holder_state h = {.sock = -1};
	h.group = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK |
					FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS,
				O_RDONLY | O_LARGEFILE | O_CLOEXEC);
	if (h.group < 0) {
		/* no kernel path: mounts fall back to FUSE */
		snprintf(h.no_group_why, sizeof(h.no_group_why),
			 "fanotify pre-content events: %s; they need Linux 6.14+ and root",
			 strerror(errno));
		fprintf(stderr, "anole daemon: %s\n", h.no_group_why);
	}
	signal(SIGPIPE, SIG_IGN);
	pid_t worker = start_worker(&h);
	if (worker < 0)
		return anole_err(err, -worker, "cannot start the worker: %s", strerror(-worker));
	double starts[CRASH_LOOP] = {0};
	unsigned nstarts = 1;
	starts[0] = now();
	bool quit = false;
	bool backlog = false;
	for (;;) {
		struct pollfd p[2] = {{.fd = h.group, .events = POLLIN},
				      {.fd = h.sock, .events = POLLIN | (backlog ? POLLOUT : 0)}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN)
			fan_read_events(h.group, holder_event, &h);
		/* everything the worker said, then what it has not been sent */
		bool alive = true, drained = false;
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
			while (alive && !drained)
				alive = worker_message(&h, &quit, &drained);
		if (alive) {
			backlog = !send_pending(&h);
			continue;
		}
		/* the worker is gone */
		int status;
		waitpid(worker, &status, 0);
		if (quit && !h.npending)
			break;
		quit = false;
		/* a worker that keeps dying cannot serve: fail the waiting
		 * readers (EIO, never zeros) and back off */
		if (nstarts >= CRASH_LOOP && now() - starts[nstarts % CRASH_LOOP] < 10) {
			fprintf(stderr, "anole daemon: the worker keeps failing; failing %zu reads\n",
				h.npending);
			while (h.npending)
				answer(&h, 0, FAN_DENY_WITH(EIO));
			sleep(1);
		} else {
			usleep(100 * 1000);
		}
		starts[nstarts++ % CRASH_LOOP] = now();
		fprintf(stderr, "anole daemon: worker %d ended (status %d); starting another\n",
			(int)worker, status);
		if ((worker = start_worker(&h)) < 0)
			return anole_err(err, -worker, "cannot restart the worker: %s",
					 strerror(-worker));
	}
	unlink(pidpath);
	return 0;
}
