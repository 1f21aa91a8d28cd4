/* SPDX-License-Identifier: Apache-2.0 */
/* Registry auth: Basic credentials for their origin only, and Bearer
 * tokens from the realm a challenge names. */
#include "registry/registry_int.h"

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
	reg_xfer_bound(&x, K_DOC, 0);
	/* within the deadline of the call that met the 401, too */
	if (deadline > 0 && deadline < x.deadline)
		x.deadline = deadline;
	for (int attempt = 0;; attempt++) {
		body->len = 0;
		CURL *c = reg_new_handle(&x, url, hdrs);
		if (!c)
			return anole_err(err, ENOMEM, "out of memory");
		if (post)
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
		CURLcode cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x.status);
		reg_put_handle(r, c);
		if (reg_transient(cc, x.status) && attempt + 1 < MAX_ATTEMPTS &&
		    now_seconds() < x.deadline) {
			reg_backoff(&x, attempt);
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
int reg_authenticate(struct registry *r, const char *challenge, const char *repo,
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

