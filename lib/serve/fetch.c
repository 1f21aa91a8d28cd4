/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fetching ranges: waiting readers, the job queues and the fetch threads.
 *
 * A reader's event names a byte range of a blob; it waits for the
 * ranges that cover it. Each missing range is fetched once however many
 * readers wait for it: a range is absent, being fetched, or present.
 * Neighbouring missing ranges go in one request (up to sched_coalesce(), sched.c).
 * Read-ahead works as the kernel's: a miss whose range follows one already
 * here or coming queues READAHEAD_BYTES after it, behind readers, and a
 * read that reaches into the second half of that window queues the next,
 * twice as big, up to READAHEAD_MAX. Misses then overlap the round trip,
 * and a reader that streams gets ever bigger requests ahead of it; a
 * bigger first window only delays, on a slow link, the bytes a reader
 * waits for (docs/DECISIONS.md). Background prefetch has its own queue
 * and one thread, which runs only while no demand job waits, at a capped
 * rate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lazy/lazy.h"
#include "serve/sched.h"
#include "serve/worker.h"

/* the registry client retries failed transfers itself, within the
 * range's deadline (8 s + its size at 128 KiB/s); here a range that came
 * but did not verify is fetched once more */
#define ATTEMPTS 2
#define DOWN_SECONDS 30
#define DEMAND_THREADS 8
/* A read of a range whose fetch timed out this recently fails at once:
 * the kernel asks again for a read that just failed (read-ahead, then the
 * page alone, ...), and each ask would wait out a fetch's deadline again.
 * Quick failures (refused, dropped, a bad answer) cost little to retry,
 * and a reader retrying once the registry is back gets its bytes. */
#define TIMED_OUT_SECONDS 3.0

static void note_timeout(struct blob *b, const struct job *j)
{
	if (!b->failed_until && !(b->failed_until = calloc(MAX(b->nranges, 1), sizeof(double))))
		return; /* (reads then only wait again) */
	double until = now_seconds() + TIMED_OUT_SECONDS;
	for (uint64_t i = 0; i < j->count; i++)
		b->failed_until[j->first + i] = until;
}

static void push(struct job **list, struct job *j)
{
	while (*list)
		list = &(*list)->next;
	j->next = NULL;
	*list = j;
}

/* A queued list or background job holding range @r moves to the demand
 * queue: a reader waits for it now. False when no queued job holds it. */
static bool promote(struct worker *wk, struct blob *b, uint64_t r)
{
	struct job **lists[2] = {&wk->q.listed, &wk->q.background};
	for (int l = 0; l < 2; l++)
		for (struct job **p = lists[l]; *p; p = &(*p)->next) {
			struct job *j = *p;
			if (j->b == b && r >= j->first && r < j->first + j->count) {
				*p = j->next;
				j->background = false;
				push(&wk->q.demand, j);
				return true;
			}
		}
	return false;
}

/* -ENOMEM when a job could not be made (its ranges stay absent). Fetch
 * threads are woken only when a queue changed: readers of ranges already
 * here or coming call this too. */
static int schedule(struct worker *wk, struct blob *b, uint64_t from, uint64_t to, enum sched_prio prio)
{
	bool background = prio == SCHED_BACKGROUND, queued = false;
	for (uint64_t r = from; r <= to && r < b->nranges; r++) {
		if (b->state[r] == RANGE_FETCHING && prio == SCHED_DEMAND)
			queued |= promote(wk, b, r);
		if (b->state[r] != RANGE_ABSENT)
			continue;
		struct job *j = calloc(1, sizeof(*j));
		if (!j) {
			pthread_cond_broadcast(&wk->jobs_cond);
			return -ENOMEM;
		}
		j->b = b;
		j->first = r;
		j->background = background;
		j->count = sched_run(b, prio, r, to);
		memset(b->state + r, RANGE_FETCHING, j->count);
		r += j->count - 1;
		push(prio == SCHED_BACKGROUND ? &wk->q.background
		     : prio == SCHED_LISTED   ? &wk->q.listed
					      : &wk->q.demand,
		     j);
		queued = true;
	}
	if (queued)
		pthread_cond_broadcast(&wk->jobs_cond);
	return 0;
}

