// SPDX-License-Identifier: Apache-2.0
/* anole-snapshotter --socket PATH --root DIR: containerd's snapshots
 * service for a proxy plugin. A program of its own, started by `anole
 * snapshotter`, so that gRPC's libraries load only here and never slow
 * the other commands (docs/DECISIONS.md). */
#include <getopt.h>
#include <stdio.h>
#include <sys/stat.h>

#include "snapshotter/lazy.h"
#include "snapshotter/rpc.h"
#include "snapshotter/service.h"
#include "snapshotter/store.h"
#include "util/util.h"

static const char usage[] = "anole snapshotter --socket PATH --root DIR\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
					     {"root", required_argument, NULL, 'r'},
					     {NULL, 0, NULL, 0}};
	struct anole_error err = {0};
	struct snap_store store;
	const char *sock = NULL, *root = NULL;
	char addr[4200];
	struct stat st;
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 's')
			sock = optarg;
		else if (c == 'r')
			root = optarg;
		else
			return fputs(usage, stderr), 2;
	}
	if (!sock || !root || optind != argc)
		return fputs(usage, stderr), 2;
	if (snprintf(addr, sizeof(addr), "unix:%s", sock) >= (int)sizeof(addr)) {
		fputs("anole: snapshotter: socket path too long\n", stderr);
		return 2;
	}
	lazy_init();
	if (snap_store_open(&store, root, &err) < 0) {
		fprintf(stderr, "anole: %s\n", err.msg);
		return 1;
	}
	/* a socket left by a previous run would make the listen fail; only
	 * a socket is removed, never another file named by mistake */
	if (!lstat(sock, &st) && S_ISSOCK(st.st_mode))
		unlink(sock);
	rc = rpc_serve(addr, snap_service, &store, &err);
	if (!lstat(sock, &st) && S_ISSOCK(st.st_mode))
		unlink(sock);
	snap_store_close(&store);
	if (rc < 0) {
		fprintf(stderr, "anole: %s\n", err.msg);
		return 1;
	}
	return 0;
}
