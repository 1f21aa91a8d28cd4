/* SPDX-License-Identifier: Apache-2.0 */
/* The registry client's origins: where credentials may go, and where an
 * upload goes on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "registry/registry.h"

static void origin(const char *url, const char *want)
{
	char o[320] = "";
	bool ok = registry_url_origin(url, o, sizeof(o));
	if (!want) {
		if (ok)
			fail_msg("%s: an origin (%s) where none was wanted", url, o);
		return;
	}
	if (!ok || strcmp(o, want))
		fail_msg("%s: origin \"%s\", not \"%s\"", url, ok ? o : "(none)", want);
}

static void origins(void **state)
{
	(void)state;
	origin("https://Registry.Example:443/v2/", "https://registry.example:443");
	origin("https://registry.example/v2/x?y=1", "https://registry.example:443");
	origin("HTTP://127.0.0.1:5000", "http://127.0.0.1:5000");
	origin("http://127.0.0.1/v2", "http://127.0.0.1:80");
	origin("http://h:/x", "http://h:80");
	origin("http://[::1]:5000/v2/", "http://[::1]:5000");
	origin("https://[::1]/v2/", "https://[::1]:443");
	origin("https://h?x#y", "https://h:443");
	/* the same host on another port or scheme is another origin */
	char a[320], b[320];
	assert_true(registry_url_origin("http://h:5000/a", a, sizeof(a)));
	assert_true(registry_url_origin("http://h:5001/a", b, sizeof(b)));
	assert_string_not_equal(a, b);
	assert_true(registry_url_origin("https://h:5000/a", b, sizeof(b)));
	assert_string_not_equal(a, b);
	/* none: user info, other schemes, no host, a bad port */
	origin("http://user:pass@h/v2/", NULL);
	origin("http://h@evil/v2/", NULL);
	origin("ftp://h/x", NULL);
	origin("//h/x", NULL);
	origin("/v2/x", NULL);
	origin("http:///x", NULL);
	origin("http://h:50x0/", NULL);
	origin("http://h:123456789/", NULL);
	origin("http://[::1/", NULL);
}

static void location(const char *url, const char *loc, const char *want)
{
	char *out = NULL;
	bool ok = registry_absolute_location(url, loc, &out) == 0;
	if (!want) {
		if (ok)
			fail_msg("%s + %s: \"%s\" where none was wanted", url, loc, out);
		return;
	}
	if (!ok || strcmp(out, want))
		fail_msg("%s + %s: \"%s\", not \"%s\"", url, loc, ok ? out : "(none)", want);
	free(out);
}

static void locations(void **state)
{
	(void)state;
	location("http://r:5000/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?s=1",
		 "http://r:5000/v2/a/blobs/uploads/u?s=1");
	location("https://up.example/v2/a/blobs/uploads/u", "/v2/a/blobs/uploads/u2",
		 "https://up.example/v2/a/blobs/uploads/u2");
	location("http://r:5000/x", "https://up.example/u?sig=1", "https://up.example/u?sig=1");
	location("http://r:5000/x", "//evil/u", NULL);
	location("http://r:5000/x", "u", NULL);
	location("http://r:5000/x", "file:///etc/passwd", NULL);
}

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A repository name of 255 characters (the longest a registry takes), as
 * "a/bbb..." */
static void long_repo(char name[256], char c)
{
	memset(name, c, 255);
	name[1] = '/';
	name[255] = 0;
}

/* Paths of the longest repository names come out whole: a cross-repo
 * mount's is over 600 bytes, once the size of the buffer it was cut in. */
static void long_repository_paths(void **state)
{
	(void)state;
	char repo[256], from[256], want[1024];
	long_repo(repo, 'r');
	long_repo(from, 'f');
	char *p = registry_upload_path(repo, DIGEST, from);
	snprintf(want, sizeof(want), "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, DIGEST, from);
	assert_string_equal(p, want);
	assert_int_equal(strlen(p), 4 + 255 + 22 + 71 + 6 + 255);
	assert_true(strlen(p) > 600);
	free(p);
	/* from the same repository: a plain upload */
	p = registry_upload_path(repo, DIGEST, repo);
	snprintf(want, sizeof(want), "/v2/%s/blobs/uploads/", repo);
	assert_string_equal(p, want);
	free(p);
	p = registry_upload_path(repo, DIGEST, NULL);
	assert_string_equal(p, want);
	free(p);
	p = registry_api_path(repo, "blobs", DIGEST);
	snprintf(want, sizeof(want), "/v2/%s/blobs/%s", repo, DIGEST);
	assert_string_equal(p, want);
	free(p);
	p = registry_api_path(repo, "manifests", "latest");
	snprintf(want, sizeof(want), "/v2/%s/manifests/latest", repo);
	assert_string_equal(p, want);
	free(p);
	/* and an upload Location on the registry's origin that long */
	char url[1100], loc[700];
	snprintf(url, sizeof(url), "https://registry.example:5000/v2/%s/blobs/uploads/?mount=%s&from=%s",
		 repo, DIGEST, from);
	snprintf(loc, sizeof(loc), "/v2/%s/blobs/uploads/%s?_state=%s", repo, &DIGEST[7], from);
	snprintf(want, sizeof(want), "https://registry.example:5000%s", loc);
	location(url, loc, want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(origins),
		cmocka_unit_test(locations),
		cmocka_unit_test(long_repository_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
