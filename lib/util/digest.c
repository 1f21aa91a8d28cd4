/* SPDX-License-Identifier: Apache-2.0 */
#include "util/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

void sha256(const void *data, size_t len, struct digest *out)
{
	unsigned int n = sizeof(out->b);
	EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL);
}

struct sha256_stream *sha256_stream_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(c);
		c = NULL;
	}
	return (struct sha256_stream *)c;
}

void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len)
{
	EVP_DigestUpdate((EVP_MD_CTX *)s, data, len);
}

void sha256_stream_final(struct sha256_stream *s, struct digest *out)
{
	unsigned int n = sizeof(out->b);
	EVP_DigestFinal_ex((EVP_MD_CTX *)s, out->b, &n);
}

void sha256_stream_free(struct sha256_stream *s)
{
	EVP_MD_CTX_free((EVP_MD_CTX *)s);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int digest_parse(const char *s, struct digest *out)
{
	if (strncmp(s, "sha256:", 7) || strlen(s) != DIGEST_STR_LEN)
		return -EINVAL;
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void digest_format(const struct digest *d, char out[static DIGEST_STR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[d->b[i] >> 4];
		out[8 + 2 * i] = hex[d->b[i] & 15];
	}
	out[DIGEST_STR_LEN] = 0;
}

struct slot {
	struct digest d;
	uint64_t value;
	bool used;
};

struct digest_map {
	struct slot *s;
	size_t n, cap;
};

int digest_map_new(struct digest_map **m)
{
	*m = calloc(1, sizeof(**m));
	return *m ? 0 : -ENOMEM;
}

void digest_map_free(struct digest_map *m)
{
	if (!m)
		return;
	free(m->s);
	free(m);
}

static size_t slot_of(const struct digest *d, size_t cap)
{
	uint64_t h;
	memcpy(&h, d->b, sizeof(h));
	return (size_t)h & (cap - 1);
}

static int grow(struct digest_map *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 1024;
	struct slot *n = calloc(ncap, sizeof(*n));
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->s[i].used)
			continue;
		size_t j = slot_of(&m->s[i].d, ncap);
		while (n[j].used)
			j = (j + 1) & (ncap - 1);
		n[j] = m->s[i];
	}
	free(m->s);
	m->s = n;
	m->cap = ncap;
	return 0;
}

int digest_map_get_or_put(struct digest_map *m, const struct digest *d, uint64_t *value)
{
	if ((m->n + 1) * 2 > m->cap) {
		int r = grow(m);
		if (r < 0)
			return r;
	}
	size_t j = slot_of(d, m->cap);
	for (; m->s[j].used; j = (j + 1) & (m->cap - 1)) {
		if (!memcmp(&m->s[j].d, d, sizeof(*d))) {
			*value = m->s[j].value;
			return 1;
		}
	}
	m->s[j].used = true;
	m->s[j].d = *d;
	m->s[j].value = *value;
	m->n++;
	return 0;
}

int digest_map_foreach(const struct digest_map *m,
		       int (*fn)(void *ctx, const struct digest *d, uint64_t value), void *ctx)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->s[i].used)
			continue;
		int r = fn(ctx, &m->s[i].d, m->s[i].value);
		if (r)
			return r;
	}
	return 0;
}

size_t digest_map_count(const struct digest_map *m)
{
	return m->n;
}

int cas_put(const char *dir, const void *data, size_t len, struct digest *out)
{
	char hex[DIGEST_STR_LEN + 1];
	sha256(data, len, out);
	digest_format(out, hex);
	_cleanup_free_ char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, hex + 7) < 0)
		return -ENOMEM;
	struct stat st;
	if (!stat(path, &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len)
		return 0;
	int r = outfile_write(path, data, len);
	return r < 0 ? r : 0;
}

int sha256_fd(int fd, uint64_t off, uint64_t len, struct digest *out)
{
	struct sha256_stream *h = sha256_stream_new();
	size_t cap = (size_t)MIN(len, 1u << 20);
	char *buf = malloc(MAX(cap, 1));
	int r = h && buf ? 0 : -ENOMEM;
	while (r >= 0 && len) {
		size_t n = (size_t)MIN(len, cap);
		if ((r = pread_full(fd, buf, n, off)) >= 0) {
			sha256_stream_update(h, buf, n);
			off += n;
			len -= n;
		}
	}
	if (r >= 0)
		sha256_stream_final(h, out);
	free(buf);
	sha256_stream_free(h);
	return r;
}

int digest_file_check(const char *path, const char *digest, uint64_t size)
{
	struct digest want, got;
	if (digest_parse(digest, &want) < 0)
		return 0;
	/* (O_NONBLOCK: a FIFO in its place must not hang us) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? 0 : -errno;
	struct stat st;
	bool same = !fstat(fd, &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size &&
		    sha256_fd(fd, 0, size, &got) >= 0 && !memcmp(&got, &want, sizeof(got));
	close(fd);
	return same;
}
