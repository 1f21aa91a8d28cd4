/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The compression pipeline: the source thread reads file data into a ring
 * of jobs, worker threads compress them, and jobs are retired strictly in
 * submission order, which is the only place blocks are allocated. So the
 * image is byte-identical whatever the number of threads, and memory is
 * bounded by the ring (2 x pcluster bytes per slot).
 *
 * A job is one extent of a file: pcluster bytes of input compressed on
 * their own (fixed input, any output size); or, for codecs that can fill a
 * physical cluster (lzma, zstd) without dedupe, a segment of up to ZPIPE_SEGMENT
 * bytes that the worker cuts into extents each filling pcluster bytes of
 * output with as much input as fits, as mkfs.erofs does. Those cuts depend
 * only on the segment's bytes, so output stays the same for any number of
 * threads. An extent is stored compressed only if that saves at least one
 * block, else as plain blocks; a file none of whose extents compressed
 * becomes a plain flat file.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "compress/codec.h"
#include "erofs/tree.h"
#include "erofs/zpipe.h"
#include "erofs/zindex.h"
#include "util/digest.h"

/* Input of a filling job. A segment's end cuts an extent short and costs
 * the history of the next; bigger segments cost two buffers per ring slot.
 * An extent must stay under 2048 lclusters (the compact index's deltas). */
#define ZPIPE_SEGMENT (4u << 20)
_Static_assert(ZPIPE_SEGMENT < (2048u << 12), "extents under 2048 lclusters");

/* What goes to the packed inode: nothing, what filling leaves of the
 * file's end, or all of it. */
enum zpack { ZPACK_NONE, ZPACK_TAIL, ZPACK_ALL };

enum job_state { JOB_FREE, JOB_PENDING, JOB_RUNNING, JOB_DONE };

/* An extent a filling job was cut into. */
struct zpiece {
	uint32_t off, len; /* input bytes [off, off + len) of the job */
	uint32_t plen;     /* compressed: bytes at out + pos, zero-padded in
			      front to whole blocks; 0 = stored plain */
	uint32_t pos;
};

/* What a job is to do, as its submitter says it. */
struct zjob_req {
	struct tinode *ino;
	uint64_t la; /* where in the file the job begins */
	uint32_t len;
	bool compress;
	bool fill; /* cut into extents that fill physical clusters (pc) */
	bool first, last;
	/* the file's last job: stop filling with at most a pcluster of input
	 * left, which goes to the packed inode from frag_from on */
	bool pack_tail;
	/* all of a small file goes to the packed inode: in the ring all the
	 * same, so that fragments are packed in file order for any -j */
	bool frag_only;
	char *path; /* with pack_tail, frag_only: the fragment's grouping key */
};

