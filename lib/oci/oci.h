/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OCI content layer: descriptors and media types of manifests and
 * indexes, and image layouts on disk (index.json, oci-layout and
 * blobs/sha256/HEX). `build` from a layout (lib/source/oci.c), the lazy
 * store behind convert, pull and the daemon (lib/lazy/store.c) and the
 * lazy manifest (lib/lazy/manifest.c) read and write OCI content through
 * these calls only. Registries are lib/registry.
 */
#ifndef ANOLE_OCI_H
#define ANOLE_OCI_H

#include "util/digest.h"
#include "util/util.h"

struct json_t;

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_ANNOT_REF_NAME "org.opencontainers.image.ref.name"
/* A manifest or index read into memory: no real one comes near. */
#define OCI_MAX_MANIFEST (4u << 20)

/* An OCI content descriptor. */
struct oci_desc {
	char media_type[128]; /* "" when the descriptor has none */
	char digest_str[DIGEST_STR_LEN + 1];
	struct digest digest;
	uint64_t size;
};

/* Image indexes (OCI, Docker manifest lists), image manifests (OCI,
 * Docker schema 2) and the layer media types anole builds from. */
bool oci_is_index_type(const char *mt);
bool oci_is_manifest_type(const char *mt);
bool oci_is_layer_type(const char *mt);

/* Descriptor @j (from @name's @where, for messages): a sha256 digest, a
 * size and, when @need_type, a media type; -EBADMSG with @err set when
 * one is missing or bad. */
int oci_desc_parse(struct json_t *j, bool need_type, const char *name, const char *where,
		   struct oci_desc *d, struct anole_error *err);
/* A manifest's or index's media type: its own mediaType, else @given
 * (from the descriptor or the registry's Content-Type), else guessed
 * from its fields. */
const char *oci_body_type(struct json_t *root, const char *given);

/* ---- image layouts -------------------------------------------------------- */

/* Paths of layout @dir (malloc'd; NULL when out of memory, or for a
 * digest that is not "sha256:HEX"). Every layout path is made here. */
char *oci_layout_path(const char *dir, const char *file); /* index.json, oci-layout */
char *oci_blob_dir(const char *dir);                       /* DIR/blobs/sha256 */
char *oci_blob_path(const char *dir, const char *digest);  /* DIR/blobs/sha256/HEX */

/* "DIR[:TAG]" split (a ':' followed by no '/' starts the tag; with
 * !@tags the whole of @spec is DIR). *tag is NULL without one. */
int oci_layout_split(const char *spec, bool tags, char **dir, char **tag,
		     struct anole_error *err);
/* Make @dir an empty layout unless it is one. */
int oci_layout_create(const char *dir, struct anole_error *err);
/* The descriptor index.json gives for @tag, or its only entry when @tag is
 * NULL (@name: the layout as the user named it, for messages). */
int oci_layout_find(const char *dir, const char *tag, const char *name, struct oci_desc *d,
		    struct anole_error *err);
/* index.json with @tag naming @d (media type, digest, size), replacing
 * what it named; writers of one layout take turns on DIR/.index.lock. */
int oci_layout_tag(const char *dir, const char *tag, const struct oci_desc *d,
		   struct anole_error *err);
/* Blob @d of @dir (at most @max bytes) in memory, NUL-terminated, checked
 * against its size and digest. */
int oci_layout_read_small(const char *dir, const struct oci_desc *d, uint64_t max,
			  struct strbuf *out, struct anole_error *err);

#endif
