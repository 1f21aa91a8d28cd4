/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Extended attributes: name prefixes, and the table that interns
 * (name, value) pairs and per-inode sets so that repeated pairs can be
 * stored once in the shared xattr area.
 */
#ifndef ANOLE_XATTR_H
#define ANOLE_XATTR_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Split a full name into an EROFS prefix index and the suffix. Returns the
 * index (1..6) or 0 when no prefix matches. */
unsigned int xattr_split_name(const char *name, const char **suffix);
/* The prefix of an index ("user.", ...) or NULL. */
const char *xattr_prefix(unsigned int index);

/* A long xattr name prefix (XATTR_PREFIXES): a short prefix's index and
 * the bytes that follow it, e.g. 1 and "long.prefix." for
 * "user.long.prefix.". */
struct xattr_lprefix {
	uint8_t base_index;
	uint8_t infix_len;
	char infix[255];
};
/* Parse @count records of the long prefix table from @buf (@size bytes,
 * the table's first byte at buf[0]). 0, or -EFSCORRUPTED with the bad
 * record's byte offset in *bad and why in @why. */
int xattr_prefixes_parse(const uint8_t *buf, size_t size, unsigned int count,
			 struct xattr_lprefix *out, size_t *bad, char *why, size_t why_size);
/* xxHash32, and the XATTR_FILTER bit of a name (the part after the short
 * prefix of @base_index). */
uint32_t xattr_xxh32(const void *data, size_t len, uint32_t seed);
unsigned int xattr_filter_bit(unsigned int base_index, const char *name, size_t len);
/* The longest table of @count records, in bytes. */
size_t xattr_prefixes_max_size(unsigned int count);

struct xattr_table;

int xattr_table_new(struct xattr_table **t);
void xattr_table_free(struct xattr_table *t);

/* A set under construction: add pairs, then intern it. */
struct xattr_setbuf {
	uint32_t *pairs;
	uint32_t n;
	size_t cap;
};
int xattr_set_add(struct xattr_table *t, struct xattr_setbuf *sb, const char *name,
		  const void *value, size_t size, struct anole_error *err, const char *path);
/* Returns the set id (>0), or 0 for an empty set; resets @sb. */
int xattr_set_intern(struct xattr_table *t, struct xattr_setbuf *sb, uint32_t *set_id);
void xattr_setbuf_release(struct xattr_setbuf *sb);
/* Call @fn with the full name and value of each pair of a set. */
int xattr_set_foreach(struct xattr_table *t, uint32_t set_id,
		      int (*fn)(void *ctx, const char *name, const void *value, size_t size),
		      void *ctx);
/* Start @sb with the pairs of an interned set (to add to it). */
int xattr_setbuf_load(struct xattr_table *t, struct xattr_setbuf *sb, uint32_t set_id);

/* Worst-case ibody size of a set (every pair inline). */
uint32_t xattr_set_max_ibody(struct xattr_table *t, uint32_t set_id);
/* Count one more inode using @set_id (drives sharing). */
void xattr_set_use(struct xattr_table *t, uint32_t set_id);

/* Decide which pairs are shared and encode the shared area; after this,
 * ibody sizes and bytes are final. */
int xattr_table_finalize(struct xattr_table *t);
uint32_t xattr_shared_size(struct xattr_table *t); /* bytes, 4-aligned */
const void *xattr_shared_area(struct xattr_table *t);
uint32_t xattr_shared_count(struct xattr_table *t);
/* The encoded ibody of a set; size is 0 for no xattrs. */
const void *xattr_set_ibody(struct xattr_table *t, uint32_t set_id, uint32_t *size);

#endif
