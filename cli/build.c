/* SPDX-License-Identifier: Apache-2.0 */
/* anole build [OPTIONS] SOURCE IMAGE */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
	"anole build [OPTIONS] SOURCE IMAGE\n"
	"\n"
	"Build an EROFS image from SOURCE. IMAGE appears only when the build\n"
	"succeeded (it is written under a temporary name and renamed).\n"
	"\n"
	"SOURCE is one of:\n"
	"  DIR                    a directory tree\n"
	"  FILE.tar, -            a tar layer (plain, gzip, zstd or xz), - = stdin\n"
	"  oci:DIR[:TAG]          an OCI image layout\n"
	"  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]\n"
	"                         an image in a registry\n"
	"Container layers merge with OCI whiteouts (.wh.NAME, .wh..wh..opq).\n"
	"\n"
	"  -z, --compress=ALGO[:LEVEL]\n"
	"                         compress file data: lz4, lz4hc[:1-12] (9),\n"
	"                         deflate[:1-12] (9), lzma[:0-9] (4), zstd[:1-22]\n"
	"                         (9), or none (the default). The kernel\n"
	"                         decompresses in place.\n"
	"      --pcluster=SIZE    bytes compressed at a time (8K..1M, default\n"
	"                         1M): bigger compresses better, smaller reads\n"
	"                         less for random access\n"
	"      --dedupe           store repeated data once: whole files, tails and\n"
	"                         pclusters with equal bytes (SHA-256)\n"
	"      --fragments, --no-fragments\n"
	"                         pack small files and file tails together and\n"
	"                         compress them as one (default: on, but off for\n"
	"                         lz4 and lz4hc so erofs-utils 1.5 reads them)\n"
	"  -j, --jobs=N           compression threads (default: all cores); the\n"
	"                         image is the same for every N\n"
	"  -q, --quiet            no progress, no summary\n"
	"      --uuid=UUID        volume UUID (default: all zeros, for reproducible\n"
	"                         images; 'random' picks one)\n"
	"  -L, --label=NAME       volume label, at most 16 bytes\n"
	"      --clamp-mtime=SECS clamp file times newer than SECS (default: the\n"
	"                         SOURCE_DATE_EPOCH environment variable, if set)\n"
	"      --layers=MODE      merged (default): one image of the whole root\n"
	"                         file system; separate: IMAGE is a new directory\n"
	"                         with one image per layer (0001.erofs at the\n"
	"                         bottom) and overlayfs whiteouts, to stack\n"
	"      --separate-data    file data goes to a content-addressed blob,\n"
	"                         DIR/blobs/sha256/HEX beside IMAGE (DIR),\n"
	"                         which the kernel reads as an extra device\n"
	"                         (the lazy format's local layout)\n"
	"      --platform=OS/ARCH[/VARIANT]\n"
	"                         image to pick from a multi-platform index\n"
	"                         (default linux/amd64)\n"
	"      --tls-verify=BOOL  true: always verified HTTPS; false: HTTPS without\n"
	"                         certificate checks, else plain HTTP (default:\n"
	"                         verified HTTPS, except plain HTTP for\n"
	"                         localhost, 127.0.0.0/8 and [::1])\n"
	"  -h, --help             show this help";

int cmd_build(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_BUILD_LONGOPTS,
		{"quiet", no_argument, NULL, 'q'},
		{"layers", required_argument, NULL, 'Y'},
		{"separate-data", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct anole_build_options opts = {0};
	struct progress_state ps = {.tty = isatty(STDERR_FILENO)};
	uint8_t uuid[16];
	bool quiet = false;
	int c;

	int r = cli_build_defaults(&opts);
	if (r)
		return r;
	while ((c = getopt_long(argc, argv, "qL:hz:j:", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			quiet = true;
			break;
		case 'Y':
			if (strcmp(optarg, "separate") && strcmp(optarg, "merged")) {
				cli_error("--layers: '%s' is not 'merged' or 'separate'", optarg);
				return EXIT_USAGE;
			}
			opts.layers_separate = !strcmp(optarg, "separate");
			break;
		case 'S':
			opts.separate_data = true;
			break;
		case 'h':
			puts(usage_text);
			return 0;
		default:
			r = cli_build_option(c, optarg, &opts, uuid);
			if (r)
				return r > 0 ? cli_usage(usage_text) : EXIT_USAGE;
		}
	}
	if (argc - optind != 2)
		return cli_usage(usage_text);
	if (!quiet) {
		opts.progress = cli_show_progress;
		opts.progress_ctx = &ps;
	}

	struct anole_build_stats st;
	struct anole_error err = {0};
	r = anole_build(argv[optind], argv[optind + 1], &opts, &st, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (!quiet)
		cli_build_summary(argv[optind + 1], &st);
	return 0;
}
