/* SPDX-License-Identifier: Apache-2.0 */
/* anole ctr-pull [--address SOCK] [--namespace NS] REF: runs
 * anole-ctr-pull, the program that links gRPC (docs/DESIGN-snapshotter.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char ctr_pull_usage[] =
	"anole ctr-pull [--address SOCK] [--namespace NS] [--snapshotter NAME] REF\n"
	"\n"
	"Pull the anole lazy image REF (a registry reference) into containerd at\n"
	"SOCK (/run/containerd/containerd.sock), namespace NS (default), as a\n"
	"remote snapshot of the snapshotter NAME (anole): the image's manifest\n"
	"and config into containerd's content store, its tree the anole lazy\n"
	"mount, no data blob fetched. Then `ctr run --snapshotter anole REF ...`.";

int cmd_ctr_pull(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			puts(ctr_pull_usage);
			return 0;
		}
	return cli_exec_helper("anole-ctr-pull", argv);
}
