/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fetch scheduler's decisions (sched.c): which ranges a read waits
 * for and fetches with it, which absent ranges go in one request, when
 * read-ahead opens its next window, which queued job a fetch thread takes,
 * which waiting readers a finished job answers. Each is a function of
 * its inputs (a blob's ranges, their states, its extents and read-ahead
 * window; the queues; the time passed in): no lock, no I/O, no clock, so
 * that tests/unit/test_sched.c can drive them. fetch.c holds wk->lock,
 * applies them and does the fetching.
 */
#ifndef ANOLE_SERVE_SCHED_H
#define ANOLE_SERVE_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "serve/blobcache.h"

/* the most one request asks for: a reader waits for all of it, prefetch
 * does not; and at least 4 ranges, as with 1 MiB ranges */
#define DEMAND_REQUEST_MAX (1u << 20)
#define PREFETCH_REQUEST_MAX (4u << 20)
#define COALESCE_MIN 4
#define COALESCE_MAX 1024
/* Listed jobs (prefetch lists, read-ahead) in flight at once. They are in
 * the order they will be needed: more at once would share the link and
 * make the first one needed arrive later. Two keep it busy across a
 * request's round trip. */
#define LISTED_PARALLEL 2
#define READAHEAD_BYTES (128u << 10)
#define READAHEAD_MAX PREFETCH_REQUEST_MAX

enum sched_prio { SCHED_DEMAND, SCHED_LISTED, SCHED_BACKGROUND };

/* A fetch of ranges [first, first + count) of a blob, queued or running. */
struct job {
	struct job *next;
	struct blob *b;
	uint64_t first, count; /* ranges */
	bool background;
	bool listed; /* taken from the listed queue: counts in listed_running */
};

/* The queues, in the order fetch threads serve them. */
struct job_queues {
	struct job *demand, *listed, *background;
	unsigned listed_running;
};

/* A read of [off, off + len) (len > 0, off < size): its own ranges, and
 * those of the compressed extents it touches. The kernel decompresses an
 * extent whole but asks for it in pieces, one after another: fetched
 * piece by piece, each would wait a round trip of its own. */
struct read_span {
	uint64_t first, last;   /* what the reader waits for */
	uint64_t sfirst, slast; /* what it will need next: fetched with it */
};
struct read_span sched_read_span(const struct blob *b, uint64_t off, uint64_t len);

bool sched_all_present(const struct blob *b, uint64_t first, uint64_t last);
/* Does a read of ranges [first, last] fail at once at time @now (a fetch
 * of one of them timed out lately)? */
bool sched_timed_out(const struct blob *b, uint64_t first, uint64_t last, double now);
/* May a job of @prio from range @first take in range @r too? */
bool sched_coalesce(const struct blob *b, enum sched_prio prio, uint64_t first, uint64_t r);
/* How many ranges from @first (absent) one job of @prio takes, stopping
 * at @to, at a range not absent, or where sched_coalesce says no. */
uint64_t sched_run(const struct blob *b, enum sched_prio prio, uint64_t first, uint64_t to);
/* A read waiting for [first, last] (before its own ranges are queued):
 * true when read-ahead opens a window, [*from, *to] to queue as listed;
 * the blob's window (ra_size, ra_mark, ra_end) moves. */
bool sched_readahead(struct blob *b, uint64_t first, uint64_t last, uint64_t *from, uint64_t *to);
/* The job a fetch thread takes next, out of its queue (or NULL): readers'
 * first, then listed ones while fewer than LISTED_PARALLEL run, then,
 * for the @background thread alone, the background queue. */
struct job *sched_take(struct job_queues *q, bool background);
/* A waiter for ranges [first, last] of @wb, after job @j of blob @b ended
 * (@ok: its ranges present): 0 keeps waiting, 1 is answered ok, -1 fails. */
int sched_waiter_outcome(const struct blob *wb, uint64_t first, uint64_t last,
			 const struct blob *b, const struct job *j, bool ok);

#endif
