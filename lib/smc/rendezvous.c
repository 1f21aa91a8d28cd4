/* SPDX-License-Identifier: Apache-2.0 */
#include "smc/rendezvous.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The settings, read once when the library is loaded: a program may
 * clear its environment before it forks workers (nginx keeps only
 * what its `env` directives name), and they must keep the same ones. */
static const char *rv_dir = "/run/anole/smc";
static int rv_timeout = 2000;

__attribute__((constructor)) static void rv_settings(void)
{
	const char *d = getenv("ANOLE_SMC_DIR"), *t = getenv("ANOLE_SMC_TIMEOUT_MS");
	long v = t ? strtol(t, NULL, 10) : 0;
	char *copy = d && *d ? strdup(d) : NULL;

	if (copy)
		rv_dir = copy;
	if (v > 0 && v < 600000)
		rv_timeout = (int)v;
}

static const char *smc_dir(void)
{
	return rv_dir;
}

int smc_timeout_ms(void)
{
	return rv_timeout;
}

int smc_rv_path(char *buf, size_t len, uint16_t port)
{
	int n = snprintf(buf, len, "%s/tcp-%u", smc_dir(), (unsigned)port);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int smc_fd_high(int fd)
{
	static _Atomic int base = -1;
	int b = atomic_load(&base), nfd;

	if (b < 0) {
		struct rlimit rl;

		/* half the limit, at most 4096 (a bigger table costs memory) */
		b = getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < 256 ? 0
		    : rl.rlim_cur / 2 > 4096 ? 4096 : (int)(rl.rlim_cur / 2);
		atomic_store(&base, b);
	}
	if (fd < 0 || !b || fd >= b)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, b);
	if (nfd < 0)
		return fd;
	close(fd);
	return nfd;
}

/* @path as a Unix address; -ENAMETOOLONG. */
static int rv_addr(struct sockaddr_un *sun, uint16_t port)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	return smc_rv_path(sun->sun_path, sizeof(sun->sun_path), port);
}

/* A Unix socket for the port's rendezvous at @sun; fd or -errno. */
static int rv_socket(struct sockaddr_un *sun, uint16_t port)
{
	int fd, rc = rv_addr(sun, port);

	if (rc)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : smc_fd_high(fd);
}

int smc_rv_connect(uint16_t port)
{
	struct sockaddr_un sun;
	int rc, fd = rv_socket(&sun, port);

	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int smc_rv_listen(uint16_t port)
{
	struct sockaddr_un sun;
	mode_t old;
	int rc, fd = rv_socket(&sun, port);

	if (fd < 0)
		return fd;
	old = umask(077); /* the socket is the user's alone (SECURITY) */
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
	if (rc == -EADDRINUSE) {
		/* a dead server's socket refuses; a live one keeps its port */
		int probe = smc_rv_connect(port);

		if (probe == -ECONNREFUSED && unlink(sun.sun_path) == 0)
			rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ? -errno : 0;
		else if (probe >= 0)
			close(probe);
	}
	umask(old);
	if (!rc && listen(fd, 128))
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

int smc_clc_send(int sock, enum smc_clc_type type, uint32_t ring_size, const int *fds, int nfds)
{
	struct smc_clc m = {SMC_CLC_MAGIC, type, ring_size, (uint32_t)nfds};
	struct iovec iov = {&m, sizeof(m)};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SMC_CLC_MAXFDS)];
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds < 0 || nfds > SMC_CLC_MAXFDS)
		return -EINVAL;
	if (nfds) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		u.h.cmsg_level = SOL_SOCKET;
		u.h.cmsg_type = SCM_RIGHTS;
		u.h.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(&u.h), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(m) ? 0 : -EPIPE;
}

/* The descriptors of @msg into @fds; the count taken. */
static int clc_take_fds(struct msghdr *msg, int fds[SMC_CLC_MAXFDS])
{
	int n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (n < SMC_CLC_MAXFDS)
				fds[n++] = smc_fd_high(fd);
			else
				close(fd);
		}
	}
	return n;
}

int smc_clc_recv(int sock, struct smc_clc *m, int fds[SMC_CLC_MAXFDS], int timeout_ms)
{
	struct pollfd p = {sock, POLLIN, 0};
	struct iovec iov = {m, sizeof(*m)};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * SMC_CLC_MAXFDS)];
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	ssize_t n;
	int got;

	for (int i = 0; i < SMC_CLC_MAXFDS; i++)
		fds[i] = -1;
	do
		n = smc_poll(&p, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -ETIMEDOUT;
	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	got = clc_take_fds(&msg, fds);
	if (n != (ssize_t)sizeof(*m) || m->magic != SMC_CLC_MAGIC || m->nfds != (uint32_t)got ||
	    (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		for (int i = 0; i < SMC_CLC_MAXFDS; i++)
			fds[i] = -1;
		return -EPROTO;
	}
	return 0;
}

bool smc_rv_peer_is_us(int sock)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && cr.uid == geteuid();
}
