/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extract's writing pool (erofs/xpool.h). Parts (a file's creation, an
 * extent to decode, bytes to copy) are gathered into batches (a small
 * file is too little work to hand to another thread) that may span files;
 * each file counts its parts still queued. A file the pool creates has
 * all its parts in one batch, so the thread that creates it is the only
 * one to write it. Consecutive decoded extents of one file are written
 * with one pwrite(). The caller bounds what is queued (stored bytes), and
 * runs batches itself while it waits, so the calling thread works too.
 */
#include "erofs/xpool.h"
#include "util/safefs.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#define BATCH_OUT (512u << 10) /* decoded bytes per batch */
#define BATCH_PARTS 256u
#define QUEUED_MAX (32u << 20) /* stored bytes queued at most */
#define WRITE_MAX (1u << 20)   /* decoded bytes gathered for one pwrite() */
#define SPARE_MAX 8u           /* run batches kept for reuse */
#define COPY_PIPE (1 << 20)    /* bytes a thread's copy pipe holds, if it may */
#define SRC_OWN_MAX 4u         /* image files a thread opens for itself */

enum xkind { XP_DECODE, XP_RAW, XP_COPY, XP_CREATE, XP_FINISH };

struct xpart {
	struct xfile *f;
	struct zdecode_req rq; /* rq.in set when run: the batch's buffer moves */
	size_t in_off;
	struct zextent x;
	uint64_t skip;
	size_t n;
	int srcfd; /* XP_COPY: @n bytes of it from @srcoff; XP_DECODE: its
		      stored bytes there (-1: in the batch) */
	uint64_t srcoff;
	bool short_read; /* the image ended before them */
	int r;
	const char *what;  /* XP_FINISH: the step that failed */
	uint8_t kind;      /* enum xkind */
	bool write_failed; /* else r is zdecode()'s (or the creation's) */
};

struct xbatch {
	uint8_t *in;
	size_t inlen, incap;
	struct xpart *parts;
	size_t nparts, pcap, outlen;
	size_t weight; /* what it adds to the pool's queued */
	int key[2];    /* the directories of its first and last files */
	struct xbatch *next;
	struct xbatch *rnext; /* in the pool's running list */
};

/* A thread's buffers, kept from batch to batch: stored bytes it reads
 * itself, and decoded bytes. */
struct xwork {
	uint8_t *in, *out;
	size_t incap, outcap;
	int pipe[2]; /* for part_copy(); -1 until made */
	size_t pipesz;
	uint8_t *bounce; /* for copy_bounce() */
	size_t bouncecap;
	struct {
		int fd, own; /* the caller's descriptor; this thread's, or -1 */
	} src[SRC_OWN_MAX];
	unsigned int nsrc;
};

struct xpool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct xbatch *head, *tail; /* queued, in order */
	struct xbatch *running;     /* being run */
	struct xbatch *cur;         /* being filled by the caller */
	size_t queued;              /* stored bytes (and bytes to copy) in
				       queued and running batches */
	bool stop;
	bool hold;                  /* a file being queued must stay in cur */
	struct xbatch *spare;       /* run batches, their buffers kept: fresh
				       memory would fault in on every read */
	unsigned int nspare;
	unsigned int nthreads;
	pthread_t *threads;
	struct xwork own; /* the caller's buffers */
};

static void batch_free(struct xbatch *b)
{
	if (b) {
		free(b->in);
		free(b->parts);
		free(b);
	}
}

/* With the lock held (or no workers): @b, run and retired, kept for
 * reuse or freed. */
static void recycle(struct xpool *p, struct xbatch *b)
{
	if (p->nspare >= SPARE_MAX) {
		batch_free(b);
		return;
	}
	b->inlen = b->nparts = b->outlen = b->weight = 0;
	b->next = p->spare;
	p->spare = b;
	p->nspare++;
}

/* Decoded bytes waiting in the output buffer: @len for @f at @off. */
struct wpend {
	struct xfile *f;
	uint64_t off;
	size_t len;
	struct xpart *last; /* takes a write failure */
};

static void flush(struct wpend *w, const uint8_t *out)
{
	if (w->len && pwrite_full(w->f->fd, out, w->len, w->off) < 0) {
		w->last->r = -errno;
		w->last->write_failed = true;
	}
	w->len = 0;
}

