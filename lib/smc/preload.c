/* SPDX-License-Identifier: Apache-2.0 */
/* libanole-smc.so: the libc calls interposed for shared-memory sockets.
 * Descriptors not in the table go straight to libc; so do all calls
 * on connections that are TCP (DESIGN-smc.md, "What this slice
 * covers"). */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <stdarg.h>
#include <stdint.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "smc/preload.h"
#include "smc/rendezvous.h"

ssize_t smc_fail(ssize_t rc)
{
	if (rc < 0) {
		errno = (int)-rc;
		return -1;
	}
	return rc;
}

#define fail smc_fail

struct smc_conn *smc_conn_of(int fd)
{
	struct smc_conn *c = smc_tab_get(fd);

	return c && atomic_load(&c->state) != SMC_LISTEN ? c : NULL;
}

struct smc_conn *smc_conn_get(int fd)
{
	struct smc_conn *c = smc_tab_hold(fd);

	if (c && atomic_load(&c->state) == SMC_LISTEN) {
		smc_conn_put(c);
		return NULL;
	}
	return c;
}

/* Whether @fd is a connection of ours (looked at under a hold). */
static bool is_conn(int fd)
{
	struct smc_conn *c = smc_conn_get(fd);

	if (c)
		smc_conn_put(c);
	return c != NULL;
}

/* @rc of a call on @c, which is let go (errno kept). */
static ssize_t done(struct smc_conn *c, ssize_t rc)
{
	int e = errno;

	smc_conn_put(c);
	errno = e;
	return rc;
}

/* @fd's connection settled as far as a data call needs, held for the
 * call (close() by another thread meanwhile does not free it: the
 * call goes on as over TCP, where the file lives while a call is in
 * it); NULL if TCP. */
static struct smc_conn *conn_data(int fd, bool writing, bool may_wait)
{
	struct smc_conn *c = smc_conn_get(fd);

	if (!c)
		return NULL;
	if (atomic_load(&c->state) == SMC_CLI_PENDING)
		smc_cli_settle(c);
	else if (atomic_load(&c->state) == SMC_SRV_PENDING)
		smc_srv_settle(c, may_wait && !(fcntl(fd, F_GETFL) & O_NONBLOCK), writing);
	if (atomic_load(&c->state) == SMC_ON)
		return c;
	smc_conn_put(c);
	return NULL;
}

static void conn_unref(struct smc_conn *c);

/* A new connection: client pending, or an accepted one, which costs no
 * system call here: its addresses, proposal eventfd and pre-fork slot
 * wait until its first call needs them (DESIGN-smc.md, "Short
 * connections"). */
static void track(int fd, int state, bool server)
{
	struct smc_conn *c = smc_conn_new(fd, state, server);

	if (!c)
		return; /* stays TCP */
	/* a number reused behind our back (closed by a raw syscall) */
	struct smc_conn *old = smc_tab_take(fd);

	if (old)
		conn_unref(old);
	smc_tab_set(fd, c);
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(connect);
	int rc = real_connect(fd, addr, len);
	int e = errno;

	/* a second connect() that only asks whether a non-blocking one
	 * finished (hiredis does) keeps the connection it has */
	if ((rc == 0 || errno == EINPROGRESS) && addr && !smc_tab_get(fd) &&
	    (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
		enum smc_reason skip = smc_port_skip(addr, len);

		if (skip != SMC_R_NONE)
			smc_stat_skipped(skip);
		else if (smc_tcp_stream(fd))
			track(fd, SMC_CLI_PENDING, false);
	}
	errno = e;
	return rc;
}

/* The port @fd is bound to (0: none yet, or not IP). */
static uint16_t bound_port(int fd)
{
	struct sockaddr_storage a = {0};
	socklen_t l = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &l))
		return 0;
	if (a.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a)->sin_port);
	if (a.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
	return 0;
}

