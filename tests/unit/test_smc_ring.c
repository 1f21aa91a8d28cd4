/* SPDX-License-Identifier: Apache-2.0 */
/* The shared-memory socket ring (lib/smc/ring.c): wrap-around, iovecs,
 * peek, full and empty, cursors a peer corrupted, and one producer and
 * one consumer thread moving data through a small ring byte for byte. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smc/ring.h"

struct fixture {
	struct smc_ring_hdr hdr;
	uint8_t data[4096];
	struct smc_ring r;
};

static struct fixture *fx_new(void)
{
	struct fixture *f = aligned_alloc(SMC_CACHELINE, sizeof(*f));

	assert_non_null(f);
	memset(f, 0, sizeof(*f));
	smc_ring_init(&f->r, &f->hdr, f->data, sizeof(f->data));
	return f;
}

static ssize_t put(struct smc_ring *r, const void *buf, size_t n)
{
	struct iovec v = {(void *)buf, n};

	return smc_ring_write(r, &v, 1);
}

static ssize_t get(struct smc_ring *r, void *buf, size_t n, bool peek)
{
	struct iovec v = {buf, n};

	return smc_ring_read(r, &v, 1, peek);
}

static void test_wrap_and_iov(void **state)
{
	struct fixture *f = fx_new();
	uint8_t in[3000], out[3000], a[1000], b[2000];

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 3);
	/* three rounds: the second and third cross the ring's end */
	for (int round = 0; round < 3; round++) {
		assert_int_equal(put(&f->r, in, sizeof(in)), sizeof(in));
		assert_int_equal(smc_ring_used(&f->r), sizeof(in));
		struct iovec v[2] = {{a, sizeof(a)}, {b, sizeof(b)}};

		assert_int_equal(smc_ring_read(&f->r, v, 2, false), sizeof(in));
		memcpy(out, a, sizeof(a));
		memcpy(out + sizeof(a), b, sizeof(b));
		assert_memory_equal(in, out, sizeof(in));
	}
	assert_int_equal(smc_ring_used(&f->r), 0);
	free(f);
}

static void test_full_empty_peek(void **state)
{
	struct fixture *f = fx_new();
	static uint8_t big[8192], out[8192];

	(void)state;
	memset(big, 0xa5, sizeof(big));
	assert_int_equal(get(&f->r, out, 10, false), 0);
	assert_int_equal(put(&f->r, big, sizeof(big)), 4096); /* only the space */
	assert_int_equal(put(&f->r, big, 1), 0);               /* full */
	assert_int_equal(smc_ring_space(&f->r), 0);
	assert_int_equal(get(&f->r, out, 100, true), 100); /* peek leaves them */
	assert_int_equal(smc_ring_used(&f->r), 4096);
	assert_int_equal(get(&f->r, out, sizeof(out), false), 4096);
	assert_memory_equal(out, big, 4096);
	assert_int_equal(smc_ring_space(&f->r), 4096);
	free(f);
}

static void test_corrupt_cursors(void **state)
{
	struct fixture *f = fx_new();
	uint8_t b[16] = {0};

	(void)state;
	/* a peer claims more bytes than the ring holds: refused, no copy */
	atomic_store(&f->hdr.prod, 5000);
	assert_int_equal(smc_ring_used(&f->r), -EPROTO);
	assert_int_equal(get(&f->r, b, sizeof(b), false), -EPROTO);
	assert_int_equal(put(&f->r, b, sizeof(b)), -EPROTO);
	/* consumer ahead of producer: the same */
	atomic_store(&f->hdr.prod, 10);
	atomic_store(&f->hdr.cons, 20);
	assert_int_equal(smc_ring_space(&f->r), -EPROTO);
	/* the size in shared memory is not trusted: ours is used */
	atomic_store(&f->hdr.cons, 10);
	f->hdr.size = 1u << 30;
	assert_int_equal(smc_ring_space(&f->r), 4096);
	free(f);
}

#define STRESS_BYTES (32u << 20)

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

static void *producer(void *arg)
{
	struct smc_ring *r = arg;
	uint8_t buf[1500];
	uint64_t sent = 0, rnd = 1;

	while (sent < STRESS_BYTES) {
		size_t n = 1 + (size_t)((rnd = rnd * 6364136223846793005u + 1) >> 33) % sizeof(buf);
		ssize_t k;

		if (n > STRESS_BYTES - sent)
			n = STRESS_BYTES - sent;
		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(sent + i);
		for (size_t done = 0; done < n; done += (size_t)k) {
			struct iovec v = {buf + done, n - done};

			k = smc_ring_write(r, &v, 1);
			if (k < 0)
				return NULL;
			/* Ring full: let the consumer run.  A bare spin starves
			 * it under valgrind, which runs one thread at a time. */
			if (k == 0)
				sched_yield();
		}
		sent += n;
	}
	return r;
}

static void test_two_threads(void **state)
{
	struct fixture *f = fx_new();
	pthread_t t;
	uint8_t buf[2000];
	uint64_t got = 0, bad = 0, rnd = 7;
	void *ok;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, producer, &f->r), 0);
	while (got < STRESS_BYTES) {
		size_t n = 1 + (size_t)((rnd = rnd * 6364136223846793005u + 1) >> 33) % sizeof(buf);
		ssize_t k = get(&f->r, buf, n, false);

		assert_true(k >= 0);
		if (k == 0)
			sched_yield();
		for (ssize_t i = 0; i < k; i++)
			bad += buf[i] != pattern(got + (uint64_t)i);
		got += (uint64_t)k;
	}
	assert_int_equal(pthread_join(t, &ok), 0);
	assert_non_null(ok);
	assert_int_equal(bad, 0);
	assert_int_equal(smc_ring_used(&f->r), 0);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrap_and_iov),
		cmocka_unit_test(test_full_empty_peek),
		cmocka_unit_test(test_corrupt_cursors),
		cmocka_unit_test(test_two_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