struct zjob {
	struct zjob_req req;
	uint32_t frag_from;
	enum job_state state;
	ssize_t clen; /* >0 compressed size; 0 store plain; <0 -errno */
	uint8_t *in, *out;
	size_t in_cap, out_cap;
	struct digest digest; /* of the input, with dedupe */
	struct zpiece *pc;
	uint32_t npc, pc_cap;
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
	uint32_t pcluster, blksz, window;
	unsigned int blkbits;
	bool fill; /* compressed files go in filling jobs */
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

/* A compressed extent must take fewer blocks than its bytes would plain
 * (at least one block saved); a leading zero byte would be taken for
 * padding. Saving a block also makes an extent reach past the lcluster it
 * starts in, and a big one (2+ blocks) past the next, where its block
 * count goes. */
static bool saves(const struct zpipe *z, ssize_t clen, const uint8_t *out, size_t len)
{
	return clen > 0 && ROUND_UP((size_t)clen, z->blksz) < len && out[0];
}

static int push_piece(struct zjob *j, uint32_t off, uint32_t len, uint32_t plen, uint32_t pos)
{
	if (j->npc == j->pc_cap) {
		uint32_t cap = j->pc_cap ? 2 * j->pc_cap : 16;
		struct zpiece *n = realloc(j->pc, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		j->pc = n;
		j->pc_cap = cap;
	}
	j->pc[j->npc++] = (struct zpiece){off, len, plen, pos};
	return 0;
}

/* Record @clen compressed bytes at out + *op as an extent, zeros in front
 * so that the data ends where its blocks end (decompressed in place). */
static int push_compressed(struct zpipe *z, struct zjob *j, uint32_t off, uint32_t len,
			   size_t clen, uint32_t *op)
{
	uint32_t plen = (uint32_t)ROUND_UP(clen, z->blksz);
	uint8_t *p = j->out + *op;
	memmove(p + (plen - clen), p, clen);
	memset(p, 0, plen - clen);
	int r = push_piece(j, off, len, plen, *op);
	*op += plen;
	return r;
}

/* Room for @need bytes of output: a filling job's output is what
 * compressed, a fraction of its input mostly, so it grows as needed. */
static int out_room(struct zjob *j, size_t need)
{
	if (need <= j->out_cap)
		return 0;
	size_t cap = MAX(need, j->out_cap + j->out_cap / 2);
	uint8_t *n = realloc(j->out, cap);
	if (!n)
		return -ENOMEM;
	j->out = n;
	j->out_cap = cap;
	return 0;
}

/* At @pos, inside a block, nothing compresses with profit, and plain
 * blocks can only start on a block. Cut the compressed extent before it
 * back to that block's start (compressing it again, shorter) and go on
 * from there; if the shortened extent saves nothing either, do the same
 * to the one before it, and so on, down to an extent that starts on a
 * block, from where the bytes up to *plain_to are stored plain. Rare:
 * only data that stops compressing (or a job's last few bytes) gets here. */
static int backtrack(struct zpipe *z, struct codec *c, struct zjob *j, uint32_t *pos,
		     uint32_t *op, uint32_t *plain_to)
{
	uint32_t cut = *pos - *pos % z->blksz;
	*plain_to = cut;
	while (j->npc) {
		/* the piece before an unaligned position is compressed: plain
		 * ones end on a block */
		struct zpiece p = j->pc[--j->npc];
		*op = p.pos;
		*pos = p.off;
		if (cut > p.off) {
			uint32_t len = cut - p.off;
			ssize_t n = codec_compress(c, j->in + p.off, len, j->out + p.pos, z->pcluster);
			if (n < 0)
				return (int)n;
			if (saves(z, n, j->out + p.pos, len)) {
				*pos = cut;
				return push_compressed(z, j, p.off, len, (size_t)n, op);
			}
		}
		if (!(p.off % z->blksz))
			return 0;
		cut = p.off - p.off % z->blksz;
	}
	*pos -= *pos % z->blksz;
	return 0;
}

/* Cut a filling job into extents: each fills a physical cluster, or, where
 * that saves nothing, is stored plain (a pcluster's worth at most). */
static int fill_job(struct zpipe *z, struct codec *c, struct zjob *j)
{
	uint32_t pos = 0, op = 0, plain_to = 0;
	/* a packed tail takes what is left under a pcluster, as mkfs.erofs */
	uint32_t stop = j->req.pack_tail ? j->req.len - MIN(j->req.len, z->pcluster) : j->req.len;
	int r = 0;
	j->npc = 0;
	while ((pos < stop || pos < plain_to) && r >= 0) {
		uint32_t left = j->req.len - pos;
		if (pos < plain_to) {
			uint32_t n = MIN(plain_to - pos, z->pcluster);
			r = push_piece(j, pos, n, 0, 0);
			pos += n;
			continue;
		}
		if ((r = out_room(j, op + (size_t)z->pcluster)) < 0)
			return r;
		if (!(pos % z->blksz)) {
			/* already compressed data goes plain untried */
			uint32_t m = MIN(left, z->pcluster);
			int w = codec_worth(c, j->in + pos, m, j->out + op);
			if (w <= 0) {
				r = w < 0 ? w : push_piece(j, pos, m, 0, 0);
				pos += m;
				continue;
			}
		}
		size_t n = left;
		ssize_t cl = codec_fill(c, j->in + pos, &n, j->out + op, z->pcluster);
		if (cl < 0)
			return (int)cl;
		if (n && saves(z, cl, j->out + op, n)) {
			r = push_compressed(z, j, pos, (uint32_t)n, (size_t)cl, &op);
			pos += (uint32_t)n;
		} else if (!(pos % z->blksz)) {
			uint32_t m = MIN(left, z->pcluster);
			r = push_piece(j, pos, m, 0, 0);
			pos += m;
		} else {
			r = backtrack(z, c, j, &pos, &op, &plain_to);
		}
	}
	j->frag_from = pos;
	return r;
}

/* One extent of fixed input, compressed if that saves a block. */
static ssize_t one_extent(struct zpipe *z, struct codec *c, struct zjob *j)
{
	if (z->seen) {
		sha256(j->in, j->req.len, &j->digest);
		zpipe_key(&j->digest, j->req.compress, &z->spec, z->pcluster);
	}
	if (!c || !j->req.compress)
		return 0;
	/* must save a whole block, or it is not worth a pcluster */
	size_t blocks = DIV_ROUND_UP(j->req.len, z->blksz);
	size_t cap = (blocks - 1) * z->blksz;
	ssize_t n = cap ? codec_compress(c, j->in, j->req.len, j->out, cap) : 0;
	/* a leading zero byte would be taken for padding */
	return n > 0 && !j->out[0] ? 0 : n;
}

static void *worker(void *arg)
{
	struct zpipe *z = arg;
	struct codec *c = NULL;
	int r = codec_new(&z->spec, z->window, &c);

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

		ssize_t n;
		if (!c)
			n = -ENOMEM;
		else if (j->req.frag_only)
			n = 0;
		else if (j->req.fill)
			n = fill_job(z, c, j);
		else
			n = one_extent(z, c, j);
		pthread_mutex_lock(&z->lock);
		j->clen = n;
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
	/* dedupe keys extents by their input: fixed extents, as before */
	z->fill = !dedupe && codec_can_fill(spec);
	z->window = codec_window(spec, pcluster, z->fill);
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
		z->jobs[i].in_cap = z->jobs[i].out_cap = pcluster;
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
		free(z->jobs[i].pc);
		free(z->jobs[i].req.path);
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

uint32_t zpipe_window(const struct zpipe *z)
{
	return z->window;
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

/* A compressed extent's blocks: its data ends where they end, zeros
 * before it (the kernel decompresses in place). */
static int store_compressed(struct zpipe *z, struct zextent *e, const uint8_t *data, size_t psize)
{
	e->cblocks = (uint32_t)(psize / z->blksz);
	if (e->cblocks > z->max_cblocks)
		z->max_cblocks = e->cblocks;
	z->stats.bytes_in += e->len;
	z->stats.bytes_out += psize;
	return tw_data_append(z->tw, data, psize, &e->blk);
}

/* Put a finished job's bytes in the image; with dedupe, bytes stored
 * before are pointed at instead. */
static int store_extent(struct zpipe *z, struct zjob *j, struct zextent *e)
{
	e->la = j->req.la;
	e->len = j->req.len;
	e->nlcl = (uint32_t)DIV_ROUND_UP(j->req.len, z->blksz);
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
			z->stats.dedupe_bytes += j->req.len;
			tw_note_reuse(z->tw, e->blk, j->req.len);
			return 0;
		}
	}
	if (!e->cblocks)
		return tw_data_append(z->tw, j->in, j->req.len, &e->blk);
	size_t psize = (size_t)e->cblocks * z->blksz, pad = psize - (size_t)j->clen;
	memmove(j->out + pad, j->out, (size_t)j->clen);
	memset(j->out, 0, pad);
	return store_compressed(z, e, j->out, psize);
}

static struct zextent *new_extent(struct zpipe *z)
{
	if (z->next == z->ecap) {
		size_t ncap = z->ecap ? z->ecap * 2 : 64;
		struct zextent *n = realloc(z->ext, ncap * sizeof(*n));
		if (!n)
			return NULL;
		z->ext = n;
		z->ecap = ncap;
	}
	return &z->ext[z->next++];
}

/* A filling job's extents, in order. */
static int store_pieces(struct zpipe *z, struct zjob *j)
{
	int r = 0;
	for (uint32_t i = 0; i < j->npc && r >= 0; i++) {
		const struct zpiece *p = &j->pc[i];
		struct zextent *e = new_extent(z);
		if (!e)
			return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
		*e = (struct zextent){.la = j->req.la + p->off, .len = p->len,
				      .nlcl = (uint32_t)DIV_ROUND_UP(p->len, z->blksz)};
		if (p->plen)
			r = store_compressed(z, e, j->out + p->pos, p->plen);
		else
			r = tw_data_append(z->tw, j->in + p->off, p->len, &e->blk);
	}
	return r;
}

/* A file copied as plain blocks (it was too small to compress). */
static int finish_copy(struct zpipe *z, struct tinode *ino)
{
	ino->data_kind = TDATA_FLAT;
	ino->startblk = z->ext[0].blk;
	z->next = 0;
	return 0;
}

/* A finished job's extents into the image, then its file's index if it
 * was the last. */
static int retire_extents(struct zpipe *z, struct zjob *j)
{
	int r;
	if (j->req.first)
		z->next = 0;
	if (j->req.fill) {
		r = store_pieces(z, j);
		if (r >= 0 && j->req.pack_tail && j->frag_from < j->req.len)
			r = tw_pack_fragment(z->tw, j->req.ino, j->in + j->frag_from,
					     j->req.len - j->frag_from, j->req.path);
	} else {
		struct zextent *e = new_extent(z);
		r = e ? store_extent(z, j, e) : anole_err(tw_error(z->tw), ENOMEM, "out of memory");
	}
	if (r >= 0 && j->req.last)
		r = j->req.compress ? finish_file(z, j->req.ino) : finish_copy(z, j->req.ino);
	return r;
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
	if (r >= 0 && j->req.frag_only) {
		r = tw_pack_fragment(z->tw, j->req.ino, j->in, j->req.len, j->req.path);
		j->req.ino->data_kind = TDATA_FRAG;
	} else if (r >= 0) {
		r = retire_extents(z, j);
	}
	free(j->req.path);
	j->req.path = NULL;
	j->state = JOB_FREE;
	z->head = (z->head + 1) % z->njobs;
	z->count--;
	return r;
}

static int submit(struct zpipe *z, const struct zjob_req *req)
{
	int r;
	if (z->count == z->njobs && (r = retire_one(z)) < 0)
		return r;
	struct zjob *j = &z->jobs[(z->head + z->count) % z->njobs];
	j->req = *req;
	j->clen = 0;
	pthread_mutex_lock(&z->lock);
	j->state = JOB_PENDING;
	z->count++;
	pthread_cond_broadcast(&z->work);
	pthread_mutex_unlock(&z->lock);
	return 0;
}

/* The slot the next submit() fills, to read input into: room for @len
 * bytes padded to a block. */
static struct zjob *next_slot(struct zpipe *z, uint32_t len, int *err)
{
	*err = 0;
	if (z->count == z->njobs && (*err = retire_one(z)) < 0)
		return NULL;
	struct zjob *j = &z->jobs[(z->head + z->count) % z->njobs];
	size_t need = ROUND_UP((size_t)len, z->blksz);
	if (j->in_cap < need) {
		free(j->in);
		j->in_cap = 0;
		if (!(j->in = malloc(need))) {
			*err = anole_err(tw_error(z->tw), ENOMEM, "out of memory");
			return NULL;
		}
		j->in_cap = need;
	}
	return j;
}

/* Queue the extents [cuts[i-1], cuts[i]) of a file (cuts[-1] = 0). */
static int queue_cuts(struct zpipe *z, struct tinode *ino, int fd, const uint64_t *cuts, size_t n,
		      bool compress, bool fill, enum zpack pack, const char *path)
{
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		int r;
		uint32_t len = (uint32_t)(cuts[i] - off);
		struct zjob *slot = next_slot(z, len, &r);
		if (!slot)
			return r;
		r = pread_full(fd, slot->in, len, off);
		if (r < 0)
			return anole_err(tw_error(z->tw), r == -ENODATA ? EIO : -r, "%s: %s at offset %llu",
					 path, r == -ENODATA ? "file shrank while being read" : strerror(-r),
					 (unsigned long long)off);
		/* zero the rest of the last block: plain blocks are written whole */
		size_t padded = ROUND_UP((size_t)len, z->blksz);
		memset(slot->in + len, 0, padded - len);
		struct zjob_req req = {.ino = ino, .la = off, .len = len, .compress = compress,
				       .fill = fill, .first = i == 0, .last = i + 1 == n};
		req.pack_tail = pack == ZPACK_TAIL && req.last;
		req.frag_only = pack == ZPACK_ALL;
		if ((req.pack_tail || req.frag_only) && !(req.path = strdup(path)))
			return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
		if ((r = submit(z, &req)) < 0) {
			free(req.path);
			return r;
		}
		off += len;
		tw_add_data_bytes(z->tw, len);
	}
	return 0;
}

static int queue(struct zpipe *z, struct tinode *ino, int fd, uint64_t size, bool compress,
		 enum zpack pack, const char *path)
{
	/* filling jobs take segments, cut into extents by the workers */
	bool fill = compress && z->fill;
	uint32_t step = fill ? ZPIPE_SEGMENT : z->pcluster;
	size_t n = (size_t)DIV_ROUND_UP(size, step);
	_cleanup_free_ uint64_t *cuts = malloc(MAX(n, (size_t)1) * sizeof(*cuts));
	if (!cuts)
		return anole_err(tw_error(z->tw), ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		cuts[i] = MIN((uint64_t)(i + 1) * step, size);
	return queue_cuts(z, ino, fd, cuts, n, compress, fill, fill ? pack : ZPACK_NONE, path);
}

int zpipe_file(struct zpipe *z, struct tinode *ino, int fd, bool compress, const char *path)
{
	return queue(z, ino, fd, ino->size, compress, ZPACK_NONE, path);
}

bool zpipe_fills(const struct zpipe *z)
{
	return z && z->fill;
}

int zpipe_file_packed_tail(struct zpipe *z, struct tinode *ino, int fd, const char *path)
{
	return queue(z, ino, fd, ino->size, true, ZPACK_TAIL, path);
}

int zpipe_file_fragment(struct zpipe *z, struct tinode *ino, int fd, const char *path)
{
	uint64_t cut = ino->size;
	if (ino->size > z->pcluster)
		return anole_err(tw_error(z->tw), EINVAL, "internal error: fragment too big");
	return queue_cuts(z, ino, fd, &cut, 1, false, false, ZPACK_ALL, path);
}

int zpipe_file_head(struct zpipe *z, struct tinode *ino, int fd, uint64_t len, const char *path)
{
	return queue(z, ino, fd, len, true, ZPACK_NONE, path);
}

int zpipe_file_cuts(struct zpipe *z, struct tinode *ino, int fd, const uint64_t *cuts, size_t n,
		    const char *path)
{
	return queue_cuts(z, ino, fd, cuts, n, true, false, ZPACK_NONE, path);
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
