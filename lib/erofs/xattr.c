/* SPDX-License-Identifier: Apache-2.0 */
#include "erofs/xattr.h"

#include "anole/erofs_fs.h"

static const struct {
	unsigned int index;
	const char *prefix;
	bool whole; /* the name is the prefix itself, the suffix is empty */
} prefixes[] = {
	{EROFS_XATTR_INDEX_USER, "user.", false},
	{EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, "system.posix_acl_access", true},
	{EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, "system.posix_acl_default", true},
	{EROFS_XATTR_INDEX_TRUSTED, "trusted.", false},
	{EROFS_XATTR_INDEX_SECURITY, "security.", false},
};

unsigned int xattr_split_name(const char *name, const char **suffix)
{
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		size_t n = strlen(prefixes[i].prefix);
		if (strncmp(name, prefixes[i].prefix, n))
			continue;
		/* the ACL names are whole; other prefixes need a suffix */
		if (prefixes[i].whole ? name[n] != 0 : name[n] == 0)
			continue;
		*suffix = name + n;
		return prefixes[i].index;
	}
	return 0;
}

const char *xattr_prefix(unsigned int index)
{
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (prefixes[i].index == index)
			return prefixes[i].prefix;
	return NULL;
}

#define XXH_P1 2654435761u
#define XXH_P2 2246822519u
#define XXH_P3 3266489917u
#define XXH_P4 668265263u
#define XXH_P5 374761393u

static uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* xxHash32 as its specification gives it (little-endian host). */
uint32_t xattr_xxh32(const void *data, size_t len, uint32_t seed)
{
	const uint8_t *p = data, *end = p + len;
	uint32_t h;
	if (len >= 16) {
		uint32_t v[4] = {seed + XXH_P1 + XXH_P2, seed + XXH_P2, seed, seed - XXH_P1};
		for (; end - p >= 16; p += 16)
			for (size_t k = 0; k < 4; k++)
				v[k] = rotl32(v[k] + get32(p + 4 * k) * XXH_P2, 13) * XXH_P1;
		h = rotl32(v[0], 1) + rotl32(v[1], 7) + rotl32(v[2], 12) + rotl32(v[3], 18);
	} else {
		h = seed + XXH_P5;
	}
	h += (uint32_t)len;
	for (; end - p >= 4; p += 4)
		h = rotl32(h + get32(p) * XXH_P3, 17) * XXH_P4;
	for (; p < end; p++)
		h = rotl32(h + *p * XXH_P5, 11) * XXH_P1;
	h ^= h >> 15;
	h *= XXH_P2;
	h ^= h >> 13;
	h *= XXH_P3;
	return h ^ (h >> 16);
}

unsigned int xattr_filter_bit(unsigned int base_index, const char *name, size_t len)
{
	return xattr_xxh32(name, len, EROFS_XATTR_FILTER_SEED + base_index) &
	       (EROFS_XATTR_FILTER_BITS - 1);
}

size_t xattr_prefixes_max_size(unsigned int count)
{
	/* a 16-bit length, a base index and 255 bytes, padded to 4 */
	return (size_t)count * 260;
}

static int bad_prefix(size_t at, size_t *bad, char *why, size_t why_size, const char *what)
{
	*bad = at;
	snprintf(why, why_size, "%s", what);
	return -EFSCORRUPTED;
}

int xattr_prefixes_parse(const uint8_t *buf, size_t size, unsigned int count,
			 struct xattr_lprefix *out, size_t *bad, char *why, size_t why_size)
{
	size_t at = 0;
	for (unsigned int i = 0; i < count; i++) {
		uint16_t len;
		if (at > size || size - at < sizeof(len))
			return bad_prefix(at, bad, why, why_size, "prefix table runs past its end");
		memcpy(&len, buf + at, sizeof(len));
		/* the kernel takes a length of 0 for 65536: too long as well */
		if (!len || len > 1 + EROFS_NAME_LEN)
			return bad_prefix(at, bad, why, why_size, "long xattr prefix of a bad length");
		if (size - at - sizeof(len) < len)
			return bad_prefix(at, bad, why, why_size, "prefix table runs past its end");
		const uint8_t *p = buf + at + sizeof(len);
		struct xattr_lprefix *lp = &out[i];
		lp->base_index = p[0];
		lp->infix_len = (uint8_t)(len - 1);
		memcpy(lp->infix, p + 1, lp->infix_len);
		/* the ACLs' names are whole: nothing can follow them. Other
		 * bases Linux does not know (0: mkfs.erofs's hidden xattrs)
		 * make entries it does not list, nor does anole. */
		if (lp->base_index == EROFS_XATTR_INDEX_POSIX_ACL_ACCESS ||
		    lp->base_index == EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT)
			return bad_prefix(at, bad, why, why_size, "long xattr prefix on an ACL name");
		if (memchr(lp->infix, 0, lp->infix_len))
			return bad_prefix(at, bad, why, why_size, "long xattr prefix holds a NUL");
		at = ROUND_UP(at + sizeof(len) + len, 4);
	}
	return 0;
}

