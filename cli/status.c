/* SPDX-License-Identifier: Apache-2.0 */
/* anole status [--json|--metrics] */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "serve/request.h"

static const char status_usage[] =
	"anole status [--json | --metrics]\n"
	"\n"
	"Show the lazy mount daemon: mounts, data blobs with bytes cached and\n"
	"fetched, fetch requests, reads waiting. --json prints the daemon's\n"
	"answer as is; --metrics prints Prometheus text (also written to\n"
	"$ANOLE_RUNTIME_DIR/metrics.prom every 2 s).";

static void human(char *buf, size_t size, double v)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, size, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static long long num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						 {"metrics", no_argument, NULL, 'm'},
						 {"help", no_argument, NULL, 'h'},
						 {0}};
	int c, mode = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'j' || c == 'm')
			mode = c;
		else if (c == 'h') {
			puts(status_usage);
			return 0;
		} else
			return cli_usage(status_usage);
	}
	if (optind != argc)
		return cli_usage(status_usage);
	struct anole_error err = {0};
	char *reply = NULL;
	struct ctl_request req = {.op = mode == 'm' ? CTL_METRICS : CTL_STATUS};
	char *text = ctl_request_encode(&req);
	int r = text ? anole_daemon_request(text, 0, &reply, &err) : -ENOMEM;
	free(text);
	/* no daemon is an answer; one we cannot reach is an error */
	if (r == -ENOENT && mode != 'j') {
		puts("no anole daemon runs: nothing is lazily mounted");
		return 0;
	}
	if (r == -ENOENT && mode == 'j') {
		puts("{\"mounts\":[],\"blobs\":[]}");
		return 0;
	}
	if (r < 0)
		return cli_fail(&err, r);
	json_error_t je;
	json_t *st = json_loads(reply, 0, &je);
	if (!st) {
		free(reply);
		cli_error("the daemon's answer is not JSON");
		return 1;
	}
	if (mode == 'j')
		fputs(reply, stdout);
	free(reply);
	if (mode == 'm')
		fputs(json_string_value(json_object_get(st, "metrics")) ?: "", stdout);
	if (mode) {
		json_decref(st);
		return 0;
	}
	char a[32], b[32], d[32];
	human(a, sizeof(a), (double)num(st, "bytes_cached"));
	human(b, sizeof(b), (double)num(st, "bytes_total"));
	human(d, sizeof(d), (double)num(st, "bytes_fetched"));
	printf("daemon pid %lld; cache %s\n", num(st, "pid"),
	       json_string_value(json_object_get(st, "cache")));
	printf("%s of %s cached; %s fetched in %lld requests (%lld failed); %lld reads asked, "
	       "%lld waiting, %lld failed; %lld waited %.3f s in all\n",
	       a, b, d, num(st, "fetch_requests"), num(st, "fetch_errors"), num(st, "events"),
	       num(st, "events_pending"), num(st, "reads_failed"), num(st, "read_waits"),
	       (double)num(st, "read_wait_us") / 1e6);
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(st, "mounts"), i, m)
		printf("mount %s  %s  %zu blobs\n", json_string_value(json_object_get(m, "mountpoint")),
		       json_string_value(json_object_get(m, "ref")),
		       json_array_size(json_object_get(m, "blobs")));
	json_array_foreach(json_object_get(st, "blobs"), i, m) {
		human(a, sizeof(a), (double)num(m, "bytes_cached"));
		human(b, sizeof(b), (double)num(m, "size"));
		human(d, sizeof(d), (double)num(m, "bytes_fetched"));
		printf("blob %.19s  %s of %s cached%s, %s fetched in %lld requests\n",
		       json_string_value(json_object_get(m, "digest")), a, b,
		       json_is_true(json_object_get(m, "complete")) ? " (complete)" : "", d,
		       num(m, "fetch_requests"));
	}
	json_decref(st);
	return 0;
}
