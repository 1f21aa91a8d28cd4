/* SPDX-License-Identifier: Apache-2.0 */
/* epoll on shared-memory sockets (docs/DESIGN-smc.md, "poll, select,
 * epoll"). The kernel's epoll set keeps the program's plain
 * descriptors; the SMC members of each set live in a shadow list here,
 * their readiness computed from the rings as poll does. epoll_wait
 * reports ready members without sleeping; otherwise it arms their
 * wake-ups and sleeps in one ppoll on the kernel's set and the members'
 * wake-up descriptors, then looks again.
 *
 * An accepted connection nobody has looked at yet goes into the
 * kernel's set as a plain member ("lazy", remembered here), with the
 * process tree's doorbell (fork.c) in the set: the rendezvous rings it
 * when a proposal matches no known connection, and epoll_wait then
 * looks at the lazy members as epoll_ctl did before (DESIGN-smc.md,
 * "The server's side of a connection that stays TCP"). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "smc/fork.h"
#include "smc/preload.h"
#include "smc/rendezvous.h"

struct ep_member {
	int fd;
	struct smc_conn *c;
	struct epoll_event ev; /* the program's events and data */
	uint64_t gin, gout;    /* edge-triggered: generations last reported */
	bool off;              /* EPOLLONESHOT fired; EPOLL_CTL_MOD re-arms */
	struct ep_member *next;
};

struct ep_set {
	int ep;
	struct ep_member *members;
	struct ep_member *lazy; /* in the kernel's set, not looked at yet */
	bool bell;              /* the doorbell is in the kernel's set */
	bool nolazy;            /* the program's data is the doorbell's */
	struct ep_set *next;
};

/* The doorbell's data in the kernel's set: filtered out of what
 * epoll_wait returns, only in sets that hold the doorbell. */
#define EP_BELL 0xa701e5bd00bbe11ULL

_Atomic bool smc_ep_lazy_moved;

/* All shadows, under ep_lock; the head is atomic so that close() of
 * a program without SMC members in epoll costs no lock. Lock order:
 * ep_lock, then a connection's lock, then smc_srv_lock. Recursive:
 * settling a member under it closes the library's own descriptors,
 * and close() comes back here (those are never epoll sets). */
static pthread_mutex_t ep_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static _Atomic(struct ep_set *) sets;
/* Members and lazy members in all shadows: with none, EPOLL_CTL_MOD
 * and _DEL (an event loop's every connection) go to the kernel
 * without ep_lock. */
static _Atomic unsigned ep_nmembers;

#define EP_POLLBITS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLRDNORM | EPOLLWRNORM | EPOLLPRI)
#define EP_NEVER UINT64_MAX

static struct ep_set *set_find(int ep)
{
	for (struct ep_set *s = atomic_load(&sets); s; s = s->next)
		if (s->ep == ep)
			return s;
	return NULL;
}

static struct ep_member *in_list(struct ep_member *m, int fd)
{
	for (; m; m = m->next)
		if (m->fd == fd)
			return m;
	return NULL;
}

static struct ep_member *member_find(struct ep_set *s, int fd)
{
	return s ? in_list(s->members, fd) : NULL;
}

/* Unlinks *@p and frees it. */
static void member_drop(struct ep_member **p)
{
	struct ep_member *m = *p;

	*p = m->next;
	free(m);
	atomic_fetch_sub(&ep_nmembers, 1);
}

/* The shadow of @ep, made if need be (NULL: no memory). Under ep_lock. */
static struct ep_set *set_get(int ep)
{
	struct ep_set *s = set_find(ep);

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->ep = ep;
		s->next = atomic_load(&sets);
		atomic_store(&sets, s);
	}
	return s;
}

static int ep_add(int ep, int fd, struct smc_conn *c, const struct epoll_event *ev)
{
	struct ep_set *s = set_find(ep);
	struct ep_member *m;

	if (member_find(s, fd))
		return -EEXIST;
	s = set_get(ep);
	if (!s)
		return -ENOMEM;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	*m = (struct ep_member){fd, c, *ev, EP_NEVER, EP_NEVER, false, s->members};
	s->members = m;
	atomic_fetch_add(&ep_nmembers, 1);
	return 0;
}