EXPORT int listen(int fd, int backlog)
{
	REAL(listen);
	bool ours = !smc_tab_get(fd) && smc_tcp_stream(fd);
	uint16_t port = ours ? bound_port(fd) : 0;
	/* the rendezvous before the kernel listens: a client that connects
	 * the moment the port accepts (a readiness probe) finds it there,
	 * instead of going TCP for good */
	int served = port ? smc_rv_serve(fd, port) : -1;
	int rc = real_listen(fd, backlog), e = errno;

	if (rc == 0 && ours) {
		if (!port && (port = bound_port(fd))) /* bound by listen() itself */
			served = smc_rv_serve(fd, port);
		smc_tab_set(fd, served ? NULL : smc_conn_new(fd, SMC_LISTEN, true));
	}
	errno = e;
	return rc;
}

static int accepted(int lfd, int fd)
{
	struct smc_conn *l = fd >= 0 ? smc_tab_hold(lfd) : NULL;

	if (l && atomic_load(&l->state) == SMC_LISTEN) {
		int e = errno;

		track(fd, SMC_SRV_PENDING, true);
		errno = e;
	}
	if (l)
		done(l, 0);
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

/* An accepted connection's first read answered by the kernel at once
 * when TCP data is there (smc_srv_first_read); true then, *@rc set. */
static bool first_read(int fd, struct msghdr *m, int flags, ssize_t *rc)
{
	struct smc_conn *c = smc_tab_hold(fd);
	bool answered = c && smc_srv_first_read(c, m, flags, rc);

	if (c)
		done(c, 0);
	return answered;
}

/* first_read for one buffer, with recvfrom's address. */
static bool first_read1(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *l,
			ssize_t *rc)
{
	struct iovec v = {buf, n};
	struct msghdr m = {.msg_name = a, .msg_namelen = a && l ? *l : 0, .msg_iov = &v, .msg_iovlen = 1};

	if (!first_read(fd, &m, flags, rc))
		return false;
	if (a && l && *rc >= 0)
		*l = m.msg_namelen;
	return true;
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	REAL(read);
	ssize_t rc;

	if (first_read1(fd, buf, n, 0, NULL, NULL, &rc))
		return rc;
	struct smc_conn *c = conn_data(fd, false, true);

	return c ? done(c, smc_recv1(c, buf, n, 0)) : real_read(fd, buf, n);
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

	return c ? done(c, smc_send1(c, buf, n, 0)) : real_write(fd, buf, n);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	REAL(recv);
	ssize_t rc;

	if (first_read1(fd, buf, n, flags, NULL, NULL, &rc))
		return rc;
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	return c ? done(c, smc_recv1(c, buf, n, flags)) : real_recv(fd, buf, n, flags);
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

	return c ? done(c, smc_send1(c, buf, n, flags)) : real_send(fd, buf, n, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *l)
{
	REAL(recvfrom);
	ssize_t rc;

	if (first_read1(fd, buf, n, flags, a, l, &rc))
		return rc;
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	if (c && l)
		*l = 0; /* a connected stream tells no source address */
	return c ? done(c, smc_recv1(c, buf, n, flags)) : real_recvfrom(fd, buf, n, flags, a, l);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t l)
{
	REAL(sendto);
	/* a connected stream ignores the address, as TCP does (sockperf
	 * passes one): with it to libc the bytes would go around the ring */
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? done(c, smc_send1(c, buf, n, flags)) : real_sendto(fd, buf, n, flags, a, l);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	REAL(readv);
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = cnt > 0 ? (size_t)cnt : 0};
	ssize_t rc;

	if (cnt > 0 && cnt <= IOV_MAX && first_read(fd, &m, 0, &rc))
		return rc;
	struct smc_conn *c = conn_data(fd, false, true);

	return c ? done(c, fail(smc_conn_recv(c, iov, cnt, 0))) : real_readv(fd, iov, cnt);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? done(c, fail(smc_conn_send(c, iov, cnt, 0))) : real_writev(fd, iov, cnt);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	REAL(recvmsg);
	ssize_t rc;

	if (first_read(fd, m, flags, &rc))
		return rc;
	struct smc_conn *c = conn_data(fd, false, !(flags & MSG_DONTWAIT));

	if (c) {
		/* no ancillary data and no address on a connected stream */
		m->msg_controllen = 0;
		m->msg_namelen = 0;
		m->msg_flags = 0;
		return done(c, fail(smc_conn_recv(c, m->msg_iov, (int)m->msg_iovlen, flags)));
	}
	return real_recvmsg(fd, m, flags);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	REAL(sendmsg);
	struct smc_conn *c = smc_conn_get(fd);

	/* ancillary data (SCM_RIGHTS) cannot go through a ring */
	if (c && (m->msg_controllen || m->msg_name) && !smc_conn_to_tcp(c))
		return done(c, fail(-EOPNOTSUPP));
	if (c)
		done(c, 0);
	c = conn_data(fd, true, false);
	return c ? done(c, fail(smc_conn_send(c, m->msg_iov, (int)m->msg_iovlen, flags)))
		 : real_sendmsg(fd, m, flags);
}

EXPORT int shutdown(int fd, int how)
{
	REAL(shutdown);
	struct smc_conn *c = conn_data(fd, true, false);

	return c ? (int)done(c, fail(smc_conn_shutdown(c, how))) : real_shutdown(fd, how);
}

/* ---- poll ---- */

enum { POLL_SMC, POLL_ARMED, POLL_PLAIN };

struct poll_plan {
	struct pollfd *big; /* what the kernel is asked */
	int *from;          /* big[k] came from fds[from[k]] ... */
	int *nsub;          /* ... fds[i]'s SMC or notify entries, if any */
	char *how;          /* fds[i] in big: POLL_SMC (not), POLL_ARMED (its
			     * nsub entries, armed), POLL_PLAIN (itself first) */
	int nbig;
};

/* The readiness of the SMC entries of @fds (connections @cs) now;
 * how many are ready. */
static int smc_ready(struct pollfd *fds, struct smc_conn **cs, nfds_t n)
{
	int ready = 0;

	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = cs[i];

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
static void poll_plan(struct poll_plan *pl, const struct pollfd *fds, struct smc_conn **cs, nfds_t n,
		      bool arm)
{
	pl->nbig = 0;
	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = cs[i];
		int st = c ? atomic_load(&c->state) : 0;

		pl->nsub[i] = 0;
		pl->how[i] = POLL_SMC;
		if (st == SMC_ON) {
			if (arm) {
				int k = smc_conn_arm(c, fds[i].events, pl->big + pl->nbig);

				for (int j = 0; j < k; j++)
					pl->from[pl->nbig++] = (int)i;
				pl->nsub[i] = k;
				pl->how[i] = POLL_ARMED;
			}
			continue;
		}
		pl->how[i] = POLL_PLAIN;
		pl->big[pl->nbig] = fds[i];
		pl->from[pl->nbig++] = (int)i;
		if (st == SMC_SRV_PENDING && smc_srv_waitfd(c) >= 0) {
			pl->big[pl->nbig] = (struct pollfd){smc_srv_waitfd(c), POLLIN, 0};
			pl->from[pl->nbig++] = (int)i;
			pl->nsub[i] = 1;
		}
	}
}

/* The kernel's answers back into @fds; true if a proposal came. */
static bool poll_merge(struct poll_plan *pl, struct pollfd *fds, struct smc_conn **cs, nfds_t n)
{
	bool again = false;
	int k = 0;

	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = cs[i];

		/* undone as planned, whatever its state now */
		if (pl->how[i] == POLL_ARMED) {
			smc_conn_disarm(c, fds[i].events, pl->big + k, pl->nsub[i]);
			k += pl->nsub[i];
			continue;
		}
		if (pl->how[i] == POLL_SMC)
			continue;
		fds[i].revents = pl->big[k++].revents;
		if (pl->nsub[i]) {
			again |= pl->big[k].revents != 0;
			k++;
		}
	}
	return again;
}

