/* SPDX-License-Identifier: Apache-2.0 */
/* One single-producer/single-consumer byte ring in shared memory
 * (docs/DESIGN-smc.md, "Rings"). The header is shared with a peer
 * process: every cursor read from it is checked before use. */
#ifndef ANOLE_SMC_RING_H
#define ANOLE_SMC_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SMC_CACHELINE 64

struct smc_ring_hdr {
	_Alignas(SMC_CACHELINE) _Atomic uint64_t prod; /* bytes ever published */
	_Alignas(SMC_CACHELINE) _Atomic uint64_t cons; /* bytes ever consumed */
	_Alignas(SMC_CACHELINE) _Atomic uint32_t closed; /* producer shut down */
	_Atomic uint32_t reset;      /* consumer is gone: writes get EPIPE */
	/* threads of the producer's process waiting for space, of the
	 * consumer's waiting for bytes: the other side signals the ring's
	 * eventfd while one is non-zero (DESIGN-smc.md, "Several waiters") */
	_Atomic uint32_t prod_sleep;
	_Atomic uint32_t cons_sleep;
	uint32_t size;               /* data bytes, a power of two */
	/* the producer's end goes by a close the kernel makes (exec with
	 * FD_CLOEXEC, exit): its control socket's EOF is then a close (EOF
	 * after the data), not a death (ECONNRESET) */
	_Atomic uint32_t gone_is_close;
};

/* One process's view of a ring: the shared header, the data, and the
 * size as this process set or checked it (never re-read from memory). */
struct smc_ring {
	struct smc_ring_hdr *h;
	uint8_t *data;
	uint32_t size;
};

/* Sets up a zeroed ring of @size bytes (a power of two). */
void smc_ring_init(struct smc_ring *r, void *hdr, void *data, uint32_t size);
/* Bytes that can be read; -EPROTO if the cursors are impossible. */
int64_t smc_ring_used(const struct smc_ring *r);
/* Free space; -EPROTO if the cursors are impossible. */
int64_t smc_ring_space(const struct smc_ring *r);
/* Copies up to the free space from @iov in; bytes written (0 if full)
 * or -EPROTO. Publishes with release. */
ssize_t smc_ring_write(struct smc_ring *r, const struct iovec *iov, int iovcnt);
/* Copies up to the bytes available into @iov; bytes read (0 if empty)
 * or -EPROTO. @peek leaves them in the ring. */
ssize_t smc_ring_read(struct smc_ring *r, const struct iovec *iov, int iovcnt, bool peek);

#endif
