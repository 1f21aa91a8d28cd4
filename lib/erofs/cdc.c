/* SPDX-License-Identifier: Apache-2.0 */
#include "erofs/cdc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static uint64_t gear[256];

static void gear_init(void)
{
	/* fixed pseudo-random values (splitmix64): images stay reproducible */
	uint64_t x = 0x616e6f6c65636463ull; /* "anolecdc" */
	for (int i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
	}
}

struct cdc_params cdc_for(uint32_t max)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, gear_init);
	unsigned int bits = 0;
	while ((1u << (bits + 1)) <= max / 4)
		bits++;
	/* cuts at least a quarter apart, about every half on average */
	struct cdc_params p = {.min = max / 4, .max = max, .mask = ((1ull << bits) - 1) << 24};
	return p;
}

static uint32_t find_cut(const uint8_t *b, uint32_t len, const struct cdc_params *p)
{
	uint64_t h = 0;
	/* the hash forgets bytes older than 64: start just before min */
	uint32_t i = p->min > 64 ? p->min - 64 : 0;
	for (; i < len; i++) {
		h = (h << 1) + gear[b[i]];
		if (i + 1 >= p->min && !(h & p->mask))
			return i + 1;
	}
	return len;
}

static int push(uint64_t **v, size_t *k, size_t *cap, uint64_t x)
{
	uint64_t *nv = array_grow(*v, cap, *k + 1, sizeof(*nv), 16);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	(*v)[(*k)++] = x;
	return 0;
}

int cdc_cuts(int fd, uint64_t size, const struct cdc_params *p, uint8_t *buf, int leave_tail,
	     uint64_t **cuts, size_t *n, uint64_t *tail_start)
{
	uint64_t *v = NULL, pos = 0;
	size_t k = 0, cap = 0;
	uint32_t have = 0; /* buf holds file bytes [pos, pos + have) */
	int r = 0;

	while (size - pos > p->max) {
		/* top the window up to max bytes; what was read stays */
		r = pread_full(fd, buf + have, p->max - have, pos + have);
		if (r < 0)
			break;
		have = p->max;
		/* Cuts fall on 4 KiB boundaries: an extent the codec cannot
		 * shrink is then stored as whole plain blocks, the only plain
		 * layout the kernel reads for multi-block extents. */
		uint32_t cut = find_cut(buf, p->max, p) & ~4095u;
		if (cut < 4096)
			cut = 4096;
		memmove(buf, buf + cut, have - cut);
		have -= cut;
		pos += cut;
		if ((r = push(&v, &k, &cap, pos)) < 0)
			break;
	}
	if (!r && !leave_tail && pos < size) {
		r = push(&v, &k, &cap, size);
		pos = size;
	}
	if (r < 0) {
		free(v);
		return r;
	}
	*cuts = v;
	*n = k;
	*tail_start = pos;
	return 0;
}
