/* SPDX-License-Identifier: Apache-2.0 */
/* zstd over libzstd, EROFS's algorithm 3: one frame per pcluster. */
#include <zstd.h>
#include <zstd_errors.h>

#include "anole/erofs_fs.h"
#include "compress/codec_ops.h"
#include "util/tls.h"

/* mkfs.erofs's default, min(1 MiB, 8 x @pcluster); the kernel takes no
 * zstd window over 1 MiB */
static uint32_t zstd_fill_window(uint32_t pcluster)
{
	return (uint32_t)MIN((uint64_t)pcluster * 8, (uint64_t)Z_EROFS_PCLUSTER_MAX_SIZE);
}

/* log2 of the zstd window a frame may use, rounded up, as the superblock
 * says it (windowlog + 10) */
static int zstd_wlog(uint32_t window)
{
	int wlog = 10;
	while ((1u << wlog) < window && wlog < 20)
		wlog++;
	return wlog;
}

static int zstd_init(struct codec *c, uint32_t window)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	if (!z)
		return -ENOMEM;
	c->state = z;
	/* One-shot frames carry their content size, and zstd shrinks its
	 * window and tables to the input: never above the pcluster size the
	 * superblock promises the kernel. */
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, c->level);
	/* streamed (filling) frames do not know their size: their window is
	 * the superblock's */
	ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, zstd_wlog(window));
	/* 4 bytes a frame buy detection of any corrupted byte, in the kernel
	 * and in anole check alike */
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 1);
	return 0;
}

static void zstd_fini(struct codec *c)
{
	ZSTD_freeCCtx(c->state);
}

static ssize_t zstd_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	size_t n = ZSTD_compress2(c->state, out, cap, in, inlen);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
	return (ssize_t)n;
}

/* zstd cannot stop where its output is full, but a streamed frame can end
 * after any block: feed input while even its worst case (stored raw,
 * ZSTD_compressBound()) still fits, full zstd blocks first, so that they
 * are cut where a one-shot frame cuts them, then ever smaller ones as room
 * runs out; then end the frame. One pass, where a search over one-shot
 * frames (mkfs.erofs) compresses the same input many times. */
static ssize_t zstd_fill(struct codec *c, const void *inv, size_t *inlen, void *outv, size_t cap)
{
	const uint8_t *in = inv;
	/* the frame's end (an empty last block, the checksum), a block header
	 * and compressBound's margin for small inputs */
	const size_t reserve = 3 + 4 + 3 + 64;
	size_t fed = 0;
	ZSTD_outBuffer ob = {outv, cap, 0};
	ZSTD_CCtx_reset(c->state, ZSTD_reset_session_only);
	while (fed < *inlen) {
		size_t hdr = fed ? 0 : 18 /* ZSTD_FRAMEHEADERSIZE_MAX */, room = cap - ob.pos;
		if (room <= reserve + hdr + 257)
			break;
		size_t n = MIN(*inlen - fed, (size_t)ZSTD_BLOCKSIZE_MAX);
		n = MIN(n, (room - reserve - hdr) / 257 * 256);
		ZSTD_inBuffer ib = {in + fed, n, 0};
		size_t r = ZSTD_compressStream2(c->state, &ob, &ib, ZSTD_e_flush);
		if (ZSTD_isError(r) || r || ib.pos != n)
			return -EIO;
		fed += n;
	}
	ZSTD_inBuffer none = {NULL, 0, 0};
	size_t r = ZSTD_compressStream2(c->state, &ob, &none, ZSTD_e_end);
	if (ZSTD_isError(r) || r)
		return -EIO;
	*inlen = fed;
	return (ssize_t)ob.pos;
}

/* One decompression context per decoding thread, kept from pcluster to
 * pcluster and freed when the thread exits: a fresh context allocates
 * and faults in its stream buffers on every call, which cost more than
 * decoding a 4 KiB pcluster (an extract of mkfs.erofs's zstd minbase
 * image: 0.34 s user with a context per pcluster, 0.09 s reused). NULL:
 * none to be had, the caller makes its own. */
static void dctx_free(void *d)
{
	ZSTD_freeDCtx(d);
}

static struct tls_slot dctx_slot = TLS_SLOT(dctx_free);

static ZSTD_DCtx *thread_dctx(void)
{
	ZSTD_DCtx *d = tls_get(&dctx_slot);
	if (d) {
		/* whatever the last frame left (an error mid-frame, a
		 * partial decode), not the parameters: set below */
		ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
		return d;
	}
	if ((d = ZSTD_createDCtx()) && !tls_set(&dctx_slot, d)) {
		ZSTD_freeDCtx(d);
		d = NULL;
	}
	return d;
}

static int zstd_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		       uint32_t window)
{
	unsigned long long fsize = ZSTD_getFrameContentSize(in, inlen);
	if (!partial && fsize != ZSTD_CONTENTSIZE_UNKNOWN && fsize != outlen)
		return -EFSCORRUPTED;
	ZSTD_DCtx *d = thread_dctx();
	bool own = !d; /* no per-thread context: one for this call */
	if (own && !(d = ZSTD_createDCtx()))
		return -ENOMEM;
	/* the window the image allows, so a hostile frame cannot ask for
	 * gigabytes */
	int wlog = 24;
	if (window)
		for (wlog = 10; wlog < 24 && (1u << wlog) < window; wlog++)
			;
	ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, wlog);
	ZSTD_inBuffer ib = {in, inlen, 0};
	ZSTD_outBuffer ob = {out, outlen, 0};
	size_t r;
	for (;;) {
		size_t ipos = ib.pos, opos = ob.pos;
		r = ZSTD_decompressStream(d, &ob, &ib);
		if (ZSTD_isError(r) || !r || (partial && ob.pos == outlen) ||
		    (ib.pos == ipos && ob.pos == opos))
			break;
	}
	if (own)
		ZSTD_freeDCtx(d);
	if (ZSTD_isError(r) || ob.pos != outlen)
		return -EFSCORRUPTED;
	/* a whole decode must reach the frame's end (and its checksum) */
	return partial || !r ? 0 : -EFSCORRUPTED;
}

static uint16_t zstd_cfgs(void *rec, uint32_t window, uint32_t max_cblocks)
{
	(void)max_cblocks;
	unsigned int wlog = 10;
	while ((1u << wlog) < window)
		wlog++;
	struct z_erofs_zstd_cfgs c = {.windowlog = (uint8_t)(wlog - 10)};
	memcpy(rec, &c, sizeof(c));
	return sizeof(c);
}

const struct codec_ops codec_zstd = {
	.name = "zstd",
	.alg = Z_EROFS_COMPRESSION_ZSTD,
	.min = 1,
	.max = 22,
	.def = 9,
	.fragments = true,
	.fill_window = zstd_fill_window,
	.init = zstd_init,
	.fini = zstd_fini,
	.compress = zstd_compress,
	.fill = zstd_fill,
	.decode = zstd_decode,
	.cfgs = zstd_cfgs,
};
