/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker: mounts lazy images and fills their cache files on demand.
 *
 * Every data blob of a mounted image is a file in the cache: complete
 * (verified, under blobs/sha256/HEX) or partial (partial/HEX, sparse, with
 * partial/HEX.ranges holding the digest table's SHA-256, then one byte
 * per range: 1 once that range was verified and is on disk). A partial
 * file carries a FAN_PRE_ACCESS mark; the kernel asks before every read
 * of it, and the worker answers once the range is there. Its writes go
 * through a descriptor opened before the mark was added, which raises no
 * events: writing through any other would wake the daemon for its own
 * write.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "anole/erofs_fs.h"
#include "lazy/lazy.h"
#include "registry/registry.h"
#include "serve/fan.h"
#include "serve/fusefs.h"
#include "serve/mounttab.h"
#include "serve/serve.h"
#include "serve/worker.h"

void wlog(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	daemon_log("worker", "%s", line);
}

/* ---- mounts ------------------------------------------------------------------ */

static void mount_free(struct lmount *m)
{
	if (!m)
		return;
	registry_creds_release(&m->creds);
	free(m->mountpoint);
	free(m->ref);
	free(m->meta_path);
	free(m->lblobs);
	free(m->blobs);
	free(m->devblobs);
	for (size_t k = 0; m->seen && k < m->nblobs; k++)
		free(m->seen[k]);
	free(m->seen);
	free(m->trace);
	load_hints_free(m->hints);
	for (size_t k = 0; k < m->ndevpaths; k++)
		free(m->devpaths[k]);
	free(m->devpaths);
	free(m);
}

/* The image's load hints, from the cache (lazy_prepare fetched and
 * verified them); a mount without them works as before. */
static void load_mount_hints(struct worker *wk, struct lmount *m, const char *digest, uint64_t size)
{
	struct store *s = NULL;
	struct strbuf text = {0};
	struct anole_error e = {0};
	char why[200] = "";
	uint64_t *sizes = calloc(MAX(m->ndevs, 1), sizeof(*sizes));
	for (size_t i = 0; sizes && i < m->ndevs; i++)
		sizes[i] = m->devblobs[i] ? m->devblobs[i]->size : 0;
	if (!sizes || store_open(wk->paths.cache, 0, false, &s, &e) < 0 ||
	    store_get_small(s, digest, size, 64u << 20, &text, &e) < 0)
		wlog("%s: load hints ignored: %s", m->mountpoint, sizes ? e.msg : "out of memory");
	else if (load_hints_parse(text.buf, text.len, sizes, m->ndevs, &m->hints, why,
				  sizeof(why)) < 0)
		wlog("%s: load hints ignored: %s", m->mountpoint, why);
	strbuf_release(&text);
	store_free(s);
	free(sizes);
}

/* Device slot i of the metadata image names blob HEX: the kernel wants the
 * blobs as device= options in slot order. */
static int device_options(const char *meta, struct lmount *m, char **out, struct anole_error *err)
{
	_cleanup_close_ int fd = open(meta, O_RDONLY | O_CLOEXEC);
	struct erofs_super_block sb;
	if (fd < 0 || pread_full(fd, &sb, sizeof(sb), EROFS_SUPER_OFFSET) < 0)
		return anole_err(err, EBADMSG, "%s: cannot read the superblock", meta);
	struct strbuf sb_opts = {0};
	free(m->devblobs);
	m->ndevs = 0;
	if (!(m->devblobs = calloc(MAX(sb.extra_devices, 1), sizeof(*m->devblobs))))
		goto nomem;
	for (unsigned int i = 0; i < sb.extra_devices; i++) {
		struct erofs_deviceslot slot;
		uint64_t at = (uint64_t)sb.devt_slotoff * sizeof(slot) + i * sizeof(slot);
		if (pread_full(fd, &slot, sizeof(slot), at) < 0)
			goto bad;
		struct blob *b = NULL;
		for (size_t k = 0; k < m->nblobs; k++)
			if (!memcmp(m->blobs[k]->digest + 7, slot.tag, 64))
				b = m->blobs[k];
		if (!b)
			goto bad;
		m->devblobs[m->ndevs++] = b;
		if (strbuf_add(&sb_opts, i ? ",device=" : "device=", i ? 8 : 7) < 0 ||
		    strbuf_add(&sb_opts, b->path, strlen(b->path)) < 0)
			goto nomem;
	}
	if (strbuf_add(&sb_opts, "", 1) < 0)
		goto nomem;
	*out = sb_opts.buf;
	return 0;
bad:
	strbuf_release(&sb_opts);
	return anole_err(err, EBADMSG, "%s: its device table names a blob the image lacks", meta);
nomem:
	strbuf_release(&sb_opts);
	return anole_err(err, ENOMEM, "out of memory");
}

