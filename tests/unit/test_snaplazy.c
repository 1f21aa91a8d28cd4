/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshotter's reading of containerd's labels (lib/snapshotter/
 * lazy.c): which reference the daemon mounts, and which Prepare of an
 * unpack is a lazy image's base, one of its upper layers, or ordinary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "snapshotter/lazy.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static json_t *labels(const char *ref, const char *md, const char *layer)
{
	json_t *o = json_pack("{s:s}", LABEL_REF, "sha256:chain");

	if (ref)
		json_object_set_new(o, LABEL_IMAGE_REF, json_string(ref));
	if (md)
		json_object_set_new(o, LABEL_MANIFEST_DIGEST, json_string(md));
	if (layer)
		json_object_set_new(o, LABEL_LAYER_DIGEST, json_string(layer));
	return o;
}

static void ref_check(const char *ref, const char *md, int want, const char *want_ref)
{
	json_t *l = labels(ref, md, NULL);
	char buf[256] = "";

	assert_int_equal(lazy_ref_of(l, buf, sizeof(buf)), want);
	if (want_ref)
		assert_string_equal(buf, want_ref);
	json_decref(l);
}

static void refs(void **state)
{
	(void)state;
	ref_check("localhost:5000/lazy/py:v1", NULL, 0, "docker://localhost:5000/lazy/py:v1");
	/* pinned to the manifest containerd resolved: tag and digest go */
	ref_check("localhost:5000/lazy/py:v1", "sha256:" D64, 0,
		  "docker://localhost:5000/lazy/py@sha256:" D64);
	ref_check("localhost:5000/lazy/py", "sha256:" D64, 0,
		  "docker://localhost:5000/lazy/py@sha256:" D64);
	ref_check("r.io/a/b@sha256:" D64, "sha256:" D64, 0, "docker://r.io/a/b@sha256:" D64);
	ref_check("host:5000/x", "sha256:" D64, 0, "docker://host:5000/x@sha256:" D64);
	ref_check(NULL, NULL, -ENOENT, NULL);
	ref_check("", NULL, -EINVAL, NULL);
	ref_check("docker://r.io/x", NULL, -EINVAL, NULL);
	ref_check("r.io/x y", NULL, -EINVAL, NULL);
	ref_check("r.io/../x", NULL, -EINVAL, NULL);
	ref_check("r.io/x", "sha256:" D64 "0", -EINVAL, NULL);
	ref_check("r.io/x", "sha256:ABCDEF", -EINVAL, NULL);
	ref_check("r.io/x", "md5:" D64, -EINVAL, NULL);
}

static void too_long(void **state)
{
	json_t *l = labels("r.io/a-rather-long-name", NULL, NULL);
	char buf[16];

	(void)state;
	assert_int_equal(lazy_ref_of(l, buf, sizeof(buf)), -ENAMETOOLONG);
	json_decref(l);
}

static void chain(void **state)
{
	json_t *base = labels("r.io/x:1", NULL, "sha256:" D64);
	json_t *upper = labels("r.io/x:1", NULL, "sha256:" D64);
	json_t *other = labels("r.io/y:1", NULL, "sha256:" D64);
	json_t *plain = json_pack("{s:s}", LABEL_REF, "sha256:chain");
	json_t *nolayer = labels("r.io/x:1", NULL, NULL);
	json_t *noref = json_pack("{s:s, s:s}", LABEL_IMAGE_REF, "r.io/x:1", LABEL_LAYER_DIGEST,
				  "sha256:" D64);
	json_t *plazy = json_pack("{s:s, s:s}", "ref", "docker://r.io/x:1", "mountpoint", "/m");

	(void)state;
	assert_int_equal(lazy_classify(base, 0, NULL), LAZY_BASE);
	assert_int_equal(lazy_classify(upper, 1, plazy), LAZY_UPPER);
	/* another image's layer over it, an ordinary parent, no labels */
	assert_int_equal(lazy_classify(other, 1, plazy), LAZY_NONE);
	assert_int_equal(lazy_classify(upper, 1, NULL), LAZY_NONE);
	assert_int_equal(lazy_classify(plain, 0, NULL), LAZY_NONE);
	assert_int_equal(lazy_classify(plain, 1, plazy), LAZY_NONE);
	assert_int_equal(lazy_classify(nolayer, 0, NULL), LAZY_NONE);
	/* not an unpack (a container's or a user's Prepare) */
	assert_int_equal(lazy_classify(noref, 0, NULL), LAZY_NONE);
	assert_int_equal(lazy_classify(NULL, 1, plazy), LAZY_NONE);
	json_decref(base);
	json_decref(upper);
	json_decref(other);
	json_decref(plain);
	json_decref(nolayer);
	json_decref(noref);
	json_decref(plazy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refs),
		cmocka_unit_test(too_long),
		cmocka_unit_test(chain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