/* A member for @c unless its last number was closed meanwhile (then
 * smc_ep_forget has run or runs after ep_lock is let go). Under
 * ep_lock. */
static int ep_add_live(int ep, int fd, struct smc_conn *c, const struct epoll_event *ev)
{
	bool live;

	pthread_mutex_lock(&c->lock);
	live = c->refs > 0;
	pthread_mutex_unlock(&c->lock);
	return live ? ep_add(ep, fd, c, ev) : -EBADF;
}

/* Whether @c can go into the kernel's set without a look: a server
 * connection nobody has looked at, in a process tree with a doorbell.
 * EPOLLONESHOT is left to the usual way: the kernel may have fired and
 * disarmed it before the member moves into the shadow. */
static bool lazy_ok(struct smc_conn *c, const struct epoll_event *ev)
{
	return c->server && ev && !(ev->events & EPOLLONESHOT) &&
	       atomic_load(&c->state) == SMC_SRV_PENDING && !atomic_load(&c->known) &&
	       smc_fork_doorbell() >= 0;
}

/* epoll_ctl(ADD) of @c as a lazy member: 1 done (*@rc the kernel's
 * answer), 0 the usual way (a proposal is waiting, or no doorbell). */
static int lazy_add(int ep, int fd, struct smc_conn *c, struct epoll_event *ev, int *rc)
{
	REAL(epoll_ctl);
	struct ep_member *m = NULL;
	struct ep_set *s;

	pthread_mutex_lock(&ep_lock);
	s = set_get(ep);
	if (s && !s->bell && !s->nolazy) {
		struct epoll_event b = {EPOLLIN | EPOLLET, {.u64 = EP_BELL}};

		s->bell = !real_epoll_ctl(ep, EPOLL_CTL_ADD, smc_fork_doorbell(), &b) ||
			  errno == EEXIST;
	}
	/* Dekker with the rendezvous, which queues, then rings: with the
	 * doorbell in the set, a proposal not seen waiting here rings it */
	if (s && s->bell && !smc_fork_waiting() && !member_find(s, fd))
		m = calloc(1, sizeof(*m));
	if (!m) {
		pthread_mutex_unlock(&ep_lock);
		return 0;
	}
	*rc = real_epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev);
	if (*rc) {
		int e = errno;

		free(m);
		pthread_mutex_unlock(&ep_lock);
		errno = e;
		return 1;
	}
	*m = (struct ep_member){fd, c, *ev, EP_NEVER, EP_NEVER, false, s->lazy};
	s->lazy = m;
	atomic_fetch_add(&ep_nmembers, 1);
	atomic_store(&c->ep_lazy, true);
	pthread_mutex_unlock(&ep_lock);
	return 1;
}

/* The lazy members of @s that are known now leave the kernel's set
 * for the shadow; those committed to TCP stay plain members, forgotten
 * here. @look (the doorbell rang): each still unknown is looked at
 * first, as epoll_ctl does for a connection that is not lazy. Under
 * ep_lock. */
static void lazy_sort(struct ep_set *s, bool look)
{
	REAL(epoll_ctl);
	for (struct ep_member **p = &s->lazy; *p;) {
		struct ep_member *m = *p;
		struct smc_conn *c = m->c;
		int st;

		if (look && atomic_load(&c->state) == SMC_SRV_PENDING && !atomic_load(&c->known))
			smc_settle(c, false);
		st = atomic_load(&c->state);
		if (st != SMC_TCP && !atomic_load(&c->known)) {
			p = &m->next;
			continue;
		}
		if (st == SMC_TCP) {
			member_drop(p);
			continue;
		}
		*p = m->next;
		/* fails only if the program closed the number: forgotten then */
		if (real_epoll_ctl(s->ep, EPOLL_CTL_DEL, m->fd, NULL)) {
			/* the shadow member goes with smc_ep_forget */
		}
		m->next = s->members;
		s->members = m;
	}
}

