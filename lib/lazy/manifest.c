/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy images: a metadata EROFS image plus data blobs (each with a digest
 * table and a chunk index) under one OCI image manifest. Converting builds
 * and pushes one, pulling fetches and verifies one into a local layout.
 * docs/FORMAT.md ("Lazy images") is the specification.
 *
 * This file: a lazy image's manifest and config, parsed and checked.
 */
#include <jansson.h>

#include "lazy/lazy_int.h"
#include "util/digest.h"

#define MAX_META_IMAGE (16ull << 30) /* a metadata image; millions of files fit */

/* ---- manifests ------------------------------------------------------------ */

void anole_lazy_free(struct anole_lazy_info *li)
{
	if (!li)
		return;
	free(li->config_json);
	free(li->meta_path);
	free(li->blobs);
	free(li);
}

/* A descriptor's digest and size, into the fixed fields of the lazy info. */
static int get_desc(const char *name, json_t *j, char digest[72], uint64_t *size,
		    struct anole_error *err)
{
	struct oci_desc d;
	int r = oci_desc_parse(j, false, name, "manifest", &d, err);
	if (r < 0)
		return r;
	snprintf(digest, 72, "%s", d.digest_str);
	*size = d.size;
	return 0;
}

/* The layer whose digest is @digest and media type @mt, or NULL. */
static json_t *find_layer(json_t *layers, const char *digest, const char *mt)
{
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l) {
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *t = json_string_value(json_object_get(l, "mediaType"));
		if (d && t && !strcmp(d, digest) && !strcmp(t, mt))
			return l;
	}
	return NULL;
}

static int parse_blob(const char *name, json_t *layers, json_t *l, struct anole_lazy_blob *b,
		      struct anole_error *err)
{
	int r = get_desc(name, l, b->digest, &b->size, err);
	if (r < 0)
		return r;
	json_t *an = json_object_get(l, "annotations");
	const char *dt = json_string_value(json_object_get(an, ANOLE_ANNOT_DIGESTS));
	const char *ck = json_string_value(json_object_get(an, ANOLE_ANNOT_CHUNKS));
	json_t *dl = dt ? find_layer(layers, dt, ANOLE_MT_DIGESTS_V2) : NULL;
	b->cut_at_extents = dl != NULL;
	if (dt && !dl)
		dl = find_layer(layers, dt, ANOLE_MT_DIGESTS);
	json_t *cl = ck ? find_layer(layers, ck, ANOLE_MT_CHUNKS) : NULL;
	if (!dl || !cl)
		return anole_err(err, EBADMSG,
				 "%s: data blob %s: its digest table or chunk index is not among "
				 "the layers",
				 name, b->digest);
	if ((r = get_desc(name, dl, b->digests, &b->digests_size, err)) < 0)
		return r;
	return get_desc(name, cl, b->chunks, &b->chunks_size, err);
}

/* The metadata image's own digest and size: the layer's, or from the
 * annotations of a compressed layer. */
static int meta_image_desc(const char *name, json_t *l, bool zstd, struct anole_lazy_info *li,
			   struct anole_error *err)
{
	if (!zstd) {
		memcpy(li->meta_image_digest, li->meta_digest, sizeof(li->meta_digest));
		li->meta_image_size = li->meta_size;
		return 0;
	}
	json_t *an = json_object_get(l, "annotations");
	const char *d = json_string_value(json_object_get(an, ANOLE_ANNOT_META_DIGEST));
	const char *sz = json_string_value(json_object_get(an, ANOLE_ANNOT_META_SIZE));
	struct digest tmp;
	char *end = NULL;
	errno = 0;
	/* the size bounds decompression: a digit string, at most MAX_META_IMAGE */
	unsigned long long n = sz && *sz >= '0' && *sz <= '9' ? strtoull(sz, &end, 10) : 0;
	if (!d || digest_parse(d, &tmp) < 0 || !n || *end || errno || n > MAX_META_IMAGE)
		return anole_err(err, EBADMSG,
				 "%s: the compressed metadata image lacks its digest or size "
				 "annotation",
				 name);
	snprintf(li->meta_image_digest, sizeof(li->meta_image_digest), "%s", d);
	li->meta_image_size = n;
	return 0;
}