static void part_create(struct xpart *pt)
{
	struct xfile *f = pt->f;
	f->fd = openat(f->dirfd, f->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		       f->cmode);
	if (f->fd < 0)
		pt->r = -errno;
}

/* Decode extent @pt after what @w holds (starting anew unless it follows
 * on in the same file), writing out what must go first. */
static void part_decode(struct xpart *pt, struct wpend *w, uint8_t **out, size_t *outcap)
{
	bool follows = w->len && w->f == pt->f && !pt->skip && w->off + w->len == pt->x.la &&
		       w->len + pt->x.llen <= WRITE_MAX;
	if (!follows)
		flush(w, *out);
	uint8_t *nout = array_grow(*out, outcap, w->len + pt->x.llen, 1, 1);
	if (!nout) {
		pt->r = -ENOMEM;
		return;
	}
	*out = nout;
	pt->r = zdecode(&pt->rq, *out + w->len, pt->x.llen);
	if (pt->r < 0)
		return;
	if (!w->len) {
		if (pt->skip) /* starts within the extent: its own write */
			memmove(*out, *out + pt->skip, pt->n);
		*w = (struct wpend){.f = pt->f, .off = pt->x.la + pt->skip};
	}
	w->len += pt->n;
	w->last = pt;
}

/* This thread's own descriptor for image file @fd: the same file opened
 * again, so its reads have a read-ahead state of their own (one shared by
 * two threads reading at two places sees neither as sequential, and the
 * pages the kernel dropped come back one small read at a time); @fd
 * itself when it cannot be opened again. */
static int own_fd(struct xwork *wk, int fd)
{
	for (unsigned int i = 0; i < wk->nsrc; i++)
		if (wk->src[i].fd == fd)
			return wk->src[i].own >= 0 ? wk->src[i].own : fd;
	if (wk->nsrc == SRC_OWN_MAX)
		return fd;
	char proc[32];
	fd_path(fd, proc);
	int own = open(proc, O_RDONLY | O_CLOEXEC);
	struct stat a, b;
	if (own >= 0 && (fstat(own, &a) < 0 || fstat(fd, &b) < 0 || a.st_ino != b.st_ino ||
			 a.st_dev != b.st_dev)) {
		close(own);
		own = -1;
	}
	wk->src[wk->nsrc].fd = fd;
	wk->src[wk->nsrc++].own = own;
	return own >= 0 ? own : fd;
}

static void own_fds_close(struct xwork *wk)
{
	for (unsigned int i = 0; i < wk->nsrc; i++)
		if (wk->src[i].own >= 0)
			close(wk->src[i].own);
	wk->nsrc = 0;
}

/* A thread's pipe for part_copy(), made at first use; -1 after a failure
 * that may have left bytes in it. */
static int copy_pipe(struct xwork *wk)
{
	if (wk->pipe[0] < 0) {
		if (pipe2(wk->pipe, O_CLOEXEC) < 0)
			return wk->pipe[0] = wk->pipe[1] = -1, -errno;
		int sz = fcntl(wk->pipe[0], F_SETPIPE_SZ, COPY_PIPE);
		wk->pipesz = sz > 0 ? (size_t)sz : 65536;
	}
	return 0;
}

static void pipe_drop(struct xwork *wk)
{
	if (wk->pipe[0] >= 0) {
		close(wk->pipe[0]);
		close(wk->pipe[1]);
	}
	wk->pipe[0] = wk->pipe[1] = -1;
}

/* part_copy() without a pipe (none could be made: descriptors ran out;
 * or the image cannot be spliced): bytes [@in, @in + @left) of the image
 * through @wk->bounce into the file at @out. */
static int copy_bounce(struct xpart *pt, struct xwork *wk, uint64_t in, uint64_t out,
		       size_t left)
{
	uint8_t *buf = array_grow(wk->bounce, &wk->bouncecap, MIN(left, (size_t)COPY_PIPE), 1, 1);
	if (!buf)
		return -ENOMEM;
	wk->bounce = buf;
	while (left) {
		size_t n = MIN(left, (size_t)COPY_PIPE);
		int r = pread_full(own_fd(wk, pt->srcfd), buf, n, in);
		if (r < 0) {
			pt->short_read = r == -ENODATA;
			return r;
		}
		if (pwrite_full(pt->f->fd, buf, n, out) < 0) {
			pt->write_failed = true;
			return -errno;
		}
		in += n, out += n, left -= n;
	}
	return 0;
}

