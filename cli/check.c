/* SPDX-License-Identifier: Apache-2.0 */
/* anole check [-q] [--device=PATH]... IMAGE */
#include <string.h>

#include "cli.h"

static const char usage_text[] =
	"anole check [-q] [--device=PATH]... IMAGE\n"
	"\n"
	"Walk the whole image: superblock checksum, every inode, directory,\n"
	"xattr and data byte, link counts. Exit 0 when sound; otherwise exit 1\n"
	"with one line naming the first problem (nid, byte offset, path).\n"
	"\n"
	"  -q, --quiet    print nothing when the image is sound\n" CLI_DEVICE_HELP;

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, CLI_DEVICE_LONGOPT,
		{0}};
	struct cli_devices devs = {0};
	bool quiet = false;
	int c;
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		if (c == 'q')
			quiet = true;
		else if (c == 'd') {
			if (cli_add_device(&devs, optarg))
				return EXIT_USAGE;
		} else if (c == 'h') {
			puts(usage_text);
			return 0;
		} else
			return cli_usage(usage_text);
	}
	if (argc - optind != 1)
		return cli_usage(usage_text);

	struct anole_error err = {0};
	struct anole_image *img;
	int r = cli_open_image(argv[optind], &devs, &img, &err);
	if (r < 0)
		return cli_fail(&err, r);
	struct anole_check_stats st;
	r = anole_check(img, &st);
	if (r < 0) {
		int rc = cli_fail(anole_image_error(img), r);
		anole_image_close(img);
		return rc;
	}
	if (!quiet)
		printf("%s: ok, %llu inodes (%llu directories, %llu regular files), %.1f MiB of "
		       "data\n",
		       argv[optind], (unsigned long long)st.inodes, (unsigned long long)st.dirs,
		       (unsigned long long)st.files, (double)st.bytes / 1048576.0);
	anole_image_close(img);
	return 0;
}
