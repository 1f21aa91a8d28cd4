/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A place where OCI content lives: a local image layout ("oci:DIR[:TAG]"
 * or a bare DIR) or a registry repository ("docker://HOST/REPO[:TAG]").
 * Lazy images are converted into, pulled from and mounted out of stores.
 */
#ifndef ANOLE_STORE_H
#define ANOLE_STORE_H

#include "registry/registry.h"
#include "util/digest.h"

struct store {
	char *name;          /* as the user gave it, for messages */
	char *dir;           /* a layout's directory */
	char *tag;           /* a layout's tag, or NULL */
	struct registry *reg;
	struct registry_ref ref;
};

/* @create makes a missing layout directory. A registry gets the caller's
 * credentials for its host. */
int store_open(const char *spec, int tls_verify, bool create, struct store **out,
	       struct anole_error *err);
/* The same with @creds for a registry (registry_new: NULL = the caller's). */
int store_open_as(const char *spec, int tls_verify, const struct registry_creds *creds,
		  bool create, struct store **out, struct anole_error *err);
void store_free(struct store *s);
static inline bool store_is_registry(const struct store *s)
{
	return s->reg != NULL;
}
/* The same registry host? (blobs can be mounted across repositories) */
bool store_same_registry(const struct store *a, const struct store *b);

/* The manifest the store's tag or digest names, checked against its digest;
 * *mt gets its media type (128 bytes), *dg its digest. */
int store_get_manifest(struct store *s, struct strbuf *body, char *mt, struct digest *dg,
		       struct anole_error *err);
/* A small blob (at most @max bytes) in memory, checked against @digest. */
int store_get_small(struct store *s, const char *digest, uint64_t size, uint64_t max,
		    struct strbuf *out, struct anole_error *err);
/* A blob to read from *fd (unchecked: the caller verifies). Close *fd, then
 * call store_blob_end(*f) when *f is set. */
int store_open_blob(struct store *s, const char *digest, uint64_t size, int *fd,
		    struct registry_fetch **f, struct anole_error *err);
int store_blob_end(struct registry_fetch *f, struct anole_error *err);
/* Bytes [off, off+len) of a blob into @buf (unchecked: the caller
 * verifies); @quick: without retries. */
int store_read_range(struct store *s, const char *digest, uint64_t off, uint64_t len, void *buf,
		     bool quick, struct anole_error *err);
/* 1 when the store has the blob with this size, 0 when not. */
int store_has_blob(struct store *s, const char *digest, uint64_t size, struct anole_error *err);
/* DIR/blobs/sha256/HEX of a layout (malloc'd), NULL for registries. */
char *store_blob_path(const struct store *s, const char *digest);
/* DIR/blobs/sha256 of a layout. */
char *store_blob_dir(const struct store *s);
/* The same place under another tag: "oci:DIR:TAG" or "docker://HOST/REPO:TAG"
 * (malloc'd). */
char *store_spec_with_tag(const struct store *s, const char *tag);
/* Put a small blob (its digest is computed) into the store. */
int store_put_blob(struct store *s, const void *data, size_t len, struct digest *dg,
		   struct anole_error *err);
/* Store a manifest and name it with the store's tag ("latest" when none). */
int store_put_manifest(struct store *s, const void *body, size_t len, const char *mt,
		       struct digest *dg, struct anole_error *err);

#endif
