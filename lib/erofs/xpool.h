/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extract's decoding pool: compressed extents decoded and written into
 * their files on worker threads, as the writer compresses pclusters on its
 * own (zpipe.c). The calling thread keeps every reader call (maps, stored
 * bytes, metadata); a worker only runs zdecode(), a pure function of the
 * stored bytes, and pwrite()s the result through a descriptor of a file
 * extract created. Every byte still passes zdecode()'s checks; a failure
 * is kept with its file and reported by the calling thread.
 */
#ifndef ANOLE_XPOOL_H
#define ANOLE_XPOOL_H

#include "erofs/zmap.h"

/* A regular file whose data the pool writes. */
struct xfile {
	int fd;
	unsigned int pending; /* extents queued, not yet written */
	bool sealed;          /* all its extents are queued */
	int err;              /* first failure: zdecode()'s, or -errno of pwrite */
	bool err_decode;      /* err came from zdecode() on extent @bad */
	struct zextent bad;
	struct anole_inode ino;
	uint64_t wend; /* where its last queued write ends (writes go in order) */
	char *rel; /* its path in the target, for messages */
	struct xfile *next;
};

struct xpool;
/* @threads decoding threads; 0 or 1: none, the caller decodes. */
int xpool_new(unsigned int threads, struct xpool **out);
/* Queue extent @x of @f (stored bytes @in, x->plen of them); its decoded
 * bytes from @skip on, @n of them, go to the file at x->la + skip. */
int xpool_add(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
	      const struct zextent *x, uint64_t skip, size_t n);
/* All of @f's extents are queued. */
void xpool_seal(struct xpool *p, struct xfile *f);
/* Whether @f is written (or failed): its fields may be read then. */
bool xpool_file_done(struct xpool *p, struct xfile *f);
/* Let queued work make progress: run some on this thread, or wait for a
 * worker to finish some. */
void xpool_step(struct xpool *p);
/* Whether more should wait before more is queued. */
bool xpool_full(struct xpool *p);
/* Stop: queued work still runs (a caller giving up first marks its files
 * failed), workers joined. NULL is fine. */
void xpool_free(struct xpool *p);

#endif
