/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recorded prefetch lists: which ranges of which data blobs a
 * workload needed, in the order it first needed them. Stored next to the
 * image as an artifact whose subject is the image manifest, under the tag
 * sha256-HEX.prefetch, so the image's own digest does not change.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anole/lazy_fs.h"
#include "lazy/lazy.h"
#include "oci/oci.h"

#define OCI_EMPTY "application/vnd.oci.empty.v1+json"
#define MAX_LIST (4u << 20) /* ~400k ranges, 400 GiB of data */

static char *prefetch_tag(const char *manifest_digest)
{
	char *t = NULL;
	return asprintf(&t, "sha256-%.64s.prefetch", manifest_digest + 7) < 0 ? NULL : t;
}

/* Store a prefetch list ({"blobs":[digests],"ranges":[[blob, range]...]})
 * for the image @ref names; *tag_out gets the tag it is under. */
static int lazy_prefetch_put(const char *ref, const char *list_json, int tls_verify,
			     char *tag_out, size_t tag_size, struct anole_error *err)
{
	struct anole_lazy_info *li;
	int r = anole_lazy_open(ref, tls_verify, &li, err);
	if (r < 0)
		return r;
	struct store *s = NULL, *t = NULL;
	_cleanup_free_ char *tag = prefetch_tag(li->manifest_digest), *spec = NULL;
	r = store_open(ref, tls_verify, false, &s, err);
	if (r >= 0 && (!tag || !(spec = store_spec_with_tag(s, tag))))
		r = anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = store_open(spec, tls_verify, false, &t, err);
	struct digest ld, cd, md;
	char ls[72], cs[72];
	size_t len = strlen(list_json);
	if (r >= 0)
		r = store_put_blob(t, list_json, len, &ld, err);
	if (r >= 0)
		r = store_put_blob(t, "{}", 2, &cd, err);
	char *text = NULL;
	if (r >= 0) {
		digest_format(&ld, ls);
		digest_format(&cd, cs);
		json_t *m = json_pack(
			"{s:i,s:s,s:s,s:{s:s,s:s,s:i},s:[{s:s,s:s,s:I}],s:{s:s,s:s,s:I}}",
			"schemaVersion", 2, "mediaType", OCI_MT_MANIFEST, "artifactType",
			ANOLE_PREFETCH_TYPE, "config", "mediaType", OCI_EMPTY, "digest", cs, "size", 2,
			"layers", "mediaType", ANOLE_MT_PREFETCH, "digest", ls, "size",
			(json_int_t)len, "subject", "mediaType", OCI_MT_MANIFEST, "digest",
			li->manifest_digest, "size", (json_int_t)li->manifest_size);
		text = m ? json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(m);
		if (!text)
			r = anole_err(err, ENOMEM, "out of memory");
	}
	if (r >= 0)
		r = store_put_manifest(t, text, strlen(text), OCI_MT_MANIFEST, &md, err);
	if (r >= 0 && tag_out)
		snprintf(tag_out, tag_size, "%s", tag);
	free(text);
	store_free(s);
	store_free(t);
	anole_lazy_free(li);
	return r;
}

int lazy_prefetch_get(const char *ref, const char *manifest_digest, int tls_verify,
		      const struct registry_creds *creds, json_t **out, struct anole_error *err)
{
	*out = NULL;
	struct store *s = NULL, *t = NULL;
	_cleanup_free_ char *tag = prefetch_tag(manifest_digest), *spec = NULL;
	int r = store_open_as(ref, tls_verify, creds, false, &s, err);
	if (r >= 0 && (!tag || !(spec = store_spec_with_tag(s, tag))))
		r = anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = store_open_as(spec, tls_verify, creds, false, &t, err);
	struct strbuf body = {0}, list = {0};
	char mt[128] = "";
	struct digest dg;
	if (r >= 0 && store_get_manifest(t, &body, mt, &dg, err) < 0) {
		/* no list recorded: not an error */
		memset(err, 0, sizeof(*err));
		goto out;
	}
	json_error_t je;
	json_t *m = r >= 0 ? json_loadb(body.buf, body.len, 0, &je) : NULL;
	json_t *l = json_array_get(json_object_get(m, "layers"), 0);
	const char *subject = json_string_value(json_object_get(json_object_get(m, "subject"), "digest"));
	const char *ld = json_string_value(json_object_get(l, "digest"));
	json_int_t lsize = json_integer_value(json_object_get(l, "size"));
	if (r >= 0 && (!m || !subject || strcmp(subject, manifest_digest) || !ld || lsize <= 0 ||
		       strcmp(json_string_value(json_object_get(m, "artifactType")) ?: "",
			      ANOLE_PREFETCH_TYPE)))
		r = anole_err(err, EBADMSG, "%s: tag %s is not a prefetch list of this image", ref,
			      tag);
	if (r >= 0)
		r = store_get_small(t, ld, (uint64_t)lsize, MAX_LIST, &list, err);
	json_decref(m);
	if (r >= 0 && !(*out = json_loadb(list.buf, list.len, 0, &je)))
		r = anole_err(err, EBADMSG, "%s: the prefetch list is not JSON", ref);
out:
	strbuf_release(&body);
	strbuf_release(&list);
	store_free(s);
	store_free(t);
	return r;
}

