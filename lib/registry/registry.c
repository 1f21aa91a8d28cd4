/* SPDX-License-Identifier: Apache-2.0 */
#include "registry/registry.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/dyn_curl.h"

#define MAX_BODY (4u << 20)
#define MAX_ATTEMPTS 6
#define ACCEPT_MANIFESTS                                                                  \
	"Accept: application/vnd.oci.image.manifest.v1+json, "                            \
	"application/vnd.oci.image.index.v1+json, "                                       \
	"application/vnd.docker.distribution.manifest.v2+json, "                          \
	"application/vnd.docker.distribution.manifest.list.v2+json"

struct registry {
	char host[256];
	char base[300]; /* scheme://host */
	bool verify;
	bool may_downgrade; /* --tls-verify=false: plain HTTP if TLS fails */
	pthread_mutex_t lock; /* guards auth, shared with fetch threads */
	char *auth;           /* "Authorization: ..." or NULL */
	char *basic;          /* base64 user:pass from the auth file */
	char *identity_token;
	/* idle handles, each keeping its connections open: a lazy read's
	 * request then costs one round trip, not a TCP (and TLS) handshake
	 * more. Handles, not a curl share: libcurl does not support sharing a
	 * connection cache between threads. Under lock. */
	CURL *idle[16];
	size_t nidle;
};

/* ---- references ---------------------------------------------------------- */

int registry_parse_ref(const char *ref, struct registry_ref *out, struct anole_error *err)
{
	memset(out, 0, sizeof(*out));
	const char *slash = strchr(ref, '/');
	if (!slash || slash == ref)
		return anole_err(err, EINVAL, "docker://%s: expected docker://HOST/REPO[:TAG|@DIGEST]",
				 ref);
	size_t hl = (size_t)(slash - ref);
	bool is_host = memchr(ref, '.', hl) || memchr(ref, ':', hl) ||
		       (hl == 9 && !memcmp(ref, "localhost", 9));
	const char *rest = slash + 1;
	if (!is_host) { /* Docker Hub shorthand */
		snprintf(out->host, sizeof(out->host), "registry-1.docker.io");
		rest = ref;
	} else if (hl == 9 && !memcmp(ref, "docker.io", 9)) {
		snprintf(out->host, sizeof(out->host), "registry-1.docker.io");
	} else {
		if (hl >= sizeof(out->host))
			return anole_err(err, EINVAL, "docker://%s: host name too long", ref);
		memcpy(out->host, ref, hl);
	}
	const char *at = strchr(rest, '@');
	const char *lastslash = strrchr(rest, '/');
	const char *colon = strrchr(lastslash ? lastslash : rest, ':');
	size_t rl;
	if (at) {
		rl = (size_t)(at - rest);
		struct digest d;
		if (digest_parse(at + 1, &d) < 0)
			return anole_err(err, EINVAL, "docker://%s: '%s' is not a sha256 digest", ref,
					 at + 1);
		snprintf(out->reference, sizeof(out->reference), "%s", at + 1);
	} else if (colon) {
		rl = (size_t)(colon - rest);
		if (!colon[1] || strlen(colon + 1) > 128)
			return anole_err(err, EINVAL, "docker://%s: bad tag", ref);
		snprintf(out->reference, sizeof(out->reference), "%s", colon + 1);
	} else {
		rl = strlen(rest);
		snprintf(out->reference, sizeof(out->reference), "latest");
	}
	if (!rl || rl >= sizeof(out->repo))
		return anole_err(err, EINVAL, "docker://%s: bad repository name", ref);
	memcpy(out->repo, rest, rl);
	if (!is_host && !strchr(out->repo, '/')) {
		if (rl + 8 >= sizeof(out->repo))
			return anole_err(err, EINVAL, "docker://%s: bad repository name", ref);
		memmove(out->repo + 8, out->repo, rl + 1);
		memcpy(out->repo, "library/", 8);
	}
	for (const char *p = out->repo; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || strchr("._-/", *p)))
			return anole_err(err, EINVAL, "docker://%s: bad repository name '%s'", ref,
					 out->repo);
	for (const char *p = out->reference; *p && !at; p++)
		if (!(isalnum((unsigned char)*p) || strchr("._-", *p)))
			return anole_err(err, EINVAL, "docker://%s: bad tag '%s'", ref,
					 out->reference);
	return 0;
}

