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
#define MAX_ERROR_PAGE (64u << 10) /* of a 4xx/5xx answer's body, the rest unread */
#define ACCEPT_MANIFESTS                                                                  \
	"Accept: application/vnd.oci.image.manifest.v1+json, "                            \
	"application/vnd.oci.image.index.v1+json, "                                       \
	"application/vnd.docker.distribution.manifest.v2+json, "                          \
	"application/vnd.docker.distribution.manifest.list.v2+json"

/*
 * Bounds on every call (docs/SECURITY.md, "Registries"). An attempt is
 * dropped once it moved under STALL_RATE bytes/s for its kind's stall
 * time; after MAX_STALLS such stalls the call fails. The whole call (its
 * attempts, redirects, token requests and backoff) ends by its deadline:
 * the kind's floor plus its bytes at the kind's minimum rate.
 */
#define STALL_RATE 1024L
#define MAX_STALLS 2
#define CONNECT_TIMEOUT 10L
enum kind {
	K_DOC,    /* manifests, tokens, HEAD, upload answers: small JSON */
	K_RANGE,  /* a range a lazy reader waits for */
	K_BLOB,   /* a whole blob whose size is known */
	K_UPLOAD, /* a blob (or manifest) sent */
};
static const struct bound {
	long stall;      /* seconds under STALL_RATE */
	double floor;    /* seconds */
	double min_rate; /* bytes per second the deadline allows for */
} bounds[] = {
	[K_DOC] = {10, 30, 0},
	[K_RANGE] = {5, 8, 128 << 10},
	[K_BLOB] = {30, 30, 64 << 10},
	[K_UPLOAD] = {30, 30, 64 << 10},
};

