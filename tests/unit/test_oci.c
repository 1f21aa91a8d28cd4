/* SPDX-License-Identifier: Apache-2.0 */
/* The OCI content layer: layout specs, descriptors, and a layout made,
 * tagged, found and read back, with the lies a layout can tell. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "oci/oci.h"
#include "util/safefs.h"

static void splits_dir_and_tag(void **state)
{
	(void)state;
	struct anole_error err = {0};
	char *dir, *tag;
	assert_int_equal(oci_layout_split("/a/b:v1", true, &dir, &tag, &err), 0);
	assert_string_equal(dir, "/a/b");
	assert_string_equal(tag, "v1");
	free(dir);
	free(tag);
	/* a ':' with a '/' after it is part of the directory */
	assert_int_equal(oci_layout_split("x:y/z", true, &dir, &tag, &err), 0);
	assert_string_equal(dir, "x:y/z");
	assert_null(tag);
	free(dir);
	/* a bare directory has no tag, whatever its name */
	assert_int_equal(oci_layout_split("d:t", false, &dir, &tag, &err), 0);
	assert_string_equal(dir, "d:t");
	assert_null(tag);
	free(dir);
}

static void makes_blob_paths(void **state)
{
	(void)state;
	char *p = oci_blob_path("/l", "sha256:ab");
	assert_string_equal(p, "/l/blobs/sha256/ab");
	free(p);
	assert_null(oci_blob_path("/l", "md5:ab"));
	p = oci_blob_dir("/l");
	assert_string_equal(p, "/l/blobs/sha256");
	free(p);
}

static int parse(const char *text, bool need_type, struct oci_desc *d)
{
	struct anole_error err = {0};
	json_t *j = json_loads(text, 0, NULL);
	int r = oci_desc_parse(j, need_type, "t", "here", d, &err);
	json_decref(j);
	return r;
}

#define DG "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void parses_descriptors(void **state)
{
	(void)state;
	struct oci_desc d;
	assert_int_equal(parse("{\"mediaType\":\"m\",\"digest\":\"" DG "\",\"size\":0}", true, &d),
			 0);
	assert_string_equal(d.media_type, "m");
	assert_string_equal(d.digest_str, DG);
	assert_int_equal(d.size, 0);
	assert_int_equal(parse("{\"digest\":\"" DG "\",\"size\":0}", false, &d), 0);
	assert_string_equal(d.media_type, "");
	assert_int_equal(parse("{\"digest\":\"" DG "\",\"size\":0}", true, &d), -EBADMSG);
	assert_int_equal(parse("{\"digest\":\"" DG "\",\"size\":-1}", false, &d), -EBADMSG);
	assert_int_equal(parse("{\"digest\":\"sha512:00\",\"size\":1}", false, &d), -EBADMSG);
	assert_int_equal(parse("{\"digest\":\"" DG "\",\"size\":\"1\"}", false, &d), -EBADMSG);
}

static void knows_media_types(void **state)
{
	(void)state;
	assert_true(oci_is_index_type(OCI_MT_INDEX));
	assert_true(oci_is_manifest_type(OCI_MT_MANIFEST));
	assert_false(oci_is_manifest_type(OCI_MT_INDEX));
	assert_true(oci_is_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"));
	assert_false(oci_is_layer_type("application/vnd.oci.image.layer.v1.tar+lz4"));
	json_t *j = json_loads("{\"manifests\":[]}", 0, NULL);
	assert_string_equal(oci_body_type(j, NULL), OCI_MT_INDEX);
	assert_string_equal(oci_body_type(j, "given"), "given");
	json_decref(j);
}

/* A layout made, a blob put in, tagged twice, found by tag, read back;
 * then the blob changed behind the descriptor's back. */
static void layout_round_trip(void **state)
{
	(void)state;
	char base[] = "/tmp/anole-test-oci.XXXXXX";
	assert_non_null(mkdtemp(base));
	char *dir = NULL;
	assert_true(asprintf(&dir, "%s/layout", base) > 0);
	struct anole_error err = {0};
	assert_int_equal(oci_layout_create(dir, &err), 0);
	assert_int_equal(oci_layout_create(dir, &err), 0); /* again: nothing changes */
	char *bdir = oci_blob_dir(dir);
	static const char body[] = "{\"schemaVersion\":2}";
	struct oci_desc d = {.size = strlen(body)};
	assert_int_equal(cas_put(bdir, body, d.size, &d.digest), 0);
	digest_format(&d.digest, d.digest_str);
	snprintf(d.media_type, sizeof(d.media_type), "%s", OCI_MT_MANIFEST);
	struct oci_desc f;
	assert_int_equal(oci_layout_find(dir, NULL, "t", &f, &err), -ENOENT); /* empty */
	assert_int_equal(oci_layout_tag(dir, "v1", &d, &err), 0);
	assert_int_equal(oci_layout_tag(dir, "v1", &d, &err), 0); /* replaces, not adds */
	assert_int_equal(oci_layout_find(dir, NULL, "t", &f, &err), 0); /* the only one */
	assert_int_equal(oci_layout_tag(dir, "v2", &d, &err), 0);
	assert_int_equal(oci_layout_find(dir, NULL, "t", &f, &err), -ENOENT); /* two now */
	assert_int_equal(oci_layout_find(dir, "v3", "t", &f, &err), -ENOENT);
	assert_int_equal(oci_layout_find(dir, "v2", "t", &f, &err), 0);
	assert_string_equal(f.digest_str, d.digest_str);
	assert_string_equal(f.media_type, OCI_MT_MANIFEST);
	struct strbuf out = {0};
	assert_int_equal(oci_layout_read_small(dir, &f, OCI_MAX_MANIFEST, &out, &err), 0);
	assert_memory_equal(out.buf, body, sizeof(body));
	assert_int_equal(oci_layout_read_small(dir, &f, 4, &out, &err), -EFBIG);
	/* a descriptor that claims less, and a blob that changed */
	f.size--;
	assert_int_equal(oci_layout_read_small(dir, &f, OCI_MAX_MANIFEST, &out, &err), -EBADMSG);
	f.size++;
	char *path = oci_blob_path(dir, f.digest_str);
	unlink(path);
	assert_int_equal(outfile_write(path, "{\"schemaVersion\":3}", d.size), 0);
	assert_int_equal(oci_layout_read_small(dir, &f, OCI_MAX_MANIFEST, &out, &err), -EBADMSG);
	strbuf_release(&out);
	free(path);
	free(bdir);
	free(dir);
	assert_int_equal(rm_tree_at(AT_FDCWD, base), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(splits_dir_and_tag),
		cmocka_unit_test(makes_blob_paths),
		cmocka_unit_test(parses_descriptors),
		cmocka_unit_test(knows_media_types),
		cmocka_unit_test(layout_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
