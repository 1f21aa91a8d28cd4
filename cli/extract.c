/* SPDX-License-Identifier: Apache-2.0 */
/* anole extract IMAGE DIR */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
	"anole extract [OPTIONS] [--device=PATH]... IMAGE DIR\n"
	"\n"
	"Restore the image's tree into DIR (created if missing; must be empty):\n"
	"contents with holes, modes, times, xattrs, ACLs, devices, hard links,\n"
	"and owners when run as root. Never writes outside DIR, nor through a\n"
	"DIR that is a symlink; a failure leaves DIR as it was.\n"
	"\n"
	"  --no-owner     do not restore owners\n"
	"  -j, --jobs=N   threads decoding compressed files (default: one per\n"
	"                 core; 1: none besides the main one); the tree is the\n"
	"                 same for any N\n"
	"  -q, --quiet    no warnings\n" CLI_DEVICE_HELP;

int cmd_extract(int argc, char **argv)
{
	static const struct option longopts[] = {{"no-owner", no_argument, NULL, 'O'},
						 {"quiet", no_argument, NULL, 'q'},
						 {"jobs", required_argument, NULL, 'j'},
						 {"help", no_argument, NULL, 'h'},
						 CLI_DEVICE_LONGOPT,
						 {0}};
	struct anole_extract_options opts = {.restore_owner = true};
	struct cli_devices devs = {0};
	int c;
	while ((c = getopt_long(argc, argv, "qhj:", longopts, NULL)) != -1) {
		switch (c) {
		case 'O':
			opts.restore_owner = false;
			break;
		case 'q':
			opts.quiet = true;
			break;
		case 'j': {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || errno || v < 1 || v > 256) {
				cli_error("--jobs: '%s' is not a thread count (1..256)", optarg);
				return EXIT_USAGE;
			}
			opts.threads = (unsigned int)v;
			break;
		}
		case 'd':
			if (cli_add_device(&devs, optarg))
				return EXIT_USAGE;
			break;
		case 'h':
			puts(usage_text);
			return 0;
		default:
			return cli_usage(usage_text);
		}
	}
	if (argc - optind != 2)
		return cli_usage(usage_text);
	struct anole_error err = {0};
	struct anole_image *img;
	int r = cli_open_image(argv[optind], &devs, &img, &err);
	if (r < 0)
		return cli_fail(&err, r);
	r = anole_extract(img, argv[optind + 1], &opts, &err);
	anole_image_close(img);
	return r < 0 ? cli_fail(&err, r) : 0;
}