struct registry {
	char host[256];
	char base[300]; /* scheme://host */
	bool verify;
	bool may_downgrade; /* --tls-verify=false: plain HTTP if TLS fails */
	pthread_mutex_t lock; /* guards auth, shared with fetch threads */
	char *auth;           /* "Authorization: ..." or NULL */
	char auth_origin[320]; /* the only origin that gets it */
	struct registry_creds creds;
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
	const char *at_host = memchr(ref, '@', hl);
	if (at_host) /* (the part before '@' is never printed) */
		return anole_err(err, EINVAL,
				 "docker://…@%s: a reference may not hold a user name or password; "
				 "put them in the auth file ($REGISTRY_AUTH_FILE or "
				 "~/.docker/config.json, see docs/CLI.md)",
				 at_host + 1);
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

void registry_creds_release(struct registry_creds *c)
{
	if (c->basic)
		explicit_bzero(c->basic, strlen(c->basic));
	if (c->identity_token)
		explicit_bzero(c->identity_token, strlen(c->identity_token));
	free(c->basic);
	free(c->identity_token);
	c->basic = c->identity_token = NULL;
}

int registry_creds_copy(struct registry_creds *to, const struct registry_creds *from)
{
	*to = (struct registry_creds){0};
	if ((from->basic && !(to->basic = strdup(from->basic))) ||
	    (from->identity_token && !(to->identity_token = strdup(from->identity_token)))) {
		registry_creds_release(to);
		return -ENOMEM;
	}
	return 0;
}

/* The caller's credentials for @host from $REGISTRY_AUTH_FILE, else
 * ~/.docker/config.json (auths.HOST.auth, identitytoken): Basic
 * credentials or an identity token; none: both NULL. -ENOMEM only. */
static int registry_creds_load(const char *host, struct registry_creds *out)
{
	*out = (struct registry_creds){0};
	const char *path = getenv("REGISTRY_AUTH_FILE");
	char buf[4096];
	if (!path) {
		const char *home = getenv("HOME");
		if (!home)
			return 0;
		snprintf(buf, sizeof(buf), "%s/.docker/config.json", home);
		path = buf;
	}
	json_t *root = json_load_file(path, 0, NULL);
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *v;
	int r = 0;
	json_object_foreach(auths, key, v) {
		const char *k = key;
		if (!strncmp(k, "https://", 8))
			k += 8;
		else if (!strncmp(k, "http://", 7))
			k += 7;
		size_t kl = strcspn(k, "/");
		bool hub = !strcmp(host, "registry-1.docker.io") && !strncmp(k, "index.docker.io", kl);
		if (!hub && (kl != strlen(host) || strncmp(k, host, kl)))
			continue;
		struct registry_creds found = {
			.basic = (char *)json_string_value(json_object_get(v, "auth")),
			.identity_token = (char *)json_string_value(json_object_get(v, "identitytoken")),
		};
		if (found.basic && !*found.basic)
			found.basic = NULL;
		if (found.identity_token && !*found.identity_token)
			found.identity_token = NULL;
		r = registry_creds_copy(out, &found);
		break;
	}
	json_decref(root);
	return r;
}

int registry_creds_for_ref(const char *ref, json_t **out, struct anole_error *err)
{
	*out = NULL;
	if (strncmp(ref, "docker://", 9))
		return 0;
	struct registry_ref rr;
	struct registry_creds c;
	int r = registry_parse_ref(ref + 9, &rr, err);
	if (r < 0)
		return r;
	if (registry_creds_load(rr.host, &c) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	if (c.basic || c.identity_token) {
		*out = json_object();
		if (!*out || (c.basic && json_object_set_new(*out, "basic", json_string(c.basic))) ||
		    (c.identity_token &&
		     json_object_set_new(*out, "identity_token", json_string(c.identity_token)))) {
			json_decref(*out);
			*out = NULL;
			r = anole_err(err, ENOMEM, "out of memory");
		}
	}
	registry_creds_release(&c);
	return r;
}

int anole_mount_credentials(const char *ref, char **json, struct anole_error *err)
{
	json_t *j = NULL;
	*json = NULL;
	int r = registry_creds_for_ref(ref, &j, err);
	if (r >= 0 && j && !(*json = json_dumps(j, JSON_COMPACT)))
		r = anole_err(err, ENOMEM, "out of memory");
	json_decref(j); /* (jansson frees its strings without wiping them) */
	return r;
}

int registry_new(const char *host, int tls_verify, const struct registry_creds *creds,
		 struct anole_error *err, struct registry **out)
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
	if ((creds ? registry_creds_copy(&r->creds, creds) : registry_creds_load(host, &r->creds)) <
	    0) {
		registry_free(r);
		return anole_err(err, ENOMEM, "out of memory");
	}
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
	if (r->auth)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	registry_creds_release(&r->creds);
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
	/* ... or to a socket, skipping what an earlier attempt delivered, up
	 * to @limit bytes (the descriptor's size: more is not read) */
	int sock;
	uint64_t delivered, skip, limit;
	long cur_status; /* of the response being received */
	uint64_t content_length; /* of the response being received, 0: not sent */
	uint64_t error_page;     /* bytes of an error answer's body seen */
	bool too_big, write_failed;
	bool done; /* all that was needed came; the rest was not read */
	/* ... or one range into a buffer */
	char *range_buf;
	uint64_t range_off, range_len, range_got, range_seen;
	uint64_t range_start; /* where a 206's body starts (Content-Range) */
	bool range_refused;   /* a 200 that would cost too much to read */
	int max_attempts;     /* 0: MAX_ATTEMPTS */
	/* bounds: every attempt's stall time, the whole call's deadline */
	enum kind kind;
	double started, deadline; /* now_seconds(); deadline 0: set by request */
	int stalls;
	/* request */
	const char *method;       /* NULL: GET */
	const char *upload_type; /* Content-Type of the upload */
	int upload_fd;            /* upload [upload_off, +upload_len) of it */
	const void *upload_mem;   /* ... or this */
	uint64_t upload_off, upload_len, upload_pos;
	char location[2048]; /* Location of the last response */
	const char *extra_header;
	bool no_redirects; /* the request carries a secret in its body */
};

/* The call's bounds: its kind's stall time, and a deadline @bytes allow. */
static void xfer_bound(struct xfer *x, enum kind kind, uint64_t bytes)
{
	const struct bound *b = &bounds[kind];
	x->kind = kind;
	x->started = now_seconds();
	x->deadline = x->started + b->floor + (b->min_rate > 0 ? (double)bytes / b->min_rate : 0);
}

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
		x->range_start = x->range_off;
		x->content_length = x->error_page = 0;
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
	char v[80] = "";
	header_value(line, len, "content-length:", v, sizeof(v));
	if (v[0])
		x->content_length = strtoull(v, NULL, 10);
	v[0] = 0;
	header_value(line, len, "content-range:", v, sizeof(v)); /* bytes FIRST-LAST/SIZE */
	if (!strncmp(v, "bytes ", 6) && isdigit((unsigned char)v[6]))
		x->range_start = strtoull(v + 6, NULL, 10);
	return len;
}