struct spin_poll {
	struct pollfd *fds;
	struct smc_conn **cs;
	nfds_t n;
};

static bool spin_poll_ready(void *arg)
{
	struct spin_poll *sp = arg;

	return smc_ready(sp->fds, sp->cs, sp->n) != 0;
}

/* Before a poll would sleep: a few shared-memory members' data may be
 * a few microseconds away (a ping-pong peer), and a sleep and wake-up
 * cost more than that. Only for small sets: each look is O(members). */
static bool poll_spin(struct pollfd *fds, struct smc_conn **cs, nfds_t n)
{
	struct spin_poll sp = {fds, cs, n};
	nfds_t smc = 0;

	for (nfds_t i = 0; i < n; i++) {
		struct smc_conn *c = cs[i];

		if (c && atomic_load(&c->state) != SMC_ON)
			return false;
		smc += c != NULL;
	}
	return smc && smc <= 8 && smc_spin_pays(NULL) && smc_spin_until(spin_poll_ready, &sp);
}

int smc_poll_fds(struct pollfd *fds, nfds_t n, int timeout, const sigset_t *mask)
{
	struct poll_plan pl;
	long end = timeout > 0 ? smc_now_ms() + timeout : 0;
	int rc = -1;
	/* held for the call: a number closed by another thread meanwhile
	 * is still this connection to it */
	struct smc_conn **cs = calloc(n + 1, sizeof(*cs));

	pl.big = calloc(n * SMC_ARM_MAX + 1, sizeof(*pl.big));
	pl.from = calloc(n * SMC_ARM_MAX + 1, sizeof(*pl.from));
	pl.nsub = calloc(n + 1, sizeof(*pl.nsub));
	pl.how = calloc(n + 1, sizeof(*pl.how));
	if (!pl.big || !pl.from || !pl.nsub || !pl.how || !cs) {
		errno = ENOMEM;
		goto out;
	}
	for (nfds_t i = 0; i < n; i++)
		cs[i] = smc_conn_get(fds[i].fd);
	for (;;) {
		int left = timeout < 0 ? -1 : timeout == 0 ? 0 : (int)(end - smc_now_ms());
		int ready, plain;

		for (nfds_t i = 0; i < n; i++)
			if (cs[i])
				smc_settle(cs[i], false);
		ready = smc_ready(fds, cs, n);
		if (!ready && timeout != 0 && poll_spin(fds, cs, n))
			ready = smc_ready(fds, cs, n);
		poll_plan(&pl, fds, cs, n, !ready);
		/* armed: look once more, a wake-up may have been missed */
		if (!ready && smc_ready(fds, cs, n))
			left = 0;
		plain = smc_kpoll(pl.big, (nfds_t)pl.nbig, ready ? 0 : left < 0 && timeout >= 0 ? 0 : left,
				  mask);
		if (plain < 0) {
			int e = errno;

			poll_merge(&pl, fds, cs, n); /* its reads must not change errno */
			errno = e;
			goto out;
		}
		bool again = poll_merge(&pl, fds, cs, n);

		rc = 0;
		smc_ready(fds, cs, n);
		for (nfds_t i = 0; i < n; i++)
			rc += fds[i].revents != 0;
		if (rc || (!again && timeout >= 0 && smc_now_ms() >= end))
			goto out;
	}
out:
	for (nfds_t i = 0; cs && i < n; i++)
		if (cs[i])
			done(cs[i], 0);
	free(cs);
	free(pl.big);
	free(pl.from);
	free(pl.nsub);
	free(pl.how);
	return rc;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	REAL(poll);
	for (nfds_t i = 0; i < n; i++)
		if (is_conn(fds[i].fd))
			return smc_poll_fds(fds, n, timeout, NULL);
	return real_poll(fds, n, timeout);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	(void)fdslen;
	return poll(fds, n, timeout);
}

