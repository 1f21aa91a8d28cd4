// SPDX-License-Identifier: Apache-2.0
/* containerd's snapshots service (containerd.services.snapshots.v1) on
 * the snapshot store: requests decoded and replies encoded with the
 * protobuf-c code generated from containerd's own proto files. Errors
 * map to the gRPC codes containerd's errdefs turn back into its errors. */
#include <ftw.h>
#include <stdio.h>

#include <sys/mount.h>

#include "snapshots.pb-c.h"
#include "snapshotter/lazy.h"
#include "snapshotter/request.h"
#include "snapshotter/rpc.h"
#include "snapshotter/service.h"
#include "util/util.h"

/* containerd's own service sends List in pieces of this many. */
#define LIST_BATCH 100

static enum rpc_code code_of(int rc)
{
	switch (-rc) {
	case ENOENT:
		return RPC_NOT_FOUND;
	case EEXIST:
		return RPC_ALREADY_EXISTS;
	case EINVAL:
		return RPC_INVALID_ARGUMENT;
	case EBUSY:
		return RPC_FAILED_PRECONDITION;
	case EHOSTUNREACH:
		return RPC_UNAVAILABLE;
	default:
		return RPC_INTERNAL;
	}
}

static void fail(struct rpc_reply *reply, const char *method, int rc, const struct anole_error *err)
{
	rpc_reply_status(reply, code_of(rc), "%s", err->msg);
	fprintf(stderr, "anole-snapshotter: %s: %s\n", method, err->msg);
}

/* Pack @msg as the reply's next message. */
static void reply_msg(struct rpc_reply *reply, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf || rpc_reply_add(reply, buf, protobuf_c_message_pack(msg, buf)) < 0)
		rpc_reply_status(reply, RPC_INTERNAL, "out of memory");
}

typedef Containerd__Services__Snapshots__V1__Info__LabelsEntry LabelEntry;

/* ---- Info ---- */

struct info_buf {
	Containerd__Services__Snapshots__V1__Info info;
	Google__Protobuf__Timestamp created, updated;
	LabelEntry *ptrs[256];
	LabelEntry entries[256];
};

static void ts_of(Google__Protobuf__Timestamp *ts, int64_t ns)
{
	google__protobuf__timestamp__init(ts);
	ts->seconds = ns / 1000000000;
	ts->nanos = (int32_t)(ns % 1000000000);
}

static void info_fill(struct info_buf *b, const struct snap_info *si)
{
	static const Containerd__Services__Snapshots__V1__Kind kinds[] = {
		[SNAP_VIEW] = CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__VIEW,
		[SNAP_ACTIVE] = CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__ACTIVE,
		[SNAP_COMMITTED] = CONTAINERD__SERVICES__SNAPSHOTS__V1__KIND__COMMITTED};
	const char *k;
	json_t *v;
	size_t n = 0;

	containerd__services__snapshots__v1__info__init(&b->info);
	b->info.name = (char *)si->key;
	b->info.parent = (char *)si->parent;
	b->info.kind = kinds[si->kind];
	ts_of(&b->created, si->created_ns);
	ts_of(&b->updated, si->updated_ns);
	b->info.created_at = &b->created;
	b->info.updated_at = &b->updated;
	json_object_foreach (si->labels, k, v) {
		if (n == ARRAY_SIZE(b->entries) || !json_is_string(v))
			break;
		containerd__services__snapshots__v1__info__labels_entry__init(&b->entries[n]);
		b->entries[n].key = (char *)k;
		b->entries[n].value = (char *)json_string_value(v);
		b->ptrs[n] = &b->entries[n];
		n++;
	}
	b->info.n_labels = n;
	b->info.labels = b->ptrs;
}

/* ---- Mounts ---- */

struct mounts_buf {
	Containerd__Types__Mount mount, *ptr;
	char src[4096];
	char opt[4][8192];
	char *opts[4];
};

/* The lowerdir list of @parent and its ancestors, nearest first; @n
 * counts them. */
