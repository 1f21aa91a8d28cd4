/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Container images as build sources: OCI image layouts (oci:DIR[:TAG]),
 * registries (docker://HOST/REPO[:TAG|@DIGEST]) and single tar layers.
 *
 * Whatever the origin, an image is a list of layer descriptors (bottom
 * first). Layers are read top first, each as a stream checked against its
 * digest, into one merged tree (or, with layers_separate, one image per
 * layer). Every manifest and index is checked against the digest that
 * names it before it is parsed.
 */
#include <fcntl.h>
#include <jansson.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci/oci.h"
#include "registry/registry.h"
#include "source/source.h"

/* Layers of one image: what overlayfs stacks at most (OVL_MAX_STACK), so
 * --layers=separate images can be mounted; Docker stops at 127. */
#define MAX_LAYERS 500
#define MAX_INDEX_DEPTH 4

struct image_src {
	const char *name; /* as the user gave it */
	char *dir;        /* oci: layout directory */
	struct registry *reg;
	char *repo;
	const char *tar_path; /* a single tar (or "-") */
	const char *platform;
	struct oci_desc *layers; /* bottom first */
	size_t nlayers;
	int *fetched; /* registry: layers listed more than once, downloaded
			 once to an unnamed file (-1: not yet) */
	struct oci_desc config;
	bool has_config;
	struct anole_error *err;
};

/* ---- manifests ---------------------------------------------------------- */

/* Fetch a small blob (manifest, index) into memory, checked. */
static int get_blob_mem(struct image_src *s, const struct oci_desc *d, struct strbuf *out)
{
	if (d->size > OCI_MAX_MANIFEST)
		return anole_err(s->err, EFBIG, "%s: %s: %llu bytes is too big for a manifest",
				 s->name, d->digest_str, (unsigned long long)d->size);
	if (s->reg)
		return registry_get_manifest(s->reg, s->repo, d->digest_str, d->size, out, NULL,
					     s->err);
	return oci_layout_read_small(s->dir, d, OCI_MAX_MANIFEST, out, s->err);
}

/* "linux/amd64" or "linux/arm64/v8" */
static bool platform_matches(json_t *p, const char *want)
{
	const char *os = json_string_value(json_object_get(p, "os"));
	const char *arch = json_string_value(json_object_get(p, "architecture"));
	const char *var = json_string_value(json_object_get(p, "variant"));
	if (!os || !arch)
		return false;
	char have[256];
	snprintf(have, sizeof(have), "%s/%s", os, arch);
	size_t hl = strlen(have);
	if (strncmp(want, have, hl))
		return false;
	if (!want[hl])
		return true;
	return want[hl] == '/' && var && !strcmp(want + hl + 1, var);
}

static int pick_platform(struct image_src *s, json_t *root, struct oci_desc *d)
{
	json_t *ms = json_object_get(root, "manifests");
	if (!json_is_array(ms))
		return anole_err(s->err, EBADMSG, "%s: an image index without manifests", s->name);
	size_t i;
	json_t *m;
	struct strbuf seen = {0};
	json_array_foreach(ms, i, m) {
		json_t *p = json_object_get(m, "platform");
		if (p && platform_matches(p, s->platform)) {
			strbuf_release(&seen);
			return oci_desc_parse(m, true, s->name, "image index", d, s->err);
		}
		if (p)
			strbuf_addf(&seen, "%s%s/%s", seen.len ? ", " : "",
				    json_string_value(json_object_get(p, "os")) ?: "?",
				    json_string_value(json_object_get(p, "architecture")) ?: "?");
	}
	int r = anole_err(s->err, ENOENT, "%s: no image for platform %s (the index has: %s)",
			  s->name, s->platform, seen.len ? seen.buf : "none");
	strbuf_release(&seen);
	return r;
}

static int read_layers(struct image_src *s, json_t *root)
{
	json_t *ls = json_object_get(root, "layers");
	if (!json_is_array(ls))
		return anole_err(s->err, EBADMSG, "%s: a manifest without layers", s->name);
	size_t n = json_array_size(ls), i;
	json_t *e;
	if (n > MAX_LAYERS)
		return anole_err(s->err, E2BIG, "%s: %zu layers, more than the %d anole builds "
				 "(overlayfs stacks %d)", s->name, n, MAX_LAYERS, MAX_LAYERS);
	json_t *cfg = json_object_get(root, "config");
	if (cfg) {
		int r = oci_desc_parse(cfg, true, s->name, "config", &s->config, s->err);
		if (r < 0)
			return r;
		s->has_config = true;
	}
	if (!(s->layers = calloc(n ? n : 1, sizeof(*s->layers))))
		return anole_err(s->err, ENOMEM, "out of memory");
	json_array_foreach(ls, i, e) {
		struct oci_desc *d = &s->layers[i];
		int r = oci_desc_parse(e, true, s->name, "layer", d, s->err);
		if (r < 0)
			return r;
		if (!oci_is_layer_type(d->media_type))
			return anole_err(s->err, ENOTSUP, "%s: layer %zu (%s): unsupported media type %s",
					 s->name, i + 1, d->digest_str, d->media_type);
	}
	s->nlayers = n;
	return 0;
}

/* Follow indexes down to a manifest and take its layers. */
static int resolve(struct image_src *s, struct strbuf *body, const char *media_type, int depth)
{
	json_error_t je;
	json_t *root = json_loadb(body->buf, body->len, 0, &je);
	if (!root)
		return anole_err(s->err, EBADMSG, "%s: bad JSON in a manifest: %s (line %d)",
				 s->name, je.text, je.line);
	const char *mt = oci_body_type(root, media_type);
	int r;
	if (oci_is_manifest_type(mt)) {
		r = read_layers(s, root);
	} else if (oci_is_index_type(mt)) {
		struct oci_desc d;
		if (depth >= MAX_INDEX_DEPTH)
			r = anole_err(s->err, ELOOP, "%s: image indexes nested too deep", s->name);
		else if ((r = pick_platform(s, root, &d)) >= 0 &&
			 (r = get_blob_mem(s, &d, body)) >= 0)
			r = resolve(s, body, d.media_type, depth + 1);
	} else {
		r = anole_err(s->err, ENOTSUP, "%s: unsupported manifest media type %s", s->name,
			      mt);
	}
	json_decref(root);
	return r;
}

/* ---- OCI layouts --------------------------------------------------------- */

static int open_layout(struct image_src *s, const char *spec)
{
	/* oci:DIR[:TAG] */
	_cleanup_free_ char *tag = NULL;
	struct oci_desc d;
	int r = oci_layout_split(spec, true, &s->dir, &tag, s->err);
	if (r >= 0)
		r = oci_layout_find(s->dir, tag, s->dir, &d, s->err);
	if (r < 0)
		return r;
	struct strbuf body = {0};
	r = get_blob_mem(s, &d, &body);
	if (r >= 0)
		r = resolve(s, &body, d.media_type, 0);
	strbuf_release(&body);
	return r;
}

/* ---- registries ---------------------------------------------------------- */

static int open_registry(struct image_src *s, const char *ref, const struct anole_build_options *o)
{
	struct registry_ref rr;
	int r = registry_parse_ref(ref, &rr, s->err);
	if (r < 0)
		return r;
	if ((r = registry_new(rr.host, o->tls_verify, NULL, s->err, &s->reg)) < 0)
		return r;
	if (!(s->repo = strdup(rr.repo)))
		return anole_err(s->err, ENOMEM, "out of memory");
	struct strbuf body = {0};
	char mt[128] = "";
	r = registry_get_manifest(s->reg, s->repo, rr.reference, 0, &body, mt, s->err);
	if (r >= 0)
		r = resolve(s, &body, mt, 0);
	strbuf_release(&body);
	return r;
}

/* ---- layer streams -------------------------------------------------------- */

struct open_layer {
	struct blob_stream bs;
	struct registry_fetch *fetch;
	char what[160];
};

/* Another file description of @fd: an offset of its own. */
static int open_again(int fd)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	return open(p, O_RDONLY | O_CLOEXEC);
}

