// SPDX-License-Identifier: Apache-2.0
/* Remote snapshots of anole lazy images: the labels containerd's
 * unpacker hands a Prepare (the chain ID, and the image reference and
 * digests CRI and `anole ctr-pull` add), and the daemon's lazy mounts.
 * The snapshotter talks to the daemon as `anole mount` does, through
 * ctl_request_encode() only. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/request.h"
#include "serve/serve.h"
#include "snapshotter/lazy.h"
#include "util/util.h"

static const char *label(json_t *labels, const char *name)
{
	return json_string_value(json_object_get(labels, name));
}

/* Registry host, repository path, tag: what a reference may hold. */
static int ref_chars_ok(const char *s)
{
	if (!*s || strstr(s, "://") || strstr(s, ".."))
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-/:@", *s))
			return 0;
	return 1;
}

static int digest_ok(const char *d)
{
	if (strncmp(d, "sha256:", 7) || strlen(d) != 7 + 64)
		return 0;
	for (d += 7; *d; d++)
		if (!isxdigit((unsigned char)*d) || isupper((unsigned char)*d))
			return 0;
	return 1;
}

int lazy_ref_of(json_t *labels, char *buf, size_t len)
{
	const char *ref = label(labels, LABEL_IMAGE_REF);
	const char *md = label(labels, LABEL_MANIFEST_DIGEST);
	size_t name_len;
	int n;

	if (!ref)
		return -ENOENT;
	if (!ref_chars_ok(ref) || (md && !digest_ok(md)))
		return -EINVAL;
	if (!md)
		n = snprintf(buf, len, "docker://%s", ref);
	else {
		/* the name without its tag or digest: a ':' after the last
		 * '/' starts a tag, the first '@' a digest */
		const char *slash = strrchr(ref, '/'), *at = strchr(ref, '@');
		const char *colon = strchr(slash ? slash : ref, ':');

		name_len = at ? (size_t)(at - ref) : strlen(ref);
		if (colon && (size_t)(colon - ref) < name_len)
			name_len = (size_t)(colon - ref);
		n = snprintf(buf, len, "docker://%.*s@%s", (int)name_len, ref, md);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

enum lazy_kind lazy_classify(json_t *labels, int has_parent, json_t *parent_lazy)
{
	char ref[2048];
	const char *pref = json_string_value(json_object_get(parent_lazy, "ref"));

	if (!label(labels, LABEL_REF) || lazy_ref_of(labels, ref, sizeof(ref)) < 0)
		return LAZY_NONE;
	if (!has_parent)
		return label(labels, LABEL_LAYER_DIGEST) ? LAZY_BASE : LAZY_NONE;
	return pref && !strcmp(pref, ref) ? LAZY_UPPER : LAZY_NONE;
}

/* Send @req to the daemon; its "error" as the one line of @err. */
static int daemon_call(const struct ctl_request *req, int start, const char *ignore,
		       struct anole_error *err)
{
	char *text = ctl_request_encode(req), *reply = NULL;
	const char *msg;
	json_t *j;
	int r;

	if (!text)
		return anole_err(err, ENOMEM, "out of memory");
	r = anole_daemon_request(text, start, &reply, err);
	explicit_bzero(text, strlen(text));
	free(text);
	if (r < 0)
		return r;
	j = json_loads(reply, 0, NULL);
	free(reply);
	msg = json_string_value(json_object_get(j, "error"));
	if (!j)
		r = anole_err(err, EIO, "the anole daemon's answer is not JSON");
	else if (msg && !(ignore && strstr(msg, ignore)))
		r = anole_err(err, EIO, "%s", msg);
	json_decref(j);
	return r;
}

int lazy_mount(const char *ref, const char *mountpoint, struct anole_error *err)
{
	struct ctl_request req = {.op = CTL_MOUNT,
				  .ref = ref,
				  .mountpoint = mountpoint,
				  .options = "",
				  .prefetch = "recorded"};
	json_t *cj = NULL;
	char *creds = NULL;
	int r = anole_mount_credentials(ref, &creds, err);

	if (r < 0)
		return r;
	/* the registry credentials of the snapshotter's user, as `anole
	 * mount` sends its caller's */
	if (creds) {
		cj = json_loads(creds, 0, NULL);
		explicit_bzero(creds, strlen(creds));
		free(creds);
	}
	ctl_request_credentials(&req, cj);
	r = daemon_call(&req, 1, NULL, err);
	json_decref(cj);
	return r;
}

int lazy_umount(const char *mountpoint, struct anole_error *err)
{
	struct ctl_request req = {.op = CTL_UMOUNT, .mountpoint = mountpoint};

	return daemon_call(&req, 0, "no lazy image is mounted there", err);
}

void lazy_init(void)
{
	static char anole[PATH_MAX];
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return;
	exe[n] = 0;
	if (snprintf(anole, sizeof(anole), "%s/anole", dirname(exe)) < (int)sizeof(anole) &&
	    !access(anole, X_OK))
		serve_set_daemon_exe(anole);
}
