/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The compression pipeline: the source thread reads file data into a ring
 * of jobs, worker threads compress them, and jobs are retired strictly in
 * submission order, which is the only place blocks are allocated. So the
 * image is byte-identical whatever the number of threads, and memory is
 * bounded by the ring (2 x pcluster bytes per slot).
 *
 * Each job is one extent of a file: pcluster bytes of input compressed on
 * their own (fixed input, any output size). An extent is stored compressed
 * only if that saves at least one block, else as plain blocks; a file none
 * of whose extents compressed becomes a plain flat file.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "compress/codec.h"
#include "erofs/tree.h"
#include "erofs/zpipe.h"
#include "erofs/zindex.h"
#include "util/digest.h"

enum job_state { JOB_FREE, JOB_PENDING, JOB_RUNNING, JOB_DONE };

struct zjob {
	struct tinode *ino;
	uint64_t la; /* where in the file the extent begins */
	uint32_t len;
	bool compress;
	bool first, last;
	enum job_state state;
	ssize_t clen; /* >0 compressed size; 0 store plain; <0 -errno */
	uint8_t *in, *out;
	struct digest digest; /* of the input, with dedupe */
};

/* What the retired extents of the current file look like so far. */
struct zextent {
	uint64_t blk;
	uint64_t la;
	uint32_t len;
	uint32_t cblocks; /* compressed blocks; 0 = plain */
	uint32_t nlcl;    /* blocks its plain bytes take */
};

struct zpipe {
	struct tree_writer *tw;
	struct codec_spec spec;
	uint32_t pcluster, blksz;
	unsigned int blkbits;
	struct zjob *jobs;
	unsigned int njobs, head, count, next_run;
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	pthread_t *threads;
	unsigned int nthreads;
	bool stop;
	int worker_err;

	struct zextent *ext;
	size_t next, ecap;
	uint32_t max_cblocks;
	struct zpipe_stats stats;
	struct digest_map *seen; /* extent digest -> where it was stored */
	bool cdc;                /* content-defined extent boundaries */
};

static void *worker(void *arg)
{
	struct zpipe *z = arg;
	struct codec *c = NULL;
	int r = codec_new(&z->spec, z->pcluster, &c);

	pthread_mutex_lock(&z->lock);
	if (r < 0)
		z->worker_err = r;
	for (;;) {
		/* jobs run in ring order: wait for the next one to be filled */
		while (!z->stop && z->jobs[z->next_run].state != JOB_PENDING)
			pthread_cond_wait(&z->work, &z->lock);
		if (z->stop)
			break;
		struct zjob *j = &z->jobs[z->next_run];
		j->state = JOB_RUNNING;
		z->next_run = (z->next_run + 1) % z->njobs;
		pthread_mutex_unlock(&z->lock);

		ssize_t n = 0;
		if (z->seen) {
			sha256(j->in, j->len, &j->digest);
			zpipe_key(&j->digest, j->compress, &z->spec, z->pcluster);
		}
		if (c && j->compress) {
			/* must save a whole block, or it is not worth a pcluster */
			size_t blocks = DIV_ROUND_UP(j->len, z->blksz);
			size_t cap = (blocks - 1) * z->blksz;
			n = cap ? codec_compress(c, j->in, j->len, j->out, cap) : 0;
			/* a leading zero byte would be taken for padding */
			if (n > 0 && !j->out[0])
				n = 0;
		}
		pthread_mutex_lock(&z->lock);
		j->clen = c ? n : -ENOMEM;
		j->state = JOB_DONE;
		pthread_cond_broadcast(&z->done);
	}
	pthread_mutex_unlock(&z->lock);
	codec_free(c);
	return NULL;
}

int zpipe_new(struct tree_writer *tw, const struct codec_spec *spec, uint32_t pcluster,
	      unsigned int threads, bool dedupe, struct zpipe **out)
{
	struct zpipe *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	if (dedupe && digest_map_new(&z->seen) < 0) {
		free(z);
		return -ENOMEM;
	}
	z->tw = tw;
	z->spec = *spec;
	z->pcluster = pcluster;
	z->blksz = tw_blksz(tw);
	z->blkbits = (unsigned int)__builtin_ctz(z->blksz);
	z->nthreads = threads ? threads : 1;
	z->njobs = 2 * z->nthreads + 2;
	z->jobs = calloc(z->njobs, sizeof(*z->jobs));
	z->threads = calloc(z->nthreads, sizeof(*z->threads));
	pthread_mutex_init(&z->lock, NULL);
	pthread_cond_init(&z->work, NULL);
	pthread_cond_init(&z->done, NULL);
	if (!z->jobs || !z->threads)
		goto nomem;
	for (unsigned int i = 0; i < z->njobs; i++) {
		z->jobs[i].in = malloc(pcluster);
		z->jobs[i].out = malloc(pcluster);
		if (!z->jobs[i].in || !z->jobs[i].out)
			goto nomem;
	}
	for (unsigned int i = 0; i < z->nthreads; i++) {
		if (pthread_create(&z->threads[i], NULL, worker, z)) {
			z->nthreads = i;
			zpipe_free(z);
			return -EAGAIN;
		}
	}
	*out = z;
	return 0;
nomem:
	z->nthreads = 0;
	zpipe_free(z);
	return -ENOMEM;
}

