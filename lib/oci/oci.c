/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI content layer: descriptors, media types and image layouts. A
 * layout is written atomically (temporary file, then rename), so a reader
 * sees index.json and every blob whole or not at all; every blob read
 * into memory is checked against its descriptor before anyone parses it.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sys/file.h>

#include "oci/oci.h"
#include "util/util.h"

#define LAYOUT_FILE "{\"imageLayoutVersion\":\"1.0.0\"}"
#define EMPTY_INDEX "{\"schemaVersion\":2,\"manifests\":[]}\n"

/* ---- media types and descriptors ------------------------------------------ */

bool oci_is_index_type(const char *mt)
{
	return !strcmp(mt, OCI_MT_INDEX) ||
	       !strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json");
}

bool oci_is_manifest_type(const char *mt)
{
	return !strcmp(mt, OCI_MT_MANIFEST) ||
	       !strcmp(mt, "application/vnd.docker.distribution.manifest.v2+json");
}

bool oci_is_layer_type(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar",
		/* BuildKit's zstd under Docker media types; containerd reads it */
		"application/vnd.docker.image.rootfs.diff.tar.zstd",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar",
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (!strcmp(mt, ok[i]))
			return true;
	return false;
}

int oci_desc_parse(json_t *j, bool need_type, const char *name, const char *where,
		   struct oci_desc *d, struct anole_error *err)
{
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	const char *dg = json_string_value(json_object_get(j, "digest"));
	json_t *size = json_object_get(j, "size");
	if ((need_type && !mt) || !dg || !json_is_integer(size) || json_integer_value(size) < 0)
		return anole_err(err, EBADMSG, "%s: %s: a descriptor lacks %sdigest or size", name,
				 where, need_type ? "mediaType, " : "");
	if (digest_parse(dg, &d->digest) < 0)
		return anole_err(err, EBADMSG, "%s: %s: unsupported digest '%.80s' (only sha256 is)",
				 name, where, dg);
	snprintf(d->media_type, sizeof(d->media_type), "%s", mt ? mt : "");
	memcpy(d->digest_str, dg, DIGEST_STR_LEN + 1);
	d->size = (uint64_t)json_integer_value(size);
	return 0;
}

const char *oci_body_type(json_t *root, const char *given)
{
	const char *mt = json_string_value(json_object_get(root, "mediaType"));
	if (mt && *mt)
		return mt;
	if (given && *given)
		return given;
	return json_object_get(root, "manifests") ? OCI_MT_INDEX : OCI_MT_MANIFEST;
}

/* ---- layout paths --------------------------------------------------------- */

char *oci_layout_path(const char *dir, const char *file)
{
	char *p = NULL;
	return asprintf(&p, "%s/%s", dir, file) < 0 ? NULL : p;
}

char *oci_blob_dir(const char *dir)
{
	return oci_layout_path(dir, "blobs/sha256");
}

char *oci_blob_path(const char *dir, const char *digest)
{
	char *p = NULL;
	if (strncmp(digest, "sha256:", 7) || asprintf(&p, "%s/blobs/sha256/%s", dir, digest + 7) < 0)
		return NULL;
	return p;
}

/* ---- layouts -------------------------------------------------------------- */

int oci_layout_split(const char *spec, bool tags, char **dir, char **tag,
		     struct anole_error *err)
{
	const char *colon = tags ? strrchr(spec, ':') : NULL;
	if (colon && strchr(colon, '/'))
		colon = NULL;
	*tag = NULL;
	*dir = colon ? strndup(spec, (size_t)(colon - spec)) : strdup(spec);
	if (*dir && colon && !(*tag = strdup(colon + 1))) {
		free(*dir);
		*dir = NULL;
	}
	return *dir ? 0 : anole_err(err, ENOMEM, "out of memory");
}

int oci_layout_create(const char *dir, struct anole_error *err)
{
	_cleanup_free_ char *blobs = oci_blob_dir(dir);
	_cleanup_free_ char *lf = oci_layout_path(dir, "oci-layout");
	_cleanup_free_ char *idx = oci_layout_path(dir, "index.json");
	if (!blobs || !lf || !idx)
		return anole_err(err, ENOMEM, "out of memory");
	int r = mkdir_parents(blobs, 0755);
	if (r < 0)
		return anole_err(err, -r, "%s: cannot create: %s", blobs, strerror(-r));
	if (access(lf, F_OK) < 0 && (r = outfile_write(lf, LAYOUT_FILE, strlen(LAYOUT_FILE))) < 0)
		return anole_err(err, -r, "%s: %s", lf, strerror(-r));
	if (access(idx, F_OK) < 0 && (r = outfile_write(idx, EMPTY_INDEX, strlen(EMPTY_INDEX))) < 0)
		return anole_err(err, -r, "%s: %s", idx, strerror(-r));
	return 0;
}