static int lowerdirs(struct snap_store *s, const char *parent, char *buf, size_t len, size_t *n)
{
	size_t used = 0;

	*n = 0;
	buf[0] = 0;
	while (*parent) {
		struct snap_info pi;
		struct anole_error e = {0};
		char dir[4096];

		if (snap_stat(s, parent, &pi, &e) < 0 || snap_dir(s, pi.id, "fs", dir, sizeof(dir)) < 0)
			return -ENOENT;
		parent = pi.parent;
		/* a lazy image's upper layers are empty: its base, the lazy
		 * mount, holds the whole tree */
		if (json_is_true(json_object_get(pi.lazy, "upper")))
			continue;
		if (used + strlen(dir) + 2 > len)
			return -ENAMETOOLONG;
		used += (size_t)sprintf(buf + used, "%s%s", used ? ":" : "", dir);
		(*n)++;
	}
	return 0;
}

/* What containerd's overlayfs snapshotter answers: a bind mount of the
 * snapshot's own directory (no parent) or of its only parent (a view),
 * else an overlay with the parents as lower layers. */
static int mounts_fill(struct snap_store *s, const struct snap_info *si, struct mounts_buf *b)
{
	size_t nparents, no = 0;
	char lower[8000];
	bool ro = si->kind == SNAP_VIEW;

	containerd__types__mount__init(&b->mount);
	b->ptr = &b->mount;
	for (size_t i = 0; i < ARRAY_SIZE(b->opts); i++)
		b->opts[i] = b->opt[i];
	if (lowerdirs(s, si->parent, lower, sizeof(lower), &nparents) < 0)
		return -ENOENT;
	if (nparents == 0 || (ro && nparents == 1)) {
		b->mount.type = "bind";
		if (nparents == 0)
			snap_dir(s, si->id, "fs", b->src, sizeof(b->src));
		else
			snprintf(b->src, sizeof(b->src), "%s", lower);
		snprintf(b->opt[no++], sizeof(b->opt[0]), "%s", ro ? "ro" : "rw");
		snprintf(b->opt[no++], sizeof(b->opt[0]), "rbind");
	} else {
		char dir[4096];

		b->mount.type = "overlay";
		snprintf(b->src, sizeof(b->src), "overlay");
		if (!ro) {
			snap_dir(s, si->id, "work", dir, sizeof(dir));
			snprintf(b->opt[no++], sizeof(b->opt[0]), "workdir=%s", dir);
			snap_dir(s, si->id, "fs", dir, sizeof(dir));
			snprintf(b->opt[no++], sizeof(b->opt[0]), "upperdir=%s", dir);
		}
		snprintf(b->opt[no++], sizeof(b->opt[0]), "lowerdir=%s", lower);
	}
	b->mount.source = b->src;
	b->mount.n_options = no;
	b->mount.options = b->opts;
	return 0;
}

/* ---- methods ---- */

/* A call: its request already decoded and checked (request.c). The
 * methods run with the store's lock held (snap_service) except the ones
 * that wait on a registry, the daemon or the disk (prepare, remove,
 * usage, cleanup): they take it around their in-memory steps. */
struct call {
	struct snap_store *store;
	const char *method;
	const struct snap_request *r;
	struct rpc_reply *reply;
};

static void send_mounts(struct call *c, const char *key, int which)
{
	struct anole_error err = {0};
	struct snap_info si = {0};
	struct mounts_buf b;
	int rc = snap_stat(c->store, key, &si, &err);

	/* a committed snapshot has no mounts of its own: containerd's
	 * storage refuses it the same way */
	if (rc == 0 && si.kind == SNAP_COMMITTED)
		rc = anole_err(&err, EBUSY, "snapshot %s is not active or a view", key);
	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	if (mounts_fill(c->store, &si, &b) < 0)
		return rpc_reply_status(c->reply, RPC_INTERNAL, "snapshot %s: a parent is missing",
					key);
	if (which == 0) {
		Containerd__Services__Snapshots__V1__PrepareSnapshotResponse m;

		containerd__services__snapshots__v1__prepare_snapshot_response__init(&m);
		m.n_mounts = 1;
		m.mounts = &b.ptr;
		reply_msg(c->reply, &m.base);
	} else {
		Containerd__Services__Snapshots__V1__MountsResponse m;

		containerd__services__snapshots__v1__mounts_response__init(&m);
		m.n_mounts = 1;
		m.mounts = &b.ptr;
		reply_msg(c->reply, &m.base);
	}
}

