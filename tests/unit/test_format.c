/* SPDX-License-Identifier: Apache-2.0 */
/* Format helpers: CRC32C, the superblock checksum's length, device id
 * masks, xattr sizes, name prefixes and the long prefix table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "anole/erofs_fs.h"
#include "erofs/xattr.h"
#include "util/util.h"

static void crc32c_known_vector(void **state)
{
	(void)state;
	/* The standard check value of CRC-32C over "123456789". */
	uint32_t crc = anole_crc32c(~0u, "123456789", 9) ^ ~0u;
	assert_int_equal(crc, 0xE3069283u);
}

static void xattr_entry_sizes(void **state)
{
	(void)state;
	assert_int_equal(erofs_xattr_entry_size(0, 0), 4);
	assert_int_equal(erofs_xattr_entry_size(1, 0), 8);
	assert_int_equal(erofs_xattr_entry_size(4, 4), 12);
	assert_int_equal(erofs_xattr_ibody_size(0), 0);
	assert_int_equal(erofs_xattr_ibody_size(1), 12);
	assert_int_equal(erofs_xattr_ibody_size(3), 20);
}

static void xattr_prefixes(void **state)
{
	(void)state;
	const char *s;
	assert_int_equal(xattr_split_name("user.foo", &s), EROFS_XATTR_INDEX_USER);
	assert_string_equal(s, "foo");
	assert_int_equal(xattr_split_name("security.selinux", &s), EROFS_XATTR_INDEX_SECURITY);
	assert_string_equal(s, "selinux");
	assert_int_equal(xattr_split_name("system.posix_acl_access", &s),
			 EROFS_XATTR_INDEX_POSIX_ACL_ACCESS);
	assert_string_equal(s, "");
	assert_int_equal(xattr_split_name("system.posix_acl_accessX", &s), 0);
	assert_int_equal(xattr_split_name("os2.foo", &s), 0);
	assert_string_equal(xattr_prefix(EROFS_XATTR_INDEX_TRUSTED), "trusted.");
	assert_null(xattr_prefix(99));
}

static void xxhash32_known_vectors(void **state)
{
	(void)state;
	/* the specification's and python-xxhash's examples: every path
	 * through the function (short, 16-byte stripes, 4-byte, byte tails) */
	assert_int_equal(xattr_xxh32("", 0, 0), 0x02CC5D05u);
	assert_int_equal(xattr_xxh32("abc", 3, 0), 0x32D153FFu);
	assert_int_equal(xattr_xxh32("Nobody inspects the spammish repetition", 39, 0),
			 0xE2293B2Fu);
	/* the name filter: bits 0..31 of a seeded hash */
	assert_true(xattr_filter_bit(EROFS_XATTR_INDEX_USER, "x", 1) < 32);
	assert_int_equal(xattr_filter_bit(1, "x", 1),
			 xattr_xxh32("x", 1, EROFS_XATTR_FILTER_SEED + 1) & 31);
}

static void superblock_checksum_length(void **state)
{
	(void)state;
	/* blocks up to 1024 bytes: the block after byte 1024, whole; larger
	 * ones: the rest of block 0 after byte 1024 (as Linux checks it) */
	assert_int_equal(erofs_sb_csum_len(512), 512);
	assert_int_equal(erofs_sb_csum_len(1024), 1024);
	assert_int_equal(erofs_sb_csum_len(2048), 1024);
	assert_int_equal(erofs_sb_csum_len(4096), 3072);
}

static void device_id_masks(void **state)
{
	(void)state;
	/* the smallest all-ones mask above the device count */
	assert_int_equal(erofs_devid_mask(0), 0);
	assert_int_equal(erofs_devid_mask(1), 1);
	assert_int_equal(erofs_devid_mask(2), 3);
	assert_int_equal(erofs_devid_mask(3), 3);
	assert_int_equal(erofs_devid_mask(4), 7);
	assert_int_equal(erofs_devid_mask(255), 255);
	assert_int_equal(erofs_devid_mask(256), 511);
	assert_int_equal(erofs_devid_mask(65535), 65535);
	/* with one device, id 2 wraps to 0: the unified address space */
	assert_int_equal(2 & erofs_devid_mask(1), 0);
	assert_int_equal(3 & erofs_devid_mask(2), 3);
}