struct xpair {
	uint64_t hash;
	uint8_t index, name_len;
	uint16_t value_size;
	uint32_t refs;
	uint32_t shared_id; /* UINT32_MAX when inline */
	char *data;         /* suffix then value */
};

struct xset {
	uint64_t hash;
	uint32_t *pairs; /* sorted by (index, suffix) */
	uint32_t n;
	uint32_t users;
	uint32_t ibody_size;
	uint8_t *ibody;
};

struct xattr_table {
	struct xpair *pairs; /* id 0 unused */
	uint32_t npairs;
	size_t pcap;
	uint32_t *phash; /* open addressing: pair ids */
	uint32_t phcap;
	struct xset *sets; /* id 0 unused */
	uint32_t nsets;
	size_t scap;
	uint32_t *shash;
	uint32_t shcap;
	struct strbuf shared;
	uint32_t nshared;
};

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

int xattr_table_new(struct xattr_table **out)
{
	struct xattr_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->npairs = t->nsets = 1;
	*out = t;
	return 0;
}

void xattr_table_free(struct xattr_table *t)
{
	if (!t)
		return;
	for (uint32_t i = 1; i < t->npairs; i++)
		free(t->pairs[i].data);
	for (uint32_t i = 1; i < t->nsets; i++) {
		free(t->sets[i].pairs);
		free(t->sets[i].ibody);
	}
	free(t->pairs);
	free(t->sets);
	free(t->phash);
	free(t->shash);
	strbuf_release(&t->shared);
	free(t);
}

/* Grow an open-addressing table of ids keyed by a stored hash. */
static int rehash(uint32_t **tab, uint32_t *cap, uint32_t count, const void *items, size_t isize)
{
	if ((uint64_t)(count + 1) * 2 < *cap)
		return 0;
	uint32_t ncap = *cap ? *cap * 2 : 1024;
	uint32_t *n = calloc(ncap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < *cap; i++) {
		uint32_t id = (*tab)[i];
		if (!id)
			continue;
		uint64_t h = *(const uint64_t *)((const char *)items + id * isize);
		uint32_t j = (uint32_t)h & (ncap - 1);
		while (n[j])
			j = (j + 1) & (ncap - 1);
		n[j] = id;
	}
	free(*tab);
	*tab = n;
	*cap = ncap;
	return 0;
}

static int intern_pair(struct xattr_table *t, unsigned int index, const char *suffix,
		       size_t slen, const void *value, size_t vlen, uint32_t *id)
{
	uint64_t h = hash_bytes(0xcbf29ce484222325ull ^ index, suffix, slen);
	h = hash_bytes(h ^ 0xff, value, vlen);
	int r = rehash(&t->phash, &t->phcap, t->npairs, t->pairs, sizeof(*t->pairs));
	if (r)
		return r;
	uint32_t j = (uint32_t)h & (t->phcap - 1);
	for (; t->phash[j]; j = (j + 1) & (t->phcap - 1)) {
		struct xpair *p = &t->pairs[t->phash[j]];
		if (p->hash == h && p->index == index && p->name_len == slen &&
		    p->value_size == vlen && !memcmp(p->data, suffix, slen) &&
		    !memcmp(p->data + slen, value, vlen)) {
			*id = t->phash[j];
			return 0;
		}
	}
	struct xpair *pairs = array_grow(t->pairs, &t->pcap, (size_t)t->npairs + 1, sizeof(*pairs), 256);
	if (!pairs)
		return -ENOMEM;
	t->pairs = pairs;
	struct xpair *p = &t->pairs[t->npairs];
	*p = (struct xpair){.hash = h, .index = (uint8_t)index, .name_len = (uint8_t)slen,
			    .value_size = (uint16_t)vlen, .shared_id = UINT32_MAX};
	p->data = malloc(slen + vlen + 1);
	if (!p->data)
		return -ENOMEM;
	memcpy(p->data, suffix, slen);
	if (vlen)
		memcpy(p->data + slen, value, vlen);
	t->phash[j] = t->npairs;
	*id = t->npairs++;
	return 0;
}

