/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pulling a lazy image: every blob copied into a local layout only once
 * its bytes checked out, and what a lazy mount needs fetched before it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <jansson.h>
#include <sys/stat.h>
#include <zstd.h>

#include "anole/erofs_fs.h"
#include "anole/lazy_fs.h"
#include "erofs/blobmeta.h"
#include "lazy/lazy_int.h"
#include "util/digest.h"
#include "util/safefs.h"

/* ---- verified copies -------------------------------------------------------- */

/* Copy blob @digest of @size bytes from @src to @path (the layout's blob
 * path) only once every byte checked out: against @table range by range
 * when given, and against the digest as a whole. */
static int fetch_verified(struct store *src, const char *digest, uint64_t size,
			  const struct digest_table *table, const char *path, struct anole_error *err)
{
	struct digest want;
	if (digest_parse(digest, &want) < 0)
		return anole_err(err, EBADMSG, "%s: bad digest %.80s", src->name, digest);
	/* table ranges, else any read size: the whole digest is checked too */
	uint64_t range = table ? MAX(table->max_len, 1) : ANOLE_RANGE_MAX, off = 0;
	_cleanup_free_ char *buf = malloc(range);
	if (!buf)
		return anole_err(err, ENOMEM, "out of memory");
	struct outfile out;
	int r = outfile_open(&out, path);
	if (r < 0)
		return anole_err(err, -r, "%s: %s", path, strerror(-r));
	int fd = -1;
	struct registry_fetch *f = NULL;
	struct sha256_stream *h = sha256_stream_new();
	if (!h)
		r = anole_err(err, ENOMEM, "out of memory");
	else
		r = store_open_blob(src, digest, size, &fd, &f, err);
	for (uint64_t i = 0; r >= 0 && off < size; i++) {
		size_t want_len = (size_t)(table ? digest_table_range_len(table, i) : MIN(range, size - off));
		size_t got = 0;
		while (got < want_len) {
			ssize_t n = read(fd, buf + got, want_len - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		if (got < want_len) {
			r = anole_err(err, EIO, "%s: blob %s: ended at byte %llu of %llu", src->name,
				      digest, (unsigned long long)(off + got),
				      (unsigned long long)size);
			break;
		}
		if (table) {
			struct digest d;
			sha256(buf, got, &d);
			if (memcmp(&d, &table->d[i], sizeof(d))) {
				r = anole_err(err, EBADMSG,
					      "%s: blob %s: bytes %llu-%llu (range %llu of %llu) do "
					      "not match its digest table",
					      src->name, digest, (unsigned long long)off,
					      (unsigned long long)(off + got - 1),
					      (unsigned long long)i + 1,
					      (unsigned long long)table->head.count);
				break;
			}
		}
		sha256_stream_update(h, buf, got);
		if ((r = pwrite_full(out.fd, buf, got, off)) < 0)
			r = anole_err(err, -r, "%s: %s", path, strerror(-r));
		off += got;
	}
	if (fd >= 0)
		close(fd);
	if (f) {
		struct anole_error fe = {0};
		/* a short body is the transfer's fault: its error says why
		 * (in place of ours: anole_err keeps the first) */
		if (store_blob_end(f, &fe) < 0 && (r >= 0 || r == -EIO)) {
			*err = (struct anole_error){0};
			r = anole_err(err, fe.code, "%s", fe.msg);
		}
	}
	if (r >= 0) {
		struct digest got;
		sha256_stream_final(h, &got);
		if (memcmp(&got, &want, sizeof(got)))
			r = anole_err(err, EBADMSG, "%s: blob %s: content does not match its digest",
				      src->name, digest);
	}
	sha256_stream_free(h);
	if (r >= 0 && (r = outfile_commit(&out, path)) < 0)
		r = anole_err(err, -r, "%s: %s", path, strerror(-r));
	outfile_close(&out);
	return r;
}

/* Fetch into layout @dst unless there; *fetched tells which. */
int lazy_ensure_local(struct store *src, struct store *dst, const char *digest,
		      uint64_t size, const struct digest_table *table, bool *fetched,
		      struct anole_error *err)
{
	*fetched = false;
	int r = store_has_blob(dst, digest, size, err);
	if (r != 0)
		return r < 0 ? r : 0;
	_cleanup_free_ char *path = store_blob_path(dst, digest);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	*fetched = true;
	return fetch_verified(src, digest, size, table, path, err);
}

static int load_table(struct store *dst, const struct anole_lazy_blob *b, struct digest_table *t,
		      struct anole_error *err)
{
	struct strbuf raw = {0};
	char what[160];
	snprintf(what, sizeof(what), "%s: digest table %.19s", dst->name, b->digests);
	int r = store_get_small(dst, b->digests, b->digests_size, MAX_SMALL, &raw, err);
	if (r >= 0)
		r = digest_table_decode(raw.buf, raw.len, b->size, t, err, what);
	strbuf_release(&raw);
	/* a mount skips the chunk index of a version 2 table only */
	if (r >= 0 && b->cut_at_extents != !memcmp(t->head.magic, ANOLE_DIGEST_TABLE_MAGIC_V2, 8)) {
		digest_table_release(t);
		r = anole_err(err, EBADMSG, "%s: its version is not the one its media type says",
			      what);
	}
	return r;
}

/* Decompress the local zstd metadata layer into the metadata image, under
 * its own digest once that checked out. */
static int unpack_meta(struct store *dst, const struct anole_lazy_info *li, struct anole_error *err)
{
	if (store_has_blob(dst, li->meta_image_digest, li->meta_image_size, err) == 1)
		return 0;
	_cleanup_free_ char *zpath = store_blob_path(dst, li->meta_digest);
	_cleanup_free_ char *path = store_blob_path(dst, li->meta_image_digest);
	_cleanup_free_ char *in = malloc(ZSTD_DStreamInSize()), *out = malloc(ZSTD_DStreamOutSize());
	_cleanup_close_ int fd = zpath ? open(zpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	if (!path || !in || !out || fd < 0)
		return anole_err(err, fd < 0 ? errno : ENOMEM, "%s: %s", zpath ? zpath : "meta",
				 strerror(fd < 0 ? errno : ENOMEM));
	struct outfile of;
	int r = outfile_open(&of, path);
	if (r < 0)
		return anole_err(err, -r, "%s: %s", path, strerror(-r));
	ZSTD_DStream *z = ZSTD_createDStream();
	struct sha256_stream *h = sha256_stream_new();
	uint64_t done = 0;
	size_t zr = 1;
	if (!z || !h)
		r = -ENOMEM;
	for (ssize_t n = 1; r >= 0 && n > 0;) {
		if ((n = read(fd, in, ZSTD_DStreamInSize())) < 0)
			r = -errno;
		ZSTD_inBuffer ib = {in, n > 0 ? (size_t)n : 0, 0};
		while (r >= 0 && ib.pos < ib.size) {
			ZSTD_outBuffer ob = {out, ZSTD_DStreamOutSize(), 0};
			zr = ZSTD_decompressStream(z, &ob, &ib);
			if (ZSTD_isError(zr) || done + ob.pos > li->meta_image_size)
				r = -EBADMSG;
			else if ((r = pwrite_full(of.fd, out, ob.pos, done)) >= 0) {
				sha256_stream_update(h, out, ob.pos);
				done += ob.pos;
			}
		}
	}
	struct digest got = {0}, want;
	if (h)
		sha256_stream_final(h, &got);
	if (r >= 0 && (zr || done != li->meta_image_size ||
		       digest_parse(li->meta_image_digest, &want) < 0 || memcmp(&got, &want, 32)))
		r = -EBADMSG;
	if (r >= 0)
		r = outfile_commit(&of, path);
	outfile_close(&of);
	ZSTD_freeDStream(z);
	sha256_stream_free(h);
	if (r == -EBADMSG)
		return anole_err(err, EBADMSG,
				 "%s: metadata layer %s does not decompress to image %s of %llu "
				 "bytes",
				 dst->name, li->meta_digest, li->meta_image_digest,
				 (unsigned long long)li->meta_image_size);
	return r < 0 ? anole_err(err, -r, "%s: %s", path, strerror(-r)) : 0;
}

static void count_blob(struct anole_pull_stats *ps, bool fetched, uint64_t size)
{
	ps->blobs_fetched += fetched;
	ps->blobs_present += !fetched;
	*(fetched ? &ps->bytes_fetched : &ps->bytes_present) += size;
}

/* One small blob fetched on a thread of its own. */
struct small_fetch {
	struct store *src, *dst;
	const char *digest;
	uint64_t size;
	const struct anole_lazy_info *meta; /* the metadata layer: unpack it too */
	bool fetched;
	int r;
	struct anole_error err;
	pthread_t thread;
	bool started;
};

static void *small_fetch_main(void *arg)
{
	struct small_fetch *f = arg;
	if (!f->digest) /* not needed */
		return NULL;
	f->r = lazy_ensure_local(f->src, f->dst, f->digest, f->size, NULL, &f->fetched, &f->err);
	if (f->r >= 0 && f->meta) /* while the tables still come */
		f->r = unpack_meta(f->dst, f->meta, &f->err);
	return NULL;
}

/* The config, the metadata layer (then its unpacking), digest tables and
 * chunk indexes, all at once: a mount waits for them, and one after
 * another they cost a round trip each. */
static int fetch_small(struct store *src, struct store *dst, const struct anole_lazy_info *li,
		       bool data, struct anole_pull_stats *ps, struct anole_error *err)
{
	size_t n = 2 + 2 * li->nblobs + (li->hints_digest[0] != 0);
	struct small_fetch *f = calloc(n, sizeof(*f));
	if (!f)
		return anole_err(err, ENOMEM, "out of memory");
	f[0] = (struct small_fetch){.digest = li->meta_digest, .size = li->meta_size,
				    .meta = strcmp(li->meta_digest, li->meta_image_digest) ? li : NULL};
	for (size_t i = 0; i < li->nblobs; i++) {
		f[1 + 2 * i] = (struct small_fetch){.digest = li->blobs[i].digests,
						    .size = li->blobs[i].digests_size};
		/* a lazy mount reads a chunk index only to find extents, which
		 * a version 2 table's ranges hold whole already */
		if (data || !li->blobs[i].cut_at_extents)
			f[2 + 2 * i] = (struct small_fetch){.digest = li->blobs[i].chunks,
							    .size = li->blobs[i].chunks_size};
	}
	if (li->hints_digest[0])
		f[n - 2] = (struct small_fetch){.digest = li->hints_digest, .size = li->hints_size};
	f[n - 1] = (struct small_fetch){.digest = li->config_digest, .size = li->config_size};
	/* in waves of 16 (an image with many base blobs) */
	for (size_t wave = 0; wave < n; wave += 16) {
		size_t end = MIN(n, wave + 16);
		for (size_t i = wave; i < end; i++) {
			f[i].src = src;
			f[i].dst = dst;
			/* the last one (or one no thread could be made for) runs here */
			f[i].started = i + 1 < end &&
				       !pthread_create(&f[i].thread, NULL, small_fetch_main, &f[i]);
			if (!f[i].started)
				small_fetch_main(&f[i]);
		}
		for (size_t i = wave; i < end; i++)
			if (f[i].started)
				pthread_join(f[i].thread, NULL);
	}
	int r = 0;
	for (size_t i = 0; i < n && r >= 0; i++)
		if (f[i].r < 0)
			r = anole_err(err, f[i].err.code, "%s", f[i].err.msg);
	if (r >= 0) {
		count_blob(ps, f[0].fetched, li->meta_size);
		count_blob(ps, f[n - 1].fetched, li->config_size);
	}
	free(f);
	return r;
}

/* Everything one lazy image references (@li read without its config),
 * from @src into layout @dst. */
static int copy_image(struct store *src, struct store *dst, struct anole_lazy_info *li, bool data,
		      struct anole_pull_stats *ps, void (*log)(void *, const char *), void *ctx,
		      struct anole_error *err)
{
	bool fetched;
	int r = fetch_small(src, dst, li, data, ps, err);
	if (r >= 0) {
		struct strbuf cfg = {0}; /* `anole run` builds its bundle from it */
		r = store_get_small(dst, li->config_digest, li->config_size, MAX_SMALL, &cfg, err);
		li->config_json = r >= 0 ? cfg.buf : NULL;
		if (r < 0)
			strbuf_release(&cfg);
	}
	for (size_t i = 0; i < li->nblobs && r >= 0; i++) {
		const struct anole_lazy_blob *b = &li->blobs[i];
		if (!data) { /* a lazy mount checks the table now and reads data later */
			struct digest_table t;
			if ((r = load_table(dst, b, &t, err)) >= 0)
				digest_table_release(&t);
			continue;
		}
		struct digest_table t;
		if ((r = load_table(dst, b, &t, err)) < 0)
			break;
		char sz[32];
		log_line(log, ctx, "blob %.19s (%s)", b->digest, fmt_bytes(b->size, sz));
		r = lazy_ensure_local(src, dst, b->digest, b->size, &t, &fetched, err);
		digest_table_release(&t);
		if (r >= 0)
			count_blob(ps, fetched, b->size);
	}
	return r;
}

/* The metadata image must read only blobs the manifest lists: its device
 * table is read before the image is opened, which needs those blobs. */
static int check_slots(const struct anole_lazy_info *li, const char *name,
		       struct anole_error *err)
{
	_cleanup_close_ int fd = open(li->meta_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct erofs_super_block sb;
	if (fd < 0)
		return anole_err(err, errno, "%s: %s", li->meta_path, strerror(errno));
	if (pread_full(fd, &sb, sizeof(sb), EROFS_SUPER_OFFSET) < 0 || sb.magic != EROFS_MAGIC)
		return anole_err(err, EBADMSG, "%s: the metadata image is not EROFS", name);
	/* readers open devices whenever extra_devices is set, flag or not */
	unsigned int n = sb.extra_devices;
	for (unsigned int i = 0; i < n; i++) {
		struct erofs_deviceslot slot;
		uint64_t at = (uint64_t)sb.devt_slotoff * sizeof(slot) + i * sizeof(slot);
		if (pread_full(fd, &slot, sizeof(slot), at) < 0)
			return anole_err(err, EBADMSG, "%s: the metadata image's device table is cut",
					 name);
		bool listed = false;
		for (size_t k = 0; k < li->nblobs; k++)
			listed |= !memcmp(li->blobs[k].digest + 7, slot.tag, 64);
		if (!listed)
			return anole_err(err, EBADMSG,
					 "%s: the metadata image reads blob sha256:%.64s, which the "
					 "manifest does not list",
					 name, (const char *)slot.tag);
	}
	return 0;
}

static int check_devices(const struct anole_lazy_info *li, const char *name,
			 struct anole_error *err)
{
	int r = check_slots(li, name, err);
	if (r < 0)
		return r;
	struct anole_image *img;
	r = anole_image_open(li->meta_path, &img, err);
	if (r >= 0)
		anole_image_close(img);
	return r;
}

int anole_pull(const char *ref, const char *dir, const struct anole_pull_options *o,
	       struct anole_pull_stats *stats, struct anole_error *err)
{
	struct anole_pull_options none = {0};
	struct anole_pull_stats ps = {0};
	o = o ? o : &none;
	struct store *src = NULL, *dst = NULL;
	struct anole_lazy_info *li = NULL;
	struct strbuf body = {0};
	int r = store_open(ref, o->tls_verify, false, &src, err);
	if (r >= 0)
		r = lazy_read(src, false, &body, &li, err);
	_cleanup_free_ char *dspec = NULL;
	if (r >= 0) {
		/* name the copy with the source's tag */
		const char *tag = src->reg ? src->ref.reference : src->tag;
		if (!tag || !strncmp(tag, "sha256:", 7))
			tag = "latest";
		if (asprintf(&dspec, "oci:%s:%s", dir, tag) < 0)
			r = anole_err(err, ENOMEM, "out of memory");
		else
			r = store_open(dspec, 0, true, &dst, err);
	}
	if (r >= 0)
		r = copy_image(src, dst, li, true, &ps, o->log, o->log_ctx, err);
	if (r >= 0) {
		free(li->meta_path);
		li->meta_path = store_blob_path(dst, li->meta_image_digest);
		r = check_devices(li, ref, err);
	}
	struct digest dg;
	if (r >= 0)
		r = store_put_manifest(dst, body.buf, body.len, OCI_MT_MANIFEST, &dg, err);
	if (r >= 0) {
		digest_format(&dg, ps.manifest_digest);
		if (stats)
			*stats = ps;
	}
	strbuf_release(&body);
	anole_lazy_free(li);
	store_free(src);
	store_free(dst);
	return r;
}

/* A cached blob that is not what its digest says (a disk error, an older
 * anole, anyone else who wrote there) goes, to be fetched again: a
 * lazy mount's cache is not trusted by name and size (a pulled layout
 * is: docs/SECURITY.md). */
static void drop_bad(struct store *dst, const char *digest, uint64_t size)
{
	_cleanup_free_ char *path = digest[0] ? store_blob_path(dst, digest) : NULL;
	struct stat st;
	if (path && !lstat(path, &st) && digest_file_check(path, digest, size) == 0)
		unlink(path);
}

static void drop_bad_small(struct store *dst, const struct anole_lazy_info *li)
{
	drop_bad(dst, li->meta_digest, li->meta_size);
	drop_bad(dst, li->meta_image_digest, li->meta_image_size);
	drop_bad(dst, li->config_digest, li->config_size);
	drop_bad(dst, li->hints_digest, li->hints_size);
	for (size_t i = 0; i < li->nblobs; i++) {
		drop_bad(dst, li->blobs[i].digests, li->blobs[i].digests_size);
		drop_bad(dst, li->blobs[i].chunks, li->blobs[i].chunks_size);
	}
}

int lazy_prepare(const char *ref, const char *cache_dir, int tls_verify,
		 const struct registry_creds *creds,
		 void (*manifest_known)(const char *digest, void *ctx), void *ctx,
		 struct anole_lazy_info **out, struct store **src_out, struct anole_error *err)
{
	struct anole_pull_stats ps = {0};
	struct store *src = NULL, *dst = NULL;
	struct anole_lazy_info *li = NULL;
	struct strbuf body = {0};
	int r = store_open_as(ref, tls_verify, creds, false, &src, err);
	if (r >= 0)
		r = lazy_read(src, false, &body, &li, err);
	if (r >= 0 && manifest_known)
		manifest_known(li->manifest_digest, ctx);
	if (r >= 0)
		r = store_open(cache_dir, 0, true, &dst, err);
	if (r >= 0)
		drop_bad_small(dst, li);
	if (r >= 0)
		r = copy_image(src, dst, li, false, &ps, NULL, NULL, err);
	if (r >= 0) {
		free(li->meta_path);
		li->meta_path = store_blob_path(dst, li->meta_image_digest);
		r = li->meta_path ? check_slots(li, ref, err) : anole_err(err, ENOMEM, "out of memory");
	}
	strbuf_release(&body);
	store_free(dst);
	if (r < 0) {
		anole_lazy_free(li);
		store_free(src);
		return r;
	}
	*out = li;
	*src_out = src;
	return 0;
}

int lazy_blob_table(const char *cache_dir, const struct anole_lazy_blob *b, struct digest_table *t,
		    struct anole_error *err)
{
	struct store *dst;
	int r = store_open(cache_dir, 0, false, &dst, err);
	if (r < 0)
		return r;
	r = load_table(dst, b, t, err);
	store_free(dst);
	return r;
}

static int span_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

int lazy_blob_extents(const char *cache_dir, const struct anole_lazy_blob *b,
		      uint64_t (**spans)[2], size_t *n, struct anole_error *err)
{
	*spans = NULL;
	*n = 0;
	struct store *dst;
	int r = store_open(cache_dir, 0, false, &dst, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *path = store_blob_path(dst, b->chunks);
	store_free(dst);
	if (!path)
		return anole_err(err, ENOMEM, "out of memory");
	struct chunk_index c;
	if ((r = chunk_index_load(path, &c, err)) < 0)
		return r;
	uint64_t (*s)[2] = malloc(MAX(c.head.count, 1) * sizeof(*s));
	if (!s) {
		chunk_index_release(&c);
		return anole_err(err, ENOMEM, "out of memory");
	}
	size_t k = 0;
	for (uint64_t i = 0; i < c.head.count; i++) {
		const struct anole_chunk_entry *e = &c.e[i];
		if (!e->cblocks) /* plain bytes: the kernel reads only what it needs */
			continue;
		s[k][0] = (uint64_t)e->blkaddr << 12;
		s[k][1] = ((uint64_t)e->blkaddr + e->nblocks) << 12;
		k++;
	}
	chunk_index_release(&c);
	qsort(s, k, sizeof(*s), span_cmp);
	*spans = s;
	*n = k;
	return 0;
}
