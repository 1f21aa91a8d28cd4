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

struct digest_map;
int digest_map_new(struct digest_map **m);
void digest_map_free(struct digest_map *m);
/* Look @d up; when absent, insert it with @value. Returns true when it was
 * present, with *value set to the stored one. -ENOMEM on failure. */
int digest_map_get_or_put(struct digest_map *m, const struct digest *d, uint64_t *value);

#endif
