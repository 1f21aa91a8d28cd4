/* SPDX-License-Identifier: Apache-2.0 */
/* The fetch scheduler's decisions, pure over their inputs (sched.h). */
#include "serve/sched.h"

bool sched_all_present(const struct blob *b, uint64_t first, uint64_t last)
{
	for (uint64_t i = first; i <= last; i++)
		if (b->state[i] != RANGE_PRESENT)
			return false;
	return true;
}

bool sched_timed_out(const struct blob *b, uint64_t first, uint64_t last, double now)
{
	for (uint64_t i = first; b->failed_until && i <= last; i++)
		if (b->state[i] == RANGE_ABSENT && b->failed_until[i] > now)
			return true;
	return false;
}

bool sched_coalesce(const struct blob *b, enum sched_prio prio, uint64_t first, uint64_t r)
{
	uint64_t bytes = prio == SCHED_DEMAND ? DEMAND_REQUEST_MAX : PREFETCH_REQUEST_MAX;
	uint64_t count = r - first;
	return count < COALESCE_MAX &&
	       (count < COALESCE_MIN || range_off(b, r + 1) - range_off(b, first) <= bytes);
}

uint64_t sched_run(const struct blob *b, enum sched_prio prio, uint64_t first, uint64_t to)
{
	uint64_t r = first;
	while (r <= to && r < b->nranges && b->state[r] == RANGE_ABSENT &&
	       (r == first || sched_coalesce(b, prio, first, r)))
		r++;
	return r - first;
}

bool sched_readahead(struct blob *b, uint64_t first, uint64_t last, uint64_t *from, uint64_t *to)
{
	uint64_t n;
	if (b->ra_size && first <= b->ra_end + 1 && last >= b->ra_mark) {
		*from = MAX(b->ra_end, last) + 1; /* the window is being read: the next */
		n = MIN(b->ra_size * 2, READAHEAD_MAX);
	} else if (first > 0 && b->state[first - 1] != RANGE_ABSENT &&
		   !sched_all_present(b, first, last)) {
		*from = last + 1; /* a miss right after data: a first window */
		n = READAHEAD_BYTES;
	} else {
		return false;
	}
	if (*from >= b->nranges) {
		b->ra_size = 0;
		return false;
	}
	/* in whole ranges: at least one, up to n bytes */
	uint64_t start = range_off(b, *from);
	b->ra_size = n;
	b->ra_end = MAX(*from, range_at(b, MIN(start + n, b->size) - 1));
	b->ra_mark = MIN(range_at(b, MIN(start + n / 2, b->size - 1)), b->ra_end);
	*to = b->ra_end;
	return true;
}

/* The compressed extent that holds byte @off, or NULL. */
static const uint64_t *extent_at(const struct blob *b, uint64_t off)
{
	size_t lo = 0, hi = b->nextents;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->extents[mid][0] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && off < b->extents[lo - 1][1] ? b->extents[lo - 1] : NULL;
}

struct read_span sched_read_span(const struct blob *b, uint64_t off, uint64_t len)
{
	uint64_t end = off + MIN(len, b->size - off); /* (capped: cannot wrap) */
	const uint64_t *lo = extent_at(b, off), *hi = extent_at(b, end - 1);
	return (struct read_span){
		.first = range_at(b, off),
		.last = range_at(b, end - 1),
		.sfirst = range_at(b, lo ? lo[0] : off),
		.slast = range_at(b, (hi ? MIN(hi[1], b->size) : end) - 1),
	};
}

struct job *sched_take(struct job_queues *q, bool background)
{
	struct job *j = q->demand;
	if (j) {
		q->demand = j->next;
	} else if (q->listed_running < LISTED_PARALLEL && (j = q->listed)) {
		q->listed = j->next;
		j->listed = true;
		q->listed_running++;
	} else if (background && (j = q->background)) {
		q->background = j->next;
	}
	return j;
}

int sched_waiter_outcome(const struct blob *wb, uint64_t first, uint64_t last,
			 const struct blob *b, const struct job *j, bool ok)
{
	if (wb != b)
		return 0;
	if (!ok && first < j->first + j->count && last >= j->first)
		return -1;
	return sched_all_present(b, first, last) ? 1 : 0;
}
