/* SPDX-License-Identifier: Apache-2.0 */
/* The codec table and the dispatch to each codec's ops (codec_ops.h). */
#include "compress/codec.h"

#include "anole/erofs_fs.h"
#include "compress/codec_ops.h"

/* No pcluster is ever written plain-as-a-codec; chunk indexes and dedupe
 * keys of uncompressed images record algorithm 0, as they always have. */
static const struct codec_ops codec_none = {.name = "none", .alg = Z_EROFS_COMPRESSION_LZ4};

/* The table. No default: with -Wswitch-enum a kind left out of it does not
 * compile. */
#pragma GCC diagnostic error "-Wswitch-enum"
static const struct codec_ops *ops_of(enum codec_kind kind)
{
	switch (kind) {
	case CODEC_NONE: return &codec_none;
	case CODEC_LZ4: return &codec_lz4;
	case CODEC_LZ4HC: return &codec_lz4hc;
	case CODEC_DEFLATE: return &codec_deflate;
	case CODEC_LZMA: return &codec_lzma;
	case CODEC_ZSTD: return &codec_zstd;
	case CODEC_KINDS: break;
	}
	return NULL;
}

/* "lz4, lz4hc[:1-12], ... or none", the codecs in table order */
static void codec_choices(char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = 0;
	for (unsigned int k = CODEC_NONE + 1; k < CODEC_KINDS && n < size; k++) {
		const struct codec_ops *o = ops_of((enum codec_kind)k);
		int w = o->min == o->max
				? snprintf(buf + n, size - n, "%s, ", o->name)
				: snprintf(buf + n, size - n, "%s[:%d-%d], ", o->name, o->min, o->max);
		n += w > 0 ? (size_t)w : 0;
	}
	if (n >= 2 && n < size)
		snprintf(buf + n - 2, size - n + 2, " or %s", codec_none.name);
}

static int parse_level(const struct codec_ops *o, const char *text, struct codec_spec *spec,
		       struct anole_error *err)
{
	char *end;
	long lv = strtol(text, &end, 10);
	if (o->min == o->max)
		return anole_err(err, EINVAL, "compression '%s' takes no level", o->name);
	if (!*text || *end || lv < o->min || lv > o->max)
		return anole_err(err, EINVAL,
				 "compression level '%s' for %s: choose %d..%d (default %d)", text,
				 o->name, o->min, o->max, o->def);
	spec->level = (int)lv;
	return 0;
}

int codec_parse(const char *text, struct codec_spec *spec, struct anole_error *err)
{
	const char *colon = strchr(text, ':');
	size_t nlen = colon ? (size_t)(colon - text) : strlen(text);
	for (unsigned int k = CODEC_NONE; k < CODEC_KINDS; k++) {
		const struct codec_ops *o = ops_of((enum codec_kind)k);
		if (strlen(o->name) != nlen || strncmp(text, o->name, nlen))
			continue;
		spec->kind = (enum codec_kind)k;
		spec->level = o->def;
		return colon ? parse_level(o, colon + 1, spec, err) : 0;
	}
	char choices[256];
	codec_choices(choices, sizeof(choices));
	return anole_err(err, EINVAL, "unknown compression '%.*s': choose %s", (int)nlen, text,
			 choices);
}

const char *codec_alg_name(unsigned int alg)
{
	for (unsigned int k = CODEC_NONE + 1; k < CODEC_KINDS; k++)
		if (ops_of((enum codec_kind)k)->alg == alg)
			return ops_of((enum codec_kind)k)->name;
	return "unknown";
}

unsigned int codec_erofs_alg(enum codec_kind kind)
{
	const struct codec_ops *o = ops_of(kind);
	/* not a kind: an algorithm no reader takes */
	return o ? o->alg : Z_EROFS_COMPRESSION_MAX;
}

bool codec_can_fill(const struct codec_spec *spec)
{
	const struct codec_ops *o = ops_of(spec->kind);
	return o && o->fill;
}

bool codec_fragments(const struct codec_spec *spec)
{
	const struct codec_ops *o = ops_of(spec->kind);
	return o && o->fragments;
}

uint32_t codec_window(const struct codec_spec *spec, uint32_t pcluster, bool fill)
{
	const struct codec_ops *o = ops_of(spec->kind);
	return fill && o && o->fill_window ? o->fill_window(pcluster) : pcluster;
}

size_t codec_cfgs(const struct codec_spec *spec, uint32_t window, uint32_t max_cblocks, void *p)
{
	const struct codec_ops *o = ops_of(spec->kind);
	if (!o || !o->cfgs)
		return 0;
	uint16_t size = o->cfgs((uint8_t *)p + 2, window, max_cblocks);
	memcpy(p, &size, 2);
	return 2u + size;
}

int codec_new(const struct codec_spec *spec, uint32_t window, struct codec **out)
{
	const struct codec_ops *o = ops_of(spec->kind);
	if (!o || !o->compress)
		return -EINVAL;
	struct codec *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ops = o;
	c->level = spec->level;
	int r = o->init ? o->init(c, window) : 0;
	if (r < 0) {
		codec_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void codec_free(struct codec *c)
{
	if (!c)
		return;
	if (c->ops->fini)
		c->ops->fini(c);
	free(c);
}

ssize_t codec_compress(struct codec *c, const void *in, size_t inlen, void *out, size_t cap)
{
	if (inlen > INT32_MAX || cap < 16)
		return 0;
	return c->ops->compress(c, in, inlen, out, cap);
}

ssize_t codec_fill(struct codec *c, const void *in, size_t *inlen, void *out, size_t cap)
{
	if (*inlen > INT32_MAX || cap < 16 || !c->ops->fill)
		return -EINVAL;
	return c->ops->fill(c, in, inlen, out, cap);
}

int codec_worth(struct codec *c, const void *in, size_t len, void *scratch)
{
	return c->ops->worth ? c->ops->worth(c, in, len, scratch) : 1;
}

int codec_decompress(unsigned int alg, const void *in, size_t inlen, void *out, size_t outlen,
		     unsigned int flags, uint32_t window)
{
	if (!inlen || outlen > INT32_MAX)
		return -EFSCORRUPTED;
	for (unsigned int k = CODEC_NONE + 1; k < CODEC_KINDS; k++) {
		const struct codec_ops *o = ops_of((enum codec_kind)k);
		if (o->alg == alg && o->decode)
			return o->decode(in, inlen, out, outlen, flags & CODEC_PARTIAL, window);
	}
	return -EFSCORRUPTED;
}
