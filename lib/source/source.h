/* SPDX-License-Identifier: Apache-2.0 */
/* Build sources: each feeds a tree_writer from one kind of input. */
#ifndef ANOLE_SOURCE_H
#define ANOLE_SOURCE_H

#include "erofs/tree.h"
#include "util/digest.h"

struct archive;
struct archive_entry;

/* A directory on a local filesystem, walked in name order. */
int source_dir(struct tree_writer *tw, const char *path, struct anole_error *err);

/* ---- container layers (layers.c) ---------------------------------------- */

struct layers;
struct layers_stats {
	uint64_t entries, hidden, whiteouts, opaque_dirs, hardlinks;
};
int layers_new(struct tree_writer *tw, bool separate, struct anole_error *err, struct layers **out);
/* Read one layer's tar stream. Layers must come top first: @layer counts
 * down, the bottom layer being 0. */
int layers_add(struct layers *l, struct archive *a, uint32_t layer, const char *what);
/* Link the merged tree into the writer. */
int layers_finish(struct layers *l);
const struct layers_stats *layers_stats(const struct layers *l);
/* Separate mode: what lower layers left (directory metadata, symlinks)
 * for upper ones that imply a directory or write through a symlink, and
 * the lower layers' images, for hard links into them. */
struct dirmeta;
int dirmeta_new(struct dirmeta **out);
void dirmeta_free(struct dirmeta *dm);
void layers_use_dirmeta(struct layers *l, struct dirmeta *dm, const char *const *lower,
			size_t nlower);
void layers_free(struct layers *l);

/* ---- tar streams (tar.c) ------------------------------------------------ */

/* A layer's bytes read from @fd, checked against a digest and size as they
 * go when @verify is set. */
struct blob_stream {
	int fd;
	const char *what; /* for messages */
	bool verify;
	struct digest want;
	uint64_t size; /* expected; UINT64_MAX when unknown */
	/* private */
	struct sha256_stream *sha;
	uint64_t got;
	char *buf;
	bool eof, failed;
};
/* Open a tar reader (plain, gzip, zstd or xz) over @bs. */
int tar_open(struct blob_stream *bs, struct archive **a, struct anole_error *err);
/* Read what the tar reader left, check size and digest, free the reader. */
int tar_close(struct blob_stream *bs, struct archive *a, bool ok, struct anole_error *err);

/* Entry names as raw bytes (the locale's conversion may refuse some). */
const char *source_entry_path(struct archive_entry *e);
const char *source_entry_hardlink(struct archive_entry *e);
const char *source_entry_symlink(struct archive_entry *e);
/* POSIX ACLs libarchive parsed (SCHILY.acl.*) as system.posix_acl_* pairs. */
int source_acl_xattrs(struct xattr_table *t, struct xattr_setbuf *sb, struct archive_entry *e,
		      uint32_t *mode, struct anole_error *err, const char *path);
int source_archive_err(struct anole_error *err, struct archive *a, const char *what,
		       const char *path);

/* ---- OCI images (oci.c) ------------------------------------------------- */

/* "oci:DIR[:TAG]" and "docker://HOST/REPO[:TAG|@DIGEST]" sources. */
bool source_is_image_ref(const char *source);
int source_image(const char *source, const char *image, const struct anole_build_options *opts,
		 struct anole_build_stats *stats, struct anole_error *err);

#endif
