/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decoding an extent's stored bytes (zdecode): plain pclusters shifted and
 * interlaced, compressed ones behind their zero padding, whole and partial
 * (a prefix of what the pcluster holds), for every algorithm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "compress/codec.h"
#include "erofs/zmap.h"

#define BS 4096u

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	/* compressible, but not trivially */
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)("abcdefgh"[(seed >> 16) & 7] + (i % 61 == 0));
	}
}

static void shifted(void **state)
{
	(void)state;
	uint8_t in[BS], out[BS];
	fill(in, sizeof(in), 1);
	struct zdecode_req rq = {.in = in, .inlen = BS, .form = ZFORM_SHIFTED, .blksz = BS};
	assert_int_equal(zdecode(&rq, out, 1000), 0);
	assert_memory_equal(out, in, 1000);
	assert_int_equal(zdecode(&rq, out, BS), 0);
	assert_memory_equal(out, in, BS);
	rq.inlen = 999; /* more file bytes than stored ones */
	assert_int_equal(zdecode(&rq, out, 1000), -EFSCORRUPTED);
}

/* Interlaced: a byte of the extent keeps its offset in the block; what
 * passes the block's end wraps to its start (mkfs.erofs writes one block). */
static void interlaced_one_block(void **state)
{
	(void)state;
	uint8_t file[BS], in[BS], out[BS];
	fill(file, sizeof(file), 2);
	for (uint32_t la = 0; la < BS; la += 1000) {
		uint32_t n = BS - (la ? 7 : 0);
		memset(in, 0, sizeof(in));
		for (uint32_t k = 0; k < n; k++)
			in[(la + k) % BS] = file[k];
		struct zdecode_req rq = {.in = in, .inlen = BS, .form = ZFORM_INTERLACED,
					 .blksz = BS, .out_blkoff = la};
		memset(out, 0xaa, sizeof(out));
		assert_int_equal(zdecode(&rq, out, n), 0);
		assert_memory_equal(out, file, n);
		assert_int_equal(zdecode(&rq, out, 10), 0); /* a prefix */
		assert_memory_equal(out, file, 10);
	}
}

/* The kernel's rule for longer plain pclusters: the bytes up to the first
 * block boundary come from the pcluster's end, the rest from its start. */
static void interlaced_big(void **state)
{
	(void)state;
	enum { N = 3 * 512 };
	uint8_t file[N], in[N], out[N];
	fill(file, sizeof(file), 3);
	uint32_t la = 100, cur = 512 - la;
	for (uint32_t k = 0; k < N; k++)
		in[k < cur ? N - cur + k : k - cur] = file[k];
	struct zdecode_req rq = {.in = in, .inlen = N, .form = ZFORM_INTERLACED, .blksz = 512,
				 .out_blkoff = la};
	assert_int_equal(zdecode(&rq, out, N), 0);
	assert_memory_equal(out, file, N);
	/* an inline tail shorter than the rest of its block cannot rotate */
	rq.inlen = 100;
	assert_int_equal(zdecode(&rq, out, 50), -EFSCORRUPTED);
}

/* A stream of @alg for @n bytes of @file, at the end of a pcluster of
 * whole blocks after zero padding. Returns the pcluster's size. */
static uint32_t stored(enum codec_kind kind, const uint8_t *file, size_t n, uint8_t *pcl,
		       uint32_t cap)
{
	struct codec *c;
	struct codec_spec spec = {.kind = kind, .level = kind == CODEC_LZMA ? 6 : 3};
	static uint8_t tmp[1 << 20];
	assert_int_equal(codec_new(&spec, (uint32_t)n, &c), 0);
	ssize_t z = codec_compress(c, file, n, tmp, sizeof(tmp));
	codec_free(c);
	assert_true(z > 0);
	uint32_t plen = (uint32_t)ROUND_UP((size_t)z, BS);
	assert_true(plen <= cap);
	memset(pcl, 0, plen - (size_t)z);
	memcpy(pcl + plen - z, tmp, (size_t)z);
	return plen;
}

