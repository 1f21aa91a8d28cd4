/* SPDX-License-Identifier: Apache-2.0 */
/* Build sources: each feeds a tree_writer from one kind of input. */
#ifndef ANOLE_SOURCE_H
#define ANOLE_SOURCE_H

#include <sys/stat.h>

#include "erofs/tree.h"
#include "util/digest.h"

struct archive;
struct archive_entry;

/* What anole build takes as SOURCE, one entry each in lib/build.c's table,
 * asked in its order: the first whose claims() says yes builds. @st is
 * SOURCE's stat(2), NULL when SOURCE names no local file. */
struct build_source {
	const char *name; /* for messages */
	bool (*claims)(const char *source, const struct stat *st,
		       const struct anole_build_options *opts);
	int (*build)(const char *source, const char *image, const struct anole_build_options *opts,
		     struct anole_build_stats *stats, struct anole_error *err);
};

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
struct blob_stream;
int layers_add(struct layers *l, struct blob_stream *bs, struct archive *a, uint32_t layer);
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

/* What tar.c keeps of the plain tar stream to read each entry's headers
 * again: libarchive reads some numbers in them too leniently. */
struct tar_hdrs {
	uint64_t pos;     /* bytes handed to the tar reader so far */
	const char *last; /* the last block handed out (valid until the next) */
	size_t last_len;
	size_t tail_len; /* bytes in tail: those just before @last */
	char tail[4096];
	bool reading; /* inside archive_read_next_header */
	bool keeping, lost;
	uint64_t start;     /* where that call's headers start */
	struct strbuf keep; /* the bytes from @start on, once @last moves on */
};

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
	bool eof, failed; /* failed: the stream itself (code, msg) */
	int code;
	char msg[320];
	struct archive *raw; /* decompression: libarchive's filters, raw format */
	bool in_entry, plain_failed;
	bool raw_empty; /* the stream had no bytes at all: an empty tar */
	struct tar_hdrs hdrs;
};
/* Open a tar reader (plain, gzip, zstd or xz) over @bs. */
int tar_open(struct blob_stream *bs, struct archive **a, struct anole_error *err);
/* The next entry of @a: 1, or 0 at the end, or <0 with @err set (the
 * stream's failure, libarchive's, or a header anole refuses). */
int tar_next(struct blob_stream *bs, struct archive *a, struct archive_entry **e,
	     struct anole_error *err);
/* A failure of @a while reading @path's data (NULL: no entry), as one
 * line naming the layer (and the entry). */
int tar_error(struct blob_stream *bs, struct archive *a, const char *path,
	      struct anole_error *err);
/* Read what the tar reader left, check size and digest, free the reader.
 * After a failure (!@ok) a verified stream is read to its end too: when
 * its digest does not match, that replaces the error in @err. */
int tar_close(struct blob_stream *bs, struct archive *a, bool ok, struct anole_error *err);

/* The header blocks of one entry (from @at: PAX 'x', GNU long names, ...,
 * then its own header), read through @get. Returns 0 when anole takes
 * them, 1 when one of their numbers is not one (@why says which), -1 when
 * @get has not the bytes. */
struct tar_hdr_src {
	bool (*get)(void *ctx, uint64_t at, size_t n, void *dst);
	void *ctx;
};
int tar_check_headers(const struct tar_hdr_src *src, uint64_t at, char *why, size_t whysz);

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

/* The build functions (struct build_source) of "oci:DIR[:TAG]",
 * "docker://HOST/REPO[:TAG|@DIGEST]" and tar file ("-": stdin) sources;
 * @stats may be NULL. */
int source_layout(const char *source, const char *image, const struct anole_build_options *opts,
		  struct anole_build_stats *stats, struct anole_error *err)
	__attribute__((nonnull(1, 2, 3, 5)));
int source_registry(const char *source, const char *image, const struct anole_build_options *opts,
		    struct anole_build_stats *stats, struct anole_error *err)
	__attribute__((nonnull(1, 2, 3, 5)));
int source_tar(const char *source, const char *image, const struct anole_build_options *opts,
	       struct anole_build_stats *stats, struct anole_error *err)
	__attribute__((nonnull(1, 2, 3, 5)));

#endif