/* Lazy members made known by a write, a dup or a read: into the
 * shadow before the program sleeps on them. */
static void lazy_moved(void)
{
	if (!atomic_load(&smc_ep_lazy_moved))
		return;
	pthread_mutex_lock(&ep_lock);
	atomic_store(&smc_ep_lazy_moved, false);
	for (struct ep_set *s = atomic_load(&sets); s; s = s->next)
		if (s->lazy)
			lazy_sort(s, false);
	pthread_mutex_unlock(&ep_lock);
}

/* EPOLL_CTL_MOD or _DEL of lazy member @fd of @s: the shadow follows,
 * the kernel's set does the rest. Under ep_lock. */
static void lazy_ctl(struct ep_set *s, int op, int fd, const struct epoll_event *ev)
{
	for (struct ep_member **p = s ? &s->lazy : NULL; p && *p; p = &(*p)->next) {
		if ((*p)->fd != fd)
			continue;
		if (op == EPOLL_CTL_MOD && ev)
			(*p)->ev = *ev;
		else if (op == EPOLL_CTL_DEL)
			member_drop(p);
		return;
	}
}

/* smc_ep_ctl with @c held. */
static int ep_ctl(int ep, int op, int fd, struct epoll_event *ev, int *rc, struct smc_conn *c)
{
	struct ep_member **p, *m;
	struct ep_set *s;
	int r = 0;

	if (op == EPOLL_CTL_ADD) {
		if (!c)
			return 0;
		if (lazy_ok(c, ev) && lazy_add(ep, fd, c, ev, rc))
			return 1;
		/* a connected client finishes its handshake, a server answers
		 * a queued proposal; still pending stays pending (settled in
		 * epoll_wait), never forced to TCP */
		smc_settle(c, false);
		if (atomic_load(&c->state) == SMC_TCP)
			return 0;
	}
	if (op != EPOLL_CTL_DEL && !ev) {
		*rc = (int)smc_fail(-EFAULT);
		return c != NULL;
	}
	if (op != EPOLL_CTL_ADD && !atomic_load(&ep_nmembers))
		return 0; /* no shadow member of any set: the kernel's */
	pthread_mutex_lock(&ep_lock);
	s = set_find(ep);
	m = member_find(s, fd);
	if (op != EPOLL_CTL_ADD && !m) {
		lazy_ctl(s, op, fd, ev);
		pthread_mutex_unlock(&ep_lock);
		return 0; /* the kernel's member, or its ENOENT */
	}
	if (op == EPOLL_CTL_ADD) {
		r = ep_add_live(ep, fd, c, ev);
	} else if (op == EPOLL_CTL_MOD) {
		*m = (struct ep_member){fd, m->c, *ev, EP_NEVER, EP_NEVER, false, m->next};
	} else if (op == EPOLL_CTL_DEL) {
		for (p = &s->members; *p != m; p = &(*p)->next)
			;
		member_drop(p);
	} else {
		r = -EINVAL;
	}
	pthread_mutex_unlock(&ep_lock);
	*rc = (int)smc_fail(r);
	return 1;
}

/* The program gives a member of @ep the doorbell's data: the doorbell
 * leaves that set for good and its lazy members are looked at now, so
 * that the program's events are never taken for a ring. */
static void bell_clash(int ep)
{
	REAL(epoll_ctl);
	struct ep_set *s;

	pthread_mutex_lock(&ep_lock);
	s = set_get(ep);
	if (s && s->bell && real_epoll_ctl(ep, EPOLL_CTL_DEL, smc_fork_doorbell(), NULL)) {
		/* not in the set after all */
	}
	if (s) {
		s->bell = false;
		s->nolazy = true;
		lazy_sort(s, true);
	}
	pthread_mutex_unlock(&ep_lock);
}

int smc_ep_ctl(int ep, int op, int fd, struct epoll_event *ev, int *rc)
{
	struct smc_conn *c;

	if (op != EPOLL_CTL_DEL && ev && ev->data.u64 == EP_BELL)
		bell_clash(ep);
	c = smc_conn_get(fd);
	int handled = ep_ctl(ep, op, fd, ev, rc, c);
	int e = errno;

	if (c)
		smc_conn_put(c);
	errno = e;
	return handled;
}

