// SPDX-License-Identifier: Apache-2.0
/* anole-ctr-pull [--address SOCK] [--namespace NS] [--snapshotter NAME]
 * REF: an anole lazy image pulled through containerd's API with the
 * labels that make it a remote snapshot (docs/DESIGN-snapshotter.md),
 * what `ctr image pull` 1.6 cannot do (it passes no cri.* labels).
 *
 * containerd's records get what its runtime reads: an OCI image config
 * (the image's runtime config, the metadata layer as the one diff ID)
 * and an OCI manifest of it whose one layer is the metadata layer, with
 * the cri.* annotations the unpacker turns into labels. The registry's
 * manifest (anole's config media type, data blobs as layers) is pinned
 * by its digest in those labels: the snapshotter mounts exactly it. The
 * data blobs are never fetched here. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "content.pb-c.h"
#include "images.pb-c.h"
#include "leases.pb-c.h"
#include "snapshots.pb-c.h"
#include "anole/lazy_fs.h"
#include "snapshotter/client.h"
#include "snapshotter/lazy.h"
#include "util/digest.h"
#include "util/util.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define GC_SNAPSHOT "containerd.io/gc.ref.snapshot."

static const char usage[] =
	"anole ctr-pull [--address SOCK] [--namespace NS] [--snapshotter NAME] REF\n";

/* A string-to-string map entry: every generated LabelsEntry has this
 * layout; the descriptor given makes it the right one. */
struct kv {
	ProtobufCMessage base;
	char *key, *value;
};

struct labels {
	struct kv e[8];
	struct kv *p[8];
	size_t n;
};

static void label_add(struct labels *l, const ProtobufCMessageDescriptor *d, const char *k,
		      const char *v)
{
	if (l->n == ARRAY_SIZE(l->e))
		return;
	protobuf_c_message_init(d, &l->e[l->n]);
	l->e[l->n].key = (char *)k;
	l->e[l->n].value = (char *)v;
	l->p[l->n] = &l->e[l->n];
	l->n++;
}

struct blob {
	char *text, digest[72];
	size_t len;
};

static int blob_of(json_t *j, struct blob *b, struct anole_error *err)
{
	struct digest d;

	b->text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (!b->text)
		return anole_err(err, ENOMEM, "out of memory");
	b->len = strlen(b->text);
	sha256(b->text, b->len, &d);
	digest_format(&d, b->digest);
	return 0;
}

static const char *goarch(void)
{
	static struct utsname u;

	uname(&u);
	if (!strcmp(u.machine, "x86_64"))
		return "amd64";
	if (!strcmp(u.machine, "aarch64"))
		return "arm64";
	return u.machine;
}

/* The OCI config: the image's runtime config (a container source's, as
 * `anole run` uses it), the metadata layer as the one diff ID. */
static int make_config(const struct anole_lazy_info *li, struct blob *b, struct anole_error *err)
{
	json_t *cfg = json_loads(li->config_json ? li->config_json : "{}", 0, NULL);
	json_t *ic = json_object_get(cfg, "imageConfig");
	/* "o" takes this reference, whether the config's or a new object */
	json_t *j = json_pack("{s:s, s:s, s:o, s:{s:s, s:[s]}}", "architecture", goarch(), "os",
			      "linux", "config", ic ? json_incref(ic) : json_object(), "rootfs",
			      "type", "layers", "diff_ids", li->meta_digest);
	int rc = j ? blob_of(j, b, err) : anole_err(err, ENOMEM, "out of memory");

	json_decref(j);
	json_decref(cfg);
	return rc;
}

static int make_manifest(const struct anole_lazy_info *li, const char *name,
			 const struct blob *cfg, struct blob *b, struct anole_error *err)
{
	const char *mt = strcmp(li->meta_digest, li->meta_image_digest) ? ANOLE_MT_META_ZSTD
									: ANOLE_MT_META;
	json_t *j = json_pack(
		"{s:i, s:s, s:{s:s, s:s, s:I}, s:[{s:s, s:s, s:I, s:{s:s, s:s, s:s, s:s}}]}",
		"schemaVersion", 2, "mediaType", OCI_MANIFEST, "config", "mediaType", OCI_CONFIG,
		"digest", cfg->digest, "size", (json_int_t)cfg->len, "layers", "mediaType", mt,
		"digest", li->meta_digest, "size", (json_int_t)li->meta_size, "annotations",
		LABEL_IMAGE_REF, name, LABEL_LAYER_DIGEST, li->meta_digest, LABEL_MANIFEST_DIGEST,
		li->manifest_digest, LABEL_CRI "image-layers", li->meta_digest);
	int rc = j ? blob_of(j, b, err) : anole_err(err, ENOMEM, "out of memory");

	json_decref(j);
	return rc;
}

