/* SPDX-License-Identifier: Apache-2.0 */
/* lz4 and lz4hc over liblz4: the same stream, EROFS's algorithm 0. */
#include <lz4.h>
#include <lz4hc.h>

#include "anole/erofs_fs.h"
#include "compress/codec_ops.h"

static ssize_t lz4_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	(void)c;
	return LZ4_compress_default(in, out, (int)inlen, (int)cap);
}

static int lz4hc_init(struct codec *c, uint32_t window)
{
	(void)window;
	c->state = malloc((size_t)LZ4_sizeofStateHC());
	return c->state ? 0 : -ENOMEM;
}

static void lz4hc_fini(struct codec *c)
{
	free(c->state);
}

static ssize_t lz4hc_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	return LZ4_compress_HC_extStateHC(c->state, in, out, (int)inlen, (int)cap, c->level);
}

static int lz4_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		      uint32_t window)
{
	(void)window;
	if (inlen > INT32_MAX)
		return -EFSCORRUPTED;
	/* a partial decode stops at @outlen; bytes may follow the stream */
	int n = partial ? LZ4_decompress_safe_partial(in, out, (int)inlen, (int)outlen, (int)outlen)
			: LZ4_decompress_safe(in, out, (int)inlen, (int)outlen);
	return n == (int)outlen ? 0 : -EFSCORRUPTED;
}

static uint16_t lz4_cfgs(void *rec, uint32_t window, uint32_t max_cblocks)
{
	(void)window;
	struct z_erofs_lz4_cfgs c = {.max_pclusterblks = (uint16_t)MAX(max_cblocks, 1u)};
	memcpy(rec, &c, sizeof(c));
	return sizeof(c);
}

/* lz4 images stay readable by erofs-utils 1.5 and kernels before 6.1, and
 * keep the fastest random reads: no fragments unless asked */
const struct codec_ops codec_lz4 = {
	.name = "lz4",
	.alg = Z_EROFS_COMPRESSION_LZ4,
	.compress = lz4_compress,
	.decode = lz4_decode,
	.cfgs = lz4_cfgs,
};

const struct codec_ops codec_lz4hc = {
	.name = "lz4hc",
	.alg = Z_EROFS_COMPRESSION_LZ4,
	.min = 1,
	.max = 12,
	.def = 9,
	.init = lz4hc_init,
	.fini = lz4hc_fini,
	.compress = lz4hc_compress,
	.decode = lz4_decode,
	.cfgs = lz4_cfgs,
};
