/* SPDX-License-Identifier: Apache-2.0 */
#include "smc/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "smc/execenv.h"
#include "smc/fork.h"
#include "smc/rendezvous.h"

#define SMC_HDR_OFF(i) ((size_t)(i) * 256)
#define SMC_DATA_OFF 4096
/* How long a waiter spins before it sleeps, when spinning pays: a
 * sleeping peer's wake-up costs 10-30 us here (a scheduler wake-up and a
 * context switch each way), so a reply that comes within this budget is
 * had for a fraction of that. ANOLE_SMC_SPIN_US overrides (0: never). */
#define SMC_SPIN_US 50

struct smc_conn *smc_conn_new(int fd, int state, bool server)
{
	struct smc_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	atomic_init(&c->state, state);
	c->server = server;
	c->notify = c->ctl = c->memfd = c->rx_data = c->rx_space = c->tx_data = c->tx_space = -1;
	c->refs = 1;
	atomic_init(&c->holds, 1);
	c->priv = -1;
	c->fslot = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->tx_lock, NULL);
	pthread_mutex_init(&c->rx_lock, NULL);
	pthread_mutex_init(&c->rxq.lock, NULL);
	pthread_mutex_init(&c->txq.lock, NULL);
	return c;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The shared-memory side of @c, undone. */
static void conn_unshare(struct smc_conn *c)
{
	if (c->map)
		munmap(c->map, c->maplen);
	c->map = NULL;
	close_fd(&c->memfd);
	close_fd(&c->ctl);
	close_fd(&c->rx_data);
	close_fd(&c->rx_space);
	close_fd(&c->tx_data);
	close_fd(&c->tx_space);
}

void smc_conn_free(struct smc_conn *c)
{
	if (!c)
		return;
	conn_unshare(c);
	close_fd(&c->notify);
	close_fd(&c->priv);
	smc_fork_unregister(c->fslot);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->tx_lock);
	pthread_mutex_destroy(&c->rx_lock);
	pthread_mutex_destroy(&c->rxq.lock);
	pthread_mutex_destroy(&c->txq.lock);
	free(c->rxq.w);
	free(c->txq.w);
	free(c);
}

static void efd_signal(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, a wake-up is pending */
	}
}

static void efd_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already drained by the other end of a race */
	}
}

/* ---- several waiters (DESIGN-smc.md, "Several waiters") ----
 *
 * The peer signals a ring's eventfd once while the ring's sleep count
 * is non-zero; every thread of ours waiting on that direction sleeps in
 * poll on it. The one that drains it would take the wake-up of the
 * others that had not yet looked, so it signals each other waiter's own
 * eventfd (one per thread, made at its first wait), which that thread
 * also sleeps on and drains itself. Nothing changes while nobody sleeps:
 * the producer still only loads the count. */

static __thread int self_efd = -1;
static pthread_key_t self_key;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

/* A thread's own eventfd goes with the thread. */
static void self_close(void *v)
{
	close((int)(intptr_t)v - 1);
}

/* A forked child's thread must not share its parent's eventfd: a
 * wake-up for one would be drained by the other. */
static void self_atfork_child(void)
{
	if (self_efd >= 0)
		close(self_efd);
	self_efd = -1;
	pthread_setspecific(self_key, NULL);
}

static void self_init(void)
{
	if (!pthread_key_create(&self_key, self_close))
		pthread_atfork(NULL, NULL, self_atfork_child);
}

/* This thread's own eventfd, made at its first wait; -1 if none can be
 * (it then waits as a single waiter would: woken by the ring's eventfd
 * alone). */
static int self_fd(void)
{
	if (self_efd < 0) {
		pthread_once(&self_once, self_init);
		self_efd = smc_fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (self_efd >= 0)
			pthread_setspecific(self_key, (void *)(intptr_t)(self_efd + 1));
	}
	return self_efd;
}

static void waitq_add(struct smc_waitq *q, int efd)
{
	pthread_mutex_lock(&q->lock);
	for (int i = 0; i < q->n; i++)
		if (q->w[i].efd == efd) {
			q->w[i].cnt++;
			goto out;
		}
	if (q->n == q->cap) {
		int cap = q->cap ? q->cap * 2 : 4;
		struct smc_waiter *w = realloc(q->w, sizeof(*w) * (size_t)cap);

		if (!w)
			goto out; /* not told by the others: woken by the ring's eventfd alone */
		q->w = w;
		q->cap = cap;
	}
	q->w[q->n++] = (struct smc_waiter){efd, 1};
out:
	pthread_mutex_unlock(&q->lock);
}

static void waitq_del(struct smc_waitq *q, int efd)
{
	pthread_mutex_lock(&q->lock);
	for (int i = 0; i < q->n; i++)
		if (q->w[i].efd == efd) {
			if (--q->w[i].cnt == 0)
				q->w[i] = q->w[--q->n];
			break;
		}
	pthread_mutex_unlock(&q->lock);
}

/* The ring's eventfd @efd fired for the waiters of @q: drained, and
 * every other waiter told through its own eventfd. */
static void ring_drain(struct smc_waitq *q, int efd)
{
	uint64_t v;

	if (read(efd, &v, sizeof(v)) != sizeof(v) || !v)
		return; /* another waiter drained it, and told us */
	pthread_mutex_lock(&q->lock);
	for (int i = 0; i < q->n; i++)
		if (q->w[i].efd != self_efd)
			efd_signal(q->w[i].efd);
	pthread_mutex_unlock(&q->lock);
}

/* This thread waits on @in's direction of @c: told by the others, and
 * counted in the ring header, before it looks at the ring once more. */
static void wait_begin(struct smc_conn *c, bool in)
{
	waitq_add(in ? &c->rxq : &c->txq, self_fd());
	atomic_fetch_add(in ? &c->rx.h->cons_sleep : &c->tx.h->prod_sleep, 1);
}