/* (restored mounts are kernel ones: a FUSE server dies with its worker) */
static bool is_erofs_mount(const char *path)
{
	struct statfs sf;
	return !statfs(path, &sf) && sf.f_type == EROFS_MAGIC;
}

static void linger(struct worker *wk, struct lmount *m);
static void finish_fuse(struct worker *wk, struct lmount *m);

/* The kernel mount of @m's metadata image with its blobs as devices (a
 * restored mount is mounted already, a FUSE one is mounted later: both
 * only learn their devices). Without wk->lock: it reads the image and
 * mount(2) may take a while; @m is nobody else's until mtab_add(). */
static int kernel_mount(struct lmount *m, const char *options, struct anole_error *err)
{
	_cleanup_free_ char *data = NULL;
	int r = device_options(m->meta_path, m, &data, err);
	if (r >= 0 && options && *options) {
		char *more = NULL;
		if (asprintf(&more, "%s%s%s", data, *data ? "," : "", options) < 0)
			return anole_err(err, ENOMEM, "out of memory");
		free(data);
		data = more;
	}
	if (r >= 0 && !m->restored && !m->fuse &&
	    mount(m->meta_path, m->mountpoint, "erofs", MS_RDONLY, *data ? data : NULL) < 0)
		r = anole_err(err, errno, "%s: mount: %s", m->mountpoint, strerror(errno));
	return r;
}

/* wk->lock held: give back the first @got blobs of a mount that failed
 * (a restored mount lives on: it keeps them, and reads of blobs it could
 * not take back fail: unknown file, EIO). */
static void detach(struct worker *wk, struct lmount *m, size_t got)
{
	if (m->restored) {
		m->nblobs = got;
		linger(wk, m);
		return;
	}
	while (got)
		blob_put(wk, m->blobs[--got]);
}

/* Take the image's blobs (under wk->lock), then mount it (without);
 * called and returns without wk->lock. */
static int attach(struct worker *wk, struct lmount *m, const char *options, struct anole_error *err)
{
	m->blobs = calloc(MAX(m->nblobs, 1), sizeof(*m->blobs));
	if (!m->blobs)
		return anole_err(err, ENOMEM, "out of memory");
	int r = 0;
	size_t got = 0;
	pthread_mutex_lock(&wk->lock);
	for (; got < m->nblobs && r >= 0; got++)
		r = blob_get(wk, &m->lblobs[got], m->ref, m->tls_verify, &m->creds, !m->fuse,
			     &m->blobs[got], err);
	if (r < 0)
		detach(wk, m, --got);
	pthread_mutex_unlock(&wk->lock);
	if (r < 0)
		return r;
	/* (taken: the cache keeps them while we are away) */
	r = kernel_mount(m, options, err);
	if (r < 0) {
		pthread_mutex_lock(&wk->lock);
		detach(wk, m, got);
		pthread_mutex_unlock(&wk->lock);
	}
	return r;
}

/* A restored mount's credentials, from what mountsave.c wrote. */
static void restore_credentials(struct lmount *m, json_t *saved)
{
	json_t *c = json_object_get(saved, m->mountpoint);
	struct registry_creds from = {
		.basic = (char *)json_string_value(json_object_get(c, "basic")),
		.identity_token = (char *)json_string_value(json_object_get(c, "identity_token")),
	};
	if (registry_creds_copy(&m->creds, &from) < 0)
		wlog("%s: its credentials are lost (out of memory)", m->mountpoint);
}

static int mount_setup(struct worker *wk, const char *ref, const char *real, int tls_verify,
		       const struct registry_creds *creds, const char *options,
		       const char *prefetch, bool fuse, bool record, const char *exec, bool hints,
		       char **config, struct anole_error *err);

/* Can the cache's file system carry pre-content marks? tmpfs, for one,
 * cannot (EOPNOTSUPP): then kernel mounts go through FUSE. Probed once,
 * on an unnamed file of the cache. 1 yes, 0 no (why in @why). */
static int cache_marks_ok(struct worker *wk, char *why, size_t size)
{
	static int known; /* 1 yes, -errno no */
	if (!known) {
		if (mkdir(wk->files.partial, 0700) < 0 && errno != EEXIST)
			return 1; /* the mount will say why */
		int fd = open(wk->files.partial, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0)
			return 1; /* (cannot tell: let the mark say) */
		if (fanotify_mark(wk->group, FAN_MARK_ADD, FAN_PRE_ACCESS, fd, NULL) == 0) {
			fanotify_mark(wk->group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, fd, NULL);
			known = 1;
		} else if (errno == EOPNOTSUPP || errno == EINVAL || errno == EXDEV) {
			known = -errno;
		}
		close(fd);
	}
	if (known < 0)
		snprintf(why, size, "%s", strerror(-known));
	return known >= 0;
}

