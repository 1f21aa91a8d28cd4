/* SPDX-License-Identifier: Apache-2.0 */
/* A hash map from byte-string keys (copied) to caller-owned pointers. */
#ifndef ANOLE_STRMAP_H
#define ANOLE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
/* Frees the keys, and each value with @free_value when not NULL. */
void strmap_free(struct strmap *m, void (*free_value)(void *));
void strmap_clear(struct strmap *m, void (*free_value)(void *));
size_t strmap_count(const struct strmap *m);

/* The value slot of @key (@len bytes). When absent: with @create a new slot
 * holding NULL, else NULL. Also NULL when out of memory. A slot stays
 * valid until the next insertion. */
void **strmap_slot(struct strmap *m, const char *key, size_t len, bool create);

/* Calls @fn for every entry, in no particular order. */
void strmap_foreach(struct strmap *m, void (*fn)(const char *key, void *value, void *ctx),
		    void *ctx);

#endif
