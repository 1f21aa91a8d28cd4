/* SPDX-License-Identifier: Apache-2.0 */
/* anole convert [OPTIONS] SOURCE TARGET */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
	"anole convert [OPTIONS] SOURCE TARGET\n"
	"\n"
	"Convert SOURCE (anything 'anole build' reads: DIR, tar, oci:DIR[:TAG],\n"
	"docker://...) into a lazy image: a small metadata EROFS image plus\n"
	"content-addressed data blobs, each with a digest table (SHA-256 per\n"
	"range) and a chunk index, under one OCI manifest. TARGET is\n"
	"docker://HOST[:PORT]/REPO[:TAG] or oci:DIR[:TAG] (TAG defaults to\n"
	"latest). Blobs the target has are skipped. Format: docs/FORMAT.md.\n"
	"\n"
	"  --dedup-with=REF       reuse the data of lazy image REF (docker:// in\n"
	"                         the same registry, or oci:DIR): extents with\n"
	"                         equal bytes point into its blobs instead of\n"
	"                         being stored again; repeatable (64 blobs max)\n"
	"  --chunk-size=SIZE      upload blobs in PATCH requests of SIZE bytes\n"
	"                         (default: one PUT per blob)\n"
"  --range-size=SIZE      the digest table's range for plain data and\n"
	"                         small extents, what a lazy mount fetches and\n"
	"                         verifies at a time (a compressed extent is one\n"
	"                         range); 4K to 1M, a power of two (default 64K)\n"
	"  --work-dir=DIR         staging for registry targets (default $TMPDIR,\n"
	"                         else /var/tmp)\n"
	"  -z, --compress=ALGO[:LEVEL]\n"
	"                         as for build, default zstd\n"
	"  -q, --quiet            no progress, no summary\n"
	"Also taken, as for build: --pcluster, -j, --fragments (default off: small\n"
	"files keep their own extents, so other images can share them), --uuid,\n"
	"-L, --clamp-mtime, --platform, --tls-verify.";

static void summary(const char *target, const struct anole_convert_stats *st)
{
	const struct anole_build_stats *b = &st->build;
	double mib = 1048576.0;
	printf("%s@%s\n", target, st->manifest_digest);
	printf("  metadata image %.1f MiB; %.1f MiB of file data in %llu files\n",
	       (double)b->image_bytes / mib, (double)b->data_bytes / mib,
	       (unsigned long long)b->regular);
	printf("  dedup: %.1f MiB found in %u of %u base blob%s, %.1f MiB repeated within "
	       "the image; new data blob %.1f MiB\n",
	       (double)b->base_reused_bytes / mib, st->base_blobs_used, st->base_blobs,
	       st->base_blobs == 1 ? "" : "s",
	       (double)(b->dedupe_bytes - b->base_reused_bytes) / mib, (double)b->blob_bytes / mib);
	printf("  %u blobs, %.1f MiB in all: %u uploaded (%.1f MiB), %u mounted, %u already "
	       "there; %.2fs to build\n",
	       st->blobs + 1, (double)st->total_bytes / mib, st->blobs_uploaded,
	       (double)st->new_bytes / mib, st->blobs_mounted, st->blobs_present, b->seconds);
}

int cmd_convert(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_BUILD_LONGOPTS,
		{"dedup-with", required_argument, NULL, 'W'},
		{"chunk-size", required_argument, NULL, 'C'},
		{"work-dir", required_argument, NULL, 'w'},
		{"range-size", required_argument, NULL, 'r'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct anole_convert_options o = {0};
	struct progress_state ps = {.tty = isatty(STDERR_FILENO)};
	uint8_t uuid[16];
	bool quiet = false;
	const char **with = calloc((size_t)argc, sizeof(*with));
	int c, r = with ? cli_build_defaults(&o.build) : 1;
	if (r) {
		free(with);
		return r;
	}
	while ((c = getopt_long(argc, argv, "qL:hz:j:", longopts, NULL)) != -1) {
		switch (c) {
		case 'W':
			with[o.ndedup_with++] = optarg;
			break;
		case 'C':
			if (cli_parse_size(optarg, &o.upload_chunk) < 0 || !o.upload_chunk) {
				cli_error("--chunk-size: '%s' is not a size (e.g. 8M)", optarg);
				free(with);
				return EXIT_USAGE;
			}
			break;
		case 'w':
			o.work_dir = optarg;
			break;
		case 'r': {
			uint64_t v;
			if (cli_parse_size(optarg, &v) < 0 || v < 4096 || v > (1u << 20) ||
			    (v & (v - 1))) {
				cli_error("--range-size: '%s' is not a power of two from 4K to 1M",
					  optarg);
				free(with);
				return EXIT_USAGE;
			}
			o.build.range_bits = (unsigned)__builtin_ctzll(v);
			break;
		}
		case 'q':
			quiet = true;
			break;
		case 'h':
			puts(usage_text);
			free(with);
			return 0;
		default:
			r = cli_build_option(c, optarg, &o.build, uuid);
			if (r) {
				free(with);
				return r > 0 ? cli_usage(usage_text) : EXIT_USAGE;
			}
		}
	}
	if (argc - optind != 2) {
		free(with);
		return cli_usage(usage_text);
	}
	o.dedup_with = with;
	if (!quiet) {
		o.build.progress = cli_show_progress;
		o.build.progress_ctx = &ps;
		o.log = cli_progress_line;
	}
	struct anole_convert_stats st;
	struct anole_error err = {0};
	r = anole_convert(argv[optind], argv[optind + 1], &o, &st, &err);
	free(with);
	if (r < 0)
		return cli_fail(&err, r);
	if (!quiet)
		summary(argv[optind + 1], &st);
	return 0;
}