/* One mount per mount point, also while one is being set up: *mine
 * holds @mnt's real path until release_mountpoint(). */
static int reserve_mountpoint(struct worker *wk, const char *mnt, char **minep,
			      struct anole_error *err)
{
	_cleanup_free_ char *real = realpath(mnt, NULL);
	if (!real)
		return anole_err(err, errno, "%s: %s", mnt, strerror(errno));
	struct stat st;
	if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
		return anole_err(err, ENOTDIR, "%s: mount point is not a directory", mnt);
	pthread_mutex_lock(&wk->lock);
	int r = mtab_reserve(&wk->mtab, real, minep);
	pthread_mutex_unlock(&wk->lock);
	if (r == -EBUSY)
		return anole_err(err, EBUSY, "%s: a lazy image is mounted there already", real);
	if (r < 0)
		return anole_err(err, ENOMEM, "out of memory");
	return 0;
}

static void release_mountpoint(struct worker *wk, char *mine)
{
	pthread_mutex_lock(&wk->lock);
	mtab_unreserve(&wk->mtab, mine);
	pthread_mutex_unlock(&wk->lock);
	free(mine);
}

static int mount_locked(struct worker *wk, const char *ref, const char *mnt, int tls_verify,
			const struct registry_creds *creds, const char *options,
			const char *prefetch, bool fuse, bool record, const char *exec, bool hints,
			char *notice, size_t notice_size, char **config, struct anole_error *err)
{
	char why[160];
	if (!fuse && wk->group < 0) {
		fuse = true;
		snprintf(notice, notice_size,
			 "the kernel path is unavailable (%s); serving %s through FUSE instead",
			 wk->no_kernel_why, mnt);
	} else if (!fuse && !cache_marks_ok(wk, why, sizeof(why))) {
		fuse = true;
		snprintf(notice, notice_size,
			 "the cache %s is on a file system without fanotify pre-content events "
			 "(fanotify mark: %s); serving %s through FUSE instead",
			 wk->paths.cache, why, mnt);
	}
	char *mine;
	int r = reserve_mountpoint(wk, mnt, &mine, err);
	if (r < 0)
		return r;
	r = mount_setup(wk, ref, mine, tls_verify, creds, options, prefetch, fuse || record, record,
			exec, hints, config, err);
	release_mountpoint(wk, mine);
	return r;
}

/* The recorded prefetch list of an image being mounted, fetched on a
 * thread of its own while the metadata comes: two round trips (its tag,
 * then the list) that the mount would otherwise wait for. */
struct list_fetch {
	const char *ref;
	int tls_verify;
	const struct registry_creds *creds;
	char digest[160];
	json_t *list;
	pthread_t thread;
	bool started;
};

static void *list_fetch_main(void *arg)
{
	struct list_fetch *lf = arg;
	struct anole_error e = {0};
	if (lazy_prefetch_get(lf->ref, lf->digest, lf->tls_verify, lf->creds, &lf->list, &e) < 0)
		wlog("%s: prefetch list ignored: %s", lf->ref, e.msg);
	return NULL;
}

static void list_fetch_start(const char *digest, void *ctx)
{
	struct list_fetch *lf = ctx;
	snprintf(lf->digest, sizeof(lf->digest), "%s", digest);
	lf->started = !pthread_create(&lf->thread, NULL, list_fetch_main, lf);
	if (!lf->started) /* no thread: fetch it here, as before */
		list_fetch_main(lf);
}

static json_t *list_fetch_finish(struct list_fetch *lf)
{
	if (lf->started)
		pthread_join(lf->thread, NULL);
	return lf->list;
}

/* What the loader reads to start a program: one span of one device. */
struct program_span {
	char *argv0; /* NULL: none found */
	uint32_t dev;
	uint64_t off, len;
};

/* `anole run` will start @exec ("": none given) under the image's
 * Entrypoint and Cmd, from @config: the program's loader ranges can come
 * while the runtime starts, before its first read asks for them. Reads
 * the image: without wk->lock. */
