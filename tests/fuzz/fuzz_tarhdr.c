/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: the header blocks of one tar entry (PAX 'x' records, GNU
 * long names, then the entry's own header) as anole reads them again to
 * check the numbers libarchive reads leniently. The input is the chain
 * from byte 0; reads past its end fail, as bytes tar.c did not keep.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "source/source.h"

struct mem {
	const uint8_t *p;
	size_t n;
};

static bool mem_get(void *ctx, uint64_t at, size_t n, void *dst)
{
	const struct mem *m = ctx;
	if (at > m->n || n > m->n - at)
		return false;
	memcpy(dst, m->p + at, n);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m = {data, size};
	struct tar_hdr_src src = {mem_get, &m};
	char why[160];
	memset(why, 0xa5, sizeof(why));
	int r = tar_check_headers(&src, 0, why, sizeof(why));
	if (r < -1 || r > 1)
		__builtin_trap();
	/* a refusal says why, as one NUL-terminated line */
	if (r == 1 && (!memchr(why, 0, sizeof(why)) || !why[0] || strchr(why, '\n')))
		__builtin_trap();
	return 0;
}
