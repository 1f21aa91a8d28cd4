/* SPDX-License-Identifier: Apache-2.0 */
/* One connection's state machine: the handshake on either side, the
 * data path through the rings, waits, shutdown and close
 * (docs/DESIGN-smc.md). Errors are negative errno values. */
#ifndef ANOLE_SMC_CONN_H
#define ANOLE_SMC_CONN_H

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "smc/conntab.h"

/* Ring bytes per direction. */
#define SMC_RING_SIZE (256u * 1024)

struct smc_conn *smc_conn_new(int fd, int state, bool server);
/* Unmaps, closes the connection's own descriptors (not @c->fd), frees. */
void smc_conn_free(struct smc_conn *c);

/* Client: the handshake, if the TCP connection is established. */
void smc_cli_settle(struct smc_conn *c);
/* Server: answers a queued proposal or commits to TCP when TCP data
 * came first or @writing; waits for either if @may_wait. 0 when
 * settled, -EAGAIN (still pending) or -EINTR. */
int smc_srv_settle(struct smc_conn *c, bool may_wait, bool writing);
/* Server: the program's first read of an accepted connection it has
 * not looked at yet, as one non-blocking recvmsg(@m, @flags): TCP data,
 * EOF or an error there commit it to TCP and are the read's result
 * (*@rc, errno set when -1); true then. False: nothing on TCP yet (or
 * not such a read), the usual way decides (DESIGN-smc.md, "Short
 * connections"). */
bool smc_srv_first_read(struct smc_conn *c, struct msghdr *m, int flags, ssize_t *rc);
/* Server pending: the descriptor that becomes readable when a
 * proposal comes (the notify eventfd: drain it) or, once ACCEPT is
 * sent, when the client answers (the control socket: do not read it). */
int smc_srv_waitfd(struct smc_conn *c);
/* Why a new client connection to server port @port should stay TCP
 * untracked (SMC_R_SHORT: this process's last ones there were short;
 * SMC_R_NO_RENDEZVOUS: its rendezvous was not there a moment ago), or
 * SMC_R_NONE to propose as usual (conn.c). */
enum smc_reason smc_port_skip(const struct sockaddr *addr, socklen_t len);
/* Settles whatever is pending as far as possible without waiting long. */
void smc_settle(struct smc_conn *c, bool writing);
/* Commits a pending connection to TCP (a call the slice does not
 * handle); false if it is already in shared memory. */
bool smc_conn_to_tcp(struct smc_conn *c);

/* The data path of an SMC_ON connection (MSG_DONTWAIT, MSG_PEEK,
 * MSG_WAITALL, MSG_NOSIGNAL). */
ssize_t smc_conn_send(struct smc_conn *c, const struct iovec *iov, int iovcnt, int flags);
ssize_t smc_conn_recv(struct smc_conn *c, const struct iovec *iov, int iovcnt, int flags);
int smc_conn_shutdown(struct smc_conn *c, int how);
/* Tells the peer, counts, frees @c (the caller closes c->fd). */
void smc_conn_close(struct smc_conn *c);
/* Keeps @c alive while it is used without the table (a sleep in
 * epoll_wait, a call in progress); the last put closes it
 * (smc_conn_close). The numbers together hold one (smc_conn_new). */
void smc_conn_hold(struct smc_conn *c);
void smc_conn_put(struct smc_conn *c);

/* poll: the readiness of @c for @events now. */
short smc_conn_revents(struct smc_conn *c, short events);
/* The same without looking at the control socket (the caller polled
 * it, and gives its revents to smc_conn_ctl_event). */
short smc_conn_revents_now(struct smc_conn *c, short events);
void smc_conn_ctl_event(struct smc_conn *c, short revents);
/* Arms the wake-ups for @events and fills @out (at most
 * SMC_ARM_MAX) with the descriptors to sleep on; the count. The
 * control socket is the last of them (a caller may leave it out).
 * smc_conn_disarm, given the same @events, undoes it. */
#define SMC_ARM_MAX 4
int smc_conn_arm(struct smc_conn *c, short events, struct pollfd *out);
void smc_conn_disarm(struct smc_conn *c, short events, const struct pollfd *fds, int n);
/* Whether a waiter should spin before it sleeps: another CPU is free for
 * the peer, and (@c not NULL) the peer is not itself asleep waiting for
 * us. */
bool smc_spin_pays(struct smc_conn *c);
/* Calls @done(@arg) until it is true (true) or the spin budget (50 us,
 * ANOLE_SMC_SPIN_US) ran out (false). */
bool smc_spin_until(bool (*done)(void *), void *arg);
/* Edge-triggered epoll: numbers that change whenever bytes or space
 * arrive (the ring cursors) or the peer closes, per direction. */
void smc_conn_gens(struct smc_conn *c, uint64_t *gin, uint64_t *gout);
/* Bytes waiting in the receive ring (@tx: not yet read by the peer
 * from the send ring), or -ECONNRESET (FIONREAD, SIOCOUTQ). */
int smc_conn_queued(struct smc_conn *c, bool tx);

/* exec (exec.c): the bytes a connection with rings of @ring bytes maps. */
size_t smc_map_len(uint32_t ring);
struct smc_exec_ent;
/* The connection @e describes, its descriptors checked by the caller:
 * mapped, in shared memory, owning @e's descriptors, c->fd its first
 * number (not in the table yet); NULL if it cannot be mapped. */
struct smc_conn *smc_conn_resume(const struct smc_exec_ent *e);
/* A connection that could not be taken over at exec: reads give
 * ECONNRESET, writes EPIPE, poll POLLERR|POLLHUP, never the bare TCP
 * socket, which carries none of its bytes. NULL without memory. */
struct smc_conn *smc_conn_broken(int fd, bool server);

/* The rendezvous of listener @fd (bound to TCP @port), served by the
 * library's thread; 0 or -errno. */
int smc_rv_serve(int fd, uint16_t port);
/* Frees @p and its descriptors, DECLINE sent first if @decline. */
void smc_proposal_drop(struct smc_proposal *p, bool decline);
/* A server connection @c accepted in a forked child of the listener's
 * process: announced so that its proposal is forwarded here. */
void smc_rv_accepted_in_child(struct smc_conn *c);

/* A connection put in a kernel epoll set without a look became known
 * (epoll.c moves such ones into its shadow at the next epoll_wait). */
extern _Atomic bool smc_ep_lazy_moved;

#endif
