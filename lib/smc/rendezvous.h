/* SPDX-License-Identifier: Apache-2.0 */
/* The per-host rendezvous: a directory of Unix sockets, one per
 * listening TCP port, and the out-of-band CLC messages
 * (docs/DESIGN-smc.md, "The handshake"). */
#ifndef ANOLE_SMC_RENDEZVOUS_H
#define ANOLE_SMC_RENDEZVOUS_H

#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SMC_CLC_MAGIC 0x534d4341u /* "SMCA" */
#define SMC_CLC_MAXFDS 5

enum smc_clc_type {
	SMC_CLC_PROPOSAL = 1, /* client: + its TCP socket */
	SMC_CLC_ACCEPT,       /* server: + memfd and the 4 eventfds */
	SMC_CLC_CONFIRM,      /* client: switched */
	SMC_CLC_DECLINE,      /* either: stay TCP */
	SMC_CLC_WITHDRAW,     /* client: gave up waiting, stays TCP */
};

struct smc_clc {
	uint32_t magic;
	uint32_t type;
	uint32_t ring_size; /* ACCEPT: the rings' size; DECLINE: why (below) */
	uint32_t nfds;
};

/* DECLINE's reason: the address the client connected to is none a
 * listener of this server on that port accepts on, so no connection of
 * this server can be it (another host, another namespace, or another
 * server bound to another address, on the same port). */
#define SMC_DECLINE_NOT_LOCAL 1

/* The rendezvous socket of TCP port @port in @buf; -ENAMETOOLONG. */
int smc_rv_path(char *buf, size_t len, uint16_t port);
/* A listening SOCK_SEQPACKET socket at the port's path (a dead
 * server's socket is replaced); fd or -errno. */
int smc_rv_listen(uint16_t port);
/* Connected to the port's rendezvous; fd or -errno (-ENOENT: none). */
int smc_rv_connect(uint16_t port);
/* Sends one message with @nfds descriptors; 0 or -errno. */
int smc_clc_send(int sock, enum smc_clc_type type, uint32_t ring_size, const int *fds, int nfds);
/* Receives one message within @timeout_ms (-1: no limit) with up to
 * SMC_CLC_MAXFDS descriptors into @fds (the rest -1; close them);
 * 0, -ETIMEDOUT, -ECONNRESET (EOF) or -EPROTO. */
int smc_clc_recv(int sock, struct smc_clc *m, int fds[SMC_CLC_MAXFDS], int timeout_ms);
/* True if the peer of Unix socket @sock runs as our effective uid. */
bool smc_rv_peer_is_us(int sock);
/* @fd moved to a number far above the program's own (closed; the new
 * one returned, or @fd itself if that fails): programs size tables by
 * their descriptor numbers (wrk: 3 per connection), and the library's
 * 5 per connection must not crowd them. */
int smc_fd_high(int fd);
/* The handshake's bound on waiting for the peer (ANOLE_SMC_TIMEOUT_MS). */
int smc_timeout_ms(void);

/* poll(2) straight to the kernel, with @mask (NULL: none) in place
 * during the wait: the library interposes poll and ppoll, and its own
 * waits must not come back into them. */
static inline int smc_kpoll(struct pollfd *p, nfds_t n, int ms, const sigset_t *mask)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	return (int)syscall(SYS_ppoll, p, n, ms < 0 ? NULL : &ts, mask, (size_t)_NSIG / 8);
}

static inline int smc_poll(struct pollfd *p, nfds_t n, int ms)
{
	return smc_kpoll(p, n, ms, NULL);
}

#endif
