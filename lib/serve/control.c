/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's control socket: one JSON request per connection, one JSON
 * reply. Requests: mount, umount, trace, status, metrics. The daemon ends when
 * nothing is mounted and no request is under way.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve/paths.h"
#include "serve/request.h"
#include "serve/worker.h"

#define MAX_REQUEST (64u << 10)

static json_t *blob_status(const struct blob *b)
{
	uint64_t present = blob_present(b), bytes = b->complete ? b->size : 0;
	for (uint64_t i = 0; !b->complete && i < b->nranges; i++)
		if (b->state[i] == RANGE_PRESENT)
			bytes += range_off(b, i + 1) - range_off(b, i);
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:s}", "digest",
			 b->digest, "size", (json_int_t)b->size, "ranges", (json_int_t)b->nranges,
			 "ranges_present", (json_int_t)present, "bytes_cached", (json_int_t)bytes,
			 "complete", b->complete, "bytes_fetched", (json_int_t)b->fetched_bytes,
			 "bytes_read", (json_int_t)b->read_bytes,
			 "fetch_requests", (json_int_t)b->fetches, "failures",
			 (json_int_t)b->failures, "readers_waiting", (json_int_t)b->waiting,
			 "path", b->path);
}

static json_t *status_json(struct worker *wk)
{
	json_t *mounts = json_array(), *blobs = json_array();
	uint64_t cached = 0, total = 0;
	for (size_t i = 0; i < wk->mtab.nmounts; i++) {
		const struct lmount *m = wk->mtab.mounts[i];
		json_t *digests = json_array(), *uses = json_array();
		const char *meta = strrchr(m->meta_path, '/');
		if (meta)
			json_array_append_new(uses, json_sprintf("sha256:%s", meta + 1));
		for (size_t k = 0; k < m->nblobs; k++) {
			json_array_append_new(digests, json_string(m->blobs[k]->digest));
			json_array_append_new(uses, json_string(m->lblobs[k].digest));
			json_array_append_new(uses, json_string(m->lblobs[k].digests));
			json_array_append_new(uses, json_string(m->lblobs[k].chunks));
		}
		json_array_append_new(mounts, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "mountpoint",
							m->mountpoint, "ref", m->ref, "manifest",
							m->manifest, "path", m->fuse ? "fuse" : "kernel",
							"blobs", digests, "uses", uses));
	}
	for (const struct blob *b = wk->blobs; b; b = b->next) {
		json_t *j = blob_status(b);
		cached += (uint64_t)json_integer_value(json_object_get(j, "bytes_cached"));
		total += b->size;
		json_array_append_new(blobs, j);
	}
	size_t queued = 0;
	for (const struct job *j = wk->q.demand; j; j = j->next)
		queued++;
	for (const struct job *j = wk->q.listed; j; j = j->next)
		queued++;
	for (const struct job *j = wk->q.background; j; j = j->next)
		queued++;
	const struct worker_counters *c = &wk->count;
	return json_pack("{s:i, s:I, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:I, s:I}",
			 "pid", (int)getpid(), "started", (json_int_t)wk->started, "cache",
			 wk->paths.cache, "mounts", mounts, "blobs", blobs, "bytes_total",
			 (json_int_t)total, "bytes_cached", (json_int_t)cached, "bytes_fetched",
			 (json_int_t)c->fetched_bytes, "bytes_read", (json_int_t)c->read_bytes,
			 "fetch_requests", (json_int_t)c->fetch_requests, "fetch_errors",
			 (json_int_t)c->fetch_errors, "events", (json_int_t)c->events,
			 "events_pending", (json_int_t)c->npending_events, "reads_failed",
			 (json_int_t)c->denied, "jobs_queued", (json_int_t)queued, "read_waits",
			 (json_int_t)c->read_waits, "read_wait_us", (json_int_t)c->read_wait_us);
}

/* Prometheus text format, from the status. */
static char *metrics_text(json_t *st)
{
	struct strbuf out = {0};
	char line[512];
	static const struct {
		const char *key, *name, *type, *help;
	} g[] = {
		{"bytes_total", "anole_blob_bytes", "gauge", "Bytes of the data blobs in use."},
		{"bytes_cached", "anole_cache_bytes", "gauge", "Verified bytes of them in the cache."},
		{"bytes_fetched", "anole_fetched_bytes_total", "counter", "Bytes fetched."},
		{"bytes_read", "anole_read_bytes_total", "counter",
		 "Distinct bytes of partly fetched blobs that reads asked for."},
		{"fetch_requests", "anole_fetch_requests_total", "counter", "Range requests made."},
		{"fetch_errors", "anole_fetch_errors_total", "counter",
		 "Failed or unverifiable fetches."},
		{"events", "anole_read_events_total", "counter", "Reads the kernel asked about."},
		{"events_pending", "anole_read_events_pending", "gauge", "Reads waiting for data."},
		{"reads_failed", "anole_reads_failed_total", "counter", "Reads answered with EIO."},
		{"jobs_queued", "anole_fetch_jobs_queued", "gauge", "Fetches waiting for a thread."},
		{"read_waits", "anole_read_waits_total", "counter", "Reads that waited for a fetch."},
	};
	for (size_t i = 0; i < ARRAY_SIZE(g); i++) {
		int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", g[i].name,
				 g[i].help, g[i].name, g[i].type, g[i].name,
				 (long long)json_integer_value(json_object_get(st, g[i].key)));
		strbuf_add(&out, line, (size_t)n);
	}
	int n = snprintf(line, sizeof(line),
			 "# HELP anole_read_wait_seconds_total Time reads spent waiting for "
			 "fetches.\n# TYPE anole_read_wait_seconds_total counter\n"
			 "anole_read_wait_seconds_total %.6f\n",
			 (double)json_integer_value(json_object_get(st, "read_wait_us")) / 1e6);
	strbuf_add(&out, line, (size_t)n);
	n = snprintf(line, sizeof(line),
			 "# HELP anole_mounts Lazy images mounted.\n# TYPE anole_mounts gauge\n"
			 "anole_mounts %zu\n",
			 json_array_size(json_object_get(st, "mounts")));
	strbuf_add(&out, line, (size_t)n);
	strbuf_add(&out, "", 1);
	return out.buf;
}

