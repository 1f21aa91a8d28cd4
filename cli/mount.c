/* SPDX-License-Identifier: Apache-2.0 */
/* anole mount IMAGE MOUNTPOINT / anole umount MOUNTPOINT */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static inline void free_strp(char **p)
{
	free(*p);
}
#define _cleanup_image_path_ __attribute__((cleanup(free_strp)))

#include <jansson.h>

#include "cli.h"
#include "serve/request.h"

static const char mount_usage[] =
	"anole mount [OPTIONS] IMAGE|DIR|oci:DIR[:TAG]|docker://REF MOUNTPOINT\n"
	"\n"
	"Mount an image read-only with the kernel's EROFS, file-backed (no loop\n"
	"device). A local image file, or a lazy image in an OCI layout whose\n"
	"blobs are all there, mounts directly. A docker:// lazy image (or any\n"
	"with --lazy) mounts at once, before its data is here: the anole daemon\n"
	"(started when needed) fetches, verifies and caches each range the first\n"
	"time something reads it; after that the kernel alone serves it.\n"
	"\n"
	"  -o OPTIONS            extra EROFS mount options (e.g. 'acl,user_xattr')\n"
	"  --lazy                go through the daemon even for a local layout\n"
	"  --fuse                serve through FUSE (anole's reader) instead of the\n"
	"                        kernel's EROFS, also a local image file; chosen by\n"
	"                        itself, with a notice, when the kernel path is\n"
	"                        unavailable (no pre-content events, or not root)\n"
	"  --prefetch=recorded|all|none  recorded (default): fetch first, in order,\n"
	"                        the ranges `anole prefetch record` stored with the\n"
	"                        image, if any; all: those, then the rest in the\n"
	"                        background at low priority; none: only what is read\n"
	"  --prefetch-rate=SIZE  background bytes per second (default 50M; 0 = no cap)\n"
	"  --no-load-hints       do not fetch, when a program starts, what the\n"
	"                        dynamic loader will read (the image's ELF load hints)\n"
	"  --tls-verify=BOOL     true: always verified HTTPS; false: HTTPS without\n"
	"                        certificate checks, else plain HTTP (default:\n"
	"                        verified HTTPS, plain HTTP for localhost,\n"
	"                        127.0.0.0/8 and [::1])\n"
	"  --device=PATH         the file of the image's next extra device (a blob,\n"
	"                        a blob device, a tar), in device table order; given\n"
	"                        to the kernel as device=PATH (anole's own blobs are\n"
	"                        found beside the image without it)";

/* An image file for the daemon's FUSE server: opened here first (a bad
 * image or a missing device is said here, in one line), then named with
 * its devices by absolute paths, as the daemon does not share our cwd. */
static json_t *image_request(const char *image, const struct cli_devices *devs, char *ref,
			     size_t ref_size)
{
	struct anole_error err = {0};
	struct anole_image *img;
	if (cli_open_image(image, devs, &img, &err) < 0) {
		cli_fail(&err, -EINVAL);
		return NULL;
	}
	anole_image_close(img);
	char real[PATH_MAX];
	json_t *a = json_array();
	for (size_t i = 0; a && i < devs->n; i++) {
		if (!realpath(devs->path[i], real)) {
			cli_error("%s: %s", devs->path[i], strerror(errno));
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, json_string(real));
	}
	if (!realpath(image, real) || (size_t)snprintf(ref, ref_size, "%s", real) >= ref_size) {
		cli_error("%s: %s", image, strerror(errno ? errno : ENAMETOOLONG));
		json_decref(a);
		return NULL;
	}
	return a;
}

