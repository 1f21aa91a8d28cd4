/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A bump allocator for the many small records a build keeps to its end
 * (inodes, directory entries, merge nodes): no per-record malloc header
 * or rounding, and all of it freed at once. Records are never freed one
 * by one; one that turns out unused stays until arena_release().
 */
#ifndef ANOLE_ARENA_H
#define ANOLE_ARENA_H

#include <stddef.h>

struct arena {
	struct arena_chunk *chunks; /* newest first */
	size_t used, cap;           /* in the newest chunk */
};

/* @size zeroed bytes, 8-byte aligned; NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t size);
/* Call @fn on every record of an arena whose records are all @size bytes
 * (a multiple of 8 and at most a quarter of a chunk), oldest chunk last. */
void arena_foreach(const struct arena *a, size_t size, void (*fn)(void *rec));
void arena_release(struct arena *a);

#endif