/* Is layer @i's blob listed more than once? */
static bool listed_again(const struct image_src *s, size_t i)
{
	for (size_t j = 0; j < s->nlayers; j++)
		if (j != i && !memcmp(&s->layers[j].digest, &s->layers[i].digest,
				      sizeof(struct digest)))
			return true;
	return false;
}

/* A blob the manifest lists more than once, downloaded the first time
 * into an unnamed file that every use reads (checked as each reads it). */
static int fetch_once(struct image_src *s, size_t i, int *fd)
{
	if (!s->fetched) {
		if (!(s->fetched = malloc(s->nlayers * sizeof(int))))
			return anole_err(s->err, ENOMEM, "out of memory");
		for (size_t j = 0; j < s->nlayers; j++)
			s->fetched[j] = -1;
	}
	const struct oci_desc *d = &s->layers[i];
	for (size_t j = 0; j < s->nlayers; j++) {
		if (s->fetched[j] < 0 || memcmp(&s->layers[j].digest, &d->digest, sizeof(d->digest)))
			continue;
		if ((*fd = open_again(s->fetched[j])) < 0)
			return anole_err(s->err, errno, "%s: %s", d->digest_str, strerror(errno));
		return 0;
	}
	int tmp = tmpfile_unnamed("/var/tmp");
	if (tmp < 0)
		return anole_err(s->err, -tmp, "cannot create a temporary file: %s", strerror(-tmp));
	s->fetched[i] = tmp;
	int in;
	struct registry_fetch *f;
	int r = registry_blob_stream(s->reg, s->repo, d->digest_str, d->size, &in, &f, s->err);
	if (r < 0)
		return r;
	/* (one byte past the size is enough for the reader to see a lie) */
	char buf[65536];
	ssize_t n = 0;
	int w = 0;
	for (uint64_t got = 0; got <= d->size && w >= 0; got += (uint64_t)n) {
		if ((n = read(in, buf, sizeof(buf))) <= 0)
			break;
		w = pwrite_full(tmp, buf, (size_t)n, got);
	}
	int rerr = n < 0 ? errno : 0;
	close(in);
	if ((r = registry_fetch_end(f, s->err)) < 0)
		return r;
	if (rerr || w < 0)
		return anole_err(s->err, rerr ? rerr : -w, "%s: %s: %s", d->digest_str,
				 rerr ? "download" : "temporary file", strerror(rerr ? rerr : -w));
	if ((*fd = open_again(tmp)) < 0)
		return anole_err(s->err, errno, "%s: %s", d->digest_str, strerror(errno));
	return 0;
}

