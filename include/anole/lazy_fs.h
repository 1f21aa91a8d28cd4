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
/* a version 2 table (ANOLEDT2), ranges cut at the blob's extents */
#define ANOLE_MT_DIGESTS_V2 "application/vnd.anole.blob.digests.v2"
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

/* Version 1: fixed ranges of 1 << range_bits bytes. Version 2: ranges cut
 * at the blob's extents (a compressed extent is one range, so a lazy mount
 * fetches it exactly), their lengths listed after the digests. */
#define ANOLE_DIGEST_TABLE_MAGIC "ANOLEDT1"
#define ANOLE_DIGEST_TABLE_MAGIC_V2 "ANOLEDT2"
/* Digest table ranges: 1 << range_bits bytes, 4 KiB to 1 MiB; the unit a
 * lazy mount fetches and verifies. 64 KiB by default: finer means fewer
 * bytes fetched that nobody reads, a bigger table and more requests. In
 * version 2 it is the size plain stretches are cut at and small extents
 * are grouped up to; a compressed extent is one range of up to 1 MiB. */
#define ANOLE_RANGE_BITS_MIN 12
#define ANOLE_RANGE_BITS_MAX 20
#define ANOLE_RANGE_BITS_DEFAULT 16
#define ANOLE_RANGE_MAX (1u << ANOLE_RANGE_BITS_MAX)

struct anole_digest_table_head {
	char magic[8];      /* ANOLEDT1 or ANOLEDT2 */
	uint32_t range_bits; /* v1: ranges of 1 << range_bits bytes, the last may
			      * be short; v2: the cut size of plain stretches */
	uint32_t reserved0;
	uint64_t blob_size;
	uint64_t count;      /* v1: ceil(blob_size / range); v2: ranges listed */
	uint8_t reserved[32];
	/* then count SHA-256 digests of 32 bytes; v2: then count range
	 * lengths (uint32_t, 1 to ANOLE_RANGE_MAX, summing to blob_size) */
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
