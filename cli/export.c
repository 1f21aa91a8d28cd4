/* SPDX-License-Identifier: Apache-2.0 */
/* anole export [--device=PATH]... IMAGE -o FILE */
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
	"anole export [-q] [--device=PATH]... IMAGE -o FILE\n"
	"\n"
	"Write the image's tree as a POSIX (pax) tar: contents with holes kept\n"
	"as sparse entries, modes, numeric owners, nanosecond mtimes, xattrs\n"
	"and ACLs, devices, fifos, symlinks and hard links. Sockets are left\n"
	"out (tar cannot store them). The same image gives the same bytes.\n"
	"\n"
	"  -o, --output=FILE  the tar to write (replaced atomically when done);\n"
	"                     '-' for standard output\n"
	"  -q, --quiet        no warnings\n" CLI_DEVICE_HELP;

int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
						 {"quiet", no_argument, NULL, 'q'},
						 {"help", no_argument, NULL, 'h'},
						 CLI_DEVICE_LONGOPT,
						 {0}};
	struct anole_export_options opts = {0};
	struct cli_devices devs = {0};
	const char *out = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'q':
			opts.quiet = true;
			break;
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
	if (argc - optind != 1)
		return cli_usage(usage_text);
	if (!out || !*out) {
		cli_error("export: missing -o FILE ('-o -' for standard output); "
			  "usage: anole export [-q] IMAGE -o FILE");
		return EXIT_USAGE;
	}
	if (!strcmp(out, "-") && isatty(STDOUT_FILENO)) {
		cli_error("export: not writing a tar to a terminal; redirect standard output "
			  "or use -o FILE");
		return EXIT_USAGE;
	}
	struct anole_error err = {0};
	struct anole_image *img;
	int r = cli_open_image(argv[optind], &devs, &img, &err);
	if (r < 0)
		return cli_fail(&err, r);
	r = anole_export(img, out, &opts, &err);
	anole_image_close(img);
	return r < 0 ? cli_fail(&err, r) : 0;
}