/* @pt's bytes copied from the image inside the kernel: spliced from the
 * image's page cache into a pipe and from there into the file, at offsets
 * given on both sides (other threads may write other parts of the same
 * file), one copy where pread() and pwrite() make two. An image that ends
 * early is -ENODATA. */
static void part_copy(struct xpart *pt, struct xwork *wk)
{
	loff_t in = (loff_t)pt->srcoff, out = (loff_t)pt->skip;
	size_t left = pt->n;
	int r = copy_pipe(wk);
	if (r < 0)
		r = copy_bounce(pt, wk, (uint64_t)in, (uint64_t)out, left), left = 0;
	while (r >= 0 && left) {
		ssize_t k = splice(own_fd(wk, pt->srcfd), &in, wk->pipe[1], NULL, MIN(left, wk->pipesz),
				   SPLICE_F_MOVE);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EINVAL && in == (loff_t)pt->srcoff) {
			r = copy_bounce(pt, wk, (uint64_t)in, (uint64_t)out, left);
			break;
		}
		if (k <= 0) {
			r = k ? -errno : -ENODATA;
			pt->short_read = r == -ENODATA;
			break;
		}
		for (size_t inpipe = (size_t)k; inpipe && r >= 0;) {
			ssize_t w = splice(wk->pipe[0], NULL, pt->f->fd, &out, inpipe, SPLICE_F_MOVE);
			if (w < 0 && errno != EINTR)
				r = -errno, pt->write_failed = true;
			else if (!w) /* the pipe holds bytes: never, but no endless loop */
				r = -EIO, pt->write_failed = true;
			else if (w > 0)
				inpipe -= (size_t)w;
		}
		left -= (size_t)k;
	}
	if (r < 0) {
		pt->r = r;
		if (!pt->short_read && !pt->write_failed && r != -ENOMEM)
			pt->what = "cannot read the image";
		pipe_drop(wk);
	}
}

/* @pt's file, all of its data written: size, owner (before the mode: a
 * chown clears setuid bits), mode, times, in the order the caller's
 * restore follows; then closed. */
static void part_finish(struct xpart *pt)
{
	struct xfile *f = pt->f;
	const struct anole_inode *ino = &f->ino;
	const struct timespec ts[2] = {{ino->mtime, ino->mtime_nsec}, {ino->mtime, ino->mtime_nsec}};
	if (f->wend != ino->size && ftruncate(f->fd, (off_t)ino->size) < 0)
		pt->what = "cannot set size";
	else if (f->chown && fchown(f->fd, ino->uid, ino->gid) < 0)
		pt->what = "cannot set owner";
	else if (f->chmod && fchmod(f->fd, ino->mode & 07777) < 0)
		pt->what = "cannot set mode";
	else if (futimens(f->fd, ts) < 0)
		pt->what = "cannot set times";
	if (pt->what)
		pt->r = -errno;
	close(f->fd);
	f->fd = -1;
}

/* Whether a part of @b before @i, of @i's file, failed. */
static bool file_failed(const struct xbatch *b, size_t i)
{
	for (size_t j = i; j-- > 0 && b->parts[j].f == b->parts[i].f;)
		if (b->parts[j].r < 0)
			return true;
	return false;
}

/* Create, decode and write a batch's parts, in order; results stay in
 * the parts. */
static bool reads_own(const struct xpart *pt)
{
	return pt->kind == XP_DECODE && pt->srcfd >= 0;
}

/* The stored bytes of @b's parts that name where they lie, read into
 * @wk->in in the parts' order, one pread() per run of them that follows
 * on in one file (a file's pclusters, and small files one after another,
 * mostly do); each such part's rq.in set, or its failure. */
