/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: ELF load hints as a registry would hand them over (JSON) ->
 * what the daemon keeps, for an image of two blobs. Beyond not crashing,
 * every span must lie inside its blob, every closure entry name a file,
 * and the triggers be sorted: the daemon indexes and searches by them
 * without checking again.
 */
#include <stdlib.h>

#include "lazy/hints.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t sizes[] = {1u << 20, 4096};
	struct load_hints *h;
	char why[200];
	if (load_hints_parse((const char *)data, size, sizes, 2, &h, why, sizeof(why)) < 0)
		return 0;
	for (size_t i = 0; i < h->nspans; i++)
		if (h->spans[i].dev >= 2 || !h->spans[i].len ||
		    h->spans[i].off + h->spans[i].len > sizes[h->spans[i].dev])
			abort();
	for (size_t f = 0; f < h->nfiles; f++)
		if (h->file_start[f] > h->file_start[f + 1] || h->file_start[f + 1] > h->nspans)
			abort();
	for (size_t p = 0; p < h->nprogs; p++) {
		if (h->prog_start[p] > h->prog_start[p + 1] || h->prog_start[p + 1] > h->nclosure)
			abort();
		const struct hint_trigger *t = &h->trig[p];
		if (t->prog >= h->nprogs || t->dev >= 2 || t->off + t->len > sizes[t->dev] ||
		    (p && (h->trig[p - 1].dev > t->dev ||
			   (h->trig[p - 1].dev == t->dev && h->trig[p - 1].off > t->off))))
			abort();
	}
	for (size_t c = 0; c < h->nclosure; c++)
		if (h->closure[c] >= h->nfiles)
			abort();
	load_hints_free(h);
	return 0;
}
