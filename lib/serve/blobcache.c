/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The blob cache: the cache file behind each data blob of a mounted
 * image (blobcache.h says what a blob is and how it lives). Paths,
 * lookup, reference counts, the ranges map, vetting what an earlier
 * daemon left, completion.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lazy/lazy.h"
#include "serve/fan.h"
#include "serve/paths.h"
#include "serve/worker.h"

struct blob *blob_find(struct worker *wk, const char *digest)
{
	for (struct blob *b = wk->blobs; b; b = b->next)
		if (!strcmp(b->digest, digest))
			return b;
	return NULL;
}

static int kept_fd(struct worker *wk, const char *digest)
{
	for (size_t i = 0; i < wk->inherited.nkept; i++)
		if (!strcmp(wk->inherited.kept[i].tag, digest)) {
			int fd = wk->inherited.kept[i].fd;
			wk->inherited.kept[i].fd = -1; /* taken */
			return fd;
		}
	return -1;
}

static void blob_free(struct blob *b)
{
	if (b->fd >= 0)
		close(b->fd);
	if (b->mapfd >= 0)
		close(b->mapfd);
	digest_table_release(&b->table);
	free(b->extents);
	store_free(b->src);
	free(b->state);
	free(b->readmap);
	free(b->failed_until);
	free(b->path);
	free(b);
}

/* RUNTIME/verified: complete blobs known to hash to their digest, one
 * line per file as it was then (a file changed or put in its place has
 * another ctime or inode). Hashing a big blob at every mount would cost
 * a warm mount about 3 ms per MB here; this way it costs once per file
 * and boot (the runtime directory is a tmpfs). */