static void batch_read(struct xbatch *b, struct xwork *wk)
{
	size_t need = 0;
	for (size_t i = 0; i < b->nparts; i++)
		if (reads_own(&b->parts[i]))
			need += b->parts[i].rq.inlen;
	uint8_t *in = need ? array_grow(wk->in, &wk->incap, need, 1, 1) : wk->in;
	for (size_t i = 0; !in && i < b->nparts; i++)
		if (reads_own(&b->parts[i]))
			b->parts[i].r = -ENOMEM;
	if (!in)
		return;
	wk->in = in;
	size_t at = 0;
	for (size_t i = 0; i < b->nparts;) {
		struct xpart *pt = &b->parts[i];
		if (!reads_own(pt)) {
			i++;
			continue;
		}
		size_t j = i + 1, len = pt->rq.inlen;
		for (; j < b->nparts; j++) {
			const struct xpart *q = &b->parts[j];
			if (!reads_own(q))
				continue;
			if (q->srcfd != pt->srcfd || q->srcoff != pt->srcoff + len)
				break;
			len += q->rq.inlen;
		}
		int r = pread_full(own_fd(wk, pt->srcfd), in + at, len, pt->srcoff);
		for (size_t k = i; k < j; k++) {
			struct xpart *q = &b->parts[k];
			if (!reads_own(q))
				continue;
			q->rq.in = in + at;
			at += q->rq.inlen;
			if (r < 0) {
				q->r = r;
				q->short_read = r == -ENODATA;
				q->what = r == -ENODATA || r == -ENOMEM ? NULL : "cannot read the image";
			}
		}
		i = j;
	}
}

static void batch_run(struct xbatch *b, struct xwork *wk)
{
	uint8_t **out = &wk->out;
	size_t *outcap = &wk->outcap;
	struct wpend w = {0};
	batch_read(b, wk);
	for (size_t i = 0; i < b->nparts; i++) {
		struct xpart *pt = &b->parts[i];
		if (pt->f->fd < 0 && pt->kind != XP_CREATE)
			continue; /* its creation failed: that is its error */
		if (pt->kind != XP_DECODE)
			flush(&w, *out);
		if (pt->kind == XP_CREATE) {
			part_create(pt);
		} else if (pt->kind == XP_FINISH) {
			if (!file_failed(b, i))
				part_finish(pt);
		} else if (pt->kind == XP_COPY) {
			part_copy(pt, wk);
		} else if (pt->kind == XP_RAW) {
			if (pwrite_full(pt->f->fd, b->in + pt->in_off, pt->n, pt->skip) < 0) {
				pt->r = -errno;
				pt->write_failed = true;
			}
		} else if (pt->r >= 0) { /* else its read failed */
			if (pt->srcfd < 0)
				pt->rq.in = b->in + pt->in_off;
			part_decode(pt, &w, out, outcap);
		}
	}
	flush(&w, *out);
}

#define POP_LOOK 8 /* queued batches looked at for one that conflicts with none */

/* Whether @b works in a directory a running batch works in: creating
 * files in one directory, or writing one file, from two threads at once
 * makes one wait for (or spin on) the other's lock. */
static bool conflicts(const struct xpool *p, const struct xbatch *b)
{
	for (const struct xbatch *r = p->running; r; r = r->rnext)
		for (int i = 0; i < 2; i++)
			if (b->key[i] == r->key[0] || b->key[i] == r->key[1])
				return true;
	return false;
}

/* With the lock held: the next batch to run, now in the running list:
 * the first of the next few queued that conflicts with no running one,
 * else the oldest (work waits for no lock as long as it waits for
 * nothing at all). */
static struct xbatch *pop(struct xpool *p)
{
	struct xbatch **pb = &p->head, *prev = NULL;
	for (int i = 0; *pb && i < POP_LOOK; i++, prev = *pb, pb = &(*pb)->next)
		if (!conflicts(p, *pb))
			break;
	if (!*pb || conflicts(p, *pb))
		pb = &p->head, prev = NULL;
	struct xbatch *b = *pb;
	if (!b)
		return NULL;
	*pb = b->next;
	if (p->tail == b)
		p->tail = prev;
	b->next = NULL;
	b->rnext = p->running;
	p->running = b;
	return b;
}

