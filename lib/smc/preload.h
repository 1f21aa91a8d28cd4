/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the interposed calls of libanole-smc.so (preload.c,
 * epoll.c). */
#ifndef ANOLE_SMC_PRELOAD_H
#define ANOLE_SMC_PRELOAD_H

#include <dlfcn.h>
#include <limits.h>
#include <time.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>

#include "smc/conn.h"

#define EXPORT __attribute__((visibility("default")))

/* libc's own function @name (the next definition after ours). */
#define REAL(name)                                                                                 \
	static __typeof__(name) *real_##name;                                                      \
	if (!real_##name)                                                                          \
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* A timeout in milliseconds, rounded up (-1: none). */
static inline int ts_ms(const struct timespec *t)
{
	long long ms;

	if (!t)
		return -1;
	ms = (long long)t->tv_sec * 1000 + (t->tv_nsec + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : ms < 0 ? 0 : (int)ms;
}

static inline long smc_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* @rc, or -1 with errno = -@rc if it is negative. */
ssize_t smc_fail(ssize_t rc);
/* The connection of @fd if it is (or may become) shared memory; not
 * held: only where no other thread can close it (exec). */
struct smc_conn *smc_conn_of(int fd);
/* The same, held for the caller's call (smc_conn_put). */
struct smc_conn *smc_conn_get(int fd);
/* poll(2) over descriptors some of which are SMC (-1 timeout: none),
 * with @mask in place while it sleeps (NULL: the thread's own). */
int smc_poll_fds(struct pollfd *fds, nfds_t n, int timeout, const sigset_t *mask);

/* epoll.c: the program's epoll sets with SMC members. */
/* epoll_ctl for @fd if an SMC member; 1 handled (*rc set), 0 not ours. */
int smc_ep_ctl(int ep, int op, int fd, struct epoll_event *ev, int *rc);
/* The connection's last number is closed: out of every set. */
void smc_ep_forget(struct smc_conn *c);
/* The program closes @fd: if it is an epoll set, its shadow goes. */
void smc_ep_closed(int fd);

#endif
