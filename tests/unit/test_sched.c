/* SPDX-License-Identifier: Apache-2.0 */
/* The fetch scheduler's decisions (lib/serve/sched.c), on blobs made in
 * memory: no daemon, no network, no clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/sched.h"

#define K64 (64u << 10)

/* A partial blob of @size bytes in 64 KiB ranges, all absent. */
static struct blob *blob_new(uint64_t size)
{
	struct blob *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	b->size = size;
	assert_int_equal(digest_table_init(&b->table, size, 16), 0);
	b->nranges = b->table.head.count;
	b->state = calloc(b->nranges, 1);
	assert_non_null(b->state);
	return b;
}

static void blob_done(struct blob *b)
{
	digest_table_release(&b->table);
	free(b->state);
	free(b->failed_until);
	free(b);
}

static void requests_are_capped_by_bytes_and_ranges(void **state)
{
	(void)state;
	struct blob *b = blob_new(100ull << 20); /* 1600 ranges */
	/* a reader waits for all of a request: 1 MiB; prefetch 4 MiB */
	assert_int_equal(sched_run(b, SCHED_DEMAND, 0, b->nranges - 1), 16);
	assert_int_equal(sched_run(b, SCHED_LISTED, 0, b->nranges - 1), 64);
	assert_int_equal(sched_run(b, SCHED_BACKGROUND, 10, b->nranges - 1), 64);
	/* stops at the end asked for, and at a range not absent */
	assert_int_equal(sched_run(b, SCHED_LISTED, 0, 4), 5);
	b->state[7] = RANGE_FETCHING;
	assert_int_equal(sched_run(b, SCHED_LISTED, 0, 100), 7);
	b->state[7] = RANGE_PRESENT;
	assert_int_equal(sched_run(b, SCHED_DEMAND, 5, 100), 2);
	/* and at the blob's end */
	assert_int_equal(sched_run(b, SCHED_DEMAND, b->nranges - 3, ~0ull), 3);
	blob_done(b);
}

static void big_ranges_go_at_least_four_at_once(void **state)
{
	(void)state;
	struct blob *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	b->size = 10ull << 20; /* no table: complete-style 1 MiB ranges */
	b->nranges = 10;
	b->state = calloc(10, 1);
	assert_non_null(b->state);
	assert_int_equal(sched_run(b, SCHED_DEMAND, 0, 9), COALESCE_MIN);
	assert_int_equal(sched_run(b, SCHED_LISTED, 2, 9), 4);
	assert_false(sched_coalesce(b, SCHED_LISTED, 0, 4));
	assert_true(sched_coalesce(b, SCHED_DEMAND, 0, 3));
	blob_done(b);
}

static void a_read_fetches_its_extents_whole(void **state)
{
	(void)state;
	struct blob *b = blob_new(1u << 20);
	uint64_t ext[2][2] = {{100u << 10, 300u << 10}, {600u << 10, 610u << 10}};
	b->extents = ext;
	b->nextents = 2;
	struct read_span s = sched_read_span(b, 200u << 10, 1);
	assert_int_equal(s.first, 3);
	assert_int_equal(s.last, 3);
	assert_int_equal(s.sfirst, 1);
	assert_int_equal(s.slast, 4);
	/* outside any extent: its own ranges alone; length capped at the end */
	s = sched_read_span(b, 400u << 10, 1u << 30);
	assert_int_equal(s.first, 6);
	assert_int_equal(s.last, 15);
	assert_int_equal(s.sfirst, 6);
	assert_int_equal(s.slast, 15);
	/* reaching into the second extent from before it */
	s = sched_read_span(b, 590u << 10, 20u << 10);
	assert_int_equal(s.first, 9);
	assert_int_equal(s.last, 9);
	assert_int_equal(s.slast, 9);
	b->extents = NULL;
	blob_done(b);
}

static void readahead_opens_and_doubles_windows(void **state)
{
	(void)state;
	struct blob *b = blob_new(64ull << 20); /* 1024 ranges */
	uint64_t from = 0, to = 0;
	/* a miss with nothing before it: no read-ahead */
	assert_false(sched_readahead(b, 5, 5, &from, &to));
	/* a miss right after data: a first window of 128 KiB */
	b->state[0] = RANGE_PRESENT;
	assert_true(sched_readahead(b, 1, 1, &from, &to));
	assert_int_equal(from, 2);
	assert_int_equal(to, 3);
	assert_int_equal(b->ra_size, READAHEAD_BYTES);
	/* a read into its second half opens the next, twice as big */
	uint64_t size = READAHEAD_BYTES;
	for (int i = 0; i < 8; i++) {
		uint64_t mark = b->ra_mark, end = b->ra_end;
		/* (before the mark: nothing new) */
		assert_false(sched_readahead(b, mark - 1, mark - 1, &from, &to));
		assert_true(sched_readahead(b, mark, mark, &from, &to));
		size = size * 2 > READAHEAD_MAX ? READAHEAD_MAX : size * 2;
		assert_int_equal(b->ra_size, size);
		assert_int_equal(from, end + 1);
		assert_int_equal(to - from + 1, size / K64);
	}
	assert_int_equal(b->ra_size, READAHEAD_MAX);
	/* a window past the end closes read-ahead */
	b->ra_end = b->nranges - 1;
	b->ra_mark = b->nranges - 2;
	assert_false(sched_readahead(b, b->nranges - 1, b->nranges - 1, &from, &to));
	assert_int_equal(b->ra_size, 0);
	blob_done(b);
}

