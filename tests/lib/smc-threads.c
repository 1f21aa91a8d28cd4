/* SPDX-License-Identifier: Apache-2.0 */
/* Many threads on one connection (t0921): run plain, then under
 * `anole smc run`; both runs must print the same lines.
 *
 *   smc-threads ROUNDS [SCENARIO...]
 *
 * The process forks a server (the writer) first, then connects to it
 * once per scenario (once per round for the closer). The server obeys
 * one-byte commands per connection:
 *   'm' N DELAY_US  waits DELAY_US, then sends messages N (8 bytes each:
 *                   a sequence number and its hash, one send each)
 *   'b' N           sends N messages with short pauses, then SHUT_WR
 * The client's scenarios, ROUNDS each:
 *   pollers  two threads in poll(POLLIN) when a message comes: both
 *            return, then the message is read
 *   mixed    a thread in recv and one in poll: the recv gets message a,
 *            asks for b; the poller must return; b is read after
 *   epoll    two threads in epoll_wait on one set (level-triggered):
 *            both return
 *   readers  two threads in recv share a stream of ROUNDS*20 messages:
 *            every message read exactly once, then both read EOF
 *   closer   a thread blocked in recv while another closes the
 *            descriptor: the recv still gets the message sent after
 *            the close, as Linux gives it (the file lives on while a
 *            call is in it)
 * A hang is a failure: the test runs this under a timeout. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "smc-threads: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void bad(const char *what)
{
	fprintf(stderr, "smc-threads: %s\n", what);
	exit(1);
}

static uint32_t hash(uint32_t seq)
{
	return seq * 2654435761u ^ 0x5bd1e995u;
}

static void put_all(int fd, const void *b, size_t n)
{
	const char *p = b;

	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("send");
		p += k;
		n -= (size_t)k;
	}
}

/* One message, whole (MSG_WAITALL); its sequence number, checked; -1
 * at EOF. */
static long get_msg(int fd)
{
	uint32_t m[2];
	ssize_t k;

	do
		k = recv(fd, m, sizeof(m), MSG_WAITALL);
	while (k < 0 && errno == EINTR);
	if (k == 0)
		return -1;
	if (k != (ssize_t)sizeof(m))
		die("recv of a message");
	if (m[1] != hash(m[0]))
		bad("a message with the wrong content");
	return m[0];
}

/* ---- the server ---- */

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint32_t seq = 0;
	unsigned char cmd;

	while (recv(fd, &cmd, 1, MSG_WAITALL) == 1) {
		uint32_t a[2] = {0, 0};

		if (recv(fd, a, sizeof(a), MSG_WAITALL) != (ssize_t)sizeof(a))
			break;
		if (cmd == 'm' && a[1])
			usleep(a[1]);
		for (uint32_t i = 0; i < a[0]; i++, seq++) {
			uint32_t m[2] = {seq, hash(seq)};

			if (cmd == 'b' && i % 7 == 0)
				usleep(i % 3 * 100);
			put_all(fd, m, sizeof(m));
		}
		if (cmd == 'b')
			shutdown(fd, SHUT_WR);
	}
	close(fd);
	return NULL;
}

static void server(int lfd)
{
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			die("accept");
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd))
			bad("pthread_create");
		pthread_detach(t);
	}
}

/* ---- the client ---- */

static uint16_t port;

static int dial(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return fd;
}

static void ask(int fd, char cmd, uint32_t n, uint32_t delay_us)
{
	unsigned char b[9];
	uint32_t a[2] = {n, delay_us};

	b[0] = (unsigned char)cmd;
	memcpy(b + 1, a, sizeof(a));
	put_all(fd, b, sizeof(b));
}

struct waiter {
	int fd, ep;
	long got;
	pthread_t t;
	_Atomic pid_t tid; /* set just before the call that is to block */
};

static void *poll_in(void *arg)
{
	struct waiter *w = arg;
	struct pollfd p = {w->fd, POLLIN, 0};

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			die("poll");
	if (!(p.revents & POLLIN))
		bad("poll returned without POLLIN");
	return NULL;
}

static void *epoll_in(void *arg)
{
	struct waiter *w = arg;
	struct epoll_event ev;
	int n;

	while ((n = epoll_wait(w->ep, &ev, 1, -1)) < 0)
		if (errno != EINTR)
			die("epoll_wait");
	if (n != 1 || !(ev.events & EPOLLIN) || ev.data.fd != w->fd)
		bad("epoll_wait returned without the socket readable");
	return NULL;
}

static void *recv_one(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->tid, gettid());
	w->got = get_msg(w->fd);
	return NULL;
}

/* Until thread @tid sleeps (its state in /proc is S): it is then
 * inside the call it announced, which has nothing else to sleep on. */
static void wait_asleep(pid_t tid)
{
	char path[64], buf[256], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	for (;;) {
		FILE *f = fopen(path, "r");

		if (!f)
			die(path);
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!p)
			bad("a thread's stat without its state");
		if (p[1] == ' ' && p[2] == 'S')
			return;
		usleep(200);
	}
}

