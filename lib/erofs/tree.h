/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The in-memory tree a build collects before it lays out metadata.
 *
 * A source (a directory walk today; tar and OCI layers later) adds inodes
 * and directory entries and streams each regular file's data as it goes.
 * Only metadata stays in memory: file contents go straight to the image's
 * data area and short tails to a spool file, so memory grows with the
 * number of inodes, never with file sizes.
 */
#ifndef ANOLE_TREE_H
#define ANOLE_TREE_H

#include "util/util.h"
#include "erofs/xattr.h"

struct tdentry;

struct tdir {
	struct tdentry **child; /* sorted by name before layout */
	uint32_t nchild, cap;
	uint32_t nsubdirs;
	struct tdentry *parent; /* the dentry naming this dir, NULL for root */
	uint32_t depth;         /* below the root */
};

enum tdata_kind {
	TDATA_NONE,   /* empty, or not a regular file */
	TDATA_FLAT,   /* contiguous blocks at startblk, optional inline tail */
	TDATA_CHUNKS, /* chunk map (holes) kept in the spool */
	TDATA_Z,      /* compressed: lcluster indexes kept in the spool */
	TDATA_FRAG,   /* compressed, all of it in the packed inode */
};

/* One of these per inode, a million for a million files: fields are
 * ordered (and flags packed) so that it stays at 104 bytes; the writer
 * hands them out from an arena, without a malloc header each. What a
 * source fills (mode, owner, times, xattrs, symlink target or directory)
 * and the data reference the writer and the compression pipeline fill as
 * data is stored; where the inode itself goes is in struct tplace. */
struct tinode {
	uint32_t mode, uid, gid, rdev;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t nlink;
	uint64_t size;
	uint32_t xattr_set; /* interned set id, 0 = none */
	uint32_t ino;

	/* data placement */
	uint8_t data_kind;
	uint8_t chunkbits;
	bool inline_tail : 1;
	bool cold_tail : 1; /* a block of its own at the data's end (tail_off, tail_len) */
	bool has_frag : 1;  /* its last bytes live in the packed inode */
	bool zcompact : 1;  /* its pclusters are contiguous: compact indexes fit */
	uint32_t tail_len;
	uint32_t nchunks;  /* chunk map entries, or lcluster indexes */
	uint32_t zblocks;  /* compressed: blocks its pclusters take */
	uint64_t tail_off; /* in the spool; also the chunk map's offset */
	uint64_t startblk;
	uint64_t ztail_la; /* compressed: where its fragment tail begins */
	uint64_t frag_off; /* where, in the packed inode */

	union {
		struct tdir *dir;
		char *symlink; /* target, NUL-terminated; size holds its length */
	} u;
};

_Static_assert(sizeof(void *) != 8 || sizeof(struct tinode) <= 104, "struct tinode grew");

/* Set what stat(2) shows of an inode besides its size and contents. */
static inline void tinode_set_meta(struct tinode *d, uint32_t mode, uint32_t uid, uint32_t gid,
				   int64_t mtime, uint32_t mtime_nsec)
{
	d->mode = mode;
	d->uid = uid;
	d->gid = gid;
	d->mtime = mtime;
	d->mtime_nsec = mtime_nsec;
}

/* Where an inode goes in the metadata area and in what form: the
 * writer's layout (lib/erofs/wlayout.c) fills one per linked inode once
 * the tree is complete, so they take no memory while a source is read. */
struct tplace {
	uint64_t nid;
	uint32_t meta_size; /* the inode with its xattrs and inline data */
	uint16_t xattr_icount;
	uint8_t layout;     /* EROFS_INODE_FLAT_PLAIN... */
	bool extended;      /* the 64-byte inode */
};

_Static_assert(sizeof(struct tplace) == 16, "struct tplace grew");

struct tdentry {
	struct tinode *inode;
	struct tdentry *parent;
	uint16_t namelen;
	char name[]; /* not NUL-terminated */
};

struct tree_writer;

int tw_new(struct tree_writer **tw, const char *image, const struct anole_build_options *opts,
	   struct anole_error *err);
void tw_free(struct tree_writer *tw);
struct xattr_table *tw_xattrs(struct tree_writer *tw);

/* Create the root (a directory) or a new inode under @parent. */
int tw_root(struct tree_writer *tw, struct tinode **root);
int tw_add(struct tree_writer *tw, struct tinode *parent, const char *name, size_t namelen,
	   struct tinode *inode, struct tdentry **out);
/* Allocate a zeroed inode owned by the writer: it lives as long as the
 * writer, linked or not, and tw_free() frees every inode's symlink target
 * (malloc'd) and directory, so a source that gives one up (a layer entry
 * that a later one replaced) only forgets it. */
struct tinode *tw_inode_new(struct tree_writer *tw);

/* Stream a regular file's content. @fd is read from its start; extents
 * lists the data runs (holes elsewhere), or NULL for a dense file. */
struct data_extent {
	uint64_t off, len;
};
int tw_file_data(struct tree_writer *tw, struct tinode *inode, int fd, const struct data_extent *ext,
		 size_t next, const char *path_for_errors);

/* Lay out, write metadata and commit the image under its final name. */
int tw_finish(struct tree_writer *tw, struct anole_build_stats *stats);

/* For the compression pipeline: block size, the error sink, appending
 * whole blocks to the data area, and the spool. */
uint32_t tw_blksz(const struct tree_writer *tw);
struct anole_error *tw_error(struct tree_writer *tw);
int tw_data_append(struct tree_writer *tw, const void *data, size_t len, uint64_t *blk);
int tw_spool(struct tree_writer *tw, const void *data, size_t len, uint64_t *off);
void tw_add_data_bytes(struct tree_writer *tw, uint64_t n);
/* The last @len bytes of @ino (from @path) go to the packed inode. */
int tw_pack_fragment(struct tree_writer *tw, struct tinode *ino, const void *data, size_t len,
		     const char *path);
uint64_t tw_next_block(const struct tree_writer *tw);
/* An extent of @len file bytes was found stored at @blk. */
void tw_note_reuse(struct tree_writer *tw, uint64_t blk, uint64_t len);

/* Path of a dentry for messages ("/" for root). */
void tdentry_path(const struct tdentry *d, struct strbuf *out);
uint8_t mode_to_ftype(uint32_t mode);
void tw_progress(struct tree_writer *tw, const char *phase, bool force);

#endif
