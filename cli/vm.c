/* SPDX-License-Identifier: Apache-2.0 */
/* anole vm pool N */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vm/pool.h"

static const char vm_usage[] =
	"anole vm pool N\n"
	"\n"
	"Create cgroups for anole run --vm until N are free (at most 1024):\n"
	"each run takes one for its QEMU and virtiofsd instead of making one\n"
	"(free.N in anole-vm below the memory controller's hierarchy: cgroup v2\n"
	"where the root delegates memory, else v1's memory and pids). A run's\n"
	"end gives its cgroup back while fewer than 64 are free, so runs refill\n"
	"the pool themselves; this fills it before the first.";

int cmd_vm(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts(vm_usage);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "pool"))
		return cli_usage(vm_usage);
	char *end;
	errno = 0;
	unsigned long n = strtoul(argv[2], &end, 10);
	if (errno || end == argv[2] || *end || n > 1024 || argv[2][0] == '-') {
		cli_error("vm pool: expected a number of cgroups up to 1024, got '%s'", argv[2]);
		return EXIT_USAGE;
	}
	struct anole_error err = {0};
	char where[160];
	int have = vm_cgroup_fill((unsigned)n, where, sizeof(where), &err);
	if (have < 0) {
		cli_error("vm pool: %s", err.msg);
		return 1;
	}
	printf("%d free in %s\n", have, where);
	return 0;
}