int xattr_set_add(struct xattr_table *t, struct xattr_setbuf *sb, const char *name,
		  const void *value, size_t size, struct anole_error *err, const char *path)
{
	const char *suffix;
	unsigned int index = xattr_split_name(name, &suffix);
	if (!index)
		return anole_err(err, EOPNOTSUPP,
				 "%s: xattr %s: EROFS stores only user., trusted., security. and "
				 "POSIX ACL attributes",
				 path, name);
	size_t slen = strlen(suffix);
	if (slen > 255)
		return anole_err(err, ENAMETOOLONG, "%s: xattr %s: name longer than 255 bytes",
				 path, name);
	if (size > UINT16_MAX)
		return anole_err(err, E2BIG,
				 "%s: xattr %s: value of %zu bytes exceeds the EROFS limit of 65535",
				 path, name, size);
	uint32_t id;
	int r = intern_pair(t, index, suffix, slen, value, size, &id);
	if (r)
		return anole_err(err, -r, "out of memory");
	uint32_t *pairs = array_grow(sb->pairs, &sb->cap, (size_t)sb->n + 1, sizeof(*pairs), 8);
	if (!pairs)
		return anole_err(err, ENOMEM, "out of memory");
	sb->pairs = pairs;
	sb->pairs[sb->n++] = id;
	return 0;
}

int xattr_set_foreach(struct xattr_table *t, uint32_t set_id,
		      int (*fn)(void *ctx, const char *name, const void *value, size_t size),
		      void *ctx)
{
	if (!set_id)
		return 0;
	const struct xset *s = &t->sets[set_id];
	for (uint32_t i = 0; i < s->n; i++) {
		const struct xpair *p = &t->pairs[s->pairs[i]];
		char name[300];
		snprintf(name, sizeof(name), "%s%.*s", xattr_prefix(p->index), p->name_len,
			 p->data);
		int r = fn(ctx, name, p->data + p->name_len, p->value_size);
		if (r)
			return r;
	}
	return 0;
}

int xattr_setbuf_load(struct xattr_table *t, struct xattr_setbuf *sb, uint32_t set_id)
{
	sb->n = 0;
	if (!set_id)
		return 0;
	const struct xset *s = &t->sets[set_id];
	if (sb->cap < s->n) {
		uint32_t *n = realloc(sb->pairs, s->n * sizeof(*n));
		if (!n)
			return -ENOMEM;
		sb->pairs = n;
		sb->cap = s->n;
	}
	memcpy(sb->pairs, s->pairs, s->n * sizeof(*sb->pairs));
	sb->n = s->n;
	return 0;
}

static int cmp_pair(const void *a, const void *b, void *arg)
{
	const struct xattr_table *t = arg;
	const struct xpair *x = &t->pairs[*(const uint32_t *)a];
	const struct xpair *y = &t->pairs[*(const uint32_t *)b];
	if (x->index != y->index)
		return x->index < y->index ? -1 : 1;
	int c = memcmp(x->data, y->data, MIN(x->name_len, y->name_len));
	if (c)
		return c;
	return (int)x->name_len - (int)y->name_len;
}

int xattr_set_intern(struct xattr_table *t, struct xattr_setbuf *sb, uint32_t *set_id)
{
	*set_id = 0;
	if (!sb->n)
		return 0;
	/* Order does not depend on the source filesystem's listxattr order. */
	qsort_r(sb->pairs, sb->n, sizeof(*sb->pairs), cmp_pair, t);
	uint64_t h = hash_bytes(0x9e3779b97f4a7c15ull, sb->pairs, sb->n * sizeof(*sb->pairs));
	int r = rehash(&t->shash, &t->shcap, t->nsets, t->sets, sizeof(*t->sets));
	if (r)
		return r;
	uint32_t j = (uint32_t)h & (t->shcap - 1);
	for (; t->shash[j]; j = (j + 1) & (t->shcap - 1)) {
		struct xset *s = &t->sets[t->shash[j]];
		if (s->hash == h && s->n == sb->n &&
		    !memcmp(s->pairs, sb->pairs, sb->n * sizeof(*sb->pairs))) {
			*set_id = t->shash[j];
			sb->n = 0;
			return 0;
		}
	}
	struct xset *sets = array_grow(t->sets, &t->scap, (size_t)t->nsets + 1, sizeof(*sets), 64);
	if (!sets)
		return -ENOMEM;
	t->sets = sets;
	struct xset *s = &t->sets[t->nsets];
	*s = (struct xset){.hash = h, .n = sb->n};
	s->pairs = calloc(MAX(sb->n, 1), sizeof(*sb->pairs));
	if (!s->pairs)
		return -ENOMEM;
	memcpy(s->pairs, sb->pairs, sb->n * sizeof(*sb->pairs));
	t->shash[j] = t->nsets;
	*set_id = t->nsets++;
	sb->n = 0;
	return 0;
}

