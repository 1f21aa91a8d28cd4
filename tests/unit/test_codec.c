/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The codec table (lib/compress/codec.c): every kind has a name -z takes,
 * an EROFS algorithm, a COMPR_CFGS record, and compresses (and fills, where
 * it can) what it then decodes; unknown kinds and algorithms are errors.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "anole/erofs_fs.h"
#include "compress/codec.h"

/* every codec, in the table's order */
static const char *const names[] = {"lz4", "lz4hc", "deflate", "lzma", "zstd"};

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	/* compressible, but not trivially */
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)("abcdefgh"[(seed >> 16) & 7] + (i % 61 == 0));
	}
}

static void every_kind_named(void **state)
{
	(void)state;
	struct anole_error err = {0};
	struct codec_spec spec;
	bool seen[CODEC_KINDS] = {0};
	assert_int_equal(ARRAY_SIZE(names) + 1, CODEC_KINDS);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		assert_int_equal(codec_parse(names[i], &spec, &err), 0);
		assert_true(spec.kind > CODEC_NONE && spec.kind < CODEC_KINDS);
		assert_false(seen[spec.kind]);
		seen[spec.kind] = true;
		unsigned int alg = codec_erofs_alg(spec.kind);
		assert_true(alg < Z_EROFS_COMPRESSION_MAX);
		/* lz4hc writes lz4 streams */
		assert_string_equal(codec_alg_name(alg), strcmp(names[i], "lz4hc") ? names[i] : "lz4");
	}
	assert_int_equal(codec_parse("none", &spec, &err), 0);
	assert_int_equal(spec.kind, CODEC_NONE);
	assert_int_equal(codec_erofs_alg(CODEC_KINDS), Z_EROFS_COMPRESSION_MAX);
	assert_string_equal(codec_alg_name(Z_EROFS_COMPRESSION_MAX), "unknown");
	struct codec *c;
	spec = (struct codec_spec){.kind = CODEC_NONE};
	assert_int_equal(codec_new(&spec, 4096, &c), -EINVAL);
	spec.kind = CODEC_KINDS;
	assert_int_equal(codec_new(&spec, 4096, &c), -EINVAL);
}

static void parse_errors(void **state)
{
	(void)state;
	struct anole_error err = {0};
	struct codec_spec spec;
	assert_int_equal(codec_parse("foo:3", &spec, &err), -EINVAL);
	assert_string_equal(err.msg, "unknown compression 'foo': choose lz4, lz4hc[:1-12], "
				     "deflate[:1-12], lzma[:0-9], zstd[:1-22] or none");
	err = (struct anole_error){0};
	assert_int_equal(codec_parse("lz4:1", &spec, &err), -EINVAL);
	assert_string_equal(err.msg, "compression 'lz4' takes no level");
	err = (struct anole_error){0};
	assert_int_equal(codec_parse("zstd:23", &spec, &err), -EINVAL);
	assert_string_equal(err.msg, "compression level '23' for zstd: choose 1..22 (default 9)");
	assert_int_equal(codec_parse("lzma:0", &spec, &err), 0);
	assert_int_equal(spec.level, 0);
	assert_int_equal(codec_parse("deflate", &spec, &err), 0);
	assert_int_equal(spec.level, 9);
}