static void finish_waiter(struct worker *wk, struct waiter *w, bool ok)
{
	wk->count.read_waits++;
	wk->count.read_wait_us += (uint64_t)((now_seconds() - w->since) * 1e6);
	if (w->sw) {
		w->sw->done = true;
		w->sw->ok = ok;
		pthread_cond_broadcast(&w->sw->cond);
	} else {
		answer_event(wk, w->id, ok);
	}
	free(w);
}

/* Reader waits for [first, last]; [sfirst, slast] (which holds it) is
 * fetched. */
static void add_waiter(struct worker *wk, struct blob *b, uint64_t id, struct sync_wait *sw,
		       uint64_t first, uint64_t last, uint64_t sfirst, uint64_t slast)
{
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w) {
		if (sw)
			sw->done = true; /* ok stays false */
		else
			answer_event(wk, id, false);
		return;
	}
	*w = (struct waiter){.next = wk->waiters, .id = id, .sw = sw, .b = b, .first = first,
			     .last = last, .since = now_seconds()};
	wk->waiters = w;
	b->waiting++;
	if (schedule(wk, b, sfirst, slast, SCHED_DEMAND) < 0) {
		/* no job will wake this reader: fail it now */
		wk->waiters = w->next;
		b->waiting--;
		finish_waiter(wk, w, false);
	}
}

/* wk->lock held; before the read's own ranges are scheduled. */
static void readahead(struct worker *wk, struct blob *b, uint64_t first, uint64_t last)
{
	uint64_t from, to;
	if (sched_readahead(b, first, last, &from, &to))
		(void)schedule(wk, b, from, to, SCHED_LISTED);
}

void wait_for(struct worker *wk, struct blob *b, uint64_t id, uint64_t off, uint64_t len)
{
	struct read_span s = sched_read_span(b, off, len);
	if (sched_timed_out(b, s.first, s.last, now_seconds())) {
		answer_event(wk, id, false);
		return;
	}
	readahead(wk, b, s.sfirst, s.slast);
	if (sched_all_present(b, s.first, s.last)) {
		answer_event(wk, id, true);
		(void)schedule(wk, b, s.sfirst, s.slast, SCHED_DEMAND);
	} else {
		add_waiter(wk, b, id, NULL, s.first, s.last, s.sfirst, s.slast);
	}
}

int fetch_wait(struct worker *wk, struct blob *b, uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&wk->lock);
	int r = 0;
	if (!b->complete && len && off < b->size) {
		struct read_span s = sched_read_span(b, off, len);
		if (sched_timed_out(b, s.first, s.last, now_seconds()))
			r = -EIO;
		else
			readahead(wk, b, s.sfirst, s.slast);
		if (!r && !sched_all_present(b, s.first, s.last)) {
			struct sync_wait sw = {.cond = PTHREAD_COND_INITIALIZER};
			add_waiter(wk, b, 0, &sw, s.first, s.last, s.sfirst, s.slast);
			while (!sw.done)
				pthread_cond_wait(&sw.cond, &wk->lock);
			r = sw.ok ? 0 : -EIO;
		}
	}
	pthread_mutex_unlock(&wk->lock);
	return r;
}

void prefetch_list(struct worker *wk, struct lmount *m, json_t *list)
{
	struct prefetch_blob *pb = calloc(MAX(m->nblobs, 1), sizeof(*pb));
	struct prefetch_run *runs = NULL;
	size_t nruns = 0, jobs = 0;
	char why[160];
	if (!pb)
		return;
	for (size_t k = 0; k < m->nblobs; k++)
		pb[k] = (struct prefetch_blob){.digest = m->blobs[k]->digest,
					       .nranges = m->blobs[k]->nranges,
					       .max_run = COALESCE_MAX};
	if (prefetch_list_runs(list, pb, m->nblobs, &runs, &nruns, why, sizeof(why)) < 0) {
		wlog("%s: prefetch list ignored: %s", m->mountpoint, why);
		free(pb);
		return;
	}
	for (size_t i = 0; i < nruns; i++) {
		struct blob *b = m->blobs[runs[i].blob];
		if (!b->complete)
			jobs += schedule(wk, b, runs[i].first, runs[i].last, SCHED_LISTED) >= 0;
	}
	free(runs);
	free(pb);
	wlog("%s: prefetching %zu recorded ranges (%zu requests at most)", m->mountpoint,
	     json_array_size(json_object_get(list, "ranges")), jobs);
}