/* metrics.prom as the counters are now (wk->lock held), numbered. */
static char *metrics_render(struct worker *wk, uint64_t *seq)
{
	json_t *st = status_json(wk);
	char *text = metrics_text(st);
	json_decref(st);
	*seq = ++wk->metrics_seq;
	return text;
}

/* Write rendered metrics unless newer ones were written already (with or
 * without wk->lock: files_lock orders the writers). Frees @text. */
static void metrics_write(struct worker *wk, char *text, uint64_t seq)
{
	pthread_mutex_lock(&wk->files_lock);
	if (text && seq > wk->metrics_written) {
		outfile_write(wk->files.metrics, text, strlen(text));
		wk->metrics_written = seq;
	}
	pthread_mutex_unlock(&wk->files_lock);
	free(text);
}

static void write_metrics_file(struct worker *wk)
{
	uint64_t seq;
	char *text = metrics_render(wk, &seq);
	metrics_write(wk, text, seq);
}

static void reply(int fd, json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!text)
		return;
	size_t len = strlen(text);
	text[len] = '\n';
	write_full(fd, text, len + 1);
	free(text);
}

static json_t *error_json(const struct anole_error *err, int r)
{
	return json_pack("{s:s}", "error", err->msg[0] ? err->msg : strerror(-r));
}

static void maybe_quit(struct worker *wk)
{
	/* lingering blobs may still be read by a lazily unmounted EROFS;
	 * a fetch whose reader has its bytes is still making them durable
	 * and recording them in the blob's ranges map (persist_job): leaving
	 * now would lose ranges the last reads fetched */
	if (wk->mtab.nmounts || wk->ops || wk->nlingering || wk->mtab.nmounting ||
	    wk->jobs_running)
		return;
	struct pollfd p = {.fd = wk->ctl_fd, .events = POLLIN};
	if (wk->ctl_fd >= 0 && poll(&p, 1, 0) > 0)
		return; /* a client is at the door */
	/* nothing mounted: no reader can need us; the holder ends with us */
	mounts_flush_locked(wk);
	write_metrics_file(wk);
	struct hmsg m = {.type = HMSG_QUIT};
	send(wk->holder, &m, sizeof(m), MSG_NOSIGNAL);
	unlink(wk->files.sock);
	unlink(wk->files.daemon_pid);
	if (wk->direct) /* the holder died without cleaning up */
		unlink(wk->files.holder_pid);
	const struct worker_counters *c = &wk->count;
	wlog("nothing mounted; exiting (fetched %llu bytes in %llu requests; reads asked for "
	     "%llu distinct bytes of partial blobs; %llu reads waited %.3f s in all; load hints "
	     "of %llu programs)",
	     (unsigned long long)c->fetched_bytes, (unsigned long long)c->fetch_requests,
	     (unsigned long long)c->read_bytes, (unsigned long long)c->read_waits,
	     (double)c->read_wait_us / 1e6, (unsigned long long)c->hint_programs);
	_exit(0);
}

/* What a VM needs to read the lazy mount at @mnt as the host kernel does
 * (anole run --vm): the metadata image and the blob files in device table
 * order, each where it is now and where it goes once complete (a partial
 * blob is renamed then: same file, same marks). "path": kernel or fuse;
 * only the kernel path's blob files fetch what a reader misses. */
static json_t *mount_files(struct worker *wk, const char *mnt)
{
	char *real = realpath(mnt, NULL);
	json_t *out = NULL;
	pthread_mutex_lock(&wk->lock);
	const struct lmount *m = real ? mtab_find(&wk->mtab, real) : NULL;
	if (m) {
		json_t *devs = json_array();
		for (size_t i = 0; i < m->ndevs; i++) {
			struct blob_paths bp;
			if (blob_paths_init(&bp, wk->paths.cache, m->devblobs[i]->digest) < 0)
				continue; /* (the client sees a short list and refuses) */
			json_array_append_new(devs, json_pack("{s:s, s:s}", "path",
							      m->devblobs[i]->path, "complete",
							      bp.complete));
			blob_paths_release(&bp);
		}
		out = json_pack("{s:s, s:s, s:o}", "path", m->fuse ? "fuse" : "kernel", "meta",
				m->meta_path, "devices", devs);
	}
	pthread_mutex_unlock(&wk->lock);
	free(real);
	return out;
}

