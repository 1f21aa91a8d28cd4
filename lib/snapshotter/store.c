// SPDX-License-Identifier: Apache-2.0
/* Snapshot metadata in one JSON file, replaced whole by rename on every
 * change: a crash leaves the old file or the new one, never a mix. The
 * order of steps makes the leftovers of a crash harmless: a snapshot's
 * directory is made before the record names it and removed after the
 * record is gone, so a crash leaves at most an unnamed directory (which
 * Cleanup may remove), never a record without its directory. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "snapshotter/store.h"
#include "util/safefs.h"
#include "util/util.h"

static const char *const kind_names[] = {[SNAP_VIEW] = "view", [SNAP_ACTIVE] = "active",
					 [SNAP_COMMITTED] = "committed"};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static json_t *snaps(struct snap_store *s)
{
	return json_object_get(s->doc, "snapshots");
}

static int store_save(struct snap_store *s, struct anole_error *err)
{
	char path[4096];
	char *text = json_dumps(s->doc, JSON_COMPACT | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	snprintf(path, sizeof(path), "%s/metadata.json", s->root);
	rc = outfile_write(path, text, strlen(text));
	free(text);
	if (rc < 0)
		return anole_err(err, -rc, "snapshotter: writing %s: %s", path, strerror(-rc));
	return 0;
}

int snap_store_open(struct snap_store *s, const char *root, struct anole_error *err)
{
	char path[4096];
	json_error_t jerr;

	memset(s, 0, sizeof(*s));
	s->rootfd = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->pending = json_object();
	if (!s->pending)
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	if (snprintf(path, sizeof(path), "%s/snapshots", root) >= (int)sizeof(path))
		return anole_err(err, ENAMETOOLONG, "snapshotter: root path too long");
	if (mkdir_parents(path, 0700) < 0)
		return anole_err(err, errno ? errno : EIO, "snapshotter: cannot make %s", path);
	s->root = strdup(root);
	s->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!s->root || s->rootfd < 0) {
		snap_store_close(s);
		return anole_err(err, s->root ? errno : ENOMEM, "snapshotter: cannot open %s", root);
	}
	snprintf(path, sizeof(path), "%s/metadata.json", root);
	if (access(path, F_OK) == 0) {
		s->doc = json_load_file(path, 0, &jerr);
		if (!s->doc || !json_is_object(snaps(s)) ||
		    !json_is_integer(json_object_get(s->doc, "next_id"))) {
			snap_store_close(s);
			return anole_err(err, EFSCORRUPTED, "snapshotter: %s is not snapshot metadata",
					 path);
		}
		return 0;
	}
	s->doc = json_pack("{s:I, s:{}}", "next_id", (json_int_t)1, "snapshots");
	if (!s->doc) {
		snap_store_close(s);
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	}
	return store_save(s, err);
}

void snap_store_close(struct snap_store *s)
{
	json_decref(s->pending);
	pthread_mutex_destroy(&s->lock);
	json_decref(s->doc);
	free(s->root);
	if (s->rootfd >= 0)
		close(s->rootfd);
	memset(s, 0, sizeof(*s));
	s->rootfd = -1;
}

void snap_lock(struct snap_store *s)
{
	pthread_mutex_lock(&s->lock);
}

void snap_unlock(struct snap_store *s)
{
	pthread_mutex_unlock(&s->lock);
}

static void info_of(const char *key, json_t *rec, struct snap_info *info)
{
	const char *kind = json_string_value(json_object_get(rec, "kind"));

	info->key = key;
	info->parent = json_string_value(json_object_get(rec, "parent"));
	if (!info->parent)
		info->parent = "";
	info->kind = SNAP_ACTIVE;
	for (size_t k = SNAP_VIEW; k < ARRAY_SIZE(kind_names); k++)
		if (kind && !strcmp(kind, kind_names[k]))
			info->kind = (enum snap_kind)k;
	info->id = (uint64_t)json_integer_value(json_object_get(rec, "id"));
	info->created_ns = json_integer_value(json_object_get(rec, "created"));
	info->updated_ns = json_integer_value(json_object_get(rec, "updated"));
	info->labels = json_object_get(rec, "labels");
	info->lazy = json_object_get(rec, "lazy");
}

int snap_stat(struct snap_store *s, const char *key, struct snap_info *info,
	      struct anole_error *err)
{
	json_t *rec = json_object_get(snaps(s), key);

	if (!rec)
		return anole_err(err, ENOENT, "snapshot %s does not exist", key);
	info_of(key, rec, info);
	return 0;
}

int snap_each(struct snap_store *s, int (*fn)(void *ctx, const struct snap_info *info), void *ctx)
{
	const char *key;
	json_t *rec;

	json_object_foreach (snaps(s), key, rec) {
		struct snap_info info;
		int rc;

		info_of(key, rec, &info);
		rc = fn(ctx, &info);
		if (rc)
			return rc;
	}
	return 0;
}

int snap_dir(const struct snap_store *s, uint64_t id, const char *what, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/snapshots/%llu%s%s", s->root, (unsigned long long)id,
			 *what ? "/" : "", what);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ROOT/snapshots/ID with fs/ (and work/ for an active one) in it. */