void xattr_setbuf_release(struct xattr_setbuf *sb)
{
	free(sb->pairs);
	*sb = (struct xattr_setbuf){0};
}

static uint32_t pair_entry_size(const struct xpair *p)
{
	return erofs_xattr_entry_size(p->name_len, p->value_size);
}

uint32_t xattr_set_max_ibody(struct xattr_table *t, uint32_t set_id)
{
	if (!set_id)
		return 0;
	const struct xset *s = &t->sets[set_id];
	uint32_t size = sizeof(struct erofs_xattr_ibody_header);
	for (uint32_t i = 0; i < s->n; i++)
		size += pair_entry_size(&t->pairs[s->pairs[i]]);
	return size;
}

void xattr_set_use(struct xattr_table *t, uint32_t set_id)
{
	if (set_id)
		t->sets[set_id].users++;
}

static void put_entry(struct strbuf *sb, const struct xpair *p)
{
	struct erofs_xattr_entry e = {
		.e_name_len = p->name_len,
		.e_name_index = p->index,
		.e_value_size = p->value_size,
	};
	static const char zeros[4];
	strbuf_add(sb, &e, sizeof(e));
	strbuf_add(sb, p->data, (size_t)p->name_len + p->value_size);
	size_t pad = pair_entry_size(p) - sizeof(e) - p->name_len - p->value_size;
	strbuf_add(sb, zeros, pad);
}

int xattr_table_finalize(struct xattr_table *t)
{
	/* A pair used by two or more inodes goes to the shared area (once),
	 * each user keeping a 4-byte id instead of the whole entry. Ids follow
	 * first use, so the layout is deterministic. */
	for (uint32_t s = 1; s < t->nsets; s++)
		for (uint32_t i = 0; i < t->sets[s].n; i++)
			t->pairs[t->sets[s].pairs[i]].refs += t->sets[s].users;

	for (uint32_t s = 1; s < t->nsets; s++) {
		struct xset *set = &t->sets[s];
		if (!set->users)
			continue;
		struct strbuf body = {0}, inl = {0};
		struct erofs_xattr_ibody_header h = {0};
		uint32_t ids[255];
		unsigned nids = 0;

		for (uint32_t i = 0; i < set->n; i++) {
			struct xpair *p = &t->pairs[set->pairs[i]];
			if (p->refs >= 2 && nids < ARRAY_SIZE(ids)) {
				if (p->shared_id == UINT32_MAX) {
					p->shared_id = (uint32_t)(t->shared.len / 4);
					put_entry(&t->shared, p);
					t->nshared++;
				}
				ids[nids++] = p->shared_id;
			} else {
				put_entry(&inl, p);
			}
		}
		h.h_shared_count = (uint8_t)nids;
		strbuf_add(&body, &h, sizeof(h));
		strbuf_add(&body, ids, nids * sizeof(ids[0]));
		strbuf_add(&body, inl.buf, inl.len);
		strbuf_release(&inl);
		if (!body.buf)
			return -ENOMEM;
		set->ibody = (uint8_t *)body.buf;
		set->ibody_size = (uint32_t)body.len;
	}
	if (t->shared.len && !t->shared.buf)
		return -ENOMEM;
	return 0;
}

uint32_t xattr_shared_size(struct xattr_table *t)
{
	return (uint32_t)t->shared.len;
}
const void *xattr_shared_area(struct xattr_table *t)
{
	return t->shared.buf;
}
uint32_t xattr_shared_count(struct xattr_table *t)
{
	return t->nshared;
}

const void *xattr_set_ibody(struct xattr_table *t, uint32_t set_id, uint32_t *size)
{
	if (!set_id) {
		*size = 0;
		return NULL;
	}
	*size = t->sets[set_id].ibody_size;
	return t->sets[set_id].ibody;
}