static struct program_span program_span(struct lmount *m, const char *exec, const char *config)
{
	struct program_span ps = {0};
	json_t *cfg = config ? json_loads(config, 0, NULL) : NULL;
	json_t *image = json_object_get(cfg, "imageConfig");
	/* as the bundle's command: Entrypoint, then the given command or Cmd */
	const char *argv0 = json_string_value(json_array_get(json_object_get(image, "Entrypoint"), 0));
	if (!argv0)
		argv0 = *exec ? exec
			      : json_string_value(json_array_get(json_object_get(image, "Cmd"), 0));
	const char *path = NULL;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(image, "Env"), i, e) {
		const char *v = json_string_value(e);
		if (v && !strncmp(v, "PATH=", 5))
			path = v + 5;
	}
	const char **devs = calloc(MAX(m->ndevs, 1), sizeof(*devs));
	for (size_t k = 0; devs && k < m->ndevs; k++)
		devs[k] = m->devblobs[k] ? m->devblobs[k]->path : NULL;
	if (devs && argv0 &&
	    load_hints_program_at(m->meta_path, devs, m->ndevs, argv0, path, &ps.dev, &ps.off,
				  &ps.len) >= 0 &&
	    ps.dev < m->ndevs && m->devblobs[ps.dev])
		ps.argv0 = strdup(argv0);
	free(devs);
	json_decref(cfg);
	return ps;
}

/* wk->lock held: fetch @ps's span now (and free @ps). */
static void start_program_hints(struct worker *wk, struct lmount *m, struct program_span *ps)
{
	size_t spans = mount_hints_on_read(wk, m, m->devblobs[ps->dev], ps->off, ps->len);
	if (spans)
		wlog("%s: fetching what the loader reads to start %s (%zu spans)", m->mountpoint,
		     ps->argv0, spans);
	free(ps->argv0);
	ps->argv0 = NULL;
}

/* A mount, empty but for the worker serving it. */
static struct lmount *mount_new(struct worker *wk)
{
	struct lmount *m = calloc(1, sizeof(*m));
	if (m)
		m->wk = wk;
	return m;
}

static int mount_setup(struct worker *wk, const char *ref, const char *real, int tls_verify,
		       const struct registry_creds *creds, const char *options,
		       const char *prefetch, bool fuse, bool record, const char *exec, bool hints,
		       char **config, struct anole_error *err)
{
	struct anole_lazy_info *li = NULL;
	struct store *src = NULL;
	/* a recorded prefetch list comes first, in its order (not when
	 * recording one: the workload must show what it reads) */
	struct list_fetch lf = {.ref = ref, .tls_verify = tls_verify, .creds = creds};
	bool want_list = !record && strcmp(prefetch ? prefetch : "", "none");
	int r = lazy_prepare(ref, wk->paths.cache, tls_verify, creds,
			     want_list ? list_fetch_start : NULL, &lf, &li, &src, err);
	json_t *list = list_fetch_finish(&lf);
	if (r < 0) {
		json_decref(list);
		return r;
	}
	store_free(src);
	struct lmount *m = mount_new(wk);
	if (!m || !(m->mountpoint = strdup(real)) || !(m->ref = strdup(ref)) ||
	    !(m->meta_path = strdup(li->meta_path)) ||
	    !(m->lblobs = calloc(MAX(li->nblobs, 1), sizeof(*m->lblobs))) ||
	    registry_creds_copy(&m->creds, creds) < 0) {
		anole_lazy_free(li);
		mount_free(m);
		json_decref(list);
		return anole_err(err, ENOMEM, "out of memory");
	}
	m->tls_verify = tls_verify;
	m->fuse = fuse;
	m->record = record;
	m->nblobs = li->nblobs;
	memcpy(m->lblobs, li->blobs, li->nblobs * sizeof(*m->lblobs));
	snprintf(m->manifest, sizeof(m->manifest), "%s", li->manifest_digest);
	char hints_digest[72];
	uint64_t hints_size = li->hints_size;
	snprintf(hints_digest, sizeof(hints_digest), "%s", hints ? li->hints_digest : "");
	if (config && li->config_json) { /* `anole run` builds its bundle from it */
		*config = li->config_json;
		li->config_json = NULL;
	}
	anole_lazy_free(li);
	for (size_t i = 0; i < m->nblobs; i++)
		blob_vet(wk, &m->lblobs[i], false);

	r = attach(wk, m, fuse ? NULL : options, err);
	if (r >= 0 && hints_digest[0] && !fuse)
		load_mount_hints(wk, m, hints_digest, hints_size);
	struct program_span ps = {0};
	if (r >= 0 && m->hints && exec)
		ps = program_span(m, exec, config ? *config : NULL);
	/* (FUSE threads take wk->lock to wait for data: mount without it) */
	bool fuse_failed = false;
	if (r >= 0 && fuse)
		fuse_failed = (r = fusefs_mount(m, m->devblobs, m->ndevs, options, &m->fs, err)) < 0;
	pthread_mutex_lock(&wk->lock);
	if (ps.argv0)
		start_program_hints(wk, m, &ps);
	for (size_t i = 0; fuse_failed && i < m->nblobs; i++)
		blob_put(wk, m->blobs[i]);
	if (r >= 0 && mtab_add(&wk->mtab, m) < 0) {
		r = anole_err(err, ENOMEM, "out of memory");
		if (m->fs) {
			finish_fuse(wk, m);
			m = NULL;
		} else {
			umount2(m->mountpoint, 0);
			for (size_t i = 0; i < m->nblobs; i++)
				blob_put(wk, m->blobs[i]);
		}
	}
	if (r >= 0) {
		save_mounts(wk);
		if (list)
			prefetch_list(wk, m, list);
		if (prefetch && !strcmp(prefetch, "all"))
			for (size_t i = 0; i < m->nblobs; i++)
				prefetch_blob(wk, m->blobs[i]);
	}
	json_decref(list);
	pthread_mutex_unlock(&wk->lock);
	mounts_flush(wk);
	if (r < 0) {
		mount_free(m);
		return r;
	}
	wlog("mounted %s on %s (%zu data blobs%s)", ref, real, m->nblobs, fuse ? ", FUSE" : "");
	return 0;
}