/* With the lock held. */
static void create(struct call *c, enum snap_kind kind, const char *key, const char *parent,
		   json_t *labels)
{
	struct anole_error err = {0};
	int rc = snap_create(c->store, kind, key, parent, labels, &err);

	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	/* Prepare's and View's responses have the same fields as Mounts's */
	send_mounts(c, key, 0);
}

static void create_locked(struct call *c, enum snap_kind kind, const char *key,
			  const char *parent, json_t *labels)
{
	snap_lock(c->store);
	create(c, kind, key, parent, labels);
	snap_unlock(c->store);
}

/* The remote snapshot is there: containerd's metadata store then finds
 * it by its containerd.io/snapshot.ref label and parent (List), and the
 * unpacker neither fetches nor applies the layer. */
static void lazy_exists(struct call *c, const char *key, const char *what, const char *ref)
{
	rpc_reply_status(c->reply, RPC_ALREADY_EXISTS, "snapshot %s: %s of %s", key, what, ref);
	fprintf(stderr, "anole-snapshotter: %s: %s: %s of %s\n", c->method, key, what, ref);
}

/* Record the committed @key with its @lazy object over the directories
 * of @id; undone (the mount, then the directories) when the record
 * fails. Takes the lock for the record, not for the unmount. */
static int lazy_record(struct call *c, uint64_t id, const char *key, const char *parent,
		       json_t *labels, json_t *lazy, struct anole_error *err)
{
	struct anole_error e2 = {0};
	char mp[4096];
	int rc;

	/* once recorded, @lazy is the store's too: let go of it, and read
	 * it, under the lock only */
	snprintf(mp, sizeof(mp), "%s", json_string_value(json_object_get(lazy, "mountpoint")) ?: "");
	snap_lock(c->store);
	rc = lazy ? snap_finish(c->store, id, SNAP_COMMITTED, key, parent, labels, lazy, err)
		  : anole_err(err, ENOMEM, "out of memory");
	json_decref(lazy);
	snap_unlock(c->store);
	if (rc < 0) {
		if (*mp)
			lazy_umount(mp, &e2);
		snap_lock(c->store);
		snap_abort(c->store, id);
		snap_unlock(c->store);
	}
	return rc;
}

/* An upper layer of a lazy image: an empty committed snapshot. */
static void lazy_upper(struct call *c, const char *key, const char *parent, json_t *labels,
		       const char *ref)
{
	struct anole_error err = {0};
	uint64_t id;
	int rc;

	snap_lock(c->store);
	rc = snap_begin(c->store, SNAP_COMMITTED, key, parent, &id, &err);
	snap_unlock(c->store);
	if (rc == 0)
		rc = lazy_record(c, id, key, parent, labels,
				 json_pack("{s:s, s:b}", "ref", ref, "upper", 1), &err);
	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	lazy_exists(c, key, "an upper layer", ref);
}

/* Is @ref an anole lazy image whose metadata layer is @layer? 1 yes,
 * 0 no (an ordinary image: the ordinary path), or a failure to ask its
 * registry (then -EHOSTUNREACH: the pull cannot go on either way). */
static int lazy_is_meta(const char *ref, const char *layer, struct anole_error *err)
{
	struct anole_lazy_info *li;
	int rc = anole_lazy_open(ref, 0, &li, err);

	if (rc == -ENOTSUP)
		return 0;
	if (rc < 0)
		return -EHOSTUNREACH;
	rc = layer && !strcmp(li->meta_digest, layer);
	anole_lazy_free(li);
	return rc;
}

/* The daemon mounts @ref at ROOT/snapshots/ID/fs, then the record
 * follows (the make-first order of every snapshot). A mount that fails
 * is -EHOSTUNREACH with the daemon's line: UNAVAILABLE. */
static int lazy_new_base(struct call *c, const char *key, const char *ref, json_t *labels,
			 struct anole_error *err)
{
	char mp[4096];
	uint64_t id;
	int rc;