static int make_dirs(struct snap_store *s, uint64_t id, enum snap_kind kind,
		     struct anole_error *err)
{
	char path[4096];

	if (snap_dir(s, id, "", path, sizeof(path)) < 0)
		return anole_err(err, ENAMETOOLONG, "snapshotter: root path too long");
	if (mkdir(path, 0700) < 0)
		return anole_err(err, errno, "snapshotter: mkdir %s: %s", path, strerror(errno));
	if (snap_dir(s, id, "fs", path, sizeof(path)) < 0)
		return anole_err(err, ENAMETOOLONG, "snapshotter: root path too long");
	if (mkdir(path, 0755) < 0)
		return anole_err(err, errno, "snapshotter: mkdir %s: %s", path, strerror(errno));
	if (kind == SNAP_ACTIVE) {
		snap_dir(s, id, "work", path, sizeof(path));
		if (mkdir(path, 0700) < 0)
			return anole_err(err, errno, "snapshotter: mkdir %s: %s", path,
					 strerror(errno));
	}
	return 0;
}

static int remove_dirs(struct snap_store *s, uint64_t id)
{
	char name[32];

	snprintf(name, sizeof(name), "snapshots/%llu", (unsigned long long)id);
	return rm_tree_at(s->rootfd, name);
}

static json_t *labels_copy(json_t *labels)
{
	return labels ? json_deep_copy(labels) : json_object();
}

int snap_begin(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
	       uint64_t *id, struct anole_error *err)
{
	int rc;

	*id = (uint64_t)json_integer_value(json_object_get(s->doc, "next_id"));
	if (!*key)
		return anole_err(err, EINVAL, "snapshot key is empty");
	if (snap_taken(s, key))
		return anole_err(err, EEXIST, "snapshot %s already exists", key);
	if (*parent) {
		struct snap_info pi;
		json_t *prec = json_object_get(snaps(s), parent);

		if (!prec)
			return anole_err(err, ENOENT, "parent snapshot %s does not exist", parent);
		info_of(parent, prec, &pi);
		if (pi.kind != SNAP_COMMITTED)
			return anole_err(err, EINVAL, "parent %s is not a committed snapshot", parent);
	}
	rc = make_dirs(s, *id, kind, err);
	if (rc < 0) {
		remove_dirs(s, *id);
		return rc;
	}
	/* the id is taken even if no record comes of it: the next one
	 * never meets the directory a failure may have left */
	if (json_object_set_new(s->doc, "next_id", json_integer((json_int_t)*id + 1)) ||
	    json_object_set_new(s->pending, key, json_integer((json_int_t)*id))) {
		remove_dirs(s, *id);
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	}
	return 0;
}

/* Let go of the key snap_begin took for @id. */
static void unpend(struct snap_store *s, uint64_t id)
{
	const char *key;
	json_t *v;

	json_object_foreach (s->pending, key, v)
		if ((uint64_t)json_integer_value(v) == id) {
			json_object_del(s->pending, key);
			return;
		}
}

bool snap_taken(struct snap_store *s, const char *key)
{
	return json_object_get(snaps(s), key) || json_object_get(s->pending, key);
}

void snap_abort(struct snap_store *s, uint64_t id)
{
	unpend(s, id);
	remove_dirs(s, id);
}