void zpipe_stop(struct zpipe *z)
{
	pthread_mutex_lock(&z->lock);
	z->stop = true;
	pthread_cond_broadcast(&z->work);
	pthread_mutex_unlock(&z->lock);
	for (unsigned int i = 0; i < z->nthreads; i++)
		pthread_join(z->threads[i], NULL);
	z->nthreads = 0;
	for (unsigned int i = 0; z->jobs && i < z->njobs; i++) {
		free(z->jobs[i].in);
		free(z->jobs[i].out);
	}
	free(z->jobs);
	z->jobs = NULL;
}

void zpipe_free(struct zpipe *z)
{
	if (!z)
		return;
	zpipe_stop(z);
	free(z->threads);
	free(z->ext);
	digest_map_free(z->seen);
	pthread_mutex_destroy(&z->lock);
	pthread_cond_destroy(&z->work);
	pthread_cond_destroy(&z->done);
	free(z);
}

const struct zpipe_stats *zpipe_stats(const struct zpipe *z)
{
	return &z->stats;
}

/* Full lcluster indexes for the file's extents. */
/* Mark lclusters [from, to) as back references to the head at @head. */
static void nonheads(struct z_erofs_lcluster_index *idx, uint64_t head, uint64_t from, uint64_t to,
		     uint64_t next_head, uint32_t cblocks)
{
	for (uint64_t lcn = from; lcn < to; lcn++) {
		struct z_erofs_lcluster_index *d = &idx[lcn];
		d->di_advise = Z_EROFS_LCLUSTER_TYPE_NONHEAD;
		d->di_u.delta[0] = lcn == head + 1 && cblocks
					   ? (uint16_t)(Z_EROFS_LI_D0_CBLKCNT | cblocks)
					   : (uint16_t)MIN(lcn - head, 0xffffu);
		d->di_u.delta[1] = (uint16_t)MIN(next_head - lcn, 0xffffu);
	}
}

/* Lcluster indexes for the file's extents (and its fragment tail). An
 * extent starting at byte a has its head in lcluster a/4K with clusterofs
 * a%4K; the lclusters up to the next head refer back to it. */
static int finish_file(struct zpipe *z, struct tinode *ino)
{
	bool any = false;
	for (size_t i = 0; i < z->next; i++)
		any |= z->ext[i].cblocks != 0;
	/* plain blocks become a flat file when they are contiguous (dedupe
	 * may have pointed some elsewhere) */
	bool contiguous = true;
	for (size_t i = 1, lcn = z->ext[0].nlcl; i < z->next; lcn += z->ext[i++].nlcl)
		contiguous &= z->ext[i].blk == z->ext[0].blk + lcn && !(z->ext[i].la % z->blksz);
	if (!any && !ino->has_frag && contiguous) {
		ino->data_kind = TDATA_FLAT;
		ino->startblk = z->ext[0].blk;
		ino->inline_tail = false;
		z->next = 0;
		return 0;
	}
	uint64_t nlcl = DIV_ROUND_UP(ino->size, z->blksz);
	_cleanup_free_ struct z_erofs_lcluster_index *idx = calloc(nlcl, sizeof(*idx));
	if (!idx)
		return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
	uint64_t zblocks = 0, end = 0;
	for (size_t i = 0; i < z->next; i++) {
		struct zextent *e = &z->ext[i];
		uint64_t head = e->la >> z->blkbits;
		end = e->la + e->len;
		uint64_t next_head = end >> z->blkbits; /* the lcluster holding the next start */
		if (end == ino->size || (i + 1 == z->next && !ino->has_frag))
			next_head = nlcl;
		struct z_erofs_lcluster_index *d = &idx[head];
		d->di_clusterofs = (uint16_t)(e->la & (z->blksz - 1));
		if (!e->cblocks) {
			/* aligned plain extents: one plain head per block */
			for (uint32_t k = 0; k < e->nlcl; k++) {
				idx[head + k].di_advise = Z_EROFS_LCLUSTER_TYPE_PLAIN;
				idx[head + k].di_u.blkaddr = (uint32_t)(e->blk + k);
			}
		} else {
			d->di_advise = e->cblocks ? Z_EROFS_LCLUSTER_TYPE_HEAD1
						  : Z_EROFS_LCLUSTER_TYPE_PLAIN;
			d->di_u.blkaddr = (uint32_t)e->blk;
			nonheads(idx, head, head + 1, next_head, next_head,
				 e->cblocks ? e->cblocks : e->nlcl);
		}
		zblocks += e->cblocks ? e->cblocks : e->nlcl;
	}
	if (ino->has_frag) {
		/* the tail extent: a head whose block address carries the high
		 * half of the fragment offset, then back references */
		uint64_t head = end >> z->blkbits;
		idx[head].di_advise = Z_EROFS_LCLUSTER_TYPE_HEAD1;
		idx[head].di_clusterofs = (uint16_t)(end & (z->blksz - 1));
		idx[head].di_u.blkaddr = (uint32_t)(ino->frag_off >> 32);
		nonheads(idx, head, head + 1, nlcl, nlcl, 0);
	}
	ino->data_kind = TDATA_Z;
	ino->zcompact = zindex_compactable(idx, nlcl);
	ino->nchunks = (uint32_t)nlcl;
	ino->zblocks = (uint32_t)zblocks;
	ino->ztail_la = end;
	z->next = 0;
	z->stats.files++;
	return tw_spool(z->tw, idx, nlcl * sizeof(*idx), &ino->tail_off);
}

