/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's link to the fanotify holder: messages to it, the events
 * it hands over and their answers, and what the worker does when the
 * holder (and maybe its keeper) dies: start a keeper, or read the
 * group's events itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serve/fan.h"
#include "serve/worker.h"

void holder_send(struct worker *wk, const struct hmsg *m, int fd)
{
	pthread_mutex_lock(&wk->send_lock);
	int r = hmsg_send(wk->holder, m, fd, 0);
	pthread_mutex_unlock(&wk->send_lock);
	if (r < 0)
		wlog("holder: %s", strerror(-r));
}

/* The holder may close its copy of the cache file descriptor @tag. */
void holder_drop(struct worker *wk, const char *tag)
{
	struct hmsg m = {.type = HMSG_DROP};
	snprintf(m.tag, sizeof(m.tag), "%s", tag);
	holder_send(wk, &m, -1);
}

static void pend_add(struct worker *wk, uint64_t id, int evfd, bool close_it)
{
	if (wk->npend == wk->pend_cap) {
		size_t cap = wk->pend_cap ? 2 * wk->pend_cap : 64;
		struct pend *p = realloc(wk->pend, cap * sizeof(*p));
		if (!p)
			return; /* answered through the holder all the same */
		wk->pend = p;
		wk->pend_cap = cap;
	}
	wk->pend[wk->npend++] = (struct pend){.id = id, .evfd = evfd, .close_it = close_it};
}

void answer_event(struct worker *wk, uint64_t id, bool ok)
{
	uint32_t response = ok ? FAN_ALLOW : FAN_DENY_WITH(EIO);
	struct pend p = {.id = id, .evfd = -1};
	for (size_t i = 0; i < wk->npend; i++)
		if (wk->pend[i].id == id) {
			p = wk->pend[i];
			wk->pend[i] = wk->pend[--wk->npend];
			break;
		}
	if (wk->direct) {
		if (p.evfd >= 0) {
			fan_answer(wk->group, p.evfd, response);
			if (p.close_it)
				close(p.evfd);
		}
	} else {
		struct hmsg m = {.type = HMSG_ANSWER, .id = id, .response = response};
		holder_send(wk, &m, -1);
	}
	if (wk->count.npending_events)
		wk->count.npending_events--;
	if (!ok)
		wk->count.denied++;
}

static void on_event(struct worker *wk, const struct hmsg *ev)
{
	pthread_mutex_lock(&wk->lock);
	wk->count.events++;
	wk->count.npending_events++;
	struct blob *b = NULL;
	for (struct blob *x = wk->blobs; x; x = x->next)
		if (x->dev == ev->dev && x->ino == ev->ino && !x->orphan)
			b = x;
	if (!b) {
		/* not ours to fill: a read of a hole must fail, not see zeros */
		wlog("event for unknown file %llu:%llu; failing the read",
		     (unsigned long long)ev->dev, (unsigned long long)ev->ino);
		answer_event(wk, ev->id, false);
	} else if (b->complete || !ev->count || ev->off >= b->size) {
		answer_event(wk, ev->id, true);
	} else {
		note_read_locked(wk, b, ev->off, ev->count);
		wait_for(wk, b, ev->id, ev->off, ev->count);
		hints_on_read(wk, b, ev->off, ev->count);
	}
	pthread_mutex_unlock(&wk->lock);
}

static void direct_event(void *ctx, struct hmsg *ev)
{
	struct worker *wk = ctx;
	pthread_mutex_lock(&wk->lock);
	ev->id = wk->direct_ids++;
	pend_add(wk, ev->id, ev->evfd, true);
	pthread_mutex_unlock(&wk->lock);
	on_event(wk, ev);
}

/* Alone with the group (no keeper could be started): the marks stay as
 * long as we live. Become the reader: a dead one's events are failed
 * (EIO) first, by their descriptor numbers, then read events here. */
static void take_over(struct worker *wk)
{
	int rd = daemon_lock(wk->inherited.lock, DLOCK_READER, true);
	if (rd < 0)
		wlog("the reader lock: %s", strerror(-rd));
	pthread_mutex_lock(&wk->lock);
	wk->direct = true;
	size_t n = wk->npend;
	serve_deny_all(wk->group);
	wk->npend = 0;
	wk->count.denied += n;
	wk->count.npending_events -= MIN(wk->count.npending_events, n);
	pthread_mutex_unlock(&wk->lock);
	wlog("serving events here; %zu waiting reads failed. A worker crash can no longer be "
	     "survived: remount when convenient",
	     n);
	for (;;) {
		struct pollfd p = {.fd = wk->group, .events = POLLIN};
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			_exit(1);
		if (p.revents & POLLIN)
			fan_read_events(wk->group, direct_event, wk);
	}
}

/* The environment of an exec'd keeper: ours, plus where its socket is. */
static char **adopt_env(int fd)
{
	extern char **environ;
	size_t n = 0;
	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "ANOLE_DAEMON_", 13))
			env[k++] = environ[i];
	static char var[64];
	snprintf(var, sizeof(var), "ANOLE_DAEMON_ADOPT=%d", fd);
	env[k] = var;
	return env;
}

