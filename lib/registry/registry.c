/* SPDX-License-Identifier: Apache-2.0 */
/* The registry client: references, credentials and the client object.
 * The rest is in registry_http.c, registry_auth.c and registry_calls.c. */
#include "registry/registry_int.h"

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