/* Put a finished job's bytes in the image: compressed bytes end at the end
 * of their pcluster with leading zeros (the kernel decompresses in place);
 * with dedupe, bytes stored before are pointed at instead. */
static int store_extent(struct zpipe *z, struct zjob *j, struct zextent *e)
{
	e->la = j->la;
	e->len = j->len;
	e->nlcl = (uint32_t)DIV_ROUND_UP(j->len, z->blksz);
	e->cblocks = j->clen > 0 ? (uint32_t)DIV_ROUND_UP((size_t)j->clen, z->blksz) : 0;
	if (e->cblocks > z->max_cblocks)
		z->max_cblocks = e->cblocks;
	if (z->seen) {
		uint64_t where = zpipe_where(tw_next_block(z->tw), e->cblocks,
					     e->cblocks ? e->cblocks : e->nlcl);
		int found = digest_map_get_or_put(z->seen, &j->digest, &where);
		if (found < 0)
			return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
		/* a base's index says how it stored the extent; an entry that
		 * cannot hold these bytes (wrong length, oversized) is a miss */
		uint32_t had_c = ZPIPE_WHERE_CBLOCKS(where), had_n = ZPIPE_WHERE_NBLOCKS(where);
		if (found && (had_c ? had_c != had_n || had_n > z->pcluster / z->blksz
				    : had_n != e->nlcl))
			found = 0;
		if (found) {
			/* stored earlier, maybe by another image with another
			 * library version: its block count is the truth */
			e->blk = ZPIPE_WHERE_BLK(where);
			e->cblocks = ZPIPE_WHERE_CBLOCKS(where);
			if (e->cblocks > z->max_cblocks)
				z->max_cblocks = e->cblocks;
			z->stats.dedupe_bytes += j->len;
			tw_note_reuse(z->tw, e->blk, j->len);
			return 0;
		}
	}
	if (!e->cblocks)
		return tw_data_append(z->tw, j->in, j->len, &e->blk);
	size_t psize = (size_t)e->cblocks * z->blksz, pad = psize - (size_t)j->clen;
	memmove(j->out + pad, j->out, (size_t)j->clen);
	memset(j->out, 0, pad);
	z->stats.bytes_in += j->len;
	z->stats.bytes_out += psize;
	return tw_data_append(z->tw, j->out, psize, &e->blk);
}

/* A file copied as plain blocks (it was too small to compress). */
static int finish_copy(struct zpipe *z, struct tinode *ino)
{
	ino->data_kind = TDATA_FLAT;
	ino->startblk = z->ext[0].blk;
	z->next = 0;
	return 0;
}

static int retire_one(struct zpipe *z)
{
	struct zjob *j = &z->jobs[z->head];
	pthread_mutex_lock(&z->lock);
	while (j->state != JOB_DONE)
		pthread_cond_wait(&z->done, &z->lock);
	pthread_mutex_unlock(&z->lock);

	int r = 0;
	if (j->clen < 0)
		r = anole_err(tw_error(z->tw), (int)-j->clen, "compression failed: %s",
			      strerror((int)-j->clen));
	if (r >= 0 && j->first)
		z->next = 0;
	if (r >= 0 && z->next == z->ecap) {
		size_t ncap = z->ecap ? z->ecap * 2 : 64;
		struct zextent *n = realloc(z->ext, ncap * sizeof(*n));
		if (!n)
			r = anole_err(tw_error(z->tw), ENOMEM, "out of memory");
		else {
			z->ext = n;
			z->ecap = ncap;
		}
	}
	if (r >= 0)
		r = store_extent(z, j, &z->ext[z->next++]);
	if (r >= 0 && j->last)
		r = j->compress ? finish_file(z, j->ino) : finish_copy(z, j->ino);
	j->state = JOB_FREE;
	z->head = (z->head + 1) % z->njobs;
	z->count--;
	return r;
}

