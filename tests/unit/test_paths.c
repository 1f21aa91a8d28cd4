/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's paths (lib/serve/paths.h): the layout, whole at any
 * length, and the one kernel limit, a Unix socket's sun_path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/paths.h"

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void runtime_and_cache_layout(void **state)
{
	(void)state;
	setenv("ANOLE_RUNTIME_DIR", "/rt", 1);
	setenv("ANOLE_CACHE_DIR", "/var/c", 1);
	struct serve_paths p;
	serve_paths_init(&p);
	assert_string_equal(p.runtime, "/rt");
	assert_string_equal(p.cache, "/var/c");
	struct anole_error err = {0};
	_cleanup_serve_files_ struct serve_files f = {0};
	assert_int_equal(serve_files_init(&f, &p, &err), 0);
	assert_string_equal(f.sock, "/rt/daemon.sock");
	assert_string_equal(f.daemon_pid, "/rt/daemon.pid");
	assert_string_equal(f.holder_pid, "/rt/holder.pid");
	assert_string_equal(f.keeper_pid, "/rt/keeper.pid");
	assert_string_equal(f.log, "/rt/daemon.log");
	assert_string_equal(f.metrics, "/rt/metrics.prom");
	assert_string_equal(f.mounts, "/rt/mounts.json");
	assert_string_equal(f.creds, "/rt/credentials.json");
	assert_string_equal(f.verified, "/rt/verified");
	assert_string_equal(f.cache_lock, "/var/c/.lock");
	assert_string_equal(f.blobs, "/var/c/blobs/sha256");
	assert_string_equal(f.partial, "/var/c/partial");
	serve_files_release(&f);
	assert_null(f.sock);
	assert_null(f.partial);
}

static void blob_layout(void **state)
{
	(void)state;
	_cleanup_blob_paths_ struct blob_paths bp;
	assert_int_equal(blob_paths_init(&bp, "/c", "sha256:" HEX), 0);
	assert_string_equal(bp.partial, "/c/partial/" HEX);
	assert_string_equal(bp.map, "/c/partial/" HEX ".ranges");
	assert_string_equal(bp.complete, "/c/blobs/sha256/" HEX);
	blob_paths_release(&bp);
	/* the digest's hex alone names the same files */
	assert_int_equal(blob_paths_init(&bp, "/c", HEX), 0);
	assert_string_equal(bp.complete, "/c/blobs/sha256/" HEX);
	char *map = serve_map_path("/c/partial/" HEX);
	assert_string_equal(map, "/c/partial/" HEX ".ranges");
	free(map);
	char *p = serve_path("/a/b", "c");
	assert_string_equal(p, "/a/b/c");
	free(p);
}

/* A cache root far longer than the 600-byte buffers these paths once
 * went through: every path comes out whole. */
static void long_paths_whole(void **state)
{
	(void)state;
	char cache[1201];
	cache[0] = '/';
	memset(cache + 1, 'd', sizeof(cache) - 2);
	cache[sizeof(cache) - 1] = 0;
	_cleanup_blob_paths_ struct blob_paths bp;
	assert_int_equal(blob_paths_init(&bp, cache, "sha256:" HEX), 0);
	assert_int_equal(strlen(bp.map), 1200 + strlen("/partial/") + 64 + strlen(".ranges"));
	assert_memory_equal(bp.map, cache, 1200);
	assert_string_equal(bp.map + 1200, "/partial/" HEX ".ranges");
	assert_int_equal(strlen(bp.complete), 1200 + strlen("/blobs/sha256/") + 64);
}

/* sun_path is 108 bytes with its NUL: a socket path of 107 fits, 108 is
 * refused with one line that names the path and the limit. */
static void socket_path_limit(void **state)
{
	(void)state;
	struct sockaddr_un sa;
	char rt[200];
	size_t tail = strlen("/daemon.sock");
	for (size_t len = 100; len <= 110; len++) {
		memset(rt, 'r', sizeof(rt));
		rt[0] = '/';
		rt[len - tail] = 0;
		char *sock = serve_path(rt, "daemon.sock");
		assert_int_equal(strlen(sock), len);
		struct anole_error err = {0};
		int r = serve_socket_addr(sock, &sa, &err);
		if (len <= 107) {
			assert_int_equal(r, 0);
			assert_int_equal(sa.sun_family, AF_UNIX);
			assert_string_equal(sa.sun_path, sock);
		} else {
			assert_int_equal(r, -ENAMETOOLONG);
			assert_int_equal(err.code, ENAMETOOLONG);
			assert_non_null(strstr(err.msg, sock));
			assert_non_null(strstr(err.msg, "107"));
			assert_non_null(strstr(err.msg, "ANOLE_RUNTIME_DIR"));
		}
		free(sock);
	}
}

/* A root directory longer than struct serve_paths holds is refused with
 * one line, never used cut. */
static void cut_root_refused(void **state)
{
	(void)state;
	char dir[700];
	memset(dir, 'x', sizeof(dir));
	dir[0] = '/';
	dir[sizeof(dir) - 1] = 0;
	setenv("ANOLE_RUNTIME_DIR", "/rt", 1);
	setenv("ANOLE_CACHE_DIR", dir, 1);
	struct serve_paths p;
	serve_paths_init(&p);
	struct anole_error err = {0};
	assert_int_equal(serve_paths_whole(&p, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "ANOLE_CACHE_DIR"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(serve_paths_check(&p, false, &err), -ENAMETOOLONG);
	dir[511] = 0; /* the longest that fits */
	setenv("ANOLE_CACHE_DIR", dir, 1);
	serve_paths_init(&p);
	assert_int_equal(serve_paths_whole(&p, &err), 0);
	assert_string_equal(p.cache, dir);
}

/* Request fields are capped at the kernel's limit for one path. */
static void request_field_limit(void **state)
{
	(void)state;
	assert_int_equal(SERVE_PATH_MAX, PATH_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(runtime_and_cache_layout),
		cmocka_unit_test(blob_layout),
		cmocka_unit_test(long_paths_whole),
		cmocka_unit_test(socket_path_limit),
		cmocka_unit_test(cut_root_refused),
		cmocka_unit_test(request_field_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