/* With the lock held: @b is no longer running. */
static void unrun(struct xpool *p, struct xbatch *b)
{
	struct xbatch **pr = &p->running;
	while (*pr && *pr != b)
		pr = &(*pr)->rnext;
	if (*pr)
		*pr = b->rnext;
}

/* With the lock held: a run batch's results into its files. */
static void batch_retire(struct xpool *p, struct xbatch *b)
{
	for (size_t i = 0; i < b->nparts; i++) {
		struct xpart *pt = &b->parts[i];
		struct xfile *f = pt->f;
		f->pending--;
		if (pt->r < 0 && !f->err) {
			f->err = pt->r;
			f->err_decode = pt->kind == XP_DECODE && !pt->write_failed &&
					!pt->short_read && pt->what == NULL;
			f->err_create = pt->kind == XP_CREATE;
			f->err_short = pt->short_read;
			f->err_what = pt->what;
			f->bad = pt->x;
		}
	}
	p->queued -= b->weight;
	unrun(p, b);
	pthread_cond_broadcast(&p->done);
}


static void *worker(void *arg)
{
	struct xpool *p = arg;
	struct xwork wk = {.pipe = {-1, -1}};
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		struct xbatch *b = pop(p);
		if (!b)
			break;
		pthread_mutex_unlock(&p->lock);
		batch_run(b, &wk);
		pthread_mutex_lock(&p->lock);
		batch_retire(p, b);
		recycle(p, b);
	}
	pthread_mutex_unlock(&p->lock);
	free(wk.in);
	free(wk.out);
	free(wk.bounce);
	own_fds_close(&wk);
	pipe_drop(&wk);
	return NULL;
}

