/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registry client's internals: registry.c (references, credentials,
 * the client object), registry_http.c (one HTTP exchange with retries,
 * bounds and origins), registry_auth.c (challenges and tokens) and
 * registry_calls.c (manifests, blob streams, ranges, uploads) share the
 * client's and one exchange's state through this header; registry.h is
 * the interface.
 */
#ifndef ANOLE_REGISTRY_INT_H
#define ANOLE_REGISTRY_INT_H

#include "registry/registry.h"

#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/dyn_curl.h"

#define MAX_ATTEMPTS 6

/* What a call moves; its bounds (registry_http.c) follow from it. */
enum kind {
	K_DOC,    /* manifests, tokens, HEAD, upload answers: small JSON */
	K_RANGE,  /* a range a lazy reader waits for */
	K_BLOB,   /* a whole blob whose size is known */
	K_UPLOAD, /* a blob (or manifest) sent */
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

/* ---- one HTTP exchange (registry_http.c) ---------------------------------- */

void reg_xfer_bound(struct xfer *x, enum kind kind, uint64_t bytes);
void reg_put_handle(struct registry *r, CURL *c);
CURL *reg_new_handle(struct xfer *x, const char *url, struct curl_slist *hdrs);
bool reg_transient(CURLcode cc, long status);
void reg_backoff(const struct xfer *x, int attempt);
bool reg_request_headers(struct registry *r, const char *url, const char *accept,
			 const struct xfer *x, struct curl_slist **out);
int reg_request(struct registry *r, const char *path, const char *accept, const char *repo,
		struct xfer *x, struct anole_error *err);
int reg_http_error(struct registry *r, const char *what, long status, struct anole_error *err);

/* ---- auth (registry_auth.c) ------------------------------------------------ */

int reg_authenticate(struct registry *r, const char *challenge, const char *repo,
		     double deadline, struct anole_error *err);

#endif