/* Undoes wait_begin; @fired: the ring's eventfd @efd was readable. */
static void wait_end(struct smc_conn *c, bool in, int efd, bool fired)
{
	struct smc_waitq *q = in ? &c->rxq : &c->txq;

	atomic_fetch_sub(in ? &c->rx.h->cons_sleep : &c->tx.h->prod_sleep, 1);
	if (fired)
		ring_drain(q, efd);
	waitq_del(q, self_efd);
}

static size_t map_len(uint32_t ring)
{
	return SMC_DATA_OFF + 2 * (size_t)ring;
}

size_t smc_map_len(uint32_t ring)
{
	return map_len(ring);
}

/* Points @c's rings into the mapping: ring 0 client->server, 1 back. */
static void conn_rings(struct smc_conn *c, uint32_t ring, bool init)
{
	uint8_t *m = c->map;
	struct smc_ring r[2];

	for (int i = 0; i < 2; i++) {
		r[i].h = (struct smc_ring_hdr *)(m + SMC_HDR_OFF(i));
		r[i].data = m + SMC_DATA_OFF + (size_t)i * ring;
		r[i].size = ring;
		if (init)
			smc_ring_init(&r[i], r[i].h, r[i].data, ring);
	}
	c->rx = r[c->server ? 0 : 1];
	c->tx = r[c->server ? 1 : 0];
}

/* Makes @c TCP for good, counting @why. Caller holds c->lock. */
static void conn_fallback(struct smc_conn *c, enum smc_reason why)
{
	conn_unshare(c);
	smc_fork_unregister(c->fslot);
	c->fslot = -1;
	c->reason = why;
	atomic_store(&c->state, SMC_TCP);
}

/* ---- client ---- */

static uint16_t peer_port(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)a)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
}

/* The server's ACCEPT: maps the memfd @fds[0], takes the eventfds. */
static int cli_take_accept(struct smc_conn *c, const struct smc_clc *m, int fds[SMC_CLC_MAXFDS])
{
	uint32_t ring = m->ring_size;
	struct stat st;

	if (m->nfds != 5 || ring < 4096 || ring > (64u << 20) || (ring & (ring - 1)))
		return -EPROTO;
	if (fstat(fds[0], &st) || (size_t)st.st_size != map_len(ring))
		return -EPROTO;
	c->map = mmap(NULL, map_len(ring), PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		return -ENOMEM;
	}
	c->maplen = map_len(ring);
	conn_rings(c, ring, false);
	/* kept: an exec() hands it to the new image (exec.c) */
	c->memfd = fds[0];
	c->tx_data = fds[1];
	c->tx_space = fds[2];
	c->rx_data = fds[3];
	c->rx_space = fds[4];
	fds[0] = fds[1] = fds[2] = fds[3] = fds[4] = -1;
	return 0;
}

/* ---- what a client learned per server port ----
 *
 * The handshake costs a round trip through two processes before the
 * first byte; a connection that then moves a request and an answer and
 * closes (HTTP with "Connection: close", redis-benchmark -k 0) is faster
 * on TCP. A client process remembers, per server port, how many of its
 * last connections there were short; after SHORT_STREAK in a row its new
 * connections to that port stay TCP without asking (reason
 * "short-lived"), except one in SHORT_PROBE, which tries shared memory
 * again so that a change to long connections is seen; each further
 * short one in shared memory doubles that interval up to
 * SHORT_PROBE_MAX, a long one sets it back. It also remembers a port
 * whose rendezvous it could not reach (a server without the library, a
 * remote host, another rendezvous directory): for NORV_NS after that,
 * new connections there stay TCP without looking again (reason
 * "no-rendezvous"), since each look costs a socket, a connect and a
 * statistics line where the program itself makes a handful of calls.
 * connect() asks (smc_port_skip) before it tracks the socket at all, so
 * a skipped connection costs the library nothing after that. Only this
 * process's own history counts, so nothing changes for the first
 * connections of a program, nor for a server. DESIGN-smc.md, "Short
 * connections". */
#define SHORT_BYTES (16u << 10) /* both directions together */
#define SHORT_STREAK 8
#define SHORT_PROBE 64
#define SHORT_PROBE_MAX 1024
#define SHORT_SLOTS 256
#define NORV_NS 1000000000ull /* a server that starts later waits this long */
#define PROBE_GAP_NS 1000000000ull /* probes at most one a second */

static struct short_slot {
	uint32_t key; /* port + 1; 0: free */
	uint32_t streak, skipped;
	uint32_t probe;	    /* one in this many proposes: SHORT_PROBE, doubled
			     * per probe that was short again, to SHORT_PROBE_MAX */
	uint64_t norv_until; /* CLOCK_MONOTONIC_COARSE ns; 0: none */
	uint64_t probed;     /* when the last probe went out (same clock) */
} shorts[SHORT_SLOTS];
static pthread_mutex_t shorts_lock = PTHREAD_MUTEX_INITIALIZER;
static bool shorts_on = true;

/* Server addresses whose port's rendezvous declined them as not its
 * own (another host or namespace on the same port): skipped like a
 * port without a rendezvous, for NORV_NS, by address and port, so that
 * local servers on that port keep shared memory. Under shorts_lock. */
#define REMOTE_SLOTS 64
static struct remote_slot {
	struct sockaddr_storage addr;
	uint64_t until; /* 0: free */
} remotes[REMOTE_SLOTS];
/* Set by the first remote_learn: until then connect() skips the look */
static _Atomic bool remotes_used;

/* Hashed on what smc_addr_eq compares: port and address, an IPv4-mapped
 * IPv6 one as IPv4. */