static int submit(struct zpipe *z, struct zjob *proto)
{
	int r;
	if (z->count == z->njobs && (r = retire_one(z)) < 0)
		return r;
	struct zjob *j = &z->jobs[(z->head + z->count) % z->njobs];
	j->ino = proto->ino;
	j->la = proto->la;
	j->len = proto->len;
	j->compress = proto->compress;
	j->first = proto->first;
	j->last = proto->last;
	j->clen = 0;
	pthread_mutex_lock(&z->lock);
	j->state = JOB_PENDING;
	z->count++;
	pthread_cond_broadcast(&z->work);
	pthread_mutex_unlock(&z->lock);
	return 0;
}

/* The slot the next submit() fills, to read input into. */
static struct zjob *next_slot(struct zpipe *z, int *err)
{
	*err = 0;
	if (z->count == z->njobs)
		*err = retire_one(z);
	return &z->jobs[(z->head + z->count) % z->njobs];
}

/* Queue the extents [cuts[i-1], cuts[i]) of a file (cuts[-1] = 0). */
static int queue_cuts(struct zpipe *z, struct tinode *ino, int fd, const uint64_t *cuts, size_t n,
		      bool compress, const char *path)
{
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		int r;
		struct zjob *slot = next_slot(z, &r);
		if (r < 0)
			return r;
		uint32_t len = (uint32_t)(cuts[i] - off);
		r = pread_full(fd, slot->in, len, off);
		if (r < 0)
			return anole_err(tw_error(z->tw), r == -ENODATA ? EIO : -r, "%s: %s at offset %llu",
					 path, r == -ENODATA ? "file shrank while being read" : strerror(-r),
					 (unsigned long long)off);
		/* zero the rest of the last block: plain blocks are written whole */
		size_t padded = ROUND_UP((size_t)len, z->blksz);
		memset(slot->in + len, 0, padded - len);
		struct zjob proto = {.ino = ino, .la = off, .len = len, .compress = compress,
				     .first = i == 0, .last = i + 1 == n};
		if ((r = submit(z, &proto)) < 0)
			return r;
		off += len;
		tw_add_data_bytes(z->tw, len);
	}
	return 0;
}

static int queue(struct zpipe *z, struct tinode *ino, int fd, uint64_t size, bool compress,
		 const char *path)
{
	size_t n = (size_t)DIV_ROUND_UP(size, z->pcluster);
	_cleanup_free_ uint64_t *cuts = malloc(MAX(n, (size_t)1) * sizeof(*cuts));
	if (!cuts)
		return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		cuts[i] = MIN((uint64_t)(i + 1) * z->pcluster, size);
	return queue_cuts(z, ino, fd, cuts, n, compress, path);
}

int zpipe_file(struct zpipe *z, struct tinode *ino, int fd, bool compress, const char *path)
{
	return queue(z, ino, fd, ino->size, compress, path);
}

int zpipe_file_head(struct zpipe *z, struct tinode *ino, int fd, uint64_t len, const char *path)
{
	return queue(z, ino, fd, len, true, path);
}

int zpipe_file_cuts(struct zpipe *z, struct tinode *ino, int fd, const uint64_t *cuts, size_t n,
		    const char *path)
{
	return queue_cuts(z, ino, fd, cuts, n, true, path);
}

void zpipe_set_cdc(struct zpipe *z, bool on)
{
	z->cdc = on;
}

int zpipe_drain(struct zpipe *z)
{
	while (z->count) {
		int r = retire_one(z);
		if (r < 0)
			return r;
	}
	return 0;
}

uint32_t zpipe_max_cblocks(const struct zpipe *z)
{
	return z->max_cblocks;
}

void zpipe_key(struct digest *d, bool compress, const struct codec_spec *spec, uint32_t pcluster)
{
	d->b[29] ^= (uint8_t)__builtin_ctz(pcluster);
	d->b[30] ^= (uint8_t)(codec_erofs_alg(spec->kind) + 1);
	/* plain copies and compressed extents never share storage */
	d->b[31] ^= compress ? 0 : 0xff;
}

uint64_t zpipe_where(uint64_t blk, uint32_t cblocks, uint32_t nblocks)
{
	return blk | (uint64_t)cblocks << 40 | (uint64_t)nblocks << 52;
}

int zpipe_preload(struct zpipe *z, const struct digest *key, uint64_t where)
{
	if (!z->seen)
		return -EINVAL;
	int r = digest_map_get_or_put(z->seen, key, &where);
	return r < 0 ? r : 0;
}

const struct digest_map *zpipe_seen(const struct zpipe *z)
{
	return z->seen;
}
