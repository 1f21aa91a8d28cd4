/* SPDX-License-Identifier: Apache-2.0 */
/* Format helpers: CRC32C, xattr sizes and name prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_known_vector),
		cmocka_unit_test(xattr_entry_sizes),
		cmocka_unit_test(xattr_prefixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