static bool ranges_fit(json_t *ranges, const struct prefetch_blob *blobs, size_t nblobs)
{
	uint64_t total = 0;
	for (size_t k = 0; k < nblobs; k++)
		total += blobs[k].nranges;
	return json_array_size(ranges) <= total;
}

int prefetch_list_runs(json_t *list, const struct prefetch_blob *blobs, size_t nblobs,
		       struct prefetch_run **runs, size_t *nruns, char *why, size_t why_size)
{
	*runs = NULL;
	*nruns = 0;
	json_t *lb = json_object_get(list, "blobs"), *ranges = json_object_get(list, "ranges");
	size_t nb = json_array_size(lb);
	if (!json_is_object(list) || !json_is_array(ranges)) {
		snprintf(why, why_size, "not a prefetch list");
		return -EBADMSG;
	}
	/* a list cannot name more than the image has */
	if (nb > 64 || !ranges_fit(ranges, blobs, nblobs)) {
		snprintf(why, why_size, "%zu blobs, %zu ranges for an image of %zu blobs", nb,
			 json_array_size(ranges), nblobs);
		return -EBADMSG;
	}
	/* the list names blobs by digest: the image's, or skipped */
	size_t map[64];
	for (size_t i = 0; i < nb; i++) {
		const char *d = json_string_value(json_array_get(lb, i));
		map[i] = SIZE_MAX;
		for (size_t k = 0; d && k < nblobs && map[i] == SIZE_MAX; k++)
			if (!strcmp(d, blobs[k].digest))
				map[i] = k;
	}
	struct prefetch_run *out = malloc(MAX(json_array_size(ranges), 1) * sizeof(*out));
	if (!out) {
		snprintf(why, why_size, "out of memory");
		return -ENOMEM;
	}
	size_t n = 0, i;
	json_t *e;
	json_array_foreach(ranges, i, e) {
		json_t *jb = json_array_get(e, 0), *jr = json_array_get(e, 1);
		if (json_array_size(e) != 2 || !json_is_integer(jb) || !json_is_integer(jr))
			continue;
		json_int_t bi = json_integer_value(jb), r = json_integer_value(jr);
		if (bi < 0 || (size_t)bi >= nb || map[bi] == SIZE_MAX || r < 0)
			continue;
		const struct prefetch_blob *b = &blobs[map[bi]];
		if ((uint64_t)r >= b->nranges)
			continue;
		/* runs of neighbours become one request, in the list's order */
		struct prefetch_run *last = n ? &out[n - 1] : NULL;
		if (last && last->blob == map[bi] && (uint64_t)r == last->last + 1 &&
		    last->last + 1 - last->first < MAX(b->max_run, 1)) {
			last->last = (uint64_t)r;
			continue;
		}
		out[n++] = (struct prefetch_run){.blob = map[bi], .first = (uint64_t)r,
						 .last = (uint64_t)r};
	}
	*runs = out;
	*nruns = n;
	return 0;
}

int anole_prefetch_store(const char *ref, const char *list_json, int tls_verify, char *tag,
			 size_t tag_size, struct anole_error *err)
{
	return lazy_prefetch_put(ref, list_json, tls_verify, tag, tag_size, err);
}
