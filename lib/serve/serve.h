/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lazy mount service. Two processes:
 *
 * - the holder (`anole daemon`) owns the fanotify group, reads its events
 *   and answers them. It keeps every event until the worker says how to
 *   answer, and the write descriptors of every cache file. It does no I/O
 *   beyond that, so it does not crash on bad data or a bad network.
 * - the worker, forked by the holder, does everything else: the control
 *   socket, mounts, fetching, verification, the cache. When it dies the
 *   holder forks a new one, which inherits the group, the descriptors and
 *   the events still unanswered; readers wait meanwhile (never zeros: the
 *   marks stay, because the group stays).
 */
#ifndef ANOLE_SERVE_H
#define ANOLE_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "anole/anole.h"

/* holder <-> worker messages (SOCK_SEQPACKET, one per packet) */
enum hmsg_type {
	HMSG_EVENT = 1, /* holder: a reader waits for [off, off+count) of file dev:ino */
	HMSG_ANSWER,    /* worker: answer event id with response */
	HMSG_KEEP,      /* worker: keep this cache file's descriptor (SCM_RIGHTS) */
	HMSG_DROP,      /* worker: close the kept descriptor of tag */
	HMSG_QUIT,      /* worker: nothing is mounted; exit with me */
};

struct hmsg {
	uint32_t type;
	uint32_t response;
	int32_t evfd; /* events: the holder's descriptor of the event */
	uint32_t pad;
	uint64_t id;
	uint64_t dev, ino, off, count;
	char tag[80];
};

/* What a new worker inherits from the holder (valid in the forked child). */
struct kept_fd {
	char tag[80];
	int fd;
};
struct pending_event {
	struct hmsg ev;
	int fd;    /* the event's descriptor: its number answers the event */
	bool sent; /* the current worker has it (or inherited it) */
};
struct holder_state {
	int group; /* the fanotify group; -1: none (FUSE only) */
	char no_group_why[160];
	int sock;  /* to the worker */
	struct kept_fd *kept;
	size_t nkept;
	struct pending_event *pending;
	size_t npending;
};

/* Read one batch of events from fanotify group @group; @fn gets each
 * pre-content event (type, dev, ino, off, count and evfd filled in; id
 * left to it) and owns its descriptor; other events are allowed at once. */
void fan_read_events(int group, void (*fn)(void *ctx, struct hmsg *ev), void *ctx);
void fan_answer(int group, int evfd, uint32_t response);

struct serve_paths {
	char runtime[512]; /* $ANOLE_RUNTIME_DIR or /run/anole */
	char cache[512];   /* $ANOLE_CACHE_DIR or /var/lib/anole/cache */
};
void serve_paths_init(struct serve_paths *p);
/* dirs.c: @dir (made 0700 with its parents when @create) must be ours
 * alone: owned by us, written by nobody else, below parents only we or
 * root change. A group- or world-readable one is made private. */
int serve_dir_check(const char *dir, bool create, struct anole_error *err);
int serve_paths_check(const struct serve_paths *p, bool create, struct anole_error *err);
/* open(@path, @flags) in one of them: never through a symlink, and only
 * a regular file of ours (O_CLOEXEC added). */
int serve_open_own(const char *path, int flags, mode_t mode, struct anole_error *err);

/* anole daemon: runs the holder; returns when the service ends. */
int serve_daemon(struct anole_error *err);
/* The worker's life; never returns. */
void serve_worker(const struct holder_state *h) __attribute__((noreturn));

/* flock(@how) on CACHE/.lock: the daemon holds it shared while it sets
 * up a mount, cache gc exclusive. Returns the descriptor or -errno. */
int serve_cache_lock(const char *cache, int how);

/* Send one JSON request to the daemon (started when @start and not
 * running) and return its JSON reply (malloc'd). */
int serve_request(const char *request, bool start, char **reply, struct anole_error *err);

#endif
