/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compression codecs for EROFS physical clusters, over the well-kept
 * libraries: liblz4 (lz4, lz4hc), libdeflate (raw DEFLATE), liblzma
 * (MicroLZMA, the framing the kernel's EROFS expects) and libzstd.
 *
 * Most codecs compress a fixed amount of input at a time and let the output
 * be whatever size it is, rounded up to whole blocks. lzma can instead fill
 * a physical cluster (codec_fill): MicroLZMA stops where its output is full
 * and says how much input that took, so no output is lost to rounding but
 * the last block, as mkfs.erofs does.
 *
 * codec.c holds the table and the dispatch; each codec is one file (lz4.c
 * for lz4 and lz4hc, deflate.c, lzma.c, zstd.c) defining its struct
 * codec_ops (codec_ops.h).
 */
#ifndef ANOLE_CODEC_H
#define ANOLE_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/util.h"

enum codec_kind {
	CODEC_NONE = 0,
	CODEC_LZ4,
	CODEC_LZ4HC,
	CODEC_DEFLATE,
	CODEC_LZMA,
	CODEC_ZSTD,
	CODEC_KINDS /* how many kinds there are, not a codec */
};

struct codec_spec {
	enum codec_kind kind;
	int level;
};

/* "zstd", "lzma:9", "none" ...; on error the message lists the choices. */
int codec_parse(const char *text, struct codec_spec *spec, struct anole_error *err);
/* "lz4", "lzma", "deflate", "zstd" for an EROFS algorithm id. */
const char *codec_alg_name(unsigned int alg);
/* The EROFS algorithm id (Z_EROFS_COMPRESSION_*) a codec writes. */
unsigned int codec_erofs_alg(enum codec_kind kind);
/* Whether images of this codec pack small files and tails into fragments
 * unless told otherwise: not lz4 and lz4hc, which erofs-utils 1.5 and
 * kernels before 6.1 read without fragments. */
bool codec_fragments(const struct codec_spec *spec);
/* Write the COMPR_CFGS record (a 2-byte size, then the algorithm's
 * struct z_erofs_*_cfgs) to @p; @window as codec_window() gave it,
 * @max_cblocks the biggest pcluster written, in blocks. Returns its size,
 * 0 for none. */
size_t codec_cfgs(const struct codec_spec *spec, uint32_t window, uint32_t max_cblocks, void *p);

struct codec;
/* @window: the history (lzma dictionary) a stream may use, at most what
 * the superblock tells the kernel (codec_window()). */
int codec_new(const struct codec_spec *spec, uint32_t window, struct codec **out);
void codec_free(struct codec *c);
/* Compress @in into at most @cap bytes. Returns the compressed size, 0 when
 * it does not fit (the caller stores the data uncompressed), or -errno. */
ssize_t codec_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap);

/* Whether a codec can fill a physical cluster (lzma, zstd). */
bool codec_can_fill(const struct codec_spec *spec);
/* The history streams use: with @fill, extents hold several pclusters'
 * worth of input, and lzma's dictionary is min(8 MiB, 4 x @pcluster), zstd's
 * window min(1 MiB, 8 x @pcluster), as mkfs.erofs makes them; else
 * @pcluster. */
uint32_t codec_window(const struct codec_spec *spec, uint32_t pcluster, bool fill);
/* Compress the longest prefix of @in (at most *inlen bytes) whose stream
 * fits in @cap bytes; *inlen becomes that prefix's length. Returns the
 * compressed size or -errno (-EINVAL for a codec that cannot fill). */
ssize_t codec_fill(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap);

/* Whether @len bytes of @in are worth compressing with this codec (1) or
 * are better stored plain without trying (0), or -errno: a fast probe for
 * slow codecs (lzma), always 1 for the others. @scratch holds @len bytes. */
int codec_worth(struct codec *c, const void *in, size_t len, void *scratch);

/* Decoding flags. */
#define CODEC_PARTIAL 1u /* @in decodes to at least @outlen bytes: only those
			    are wanted (a partially referenced pcluster, or
			    lz4 data followed by other bytes) */

/* Decode @outlen bytes of EROFS algorithm @alg from exactly @inlen bytes
 * (the stream: any padding already cut off). Without CODEC_PARTIAL the
 * stream must end where the output does. @window bounds back references
 * (lzma dictionary, zstd window; 0 = the format's own limit). Returns 0,
 * -EFSCORRUPTED or -ENOMEM. Never writes past @outlen. */
int codec_decompress(unsigned int alg, const void *in, size_t inlen, void *out, size_t outlen,
		     unsigned int flags, uint32_t window);

#endif