/* A range request's answer: a 206 holds the range (from its Content-Range
 * start), a 200 the blob from byte 0, taken only when the range ends in
 * its first REGISTRY_RANGE_200_MAX bytes. Once the range is in, anything
 * more is not read: the transfer ends there. */
static size_t range_body(struct xfer *x, const char *data, size_t len)
{
	uint64_t end = x->range_off + x->range_len;
	if (x->cur_status == 200 && end > REGISTRY_RANGE_200_MAX) {
		x->range_refused = true;
		return 0;
	}
	uint64_t at = (x->cur_status == 206 ? x->range_start : 0) + x->range_seen;
	x->range_seen += len;
	uint64_t from = MAX(at, x->range_off), to = MIN(at + len, end);
	if (to > from) {
		memcpy(x->range_buf + (from - x->range_off), data + (from - at), to - from);
		x->range_got += to - from;
	}
	if (at + len < end || (x->content_length && x->range_seen == x->content_length))
		return len; /* more to come, or the answer ends here */
	x->done = true;
	return 0;
}

/* A blob into the socket: what an earlier attempt delivered is skipped,
 * and nothing past the descriptor's size is read. */
static size_t stream_body(struct xfer *x, char *data, size_t len)
{
	size_t keep = len;
	if (x->skip) {
		size_t s = (size_t)MIN((uint64_t)len, x->skip);
		x->skip -= s;
		data += s;
		keep -= s;
	}
	if (keep > x->limit - MIN(x->delivered, x->limit)) {
		keep = (size_t)(x->limit - MIN(x->delivered, x->limit));
		x->done = true;
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
	return x->done ? 0 : len;
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
	if (x->cur_status != 200 && x->cur_status != 206) {
		/* an error page, not blob bytes: its status is what counts */
		x->error_page += len;
		x->done = x->error_page > MAX_ERROR_PAGE;
		return x->done ? 0 : len;
	}
	return x->range_buf ? range_body(x, data, len) : stream_body(x, data, len);
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
	/* uploads answer with a Location to follow by hand; GETs may
	 * redirect, and curl sends no Authorization header to another
	 * origin then (UNRESTRICTED_AUTH off: its default, said again) */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, x->method || x->no_redirects ? 0L : 1L);
	curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
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
	/* the call's deadline bounds this attempt; a stall ends it sooner */
	double left = x->deadline - now_seconds();
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)MAX(left * 1000, 1.0));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, STALL_RATE);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, bounds[x->kind].stall);
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

/* 0.25 s, 0.5 s, 1 s, 2 s, 4 s, never past the call's deadline */
static void backoff(const struct xfer *x, int attempt)
{
	double s = 0.25 * (1 << (attempt < 5 ? attempt : 4));
	double left = x->deadline - now_seconds();
	if (left > 0)
		usleep((useconds_t)(MIN(s, left) * 1e6));
}

/* ---- origins ------------------------------------------------------------------ */

bool registry_url_origin(const char *url, char *out, size_t size)
{
	bool tls = !strncasecmp(url, "https://", 8);
	if (!tls && strncasecmp(url, "http://", 7))
		return false;
	const char *h = url + (tls ? 8 : 7);
	size_t n = strcspn(h, "/?#");
	if (!n || memchr(h, '@', n))
		return false;
	/* [v6 literal] or name, then :port */
	const char *after = h[0] == '[' ? memchr(h, ']', n) : h;
	if (!after)
		return false;
	const char *colon = memchr(after, ':', n - (size_t)(after - h));
	size_t hl = colon ? (size_t)(colon - h) : n, pl = colon ? n - hl - 1 : 0;
	char port[8] = "";
	if (!hl || pl >= sizeof(port) || (pl && strspn(colon + 1, "0123456789") < pl))
		return false;
	memcpy(port, colon ? colon + 1 : "", pl);
	long p = pl ? strtol(port, NULL, 10) : tls ? 443 : 80;
	int w = snprintf(out, size, "%s://%.*s:%ld", tls ? "https" : "http", (int)hl, h, p);
	if (w < 0 || (size_t)w >= size)
		return false;
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return true;
}