int snap_finish(struct snap_store *s, uint64_t id, enum snap_kind kind, const char *key,
		const char *parent, json_t *labels, json_t *lazy, struct anole_error *err)
{
	int64_t now = now_ns();
	json_t *rec = json_pack("{s:I, s:s, s:s, s:I, s:I, s:o}", "id", (json_int_t)id, "kind",
				kind_names[kind], "parent", parent, "created", (json_int_t)now,
				"updated", (json_int_t)now, "labels", labels_copy(labels));
	int rc;

	unpend(s, id);
	if (!rec || (lazy && json_object_set(rec, "lazy", lazy)) ||
	    json_object_set_new(snaps(s), key, rec)) {
		json_object_del(snaps(s), key);
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	}
	rc = store_save(s, err);
	if (rc < 0)
		json_object_del(snaps(s), key);
	return rc;
}

int snap_create(struct snap_store *s, enum snap_kind kind, const char *key, const char *parent,
		json_t *labels, struct anole_error *err)
{
	uint64_t id;
	int rc = snap_begin(s, kind, key, parent, &id, err);

	if (rc < 0)
		return rc;
	rc = snap_finish(s, id, kind, key, parent, labels, NULL, err);
	if (rc < 0)
		snap_abort(s, id);
	return rc;
}

int snap_commit(struct snap_store *s, const char *name, const char *key, json_t *labels,
		struct anole_error *err)
{
	json_t *rec = json_object_get(snaps(s), key), *copy;
	struct snap_info info;
	int64_t now = now_ns();
	int rc;

	if (!rec)
		return anole_err(err, ENOENT, "snapshot %s does not exist", key);
	info_of(key, rec, &info);
	if (info.kind != SNAP_ACTIVE)
		return anole_err(err, EBUSY, "snapshot %s is not active", key);
	if (!*name)
		return anole_err(err, EINVAL, "snapshot name is empty");
	if (json_object_get(snaps(s), name))
		return anole_err(err, EEXIST, "snapshot %s already exists", name);
	copy = json_deep_copy(rec);
	if (!copy || json_object_set_new(copy, "kind", json_string(kind_names[SNAP_COMMITTED])) ||
	    json_object_set_new(copy, "created", json_integer(now)) ||
	    json_object_set_new(copy, "updated", json_integer(now)) ||
	    (labels && json_object_set_new(copy, "labels", json_deep_copy(labels))) ||
	    json_object_set_new(snaps(s), name, copy)) {
		json_object_del(snaps(s), name);
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	}
	json_incref(rec);
	json_object_del(snaps(s), key);
	rc = store_save(s, err);
	if (rc < 0) {
		json_object_del(snaps(s), name);
		json_object_set(snaps(s), key, rec);
	}
	json_decref(rec);
	return rc;
}

static int is_parent_of(void *ctx, const struct snap_info *info)
{
	return !strcmp(info->parent, (const char *)ctx);
}

bool snap_has_children(struct snap_store *s, const char *key)
{
	return snap_each(s, is_parent_of, (void *)key) != 0;
}

int snap_remove(struct snap_store *s, const char *key, struct anole_error *err)
{
	json_t *rec = json_object_get(snaps(s), key);
	struct snap_info info;
	int rc;

	if (!rec)
		return anole_err(err, ENOENT, "snapshot %s does not exist", key);
	if (snap_has_children(s, key))
		return anole_err(err, EBUSY, "snapshot %s has children", key);
	info_of(key, rec, &info);
	json_incref(rec);
	json_object_del(snaps(s), key);
	rc = store_save(s, err);
	if (rc < 0)
		json_object_set(snaps(s), key, rec);
	else
		remove_dirs(s, info.id);
	json_decref(rec);
	return rc;
}

/* A mask path: "labels" (all of them) or "labels.KEY" (one). */
static int update_path(json_t *have, json_t *labels, const char *path, struct anole_error *err)
{
	json_t *v;

	if (!strcmp(path, "labels")) {
		json_object_clear(have);
		return json_object_update(have, labels) ? -ENOMEM : 0;
	}
	if (strncmp(path, "labels.", 7) || !path[7])
		return anole_err(err, EINVAL, "cannot update %s of a snapshot", path);
	v = json_object_get(labels, path + 7);
	if (v)
		return json_object_set(have, path + 7, v) ? -ENOMEM : 0;
	json_object_del(have, path + 7);
	return 0;
}

