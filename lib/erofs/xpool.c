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

#include <fcntl.h>
#include <pthread.h>

#define BATCH_OUT (512u << 10) /* decoded bytes per batch */
#define BATCH_PARTS 256u
#define QUEUED_MAX (32u << 20) /* stored bytes queued at most */
#define WRITE_MAX (1u << 20)   /* decoded bytes gathered for one pwrite() */
#define SPARE_MAX 8u           /* run batches kept for reuse */

enum xkind { XP_DECODE, XP_RAW, XP_CREATE };

struct xpart {
	struct xfile *f;
	struct zdecode_req rq; /* rq.in set when run: the batch's buffer moves */
	size_t in_off;
	struct zextent x;
	uint64_t skip;
	size_t n;
	int r;
	uint8_t kind;      /* enum xkind */
	bool write_failed; /* else r is zdecode()'s (or the creation's) */
};

struct xbatch {
	uint8_t *in;
	size_t inlen, incap;
	struct xpart *parts;
	size_t nparts, pcap, outlen;
	struct xbatch *next;
};

struct xpool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct xbatch *head, *tail; /* queued, in order */
	struct xbatch *cur;         /* being filled by the caller */
	size_t queued;              /* stored bytes in queued and running batches */
	bool stop;
	bool hold;                  /* a file being queued must stay in cur */
	struct xbatch *spare;       /* run batches, their buffers kept: fresh
				       memory would fault in on every read */
	unsigned int nspare;
	unsigned int nthreads;
	pthread_t *threads;
	uint8_t *out; /* the caller's decode buffer */
	size_t outcap;
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
	b->inlen = b->nparts = b->outlen = 0;
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
		       0600);
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

/* Create, decode and write a batch's parts, in order; results stay in
 * the parts. */
static void batch_run(struct xbatch *b, uint8_t **out, size_t *outcap)
{
	struct wpend w = {0};
	for (size_t i = 0; i < b->nparts; i++) {
		struct xpart *pt = &b->parts[i];
		if (pt->f->fd < 0 && pt->kind != XP_CREATE)
			continue; /* its creation failed: that is its error */
		if (pt->kind != XP_DECODE)
			flush(&w, *out);
		if (pt->kind == XP_CREATE) {
			part_create(pt);
		} else if (pt->kind == XP_RAW) {
			if (pwrite_full(pt->f->fd, b->in + pt->in_off, pt->n, pt->skip) < 0) {
				pt->r = -errno;
				pt->write_failed = true;
			}
		} else {
			pt->rq.in = b->in + pt->in_off;
			part_decode(pt, &w, out, outcap);
		}
	}
	flush(&w, *out);
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
			f->err_decode = pt->kind == XP_DECODE && !pt->write_failed;
			f->err_create = pt->kind == XP_CREATE;
			f->bad = pt->x;
		}
	}
	p->queued -= b->inlen;
	pthread_cond_broadcast(&p->done);
}

static struct xbatch *pop(struct xpool *p)
{
	struct xbatch *b = p->head;
	if (b) {
		p->head = b->next;
		if (!p->head)
			p->tail = NULL;
	}
	return b;
}

static void *worker(void *arg)
{
	struct xpool *p = arg;
	uint8_t *out = NULL;
	size_t outcap = 0;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		struct xbatch *b = pop(p);
		if (!b)
			break;
		pthread_mutex_unlock(&p->lock);
		batch_run(b, &out, &outcap);
		pthread_mutex_lock(&p->lock);
		batch_retire(p, b);
		recycle(p, b);
	}
	pthread_mutex_unlock(&p->lock);
	free(out);
	return NULL;
}

/* Hand the batch being filled to the workers (or run it, without any). */
static void submit(struct xpool *p)
{
	struct xbatch *b = p->cur;
	if (!b)
		return;
	p->cur = NULL;
	if (!p->nthreads) {
		batch_run(b, &p->out, &p->outcap);
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
static int add(struct xpool *p, struct xpart *pt, size_t inlen, size_t outlen)
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
	pthread_mutex_lock(&p->lock); /* workers retire the file's earlier parts meanwhile */
	pt->f->pending++;
	p->queued += inlen;
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
	return add(p, &(struct xpart){.f = f, .kind = XP_CREATE}, 0, 0);
}

int xpool_add(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
	      const struct zextent *x, uint64_t skip, size_t n)
{
	if (!rq->inlen)
		return -EINVAL; /* zmap_extent: never 0 stored bytes */
	struct xpart pt = {.f = f, .rq = *rq, .x = *x, .skip = skip, .n = n, .kind = XP_DECODE};
	return add(p, &pt, rq->inlen, x->llen);
}

int xpool_add_raw(struct xpool *p, struct xfile *f, uint64_t off, size_t n)
{
	return add(p, &(struct xpart){.f = f, .skip = off, .n = n, .kind = XP_RAW}, n, n);
}

void xpool_seal(struct xpool *p, struct xfile *f)
{
	p->hold = false;
	if (p->cur && (p->cur->outlen >= BATCH_OUT || p->cur->nparts >= BATCH_PARTS))
		submit(p);
	pthread_mutex_lock(&p->lock);
	f->sealed = true;
	pthread_mutex_unlock(&p->lock);
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
		batch_run(b, &p->out, &p->outcap);
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
		batch_run(b, &p->out, &p->outcap);
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
	free(p->out);
	free(p);
}