/* A local image file: nothing to fetch, the reader opens it and its
 * devices itself; FUSE serves it. */
static int image_setup(struct worker *wk, const char *image, const char *real, json_t *devices,
		       const char *options, struct anole_error *err)
{
	size_t n = json_array_size(devices);
	struct lmount *m = mount_new(wk);
	if (!m || !(m->mountpoint = strdup(real)) || !(m->ref = strdup(image)) ||
	    !(m->meta_path = strdup(image)) || !(m->devpaths = calloc(MAX(n, 1), sizeof(char *))))
		goto nomem;
	for (; m->ndevpaths < n; m->ndevpaths++) {
		const char *p = json_string_value(json_array_get(devices, m->ndevpaths));
		if (!(m->devpaths[m->ndevpaths] = strdup(p)))
			goto nomem;
	}
	m->fuse = m->local = true;
	int r = fusefs_mount(m, NULL, 0, options, &m->fs, err);
	if (r < 0) {
		mount_free(m);
		return r;
	}
	pthread_mutex_lock(&wk->lock);
	if (mtab_add(&wk->mtab, m) < 0) {
		finish_fuse(wk, m);
		pthread_mutex_unlock(&wk->lock);
		return anole_err(err, ENOMEM, "out of memory");
	}
	save_mounts(wk);
	pthread_mutex_unlock(&wk->lock);
	mounts_flush(wk);
	wlog("mounted %s on %s (%zu devices, FUSE)", image, real, n);
	return 0;
nomem:
	mount_free(m);
	return anole_err(err, ENOMEM, "out of memory");
}

int op_mount_image(struct worker *wk, const char *image, const char *mnt, json_t *devices,
		   const char *options, struct anole_error *err)
{
	char *mine;
	int r = reserve_mountpoint(wk, mnt, &mine, err);
	if (r < 0)
		return r;
	r = image_setup(wk, image, mine, devices, options, err);
	release_mountpoint(wk, mine);
	return r;
}

int op_mount(struct worker *wk, const char *ref, const char *mnt, int tls_verify,
	     const struct registry_creds *creds, const char *options, const char *prefetch,
	     bool fuse, bool record, const char *exec, bool hints, char *notice, size_t notice_size,
	     char **config, struct anole_error *err)
{
	/* cache gc waits while files are fetched for a mount and taken */
	int lock = serve_cache_lock(wk->files.cache_lock, LOCK_SH);
	int r = mount_locked(wk, ref, mnt, tls_verify, creds, options, prefetch, fuse, record, exec,
			     hints, notice, notice_size, config, err);
	if (lock >= 0)
		close(lock);
	return r;
}

/* @mnt's real path, or @mnt itself when it has none (a mount point gone
 * or lazily unmounted); malloc'd, NULL when out of memory. */
static char *real_or_given(const char *mnt)
{
	char *real = realpath(mnt, NULL);
	return real ? real : strdup(mnt);
}

