/* SPDX-License-Identifier: Apache-2.0 */
/* libanole-smc.so: the libc calls interposed for shared-memory sockets.
 * Descriptors not in the table go straight to libc; so do all calls
 * on connections that are TCP (DESIGN-smc.md, "What this slice
 * covers"). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smc/conn.h"

#define EXPORT __attribute__((visibility("default")))

/* libc's own function @name (the next definition after ours). */
#define REAL(name)                                                                                 \
	static __typeof__(name) *real_##name;                                                      \
	if (!real_##name)                                                                          \
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static ssize_t fail(ssize_t rc)
{
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	return rc;
}

/* The connection of @fd if it is (or may become) shared memory. */
static struct smc_conn *conn_of(int fd)
{
	struct smc_conn *c = smc_tab_get(fd);

	return c && atomic_load(&c->state) != SMC_LISTEN ? c : NULL;
}

/* @fd's connection settled as far as a data call needs; NULL if TCP. */
static struct smc_conn *conn_data(int fd, bool writing, bool may_wait)
{
	struct smc_conn *c = conn_of(fd);

	if (!c)
		return NULL;
	if (atomic_load(&c->state) == SMC_CLI_PENDING)
		smc_cli_settle(c);
	else if (atomic_load(&c->state) == SMC_SRV_PENDING)
		smc_srv_settle(c, may_wait && !(fcntl(fd, F_GETFL) & O_NONBLOCK), writing);
	return atomic_load(&c->state) == SMC_ON ? c : NULL;
}

static bool tcp_stream(int fd)
{
	int type = 0, dom = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(dom);

	return !getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) && type == SOCK_STREAM &&
	       !getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l2) && (dom == AF_INET || dom == AF_INET6);
}

static void track(int fd, int state, bool server)
{
	struct smc_conn *c = smc_conn_new(fd, state, server);

	if (!c)
		return; /* stays TCP */
	if (server) {
		pthread_mutex_lock(&smc_srv_lock);
		if (smc_tuple_of(fd, &c->tuple) == 0)
			c->notify = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->notify < 0) {
			pthread_mutex_unlock(&smc_srv_lock);
			smc_conn_free(c);
			return;
		}
		smc_srv_add(c);
		pthread_mutex_unlock(&smc_srv_lock);
	}
	/* a number reused behind our back (closed by a raw syscall) */
	struct smc_conn *old = smc_tab_take(fd);

	if (old)
		smc_conn_close(old);
	smc_tab_set(fd, c);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(connect);
	int rc = real_connect(fd, addr, len);
	int e = errno;

	if ((rc == 0 || errno == EINPROGRESS) && addr &&
	    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) && tcp_stream(fd))
		track(fd, SMC_CLI_PENDING, false);
	errno = e;
	return rc;
}

EXPORT int listen(int fd, int backlog)
{
	REAL(listen);
	struct sockaddr_storage a;
	socklen_t l = sizeof(a);
	int rc = real_listen(fd, backlog), e = errno;

	if (rc == 0 && !smc_tab_get(fd) && tcp_stream(fd) &&
	    !getsockname(fd, (struct sockaddr *)&a, &l)) {
		uint16_t port = a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
						       : ((struct sockaddr_in6 *)&a)->sin6_port;
		struct smc_conn *c = smc_rv_serve(fd, ntohs(port)) ? NULL : smc_conn_new(fd, SMC_LISTEN, true);

		smc_tab_set(fd, c);
	}
	errno = e;
	return rc;
}

static int accepted(int lfd, int fd)
{
	struct smc_conn *l = smc_tab_get(lfd);

	if (fd >= 0 && l && atomic_load(&l->state) == SMC_LISTEN) {
		int e = errno;

		track(fd, SMC_SRV_PENDING, true);
		errno = e;
	}
	return fd;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	REAL(accept);
	return accepted(fd, real_accept(fd, addr, len));
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	REAL(accept4);
	return accepted(fd, real_accept4(fd, addr, len, flags));
}

/* ---- data ---- */

static ssize_t smc_send1(struct smc_conn *c, const void *buf, size_t n, int flags)
{
	struct iovec v = {(void *)buf, n};

	return fail(smc_conn_send(c, &v, 1, flags));
}