static void ledger_line(const char *digest, const struct stat *st, char *line, size_t size)
{
	snprintf(line, size, "%s %llu %llu %llu %lld.%09ld %lld.%09ld\n", digest,
		 (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
		 (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

static bool ledger_has(struct worker *wk, const char *digest, const struct stat *st)
{
	char line[256];
	ledger_line(digest, st, line, sizeof(line));
	_cleanup_fclose_ FILE *f = NULL;
	int fd = open(wk->files.verified, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || !(f = fdopen(fd, "r"))) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	char have[256];
	while (fgets(have, sizeof(have), f))
		if (!strcmp(have, line))
			return true;
	return false;
}

static void ledger_add(struct worker *wk, const char *digest, const struct stat *st)
{
	char line[256];
	ledger_line(digest, st, line, sizeof(line));
	_cleanup_close_ int fd = open(wk->files.verified, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		(void)!write(fd, line, strlen(line));
}

/* The blob is all there: unmark it and move it among the complete blobs.
 * The data reaches the disk before the rename, so a complete name always
 * means verified bytes on disk. */
void complete_blob_locked(struct worker *wk, struct blob *b)
{
	_cleanup_blob_paths_ struct blob_paths bp;
	if (blob_paths_init(&bp, wk->paths.cache, b->digest) < 0) {
		wlog("blob %.19s: out of memory", b->digest);
		return;
	}
	const char *partial = bp.partial, *complete = bp.complete;
	if (fdatasync(b->fd) < 0) {
		wlog("%s: %s", partial, strerror(errno));
		return;
	}
	if (b->marked && fanotify_mark(wk->group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, AT_FDCWD, partial) < 0)
		wlog("%s: unmark: %s", partial, strerror(errno));
	b->marked = false;
	if (rename(partial, complete) < 0) {
		wlog("%s: %s", complete, strerror(errno));
		return;
	}
	struct stat st;
	if (!fstat(b->fd, &st)) /* verified range by range, and ours */
		ledger_add(wk, b->digest, &st);
	unlink(bp.map);
	close(b->fd);
	close(b->mapfd);
	b->fd = b->mapfd = -1;
	b->complete = true;
	free(b->path);
	b->path = bp.complete;
	bp.complete = NULL;
	holder_drop(wk, b->digest);
	wlog("blob %.19s complete (%llu bytes fetched in %llu requests)", b->digest,
	     (unsigned long long)b->fetched_bytes, (unsigned long long)b->fetches);
}

/* The map starts with the SHA-256 of the digest table its bytes count
 * ranges of: the same blob under another table (a version 1 and a
 * version 2 conversion of the same data) cuts other ranges, and its
 * bytes would claim ranges never fetched. Any other map starts over. */
static int open_map(struct blob *b, const char *map, const char *table_digest, bool fresh,
		    struct anole_error *err)
{
	struct digest want, have;
	if (digest_parse(table_digest, &want) < 0)
		return anole_err(err, EBADMSG, "%s: bad digest table digest", map);
	b->mapfd = open(map, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fresh ? O_TRUNC : 0), 0600);
	if (b->mapfd < 0)
		return anole_err(err, errno, "%s: %s", map, strerror(errno));
	b->state = calloc(MAX(b->nranges, 1), 1);
	if (!b->state)
		return anole_err(err, ENOMEM, "out of memory");
	struct stat st;
	if (!fresh && !fstat(b->mapfd, &st) && (uint64_t)st.st_size == RANGES_MAP_HEAD + b->nranges &&
	    pread_full(b->mapfd, &have, sizeof(have), 0) >= 0 && !memcmp(&have, &want, sizeof(want)) &&
	    pread_full(b->mapfd, b->state, b->nranges, RANGES_MAP_HEAD) >= 0) {
		for (uint64_t i = 0; i < b->nranges; i++)
			b->state[i] = b->state[i] == 1 ? RANGE_PRESENT : RANGE_ABSENT;
		return 0;
	}
	memset(b->state, RANGE_ABSENT, b->nranges);
	if (ftruncate(b->mapfd, 0) < 0 || pwrite_full(b->mapfd, &want, sizeof(want), 0) < 0 ||
	    ftruncate(b->mapfd, (off_t)(RANGES_MAP_HEAD + b->nranges)) < 0)
		return anole_err(err, errno, "%s: %s", map, strerror(errno));
	return 0;
}

uint64_t blob_present(const struct blob *b)
{
	if (b->complete)
		return b->nranges;
	uint64_t n = 0;
	for (uint64_t i = 0; i < b->nranges; i++)
		n += b->state[i] == RANGE_PRESENT;
	return n;
}

static bool holder_keeps(struct worker *wk, const char *digest)
{
	for (size_t i = 0; i < wk->inherited.nkept; i++)
		if (wk->inherited.kept[i].fd >= 0 && !strcmp(wk->inherited.kept[i].tag, digest))
			return true;
	return false;
}

/* Does the complete blob at @path hash to its digest (or did this file
 * already, by the ledger)? */
static bool vet_complete(struct worker *wk, const struct anole_lazy_blob *lb, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	struct digest want, got;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != lb->size)
		return fd < 0 && errno != ELOOP; /* (absent, or not the blob: not used) */
	if (ledger_has(wk, lb->digest, &st))
		return true;
	if (digest_parse(lb->digest, &want) < 0 || sha256_fd(fd, 0, lb->size, &got) < 0 ||
	    memcmp(&got, &want, sizeof(got)))
		return false;
	ledger_add(wk, lb->digest, &st);
	return true;
}

/* Present ranges of a partial blob from before this daemon, hashed
 * against its digest table: a range that differs is fetched again. */
static void vet_partial(struct worker *wk, const struct anole_lazy_blob *lb, const char *partial,
			const char *map)
{
	_cleanup_close_ int fd = open(partial, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	_cleanup_close_ int mfd = fd >= 0 ? open(map, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
					  : -1;
	struct stat st;
	struct digest want, have;
	/* (any other file or map is started over by get_blob) */
	if (mfd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != lb->size || digest_parse(lb->digests, &want) < 0 ||
	    pread_full(mfd, &have, sizeof(have), 0) < 0 || memcmp(&have, &want, sizeof(want)))
		return;
	struct digest_table t;
	struct anole_error e = {0};
	if (lazy_blob_table(wk->paths.cache, lb, &t, &e) < 0)
		return;
	int bad = !fstat(mfd, &st) && (uint64_t)st.st_size == RANGES_MAP_HEAD + t.head.count
			  ? cache_check_ranges(fd, mfd, &t)
			  : 0;
	digest_table_release(&t);
	/* ranges not hashed (a read error, no memory) are not trusted: an
	 * emptied map makes get_blob start the blob over */
	if (bad < 0 && ftruncate(mfd, 0) < 0)
		wlog("blob %.19s: cannot empty its ranges map: %s", lb->digest, strerror(errno));
	if (bad)
		wlog("blob %.19s: %d cached ranges do not match its digest table%s; fetched again",
		     lb->digest, bad < 0 ? 0 : bad, bad < 0 ? " (or cannot be read)" : "");
}

/* What the cache holds from before this daemon is not trusted by name:
 * a complete blob must hash to its digest (else it goes, and is fetched
 * again), a partial one's present ranges to its table. Blobs this daemon
 * holds already (or its holder keeps) it wrote itself. A restored
 * mount's complete blob is what the kernel reads already: not checked.
 * Without wk->lock: hashing a big blob must not stop the readers. */
void blob_vet(struct worker *wk, const struct anole_lazy_blob *lb, bool restoring)
{
	pthread_mutex_lock(&wk->lock);
	bool ours = blob_find(wk, lb->digest) || holder_keeps(wk, lb->digest);
	pthread_mutex_unlock(&wk->lock);
	if (ours || digest_parse(lb->digest, &(struct digest){0}) < 0)
		return;
	_cleanup_blob_paths_ struct blob_paths bp;
	if (blob_paths_init(&bp, wk->paths.cache, lb->digest) < 0)
		return; /* (the mount fails for want of memory too) */
	struct stat st;
	if (!restoring && !lstat(bp.complete, &st) && !vet_complete(wk, lb, bp.complete)) {
		wlog("blob %.19s in the cache does not match its digest: removed, fetched again",
		     lb->digest);
		unlink(bp.complete);
	}
	vet_partial(wk, lb, bp.partial, bp.map);
}

/* A blob of an image being mounted, shared with other mounts; wk->lock held. */
int blob_get(struct worker *wk, const struct anole_lazy_blob *lb, const char *ref,
		    int tls_verify, const struct registry_creds *creds, bool mark,
		    struct blob **out, struct anole_error *err)
{
	struct blob *b = blob_find(wk, lb->digest);
	if (b && b->orphan) {
		/* its last mount went while a fetch ran: take it back */
		b->orphan = false;
	}
	if (b) {
		if (b->size != lb->size)
			return anole_err(err, EBADMSG, "blob %s: %llu bytes, another image says %llu",
					 lb->digest, (unsigned long long)lb->size,
					 (unsigned long long)b->size);
		/* a FUSE mount made it unmarked; its descriptor predates the
		 * mark, so it still writes without events */
		if (mark && !b->complete && !b->marked) {
			if (fanotify_mark(wk->group, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, b->path) < 0)
				return anole_err(err, errno, "%s: fanotify mark: %s", b->path,
						 strerror(errno));
			b->marked = true;
		}
		b->refs++;
		*out = b;
		return 0;
	}
	_cleanup_blob_paths_ struct blob_paths bp;
	if (blob_paths_init(&bp, wk->paths.cache, lb->digest) < 0)
		return anole_err(err, ENOMEM, "out of memory");
	const char *partial = bp.partial, *map = bp.map, *complete = bp.complete;
	b = calloc(1, sizeof(*b));
	if (!b)
		return anole_err(err, ENOMEM, "out of memory");
	b->fd = b->mapfd = -1;
	b->refs = 1;
	b->size = lb->size;
	/* a complete blob needs no table: count it in the biggest ranges */
	b->nranges = DIV_ROUND_UP(lb->size, 1ull << ANOLE_RANGE_BITS_MAX);
	snprintf(b->digest, sizeof(b->digest), "%s", lb->digest);
	int r = store_open_as(ref, tls_verify, creds, false, &b->src, err);
	struct stat st;
	if (r >= 0 && !lstat(complete, &st) && S_ISREG(st.st_mode) && (uint64_t)st.st_size == b->size) {
		/* complete blobs were verified whole before they got this name,
		 * and again if they came from before this daemon (vet_blob) */
		b->complete = true;
		b->path = bp.complete;
		bp.complete = NULL;
		int fd = kept_fd(wk, lb->digest);
		if (fd >= 0) { /* the holder's copy is not needed either */
			close(fd);
			holder_drop(wk, b->digest);
		}
		goto done;
	}
	if (r >= 0)
		r = lazy_blob_table(wk->paths.cache, lb, &b->table, err);
	if (r < 0)
		goto fail;
	b->nranges = b->table.head.count;
	struct anole_error e = {0};
	if (!lb->cut_at_extents &&
	    lazy_blob_extents(wk->paths.cache, lb, &b->extents, &b->nextents, &e) < 0)
		wlog("blob %.19s: reads fetch only the ranges they ask for: %s", lb->digest, e.msg);
	b->path = bp.partial;
	bp.partial = NULL;
	/* a descriptor from before the mark: inherited from the holder
	 * (an earlier worker made it), or made now, before marking */
	b->fd = kept_fd(wk, lb->digest);
	bool fresh = false;
	if (b->fd < 0) {
		if (mkdir(wk->files.partial, 0700) < 0 && errno != EEXIST) {
			r = anole_err(err, errno, "%s: %s", wk->files.partial, strerror(errno));
			goto fail;
		}
		/* a file marked by a dead group is fine: the mark went with it */
		b->fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (b->fd < 0 || fstat(b->fd, &st) < 0) {
			r = anole_err(err, errno, "%s: %s", partial, strerror(errno));
			goto fail;
		}
		if ((uint64_t)st.st_size != b->size) {
			fresh = true;
			if (ftruncate(b->fd, 0) < 0 || ftruncate(b->fd, (off_t)b->size) < 0) {
				r = anole_err(err, errno, "%s: %s", partial, strerror(errno));
				goto fail;
			}
		}
		/* the holder keeps the descriptor before the file is marked: a
		 * worker dying in between leaves no marked file without one */
		struct hmsg m = {.type = HMSG_KEEP};
		snprintf(m.tag, sizeof(m.tag), "%s", b->digest);
		holder_send(wk, &m, b->fd);
		b->kept = true;
	} else {
		b->kept = true;
	}
	if (mark && fanotify_mark(wk->group, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, partial) < 0) {
		r = anole_err(err, errno, "%s: fanotify mark: %s", partial, strerror(errno));
		goto fail;
	}
	b->marked = mark;
	if (fstat(b->fd, &st) < 0) {
		r = anole_err(err, errno, "%s: %s", partial, strerror(errno));
		goto fail;
	}
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	if ((r = open_map(b, map, lb->digests, fresh, err)) < 0)
		goto fail;
	if (blob_present(b) == b->nranges)
		complete_blob_locked(wk, b);
done:
	b->next = wk->blobs;
	wk->blobs = b;
	*out = b;
	return 0;
fail:
	if (b->marked)
		fanotify_mark(wk->group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, AT_FDCWD, partial);
	if (b->kept)
		holder_drop(wk, b->digest);
	blob_free(b);
	return r;
}

/* wk->lock held. A partial blob nobody mounts keeps its cache file, not its
 * mark (no reader can reach it). */
void blob_put(struct worker *wk, struct blob *b)
{
	if (--b->refs)
		return;
	cancel_jobs(wk, b);
	if (b->busy) {
		b->orphan = true; /* the fetch thread frees it */
		return;
	}
	for (struct blob **p = &wk->blobs; *p; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (b->marked)
		fanotify_mark(wk->group, FAN_MARK_REMOVE, FAN_PRE_ACCESS, AT_FDCWD, b->path);
	if (!b->complete)
		holder_drop(wk, b->digest);
	blob_free(b);
}

void blob_release(struct worker *wk, struct blob *b)
{
	b->orphan = false;
	b->refs = 1;
	blob_put(wk, b);
}

/* wk->lock held. Counts each 4 KiB page once (bench and status only). */
void note_read_locked(struct worker *wk, struct blob *b, uint64_t off, uint64_t len)
{
	if (!len || off >= b->size)
		return;
	len = MIN(len, b->size - off);
	uint64_t pages = (b->size + 4095) / 4096;
	if (!b->readmap && !(b->readmap = calloc((size_t)((pages + 7) / 8), 1)))
		return;
	for (uint64_t p = off / 4096; p <= (off + len - 1) / 4096; p++) {
		if (b->readmap[p / 8] & (1u << (p % 8)))
			continue;
		b->readmap[p / 8] |= (uint8_t)(1u << (p % 8));
		uint64_t n = MIN(4096, b->size - p * 4096);
		b->read_bytes += n;
		wk->count.read_bytes += n;
	}
}
