/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Control requests: what a client may ask of the daemon, checked field by
 * field. A field of the wrong type is an error, not a missing field: a
 * client that sent `"fuse": "yes"` should hear so rather than get a
 * kernel mount.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "serve/paths.h"
#include "serve/request.h"
#include "util/util.h"

#define MAX_FIELD SERVE_PATH_MAX
#define MAX_DEVICES 256 /* as the image reader */

static const struct {
	const char *name;
	enum ctl_op op;
} ops[] = {
	{"mount", CTL_MOUNT},   {"umount", CTL_UMOUNT},   {"trace", CTL_TRACE},
	{"status", CTL_STATUS}, {"metrics", CTL_METRICS},
};

__attribute__((format(printf, 3, 4))) static int bad(char *why, size_t size, const char *fmt,
							   ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* An optional string field: NULL when absent. */
static int string_field(json_t *o, const char *name, const char **out, char *why, size_t size)
{
	json_t *v = json_object_get(o, name);
	*out = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return bad(why, size, "bad request: %s must be a string", name);
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (len > MAX_FIELD || strlen(s) != len)
		return bad(why, size, "bad request: %s is too long or holds a NUL", name);
	*out = s;
	return 0;
}

static int bool_field(json_t *o, const char *name, bool *out, char *why, size_t size)
{
	json_t *v = json_object_get(o, name);
	if (v && !json_is_boolean(v))
		return bad(why, size, "bad request: %s must be true or false", name);
	*out = json_is_true(v);
	return 0;
}

/* "credentials": {"basic": BASE64, "identity_token": TOKEN}, both
 * optional: they go into HTTP headers and forms, so printable ASCII. */
static int credentials_field(json_t *o, struct ctl_request *req, char *why, size_t size)
{
	json_t *c = json_object_get(o, "credentials");
	if (!c || json_is_null(c))
		return 0;
	if (!json_is_object(c))
		return bad(why, size, "bad request: %s must be an object", "credentials");
	const char *key;
	json_t *v;
	json_object_foreach(c, key, v) {
		const char **to = !strcmp(key, "basic")            ? &req->cred_basic
				  : !strcmp(key, "identity_token") ? &req->cred_token
								   : NULL;
		if (!to)
			return bad(why, size, "bad request: credentials.%.40s is unknown", key);
		int r = string_field(c, key, to, why, size);
		if (r < 0)
			return r;
		for (const char *p = *to; p && *p; p++)
			if (*p <= ' ' || *p > '~')
				return bad(why, size, "bad request: credentials.%s holds a bad byte",
					   key);
	}
	return 0;
}

/* An optional array of paths: the devices of an image file. */
static int devices_field(json_t *o, struct ctl_request *req, char *why, size_t size)
{
	json_t *a = json_object_get(o, "devices");
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > MAX_DEVICES)
		return bad(why, size, "bad request: devices must be a list of at most %d paths",
			   MAX_DEVICES);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		size_t len = json_string_length(v);
		if (!json_is_string(v) || !len || len > MAX_FIELD ||
		    strlen(json_string_value(v)) != len)
			return bad(why, size, "bad request: device %zu must be a path", i + 1);
	}
	req->devices = a;
	return 0;
}

static int mount_fields(json_t *o, struct ctl_request *req, char *why, size_t size)
{
	int r;
	if ((r = string_field(o, "ref", &req->ref, why, size)) < 0 ||
	    (r = string_field(o, "options", &req->options, why, size)) < 0 ||
	    (r = string_field(o, "prefetch", &req->prefetch, why, size)) < 0 ||
	    (r = string_field(o, "exec", &req->exec, why, size)) < 0 ||
	    (r = bool_field(o, "fuse", &req->fuse, why, size)) < 0 ||
	    (r = bool_field(o, "record", &req->record, why, size)) < 0 ||
	    (r = bool_field(o, "no_load_hints", &req->no_load_hints, why, size)) < 0 ||
	    (r = credentials_field(o, req, why, size)) < 0 ||
	    (r = devices_field(o, req, why, size)) < 0)
		return r;
	if (!req->ref || !*req->ref)
		return bad(why, size, "mount: needs %s", "ref and mountpoint");
	json_t *rate = json_object_get(o, "prefetch_rate");
	if (rate && (!json_is_integer(rate) || json_integer_value(rate) < 0))
		return bad(why, size, "bad request: %s must be a byte rate", "prefetch_rate");
	req->has_prefetch_rate = rate != NULL;
	req->prefetch_rate = rate ? (uint64_t)json_integer_value(rate) : 0;
	json_t *tls = json_object_get(o, "tls_verify");
	json_int_t t = json_integer_value(tls);
	if (tls && (!json_is_integer(tls) || t < -1 || t > 1))
		return bad(why, size, "bad request: %s must be -1, 0 or 1", "tls_verify");
	req->tls_verify = (int)t;
	return 0;
}

