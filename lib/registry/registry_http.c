/* SPDX-License-Identifier: Apache-2.0 */
/* One HTTP exchange with a registry: retries, bounds, origins, and the
 * request that authenticates on a challenge. */
#include "registry/registry_int.h"

#define MAX_ERROR_PAGE (64u << 10) /* of a 4xx/5xx answer's body, the rest unread */

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

/* ---- one HTTP exchange ------------------------------------------------------ */

void reg_xfer_bound(struct xfer *x, enum kind kind, uint64_t bytes)
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

void reg_put_handle(struct registry *r, CURL *c)
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

CURL *reg_new_handle(struct xfer *x, const char *url, struct curl_slist *hdrs)
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

bool reg_transient(CURLcode cc, long status)
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
void reg_backoff(const struct xfer *x, int attempt)
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

int registry_absolute_location(const char *url, const char *loc, char **out)
{
	int w;
	if (!strncasecmp(loc, "http://", 7) || !strncasecmp(loc, "https://", 8)) {
		w = asprintf(out, "%s", loc);
	} else if (loc[0] == '/' && loc[1] != '/' && strstr(url, "://")) {
		const char *h = strstr(url, "://") + 3;
		w = asprintf(out, "%.*s%s", (int)(h + strcspn(h, "/?#") - url), url, loc);
	} else {
		*out = NULL;
		return -EINVAL;
	}
	if (w < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

char *registry_api_path(const char *repo, const char *kind, const char *ref)
{
	char *s;
	return asprintf(&s, "/v2/%s/%s/%s", repo, kind, ref) < 0 ? NULL : s;
}

char *registry_upload_path(const char *repo, const char *digest, const char *from)
{
	char *s;
	int w = from && strcmp(from, repo)
			? asprintf(&s, "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, digest, from)
			: asprintf(&s, "/v2/%s/blobs/uploads/", repo);
	return w < 0 ? NULL : s;
}

/* @path on the registry (or @path itself when it is a URL), malloc'd. */
static char *full_url(const struct registry *r, const char *path, bool absolute)
{
	char *s;
	return asprintf(&s, "%s%s", absolute ? "" : r->base, path) < 0 ? NULL : s;
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
bool reg_request_headers(struct registry *r, const char *url, const char *accept,
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
	CURL *c = reg_request_headers(r, url, accept, x, &hdrs) ? reg_new_handle(x, url, hdrs) : NULL;
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
	reg_put_handle(r, c);
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
int reg_request(struct registry *r, const char *path, const char *accept, const char *repo,
		struct xfer *x, struct anole_error *err)
{
	bool absolute = !strncmp(path, "http://", 7) || !strncmp(path, "https://", 8);
	_cleanup_free_ char *url = full_url(r, path, absolute);
	if (!url)
		return anole_err(err, ENOMEM, "out of memory");
	if (!x->deadline)
		reg_xfer_bound(x, K_DOC, 0);
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
			free(url);
			if (!(url = full_url(r, path, false)))
				return anole_err(err, ENOMEM, "out of memory");
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
				if ((rc = reg_authenticate(r, x->challenge, repo, x->deadline, err)) < 0)
					return rc;
				authed = true;
				continue;
			}
		}
		if (cc == CURLE_OPERATION_TIMEDOUT && now_seconds() < x->deadline &&
		    ++x->stalls >= MAX_STALLS)
			return timed_out(x, url, err); /* a stall gets one more try */
		if (reg_transient(cc, x->status) &&
		    ++attempt < (x->max_attempts ? x->max_attempts : MAX_ATTEMPTS)) {
			reg_backoff(x, attempt - 1);
			continue;
		}
		if (cc == CURLE_OPERATION_TIMEDOUT)
			return timed_out(x, url, err);
		if (cc != CURLE_OK)
			return anole_err(err, EIO, "%s: %s", url, curl_easy_strerror(cc));
		return 0;
	}
}

int reg_http_error(struct registry *r, const char *what, long status, struct anole_error *err)
{
	if (status == 401 || status == 403)
		return anole_err(err, EACCES, "%s: %s: access denied (HTTP %ld)", r->host, what,
				 status);
	if (status == 404)
		return anole_err(err, ENOENT, "%s: %s: not found (HTTP 404)", r->host, what);
	return anole_err(err, EIO, "%s: %s: HTTP %ld", r->host, what, status);
}

