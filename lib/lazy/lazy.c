/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy images: a metadata EROFS image plus data blobs (each with a digest
 * table and a chunk index) under one OCI image manifest. Converting builds
 * and pushes one, pulling fetches and verifies one into a local layout.
 * docs/FORMAT.md ("Lazy images") is the specification.
 */
#include <fcntl.h>
#include <pthread.h>
#include <jansson.h>
#include <sys/stat.h>
#include <zstd.h>

#include "anole/erofs_fs.h"
#include "anole/lazy_fs.h"
#include "erofs/blobmeta.h"
#include "lazy/hints.h"
#include "lazy/lazy.h"
#include "util/digest.h"
#include "util/safefs.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MAX_SMALL (256ull << 20) /* digest tables, chunk indexes, configs */
#define MAX_META_IMAGE (16ull << 30) /* a metadata image; millions of files fit */
#define FORMAT_VERSION "1"
/* Every mount fetches the metadata image before it can answer: 19 takes
 * node's 3.9 MB image from 808 to 732 KB for 2 s more of convert; above
 * META_ZSTD_BIG the time grows past what the bytes are worth. */
#define META_ZSTD_LEVEL 19
#define META_ZSTD_LEVEL_BIG 12
#define META_ZSTD_BIG (64ull << 20)

/* ---- manifests ------------------------------------------------------------ */

void anole_lazy_free(struct anole_lazy_info *li)
{
	if (!li)
		return;
	free(li->config_json);
	free(li->meta_path);
	free(li->blobs);
	free(li);
}

static int get_desc(const char *name, json_t *j, char digest[72], uint64_t *size,
		    struct anole_error *err)
{
	const char *d = json_string_value(json_object_get(j, "digest"));
	json_t *sz = json_object_get(j, "size");
	struct digest tmp;
	if (!d || digest_parse(d, &tmp) < 0 || !json_is_integer(sz) || json_integer_value(sz) < 0)
		return anole_err(err, EBADMSG, "%s: a descriptor without a sha256 digest and size",
				 name);
	snprintf(digest, 72, "%s", d);
	*size = (uint64_t)json_integer_value(sz);
	return 0;
}

/* The layer whose digest is @digest and media type @mt, or NULL. */
static json_t *find_layer(json_t *layers, const char *digest, const char *mt)
{
	size_t i;
	json_t *l;
	json_array_foreach(layers, i, l) {
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *t = json_string_value(json_object_get(l, "mediaType"));
		if (d && t && !strcmp(d, digest) && !strcmp(t, mt))
			return l;
	}
	return NULL;
}

static int parse_blob(const char *name, json_t *layers, json_t *l, struct anole_lazy_blob *b,
		      struct anole_error *err)
{
	int r = get_desc(name, l, b->digest, &b->size, err);
	if (r < 0)
		return r;
	json_t *an = json_object_get(l, "annotations");
	const char *dt = json_string_value(json_object_get(an, ANOLE_ANNOT_DIGESTS));
	const char *ck = json_string_value(json_object_get(an, ANOLE_ANNOT_CHUNKS));
	json_t *dl = dt ? find_layer(layers, dt, ANOLE_MT_DIGESTS_V2) : NULL;
	b->cut_at_extents = dl != NULL;
	if (dt && !dl)
		dl = find_layer(layers, dt, ANOLE_MT_DIGESTS);
	json_t *cl = ck ? find_layer(layers, ck, ANOLE_MT_CHUNKS) : NULL;
	if (!dl || !cl)
		return anole_err(err, EBADMSG,
				 "%s: data blob %s: its digest table or chunk index is not among "
				 "the layers",
				 name, b->digest);
	if ((r = get_desc(name, dl, b->digests, &b->digests_size, err)) < 0)
		return r;
	return get_desc(name, cl, b->chunks, &b->chunks_size, err);
}

/* The metadata image's own digest and size: the layer's, or from the
 * annotations of a compressed layer. */
