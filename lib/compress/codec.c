/* SPDX-License-Identifier: Apache-2.0 */
#include "compress/codec.h"

#include <libdeflate.h>
#include <lz4.h>
#include <lz4hc.h>
#include <lzma.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "anole/erofs_fs.h"

static const struct {
	enum codec_kind kind;
	const char *name;
	int min, max, def;
} codecs[] = {
	{CODEC_NONE, "none", 0, 0, 0},
	{CODEC_LZ4, "lz4", 0, 0, 0},
	{CODEC_LZ4HC, "lz4hc", 1, 12, 9},
	{CODEC_DEFLATE, "deflate", 1, 12, 9},
	{CODEC_LZMA, "lzma", 0, 9, 4},
	{CODEC_ZSTD, "zstd", 1, 22, 9},
};

int codec_parse(const char *text, struct codec_spec *spec, struct anole_error *err)
{
	const char *colon = strchr(text, ':');
	size_t nlen = colon ? (size_t)(colon - text) : strlen(text);
	for (size_t i = 0; i < ARRAY_SIZE(codecs); i++) {
		if (strlen(codecs[i].name) != nlen || strncmp(text, codecs[i].name, nlen))
			continue;
		spec->kind = codecs[i].kind;
		spec->level = codecs[i].def;
		if (!colon)
			return 0;
		char *end;
		long lv = strtol(colon + 1, &end, 10);
		if (!colon[1] || *end || codecs[i].min == codecs[i].max || lv < codecs[i].min ||
		    lv > codecs[i].max) {
			if (codecs[i].min == codecs[i].max)
				return anole_err(err, EINVAL, "compression '%s' takes no level",
						 codecs[i].name);
			return anole_err(err, EINVAL,
					 "compression level '%s' for %s: choose %d..%d (default %d)",
					 colon + 1, codecs[i].name, codecs[i].min, codecs[i].max,
					 codecs[i].def);
		}
		spec->level = (int)lv;
		return 0;
	}
	return anole_err(err, EINVAL,
			 "unknown compression '%.*s': choose lz4, lz4hc[:1-12], deflate[:1-12], "
			 "lzma[:0-9], zstd[:1-22] or none",
			 (int)nlen, text);
}

const char *codec_name(enum codec_kind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(codecs); i++)
		if (codecs[i].kind == kind)
			return codecs[i].name;
	return "?";
}

const char *codec_alg_name(unsigned int alg)
{
	static const char *names[] = {"lz4", "lzma", "deflate", "zstd"};
	return alg < ARRAY_SIZE(names) ? names[alg] : "unknown";
}

unsigned int codec_erofs_alg(enum codec_kind kind)
{
	switch (kind) {
	case CODEC_LZMA: return Z_EROFS_COMPRESSION_LZMA;
	case CODEC_DEFLATE: return Z_EROFS_COMPRESSION_DEFLATE;
	case CODEC_ZSTD: return Z_EROFS_COMPRESSION_ZSTD;
	default: return Z_EROFS_COMPRESSION_LZ4;
	}
}

struct codec {
	struct codec_spec spec;
	void *lz4hc_state;
	struct libdeflate_compressor *deflate;
	ZSTD_CCtx *zstd;
	ZSTD_CCtx *probe; /* zstd level 1, for codec_worth() */
	lzma_stream lzma;
	lzma_options_lzma lzma_opts;
};

bool codec_can_fill(const struct codec_spec *spec)
{
	return spec->kind == CODEC_LZMA || spec->kind == CODEC_ZSTD;
}

uint32_t codec_window(const struct codec_spec *spec, uint32_t pcluster, bool fill)
{
	if (!fill)
		return pcluster;
	if (spec->kind == CODEC_LZMA)
		return (uint32_t)MIN((uint64_t)pcluster * 4, (uint64_t)Z_EROFS_LZMA_MAX_DICT_SIZE);
	/* mkfs.erofs's default; the kernel takes no zstd window over 1 MiB */
	if (spec->kind == CODEC_ZSTD)
		return (uint32_t)MIN((uint64_t)pcluster * 8, (uint64_t)Z_EROFS_PCLUSTER_MAX_SIZE);
	return pcluster;
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

int codec_new(const struct codec_spec *spec, uint32_t window, struct codec **out)
{
	struct codec *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->spec = *spec;
	c->lzma = (lzma_stream)LZMA_STREAM_INIT;
	switch (spec->kind) {
	case CODEC_LZ4HC:
		c->lz4hc_state = malloc((size_t)LZ4_sizeofStateHC());
		if (!c->lz4hc_state)
			goto nomem;
		break;
	case CODEC_DEFLATE:
		c->deflate = libdeflate_alloc_compressor(spec->level);
		if (!c->deflate)
			goto nomem;
		break;
	case CODEC_ZSTD: {
		c->zstd = ZSTD_createCCtx();
		if (!c->zstd)
			goto nomem;
		/* One-shot frames carry their content size, and zstd shrinks
		 * its window and tables to the input: never above the pcluster
		 * size the superblock promises the kernel. */
		ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_compressionLevel, spec->level);
		/* streamed (filling) frames do not know their size: their
		 * window is the superblock's */
		ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_windowLog, zstd_wlog(window));
		/* 4 bytes a frame buy detection of any corrupted byte, in the
		 * kernel and in anole check alike */
		ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_checksumFlag, 1);
		ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_contentSizeFlag, 1);
		break;
	}
	case CODEC_LZMA:
		if (lzma_lzma_preset(&c->lzma_opts, (uint32_t)spec->level))
			goto nomem;
		c->lzma_opts.dict_size = MAX(window, 4096u);
		break;
	default:
		break;
	}
	*out = c;
	return 0;
