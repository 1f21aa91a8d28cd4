/* SPDX-License-Identifier: Apache-2.0 */
/* anole run [OPTIONS] REF [--] [CMD [ARG...]] */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "vm/vm.h"

static const char run_usage[] =
	"anole run [OPTIONS] REF [--] [CMD [ARG...]]\n"
	"anole run --vm [-e KEY=VALUE] [-w DIR] [-u USER[:GROUP]] [-q] REF|IMAGE [--] [CMD [ARG...]]\n"
	"\n"
	"Run a container from a lazy image: mount REF lazily (it starts before\n"
	"its data is here), put a writable overlay on it, and run CMD (default:\n"
	"the image's entrypoint and command) with an OCI runtime. Exits with the\n"
	"command's status; every mount is undone, also on Ctrl-C.\n"
	"\n"
	"  -e, --env KEY=VALUE     set an environment variable (repeatable)\n"
	"  -v, --volume /SRC:/DST[:ro]  bind a host directory (repeatable); :ro\n"
	"                          makes it and every mount below it read-only\n"
	"  -w, --workdir DIR       working directory (default: the image's)\n"
	"  -u, --user USER[:GROUP] run as this user (names from the image's\n"
	"                          /etc/passwd and /etc/group; default: the image's)\n"
	"      --runtime NAME      OCI runtime (default: crun or runc, the first\n"
	"                          that works on this host)\n"
	"      --upper DIR         keep the writable layer in DIR (default: tmpfs)\n"
	"      --net=none|host     none (the default): a network namespace of its\n"
	"                          own, loopback only; host: the host's network\n"
	"                          and /etc/resolv.conf\n"
	"      --prefetch=recorded|all|none  as anole mount (default recorded: the\n"
	"                          list `anole prefetch record` stored, if any)\n"
	"      --no-load-hints     as anole mount (by default the daemon fetches what\n"
	"                          the dynamic loader reads to start the program as\n"
	"                          soon as the image is mounted)\n"
	"      --tls-verify=BOOL   as anole mount (default: verified HTTPS, plain\n"
	"                          HTTP for localhost, 127.0.0.0/8 and [::1])\n"
	"      --smc               shared-memory sockets: the container's TCP\n"
	"                          connections to other --smc containers and `anole\n"
	"                          smc run` programs of this host go through shared\n"
	"                          memory (libanole-smc.so preloaded, the rendezvous\n"
	"                          directory $ANOLE_SMC_DIR or /run/anole/smc bound\n"
	"                          in); to anything else, plain TCP\n"
	"  -q, --quiet             no progress lines\n"
	"      --vm                run CMD in a microVM of QEMU (KVM where /dev/kvm\n"
	"                          opens, else TCG): REF's metadata image and blob\n"
	"                          files (lz4 or uncompressed), or the anole image\n"
	"                          file IMAGE, are the guest's root under a tmpfs\n"
	"                          overlay; REF's config as above; takes -e, -v\n"
	"                          (virtio-fs), -w, -u (numbers only with IMAGE), -q\n"
	"                          and REF's mount options";

static const char prefetch_usage[] =
	"anole prefetch record [RUN OPTIONS] REF [--] [CMD [ARG...]]\n"
	"\n"
	"Run CMD (default: the image's command) as anole run does, but through\n"
	"FUSE, recording which ranges of the image's data it reads, in\n"
	"the order it first reads them. The list is stored with the image, as an\n"
	"artifact tagged sha256-HEX.prefetch whose subject is the image (the\n"
	"image's digest does not change). anole mount and anole run then fetch\n"
	"those ranges first, in that order (unless --prefetch=none).";

static int run_main(int argc, char **argv, bool record);

/* anole run --vm: the options it takes so far; an image file to lib/vm,
 * a lazy REF mounted as anole run mounts it. */
static int run_vm(const struct anole_run_options *o)
{
	if (o->runtime || o->upper || o->net_host || o->record || o->smc_lib) {
		cli_error("--vm takes -e, -v, -w, -u, -q, --prefetch, --no-load-hints and "
			  "--tls-verify only so far");
		return EXIT_USAGE;
	}
	struct stat st;
	struct anole_error err = {0};
	int status = 0;
	if (stat(o->ref, &st) < 0 || !S_ISREG(st.st_mode)) {
		struct anole_run_options lazy = *o;
		lazy.vm = true;
		int r = anole_run(&lazy, &status, &err);
		return r < 0 ? cli_fail(&err, r) : status;
	}
	if (o->prefetch || o->no_load_hints) {
		cli_error("%s: --prefetch and --no-load-hints are for a lazy REF", o->ref);
		return EXIT_USAGE;
	}
	struct vm_options v = {.image = o->ref, .argv = o->argv, .argc = o->argc,
			       .env = o->env, .nenv = o->nenv, .workdir = o->workdir,
			       .user = o->user, .volumes = o->volumes, .nvolumes = o->nvolumes,
			       .log = o->log, .log_ctx = o->log_ctx};
	int r = vm_run(&v, &status, &err);
	return r < 0 ? cli_fail(&err, r) : status;
}

int cmd_prefetch(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "record"))
		return run_main(argc - 1, argv + 1, true);
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		puts(prefetch_usage);
		return 0;
	}
	return cli_usage(prefetch_usage);
}

