/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshotter's metadata: every snapshot by key, with its id (the
 * name of its directory under ROOT/snapshots), kind, parent, times and
 * labels, kept in ROOT/metadata.json and rewritten whole and atomically
 * on each change (docs/DESIGN-snapshotter.md). Functions return 0 or a
 * negative errno with @err set; the errno says which gRPC code fits
 * (ENOENT not found, EEXIST exists, EINVAL bad argument, EBUSY a
 * precondition). */
#ifndef ANOLE_SNAPSHOTTER_STORE_H
#define ANOLE_SNAPSHOTTER_STORE_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "anole/anole.h"

enum snap_kind { SNAP_VIEW = 1, SNAP_ACTIVE = 2, SNAP_COMMITTED = 3 };

struct snap_store {
	char *root;
	int rootfd;
	json_t *doc; /* {"next_id": N, "snapshots": {KEY: {...}}} */
	/* {KEY: ID} of the snapshots between snap_begin and snap_finish or
	 * snap_abort: the key is taken (a second Prepare of it is EEXIST)
	 * and Cleanup leaves the directory alone */
	json_t *pending;
	/* Calls are served concurrently: every function here but
	 * snap_store_open/close, snap_dir and snap_cleanup is called with
	 * it held (snap_lock), and a snap_info's borrowed pointers are good
	 * only while it is. Held only around in-memory work and small file
	 * writes, never around a mount or a registry. */
	pthread_mutex_t lock;
};

struct snap_info {
	const char *key, *parent; /* parent "" for none */
	enum snap_kind kind;
	uint64_t id;
	int64_t created_ns, updated_ns;
	json_t *labels; /* borrowed: an object of strings */
	/* borrowed, NULL for an ordinary snapshot: an anole lazy image's
	 * {"ref", "mountpoint"} (its base, the daemon's lazy mount at fs/)
	 * or {"ref", "upper": true} (an empty layer above it) */
	json_t *lazy;
};

int snap_store_open(struct snap_store *s, const char *root, struct anole_error *err);
void snap_lock(struct snap_store *s);
void snap_unlock(struct snap_store *s);
void snap_store_close(struct snap_store *s);

int snap_stat(struct snap_store *s, const char *key, struct snap_info *info,
	      struct anole_error *err);
/* Each snapshot in turn: @fn returns nonzero to stop (and that value is
 * returned). */
int snap_each(struct snap_store *s, int (*fn)(void *ctx, const struct snap_info *info), void *ctx);

/* A new active or view snapshot @key over the committed @parent ("" for
 * none), with its directories made. */
int snap_create(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
		json_t *labels, struct anole_error *err);
/* The same in steps, for a snapshot whose directory is filled before its
 * record is written (a lazy mount): begin checks @key and @parent and
 * makes the directories of the new @id; finish writes the record (with
 * @lazy, or NULL); abort removes the directories again. */
int snap_begin(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
	       uint64_t *id, struct anole_error *err);
int snap_finish(struct snap_store *s, uint64_t id, enum snap_kind kind, const char *key,
		const char *parent, json_t *labels, json_t *lazy, struct anole_error *err);
void snap_abort(struct snap_store *s, uint64_t id);
/* Has @key a record, or is it being made (between begin and finish)? */
bool snap_taken(struct snap_store *s, const char *key);
/* The active @key becomes the committed @name. */
int snap_commit(struct snap_store *s, const char *name, const char *key, json_t *labels,
		struct anole_error *err);
bool snap_has_children(struct snap_store *s, const char *key);
/* @key, which no snapshot may have as parent, and its directories. */
int snap_remove(struct snap_store *s, const char *key, struct anole_error *err);

/* Labels of @key from @labels: every label (no @paths, or "labels"), or
 * the ones "labels.KEY" names (absent from @labels: removed); any other
 * path is -EINVAL, as containerd refuses to change name, parent, kind or
 * creation time. */
int snap_update(struct snap_store *s, const char *key, json_t *labels, const char *const *paths,
		size_t npaths, struct anole_error *err);

/* Remove the directories ROOT/snapshots/ID that no record names (what a
 * crash between a mkdir and the record's write leaves); one whose fs is
 * a mount point (a lazy mount made before such a crash) is given to
 * @unmount first, and kept when that fails. Takes the lock itself, and
 * lets go of it for the unmounts and removals. */
int snap_cleanup(struct snap_store *s, int (*unmount)(const char *dir, struct anole_error *err),
		 struct anole_error *err);

/* The directory of snapshot @id's tree ("fs") or overlay work ("work"). */
int snap_dir(const struct snap_store *s, uint64_t id, const char *what, char *buf, size_t len);

#endif