/* Our holder and its keeper are both gone: start `anole daemon` as a new
 * keeper, hand it the group, the locks and the cache files' descriptors
 * over a socket, and let it start the rest. 0 once it took over. */
static int start_keeper(struct worker *wk, int keeper_lock)
{
	int sv[2];
	_cleanup_free_ char **env = NULL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	/* (the child only calls what is safe after fork in a threaded process) */
	if (!(env = adopt_env(3))) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	char *argv[] = {"anole", "daemon", NULL};
	pid_t pid = fork();
	if (pid == 0) {
		int fd = sv[1] == 3 ? 3 : dup2(sv[1], 3);
		if (fd == 3 && fcntl(3, F_SETFD, 0) == 0 && close_range(4, ~0u, 0) == 0)
			execve("/proc/self/exe", argv, env);
		_exit(127);
	}
	close(sv[1]);
	int r = pid < 0 ? -errno : 0;
	struct hmsg m = {.type = HMSG_ADOPT_GROUP};
	if (r >= 0)
		r = hmsg_send(sv[0], &m, wk->group, 0);
	m.type = HMSG_ADOPT_LOCK;
	if (r >= 0)
		r = hmsg_send(sv[0], &m, wk->inherited.lock, 0);
	m.type = HMSG_ADOPT_KEEPER;
	if (r >= 0)
		r = hmsg_send(sv[0], &m, keeper_lock, 0);
	pthread_mutex_lock(&wk->lock);
	for (struct blob *b = wk->blobs; b && r >= 0; b = b->next)
		if (!b->complete && b->fd >= 0) {
			m = (struct hmsg){.type = HMSG_KEEP};
			snprintf(m.tag, sizeof(m.tag), "%s", b->digest);
			r = hmsg_send(sv[0], &m, b->fd, 0);
		}
	pthread_mutex_unlock(&wk->lock);
	m = (struct hmsg){.type = HMSG_ADOPT_DONE, .id = (uint64_t)getpid()};
	if (r >= 0)
		r = hmsg_send(sv[0], &m, -1, 0);
	int fd = -1;
	if (r >= 0 && (hmsg_recv(sv[0], &m, &fd, 0) <= 0 || m.type != HMSG_READY))
		r = -EPIPE;
	if (fd >= 0)
		close(fd);
	close(sv[0]);
	if (pid > 0 && r < 0)
		waitpid(pid, NULL, 0);
	return r;
}

/* The holder is gone. A keeper that lives stops us and starts a new
 * holder, which starts a new worker: we go. When it is gone too, we are
 * the last holder of the group: start a keeper in our place, or, if
 * that fails, serve alone. */
static void holder_gone(struct worker *wk)
{
	if (wk->group < 0) {
		wlog("the holder is gone; exiting");
		_exit(1);
	}
	/* A live keeper stops us (pidfd) and starts a new holder. Its lock
	 * held says only that it was alive a moment ago: killed with the
	 * holder, it may be dying now, and a worker that left as well would
	 * let the group, and with it the marks, go. So wait for the lock:
	 * either the keeper kills us first, or it is dead and we act. */
	int keeper = daemon_lock(wk->inherited.lock, DLOCK_KEEPER, false);
	if (keeper == -EAGAIN) {
		wlog("the holder is gone; waiting for the keeper to restart the daemon");
		keeper = daemon_lock(wk->inherited.lock, DLOCK_KEEPER, true);
	}
	if (keeper < 0) {
		wlog("the holder is gone and the keeper lock fails (%s); exiting", strerror(-keeper));
		_exit(1);
	}
	int r = start_keeper(wk, keeper);
	if (r >= 0) {
		wlog("the holder and the keeper are gone; a new keeper restarts the daemon");
		_exit(0);
	}
	wlog("the holder and the keeper are gone and no keeper could be started (%s)",
	     strerror(-r));
	take_over(wk); /* (keeps the keeper lock: nobody else may act) */
}

static void *event_loop(void *arg)
{
	struct worker *wk = arg;
	for (;;) {
		struct hmsg m;
		ssize_t n = recv(wk->holder, &m, sizeof(m), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			holder_gone(wk);
		if (n == (ssize_t)sizeof(m) && m.type == HMSG_EVENT) {
			pthread_mutex_lock(&wk->lock);
			pend_add(wk, m.id, m.evfd, false);
			pthread_mutex_unlock(&wk->lock);
			on_event(wk, &m);
		}
	}
	return NULL;
}

/* Answer the events the holder handed an earlier worker, then read the
 * holder's from a thread of their own. */
int holder_link_start(struct worker *wk, const struct holder_state *h)
{
	for (size_t i = 0; i < h->npending; i++) {
		pthread_mutex_lock(&wk->lock);
		pend_add(wk, h->pending[i].ev.id, h->pending[i].fd, false);
		pthread_mutex_unlock(&wk->lock);
		on_event(wk, &h->pending[i].ev);
	}
	pthread_t t;
	return pthread_create(&t, NULL, event_loop, wk) ? -EAGAIN : 0;
}