/* Program @p of @m starts. The loader opens its files one after another,
 * reading each one's header and .dynamic (the first two spans of a
 * file's hints), and only then relocates: those first, for every file in
 * load order, then the rest, all behind readers. */
static size_t fire_program(struct worker *wk, struct lmount *m, uint32_t p)
{
	struct load_hints *h = m->hints;
	size_t spans = 0;
	h->fired[p] = 1;
	wk->count.hint_programs++;
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t c = h->prog_start[p]; c < h->prog_start[p + 1]; c++) {
			uint32_t f = h->closure[c];
			if (h->file_done[f] > pass)
				continue;
			h->file_done[f] = (uint8_t)(pass + 1);
			uint32_t s0 = h->file_start[f], s1 = h->file_start[f + 1];
			uint32_t from = pass ? MIN(s0 + 2, s1) : s0, to = pass ? s1 : MIN(s0 + 2, s1);
			for (uint32_t s = from; s < to; s++) {
				const struct hint_span *sp = &h->spans[s];
				struct blob *b = sp->dev < m->ndevs ? m->devblobs[sp->dev] : NULL;
				if (!b || b->complete || !b->nranges || !sp->len || sp->off >= b->size)
					continue;
				uint64_t first = range_at(b, sp->off);
				uint64_t last = range_at(b, MIN(sp->off + sp->len, b->size) - 1);
				spans += schedule(wk, b, first, last, SCHED_LISTED) >= 0;
			}
		}
	return spans;
}

size_t mount_hints_on_read(struct worker *wk, struct lmount *m, struct blob *b, uint64_t off,
			   uint64_t len)
{
	struct load_hints *h = m->hints;
	size_t spans = 0;
	for (uint32_t dev = 0; h && dev < m->ndevs; dev++) {
		if (m->devblobs[dev] != b)
			continue;
		/* triggers are sorted by (dev, off): the first that may overlap */
		size_t lo = 0, hi = h->nprogs;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			const struct hint_trigger *t = &h->trig[mid];
			if (t->dev < dev || (t->dev == dev && t->off + t->len <= off))
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = lo; k < h->nprogs && h->trig[k].dev == dev && h->trig[k].off < off + len;
		     k++)
			if (!h->fired[h->trig[k].prog])
				spans += fire_program(wk, m, h->trig[k].prog);
	}
	return spans;
}

void hints_on_read(struct worker *wk, struct blob *b, uint64_t off, uint64_t len)
{
	for (size_t i = 0; i < wk->mtab.nmounts; i++)
		(void)mount_hints_on_read(wk, wk->mtab.mounts[i], b, off, len);
}

void trace_note(struct lmount *m, struct blob *b, uint64_t off, uint64_t len)
{
	size_t k = 0;
	while (k < m->nblobs && m->blobs[k] != b)
		k++;
	if (k == m->nblobs || !len || off >= b->size)
		return;
	if (!m->seen && !(m->seen = calloc(m->nblobs, sizeof(*m->seen))))
		return;
	if (!m->seen[k] && !(m->seen[k] = calloc(MAX(b->nranges, 1), 1)))
		return;
	uint64_t first = range_at(b, off);
	uint64_t last = range_at(b, off + MIN(len, b->size - off) - 1);
	for (uint64_t r = first; r <= last; r++) {
		if (m->seen[k][r])
			continue;
		if (m->ntrace == m->trace_cap) {
			size_t cap = m->trace_cap ? 2 * m->trace_cap : 256;
			uint64_t(*t)[2] = realloc(m->trace, cap * sizeof(*t));
			if (!t)
				return;
			m->trace = t;
			m->trace_cap = cap;
		}
		m->seen[k][r] = 1;
		m->trace[m->ntrace][0] = k;
		m->trace[m->ntrace++][1] = r;
	}
}

