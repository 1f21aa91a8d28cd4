/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extract's decoding pool (erofs/xpool.h). Extents are gathered into
 * batches (a small file's single extent alone is too little work to hand
 * to another thread) that may span files; each file counts its extents
 * still queued. The caller bounds what is queued (stored bytes), and runs
 * batches itself while it waits, so the calling thread decodes too.
 */
#include "erofs/xpool.h"

#include <pthread.h>

#define BATCH_OUT (512u << 10) /* decoded bytes per batch */
#define BATCH_PARTS 256u
#define QUEUED_MAX (32u << 20) /* stored bytes queued at most */

struct xpart {
	struct xfile *f;
	struct zdecode_req rq; /* rq.in set when run: the batch's buffer moves */
	size_t in_off;
	struct zextent x;
	uint64_t skip;
	size_t n;
	int r;
	bool write_failed; /* else r is zdecode()'s */
};

struct xbatch {
	uint8_t *in;
	size_t inlen, incap;
	struct xpart *parts;
	size_t nparts, outlen;
	struct xbatch *next;
};

struct xpool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct xbatch *head, *tail; /* queued, in order */
	struct xbatch *cur;         /* being filled by the caller */
	size_t queued;              /* stored bytes in queued and running batches */
	bool stop;
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

static int grow(void *pbuf, size_t *cap, size_t need, size_t elem)
{
	void **buf = pbuf;
	if (need <= *cap)
		return 0;
	size_t ncap = MAX(need, *cap * 2);
	void *nb = realloc(*buf, ncap * elem);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Decode and write a batch's extents; results stay in the parts. */
static void batch_run(struct xbatch *b, uint8_t **out, size_t *outcap)
{
	for (size_t i = 0; i < b->nparts; i++) {
		struct xpart *pt = &b->parts[i];
		pt->rq.in = b->in + pt->in_off;
		if (grow(out, outcap, pt->x.llen, 1) < 0) {
			pt->r = -ENOMEM;
			continue;
		}
		pt->r = zdecode(&pt->rq, *out, pt->x.llen);
		if (pt->r < 0)
			continue;
		int w = pwrite_full(pt->f->fd, *out + pt->skip, pt->n, pt->x.la + pt->skip);
		if (w < 0) {
			pt->r = w;
			pt->write_failed = true;
		}
	}
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
			f->err_decode = !pt->write_failed;
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
		batch_free(b);
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
		batch_free(b);
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

int xpool_add(struct xpool *p, struct xfile *f, const struct zdecode_req *rq,
	      const struct zextent *x, uint64_t skip, size_t n)
{
	if (!p->cur) {
		struct xbatch *nb = calloc(1, sizeof(*nb));
		if (nb && !(nb->parts = calloc(BATCH_PARTS, sizeof(*nb->parts)))) {
			free(nb);
			nb = NULL;
		}
		if (!nb)
			return -ENOMEM;
		p->cur = nb;
	}
	struct xbatch *b = p->cur;
	if (!rq->inlen || grow(&b->in, &b->incap, b->inlen + rq->inlen, 1) < 0)
		return rq->inlen ? -ENOMEM : -EINVAL; /* zmap_extent: never 0 stored bytes */
	memcpy(b->in + b->inlen, rq->in, rq->inlen);
	b->parts[b->nparts++] = (struct xpart){.f = f, .rq = *rq, .in_off = b->inlen, .x = *x,
					       .skip = skip, .n = n};
	b->inlen += rq->inlen;
	b->outlen += x->llen;
	pthread_mutex_lock(&p->lock); /* workers retire @f's earlier extents meanwhile */
	f->pending++;
	p->queued += rq->inlen;
	pthread_mutex_unlock(&p->lock);
	if (b->outlen >= BATCH_OUT || b->nparts >= BATCH_PARTS)
		submit(p);
	return 0;
}

void xpool_seal(struct xpool *p, struct xfile *f)
{
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
		batch_free(b);
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
		batch_free(b);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->threads);
	free(p->out);
	free(p);
}