static int layer_open(struct image_src *s, size_t i, struct open_layer *ol)
{
	memset(ol, 0, sizeof(*ol));
	ol->bs.fd = -1;
	if (s->tar_path) {
		bool in = !strcmp(s->tar_path, "-");
		snprintf(ol->what, sizeof(ol->what), "%s", in ? "stdin" : s->tar_path);
		ol->bs = (struct blob_stream){.what = ol->what, .size = UINT64_MAX};
		ol->bs.fd = in ? dup(0) : open(s->tar_path, O_RDONLY | O_CLOEXEC);
		if (ol->bs.fd < 0)
			return anole_err(s->err, errno, "%s: %s", s->tar_path, strerror(errno));
		return 0;
	}
	const struct oci_desc *d = &s->layers[i];
	snprintf(ol->what, sizeof(ol->what), "layer %zu (%.19s)", i + 1, d->digest_str);
	ol->bs = (struct blob_stream){.what = ol->what, .verify = true, .want = d->digest,
				      .size = d->size, .fd = -1};
	if (s->reg && !listed_again(s, i))
		return registry_blob_stream(s->reg, s->repo, d->digest_str, d->size, &ol->bs.fd,
					    &ol->fetch, s->err);
	if (s->reg)
		return fetch_once(s, i, &ol->bs.fd);
	_cleanup_free_ char *path = oci_blob_path(s->dir, d->digest_str);
	if (!path)
		return anole_err(s->err, ENOMEM, "out of memory");
	ol->bs.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (ol->bs.fd < 0)
		return anole_err(s->err, errno, "%s: %s", path, strerror(errno));
	return 0;
}

/* Read layer @i (counted from the bottom) into @l. */
static int layer_read(struct image_src *s, size_t i, struct layers *l)
{
	struct open_layer ol;
	struct archive *a = NULL;
	int r = layer_open(s, i, &ol);
	if (r >= 0)
		r = tar_open(&ol.bs, &a, s->err);
	if (r >= 0)
		r = layers_add(l, &ol.bs, a, (uint32_t)i);
	/* Drain and check the digest (which, not matching, explains a
	 * failure best), then let the download thread go. */
	int rc = tar_close(&ol.bs, a, r >= 0, s->err);
	if (ol.bs.fd >= 0)
		close(ol.bs.fd);
	if (ol.fetch) {
		/* A failed download explains a broken tar better than the tar. */
		struct anole_error fetch_err = {0};
		int rf = registry_fetch_end(ol.fetch, &fetch_err);
		if (rf < 0) {
			*s->err = fetch_err;
			return rf;
		}
	}
	return rc < 0 ? rc : r;
}