static void forget_in(struct ep_member **p, const struct smc_conn *c)
{
	while (*p)
		if ((*p)->c == c)
			member_drop(p);
		else
			p = &(*p)->next;
}

void smc_ep_forget(struct smc_conn *c)
{
	if (!atomic_load(&sets))
		return;
	pthread_mutex_lock(&ep_lock);
	for (struct ep_set *s = atomic_load(&sets); s; s = s->next) {
		forget_in(&s->members, c);
		if (atomic_load(&c->ep_lazy))
			forget_in(&s->lazy, c);
	}
	pthread_mutex_unlock(&ep_lock);
}

void smc_ep_closed(int fd)
{
	struct ep_set *s;

	if (!atomic_load(&sets))
		return;
	pthread_mutex_lock(&ep_lock);
	struct ep_set *prev = NULL;

	for (s = atomic_load(&sets); s && s->ep != fd; s = s->next)
		prev = s;
	if (s && prev)
		prev->next = s->next;
	else if (s)
		atomic_store(&sets, s->next);
	while (s && s->members)
		member_drop(&s->members);
	while (s && s->lazy)
		member_drop(&s->lazy);
	pthread_mutex_unlock(&ep_lock);
	free(s);
}

/* ---- epoll_wait ---- */

/* Members still pending are settled as far as they can be without a
 * wait; those that became TCP move into the kernel's set. */
static void ep_settle(struct ep_set *s)
{
	REAL(epoll_ctl);
	for (struct ep_member **p = &s->members; *p;) {
		struct smc_conn *c = (*p)->c;
		int st = atomic_load(&c->state);

		if (st == SMC_CLI_PENDING || st == SMC_SRV_PENDING)
			smc_settle(c, false);
		if (atomic_load(&c->state) == SMC_CLI_PENDING) {
			struct pollfd t = {c->fd, POLLOUT, 0};

			/* a refused connect: the kernel says so, not us */
			if (smc_poll(&t, 1, 0) > 0 && (t.revents & (POLLERR | POLLHUP)))
				smc_conn_to_tcp(c);
		}
		if (atomic_load(&c->state) == SMC_TCP) {
			/* fails only if the program closed the number: gone either way */
			if (real_epoll_ctl(s->ep, EPOLL_CTL_ADD, (*p)->fd, &(*p)->ev)) {
				/* nothing to report to a later epoll_wait */
			}
			member_drop(p);
			continue;
		}
		p = &(*p)->next;
	}
}

/* @m's events now as epoll reports them; edge-triggered members only
 * once their generation moved (new bytes, new space, a close). */
static uint32_t member_ready(struct ep_member *m)
{
	uint32_t want = m->ev.events, r;
	int st = atomic_load(&m->c->state);
	uint64_t gin, gout;

	if (m->off)
		return 0;
	if (st == SMC_SRV_PENDING)
		return want & EPOLLOUT; /* as TCP: writable; a write settles it */
	if (st != SMC_ON)
		return 0;
	smc_conn_gens(m->c, &gin, &gout);
	r = (uint16_t)smc_conn_revents_now(m->c, (short)(want & EP_POLLBITS));
	if (!r)
		return 0;
	if (want & EPOLLET) {
		if (gin == m->gin && gout == m->gout)
			return 0;
		m->gin = gin;
		m->gout = gout;
	}
	if (want & EPOLLONESHOT)
		m->off = true;
	return r;
}

/* The peers' liveness, every member's control socket in one poll
 * rather than one poll per member per call. */