/* The recorded list, stored with the image; one line about it. */
static int store_trace(const struct anole_run_options *o, char *trace)
{
	json_error_t je;
	json_t *t = json_loads(trace ? trace : "", 0, &je);
	size_t n = json_array_size(json_object_get(t, "ranges"));
	double mib = (double)json_integer_value(json_object_get(t, "bytes")) / 1048576.0;
	json_decref(t);
	if (!t) {
		cli_error("%s: the daemon returned no recording", o->ref);
		return 1;
	}
	if (!n) {
		/* an empty list would replace a good one */
		cli_error("%s: the command read no data of the image: nothing recorded", o->ref);
		return 1;
	}
	struct anole_error err = {0};
	char tag[128];
	int r = anole_prefetch_store(o->ref, trace, o->tls_verify, tag, sizeof(tag), &err);
	if (r < 0)
		return cli_fail(&err, r);
	fprintf(stderr, "anole: recorded %zu ranges (%.1f MiB) in read order; stored with the image "
			"as tag %s\n",
		n, mib, tag);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	return run_main(argc, argv, false);
}

static int run_main(int argc, char **argv, bool record)
{
	static const struct option longopts[] = {{"env", required_argument, NULL, 'e'},
						 {"volume", required_argument, NULL, 'v'},
						 {"workdir", required_argument, NULL, 'w'},
						 {"user", required_argument, NULL, 'u'},
						 {"runtime", required_argument, NULL, 'R'},
						 {"upper", required_argument, NULL, 'U'},
						 {"net", required_argument, NULL, 'n'},
						 {"tls-verify", required_argument, NULL, 'V'},
						 {"prefetch", required_argument, NULL, 'p'},
						 {"no-load-hints", no_argument, NULL, 'H'},
						 {"quiet", no_argument, NULL, 'q'},
						 {"help", no_argument, NULL, 'h'},
						 {"vm", no_argument, NULL, 'M'},
						 {"smc", no_argument, NULL, 'S'},
						 {0}};
	struct anole_run_options o = {.log = cli_progress_line, .record = record};
	char *trace = NULL;
	o.trace = &trace;
	const char **env = calloc((size_t)argc, sizeof(*env));
	const char **vols = calloc((size_t)argc, sizeof(*vols));
	if (!env || !vols) {
		free(env);
		free(vols);
		cli_error("out of memory");
		return 1;
	}
	int c, rc = -1;
	bool vm = false;
	char smc_lib[PATH_MAX];
	/* "+": options end at REF; what follows is the command's */
	while (rc < 0 && (c = getopt_long(argc, argv, "+e:v:w:u:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'e':
			if (!strchr(optarg, '=')) {
				cli_error("--env %s: expected KEY=VALUE", optarg);
				rc = EXIT_USAGE;
			}
			env[o.nenv++] = optarg;
			break;
		case 'v':
			vols[o.nvolumes++] = optarg;
			break;
		case 'w':
			o.workdir = optarg;
			break;
		case 'u':
			o.user = optarg;
			break;
		case 'R':
			o.runtime = optarg;
			break;
		case 'U':
			o.upper = optarg;
			break;
		case 'n':
			if (strcmp(optarg, "host") && strcmp(optarg, "none")) {
				cli_error("--net=%s: choose host or none", optarg);
				rc = EXIT_USAGE;
			}
			o.net_none = !strcmp(optarg, "none");
			o.net_host = !strcmp(optarg, "host");
			break;
		case 'p':
			if (strcmp(optarg, "recorded") && strcmp(optarg, "all") &&
			    strcmp(optarg, "none")) {
				cli_error("--prefetch=%s: choose none, recorded or all", optarg);
				rc = EXIT_USAGE;
			}
			o.prefetch = optarg;
			break;
		case 'H':
			o.no_load_hints = true;
			break;
		case 'S':
			if (cli_smc_lib(smc_lib, sizeof(smc_lib)) < 0) {
				cli_error("--smc: the library path is too long");
				rc = 1;
			} else if (access(smc_lib, R_OK) < 0) {
				cli_error("--smc: %s: %s", smc_lib, strerror(errno));
				rc = 1;
			}
			o.smc_lib = smc_lib;
			o.smc_dir = cli_smc_dir();
			break;
		case 'V':
			if (cli_tls_verify(optarg, &o.tls_verify))
				rc = EXIT_USAGE;
			break;
		case 'q':
			o.log = NULL;
			break;
		case 'M':
			vm = !record;
			if (record) {
				cli_error("--vm: prefetch record runs with an OCI runtime only");
				rc = EXIT_USAGE;
			}
			break;
		case 'h':
			puts(record ? prefetch_usage : run_usage);
			rc = 0;
			break;
		default:
			rc = cli_usage(record ? prefetch_usage : run_usage);
		}
	}
	if (rc < 0 && optind >= argc)
		rc = cli_usage(record ? prefetch_usage : run_usage);
	if (rc < 0) {
		o.ref = argv[optind++];
		if (optind < argc && !strcmp(argv[optind], "--"))
			optind++;
		o.argv = (const char *const *)argv + optind;
		o.argc = (size_t)(argc - optind);
		o.env = env;
		o.volumes = vols;
		struct anole_error err = {0};
		int status = 0;
		int r = vm ? 0 : anole_run(&o, &status, &err);
		rc = vm ? run_vm(&o) : r < 0 ? cli_fail(&err, r) : status;
		if (r >= 0 && record && status == 127) {
			cli_error("%s: the command did not start (exit 127): nothing recorded",
				  o.ref);
			rc = 1;
		} else if (r >= 0 && record) {
			if (status)
				fprintf(stderr, "anole: notice: the command exited %d; its reads are "
						"recorded all the same\n",
					status);
			int s = store_trace(&o, trace);
			rc = s ? s : rc;
		}
	}
	free(trace);
	free(env);
	free(vols);
	return rc;
}