static int parse_manifest(const char *name, const struct strbuf *body, const char *mt,
			  struct anole_lazy_info *li, struct anole_error *err)
{
	json_error_t je;
	json_t *root = json_loadb(body->buf, body->len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return anole_err(err, EBADMSG, "%s: bad JSON in the manifest: %s (byte %d)", name,
				 je.text, je.position);
	const char *t = json_string_value(json_object_get(root, "mediaType"));
	if (!t || !*t)
		t = mt && *mt ? mt : OCI_MT_MANIFEST;
	json_t *config = json_object_get(root, "config");
	const char *ct = json_string_value(json_object_get(config, "mediaType"));
	json_t *layers = json_object_get(root, "layers");
	int r = 0;
	if (strcmp(t, OCI_MT_MANIFEST))
		r = anole_err(err, ENOTSUP, "%s: media type %s is not an OCI image manifest", name,
			      t);
	else if (!ct || strcmp(ct, ANOLE_MT_CONFIG))
		r = anole_err(err, ENOTSUP,
			      "%s: not an anole lazy image (config media type %s; convert it "
			      "with anole convert)",
			      name, ct ? ct : "missing");
	else if (!json_is_array(layers))
		r = anole_err(err, EBADMSG, "%s: the manifest has no layers", name);
	else
		r = get_desc(name, config, li->config_digest, &li->config_size, err);
	size_t i, nmeta = 0;
	json_t *l;
	if (r >= 0 && !(li->blobs = calloc(json_array_size(layers) + 1, sizeof(*li->blobs))))
		r = anole_err(err, ENOMEM, "out of memory");
	json_array_foreach(layers, i, l) {
		if (r < 0)
			break;
		const char *lt = json_string_value(json_object_get(l, "mediaType"));
		if (lt && (!strcmp(lt, ANOLE_MT_META) || !strcmp(lt, ANOLE_MT_META_ZSTD))) {
			r = get_desc(name, l, li->meta_digest, &li->meta_size, err);
			if (r >= 0)
				r = meta_image_desc(name, l, !strcmp(lt, ANOLE_MT_META_ZSTD), li, err);
			nmeta++;
		} else if (lt && !strcmp(lt, ANOLE_MT_BLOB)) {
			r = parse_blob(name, layers, l, &li->blobs[li->nblobs++], err);
		} else if (lt && !strcmp(lt, ANOLE_MT_HINTS)) {
			if (li->hints_digest[0])
				r = anole_err(err, EBADMSG, "%s: two load hint layers", name);
			else
				r = get_desc(name, l, li->hints_digest, &li->hints_size, err);
		} else if (!lt || (strcmp(lt, ANOLE_MT_DIGESTS) && strcmp(lt, ANOLE_MT_DIGESTS_V2) &&
				   strcmp(lt, ANOLE_MT_CHUNKS))) {
			r = anole_err(err, ENOTSUP, "%s: layer %zu has unknown media type %s", name,
				      i + 1, lt ? lt : "(none)");
		}
	}
	if (r >= 0 && nmeta != 1)
		r = anole_err(err, EBADMSG, "%s: %zu metadata images in the manifest, not one", name,
			      nmeta);
	json_decref(root);
	return r;
}

/* Manifest and config of the image @s names. */
int lazy_read(struct store *s, bool with_config, struct strbuf *body,
	      struct anole_lazy_info **out, struct anole_error *err)
{
	struct anole_lazy_info *li = calloc(1, sizeof(*li));
	if (!li)
		return anole_err(err, ENOMEM, "out of memory");
	char mt[128] = "";
	struct digest dg;
	struct strbuf cfg = {0};
	int r = store_get_manifest(s, body, mt, &dg, err);
	if (r >= 0)
		r = parse_manifest(s->name, body, mt, li, err);
	if (r >= 0 && with_config)
		r = store_get_small(s, li->config_digest, li->config_size, MAX_SMALL, &cfg, err);
	if (r < 0) {
		strbuf_release(&cfg);
		anole_lazy_free(li);
		return r;
	}
	digest_format(&dg, li->manifest_digest);
	li->manifest_size = body->len;
	li->config_json = cfg.buf;
	li->meta_path = store_blob_path(s, li->meta_image_digest);
	*out = li;
	return 0;
}

int anole_lazy_open(const char *ref, int tls_verify, struct anole_lazy_info **out,
		    struct anole_error *err)
{
	struct store *s;
	int r = store_open(ref, tls_verify, false, &s, err);
	if (r < 0)
		return r;
	struct strbuf body = {0};
	r = lazy_read(s, true, &body, out, err);
	strbuf_release(&body);
	store_free(s);
	return r;
}