/* ---- credentials ---------------------------------------------------------- */

static bool local_host(const char *host)
{
	return !strncmp(host, "localhost", 9) && (!host[9] || host[9] == ':') ? true
	       : !strncmp(host, "127.", 4)                                   ? true
	       : !strncmp(host, "[::1]", 5);
}

/* Basic credentials or an identity token from the Docker-style auth file. */
static void load_credentials(struct registry *r)
{
	const char *path = getenv("REGISTRY_AUTH_FILE");
	char buf[4096];
	if (!path) {
		const char *home = getenv("HOME");
		if (!home)
			return;
		snprintf(buf, sizeof(buf), "%s/.docker/config.json", home);
		path = buf;
	}
	json_t *root = json_load_file(path, 0, NULL);
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *v;
	json_object_foreach(auths, key, v) {
		const char *k = key;
		if (!strncmp(k, "https://", 8))
			k += 8;
		else if (!strncmp(k, "http://", 7))
			k += 7;
		size_t kl = strcspn(k, "/");
		bool hub = !strcmp(r->host, "registry-1.docker.io") && !strncmp(k, "index.docker.io", kl);
		if (!hub && (kl != strlen(r->host) || strncmp(k, r->host, kl)))
			continue;
		const char *a = json_string_value(json_object_get(v, "auth"));
		const char *t = json_string_value(json_object_get(v, "identitytoken"));
		if (a && *a)
			r->basic = strdup(a);
		if (t && *t)
			r->identity_token = strdup(t);
		break;
	}
	json_decref(root);
}

int registry_new(const char *host, int tls_verify, struct anole_error *err, struct registry **out)
{
	/* every use of curl goes through a registry */
	int rc = anole_curl_load(err);
	if (rc < 0)
		return rc;
	struct registry *r = calloc(1, sizeof(*r));
	if (!r)
		return anole_err(err, ENOMEM, "out of memory");
	snprintf(r->host, sizeof(r->host), "%s", host);
	/* --tls-verify=false tries HTTPS without checks first and falls back to
	 * plain HTTP, as skopeo does; local hosts get plain HTTP, as in Docker */
	bool plain = tls_verify == 0 && local_host(host);
	r->verify = tls_verify >= 0;
	r->may_downgrade = tls_verify < 0;
	snprintf(r->base, sizeof(r->base), "%s://%s", plain ? "http" : "https", host);
	pthread_mutex_init(&r->lock, NULL);
	load_credentials(r);
	*out = r;
	return 0;
}

static void *preload_main(void *arg)
{
	(void)arg;
	anole_curl_load(NULL); /* a failure is registry_new's to report */
	return NULL;
}

void registry_preload(void)
{
	pthread_t t;
	if (!pthread_create(&t, NULL, preload_main, NULL))
		pthread_detach(t);
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	while (r->nidle)
		curl_easy_cleanup(r->idle[--r->nidle]);
	pthread_mutex_destroy(&r->lock);
	free(r->auth);
	free(r->basic);
	free(r->identity_token);
	free(r);
}

/* ---- one HTTP exchange ------------------------------------------------------ */

