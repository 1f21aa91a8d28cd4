/* SPDX-License-Identifier: Apache-2.0 */
#include "util/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	char *key; /* NUL-terminated copy; NULL = free slot */
	size_t len;
	uint64_t hash;
	void *value;
};

struct strmap {
	struct entry *v; /* open addressing, linear probing */
	size_t cap, count;
};

static uint64_t hash_key(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

struct strmap *strmap_new(void)
{
	return calloc(1, sizeof(struct strmap));
}

void strmap_clear(struct strmap *m, void (*free_value)(void *))
{
	for (size_t i = 0; m && i < m->cap; i++) {
		if (!m->v[i].key)
			continue;
		if (free_value)
			free_value(m->v[i].value);
		free(m->v[i].key);
		m->v[i].key = NULL;
	}
	if (m)
		m->count = 0;
}

void strmap_free(struct strmap *m, void (*free_value)(void *))
{
	if (!m)
		return;
	strmap_clear(m, free_value);
	free(m->v);
	free(m);
}

size_t strmap_count(const struct strmap *m)
{
	return m->count;
}

static int grow(struct strmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64;
	struct entry *n = calloc(ncap, sizeof(*n));
	if (!n)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->v[i].key)
			continue;
		size_t j = (size_t)m->v[i].hash & (ncap - 1);
		while (n[j].key)
			j = (j + 1) & (ncap - 1);
		n[j] = m->v[i];
	}
	free(m->v);
	m->v = n;
	m->cap = ncap;
	return 0;
}

void **strmap_slot(struct strmap *m, const char *key, size_t len, bool create)
{
	if (create && (m->count + 1) * 2 > m->cap && grow(m) < 0)
		return NULL;
	if (!m->cap)
		return NULL;
	uint64_t h = hash_key(key, len);
	size_t j = (size_t)h & (m->cap - 1);
	for (; m->v[j].key; j = (j + 1) & (m->cap - 1)) {
		struct entry *e = &m->v[j];
		if (e->hash == h && e->len == len && !memcmp(e->key, key, len))
			return &e->value;
	}
	if (!create)
		return NULL;
	char *k = malloc(len + 1);
	if (!k)
		return NULL;
	memcpy(k, key, len);
	k[len] = 0;
	m->v[j] = (struct entry){.key = k, .len = len, .hash = h};
	m->count++;
	return &m->v[j].value;
}

void strmap_foreach(struct strmap *m, void (*fn)(const char *key, void *value, void *ctx),
		    void *ctx)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->v[i].key)
			fn(m->v[i].key, m->v[i].value, ctx);
}
