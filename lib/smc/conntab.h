/* SPDX-License-Identifier: Apache-2.0 */
/* The process's shared-memory connections: an fd-indexed table, the
 * server's list of accepted connections and queued proposals, and the
 * counters (docs/DESIGN-smc.md). */
#ifndef ANOLE_SMC_CONNTAB_H
#define ANOLE_SMC_CONNTAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smc/ring.h"

#define SMC_FD_MAX 65536

enum smc_state {
	SMC_LISTEN = 1, /* a listener with a rendezvous socket */
	SMC_CLI_PENDING,
	SMC_SRV_PENDING,
	SMC_TCP, /* server connections only, so late proposals are declined */
	SMC_ON,
};

/* Why a connection stayed TCP (DESIGN-smc.md, "Fallback points"). */
enum smc_reason {
	SMC_R_NONE,
	SMC_R_NO_RENDEZVOUS,
	SMC_R_DECLINED,
	SMC_R_TIMEOUT,
	SMC_R_BAD_ACCEPT,
	SMC_R_TCP_FIRST,
	SMC_R_SERVER_WROTE,
	SMC_R_NO_MEMORY,
	SMC_R_WITHDRAWN,
	SMC_R_UNSUPPORTED,
	SMC_R_SHORT, /* client: this port's connections were short lately */
	SMC_R_EXEC_LOST, /* exec: the new image could not take the connection over */
	SMC_R_COUNT
};

/* A connection's two addresses as this end sees them. */
struct smc_tuple {
	struct sockaddr_storage local, peer;
};

/* The threads of this process waiting on one direction of a
 * connection, each with an eventfd of its own (DESIGN-smc.md, "Several
 * waiters"): the thread that drains the ring's eventfd signals the
 * others' own, so none of them sleeps on a wake-up another took. */
struct smc_waitq {
	pthread_mutex_t lock;
	int n, cap;
	struct smc_waiter {
		int efd; /* the thread's own eventfd (-1: it has none) */
		int cnt; /* its waits in progress here (poll may name a socket twice) */
	} *w;
};

struct smc_conn {
	int fd;
	_Atomic int state;
	bool server;
	enum smc_reason reason;
	pthread_mutex_t lock;    /* state changes, the handshake */
	pthread_mutex_t tx_lock; /* one producer */
	pthread_mutex_t rx_lock; /* one consumer */
	struct smc_tuple tuple;  /* server connections, once known */
	_Atomic bool known;      /* server: tuple read, in the server list (read
				  * unlocked by the first-read check) */
	int notify;              /* server pending: eventfd, a proposal came */
	_Atomic bool ep_lazy;    /* server: put in a kernel epoll set unknown
				  * (epoll.c), moved out once known */
	int refs;                /* the program's numbers for it (dup), under lock */
	_Atomic int holds;       /* one for all the numbers, one per sleep or call
				  * using it: the last smc_conn_put closes it */
	int priv;                /* the library's own dup of the TCP socket once
				  * the program has two numbers: c->fd then */
	int fslot;               /* forked child: its slot in fork.c's table */
	uint16_t dport;          /* client: the server's port, for learning */
	struct smc_conn *next;   /* the server list */
	/* SMC_ON */
	int ctl;                 /* the handshake's socket: liveness */
	int rx_data, rx_space;   /* eventfds of the receive ring */
	int tx_data, tx_space;   /* eventfds of the send ring */
	int memfd;               /* the mapping's memfd, kept for exec */
	void *map;
	size_t maplen;
	struct smc_ring rx, tx;
	struct smc_waitq rxq, txq; /* waiting for bytes, for space */
	_Atomic bool peer_gone, rd_shut, wr_shut;
	_Atomic uint64_t rx_bytes, tx_bytes;
};

/* A proposal the rendezvous thread queued for the program's first op. */
struct smc_proposal {
	int sock;
	int tcp;                /* the client's TCP socket: the proof, forwarded */
	uint64_t token;         /* pre-fork: the inbox of the child that accepted */
	struct smc_tuple tuple; /* as the server sees it */
	struct smc_proposal *next;
};

/* The entry, not held: only where no other thread can close it. */
struct smc_conn *smc_tab_get(int fd);
/* The entry, held (smc_conn_put when done); NULL if none. */
struct smc_conn *smc_tab_hold(int fd);
void smc_tab_set(int fd, struct smc_conn *c);
/* The table's entries are all below this (0: never one). */
int smc_tab_top(void);
/* Takes the entry out of the table; NULL if none. */
struct smc_conn *smc_tab_take(int fd);

/* Server side, under smc_srv_lock. */
extern pthread_mutex_t smc_srv_lock;
void smc_srv_add(struct smc_conn *c);
void smc_srv_remove(struct smc_conn *c);
struct smc_conn *smc_srv_find(const struct smc_tuple *t);
/* Queues @p; false if the queue is full. */
bool smc_srv_queue(struct smc_proposal *p);
/* Takes the proposal for @t out of the queue; NULL if none. */
struct smc_proposal *smc_srv_dequeue(const struct smc_tuple *t);
/* Takes the first queued proposal @pred says yes to; NULL if none. */
struct smc_proposal *smc_srv_dequeue_if(bool (*pred)(struct smc_proposal *p));
/* Proposals queued now. */
unsigned smc_srv_nqueued(void);

/* An AF_INET/AF_INET6 stream socket. */
bool smc_tcp_stream(int fd);

/* Same connection: addresses equal, IPv4-mapped IPv6 taken as IPv4. */
bool smc_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* The connection's addresses from @fd; 0 or -errno. */
int smc_tuple_of(int fd, struct smc_tuple *t);

/* Counters; a line per connection to ANOLE_SMC_STATS when it closes. */
void smc_stat_close(const struct smc_conn *c);
/* A client connection kept on TCP untracked for @why (short-lived or
 * no-rendezvous): counted, written as one line per 256 and at exit
 * ("count"). */
void smc_stat_skipped(enum smc_reason why);
const char *smc_reason_name(enum smc_reason r);

#endif
