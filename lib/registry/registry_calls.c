/* SPDX-License-Identifier: Apache-2.0 */
/* The registry calls: manifests, blob streams, ranges, existence,
 * uploads and cross-repository mounts. */
#include "registry/registry_int.h"

#define MAX_BODY (4u << 20)
#define ACCEPT_MANIFESTS                                                                  \
	"Accept: application/vnd.oci.image.manifest.v1+json, "                            \
	"application/vnd.oci.image.index.v1+json, "                                       \
	"application/vnd.docker.distribution.manifest.v2+json, "                          \
	"application/vnd.docker.distribution.manifest.list.v2+json"

int registry_get_manifest(struct registry *r, const char *repo, const char *ref, uint64_t size,
			  struct strbuf *body, char *media_type, struct anole_error *err)
{
	_cleanup_free_ char *path = registry_api_path(repo, "manifests", ref);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	struct xfer x = {.reg = r, .body = body, .sock = -1,
			 .max_body = size && size < MAX_BODY ? (size_t)size : MAX_BODY};
	body->len = 0;
	int rc = reg_request(r, path, ACCEPT_MANIFESTS, repo, &x, err);
	if (rc < 0)
		return rc;
	_cleanup_free_ char *what = NULL;
	if (asprintf(&what, "%s%s%s", repo, strncmp(ref, "sha256:", 7) ? ":" : "@", ref) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	if (x.status != 200)
		return reg_http_error(r, what, x.status, err);
	if (strbuf_add(body, "", 0) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	struct digest want, got;
	sha256(body->buf, body->len, &got);
	const char *expect = !strncmp(ref, "sha256:", 7) ? ref : x.content_digest;
	if (*expect && !strncmp(expect, "sha256:", 7)) {
		if (digest_parse(expect, &want) < 0 || memcmp(&want, &got, sizeof(got)))
			return anole_err(err, EBADMSG, "%s: %s: manifest does not match digest %s",
					 r->host, what, expect);
	}
	if (media_type) {
		size_t n = strcspn(x.content_type, ";");
		snprintf(media_type, 128, "%.*s", (int)n, x.content_type);
	}
	return 0;
}

/* ---- blob streams ------------------------------------------------------------- */

struct registry_fetch {
	struct registry *reg;
	char *path, *repo;
	uint64_t size;
	int sock;
	pthread_t thread;
	struct anole_error err;
	int rc;
};

static void *fetch_main(void *arg)
{
	struct registry_fetch *f = arg;
	/* one deadline for the blob, resumes and all */
	struct xfer x = {.reg = f->reg, .sock = f->sock, .limit = f->size};
	reg_xfer_bound(&x, K_BLOB, f->size);
	for (int resumes = 0;; resumes++) {
		f->rc = reg_request(f->reg, f->path, NULL, f->repo, &x, &f->err);
		if (f->rc < 0)
			break;
		if (x.status != 200 && x.status != 206) {
			f->rc = reg_http_error(f->reg, f->path, x.status, &f->err);
			break;
		}
		if (x.delivered >= f->size || resumes >= MAX_ATTEMPTS)
			break;
		/* The body ended early without a curl error: resume. */
		reg_backoff(&x, resumes);
	}
	shutdown(f->sock, SHUT_WR);
	close(f->sock);
	return NULL;
}

static void fetch_free(struct registry_fetch *f)
{
	free(f->path);
	free(f->repo);
	free(f);
}

int registry_blob_stream(struct registry *r, const char *repo, const char *digest,
			 uint64_t size, int *fd, struct registry_fetch **out,
			 struct anole_error *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return anole_err(err, errno, "socketpair: %s", strerror(errno));
	struct registry_fetch *f = calloc(1, sizeof(*f));
	if (!f) {
		close(sv[0]);
		close(sv[1]);
		return anole_err(err, ENOMEM, "out of memory");
	}
	f->reg = r;
	f->size = size;
	f->sock = sv[1];
	f->repo = strdup(repo);
	f->path = registry_api_path(repo, "blobs", digest);
	int rc = !f->repo || !f->path ? anole_err(err, ENOMEM, "out of memory")
	       : pthread_create(&f->thread, NULL, fetch_main, f)
		       ? anole_err(err, EAGAIN, "cannot start a download thread")
		       : 0;
	if (rc < 0) {
		close(sv[0]);
		close(sv[1]);
		fetch_free(f);
		return rc;
	}
	*fd = sv[0];
	*out = f;
	return 0;
}

int registry_fetch_end(struct registry_fetch *f, struct anole_error *err)
{
	pthread_join(f->thread, NULL);
	int rc = f->rc;
	if (rc < 0 && f->err.code != EPIPE)
		*err = f->err;
	else
		rc = 0;
	fetch_free(f);
	return rc;
}

/* ---- lazy format: ranges, existence, uploads --------------------------------- */

int registry_blob_exists(struct registry *r, const char *repo, const char *digest,
			 uint64_t *size, struct anole_error *err)
{
	_cleanup_free_ char *path = registry_api_path(repo, "blobs", digest);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	struct xfer x = {.reg = r, .sock = -1, .method = "HEAD"};
	struct strbuf sink = {0};
	x.body = &sink;
	x.max_body = 1;
	int rc = reg_request(r, path, NULL, repo, &x, err);
	strbuf_release(&sink);
	if (rc < 0)
		return rc;
	if (x.status == 404)
		return 0;
	if (x.status != 200)
		return reg_http_error(r, path, x.status, err);
	if (size)
		*size = x.content_length;
	return 1;
}

int registry_blob_range(struct registry *r, const char *repo, const char *digest, uint64_t off,
			uint64_t len, void *buf, bool quick, struct anole_error *err)
{
	if (!len)
		return 0;
	_cleanup_free_ char *path = registry_api_path(repo, "blobs", digest);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	/* a reader waits on these: a stall ends sooner than a download's */
	struct xfer x = {.reg = r, .sock = -1, .range_buf = buf, .range_off = off, .range_len = len,
			 .max_attempts = quick ? 1 : 0};
	reg_xfer_bound(&x, K_RANGE, len);
	int rc = reg_request(r, path, NULL, repo, &x, err);
	if (rc < 0)
		return rc;
	if (x.status == 416)
		return anole_err(err, ERANGE, "%s: %s: bytes %llu-%llu are beyond the blob",
				 r->host, digest, (unsigned long long)off,
				 (unsigned long long)(off + len - 1));
	if (x.status != 200 && x.status != 206)
		return reg_http_error(r, path, x.status, err);
	if (x.range_got != len)
		return anole_err(err, EIO, "%s: %s: %llu of %llu bytes at %llu", r->host, digest,
				 (unsigned long long)x.range_got, (unsigned long long)len,
				 (unsigned long long)off);
	return 0;
}

/* Where an upload goes on: the Location of @x's answer to @url, made
 * absolute, in *@loc (malloc'd; the one there before freed). It may name
 * another origin (an upload service): that one gets no credentials
 * (request_headers). */
static int upload_location(struct registry *r, const char *url, const struct xfer *x, char **loc,
			   struct anole_error *err)
{
	_cleanup_free_ char *was = NULL;
	if (asprintf(&was, "%s%s", strstr(url, "://") ? "" : r->base, url) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	char *next;
	int rc = registry_absolute_location(was, x->location, &next);
	if (rc == -ENOMEM)
		return anole_err(err, ENOMEM, "out of memory");
	if (rc < 0)
		return anole_err(err, EBADMSG, "%s: an upload Location that is no http(s) URL: %.200s",
				 r->host, x->location);
	free(*loc);
	*loc = next;
	return 0;
}


int registry_blob_push(struct registry *r, const char *repo, const char *digest, int fd,
		       uint64_t off, uint64_t len, const char *from, uint64_t chunk,
		       const char **how, struct anole_error *err)
{
	int rc = registry_blob_exists(r, repo, digest, NULL, err);
	if (rc != 0) {
		*how = "present";
		return rc < 0 ? rc : 0;
	}
	_cleanup_free_ char *path = registry_upload_path(repo, digest, from);
	_cleanup_free_ char *loc = NULL, *put = NULL;
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	struct strbuf sink = {0};
	struct xfer x = {.reg = r, .sock = -1, .method = "POST", .body = &sink, .max_body = 1u << 16};
	if ((rc = reg_request(r, path, NULL, repo, &x, err)) < 0)
		goto out;
	if (x.status == 201) {
		*how = "mounted";
		goto out;
	}
	if (fd < 0) {
		rc = anole_err(err, ENOENT, "%s: blob %s: the registry would not mount it from %s",
			       r->host, digest, from ? from : repo);
		goto out;
	}
	if (x.status != 202 || !x.location[0]) {
		rc = reg_http_error(r, path, x.status, err);
		goto out;
	}
	if ((rc = upload_location(r, path, &x, &loc, err)) < 0)
		goto out;
	/* chunked: PATCH each piece at its Content-Range, following Location */
	for (uint64_t done = 0; chunk && done < len;) {
		uint64_t n = MIN(chunk, len - done);
		char crange[80];
		snprintf(crange, sizeof(crange), "Content-Range: %llu-%llu", (unsigned long long)done,
			 (unsigned long long)(done + n - 1));
		x = (struct xfer){.reg = r, .sock = -1, .method = "PATCH", .body = &sink,
				  .max_body = 1u << 16, .upload_fd = fd, .upload_off = off + done,
				  .upload_len = n, .extra_header = crange,
				  .upload_type = "application/octet-stream"};
		reg_xfer_bound(&x, K_UPLOAD, n);
		if ((rc = reg_request(r, loc, NULL, repo, &x, err)) < 0)
			goto out;
		if (x.status != 202 || !x.location[0]) {
			rc = reg_http_error(r, "upload chunk", x.status, err);
			goto out;
		}
		if ((rc = upload_location(r, loc, &x, &loc, err)) < 0)
			goto out;
		done += n;
	}
	/* the upload URL plus one query parameter */
	if (asprintf(&put, "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest) < 0) {
		put = NULL;
		rc = anole_err(err, ENOMEM, "out of memory");
		goto out;
	}
	x = (struct xfer){.reg = r, .sock = -1, .method = "PUT", .body = &sink, .max_body = 1u << 16,
			  .upload_fd = fd, .upload_off = off, .upload_len = chunk ? 0 : len,
			  .upload_type = "application/octet-stream"};
	reg_xfer_bound(&x, K_UPLOAD, x.upload_len);
	if ((rc = reg_request(r, put, NULL, repo, &x, err)) < 0)
		goto out;
	if (x.status != 201) {
		rc = x.status == 400 ? anole_err(err, EBADMSG, "%s: %s: the registry refused the "
						 "blob (digest mismatch?)", r->host, digest)
				     : reg_http_error(r, "upload", x.status, err);
		goto out;
	}
	*how = "uploaded";
out:
	strbuf_release(&sink);
	return rc < 0 ? rc : 0;
}

int registry_put_manifest(struct registry *r, const char *repo, const char *ref,
			  const char *media_type, const void *body, size_t len,
			  struct anole_error *err)
{
	_cleanup_free_ char *path = registry_api_path(repo, "manifests", ref);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	struct strbuf sink = {0};
	struct xfer x = {.reg = r, .sock = -1, .method = "PUT", .body = &sink, .max_body = 1u << 16,
			 .upload_mem = body, .upload_len = len, .upload_type = media_type};
	reg_xfer_bound(&x, K_UPLOAD, len);
	int rc = reg_request(r, path, NULL, repo, &x, err);
	if (rc >= 0 && x.status != 201)
		rc = reg_http_error(r, path, x.status, err);
	if (rc < 0 && x.status == 400 && sink.len)
		snprintf(err->msg, sizeof(err->msg), "%s: %s:%s: manifest refused: %.200s", r->host,
			 repo, ref, sink.buf);
	strbuf_release(&sink);
	return rc < 0 ? rc : 0;
}