struct xfer {
	struct registry *reg;
	long status;
	char challenge[1024];    /* WWW-Authenticate */
	char content_type[128];
	char content_digest[80]; /* Docker-Content-Digest */
	/* body to memory ... */
	struct strbuf *body;
	size_t max_body;
	/* ... or to a socket, skipping what an earlier attempt delivered */
	int sock;
	uint64_t delivered, skip;
	long cur_status; /* of the response being received */
	bool too_big, write_failed;
	/* ... or one range into a buffer */
	char *range_buf;
	uint64_t range_off, range_len, range_got, range_seen;
	int max_attempts;     /* 0: MAX_ATTEMPTS */
	long stall_seconds;   /* 0: 60 */
	/* request */
	const char *method;       /* NULL: GET */
	const char *upload_type; /* Content-Type of the upload */
	int upload_fd;            /* upload [upload_off, +upload_len) of it */
	const void *upload_mem;   /* ... or this */
	uint64_t upload_off, upload_len, upload_pos;
	char location[2048]; /* Location of the last response */
	const char *extra_header;
	uint64_t content_length;
};

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl))
		return;
	line += nl;
	len -= nl;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	snprintf(out, outsz, "%.*s", (int)len, line);
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
	struct xfer *x = ctx;
	size_t len = size * n;
	if (len > 5 && !strncmp(line, "HTTP/", 5)) { /* a new response (redirects) */
		x->challenge[0] = x->content_type[0] = x->content_digest[0] = 0;
		x->location[0] = 0;
		x->range_got = x->range_seen = 0;
		const char *sp = memchr(line, ' ', len);
		x->cur_status = sp ? strtol(sp + 1, NULL, 10) : 0;
		/* a whole body where we asked for the rest: skip what we have */
		x->skip = x->cur_status == 200 ? x->delivered : 0;
		return len;
	}
	header_value(line, len, "www-authenticate:", x->challenge, sizeof(x->challenge));
	header_value(line, len, "content-type:", x->content_type, sizeof(x->content_type));
	header_value(line, len, "docker-content-digest:", x->content_digest,
		     sizeof(x->content_digest));
	header_value(line, len, "location:", x->location, sizeof(x->location));
	char cl[32] = "";
	header_value(line, len, "content-length:", cl, sizeof(cl));
	if (cl[0])
		x->content_length = strtoull(cl, NULL, 10);
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct xfer *x = ctx;
	size_t len = size * n;
	if (x->body) {
		if (x->body->len + len > x->max_body) {
			x->too_big = true;
			return 0;
		}
		return strbuf_add(x->body, data, len) < 0 ? 0 : len;
	}
	if (x->cur_status != 200 && x->cur_status != 206)
		return len; /* an error page, not blob bytes */
	if (x->range_buf) {
		/* 206: the range itself; 200: the whole blob, take our part */
		uint64_t at = x->cur_status == 200 ? x->range_seen : x->range_off + x->range_seen;
		x->range_seen += len;
		uint64_t from = MAX(at, x->range_off), to = MIN(at + len, x->range_off + x->range_len);
		if (to > from) {
			memcpy(x->range_buf + (from - x->range_off), data + (from - at), to - from);
			x->range_got = MAX(x->range_got, to - x->range_off);
		}
		return len;
	}
	size_t keep = len;
	if (x->skip) {
		size_t s = (size_t)MIN((uint64_t)len, x->skip);
		x->skip -= s;
		data += s;
		keep -= s;
	}
	while (keep) {
		ssize_t w = send(x->sock, data, keep, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			x->write_failed = true;
			return 0;
		}
		data += w;
		keep -= (size_t)w;
		x->delivered += (uint64_t)w;
	}
	return len;
}

static size_t on_upload(char *buf, size_t size, size_t n, void *ctx)
{
	struct xfer *x = ctx;
	size_t want = (size_t)MIN((uint64_t)(size * n), x->upload_len - x->upload_pos);
	if (!want)
		return 0;
	if (x->upload_mem) {
		memcpy(buf, (const char *)x->upload_mem + x->upload_pos, want);
	} else {
		ssize_t got = pread(x->upload_fd, buf, want, (off_t)(x->upload_off + x->upload_pos));
		if (got <= 0)
			return CURL_READFUNC_ABORT;
		want = (size_t)got;
	}
	x->upload_pos += want;
	return want;
}

/* An idle handle (its options reset, its connections kept) or a new one. */
static CURL *get_handle(struct registry *r)
{
	CURL *c = NULL;
	pthread_mutex_lock(&r->lock);
	if (r->nidle)
		c = r->idle[--r->nidle];
	pthread_mutex_unlock(&r->lock);
	if (!c)
		return curl_easy_init();
	curl_easy_reset(c);
	return c;
}