/* A prefix table record: 16-bit length, base index, infix; 4-aligned. */
static size_t put_prefix(uint8_t *buf, size_t at, uint16_t len, uint8_t base, const char *infix,
			 size_t infix_len)
{
	memcpy(buf + at, &len, 2);
	buf[at + 2] = base;
	memcpy(buf + at + 3, infix, infix_len);
	return (at + 2 + 1 + infix_len + 3) & ~(size_t)3;
}

static int parse(const uint8_t *buf, size_t size, unsigned int count, size_t *bad)
{
	struct xattr_lprefix out[4];
	char why[100];
	return xattr_prefixes_parse(buf, size, count, out, bad, why, sizeof(why));
}

static void long_prefix_table(void **state)
{
	(void)state;
	uint8_t buf[64] = {0};
	size_t at = put_prefix(buf, 0, 13, EROFS_XATTR_INDEX_USER, "long.prefix.", 12);
	assert_int_equal(at, 16);
	size_t end = put_prefix(buf, at, 1, EROFS_XATTR_INDEX_SECURITY, "", 0);
	assert_int_equal(end, 20);
	struct xattr_lprefix out[2];
	size_t bad = 99;
	char why[100];
	assert_int_equal(xattr_prefixes_parse(buf, end, 2, out, &bad, why, sizeof(why)), 0);
	assert_int_equal(out[0].base_index, EROFS_XATTR_INDEX_USER);
	assert_int_equal(out[0].infix_len, 12);
	assert_memory_equal(out[0].infix, "long.prefix.", 12);
	assert_int_equal(out[1].base_index, EROFS_XATTR_INDEX_SECURITY);
	assert_int_equal(out[1].infix_len, 0);
	/* the last record needs only its own bytes, not its padding */
	assert_int_equal(parse(buf, 19, 2, &bad), 0);
	/* a record past the end, or cut short */
	assert_int_equal(parse(buf, 18, 2, &bad), -EFSCORRUPTED);
	assert_int_equal(bad, 16);
	assert_int_equal(parse(buf, end, 3, &bad), -EFSCORRUPTED);
	assert_int_equal(bad, 20);
	assert_int_equal(parse(buf, 10, 1, &bad), -EFSCORRUPTED);
	assert_int_equal(bad, 0);
}

static void long_prefix_table_rejects(void **state)
{
	(void)state;
	uint8_t buf[600] = {0};
	char big[300];
	memset(big, 'x', sizeof(big));
	size_t bad;
	/* length 0 (Linux reads 65536), and longer than a name */
	put_prefix(buf, 0, 0, EROFS_XATTR_INDEX_USER, "", 0);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), -EFSCORRUPTED);
	put_prefix(buf, 0, 257, EROFS_XATTR_INDEX_USER, big, 256);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), -EFSCORRUPTED);
	put_prefix(buf, 0, 256, EROFS_XATTR_INDEX_USER, big, 255);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), 0);
	/* bases whose names are whole (ACLs); hidden ones (0, or unknown to
	 * Linux: their entries are not listed) are fine */
	put_prefix(buf, 0, 2, EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, "x", 1);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), -EFSCORRUPTED);
	put_prefix(buf, 0, 2, EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, "x", 1);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), -EFSCORRUPTED);
	put_prefix(buf, 0, 21, 0, "erofs.fingerprint.v1", 20);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), 0);
	put_prefix(buf, 0, 2, 0x81, "x", 1);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), 0);
	/* a NUL inside the infix */
	put_prefix(buf, 0, 4, EROFS_XATTR_INDEX_TRUSTED, "a\0b", 3);
	assert_int_equal(parse(buf, sizeof(buf), 1, &bad), -EFSCORRUPTED);
	assert_int_equal(bad, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_known_vector),
		cmocka_unit_test(xattr_entry_sizes),
		cmocka_unit_test(xattr_prefixes),
		cmocka_unit_test(xxhash32_known_vectors),
		cmocka_unit_test(superblock_checksum_length),
		cmocka_unit_test(device_id_masks),
		cmocka_unit_test(long_prefix_table),
		cmocka_unit_test(long_prefix_table_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