static struct remote_slot *remote_slot(const struct sockaddr_storage *a)
{
	const uint8_t *ip;
	size_t n;
	uint32_t h;

	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)a;

		ip = (const uint8_t *)&s->sin_addr;
		n = 4;
		h = s->sin_port;
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
		bool v4 = IN6_IS_ADDR_V4MAPPED(&s->sin6_addr);

		ip = s->sin6_addr.s6_addr + (v4 ? 12 : 0);
		n = v4 ? 4 : 16;
		h = s->sin6_port;
	}
	for (size_t i = 0; i < n; i++)
		h = h * 31 + ip[i];
	return &remotes[h % REMOTE_SLOTS];
}

__attribute__((constructor)) static void short_settings(void)
{
	const char *v = getenv("ANOLE_SMC_SHORT");

	shorts_on = !(v && !strcmp(v, "0"));
}

static uint64_t coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* @port's slot, taken over if another port had it. Under shorts_lock. */
static struct short_slot *short_slot(uint16_t port)
{
	struct short_slot *s = &shorts[port % SHORT_SLOTS];

	if (s->key != (uint32_t)port + 1)
		*s = (struct short_slot){(uint32_t)port + 1, 0, 0, SHORT_PROBE, 0, 0};
	return s;
}

/* Whether this connection to a short port is the probe: one in
 * s->probe, and none sooner than PROBE_GAP_NS after the last (a busy
 * client makes tens of thousands a second, and each probe holds its
 * event loop for a handshake). Under shorts_lock. */
static bool short_probe(struct short_slot *s)
{
	uint64_t now;

	if (++s->skipped % s->probe != 0)
		return false;
	now = coarse_ns();
	if (s->probed && now - s->probed < PROBE_GAP_NS) {
		s->skipped--; /* the next one is the probe, if late enough */
		return false;
	}
	s->probed = now;
	return true;
}

enum smc_reason smc_port_skip(const struct sockaddr *addr, socklen_t len)
{
	/* both families keep the port at the same offset */
	uint16_t port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	struct short_slot *s = &shorts[port % SHORT_SLOTS];
	enum smc_reason why = SMC_R_NONE;
	struct sockaddr_storage a = {0};
	struct remote_slot *r = NULL;

	if (!shorts_on)
		return SMC_R_NONE;
	if (atomic_load(&remotes_used)) {
		memcpy(&a, addr, (size_t)len < sizeof(a) ? (size_t)len : sizeof(a));
		r = remote_slot(&a);
	}
	pthread_mutex_lock(&shorts_lock);
	if (r && r->until && smc_addr_eq(&r->addr, &a) && coarse_ns() < r->until)
		why = SMC_R_NO_RENDEZVOUS;
	else if (s->key == (uint32_t)port + 1) {
		if (s->norv_until && coarse_ns() < s->norv_until)
			why = SMC_R_NO_RENDEZVOUS;
		else if (s->streak >= SHORT_STREAK)
			why = short_probe(s) ? SMC_R_NONE : SMC_R_SHORT;
	}
	pthread_mutex_unlock(&shorts_lock);
	return why;
}

/* The rendezvous of @a's port declined @a as not its server's. */
static void remote_learn(const struct sockaddr_storage *a)
{
	struct remote_slot *r = remote_slot(a);

	pthread_mutex_lock(&shorts_lock);
	r->addr = *a;
	r->until = coarse_ns() + NORV_NS;
	pthread_mutex_unlock(&shorts_lock);
	atomic_store(&remotes_used, true);
}

/* The rendezvous of @port could not be reached just now. */
static void norv_learn(uint16_t port)
{
	pthread_mutex_lock(&shorts_lock);
	short_slot(port)->norv_until = coarse_ns() + NORV_NS;
	pthread_mutex_unlock(&shorts_lock);
}

/* A shared-memory client connection to @port closed after @bytes. */
static void short_learn(uint16_t port, uint64_t bytes)
{
	struct short_slot *s;

	pthread_mutex_lock(&shorts_lock);
	s = short_slot(port);
	s->norv_until = 0; /* it answered */
	if (bytes > SHORT_BYTES) {
		s->streak = s->skipped = 0;
		s->probe = SHORT_PROBE;
	} else if (s->streak < SHORT_STREAK) {
		s->streak++;
	} else if (s->probe < SHORT_PROBE_MAX) {
		/* a probe, short again: each one costs both ends a full
		 * handshake, and the server a shared-memory member in its
		 * event loop for the connection's life */
		s->probe *= 2;
	}
	pthread_mutex_unlock(&shorts_lock);
}

/* Proposal, then the server's answer; the client's side of the
 * handshake. Caller holds c->lock. */
static void cli_handshake(struct smc_conn *c, const struct sockaddr_storage *peer)
{
	uint16_t port = peer_port(peer);
	struct smc_clc m = {0};
	int fds[SMC_CLC_MAXFDS];
	int rc, sock;

	c->dport = port;
	sock = smc_rv_connect(port);
	if (sock < 0) {
		/* a full backlog or a signal says nothing of the next one */
		if (sock != -EAGAIN && sock != -EINTR)
			norv_learn(port);
		return conn_fallback(c, SMC_R_NO_RENDEZVOUS);
	}
	if (smc_clc_send(sock, SMC_CLC_PROPOSAL, 0, &c->fd, 1)) {
		close(sock);
		return conn_fallback(c, SMC_R_DECLINED);
	}
	rc = smc_clc_recv(sock, &m, fds, smc_timeout_ms());
	if (rc == -ETIMEDOUT) {
		smc_clc_send(sock, SMC_CLC_WITHDRAW, 0, NULL, 0);
		close(sock);
		return conn_fallback(c, SMC_R_TIMEOUT);
	}
	if (rc || m.type != SMC_CLC_ACCEPT) {
		for (int i = 0; i < SMC_CLC_MAXFDS; i++)
			close_fd(&fds[i]);
		close(sock);
		if (!rc && m.type == SMC_CLC_DECLINE && m.ring_size == SMC_DECLINE_NOT_LOCAL)
			remote_learn(peer);
		return conn_fallback(c, SMC_R_DECLINED);
	}
	rc = cli_take_accept(c, &m, fds);
	for (int i = 0; i < SMC_CLC_MAXFDS; i++)
		close_fd(&fds[i]);
	c->ctl = sock;
	/* CONFIRM sent is the client's point of no return */
	if (rc || smc_clc_send(sock, rc ? SMC_CLC_DECLINE : SMC_CLC_CONFIRM, 0, NULL, 0))
		return conn_fallback(c, SMC_R_BAD_ACCEPT);
	atomic_store(&c->state, SMC_ON);
}

