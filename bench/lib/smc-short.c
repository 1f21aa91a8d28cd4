/* SPDX-License-Identifier: Apache-2.0 */
/* Short connections, measured: `smc-short server PORTFILE` accepts and
 * answers each connection's 100 bytes with 100 bytes, then closes;
 * `smc-short client PORT N` connects, writes 100 B, reads 100 B and
 * closes, N times, and prints the microseconds per connection. Run
 * plain and under `anole smc run` to see the handshake's cost. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int full(int fd, char *b, size_t n, int wr)
{
	for (size_t d = 0; d < n;) {
		ssize_t k = wr ? write(fd, b + d, n - d) : read(fd, b + d, n - d);

		if (k <= 0)
			return -1;
		d += (size_t)k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char buf[100];
	int one = 1;

	memset(buf, 'x', sizeof(buf));
	if (argc == 3 && !strcmp(argv[1], "server")) {
		int l = socket(AF_INET, SOCK_STREAM, 0);
		socklen_t len = sizeof(a);
		FILE *f;

		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 128) ||
		    getsockname(l, (struct sockaddr *)&a, &len) || !(f = fopen(argv[2], "w")))
			return perror("server"), 1;
		fprintf(f, "%u\n", ntohs(a.sin_port));
		fclose(f);
		for (;;) {
			int c = accept(l, NULL, NULL);

			if (c < 0)
				continue;
			if (!full(c, buf, sizeof(buf), 0))
				full(c, buf, sizeof(buf), 1);
			close(c);
		}
	}
	if (argc == 4 && !strcmp(argv[1], "client")) {
		long n = atol(argv[3]);
		struct timespec t0, t1;

		a.sin_port = htons((uint16_t)atoi(argv[2]));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < n; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0);

			if (connect(c, (struct sockaddr *)&a, sizeof(a)) || full(c, buf, sizeof(buf), 1) ||
			    full(c, buf, sizeof(buf), 0))
				return perror("client"), 1;
			close(c);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%.1f us/conn\n",
		       ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / (double)n);
		return 0;
	}
	fprintf(stderr, "usage: smc-short server PORTFILE | client PORT N\n");
	return 2;
}
