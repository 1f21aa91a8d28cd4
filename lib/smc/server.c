/* SPDX-License-Identifier: Apache-2.0 */
/* The rendezvous thread: takes proposals for this process's listeners
 * and queues them for the connection's first operation, or declines
 * those for connections already committed to TCP (DESIGN-smc.md). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "smc/conn.h"
#include "smc/rendezvous.h"

#define SMC_LISTENERS 64

static pthread_mutex_t lst_lock = PTHREAD_MUTEX_INITIALIZER;
static int lst[SMC_LISTENERS];
static uint16_t lst_port[SMC_LISTENERS];
static int nlst;
static int wake = -1;
static bool started;

static void decline(int sock)
{
	smc_clc_send(sock, SMC_CLC_DECLINE, 0, NULL, 0);
	close(sock);
}

/* One client of the rendezvous: its proposal checked, then queued. */
static void take_proposal(int sock)
{
	struct smc_clc m = {0};
	int fds[SMC_CLC_MAXFDS];
	struct smc_tuple client;
	struct smc_proposal *p;
	struct smc_conn *c;
	int rc;

	if (!smc_rv_peer_is_us(sock))
		return decline(sock);
	rc = smc_clc_recv(sock, &m, fds, smc_timeout_ms());
	if (rc || m.type != SMC_CLC_PROPOSAL || m.nfds != 1) {
		for (int i = 0; i < SMC_CLC_MAXFDS; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return decline(sock);
	}
	/* the passed socket proves the client holds the connection */
	rc = smc_tuple_of(fds[0], &client);
	close(fds[0]);
	p = rc ? NULL : calloc(1, sizeof(*p));
	if (!p)
		return decline(sock);
	p->sock = sock;
	p->tuple.local = client.peer;
	p->tuple.peer = client.local;
	pthread_mutex_lock(&smc_srv_lock);
	c = smc_srv_find(&p->tuple);
	if ((c && atomic_load(&c->state) != SMC_SRV_PENDING) || !smc_srv_queue(p)) {
		pthread_mutex_unlock(&smc_srv_lock);
		free(p);
		return decline(sock);
	}
	if (c && c->notify >= 0) {
		uint64_t one = 1;

		if (write(c->notify, &one, sizeof(one)) < 0) {
			/* already signalled */
		}
	}
	pthread_mutex_unlock(&smc_srv_lock);
}

static void *rv_thread(void *arg)
{
	struct pollfd p[SMC_LISTENERS + 1];
	sigset_t all;

	(void)arg;
	/* the program's signals are the program's threads' */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		int n;

		pthread_mutex_lock(&lst_lock);
		for (n = 0; n < nlst; n++)
			p[n] = (struct pollfd){lst[n], POLLIN, 0};
		pthread_mutex_unlock(&lst_lock);
		p[n] = (struct pollfd){wake, POLLIN, 0};
		if (smc_poll(p, (nfds_t)n + 1, -1) < 0)
			continue;
		if (p[n].revents) {
			uint64_t v;

			if (read(wake, &v, sizeof(v)) < 0) {
				/* drained */
			}
		}
		for (int i = 0; i < n; i++) {
			int s;

			if (!p[i].revents)
				continue;
			s = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
			if (s >= 0)
				take_proposal(s);
		}
	}
	return NULL;
}

int smc_rv_serve(int fd, uint16_t port)
{
	pthread_t t;
	int rc = 0, l;
	uint64_t one = 1;

	(void)fd;
	/* a listener closed and opened again on its port (iperf3 between
	 * tests): the rendezvous socket is ours already */
	pthread_mutex_lock(&lst_lock);
	for (int i = 0; i < nlst; i++)
		if (lst_port[i] == port)
			rc = 1;
	pthread_mutex_unlock(&lst_lock);
	if (rc)
		return 0;
	l = smc_rv_listen(port);
	if (l < 0)
		return l;
	pthread_mutex_lock(&lst_lock);
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