/* compress, fill where it can, decode whole and partial; a COMPR_CFGS record */
static void round_trip(void **state)
{
	(void)state;
	static uint8_t in[65536], out[65536 + 4096], back[65536];
	fill(in, sizeof(in), 3);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct anole_error err = {0};
		struct codec_spec spec;
		struct codec *c;
		assert_int_equal(codec_parse(names[i], &spec, &err), 0);
		uint32_t window = codec_window(&spec, 16384, true);
		assert_int_equal(codec_new(&spec, window, &c), 0);
		unsigned int alg = codec_erofs_alg(spec.kind);
		ssize_t n = codec_compress(c, in, sizeof(in), out, sizeof(out));
		assert_true(n > 0 && (size_t)n < sizeof(in));
		assert_int_equal(codec_decompress(alg, out, (size_t)n, back, sizeof(in), 0, window), 0);
		assert_memory_equal(back, in, sizeof(in));
		assert_int_equal(codec_decompress(alg, out, (size_t)n, back, 1000, CODEC_PARTIAL, window), 0);
		assert_int_equal(codec_decompress(alg, out, (size_t)n, back, 1000, 0, window), -EFSCORRUPTED);
		size_t take = sizeof(in);
		n = codec_fill(c, in, &take, out, 4096);
		if (codec_can_fill(&spec)) {
			assert_true(n > 0 && n <= 4096 && take > 4096 && take <= sizeof(in));
			assert_int_equal(codec_decompress(alg, out, (size_t)n, back, take, 0, window), 0);
			assert_memory_equal(back, in, take);
		} else {
			assert_int_equal(n, -EINVAL);
		}
		assert_int_equal(codec_worth(c, in, sizeof(in), out), 1);
		uint8_t rec[64];
		size_t len = codec_cfgs(&spec, window, 4, rec);
		uint16_t size;
		memcpy(&size, rec, 2);
		assert_true(len > 2 && len == 2u + size);
		codec_free(c);
	}
	uint8_t junk[16] = {1};
	assert_int_equal(codec_decompress(Z_EROFS_COMPRESSION_MAX, junk, sizeof(junk), back, 16, 0, 0),
			 -EFSCORRUPTED);
}

/* A decoder may keep state between calls on a thread (zstd keeps its
 * context): a cut frame, a corrupt one and a partial decode leave nothing
 * behind for the next stream, on the main thread and on one that then
 * exits (its state freed: valgrind, t0020). Returns the line of the first
 * check that failed, 0 if none: cmocka's asserts only work on the test's
 * own thread. */
#define CHECK(cond)                                                                           \
	do {                                                                                  \
		if (!(cond))                                                                  \
			return __LINE__;                                                      \
	} while (0)

static intptr_t decode_checks(uint8_t *in, uint8_t *out, uint8_t *back)
{
	enum { N = 65536, CAP = N + 4096 };
	fill(in, N, 7);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct anole_error err = {0};
		struct codec_spec spec;
		struct codec *c;
		CHECK(codec_parse(names[i], &spec, &err) == 0);
		uint32_t window = codec_window(&spec, 16384, false);
		CHECK(codec_new(&spec, window, &c) == 0);
		unsigned int alg = codec_erofs_alg(spec.kind);
		ssize_t n = codec_compress(c, in, N, out, CAP);
		codec_free(c);
		CHECK(n > 16);
		CHECK(codec_decompress(alg, out, (size_t)n / 2, back, N, 0, window) == -EFSCORRUPTED);
		out[n / 2] ^= 0x55; /* may still decode (an lz4 literal): what is left matters */
		(void)codec_decompress(alg, out, (size_t)n, back, N, 0, window);
		out[n / 2] ^= 0x55;
		CHECK(codec_decompress(alg, out, (size_t)n, back, 100, CODEC_PARTIAL, window) == 0);
		memset(back, 0, N);
		CHECK(codec_decompress(alg, out, (size_t)n, back, N, 0, window) == 0);
		CHECK(memcmp(back, in, N) == 0);
	}
	return 0;
}

static void *decode_thread(void *arg)
{
	uint8_t *b = arg;
	return (void *)decode_checks(b, b + 65536, b + 131072 + 4096);
}

static void state_between_calls(void **state)
{
	(void)state;
	static uint8_t main_bufs[3 * 65536 + 4096], thread_bufs[3 * 65536 + 4096];
	assert_int_equal(decode_thread(main_bufs), NULL);
	pthread_t t;
	void *failed_at = (void *)1;
	assert_int_equal(pthread_create(&t, NULL, decode_thread, thread_bufs), 0);
	assert_int_equal(pthread_join(t, &failed_at), 0);
	assert_int_equal((intptr_t)failed_at, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_kind_named),
		cmocka_unit_test(parse_errors),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(state_between_calls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