static bool any_smc(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (is_conn(fds[i].fd))
			return true;
	return false;
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask)
{
	REAL(ppoll);
	if (any_smc(fds, n))
		return smc_poll_fds(fds, n, ts_ms(t), mask);
	return real_ppoll(fds, n, t, mask);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask,
		       size_t fdslen)
{
	(void)fdslen;
	return ppoll(fds, n, t, mask);
}

/* ---- select, pselect: through poll's readiness ---- */

#define SEL_IN (POLLIN | POLLRDNORM | POLLHUP | POLLERR)
#define SEL_OUT (POLLOUT | POLLWRNORM | POLLERR)

static bool in_set(const fd_set *s, int fd)
{
	return s && FD_ISSET(fd, s);
}

/* The select sets as a poll set; the count of descriptors asked. */
static nfds_t sel_plan(int n, const fd_set *r, const fd_set *w, const fd_set *e, struct pollfd *p,
		       bool *smc)
{
	nfds_t k = 0;

	for (int fd = 0; fd < n; fd++) {
		short ev = (short)((in_set(r, fd) ? POLLIN : 0) | (in_set(w, fd) ? POLLOUT : 0) |
				   (in_set(e, fd) ? POLLPRI : 0));

		if (ev) {
			p[k++] = (struct pollfd){fd, ev, 0};
			*smc |= is_conn(fd);
		}
	}
	return k;
}

