/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: a recorded prefetch list as a registry would hand it over
 * (JSON) -> the runs a lazy mount would fetch, against an image of two
 * blobs. Beyond not crashing, every run must lie inside its blob and be no
 * longer than that blob allows: a run that did not would make the daemon
 * ask for, and mark, ranges that do not exist.
 */
#include <jansson.h>
#include <stdlib.h>

#include "lazy/lazy.h"

#define D0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct prefetch_blob blobs[] = {
		{.digest = D0, .nranges = 100, .max_run = 4},
		{.digest = D1, .nranges = 3, .max_run = 64},
	};
	json_t *list = json_loadb((const char *)data, size, 0, NULL);
	struct prefetch_run *runs;
	size_t n;
	char why[160];
	if (prefetch_list_runs(list, blobs, 2, &runs, &n, why, sizeof(why)) >= 0) {
		for (size_t i = 0; i < n; i++) {
			const struct prefetch_run *r = &runs[i];
			if (r->blob >= 2 || r->first > r->last || r->last >= blobs[r->blob].nranges ||
			    r->last - r->first + 1 > blobs[r->blob].max_run)
				abort();
		}
		free(runs);
	}
	json_decref(list);
	return 0;
}
