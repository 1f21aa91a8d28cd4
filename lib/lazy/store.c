/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stores: OCI image layouts and registry repositories behind one set of
 * calls. Layout writes are atomic (temporary file, then rename), so a
 * reader sees index.json and every blob whole or not at all.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>

#include "lazy/store.h"
#include "oci/oci.h"
#include "util/digest.h"

int store_open(const char *spec, int tls_verify, bool create, struct store **out,
	       struct anole_error *err)
{
	return store_open_as(spec, tls_verify, NULL, create, out, err);
}

int store_open_as(const char *spec, int tls_verify, const struct registry_creds *creds,
		  bool create, struct store **out, struct anole_error *err)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s || !(s->name = strdup(spec))) {
		free(s);
		return anole_err(err, ENOMEM, "out of memory");
	}
	int r = 0;
	if (!strncmp(spec, "docker://", 9)) {
		if ((r = registry_parse_ref(spec + 9, &s->ref, err)) >= 0)
			r = registry_new(s->ref.host, tls_verify, creds, err, &s->reg);
	} else {
		/* oci:DIR[:TAG], or a bare DIR (no tag) */
		bool oci = !strncmp(spec, "oci:", 4);
		r = oci_layout_split(oci ? spec + 4 : spec, oci, &s->dir, &s->tag, err);
		if (r >= 0 && (!*s->dir || (s->tag && !*s->tag)))
			r = anole_err(err, EINVAL, "%s: expected oci:DIR[:TAG]", spec);
		else if (r >= 0 && create)
			r = oci_layout_create(s->dir, err);
	}
	if (r < 0) {
		store_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	registry_free(s->reg);
	free(s->name);
	free(s->dir);
	free(s->tag);
	free(s);
}

bool store_same_registry(const struct store *a, const struct store *b)
{
	return a->reg && b->reg && !strcmp(a->ref.host, b->ref.host);
}

char *store_blob_dir(const struct store *s)
{
	return s->reg ? NULL : oci_blob_dir(s->dir);
}

char *store_blob_path(const struct store *s, const char *digest)
{
	return s->reg ? NULL : oci_blob_path(s->dir, digest);
}

int store_get_manifest(struct store *s, struct strbuf *body, char *mt, struct digest *dg,
		       struct anole_error *err)
{
	int r;
	if (s->reg) {
		*mt = 0;
		r = registry_get_manifest(s->reg, s->ref.repo, s->ref.reference, 0, body, mt, err);
		if (r >= 0)
			sha256(body->buf, body->len, dg);
		return r;
	}
	struct oci_desc d;
	if ((r = oci_layout_find(s->dir, s->tag, s->name, &d, err)) < 0 ||
	    (r = oci_layout_read_small(s->dir, &d, OCI_MAX_MANIFEST, body, err)) < 0)
		return r;
	memcpy(mt, d.media_type, sizeof(d.media_type));
	*dg = d.digest;
	return 0;
}

