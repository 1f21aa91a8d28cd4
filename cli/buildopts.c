/* SPDX-License-Identifier: Apache-2.0 */
/* What `anole build` and `anole convert` share: image options, progress
 * and the build summary. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_show_progress(const struct anole_progress *p, void *ctx)
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

int cli_parse_size(const char *s, uint64_t *v)
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

int cli_build_defaults(struct anole_build_options *o)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde) {
		if (!parse_i64(sde, &o->mtime_clamp)) {
			cli_error("SOURCE_DATE_EPOCH='%s' is not a number of seconds", sde);
			return EXIT_USAGE;
		}
		o->clamp_mtime = true;
	}
	return 0;
}

int cli_tls_verify(const char *arg, int *v)
{
	if (!strcmp(arg, "true") || !strcmp(arg, "1"))
		*v = 1;
	else if (!strcmp(arg, "false") || !strcmp(arg, "0"))
		*v = -1;
	else {
		cli_error("--tls-verify=%s: choose true or false", arg);
		return EXIT_USAGE;
	}
	return 0;
}

int cli_build_option(int c, const char *arg, struct anole_build_options *o, uint8_t uuid[16])
{
	switch (c) {
		case 'z':
			o->compress = arg;
			break;
		case 'D':
			o->dedupe = true;
			break;
		case 'F':
			o->fragments = -1;
			break;
		case 'G':
			o->fragments = 1;
			break;
		case 'P': {
			uint64_t v;
			if (cli_parse_size(arg, &v) < 0 || v > UINT32_MAX) {
				cli_error("--pcluster: '%s' is not a size (e.g. 65536, 128K, 1M)", arg);
				return -EXIT_USAGE;
			}
			o->pcluster_size = (uint32_t)v;
			break;
		}
		case 'j': {
			int64_t v;
			if (!parse_i64(arg, &v) || v < 1 || v > 1024) {
				cli_error("--jobs: '%s' is not a thread count (1..1024)", arg);
				return -EXIT_USAGE;
			}
			o->threads = (unsigned int)v;
			break;
		}
		case 'U':
			if (parse_uuid(arg, uuid) < 0) {
				cli_error("--uuid: '%s' is not a UUID (or 'random')", arg);
				return -EXIT_USAGE;
			}
			o->uuid = uuid;
			break;
		case 'L':
			if (strlen(arg) > 16) {
				cli_error("--label: '%s' is longer than 16 bytes", arg);
				return -EXIT_USAGE;
			}
			o->label = arg;
			break;
		case 'T':
			if (!parse_i64(arg, &o->mtime_clamp)) {
				cli_error("--clamp-mtime: '%s' is not a number of seconds", arg);
				return -EXIT_USAGE;
			}
			o->clamp_mtime = true;
			break;
		case 'p':
			if (!strchr(arg, '/')) {
				cli_error("--platform: '%s' is not OS/ARCH[/VARIANT]", arg);
				return -EXIT_USAGE;
			}
			o->platform = arg;
			break;
		case 'V':
			if (cli_tls_verify(arg, &o->tls_verify))
				return -EXIT_USAGE;
			break;
	default:
		return 1;
	}
	return 0;
}

void cli_build_summary(const char *image, const struct anole_build_stats *st)
{
	printf("%s: %llu inodes (%llu dirs, %llu files, %llu symlinks, %llu special), "
	       "%.1f MiB data, image %.1f MiB, %.2fs\n",
	       image, (unsigned long long)st->inodes, (unsigned long long)st->dirs,
	       (unsigned long long)st->regular, (unsigned long long)st->symlinks,
	       (unsigned long long)st->special, (double)st->data_bytes / 1048576.0,
	       (double)st->image_bytes / 1048576.0, st->seconds);
	if (st->compressed_files || st->fragment_bytes)
		printf("  compressed %llu files: %.1f MiB -> %.1f MiB; %.1f MiB of small files "
		       "and tails packed together\n",
		       (unsigned long long)st->compressed_files,
		       (double)st->compressed_bytes_in / 1048576.0,
		       (double)st->compressed_bytes_out / 1048576.0,
		       (double)st->fragment_bytes / 1048576.0);
	if (st->dedupe_bytes)
		printf("  dedupe: %.1f MiB found again and stored once\n",
		       (double)st->dedupe_bytes / 1048576.0);
	if (st->blob_digest[0])
		printf("  data blob: blobs/sha256/%s, %.1f MiB\n", st->blob_digest + 7,
		       (double)st->blob_bytes / 1048576.0);
	if (st->layers)
		printf("  %llu layer%s, %llu tar entries: %llu hidden by higher layers (not "
		       "stored), %llu whiteouts\n",
		       (unsigned long long)st->layers, st->layers == 1 ? "" : "s",
		       (unsigned long long)st->layer_entries, (unsigned long long)st->hidden_entries,
		       (unsigned long long)st->whiteouts);
}