static void ep_liveness(struct ep_set *s)
{
	struct pollfd small[64], *p = small;
	struct smc_conn *who_small[64], **who = who_small;
	int cap = 0, n = 0;

	for (struct ep_member *m = s->members; m; m = m->next)
		cap++;
	if (cap > 64) {
		p = malloc(sizeof(*p) * (size_t)cap);
		who = malloc(sizeof(*who) * (size_t)cap);
	}
	if (p && who) {
		for (struct ep_member *m = s->members; m; m = m->next)
			if (atomic_load(&m->c->state) == SMC_ON && !atomic_load(&m->c->peer_gone)) {
				p[n] = (struct pollfd){m->c->ctl, POLLIN, 0};
				who[n++] = m->c;
			}
		if (n && smc_poll(p, (nfds_t)n, 0) > 0)
			for (int i = 0; i < n; i++)
				if (p[i].revents)
					smc_conn_ctl_event(who[i], p[i].revents);
	}
	if (p != small)
		free(p);
	if (who != who_small)
		free(who);
}

static int ep_collect_ready(struct ep_set *s, struct epoll_event *evs, int max)
{
	int n = 0;

	for (struct ep_member *m = s->members; m && n < max; m = m->next) {
		uint32_t r = member_ready(m);

		if (r) {
			evs[n].events = r;
			evs[n].data = m->ev.data;
			n++;
		}
	}
	return n;
}

static int ep_collect(struct ep_set *s, struct epoll_event *evs, int max)
{
	ep_liveness(s);
	return ep_collect_ready(s, evs, max);
}

/* One member's part of a sleep: its connection, held until the sleep
 * is undone (the program may close it or delete the member meanwhile),
 * and what was armed, so that exactly that is undone. */
struct ep_armed {
	struct smc_conn *c;
	int first, n;  /* its descriptors in big[] */
	short events;  /* armed in shared memory with these, ... */
	bool on;       /* ... or as a pending connection */
};

/* One sleep's descriptors: the kernel's set first, then each member's
 * wake-ups. */
struct ep_plan {
	struct pollfd *big;
	struct ep_armed *arm;
	int n, narm;
};

/* @m's descriptors to sleep on into @out; *@on: armed in shared
 * memory (else as a pending connection). The state is read once, so
 * that what is undone is what was armed. */
static int member_arm(struct ep_member *m, struct pollfd *out, bool *on)
{
	struct smc_conn *c = m->c;
	int st = atomic_load(&c->state), k;

	*on = false;
	if (m->off)
		return 0;
	if (st == SMC_CLI_PENDING) {
		out[0] = (struct pollfd){c->fd, POLLOUT, 0}; /* the connect ends */
		return 1;
	}
	if (st == SMC_SRV_PENDING) {
		out[0] = (struct pollfd){c->fd, POLLIN, 0}; /* TCP data first */
		/* a proposal, or the client's answer to our ACCEPT */
		out[1] = (struct pollfd){smc_srv_waitfd(c), POLLIN, 0};
		return 2;
	}
	if (st != SMC_ON) {
		/* TCP meanwhile (settled by another thread): the socket
		 * itself, until the next look moves it into the kernel's set */
		out[0] = (struct pollfd){c->fd, (short)(m->ev.events & EP_POLLBITS), 0};
		return 1;
	}
	*on = true;
	k = smc_conn_arm(c, (short)(m->ev.events & EP_POLLBITS), out);
	/* a dead peer's control socket stays readable: an edge already told */
	if (atomic_load(&c->peer_gone))
		k--;
	return k;
}

static int ep_arm(struct ep_set *s, struct ep_plan *pl)
{
	int cap = 1, nm = 0;

	for (struct ep_member *m = s->members; m; m = m->next)
		nm++;
	cap += nm * SMC_ARM_MAX;
	pl->big = calloc((size_t)cap, sizeof(*pl->big));
	pl->arm = calloc((size_t)nm + 1, sizeof(*pl->arm));
	if (!pl->big || !pl->arm)
		return -ENOMEM;
	pl->big[0] = (struct pollfd){s->ep, POLLIN, 0};
	pl->n = 1;
	for (struct ep_member *m = s->members; m; m = m->next) {
		struct ep_armed *a = &pl->arm[pl->narm];

		a->events = (short)(m->ev.events & EP_POLLBITS);
		a->first = pl->n;
		a->n = member_arm(m, pl->big + pl->n, &a->on);
		if (!a->n)
			continue;
		a->c = m->c;
		smc_conn_hold(a->c);
		pl->n += a->n;
		pl->narm++;
	}
	return 0;
}