static void start(struct waiter *w, void *(*fn)(void *))
{
	if (pthread_create(&w->t, NULL, fn, w))
		bad("pthread_create");
}

static void join(struct waiter *w)
{
	pthread_join(w->t, NULL);
}

/* Two threads wait by @fn for one message, then it is read. */
static void two_wait(int fd, int ep, void *(*fn)(void *), long seq)
{
	struct waiter a = {.fd = fd, .ep = ep}, b = {.fd = fd, .ep = ep};

	start(&a, fn);
	start(&b, fn);
	ask(fd, 'm', 1, 2000);
	join(&a);
	join(&b);
	if (get_msg(fd) != seq)
		bad("a message out of order");
}

static void pollers(int rounds)
{
	int fd = dial();

	for (int r = 0; r < rounds; r++)
		two_wait(fd, -1, poll_in, r);
	close(fd);
	printf("pollers: %d rounds, both threads woken each time\n", rounds);
}

static void epolls(int rounds)
{
	int fd = dial(), ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll");
	for (int r = 0; r < rounds; r++)
		two_wait(fd, ep, epoll_in, r);
	close(ep);
	close(fd);
	printf("epoll: %d rounds, both epoll_wait threads woken each time\n", rounds);
}

static void mixed(int rounds)
{
	int fd = dial();

	for (int r = 0; r < rounds; r++) {
		struct waiter rd = {.fd = fd, .ep = -1}, pl = {.fd = fd, .ep = -1};

		start(&rd, recv_one);
		start(&pl, poll_in);
		ask(fd, 'm', 1, 1000);
		join(&rd);
		if (rd.got != 2L * r)
			bad("mixed: the reader got the wrong message");
		/* the poller may have seen a already; if not, b must wake it */
		ask(fd, 'm', 1, 1000);
		join(&pl);
		if (get_msg(fd) != 2L * r + 1)
			bad("mixed: the second message is wrong");
	}
	close(fd);
	printf("mixed: %d rounds, reader and poller each woken\n", rounds);
}

static _Atomic uint32_t *seen;

static void *read_all(void *arg)
{
	struct waiter *w = arg;
	long s;

	while ((s = get_msg(w->fd)) >= 0) {
		if (s >= w->got)
			bad("readers: a sequence number out of range");
		atomic_fetch_add(&seen[s], 1);
	}
	return NULL;
}

static void readers(int rounds)
{
	int fd = dial();
	long n = rounds * 20L;
	struct waiter a = {.fd = fd, .ep = -1, .got = n}, b = {.fd = fd, .ep = -1, .got = n};

	seen = calloc((size_t)n, sizeof(*seen));
	if (!seen)
		bad("out of memory");
	start(&a, read_all);
	start(&b, read_all);
	ask(fd, 'b', (uint32_t)n, 0);
	join(&a);
	join(&b);
	for (long i = 0; i < n; i++)
		if (atomic_load(&seen[i]) != 1)
			bad("readers: a message not read exactly once");
	free(seen);
	close(fd);
	printf("readers: %ld messages, each read once by one of two threads, EOF to both\n", n);
}

static void closer(int rounds)
{
	for (int r = 0; r < rounds; r++) {
		int fd = dial();
		struct waiter rd = {.fd = fd, .ep = -1};

		/* the handshake and a first message, so the recv below
		 * waits in the connection's steady state */
		ask(fd, 'm', 1, 0);
		if (get_msg(fd) != 0)
			bad("closer: the first message is wrong");
		start(&rd, recv_one);
		while (!atomic_load(&rd.tid))
			usleep(100);
		wait_asleep(atomic_load(&rd.tid));
		ask(fd, 'm', 1, r % 4 * 500);
		if (close(fd))
			die("close");
		join(&rd);
		if (rd.got != 1)
			bad("closer: the blocked recv did not get the message sent after close");
	}
	printf("closer: %d rounds, a recv blocked across close got its message\n", rounds);
}

/* Scenario @name asked for: all when none is named. */
static int want(int argc, char **argv, const char *name)
{
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], name))
			return 1;
	return argc <= 2;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 100;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	pid_t pid;
	int st;

	if (rounds <= 0)
		bad("usage: smc-threads ROUNDS");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(lfd, (struct sockaddr *)&a, &l))
		die("bind");
	port = ntohs(a.sin_port);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (listen(lfd, 64))
			die("listen");
		server(lfd);
	}
	close(lfd);
	/* the child listens after the fork: connect until it does */
	for (int i = 0;; i++) {
		struct sockaddr_in b = a;
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd >= 0 && !connect(fd, (struct sockaddr *)&b, sizeof(b))) {
			close(fd);
			break;
		}
		close(fd);
		if (i > 2000)
			bad("the server never listened");
		usleep(5000);
	}
	if (want(argc, argv, "pollers"))
		pollers(rounds);
	if (want(argc, argv, "mixed"))
		mixed(rounds);
	if (want(argc, argv, "epoll"))
		epolls(rounds);
	if (want(argc, argv, "readers"))
		readers(rounds);
	if (want(argc, argv, "closer"))
		closer(rounds / 4 + 1);
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	return 0;
}