static int lazy_mount(const char *ref, const char *target, const char *options,
		      const char *prefetch, uint64_t rate, int tls_verify, bool fuse, bool no_hints,
		      const struct cli_devices *devs)
{
	char real[4096], image[PATH_MAX];
	if (!realpath(target, real)) {
		cli_error("%s: %s", target, strerror(errno));
		return 1;
	}
	struct stat st;
	json_t *devices = NULL;
	if (!cli_is_lazy_ref(ref) && !stat(ref, &st) && S_ISREG(st.st_mode)) {
		/* nothing of an image file is lazy: the kernel mounts it
		 * directly, the daemon only serves it through FUSE */
		if (!fuse) {
			cli_error("%s: an image file mounts without the daemon; use --fuse to serve "
				  "it through FUSE", ref);
			return 1;
		}
		if (!(devices = image_request(ref, devs, image, sizeof(image))))
			return 1;
		ref = image;
	}
	/* the daemon fetches with our credentials, not those of whoever
	 * started it */
	struct anole_error err = {0};
	char *creds = NULL;
	int r = anole_mount_credentials(ref, &creds, &err);
	if (r < 0) {
		json_decref(devices);
		return cli_fail(&err, r);
	}
	json_t *cj = creds ? json_loads(creds, 0, NULL) : NULL;
	if (creds)
		explicit_bzero(creds, strlen(creds));
	free(creds);
	struct ctl_request req = {.op = CTL_MOUNT,
				  .ref = ref,
				  .mountpoint = real,
				  .options = options ? options : "",
				  .prefetch = prefetch,
				  .prefetch_rate = rate,
				  .has_prefetch_rate = true,
				  .tls_verify = tls_verify,
				  .fuse = fuse,
				  .no_load_hints = no_hints,
				  .devices = devices};
	ctl_request_credentials(&req, cj);
	char *text = ctl_request_encode(&req);
	json_decref(cj);
	json_decref(devices);
	if (!text) {
		cli_error("out of memory");
		return 1;
	}
	char *reply = NULL;
	r = anole_daemon_request(text, 1, &reply, &err);
	explicit_bzero(text, strlen(text));
	free(text);
	if (r < 0)
		return cli_fail(&err, r);
	json_error_t je;
	json_t *j = json_loads(reply, 0, &je);
	free(reply);
	const char *msg = json_string_value(json_object_get(j, "error"));
	const char *notice = json_string_value(json_object_get(j, "notice"));
	if (notice && *notice)
		fprintf(stderr, "anole: notice: %s\n", notice);
	int rc = 0;
	if (!j || msg) {
		cli_error("%s", msg ? msg : "the daemon's answer is not JSON");
		rc = 1;
	}
	json_decref(j);
	return rc;
}

/* A layout whose blobs are not all there is lazy by nature; users
 * cannot mount EROFS, so their lazy images go through the daemon's FUSE. */
