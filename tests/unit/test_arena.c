/* SPDX-License-Identifier: Apache-2.0 */
/* arena: zeroed, aligned, non-overlapping records, big ones too; a walk
 * over fixed-size records visits each once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/arena.h"

/* Many records of varied sizes: each zeroed and 8-byte aligned; each is
 * filled with its own byte, and all are checked afterwards, so that any
 * overlap (within or across chunks) shows. */
static void records_do_not_overlap(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct arena a = {0};
	unsigned char **p = calloc(N, sizeof(*p));
	size_t *len = calloc(N, sizeof(*len));
	assert_non_null(p);
	assert_non_null(len);
	for (size_t i = 0; i < N; i++) {
		/* mostly small, now and then bigger than a quarter chunk */
		len[i] = i % 997 == 0 ? 300000 + i : 1 + (i * 7919) % 200;
		p[i] = arena_alloc(&a, len[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % 8, 0);
		for (size_t k = 0; k < len[i]; k++)
			assert_int_equal(p[i][k], 0);
		memset(p[i], (int)(i % 251) + 1, len[i]);
	}
	for (size_t i = 0; i < N; i++)
		for (size_t k = 0; k < len[i]; k++)
			assert_int_equal(p[i][k], (int)(i % 251) + 1);
	arena_release(&a);
	arena_release(&a); /* twice is harmless */
	assert_null(a.chunks);
	assert_non_null(arena_alloc(&a, 1)); /* usable again */
	arena_release(&a);
	free(p);
	free(len);
}

static size_t visits;

/* Each record holds its index + 1 in its first word: count it, and mark it
 * seen by negating it, so that a second visit fails. */
static void visit(void *rec)
{
	long *v = rec;
	assert_true(*v > 0);
	*v = -*v;
	visits++;
}

/* Enough 120-byte records (the size of an inode) to fill several chunks,
 * and the last chunk partly: every one is visited exactly once. */
static void foreach_visits_each_record_once(void **state)
{
	(void)state;
	enum { N = 30000, SIZE = 120 };
	struct arena a = {0};
	long **p = calloc(N, sizeof(*p));
	assert_non_null(p);
	arena_foreach(&a, SIZE, visit); /* empty: nothing */
	assert_int_equal(visits, 0);
	for (size_t i = 0; i < N; i++) {
		p[i] = arena_alloc(&a, SIZE);
		assert_non_null(p[i]);
		*p[i] = (long)i + 1;
	}
	arena_foreach(&a, SIZE, visit);
	assert_int_equal(visits, N);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(*p[i], -((long)i + 1));
	arena_release(&a);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(records_do_not_overlap),
		cmocka_unit_test(foreach_visits_each_record_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
