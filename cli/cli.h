/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ANOLE_CLI_H
#define ANOLE_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "anole/anole.h"

/* Exit codes: 0 ok, 1 the operation failed (e.g. a bad image), 2 usage. */
#define EXIT_USAGE 2

int cmd_build(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_prefetch(int argc, char **argv);
int cmd_smc(int argc, char **argv);
int cmd_vm(int argc, char **argv);
/* libanole-smc.so's path into @buf (0, or -ENAMETOOLONG); the rendezvous
 * directory ($ANOLE_SMC_DIR, else /run/anole/smc, made if missing). */
int cli_smc_lib(char *buf, size_t len);
const char *cli_smc_dir(void);
int cmd_snapshotter(int argc, char **argv);
int cmd_ctr_pull(int argc, char **argv);
/* The helper program @name (anole-snapshotter, anole-ctr-pull) beside
 * this executable (the build tree, or the installed pair), else @name
 * for $PATH. */
void cli_helper_path(const char *name, char *buf, size_t len);
/* Exec that helper with @argv (argv[0] replaced); 1 when it cannot run. */
int cli_exec_helper(const char *name, char **argv);

/* Lazy images: a layout DIR, oci:DIR[:TAG] or docker://... */
bool cli_is_lazy_ref(const char *arg);
/* The image file @arg means: itself, or a local lazy image's metadata
 * image (malloc'd). */
int cli_image_path(const char *arg, char **path, struct anole_error *err);

/* --device=PATH (repeatable): an image's devices (blobs, blob devices,
 * tars) in device table order, as fsck.erofs takes them. */
#define CLI_DEVICE_MAX 256
#define CLI_DEVICE_LONGOPT {"device", required_argument, NULL, 'd'}
#define CLI_DEVICE_HELP                                                                            \
	"  --device=PATH  the file of the image's next extra device (a blob, a\n"                 \
	"                 blob device, a tar), in device table order; anole's own\n"             \
	"                 blobs are found beside the image without it\n"
struct cli_devices {
	const char *path[CLI_DEVICE_MAX];
	size_t n;
};
/* 0, or EXIT_USAGE after saying why. */
int cli_add_device(struct cli_devices *d, const char *path);
int cli_open_image(const char *path, const struct cli_devices *d, struct anole_image **img,
		   struct anole_error *err);

/* Shared by build and convert (buildopts.c). */
struct progress_state {
	bool tty;
	bool shown;
};
void cli_show_progress(const struct anole_progress *p, void *ctx);
int cli_parse_size(const char *s, uint64_t *v);
/* SOURCE_DATE_EPOCH; 0 or EXIT_USAGE. */
int cli_build_defaults(struct anole_build_options *o);
/* One image option (getopt code @c): 0 taken, 1 not an image option,
 * -EXIT_USAGE after printing why @arg is wrong. */
int cli_build_option(int c, const char *arg, struct anole_build_options *o, uint8_t uuid[16]);
/* --tls-verify=@arg as anole_build_options.tls_verify wants it: true or 1
 * -> 1, false or 0 -> -1; 0, or EXIT_USAGE after saying why. */
int cli_tls_verify(const char *arg, int *v);
/* The image options' long names (end with {0}). */
#define CLI_BUILD_LONGOPTS                                                                         \
	{"uuid", required_argument, NULL, 'U'}, {"label", required_argument, NULL, 'L'},           \
		{"clamp-mtime", required_argument, NULL, 'T'},                                     \
		{"compress", required_argument, NULL, 'z'},                                        \
		{"pcluster", required_argument, NULL, 'P'}, {"jobs", required_argument, NULL, 'j'}, \
		{"dedupe", no_argument, NULL, 'D'}, {"no-fragments", no_argument, NULL, 'F'},      \
		{"fragments", no_argument, NULL, 'G'}, {"platform", required_argument, NULL, 'p'}, \
		{"tls-verify", required_argument, NULL, 'V'}
void cli_build_summary(const char *image, const struct anole_build_stats *st);

/* A library progress line, indented on stderr (a log callback). */
void cli_progress_line(void *ctx, const char *line);

/* Print "anole: MSG" on stderr, one line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *usage);
int cli_fail(const struct anole_error *err, int r);

#endif