static void notify_drain(struct smc_conn *c)
{
	uint64_t v;

	pthread_mutex_lock(&c->lock);
	if (atomic_load(&c->state) == SMC_SRV_PENDING && c->notify >= 0 &&
	    read(c->notify, &v, sizeof(v)) < 0) {
		/* drained by a settling thread */
	}
	pthread_mutex_unlock(&c->lock);
}

/* Undoes ep_arm after the sleep, member by member as armed (whether
 * or not it is still in the set): waits ended, fired eventfds drained,
 * the connections let go. */
static void ep_disarm(struct ep_plan *pl)
{
	for (int i = 0; i < pl->narm; i++) {
		struct ep_armed *a = &pl->arm[i];

		if (a->on)
			smc_conn_disarm(a->c, a->events, pl->big + a->first, a->n);
		/* armed as pending: its notify eventfd, if it is still one
		 * (settled by another thread meanwhile: closed under its lock) */
		else if (a->n == 2 && pl->big[a->first + 1].revents)
			notify_drain(a->c);
		smc_conn_put(a->c);
	}
	pl->narm = 0;
}

static void plan_free(struct ep_plan *pl)
{
	free(pl->big);
	free(pl->arm);
	pl->big = NULL;
	pl->arm = NULL;
}

/* The kernel's answer for @ep without the doorbell's events; a ring
 * has the set's lazy members looked at. */
static int kwait(int ep, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	REAL(epoll_pwait);
	int n = real_epoll_pwait(ep, evs, max, timeout, mask), k = 0;
	struct ep_set *s;
	bool rung = false;

	for (int i = 0; i < n; i++)
		rung |= evs[i].data.u64 == EP_BELL;
	if (!rung)
		return n;
	pthread_mutex_lock(&ep_lock);
	s = set_find(ep);
	if (s && s->bell) {
		for (int i = 0; i < n; i++)
			if (evs[i].data.u64 != EP_BELL)
				evs[k++] = evs[i];
		lazy_sort(s, true);
	} else {
		k = n; /* the program's own data */
	}
	pthread_mutex_unlock(&ep_lock);
	return k;
}

/* The kernel's own ready members after ours, without waiting. */
static int ep_plain(int ep, struct epoll_event *evs, int n, int max)
{
	int k = n < max ? kwait(ep, evs + n, max - n, 0, NULL) : 0;

	return n + (k > 0 ? k : 0);
}

/* One look: ready members, or armed for a sleep (@pl filled). */
static int ep_look(struct ep_set *s, struct epoll_event *evs, int max, struct ep_plan *pl)
{
	int n;

	ep_settle(s);
	n = ep_collect(s, evs, max);
	if (n)
		return n;
	if (ep_arm(s, pl)) {
		ep_disarm(pl);
		plan_free(pl);
		return -ENOMEM;
	}
	/* armed: look once more, a wake-up may have been missed */
	n = ep_collect(s, evs, max);
	if (n) {
		ep_disarm(pl);
		plan_free(pl);
	}
	return n;
}

/* Spinning before a sleep (DESIGN-smc "Rings"): only for sets this
 * small, since each look is O(members). */
#define EP_SPIN_MEMBERS 64

struct ep_spin {
	int ep, max, n, looks;
	bool plain; /* n is the kernel's answer */
	struct epoll_event *evs;
};

/* One look of a spin: the members' rings (their peers' liveness is
 * left to the sleep's poll, at most a spin later), and every 256 looks
 * the kernel's own set, so that plain descriptors are not kept waiting
 * for the whole spin. */
static bool ep_spin_look(void *arg)
{
	struct ep_spin *a = arg;
	struct ep_set *s;

	pthread_mutex_lock(&ep_lock);
	s = set_find(a->ep);
	a->n = s ? ep_collect_ready(s, a->evs, a->max) : 0;
	pthread_mutex_unlock(&ep_lock);
	if (!s || a->n)
		return true;
	if (++a->looks % 256 == 0) {
		a->n = kwait(a->ep, a->evs, a->max, 0, NULL);
		a->plain = true;
		return a->n != 0;
	}
	return false;
}