int snap_update(struct snap_store *s, const char *key, json_t *labels, const char *const *paths,
		size_t npaths, struct anole_error *err)
{
	json_t *rec = json_object_get(snaps(s), key), *copy, *have;
	int rc = 0;

	if (!rec)
		return anole_err(err, ENOENT, "snapshot %s does not exist", key);
	copy = json_deep_copy(rec);
	have = json_object_get(copy, "labels");
	if (!copy || !json_is_object(have)) {
		json_decref(copy);
		return anole_err(err, ENOMEM, "snapshotter: out of memory");
	}
	if (!npaths)
		rc = update_path(have, labels, "labels", err);
	for (size_t i = 0; rc == 0 && i < npaths; i++)
		rc = update_path(have, labels, paths[i], err);
	if (rc == 0 && json_object_set_new(copy, "updated", json_integer(now_ns())))
		rc = -ENOMEM;
	if (rc < 0) {
		json_decref(copy);
		return rc == -ENOMEM ? anole_err(err, ENOMEM, "snapshotter: out of memory") : rc;
	}
	json_incref(rec);
	json_object_set_new(snaps(s), key, copy);
	rc = store_save(s, err);
	if (rc < 0)
		json_object_set(snaps(s), key, rec);
	json_decref(rec);
	return rc;
}

static int has_id(void *ctx, const struct snap_info *info)
{
	return info->id == *(const uint64_t *)ctx;
}

/* Does a record, or a snapshot being made, have @id? */
static bool id_taken(struct snap_store *s, uint64_t id)
{
	const char *key;
	json_t *v;

	json_object_foreach (s->pending, key, v)
		if ((uint64_t)json_integer_value(v) == id)
			return true;
	return snap_each(s, has_id, &id) != 0;
}

/* A directory name that is a snapshot id: digits only, no leading 0. */
static bool id_name(const char *name, uint64_t *id)
{
	char *end;

	if (name[0] < '1' || name[0] > '9')
		return false;
	errno = 0;
	*id = strtoull(name, &end, 10);
	return !*end && !errno;
}

/* A mount on ROOT/snapshots/@name/fs (another device than its parent's)
 * goes through @unmount first: rm_tree_at leaves a mount point whole. */
static int unmount_orphan(struct snap_store *s, int fd, const char *name,
			  int (*unmount)(const char *dir, struct anole_error *err),
			  struct anole_error *err)
{
	char fs[4096], dir[4096];
	struct stat a, b;

	if (snprintf(fs, sizeof(fs), "%s/fs", name) >= (int)sizeof(fs) ||
	    fstatat(fd, name, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(fd, fs, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_dev == b.st_dev)
		return 0;
	if (snprintf(dir, sizeof(dir), "%s/snapshots/%s", s->root, fs) >= (int)sizeof(dir))
		return anole_err(err, ENAMETOOLONG, "snapshotter: root path too long");
	return unmount(dir, err);
}

int snap_cleanup(struct snap_store *s, int (*unmount)(const char *dir, struct anole_error *err),
		 struct anole_error *err)
{
	struct strbuf names = {0};
	int fd = openat(s->rootfd, "snapshots", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc = fd < 0 ? -errno : dir_list(fd, &names);

	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		strbuf_release(&names);
		return anole_err(err, -rc, "snapshotter: listing %s/snapshots: %s", s->root,
				 strerror(-rc));
	}
	/* entries are a type byte, the name and a NUL; an orphan's id is
	 * never given again, so once found it can be unmounted and removed
	 * without the lock */
	for (size_t off = 0; off < names.len; off += 2 + strlen(names.buf + off + 1)) {
		const char *name = names.buf + off + 1;
		uint64_t id;
		bool orphan;

		if (!id_name(name, &id))
			continue;
		snap_lock(s);
		orphan = !id_taken(s, id);
		snap_unlock(s);
		if (orphan) {
			int r = unmount_orphan(s, fd, name, unmount, err);

			if (r < 0) {
				rc = rc ? rc : r;
				continue;
			}
			r = rm_tree_at(fd, name);

			if (r < 0 && rc == 0)
				rc = anole_err(err, -r, "snapshotter: removing %s/snapshots/%s: %s",
					       s->root, name, strerror(-r));
		}
	}
	close(fd);
	strbuf_release(&names);
	return rc;
}