static void put_handle(struct registry *r, CURL *c)
{
	pthread_mutex_lock(&r->lock);
	if (r->nidle < ARRAY_SIZE(r->idle)) {
		r->idle[r->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	if (c)
		curl_easy_cleanup(c);
}

static CURL *new_handle(struct xfer *x, const char *url, struct curl_slist *hdrs)
{
	CURL *c = get_handle(x->reg);
	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	/* uploads answer with a Location to follow by hand; GETs may redirect */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, x->method ? 0L : 1L);
	if (x->method && !strcmp(x->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (x->method) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_upload);
		curl_easy_setopt(c, CURLOPT_READDATA, x);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->upload_len);
		x->upload_pos = 0;
	}
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a stalled transfer (under 1 KiB/s for 60 s) is dropped and retried */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, x->stall_seconds ? x->stall_seconds : 60L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "anole/" ANOLE_VERSION);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
	if (!x->reg->verify) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return c;
}

static bool transient(CURLcode cc, long status)
{
	if (cc == CURLE_OK)
		return status >= 500 || status == 429 || status == 408;
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static void backoff(int attempt)
{
	/* 0.25 s, 0.5 s, 1 s, 2 s, 4 s */
	usleep((useconds_t)(250000u << (attempt < 5 ? attempt : 4)));
}

/* ---- auth ------------------------------------------------------------------- */

/* key="value" from a Bearer challenge */
static bool challenge_param(const char *ch, const char *key, char *out, size_t outsz)
{
	size_t kl = strlen(key);
	for (const char *p = ch; (p = strcasestr(p, key)); p += kl) {
		if ((p != ch && !strchr(" ,", p[-1])) || p[kl] != '=' || p[kl + 1] != '"')
			continue;
		const char *v = p + kl + 2, *end = strchr(v, '"');
		if (!end)
			return false;
		snprintf(out, outsz, "%.*s", (int)(end - v), v);
		return true;
	}
	return false;
}

static void set_auth(struct registry *r, const char *scheme, const char *cred)
{
	char *h = NULL;
	if (asprintf(&h, "Authorization: %s %s", scheme, cred) < 0)
		h = NULL;
	pthread_mutex_lock(&r->lock);
	free(r->auth);
	r->auth = h;
	pthread_mutex_unlock(&r->lock);
}

/* Answer a 401: get a token from the realm the challenge names. */
static int authenticate(struct registry *r, const char *challenge, const char *repo,
			struct anole_error *err)
{
	if (!strncasecmp(challenge, "Basic", 5)) {
		if (!r->basic)
			return anole_err(err, EACCES,
					 "%s: the registry wants a user name and password (none for "
					 "this host in ~/.docker/config.json or $REGISTRY_AUTH_FILE)",
					 r->host);
		set_auth(r, "Basic", r->basic);
		return 0;
	}
	if (strncasecmp(challenge, "Bearer", 6))
		return anole_err(err, EACCES, "%s: unsupported authentication challenge '%.100s'",
				 r->host, challenge);
	char realm[512], service[256] = "", scope[512] = "";
	if (!challenge_param(challenge, "realm", realm, sizeof(realm)))
		return anole_err(err, EACCES, "%s: a Bearer challenge without a realm", r->host);
	challenge_param(challenge, "service", service, sizeof(service));
	if (!challenge_param(challenge, "scope", scope, sizeof(scope)))
		snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	if (strncmp(realm, "https://", 8) && strncmp(realm, "http://", 7))
		return anole_err(err, EACCES, "%s: token realm '%s' is not an http(s) URL", r->host,
				 realm);

	struct strbuf body = {0};
	struct xfer x = {.reg = r, .body = &body, .max_body = 1u << 20};
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *post = NULL;
	CURL *c = curl_easy_init();
	int rc = -ENOMEM;
	if (!c)
		goto out;
	char *es = curl_easy_escape(c, service, 0), *sc = curl_easy_escape(c, scope, 0);
	if (r->identity_token) {
		char *tok = curl_easy_escape(c, r->identity_token, 0);
		if (asprintf(&post, "grant_type=refresh_token&client_id=anole&service=%s&scope=%s"
				    "&refresh_token=%s", es, sc, tok) < 0)
			post = NULL;
		curl_free(tok);
		url = strdup(realm);
	} else if (asprintf(&url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
			    es, sc) < 0) {
		url = NULL;
	}
	curl_free(es);
	curl_free(sc);
	curl_easy_cleanup(c);
	if (!url)
		goto out;
	if (r->basic && !r->identity_token) {
		char h[1024];
		snprintf(h, sizeof(h), "Authorization: Basic %s", r->basic);
		hdrs = curl_slist_append(hdrs, h);
	}
	for (int attempt = 0;; attempt++) {
		body.len = 0;
		c = new_handle(&x, url, hdrs);
		if (!c)
			goto out;
		if (post)
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
		CURLcode cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x.status);
		put_handle(r, c);
		if (transient(cc, x.status) && attempt + 1 < MAX_ATTEMPTS) {
			backoff(attempt);
			continue;
		}
		if (cc != CURLE_OK || x.status != 200) {
			rc = anole_err(err, EACCES, "%s: token request to %s failed: %s", r->host, realm,
				       cc != CURLE_OK ? curl_easy_strerror(cc) : "HTTP error");
			if (cc == CURLE_OK)
				snprintf(err->msg, sizeof(err->msg),
					 "%s: token request to %s answered HTTP %ld", r->host, realm,
					 x.status);
			goto out;
		}
		break;
	}
	json_t *j = json_loadb(body.buf ? body.buf : "", body.len, 0, NULL);
	const char *tok = json_string_value(json_object_get(j, "token"));
	if (!tok || !*tok)
		tok = json_string_value(json_object_get(j, "access_token"));
	if (tok && *tok && !strpbrk(tok, "\r\n")) {
		set_auth(r, "Bearer", tok);
		rc = 0;
	} else {
		rc = anole_err(err, EACCES, "%s: the token endpoint %s gave no token", r->host, realm);
	}
	json_decref(j);
out:
	if (rc == -ENOMEM)
		rc = anole_err(err, ENOMEM, "out of memory");
	curl_slist_free_all(hdrs);
	free(url);
	free(post);
	strbuf_release(&body);
	return rc;
}