	/* the key is taken while the daemon mounts, without the lock */
	snap_lock(c->store);
	rc = snap_begin(c->store, SNAP_COMMITTED, key, "", &id, err);
	snap_unlock(c->store);
	if (rc < 0)
		return rc;
	if (snap_dir(c->store, id, "fs", mp, sizeof(mp)) < 0)
		rc = anole_err(err, ENAMETOOLONG, "snapshotter: root path too long");
	else if (lazy_mount(ref, mp, err) < 0)
		rc = -EHOSTUNREACH;
	if (rc < 0) {
		snap_lock(c->store);
		snap_abort(c->store, id);
		snap_unlock(c->store);
		return rc;
	}
	return lazy_record(c, id, key, "", labels,
			   json_pack("{s:s, s:s}", "ref", ref, "mountpoint", mp), err);
}

/* A first layer with the cri.* labels: 1 when it was an anole lazy
 * image's metadata layer (answered), 0 for an ordinary layer. */
static int lazy_base(struct call *c, const char *key, json_t *labels)
{
	const char *layer = json_string_value(json_object_get(labels, LABEL_LAYER_DIGEST));
	struct anole_error err = {0};
	char ref[2048];
	bool taken;
	int rc = lazy_ref_of(labels, ref, sizeof(ref));

	if (rc < 0)
		return 0;
	/* a key already there (or being made by another call) is answered
	 * before the registry is asked: it may be slow */
	snap_lock(c->store);
	taken = snap_taken(c->store, key);
	snap_unlock(c->store);
	if (taken) {
		fail(c->reply, c->method, anole_err(&err, EEXIST, "snapshot %s already exists", key),
		     &err);
		return 1;
	}
	if ((rc = lazy_is_meta(ref, layer, &err)) == 0)
		return 0;
	if (rc > 0)
		rc = lazy_new_base(c, key, ref, labels, &err);
	if (rc < 0)
		fail(c->reply, c->method, rc, &err);
	else
		lazy_exists(c, key, "a lazy mount", ref);
	return 1;
}

/* What a Prepare is, from its labels and its parent's record (under
 * the lock); @pref gets a copy of the parent's lazy image reference. */
static enum lazy_kind prepare_kind(struct call *c, const char *parent, json_t *labels,
				   char *pref, size_t len)
{
	struct anole_error err = {0};
	struct snap_info pi = {0};
	bool has_parent = parent && *parent;
	enum lazy_kind k = LAZY_NONE;

	snap_lock(c->store);
	/* a missing parent: create() answers NOT_FOUND */
	if (!has_parent || snap_stat(c->store, parent, &pi, &err) == 0) {
		k = lazy_classify(labels, has_parent, pi.lazy);
		snprintf(pref, len, "%s", json_string_value(json_object_get(pi.lazy, "ref")) ?: "");
	}
	snap_unlock(c->store);
	return k;
}

static void prepare(struct call *c, const char *key, const char *parent, json_t *labels)
{
	char pref[2048];

	switch (prepare_kind(c, parent, labels, pref, sizeof(pref))) {
	case LAZY_UPPER:
		return lazy_upper(c, key, parent, labels, pref);
	case LAZY_BASE:
		if (lazy_base(c, key, labels))
			return;
		break;
	case LAZY_NONE:
		break;
	}
	create_locked(c, SNAP_ACTIVE, key, parent, labels);
}

static void m_prepare(struct call *c)
{
	prepare(c, c->r->key, c->r->parent, c->r->labels);
}

static void m_view(struct call *c)
{
	create_locked(c, SNAP_VIEW, c->r->key, c->r->parent, c->r->labels);
}

static void m_mounts(struct call *c)
{
	send_mounts(c, c->r->key, 1);
}

static void send_empty(struct call *c)
{
	Google__Protobuf__Empty m;

	google__protobuf__empty__init(&m);
	reply_msg(c->reply, &m.base);
}

static void m_commit(struct call *c)
{
	struct anole_error err = {0};
	int rc = snap_commit(c->store, c->r->name, c->r->key, c->r->labels, &err);

	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	send_empty(c);
}

/* The lazy mount at @mp, through the daemon (which lets go of its
 * blobs); with no daemon to ask, the mount is gone with it or is
 * unmounted here (what `anole umount` does for a mount the daemon lost). */
