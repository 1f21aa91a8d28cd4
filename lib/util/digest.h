/* SPDX-License-Identifier: Apache-2.0 */
/* SHA-256 (OpenSSL) and a table from digests to small records, for
 * deduplication: a strong hash, so equal digests mean equal bytes even
 * for hostile inputs. */
#ifndef ANOLE_DIGEST_H
#define ANOLE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct digest {
	uint8_t b[32];
};

void sha256(const void *data, size_t len, struct digest *out);

/* Incremental SHA-256, for streams. */
struct sha256_stream;
struct sha256_stream *sha256_stream_new(void);
void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len);
void sha256_stream_final(struct sha256_stream *s, struct digest *out);
void sha256_stream_free(struct sha256_stream *s);
/* SHA-256 of @len bytes of @fd from @off; -errno (-ENODATA: shorter). */
int sha256_fd(int fd, uint64_t off, uint64_t len, struct digest *out);
/* Does @path (no symlink followed) hold @size bytes with digest @digest?
 * 1 yes, 0 no (other bytes, size or type), -errno (-ENOENT: absent). */
int digest_file_check(const char *path, const char *digest, uint64_t size);

/* "sha256:<64 lowercase hex>" <-> bytes. Parsing refuses anything else. */
#define DIGEST_STR_LEN (7 + 64)
int digest_parse(const char *s, struct digest *out);
void digest_format(const struct digest *d, char out[static DIGEST_STR_LEN + 1]);

/* Store @len bytes as DIR/HEX (HEX = their SHA-256), atomically; an equal
 * file already there is kept. *out gets the digest. 0 or -errno. */
int cas_put(const char *dir, const void *data, size_t len, struct digest *out);

struct digest_map;
int digest_map_new(struct digest_map **m);
void digest_map_free(struct digest_map *m);
/* Look @d up; when absent, insert it with @value. Returns true when it was
 * present, with *value set to the stored one. -ENOMEM on failure. */
int digest_map_get_or_put(struct digest_map *m, const struct digest *d, uint64_t *value);
/* Call @fn for every entry, in no particular order; a non-zero return
 * stops the walk and is passed back. */
int digest_map_foreach(const struct digest_map *m,
		       int (*fn)(void *ctx, const struct digest *d, uint64_t value), void *ctx);
size_t digest_map_count(const struct digest_map *m);

#endif