static bool same_origin(const char *url, const char *origin)
{
	char o[320];
	return *origin && registry_url_origin(url, o, sizeof(o)) && !strcmp(o, origin);
}

bool registry_absolute_location(const char *url, const char *loc, char *out, size_t size)
{
	int w;
	if (!strncasecmp(loc, "http://", 7) || !strncasecmp(loc, "https://", 8)) {
		w = snprintf(out, size, "%s", loc);
	} else if (loc[0] == '/' && loc[1] != '/' && strstr(url, "://")) {
		const char *h = strstr(url, "://") + 3;
		w = snprintf(out, size, "%.*s%s", (int)(h + strcspn(h, "/?#") - url), url, loc);
	} else {
		return false;
	}
	return w >= 0 && (size_t)w < size;
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

/* The header goes to the registry's origin only (its base now). */
static void set_auth(struct registry *r, const char *scheme, const char *cred)
{
	char *h = NULL;
	if (asprintf(&h, "Authorization: %s %s", scheme, cred) < 0)
		h = NULL;
	pthread_mutex_lock(&r->lock);
	if (r->auth)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	r->auth = h;
	if (!registry_url_origin(r->base, r->auth_origin, sizeof(r->auth_origin)))
		r->auth_origin[0] = 0;
	pthread_mutex_unlock(&r->lock);
}

/* GET (or, with an identity token, POST) the token endpoint @url; the
 * user's credentials go with it as @hdrs or @post. A POST follows no
 * redirect (curl would send its body on to any origin); a GET's
 * Authorization stays with the realm's origin (curl's rule). */
static int token_request(struct registry *r, const char *url, const char *realm,
			 struct curl_slist *hdrs, const char *post, struct strbuf *body,
			 double deadline, struct anole_error *err)
{
	struct xfer x = {.reg = r, .body = body, .max_body = 1u << 20, .no_redirects = post != NULL};
	xfer_bound(&x, K_DOC, 0);
	/* within the deadline of the call that met the 401, too */
	if (deadline > 0 && deadline < x.deadline)
		x.deadline = deadline;
	for (int attempt = 0;; attempt++) {
		body->len = 0;
		CURL *c = new_handle(&x, url, hdrs);
		if (!c)
			return anole_err(err, ENOMEM, "out of memory");
		if (post)
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
		CURLcode cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x.status);
		put_handle(r, c);
		if (transient(cc, x.status) && attempt + 1 < MAX_ATTEMPTS &&
		    now_seconds() < x.deadline) {
			backoff(&x, attempt);
			continue;
		}
		if (cc != CURLE_OK)
			return anole_err(err, EACCES, "%s: token request to %s failed: %s", r->host,
					 realm, curl_easy_strerror(cc));
		if (x.status != 200)
			return anole_err(err, EACCES, "%s: token request to %s answered HTTP %ld",
					 r->host, realm, x.status);
		return 0;
	}
}

/* A Bearer token from the realm a challenge of the registry names. The
 * user's credentials go there as Docker sends them (the registry chose
 * the realm, and could as well have asked for them itself), but never in
 * clear from a registry reached over https. */