/* ---- requests ---------------------------------------------------------------- */

/*
 * GET @path with retries; answers 401 once by authenticating. On return
 * x->status holds the final HTTP status. For socket transfers the Range
 * header resumes after what was delivered.
 */
static int request(struct registry *r, const char *path, const char *accept, const char *repo,
		   struct xfer *x, struct anole_error *err)
{
	char url[2400];
	if (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8))
		snprintf(url, sizeof(url), "%s", path); /* an upload Location */
	else
		snprintf(url, sizeof(url), "%s%s", r->base, path);
	bool authed = false;
	for (int attempt = 0;;) {
		struct curl_slist *hdrs = NULL;
		char range[64];
		pthread_mutex_lock(&r->lock);
		if (r->auth)
			hdrs = curl_slist_append(hdrs, r->auth);
		pthread_mutex_unlock(&r->lock);
		if (accept)
			hdrs = curl_slist_append(hdrs, accept);
		if (x->delivered) {
			snprintf(range, sizeof(range), "Range: bytes=%llu-",
				 (unsigned long long)x->delivered);
			hdrs = curl_slist_append(hdrs, range);
		} else if (x->range_buf) {
			snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
				 (unsigned long long)x->range_off,
				 (unsigned long long)(x->range_off + x->range_len - 1));
			hdrs = curl_slist_append(hdrs, range);
		}
		if (x->extra_header)
			hdrs = curl_slist_append(hdrs, x->extra_header);
		char ctype[200];
		if (x->upload_type) {
			snprintf(ctype, sizeof(ctype), "Content-Type: %s", x->upload_type);
			hdrs = curl_slist_append(hdrs, ctype);
		}
		if (x->body)
			x->body->len = 0;
		CURL *c = new_handle(x, url, hdrs);
		if (!c) {
			curl_slist_free_all(hdrs);
			return anole_err(err, ENOMEM, "out of memory");
		}
		CURLcode cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
		put_handle(r, c);
		curl_slist_free_all(hdrs);
		if (x->write_failed)
			return anole_err(err, EPIPE, "%s: reader went away", path);
		if (x->too_big)
			return anole_err(err, EFBIG, "%s%s: response larger than %zu bytes", r->base,
					 path, x->max_body);
		if (cc == CURLE_SSL_CONNECT_ERROR && r->may_downgrade &&
		    !strncmp(r->base, "https:", 6)) {
			char plain[sizeof(r->base)];
			snprintf(plain, sizeof(plain), "http://%s", r->host);
			memcpy(r->base, plain, sizeof(plain));
			snprintf(url, sizeof(url), "%s%s", r->base, path);
			r->may_downgrade = false;
			continue;
		}
		/* 416 comes with the whole Content-Length but no body: curl
		 * calls that a partial file; the status is what counts */
		if (cc == CURLE_PARTIAL_FILE && x->status == 416)
			cc = CURLE_OK;
		if (cc == CURLE_OK && x->status == 401 && !authed && x->challenge[0]) {
			int rc = authenticate(r, x->challenge, repo, err);
			if (rc < 0)
				return rc;
			authed = true;
			continue;
		}
		if (transient(cc, x->status) &&
		    ++attempt < (x->max_attempts ? x->max_attempts : MAX_ATTEMPTS)) {
			backoff(attempt - 1);
			continue;
		}
		if (cc != CURLE_OK)
			return anole_err(err, EIO, "%s%s: %s", r->base, path, curl_easy_strerror(cc));
		return 0;
	}
}

