/* SPDX-License-Identifier: Apache-2.0 */
/* anole pull [OPTIONS] REF DIR */
#include <string.h>

#include "cli.h"

static const char usage_text[] =
	"anole pull [OPTIONS] REF DIR\n"
	"\n"
	"Fetch the lazy image REF (docker://HOST[:PORT]/REPO[:TAG|@DIGEST] or\n"
	"oci:DIR[:TAG]) and every blob it references into the OCI layout DIR\n"
	"(created when missing; blobs already there are kept). Every byte is\n"
	"verified: the manifest, its config and metadata image as a whole, data\n"
	"blobs range by range against their digest tables. A blob appears in\n"
	"DIR only once verified; the tag last. Then 'anole mount DIR MNT'.\n"
	"\n"
	"  --tls-verify=BOOL  as for build\n"
	"  -q, --quiet        no progress, no summary";

int cmd_pull(int argc, char **argv)
{
	static const struct option longopts[] = {{"tls-verify", required_argument, NULL, 'V'},
						 {"quiet", no_argument, NULL, 'q'},
						 {"help", no_argument, NULL, 'h'},
						 {0}};
	struct anole_pull_options o = {0};
	bool quiet = false;
	int c;
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		if (c == 'q')
			quiet = true;
		else if (c == 'h') {
			puts(usage_text);
			return 0;
		} else if (c == 'V') {
			if (cli_tls_verify(optarg, &o.tls_verify))
				return EXIT_USAGE;
		} else
			return cli_usage(usage_text);
	}
	if (argc - optind != 2)
		return cli_usage(usage_text);
	if (!quiet)
		o.log = cli_progress_line;
	struct anole_pull_stats st;
	struct anole_error err = {0};
	int r = anole_pull(argv[optind], argv[optind + 1], &o, &st, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (!quiet)
		printf("%s: %s; %u blobs fetched (%.1f MiB), %u already there (%.1f MiB)\n",
		       argv[optind + 1], st.manifest_digest, st.blobs_fetched,
		       (double)st.bytes_fetched / 1048576.0, st.blobs_present,
		       (double)st.bytes_present / 1048576.0);
	return 0;
}