static int unmount_lazy(const char *mp, struct anole_error *err)
{
	char why[sizeof(err->msg)];

	if (lazy_umount(mp, err) == 0)
		return 0;
	snprintf(why, sizeof(why), "%s", err->msg);
	if (umount2(mp, UMOUNT_NOFOLLOW) == 0 || errno == EINVAL)
		return 0;
	return anole_err(err, EBUSY, "unmounting %s: %s", mp, why);
}

/* A lazy base's mount goes first (without the lock), then the record
 * and the directory as for any snapshot; a base with children keeps its
 * mount (snap_remove answers EBUSY). */
static int lazy_unmount(struct snap_store *s, const char *key, struct anole_error *err)
{
	struct snap_info si = {0};
	const char *mp = NULL;
	char dir[4096];

	snap_lock(s);
	if (snap_stat(s, key, &si, err) == 0 && !snap_has_children(s, key))
		mp = json_string_value(json_object_get(si.lazy, "mountpoint"));
	if (mp)
		snprintf(dir, sizeof(dir), "%s", mp);
	snap_unlock(s);
	return mp ? unmount_lazy(dir, err) : 0;
}

static void m_remove(struct call *c)
{
	struct anole_error err = {0};
	int rc = lazy_unmount(c->store, c->r->key, &err);

	if (rc == 0) {
		snap_lock(c->store);
		rc = snap_remove(c->store, c->r->key, &err);
		snap_unlock(c->store);
	}
	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	send_empty(c);
}

static void m_stat(struct call *c)
{
	Containerd__Services__Snapshots__V1__StatSnapshotResponse m;
	struct anole_error err = {0};
	struct info_buf *b = malloc(sizeof(*b));
	struct snap_info si = {0};
	int rc = b ? snap_stat(c->store, c->r->key, &si, &err)
		   : anole_err(&err, ENOMEM, "out of memory");
	if (rc < 0)
		fail(c->reply, c->method, rc, &err);
	else {
		info_fill(b, &si);
		containerd__services__snapshots__v1__stat_snapshot_response__init(&m);
		m.info = &b->info;
		reply_msg(c->reply, &m.base);
	}
	free(b);
}

struct list_state {
	struct call *c;
	struct info_buf *bufs;
	Containerd__Services__Snapshots__V1__Info *ptrs[LIST_BATCH];
	size_t n;
};

static void list_flush(struct list_state *ls)
{
	Containerd__Services__Snapshots__V1__ListSnapshotsResponse m;

	if (!ls->n)
		return;
	containerd__services__snapshots__v1__list_snapshots_response__init(&m);
	m.n_info = ls->n;
	m.info = ls->ptrs;
	reply_msg(ls->c->reply, &m.base);
	ls->n = 0;
}

static int list_one(void *ctx, const struct snap_info *si)
{
	struct list_state *ls = ctx;

	info_fill(&ls->bufs[ls->n], si);
	ls->ptrs[ls->n] = &ls->bufs[ls->n].info;
	if (++ls->n == LIST_BATCH)
		list_flush(ls);
	return ls->c->reply->code != RPC_OK;
}

/* Filters are not applied here: containerd's client-side callers (ctr,
 * the metadata store) filter what they need (docs/DESIGN-snapshotter.md). */
static void m_list(struct call *c)
{
	struct list_state ls = {.c = c, .bufs = calloc(LIST_BATCH, sizeof(struct info_buf))};


	if (!ls.bufs)
		rpc_reply_status(c->reply, RPC_INTERNAL, "out of memory");
	else if (!snap_each(c->store, list_one, &ls))
		list_flush(&ls);
	free(ls.bufs);
}

static void m_update(struct call *c)
{
	Containerd__Services__Snapshots__V1__UpdateSnapshotResponse m;
	struct anole_error err = {0};
	struct info_buf *b = malloc(sizeof(*b));
	struct snap_info si = {0};
	int rc = b ? snap_update(c->store, c->r->key, c->r->labels, c->r->paths, c->r->n_paths,
				 &err)
		   : anole_err(&err, ENOMEM, "out of memory");

	if (rc == 0)
		rc = snap_stat(c->store, c->r->key, &si, &err);
	if (rc < 0)
		fail(c->reply, c->method, rc, &err);
	else {
		info_fill(b, &si);
		containerd__services__snapshots__v1__update_snapshot_response__init(&m);
		m.info = &b->info;
		reply_msg(c->reply, &m.base);
	}
	free(b);
}

