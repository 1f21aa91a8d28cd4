/* SPDX-License-Identifier: Apache-2.0 */
/* anole snapshotter --socket PATH --root DIR | --print-config
 * (docs/DESIGN-snapshotter.md): runs anole-snapshotter, the program that
 * links gRPC, so that this executable stays free of it. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char snapshotter_usage[] =
	"anole snapshotter --socket PATH --root DIR\n"
	"       anole snapshotter --print-config [--socket PATH]\n"
	"\n"
	"Serve containerd's snapshots API on the Unix socket PATH (a proxy\n"
	"plugin named \"anole\"), snapshots under DIR. --print-config prints\n"
	"the containerd config.toml fragment that declares it.";

#define DEFAULT_SOCKET "/run/anole/snapshotter.sock"

static int print_config(const char *sock)
{
	printf("version = 2\n\n"
	       "[proxy_plugins]\n"
	       "  [proxy_plugins.anole]\n"
	       "    type = \"snapshot\"\n"
	       "    address = \"%s\"\n",
	       sock);
	return 0;
}

void cli_helper_path(const char *name, char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = 0;
		if (snprintf(buf, len, "%s/%s", dirname(exe), name) < (int)len && !access(buf, X_OK))
			return;
	}
	snprintf(buf, len, "%s", name);
}

int cli_exec_helper(const char *name, char **argv)
{
	char path[PATH_MAX];

	cli_helper_path(name, path, sizeof(path));
	argv[0] = path;
	execvp(path, argv);
	if (errno == ENOENT)
		cli_error("anole was built without gRPC (libgrpc-dev, protobuf-c): no %s", name);
	else
		cli_error("cannot run %s: %s", path, strerror(errno));
	return 1;
}

int cmd_snapshotter(int argc, char **argv)
{
	const char *sock = DEFAULT_SOCKET;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			puts(snapshotter_usage);
			return 0;
		}
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[i + 1];
		else if (!strncmp(argv[i], "--socket=", 9))
			sock = argv[i] + 9;
	}
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--print-config"))
			return print_config(sock);
	return cli_exec_helper("anole-snapshotter", argv);
}
