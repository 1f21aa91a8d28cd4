/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tar streams through libarchive: plain, gzip, zstd or xz, told apart by
 * their bytes. The stream is hashed as libarchive pulls it, so a layer is
 * checked against its digest without a second read.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

#include "source/source.h"
#include "util/dyn_archive.h"

#define STREAM_BUF (256u << 10)

/* ---- entry helpers ------------------------------------------------------ */

const char *source_entry_path(struct archive_entry *e)
{
	const char *p = archive_entry_pathname(e);
	return p ? p : archive_entry_pathname_utf8(e);
}

const char *source_entry_hardlink(struct archive_entry *e)
{
	const char *p = archive_entry_hardlink(e);
	return p ? p : archive_entry_hardlink_utf8(e);
}

const char *source_entry_symlink(struct archive_entry *e)
{
	const char *p = archive_entry_symlink(e);
	return p ? p : archive_entry_symlink_utf8(e);
}

int source_archive_err(struct anole_error *err, struct archive *a, const char *what,
		       const char *path)
{
	const char *msg = archive_error_string(a);
	int code = archive_errno(a) > 0 ? archive_errno(a) : EIO;
	if (path && *path)
		return anole_err(err, code, "%s: '%s': %s", what, path, msg ? msg : "read error");
	return anole_err(err, code, "%s: %s", what, msg ? msg : "read error");
}


/* ---- ACLs --------------------------------------------------------------- */

/* The kernel's posix_acl_xattr layout: a version, then (tag, perm, id). */
#define ACL_XATTR_VERSION 2
#define ACL_UNDEFINED_ID 0xffffffffu

struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};

