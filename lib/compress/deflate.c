/* SPDX-License-Identifier: Apache-2.0 */
/* Raw DEFLATE over libdeflate, EROFS's algorithm 2. */
#include <libdeflate.h>

#include "anole/erofs_fs.h"
#include "compress/codec_ops.h"

static int deflate_init(struct codec *c, uint32_t window)
{
	(void)window;
	c->state = libdeflate_alloc_compressor(c->level);
	return c->state ? 0 : -ENOMEM;
}

static void deflate_fini(struct codec *c)
{
	if (c->state)
		libdeflate_free_compressor(c->state);
}

static ssize_t deflate_compress(struct codec *c, const void *in, size_t inlen, void *out,
				size_t cap)
{
	return (ssize_t)libdeflate_deflate_compress(c->state, in, inlen, out, cap);
}

/* libdeflate decodes whole streams only: a partial one goes through a
 * bigger buffer, at most what a pcluster may decode to. */
static int deflate_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
			  uint32_t window)
{
	(void)window;
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	if (!d)
		return -ENOMEM;
	size_t used, got = 0, cap = outlen;
	uint8_t *buf = out, *big = NULL;
	int ret = -EFSCORRUPTED;
	for (;;) {
		enum libdeflate_result r =
			libdeflate_deflate_decompress_ex(d, in, inlen, buf, cap, &used, &got);
		if (r == LIBDEFLATE_SUCCESS && (partial ? got >= outlen : got == outlen))
			ret = 0;
		if (r != LIBDEFLATE_INSUFFICIENT_SPACE || !partial || cap >= Z_EROFS_PCLUSTER_MAX_DSIZE)
			break;
		cap = MIN(MAX(cap * 2, (size_t)65536), (size_t)Z_EROFS_PCLUSTER_MAX_DSIZE);
		uint8_t *nb = realloc(big, cap);
		if (!nb) {
			ret = -ENOMEM;
			break;
		}
		buf = big = nb;
	}
	libdeflate_free_decompressor(d);
	if (!ret && buf != out)
		memcpy(out, buf, outlen);
	free(big);
	return ret;
}

static uint16_t deflate_cfgs(void *rec, uint32_t window, uint32_t max_cblocks)
{
	(void)window;
	(void)max_cblocks;
	struct z_erofs_deflate_cfgs c = {.windowbits = 15};
	memcpy(rec, &c, sizeof(c));
	return sizeof(c);
}

const struct codec_ops codec_deflate = {
	.name = "deflate",
	.alg = Z_EROFS_COMPRESSION_DEFLATE,
	.min = 1,
	.max = 12,
	.def = 9,
	.fragments = true,
	.init = deflate_init,
	.fini = deflate_fini,
	.compress = deflate_compress,
	.decode = deflate_decode,
	.cfgs = deflate_cfgs,
};