static void every_algorithm(void **state)
{
	(void)state;
	static uint8_t file[300000], pcl[1 << 20], out[300000];
	fill(file, sizeof(file), 4);
	const enum codec_kind kinds[] = {CODEC_LZ4, CODEC_LZMA, CODEC_DEFLATE, CODEC_ZSTD};
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		uint32_t plen = stored(kinds[i], file, sizeof(file), pcl, sizeof(pcl));
		struct zdecode_req rq = {.in = pcl, .inlen = plen, .form = (uint8_t)codec_erofs_alg(kinds[i]),
					 .zero_padding = true, .blksz = BS};
		memset(out, 0, sizeof(out));
		assert_int_equal(zdecode(&rq, out, sizeof(file)), 0);
		assert_memory_equal(out, file, sizeof(file));
		/* a whole decode wants the stream to end with the extent */
		assert_int_equal(zdecode(&rq, out, sizeof(file) - 1000), -EFSCORRUPTED);
		assert_int_equal(zdecode(&rq, out, sizeof(file) + 1), -EFSCORRUPTED);
		/* a partially referenced pcluster: its first bytes only */
		rq.partial = true;
		memset(out, 0, sizeof(out));
		assert_int_equal(zdecode(&rq, out, 70001), 0);
		assert_memory_equal(out, file, 70001);
		assert_int_equal(zdecode(&rq, out, sizeof(file) + 1), -EFSCORRUPTED);
		rq.partial = false;
		/* a stream cut short, or nothing but padding in the first block */
		rq.in = pcl + plen / 2, rq.inlen = plen - plen / 2;
		assert_int_not_equal(zdecode(&rq, out, sizeof(file)), 0);
		memset(pcl, 0, BS);
		rq.in = pcl, rq.inlen = plen;
		assert_int_equal(zdecode(&rq, out, sizeof(file)), -EFSCORRUPTED);
	}
}

/* lz4 in images without ZERO_PADDING: the stream starts the pcluster and
 * other bytes may follow it; the zero padding is only looked for in the
 * first block, as the kernel does. */
static void lz4_layouts(void **state)
{
	(void)state;
	static uint8_t file[20000], pcl[64 * 1024], out[20000];
	fill(file, sizeof(file), 5);
	uint32_t plen = stored(CODEC_LZ4, file, sizeof(file), pcl, sizeof(pcl));
	uint32_t pad = 0;
	while (!pcl[pad])
		pad++;
	static uint8_t legacy[64 * 1024];
	memset(legacy, 0x5a, sizeof(legacy));
	memcpy(legacy, pcl + pad, plen - pad);
	struct zdecode_req rq = {.in = legacy, .inlen = plen, .form = Z_EROFS_COMPRESSION_LZ4,
				 .blksz = BS};
	assert_int_equal(zdecode(&rq, out, sizeof(file)), 0);
	assert_memory_equal(out, file, sizeof(file));
	/* padding running past the first block is not padding */
	static uint8_t longpad[3 * BS + 16384];
	memset(longpad, 0, sizeof(longpad));
	memcpy(longpad + 2 * BS, pcl + pad, plen - pad);
	rq = (struct zdecode_req){.in = longpad, .inlen = (uint32_t)(2 * BS + plen - pad),
				  .form = Z_EROFS_COMPRESSION_LZ4, .zero_padding = true, .blksz = BS};
	assert_int_equal(zdecode(&rq, out, sizeof(file)), -EFSCORRUPTED);
	/* an inline pcluster: the padding ends within its block */
	rq = (struct zdecode_req){.in = pcl, .inlen = plen, .form = Z_EROFS_COMPRESSION_LZ4,
				  .zero_padding = true, .blksz = BS, .in_blkoff = BS - 8};
	if (pad >= 8) /* eight zeros fill the block's rest */
		assert_int_equal(zdecode(&rq, out, sizeof(file)), -EFSCORRUPTED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shifted),
		cmocka_unit_test(interlaced_one_block),
		cmocka_unit_test(interlaced_big),
		cmocka_unit_test(every_algorithm),
		cmocka_unit_test(lz4_layouts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