/* Hand the batch being filled to the workers (or run it, without any). */
static void submit(struct xpool *p)
{
	struct xbatch *b = p->cur;
	if (!b)
		return;
	p->cur = NULL;
	b->key[0] = b->nparts ? b->parts[0].f->dirfd : -1;
	b->key[1] = b->nparts ? b->parts[b->nparts - 1].f->dirfd : -1;
	if (!p->nthreads) {
		batch_run(b, &p->own);
		batch_retire(p, b);
		recycle(p, b);
		return;
	}
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = b;
	else
		p->head = b;
	p->tail = b;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

int xpool_new(unsigned int threads, struct xpool **out)
{
	struct xpool *p = calloc(1, sizeof(*p));
	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->own.pipe[0] = p->own.pipe[1] = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	*out = p;
	if (threads <= 1)
		return 0;
	p->threads = calloc(threads, sizeof(*p->threads));
	if (!p->threads)
		return -ENOMEM;
	for (; p->nthreads < threads; p->nthreads++) {
		int r = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
		if (r)
			return p->nthreads ? 0 : -r; /* fewer threads still work */
	}
	return 0;
}

/* The batch being filled, new if none. */
static struct xbatch *current(struct xpool *p)
{
	if (p->cur)
		return p->cur;
	pthread_mutex_lock(&p->lock);
	struct xbatch *b = p->spare;
	if (b) {
		p->spare = b->next;
		p->nspare--;
		b->next = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	return p->cur = b ? b : calloc(1, sizeof(*b));
}

uint8_t *xpool_reserve(struct xpool *p, size_t n)
{
	struct xbatch *b = current(p);
	uint8_t *in = b ? array_grow(b->in, &b->incap, b->inlen + n, 1, 1) : NULL;
	if (!in)
		return NULL;
	b->in = in;
	return b->in + b->inlen;
}

/* Append @pt (its stored bytes, @inlen of them, reserved and read) to the
 * batch being filled; hand the batch over once it is big enough, unless
 * a file the pool creates is being queued. */
static int add(struct xpool *p, struct xpart *pt, size_t inlen, size_t outlen, size_t weight)
{
	struct xbatch *b = current(p);
	struct xpart *parts = b ? array_grow(b->parts, &b->pcap, b->nparts + 1, sizeof(*parts), 1)
				: NULL;
	if (!parts || b->inlen + inlen > b->incap)
		return -ENOMEM; /* inlen > incap: nothing reserved for it */
	b->parts = parts;
	pt->in_off = b->inlen;
	b->parts[b->nparts++] = *pt;
	b->inlen += inlen;
	b->outlen += outlen;
	b->weight += weight;
	pthread_mutex_lock(&p->lock); /* workers retire the file's earlier parts meanwhile */
	pt->f->pending++;
	p->queued += weight;
	pthread_mutex_unlock(&p->lock);
	if (!p->hold && (b->outlen >= BATCH_OUT || b->nparts >= BATCH_PARTS))
		submit(p);
	return 0;
}

int xpool_create(struct xpool *p, struct xfile *f)
{
	if (p->cur && (p->cur->outlen >= BATCH_OUT || p->cur->nparts >= BATCH_PARTS))
		submit(p);
	p->hold = true;
	return add(p, &(struct xpart){.f = f, .kind = XP_CREATE}, 0, 0, 0);
}

int xpool_add(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
	      const struct zextent *x, uint64_t skip, size_t n)
{
	if (!rq->inlen)
		return -EINVAL; /* zmap_extent: never 0 stored bytes */
	struct xpart pt = {.f = f, .rq = *rq, .x = *x, .skip = skip, .n = n, .srcfd = -1,
			   .kind = XP_DECODE};
	return add(p, &pt, rq->inlen, x->llen, rq->inlen);
}

int xpool_add_at(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
		 const struct zextent *x, uint64_t skip, size_t n, int srcfd, uint64_t srcoff)
{
	if (!rq->inlen)
		return -EINVAL;
	struct xpart pt = {.f = f, .rq = *rq, .x = *x, .skip = skip, .n = n, .srcfd = srcfd,
			   .srcoff = srcoff, .kind = XP_DECODE};
	return add(p, &pt, 0, x->llen, rq->inlen);
}

int xpool_add_raw(struct xpool *p, struct xfile *f, uint64_t off, size_t n)
{
	return add(p, &(struct xpart){.f = f, .skip = off, .n = n, .kind = XP_RAW}, n, n, n);
}

int xpool_add_copy(struct xpool *p, struct xfile *f, uint64_t off, size_t n, int srcfd,
		   uint64_t srcoff)
{
	struct xpart pt = {.f = f, .skip = off, .n = n, .srcfd = srcfd, .srcoff = srcoff,
			   .kind = XP_COPY};
	return add(p, &pt, 0, n, n);
}

int xpool_seal(struct xpool *p, struct xfile *f)
{
	int r = f->finish ? add(p, &(struct xpart){.f = f, .kind = XP_FINISH}, 0, 0, 0) : 0;
	p->hold = false;
	if (p->cur && (p->cur->outlen >= BATCH_OUT || p->cur->nparts >= BATCH_PARTS))
		submit(p);
	pthread_mutex_lock(&p->lock);
	f->sealed = true;
	pthread_mutex_unlock(&p->lock);
	return r;
}

bool xpool_file_done(struct xpool *p, struct xfile *f)
{
	pthread_mutex_lock(&p->lock);
	bool done = f->sealed && !f->pending;
	pthread_mutex_unlock(&p->lock);
	return done;
}

bool xpool_full(struct xpool *p)
{
	pthread_mutex_lock(&p->lock);
	bool full = p->queued > QUEUED_MAX;
	pthread_mutex_unlock(&p->lock);
	return full;
}

void xpool_step(struct xpool *p)
{
	submit(p);
	pthread_mutex_lock(&p->lock);
	struct xbatch *b = pop(p);
	if (b) {
		pthread_mutex_unlock(&p->lock);
		batch_run(b, &p->own);
		pthread_mutex_lock(&p->lock);
		batch_retire(p, b);
		recycle(p, b);
	} else if (p->queued) {
		pthread_cond_wait(&p->done, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
}

void xpool_free(struct xpool *p)
{
	if (!p)
		return;
	submit(p);
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	struct xbatch *b;
	while ((b = pop(p))) { /* without workers: run here */
		batch_run(b, &p->own);
		batch_retire(p, b);
		recycle(p, b);
	}
	while (p->spare) {
		b = p->spare;
		p->spare = b->next;
		batch_free(b);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p->own.in);
	free(p->own.out);
	free(p->own.bounce);
	own_fds_close(&p->own);
	pipe_drop(&p->own);
	free(p);
}