/* nftw has no context argument: one count per thread (a call is served
 * by one thread). */
static _Thread_local int64_t du_bytes, du_inodes;

static int du_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path, (void)type, (void)ftw;
	du_bytes += (int64_t)st->st_blocks * 512;
	du_inodes++;
	return 0;
}

/* What the snapshot's own directory holds, as containerd's overlay
 * snapshotter reports it: blocks in use and inodes, the directory itself
 * included (a file with several links is counted at each). */
static void m_usage(struct call *c)
{
	Containerd__Services__Snapshots__V1__UsageResponse m;
	struct anole_error err = {0};
	struct snap_info si = {0};
	char dir[4096];
	bool lazy;
	int rc;

	/* the walk goes without the lock: the directory is the snapshot's
	 * own, and a Remove meanwhile is an ordinary failure of it */
	snap_lock(c->store);
	rc = snap_stat(c->store, c->r->key, &si, &err);
	lazy = rc == 0 && si.lazy;
	snap_unlock(c->store);
	du_bytes = du_inodes = 0;
	/* a lazy mount's bytes are the daemon's shared cache, not ours */
	if (rc == 0 && !lazy && (snap_dir(c->store, si.id, "fs", dir, sizeof(dir)) < 0 ||
			nftw(dir, du_one, 16, FTW_PHYS | FTW_MOUNT) != 0))
		rc = anole_err(&err, errno ? errno : EIO, "snapshot %s: measuring %s failed",
			       c->r->key, dir);
	if (rc < 0)
		fail(c->reply, c->method, rc, &err);
	else {
		containerd__services__snapshots__v1__usage_response__init(&m);
		m.size = du_bytes;
		m.inodes = du_inodes;
		reply_msg(c->reply, &m.base);
	}
}

static void m_cleanup(struct call *c)
{
	struct anole_error err = {0};
	int rc = snap_cleanup(c->store, unmount_lazy, &err);

	if (rc < 0)
		return fail(c->reply, c->method, rc, &err);
	send_empty(c);
}

/* by enum snap_op */
static void (*const methods[])(struct call *c) = {
	[SNAP_OP_PREPARE] = m_prepare, [SNAP_OP_VIEW] = m_view,	    [SNAP_OP_MOUNTS] = m_mounts,
	[SNAP_OP_COMMIT] = m_commit,   [SNAP_OP_REMOVE] = m_remove, [SNAP_OP_STAT] = m_stat,
	[SNAP_OP_UPDATE] = m_update,   [SNAP_OP_LIST] = m_list,	    [SNAP_OP_USAGE] = m_usage,
	[SNAP_OP_CLEANUP] = m_cleanup,
};

/* by enum snap_op: the methods that take the lock themselves */
static const bool self_locking[ARRAY_SIZE(methods)] = {
	[SNAP_OP_PREPARE] = true, [SNAP_OP_VIEW] = true,  [SNAP_OP_REMOVE] = true,
	[SNAP_OP_USAGE] = true,	  [SNAP_OP_CLEANUP] = true,
};

void snap_service(void *ctx, const char *method, const uint8_t *req, size_t len,
		  struct rpc_reply *reply)
{
	struct snap_request r;
	struct call c = {ctx, method, &r, reply};
	char why[sizeof(reply->detail)];
	enum rpc_code code = snap_request_parse(method, req, len, &r, why, sizeof(why));

	if (code != RPC_OK) {
		rpc_reply_status(reply, code, "%s", why);
		fprintf(stderr, "anole-snapshotter: %s: %s\n", method, why);
		return;
	}
	if (self_locking[r.op])
		methods[r.op](&c);
	else {
		snap_lock(c.store);
		methods[r.op](&c);
		snap_unlock(c.store);
	}
	snap_request_release(&r);
}