void smc_cli_settle(struct smc_conn *c)
{
	struct smc_tuple t;

	pthread_mutex_lock(&c->lock);
	/* not connected yet (non-blocking connect): stays pending */
	if (atomic_load(&c->state) == SMC_CLI_PENDING && smc_tuple_of(c->fd, &t) == 0)
		cli_handshake(c, &t.peer);
	pthread_mutex_unlock(&c->lock);
}

/* ---- server ---- */

/* The shared memory of a new connection; 0 or -errno. */
static int srv_share(struct smc_conn *c, int *memfd)
{
	int *e[4] = {&c->rx_data, &c->rx_space, &c->tx_data, &c->tx_space};

	/* high: it is kept for the connection's life (exec.c) */
	*memfd = smc_fd_high(memfd_create("anole-smc", MFD_CLOEXEC | MFD_ALLOW_SEALING));
	if (*memfd < 0)
		return -errno;
	if (ftruncate(*memfd, (off_t)map_len(SMC_RING_SIZE)) ||
	    fcntl(*memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
		return -errno;
	c->map = mmap(NULL, map_len(SMC_RING_SIZE), PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		return -errno;
	}
	c->maplen = map_len(SMC_RING_SIZE);
	conn_rings(c, SMC_RING_SIZE, true);
	for (int i = 0; i < 4; i++) {
		*e[i] = smc_fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (*e[i] < 0)
			return -errno;
	}
	return 0;
}

/* ACCEPT for queued proposal @p. The CONFIRM is not waited for here:
 * the connection stays pending, "offered" (c->ctl open), and the
 * client's answer is read on the server's next call (srv_answer), by
 * which time it has usually arrived; an event loop never stops for the
 * client's round trip. Caller holds c->lock; @p is consumed. */
static void srv_offer(struct smc_conn *c, struct smc_proposal *p)
{
	int memfd = -1;
	int rc = srv_share(c, &memfd);

	if (rc) {
		close_fd(&memfd);
		smc_proposal_drop(p, true);
		return conn_fallback(c, SMC_R_NO_MEMORY);
	}
	/* the client's view: its send ring is our receive ring */
	int out[5] = {memfd, c->rx_data, c->rx_space, c->tx_data, c->tx_space};

	rc = smc_clc_send(p->sock, SMC_CLC_ACCEPT, SMC_RING_SIZE, out, 5);
	c->memfd = memfd;
	c->ctl = p->sock;
	p->sock = -1;
	smc_proposal_drop(p, false);
	if (rc)
		conn_fallback(c, SMC_R_WITHDRAWN);
}

/* An offered connection: ACCEPT sent, the client's answer not read. */
static bool offered(const struct smc_conn *c)
{
	return atomic_load(&c->state) == SMC_SRV_PENDING && c->ctl >= 0;
}

/* The client's answer to our ACCEPT, waiting at most @timeout_ms: SMC
 * on CONFIRM, TCP on anything else (DECLINE, WITHDRAW, EOF). A client
 * that declines sends DECLINE before its first TCP byte, so the control
 * socket alone tells. Nothing yet: still offered. Caller holds c->lock. */
static void srv_answer(struct smc_conn *c, int timeout_ms)
{
	struct smc_clc m = {0};
	int fds[SMC_CLC_MAXFDS];
	int rc = smc_clc_recv(c->ctl, &m, fds, timeout_ms);

	if (rc == -ETIMEDOUT && timeout_ms == 0)
		return;
	for (int i = 0; !rc && i < SMC_CLC_MAXFDS; i++)
		close_fd(&fds[i]);
	if (rc || m.type != SMC_CLC_CONFIRM)
		return conn_fallback(c, SMC_R_WITHDRAWN);
	close_fd(&c->notify);
	smc_fork_unregister(c->fslot);
	c->fslot = -1;
	atomic_store(&c->state, SMC_ON);
}

int smc_srv_waitfd(struct smc_conn *c)
{
	return c->ctl >= 0 ? c->ctl : c->notify;
}

static bool tcp_readable(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};

	return smc_poll(&p, 1, 0) > 0;
}

/* A pending server connection made known to the rendezvous thread:
 * its addresses read, put in the server list (a proposal for it is
 * then queued and, with @notify, its eventfd signalled, or declined
 * once it is TCP) and, in a forked child, announced in the pre-fork
 * table. Deferred from accept() to the first call that needs it, so
 * that a connection whose client sent TCP data first pays none of it.
 * Caller holds c->lock; 0 or -errno. */
static int srv_know(struct smc_conn *c, bool notify)
{
	int rc = 0;

	if (c->known)
		return 0;
	if (smc_tuple_of(c->fd, &c->tuple))
		return -ENOTCONN;
	pthread_mutex_lock(&smc_srv_lock);
	/* under the lock: a proposal queued from now on signals it */
	if (notify)
		c->notify = smc_fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (notify && c->notify < 0)
		rc = -EMFILE;
	else
		smc_srv_add(c);
	c->known = !rc;
	pthread_mutex_unlock(&smc_srv_lock);
	/* a write or dup made it known while epoll watches its TCP socket */
	if (!rc && atomic_load(&c->ep_lazy))
		atomic_store(&smc_ep_lazy_moved, true);
	if (!rc && notify)
		smc_rv_accepted_in_child(c);
	return rc;
}

/* The proposal queued for @c, taken; the count still waiting
 * published for the pre-fork table (and the check of epoll_ctl, which
 * puts a connection in the kernel's set only while none waits). Under
 * smc_srv_lock. */
static struct smc_proposal *srv_take(struct smc_conn *c)
{
	struct smc_proposal *p = smc_srv_dequeue(&c->tuple);

	if (p)
		smc_fork_set_waiting(smc_srv_nqueued());
	return p;
}

/* One look at a pending server connection: true when settled. */
static bool srv_try(struct smc_conn *c, bool writing)
{
	struct smc_proposal *p;

	/* TCP data before the server knew the connection: the client is
	 * plain TCP or decided so (a library client writes nothing to TCP
	 * before its handshake ended), so no proposal of its can still
	 * come; committed without reading its addresses (DESIGN (a)) */
	if (!c->known && !writing && tcp_readable(c->fd)) {
		conn_fallback(c, SMC_R_TCP_FIRST);
		return true;
	}
	/* a server that writes first: known so that a late proposal is
	 * declined at once rather than left to the client's timeout */
	if (srv_know(c, !writing)) {
		conn_fallback(c, SMC_R_UNSUPPORTED);
		return true;
	}
	if (offered(c)) {
		/* a write must know where its bytes go: wait for the answer,
		 * which a client sends right after our ACCEPT */
		srv_answer(c, writing ? smc_timeout_ms() : 0);
		return atomic_load(&c->state) != SMC_SRV_PENDING;
	}
	pthread_mutex_lock(&smc_srv_lock);
	p = srv_take(c);
	/* under smc_srv_lock: the rendezvous thread declines from now on */
	if (!p && writing)
		conn_fallback(c, SMC_R_SERVER_WROTE);
	else if (!p && tcp_readable(c->fd))
		conn_fallback(c, SMC_R_TCP_FIRST);
	pthread_mutex_unlock(&smc_srv_lock);
	if (p)
		srv_offer(c, p);
	/* a write must know where its bytes go, now: left pending, they
	 * would go to TCP while the client switches to the rings */
	if (p && writing && offered(c))
		srv_answer(c, smc_timeout_ms());
	return atomic_load(&c->state) != SMC_SRV_PENDING;
}

bool smc_srv_first_read(struct smc_conn *c, struct msghdr *m, int flags, ssize_t *rc)
{
	bool done = false;
	size_t want = 0;

	/* MSG_WAITALL would return short; a bad msghdr is the kernel's to
	 * refuse, the usual way */
	if (!c->server || c->known || (flags & MSG_WAITALL) || !m || !m->msg_iov ||
	    atomic_load(&c->state) != SMC_SRV_PENDING)
		return false;
	for (size_t i = 0; i < m->msg_iovlen; i++)
		want += m->msg_iov[i].iov_len;
	if (!want)
		return false; /* 0 bytes read as 0, like EOF */
	pthread_mutex_lock(&c->lock);
	if (atomic_load(&c->state) == SMC_SRV_PENDING && !c->known) {
		/* the kernel's, not ours: this library interposes recvmsg */
		ssize_t n = syscall(SYS_recvmsg, c->fd, m, flags | MSG_DONTWAIT);

		/* bytes, EOF or an error came on TCP before the server knew
		 * the connection: TCP, as srv_try decides, in this one call */
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			conn_fallback(c, SMC_R_TCP_FIRST);
			*rc = n;
			done = true;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return done;
}

int smc_srv_settle(struct smc_conn *c, bool may_wait, bool writing)
{
	for (;;) {
		struct pollfd p[2] = {{c->fd, POLLIN, 0}, {-1, POLLIN, 0}};
		bool done;

		pthread_mutex_lock(&c->lock);
		done = atomic_load(&c->state) != SMC_SRV_PENDING || srv_try(c, writing);
		p[1].fd = smc_srv_waitfd(c);
		pthread_mutex_unlock(&c->lock);
		if (done)
			return 0;
		if (!may_wait)
			return -EAGAIN;
		/* whichever comes first: TCP data, or a proposal (DESIGN (a)),
		 * or, once offered, the client's answer */
		if (smc_poll(p, 2, -1) < 0 && errno == EINTR)
			return -EINTR;
		if (p[1].revents && p[1].fd == c->notify)
			efd_drain(c->notify);
	}
}

void smc_settle(struct smc_conn *c, bool writing)
{
	int st = atomic_load(&c->state);

	if (st == SMC_CLI_PENDING)
		smc_cli_settle(c);
	else if (st == SMC_SRV_PENDING)
		smc_srv_settle(c, false, writing);
}

bool smc_conn_to_tcp(struct smc_conn *c)
{
	bool tcp;

	pthread_mutex_lock(&c->lock);
	/* known, so that a proposal coming later is declined at once */
	if (c->server && atomic_load(&c->state) == SMC_SRV_PENDING)
		srv_know(c, false);
	/* offered: the client may have switched already; its answer
	 * decides (CONFIRM: shared memory). Waited for outside
	 * smc_srv_lock, which the rendezvous thread needs. */
	if (offered(c))
		srv_answer(c, smc_timeout_ms());
	pthread_mutex_lock(&smc_srv_lock);
	if (atomic_load(&c->state) == SMC_SRV_PENDING || atomic_load(&c->state) == SMC_CLI_PENDING) {
		struct smc_proposal *p = c->server ? srv_take(c) : NULL;

		if (p)
			smc_proposal_drop(p, true);
		conn_fallback(c, SMC_R_UNSUPPORTED);
	}
	tcp = atomic_load(&c->state) != SMC_ON;
	pthread_mutex_unlock(&smc_srv_lock);
	pthread_mutex_unlock(&c->lock);
	return tcp;
}

/* ---- data path ---- */

static bool nonblocking(const struct smc_conn *c, int flags)
{
	int fl;

	if (flags & MSG_DONTWAIT)
		return true;
	/* -1: the number was closed by another thread just now; the call
	 * goes on as a blocking one, as it began */
	fl = fcntl(c->fd, F_GETFL);
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* The peer shut its sending side down: shutdown, close, or an exec()
 * that closed its descriptors (its control socket's EOF then). */
static bool rx_closed(struct smc_conn *c)
{
	return atomic_load(&c->rx.h->closed) ||
	       (atomic_load(&c->peer_gone) && atomic_load(&c->rx.h->gone_is_close));
}

/* The peer closed or died: its end of the control socket is closed. */
static void check_peer(struct smc_conn *c, short revents)
{
	if (revents & (POLLIN | POLLHUP | POLLERR))
		atomic_store(&c->peer_gone, true);
}

enum smc_cond { SMC_WANT_DATA, SMC_WANT_SPACE };

static bool cond_met(struct smc_conn *c, enum smc_cond w)
{
	if (atomic_load(&c->peer_gone))
		return true;
	if (w == SMC_WANT_DATA)
		return smc_ring_used(&c->rx) != 0 || rx_closed(c);
	return smc_ring_space(&c->tx) != 0 || atomic_load(&c->tx.h->reset);
}

/* Whether spinning can pay: only while another CPU may be running the
 * peer. With as many runnable tasks as CPUs (a busy machine, or one
 * CPU) a spinner takes the time its peer needs; with the peer asleep
 * in a wait for our bytes it will not produce either. The machine's
 * runnable count (/proc/loadavg) is read at most every 10 ms. */
bool smc_spin_pays(struct smc_conn *c)
{
	static _Atomic long next_ms;
	static _Atomic bool crowded;
	struct timespec ts;
	long now;

	if (c && atomic_load(&c->tx.h->cons_sleep))
		return false;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
	if (now >= atomic_load(&next_ms)) {
		static long ncpu;
		char buf[128] = "";
		long running = 0;
		int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);

		if (!ncpu)
			ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (fd >= 0) {
			if (read(fd, buf, sizeof(buf) - 1) < 0)
				buf[0] = 0;
			close(fd);
		}
		/* "0.52 0.58 0.59 3/123 4567": the 4th field's first number */
		if (sscanf(buf, "%*s %*s %*s %ld/", &running) != 1)
			running = 0;
		/* we are one of the runnable; the peer needs another CPU */
		atomic_store(&crowded, ncpu < 2 || running > ncpu);
		atomic_store(&next_ms, now + 10);
	}
	return !atomic_load(&crowded);
}

static long spin_budget_ns(void)
{
	static _Atomic long budget = -1;
	long b = atomic_load(&budget);

	if (b < 0) {
		const char *env = getenv("ANOLE_SMC_SPIN_US");
		char *end = NULL;
		long us = env && *env ? strtol(env, &end, 10) : SMC_SPIN_US;

		if (end && (*end || us < 0 || us > 10000))
			us = SMC_SPIN_US;
		b = us * 1000;
		atomic_store(&budget, b);
	}
	return b;
}

static long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

bool smc_spin_until(bool (*done)(void *), void *arg)
{
	long budget = spin_budget_ns(), end;

	if (!budget)
		return false;
	end = mono_ns() + budget;
	for (;;) {
		for (int i = 0; i < 64; i++) {
			if (done(arg))
				return true;
			__builtin_ia32_pause();
		}
		if (mono_ns() >= end)
			return false;
	}
}

struct cond_arg {
	struct smc_conn *c;
	enum smc_cond w;
};

static bool cond_done(void *arg)
{
	struct cond_arg *a = arg;

	return cond_met(a->c, a->w);
}

/* Spins, then sleeps on the ring's eventfd, the thread's own and the
 * control socket until @w holds (DESIGN "Rings": count, check again,
 * sleep). @held, the direction's lock, is let go meanwhile, as the
 * kernel lets go of a socket's lock while a call on it sleeps: another
 * thread's non-blocking call must not wait behind a blocking one. */
static int conn_wait(struct smc_conn *c, enum smc_cond w, pthread_mutex_t *held)
{
	bool in = w == SMC_WANT_DATA;
	struct pollfd p[3] = {
		{in ? c->rx_data : c->tx_space, POLLIN, 0}, {self_fd(), POLLIN, 0}, {c->ctl, POLLIN, 0}};
	int rc = 0;

	struct cond_arg ca = {c, w};

	pthread_mutex_unlock(held);
	if (smc_spin_pays(c) && smc_spin_until(cond_done, &ca))
		goto out;
	wait_begin(c, in);
	if (!cond_met(c, w) && smc_poll(p, 3, -1) < 0 && errno == EINTR)
		rc = -EINTR;
	wait_end(c, in, p[0].fd, p[0].revents);
	if (p[1].revents)
		efd_drain(p[1].fd);
	check_peer(c, p[2].revents);
out:
	pthread_mutex_lock(held);
	return rc;
}

/* Skips @n bytes of @v (a copy of the caller's iovec). */
static void iov_advance(struct iovec *v, int cnt, size_t n)
{
	for (int i = 0; i < cnt && n; i++) {
		size_t k = n < v[i].iov_len ? n : v[i].iov_len;

		v[i].iov_base = (char *)v[i].iov_base + k;
		v[i].iov_len -= k;
		n -= k;
	}
}

static size_t iov_total(const struct iovec *v, int cnt)
{
	size_t t = 0;

	for (int i = 0; i < cnt; i++)
		t += v[i].iov_len;
	return t;
}

static struct iovec *iov_copy(const struct iovec *iov, int iovcnt)
{
	struct iovec *v = iovcnt > 0 ? malloc(sizeof(*v) * (size_t)iovcnt) : NULL;

	if (v)
		memcpy(v, iov, sizeof(*v) * (size_t)iovcnt);
	return v;
}

static ssize_t send_locked(struct smc_conn *c, struct iovec *v, int cnt, int flags)
{
	size_t want = iov_total(v, cnt), done = 0;
	bool nb = nonblocking(c, flags);

	for (;;) {
		ssize_t n;

		if (atomic_load(&c->wr_shut) || atomic_load(&c->tx.h->reset) || atomic_load(&c->peer_gone)) {
			if (done)
				return (ssize_t)done;
			if (!(flags & MSG_NOSIGNAL))
				pthread_kill(pthread_self(), SIGPIPE);
			return -EPIPE;
		}
		n = smc_ring_write(&c->tx, v, cnt);
		if (n < 0)
			return done ? (ssize_t)done : -ECONNRESET;
		if (n) {
			done += (size_t)n;
			atomic_fetch_add(&c->tx_bytes, (uint64_t)n);
			if (atomic_load(&c->tx.h->cons_sleep))
				efd_signal(c->tx_data);
			iov_advance(v, cnt, (size_t)n);
		}
		if (done == want)
			return (ssize_t)done;
		if (nb && !n)
			return done ? (ssize_t)done : -EAGAIN;
		if (!n && conn_wait(c, SMC_WANT_SPACE, &c->tx_lock) == -EINTR)
			return done ? (ssize_t)done : -EINTR;
	}
}

/* Nothing to read now: EOF, reset, or -EAGAIN (wait and look again). */
static ssize_t recv_empty(struct smc_conn *c)
{
	/* closed or gone is final only once the ring is seen empty after it */
	bool closed = rx_closed(c), gone = atomic_load(&c->peer_gone);

	if ((closed || gone) && smc_ring_used(&c->rx) == 0)
		return closed ? 0 : -ECONNRESET;
	return closed || gone ? 1 : -EAGAIN;
}

static ssize_t recv_locked(struct smc_conn *c, struct iovec *v, int cnt, int flags)
{
	size_t want = iov_total(v, cnt), done = 0;
	bool nb = nonblocking(c, flags), peek = flags & MSG_PEEK;

	if (atomic_load(&c->rd_shut) || !want)
		return 0;
	for (;;) {
		ssize_t n = smc_ring_read(&c->rx, v, cnt, peek);

		if (n < 0)
			return done ? (ssize_t)done : -ECONNRESET;
		if (n) {
			done += (size_t)n;
			if (peek)
				return n;
			atomic_fetch_add(&c->rx_bytes, (uint64_t)n);
			if (atomic_load(&c->rx.h->prod_sleep))
				efd_signal(c->rx_space);
			if (!(flags & MSG_WAITALL) || done == want)
				return (ssize_t)done;
			iov_advance(v, cnt, (size_t)n);
			continue;
		}
		n = recv_empty(c);
		if (n == 1)
			continue; /* bytes came before the close: read them */
		if (n != -EAGAIN)
			return done ? (ssize_t)done : n;
		if (nb)
			return done ? (ssize_t)done : -EAGAIN;
		if (conn_wait(c, SMC_WANT_DATA, &c->rx_lock) == -EINTR)
			return done ? (ssize_t)done : -EINTR;
	}
}

/* One send or receive under its direction's lock, on a copy of @iov
 * (advanced as bytes move). */
static ssize_t conn_io(struct smc_conn *c, const struct iovec *iov, int iovcnt, int flags, bool tx)
{
	pthread_mutex_t *lock = tx ? &c->tx_lock : &c->rx_lock;
	struct iovec *v = iov_copy(iov, iovcnt);
	ssize_t n;

	if (!v)
		return iovcnt > 0 ? -ENOMEM : 0;
	pthread_mutex_lock(lock);
	n = tx ? send_locked(c, v, iovcnt, flags) : recv_locked(c, v, iovcnt, flags);
	pthread_mutex_unlock(lock);
	free(v);
	return n;
}

ssize_t smc_conn_send(struct smc_conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	return conn_io(c, iov, iovcnt, flags, true);
}

ssize_t smc_conn_recv(struct smc_conn *c, const struct iovec *iov, int iovcnt, int flags)
{
	return conn_io(c, iov, iovcnt, flags, false);
}

int smc_conn_shutdown(struct smc_conn *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (how != SHUT_RD) {
		atomic_store(&c->wr_shut, true);
		atomic_store(&c->tx.h->closed, 1);
		efd_signal(c->tx_data);
	}
	if (how != SHUT_WR)
		atomic_store(&c->rd_shut, true);
	return 0;
}

/* ---- poll ---- */

short smc_conn_revents(struct smc_conn *c, short events)
{
	struct pollfd p = {c->ctl, POLLIN, 0};

	if (smc_poll(&p, 1, 0) > 0)
		check_peer(c, p.revents);
	return smc_conn_revents_now(c, events);
}

void smc_conn_ctl_event(struct smc_conn *c, short revents)
{
	check_peer(c, revents);
}

short smc_conn_revents_now(struct smc_conn *c, short events)
{
	short r = 0;
	int64_t used = smc_ring_used(&c->rx), space = smc_ring_space(&c->tx);
	if (used < 0 || space < 0)
		return POLLERR | POLLHUP | (events & (POLLIN | POLLOUT));
	if (used > 0 || rx_closed(c) || atomic_load(&c->rd_shut))
		r |= POLLIN | POLLRDNORM;
	if (rx_closed(c))
		r |= POLLRDHUP;
	if (space > 0 && !atomic_load(&c->wr_shut))
		r |= POLLOUT | POLLWRNORM;
	if (atomic_load(&c->peer_gone) || atomic_load(&c->tx.h->reset)) {
		r |= POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM | POLLRDHUP;
		if (!rx_closed(c))
			r |= POLLERR | POLLHUP;
	}
	return r & (short)(events | POLLERR | POLLHUP);
}

#define ARM_IN (POLLIN | POLLRDNORM | POLLRDHUP)
#define ARM_OUT (POLLOUT | POLLWRNORM)

int smc_conn_arm(struct smc_conn *c, short events, struct pollfd *out)
{
	int n = 0;

	if (events & ARM_IN) {
		wait_begin(c, true);
		out[n++] = (struct pollfd){c->rx_data, POLLIN, 0};
	}
	if (events & ARM_OUT) {
		wait_begin(c, false);
		out[n++] = (struct pollfd){c->tx_space, POLLIN, 0};
	}
	out[n++] = (struct pollfd){self_fd(), POLLIN, 0};
	out[n++] = (struct pollfd){c->ctl, POLLIN, 0};
	return n;
}

void smc_conn_disarm(struct smc_conn *c, short events, const struct pollfd *fds, int n)
{
	int k = 0;

	if (events & ARM_IN) {
		wait_end(c, true, fds[k].fd, fds[k].revents);
		k++;
	}
	if (events & ARM_OUT) {
		wait_end(c, false, fds[k].fd, fds[k].revents);
		k++;
	}
	if (k < n && fds[k].revents)
		efd_drain(fds[k].fd);
	if (++k < n)
		check_peer(c, fds[k].revents);
}

void smc_conn_gens(struct smc_conn *c, uint64_t *gin, uint64_t *gout)
{
	uint64_t gone = atomic_load(&c->peer_gone) ? 1ull << 61 : 0;

	*gin = atomic_load(&c->rx.h->prod) + (rx_closed(c) ? 1ull << 62 : 0) + gone;
	*gout = atomic_load(&c->tx.h->cons) + (atomic_load(&c->tx.h->reset) ? 1ull << 62 : 0) + gone;
}

int smc_conn_queued(struct smc_conn *c, bool tx)
{
	int64_t n = tx ? smc_ring_used(&c->tx) : smc_ring_used(&c->rx);

	return n < 0 ? -ECONNRESET : (int)n;
}

void smc_conn_close(struct smc_conn *c)
{
	/* offered: the client may have confirmed and be reading the ring */
	if (atomic_load(&c->state) == SMC_ON || (c->server && offered(c))) {
		/* the peer reads what is left, then EOF; its writes fail */
		atomic_store(&c->tx.h->closed, 1);
		atomic_store(&c->rx.h->reset, 1);
		efd_signal(c->tx_data);
		efd_signal(c->rx_space);
	}
	if (!c->server && atomic_load(&c->state) == SMC_ON)
		short_learn(c->dport, atomic_load(&c->tx_bytes) + atomic_load(&c->rx_bytes));
	if (c->known) {
		pthread_mutex_lock(&smc_srv_lock);
		smc_srv_remove(c);
		pthread_mutex_unlock(&smc_srv_lock);
	}
	smc_stat_close(c);
	smc_conn_free(c);
}

void smc_conn_hold(struct smc_conn *c)
{
	atomic_fetch_add(&c->holds, 1);
}

void smc_conn_put(struct smc_conn *c)
{
	if (atomic_fetch_sub(&c->holds, 1) == 1)
		smc_conn_close(c);
}

/* ---- exec (exec.c) ---- */

struct smc_conn *smc_conn_resume(const struct smc_exec_ent *e)
{
	struct smc_conn *c = smc_conn_new(e->num[0], SMC_ON, e->server);
	int *own[6] = {&c->memfd, &c->ctl, &c->rx_data, &c->rx_space, &c->tx_data, &c->tx_space};
	const int in[6] = {e->memfd, e->ctl, e->efd[0], e->efd[1], e->efd[2], e->efd[3]};

	if (!c)
		return NULL;
	c->map = mmap(NULL, map_len(e->ring), PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		smc_conn_free(c);
		return NULL;
	}
	c->maplen = map_len(e->ring);
	conn_rings(c, e->ring, false);
	for (int i = 0; i < 6; i++)
		*own[i] = in[i];
	atomic_store(&c->rd_shut, (e->flags & SMC_EXEC_RD_SHUT) != 0);
	atomic_store(&c->wr_shut, (e->flags & SMC_EXEC_WR_SHUT) != 0);
	atomic_store(&c->peer_gone, (e->flags & SMC_EXEC_PEER_GONE) != 0);
	atomic_store(&c->tx_bytes, e->tx_bytes);
	atomic_store(&c->rx_bytes, e->rx_bytes);
	c->dport = e->dport;
	return c;
}

struct smc_conn *smc_conn_broken(int fd, bool server)
{
	struct smc_conn *c = smc_conn_new(fd, SMC_ON, server);
	const uint32_t ring = 4096;

	if (!c)
		return NULL;
	/* rings of the process's own that say "reset": no descriptor to
	 * wait on, every call answers at once */
	c->map = mmap(NULL, map_len(ring), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->map == MAP_FAILED) {
		c->map = NULL;
		smc_conn_free(c);
		return NULL;
	}
	c->maplen = map_len(ring);
	conn_rings(c, ring, true);
	atomic_store(&c->tx.h->reset, 1);
	atomic_store(&c->peer_gone, true);
	c->reason = SMC_R_EXEC_LOST;
	return c;
}