int store_get_small(struct store *s, const char *digest, uint64_t size, uint64_t max,
		    struct strbuf *out, struct anole_error *err)
{
	struct digest want, got;
	if (digest_parse(digest, &want) < 0)
		return anole_err(err, EBADMSG, "%s: unsupported digest '%.80s'", s->name, digest);
	if (size > max)
		return anole_err(err, EFBIG, "%s: blob %s: %llu bytes is more than the %llu allowed",
				 s->name, digest, (unsigned long long)size,
				 (unsigned long long)max);
	int fd = -1;
	struct registry_fetch *f = NULL;
	int r = store_open_blob(s, digest, size, &fd, &f, err);
	if (r < 0)
		return r;
	out->len = 0;
	if (strbuf_grow(out, size + 1) < 0)
		r = anole_err(err, ENOMEM, "out of memory");
	while (r >= 0) {
		ssize_t n = read(fd, out->buf + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = anole_err(err, errno, "%s: blob %s: %s", s->name, digest, strerror(errno));
		if (n <= 0)
			break;
		out->len += (size_t)n;
		if (out->len > size)
			break;
	}
	close(fd);
	int rf = f ? store_blob_end(f, err) : 0;
	if (r < 0 || (r = rf) < 0)
		return r;
	out->buf[MIN(out->len, (size_t)size)] = 0;
	sha256(out->buf, out->len, &got);
	if (out->len != size || memcmp(&got, &want, sizeof(got)))
		return anole_err(err, EBADMSG,
				 "%s: blob %s: content does not match its digest and size", s->name,
				 digest);
	return 0;
}

int store_open_blob(struct store *s, const char *digest, uint64_t size, int *fd,
		    struct registry_fetch **f, struct anole_error *err)
{
	*f = NULL;
	if (s->reg)
		return registry_blob_stream(s->reg, s->ref.repo, digest, size, fd, f, err);
	_cleanup_free_ char *path = store_blob_path(s, digest);
	if (!path)
		return anole_err(err, EINVAL, "%s: bad digest %.80s", s->name, digest);
	*fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return *fd < 0 ? anole_err(err, errno, "%s: %s", path, strerror(errno)) : 0;
}

int store_blob_end(struct registry_fetch *f, struct anole_error *err)
{
	struct anole_error fe = {0};
	int r = registry_fetch_end(f, &fe);
	if (r < 0)
		*err = fe; /* a failed download explains short data best */
	return r;
}

int store_read_range(struct store *s, const char *digest, uint64_t off, uint64_t len, void *buf,
		     bool quick, struct anole_error *err)
{
	if (s->reg)
		return registry_blob_range(s->reg, s->ref.repo, digest, off, len, buf, quick, err);
	_cleanup_free_ char *path = store_blob_path(s, digest);
	if (!path)
		return anole_err(err, EINVAL, "%s: bad digest %.80s", s->name, digest);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	int r = pread_full(fd, buf, len, off);
	if (r < 0)
		return anole_err(err, -r, "%s: bytes %llu-%llu: %s", path, (unsigned long long)off,
				 (unsigned long long)(off + len - 1),
				 r == -ENODATA ? "the file is shorter" : strerror(-r));
	return 0;
}

int store_has_blob(struct store *s, const char *digest, uint64_t size, struct anole_error *err)
{
	if (s->reg) {
		uint64_t got = 0;
		int r = registry_blob_exists(s->reg, s->ref.repo, digest, &got, err);
		return r <= 0 ? r : got == size;
	}
	_cleanup_free_ char *path = store_blob_path(s, digest);
	struct stat st;
	return path && !stat(path, &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

char *store_spec_with_tag(const struct store *s, const char *tag)
{
	char *out = NULL;
	int n = s->reg ? asprintf(&out, "docker://%s/%s:%s", s->ref.host, s->ref.repo, tag)
		       : asprintf(&out, "oci:%s:%s", s->dir, tag);
	return n < 0 ? NULL : out;
}

int store_put_blob(struct store *s, const void *data, size_t len, struct digest *dg,
		   struct anole_error *err)
{
	char digest[DIGEST_STR_LEN + 1];
	sha256(data, len, dg);
	digest_format(dg, digest);
	if (s->reg) {
		/* the upload reads a file: an unnamed one holds the bytes */
		char tmpl[] = "/tmp/anole-blob.XXXXXX";
		_cleanup_close_ int fd = mkstemp(tmpl);
		if (fd < 0)
			return anole_err(err, errno, "temporary file: %s", strerror(errno));
		unlink(tmpl);
		int r = write_full(fd, data, len);
		if (r < 0)
			return anole_err(err, -r, "temporary file: %s", strerror(-r));
		const char *how;
		return registry_blob_push(s->reg, s->ref.repo, digest, fd, 0, len, NULL, 0, &how,
					  err);
	}
	_cleanup_free_ char *dir = store_blob_dir(s);
	struct digest d;
	int r = dir ? cas_put(dir, data, len, &d) : -ENOMEM;
	return r < 0 ? anole_err(err, -r, "%s: cannot store a blob: %s", s->name, strerror(-r)) : 0;
}

int store_put_manifest(struct store *s, const void *body, size_t len, const char *mt,
		       struct digest *dg, struct anole_error *err)
{
	char digest[DIGEST_STR_LEN + 1];
	sha256(body, len, dg);
	digest_format(dg, digest);
	if (s->reg) {
		const char *ref = s->ref.reference;
		if (!strncmp(ref, "sha256:", 7) && strcmp(ref, digest))
			return anole_err(err, EINVAL, "%s: the manifest's digest is %s", s->name,
					 digest);
		return registry_put_manifest(s->reg, s->ref.repo, ref, mt, body, len, err);
	}
	_cleanup_free_ char *dir = store_blob_dir(s);
	struct digest d;
	int r = dir ? cas_put(dir, body, len, &d) : -ENOMEM;
	if (r < 0)
		return anole_err(err, -r, "%s: cannot store the manifest: %s", s->name, strerror(-r));
	struct oci_desc od = {.digest = *dg, .size = len};
	snprintf(od.media_type, sizeof(od.media_type), "%s", mt);
	memcpy(od.digest_str, digest, sizeof(od.digest_str));
	return oci_layout_tag(s->dir, s->tag ? s->tag : "latest", &od, err);
}