static int http_error(struct registry *r, const char *what, long status, struct anole_error *err)
{
	if (status == 401 || status == 403)
		return anole_err(err, EACCES, "%s: %s: access denied (HTTP %ld)", r->host, what,
				 status);
	if (status == 404)
		return anole_err(err, ENOENT, "%s: %s: not found (HTTP 404)", r->host, what);
	return anole_err(err, EIO, "%s: %s: HTTP %ld", r->host, what, status);
}

int registry_get_manifest(struct registry *r, const char *repo, const char *ref,
			  struct strbuf *body, char *media_type, struct anole_error *err)
{
	char path[600];
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
	struct xfer x = {.reg = r, .body = body, .max_body = MAX_BODY, .sock = -1};
	body->len = 0;
	int rc = request(r, path, ACCEPT_MANIFESTS, repo, &x, err);
	if (rc < 0)
		return rc;
	char what[600];
	snprintf(what, sizeof(what), "%s%s%s", repo, strncmp(ref, "sha256:", 7) ? ":" : "@", ref);
	if (x.status != 200)
		return http_error(r, what, x.status, err);
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
	char path[600];
	char repo[256];
	uint64_t size;
	int sock;
	pthread_t thread;
	struct anole_error err;
	int rc;
};

static void *fetch_main(void *arg)
{
	struct registry_fetch *f = arg;
	struct xfer x = {.reg = f->reg, .sock = f->sock};
	for (int resumes = 0;; resumes++) {
		f->rc = request(f->reg, f->path, NULL, f->repo, &x, &f->err);
		if (f->rc < 0)
			break;
		if (x.status != 200 && x.status != 206) {
			f->rc = http_error(f->reg, f->path, x.status, &f->err);
			break;
		}
		if (x.delivered >= f->size || resumes >= MAX_ATTEMPTS)
			break;
		/* The body ended early without a curl error: resume. */
		backoff(resumes);
	}
	shutdown(f->sock, SHUT_WR);
	close(f->sock);
	return NULL;
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
	snprintf(f->repo, sizeof(f->repo), "%s", repo);
	snprintf(f->path, sizeof(f->path), "/v2/%s/blobs/%s", repo, digest);
	if (pthread_create(&f->thread, NULL, fetch_main, f)) {
		close(sv[0]);
		close(sv[1]);
		free(f);
		return anole_err(err, EAGAIN, "cannot start a download thread");
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
	free(f);
	return rc;
}

/* ---- issue 5: ranges, existence, uploads ------------------------------------- */

int registry_blob_exists(struct registry *r, const char *repo, const char *digest,
			 uint64_t *size, struct anole_error *err)
{
	char path[600];
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
	struct xfer x = {.reg = r, .sock = -1, .method = "HEAD"};
	struct strbuf sink = {0};
	x.body = &sink;
	x.max_body = 1;
	int rc = request(r, path, NULL, repo, &x, err);
	strbuf_release(&sink);
	if (rc < 0)
		return rc;
	if (x.status == 404)
		return 0;
	if (x.status != 200)
		return http_error(r, path, x.status, err);
	if (size)
		*size = x.content_length;
	return 1;
}

int registry_blob_range(struct registry *r, const char *repo, const char *digest, uint64_t off,
			uint64_t len, void *buf, bool quick, struct anole_error *err)
{
	char path[600];
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
	if (!len)
		return 0;
	/* a reader waits on these: a stall ends sooner than a download's */
	struct xfer x = {.reg = r, .sock = -1, .range_buf = buf, .range_off = off, .range_len = len,
			 .max_attempts = quick ? 1 : 0, .stall_seconds = 15};
	int rc = request(r, path, NULL, repo, &x, err);
	if (rc < 0)
		return rc;
	if (x.status == 416)
		return anole_err(err, ERANGE, "%s: %s: bytes %llu-%llu are beyond the blob",
				 r->host, digest, (unsigned long long)off,
				 (unsigned long long)(off + len - 1));
	if (x.status != 200 && x.status != 206)
		return http_error(r, path, x.status, err);
	if (x.range_got != len)
		return anole_err(err, EIO, "%s: %s: %llu of %llu bytes at %llu", r->host, digest,
				 (unsigned long long)x.range_got, (unsigned long long)len,
				 (unsigned long long)off);
	return 0;
}

/* An upload URL plus a query parameter. */
static void with_param(char *out, size_t size, const char *loc, const char *param)
{
	snprintf(out, size, "%s%s%s", loc, strchr(loc, '?') ? "&" : "?", param);
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
	char path[1200], loc[2048];
	struct strbuf sink = {0};
	struct xfer x = {.reg = r, .sock = -1, .method = "POST", .body = &sink, .max_body = 1u << 16};
	if (from && strcmp(from, repo))
		snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, digest,
			 from);
	else
		snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
	if ((rc = request(r, path, NULL, repo, &x, err)) < 0)
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
		rc = http_error(r, path, x.status, err);
		goto out;
	}
	snprintf(loc, sizeof(loc), "%s", x.location);
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
		if ((rc = request(r, loc, NULL, repo, &x, err)) < 0)
			goto out;
		if (x.status != 202 || !x.location[0]) {
			rc = http_error(r, "upload chunk", x.status, err);
			goto out;
		}
		snprintf(loc, sizeof(loc), "%s", x.location);
		done += n;
	}
	char param[100], put[2200];
	snprintf(param, sizeof(param), "digest=%s", digest);
	with_param(put, sizeof(put), loc, param);
	x = (struct xfer){.reg = r, .sock = -1, .method = "PUT", .body = &sink, .max_body = 1u << 16,
			  .upload_fd = fd, .upload_off = off, .upload_len = chunk ? 0 : len,
			  .upload_type = "application/octet-stream"};
	if ((rc = request(r, put, NULL, repo, &x, err)) < 0)
		goto out;
	if (x.status != 201) {
		rc = x.status == 400 ? anole_err(err, EBADMSG, "%s: %s: the registry refused the "
						 "blob (digest mismatch?)", r->host, digest)
				     : http_error(r, "upload", x.status, err);
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
	char path[600];
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
	struct strbuf sink = {0};
	struct xfer x = {.reg = r, .sock = -1, .method = "PUT", .body = &sink, .max_body = 1u << 16,
			 .upload_mem = body, .upload_len = len, .upload_type = media_type};
	int rc = request(r, path, NULL, repo, &x, err);
	if (rc >= 0 && x.status != 201)
		rc = http_error(r, path, x.status, err);
	if (rc < 0 && x.status == 400 && sink.len)
		snprintf(err->msg, sizeof(err->msg), "%s: %s:%s: manifest refused: %.200s", r->host,
			 repo, ref, sink.buf);
	strbuf_release(&sink);
	return rc < 0 ? rc : 0;
}