static ssize_t smc_recv1(struct smc_conn *c, void *buf, size_t n, int flags)
{
	struct iovec v = {buf, n};

	return fail(smc_conn_recv(c, &v, 1, flags));
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	REAL(read);
	struct smc_conn *c = conn_data(fd, false, true);

	return c ? smc_recv1(c, buf, n, 0) : real_read(fd, buf, n);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	(void)buflen;
	return read(fd, buf, n);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(write);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? smc_send1(c, buf, n, 0) : real_write(fd, buf, n);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	REAL(recv);
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	return c ? smc_recv1(c, buf, n, flags) : real_recv(fd, buf, n, flags);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	(void)buflen;
	return recv(fd, buf, n, flags);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	REAL(send);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? smc_send1(c, buf, n, flags) : real_send(fd, buf, n, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *l)
{
	REAL(recvfrom);
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	if (c && l)
		*l = 0; /* a connected stream tells no source address */
	return c ? smc_recv1(c, buf, n, flags) : real_recvfrom(fd, buf, n, flags, a, l);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t l)
{
	REAL(sendto);
	/* a connected stream ignores the address, as TCP does (sockperf
	 * passes one): with it to libc the bytes would go around the ring */
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? smc_send1(c, buf, n, flags) : real_sendto(fd, buf, n, flags, a, l);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	REAL(readv);
	struct smc_conn *c = conn_data(fd, false, true);

	return c ? fail(smc_conn_recv(c, iov, cnt, 0)) : real_readv(fd, iov, cnt);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? fail(smc_conn_send(c, iov, cnt, 0)) : real_writev(fd, iov, cnt);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	REAL(recvmsg);
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	if (c) {
		/* no ancillary data and no address on a connected stream */
		m->msg_controllen = 0;
		m->msg_namelen = 0;
		m->msg_flags = 0;
		return fail(smc_conn_recv(c, m->msg_iov, (int)m->msg_iovlen, flags));
	}
	return real_recvmsg(fd, m, flags);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	REAL(sendmsg);
	struct smc_conn *c = conn_of(fd);

	/* ancillary data (SCM_RIGHTS) cannot go through a ring */
	if (c && (m->msg_controllen || m->msg_name) && !smc_conn_to_tcp(c))
		return fail(-EOPNOTSUPP);
	c = conn_data(fd, true, false);
	return c ? fail(smc_conn_send(c, m->msg_iov, (int)m->msg_iovlen, flags))
		 : real_sendmsg(fd, m, flags);
}

EXPORT int shutdown(int fd, int how)
{
	REAL(shutdown);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? (int)fail(smc_conn_shutdown(c, how)) : real_shutdown(fd, how);
}

EXPORT int close(int fd)
{
	REAL(close);
	struct smc_conn *c = smc_tab_take(fd);

	if (c)
		smc_conn_close(c);
	return real_close(fd);
}

/* ---- poll ---- */

struct poll_plan {
	struct pollfd *big; /* what the kernel is asked */
	int *from;          /* big[k] came from fds[from[k]] ... */
	int *nsub;          /* ... fds[i]'s SMC or notify entries, if any */
	int nbig;
};

/* The readiness of the SMC entries of @fds now; how many are ready. */
static int smc_ready(struct pollfd *fds, nfds_t n)
{
	int ready = 0;

	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = conn_of(fds[i].fd);

		if (c && atomic_load(&c->state) == SMC_ON) {
			fds[i].revents = smc_conn_revents(c, fds[i].events);
			ready += fds[i].revents != 0;
		}
	}
	return ready;
}

/* The kernel's poll set: plain descriptors as they are, an SMC one as
 * its wake-up descriptors (armed only if nothing is ready), a pending
 * server one as itself plus its proposal eventfd. */
static void poll_plan(struct poll_plan *pl, const struct pollfd *fds, nfds_t n, bool arm)
{
	pl->nbig = 0;
	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = conn_of(fds[i].fd);
		int st = c ? atomic_load(&c->state) : 0;

		pl->nsub[i] = 0;
		if (st == SMC_ON) {
			if (arm) {
				int k = smc_conn_arm(c, fds[i].events, pl->big + pl->nbig);

				for (int j = 0; j < k; j++)
					pl->from[pl->nbig++] = (int)i;
				pl->nsub[i] = k;
			}
			continue;
		}
		pl->big[pl->nbig] = fds[i];
		pl->from[pl->nbig++] = (int)i;
		if (st == SMC_SRV_PENDING && c->notify >= 0) {
			pl->big[pl->nbig] = (struct pollfd){c->notify, POLLIN, 0};
			pl->from[pl->nbig++] = (int)i;
			pl->nsub[i] = 1;
		}
	}
}

