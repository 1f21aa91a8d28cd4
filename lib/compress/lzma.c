/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MicroLZMA over liblzma, EROFS's algorithm 1: the framing the kernel
 * expects, which stops where its output is full and says how much input
 * that took, so a stream can fill a pcluster (codec_fill).
 */
#include <lzma.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "anole/erofs_fs.h"
#include "compress/codec_ops.h"
#include "util/tls.h"

struct lzma_state {
	lzma_stream s;
	lzma_options_lzma opts;
	ZSTD_CCtx *probe; /* zstd level 1, for lzma_worth() */
};

/* as mkfs.erofs makes them: min(8 MiB, 4 x @pcluster) */
static uint32_t lzma_fill_window(uint32_t pcluster)
{
	return (uint32_t)MIN((uint64_t)pcluster * 4, (uint64_t)Z_EROFS_LZMA_MAX_DICT_SIZE);
}

static int lzma_init(struct codec *c, uint32_t window)
{
	struct lzma_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->s = (lzma_stream)LZMA_STREAM_INIT;
	c->state = st;
	if (lzma_lzma_preset(&st->opts, (uint32_t)c->level))
		return -ENOMEM;
	st->opts.dict_size = MAX(window, 4096u);
	return 0;
}

static void lzma_fini(struct codec *c)
{
	struct lzma_state *st = c->state;
	if (!st)
		return;
	ZSTD_freeCCtx(st->probe);
	lzma_end(&st->s);
	free(st);
}

/* One MicroLZMA stream of as much of @in as fits in @cap bytes; *inlen
 * becomes the input it took. */
static ssize_t lzma_fill(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap)
{
	struct lzma_state *st = c->state;
	lzma_ret r = lzma_microlzma_encoder(&st->s, &st->opts);
	if (r != LZMA_OK)
		return r == LZMA_MEM_ERROR ? -ENOMEM : -EIO;
	st->s.next_in = in;
	st->s.avail_in = *inlen;
	st->s.next_out = out;
	st->s.avail_out = cap;
	r = lzma_code(&st->s, LZMA_FINISH);
	if (r != LZMA_STREAM_END)
		return -EIO;
	*inlen -= st->s.avail_in;
	return (ssize_t)(cap - st->s.avail_out);
}

static ssize_t lzma_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	size_t n = inlen;
	ssize_t r = lzma_fill(c, in, &n, out, cap);
	/* MicroLZMA stops when the output is full: all input or nothing */
	return r < 0 || n == inlen ? r : 0;
}

static int lzma_worth(struct codec *c, const void *in, size_t len, void *scratch)
{
	struct lzma_state *st = c->state;
	if (len < 64)
		return 1;
	if (!st->probe) {
		if (!(st->probe = ZSTD_createCCtx()))
			return -ENOMEM;
		ZSTD_CCtx_setParameter(st->probe, ZSTD_c_compressionLevel, 1);
	}
	/* zstd-1 saving under 1/64 of the bytes: already compressed data,
	 * where lzma (10-100x slower) would find no block to save either */
	size_t n = ZSTD_compress2(st->probe, scratch, len - len / 64, in, len);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
	return 1;
}

/* One decoder per decoding thread, kept from pcluster to pcluster (its
 * allocations, the dictionary among them, reused by the next
 * lzma_microlzma_decoder()) and freed when the thread exits: 2% less CPU
 * extracting mkfs.erofs's lzma minbase image (2.88 -> 2.82 s, medians of
 * 7). NULL: none to be had, the caller makes its own. */
static void dec_free(void *p)
{
	lzma_end(p);
	free(p);
}

static struct tls_slot dec_slot = TLS_SLOT(dec_free);

static lzma_stream *thread_dec(void)
{
	lzma_stream *s = tls_get(&dec_slot);
	if (s || !(s = malloc(sizeof(*s))))
		return s;
	*s = (lzma_stream)LZMA_STREAM_INIT;
	if (!tls_set(&dec_slot, s)) {
		free(s);
		s = NULL;
	}
	return s;
}

static int lzma_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		       uint32_t window)
{
	/* the image's dictionary: the same for every pcluster, so a kept
	 * decoder keeps its buffer */
	uint32_t dict = window ? window : Z_EROFS_LZMA_MAX_DICT_SIZE;
	lzma_stream own = LZMA_STREAM_INIT, *s = thread_dec();
	if (!s)
		s = &own;
	lzma_ret r = lzma_microlzma_decoder(s, inlen, outlen, !partial, dict);
	if (r != LZMA_OK) {
		lzma_end(s); /* an error leaves it half made */
		return r == LZMA_MEM_ERROR ? -ENOMEM : -EFSCORRUPTED;
	}
	s->next_in = in;
	s->avail_in = inlen;
	s->next_out = out;
	s->avail_out = outlen;
	r = lzma_code(s, LZMA_FINISH);
	size_t got = outlen - s->avail_out;
	if (s == &own)
		lzma_end(s);
	if (r == LZMA_MEM_ERROR)
		return -ENOMEM;
	return r == LZMA_STREAM_END && got == outlen ? 0 : -EFSCORRUPTED;
}

static uint16_t lzma_cfgs(void *rec, uint32_t window, uint32_t max_cblocks)
{
	(void)max_cblocks;
	struct z_erofs_lzma_cfgs c = {.dict_size = MAX(window, 4096u)};
	memcpy(rec, &c, sizeof(c));
	return sizeof(c);
}

const struct codec_ops codec_lzma = {
	.name = "lzma",
	.alg = Z_EROFS_COMPRESSION_LZMA,
	.min = 0,
	.max = 9,
	.def = 4,
	.fragments = true,
	.fill_window = lzma_fill_window,
	.init = lzma_init,
	.fini = lzma_fini,
	.compress = lzma_compress,
	.fill = lzma_fill,
	.worth = lzma_worth,
	.decode = lzma_decode,
	.cfgs = lzma_cfgs,
};