static bool needs_daemon(const char *arg, bool lazy)
{
	if (lazy || !strncmp(arg, "docker://", 9))
		return true;
	if (!cli_is_lazy_ref(arg))
		return false;
	if (geteuid() != 0)
		return true;
	struct anole_error err = {0};
	struct anole_lazy_info *li;
	if (anole_lazy_open(arg, 0, &li, &err) < 0)
		return false; /* the direct path says what is wrong */
	bool missing = !li->meta_path || access(li->meta_path, R_OK);
	anole_lazy_free(li);
	return missing;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {{"options", required_argument, NULL, 'o'},
						 {"lazy", no_argument, NULL, 'l'},
						 {"fuse", no_argument, NULL, 'f'},
						 {"prefetch", required_argument, NULL, 'p'},
						 {"prefetch-rate", required_argument, NULL, 'r'},
						 {"tls-verify", required_argument, NULL, 'V'},
						 {"no-load-hints", no_argument, NULL, 'H'},
						 {"help", no_argument, NULL, 'h'},
						 CLI_DEVICE_LONGOPT,
						 {0}};
	struct cli_devices devs = {0};
	const char *data = NULL, *prefetch = "recorded";
	bool lazy = false, fuse = false, no_hints = false;
	int tls_verify = 0; /* the registry client's default */
	uint64_t rate = 50ull << 20;
	int c;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		if (c == 'o')
			data = optarg;
		else if (c == 'l')
			lazy = true;
		else if (c == 'f')
			lazy = fuse = true;
		else if (c == 'H')
			no_hints = true;
		else if (c == 'd') {
			if (cli_add_device(&devs, optarg))
				return EXIT_USAGE;
		}
		else if (c == 'p') {
			if (strcmp(optarg, "none") && strcmp(optarg, "recorded") &&
			    strcmp(optarg, "all")) {
				cli_error("--prefetch=%s: choose none, recorded or all", optarg);
				return EXIT_USAGE;
			}
			prefetch = optarg;
		} else if (c == 'r') {
			if (cli_parse_size(optarg, &rate) < 0) {
				cli_error("--prefetch-rate=%s: not a size", optarg);
				return EXIT_USAGE;
			}
		} else if (c == 'V') {
			if (cli_tls_verify(optarg, &tls_verify))
				return EXIT_USAGE;
		} else if (c == 'h') {
			puts(mount_usage);
			return 0;
		} else
			return cli_usage(mount_usage);
	}
	if (argc - optind != 2)
		return cli_usage(mount_usage);
	const char *target = argv[optind + 1];
	if (needs_daemon(argv[optind], lazy))
		return lazy_mount(argv[optind], target, data, prefetch, rate, tls_verify, fuse,
				  no_hints, &devs);

	/* Refuse early, with a clear message, what the kernel would refuse
	 * with a bare EINVAL. */
	struct anole_error err = {0};
	struct anole_image *img;
	_cleanup_image_path_ char *image = NULL;
	int r = cli_image_path(argv[optind], &image, &err);
	if (r >= 0)
		r = cli_open_image(image, &devs, &img, &err);
	if (r < 0)
		return cli_fail(&err, r);
	/* devices go to the kernel as device= options, in table order */
	char opts[8192] = "";
	size_t used = 0;
	for (unsigned int i = 0; anole_image_device(img, i); i++)
		used += (size_t)snprintf(opts + used, sizeof(opts) - MIN(used, sizeof(opts)), "%sdevice=%s",
					 used ? "," : "", anole_image_device(img, i));
	anole_image_close(img);
	if (data && *data)
		used += (size_t)snprintf(opts + used, sizeof(opts) - MIN(used, sizeof(opts)), "%s%s",
					 used ? "," : "", data);
	if (used >= sizeof(opts)) {
		cli_error("%s: mount options too long", image);
		return 1;
	}
	data = used ? opts : NULL;

	struct stat st;
	if (stat(target, &st) < 0 || !S_ISDIR(st.st_mode)) {
		cli_error("%s: mount point is not a directory", target);
		return 1;
	}
	if (mount(image, target, "erofs", MS_RDONLY, data) < 0) {
		int e = errno;
		if (e == ENODEV)
			cli_error("%s: this kernel has no EROFS support", image);
		else if (e == ENOTBLK || e == EINVAL)
			cli_error("%s: the kernel refused the mount (%s); file-backed EROFS "
				  "mounts need Linux 6.12+ with CONFIG_EROFS_FS_BACKED_BY_FILE",
				  image, strerror(e));
		else if (e == EPERM)
			cli_error("%s: mounting needs root (CAP_SYS_ADMIN)", target);
		else
			cli_error("%s on %s: %s", image, target, strerror(e));
		return 1;
	}
	return 0;
}

int cmd_umount(int argc, char **argv)
{
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts("anole umount MOUNTPOINT");
		return 0;
	}
	if (argc != 2)
		return cli_usage("anole umount MOUNTPOINT");
	/* a lazy mount: the daemon unmounts it and lets go of its blobs */
	char real[4096], *reply = NULL;
	struct anole_error err = {0};
	struct ctl_request req = {.op = CTL_UMOUNT,
				  .mountpoint = realpath(argv[1], real) ? real : argv[1]};
	char *text = ctl_request_encode(&req);
	if (text && anole_daemon_request(text, 0, &reply, &err) >= 0) {
		free(text);
		json_error_t je;
		json_t *j = json_loads(reply, 0, &je);
		free(reply);
		const char *msg = json_string_value(json_object_get(j, "error"));
		bool theirs = j && (!msg || !strstr(msg, "no lazy image is mounted there"));
		if (theirs && msg)
			cli_error("%s", msg);
		json_decref(j);
		if (theirs)
			return msg ? 1 : 0;
	} else {
		free(text);
	}
	if (umount2(argv[1], 0) < 0) {
		cli_error("%s: %s", argv[1], strerror(errno));
		return 1;
	}
	return 0;
}