/* The poll answers back into the sets, as the kernel's select says them. */
static int sel_merge(int n, fd_set *r, fd_set *w, fd_set *e, const struct pollfd *p, nfds_t k)
{
	int rc = 0;

	for (nfds_t i = 0; i < k; i++)
		if (p[i].revents & POLLNVAL) {
			errno = EBADF;
			return -1;
		}
	for (int fd = 0; fd < n; fd++) {
		if (r)
			FD_CLR(fd, r);
		if (w)
			FD_CLR(fd, w);
		if (e)
			FD_CLR(fd, e);
	}
	for (nfds_t i = 0; i < k; i++) {
		short ev = p[i].events, re = p[i].revents;

		if ((ev & POLLIN) && (re & SEL_IN) && ++rc)
			FD_SET(p[i].fd, r);
		if ((ev & POLLOUT) && (re & SEL_OUT) && ++rc)
			FD_SET(p[i].fd, w);
		if ((ev & POLLPRI) && (re & POLLPRI) && ++rc)
			FD_SET(p[i].fd, e);
	}
	return rc;
}

/* select or pselect with an SMC descriptor in a set; 1 if so (*rc set). */
static int select_smc(int n, fd_set *r, fd_set *w, fd_set *e, int ms, const sigset_t *mask, int *rc)
{
	struct pollfd *p;
	bool smc = false;
	nfds_t k;

	n = n > FD_SETSIZE ? FD_SETSIZE : n;
	p = n > 0 ? calloc((size_t)n, sizeof(*p)) : NULL;
	if (!p)
		return 0;
	k = sel_plan(n, r, w, e, p, &smc);
	if (smc) {
		*rc = smc_poll_fds(p, k, ms, mask);
		if (*rc >= 0)
			*rc = sel_merge(n, r, w, e, p, k);
	}
	free(p);
	return smc;
}

EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t)
{
	REAL(select);
	struct timespec ts = {t ? t->tv_sec : 0, t ? t->tv_usec * 1000L : 0};
	int rc;

	if (select_smc(n, r, w, e, ts_ms(t ? &ts : NULL), NULL, &rc))
		return rc;
	return real_select(n, r, w, e, t);
}

EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *mask)
{
	REAL(pselect);
	int rc;

	if (select_smc(n, r, w, e, ts_ms(t), mask, &rc))
		return rc;
	return real_pselect(n, r, w, e, t, mask);
}

/* ---- descriptor numbers: dup, close ---- */

/* The program gives up one number of @c; the last closes it. */
static void conn_unref(struct smc_conn *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (last) {
		smc_ep_forget(c);
		smc_conn_put(c);
	}
}

EXPORT int close(int fd)
{
	REAL(close);
	struct smc_conn *c = smc_tab_take(fd);

	if (c)
		conn_unref(c);
	smc_ep_closed(fd);
	return real_close(fd);
}

typedef int (*fcntl_fn)(int, int, ...);

/* libc's fcntl; @which 0 is "fcntl", 1 "fcntl64" (the same function on
 * 64-bit, reached by either name as the program was built). */
static fcntl_fn real_fcntl_of(int which)
{
	static fcntl_fn f[2];

	if (!f[which])
		f[which] = (fcntl_fn)dlsym(RTLD_NEXT, which ? "fcntl64" : "fcntl");
	return f[which];
}

static int real_dupfd(int fd, int cmd, int from)
{
	return real_fcntl_of(0)(fd, cmd, from);
}

/* @fd is about to get another number: one still pending is settled as
 * far as it can be without waiting, else made TCP (two numbers of an
 * unsettled connection would each have to agree on its fate). */
static void dup_prepare(int fd)
{
	struct smc_conn *c = smc_conn_get(fd);

	if (c) {
		smc_settle(c, false);
		smc_conn_to_tcp(c);
		done(c, 0);
	}
}

/* @nfd, a new number of @fd's socket, shares @fd's connection. */
static int dup_share(int fd, int nfd)
{
	struct smc_conn *c = nfd < 0 || nfd == fd ? NULL : smc_conn_get(fd), *old;

	if (c && atomic_load(&c->state) != SMC_ON) {
		done(c, 0);
		c = NULL;
	}
	if (!c)
		return nfd;
	pthread_mutex_lock(&c->lock);
	if (!c->refs) {
		/* its last number was closed meanwhile: nothing to share */
		pthread_mutex_unlock(&c->lock);
		done(c, 0);
		return nfd;
	}
	/* a number of the library's own, so c->fd outlives the program's */
	if (c->priv < 0) {
		c->priv = real_dupfd(fd, F_DUPFD_CLOEXEC, 0);
		if (c->priv >= 0)
			c->fd = c->priv;
	}
	c->refs++;
	pthread_mutex_unlock(&c->lock);
	old = smc_tab_take(nfd); /* a number closed behind our back */
	if (old)
		conn_unref(old);
	smc_tab_set(nfd, c);
	done(c, 0);
	return nfd;
}

/* @to is about to be closed by dup2/dup3. */
static void dup_target(int fd, int to)
{
	struct smc_conn *c = fd != to ? smc_tab_take(to) : NULL;

	if (c)
		conn_unref(c);
	if (fd != to)
		smc_ep_closed(to);
}

EXPORT int dup(int fd)
{
	REAL(dup);
	dup_prepare(fd);
	return dup_share(fd, real_dup(fd));
}

EXPORT int dup2(int fd, int to)
{
	REAL(dup2);
	if (fd == to)
		return real_dup2(fd, to);
	dup_prepare(fd);
	dup_target(fd, to);
	return dup_share(fd, real_dup2(fd, to));
}

EXPORT int dup3(int fd, int to, int flags)
{
	REAL(dup3);
	if (fd == to)
		return real_dup3(fd, to, flags); /* EINVAL */
	dup_prepare(fd);
	dup_target(fd, to);
	return dup_share(fd, real_dup3(fd, to, flags));
}

static int fcntl_any(int fd, int cmd, void *arg, fcntl_fn real)
{
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		dup_prepare(fd);
		return dup_share(fd, real(fd, cmd, (int)(intptr_t)arg));
	}
	return real(fd, cmd, arg);
}