static void handle(struct worker *wk, int fd)
{
	_cleanup_free_ char *buf = malloc(MAX_REQUEST);
	size_t len = 0;
	while (buf && len < MAX_REQUEST) {
		ssize_t n = read(fd, buf + len, MAX_REQUEST - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n))
			break;
	}
	if (!buf || !len)
		return;
	struct ctl_request req;
	char why[160];
	struct anole_error err = {0};
	int r;
	if (ctl_request_parse(buf, len, &req, why, sizeof(why)) < 0) {
		reply(fd, json_pack("{s:s}", "error", why));
		return;
	}
	switch (req.op) {
	case CTL_MOUNT: {
		if (req.has_prefetch_rate)
			wk->prefetch_rate = req.prefetch_rate;
		char notice[512] = "";
		char *config = NULL;
		struct registry_creds creds = {.basic = (char *)req.cred_basic,
					       .identity_token = (char *)req.cred_token};
		struct stat st;
		/* an image file (anole mount --fuse IMAGE), not a lazy image */
		if (req.devices || (!stat(req.ref, &st) && S_ISREG(st.st_mode)))
			r = op_mount_image(wk, req.ref, req.mountpoint, req.devices, req.options, &err);
		else
			r = op_mount(wk, req.ref, req.mountpoint, req.tls_verify, &creds, req.options,
				     req.prefetch, req.fuse, req.record, req.exec,
				     !req.no_load_hints, notice, sizeof(notice), &config, &err);
		/* (as an object: it is JSON, and only well-formed JSON may pass) */
		json_t *cj = config ? json_loads(config, 0, NULL) : NULL;
		free(config);
		json_t *files = r >= 0 && !req.devices ? mount_files(wk, req.mountpoint) : NULL;
		reply(fd, r < 0 ? (json_decref(cj), error_json(&err, r))
			       : json_pack("{s:b, s:s, s:o?, s:o?}", "ok", 1, "notice", notice,
					   "config", cj, "files", files));
		break;
	}
	case CTL_UMOUNT: {
		bool idle = false;
		r = op_umount(wk, req.mountpoint, &idle, &err);
		reply(fd, r < 0 ? error_json(&err, r) : json_pack("{s:b}", "ok", 1));
		break;
	}
	case CTL_TRACE: {
		json_t *t = op_trace(wk, req.mountpoint, &err);
		reply(fd, t ? t : error_json(&err, -EINVAL));
		break;
	}
	case CTL_STATUS:
	case CTL_METRICS: {
		pthread_mutex_lock(&wk->lock);
		json_t *st = status_json(wk);
		pthread_mutex_unlock(&wk->lock);
		if (req.op == CTL_STATUS) {
			reply(fd, st);
			break;
		}
		char *text = metrics_text(st);
		json_decref(st);
		reply(fd, json_pack("{s:s}", "metrics", text ? text : ""));
		free(text);
		break;
	}
	}
	ctl_request_release(&req);
}

/* What a client's thread is started with. */
struct client_arg {
	struct worker *wk;
	int fd;
};

static void *client_thread(void *arg)
{
	struct client_arg ca = *(struct client_arg *)arg;
	free(arg);
	struct worker *wk = ca.wk;
	int fd = ca.fd;
	handle(wk, fd);
	close(fd);
	pthread_mutex_lock(&wk->lock);
	wk->ops--;
	maybe_quit(wk);
	pthread_mutex_unlock(&wk->lock);
	return NULL;
}

/* The metrics file, every few seconds while the daemon runs. */
static void *metrics_thread(void *arg)
{
	struct worker *wk = arg;
	for (;;) {
		sleep(2);
		pthread_mutex_lock(&wk->lock);
		prune_mounts(wk);
		release_lingering(wk);
		maybe_quit(wk);
		uint64_t seq;
		char *metrics = metrics_render(wk, &seq);
		pthread_mutex_unlock(&wk->lock);
		/* the files are written without the lock */
		mounts_flush(wk);
		metrics_write(wk, metrics, seq);
	}
	return NULL;
}

void control_loop(struct worker *wk, int ctl)
{
	wk->ctl_fd = ctl;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_create(&t, &a, metrics_thread, wk);
	if (ctl < 0) /* no socket: only the mounts a restart restored */
		for (;;)
			pause();
	for (;;) {
		int fd = accept4(ctl, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&wk->lock);
		wk->ops++;
		pthread_mutex_unlock(&wk->lock);
		struct client_arg *ca = malloc(sizeof(*ca));
		if (ca)
			*ca = (struct client_arg){.wk = wk, .fd = fd};
		if (!ca || pthread_create(&t, &a, client_thread, ca)) {
			free(ca);
			close(fd);
			pthread_mutex_lock(&wk->lock);
			wk->ops--;
			pthread_mutex_unlock(&wk->lock);
		}
	}
}
