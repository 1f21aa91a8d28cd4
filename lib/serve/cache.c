/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cache seen from outside the daemon: list it, shrink it. Files in
 * use by a mount (its metadata image, data blobs and digest tables, as
 * the daemon reports them) are never removed; the daemon holds the
 * cache's lock shared while it sets up a mount, and gc takes it exclusive,
 * so gc never removes what a mount being made is about to use.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve.h"
#include "util/strmap.h"
#include "util/util.h"

int serve_cache_lock(const char *cache, int how)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/.lock", cache);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, how) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Digests (hex) the daemon's mounts use, or an empty set when none runs. */
static int in_use(struct strmap *set, struct anole_error *err)
{
	char *reply = NULL;
	struct anole_error e = {0};
	if (serve_request("{\"op\":\"status\"}", false, &reply, &e) < 0) {
		/* no answer is "nothing in use" only when no daemon lives */
		struct serve_paths p;
		serve_paths_init(&p);
		static const char *const pids[] = {"holder.pid", "daemon.pid"};
		for (int i = 0; i < 2; i++) {
			char path[600], line[32] = "";
			snprintf(path, sizeof(path), "%s/%s", p.runtime, pids[i]);
			_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
			long pid = fd >= 0 && read(fd, line, sizeof(line) - 1) > 0 ? atol(line) : 0;
			if (pid > 0 && kill((pid_t)pid, 0) == 0)
				return anole_err(err, EAGAIN,
						 "the anole daemon (pid %ld) runs but does not answer "
						 "(%s); try again",
						 pid, e.msg);
		}
		return 0;
	}
	json_error_t je;
	json_t *st = json_loads(reply, 0, &je);
	free(reply);
	if (!st)
		return anole_err(err, EBADMSG, "the daemon's status is not JSON");
	size_t i, k;
	json_t *m, *d;
	json_array_foreach(json_object_get(st, "mounts"), i, m) {
		json_array_foreach(json_object_get(m, "uses"), k, d) {
			const char *s = json_string_value(d);
			void **slot = s && !strncmp(s, "sha256:", 7)
					      ? strmap_slot(set, s + 7, strlen(s + 7), true)
					      : NULL;
			if (slot)
				*slot = (void *)1;
		}
	}
	json_decref(st);
	return 0;
}

static bool is_hex64(const char *s, size_t len)
{
	if (len != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return false;
	return true;
}

/* Every blob in the cache, complete or partial. */
static int scan(const char *cache, struct strmap *use,
		int (*fn)(void *ctx, const struct anole_cache_entry *e), void *ctx,
		struct anole_error *err)
{
	static const char *const dirs[] = {"blobs/sha256", "partial"};
	for (int k = 0; k < 2; k++) {
		char dpath[640];
		snprintf(dpath, sizeof(dpath), "%s/%s", cache, dirs[k]);
		DIR *d = opendir(dpath);
		if (!d) {
			if (errno == ENOENT)
				continue;
			return anole_err(err, errno, "%s: %s", dpath, strerror(errno));
		}
		struct dirent *de;
		int r = 0;
		while (r == 0 && (de = readdir(d))) {
			if (!is_hex64(de->d_name, strlen(de->d_name)))
				continue;
			struct anole_cache_entry e = {.partial = k == 1};
			struct stat st;
			snprintf(e.path, sizeof(e.path), "%s/%s", dpath, de->d_name);
			if (lstat(e.path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			snprintf(e.digest, sizeof(e.digest), "sha256:%s", de->d_name);
			e.size = (uint64_t)st.st_size;
			e.disk = (uint64_t)st.st_blocks * 512;
			e.last_used = MAX(st.st_atime, st.st_mtime);
			if (e.partial) {
				char map[820];
				snprintf(map, sizeof(map), "%s.ranges", e.path);
				if (!stat(map, &st))
					e.disk += (uint64_t)st.st_blocks * 512;
			}
			e.in_use = strmap_slot(use, de->d_name, 64, false) != NULL;
			r = fn(ctx, &e);
		}
		closedir(d);
		if (r)
			return r < 0 ? r : 0;
	}
	return 0;
}

int anole_cache_list(int (*fn)(void *ctx, const struct anole_cache_entry *e), void *ctx,
		     struct anole_error *err)
{
	struct serve_paths p;
	serve_paths_init(&p);
	struct strmap *use = strmap_new();
	if (!use)
		return anole_err(err, ENOMEM, "out of memory");
	int r = in_use(use, err);
	if (r >= 0)
		r = scan(p.cache, use, fn, ctx, err);
	strmap_free(use, NULL);
	return r;
}

struct collect {
	struct anole_cache_entry *e;
	size_t n, cap;
};

static int collect(void *ctx, const struct anole_cache_entry *e)
{
	struct collect *c = ctx;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct anole_cache_entry *ne = realloc(c->e, cap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		c->e = ne;
		c->cap = cap;
	}
	c->e[c->n++] = *e;
	return 0;
}

static int by_age(const void *a, const void *b)
{
	const struct anole_cache_entry *x = a, *y = b;
	return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

int anole_cache_gc(uint64_t max_size, struct anole_cache_gc_stats *st, struct anole_error *err)
{
	struct serve_paths p;
	serve_paths_init(&p);
	memset(st, 0, sizeof(*st));
	int lock = serve_cache_lock(p.cache, LOCK_EX);
	if (lock < 0 && lock != -ENOENT)
		return anole_err(err, -lock, "%s/.lock: %s", p.cache, strerror(-lock));
	struct strmap *use = strmap_new();
	struct collect c = {0};
	int r = use ? in_use(use, err) : anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = scan(p.cache, use, collect, &c, err);
	if (r == -ENOMEM)
		r = anole_err(err, ENOMEM, "out of memory");
	uint64_t total = 0;
	for (size_t i = 0; i < c.n; i++)
		total += c.e[i].disk;
	st->before = total;
	/* least recently used first; what mounts use stays */
	if (c.n)
		qsort(c.e, c.n, sizeof(*c.e), by_age);
	for (size_t i = 0; r >= 0 && i < c.n && total > max_size; i++) {
		const struct anole_cache_entry *e = &c.e[i];
		if (e->in_use) {
			st->kept_in_use++;
			continue;
		}
		if (unlink(e->path) < 0 && errno != ENOENT) {
			r = anole_err(err, errno, "%s: %s", e->path, strerror(errno));
			break;
		}
		if (e->partial) {
			char map[820];
			snprintf(map, sizeof(map), "%s.ranges", e->path);
			unlink(map);
		}
		total -= e->disk;
		st->removed++;
		st->removed_bytes += e->disk;
	}
	st->after = total;
	free(c.e);
	if (use)
		strmap_free(use, NULL);
	if (lock >= 0)
		close(lock);
	return r;
}
