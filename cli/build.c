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
	"      --tls-verify=BOOL  false: HTTPS without certificate checks, else\n"
	"                         plain HTTP (default: verified HTTPS, except\n"
	"                         plain HTTP for localhost and 127.0.0.0/8)\n"
	"  -h, --help             show this help";

struct progress_state {
	bool tty;
	bool shown;
};

static void show_progress(const struct anole_progress *p, void *ctx)
{
	struct progress_state *s = ctx;
	if (!s->tty || !strcmp(p->phase, "done")) {
		if (s->shown)
			fputs("\r\033[K", stderr);
		return;
	}
	fprintf(stderr, "\r\033[K%s: %llu inodes, %.1f MiB, %.1fs", p->phase,
		(unsigned long long)p->inodes, (double)p->bytes / 1048576.0, p->seconds);
	s->shown = true;
}

static int parse_uuid(const char *s, uint8_t out[16])
{
	if (!strcmp(s, "random")) {
		FILE *f = fopen("/dev/urandom", "r");
		if (!f || fread(out, 1, 16, f) != 16) {
			if (f)
				fclose(f);
			return -EIO;
		}
		fclose(f);
		out[6] = (out[6] & 0x0f) | 0x40;
		out[8] = (out[8] & 0x3f) | 0x80;
		return 0;
	}
	int n = 0;
	for (const char *p = s; *p; p++) {
		if (*p == '-')
			continue;
		char hex[3] = {p[0], p[1], 0};
		char *end;
		if (n == 16 || !p[1])
			return -EINVAL;
		out[n++] = (uint8_t)strtoul(hex, &end, 16);
		if (*end)
			return -EINVAL;
		p++;
	}
	return n == 16 ? 0 : -EINVAL;
}

static bool parse_i64(const char *s, int64_t *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || !*s || *end)
		return false;
	*v = x;
	return true;
}

static int parse_size(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': x <<= 10; end++; break;
	case 'm': case 'M': x <<= 20; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return -EINVAL;
	*v = x;
	return 0;
}

int cmd_build(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quiet", no_argument, NULL, 'q'},   {"uuid", required_argument, NULL, 'U'},
		{"label", required_argument, NULL, 'L'}, {"clamp-mtime", required_argument, NULL, 'T'},
		{"compress", required_argument, NULL, 'z'}, {"pcluster", required_argument, NULL, 'P'},
		{"jobs", required_argument, NULL, 'j'}, {"dedupe", no_argument, NULL, 'D'},
		{"no-fragments", no_argument, NULL, 'F'}, {"fragments", no_argument, NULL, 'G'},
		{"layers", required_argument, NULL, 'Y'}, {"platform", required_argument, NULL, 'p'},
		{"tls-verify", required_argument, NULL, 'V'},
		{"separate-data", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},    {0},
	};
	struct anole_build_options opts = {0};
	struct progress_state ps = {.tty = isatty(STDERR_FILENO)};
	uint8_t uuid[16];
	bool quiet = false;
	int c;

	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde) {
		if (!parse_i64(sde, &opts.mtime_clamp)) {
			cli_error("SOURCE_DATE_EPOCH='%s' is not a number of seconds", sde);
			return EXIT_USAGE;
		}
		opts.clamp_mtime = true;
	}
	while ((c = getopt_long(argc, argv, "qL:hz:j:", longopts, NULL)) != -1) {
		switch (c) {
		case 'z':
			opts.compress = optarg;
			break;
		case 'D':
			opts.dedupe = true;
			break;
		case 'F':
			opts.fragments = -1;
			break;
		case 'G':
			opts.fragments = 1;
			break;
		case 'P': {
			uint64_t v;
			if (parse_size(optarg, &v) < 0 || v > UINT32_MAX) {
				cli_error("--pcluster: '%s' is not a size (e.g. 65536, 128K, 1M)", optarg);
				return EXIT_USAGE;
			}
			opts.pcluster_size = (uint32_t)v;
			break;
		}
		case 'j': {
			int64_t v;
			if (!parse_i64(optarg, &v) || v < 1 || v > 1024) {
				cli_error("--jobs: '%s' is not a thread count (1..1024)", optarg);
				return EXIT_USAGE;
			}
			opts.threads = (unsigned int)v;
			break;
		}
		case 'q':
			quiet = true;
			break;
		case 'U':
			if (parse_uuid(optarg, uuid) < 0) {
				cli_error("--uuid: '%s' is not a UUID (or 'random')", optarg);
				return EXIT_USAGE;
			}
			opts.uuid = uuid;
			break;
		case 'L':
			if (strlen(optarg) > 16) {
				cli_error("--label: '%s' is longer than 16 bytes", optarg);
				return EXIT_USAGE;
			}
			opts.label = optarg;
			break;
		case 'T':
			if (!parse_i64(optarg, &opts.mtime_clamp)) {
				cli_error("--clamp-mtime: '%s' is not a number of seconds", optarg);
				return EXIT_USAGE;
			}
			opts.clamp_mtime = true;
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
		case 'p':
			if (!strchr(optarg, '/')) {
				cli_error("--platform: '%s' is not OS/ARCH[/VARIANT]", optarg);
				return EXIT_USAGE;
			}
			opts.platform = optarg;
			break;
		case 'V':
			if (!strcmp(optarg, "true") || !strcmp(optarg, "1"))
				opts.tls_verify = 1;
			else if (!strcmp(optarg, "false") || !strcmp(optarg, "0"))
				opts.tls_verify = -1;
			else {
				cli_error("--tls-verify: '%s' is not true or false", optarg);
				return EXIT_USAGE;
			}
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
	if (!quiet) {
		opts.progress = show_progress;
		opts.progress_ctx = &ps;
	}

	struct anole_build_stats st;
	struct anole_error err = {0};
	int r = anole_build(argv[optind], argv[optind + 1], &opts, &st, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (!quiet) {
		printf("%s: %llu inodes (%llu dirs, %llu files, %llu symlinks, %llu special), "
		       "%.1f MiB data, image %.1f MiB, %.2fs\n",
		       argv[optind + 1], (unsigned long long)st.inodes, (unsigned long long)st.dirs,
		       (unsigned long long)st.regular, (unsigned long long)st.symlinks,
		       (unsigned long long)st.special, (double)st.data_bytes / 1048576.0,
		       (double)st.image_bytes / 1048576.0, st.seconds);
		if (st.compressed_files || st.fragment_bytes)
			printf("  compressed %llu files: %.1f MiB -> %.1f MiB; %.1f MiB of small files "
			       "and tails packed together\n",
			       (unsigned long long)st.compressed_files,
			       (double)st.compressed_bytes_in / 1048576.0,
			       (double)st.compressed_bytes_out / 1048576.0,
			       (double)st.fragment_bytes / 1048576.0);
		if (st.dedupe_bytes)
			printf("  dedupe: %.1f MiB found again and stored once\n",
			       (double)st.dedupe_bytes / 1048576.0);
		if (st.blob_digest[0])
			printf("  data blob: blobs/sha256/%s, %.1f MiB\n", st.blob_digest + 7,
			       (double)st.blob_bytes / 1048576.0);
		if (st.layers)
			printf("  %llu layer%s, %llu tar entries: %llu hidden by higher layers (not "
			       "stored), %llu whiteouts\n",
			       (unsigned long long)st.layers, st.layers == 1 ? "" : "s",
			       (unsigned long long)st.layer_entries,
			       (unsigned long long)st.hidden_entries,
			       (unsigned long long)st.whiteouts);
	}
	return 0;
}