static int bearer_token(struct registry *r, const char *challenge, const char *repo,
			double deadline, struct anole_error *err)
{
	char realm[512], service[256] = "", scope[512] = "";
	if (!challenge_param(challenge, "realm", realm, sizeof(realm)))
		return anole_err(err, EACCES, "%s: a Bearer challenge without a realm", r->host);
	challenge_param(challenge, "service", service, sizeof(service));
	if (!challenge_param(challenge, "scope", scope, sizeof(scope)))
		snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	if (strncmp(realm, "https://", 8) && strncmp(realm, "http://", 7))
		return anole_err(err, EACCES, "%s: token realm '%s' is not an http(s) URL", r->host,
				 realm);
	const struct registry_creds *cr = &r->creds;
	if ((cr->basic || cr->identity_token) && strncmp(realm, "https://", 8) &&
	    !strncmp(r->base, "https://", 8))
		return anole_err(err, EACCES,
				 "%s: token realm %s is plain http: credentials are not sent in "
				 "clear for an https registry",
				 r->host, realm);

	struct strbuf body = {0};
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *post = NULL, *es = NULL, *sc = NULL, *tok = NULL;
	CURL *c = curl_easy_init();
	int rc = -ENOMEM;
	if (!c || !(es = curl_easy_escape(c, service, 0)) || !(sc = curl_easy_escape(c, scope, 0)) ||
	    (cr->identity_token && !(tok = curl_easy_escape(c, cr->identity_token, 0))))
		goto out;
	if (tok) {
		if (asprintf(&post, "grant_type=refresh_token&client_id=anole&service=%s&scope=%s"
				    "&refresh_token=%s", es, sc, tok) < 0)
			post = NULL;
		url = strdup(realm);
		if (!post)
			goto out;
	} else if (asprintf(&url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
			    es, sc) < 0) {
		url = NULL;
	}
	if (!url)
		goto out;
	if (cr->basic && !tok) {
		char h[1024];
		snprintf(h, sizeof(h), "Authorization: Basic %s", cr->basic);
		hdrs = curl_slist_append(hdrs, h);
		explicit_bzero(h, sizeof(h));
		if (!hdrs)
			goto out;
	}
	if ((rc = token_request(r, url, realm, hdrs, post, &body, deadline, err)) < 0)
		goto out;
	json_t *j = json_loadb(body.buf ? body.buf : "", body.len, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "token"));
	if (!t || !*t)
		t = json_string_value(json_object_get(j, "access_token"));
	if (t && *t && !strpbrk(t, "\r\n"))
		set_auth(r, "Bearer", t);
	else
		rc = anole_err(err, EACCES, "%s: the token endpoint %s gave no token", r->host, realm);
	json_decref(j);
out:
	if (rc == -ENOMEM)
		rc = anole_err(err, ENOMEM, "out of memory");
	if (c) {
		curl_free(es);
		curl_free(sc);
		curl_free(tok);
		curl_easy_cleanup(c);
	}
	curl_slist_free_all(hdrs);
	free(url);
	if (post)
		explicit_bzero(post, strlen(post));
	free(post);
	strbuf_release(&body);
	return rc;
}

/* Answer a 401 of the registry's own origin. */
static int authenticate(struct registry *r, const char *challenge, const char *repo,
			double deadline, struct anole_error *err)
{
	if (!strncasecmp(challenge, "Basic", 5)) {
		if (!r->creds.basic)
			return anole_err(err, EACCES,
					 "%s: the registry wants a user name and password (none for "
					 "this host in ~/.docker/config.json or $REGISTRY_AUTH_FILE)",
					 r->host);
		set_auth(r, "Basic", r->creds.basic);
		return 0;
	}
	if (strncasecmp(challenge, "Bearer", 6))
		return anole_err(err, EACCES, "%s: unsupported authentication challenge '%.100s'",
				 r->host, challenge);
	return bearer_token(r, challenge, repo, deadline, err);
}

/* ---- requests ---------------------------------------------------------------- */

static bool add_header(struct curl_slist **h, const char *line)
{
	struct curl_slist *n = curl_slist_append(*h, line);
	if (n)
		*h = n;
	return n != NULL;
}

/* The headers of one attempt into *out; false when out of memory. The
 * Authorization header only when @url is on the origin that asked for it. */
static bool request_headers(struct registry *r, const char *url, const char *accept,
			    const struct xfer *x, struct curl_slist **out)
{
	struct curl_slist *h = NULL;
	bool ok = true;
	char line[200];
	pthread_mutex_lock(&r->lock);
	if (r->auth && same_origin(url, r->auth_origin))
		ok = add_header(&h, r->auth);
	pthread_mutex_unlock(&r->lock);
	if (ok && accept)
		ok = add_header(&h, accept);
	if (ok && (x->delivered || x->range_buf)) {
		if (x->delivered)
			snprintf(line, sizeof(line), "Range: bytes=%llu-",
				 (unsigned long long)x->delivered);
		else
			snprintf(line, sizeof(line), "Range: bytes=%llu-%llu",
				 (unsigned long long)x->range_off,
				 (unsigned long long)(x->range_off + x->range_len - 1));
		ok = add_header(&h, line);
	}
	if (ok && x->extra_header)
		ok = add_header(&h, x->extra_header);
	if (ok && x->upload_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", x->upload_type);
		ok = add_header(&h, line);
	}
	if (!ok) {
		curl_slist_free_all(h);
		h = NULL;
	}
	*out = h;
	return ok;
}