static const char *ref_name(json_t *m)
{
	return json_string_value(json_object_get(json_object_get(m, "annotations"),
						 OCI_ANNOT_REF_NAME));
}

int oci_layout_find(const char *dir, const char *tag, const char *name, struct oci_desc *d,
		    struct anole_error *err)
{
	_cleanup_free_ char *path = oci_layout_path(dir, "index.json");
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	json_error_t je;
	json_t *idx = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!idx)
		return anole_err(err, access(path, F_OK) ? ENOENT : EBADMSG,
				 "%s: not an OCI image layout (%s)", name, je.text);
	json_t *ms = json_object_get(idx, "manifests");
	size_t i, n = json_array_size(ms);
	json_t *m, *found = NULL;
	struct strbuf tags = {0};
	json_array_foreach(ms, i, m) {
		const char *t = ref_name(m);
		if (t)
			strbuf_addf(&tags, "%s%s", tags.len ? ", " : "", t);
		if ((tag && t && !strcmp(t, tag)) || (!tag && n == 1))
			found = m;
	}
	int r;
	if (!found)
		r = anole_err(err, ENOENT, "%s: %s (tags: %s)", name,
			      tag ? "no such tag" : "several images: name one as oci:DIR:TAG",
			      tags.len ? tags.buf : "none");
	else
		r = oci_desc_parse(found, false, name, "index.json", d, err);
	strbuf_release(&tags);
	json_decref(idx);
	return r;
}

int oci_layout_tag(const char *dir, const char *tag, const struct oci_desc *d,
		   struct anole_error *err)
{
	_cleanup_free_ char *path = oci_layout_path(dir, "index.json");
	_cleanup_free_ char *lock = oci_layout_path(dir, ".index.lock");
	if (!path || !lock)
		return anole_err(err, ENOMEM, "out of memory");
	/* writers of one layout take turns, so no tag is lost */
	_cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lfd < 0 || flock(lfd, LOCK_EX) < 0)
		return anole_err(err, errno, "%s: %s", lock, strerror(errno));
	json_error_t je;
	json_t *idx = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	json_t *ms = json_object_get(idx, "manifests");
	if (!idx || !json_is_array(ms)) {
		json_decref(idx);
		return anole_err(err, EBADMSG, "%s: not an OCI image index (%s)", path, je.text);
	}
	for (size_t i = json_array_size(ms); i-- > 0;) {
		const char *t = ref_name(json_array_get(ms, i));
		if (t && !strcmp(t, tag))
			json_array_remove(ms, i);
	}
	json_array_append_new(ms, json_pack("{s:s,s:s,s:I,s:{s:s}}", "mediaType", d->media_type,
					    "digest", d->digest_str, "size", (json_int_t)d->size,
					    "annotations", OCI_ANNOT_REF_NAME, tag));
	char *text = json_dumps(idx, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(idx);
	if (!text)
		return anole_err(err, ENOMEM, "out of memory");
	int r = outfile_write(path, text, strlen(text));
	free(text);
	return r < 0 ? anole_err(err, -r, "%s: %s", path, strerror(-r)) : 0;
}

int oci_layout_read_small(const char *dir, const struct oci_desc *d, uint64_t max,
			  struct strbuf *out, struct anole_error *err)
{
	_cleanup_free_ char *path = oci_blob_path(dir, d->digest_str);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	if (d->size > max)
		return anole_err(err, EFBIG, "%s: %llu bytes is more than the %llu allowed", path,
				 (unsigned long long)d->size, (unsigned long long)max);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	out->len = 0;
	if (strbuf_grow(out, d->size + 1) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	/* one byte more than promised: a longer file is caught too */
	ssize_t n = pread(fd, out->buf, d->size + 1, 0);
	if (n < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	if ((uint64_t)n != d->size)
		return anole_err(err, EBADMSG, "%s: %zd bytes where the descriptor says %llu",
				 path, n, (unsigned long long)d->size);
	out->len = (size_t)n;
	out->buf[n] = 0;
	struct digest got;
	sha256(out->buf, out->len, &got);
	if (memcmp(&got, &d->digest, sizeof(got)))
		return anole_err(err, EBADMSG, "%s: content does not match its digest", path);
	return 0;
}