static void readahead_skips_what_is_there(void **state)
{
	(void)state;
	struct blob *b = blob_new(1u << 20);
	uint64_t from = 0, to = 0;
	memset(b->state, RANGE_PRESENT, 4);
	/* a read of ranges present, after data: not a miss */
	assert_false(sched_readahead(b, 2, 3, &from, &to));
	assert_int_equal(b->ra_size, 0);
	blob_done(b);
}

static void threads_take_readers_first(void **state)
{
	(void)state;
	struct job d = {0}, l1 = {0}, l2 = {0}, l3 = {0}, bg = {0};
	l1.next = &l2;
	l2.next = &l3;
	struct job_queues q = {.demand = &d, .listed = &l1, .background = &bg};
	assert_ptr_equal(sched_take(&q, false), &d);
	assert_ptr_equal(sched_take(&q, false), &l1);
	assert_true(l1.listed);
	assert_ptr_equal(sched_take(&q, true), &l2);
	/* two listed jobs run: the third waits, the background thread
	 * takes its own queue */
	assert_int_equal(q.listed_running, LISTED_PARALLEL);
	assert_null(sched_take(&q, false));
	assert_ptr_equal(sched_take(&q, true), &bg);
	assert_false(bg.listed);
	assert_null(sched_take(&q, true));
	q.listed_running--;
	assert_ptr_equal(sched_take(&q, false), &l3);
	assert_null(q.listed);
}

static void finished_jobs_answer_their_readers(void **state)
{
	(void)state;
	struct blob *b = blob_new(1u << 20), *other = blob_new(1u << 20);
	struct job j = {.b = b, .first = 2, .count = 3};
	/* failed: readers of its ranges fail, others wait on */
	assert_int_equal(sched_waiter_outcome(b, 4, 6, b, &j, false), -1);
	assert_int_equal(sched_waiter_outcome(b, 0, 1, b, &j, false), 0);
	assert_int_equal(sched_waiter_outcome(b, 5, 5, b, &j, false), 0);
	assert_int_equal(sched_waiter_outcome(other, 2, 2, b, &j, false), 0);
	/* done: readers whose ranges are all present now are answered */
	memset(b->state + 2, RANGE_PRESENT, 3);
	assert_int_equal(sched_waiter_outcome(b, 2, 4, b, &j, true), 1);
	assert_int_equal(sched_waiter_outcome(b, 2, 5, b, &j, true), 0);
	b->state[0] = RANGE_PRESENT;
	assert_int_equal(sched_waiter_outcome(b, 0, 0, b, &j, true), 1);
	blob_done(b);
	blob_done(other);
}

static void timed_out_ranges_fail_for_a_while(void **state)
{
	(void)state;
	struct blob *b = blob_new(1u << 20);
	assert_false(sched_timed_out(b, 0, 15, 100.0));
	b->failed_until = calloc(b->nranges, sizeof(double));
	assert_non_null(b->failed_until);
	b->failed_until[3] = 103.0;
	assert_true(sched_timed_out(b, 0, 15, 100.0));
	assert_false(sched_timed_out(b, 4, 15, 100.0));
	assert_false(sched_timed_out(b, 0, 15, 103.0));
	b->state[3] = RANGE_PRESENT; /* since fetched */
	assert_false(sched_timed_out(b, 0, 15, 100.0));
	blob_done(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(requests_are_capped_by_bytes_and_ranges),
		cmocka_unit_test(big_ranges_go_at_least_four_at_once),
		cmocka_unit_test(a_read_fetches_its_extents_whole),
		cmocka_unit_test(readahead_opens_and_doubles_windows),
		cmocka_unit_test(readahead_skips_what_is_there),
		cmocka_unit_test(threads_take_readers_first),
		cmocka_unit_test(finished_jobs_answer_their_readers),
		cmocka_unit_test(timed_out_ranges_fail_for_a_while),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
