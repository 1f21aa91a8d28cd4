/* SPDX-License-Identifier: Apache-2.0 */
#include "smc/ring.h"

#include <errno.h>
#include <string.h>

void smc_ring_init(struct smc_ring *r, void *hdr, void *data, uint32_t size)
{
	r->h = hdr;
	r->data = data;
	r->size = size;
	atomic_store(&r->h->prod, 0);
	atomic_store(&r->h->cons, 0);
	atomic_store(&r->h->closed, 0);
	atomic_store(&r->h->reset, 0);
	atomic_store(&r->h->prod_sleep, 0);
	atomic_store(&r->h->cons_sleep, 0);
	r->h->size = size;
}

/* prod - cons, checked: the peer may have written anything there. */
static int64_t ring_fill(const struct smc_ring *r, uint64_t prod, uint64_t cons)
{
	uint64_t used = prod - cons;

	return used > r->size ? -EPROTO : (int64_t)used;
}

int64_t smc_ring_used(const struct smc_ring *r)
{
	uint64_t cons = atomic_load_explicit(&r->h->cons, memory_order_relaxed);

	return ring_fill(r, atomic_load_explicit(&r->h->prod, memory_order_acquire), cons);
}

int64_t smc_ring_space(const struct smc_ring *r)
{
	uint64_t prod = atomic_load_explicit(&r->h->prod, memory_order_relaxed);
	int64_t used = ring_fill(r, prod, atomic_load_explicit(&r->h->cons, memory_order_acquire));

	return used < 0 ? used : (int64_t)r->size - used;
}

/* Copies @n bytes between @buf and the ring at cursor @pos, wrapping. */
static void ring_copy(const struct smc_ring *r, uint64_t pos, uint8_t *buf, size_t n, bool in)
{
	size_t off = (size_t)(pos & (r->size - 1));
	size_t first = n < r->size - off ? n : r->size - off;

	if (in) {
		memcpy(r->data + off, buf, first);
		memcpy(r->data, buf + first, n - first);
	} else {
		memcpy(buf, r->data + off, first);
		memcpy(buf + first, r->data, n - first);
	}
}

/* Moves up to @avail bytes between @iov and the ring from cursor @pos. */
static size_t ring_iov(const struct smc_ring *r, uint64_t pos, size_t avail, const struct iovec *iov,
		       int iovcnt, bool in)
{
	size_t done = 0;

	for (int i = 0; i < iovcnt && done < avail; i++) {
		size_t n = iov[i].iov_len < avail - done ? iov[i].iov_len : avail - done;

		if (n)
			ring_copy(r, pos + done, iov[i].iov_base, n, in);
		done += n;
	}
	return done;
}

/* Moves up to @avail bytes (a negative @avail is the error to return)
 * between @iov and the ring at this side's own cursor @cur, which only
 * this side writes, and publishes the new cursor unless @keep. The store
 * is seq_cst, not only release: this side's later load of the other's
 * sleep flag must not be ordered before it (Dekker). */
static ssize_t ring_move(struct smc_ring *r, _Atomic uint64_t *cur, int64_t avail,
			 const struct iovec *iov, int iovcnt, bool in, bool keep)
{
	uint64_t pos = atomic_load_explicit(cur, memory_order_relaxed);

	if (avail < 0)
		return avail;
	size_t n = ring_iov(r, pos, (size_t)avail, iov, iovcnt, in);
	if (n && !keep)
		atomic_store(cur, pos + n);
	return (ssize_t)n;
}

ssize_t smc_ring_write(struct smc_ring *r, const struct iovec *iov, int iovcnt)
{
	return ring_move(r, &r->h->prod, smc_ring_space(r), iov, iovcnt, true, false);
}

ssize_t smc_ring_read(struct smc_ring *r, const struct iovec *iov, int iovcnt, bool peek)
{
	return ring_move(r, &r->h->cons, smc_ring_used(r), iov, iovcnt, false, peek);
}
