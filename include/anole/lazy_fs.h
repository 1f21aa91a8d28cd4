/* SPDX-License-Identifier: Apache-2.0 */
/*
 * On-disk formats that travel beside each data blob of a lazy image
 * (docs/FORMAT.md, "Lazy images"). All integers are little-endian.
 *
 * Digest table: the SHA-256 of every fixed range of a blob, so a client
 * can check any range it fetched before anyone reads it.
 * Chunk index: the extents a blob stores, by the digest of their
 * uncompressed bytes, so later images can point at them instead of
 * storing them again.
 */
#ifndef ANOLE_LAZY_FS_H
#define ANOLE_LAZY_FS_H

#include <stdint.h>

#define ANOLE_MT_CONFIG "application/vnd.anole.config.v1+json"
#define ANOLE_MT_META "application/vnd.anole.erofs.meta.v1"
#define ANOLE_MT_META_ZSTD "application/vnd.anole.erofs.meta.v1+zstd"
#define ANOLE_MT_BLOB "application/vnd.anole.erofs.blob.v1"
#define ANOLE_MT_DIGESTS "application/vnd.anole.blob.digests.v1"
#define ANOLE_MT_CHUNKS "application/vnd.anole.blob.chunks.v1"
/* ELF load hints: what the dynamic loader reads to start each program
 * (docs/FORMAT.md); optional, one at most */
#define ANOLE_MT_HINTS "application/vnd.anole.load-hints.v1+json"
#define ANOLE_ARTIFACT_TYPE "application/vnd.anole.image.v1"
/* A recorded prefetch list: an artifact manifest whose subject is the
 * image's manifest, tagged sha256-HEX.prefetch (HEX: the image manifest's
 * digest); its one layer is the list (docs/FORMAT.md). */
#define ANOLE_PREFETCH_TYPE "application/vnd.anole.prefetch.v1"
#define ANOLE_MT_PREFETCH "application/vnd.anole.prefetch.v1+json"
/* data blob descriptor annotations: the digests of its companions */
#define ANOLE_ANNOT_DIGESTS "dev.anole.blob.digests"
#define ANOLE_ANNOT_CHUNKS "dev.anole.blob.chunks"
/* compressed metadata layer annotations: the image's own digest and size */
#define ANOLE_ANNOT_META_DIGEST "dev.anole.meta.digest"
#define ANOLE_ANNOT_META_SIZE "dev.anole.meta.size"

#define ANOLE_DIGEST_TABLE_MAGIC "ANOLEDT1"
/* Digest table ranges: 1 << range_bits bytes, 4 KiB to 1 MiB; the unit a
 * lazy mount fetches and verifies. 64 KiB by default: finer means fewer
 * bytes fetched that nobody reads, a bigger table and more requests. */
#define ANOLE_RANGE_BITS_MIN 12
#define ANOLE_RANGE_BITS_MAX 20
#define ANOLE_RANGE_BITS_DEFAULT 16

struct anole_digest_table_head {
	char magic[8];      /* ANOLEDT1 */
	uint32_t range_bits; /* ranges of 1 << range_bits bytes; the last may be short */
	uint32_t reserved0;
	uint64_t blob_size;
	uint64_t count;      /* ranges = ceil(blob_size / range) */
	uint8_t reserved[32];
	/* then count SHA-256 digests of 32 bytes */
};

#define ANOLE_CHUNK_INDEX_MAGIC "ANOLECX1"

struct anole_chunk_index_head {
	char magic[8];      /* ANOLECX1 */
	uint32_t blkszbits;
	uint32_t algorithm;  /* EROFS algorithm id of compressed extents */
	uint32_t pcluster;   /* extent size limit the writer used */
	uint32_t reserved0;
	uint64_t count;
	uint64_t blob_blocks;
	uint8_t reserved[24];
	/* then count entries, sorted by key */
};

struct anole_chunk_entry {
	/* SHA-256 of the extent's uncompressed bytes, its last three bytes
	 * xored with: [29] log2(pcluster), [30] algorithm + 1, [31] 0xff when
	 * stored plain by choice. Equal keys mean interchangeable extents. */
	uint8_t key[32];
	uint32_t blkaddr; /* first block, counted from the blob's start */
	uint32_t cblocks; /* compressed blocks; 0 = plain bytes */
	uint32_t nblocks; /* blocks it takes in the blob */
	uint32_t reserved;
};

_Static_assert(sizeof(struct anole_digest_table_head) == 64, "digest table head is 64 bytes");
_Static_assert(sizeof(struct anole_chunk_index_head) == 64, "chunk index head is 64 bytes");
_Static_assert(sizeof(struct anole_chunk_entry) == 48, "chunk entry is 48 bytes");

#endif
