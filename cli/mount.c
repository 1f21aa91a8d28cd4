/* SPDX-License-Identifier: Apache-2.0 */
/* anole mount IMAGE MOUNTPOINT / anole umount MOUNTPOINT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static inline void free_strp(char **p)
{
	free(*p);
}
#define _cleanup_image_path_ __attribute__((cleanup(free_strp)))

#include "cli.h"

static const char mount_usage[] =
	"anole mount [-o OPTIONS] IMAGE|DIR|oci:DIR[:TAG] MOUNTPOINT\n"
	"\n"
	"Mount a local EROFS image read-only with the kernel, file-backed (no\n"
	"loop device). The image is checked to be EROFS first. A lazy image in\n"
	"an OCI layout (from anole pull or convert) mounts its metadata image\n"
	"with its data blobs as device= files.\n"
	"\n"
	"  -o OPTIONS   extra EROFS mount options (e.g. 'acl,user_xattr')";

int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {{"options", required_argument, NULL, 'o'},
						 {"help", no_argument, NULL, 'h'},
						 {0}};
	const char *data = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		if (c == 'o')
			data = optarg;
		else if (c == 'h') {
			puts(mount_usage);
			return 0;
		} else
			return cli_usage(mount_usage);
	}
	if (argc - optind != 2)
		return cli_usage(mount_usage);
	const char *target = argv[optind + 1];

	/* Refuse early, with a clear message, what the kernel would refuse
	 * with a bare EINVAL. */
	struct anole_error err = {0};
	struct anole_image *img;
	_cleanup_image_path_ char *image = NULL;
	int r = cli_image_path(argv[optind], &image, &err);
	if (r >= 0)
		r = anole_image_open(image, &img, &err);
	if (r < 0)
		return cli_fail(&err, r);
	/* data blobs go to the kernel as device= options, in table order */
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
	if (umount2(argv[1], 0) < 0) {
		cli_error("%s: %s", argv[1], strerror(errno));
		return 1;
	}
	return 0;
}
