/* SPDX-License-Identifier: Apache-2.0 */
/* Pre-fork servers (docs/DESIGN-smc.md, "Pre-fork servers"): the
 * connections accepted by a forked child of the process that runs the
 * rendezvous, in memory every process of the tree shares, so that the
 * rendezvous can hand a proposal to the process that accepted. */
#ifndef ANOLE_SMC_FORK_H
#define ANOLE_SMC_FORK_H

#include <stdbool.h>
#include <stdint.h>

#include "smc/conntab.h"

#define SMC_CLC_FORWARD 6 /* rendezvous -> child: client's socket + TCP socket */

/* The shared table and its wake-up eventfd, made once by the process
 * that listens (before it forks); 0 or -errno. */
int smc_fork_init(void);
/* True in a forked child of a process that served a rendezvous. */
bool smc_fork_is_child(void);
/* Child: @t accepted here, announced; the slot (for _unregister) or -1. */
int smc_fork_register(const struct smc_tuple *t);
void smc_fork_unregister(int slot);
/* The inbox token of the child that accepted @t; 0 if none did. */
uint64_t smc_fork_lookup(const struct smc_tuple *t);
/* Rendezvous: proposals waiting for an accept (children wake it then). */
void smc_fork_set_waiting(unsigned n);
/* The eventfd children signal after registering while proposals wait. */
int smc_fork_wakefd(void);
/* The process tree's doorbell eventfd, made with the table (-1: none):
 * rung when a proposal matches no known connection, so that event
 * loops look at the connections they added to epoll without looking
 * (epoll.c). Never drained: watched edge-triggered. */
int smc_fork_doorbell(void);
void smc_fork_ring(void);
/* Whether the rendezvous holds proposals not matched yet. */
bool smc_fork_waiting(void);
/* Hands the client's rendezvous socket @sock and its TCP socket @tcp
 * to the inbox @token; 0 or -errno. Closes neither. */
int smc_fork_forward(uint64_t token, int sock, int tcp);
/* Child: the listening inbox socket for forwarded proposals, made once
 * (*@made then); fd or -errno. */
int smc_fork_inbox(bool *made);
/* The inbox could not be served (its socket is closed already). */
void smc_fork_inbox_lost(void);
/* fork(): the child forgets the parent's rendezvous thread. */
void smc_fork_child_reset(void);

#endif
