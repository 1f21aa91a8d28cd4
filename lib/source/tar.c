/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tar streams through libarchive: plain, gzip, zstd or xz, told apart by
 * their bytes. The stream is hashed as libarchive pulls it, so a layer is
 * checked against its digest without a second read.
 */
#include <fcntl.h>
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

/* ---- verified streams --------------------------------------------------- */

/* Next bytes of the stream: >0 bytes, 0 at a good end, <0 -errno with
 * @msg filled. */
static ssize_t bs_pull(struct blob_stream *bs, char *msg, size_t msgsz)
{
	if (bs->eof)
		return 0;
	ssize_t n;
	do
		n = read(bs->fd, bs->buf, STREAM_BUF);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(msg, msgsz, "%s: read error: %s", bs->what, strerror(errno));
		return -errno;
	}
	bs->got += (uint64_t)n;
	if (bs->size != UINT64_MAX && bs->got > bs->size) {
		snprintf(msg, msgsz, "%s: longer than the %llu bytes its descriptor says", bs->what,
			 (unsigned long long)bs->size);
		return -EBADMSG;
	}
	if (bs->sha)
		sha256_stream_update(bs->sha, bs->buf, (size_t)n);
	if (n)
		return n;
	bs->eof = true;
	if (bs->size != UINT64_MAX && bs->got != bs->size) {
		snprintf(msg, msgsz, "%s: %llu bytes where its descriptor says %llu", bs->what,
			 (unsigned long long)bs->got, (unsigned long long)bs->size);
		return -EBADMSG;
	}
	if (bs->verify) {
		struct digest d;
		sha256_stream_final(bs->sha, &d);
		if (memcmp(&d, &bs->want, sizeof(d))) {
			char have[DIGEST_STR_LEN + 1], want[DIGEST_STR_LEN + 1];
			digest_format(&d, have);
			digest_format(&bs->want, want);
			snprintf(msg, msgsz, "%s: content digest %s does not match %s", bs->what,
				 have, want);
			return -EBADMSG;
		}
	}
	return 0;
}

static la_ssize_t bs_read(struct archive *a, void *ctx, const void **buf)
{
	struct blob_stream *bs = ctx;
	char msg[512];
	ssize_t n = bs_pull(bs, msg, sizeof(msg));
	if (n < 0) {
		bs->failed = true;
		archive_set_error(a, (int)-n, "%s", msg);
		return -1;
	}
	*buf = bs->buf;
	return n;
}

int tar_open(struct blob_stream *bs, struct archive **out, struct anole_error *err)
{
	int r = anole_archive_load(err);
	if (r < 0)
		return r;
	bs->got = 0;
	bs->eof = false;
	if (!(bs->buf = malloc(STREAM_BUF)))
		return anole_err(err, ENOMEM, "out of memory");
	if (bs->verify && !(bs->sha = sha256_stream_new()))
		return anole_err(err, ENOMEM, "out of memory");
	struct archive *a = archive_read_new();
	if (!a)
		return anole_err(err, ENOMEM, "out of memory");
	/* Only what layers use: fewer decoders, less to attack. */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_xz(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_empty(a);
	if (archive_read_open(a, bs, NULL, bs_read, NULL) != ARCHIVE_OK) {
		r = !bs->failed
				? anole_err(err, EINVAL,
					    "%s: not a directory, and not readable as a tar archive "
					    "(plain, gzip, zstd or xz): %s",
					    bs->what, archive_error_string(a) ?: "unknown format")
				: source_archive_err(err, a, bs->what, NULL);
		archive_read_free(a);
		return r;
	}
	*out = a;
	return 0;
}

int tar_close(struct blob_stream *bs, struct archive *a, bool ok, struct anole_error *err)
{
	int r = 0;
	if (ok) {
		/* The tar may end before its stream (padding after the end
		 * marker): the digest covers every byte. */
		char msg[512];
		ssize_t n;
		while ((n = bs_pull(bs, msg, sizeof(msg))) > 0)
			;
		if (n < 0)
			r = anole_err(err, (int)-n, "%s", msg);
	}
	if (a)
		archive_read_free(a);
	sha256_stream_free(bs->sha);
	bs->sha = NULL;
	free(bs->buf);
	bs->buf = NULL;
	return r;
}
