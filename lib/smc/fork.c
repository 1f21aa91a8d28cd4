/* SPDX-License-Identifier: Apache-2.0 */
#include "smc/fork.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include "smc/rendezvous.h"

#define SMC_FORK_SLOTS 1024

enum { SLOT_FREE, SLOT_BUSY, SLOT_USED };

struct fork_slot {
	_Atomic uint32_t state;
	uint64_t token;
	struct smc_tuple tuple; /* as the server sees it */
};

/* MAP_SHARED|MAP_ANONYMOUS: the process tree's alone, no path. */
struct fork_tab {
	_Atomic uint32_t waiting; /* the rendezvous holds unmatched proposals */
	struct fork_slot slot[SMC_FORK_SLOTS];
};

static struct fork_tab *ftab;
static int fwake = -1;
static int fbell = -1;
static bool is_child;
static uint64_t my_token;
static int inbox = -1;

int smc_fork_init(void)
{
	struct fork_tab *t;

	if (ftab)
		return 0;
	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return -errno;
	fwake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fwake < 0) {
		munmap(t, sizeof(*t));
		return -EMFILE;
	}
	/* the doorbell (DESIGN-smc "The server's side of a connection
	 * that stays TCP"): never drained, so that every process's
	 * edge-triggered epoll set sees each ring however many share it */
	fbell = smc_fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	ftab = t;
	return 0;
}

int smc_fork_doorbell(void)
{
	return ftab ? fbell : -1;
}

bool smc_fork_waiting(void)
{
	return ftab && atomic_load(&ftab->waiting);
}

void smc_fork_ring(void)
{
	uint64_t one = 1;

	if (fbell >= 0 && write(fbell, &one, sizeof(one)) < 0) {
		/* EAGAIN after 2^64-2 rings: the count still says rung */
	}
}

bool smc_fork_is_child(void)
{
	return is_child && ftab;
}

int smc_fork_wakefd(void)
{
	return fwake;
}

void smc_fork_set_waiting(unsigned n)
{
	/* a child's own queue (forwarded proposals) is not the listener's */
	if (ftab && !is_child)
		atomic_store(&ftab->waiting, n);
}

/* Linear probing from the client's port keeps lookups short. */
static unsigned slot_start(const struct smc_tuple *t)
{
	const struct sockaddr_storage *a = &t->peer;
	uint16_t port = a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
						: ((const struct sockaddr_in6 *)a)->sin6_port;

	return port % SMC_FORK_SLOTS;
}

int smc_fork_register(const struct smc_tuple *t)
{
	unsigned s = slot_start(t);

	if (!ftab || !my_token)
		return -1;
	for (unsigned i = 0; i < SMC_FORK_SLOTS; i++) {
		struct fork_slot *sl = &ftab->slot[(s + i) % SMC_FORK_SLOTS];
		uint32_t free = SLOT_FREE;

		if (!atomic_compare_exchange_strong(&sl->state, &free, SLOT_BUSY))
			continue;
		sl->tuple = *t;
		sl->token = my_token;
		atomic_store(&sl->state, SLOT_USED);
		/* Dekker with the rendezvous: it raises waiting, then looks */
		if (atomic_load(&ftab->waiting)) {
			uint64_t one = 1;

			if (write(fwake, &one, sizeof(one)) < 0) {
				/* EAGAIN: a wake-up is pending already */
			}
		}
		return (int)((s + i) % SMC_FORK_SLOTS);
	}
	return -1; /* full: that connection's client times out, then TCP */
}

void smc_fork_unregister(int slot)
{
	if (ftab && slot >= 0 && slot < SMC_FORK_SLOTS)
		atomic_store(&ftab->slot[slot].state, SLOT_FREE);
}

uint64_t smc_fork_lookup(const struct smc_tuple *t)
{
	unsigned s = slot_start(t);

	if (!ftab)
		return 0;
	for (unsigned i = 0; i < SMC_FORK_SLOTS; i++) {
		struct fork_slot *sl = &ftab->slot[(s + i) % SMC_FORK_SLOTS];

		if (atomic_load(&sl->state) == SLOT_USED && smc_addr_eq(&sl->tuple.local, &t->local) &&
		    smc_addr_eq(&sl->tuple.peer, &t->peer)) {
			uint64_t tok = sl->token;

			/* still the same entry after the copy: not reused under us */
			if (atomic_load(&sl->state) == SLOT_USED)
				return tok;
		}
	}
	return 0;
}

/* The inbox's abstract address: no file to leave behind; who may send
 * is checked by SO_PEERCRED, what is sent by the 4-tuple. */
static socklen_t inbox_addr(struct sockaddr_un *sun, uint64_t token)
{
	int n;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "anole-smc-in-%016llx",
		     (unsigned long long)token);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int smc_fork_forward(uint64_t token, int sock, int tcp)
{
	struct sockaddr_un sun;
	socklen_t len = inbox_addr(&sun, token);
	int fds[2] = {sock, tcp};
	int rc, s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -errno;
	rc = connect(s, (struct sockaddr *)&sun, len) ? -errno : 0;
	if (!rc)
		rc = smc_clc_send(s, (enum smc_clc_type)SMC_CLC_FORWARD, 0, fds, 2);
	close(s);
	return rc;
}

int smc_fork_inbox(bool *made)
{
	struct sockaddr_un sun;
	socklen_t len;
	int s;

	if (inbox >= 0)
		return inbox;
	if (getrandom(&my_token, sizeof(my_token), 0) != (ssize_t)sizeof(my_token) || !my_token)
		return -EIO;
	len = inbox_addr(&sun, my_token);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (bind(s, (struct sockaddr *)&sun, len) || listen(s, 128)) {
		int e = errno;

		close(s);
		my_token = 0;
		return -e;
	}
	inbox = s;
	*made = true;
	return s;
}

void smc_fork_inbox_lost(void)
{
	inbox = -1;
	my_token = 0;
}

void smc_fork_child_reset(void)
{
	/* the inbox, if any, was the parent's and is closed with its
	 * rendezvous sockets */
	is_child = true;
	my_token = 0;
	inbox = -1;
}
