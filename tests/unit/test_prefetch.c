/* SPDX-License-Identifier: Apache-2.0 */
/* Recorded prefetch lists -> the runs a lazy mount fetches, in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lazy/lazy.h"

#define D0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

static const struct prefetch_blob blobs[] = {
	{.digest = D0, .nranges = 100, .max_run = 4},
	{.digest = D1, .nranges = 3, .max_run = 64},
};

static int runs_of(const char *text, struct prefetch_run **runs, size_t *n)
{
	json_t *list = json_loads(text, 0, NULL);
	char why[160];
	int r = prefetch_list_runs(list, blobs, 2, runs, n, why, sizeof(why));
	json_decref(list);
	return r;
}

static void joins_neighbours_in_order(void **state)
{
	(void)state;
	struct prefetch_run *r;
	size_t n;
	/* the list names blob 1 first: indexes are the list's, not the image's */
	assert_int_equal(runs_of("{\"blobs\":[\"" D1 "\",\"" D0 "\"],\"ranges\":"
				 "[[1,0],[1,1],[1,2],[1,3],[1,4],[0,2],[1,5],[0,0],[0,1]]}",
				 &r, &n),
			 0);
	assert_int_equal(n, 5);
	const struct prefetch_run want[] = {
		{0, 0, 3}, {0, 4, 4}, {1, 2, 2}, {0, 5, 5}, {1, 0, 1},
	};
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(r[i].blob, want[i].blob);
		assert_int_equal(r[i].first, want[i].first);
		assert_int_equal(r[i].last, want[i].last);
	}
	free(r);
}

static void skips_what_the_image_lacks(void **state)
{
	(void)state;
	struct prefetch_run *r;
	size_t n;
	assert_int_equal(runs_of("{\"blobs\":[\"" D0 "\",\"sha256:ab\"],\"ranges\":[[1,0],[0,100],"
				 "[0,-1],[2,0],[\"0\",1],[0],[0,1,2],{},[0,99]]}",
				 &r, &n),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].blob, 0);
	assert_int_equal(r[0].first, 99);
	assert_int_equal(r[0].last, 99);
	free(r);
}

static void refuses_lists_that_cannot_be(void **state)
{
	(void)state;
	struct prefetch_run *r;
	size_t n;
	assert_int_equal(runs_of("[]", &r, &n), -EBADMSG);
	assert_int_equal(runs_of("{\"blobs\":[]}", &r, &n), -EBADMSG);
	/* more ranges than the image's 103 */
	char big[2048] = "{\"blobs\":[\"" D0 "\"],\"ranges\":[";
	for (int i = 0; i < 104; i++)
		strcat(big, i ? ",[0,0]" : "[0,0]");
	strcat(big, "]}");
	assert_int_equal(runs_of(big, &r, &n), -EBADMSG);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(joins_neighbours_in_order),
		cmocka_unit_test(skips_what_the_image_lacks),
		cmocka_unit_test(refuses_lists_that_cannot_be),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
