/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon's paths (paths.h): built to their length, never cut. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/paths.h"
#include "util/util.h"

char *serve_path(const char *dir, const char *name)
{
	char *s;
	return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
}

/* Each member of struct serve_files: under which root, what name. */
#define FILES(X)                                                                                   \
	X(sock, runtime, "daemon.sock")                                                            \
	X(daemon_pid, runtime, "daemon.pid")                                                       \
	X(holder_pid, runtime, "holder.pid")                                                       \
	X(keeper_pid, runtime, "keeper.pid")                                                       \
	X(log, runtime, "daemon.log")                                                              \
	X(metrics, runtime, "metrics.prom")                                                        \
	X(mounts, runtime, "mounts.json")                                                          \
	X(creds, runtime, "credentials.json")                                                      \
	X(verified, runtime, "verified")                                                           \
	X(cache_lock, cache, ".lock")                                                              \
	X(blobs, cache, "blobs/sha256")                                                            \
	X(partial, cache, "partial")

void serve_files_release(struct serve_files *f)
{
#define RELEASE(member, root, name) free(f->member);
	FILES(RELEASE)
#undef RELEASE
	*f = (struct serve_files){0};
}

int serve_files_init(struct serve_files *f, const struct serve_paths *p, struct anole_error *err)
{
	bool ok = true;
#define BUILD(member, root, name) ok &= (f->member = serve_path(p->root, name)) != NULL;
	FILES(BUILD)
#undef BUILD
	if (ok)
		return 0;
	serve_files_release(f);
	return anole_err(err, ENOMEM, "out of memory");
}

void blob_paths_release(struct blob_paths *bp)
{
	free(bp->partial);
	free(bp->map);
	free(bp->complete);
	*bp = (struct blob_paths){0};
}

int blob_paths_init(struct blob_paths *bp, const char *cache, const char *digest)
{
	const char *hex = strncmp(digest, "sha256:", 7) ? digest : digest + 7;
	*bp = (struct blob_paths){0};
	if (asprintf(&bp->partial, "%s/partial/%s", cache, hex) < 0)
		bp->partial = NULL;
	if (asprintf(&bp->complete, "%s/blobs/sha256/%s", cache, hex) < 0)
		bp->complete = NULL;
	bp->map = bp->partial ? serve_map_path(bp->partial) : NULL;
	if (bp->partial && bp->map && bp->complete)
		return 0;
	blob_paths_release(bp);
	return -ENOMEM;
}

char *serve_map_path(const char *partial)
{
	char *s;
	return asprintf(&s, "%s.ranges", partial) < 0 ? NULL : s;
}

int serve_socket_addr(const char *path, struct sockaddr_un *sa, struct anole_error *err)
{
	size_t len = strlen(path);
	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	if (len >= sizeof(sa->sun_path))
		return anole_err(err, ENAMETOOLONG,
				 "%s: %zu bytes, longer than the %zu a Unix socket's path may be; "
				 "set ANOLE_RUNTIME_DIR to a shorter directory",
				 path, len, sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}
