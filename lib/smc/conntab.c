/* SPDX-License-Identifier: Apache-2.0 */
#include "smc/conntab.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic(struct smc_conn *) tab[SMC_FD_MAX];

/* A call's hold on a connection is taken under its number's lock, so
 * that close(), which takes the entry out under the same lock before it
 * lets the numbers' hold go, cannot free the connection between the
 * lookup and the hold. Striped: a lock per number would cost 2.5 MiB. */
#define TAB_STRIPES 64
static pthread_mutex_t tab_locks[TAB_STRIPES] = {[0 ... TAB_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *tab_lock(int fd)
{
	return &tab_locks[fd % TAB_STRIPES];
}

struct smc_conn *smc_tab_hold(int fd)
{
	struct smc_conn *c;

	/* nothing to hold: most descriptors of a program (no lock) */
	if (fd < 0 || fd >= SMC_FD_MAX || !atomic_load_explicit(&tab[fd], memory_order_acquire))
		return NULL;
	pthread_mutex_lock(tab_lock(fd));
	c = atomic_load(&tab[fd]);
	if (c)
		atomic_fetch_add(&c->holds, 1);
	pthread_mutex_unlock(tab_lock(fd));
	return c;
}

struct smc_conn *smc_tab_get(int fd)
{
	if (fd < 0 || fd >= SMC_FD_MAX)
		return NULL;
	return atomic_load_explicit(&tab[fd], memory_order_acquire);
}

/* One past the highest number ever set: a walk of the table (exec,
 * exit) stops there instead of at SMC_FD_MAX. */
static _Atomic int tab_top;

void smc_tab_set(int fd, struct smc_conn *c)
{
	if (fd < 0 || fd >= SMC_FD_MAX)
		return;
	pthread_mutex_lock(tab_lock(fd));
	atomic_store_explicit(&tab[fd], c, memory_order_release);
	pthread_mutex_unlock(tab_lock(fd));
	for (int top = atomic_load(&tab_top); c && fd >= top;)
		if (atomic_compare_exchange_weak(&tab_top, &top, fd + 1))
			break;
}

int smc_tab_top(void)
{
	return atomic_load(&tab_top);
}

struct smc_conn *smc_tab_take(int fd)
{
	struct smc_conn *c;

	/* a number the library never tracked: no lock (a set of the same
	 * number can only race with its close in a program that closes a
	 * descriptor it is still opening) */
	if (fd < 0 || fd >= SMC_FD_MAX || !atomic_load_explicit(&tab[fd], memory_order_acquire))
		return NULL;
	pthread_mutex_lock(tab_lock(fd));
	c = atomic_exchange(&tab[fd], NULL);
	pthread_mutex_unlock(tab_lock(fd));
	return c;
}

pthread_mutex_t smc_srv_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smc_conn *srv_conns;
static struct smc_proposal *queue;
static unsigned queued;
#define SMC_QUEUE_MAX 1024

void smc_srv_add(struct smc_conn *c)
{
	c->next = srv_conns;
	srv_conns = c;
}

void smc_srv_remove(struct smc_conn *c)
{
	for (struct smc_conn **p = &srv_conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			return;
		}
}

static bool tuple_eq(const struct smc_tuple *a, const struct smc_tuple *b)
{
	return smc_addr_eq(&a->local, &b->local) && smc_addr_eq(&a->peer, &b->peer);
}

struct smc_conn *smc_srv_find(const struct smc_tuple *t)
{
	for (struct smc_conn *c = srv_conns; c; c = c->next)
		if (tuple_eq(&c->tuple, t))
			return c;
	return NULL;
}

bool smc_srv_queue(struct smc_proposal *p)
{
	if (queued >= SMC_QUEUE_MAX)
		return false;
	p->next = queue;
	queue = p;
	queued++;
	return true;
}

struct smc_proposal *smc_srv_dequeue(const struct smc_tuple *t)
{
	for (struct smc_proposal **p = &queue; *p; p = &(*p)->next)
		if (tuple_eq(&(*p)->tuple, t)) {
			struct smc_proposal *found = *p;

			*p = found->next;
			queued--;
			return found;
		}
	return NULL;
}

struct smc_proposal *smc_srv_dequeue_if(bool (*pred)(struct smc_proposal *p))
{
	for (struct smc_proposal **p = &queue; *p; p = &(*p)->next)
		if (pred(*p)) {
			struct smc_proposal *found = *p;

			*p = found->next;
			queued--;
			return found;
		}
	return NULL;
}

unsigned smc_srv_nqueued(void)
{
	return queued;
}

/* @a as an IPv4 address and port if it is one (also v4-mapped). */
static bool addr_v4(const struct sockaddr_storage *a, uint32_t *ip, uint16_t *port)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)a;

		*ip = s->sin_addr.s_addr;
		*port = s->sin_port;
		return true;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;

		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			memcpy(ip, &s->sin6_addr.s6_addr[12], 4);
			*port = s->sin6_port;
			return true;
		}
	}
	return false;
}

