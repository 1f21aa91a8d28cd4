/* SPDX-License-Identifier: Apache-2.0 */
/* The rendezvous thread: takes proposals for this process's listeners
 * and queues them for the connection's first operation, or declines
 * those for connections already committed to TCP (DESIGN-smc.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "smc/conn.h"
#include "smc/fork.h"
#include "smc/rendezvous.h"

#define SMC_LISTENERS 64

static pthread_mutex_t lst_lock = PTHREAD_MUTEX_INITIALIZER;
static int lst[SMC_LISTENERS];
static uint16_t lst_port[SMC_LISTENERS];
static int nlst;
static int wake = -1;
static bool started;
static pthread_mutex_t inbox_lock = PTHREAD_MUTEX_INITIALIZER;

/* The addresses this process's TCP listeners are bound to, per port
 * (under lst_lock): a proposal for another address on the same port is
 * not ours. A wildcard (or more than SMC_BOUND addresses) leaves it to
 * whether the address is this network namespace's. */
#define SMC_BOUND 4
static struct bound {
	uint16_t port;
	bool any;
	int n;
	struct sockaddr_storage a[SMC_BOUND];
} bound[SMC_LISTENERS];
static int nbound;

static bool addr_wildcard(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
	return a->ss_family != AF_INET6 ||
	       IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* TCP listener @fd on @port: its address remembered. */
static void bound_add(int fd, uint16_t port)
{
	struct sockaddr_storage a = {0};
	socklen_t len = sizeof(a);
	struct bound *b = NULL;

	if (getsockname(fd, (struct sockaddr *)&a, &len))
		memset(&a, 0, sizeof(a)); /* unknown: as a wildcard */
	pthread_mutex_lock(&lst_lock);
	for (int i = 0; i < nbound && !b; i++)
		if (bound[i].port == port)
			b = &bound[i];
	if (!b && nbound < SMC_LISTENERS) {
		b = &bound[nbound++];
		*b = (struct bound){.port = port};
	}
	if (b && (addr_wildcard(&a) || b->n == SMC_BOUND))
		b->any = true;
	else if (b)
		b->a[b->n++] = a;
	pthread_mutex_unlock(&lst_lock);
}

static void decline(int sock)
{
	smc_clc_send(sock, SMC_CLC_DECLINE, 0, NULL, 0);
	close(sock);
}

void smc_proposal_drop(struct smc_proposal *p, bool decline_it)
{
	if (p->sock >= 0 && decline_it)
		smc_clc_send(p->sock, SMC_CLC_DECLINE, 0, NULL, 0);
	if (p->sock >= 0)
		close(p->sock);
	if (p->tcp >= 0)
		close(p->tcp);
	free(p);
}

static bool sock_readable(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};

	return smc_poll(&p, 1, 0) > 0;
}

/* Queued, not ours, and either accepted by a forked child (forward it)
 * or given up by its client (WITHDRAW or EOF: drop it). Under
 * smc_srv_lock. */
static bool for_child_or_stale(struct smc_proposal *p)
{
	if (smc_srv_find(&p->tuple))
		return false;
	p->token = smc_fork_lookup(&p->tuple);
	return p->token || sock_readable(p->sock);
}

/* Hands the queued proposals of children's connections on, drops the
 * stale ones; the count left waiting goes where children see it. */
static void forward_queued(void)
{
	for (;;) {
		struct smc_proposal *p;

		pthread_mutex_lock(&smc_srv_lock);
		p = smc_srv_dequeue_if(for_child_or_stale);
		smc_fork_set_waiting(smc_srv_nqueued());
		pthread_mutex_unlock(&smc_srv_lock);
		if (!p)
			return;
		smc_proposal_drop(p, !p->token || smc_fork_forward(p->token, p->sock, p->tcp));
	}
}

/* @p for connection @c of this process: queued, its reader woken;
 * false if it must be declined. Under smc_srv_lock. */
static bool queue_local(struct smc_conn *c, struct smc_proposal *p)
{
	if ((c && atomic_load(&c->state) != SMC_SRV_PENDING) || !smc_srv_queue(p))
		return false;
	smc_fork_set_waiting(smc_srv_nqueued());
	if (c && c->notify >= 0) {
		uint64_t one = 1;

		if (write(c->notify, &one, sizeof(one)) < 0) {
			/* already signalled */
		}
	}
	return true;
}

/* Whether @a, the address a client connected to, is one of this
 * network namespace's. Loopback needs no look; else a datagram socket
 * bound to it says (EADDRNOTAVAIL: not ours). */
