/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: the lazy format's small files as a registry would hand them
 * over -> digest tables and chunk indexes (checked field by field), with
 * the blob size taken from the input's first 8 bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "erofs/blobmeta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t blob_size;
	memcpy(&blob_size, data, 8);
	blob_size &= (1ull << 40) - 1; /* as a descriptor could claim */
	data += 8, size -= 8;
	struct anole_error err = {0};
	struct digest_table t;
	if (digest_table_decode(data, size, blob_size, &t, &err, "fuzz") >= 0) {
		/* what the daemon does with it: index by range, and find the
		 * range of a byte; ranges must tile the blob */
		volatile uint8_t x = 0;
		for (uint64_t i = 0; i < t.head.count; i++) {
			x ^= t.d[i].b[0];
			if (t.off[i] >= t.off[i + 1] || digest_table_range_len(&t, i) > t.max_len ||
			    digest_table_range_at(&t, t.off[i]) != i ||
			    digest_table_range_at(&t, t.off[i + 1] - 1) != i)
				__builtin_trap();
		}
		if (t.off[t.head.count] != blob_size)
			__builtin_trap();
		(void)x;
		digest_table_release(&t);
	}
	/* chunk indexes are read from files */
	char path[32];
	int fd = fuzz_memfd(data, size, path);
	if (fd < 0)
		return 0;
	struct chunk_index ci;
	if (chunk_index_load(path, &ci, &err) >= 0)
		chunk_index_release(&ci);
	close(fd);
	return 0;
}
