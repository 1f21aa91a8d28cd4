/* SPDX-License-Identifier: Apache-2.0 */
/* Lazy images inside the library: what the lazy mount daemon needs. */
#ifndef ANOLE_LAZY_H
#define ANOLE_LAZY_H

#include "anole/anole.h"
#include "erofs/blobmeta.h"
#include "lazy/store.h"

/* Fetch and verify everything a lazy mount of @ref needs before mounting
 * into the layout @cache_dir: the config, the metadata image and every
 * blob's digest table and chunk index, but no data. (*out)->meta_path is
 * the metadata image in the cache; *src the store to read data from (the
 * caller frees both). @manifest_known, when set, is called with the
 * image's manifest digest as soon as it is known, before the rest comes:
 * the caller can fetch what hangs off the image meanwhile. @creds: for
 * the registry (store_open_as). */
int lazy_prepare(const char *ref, const char *cache_dir, int tls_verify,
		 const struct registry_creds *creds,
		 void (*manifest_known)(const char *digest, void *ctx), void *ctx,
		 struct anole_lazy_info **out, struct store **src, struct anole_error *err);
/* A blob's digest table, from the cache (lazy_prepare put it there). */
int lazy_blob_table(const char *cache_dir, const struct anole_lazy_blob *b, struct digest_table *t,
		    struct anole_error *err);
/* A blob's compressed extents as byte spans [start, end), sorted, from its
 * chunk index in the cache: the kernel reads each of them whole. */
int lazy_blob_extents(const char *cache_dir, const struct anole_lazy_blob *b,
		      uint64_t (**spans)[2], size_t *n, struct anole_error *err);

/* The prefetch list recorded for the image with @manifest_digest, or
 * *out = NULL when there is none. */
struct json_t;
int lazy_prefetch_get(const char *ref, const char *manifest_digest, int tls_verify,
		      const struct registry_creds *creds, struct json_t **out,
		      struct anole_error *err);

/* What a recorded list asks of one blob of the mounted image. */
struct prefetch_blob {
	const char *digest; /* "sha256:HEX" */
	uint64_t nranges;   /* digest-table ranges it has */
	uint64_t max_run;   /* the most ranges one request may ask for */
};
/* Neighbouring ranges of one blob, fetched in one request. */
struct prefetch_run {
	size_t blob; /* index into the image's blobs */
	uint64_t first, last;
};
/* The runs a recorded list ({"blobs":[digests],"ranges":[[blob, range]...]},
 * docs/FORMAT.md) asks for, in its order. Entries that name a blob the
 * image lacks, a range beyond a blob's end, or anything but two integers
 * are skipped; a list that is not an object, names over 64 blobs or more
 * ranges than the image has is refused with -EBADMSG and a reason in @why.
 * The list comes from the registry: nothing in it is trusted. */
int prefetch_list_runs(struct json_t *list, const struct prefetch_blob *blobs, size_t nblobs,
		       struct prefetch_run **runs, size_t *nruns, char *why, size_t why_size);

#endif