/* One attempt; *from_registry: the final answer came from the registry's
 * own origin (not a redirect's). */
static CURLcode perform(struct registry *r, const char *url, const char *accept, struct xfer *x,
			bool *from_registry, struct anole_error *err)
{
	struct curl_slist *hdrs = NULL;
	CURL *c = request_headers(r, url, accept, x, &hdrs) ? new_handle(x, url, hdrs) : NULL;
	if (!c) {
		curl_slist_free_all(hdrs);
		anole_err(err, ENOMEM, "out of memory");
		return CURLE_OUT_OF_MEMORY;
	}
	if (x->body)
		x->body->len = 0;
	x->done = false;
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	char *eff = NULL, origin[320];
	curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
	*from_registry = eff && registry_url_origin(r->base, origin, sizeof(origin)) &&
			 same_origin(eff, origin);
	put_handle(r, c);
	curl_slist_free_all(hdrs);
	/* ended on purpose: all that was needed is here */
	if (cc == CURLE_WRITE_ERROR && x->done)
		cc = CURLE_OK;
	/* 416 comes with the whole Content-Length but no body: curl
	 * calls that a partial file; the status is what counts */
	if (cc == CURLE_PARTIAL_FILE && x->status == 416)
		cc = CURLE_OK;
	if (cc == CURLE_OK && r->may_downgrade)
		r->may_downgrade = false; /* TLS worked: it stays */
	return cc;
}

/* The one line for a call that ran out of time. */
static int timed_out(const struct xfer *x, const char *url, struct anole_error *err)
{
	if (now_seconds() < x->deadline)
		return anole_err(err, ETIMEDOUT, "%s: no progress (under %ld bytes/s) for %ld s, %d %s",
				 url, STALL_RATE, bounds[x->kind].stall, x->stalls,
				 x->stalls == 1 ? "time" : "times");
	return anole_err(err, ETIMEDOUT, "%s: not done within %.0f s", url,
			 x->deadline - x->started);
}

/* What ended an attempt on our side, as the call's error; 0: nothing. */
static int local_failure(const struct xfer *x, const char *url, struct anole_error *err)
{
	if (x->write_failed)
		return anole_err(err, EPIPE, "%s: reader went away", url);
	if (x->too_big)
		return anole_err(err, EFBIG, "%s: response larger than %zu bytes", url, x->max_body);
	if (x->range_refused)
		return anole_err(err, EIO,
				 "%s: the registry ignores Range (200 for bytes %llu-%llu); not "
				 "reading the blob up to them",
				 url, (unsigned long long)x->range_off,
				 (unsigned long long)(x->range_off + x->range_len - 1));
	return 0;
}

/*
 * GET @path (or an absolute URL) with retries; answers a 401 of the
 * registry's own origin once by authenticating. On return x->status holds
 * the final HTTP status. For socket transfers the Range header resumes
 * after what was delivered. The call ends by x's deadline (set here for
 * a small document when the caller set none).
 */