/* One blob into containerd's content store: a Write stream of one
 * committing message (already there is as good). */
static int content_put(struct rpc_client *c, const struct blob *b, const struct labels *l,
		       struct anole_error *err)
{
	Containerd__Services__Content__V1__WriteContentRequest r;
	char ref[128];
	uint8_t *reply = NULL;
	size_t len;
	int rc;

	containerd__services__content__v1__write_content_request__init(&r);
	snprintf(ref, sizeof(ref), "anole-ctr-pull-%s", b->digest);
	r.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT;
	r.ref = ref;
	r.total = (int64_t)b->len;
	r.expected = (char *)b->digest;
	r.data.data = (uint8_t *)b->text;
	r.data.len = b->len;
	r.n_labels = l->n;
	r.labels = (Containerd__Services__Content__V1__WriteContentRequest__LabelsEntry **)l->p;
	rc = rpc_client_stream(c, "/containerd.services.content.v1.Content/Write", &r.base, &reply,
			       &len, err);
	free(reply);
	/* ALREADY_EXISTS: committed before, by this pull or another */
	return rc == 6 ? 0 : rc;
}

static int lease(struct rpc_client *c, const char *id, bool create, struct anole_error *err)
{
	uint8_t *reply = NULL;
	size_t len;
	int rc;

	if (create) {
		Containerd__Services__Leases__V1__CreateRequest r;
		struct labels l = {0};
		char expire[64];
		time_t t = time(NULL) + 3600;

		/* what containerd's own pull sets: the lease outlives a
		 * crashed client by an hour at most */
		strftime(expire, sizeof(expire), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		containerd__services__leases__v1__create_request__init(&r);
		label_add(&l, &containerd__services__leases__v1__create_request__labels_entry__descriptor,
			  "containerd.io/gc.expire", expire);
		r.id = (char *)id;
		r.n_labels = l.n;
		r.labels = (Containerd__Services__Leases__V1__CreateRequest__LabelsEntry **)l.p;
		rc = rpc_client_call(c, "/containerd.services.leases.v1.Leases/Create", &r.base,
				     &reply, &len, err);
	} else {
		Containerd__Services__Leases__V1__DeleteRequest r;

		containerd__services__leases__v1__delete_request__init(&r);
		r.id = (char *)id;
		rc = rpc_client_call(c, "/containerd.services.leases.v1.Leases/Delete", &r.base,
				     &reply, &len, err);
	}
	free(reply);
	return rc;
}

/* The unpacker's step for the one layer: Prepare with the labels, which
 * the snapshotter answers ALREADY_EXISTS (the lazy mount is there), then
 * Stat of the chain. An OK means the snapshotter made an ordinary
 * snapshot: not a remote one, so it is removed and the pull fails. */
static int unpack(struct rpc_client *c, const char *sn, const char *name,
		  const struct anole_lazy_info *li, struct anole_error *err)
{
	Containerd__Services__Snapshots__V1__PrepareSnapshotRequest p;
	Containerd__Services__Snapshots__V1__StatSnapshotRequest st;
	const ProtobufCMessageDescriptor *d =
		&containerd__services__snapshots__v1__prepare_snapshot_request__labels_entry__descriptor;
	struct labels l = {0};
	char key[160];
	uint8_t *reply = NULL;
	size_t len;
	int rc;

	snprintf(key, sizeof(key), "extract-%ld %s", (long)getpid(), li->meta_digest);
	label_add(&l, d, LABEL_REF, li->meta_digest);
	label_add(&l, d, LABEL_IMAGE_REF, name);
	label_add(&l, d, LABEL_LAYER_DIGEST, li->meta_digest);
	label_add(&l, d, LABEL_MANIFEST_DIGEST, li->manifest_digest);
	label_add(&l, d, LABEL_CRI "image-layers", li->meta_digest);
	containerd__services__snapshots__v1__prepare_snapshot_request__init(&p);
	p.snapshotter = (char *)sn;
	p.key = key;
	p.parent = "";
	p.n_labels = l.n;
	p.labels = (Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry **)l.p;
	rc = rpc_client_call(c, "/containerd.services.snapshots.v1.Snapshots/Prepare", &p.base,
			     &reply, &len, err);
	free(reply);
	if (rc == 0) {
		Containerd__Services__Snapshots__V1__RemoveSnapshotRequest r;
		struct anole_error e2 = {0};

		containerd__services__snapshots__v1__remove_snapshot_request__init(&r);
		r.snapshotter = (char *)sn;
		r.key = key;
		rpc_client_call(c, "/containerd.services.snapshots.v1.Snapshots/Remove", &r.base,
				&reply, &len, &e2);
		free(reply);
		return anole_err(err, EINVAL,
				 "snapshotter %s made no remote snapshot of %s (not anole's?)", sn,
				 name);
	}
	if (rc != 6)
		return rc;
	containerd__services__snapshots__v1__stat_snapshot_request__init(&st);
	st.snapshotter = (char *)sn;
	st.key = (char *)li->meta_digest;
	rc = rpc_client_call(c, "/containerd.services.snapshots.v1.Snapshots/Stat", &st.base, &reply,
			     &len, err);
	free(reply);
	return rc;
}

/* The image record: created, or updated when the name is taken. */
static int image_put(struct rpc_client *c, const char *name, const struct blob *m,
		     struct anole_error *err)
{
	Containerd__Services__Images__V1__CreateImageRequest cr;
	Containerd__Services__Images__V1__UpdateImageRequest up;
	Containerd__Services__Images__V1__Image img;
	Containerd__Types__Descriptor t;
	uint8_t *reply = NULL;
	size_t len;
	int rc;

	containerd__types__descriptor__init(&t);
	t.media_type = OCI_MANIFEST;
	t.digest = (char *)m->digest;
	t.size = (int64_t)m->len;
	containerd__services__images__v1__image__init(&img);
	img.name = (char *)name;
	img.target = &t;
	containerd__services__images__v1__create_image_request__init(&cr);
	cr.image = &img;
	rc = rpc_client_call(c, "/containerd.services.images.v1.Images/Create", &cr.base, &reply,
			     &len, err);
	free(reply);
	if (rc != 6)
		return rc;
	containerd__services__images__v1__update_image_request__init(&up);
	up.image = &img;
	rc = rpc_client_call(c, "/containerd.services.images.v1.Images/Update", &up.base, &reply,
			     &len, err);
	free(reply);
	return rc;
}

static int pull(struct rpc_client *c, const char *sn, const char *name,
		const struct anole_lazy_info *li, struct anole_error *err)
{
	struct blob cfg = {0}, man = {0};
	struct labels lc = {0}, lm = {0};
	const ProtobufCMessageDescriptor *d =
		&containerd__services__content__v1__write_content_request__labels_entry__descriptor;
	char gc[128], id[64];
	int rc = make_config(li, &cfg, err);

	if (rc == 0)
		rc = make_manifest(li, name, &cfg, &man, err);
	snprintf(id, sizeof(id), "anole-ctr-pull-%ld", (long)getpid());
	if (rc == 0)
		rc = lease(c, id, true, err);
	if (rc != 0)
		goto out;
	rpc_client_lease(c, id);
	/* what keeps what from containerd's collector: the image its
	 * manifest, the manifest its config, the config the snapshot */
	snprintf(gc, sizeof(gc), GC_SNAPSHOT "%s", sn);
	label_add(&lc, d, gc, li->meta_digest);
	label_add(&lm, d, "containerd.io/gc.ref.content.config", cfg.digest);
	rc = content_put(c, &cfg, &lc, err);
	if (rc == 0)
		rc = content_put(c, &man, &lm, err);
	if (rc == 0)
		rc = unpack(c, sn, name, li, err);
	if (rc == 0)
		rc = image_put(c, name, &man, err);
	rpc_client_lease(c, "");
	{
		struct anole_error e2 = {0};

		lease(c, id, false, &e2);
	}
out:
	free(cfg.text);
	free(man.text);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"address", required_argument, NULL, 'a'},
					     {"namespace", required_argument, NULL, 'n'},
					     {"snapshotter", required_argument, NULL, 's'},
					     {NULL, 0, NULL, 0}};
	const char *sock = "/run/containerd/containerd.sock", *ns = "default", *sn = "anole";
	struct anole_error err = {0};
	struct anole_lazy_info *li = NULL;
	struct rpc_client *c = NULL;
	const char *name;
	char ref[2048];
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'a')
			sock = optarg;
		else if (o == 'n')
			ns = optarg;
		else if (o == 's')
			sn = optarg;
		else
			return fputs(usage, stderr), 2;
	}
	if (optind != argc - 1)
		return fputs(usage, stderr), 2;
	name = argv[optind];
	if (!strncmp(name, "docker://", 9))
		name += 9;
	if (snprintf(ref, sizeof(ref), "docker://%s", name) >= (int)sizeof(ref)) {
		fputs("anole: ctr-pull: reference too long\n", stderr);
		return 2;
	}
	rc = anole_lazy_open(ref, 0, &li, &err);
	if (rc == 0)
		rc = rpc_client_open(sock, ns, &c, &err);
	if (rc == 0)
		rc = pull(c, sn, name, li, &err);
	rpc_client_close(c);
	anole_lazy_free(li);
	if (rc != 0) {
		fprintf(stderr, "anole: ctr-pull: %s: %s\n", name, err.msg);
		return 1;
	}
	printf("%s: a lazy snapshot through %s\n", name, sn);
	return 0;
}