void prefetch_blob(struct worker *wk, struct blob *b)
{
	if (!b->complete && b->nranges)
		schedule(wk, b, 0, b->nranges - 1, SCHED_BACKGROUND);
}

void cancel_jobs(struct worker *wk, struct blob *b)
{
	struct job **lists[3] = {&wk->q.demand, &wk->q.listed, &wk->q.background};
	for (int l = 0; l < 3; l++)
		for (struct job **p = lists[l]; *p;) {
			struct job *j = *p;
			if (j->b != b) {
				p = &j->next;
				continue;
			}
			*p = j->next;
			memset(b->state + j->first, RANGE_ABSENT, j->count);
			free(j);
		}
	for (struct waiter **p = &wk->waiters; *p;) {
		struct waiter *w = *p;
		if (w->b != b) {
			p = &w->next;
			continue;
		}
		*p = w->next;
		finish_waiter(wk, w, false);
	}
}

/* After a job: answer every reader it concerns. */
static void wake(struct worker *wk, struct blob *b, const struct job *j, bool ok)
{
	for (struct waiter **p = &wk->waiters; *p;) {
		struct waiter *w = *p;
		int outcome = sched_waiter_outcome(w->b, w->first, w->last, b, j, ok);
		if (outcome) {
			*p = w->next;
			b->waiting--;
			finish_waiter(wk, w, outcome > 0);
			continue;
		}
		p = &w->next;
	}
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

/* Fetch, verify and store one job's ranges; no lock held. */
static int run_job(struct worker *wk, struct job *j, uint64_t *len_out)
{
	struct blob *b = j->b;
	uint64_t off = range_off(b, j->first);
	uint64_t len = range_off(b, j->first + j->count) - off;
	*len_out = len;
	_cleanup_free_ char *buf = malloc(MAX(len, 1));
	if (!buf)
		return -ENOMEM;
	int r = -EIO;
	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		struct anole_error err = {0};
		__atomic_add_fetch(&wk->count.fetch_requests, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&b->fetches, 1, __ATOMIC_RELAXED);
		/* a source that just failed gets one try per range, not the
		 * full retry schedule: readers learn it is down in moments */
		time_t down = __atomic_load_n(&b->down_since, __ATOMIC_RELAXED);
		bool quick = down && time(NULL) - down < DOWN_SECONDS;
		r = store_read_range(b->src, b->digest, off, len, buf, quick, &err);
		if (r < 0) {
			__atomic_add_fetch(&wk->count.fetch_errors, 1, __ATOMIC_RELAXED);
			if (!quick)
				__atomic_store_n(&b->down_since, time(NULL), __ATOMIC_RELAXED);
			wlog("%s", err.msg);
			break;
		}
		__atomic_store_n(&b->down_since, 0, __ATOMIC_RELAXED);
		__atomic_add_fetch(&wk->count.fetched_bytes, len, __ATOMIC_RELAXED);
		__atomic_add_fetch(&b->fetched_bytes, len, __ATOMIC_RELAXED);
		for (uint64_t i = 0; i < j->count && r >= 0; i++) {
			uint64_t from = range_off(b, j->first + i);
			uint64_t n = range_off(b, j->first + i + 1) - from, last = from + n - 1;
			struct digest d;
			sha256(buf + (from - off), n, &d);
			if (memcmp(&d, &b->table.d[j->first + i], sizeof(d))) {
				__atomic_add_fetch(&wk->count.fetch_errors, 1, __ATOMIC_RELAXED);
				wlog("blob %s: bytes %llu-%llu do not match its digest table "
				     "(attempt %d of %d)",
				     b->digest, (unsigned long long)from, (unsigned long long)last,
				     attempt + 1, ATTEMPTS);
				r = -EBADMSG;
			}
		}
		if (r >= 0)
			break;
	}
	if (r < 0)
		return r;
	/* verified bytes in the page cache are all a reader needs: making
	 * them durable (persist_job) waits until the readers have them */
	if ((r = pwrite_full(b->fd, buf, len, off)) < 0) {
		wlog("%s: %s", b->path, strerror(-r));
		return r;
	}
	return 0;
}

