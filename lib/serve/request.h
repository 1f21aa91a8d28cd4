/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ANOLE_SERVE_REQUEST_H
#define ANOLE_SERVE_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One request on the daemon's control socket, checked before any of it is
 * acted on. Pure: no daemon state, so the fuzzer runs it as it is. */
enum ctl_op { CTL_MOUNT, CTL_UMOUNT, CTL_TRACE, CTL_STATUS, CTL_METRICS };

struct ctl_request {
	json_t *json; /* holds the strings below */
	enum ctl_op op;
	const char *ref, *mountpoint, *options, *prefetch;
	const char *exec; /* mount: what a run will start ("": the entrypoint) */
	uint64_t prefetch_rate; /* bytes per second, 0: no cap */
	bool has_prefetch_rate; /* false: the daemon keeps its rate */
	int tls_verify;         /* -1 no, 0 the client's default, 1 yes */
	bool fuse, record;
	bool no_load_hints; /* mount: do not fetch programs' loader ranges */
	/* mount: the client's registry credentials (or NULL): the mount's
	 * own, kept for it alone and never logged */
	const char *cred_basic, *cred_token;
	/* mount of a local image file (--fuse): its devices' files in device
	 * table order, strings checked like the others (or NULL) */
	json_t *devices;
};

/* 0 and @req filled (release it), or -EINVAL and why in @why. */
int ctl_request_parse(const char *buf, size_t len, struct ctl_request *req, char *why,
		      size_t why_size);
void ctl_request_release(struct ctl_request *req);
/* The one encoder of requests (the CLI's and `anole run`'s): @req as one
 * compact JSON line that ctl_request_parse reads back as @req (its json
 * member is not used; NULL strings, false flags, a rate and tls_verify of
 * 0 are left out, which the parser reads as the same). malloc'd: the
 * caller wipes it (it may hold credentials) and frees it; NULL when out
 * of memory or a string is not UTF-8. */
char *ctl_request_encode(const struct ctl_request *req);
/* A mount's credentials from anole_mount_credentials()' object (or NULL):
 * @req points into @creds, which must outlive it. */
void ctl_request_credentials(struct ctl_request *req, const json_t *creds);

#endif