/*
 * Write layers into one image at @path: all of them, top first, merged
 * (@dm NULL), or only layer @one as a layer of its own that sees the
 * directories @built below it (@dm).
 */
static int write_layers(struct image_src *s, const char *path,
			const struct anole_build_options *opts, struct dirmeta *dm,
			char **built, size_t one, struct anole_build_stats *stats)
{
	struct tree_writer *tw;
	struct layers *l = NULL;
	int r = tw_new(&tw, path, opts, s->err);
	if (r < 0)
		return r;
	r = layers_new(tw, dm != NULL, s->err, &l);
	if (r >= 0 && dm) {
		layers_use_dirmeta(l, dm, (const char *const *)built, one);
		r = layer_read(s, one, l);
	}
	for (size_t i = s->nlayers; !dm && i-- > 0 && r >= 0;)
		r = layer_read(s, i, l);
	if (r >= 0)
		r = layers_finish(l);
	struct layers_stats ls = l ? *layers_stats(l) : (struct layers_stats){0};
	layers_free(l);
	if (r >= 0)
		r = tw_finish(tw, stats);
	tw_free(tw);
	stats->layer_entries = ls.entries;
	stats->hidden_entries = ls.hidden;
	stats->whiteouts = ls.whiteouts;
	return r;
}

static int build_merged(struct image_src *s, const char *image,
			const struct anole_build_options *opts, struct anole_build_stats *stats)
{
	struct anole_build_stats st = {0};
	int r = write_layers(s, image, opts, NULL, NULL, 0, &st);
	if (r >= 0 && stats) {
		st.layers = s->nlayers;
		*stats = st;
	}
	return r;
}

/* The counters that add up over a convert's layers (the same uint64_t
 * fields in every struct anole_build_stats). */
#define STAT(f) offsetof(struct anole_build_stats, f)
static const size_t summed_stats[] = {
	STAT(inodes), STAT(dirs), STAT(regular), STAT(symlinks), STAT(special),
	STAT(hardlinks), STAT(data_bytes), STAT(image_bytes), STAT(compressed_files),
	STAT(compressed_bytes_in), STAT(compressed_bytes_out), STAT(fragment_bytes),
	STAT(dedupe_bytes), STAT(layer_entries), STAT(whiteouts),
};
#undef STAT

static void add_stats(struct anole_build_stats *sum, const struct anole_build_stats *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(summed_stats); i++) {
		uint64_t a, b;
		memcpy(&a, (char *)sum + summed_stats[i], sizeof(a));
		memcpy(&b, (const char *)s + summed_stats[i], sizeof(b));
		a += b;
		memcpy((char *)sum + summed_stats[i], &a, sizeof(a));
	}
	sum->layers++;
}

/*
 * One image per layer, 0001.erofs at the bottom, in a directory that is
 * built under a temporary name and renamed when every layer is done.
 */
static int build_separate(struct image_src *s, const char *outdir,
			  const struct anole_build_options *opts, struct anole_build_stats *stats)
{
	struct stat st;
	if (lstat(outdir, &st) == 0)
		return anole_err(s->err, EEXIST, "%s: already exists (--layers=separate makes a "
				 "new directory)", outdir);
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-XXXXXX", outdir) < 0) {
		tmp = NULL;
		return anole_err(s->err, ENOMEM, "out of memory");
	}
	if (!mkdtemp(tmp))
		return anole_err(s->err, errno, "%s: %s", tmp, strerror(errno));
	chmod(tmp, 0755);
	double t0 = now_seconds();
	struct dirmeta *dm = NULL;
	int r = dirmeta_new(&dm) < 0 ? anole_err(s->err, ENOMEM, "out of memory") : 0;
	struct anole_build_stats sum = {0};
	size_t n = s->tar_path ? 1 : s->nlayers;
	char **built = calloc(n, sizeof(*built));
	if (!built)
		r = anole_err(s->err, ENOMEM, "out of memory");
	for (size_t i = 0; i < n && r >= 0; i++) {
		if (asprintf(&built[i], "%s/%04zu.erofs", tmp, i + 1) < 0) {
			built[i] = NULL;
			r = anole_err(s->err, ENOMEM, "out of memory");
			break;
		}
		struct anole_build_stats one = {0};
		r = write_layers(s, built[i], opts, dm, built, i, &one);
		add_stats(&sum, &one);
	}
	dirmeta_free(dm);
	if (r >= 0 && rename(tmp, outdir) < 0)
		r = anole_err(s->err, errno, "%s: %s", outdir, strerror(errno));
	for (size_t i = 0; built && i < n; i++) {
		if (r < 0 && built[i]) /* (only a layer that has its name was made) */
			unlink(built[i]);
		free(built[i]);
	}
	free(built);
	if (r < 0) {
		rmdir(tmp);
		return r;
	}
	sum.seconds = now_seconds() - t0;
	if (stats)
		*stats = sum;
	return 0;
}

