/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lazy mount service. Three processes, each in a session of its own:
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
 * - the keeper (keeper.c), forked by the holder, holds the group and a
 *   copy of the kept descriptors and does nothing else until the holder
 *   dies: then it stops the worker, fails the reads the dead holder had
 *   taken (EIO) and starts a new holder, which starts a new worker. A
 *   dead keeper is forked again by the holder; a worker whose holder and
 *   keeper both died starts a keeper itself. Only when all three die at
 *   once does the group close (docs/SECURITY.md).
 *
 * One process at a time reads events (the reader lock): the kernel
 * matches answers by descriptor number, so a new reader first fails
 * every number a dead one may have used (serve_deny_all).
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
	HMSG_QUIT,      /* worker: nothing is mounted; exit with me (holder: to the keeper) */
	HMSG_GO,        /* holder: the keeper knows you, start (a worker waits for it) */
	HMSG_WORKER,    /* holder to keeper: the worker is pid .id */
	HMSG_READY,     /* worker: I listen (the starting client may connect) */
	HMSG_KEEP_RESET, /* holder to keeper: forget the kept descriptors, a full list follows */
	/* a worker whose holder and keeper died hands a new keeper (exec'd
	 * `anole daemon`, ANOLE_DAEMON_ADOPT) what it holds */
	HMSG_ADOPT_GROUP, /* the group (SCM_RIGHTS) */
	HMSG_ADOPT_LOCK,  /* the instance lock's descriptor */
	HMSG_ADOPT_KEEPER, /* a descriptor holding the keeper lock */
	HMSG_ADOPT_DONE,   /* .id: the worker's pid; the keeper answers HMSG_READY */
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
	int keeper; /* holder: to the keeper; -1: none */
	int lock;   /* holder.pid, instance lock held (one open shared by all) */
	int reader; /* holder: its own open of holder.pid, holding the reader lock */
	int status; /* the starting client's status pipe, until a worker listens */
	pid_t worker_pid;
	bool fresh; /* a new group: no reader before us */
	bool keeper_behind; /* holder: a message to the keeper could not be sent */
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

/* keeper.c: the third holder of the group, and what the three share. */
/* Locks on bytes of holder.pid, each taken on an open file description
 * of its own (OFD locks: shared across fork, released when the last
 * descriptor of that open closes). */
enum { DLOCK_INSTANCE = 0, DLOCK_KEEPER = 1, DLOCK_READER = 2 };
/* A new open of the lock file behind @lockfd with byte @which locked;
 * @wait: until it is free, else -EAGAIN when taken. */
int daemon_lock(int lockfd, int which, bool wait);
/* Fail (EIO) every event any earlier reader of @group took and did not
 * answer: descriptor numbers are all the kernel matches answers by, and
 * every process of the daemon keeps them below its RLIMIT_NOFILE, which
 * the daemon lowers to DENY_ALL_FDS at most. */
#define DENY_ALL_FDS 65536
void serve_deny_all(int group);
/* Session, OOM score, signals and name of a daemon process. */
void daemon_process_setup(const char *name, int oom_score_adj);
void daemon_log(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int hmsg_send(int sock, const struct hmsg *m, int fd, int flags);
/* One message; its descriptor (or -1) in *fd. 0 at end of file, -errno. */
ssize_t hmsg_recv(int sock, struct hmsg *m, int *fd, int flags);
void kept_put(struct holder_state *h, const char *tag, int fd);
void kept_drop(struct holder_state *h, const char *tag);
/* The keeper; @ofd: the keeper lock if held already (-1: wait for it),
 * @sock: to the holder (-1: none, start one). Never returns. */
void keeper_main(struct holder_state *h, int ofd, int sock, pid_t holder, pid_t worker)
	__attribute__((noreturn));
/* An exec'd `anole daemon` with ANOLE_DAEMON_ADOPT=FD: the keeper a
 * worker starts when its holder and keeper died. Returns only on error. */
int keeper_adopt(int sock, struct anole_error *err);
/* holder.c: a holder's life, from a keeper or `anole daemon`; returns
 * when the service ends. */
int holder_run(struct holder_state *h, struct anole_error *err);

struct serve_paths {
	char runtime[512]; /* $ANOLE_RUNTIME_DIR or /run/anole */
	char cache[512];   /* $ANOLE_CACHE_DIR or /var/lib/anole/cache */
	bool cut;          /* one of them did not fit: serve_paths_whole refuses */
};
void serve_paths_init(struct serve_paths *p);
/* -ENAMETOOLONG (said in @err) when a directory was cut; also part of
 * serve_paths_check. */
int serve_paths_whole(const struct serve_paths *p, struct anole_error *err);
/* dirs.c: @dir (made 0700 with its parents when @create) must be ours
 * alone: owned by us, written by nobody else, below parents only we or
 * root change. A group- or world-readable one is made private. */
int serve_dir_check(const char *dir, bool create, struct anole_error *err);
int serve_paths_check(const struct serve_paths *p, bool create, struct anole_error *err);
/* open(@path, @flags) in one of them: never through a symlink, and only
 * a regular file of ours (O_CLOEXEC added). */
int serve_open_own(const char *path, int flags, mode_t mode, struct anole_error *err);
/* Exit status of a worker that cannot listen on its control socket and
 * has nothing to serve: the holder backs off, then gives up. */
#define WORKER_EXIT_NOSERVE 3

/* anole daemon: runs the holder; returns when the service ends. */
int serve_daemon(struct anole_error *err);
/* The worker's life; never returns. */
void serve_worker(const struct holder_state *h) __attribute__((noreturn));

/* flock(@how) on CACHE/.lock (@path, paths.h): the daemon holds it
 * shared while it sets up a mount, cache gc exclusive. Returns the
 * descriptor or -errno. */
int serve_cache_lock(const char *path, int how);

/* Send one JSON request to the daemon (started when @start and not
 * running) and return its JSON reply (malloc'd). */
int serve_request(const char *request, bool start, char **reply, struct anole_error *err);

/* Start the daemon as `@path daemon` (kept, not copied) instead of this
 * executable's: for programs that link libanole but are not anole. */
void serve_set_daemon_exe(const char *path);

#endif