static bool addr_is_local(const struct sockaddr_storage *a)
{
	struct sockaddr_storage b = *a;
	socklen_t len;
	int fd;
	bool local;

	if (a->ss_family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&b;

		if (ntohl(s->sin_addr.s_addr) >> 24 == 127)
			return true;
		s->sin_port = 0;
		len = sizeof(*s);
	} else if (a->ss_family == AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&b;

		if (IN6_IS_ADDR_LOOPBACK(&s->sin6_addr) ||
		    (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr) && s->sin6_addr.s6_addr[12] == 127))
			return true;
		s->sin6_port = 0;
		len = sizeof(*s);
	} else {
		return true; /* not ours to judge: the usual way */
	}
	fd = socket(a->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	local = bind(fd, (struct sockaddr *)&b, len) == 0 || errno != EADDRNOTAVAIL;
	close(fd);
	return local;
}

/* Whether a connection to @a can be one a listener of ours accepted: its
 * address is one a listener on that port is bound to, or, for a
 * wildcard listener, one of this namespace's. A client connected to
 * another host (or namespace, or a server bound to another address)
 * on our port would otherwise wait for its handshake's timeout. */
static bool addr_is_ours(const struct sockaddr_storage *a)
{
	uint16_t port = ntohs(((const struct sockaddr_in *)a)->sin_port);
	bool any = true, match = false;

	pthread_mutex_lock(&lst_lock);
	for (int i = 0; i < nbound; i++) {
		if (bound[i].port != port)
			continue;
		any = bound[i].any;
		for (int k = 0; k < bound[i].n && !match; k++)
			match = smc_addr_eq(&bound[i].a[k], a);
	}
	pthread_mutex_unlock(&lst_lock);
	return match || (any && addr_is_local(a));
}

/* A proposal received: the client's rendezvous socket @sock, and its
 * TCP socket @tcp, which proves the client holds the connection. */
static void take(int sock, int tcp)
{
	struct smc_tuple client;
	struct smc_proposal *p;
	struct smc_conn *c;
	uint64_t token;
	bool ok;

	p = smc_tuple_of(tcp, &client) ? NULL : calloc(1, sizeof(*p));
	if (!p) {
		close(tcp);
		return decline(sock);
	}
	p->sock = sock;
	p->tcp = tcp;
	p->tuple.local = client.peer;
	p->tuple.peer = client.local;
	if (!addr_is_ours(&p->tuple.local)) {
		smc_clc_send(sock, SMC_CLC_DECLINE, SMC_DECLINE_NOT_LOCAL, NULL, 0);
		return smc_proposal_drop(p, false);
	}
	pthread_mutex_lock(&smc_srv_lock);
	c = smc_srv_find(&p->tuple);
	/* accepted by a forked child: it answers (DESIGN "Pre-fork servers") */
	token = c ? 0 : smc_fork_lookup(&p->tuple);
	/* once queued, @p is the program's: not touched after the unlock */
	ok = token || queue_local(c, p);
	pthread_mutex_unlock(&smc_srv_lock);
	if (!ok)
		smc_proposal_drop(p, true);
	else if (!c && !token)
		smc_fork_ring(); /* perhaps an event loop's connection not looked at */
	else if (token)
		smc_proposal_drop(p, smc_fork_forward(token, p->sock, p->tcp) != 0);
}

/* One client of the rendezvous (a PROPOSAL with its TCP socket) or
 * of a forked child's inbox (a FORWARD with the client's rendezvous
 * socket and TCP socket), from a process of our uid. */
