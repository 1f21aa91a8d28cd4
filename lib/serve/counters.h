/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's counters: what `anole status` and metrics.prom report.
 * Under the worker's lock, but for the fetch ones, which fetch threads
 * add to without it (atomically). */
#ifndef ANOLE_SERVE_COUNTERS_H
#define ANOLE_SERVE_COUNTERS_H

#include <stdint.h>

struct worker_counters {
	uint64_t events, npending_events, denied;
	uint64_t fetch_requests, fetched_bytes, fetch_errors; /* atomic */
	uint64_t hint_programs; /* programs whose loader ranges were queued */
	uint64_t read_bytes;
	/* reads that waited for a fetch, and how long they waited in all:
	 * the time a workload lost to the network */
	uint64_t read_waits, read_wait_us;
};

#endif
