/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the EROFS image writer (lib/erofs/tree.h is its face to sources
 * and the compression pipeline). Its rooms, and what each owns:
 *
 *   writer.c   the writer itself: options, the output files, progress,
 *              and tw_finish(), which runs the rooms below in order
 *   wtree.c    inodes and directory entries as sources add them; sorting
 *              directories; paths for messages
 *   wdata.c    flat and chunked file data, the spool, handing compressed
 *              files to the pipeline; small files' cold tails
 *   wfrag.c    fragments: the packed inode's contents, their dedupe and
 *              their order
 *   wlayout.c  each inode's on-disk form and size, late blocks, nids
 *   wrecord.c  the bytes of inodes, directories, symlinks, superblock
 *   wlazy.c    separate data: the data blob, base blobs, device table,
 *              the blob's digest table and chunk index
 *
 * Image layout (4 KiB blocks by default):
 *
 *   block 0          superblock at byte 1024
 *   data area        regular file contents, in the order the source gives
 *                    them (full blocks; tails that are not inlined)
 *   late area        directory blocks and long symlinks (they need nids, or
 *                    are only known after the scan)
 *   shared xattrs    xattr_blkaddr
 *   metadata area    meta_blkaddr: inodes with inline xattrs, chunk maps
 *                    and inline tails; the root inode first (nid 0)
 *
 * Data is written while the source is scanned; everything that depends on
 * nids is written by tw_finish() once the whole tree is known.
 */
#ifndef ANOLE_WRITER_H
#define ANOLE_WRITER_H

#include "erofs/tree.h"
#include "erofs/zpipe.h"
#include "erofs/cdc.h"
#include "util/digest.h"
#include "util/arena.h"

#define OPEN_META_BLOCKS 16

struct tree_writer {
	struct anole_build_options opts;
	struct anole_error *err;
	char *image_path;
	struct outfile out;  /* the image */
	struct outfile blob; /* separate_data: the data blob */
	int data_fd;         /* where data blocks go: out.fd or blob.fd */
	uint64_t data_base;  /* block address of data_fd's first block */
	char blob_hex[65];
	struct strbuf blob_table, blob_chunks; /* its digest table, chunk index */
	struct wbase *bases; /* other images' blobs it may point into */
	size_t nbases;
	unsigned int ndevs;  /* device table slots written */
	int spool_fd;
	uint64_t spool_len;
	unsigned int blkbits;
	uint32_t blksz;
	uint64_t next_blk;

	struct arena mem;       /* every tdentry */
	struct arena imem;      /* every tinode, linked or not: freed by a walk */
	struct tinode **inodes; /* linked, in creation order; [0] is the root */
	size_t ninodes, icap;
	struct tplace *place;   /* wlayout.c: inodes[i]'s is place[i] */
	struct xattr_table *xt;
	struct anole_build_stats stats;
	double t0, last_progress;
	char *buf; /* copy buffer */

	struct codec_spec zspec;
	uint32_t pcluster;
	struct zpipe *zp; /* NULL for uncompressed images */
	bool fragments;
	int frag_fd; /* small files and tails, packed together */
	uint64_t frag_len;
	struct tinode *packed;
	struct digest_map *frag_seen; /* with fragments: fragment digest -> offset */
	bool cdc;                     /* with dedupe: content-defined extents */
	struct cdc_params cdcp;
	struct frag_rec *frags;       /* every fragment stored, for reordering */
	size_t nfrags, frag_cap;
	struct strbuf frag_keys;
	uint32_t *key_cache;          /* see frag_key() */
};

/* A base blob: where it sits in the unified address space. */
struct wbase {
	struct digest d;
	uint64_t uni, blocks;
	uint64_t reused; /* file bytes found in it */
	bool used;
};

/* A fragment and the key it is grouped by in the packed inode: 8 bytes,
 * one per small file of a million-file tree. Fragments are stored one
 * after the other, so where one is in frag_fd is the sum of the lengths
 * before it. Until tw_reorder_fragments(), an inode's frag_off is the index
 * of its record, not an offset. */
struct frag_rec {
	uint32_t len; /* at most a copy buffer */
	uint32_t key; /* offset of "extension\0basename\0" in frag_keys */
};

/* The copy buffer (tw->buf), also the metadata writer's buffer. */
#define COPY_BUF (1u << 20)

/* Data blocks of a separate-data image live at this address and up, on
 * the extra device: far above any metadata, well below 2^32. Block 1 of
 * the image holds the device table. */
#define DATA_DEVICE_BASE (1ull << 28)
#define DEVT_BLOCK 1

/* Byte offset of data block @blk in data_fd. */
static inline uint64_t data_pos(const struct tree_writer *tw, uint64_t blk)
{
	return (blk - tw->data_base) << tw->blkbits;
}

struct dref {
	const char *name;
	uint16_t len;
	struct tinode *inode;
};

struct layout {
	int64_t epoch;
	uint32_t fixed_nsec;
	uint64_t late_blk;
};

/* The placement of a linked inode (inodes are numbered from 1 in the
 * order they were linked). Valid after tw_layout(). */
static inline struct tplace *tw_place(const struct tree_writer *tw, const struct tinode *ino)
{
	return &tw->place[ino->ino - 1];
}

/* wtree.c */
int tw_register_inode(struct tree_writer *tw, struct tinode *ino);
int tw_sort_dirs(struct tree_writer *tw);
/* The entries of directory @dir as stored, "." and ".." merged in by
 * name (malloc'd, NULL when out of memory). */
struct dref *tw_dir_refs(struct tree_writer *tw, struct tinode *dir, uint32_t *n);
void tw_inode_path(struct tree_writer *tw, struct tinode *ino, struct strbuf *out);

/* wdata.c */
int tw_write_cold_tails(struct tree_writer *tw);

/* wfrag.c */
int tw_frag_add_file(struct tree_writer *tw, struct tinode *ino, int fd, const char *path);
int tw_reorder_fragments(struct tree_writer *tw);
int tw_add_packed_inode(struct tree_writer *tw);

/* wlayout.c: lay out every inode (ORing the feature bits they need into
 * @incompat), then give them nids: @order gets their indexes in
 * tw->inodes in nid order (malloc'd). */
void tw_choose_epoch(struct tree_writer *tw, struct layout *l);
int tw_layout(struct tree_writer *tw, struct layout *l, uint32_t *incompat);
int tw_place_inodes(struct tree_writer *tw, uint32_t **order, uint64_t *meta_blocks);

/* wrecord.c */
int tw_write_inodes(struct tree_writer *tw, const uint32_t *order, uint64_t meta_blkaddr,
		    const struct layout *l);
int tw_write_superblock(struct tree_writer *tw, const struct layout *l, uint64_t meta_blkaddr,
			uint64_t xattr_blkaddr, uint64_t blocks, uint32_t incompat);

/* wlazy.c */
int tw_open_blob(struct tree_writer *tw);
int tw_load_bases(struct tree_writer *tw);
int tw_seal_blob(struct tree_writer *tw);
uint64_t tw_devt_blocks(const struct tree_writer *tw);
int tw_write_devices(struct tree_writer *tw, bool own);
int tw_commit_blob(struct tree_writer *tw);

#endif