bool smc_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint32_t ia = 0, ib = 0;
	uint16_t pa = 0, pb = 0;
	bool va = addr_v4(a, &ia, &pa), vb = addr_v4(b, &ib, &pb);

	if (va || vb)
		return va && vb && ia == ib && pa == pb;
	if (a->ss_family != AF_INET6 || b->ss_family != AF_INET6)
		return false;
	const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
	const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;

	return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16) &&
	       x->sin6_scope_id == y->sin6_scope_id;
}

bool smc_tcp_stream(int fd)
{
	int type = 0, dom = 0;
	socklen_t l1 = sizeof(type), l2 = sizeof(dom);

	return !getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) && type == SOCK_STREAM &&
	       !getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l2) && (dom == AF_INET || dom == AF_INET6);
}

int smc_tuple_of(int fd, struct smc_tuple *t)
{
	socklen_t l1 = sizeof(t->local), l2 = sizeof(t->peer);

	memset(t, 0, sizeof(*t));
	if (getsockname(fd, (struct sockaddr *)&t->local, &l1) ||
	    getpeername(fd, (struct sockaddr *)&t->peer, &l2))
		return -errno;
	return 0;
}

static const char *const reason_names[SMC_R_COUNT] = {
	"none", "no-rendezvous", "declined", "timeout", "bad-accept", "tcp-first",
	"server-wrote-first", "no-memory", "withdrawn", "unsupported", "short-lived", "exec-lost",
};

const char *smc_reason_name(enum smc_reason r)
{
	return r < SMC_R_COUNT ? reason_names[r] : "?";
}

/* Read when the library is loaded (see rv_settings). */
static const char *stats_path;

__attribute__((constructor)) static void stat_settings(void)
{
	const char *p = getenv("ANOLE_SMC_STATS");

	stats_path = p && *p ? strdup(p) : NULL;
}

/* One line with O_APPEND: lines of many processes do not mix. */
static void stat_write(const char *line, int n)
{
	int fd = open(stats_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return;
	if (n > 0 && write(fd, line, (size_t)n) != n) {
		/* statistics only: nothing to undo */
	}
	close(fd);
}

/* Connections kept on TCP in bulk, one line per 256 (a line per
 * connection costs open, write and close): the server's that saw TCP
 * data before it knew them, the client's it did not propose for. */
static struct stat_bulk {
	const char *role;
	enum smc_reason reason;
	_Atomic uint64_t unwritten;
} bulks[] = {{"server", SMC_R_TCP_FIRST, 0},
	     {"client", SMC_R_SHORT, 0},
	     {"client", SMC_R_NO_RENDEZVOUS, 0}};

static void stat_bulk_flush(struct stat_bulk *b)
{
	uint64_t n = atomic_exchange(&b->unwritten, 0);
	char line[192];
	int len;

	if (!n)
		return;
	len = snprintf(line, sizeof(line),
		       "{\"pid\":%d,\"role\":\"%s\",\"mode\":\"tcp\",\"reason\":\"%s\","
		       "\"tx\":0,\"rx\":0,\"count\":%llu}\n",
		       (int)getpid(), b->role, smc_reason_name(b->reason), (unsigned long long)n);
	stat_write(line, len);
}

static void stat_bulk_add(struct stat_bulk *b)
{
	if (stats_path && atomic_fetch_add(&b->unwritten, 1) + 1 >= 256)
		stat_bulk_flush(b);
}

/* The rest at exit (a killed process loses at most 255 of each). */
__attribute__((destructor)) static void stat_bulk_exit(void)
{
	if (!stats_path)
		return;
	for (size_t i = 0; i < sizeof(bulks) / sizeof(bulks[0]); i++)
		stat_bulk_flush(&bulks[i]);
}

void smc_stat_skipped(enum smc_reason why)
{
	stat_bulk_add(&bulks[why == SMC_R_SHORT ? 1 : 2]);
}

void smc_stat_close(const struct smc_conn *c)
{
	const char *path = stats_path;
	char line[256];
	int n;
	int st = atomic_load(&c->state);

	if (!path || !*path || st == SMC_LISTEN)
		return;
	/* never known: TCP data came first, no byte went through the library */
	if (c->server && !c->known && st == SMC_TCP && c->reason == SMC_R_TCP_FIRST)
		return stat_bulk_add(&bulks[0]);
	n = snprintf(line, sizeof(line),
		     "{\"pid\":%d,\"role\":\"%s\",\"mode\":\"%s\",\"reason\":\"%s\",\"tx\":%llu,\"rx\":%llu}\n",
		     (int)getpid(), c->server ? "server" : "client",
		     /* "lost": an exec could not hand it over (exec.c) */
		     st != SMC_ON ? "tcp" : c->reason == SMC_R_EXEC_LOST ? "lost" : "smc",
		     smc_reason_name(c->reason), (unsigned long long)atomic_load(&c->tx_bytes),
		     (unsigned long long)atomic_load(&c->rx_bytes));
	stat_write(line, n);
}
