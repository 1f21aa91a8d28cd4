/* SPDX-License-Identifier: Apache-2.0 */
/* anole cache ls [--json] | anole cache gc --max-size SIZE | anole cache verify */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char cache_usage[] =
	"anole cache ls [--json]\n"
	"anole cache gc --max-size SIZE\n"
	"anole cache verify\n"
	"\n"
	"The lazy mount cache ($ANOLE_CACHE_DIR, default /var/lib/anole/cache):\n"
	"ls lists its blobs (complete or partial, bytes on disk, in use by a\n"
	"mount); gc removes blobs, least recently used first, until the cache\n"
	"takes at most SIZE on disk (e.g. 10G), never one a mount uses; verify\n"
	"hashes every blob again, a complete one against its digest (removed\n"
	"when it differs), a partial one range by range against its digest\n"
	"table (ranges that differ are fetched again when read), prints one\n"
	"line per bad or skipped blob and exits 1 when it found any bad.";

struct ls_state {
	bool json;
	json_t *all;
	uint64_t total;
};

static int print_entry(void *ctx, const struct anole_cache_entry *e)
{
	struct ls_state *s = ctx;
	s->total += e->disk;
	if (s->json) {
		json_array_append_new(s->all, json_pack("{s:s, s:I, s:I, s:b, s:b, s:I}", "digest",
							e->digest, "size", (json_int_t)e->size,
							"disk", (json_int_t)e->disk, "partial",
							e->partial, "in_use", e->in_use, "last_used",
							(json_int_t)e->last_used));
		return 0;
	}
	char when[32];
	time_t t = (time_t)e->last_used;
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", gmtime_r(&t, &tm));
	printf("%.19s  %12llu  %12llu  %-8s  %-6s  %s\n", e->digest, (unsigned long long)e->size,
	       (unsigned long long)e->disk, e->partial ? "partial" : "complete",
	       e->in_use ? "in use" : "-", when);
	return 0;
}

static int print_check(void *ctx, const struct anole_cache_check *c)
{
	(void)ctx;
	if (c->bad || c->skipped)
		printf("%-7s %s  %s: %s\n", c->bad ? "bad" : "skipped", c->e.digest,
		       c->e.partial ? "partial" : "complete", c->what);
	return 0;
}

int cmd_cache(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		if (argc < 2)
			return cli_usage(cache_usage);
		puts(cache_usage);
		return 0;
	}
	struct anole_error err = {0};
	if (!strcmp(argv[1], "ls")) {
		struct ls_state s = {.json = argc == 3 && !strcmp(argv[2], "--json")};
		if (argc > 3 || (argc == 3 && !s.json))
			return cli_usage(cache_usage);
		if (s.json)
			s.all = json_array();
		else
			printf("%-19s  %12s  %12s  %-8s  %-6s  %s\n", "BLOB", "SIZE", "ON DISK", "STATE",
			       "USE", "LAST USED (UTC)");
		int r = anole_cache_list(print_entry, &s, &err);
		if (r < 0) {
			json_decref(s.all);
			return cli_fail(&err, r);
		}
		if (s.json) {
			json_dumpf(s.all, stdout, JSON_INDENT(1));
			putchar('\n');
			json_decref(s.all);
		} else {
			printf("%llu bytes on disk\n", (unsigned long long)s.total);
		}
		return 0;
	}
	if (!strcmp(argv[1], "gc")) {
		uint64_t max = 0;
		bool have = false;
		for (int i = 2; i < argc; i++) {
			const char *v = NULL;
			if (!strncmp(argv[i], "--max-size=", 11))
				v = argv[i] + 11;
			else if (!strcmp(argv[i], "--max-size") && i + 1 < argc)
				v = argv[++i];
			if (!v || cli_parse_size(v, &max) < 0) {
				cli_error("cache gc: expected --max-size SIZE, got '%s'", argv[i]);
				return EXIT_USAGE;
			}
			have = true;
		}
		if (!have)
			return cli_usage(cache_usage);
		struct anole_cache_gc_stats st;
		int r = anole_cache_gc(max, &st, &err);
		if (r < 0)
			return cli_fail(&err, r);
		printf("cache: %llu -> %llu bytes on disk; removed %u blobs (%llu bytes), kept %u in "
		       "use\n",
		       (unsigned long long)st.before, (unsigned long long)st.after, st.removed,
		       (unsigned long long)st.removed_bytes, st.kept_in_use);
		if (st.after > max)
			fprintf(stderr, "anole: notice: the cache stays above %llu bytes: the rest is in use\n",
				(unsigned long long)max);
		return 0;
	}
	if (!strcmp(argv[1], "verify")) {
		if (argc != 2)
			return cli_usage(cache_usage);
		struct anole_cache_verify_stats st;
		int r = anole_cache_verify(print_check, NULL, &st, &err);
		if (r < 0)
			return cli_fail(&err, r);
		printf("cache verify: %u blobs checked (%llu bytes of complete ones), %u bad, %u skipped\n",
		       st.checked, (unsigned long long)st.bytes, st.bad, st.skipped);
		return st.bad ? 1 : 0;
	}
	return cli_usage(cache_usage);
}
