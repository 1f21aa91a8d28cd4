/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content-defined extent boundaries (a gear rolling hash, as in FastCDC):
 * a cut falls where the hash of the last bytes matches a mask, so equal
 * content gets equal extents wherever it sits in a file (at 4 KiB
 * granularity), and repeated extents can be stored once.
 */
#ifndef ANOLE_CDC_H
#define ANOLE_CDC_H

#include <stddef.h>
#include <stdint.h>

struct cdc_params {
	uint32_t min, max; /* extent size bounds */
	uint64_t mask;     /* a cut when (hash & mask) == 0 */
};

/* Parameters for extents of at most @max bytes. */
struct cdc_params cdc_for(uint32_t max);

/* Cut [0, size) of @fd. With @leave_tail, the last piece (at most max
 * bytes) is not cut off and *tail_start tells where it begins; otherwise
 * the last cut is @size. @buf holds max bytes. Returns 0 or -errno. */
int cdc_cuts(int fd, uint64_t size, const struct cdc_params *p, uint8_t *buf, int leave_tail,
	     uint64_t **cuts, size_t *n, uint64_t *tail_start);

#endif
