/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Converting an image into a lazy one: build the metadata image and data
 * blobs, add the digest tables, chunk indexes and hints, and push them
 * under one manifest.
 */
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <zstd.h>

#include "anole/erofs_fs.h"
#include "anole/lazy_fs.h"
#include "erofs/blobmeta.h"
#include "lazy/hints.h"
#include "lazy/lazy_int.h"
#include "util/digest.h"
#include "util/safefs.h"

#define FORMAT_VERSION "1"
/* Every mount fetches the metadata image before it can answer: 19 takes
 * node's 3.9 MB image from 808 to 732 KB for 2 s more of convert; above
 * META_ZSTD_BIG the time grows past what the bytes are worth. */
#define META_ZSTD_LEVEL 19
#define META_ZSTD_LEVEL_BIG 12
#define META_ZSTD_BIG (64ull << 20)

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
				if (r >= 0)
					b->chunks_path = oci_blob_path(c->stage, b->b.chunks);
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
	if (!c->stage || !(c->blobdir = oci_blob_dir(c->stage)))
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
	if (!(p = oci_blob_path(dir, digest)))
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
	if (!(final = oci_blob_path(c->stage, digest)))
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
	if (!(local = oci_blob_path(c->stage, digest)))
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
		r = lazy_ensure_local(from ? from : t, t, digest, size, NULL, &fetched, c->err);
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
	if (!(path = oci_blob_path(c->stage, meta)))
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
		if (file_size(c->stage, own.digests, &own.digests_size) < 0 ||
		    file_size(c->stage, own.chunks, &own.chunks_size) < 0) {
			json_decref(layers);
			return anole_err(c->err, EIO, "%s: the blob's tables are missing", c->blobdir);
		}
		add_blob_layers(layers, &own);
	}
	if (hints[0])
		json_array_append_new(layers, desc_json(ANOLE_MT_HINTS, hints, hints_size));
	json_t *m = json_pack("{s:i,s:s,s:s,s:o,s:o,s:{s:s}}", "schemaVersion", 2, "mediaType",
			      OCI_MT_MANIFEST, "artifactType", ANOLE_ARTIFACT_TYPE, "config",
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
		r = store_put_manifest(c->target, text, strlen(text), OCI_MT_MANIFEST, &dg, c->err);
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
