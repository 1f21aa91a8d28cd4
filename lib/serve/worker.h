/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's state, shared by its threads under wk->lock. */
#ifndef ANOLE_WORKER_H
#define ANOLE_WORKER_H

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>

#include "erofs/blobmeta.h"
#include "lazy/hints.h"
#include "lazy/store.h"
#include <jansson.h>
#include "serve/blobcache.h"
#include "serve/counters.h"
#include "serve/mounttab.h"
#include "serve/sched.h"
#include "serve/paths.h"
#include "serve/serve.h"
#include "util/util.h"

struct lmount {
	struct worker *wk; /* the worker serving it */
	char *mountpoint, *ref, *meta_path;
	char manifest[72];
	int tls_verify;
	/* the registry credentials its client sent: its fetches use these
	 * alone (never the daemon's environment); kept in memory and, for a
	 * worker restart, in RUNTIME/credentials.json (0600), nowhere else */
	struct registry_creds creds;
	bool restored;
	bool fuse;          /* served by fusefs, not the kernel's EROFS */
	struct fusefs *fs;
	struct blob **devblobs; /* blobs in device table order */
	size_t ndevs;
	/* recording: ranges in first-read order, as (blob index, range) */
	bool record;
	uint64_t (*trace)[2];
	size_t ntrace, trace_cap;
	uint8_t **seen; /* per blob, per range */
	size_t nblobs;
	struct anole_lazy_blob *lblobs;
	struct blob **blobs;
	struct load_hints *hints; /* or NULL: the image has none */
	/* a local image file served through FUSE: no blobs, its own devices */
	bool local;
	char **devpaths;
	size_t ndevpaths;
};

/* a thread of ours waiting (the FUSE path) rather than a kernel event */
struct sync_wait {
	pthread_cond_t cond;
	bool done, ok;
};

struct waiter {
	struct waiter *next;
	struct sync_wait *sw; /* or NULL: answer event id */
	uint64_t id;
	struct blob *b;
	uint64_t first, last;
	double since; /* now_seconds() when it began to wait */
};

struct worker {
	pthread_mutex_t lock;
	pthread_cond_t jobs_cond;
	pthread_mutex_t send_lock;
	struct serve_paths paths;
	struct serve_files files; /* paths.h: where its files are */
	unsigned ops;      /* control requests under way */
	unsigned jobs_running; /* fetches taken and not yet persisted */
	int group, holder; /* group -1: no kernel path (FUSE only) */
	char no_kernel_why[160];
	struct holder_state inherited;
	time_t started;
	struct blob *blobs;
	struct mount_table mtab;
	struct waiter *waiters;
	struct job_queues q; /* fetch jobs (sched.h) */
	struct worker_counters count;
	uint64_t prefetch_rate; /* bytes per second, 0 = unlimited */
	/* events not answered yet, with the number of their descriptor: if
	 * the holder dies, the worker answers them on the group itself */
	struct pend {
		uint64_t id;
		int evfd;
		bool close_it; /* ours to close once answered */
	} *pend;
	size_t npend, pend_cap;
	bool direct; /* the holder is gone: we read and answer events */
	struct blob **lingering; /* partial blobs of mounts gone behind our back */
	size_t nlingering;
	/* files of the runtime directory, rendered under wk->lock and written
	 * after it (lock order: wk->lock, then files_lock): one writer at a
	 * time, never older content over newer */
	pthread_mutex_t files_lock;
	struct {
		char *mounts, *creds; /* mounts.json, credentials.json (NULL: none) */
		bool dirty;           /* to be written */
		uint64_t seq, written; /* tables made, the newest written */
	} saved;
	uint64_t metrics_seq, metrics_written; /* metrics.prom rendered, written */
	int ctl_fd;          /* the control socket, -1 until it listens */
	uint64_t direct_ids; /* ids of events read here, once the holder is gone */
};

void wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* cache.c: hash each range the ranges map @map_fd says is present in
 * partial file @fd against table @t, and clear the map's byte of each
 * that differs (it is fetched again). How many differed, or -errno. */
int cache_check_ranges(int fd, int map_fd, const struct digest_table *t);
/* holderlink.c: the link to the fanotify holder */
void answer_event(struct worker *wk, uint64_t id, bool ok);
void holder_send(struct worker *wk, const struct hmsg *m, int fd);
void holder_drop(struct worker *wk, const char *tag);
int holder_link_start(struct worker *wk, const struct holder_state *h);

/* fetch.c, all with wk->lock held but start_fetchers */
void wait_for(struct worker *wk, struct blob *b, uint64_t id, uint64_t off, uint64_t len);
/* Without wk->lock: return once [off, off+len) of @b is verified in the
 * cache (0) or could not be fetched (-EIO). */
int fetch_wait(struct worker *wk, struct blob *b, uint64_t off, uint64_t len);
void prefetch_blob(struct worker *wk, struct blob *b);
/* A recorded list ({"blobs":[...],"ranges":[[i,r]...]}), as demand
 * fetches in its order. */
void prefetch_list(struct worker *wk, struct lmount *m, struct json_t *list);
/* A read of [off, off+len) of @b: if it begins a program of a mounted
 * image, queue what the loader will read to start it (wk->lock held). */
void hints_on_read(struct worker *wk, struct blob *b, uint64_t off, uint64_t len);
/* The same for mount @m alone (one not yet listed in the mount table, too);
 * returns how many spans it queued. */
size_t mount_hints_on_read(struct worker *wk, struct lmount *m, struct blob *b, uint64_t off,
			   uint64_t len);
/* A recording mount's reader needs [off, off+len) of blob @b. */
void trace_note(struct lmount *m, struct blob *b, uint64_t off, uint64_t len);
void cancel_jobs(struct worker *wk, struct blob *b);
int start_fetchers(struct worker *wk);

/* control.c */
/* *config: the image's config JSON (the caller frees it), also on failure.
 * @exec: what `anole run` will start (a path or a name; "": none given,
 * the image's entrypoint), or NULL for a plain mount. @hints: fetch what
 * the loader reads to start a program when it starts (ELF load hints). */
int op_mount(struct worker *wk, const char *ref, const char *mnt, int tls_verify,
	     const struct registry_creds *creds, const char *options, const char *prefetch,
	     bool fuse, bool record, const char *exec, bool hints, char *notice, size_t notice_size,
	     char **config, struct anole_error *err);
/* The ranges a recording mount's readers needed, in order (JSON). */
struct json_t *op_trace(struct worker *wk, const char *mnt, struct anole_error *err);
/* A local image file through FUSE (`anole mount --fuse IMAGE`), its
 * devices the files @devices names in device table order (or beside it). */
int op_mount_image(struct worker *wk, const char *image, const char *mnt, json_t *devices,
		   const char *options, struct anole_error *err);
int op_umount(struct worker *wk, const char *mnt, bool *idle, struct anole_error *err);
void control_loop(struct worker *wk, int fd) __attribute__((noreturn));
/* wk->lock held (dropped a while for FUSE mounts): let go of mounts
 * unmounted behind our back; their partial blobs linger marked. */
void prune_mounts(struct worker *wk);
void release_lingering(struct worker *wk);
/* mountsave.c. wk->lock held: the mount table changed; render
 * mounts.json and credentials.json for mounts_flush. */
void save_mounts(struct worker *wk);
/* Without wk->lock: write mounts.json and credentials.json if a change
 * of the mount table (under the lock) left them to write. */
void mounts_flush(struct worker *wk);
void mounts_flush_locked(struct worker *wk); /* the same, wk->lock held */

#endif
