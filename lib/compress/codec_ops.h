/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What one codec is, for codec.c's table: one file per codec (lz4.c for
 * lz4 and lz4hc, deflate.c, lzma.c, zstd.c) defines a struct codec_ops and
 * codec.c lists it. Nothing outside lib/compress/ sees this header.
 */
#ifndef ANOLE_CODEC_OPS_H
#define ANOLE_CODEC_OPS_H

#include "compress/codec.h"

struct codec {
	const struct codec_ops *ops;
	int level;
	void *state; /* the codec's own, from ops->init */
};

struct codec_ops {
	const char *name;    /* as -z takes it */
	unsigned int alg;    /* Z_EROFS_COMPRESSION_* it writes and decodes */
	int min, max, def;   /* levels; min == max: takes no level */
	bool fragments;      /* --fragments unless told otherwise */
	/* With codec_fill: the history a stream uses for @pcluster-sized
	 * pclusters (NULL: @pcluster). */
	uint32_t (*fill_window)(uint32_t pcluster);
	/* Set up c->state for streams of at most @window history (NULL: no
	 * state); fini frees it, also after a failed init. */
	int (*init)(struct codec *c, uint32_t window);
	void (*fini)(struct codec *c);
	/* As codec_compress(), with @inlen <= INT32_MAX and @cap >= 16. */
	ssize_t (*compress)(struct codec *c, const void *in, size_t inlen, void *out, size_t cap);
	/* As codec_fill() (NULL: the codec cannot fill a pcluster). */
	ssize_t (*fill)(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap);
	/* As codec_worth() (NULL: always worth trying). */
	int (*worth)(struct codec *c, const void *in, size_t len, void *scratch);
	/* As codec_decompress(), with @inlen > 0 and @outlen <= INT32_MAX. */
	int (*decode)(const void *in, size_t inlen, void *out, size_t outlen, bool partial,
		      uint32_t window);
	/* Write the algorithm's COMPR_CFGS record body to @rec and return its
	 * size; @window as codec_window() gave it, @max_cblocks the biggest
	 * pcluster written, in blocks. */
	uint16_t (*cfgs)(void *rec, uint32_t window, uint32_t max_cblocks);
};

extern const struct codec_ops codec_lz4, codec_lz4hc, codec_deflate, codec_lzma, codec_zstd;

#endif