nomem:
	codec_free(c);
	return -ENOMEM;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	free(c->lz4hc_state);
	if (c->deflate)
		libdeflate_free_compressor(c->deflate);
	ZSTD_freeCCtx(c->zstd);
	ZSTD_freeCCtx(c->probe);
	lzma_end(&c->lzma);
	free(c);
}

/* One MicroLZMA stream of as much of @in as fits in @cap bytes; *inlen
 * becomes the input it took. */
static ssize_t lzma_fill(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap)
{
	lzma_ret r = lzma_microlzma_encoder(&c->lzma, &c->lzma_opts);
	if (r != LZMA_OK)
		return r == LZMA_MEM_ERROR ? -ENOMEM : -EIO;
	c->lzma.next_in = in;
	c->lzma.avail_in = *inlen;
	c->lzma.next_out = out;
	c->lzma.avail_out = cap;
	r = lzma_code(&c->lzma, LZMA_FINISH);
	if (r != LZMA_STREAM_END)
		return -EIO;
	*inlen -= c->lzma.avail_in;
	return (ssize_t)(cap - c->lzma.avail_out);
}

ssize_t codec_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	if (inlen > INT32_MAX || cap < 16)
		return 0;
	switch (c->spec.kind) {
	case CODEC_LZ4:
		return LZ4_compress_default(in, out, (int)inlen, (int)cap);
	case CODEC_LZ4HC:
		return LZ4_compress_HC_extStateHC(c->lz4hc_state, in, out, (int)inlen, (int)cap,
						  c->spec.level);
	case CODEC_DEFLATE:
		return (ssize_t)libdeflate_deflate_compress(c->deflate, in, inlen, out, cap);
	case CODEC_ZSTD: {
		size_t n = ZSTD_compress2(c->zstd, out, cap, in, inlen);
		if (ZSTD_isError(n))
			return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
		return (ssize_t)n;
	}
	case CODEC_LZMA: {
		size_t n = inlen;
		ssize_t r = lzma_fill(c, in, &n, out, cap);
		/* MicroLZMA stops when the output is full: all input or nothing */
		return r < 0 || n == inlen ? r : 0;
	}
	default:
		return -EINVAL;
	}
}

/* zstd cannot stop where its output is full, but a streamed frame can end
 * after any block: feed input while even its worst case (stored raw,
 * ZSTD_compressBound()) still fits, full zstd blocks first, so that they
 * are cut where a one-shot frame cuts them, then ever smaller ones as room
 * runs out; then end the frame. One pass, where a search over one-shot
 * frames (mkfs.erofs) compresses the same input many times. */
static ssize_t zstd_fill(struct codec *c, const uint8_t *in, size_t *inlen, uint8_t *out,
			 size_t cap)
{
	/* the frame's end (an empty last block, the checksum), a block header
	 * and compressBound's margin for small inputs */
	const size_t reserve = 3 + 4 + 3 + 64;
	size_t fed = 0;
	ZSTD_outBuffer ob = {out, cap, 0};
	ZSTD_CCtx_reset(c->zstd, ZSTD_reset_session_only);
	while (fed < *inlen) {
		size_t hdr = fed ? 0 : 18 /* ZSTD_FRAMEHEADERSIZE_MAX */, room = cap - ob.pos;
		if (room <= reserve + hdr + 257)
			break;
		size_t n = MIN(*inlen - fed, (size_t)ZSTD_BLOCKSIZE_MAX);
		n = MIN(n, (room - reserve - hdr) / 257 * 256);
		ZSTD_inBuffer ib = {in + fed, n, 0};
		size_t r = ZSTD_compressStream2(c->zstd, &ob, &ib, ZSTD_e_flush);
		if (ZSTD_isError(r) || r || ib.pos != n)
			return -EIO;
		fed += n;
	}
	ZSTD_inBuffer none = {NULL, 0, 0};
	size_t r = ZSTD_compressStream2(c->zstd, &ob, &none, ZSTD_e_end);
	if (ZSTD_isError(r) || r)
		return -EIO;
	*inlen = fed;
	return (ssize_t)ob.pos;
}

