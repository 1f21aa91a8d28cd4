/* SPDX-License-Identifier: Apache-2.0 */
/* strmap: insert, find, grow, clear, iterate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/strmap.h"

static void count_cb(const char *key, void *value, void *ctx)
{
	(void)key;
	*(size_t *)ctx += (size_t)(uintptr_t)value;
}

static void insert_find_grow(void **state)
{
	(void)state;
	struct strmap *m = strmap_new();
	assert_non_null(m);
	assert_null(strmap_slot(m, "x", 1, false));
	char key[32];
	for (uintptr_t i = 1; i <= 5000; i++) {
		int n = snprintf(key, sizeof(key), "dir/%lu", (unsigned long)i);
		void **slot = strmap_slot(m, key, (size_t)n, true);
		assert_non_null(slot);
		assert_null(*slot);
		*slot = (void *)i;
	}
	assert_int_equal(strmap_count(m), 5000);
	for (uintptr_t i = 1; i <= 5000; i++) {
		int n = snprintf(key, sizeof(key), "dir/%lu", (unsigned long)i);
		void **slot = strmap_slot(m, key, (size_t)n, false);
		assert_non_null(slot);
		assert_int_equal((uintptr_t)*slot, i);
	}
	/* keys are byte strings: a prefix or an embedded NUL is another key */
	assert_null(strmap_slot(m, "dir/1", 4, false));
	assert_null(strmap_slot(m, "dir/1\0", 6, false));
	size_t sum = 0;
	strmap_foreach(m, count_cb, &sum);
	assert_int_equal(sum, 5000u * 5001u / 2);
	strmap_clear(m, NULL);
	assert_int_equal(strmap_count(m), 0);
	assert_null(strmap_slot(m, "dir/7", 5, false));
	strmap_free(m, NULL);
}

static void values_freed(void **state)
{
	(void)state;
	struct strmap *m = strmap_new();
	for (int i = 0; i < 100; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "%d", i);
		*strmap_slot(m, key, (size_t)n, true) = strdup(key);
	}
	strmap_free(m, free); /* valgrind (t0020) checks nothing leaks */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(insert_find_grow),
		cmocka_unit_test(values_freed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
