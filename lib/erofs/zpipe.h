/* SPDX-License-Identifier: Apache-2.0 */
/* The ordered, multi-threaded compression pipeline of the writer. */
#ifndef ANOLE_ZPIPE_H
#define ANOLE_ZPIPE_H

#include "compress/codec.h"
#include "erofs/tree.h"

struct zpipe_stats {
	uint64_t files, bytes_in, bytes_out, dedupe_bytes;
};

struct zpipe;
int zpipe_new(struct tree_writer *tw, const struct codec_spec *spec, uint32_t pcluster,
	      unsigned int threads, bool dedupe, struct zpipe **out);
void zpipe_free(struct zpipe *z);
/* After the last drain: end the workers (their codecs' memory, tens of MB
 * for zstd or lzma, goes with them) and free the job buffers, so that
 * metadata layout does not hold them; stats, seen and max_cblocks stay. */
void zpipe_stop(struct zpipe *z);
/* Queue all of a regular file's data; @compress false copies it as plain
 * blocks (still in order with everything else). */
int zpipe_file(struct zpipe *z, struct tinode *ino, int fd, bool compress, const char *path);
/* Compress only the first @len bytes of a file (its tail is a fragment). */
int zpipe_file_head(struct zpipe *z, struct tinode *ino, int fd, uint64_t len, const char *path);
/* Whether extents fill their pcluster (then zpipe_file_packed_tail()). */
bool zpipe_fills(const struct zpipe *z);
/* Fill extents from the start of a file until at most a pcluster of input
 * is left, and pack that rest (tw_pack_fragment()) as mkfs.erofs does. */
int zpipe_file_packed_tail(struct zpipe *z, struct tinode *ino, int fd, const char *path);
/* All of a file of at most a pcluster to the packed inode, in order with
 * the tails zpipe_file_packed_tail() packs. */
int zpipe_file_fragment(struct zpipe *z, struct tinode *ino, int fd, const char *path);
/* Compress extents ending at @cuts (content-defined boundaries). */
int zpipe_file_cuts(struct zpipe *z, struct tinode *ino, int fd, const uint64_t *cuts, size_t n,
		    const char *path);
/* Extents may start anywhere (plain ones then need big-pcluster heads). */
void zpipe_set_cdc(struct zpipe *z, bool on);
/* Retire every queued job. */
int zpipe_drain(struct zpipe *z);
const struct zpipe_stats *zpipe_stats(const struct zpipe *z);
uint32_t zpipe_max_cblocks(const struct zpipe *z);
/* The history (lzma dictionary) streams use, for the superblock. */
uint32_t zpipe_window(const struct zpipe *z);

/* Dedupe keys: the SHA-256 of an extent's input, made to differ by how
 * it is stored (include/anole/lazy_fs.h, struct anole_chunk_entry). */
struct digest;
struct digest_map;
void zpipe_key(struct digest *d, bool compress, const struct codec_spec *spec, uint32_t pcluster);
/* Where an extent is: block address, compressed blocks (0 = plain) and
 * blocks taken, packed in the dedupe map's value. */
uint64_t zpipe_where(uint64_t blk, uint32_t cblocks, uint32_t nblocks);
#define ZPIPE_WHERE_BLK(w) ((w) & ((1ull << 40) - 1))
#define ZPIPE_WHERE_CBLOCKS(w) ((uint32_t)((w) >> 40) & 0xfffu)
#define ZPIPE_WHERE_NBLOCKS(w) ((uint32_t)((w) >> 52))
/* Offer an extent stored elsewhere (another image's blob) for reuse. */
int zpipe_preload(struct zpipe *z, const struct digest *key, uint64_t where);
/* Every extent the pipeline knows (with dedupe), by key. */
const struct digest_map *zpipe_seen(const struct zpipe *z);

#endif