json_t *op_trace(struct worker *wk, const char *mnt, struct anole_error *err)
{
	_cleanup_free_ char *real = real_or_given(mnt);
	if (!real) {
		anole_err(err, ENOMEM, "out of memory");
		return NULL;
	}
	pthread_mutex_lock(&wk->lock);
	struct lmount *m = mtab_find(&wk->mtab, real);
	json_t *out = NULL;
	if (!m || !m->record) {
		anole_err(err, ENOENT, "%s: no recording lazy mount there", real);
	} else {
		json_t *blobs = json_array(), *ranges = json_array();
		for (size_t k = 0; k < m->nblobs; k++)
			json_array_append_new(blobs, json_string(m->blobs[k]->digest));
		uint64_t bytes = 0;
		for (size_t i = 0; i < m->ntrace; i++) {
			const struct blob *b = m->blobs[m->trace[i][0]];
			uint64_t r = m->trace[i][1];
			bytes += r < b->nranges ? range_off(b, r + 1) - range_off(b, r) : 0;
			json_array_append_new(ranges, json_pack("[I,I]", (json_int_t)m->trace[i][0],
								(json_int_t)m->trace[i][1]));
		}
		/* "bytes": informative, for people reading the list */
		out = json_pack("{s:o,s:o,s:I}", "blobs", blobs, "ranges", ranges, "bytes",
				(json_int_t)bytes);
	}
	pthread_mutex_unlock(&wk->lock);
	return out;
}

/* A kernel mount gone behind our back may still be read: umount -l keeps
 * an EROFS alive while files are open. Its partial blobs keep their marks
 * (and the daemon stays) so such reads still wait for verified data. */
static void linger(struct worker *wk, struct lmount *m)
{
	for (size_t k = 0; k < m->nblobs; k++) {
		struct blob *b = m->blobs[k];
		if (!b)
			continue;
		struct blob **l = b->complete ? NULL
					      : realloc(wk->lingering, (wk->nlingering + 1) * sizeof(*l));
		if (l) {
			wk->lingering = l;
			l[wk->nlingering++] = b; /* its reference moves here */
		} else {
			blob_put(wk, b);
		}
	}
	m->nblobs = 0;
}

/* A FUSE mount's server stops without wk->lock (its threads take it), and
 * only then are its blobs and memory released. */
static void finish_fuse(struct worker *wk, struct lmount *m)
{
	pthread_mutex_unlock(&wk->lock);
	fusefs_unmount(m->fs);
	m->fs = NULL;
	pthread_mutex_lock(&wk->lock);
	for (size_t k = 0; k < m->nblobs; k++)
		blob_put(wk, m->blobs[k]);
	mount_free(m);
}

int op_umount(struct worker *wk, const char *mnt, bool *idle, struct anole_error *err)
{
	_cleanup_free_ char *real = real_or_given(mnt);
	if (!real)
		return anole_err(err, ENOMEM, "out of memory");
	pthread_mutex_lock(&wk->lock);
	int r = 0;
	size_t i = 0;
	while (i < wk->mtab.nmounts && strcmp(wk->mtab.mounts[i]->mountpoint, real))
		i++;
	if (i == wk->mtab.nmounts)
		r = anole_err(err, ENOENT, "%s: no lazy image is mounted there", real);
	else if (!wk->mtab.mounts[i]->fuse && umount2(real, 0) < 0 && errno != EINVAL)
		r = anole_err(err, errno, "%s: %s", real, strerror(errno));
	if (r >= 0) {
		struct lmount *m = mtab_take(&wk->mtab, i);
		save_mounts(wk);
		if (m->fuse) {
			finish_fuse(wk, m);
		} else {
			for (size_t k = 0; k < m->nblobs; k++)
				blob_put(wk, m->blobs[k]);
			mount_free(m);
		}
		wlog("unmounted %s", real);
	}
	*idle = !wk->mtab.nmounts;
	pthread_mutex_unlock(&wk->lock);
	mounts_flush(wk);
	return r;
}

/* The mount points of /proc/self/mountinfo, as written there (octal
 * escapes); read without entering the file systems (a statfs of a FUSE
 * mount would call into our own server). */
static char *read_mountinfo(void)
{
	struct strbuf sb = {0};
	_cleanup_close_ int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	char buf[8192];
	ssize_t n;
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		if (strbuf_add(&sb, buf, (size_t)n) < 0)
			break;
	strbuf_add(&sb, "", 1);
	return sb.buf;
}

static bool listed(const char *info, const char *path, bool fuse)
{
	/* " PATH " as mountinfo escapes it */
	struct strbuf sb = {0};
	int r = strbuf_add(&sb, " ", 1);
	for (const char *p = path; r >= 0 && *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
			r = strbuf_addf(&sb, "\\%03o", (unsigned char)*p);
		else
			r = strbuf_add(&sb, p, 1);
	}
	if (r < 0 || strbuf_add(&sb, " ", 1) < 0) {
		strbuf_release(&sb);
		return true; /* (out of memory: not known to be gone) */
	}
	_cleanup_free_ char *want = sb.buf;
	for (const char *line = info; line && *line;) {
		const char *end = strchrnul(line, '\n');
		/* field 5 is the mount point; the type follows " - " */
		const char *f = line;
		for (int k = 0; k < 4 && f < end; k++)
			f = memchr(f, ' ', (size_t)(end - f)) ? (char *)memchr(f, ' ', (size_t)(end - f)) + 1 : end;
		const char *dash = strstr(f, " - ");
		if (f > line && f < end && !strncmp(f - 1, want, strlen(want)) && dash && dash < end &&
		    !strncmp(dash + 3, fuse ? "fuse.anole " : "erofs ", fuse ? 11 : 6))
			return true;
		line = *end ? end + 1 : end;
	}
	return false;
}