/* The image config's "config" object (what to run: Env, Entrypoint, Cmd,
 * WorkingDir, User, ...) as compact JSON, for whoever asked for it. */
static int take_run_config(struct image_src *s, char **out)
{
	*out = NULL;
	if (!s->has_config)
		return 0;
	struct strbuf body = {0};
	int r;
	if (s->config.size > OCI_MAX_MANIFEST) {
		r = anole_err(s->err, EFBIG, "%s: config %s: %llu bytes is too big", s->name,
			      s->config.digest_str, (unsigned long long)s->config.size);
	} else if (s->reg) {
		/* a blob, not a manifest: a ranged read, then its digest */
		r = strbuf_grow(&body, s->config.size + 1) < 0
			    ? anole_err(s->err, ENOMEM, "out of memory")
			    : registry_blob_range(s->reg, s->repo, s->config.digest_str, 0,
						  s->config.size, body.buf, false, s->err);
		if (r >= 0) {
			struct digest got;
			body.len = s->config.size;
			body.buf[body.len] = 0;
			sha256(body.buf, body.len, &got);
			if (memcmp(&got, &s->config.digest, sizeof(got)))
				r = anole_err(s->err, EBADMSG, "%s: config %s: content does not "
					      "match its digest", s->name, s->config.digest_str);
		}
	} else {
		r = get_blob_mem(s, &s->config, &body);
	}
	json_error_t je;
	json_t *root = r >= 0 ? json_loadb(body.buf, body.len, 0, &je) : NULL;
	if (r >= 0 && !root)
		r = anole_err(s->err, EBADMSG, "%s: config %s: bad JSON: %s", s->name,
			      s->config.digest_str, je.text);
	json_t *run = json_object_get(root, "config");
	if (r >= 0 && json_is_object(run) &&
	    !(*out = json_dumps(run, JSON_COMPACT | JSON_SORT_KEYS)))
		r = anole_err(s->err, ENOMEM, "out of memory");
	json_decref(root);
	strbuf_release(&body);
	return r;
}

static void image_src_release(struct image_src *s)
{
	for (size_t i = 0; s->fetched && i < s->nlayers; i++)
		if (s->fetched[i] >= 0)
			close(s->fetched[i]);
	free(s->fetched);
	free(s->dir);
	free(s->repo);
	free(s->layers);
	registry_free(s->reg);
}

/* What every image source does once @s is open (@r: how opening went):
 * its run config for whoever asked, the image or images, then @s let go. */
static int build_image(struct image_src *s, int r, const char *image,
		       const struct anole_build_options *opts, struct anole_build_stats *stats)
{
	if (r >= 0 && opts->run_config)
		r = take_run_config(s, opts->run_config);
	if (r >= 0)
		r = opts->layers_separate ? build_separate(s, image, opts, stats)
					  : build_merged(s, image, opts, stats);
	image_src_release(s);
	return r;
}

static struct image_src image_src(const char *source, const struct anole_build_options *opts,
				  struct anole_error *err)
{
	return (struct image_src){.name = source, .err = err,
				  .platform = opts->platform ? opts->platform : "linux/amd64"};
}

int source_layout(const char *source, const char *image, const struct anole_build_options *opts,
		  struct anole_build_stats *stats, struct anole_error *err)
{
	struct image_src s = image_src(source, opts, err);
	return build_image(&s, open_layout(&s, source + 4), image, opts, stats);
}

int source_registry(const char *source, const char *image, const struct anole_build_options *opts,
		    struct anole_build_stats *stats, struct anole_error *err)
{
	struct image_src s = image_src(source, opts, err);
	return build_image(&s, open_registry(&s, source + 9, opts), image, opts, stats);
}

int source_tar(const char *source, const char *image, const struct anole_build_options *opts,
	       struct anole_build_stats *stats, struct anole_error *err)
{
	struct image_src s = image_src(source, opts, err);
	s.tar_path = source;
	s.nlayers = 1;
	return build_image(&s, 0, image, opts, stats);
}
