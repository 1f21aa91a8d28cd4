/* SPDX-License-Identifier: Apache-2.0 */
/* anole smc run [--] CMD [ARG...] | anole smc stat [--json] FILE
 * (docs/DESIGN-smc.md). */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char smc_usage[] =
	"anole smc run [--] CMD [ARG...]\n"
	"       anole smc stat [--json] FILE\n"
	"\n"
	"run: CMD with libanole-smc.so preloaded: its same-host TCP connections\n"
	"to other preloaded programs move through shared memory, all others stay\n"
	"TCP. The rendezvous directory is $ANOLE_SMC_DIR (default /run/anole/smc).\n"
	"stat: the connections of FILE (what $ANOLE_SMC_STATS names: a line per\n"
	"closed connection): in shared memory, in TCP, bytes, fallbacks by reason.";

/* libanole-smc.so: $ANOLE_SMC_LIB, else beside the anole executable (the
 * build tree), else where it is installed. */
int cli_smc_lib(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *env = getenv("ANOLE_SMC_LIB");

	if (env && *env)
		return snprintf(buf, len, "%s", env) < (int)len ? 0 : -ENAMETOOLONG;
	if (n > 0) {
		exe[n] = 0;
		if (snprintf(buf, len, "%s/libanole-smc.so", dirname(exe)) < (int)len && !access(buf, R_OK))
			return 0;
	}
	return snprintf(buf, len, "%s", ANOLE_SMC_INSTALLED) < (int)len ? 0 : -ENAMETOOLONG;
}

const char *cli_smc_dir(void)
{
	const char *d = getenv("ANOLE_SMC_DIR");
	if (d && *d)
		return d;
	/* the per-host default; a failure only means TCP for everything */
	mkdir("/run/anole", 0755);
	mkdir("/run/anole/smc", 0700);
	return "/run/anole/smc";
}

static int smc_run(int argc, char **argv)
{
	char lib[PATH_MAX], pre[2 * PATH_MAX];
	/* after any preload already there: a sanitizer runtime must stay first */
	const char *old = getenv("LD_PRELOAD");
	int i = 0;

	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		return cli_usage(smc_usage);
	if (cli_smc_lib(lib, sizeof(lib)) ||
	    snprintf(pre, sizeof(pre), "%s%s%s", old ? old : "", old && *old ? " " : "", lib) >= (int)sizeof(pre)) {
		cli_error("smc: the library path is too long");
		return 1;
	}
	cli_smc_dir();
	if (setenv("LD_PRELOAD", pre, 1)) {
		cli_error("smc: %s", strerror(errno));
		return 1;
	}
	execvp(argv[i], argv + i);
	cli_error("smc: %s: %s", argv[i], strerror(errno));
	return 127;
}

struct smc_totals {
	long long conns[2], bytes[2], reasons[16];
	long long smc_servers, smc_clients; /* conns[1] by role */
	const char *names[16];
	int nreasons;
};

static void stat_add(struct smc_totals *t, json_t *o)
{
	bool smc = !strcmp(json_string_value(json_object_get(o, "mode")) ?: "", "smc");
	const char *why = json_string_value(json_object_get(o, "reason"));
	/* one line may stand for many connections kept on TCP */
	json_int_t n = json_integer_value(json_object_get(o, "count")) ?: 1;

	t->conns[smc] += n;
	t->bytes[smc] += json_integer_value(json_object_get(o, "tx"));
	if (smc && !strcmp(json_string_value(json_object_get(o, "role")) ?: "", "server"))
		t->smc_servers++;
	else if (smc)
		t->smc_clients++;
	if (smc || !why)
		return;
	for (int i = 0; i < t->nreasons; i++)
		if (!strcmp(t->names[i], why)) {
			t->reasons[i] += n;
			return;
		}
	if (t->nreasons < 16) {
		t->names[t->nreasons] = why;
		t->reasons[t->nreasons++] = n;
	}
}

static int smc_stat(int argc, char **argv)
{
	bool json = argc == 2 && !strcmp(argv[0], "--json");
	struct smc_totals t = {0};
	json_t *all = json_array(), *out, *fb;
	json_error_t jerr;
	FILE *f;
	char line[512];

	if (argc != 1 + json || !all)
		return json_decref(all), cli_usage(smc_usage);
	f = fopen(argv[json], "re");
	if (!f) {
		json_decref(all);
		cli_error("smc stat: %s: %s", argv[json], strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f)) {
		json_t *o = json_loads(line, 0, &jerr);

		if (json_is_object(o)) {
			json_array_append(all, o);
			stat_add(&t, o);
		}
		json_decref(o);
	}
	fclose(f);
	fb = json_object();
	for (int i = 0; i < t.nreasons; i++)
		json_object_set_new(fb, t.names[i], json_integer(t.reasons[i]));
	out = json_pack("{sIsIsIsIsIsIso}", "smc_connections", (json_int_t)t.conns[1],
			"smc_server_connections", (json_int_t)t.smc_servers, "smc_client_connections",
			(json_int_t)t.smc_clients, "tcp_connections", (json_int_t)t.conns[0],
			"smc_bytes_sent", (json_int_t)t.bytes[1], "tcp_bytes_sent", (json_int_t)t.bytes[0],
			"fallbacks", fb);
	if (json && out)
		json_dumpf(out, stdout, JSON_INDENT(2)), putchar('\n');
	else if (out) {
		printf("shared memory: %lld connections, %lld bytes sent\n", t.conns[1], t.bytes[1]);
		printf("TCP fallback:  %lld connections (of those seen by the library)\n", t.conns[0]);
		for (int i = 0; i < t.nreasons; i++)
			printf("  %-20s %lld\n", t.names[i], t.reasons[i]);
	}
	json_decref(out);
	json_decref(all);
	return 0;
}

int cmd_smc(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return smc_run(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "stat"))
		return smc_stat(argc - 2, argv + 2);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts(smc_usage);
		return 0;
	}
	return cli_usage(smc_usage);
}
