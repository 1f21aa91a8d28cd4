/* SPDX-License-Identifier: Apache-2.0 */
/* anole: the command-line front end; one file per subcommand. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{"build", cmd_build, "build an EROFS image from a directory, tar or container image"},
	{"check", cmd_check, "verify every structure and byte of an image"},
	{"inspect", cmd_inspect, "show superblock or inode details"},
	{"extract", cmd_extract, "restore an image's tree into a directory"},
	{"export", cmd_export, "write an image's tree as a tar archive"},
	{"convert", cmd_convert, "make a lazy image (metadata + data blobs) in a registry or layout"},
	{"pull", cmd_pull, "fetch and verify a lazy image into a local layout"},
	{"mount", cmd_mount, "mount an image with the kernel's EROFS"},
	{"umount", cmd_umount, "unmount an anole mount"},
	{"status", cmd_status, "show lazy mounts, the cache and the daemon's counters"},
	{"daemon", cmd_daemon, "serve lazy mounts (started by mount when needed)"},
	{"cache", cmd_cache, "list or shrink the lazy mount cache"},
	{"run", cmd_run, "run a container from a lazy image"},
	{"prefetch", cmd_prefetch, "record what a workload reads, to prefetch it first"},
	{"smc", cmd_smc, "run programs with same-host TCP through shared memory"},
	{"snapshotter", cmd_snapshotter, "serve containerd's snapshots API (a proxy plugin)"},
	{"ctr-pull", cmd_ctr_pull, "pull a lazy image into containerd (anole snapshotter)"},
	{"vm", cmd_vm, "pre-create the cgroups anole run --vm takes (vm pool N)"},
};

void cli_error(const char *fmt, ...)
{
	va_list ap;
	fputs("anole: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage(const char *usage)
{
	fprintf(stderr, "usage: %s\n", usage);
	return EXIT_USAGE;
}

void cli_progress_line(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "  %s\n", line);
}

int cli_fail(const struct anole_error *err, int r)
{
	if (err && err->code)
		cli_error("%s", err->msg);
	else
		cli_error("%s", strerror(r < 0 ? -r : r));
	return 1;
}

bool cli_is_lazy_ref(const char *arg)
{
	struct stat st;
	char idx[4096];
	if (!arg)
		return false;
	if (!strncmp(arg, "oci:", 4) || !strncmp(arg, "docker://", 9))
		return true;
	snprintf(idx, sizeof(idx), "%s/index.json", arg);
	return !stat(arg, &st) && S_ISDIR(st.st_mode) && !access(idx, F_OK);
}

int cli_image_path(const char *arg, char **path, struct anole_error *err)
{
	if (!cli_is_lazy_ref(arg)) {
		*path = strdup(arg);
		return *path ? 0 : -ENOMEM;
	}
	struct anole_lazy_info *li;
	int r = anole_lazy_open(arg, 0, &li, err);
	if (r < 0)
		return r;
	*path = li->meta_path;
	li->meta_path = NULL;
	anole_lazy_free(li);
	if (!*path) {
		snprintf(err->msg, sizeof(err->msg), "%s: a registry image: pull it first (anole pull)",
			 arg);
		err->code = EINVAL;
		return -EINVAL;
	}
	return 0;
}

int cli_add_device(struct cli_devices *d, const char *path)
{
	if (d->n == CLI_DEVICE_MAX) {
		cli_error("--device: at most %d devices", CLI_DEVICE_MAX);
		return EXIT_USAGE;
	}
	if (!*path) {
		cli_error("--device: an empty path");
		return EXIT_USAGE;
	}
	d->path[d->n++] = path;
	return 0;
}

int cli_open_image(const char *path, const struct cli_devices *d, struct anole_image **img,
		   struct anole_error *err)
{
	struct anole_image_options o = {.devices = d && d->n ? d->path : NULL,
					.ndevices = d ? d->n : 0};
	return anole_image_open_with(path, &o, img, err);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: anole COMMAND [OPTIONS] ARGS...\n\n"
		   "Kernel-native EROFS images for containers and file trees.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nRun 'anole COMMAND --help' for a command's options. Manual: docs/CLI.md\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("anole %s\n", ANOLE_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_error("unknown command '%s' (try 'anole --help')", argv[1]);
	return EXIT_USAGE;
}
