/* SPDX-License-Identifier: Apache-2.0 */
#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

/* Large enough that the chunk headers do not count, small enough that
 * a tiny build does not notice (pages appear as they are used). */
#define ARENA_CHUNK ((size_t)1 << 20)

/* Chunks are mapped, not malloc'd: once glibc has freed a big block its
 * mmap threshold rises above a chunk, and chunks of arenas that live
 * together (a layer merge's nodes, the writer's inodes) would then share
 * the heap, where releasing one arena leaves holes that stay resident. A
 * mapping goes back to the kernel when the arena is released. */
struct arena_chunk {
	struct arena_chunk *next;
	size_t used; /* bytes handed out */
	size_t len;  /* of the mapping */
	max_align_t data[];
};

void *arena_alloc(struct arena *a, size_t size)
{
	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + 7) & ~(size_t)7;
	if (!a->chunks || a->cap - a->used < size) {
		size_t cap = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK - sizeof(struct arena_chunk);
		size_t len = sizeof(struct arena_chunk) + cap;
		struct arena_chunk *c =
			mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c == MAP_FAILED)
			return NULL;
		c->len = len;
		if (a->chunks && cap == size && a->cap - a->used >= ARENA_CHUNK / 4) {
			/* a big record: keep filling the current chunk after it */
			c->next = a->chunks->next;
			c->used = size;
			a->chunks->next = c;
			return c->data;
		}
		c->next = a->chunks;
		a->chunks = c;
		a->used = 0;
		a->cap = cap;
	}
	void *p = (char *)a->chunks->data + a->used;
	a->used += size;
	a->chunks->used = a->used;
	return p;
}

void arena_foreach(const struct arena *a, size_t size, void (*fn)(void *rec))
{
	for (const struct arena_chunk *c = a->chunks; c; c = c->next)
		for (size_t off = 0; off + size <= c->used; off += size)
			fn((char *)c->data + off);
}

void arena_release(struct arena *a)
{
	while (a->chunks) {
		struct arena_chunk *c = a->chunks;
		a->chunks = c->next;
		munmap(c, c->len);
	}
	a->used = a->cap = 0;
}