/* glibc reads fcntl's third argument as a pointer whatever @cmd is.
 * Named by asm labels: with _FILE_OFFSET_BITS=64 the header renames
 * fcntl to fcntl64, and programs call either. */
EXPORT int smc_fcntl(int fd, int cmd, ...) __asm__("fcntl");
EXPORT int smc_fcntl64(int fd, int cmd, ...) __asm__("fcntl64");

EXPORT int smc_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_any(fd, cmd, arg, real_fcntl_of(0));
}

EXPORT int smc_fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	return fcntl_any(fd, cmd, arg, real_fcntl_of(1));
}

/* ---- ioctl: the bytes queued; the rest goes to the TCP socket ---- */

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	struct smc_conn *c;

	/* the argument first: clang's analyzer loses the va_list across
	 * REAL's lookup */
	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	REAL(ioctl);
	c = req == SIOCINQ || req == SIOCOUTQ ? conn_data(fd, false, false) : NULL;
	if (c) {
		int n = smc_conn_queued(c, req == SIOCOUTQ);

		if (n >= 0)
			*(int *)arg = n;
		return (int)done(c, fail(n < 0 ? n : 0));
	}
	return real_ioctl(fd, req, arg);
}

/* ---- epoll: epoll.c keeps the SMC members ---- */

EXPORT int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	REAL(epoll_ctl);
	int rc;

	if (smc_ep_ctl(ep, op, fd, ev, &rc))
		return rc;
	return real_epoll_ctl(ep, op, fd, ev);
}

/* ---- sendfile: the file's bytes through the ring ---- */

/* Up to @count bytes of @in from *@off (or its own offset) into @c's
 * send ring: read with pread, then sent; a short send moves the
 * offset only by what went out, so no byte is lost or sent twice. */
static ssize_t smc_sendfile(struct smc_conn *c, int in, off_t *off, size_t count)
{
	char *buf;
	size_t chunk = count < 65536 ? count : 65536;
	off_t pos = off ? *off : lseek(in, 0, SEEK_CUR);
	ssize_t n, sent;

	if (pos < 0)
		return -errno;
	if (!chunk)
		return 0;
	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	n = pread(in, buf, chunk, pos);
	sent = n > 0 ? smc_send1(c, buf, (size_t)n, 0) : n;
	if (sent < 0)
		sent = -errno;
	free(buf);
	if (sent > 0 && off)
		*off = pos + sent;
	else if (sent > 0 && lseek(in, pos + sent, SEEK_SET) < 0)
		return -errno;
	return sent;
}

typedef ssize_t (*sendfile_fn)(int, int, off_t *, size_t);

/* Named by asm labels as fcntl is: with _FILE_OFFSET_BITS=64 the
 * header renames sendfile to sendfile64 (the same function on 64-bit). */
EXPORT ssize_t smc_sendfile_(int out, int in, off_t *off, size_t count) __asm__("sendfile");
EXPORT ssize_t smc_sendfile64(int out, int in, off_t *off, size_t count) __asm__("sendfile64");

static ssize_t sendfile_any(int out, int in, off_t *off, size_t count, int which)
{
	static sendfile_fn real[2];
	struct smc_conn *c = conn_data(out, true, false);

	if (c)
		return done(c, fail(smc_sendfile(c, in, off, count)));
	if (!real[which])
		real[which] = (sendfile_fn)dlsym(RTLD_NEXT, which ? "sendfile64" : "sendfile");
	return real[which] ? real[which](out, in, off, count) : fail(-ENOSYS);
}

EXPORT ssize_t smc_sendfile_(int out, int in, off_t *off, size_t count)
{
	return sendfile_any(out, in, off, count, 0);
}

EXPORT ssize_t smc_sendfile64(int out, int in, off_t *off, size_t count)
{
	return sendfile_any(out, in, off, count, 1);
}