/* Bytes on disk first, then the map says so: a crash in between loses a
 * range, never makes one up. */
static int persist_job(const struct job *j)
{
	struct blob *b = j->b;
	if (fdatasync(b->fd) < 0) {
		int e = errno;
		wlog("%s: %s", b->path, strerror(e));
		return -e;
	}
	uint8_t ones[COALESCE_MAX];
	_Static_assert(COALESCE_MAX >= COALESCE_MIN, "");
	memset(ones, 1, sizeof(ones));
	if (pwrite_full(b->mapfd, ones, j->count, RANGES_MAP_HEAD + j->first) < 0)
		wlog("%s: cannot record ranges", b->path);
	return 0;
}

/* The readers of a job's ranges get their answer. The blob stays busy
 * until release_job: it is neither completed nor freed under persist_job. */
static void answer_job(struct worker *wk, struct job *j, int r)
{
	struct blob *b = j->b;
	memset(b->state + j->first, r >= 0 ? RANGE_PRESENT : RANGE_ABSENT, j->count);
	if (r < 0)
		b->failures++;
	if (r == -ETIMEDOUT)
		note_timeout(b, j);
	wake(wk, b, j, r >= 0);
}

static void release_job(struct worker *wk, struct job *j, int r)
{
	struct blob *b = j->b;
	if (r < 0) { /* not on disk: fetched again when next asked for */
		memset(b->state + j->first, RANGE_ABSENT, j->count);
		/* a reader of these ranges and others, not answered when they
		 * came, would now wait for ranges nobody fetches: it fails */
		wake(wk, b, j, false);
	}
	b->busy--;
	if (b->orphan) {
		if (!b->busy)
			blob_release(wk, b);
		return;
	}
	if (r >= 0 && !b->busy && blob_present(b) == b->nranges)
		complete_blob_locked(wk, b);
}

/* What a fetch thread is started with. */
struct fetcher_arg {
	struct worker *wk;
	bool background;
};

static void *fetcher(void *arg)
{
	struct fetcher_arg fa = *(struct fetcher_arg *)arg;
	free(arg);
	struct worker *wk = fa.wk;
	bool background = fa.background;
	if (background) /* prefetch yields the CPU and the disk to readers */
		setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
	pthread_mutex_lock(&wk->lock);
	for (;;) {
		/* readers first, then the recorded list, then the rest */
		struct job *j = sched_take(&wk->q, background);
		if (!j) {
			pthread_cond_wait(&wk->jobs_cond, &wk->lock);
			continue;
		}
		j->b->busy++;
		wk->jobs_running++;
		pthread_mutex_unlock(&wk->lock);
		uint64_t len = 0;
		int r = run_job(wk, j, &len);
		pthread_mutex_lock(&wk->lock);
		answer_job(wk, j, r);
		/* the bytes are here: the link is free for the next listed job */
		if (j->listed) {
			wk->q.listed_running--;
			pthread_cond_broadcast(&wk->jobs_cond);
		}
		if (r >= 0) {
			pthread_mutex_unlock(&wk->lock);
			r = persist_job(j);
			pthread_mutex_lock(&wk->lock);
		}
		bool was_background = j->background;
		release_job(wk, j, r);
		free(j);
		wk->jobs_running--;
		if (was_background && wk->prefetch_rate) {
			pthread_mutex_unlock(&wk->lock);
			sleep_s((double)len / (double)wk->prefetch_rate);
			pthread_mutex_lock(&wk->lock);
		}
	}
	return NULL;
}

int start_fetchers(struct worker *wk)
{
	for (int i = 0; i <= DEMAND_THREADS; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&a, 256 << 10);
		struct fetcher_arg *fa = malloc(sizeof(*fa));
		if (!fa) {
			pthread_attr_destroy(&a);
			return -ENOMEM;
		}
		*fa = (struct fetcher_arg){.wk = wk, .background = i == DEMAND_THREADS};
		int r = pthread_create(&t, &a, fetcher, fa);
		pthread_attr_destroy(&a);
		if (r) {
			free(fa);
			return -r;
		}
	}
	return 0;
}
