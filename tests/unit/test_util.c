/* SPDX-License-Identifier: Apache-2.0 */
/* mkdir_parents (mkdir -p): new chains, existing ones, modes, and what
 * is in the way, checked against stat(2); array_grow's capacities. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/safefs.h"
#include "util/util.h"

struct fx {
	char dir[64];
	char path[PATH_MAX];
};

static const char *at(struct fx *f, const char *rel)
{
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, rel);
	return f->path;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/anole-test-util.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	assert_int_equal(rm_tree_at(AT_FDCWD, f->dir), 0);
	free(f);
	return 0;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	return st.st_mode & 07777;
}

static void makes_chain(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(0);
	assert_int_equal(mkdir_parents(at(f, "a/b/c"), 0700), 0);
	assert_int_equal(mode_of(at(f, "a")), 0700);
	assert_int_equal(mode_of(at(f, "a/b")), 0700);
	assert_int_equal(mode_of(at(f, "a/b/c")), 0700);
	/* again: nothing to do, and modes of existing ones stay */
	assert_int_equal(mkdir_parents(at(f, "a/b/c"), 0755), 0);
	assert_int_equal(mode_of(at(f, "a/b/c")), 0700);
	/* below an existing one, with a trailing slash and a double one */
	assert_int_equal(mkdir_parents(at(f, "a//b/d/"), 0755), 0);
	assert_int_equal(mode_of(at(f, "a/b/d")), 0755);
	umask(old);
}

static void refuses_what_is_in_the_way(void **state)
{
	struct fx *f = *state;
	FILE *fp = fopen(at(f, "file"), "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(mkdir_parents(at(f, "file"), 0755), -ENOTDIR);
	assert_int_equal(mkdir_parents(at(f, "file/x"), 0755), -ENOTDIR);
	assert_int_equal(symlink("file", at(f, "link")), 0);
	assert_int_equal(mkdir_parents(at(f, "link"), 0755), -ENOTDIR);
	/* a symlink to a directory is a directory, as for mkdir -p */
	assert_int_equal(mkdir(at(f, "d"), 0755), 0);
	assert_int_equal(symlink("d", at(f, "dlink")), 0);
	assert_int_equal(mkdir_parents(at(f, "dlink/e"), 0755), 0);
	assert_int_equal(mode_of(at(f, "d/e")) & 0700, 0700);
}

static void bad_paths(void **state)
{
	(void)state;
	assert_int_equal(mkdir_parents("", 0755), -ENOENT);
	char *long_path = malloc(PATH_MAX + 16);
	assert_non_null(long_path);
	memset(long_path, 'x', PATH_MAX + 15);
	long_path[0] = '/';
	long_path[PATH_MAX + 15] = 0;
	assert_int_equal(mkdir_parents(long_path, 0755), -ENAMETOOLONG);
	free(long_path);
	/* the root exists */
	assert_int_equal(mkdir_parents("/", 0755), 0);
}

/* Appends keep every element; capacities double from the first size, or
 * jump to what is asked; a size that cannot be allocated leaves the array
 * as it was. */
static void grows_arrays(void **state)
{
	(void)state;
	uint64_t *v = NULL;
	size_t cap = 0;
	for (size_t n = 0; n < 100; n++) {
		uint64_t *nv = array_grow(v, &cap, n + 1, sizeof(*v), 16);
		assert_non_null(nv);
		v = nv;
		v[n] = n * 7;
		assert_true(cap >= n + 1);
	}
	assert_int_equal(cap, 128);
	for (size_t n = 0; n < 100; n++)
		assert_int_equal(v[n], n * 7);
	assert_ptr_equal(array_grow(v, &cap, 128, sizeof(*v), 16), v);
	v = array_grow(v, &cap, 1000, sizeof(*v), 16);
	assert_non_null(v);
	assert_int_equal(cap, 1000);
	assert_null(array_grow(v, &cap, SIZE_MAX / 4, sizeof(*v), 16));
	assert_int_equal(cap, 1000);
	assert_int_equal(v[99], 99 * 7);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(makes_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_what_is_in_the_way, setup, teardown),
		cmocka_unit_test(bad_paths),
		cmocka_unit_test(grows_arrays),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
