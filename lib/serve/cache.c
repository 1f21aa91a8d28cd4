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

#include "erofs/blobmeta.h"
#include "serve/paths.h"
#include "serve/request.h"
#include "serve/serve.h"
#include "serve/worker.h"
#include "util/strmap.h"
#include "util/util.h"

int serve_cache_lock(const char *path, int how)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, how) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void add_hex(struct strmap *set, const char *s)
{
	void **slot = set && s && !strncmp(s, "sha256:", 7)
			      ? strmap_slot(set, s + 7, strlen(s + 7), true)
			      : NULL;
	if (slot)
		*slot = (void *)1;
}

/* The pid of a live holder or worker of ours, else 0. */
static long daemon_alive(const struct serve_files *f)
{
	const char *const pids[] = {f->holder_pid, f->daemon_pid};
	for (int i = 0; i < 2; i++) {
		char line[32] = "";
		_cleanup_close_ int fd = open(pids[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		long pid = fd >= 0 && read(fd, line, sizeof(line) - 1) > 0 ? atol(line) : 0;
		if (pid > 0 && kill((pid_t)pid, 0) == 0)
			return pid;
	}
	return 0;
}

/* Digests (hex) the daemon's mounts use, or an empty set when none runs;
 * in @held (or NULL) every blob it holds, lingering ones too. */
static int in_use(const struct serve_files *f, struct strmap *set, struct strmap *held,
		  struct anole_error *err)
{
	char *reply = NULL;
	struct anole_error e = {0};
	_cleanup_free_ char *req = ctl_request_encode(&(struct ctl_request){.op = CTL_STATUS});
	if (!req)
		return anole_err(err, ENOMEM, "out of memory");
	/* no answer is "nothing in use" only when no daemon lives; one that
	 * lives without answering is starting or quitting (it removes its
	 * socket, then exits): wait a little for either to finish */
	for (int tries = 0; serve_request(req, false, &reply, &e) < 0; tries++) {
		if (e.code == EACCES || e.code == EPERM)
			return anole_err(err, e.code, "%s", e.msg);
		long pid = daemon_alive(f);
		if (!pid)
			return 0;
		if (tries == 100)
			return anole_err(err, EAGAIN,
					 "the anole daemon (pid %ld) runs but does not answer "
					 "(%s); try again",
					 pid, e.msg);
		usleep(50000);
		e = (struct anole_error){0};
	}
	json_error_t je;
	json_t *st = json_loads(reply, 0, &je);
	free(reply);
	if (!st)
		return anole_err(err, EBADMSG, "the daemon's status is not JSON");
	size_t i, k;
	json_t *m, *d;
	json_array_foreach(json_object_get(st, "mounts"), i, m) {
		json_array_foreach(json_object_get(m, "uses"), k, d)
			add_hex(set, json_string_value(d));
	}
	json_array_foreach(json_object_get(st, "blobs"), i, m)
		add_hex(held, json_string_value(json_object_get(m, "digest")));
	json_decref(st);
	return 0;
}

/* The cache's paths in @p and @f (released by the caller, also on
 * failure). 1: the cache is there and ours alone; 0: there is none;
 * -errno. */
static int cache_dir_ok(struct serve_paths *p, struct serve_files *f, struct anole_error *err)
{
	serve_paths_init(p);
	int r = serve_paths_whole(p, err);
	if (r < 0 || (r = serve_files_init(f, p, err)) < 0)
		return r;
	r = serve_dir_check(p->cache, false, err);
	if (r == -ENOENT) {
		memset(err, 0, sizeof(*err));
		return 0;
	}
	return r < 0 ? r : 1;
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
static int scan(const struct serve_files *f, struct strmap *use,
		int (*fn)(void *ctx, const struct anole_cache_entry *e), void *ctx,
		struct anole_error *err)
{
	const char *const dirs[] = {f->blobs, f->partial};
	for (int k = 0; k < 2; k++) {
		const char *dpath = dirs[k];
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
				_cleanup_free_ char *map = serve_map_path(e.path);
				if (map && !lstat(map, &st))
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

int cache_check_ranges(int fd, int map_fd, const struct digest_table *t)
{
	uint64_t n = t->head.count, bad = 0;
	_cleanup_free_ uint8_t *state = malloc(MAX(n, 1));
	if (!state)
		return -ENOMEM;
	int r = pread_full(map_fd, state, n, RANGES_MAP_HEAD);
	for (uint64_t i = 0; r >= 0 && i < n; i++) {
		struct digest d;
		if (state[i] != 1)
			continue;
		uint64_t off = t->off[i], len = t->off[i + 1] - off;
		int h = sha256_fd(fd, off, len, &d);
		if (h < 0 && h != -ENODATA) { /* (-ENODATA: a short file, not there) */
			r = h;
			break;
		}
		if (h >= 0 && !memcmp(&d, &t->d[i], sizeof(d)))
			continue;
		static const uint8_t zero;
		bad++;
		r = pwrite_full(map_fd, &zero, 1, RANGES_MAP_HEAD + i);
	}
	return r < 0 ? r : (int)MIN(bad, (uint64_t)INT32_MAX);
}

int anole_cache_list(int (*fn)(void *ctx, const struct anole_cache_entry *e), void *ctx,
		     struct anole_error *err)
{
	struct serve_paths p;
	_cleanup_serve_files_ struct serve_files f = {0};
	int r = cache_dir_ok(&p, &f, err);
	if (r <= 0)
		return r;
	struct strmap *use = strmap_new();
	if (!use)
		return anole_err(err, ENOMEM, "out of memory");
	r = in_use(&f, use, NULL, err);
	if (r >= 0)
		r = scan(&f, use, fn, ctx, err);
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
	_cleanup_serve_files_ struct serve_files f = {0};
	memset(st, 0, sizeof(*st));
	int ok = cache_dir_ok(&p, &f, err);
	if (ok <= 0)
		return ok;
	int lock = serve_cache_lock(f.cache_lock, LOCK_EX);
	if (lock < 0 && lock != -ENOENT)
		return anole_err(err, -lock, "%s: %s", f.cache_lock, strerror(-lock));
	struct strmap *use = strmap_new();
	struct collect c = {0};
	int r = use ? in_use(&f, use, NULL, err) : anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = scan(&f, use, collect, &c, err);
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
		_cleanup_free_ char *map = e->partial ? serve_map_path(e->path) : NULL;
		if (map)
			unlink(map);
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

/* The digest table a partial blob's ranges map names, from the cache,
 * checked against that digest; the table's ranges are cut for a blob of
 * the partial file's size. */
static int map_table(const char *cache, int mfd, uint64_t size, struct digest_table *t,
		     char *what, size_t wsize)
{
	struct digest d;
	char hex[DIGEST_STR_LEN + 1];
	struct stat st;
	if (pread_full(mfd, &d, sizeof(d), 0) < 0) {
		snprintf(what, wsize, "its ranges map is cut");
		return -EBADMSG;
	}
	digest_format(&d, hex);
	_cleanup_blob_paths_ struct blob_paths bp;
	if (blob_paths_init(&bp, cache, hex) < 0) {
		snprintf(what, wsize, "out of memory");
		return -ENOMEM;
	}
	_cleanup_close_ int fd = open(bp.complete, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct strbuf raw = {0};
	struct digest got;
	int r = fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (256 << 20)
			? -ENOENT
			: strbuf_grow(&raw, (size_t)st.st_size + 1);
	if (r >= 0 && (r = pread_full(fd, raw.buf, (size_t)st.st_size, 0)) >= 0) {
		raw.len = (size_t)st.st_size;
		sha256(raw.buf, raw.len, &got);
		r = memcmp(&got, &d, sizeof(d)) ? -EBADMSG : 0;
	}
	struct anole_error e = {0};
	if (r >= 0 && (r = digest_table_decode(raw.buf, raw.len, size, t, &e, "its digest table")) < 0)
		snprintf(what, wsize, "%.180s", e.msg);
	else if (r < 0)
		snprintf(what, wsize, "its digest table %.19s is %s", hex,
			 r == -ENOENT ? "not in the cache" : "not what its digest says");
	strbuf_release(&raw);
	return r;
}

/* A partial blob's present ranges against its table. */
static void verify_partial(const char *cache, struct anole_cache_check *c)
{
	_cleanup_free_ char *map = serve_map_path(c->e.path);
	if (!map) {
		snprintf(c->what, sizeof(c->what), "out of memory");
		c->bad = true;
		return;
	}
	_cleanup_close_ int fd = open(c->e.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	_cleanup_close_ int mfd = open(map, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct digest_table t = {0};
	struct stat st;
	if (fd < 0 || mfd < 0) {
		snprintf(c->what, sizeof(c->what), "%s", fd < 0 ? "unreadable" : "it has no ranges map");
		c->bad = true;
	} else if (map_table(cache, mfd, c->e.size, &t, c->what, sizeof(c->what)) < 0) {
		c->bad = true;
	} else if (fstat(mfd, &st) < 0 || (uint64_t)st.st_size != RANGES_MAP_HEAD + t.head.count) {
		snprintf(c->what, sizeof(c->what), "its ranges map does not fit its digest table");
		c->bad = true;
	} else {
		_cleanup_free_ uint8_t *state = malloc(MAX(t.head.count, 1));
		if (state && pread_full(mfd, state, t.head.count, RANGES_MAP_HEAD) >= 0)
			for (uint64_t i = 0; i < t.head.count; i++)
				c->ranges += state[i] == 1;
		int bad = cache_check_ranges(fd, mfd, &t);
		c->bad_ranges = bad > 0 ? (uint64_t)bad : 0;
		if (bad)
			snprintf(c->what, sizeof(c->what),
				 "%llu of %llu present ranges do not match its digest table%s; "
				 "forgotten (fetched again when read)",
				 (unsigned long long)c->bad_ranges, (unsigned long long)c->ranges,
				 bad < 0 ? " (or cannot be read)" : "");
		c->bad = bad != 0;
		digest_table_release(&t);
		return;
	}
	digest_table_release(&t);
	/* not a partial blob the daemon can use: it starts over anyway */
	unlink(c->e.path);
	unlink(map);
	size_t n = strlen(c->what);
	snprintf(c->what + n, sizeof(c->what) - n, "; removed");
}

struct verify_ctx {
	const char *cache;
	struct strmap *held;
	int (*fn)(void *ctx, const struct anole_cache_check *c);
	void *ctx;
	struct anole_cache_verify_stats *st;
};

static int verify_one(void *arg, const struct anole_cache_entry *e)
{
	struct verify_ctx *v = arg;
	struct anole_cache_check c = {.e = *e};
	if (e->partial && (e->in_use || strmap_slot(v->held, e->digest + 7, 64, false))) {
		c.skipped = true;
		snprintf(c.what, sizeof(c.what), "held by the daemon: not read");
		v->st->skipped++;
	} else if (e->partial) {
		verify_partial(v->cache, &c);
	} else if (digest_file_check(e->path, e->digest, e->size) == 0) {
		c.bad = true;
		snprintf(c.what, sizeof(c.what), "does not match its digest; removed%s",
			 e->in_use ? " (a mount still reads its old copy)" : "");
		unlink(e->path);
	}
	if (!c.skipped) {
		v->st->checked++;
		v->st->bytes += e->partial ? 0 : e->size;
	}
	v->st->bad += c.bad;
	return v->fn ? v->fn(v->ctx, &c) : 0;
}

int anole_cache_verify(int (*fn)(void *ctx, const struct anole_cache_check *c), void *ctx,
		       struct anole_cache_verify_stats *st, struct anole_error *err)
{
	struct serve_paths p;
	_cleanup_serve_files_ struct serve_files f = {0};
	memset(st, 0, sizeof(*st));
	int r = cache_dir_ok(&p, &f, err);
	if (r <= 0)
		return r;
	/* no mount is set up meanwhile (it would take what we remove) */
	int lock = serve_cache_lock(f.cache_lock, LOCK_EX);
	if (lock < 0)
		return anole_err(err, -lock, "%s: %s", f.cache_lock, strerror(-lock));
	struct strmap *use = strmap_new(), *held = strmap_new();
	struct verify_ctx v = {.cache = p.cache, .held = held, .fn = fn, .ctx = ctx, .st = st};
	r = use && held ? in_use(&f, use, held, err) : anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = scan(&f, use, verify_one, &v, err);
	strmap_free(use, NULL);
	strmap_free(held, NULL);
	close(lock);
	return r;
}
