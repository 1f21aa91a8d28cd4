/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An OCI distribution (registry) client over libcurl: manifests and blobs,
 * Bearer and Basic auth, redirects, retries with backoff. Every manifest
 * fetched by digest is checked here; blobs are checked by their readers.
 * Credentials go only to the registry's own origin (scheme, host, port),
 * and every call ends by a deadline (docs/SECURITY.md, "Registries").
 */
#ifndef ANOLE_REGISTRY_H
#define ANOLE_REGISTRY_H

#include "util/util.h"

struct registry_ref {
	char host[256];      /* host[:port] */
	char repo[256];      /* path in the registry */
	char reference[160]; /* a tag or "sha256:..." */
};
/* HOST[:PORT]/REPO[:TAG|@DIGEST], "docker://" already stripped. A user
 * name or password before the host is refused: they belong in the auth
 * file, not in references that end up in logs and state files. */
int registry_parse_ref(const char *ref, struct registry_ref *out, struct anole_error *err);

/* Credentials for one registry host, as an auth file holds them. */
struct registry_creds {
	char *basic;          /* base64 of USER:PASSWORD, or NULL */
	char *identity_token; /* an OAuth2 refresh token, or NULL */
};
int registry_creds_copy(struct registry_creds *to, const struct registry_creds *from);
/* Wipes and frees them. */
void registry_creds_release(struct registry_creds *c);
/* For a daemon mount request: the caller's credentials for the registry
 * a "docker://" @ref names, as {"basic": ..., "identity_token": ...}, or
 * *out = NULL when it has none (or @ref is no docker:// reference). */
struct json_t;
int registry_creds_for_ref(const char *ref, struct json_t **out, struct anole_error *err);

/* Credentials go to one origin, as curl's redirect rule has it: scheme,
 * host and port. *out gets "scheme://host:port" of an http(s) @url, host
 * in lower case, the port always written; false for other URLs and for
 * ones with user info. */
bool registry_url_origin(const char *url, char *out, size_t size);
/* A Location header as an absolute URL (*@out, malloc'd): as it is when
 * absolute (http or https), else a path on the origin of @url, the
 * request that got it. 0, -EINVAL for anything else, -ENOMEM. */
int registry_absolute_location(const char *url, const char *loc, char **out);

/* The paths of the registry API, built to their length (malloc'd; NULL
 * when out of memory): "/v2/REPO/KIND/REF" (KIND "manifests" or "blobs"),
 * and where an upload starts, "/v2/REPO/blobs/uploads/", with a
 * cross-repository mount "?mount=DIGEST&from=FROM" when @from is another
 * repository. */
char *registry_api_path(const char *repo, const char *kind, const char *ref);
char *registry_upload_path(const char *repo, const char *digest, const char *from);

struct registry;
/* tls_verify: 0 = verified HTTPS except plain HTTP for localhost,
 * 127.0.0.0/8 and [::1], 1 = always verified HTTPS, -1 = HTTPS without certificate
 * checks, falling back to plain HTTP. @creds: NULL for the caller's own
 * ($REGISTRY_AUTH_FILE, else ~/.docker/config.json), else these (copied; both NULL: none,
 * whatever the environment holds). */
int registry_new(const char *host, int tls_verify, const struct registry_creds *creds,
		 struct anole_error *err, struct registry **out);
void registry_free(struct registry *r);
/* Start loading libcurl in a thread of its own, for a process that will
 * soon need it: the first registry_new then finds it loaded, or waits
 * for the rest of the load. */
void registry_preload(void);

/* GET a manifest or index by tag or digest into @body (checked when @ref is
 * a digest, or against Docker-Content-Digest when the registry sends one),
 * refused when longer than @size (its descriptor's; 0: unknown, 4 MiB).
 * @media_type, if not NULL, gets the Content-Type (128 bytes). */
int registry_get_manifest(struct registry *r, const char *repo, const char *ref, uint64_t size,
			  struct strbuf *body, char *media_type, struct anole_error *err);

/* Stream a blob into a socket whose other end is returned in *fd; a thread
 * fetches it, resuming with Range requests after dropped connections. The
 * reader checks the digest. Close *fd, then call registry_fetch_end. */
struct registry_fetch;
int registry_blob_stream(struct registry *r, const char *repo, const char *digest,
			 uint64_t size, int *fd, struct registry_fetch **f,
			 struct anole_error *err);
int registry_fetch_end(struct registry_fetch *f, struct anole_error *err);

/* HEAD a blob: 1 when the registry has it (*size from Content-Length), 0
 * when not. */
int registry_blob_exists(struct registry *r, const char *repo, const char *digest,
			 uint64_t *size, struct anole_error *err);
/* Read [off, off+len) of a blob with one Range request into @buf. A 206
 * works; a 200 (a server ignoring Range) is read up to off+len when that
 * lies in the blob's first REGISTRY_RANGE_200_MAX bytes, else refused
 * unread (-EIO); 416 gives -ERANGE. The caller verifies the bytes.
 * @quick: one attempt, no retries. */
#define REGISTRY_RANGE_200_MAX (4ull << 20)
int registry_blob_range(struct registry *r, const char *repo, const char *digest, uint64_t off,
			uint64_t len, void *buf, bool quick, struct anole_error *err);
/* Upload [off, off+len) of @fd as blob @digest, unless the registry has
 * it; with @from (another repository), try a cross-repository mount
 * first. @chunk 0: one PUT; else PATCHes of @chunk bytes, then a PUT.
 * *how says what happened: "present", "mounted" or "uploaded". */
int registry_blob_push(struct registry *r, const char *repo, const char *digest, int fd,
		       uint64_t off, uint64_t len, const char *from, uint64_t chunk,
		       const char **how, struct anole_error *err);
int registry_put_manifest(struct registry *r, const char *repo, const char *ref,
			  const char *media_type, const void *body, size_t len,
			  struct anole_error *err);

#endif