ssize_t codec_fill(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap)
{
	if (*inlen > INT32_MAX || cap < 16)
		return -EINVAL;
	if (c->spec.kind == CODEC_ZSTD)
		return zstd_fill(c, in, inlen, out, cap);
	if (c->spec.kind == CODEC_LZMA)
		return lzma_fill(c, in, inlen, out, cap);
	return -EINVAL;
}

int codec_worth(struct codec *c, const void *in, size_t len, void *scratch)
{
	if (c->spec.kind != CODEC_LZMA || len < 64)
		return 1;
	if (!c->probe) {
		if (!(c->probe = ZSTD_createCCtx()))
			return -ENOMEM;
		ZSTD_CCtx_setParameter(c->probe, ZSTD_c_compressionLevel, 1);
	}
	/* zstd-1 saving under 1/64 of the bytes: already compressed data,
	 * where lzma (10-100x slower) would find no block to save either */
	size_t n = ZSTD_compress2(c->probe, scratch, len - len / 64, in, len);
	if (ZSTD_isError(n))
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
	return 1;
}

static int lz4_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial)
{
	if (inlen > INT32_MAX)
		return -EFSCORRUPTED;
	/* a partial decode stops at @outlen; bytes may follow the stream */
	int n = partial ? LZ4_decompress_safe_partial(in, out, (int)inlen, (int)outlen, (int)outlen)
			: LZ4_decompress_safe(in, out, (int)inlen, (int)outlen);
	return n == (int)outlen ? 0 : -EFSCORRUPTED;
}

/* libdeflate decodes whole streams only: a partial one goes through a
 * bigger buffer, at most what a pcluster may decode to. */
static int deflate_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial)
{
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

static int zstd_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		       uint32_t window)
{
	unsigned long long fsize = ZSTD_getFrameContentSize(in, inlen);
	if (!partial && fsize != ZSTD_CONTENTSIZE_UNKNOWN && fsize != outlen)
		return -EFSCORRUPTED;
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
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
	ZSTD_freeDCtx(d);
	if (ZSTD_isError(r) || ob.pos != outlen)
		return -EFSCORRUPTED;
	/* a whole decode must reach the frame's end (and its checksum) */
	return partial || !r ? 0 : -EFSCORRUPTED;
}

static int lzma_decode(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		       uint32_t window)
{
	/* no back reference reaches further than the output so far */
	uint32_t dict = window ? window : Z_EROFS_LZMA_MAX_DICT_SIZE;
	dict = (uint32_t)MIN((size_t)dict, MAX(outlen, (size_t)4096));
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret r = lzma_microlzma_decoder(&s, inlen, outlen, !partial, dict);
	if (r != LZMA_OK) {
		lzma_end(&s);
		return r == LZMA_MEM_ERROR ? -ENOMEM : -EFSCORRUPTED;
	}
	s.next_in = in;
	s.avail_in = inlen;
	s.next_out = out;
	s.avail_out = outlen;
	r = lzma_code(&s, LZMA_FINISH);
	size_t got = outlen - s.avail_out;
	lzma_end(&s);
	if (r == LZMA_MEM_ERROR)
		return -ENOMEM;
	return r == LZMA_STREAM_END && got == outlen ? 0 : -EFSCORRUPTED;
}

int codec_decompress(unsigned int alg, const void *in, size_t inlen, void *out, size_t outlen,
		     unsigned int flags, uint32_t window)
{
	bool partial = flags & CODEC_PARTIAL;
	if (!inlen || outlen > INT32_MAX)
		return -EFSCORRUPTED;
	switch (alg) {
	case Z_EROFS_COMPRESSION_LZ4:
		return lz4_decode(in, inlen, out, outlen, partial);
	case Z_EROFS_COMPRESSION_DEFLATE:
		return deflate_decode(in, inlen, out, outlen, partial);
	case Z_EROFS_COMPRESSION_ZSTD:
		return zstd_decode(in, inlen, out, outlen, partial, window);
	case Z_EROFS_COMPRESSION_LZMA:
		return lzma_decode(in, inlen, out, outlen, partial, window);
	}
	return -EFSCORRUPTED;
}