int ctl_request_parse(const char *buf, size_t len, struct ctl_request *req, char *why,
		      size_t why_size)
{
	*req = (struct ctl_request){0};
	json_error_t je;
	/* a request is one line; the daemon may have read past it */
	req->json = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(req->json)) {
		ctl_request_release(req);
		return bad(why, why_size, "bad request: %s", "not a JSON object");
	}
	const char *op = NULL;
	int r = string_field(req->json, "op", &op, why, why_size);
	size_t i = 0;
	while (op && i < ARRAY_SIZE(ops) && strcmp(ops[i].name, op))
		i++;
	if (r >= 0 && !op)
		r = bad(why, why_size, "bad request: no %s", "op");
	else if (r >= 0 && i == ARRAY_SIZE(ops))
		r = bad(why, why_size, "unknown request %.40s", op);
	if (r >= 0) {
		req->op = ops[i].op;
		if (req->op != CTL_STATUS && req->op != CTL_METRICS) {
			r = string_field(req->json, "mountpoint", &req->mountpoint, why, why_size);
			if (r >= 0 && (!req->mountpoint || !*req->mountpoint))
				r = bad(why, why_size, "%s: needs mountpoint", op);
		}
	}
	if (r >= 0 && req->op == CTL_MOUNT)
		r = mount_fields(req->json, req, why, why_size);
	if (r < 0)
		ctl_request_release(req);
	return r;
}

void ctl_request_release(struct ctl_request *req)
{
	json_decref(req->json);
	*req = (struct ctl_request){0};
}

static int put_string(json_t *o, const char *key, const char *value)
{
	return value ? json_object_set_new(o, key, json_string(value)) : 0;
}

static int put_bool(json_t *o, const char *key, bool value)
{
	return value ? json_object_set_new(o, key, json_true()) : 0;
}

static int put_credentials(json_t *o, const struct ctl_request *req)
{
	if (!req->cred_basic && !req->cred_token)
		return 0;
	json_t *c = json_object();
	if (!c || put_string(c, "basic", req->cred_basic) < 0 ||
	    put_string(c, "identity_token", req->cred_token) < 0) {
		json_decref(c);
		return -1;
	}
	return json_object_set_new(o, "credentials", c);
}

static int put_mount_fields(json_t *o, const struct ctl_request *req)
{
	if (put_string(o, "ref", req->ref) < 0 || put_string(o, "options", req->options) < 0 ||
	    put_string(o, "prefetch", req->prefetch) < 0 || put_string(o, "exec", req->exec) < 0 ||
	    put_bool(o, "fuse", req->fuse) < 0 || put_bool(o, "record", req->record) < 0 ||
	    put_bool(o, "no_load_hints", req->no_load_hints) < 0 || put_credentials(o, req) < 0)
		return -1;
	json_int_t rate = (json_int_t)req->prefetch_rate;
	if (req->has_prefetch_rate && json_object_set_new(o, "prefetch_rate", json_integer(rate)) < 0)
		return -1;
	if (req->tls_verify && json_object_set_new(o, "tls_verify", json_integer(req->tls_verify)) < 0)
		return -1;
	return req->devices ? json_object_set(o, "devices", req->devices) : 0;
}

char *ctl_request_encode(const struct ctl_request *req)
{
	size_t i = 0;
	while (i < ARRAY_SIZE(ops) && ops[i].op != req->op)
		i++;
	json_t *o = i < ARRAY_SIZE(ops) ? json_object() : NULL;
	char *text = NULL;
	if (o && put_string(o, "op", ops[i].name) >= 0 &&
	    put_string(o, "mountpoint", req->mountpoint) >= 0 &&
	    (req->op != CTL_MOUNT || put_mount_fields(o, req) >= 0))
		text = json_dumps(o, JSON_COMPACT);
	json_decref(o); /* (jansson frees its strings without wiping them) */
	return text;
}

void ctl_request_credentials(struct ctl_request *req, const json_t *creds)
{
	req->cred_basic = json_string_value(json_object_get(creds, "basic"));
	req->cred_token = json_string_value(json_object_get(creds, "identity_token"));
}