static int cmp_acl(const void *a, const void *b)
{
	const struct acl_ent *x = a, *y = b;
	if (x->tag != y->tag)
		return x->tag < y->tag ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static uint16_t acl_tag(int tag)
{
	switch (tag) {
	case ARCHIVE_ENTRY_ACL_USER_OBJ:
		return 0x01;
	case ARCHIVE_ENTRY_ACL_USER:
		return 0x02;
	case ARCHIVE_ENTRY_ACL_GROUP_OBJ:
		return 0x04;
	case ARCHIVE_ENTRY_ACL_GROUP:
		return 0x08;
	case ARCHIVE_ENTRY_ACL_MASK:
		return 0x10;
	case ARCHIVE_ENTRY_ACL_OTHER:
		return 0x20;
	}
	return 0;
}

static int acl_xattr(struct xattr_table *t, struct xattr_setbuf *sb, struct archive_entry *e,
		     int type, const char *name, uint32_t *mode, struct anole_error *err,
		     const char *path)
{
	int count = archive_entry_acl_reset(e, type);
	if (count <= 0 || count > 4096)
		return 0;
	struct acl_ent v[4096];
	int n = 0, etype, perm, tag, qual;
	const char *uname;
	while (n < count &&
	       archive_entry_acl_next(e, type, &etype, &perm, &tag, &qual, &uname) == ARCHIVE_OK) {
		uint16_t t16 = acl_tag(tag);
		if (!t16)
			continue; /* NFSv4 "everyone@" and the like */
		bool named = t16 == 0x02 || t16 == 0x08;
		/* with a mask, the group bits of the mode are the mask */
		if (t16 == 0x10 && type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS)
			*mode = (*mode & ~070u) | (uint32_t)(perm & 7) << 3;
		v[n++] = (struct acl_ent){t16, (uint16_t)(perm & 7),
					  named ? (uint32_t)qual : ACL_UNDEFINED_ID};
	}
	if (!n)
		return 0;
	qsort(v, (size_t)n, sizeof(v[0]), cmp_acl);
	uint8_t buf[4 + 8 * 4096];
	uint32_t ver = ACL_XATTR_VERSION;
	memcpy(buf, &ver, 4); /* little-endian hosts only, as the rest of anole */
	for (int i = 0; i < n; i++) {
		size_t at = 8 * (size_t)i;
		memcpy(buf + 4 + at, &v[i].tag, 2);
		memcpy(buf + 6 + at, &v[i].perm, 2);
		memcpy(buf + 8 + at, &v[i].id, 4);
	}
	return xattr_set_add(t, sb, name, buf, 4 + 8 * (size_t)n, err, path);
}

int source_acl_xattrs(struct xattr_table *t, struct xattr_setbuf *sb, struct archive_entry *e,
		      uint32_t *mode, struct anole_error *err, const char *path)
{
	int r = acl_xattr(t, sb, e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, "system.posix_acl_access", mode,
			  err, path);
	if (r >= 0)
		r = acl_xattr(t, sb, e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, "system.posix_acl_default",
			      mode, err, path);
	return r;
}

/* ---- headers read again -------------------------------------------------- */

/*
 * libarchive reads a PAX time "1e30" as 1 and "nan" as 0, a number "12x"
 * as 12, an octal field "1e30" as 1: what a header says is lost without a
 * word. Go's archive/tar (Docker, containerd, umoci, buildah) refuses
 * such a tar, GNU tar mostly too; so does anole. The bytes of each
 * entry's headers are read again here, as libarchive read them, and the
 * numbers in them checked.
 */

#define TAR_BLOCK 512
#define MAX_SPECIAL (1u << 20) /* libarchive's limit for a header's body */

/* -?DIGITS in int64 (Go's strconv.ParseInt, less its '+'); with @frac,
 * also -?DIGITS.DIGITS* (a PAX time, as Go's archive/tar reads it). */
static bool decimal_ok(const char *v, size_t n, bool frac)
{
	size_t i = n && v[0] == '-';
	uint64_t x = 0, lim = (uint64_t)INT64_MAX + (i ? 1 : 0);
	size_t start = i;
	for (; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
		if (x > (lim - (uint64_t)(v[i] - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (i == start)
		return false;
	if (frac && i < n && v[i] == '.')
		for (i++; i < n && v[i] >= '0' && v[i] <= '9'; i++)
			;
	return i == n;
}

static bool pax_key_is(const char *k, size_t kl, const char *const *set)
{
	for (; *set; set++)
		if (strlen(*set) == kl && !memcmp(k, *set, kl))
			return true;
	return false;
}

static void say_bad(char *why, size_t whysz, const char *where, const char *k, size_t kl,
		    const char *v, size_t vl, const char *want)
{
	char shown[48];
	size_t n = 0;
	for (size_t i = 0; i < vl && n < sizeof(shown) - 4; i++)
		shown[n++] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	if (vl > n)
		memcpy(shown + n, "...", 3), n += 3;
	shown[n] = 0;
	snprintf(why, whysz, "%s %.*s '%s' is not %s", where, (int)MIN(kl, (size_t)64), k, shown,
		 want);
}

/* The records of a PAX 'x' body, as libarchive's pax_header() splits
 * them ("LEN KEY=VALUE\n"; a malformed one ends the list, as there). */
static int pax_check(const char *p, size_t n, char *why, size_t whysz)
{
	static const char *const times[] = {"mtime", "atime", "ctime", NULL};
	static const char *const numbers[] = {
		"uid", "gid", "size", "SCHILY.devmajor", "SCHILY.devminor", "SCHILY.realsize",
		"GNU.sparse.size", "GNU.sparse.realsize", "GNU.sparse.major", "GNU.sparse.minor",
		"GNU.sparse.numblocks", "GNU.sparse.offset", "GNU.sparse.numbytes", NULL};
	while (n) {
		size_t len = 0, i = 0;
		for (; i < n && p[i] != ' '; i++) {
			if (p[i] < '0' || p[i] > '9' || (len = len * 10 + (size_t)(p[i] - '0')) > 999999)
				return 0;
		}
		if (i == n || len > n || len <= i + 1 || p[len - 1] != '\n')
			return 0;
		const char *key = p + i + 1, *end = p + len - 1;
		size_t kl = 0;
		while (key + kl < end && key[kl] && key[kl] != '=')
			kl++;
		if (!kl || key + kl == end || key[kl] != '=')
			return 0;
		const char *v = key + kl + 1;
		size_t vl = (size_t)(end - v);
		bool is_time = pax_key_is(key, kl, times);
		if ((is_time || pax_key_is(key, kl, numbers)) && !decimal_ok(v, vl, is_time)) {
			say_bad(why, whysz, "PAX record", key, kl, v, vl,
				is_time ? "a time" : "a number");
			return 1;
		}
		p += len;
		n -= len;
	}
	return 0;
}

/* A ustar numeric field: base-256 two's complement when the top bit is
 * set (GNU), else octal; @ok: the value fits 64 bits and the octal is
 * digits between spaces and NULs only (as Go's archive/tar wants). */
static int64_t field_number(const unsigned char *f, size_t n, bool *ok)
{
	*ok = true;
	if (f[0] & 0x80) {
		unsigned char neg = f[0] & 0x40 ? 0xff : 0;
		uint64_t x = neg ? UINT64_MAX : 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = i ? f[i] : (unsigned char)((f[0] & 0x7f) | (neg & 0x80));
			if (i + 8 < n)
				*ok &= c == neg; /* bytes beyond 64 bits: only the sign */
			else
				x = x << 8 | c;
			if (i + 8 == n)
				*ok &= !((c ^ neg) & 0x80);
		}
		return *ok ? (int64_t)x : 0;
	}
	size_t a = 0, b = n;
	while (a < b && (f[a] == ' ' || !f[a]))
		a++;
	while (b > a && (f[b - 1] == ' ' || !f[b - 1]))
		b--;
	uint64_t x = 0;
	for (size_t i = a; i < b; i++) {
		if (f[i] < '0' || f[i] > '7' || x >> 60)
			return *ok = false, 0;
		x = x * 8 + (uint64_t)(f[i] - '0');
	}
	return (int64_t)x;
}

/* The numbers of a header (ustar, GNU or old tar): an entry's own, or
 * (@special) the size of a PAX or GNU header's body. */
static int ustar_check(const unsigned char *h, bool special, char *why, size_t whysz)
{
	static const struct {
		const char *name;
		unsigned int off, len;
	} f[] = {{"mode", 100, 8}, {"uid", 108, 8}, {"gid", 116, 8}, {"size", 124, 12},
		 {"mtime", 136, 12}, {"devmajor", 329, 8}, {"devminor", 337, 8}};
	bool dev = h[156] == '3' || h[156] == '4';
	for (size_t i = special ? 3 : 0; i < (special ? 4 : ARRAY_SIZE(f) - (dev ? 0 : 2)); i++) {
		bool ok;
		field_number(h + f[i].off, f[i].len, &ok);
		if (!ok) {
			say_bad(why, whysz, "header field", f[i].name, strlen(f[i].name),
				(const char *)h + f[i].off, strnlen((const char *)h + f[i].off, f[i].len),
				"a number");
			return 1;
		}
	}
	return 0;
}

int tar_check_headers(const struct tar_hdr_src *src, uint64_t at, char *why, size_t whysz)
{
	unsigned char h[TAR_BLOCK];
	/* libarchive follows at most 32 special headers */
	for (int depth = 0; depth <= 32; depth++) {
		if (!src->get(src->ctx, at, TAR_BLOCK, h))
			return -1;
		char type = (char)h[156];
		if (!type || !strchr("xXgLKAV", type))
			return ustar_check(h, false, why, whysz);
		if (ustar_check(h, true, why, whysz))
			return 1;
		bool ok;
		int64_t size = type == 'V' ? 0 : field_number(h + 124, 12, &ok);
		if (size < 0 || size > MAX_SPECIAL)
			return -1; /* libarchive refuses these itself */
		if (type == 'x' || type == 'X') {
			char *body = malloc(size ? (size_t)size : 1);
			int r = !body ? -1 : !src->get(src->ctx, at + TAR_BLOCK, (size_t)size, body)
						   ? -1 : pax_check(body, (size_t)size, why, whysz);
			free(body);
			if (r)
				return r;
		}
		at += TAR_BLOCK + ROUND_UP((uint64_t)size, TAR_BLOCK);
	}
	return -1;
}

/* The bytes [at, at + n) of the plain stream, from what tar_hdrs kept. */
static bool hdrs_get(void *ctx, uint64_t at, size_t n, void *dst)
{
	const struct tar_hdrs *h = ctx;
	char *d = dst;
	uint64_t last_at = h->pos - h->last_len, tail_at = last_at - h->tail_len;
	while (n) {
		const char *from;
		size_t avail;
		if (h->keeping && at >= h->start && at < h->start + h->keep.len) {
			from = h->keep.buf + (at - h->start);
			avail = (size_t)(h->start + h->keep.len - at);
		} else if (!h->keeping && at >= last_at && at < h->pos) {
			from = h->last + (at - last_at);
			avail = (size_t)(h->pos - at);
		} else if (!h->keeping && at >= tail_at && at < last_at) {
			from = h->tail + (at - tail_at);
			avail = (size_t)(last_at - at);
		} else {
			return false;
		}
		size_t k = MIN(n, avail);
		memcpy(d, from, k);
		d += k;
		at += k;
		n -= k;
	}
	return true;
}

/* The last block moves on: keep its end in tail; while libarchive reads
 * an entry's headers, keep all from their start. */
static void hdrs_advance(struct tar_hdrs *h)
{
	if (h->reading && !h->keeping && !h->lost) {
		/* libarchive looks at most 1 KiB ahead of the headers it
		 * reads, so they start in tail or in the last block */
		uint64_t n = h->pos - h->start;
		h->keep.len = 0;
		h->lost = h->start > h->pos || n > h->last_len + h->tail_len ||
			  strbuf_grow(&h->keep, (size_t)n + 1) < 0 ||
			  !hdrs_get(h, h->start, (size_t)n, h->keep.buf);
		h->keep.len = h->lost ? 0 : (size_t)n;
		h->keeping = !h->lost;
	}
	if (h->last_len >= sizeof(h->tail)) {
		memcpy(h->tail, h->last + h->last_len - sizeof(h->tail), sizeof(h->tail));
		h->tail_len = sizeof(h->tail);
	} else if (h->last_len) {
		size_t old = MIN(h->tail_len, sizeof(h->tail) - h->last_len);
		memmove(h->tail, h->tail + h->tail_len - old, old);
		memcpy(h->tail + old, h->last, h->last_len);
		h->tail_len = old + h->last_len;
	}
	h->last = NULL;
	h->last_len = 0;
}

static void hdrs_block(struct tar_hdrs *h, const void *p, size_t n)
{
	h->last = p;
	h->last_len = n;
	h->pos += n;
	if (h->keeping && !h->lost &&
	    (h->keep.len + n > 33 * (size_t)(MAX_SPECIAL + TAR_BLOCK) ||
	     strbuf_add(&h->keep, p, n) < 0))
		h->lost = true;
}

/* ---- verified streams --------------------------------------------------- */

static ssize_t bs_fail(struct blob_stream *bs, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static ssize_t bs_fail(struct blob_stream *bs, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(bs->msg, sizeof(bs->msg), fmt, ap);
	va_end(ap);
	bs->failed = true;
	bs->code = code;
	return -code;
}

/* Next bytes of the stream: >0 bytes, 0 at a good end, <0 -errno with
 * bs->msg saying why. */
static ssize_t bs_pull(struct blob_stream *bs)
{
	if (bs->failed)
		return -bs->code;
	if (bs->eof)
		return 0;
	ssize_t n;
	do
		n = read(bs->fd, bs->buf, STREAM_BUF);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return bs_fail(bs, errno, "read error: %s", strerror(errno));
	bs->got += (uint64_t)n;
	if (bs->size != UINT64_MAX && bs->got > bs->size)
		return bs_fail(bs, EBADMSG, "longer than the %llu bytes its descriptor says",
			       (unsigned long long)bs->size);
	if (bs->sha)
		sha256_stream_update(bs->sha, bs->buf, (size_t)n);
	if (n)
		return n;
	bs->eof = true;
	if (bs->size != UINT64_MAX && bs->got != bs->size)
		return bs_fail(bs, EBADMSG, "%llu bytes where its descriptor says %llu",
			       (unsigned long long)bs->got, (unsigned long long)bs->size);
	if (bs->verify) {
		struct digest d;
		sha256_stream_final(bs->sha, &d);
		if (memcmp(&d, &bs->want, sizeof(d))) {
			char have[DIGEST_STR_LEN + 1], want[DIGEST_STR_LEN + 1];
			digest_format(&d, have);
			digest_format(&bs->want, want);
			return bs_fail(bs, EBADMSG, "digest does not match: expected %s, got %s",
				       want, have);
		}
	}
	return 0;
}

/* The compressed bytes, for libarchive's decompression. */
static la_ssize_t bs_read(struct archive *a, void *ctx, const void **buf)
{
	struct blob_stream *bs = ctx;
	ssize_t n = bs_pull(bs);
	if (n < 0) {
		archive_set_error(a, (int)-n, "%s", bs->msg);
		return -1;
	}
	*buf = bs->buf;
	return n;
}

/* The plain tar, for the tar reader: what the decompression made, seen
 * by tar_hdrs on its way. */
static la_ssize_t plain_read(struct archive *a, void *ctx, const void **buf)
{
	struct blob_stream *bs = ctx;
	hdrs_advance(&bs->hdrs);
	if (bs->raw_empty)
		return 0;
	const void *p;
	size_t n;
	la_int64_t off;
	int r = archive_read_data_block(bs->raw, &p, &n, &off);
	if (r == ARCHIVE_EOF)
		return 0;
	if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
		bs->plain_failed = true;
		archive_set_error(a, archive_errno(bs->raw) > 0 ? archive_errno(bs->raw) : EIO, "%s",
				  bs->failed ? bs->msg : archive_error_string(bs->raw) ?: "read error");
		return -1;
	}
	hdrs_block(&bs->hdrs, p, n);
	*buf = p;
	return (la_ssize_t)n;
}

/* After a failure: read a verified stream to its end. True when its
 * digest (or size) does not match, which then explains the failure. */
static bool bs_mismatch(struct blob_stream *bs)
{
	if (!bs->verify || bs->failed)
		return bs->failed && bs->code == EBADMSG;
	ssize_t n;
	while ((n = bs_pull(bs)) > 0)
		;
	return n < 0 && bs->code == EBADMSG;
}

static int bs_error(struct blob_stream *bs, struct anole_error *err)
{
	*err = (struct anole_error){0};
	return anole_err(err, bs->code, "%s: %s", bs->what, bs->msg);
}

int tar_error(struct blob_stream *bs, struct archive *a, const char *path,
	      struct anole_error *err)
{
	if (bs->failed)
		return bs_error(bs, err);
	return source_archive_err(err, a, bs->what, path);
}

static int open_failed(struct blob_stream *bs, struct archive *a, struct anole_error *err)
{
	if (bs_mismatch(bs) || bs->failed)
		return bs_error(bs, err);
	const char *msg = archive_error_string(a);
	if (msg && (a == bs->raw || bs->plain_failed))
		return source_archive_err(err, a, bs->what, NULL); /* decompression */
	return anole_err(err, EINVAL,
			 "%s: not a directory, and not readable as a tar archive "
			 "(plain, gzip, zstd or xz): %s",
			 bs->what, msg ? msg : "unknown format");
}

int tar_open(struct blob_stream *bs, struct archive **out, struct anole_error *err)
{
	int r = anole_archive_load(err);
	if (r < 0)
		return r;
	bs->got = 0;
	bs->eof = bs->failed = bs->in_entry = bs->plain_failed = bs->raw_empty = false;
	bs->hdrs = (struct tar_hdrs){0};
	if (!(bs->buf = malloc(STREAM_BUF)))
		return anole_err(err, ENOMEM, "out of memory");
	if (bs->verify && !(bs->sha = sha256_stream_new()))
		return anole_err(err, ENOMEM, "out of memory");
	/* Only what layers use: fewer decoders, less to attack. The raw
	 * format hands the plain stream to the tar reader below, which
	 * tar_hdrs watches on its way. */
	if (!(bs->raw = archive_read_new()))
		return anole_err(err, ENOMEM, "out of memory");
	archive_read_support_filter_gzip(bs->raw);
	archive_read_support_filter_zstd(bs->raw);
	archive_read_support_filter_xz(bs->raw);
	archive_read_support_format_raw(bs->raw);
	archive_read_support_format_empty(bs->raw);
	struct archive_entry *e;
	if (archive_read_open(bs->raw, bs, NULL, bs_read, NULL) != ARCHIVE_OK ||
	    (r = archive_read_next_header(bs->raw, &e)) < ARCHIVE_WARN)
		return open_failed(bs, bs->raw, err);
	/* No bytes at all: an empty archive, as tar(1) reads it, not a
	 * data block asked of a reader already at its end. */
	bs->raw_empty = r == ARCHIVE_EOF;
	struct archive *a = archive_read_new();
	if (!a)
		return anole_err(err, ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_format_empty(a);
	if (archive_read_open(a, bs, NULL, plain_read, NULL) != ARCHIVE_OK) {
		r = open_failed(bs, a, err);
		archive_read_free(a);
		return r;
	}
	*out = a;
	return 0;
}

int tar_next(struct blob_stream *bs, struct archive *a, struct archive_entry **e,
	     struct anole_error *err)
{
	struct tar_hdrs *h = &bs->hdrs;
	/* Skipping what is left of the last entry here puts the tar reader
	 * at the next entry's first header. */
	if (bs->in_entry && archive_read_data_skip(a) != ARCHIVE_OK)
		return tar_error(bs, a, NULL, err);
	h->start = (uint64_t)archive_filter_bytes(a, 0);
	h->reading = true;
	h->keeping = h->lost = false;
	int ar = archive_read_next_header(a, e);
	h->reading = false;
	bs->in_entry = ar == ARCHIVE_OK || ar == ARCHIVE_WARN;
	if (ar == ARCHIVE_EOF)
		return 0;
	if (!bs->in_entry)
		return tar_error(bs, a, NULL, err);
	char why[160];
	uint64_t at = (uint64_t)archive_read_header_position(a);
	struct tar_hdr_src src = {hdrs_get, h};
	int r = h->lost || at < h->start ? -1 : tar_check_headers(&src, at, why, sizeof(why));
	h->keeping = false;
	h->keep.len = 0;
	const char *path = source_entry_path(*e);
	if (r > 0)
		return anole_err(err, EINVAL, "%s: '%s': %s", bs->what, path ?: "?", why);
	if (r < 0) /* cannot happen: libarchive just read these bytes */
		return anole_err(err, EIO, "%s: '%s': cannot read the entry's headers again",
				 bs->what, path ?: "?");
	return 1;
}

int tar_close(struct blob_stream *bs, struct archive *a, bool ok, struct anole_error *err)
{
	int r = 0;
	if (ok) {
		/* The tar may end before its stream (padding after the end
		 * marker): the digest covers every byte. */
		ssize_t n;
		while ((n = bs_pull(bs)) > 0)
			;
		if (n < 0)
			r = bs_error(bs, err);
	} else if (bs_mismatch(bs)) {
		/* a damaged layer: its digest says why better than the tar */
		r = bs_error(bs, err);
	}
	if (a)
		archive_read_free(a);
	if (bs->raw)
		archive_read_free(bs->raw);
	bs->raw = NULL;
	strbuf_release(&bs->hdrs.keep);
	sha256_stream_free(bs->sha);
	bs->sha = NULL;
	free(bs->buf);
	bs->buf = NULL;
	return r;
}
