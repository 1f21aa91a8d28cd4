/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the daemon's files are: every path of the runtime directory and
 * of the blob cache is built here, allocated to its length, so no caller
 * cuts a long one short. The two roots come from serve_paths_init().
 *
 *   RUNTIME/daemon.sock        the control socket (sun_path: 107 bytes at most)
 *   RUNTIME/daemon.pid, holder.pid (the daemon's locks), keeper.pid, daemon.log,
 *           metrics.prom, mounts.json, credentials.json, verified
 *   CACHE/.lock                gc exclusive, mount set-up shared
 *   CACHE/blobs/sha256/HEX     complete blobs
 *   CACHE/partial/HEX          partial blobs, HEX.ranges their ranges maps
 */
#ifndef ANOLE_SERVE_PATHS_H
#define ANOLE_SERVE_PATHS_H

#include <sys/socket.h>
#include <sys/un.h>

#include "serve/serve.h"

/* The files of a runtime directory and a cache, each malloc'd. */
struct serve_files {
	char *sock, *daemon_pid, *holder_pid, *keeper_pid, *log, *metrics, *mounts, *creds,
		*verified;
	char *cache_lock, *blobs, *partial; /* CACHE/.lock, blobs/sha256, partial */
};
/* 0, or -ENOMEM (said in @err) with nothing left to release. */
int serve_files_init(struct serve_files *f, const struct serve_paths *p, struct anole_error *err);
void serve_files_release(struct serve_files *f);
#define _cleanup_serve_files_ __attribute__((cleanup(serve_files_release)))

/* @dir/@name, malloc'd; NULL when out of memory. */
char *serve_path(const char *dir, const char *name);

/* The three files of blob @digest ("sha256:HEX") in @cache. */
struct blob_paths {
	char *partial, *map, *complete;
};
/* 0, or -ENOMEM with nothing left to release. */
int blob_paths_init(struct blob_paths *bp, const char *cache, const char *digest);
void blob_paths_release(struct blob_paths *bp);
#define _cleanup_blob_paths_ __attribute__((cleanup(blob_paths_release)))
/* The ranges map of partial file @partial (PARTIAL.ranges), malloc'd. */
char *serve_map_path(const char *partial);

/* The address of socket @path; -ENAMETOOLONG (said in @err) when it
 * does not fit a Unix socket's 108-byte sun_path. */
int serve_socket_addr(const char *path, struct sockaddr_un *sa, struct anole_error *err);

/* The longest path a request may name (a mount point, an image): what
 * the kernel takes in one system call. */
#define SERVE_PATH_MAX 4096

#endif