static int request(struct registry *r, const char *path, const char *accept, const char *repo,
		   struct xfer *x, struct anole_error *err)
{
	char url[2400];
	bool absolute = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
	snprintf(url, sizeof(url), "%s%s", absolute ? "" : r->base, path);
	if (!x->deadline)
		xfer_bound(x, K_DOC, 0);
	bool authed = false;
	for (int attempt = 0;;) {
		if (now_seconds() >= x->deadline)
			return timed_out(x, url, err);
		bool from_registry = false;
		CURLcode cc = perform(r, url, accept, x, &from_registry, err);
		int rc = cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : local_failure(x, url, err);
		if (rc < 0)
			return rc;
		if (cc == CURLE_SSL_CONNECT_ERROR && r->may_downgrade && !absolute &&
		    !strncmp(r->base, "https:", 6)) {
			snprintf(r->base, sizeof(r->base), "http://%s", r->host);
			snprintf(url, sizeof(url), "%s%s", r->base, path);
			r->may_downgrade = false;
			continue;
		}
		if (cc == CURLE_OK && x->status == 401 && x->challenge[0]) {
			if (!from_registry)
				return anole_err(err, EACCES,
						 "%s: access denied (HTTP 401 from another origin; "
						 "credentials go only to %s)",
						 url, r->base);
			if (!authed) {
				if ((rc = authenticate(r, x->challenge, repo, x->deadline, err)) < 0)
					return rc;
				authed = true;
				continue;
			}
		}
		if (cc == CURLE_OPERATION_TIMEDOUT && now_seconds() < x->deadline &&
		    ++x->stalls >= MAX_STALLS)
			return timed_out(x, url, err); /* a stall gets one more try */
		if (transient(cc, x->status) &&
		    ++attempt < (x->max_attempts ? x->max_attempts : MAX_ATTEMPTS)) {
			backoff(x, attempt - 1);
			continue;
		}
		if (cc == CURLE_OPERATION_TIMEDOUT)
			return timed_out(x, url, err);
		if (cc != CURLE_OK)
			return anole_err(err, EIO, "%s: %s", url, curl_easy_strerror(cc));
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

int registry_get_manifest(struct registry *r, const char *repo, const char *ref, uint64_t size,
			  struct strbuf *body, char *media_type, struct anole_error *err)
{
	char path[600];
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
	struct xfer x = {.reg = r, .body = body, .sock = -1,
			 .max_body = size && size < MAX_BODY ? (size_t)size : MAX_BODY};
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
	/* one deadline for the blob, resumes and all */
	struct xfer x = {.reg = f->reg, .sock = f->sock, .limit = f->size};
	xfer_bound(&x, K_BLOB, f->size);
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
		backoff(&x, resumes);
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

/* ---- lazy format: ranges, existence, uploads --------------------------------- */

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
			 .max_attempts = quick ? 1 : 0};
	xfer_bound(&x, K_RANGE, len);
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

/* Where an upload goes on: the Location of @x's answer to @url, made
 * absolute. It may name another origin (an upload service): that one
 * gets no credentials (request_headers). */
static int upload_location(struct registry *r, const char *url, const struct xfer *x, char *loc,
			   size_t size, struct anole_error *err)
{
	char was[2400];
	snprintf(was, sizeof(was), "%s%s", strstr(url, "://") ? "" : r->base, url);
	if (!registry_absolute_location(was, x->location, loc, size))
		return anole_err(err, EBADMSG, "%s: an upload Location that is no http(s) URL: %.200s",
				 r->host, x->location);
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
	if ((rc = upload_location(r, path, &x, loc, sizeof(loc), err)) < 0)
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
		xfer_bound(&x, K_UPLOAD, n);
		if ((rc = request(r, loc, NULL, repo, &x, err)) < 0)
			goto out;
		if (x.status != 202 || !x.location[0]) {
			rc = http_error(r, "upload chunk", x.status, err);
			goto out;
		}
		char was[sizeof(loc)];
		memcpy(was, loc, sizeof(was));
		if ((rc = upload_location(r, was, &x, loc, sizeof(loc), err)) < 0)
			goto out;
		done += n;
	}
	char param[100], put[2200];
	snprintf(param, sizeof(param), "digest=%s", digest);
	with_param(put, sizeof(put), loc, param);
	x = (struct xfer){.reg = r, .sock = -1, .method = "PUT", .body = &sink, .max_body = 1u << 16,
			  .upload_fd = fd, .upload_off = off, .upload_len = chunk ? 0 : len,
			  .upload_type = "application/octet-stream"};
	xfer_bound(&x, K_UPLOAD, x.upload_len);
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
	xfer_bound(&x, K_UPLOAD, len);
	int rc = request(r, path, NULL, repo, &x, err);
	if (rc >= 0 && x.status != 201)
		rc = http_error(r, path, x.status, err);
	if (rc < 0 && x.status == 400 && sink.len)
		snprintf(err->msg, sizeof(err->msg), "%s: %s:%s: manifest refused: %.200s", r->host,
			 repo, ref, sink.buf);
	strbuf_release(&sink);
	return rc < 0 ? rc : 0;
}
