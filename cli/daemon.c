/* SPDX-License-Identifier: Apache-2.0 */
/* anole daemon: the lazy mount service, in the foreground */
#include <string.h>

#include "cli.h"

static const char daemon_usage[] =
	"anole daemon\n"
	"\n"
	"Serve lazy mounts: hold the fanotify group, fill missing data on first\n"
	"read, verified, into the shared cache. `anole mount` starts it when it\n"
	"is not running; run it yourself under a service manager if you prefer.\n"
	"It ends when nothing is mounted. A crashed worker is restarted and\n"
	"readers wait meanwhile.\n"
	"\n"
	"  ANOLE_RUNTIME_DIR  socket, pid files, log, metrics.prom (/run/anole)\n"
	"  ANOLE_CACHE_DIR    the cache (/var/lib/anole/cache)";

int cmd_daemon(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts(daemon_usage);
		return 0;
	}
	if (argc != 1)
		return cli_usage(daemon_usage);
	struct anole_error err = {0};
	int r = anole_daemon(&err);
	return r < 0 ? cli_fail(&err, r) : 0;
}