static void take_proposal(int sock)
{
	struct smc_clc m = {0};
	int fds[SMC_CLC_MAXFDS];
	bool fwd;
	int rc;

	if (!smc_rv_peer_is_us(sock))
		return decline(sock);
	rc = smc_clc_recv(sock, &m, fds, smc_timeout_ms());
	fwd = !rc && m.type == SMC_CLC_FORWARD && m.nfds == 2 && smc_rv_peer_is_us(fds[0]);
	if (!fwd && (rc || m.type != SMC_CLC_PROPOSAL || m.nfds != 1)) {
		for (int i = 0; i < SMC_CLC_MAXFDS; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return decline(sock);
	}
	if (fwd) {
		close(sock);
		return take(fds[0], fds[1]);
	}
	take(sock, fds[0]);
}

static void *rv_thread(void *arg)
{
	struct pollfd p[SMC_LISTENERS + 2];
	sigset_t all;

	(void)arg;
	/* the program's signals are the program's threads' */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		int n, w, ms;

		pthread_mutex_lock(&lst_lock);
		for (n = 0; n < nlst; n++)
			p[n] = (struct pollfd){lst[n], POLLIN, 0};
		pthread_mutex_unlock(&lst_lock);
		p[n] = (struct pollfd){wake, POLLIN, 0};
		/* children's accepts wake the process that owns the table */
		p[n + 1] = (struct pollfd){smc_fork_is_child() ? -1 : smc_fork_wakefd(), POLLIN, 0};
		pthread_mutex_lock(&smc_srv_lock);
		/* queued proposals are looked at again now and then: a child
		 * may have accepted, a client may have given up */
		ms = smc_srv_nqueued() ? 1000 : -1;
		pthread_mutex_unlock(&smc_srv_lock);
		w = smc_poll(p, (nfds_t)n + 2, ms);
		if (w < 0)
			continue;
		for (int k = n; k < n + 2; k++) {
			uint64_t v;

			if (p[k].revents && read(p[k].fd, &v, sizeof(v)) < 0) {
				/* drained */
			}
		}
		if (w == 0 || p[n + 1].revents)
			forward_queued();
		for (int i = 0; i < n; i++) {
			int s;

			if (!p[i].revents)
				continue;
			s = smc_fd_high(accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC));
			if (s >= 0)
				take_proposal(s);
		}
	}
	return NULL;
}

/* fork(): the rendezvous thread and its locks' holders stay behind;
 * the child serves no rendezvous of its parent's (DESIGN "Pre-fork
 * servers"). */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&lst_lock);
	pthread_mutex_lock(&smc_srv_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&smc_srv_lock);
	pthread_mutex_unlock(&lst_lock);
}

static void atfork_child(void)
{
	pthread_mutex_init(&smc_srv_lock, NULL);
	pthread_mutex_init(&lst_lock, NULL);
	pthread_mutex_init(&inbox_lock, NULL);
	for (int i = 0; i < nlst; i++)
		close(lst[i]);
	nlst = 0;
	if (wake >= 0)
		close(wake);
	wake = -1;
	started = false;
	smc_fork_child_reset();
}

/* Listening Unix socket @l (rendezvous of @port, or 0: a child's
 * inbox) served by the thread, started if need be; 0 or -errno (@l
 * closed then). */
static int serve_sock(int l, uint16_t port)
{
	static bool atfork;
	pthread_t t;
	uint64_t one = 1;
	int rc = 0;

	pthread_mutex_lock(&lst_lock);
	if (!atfork)
		atfork = !pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (!started) {
		wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (wake < 0)
			rc = -EMFILE;
		else if ((rc = -pthread_create(&t, NULL, rv_thread, NULL)) == 0)
			pthread_detach(t);
		started = !rc;
	}
	if (!rc && nlst < SMC_LISTENERS) {
		lst_port[nlst] = port;
		lst[nlst++] = l;
	}
	else if (!rc)
		rc = -EMFILE;
	pthread_mutex_unlock(&lst_lock);
	if (rc) {
		close(l);
		return rc;
	}
	if (write(wake, &one, sizeof(one)) < 0) {
		/* already signalled */
	}
	return 0;
}

int smc_rv_serve(int fd, uint16_t port)
{
	int rc = 0, l;

	bound_add(fd, port);
	/* a listener closed and opened again on its port (iperf3 between
	 * tests): the rendezvous socket is ours already */
	pthread_mutex_lock(&lst_lock);
	for (int i = 0; i < nlst; i++)
		if (lst_port[i] == port)
			rc = 1;
	pthread_mutex_unlock(&lst_lock);
	if (rc)
		return 0;
	/* before any fork: the table children announce their accepts in */
	rc = smc_fork_init();
	if (rc)
		return rc;
	l = smc_rv_listen(port);
	return l < 0 ? l : serve_sock(l, port);
}

void smc_rv_accepted_in_child(struct smc_conn *c)
{
	bool made = false;
	int l;

	if (!smc_fork_is_child())
		return;
	pthread_mutex_lock(&inbox_lock);
	l = smc_fork_inbox(&made);
	if (l >= 0 && made && serve_sock(l, 0))
		smc_fork_inbox_lost();
	pthread_mutex_unlock(&inbox_lock);
	c->fslot = smc_fork_register(&c->tuple);
}