/* The kernel's answers back into @fds; true if a proposal came. */
static bool poll_merge(struct poll_plan *pl, struct pollfd *fds, nfds_t n)
{
	bool again = false;
	int k = 0;

	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = conn_of(fds[i].fd);

		if (c && atomic_load(&c->state) == SMC_ON) {
			if (pl->nsub[i])
				smc_conn_disarm(c, pl->big + k, pl->nsub[i]);
			k += pl->nsub[i];
			continue;
		}
		fds[i].revents = pl->big[k++].revents;
		if (pl->nsub[i]) {
			again |= pl->big[k].revents != 0;
			k++;
		}
	}
	return again;
}

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static int poll_smc(struct pollfd *fds, nfds_t n, int timeout)
{
	REAL(poll);
	struct poll_plan pl;
	long end = timeout > 0 ? now_ms() + timeout : 0;
	int rc = -1;

	pl.big = calloc(n * 3 + 1, sizeof(*pl.big));
	pl.from = calloc(n * 3 + 1, sizeof(*pl.from));
	pl.nsub = calloc(n + 1, sizeof(*pl.nsub));
	if (!pl.big || !pl.from || !pl.nsub) {
		errno = ENOMEM;
		goto out;
	}
	for (;;) {
		int left = timeout < 0 ? -1 : timeout == 0 ? 0 : (int)(end - now_ms());
		int ready, plain;

		for (nfds_t i = 0; i < n; i++) {
			struct smc_conn *c = conn_of(fds[i].fd);

			if (c)
				smc_settle(c, false);
		}
		ready = smc_ready(fds, n);
		poll_plan(&pl, fds, n, !ready);
		/* armed: look once more, a wake-up may have been missed */
		if (!ready && smc_ready(fds, n))
			left = 0;
		plain = real_poll(pl.big, (nfds_t)pl.nbig, ready ? 0 : left < 0 && timeout >= 0 ? 0 : left);
		if (plain < 0) {
			poll_merge(&pl, fds, n);
			goto out;
		}
		bool again = poll_merge(&pl, fds, n);

		rc = 0;
		smc_ready(fds, n);
		for (nfds_t i = 0; i < n; i++)
			rc += fds[i].revents != 0;
		if (rc || (!again && timeout >= 0 && now_ms() >= end))
			goto out;
	}
out:
	free(pl.big);
	free(pl.from);
	free(pl.nsub);
	return rc;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	REAL(poll);
	for (nfds_t i = 0; i < n; i++)
		if (conn_of(fds[i].fd))
			return poll_smc(fds, n, timeout);
	return real_poll(fds, n, timeout);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	(void)fdslen;
	return poll(fds, n, timeout);
}

/* ---- not handled yet: a pending connection becomes TCP first ---- */

/* @fd may go to a call the slice does not handle: 0, or -1 with
 * EOPNOTSUPP if it is already in shared memory (one line said). */
static int unsupported(int fd, const char *call)
{
	struct smc_conn *c = conn_of(fd);

	if (!c || smc_conn_to_tcp(c))
		return 0;
	fprintf(stderr, "anole-smc: %s on a shared-memory socket is not supported yet\n", call);
	errno = EOPNOTSUPP;
	return -1;
}

EXPORT int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	REAL(epoll_ctl);
	if (op != EPOLL_CTL_DEL && unsupported(fd, "epoll"))
		return -1;
	return real_epoll_ctl(ep, op, fd, ev);
}

EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{
	REAL(select);
	for (int fd = 0; fd < n && fd < FD_SETSIZE; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) &&
		    unsupported(fd, "select"))
			return -1;
	return real_select(n, r, w, e, t);
}

EXPORT int dup(int fd)
{
	REAL(dup);
	return unsupported(fd, "dup") ? -1 : real_dup(fd);
}

EXPORT int dup2(int fd, int to)
{
	REAL(dup2);
	struct smc_conn *c;

	if (fd != to && unsupported(fd, "dup2"))
		return -1;
	c = fd != to ? smc_tab_take(to) : NULL;
	if (c)
		smc_conn_close(c);
	return real_dup2(fd, to);
}

EXPORT int dup3(int fd, int to, int flags)
{
	REAL(dup3);
	struct smc_conn *c;

	if (unsupported(fd, "dup3"))
		return -1;
	c = fd != to ? smc_tab_take(to) : NULL;
	if (c)
		smc_conn_close(c);
	return real_dup3(fd, to, flags);
}
