/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The blob cache (blobcache.c): one struct blob per data blob of the
 * mounted images, in the list wk->blobs, all under wk->lock.
 *
 * Path layout, below the cache directory:
 *   blobs/sha256/HEX       a complete blob, verified whole before it got
 *                          this name (and its bytes on disk: fdatasync)
 *   partial/HEX            a partial one, sparse, the file the kernel reads
 *   partial/HEX.ranges     RANGES_MAP_HEAD bytes (the digest table's
 *                          SHA-256), then a byte per range: 1 = verified
 *                          and on disk
 *
 * Lifetime: the flags below are the blob's state; of the 16 mixes only
 * these occur:
 *   complete            all there, under blobs/; fd and mapfd closed,
 *                       never marked, not kept
 *   !complete           partial: fd open (from before the mark: writes
 *                       raise no events), mapfd open, state[] per range
 *     kept              the holder has a copy of fd (HMSG_KEEP; dropped
 *                       with HMSG_DROP when complete or freed)
 *     marked            carries a FAN_PRE_ACCESS mark (kernel mounts; a
 *                       FUSE-only blob is unmarked)
 *   orphan              refs reached 0 while busy (fetches under way): the
 *                       last fetch thread frees it; blob_get takes it back
 * refs counts the mounts using it (blob_get, blob_put); busy the fetches
 * of it under way. A partial blob becomes complete in one step,
 * complete_blob_locked, when its last range is present.
 */
#ifndef ANOLE_SERVE_BLOBCACHE_H
#define ANOLE_SERVE_BLOBCACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "erofs/blobmeta.h"
#include "lazy/store.h"
#include "util/util.h"

struct worker;
struct anole_lazy_blob;
struct registry_creds;
struct anole_error;

enum { RANGE_ABSENT = 0, RANGE_FETCHING = 2, RANGE_PRESENT = 1 };
/* partial/HEX.ranges: the digest table's SHA-256, then a byte per range */
#define RANGES_MAP_HEAD 32u

struct blob {
	struct blob *next;
	char digest[72];
	char *path; /* the file the kernel reads: partial or complete */
	uint64_t size, nranges; /* ranges: the digest table's (1 MiB when complete) */
	int fd;         /* partial: written through, raises no events */
	int mapfd;      /* partial: HEX.ranges */
	uint8_t *state; /* per range */
	struct digest_table table;
	struct store *src;
	uint64_t dev, ino;
	/* lifetime, see above */
	bool complete, marked, orphan, kept;
	unsigned refs, busy;
	uint64_t fetched_bytes, fetches, failures, waiting;
	/* distinct 4 KiB pages readers asked for while the blob was partial:
	 * what a workload needed, to compare with what was fetched */
	uint8_t *readmap;
	uint64_t read_bytes;
	/* its compressed extents, [start, end) in bytes, sorted (may be none) */
	uint64_t (*extents)[2];
	size_t nextents;
	/* read-ahead window: ra_size bytes in ranges up to ra_end; a read
	 * reaching range ra_mark opens the next */
	uint64_t ra_size, ra_mark, ra_end;
	time_t down_since; /* the last full-retry fetch failed then; 0 = fine */
	/* per range, until when (now_seconds()) a read of it fails at once: its
	 * fetch just timed out (allocated on the first time out) */
	double *failed_until;
};

/* Range i of a blob is [range_off(b, i), range_off(b, i + 1)). */
static inline uint64_t range_off(const struct blob *b, uint64_t i)
{
	return b->table.off ? b->table.off[i] : MIN(i << ANOLE_RANGE_BITS_MAX, b->size);
}

/* The range holding byte @off (< b->size). */
static inline uint64_t range_at(const struct blob *b, uint64_t off)
{
	return b->table.off ? digest_table_range_at(&b->table, off) : off >> ANOLE_RANGE_BITS_MAX;
}

/* The blob @digest, or NULL. */
struct blob *blob_find(struct worker *wk, const char *digest);
/* A blob of an image being mounted (from @ref, with @creds), shared with
 * other mounts: a reference more to one known, else its cache file found
 * or made, and marked when @mark. */
int blob_get(struct worker *wk, const struct anole_lazy_blob *lb, const char *ref, int tls_verify,
	     const struct registry_creds *creds, bool mark, struct blob **out,
	     struct anole_error *err);
/* A reference less; the last one frees it (or orphans it, when busy). */
void blob_put(struct worker *wk, struct blob *b);
/* Free it now whatever its references (an orphan's last fetch ended). */
void blob_release(struct worker *wk, struct blob *b);
/* Without wk->lock: hash what an earlier daemon left of blob @lb in the
 * cache, dropping what does not match (@restoring: its complete file is
 * what a restored mount reads already, not checked). */
void blob_vet(struct worker *wk, const struct anole_lazy_blob *lb, bool restoring);
/* The number of ranges present. */
uint64_t blob_present(const struct blob *b);
/* All ranges present: fdatasync, unmark, rename into blobs/. */
void complete_blob_locked(struct worker *wk, struct blob *b);
/* A reader asked for [off, off+len): counted once per 4 KiB page. */
void note_read_locked(struct worker *wk, struct blob *b, uint64_t off, uint64_t len);

#endif