/* Mounts someone unmounted without us (umount(8)); wk->lock held, may be
 * dropped (FUSE servers stop without it). */
void prune_mounts(struct worker *wk)
{
	_cleanup_free_ char *info = read_mountinfo();
	if (!info)
		return;
	for (size_t i = 0; i < wk->mtab.nmounts;) {
		struct lmount *m = wk->mtab.mounts[i];
		if (listed(info, m->mountpoint, m->fuse)) {
			i++;
			continue;
		}
		wlog("%s is no longer mounted; letting go of it", m->mountpoint);
		mtab_take(&wk->mtab, i);
		save_mounts(wk);
		if (m->fuse) {
			finish_fuse(wk, m); /* drops wk->lock: the list may change */
			i = 0;
		} else {
			linger(wk, m);
			mount_free(m);
		}
	}
}

/* Lingering blobs that completed need no mark any more. */
void release_lingering(struct worker *wk)
{
	for (size_t i = 0; i < wk->nlingering;) {
		if (!wk->lingering[i]->complete) {
			i++;
			continue;
		}
		blob_put(wk, wk->lingering[i]);
		wk->lingering[i] = wk->lingering[--wk->nlingering];
	}
}

/* After a restart: the mounts an earlier worker made, still mounted. */
static void restore_mounts(struct worker *wk)
{
	json_error_t je;
	_cleanup_close_ int fd = open(wk->files.mounts, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	json_t *a = fd >= 0 ? json_loadfd(fd, 0, &je) : NULL;
	if (!a)
		return;
	json_t *creds = json_load_file(wk->files.creds, 0, &je);
	size_t i;
	json_t *j;
	json_array_foreach(a, i, j) {
		const char *mnt = json_string_value(json_object_get(j, "mountpoint"));
		const char *ref = json_string_value(json_object_get(j, "ref"));
		const char *meta = json_string_value(json_object_get(j, "meta"));
		const char *man = json_string_value(json_object_get(j, "manifest"));
		json_t *blobs = json_object_get(j, "blobs");
		if (json_is_true(json_object_get(j, "fuse"))) {
			/* its server died with the last worker */
			if (mnt)
				umount2(mnt, MNT_DETACH);
			continue;
		}
		if (!mnt || !ref || !meta || !is_erofs_mount(mnt))
			continue;
		struct lmount *m = mount_new(wk);
		size_t n = json_array_size(blobs);
		if (!m || !(m->mountpoint = strdup(mnt)) || !(m->ref = strdup(ref)) ||
		    !(m->meta_path = strdup(meta)) ||
		    !(m->lblobs = calloc(MAX(n, 1), sizeof(*m->lblobs)))) {
			mount_free(m);
			continue;
		}
		m->restored = true;
		m->tls_verify = (int)json_integer_value(json_object_get(j, "tls_verify"));
		restore_credentials(m, creds);
		snprintf(m->manifest, sizeof(m->manifest), "%s", man ? man : "");
		size_t k;
		json_t *b;
		json_array_foreach(blobs, k, b) {
			struct anole_lazy_blob *lb = &m->lblobs[m->nblobs++];
			snprintf(lb->digest, sizeof(lb->digest), "%s",
				 json_string_value(json_object_get(b, "digest")) ?: "");
			snprintf(lb->digests, sizeof(lb->digests), "%s",
				 json_string_value(json_object_get(b, "digests")) ?: "");
			lb->size = (uint64_t)json_integer_value(json_object_get(b, "size"));
			lb->digests_size =
				(uint64_t)json_integer_value(json_object_get(b, "digests_size"));
			lb->cut_at_extents = json_is_true(json_object_get(b, "cut_at_extents"));
			snprintf(lb->chunks, sizeof(lb->chunks), "%s",
				 json_string_value(json_object_get(b, "chunks")) ?: "");
		}
		struct anole_error err = {0};
		for (size_t k2 = 0; k2 < m->nblobs; k2++)
			blob_vet(wk, &m->lblobs[k2], true);
		int r = attach(wk, m, NULL, &err);
		pthread_mutex_lock(&wk->lock);
		if (r >= 0 && mtab_add(&wk->mtab, m) < 0)
			r = -ENOMEM;
		pthread_mutex_unlock(&wk->lock);
		if (r < 0) {
			wlog("%s: cannot restore: %s", mnt, err.msg);
			mount_free(m);
			continue;
		}
		m->restored = false;
		wlog("restored %s on %s", ref, mnt);
	}
	json_decref(creds);
	json_decref(a);
	pthread_mutex_lock(&wk->lock);
	save_mounts(wk);
	pthread_mutex_unlock(&wk->lock);
	mounts_flush(wk);
}

/* ---- life ---------------------------------------------------------------------- */

static int bind_control(struct worker *wk, struct anole_error *err)
{
	const char *path = wk->files.sock;
	struct sockaddr_un sa;
	int r = serve_socket_addr(path, &sa, err);
	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return anole_err(err, errno, "%s: cannot listen: %s", path, strerror(errno));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		r = anole_err(err, errno, "%s: cannot listen: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	chmod(path, 0600);
	return fd;
}

/* Tell the client that started the daemon why it cannot serve, then go:
 * the holder backs off and tries again, then gives up. */
static void cannot_serve(struct worker *wk, const char *why)
{
	wlog("%s", why);
	if (wk->inherited.status >= 0) {
		char line[700];
		int n = snprintf(line, sizeof(line), "error %s\n", why);
		(void)!write(wk->inherited.status, line, (size_t)MIN(n, (int)sizeof(line) - 1));
	}
	_exit(WORKER_EXIT_NOSERVE);
}

void serve_worker(const struct holder_state *h)
{
	/* fetch buffers (up to 4 MiB) go back to the system when freed, and
	 * the threads share two arenas: the daemon stays small */
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
	mallopt(M_ARENA_MAX, 2);
	/* a cold load of libcurl (and the TLS and Kerberos libraries under
	 * it) takes tens of ms: done by the time the first mount asks */
	registry_preload();
	/* the daemon's one state, passed to whatever uses it; it lives as
	 * long as the process (serve_worker does not return) */
	struct worker *wk = calloc(1, sizeof(*wk));
	if (!wk) {
		wlog("out of memory");
		_exit(WORKER_EXIT_NOSERVE);
	}
	pthread_mutex_init(&wk->lock, NULL);
	pthread_cond_init(&wk->jobs_cond, NULL);
	pthread_mutex_init(&wk->send_lock, NULL);
	pthread_mutex_init(&wk->files_lock, NULL);
	wk->ctl_fd = -1;
	wk->direct_ids = 1ull << 62; /* apart from the holder's */
	serve_paths_init(&wk->paths);
	struct anole_error e = {0};
	if (serve_files_init(&wk->files, &wk->paths, &e) < 0) {
		wlog("%s", e.msg);
		_exit(WORKER_EXIT_NOSERVE);
	}
	wk->group = h->group;
	snprintf(wk->no_kernel_why, sizeof(wk->no_kernel_why), "%s", h->no_group_why);
	wk->holder = h->sock;
	wk->inherited = *h;
	/* the events' descriptors are the holder's to answer with */
	for (size_t i = 0; i < h->npending; i++)
		close(h->pending[i].fd);
	wk->started = time(NULL);
	if (serve_paths_check(&wk->paths, true, &e) < 0)
		cannot_serve(wk, e.msg);
	restore_mounts(wk);
	/* kept descriptors nobody claimed belong to blobs no longer mounted */
	for (size_t i = 0; i < wk->inherited.nkept; i++)
		if (wk->inherited.kept[i].fd >= 0) {
			holder_drop(wk, wk->inherited.kept[i].tag);
			close(wk->inherited.kept[i].fd);
		}
	if (start_fetchers(wk) < 0) {
		wlog("cannot start fetch threads");
		_exit(1);
	}
	if (holder_link_start(wk, h) < 0) {
		wlog("cannot start the event thread");
		_exit(1);
	}
	/* mounts an earlier worker made are served with or without a socket */
	int ctl = bind_control(wk, &e);
	if (ctl < 0) {
		if (!wk->mtab.nmounts)
			cannot_serve(wk, e.msg);
		wlog("%s; serving the %zu restored mounts without it", e.msg, wk->mtab.nmounts);
	} else {
		char line[32];
		snprintf(line, sizeof(line), "%d\n", (int)getpid());
		outfile_write(wk->files.daemon_pid, line, strlen(line));
		if (wk->inherited.status >= 0)
			close(wk->inherited.status);
		wk->inherited.status = -1;
		struct hmsg m = {.type = HMSG_READY};
		holder_send(wk, &m, -1);
	}
	wlog("serving (pid %d, %zu mounts restored, %zu reads waiting)", (int)getpid(), wk->mtab.nmounts,
	     h->npending);
	control_loop(wk, ctl);
}