static int meta_image_desc(const char *name, json_t *l, bool zstd, struct anole_lazy_info *li,
			   struct anole_error *err)
{
	if (!zstd) {
		memcpy(li->meta_image_digest, li->meta_digest, sizeof(li->meta_digest));
		li->meta_image_size = li->meta_size;
		return 0;
	}
	json_t *an = json_object_get(l, "annotations");
	const char *d = json_string_value(json_object_get(an, ANOLE_ANNOT_META_DIGEST));
	const char *sz = json_string_value(json_object_get(an, ANOLE_ANNOT_META_SIZE));
	struct digest tmp;
	char *end = NULL;
	errno = 0;
	/* the size bounds decompression: a digit string, at most MAX_META_IMAGE */
	unsigned long long n = sz && *sz >= '0' && *sz <= '9' ? strtoull(sz, &end, 10) : 0;
	if (!d || digest_parse(d, &tmp) < 0 || !n || *end || errno || n > MAX_META_IMAGE)
		return anole_err(err, EBADMSG,
				 "%s: the compressed metadata image lacks its digest or size "
				 "annotation",
				 name);
	snprintf(li->meta_image_digest, sizeof(li->meta_image_digest), "%s", d);
	li->meta_image_size = n;
	return 0;
}

static int parse_manifest(const char *name, const struct strbuf *body, const char *mt,
			  struct anole_lazy_info *li, struct anole_error *err)
{
	json_error_t je;
	json_t *root = json_loadb(body->buf, body->len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return anole_err(err, EBADMSG, "%s: bad JSON in the manifest: %s (byte %d)", name,
				 je.text, je.position);
	const char *t = json_string_value(json_object_get(root, "mediaType"));
	if (!t || !*t)
		t = mt && *mt ? mt : OCI_MANIFEST;
	json_t *config = json_object_get(root, "config");
	const char *ct = json_string_value(json_object_get(config, "mediaType"));
	json_t *layers = json_object_get(root, "layers");
	int r = 0;
	if (strcmp(t, OCI_MANIFEST))
		r = anole_err(err, ENOTSUP, "%s: media type %s is not an OCI image manifest", name,
			      t);
	else if (!ct || strcmp(ct, ANOLE_MT_CONFIG))
		r = anole_err(err, ENOTSUP,
			      "%s: not an anole lazy image (config media type %s; convert it "
			      "with anole convert)",
			      name, ct ? ct : "missing");
	else if (!json_is_array(layers))
		r = anole_err(err, EBADMSG, "%s: the manifest has no layers", name);
	else
		r = get_desc(name, config, li->config_digest, &li->config_size, err);
	size_t i, nmeta = 0;
	json_t *l;
	if (r >= 0 && !(li->blobs = calloc(json_array_size(layers) + 1, sizeof(*li->blobs))))
		r = anole_err(err, ENOMEM, "out of memory");
	json_array_foreach(layers, i, l) {
		if (r < 0)
			break;
		const char *lt = json_string_value(json_object_get(l, "mediaType"));
		if (lt && (!strcmp(lt, ANOLE_MT_META) || !strcmp(lt, ANOLE_MT_META_ZSTD))) {
			r = get_desc(name, l, li->meta_digest, &li->meta_size, err);
			if (r >= 0)
				r = meta_image_desc(name, l, !strcmp(lt, ANOLE_MT_META_ZSTD), li, err);
			nmeta++;
		} else if (lt && !strcmp(lt, ANOLE_MT_BLOB)) {
			r = parse_blob(name, layers, l, &li->blobs[li->nblobs++], err);
		} else if (lt && !strcmp(lt, ANOLE_MT_HINTS)) {
			if (li->hints_digest[0])
				r = anole_err(err, EBADMSG, "%s: two load hint layers", name);
			else
				r = get_desc(name, l, li->hints_digest, &li->hints_size, err);
		} else if (!lt || (strcmp(lt, ANOLE_MT_DIGESTS) && strcmp(lt, ANOLE_MT_DIGESTS_V2) &&
				   strcmp(lt, ANOLE_MT_CHUNKS))) {
			r = anole_err(err, ENOTSUP, "%s: layer %zu has unknown media type %s", name,
				      i + 1, lt ? lt : "(none)");
		}
	}
	if (r >= 0 && nmeta != 1)
		r = anole_err(err, EBADMSG, "%s: %zu metadata images in the manifest, not one", name,
			      nmeta);
	json_decref(root);
	return r;
}

/* Manifest and config of the image @s names. */
static int lazy_read(struct store *s, bool with_config, struct strbuf *body,
		     struct anole_lazy_info **out, struct anole_error *err)
{
	struct anole_lazy_info *li = calloc(1, sizeof(*li));
	if (!li)
		return anole_err(err, ENOMEM, "out of memory");
	char mt[128] = "";
	struct digest dg;
	struct strbuf cfg = {0};
	int r = store_get_manifest(s, body, mt, &dg, err);
	if (r >= 0)
		r = parse_manifest(s->name, body, mt, li, err);
	if (r >= 0 && with_config)
		r = store_get_small(s, li->config_digest, li->config_size, MAX_SMALL, &cfg, err);
	if (r < 0) {
		strbuf_release(&cfg);
		anole_lazy_free(li);
		return r;
	}
	digest_format(&dg, li->manifest_digest);
	li->manifest_size = body->len;
	li->config_json = cfg.buf;
	li->meta_path = store_blob_path(s, li->meta_image_digest);
	*out = li;
	return 0;
}

int anole_lazy_open(const char *ref, int tls_verify, struct anole_lazy_info **out,
		    struct anole_error *err)
{
	struct store *s;
	int r = store_open(ref, tls_verify, false, &s, err);
	if (r < 0)
		return r;
	struct strbuf body = {0};
	r = lazy_read(s, true, &body, out, err);
	strbuf_release(&body);
	store_free(s);
	return r;
}

/* ---- verified copies -------------------------------------------------------- */

/* Copy blob @digest of @size bytes from @src into the directory @dst, as
 * DST/HEX only once every byte checked out: against @table range by range
 * when given, and against the digest as a whole. */
static int fetch_verified(struct store *src, const char *digest, uint64_t size,
			  const struct digest_table *table, const char *dst, struct anole_error *err)
{
	struct digest want;
	if (digest_parse(digest, &want) < 0)
		return anole_err(err, EBADMSG, "%s: bad digest %.80s", src->name, digest);
	_cleanup_free_ char *path = NULL;
	/* table ranges, else any read size: the whole digest is checked too */
	uint64_t range = table ? MAX(table->max_len, 1) : ANOLE_RANGE_MAX, off = 0;
	_cleanup_free_ char *buf = malloc(range);
	if (!buf || asprintf(&path, "%s/%s", dst, digest + 7) < 0)
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
static int ensure_local(struct store *src, struct store *dst, const char *digest, uint64_t size,
			const struct digest_table *table, bool *fetched, struct anole_error *err)
{
	*fetched = false;
	int r = store_has_blob(dst, digest, size, err);
	if (r != 0)
		return r < 0 ? r : 0;
	_cleanup_free_ char *dir = store_blob_dir(dst);
	if (!dir)
		return anole_err(err, ENOMEM, "out of memory");
	*fetched = true;
	return fetch_verified(src, digest, size, table, dir, err);
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
	f->r = ensure_local(f->src, f->dst, f->digest, f->size, NULL, &f->fetched, &f->err);
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
		r = ensure_local(src, dst, b->digest, b->size, &t, &fetched, err);
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
		r = store_put_manifest(dst, body.buf, body.len, OCI_MANIFEST, &dg, err);
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

/* ---- converting ------------------------------------------------------------- */

struct base {
	struct anole_lazy_blob b;
	struct store *from; /* not owned */
	char *chunks_path;
};

struct convert {
	const struct anole_convert_options *o;
	struct anole_convert_stats *st;
	struct anole_error *err;
	struct store *target;
	struct store **refs; /* --dedup-with stores */
	size_t nrefs;
	struct base *bases;
	size_t nbases;
	char *stage;   /* where the build writes: DIR with DIR/blobs/sha256 */
	char *blobdir; /* stage/blobs/sha256 */
	bool own_stage; /* a work directory of ours, to remove */
	struct workdir work; /* own_stage: it, locked while we live */
	char *run_config; /* the source image's config.config, JSON, or NULL */
};

static int base_known(const struct convert *c, const char *digest)
{
	for (size_t i = 0; i < c->nbases; i++)
		if (!strcmp(c->bases[i].b.digest, digest))
			return 1;
	return 0;
}

/* Collect the blobs of every --dedup-with image, with their chunk indexes
 * (fetched and verified into the staging directory). */
static int load_bases(struct convert *c)
{
	const struct anole_convert_options *o = c->o;
	c->refs = calloc(o->ndedup_with + 1, sizeof(*c->refs));
	if (!c->refs)
		return anole_err(c->err, ENOMEM, "out of memory");
	for (size_t i = 0; i < o->ndedup_with; i++) {
		struct store *s;
		int r = store_open(o->dedup_with[i], o->build.tls_verify, false, &s, c->err);
		if (r < 0)
			return r;
		c->refs[c->nrefs++] = s;
		struct strbuf body = {0};
		struct anole_lazy_info *li;
		r = lazy_read(s, true, &body, &li, c->err);
		strbuf_release(&body);
		if (r < 0)
			return r;
		struct base *nb = realloc(c->bases, (c->nbases + li->nblobs + 1) * sizeof(*nb));
		if (!nb) {
			anole_lazy_free(li);
			return anole_err(c->err, ENOMEM, "out of memory");
		}
		c->bases = nb;
		for (size_t k = 0; k < li->nblobs && r >= 0; k++) {
			if (base_known(c, li->blobs[k].digest))
				continue;
			struct base *b = &c->bases[c->nbases];
			*b = (struct base){.b = li->blobs[k], .from = s};
			if (s->reg) {
				struct strbuf raw = {0};
				struct digest d;
				r = store_get_small(s, b->b.chunks, b->b.chunks_size, MAX_SMALL, &raw,
						    c->err);
				if (r >= 0 && (r = cas_put(c->blobdir, raw.buf, raw.len, &d)) < 0)
					r = anole_err(c->err, -r, "%s: %s", c->blobdir, strerror(-r));
				strbuf_release(&raw);
				if (r >= 0 && asprintf(&b->chunks_path, "%s/%s", c->blobdir,
						       b->b.chunks + 7) < 0)
					b->chunks_path = NULL;
			} else {
				b->chunks_path = store_blob_path(s, b->b.chunks);
			}
			if (r >= 0 && !b->chunks_path)
				r = anole_err(c->err, ENOMEM, "out of memory");
			if (r >= 0)
				c->nbases++;
		}
		anole_lazy_free(li);
		if (r < 0)
			return r;
	}
	c->st->base_blobs = (unsigned int)c->nbases;
	return 0;
}

/* A registry target is staged in a work directory of our own under
 * BASE: anole-convert.XXXXXX, 0700, locked while we live, so that the
 * next convert can tell (and remove) the ones left by a killed one, and
 * nothing else. */
static int make_stage(struct convert *c)
{
	if (!store_is_registry(c->target)) {
		c->stage = strdup(c->target->dir);
	} else {
		const char *tmpdir = getenv("TMPDIR");
		const char *base = c->o->work_dir ? c->o->work_dir : tmpdir ? tmpdir : "/var/tmp";
		_cleanup_close_ int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (bfd < 0)
			return anole_err(c->err, errno, "%s: %s", base, strerror(errno));
		workdir_clean(bfd, "anole-convert.");
		int r = workdir_create(&c->work, bfd, "anole-convert.");
		if (r < 0)
			return anole_err(c->err, -r, "%s: cannot make a work directory: %s", base,
					 strerror(-r));
		c->own_stage = true;
		if (asprintf(&c->stage, "%s/%s", base, c->work.name) < 0) {
			c->stage = NULL;
			return anole_err(c->err, ENOMEM, "out of memory");
		}
	}
	if (!c->stage || asprintf(&c->blobdir, "%s/blobs/sha256", c->stage) < 0)
		return anole_err(c->err, ENOMEM, "out of memory");
	if (c->own_stage) {
		_cleanup_close_ int bd = -1;
		if (mkdirat(c->work.fd, "blobs", 0755) < 0 ||
		    (bd = openat(c->work.fd, "blobs", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    mkdirat(bd, "sha256", 0755) < 0)
			return anole_err(c->err, errno, "%s: %s", c->blobdir, strerror(errno));
	}
	return 0;
}

static int file_size(const char *dir, const char *digest, uint64_t *size)
{
	_cleanup_free_ char *p = NULL;
	struct stat st;
	if (asprintf(&p, "%s/%s", dir, digest + 7) < 0)
		return -ENOMEM;
	if (stat(p, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Put the finished metadata image under its digest, and a zstd copy of
 * it (the layer registries store) under that one's. */
static int store_meta(struct convert *c, const char *tmp, char digest[72], uint64_t *size,
		      char zdigest[72], uint64_t *zsize)
{
	_cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return anole_err(c->err, errno, "%s: %s", tmp, strerror(errno));
	*size = (uint64_t)st.st_size;
	size_t cap = ZSTD_compressBound(*size);
	_cleanup_free_ char *buf = malloc(MAX(*size, (uint64_t)1)), *zbuf = malloc(cap);
	_cleanup_free_ char *final = NULL;
	if (!buf || !zbuf)
		return anole_err(c->err, ENOMEM, "out of memory");
	int r = pread_full(fd, buf, *size, 0);
	if (r < 0)
		return anole_err(c->err, -r, "%s: %s", tmp, strerror(-r));
	int level = *size > META_ZSTD_BIG ? META_ZSTD_LEVEL_BIG : META_ZSTD_LEVEL;
	size_t zn = ZSTD_compress(zbuf, cap, buf, *size, level);
	if (ZSTD_isError(zn))
		return anole_err(c->err, EIO, "%s: zstd: %s", tmp, ZSTD_getErrorName(zn));
	struct digest d, zd;
	sha256(buf, *size, &d);
	digest_format(&d, digest);
	if (asprintf(&final, "%s/%s", c->blobdir, digest + 7) < 0)
		return anole_err(c->err, ENOMEM, "out of memory");
	if (rename(tmp, final) < 0)
		return anole_err(c->err, errno, "%s: %s", final, strerror(errno));
	if ((r = cas_put(c->blobdir, zbuf, zn, &zd)) < 0)
		return anole_err(c->err, -r, "%s: %s", c->blobdir, strerror(-r));
	digest_format(&zd, zdigest);
	*zsize = zn;
	return 0;
}

static json_t *desc_json(const char *mt, const char *digest, uint64_t size)
{
	return json_pack("{s:s,s:s,s:I}", "mediaType", mt, "digest", digest, "size",
			 (json_int_t)size);
}

static void add_blob_layers(json_t *layers, const struct anole_lazy_blob *b)
{
	json_t *d = desc_json(ANOLE_MT_BLOB, b->digest, b->size);
	json_object_set_new(d, "annotations",
			    json_pack("{s:s,s:s}", ANOLE_ANNOT_DIGESTS, b->digests,
				      ANOLE_ANNOT_CHUNKS, b->chunks));
	json_array_append_new(layers, d);
	json_array_append_new(layers, desc_json(b->cut_at_extents ? ANOLE_MT_DIGESTS_V2
								  : ANOLE_MT_DIGESTS,
						b->digests, b->digests_size));
	json_array_append_new(layers, desc_json(ANOLE_MT_CHUNKS, b->chunks, b->chunks_size));
}

/* The config: what a reader needs besides the manifest, and the dedup
 * summary `anole inspect` shows. Deterministic: no times, no paths. */
static int make_config(struct convert *c, const char *compress, char digest[72], uint64_t *size)
{
	const struct anole_build_stats *bs = &c->st->build;
	json_t *blobs = json_array();
	for (size_t i = 0; i < c->nbases; i++)
		if (bs->bases_used & (1ull << i))
			json_array_append_new(blobs, json_pack("{s:s,s:s}", "digest",
							       c->bases[i].b.digest, "origin",
							       "reused"));
	if (bs->blob_digest[0])
		json_array_append_new(blobs,
				      json_pack("{s:s,s:s}", "digest", bs->blob_digest, "origin", "new"));
	json_t *cfg = json_pack(
		"{s:s,s:i,s:s,s:{s:I,s:I,s:I,s:I},s:o,s:{s:I,s:I,s:I,s:I,s:I}}", "formatVersion",
		FORMAT_VERSION, "blockSize", 4096, "compression", compress, "dedup", "fileBytes",
		(json_int_t)bs->data_bytes, "reusedBytes", (json_int_t)bs->base_reused_bytes,
		"withinImageBytes", (json_int_t)(bs->dedupe_bytes - bs->base_reused_bytes),
		"newBlobBytes", (json_int_t)bs->blob_bytes, "blobs", blobs, "source", "layers",
		(json_int_t)bs->layers, "layerEntries", (json_int_t)bs->layer_entries,
		"hiddenEntries", (json_int_t)bs->hidden_entries, "inodes", (json_int_t)bs->inodes,
		"files", (json_int_t)bs->regular);
	/* what to run, for anole run: the source image's own config */
	json_error_t je;
	json_t *run = c->run_config ? json_loads(c->run_config, 0, &je) : NULL;
	if (cfg && run)
		json_object_set_new(cfg, "imageConfig", run);
	char *text = cfg ? json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(cfg);
	if (!text)
		return anole_err(c->err, ENOMEM, "out of memory");
	struct digest d;
	*size = strlen(text);
	int r = cas_put(c->blobdir, text, *size, &d);
	free(text);
	digest_format(&d, digest);
	return r < 0 ? anole_err(c->err, -r, "%s: %s", c->blobdir, strerror(-r)) : 0;
}

/* A blob of the new manifest into the target, from wherever it is. */
static int place_blob(struct convert *c, const char *digest, uint64_t size)
{
	struct anole_convert_stats *st = c->st;
	struct store *t = c->target;
	struct store *from = NULL;
	for (size_t i = 0; i < c->nbases && !from; i++) {
		const struct anole_lazy_blob *b = &c->bases[i].b;
		if (!strcmp(b->digest, digest) || !strcmp(b->digests, digest) ||
		    !strcmp(b->chunks, digest))
			from = c->bases[i].from;
	}
	_cleanup_free_ char *local = NULL;
	if (asprintf(&local, "%s/%s", c->blobdir, digest + 7) < 0)
		return anole_err(c->err, ENOMEM, "out of memory");
	struct stat sb;
	bool have_local = !stat(local, &sb) && (uint64_t)sb.st_size == size;
	int r;
	if (!t->reg) {
		/* a layout target: the stage is the layout */
		if (have_local) {
			/* written by this conversion, or shared with an image there */
			st->blobs_uploaded++;
			st->new_bytes += size;
			return 0;
		}
		bool fetched;
		r = ensure_local(from ? from : t, t, digest, size, NULL, &fetched, c->err);
		st->blobs_uploaded += fetched;
		st->new_bytes += fetched ? size : 0;
		return r;
	}
	const char *how = "present";
	if (have_local || (from && !from->reg)) {
		_cleanup_free_ char *path = have_local ? NULL : store_blob_path(from, digest);
		_cleanup_close_ int fd = open(have_local ? local : path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return anole_err(c->err, errno, "%s: %s", have_local ? local : path,
					 strerror(errno));
		r = registry_blob_push(t->reg, t->ref.repo, digest, fd, 0, size,
				       from && from->reg ? from->ref.repo : NULL, c->o->upload_chunk,
				       &how, c->err);
	} else if (from && store_same_registry(from, t)) {
		r = registry_blob_push(t->reg, t->ref.repo, digest, -1, 0, size, from->ref.repo, 0,
				       &how, c->err);
	} else {
		return anole_err(c->err, ENOTSUP,
				 "%s: blob %s is in %s: --dedup-with must name an image in the "
				 "same registry or a local layout",
				 t->name, digest, from ? from->name : "no source");
	}
	if (r < 0)
		return r;
	if (!strcmp(how, "present"))
		st->blobs_present++;
	else if (!strcmp(how, "mounted"))
		st->blobs_mounted++;
	else {
		st->blobs_uploaded++;
		st->new_bytes += size;
	}
	return 0;
}

/* The image's ELF load hints, next to its blobs; none (and a note) when
 * its data cannot be read here, as when it reuses a base image's blob. */
static void make_hints(struct convert *c, const char *meta, char digest[72], uint64_t *size)
{
	_cleanup_free_ char *path = NULL, *json = NULL;
	struct anole_error e = {0};
	struct digest d;
	if (asprintf(&path, "%s/%s", c->blobdir, meta + 7) < 0)
		return;
	double t0 = now_seconds();
	int r = load_hints_build(path, NULL, 0, false, &json, &e);
	if (r < 0) {
		log_line(c->o->log, c->o->log_ctx, "no load hints: %s", e.msg);
		return;
	}
	size_t len = strlen(json);
	if (cas_put(c->blobdir, json, len, &d) < 0)
		return;
	digest_format(&d, digest);
	*size = len;
	log_line(c->o->log, c->o->log_ctx, "load hints: %llu bytes in %.2f s",
		 (unsigned long long)*size, now_seconds() - t0);
}

static int write_manifest(struct convert *c, const char *compress)
{
	const struct anole_build_stats *bs = &c->st->build;
	char meta[72], zmeta[72], cfg[72], msize[24];
	uint64_t meta_size = 0, zmeta_size = 0, cfg_size = 0;
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s/.anole-meta.erofs", c->stage) < 0)
		return anole_err(c->err, ENOMEM, "out of memory");
	int r = store_meta(c, tmp, meta, &meta_size, zmeta, &zmeta_size);
	if (r < 0 || (r = make_config(c, compress, cfg, &cfg_size)) < 0)
		return r;
	char hints[72] = "";
	uint64_t hints_size = 0;
	make_hints(c, meta, hints, &hints_size);

	json_t *layers = json_array();
	json_t *ml = desc_json(ANOLE_MT_META_ZSTD, zmeta, zmeta_size);
	snprintf(msize, sizeof(msize), "%llu", (unsigned long long)meta_size);
	json_object_set_new(ml, "annotations",
			    json_pack("{s:s,s:s}", ANOLE_ANNOT_META_DIGEST, meta,
				      ANOLE_ANNOT_META_SIZE, msize));
	json_array_append_new(layers, ml);
	/* data blobs in device table order: used bases, then the new one */
	for (size_t i = 0; i < c->nbases; i++)
		if (bs->bases_used & (1ull << i)) {
			add_blob_layers(layers, &c->bases[i].b);
			c->st->base_blobs_used++;
		}
	if (bs->blob_digest[0]) {
		struct anole_lazy_blob own = {0};
		snprintf(own.digest, sizeof(own.digest), "%s", bs->blob_digest);
		snprintf(own.digests, sizeof(own.digests), "%s", bs->blob_digests);
		snprintf(own.chunks, sizeof(own.chunks), "%s", bs->blob_chunks);
		own.size = bs->blob_bytes;
		own.cut_at_extents = true; /* the writer cuts its tables so */
		if (file_size(c->blobdir, own.digests, &own.digests_size) < 0 ||
		    file_size(c->blobdir, own.chunks, &own.chunks_size) < 0) {
			json_decref(layers);
			return anole_err(c->err, EIO, "%s: the blob's tables are missing", c->blobdir);
		}
		add_blob_layers(layers, &own);
	}
	if (hints[0])
		json_array_append_new(layers, desc_json(ANOLE_MT_HINTS, hints, hints_size));
	json_t *m = json_pack("{s:i,s:s,s:s,s:o,s:o,s:{s:s}}", "schemaVersion", 2, "mediaType",
			      OCI_MANIFEST, "artifactType", ANOLE_ARTIFACT_TYPE, "config",
			      desc_json(ANOLE_MT_CONFIG, cfg, cfg_size), "layers", layers,
			      "annotations", "dev.anole.format", FORMAT_VERSION);
	char *text = m ? json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(m);
	if (!text)
		return anole_err(c->err, ENOMEM, "out of memory");

	/* every blob first, the manifest last: a tag never names missing data */
	json_error_t je;
	json_t *doc = json_loads(text, 0, &je);
	json_t *l;
	size_t i;
	if (!doc) {
		free(text);
		return anole_err(c->err, ENOMEM, "out of memory");
	}
	r = place_blob(c, cfg, cfg_size);
	c->st->total_bytes = strlen(text) + cfg_size;
	json_array_foreach(json_object_get(doc, "layers"), i, l) {
		if (r < 0)
			break;
		const char *d = json_string_value(json_object_get(l, "digest"));
		uint64_t sz = (uint64_t)json_integer_value(json_object_get(l, "size"));
		log_line(c->o->log, c->o->log_ctx, "blob %.19s %s",
		      d, json_string_value(json_object_get(l, "mediaType")));
		r = place_blob(c, d, sz);
		c->st->total_bytes += sz;
		c->st->blobs++;
	}
	json_decref(doc);
	struct digest dg;
	if (r >= 0)
		r = store_put_manifest(c->target, text, strlen(text), OCI_MANIFEST, &dg, c->err);
	free(text);
	if (r >= 0)
		digest_format(&dg, c->st->manifest_digest);
	return r;
}

int anole_convert(const char *source, const char *target, const struct anole_convert_options *o,
		  struct anole_convert_stats *stats, struct anole_error *err)
{
	struct anole_convert_stats st = {0};
	struct convert c = {.o = o, .st = &st, .err = err, .work = {.parent = -1, .fd = -1}};
	if (strncmp(target, "docker://", 9) && strncmp(target, "oci:", 4))
		return anole_err(err, EINVAL, "%s: the target is docker://HOST/REPO[:TAG] or "
				 "oci:DIR[:TAG]", target);
	int r = store_open(target, o->build.tls_verify, true, &c.target, err);
	if (r >= 0)
		r = make_stage(&c);
	if (r >= 0)
		r = load_bases(&c);
	_cleanup_free_ struct anole_base_blob *bb = calloc(c.nbases + 1, sizeof(*bb));
	_cleanup_free_ char *tmp = NULL;
	if (r >= 0 && (!bb || asprintf(&tmp, "%s/.anole-meta.erofs", c.stage) < 0))
		r = anole_err(err, ENOMEM, "out of memory");
	struct anole_build_options bo = o->build;
	if (r >= 0) {
		for (size_t i = 0; i < c.nbases; i++)
			bb[i] = (struct anole_base_blob){.digest = c.bases[i].b.digest,
							 .chunks_path = c.bases[i].chunks_path,
							 .size = c.bases[i].b.size};
		if (!bo.compress)
			bo.compress = "zstd";
		/* small files and tails stay in their own extents, so that
		 * equal files in other images find them */
		if (!bo.fragments)
			bo.fragments = -1;
		bo.separate_data = true;
		bo.dedupe = true;
		bo.bases = bb;
		bo.nbases = c.nbases;
		bo.layers_separate = false;
		bo.run_config = &c.run_config;
		r = anole_build(source, tmp, &bo, &st.build, err);
	}
	if (r >= 0)
		r = write_manifest(&c, bo.compress);
	if (tmp && r < 0)
		unlink(tmp);
	workdir_remove(&c.work);
	for (size_t i = 0; i < c.nbases; i++)
		free(c.bases[i].chunks_path);
	free(c.bases);
	for (size_t i = 0; i < c.nrefs; i++)
		store_free(c.refs[i]);
	free(c.refs);
	free(c.stage);
	free(c.blobdir);
	free(c.run_config);
	store_free(c.target);
	if (r >= 0 && stats)
		*stats = st;
	return r;
}