static bool ep_spins(struct ep_set *s)
{
	int k = 0;

	for (struct ep_member *m = s->members; m; m = m->next)
		if (++k > EP_SPIN_MEMBERS || atomic_load(&m->c->state) != SMC_ON)
			return false;
	return k && smc_spin_pays(NULL);
}

/* A set without shadow members: the kernel's wait, again if all it
 * said was the doorbell and time is left; true when done (*@n). */
static bool ep_kernel(int ep, struct epoll_event *evs, int max, int left, const sigset_t *mask,
		      int *n)
{
	*n = kwait(ep, evs, max, left, mask);
	return *n != 0 || left == 0;
}

static int ep_wait(int ep, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	REAL(epoll_pwait);
	long end = timeout > 0 ? smc_now_ms() + timeout : 0;

	if (max <= 0 || !evs)
		return real_epoll_pwait(ep, evs, max, timeout, mask);
	bool spun = false; /* before each sleep, once */

	for (;;) {
		long rest = timeout > 0 ? end - smc_now_ms() : timeout;
		int left = rest < 0 && timeout >= 0 ? 0 : (int)rest;
		struct ep_plan pl = {0};
		struct ep_set *s;
		int n, rc, err;

		lazy_moved();
		pthread_mutex_lock(&ep_lock);
		s = set_find(ep);
		if (!s || !s->members) {
			pthread_mutex_unlock(&ep_lock);
			if (ep_kernel(ep, evs, max, left, mask, &n))
				return n;
			continue;
		}
		if (timeout != 0 && !spun && ep_spins(s)) {
			struct ep_spin a = {ep, max, 0, 0, false, evs};

			spun = true;
			n = ep_collect(s, evs, max);
			pthread_mutex_unlock(&ep_lock);
			if (!n && smc_spin_until(ep_spin_look, &a))
				n = a.n;
			if (n && !a.plain)
				return ep_plain(ep, evs, n, max);
			if (n)
				return n; /* the kernel's answer; -1 with its errno */
			continue; /* look again, arm and sleep: no second spin */
		}
		n = ep_look(s, evs, max, &pl);
		pthread_mutex_unlock(&ep_lock);
		if (n)
			return n < 0 ? (int)smc_fail(n) : ep_plain(ep, evs, n, max);
		rc = smc_kpoll(pl.big, (nfds_t)pl.n, left, mask);
		err = errno; /* the disarm's reads must not change it */
		pthread_mutex_lock(&ep_lock);
		s = set_find(ep);
		ep_disarm(&pl);
		n = rc < 0 || !s ? 0 : ep_collect(s, evs, max);
		pthread_mutex_unlock(&ep_lock);
		if (rc < 0) {
			plan_free(&pl);
			errno = err;
			return -1; /* EINTR: a signal the mask let in */
		}
		n = pl.big[0].revents ? ep_plain(ep, evs, n, max) : n;
		plan_free(&pl);
		if (n || (timeout >= 0 && smc_now_ms() >= end))
			return n;
		spun = false; /* woken with nothing: spin again first */
	}
}

EXPORT int epoll_wait(int ep, struct epoll_event *evs, int max, int timeout)
{
	REAL(epoll_wait);
	if (!atomic_load(&sets))
		return real_epoll_wait(ep, evs, max, timeout);
	return ep_wait(ep, evs, max, timeout, NULL);
}

EXPORT int epoll_pwait(int ep, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	REAL(epoll_pwait);
	if (!atomic_load(&sets))
		return real_epoll_pwait(ep, evs, max, timeout, mask);
	return ep_wait(ep, evs, max, timeout, mask);
}

EXPORT int epoll_pwait2(int ep, struct epoll_event *evs, int max, const struct timespec *t,
			const sigset_t *mask)
{
	REAL(epoll_pwait2);
	if (!atomic_load(&sets))
		return real_epoll_pwait2(ep, evs, max, t, mask);
	return ep_wait(ep, evs, max, ts_ms(t), mask);
}
