/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extract's writing pool: regular files created, and their data decoded
 * and written, on worker threads, as the writer compresses pclusters on
 * its own (zpipe.c). The calling thread keeps every reader call (maps,
 * stored bytes, metadata) and reads the stored bytes straight into the
 * pool's batches; a worker only creates a file (O_EXCL, O_NOFOLLOW, in a
 * directory extract created and holds open), runs zdecode(), a pure
 * function of the stored bytes, and pwrite()s the result through the
 * file's descriptor. Every byte still passes zdecode()'s checks; a
 * failure is kept with its file and reported by the calling thread.
 */
#ifndef ANOLE_XPOOL_H
#define ANOLE_XPOOL_H

#include "erofs/zmap.h"

/* A regular file whose data the pool writes. */
struct xfile {
	int fd;               /* -1 until the pool creates it: @name in @dirfd */
	int dirfd;            /* the caller keeps it open until the file is done */
	const char *name;
	unsigned int pending; /* extents queued, not yet written */
	bool sealed;          /* all its extents are queued */
	int err;              /* first failure: zdecode()'s, or -errno of pwrite */
	bool err_decode;      /* err came from zdecode() on extent @bad */
	bool err_create;      /* err came from creating it */
	bool err_short;       /* the image ended before bytes the pool read */
	const char *err_what; /* else what failed, when the pool finished it */
	/* A file the pool creates may also be finished there, once its data
	 * is written (@finish): its size set, owner (@chown) and mode (@chmod)
	 * restored, times set, descriptor closed. Its mode at creation is
	 * @cmode (0600 unless it may be the final one). */
	bool finish, chown, chmod;
	mode_t cmode;
	struct zextent bad;
	struct anole_inode ino;
	uint64_t wend; /* where its last queued write ends (writes go in order) */
	char *rel; /* its path in the target, for messages */
	void *owner; /* the caller's */
	bool made_here; /* the caller's: it created the file, not the pool */
	struct xfile *next;
};

struct xpool;
/* @threads worker threads; 0 or 1: none, the caller decodes. */
int xpool_new(unsigned int threads, struct xpool **out);
/* Queue the creation of @f (fd -1): it and the parts queued for @f until
 * xpool_seal() run in one batch, on one thread, in order. */
int xpool_create(struct xpool *p, struct xfile *f);
/* Room for @n stored bytes in the batch being filled, for the caller to
 * read into before the xpool_add() or xpool_add_raw() that queues them;
 * NULL: out of memory. */
uint8_t *xpool_reserve(struct xpool *p, size_t n);
/* Queue extent @x of @f (its rq->inlen stored bytes just reserved and
 * read; rq->in is not used); its decoded bytes from @skip on, @n of them,
 * go to the file at x->la + skip. */
int xpool_add(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
	      const struct zextent *x, uint64_t skip, size_t n);
/* Queue @n bytes, just reserved and read, for @f at @off as they are. */
int xpool_add_raw(struct xpool *p, struct xfile *f, uint64_t off, size_t n);
/* As xpool_add(), the stored bytes read by the pool from @srcfd at
 * @srcoff (nothing reserved): the worker reads them itself. */
int xpool_add_at(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
		 const struct zextent *x, uint64_t skip, size_t n, int srcfd, uint64_t srcoff);
/* Queue @n bytes of @srcfd from @srcoff for @f at @off, copied as they
 * are (by the kernel, never through user memory); @srcfd stays open until
 * the pool is freed. */
int xpool_add_copy(struct xpool *p, struct xfile *f, uint64_t off, size_t n, int srcfd,
		   uint64_t srcoff);
/* All of @f's extents are queued; then its finish, if @f->finish. */
int xpool_seal(struct xpool *p, struct xfile *f);
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
