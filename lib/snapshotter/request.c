// SPDX-License-Identifier: Apache-2.0
/* containerd's snapshots requests: protobuf-c decodes the bytes, then
 * what containerd's own snapshotters rely on is checked here, once, so
 * that the methods never meet a request they cannot act on: the keys
 * they need present, every string UTF-8 (the records are JSON, and
 * protobuf-c does not check proto3 strings), labels within containerd's
 * size limit, an Update's mask naming labels only. */
#include <stdio.h>
#include <string.h>

#include "snapshots.pb-c.h"
#include "snapshotter/request.h"
#include "util/util.h"

#define SVC "/containerd.services.snapshots.v1.Snapshots/"

const char *const snap_method_names[SNAP_OP_CLEANUP + 1] = {
	[SNAP_OP_PREPARE] = SVC "Prepare", [SNAP_OP_VIEW] = SVC "View",
	[SNAP_OP_MOUNTS] = SVC "Mounts",   [SNAP_OP_COMMIT] = SVC "Commit",
	[SNAP_OP_REMOVE] = SVC "Remove",   [SNAP_OP_STAT] = SVC "Stat",
	[SNAP_OP_UPDATE] = SVC "Update",   [SNAP_OP_LIST] = SVC "List",
	[SNAP_OP_USAGE] = SVC "Usage",     [SNAP_OP_CLEANUP] = SVC "Cleanup",
};

static const ProtobufCMessageDescriptor *const descriptors[SNAP_OP_CLEANUP + 1] = {
	[SNAP_OP_PREPARE] = &containerd__services__snapshots__v1__prepare_snapshot_request__descriptor,
	[SNAP_OP_VIEW] = &containerd__services__snapshots__v1__view_snapshot_request__descriptor,
	[SNAP_OP_MOUNTS] = &containerd__services__snapshots__v1__mounts_request__descriptor,
	[SNAP_OP_COMMIT] = &containerd__services__snapshots__v1__commit_snapshot_request__descriptor,
	[SNAP_OP_REMOVE] = &containerd__services__snapshots__v1__remove_snapshot_request__descriptor,
	[SNAP_OP_STAT] = &containerd__services__snapshots__v1__stat_snapshot_request__descriptor,
	[SNAP_OP_UPDATE] = &containerd__services__snapshots__v1__update_snapshot_request__descriptor,
	[SNAP_OP_LIST] = &containerd__services__snapshots__v1__list_snapshots_request__descriptor,
	[SNAP_OP_USAGE] = &containerd__services__snapshots__v1__usage_request__descriptor,
	[SNAP_OP_CLEANUP] = &containerd__services__snapshots__v1__cleanup_request__descriptor,
};

/* Every generated labels map entry has this layout. */
struct label_entry {
	ProtobufCMessage base;
	char *key, *value;
};

static enum rpc_code refuse(char *why, size_t len, enum rpc_code code, const char *msg)
{
	snprintf(why, len, "%s", msg);
	return code;
}

/* jansson refuses a string that is not UTF-8: the records' own check */
static bool is_utf8(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

/* @n map entries as a JSON object in r->labels. */
static enum rpc_code labels_of(struct snap_request *r, size_t n, void *const *entries, char *why,
			       size_t len)
{
	r->labels = json_object();
	if (!r->labels)
		return refuse(why, len, RPC_INTERNAL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct label_entry *e = entries[i];
		const char *k = e->key ? e->key : "", *v = e->value ? e->value : "";

		if (strlen(k) + strlen(v) > SNAP_LABEL_MAX) {
			/* containerd's own words */
			snprintf(why, len,
				 "label key and value length (%zu bytes) greater than maximum size (%d bytes)",
				 strlen(k) + strlen(v), SNAP_LABEL_MAX);
			return RPC_INVALID_ARGUMENT;
		}
		if (!*k)
			return refuse(why, len, RPC_INVALID_ARGUMENT, "a label has an empty key");
		if (!is_utf8(k) || !is_utf8(v))
			return refuse(why, len, RPC_INVALID_ARGUMENT, "a label is not UTF-8");
		if (json_object_set_new(r->labels, k, json_string(v)))
			return refuse(why, len, RPC_INTERNAL, "out of memory");
	}
	return RPC_OK;
}

#define LABELS(r, m, why, len) labels_of(r, (m)->n_labels, (void *const *)(m)->labels, why, len)

/* The fields of the decoded message, by op. */
static enum rpc_code fields_of(struct snap_request *r, char *why, size_t len)
{
	switch (r->op) {
	case SNAP_OP_PREPARE: {
		const Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *m = (void *)r->msg;

		r->key = m->key;
		r->parent = m->parent;
		return LABELS(r, m, why, len);
	}
	case SNAP_OP_VIEW: {
		const Containerd__Services__Snapshots__V1__ViewSnapshotRequest *m = (void *)r->msg;

		r->key = m->key;
		r->parent = m->parent;
		return LABELS(r, m, why, len);
	}
	case SNAP_OP_MOUNTS:
		r->key = ((const Containerd__Services__Snapshots__V1__MountsRequest *)r->msg)->key;
		return RPC_OK;
	case SNAP_OP_COMMIT: {
		const Containerd__Services__Snapshots__V1__CommitSnapshotRequest *m = (void *)r->msg;

		r->key = m->key;
		r->name = m->name;
		return LABELS(r, m, why, len);
	}
	case SNAP_OP_REMOVE:
		r->key = ((const Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *)r->msg)->key;
		return RPC_OK;
	case SNAP_OP_STAT:
		r->key = ((const Containerd__Services__Snapshots__V1__StatSnapshotRequest *)r->msg)->key;
		return RPC_OK;
	case SNAP_OP_UPDATE: {
		const Containerd__Services__Snapshots__V1__UpdateSnapshotRequest *m = (void *)r->msg;

		if (!m->info)
			return refuse(why, len, RPC_INVALID_ARGUMENT,
				      "update without the snapshot's info");
		r->key = m->info->name;
		if (m->update_mask) {
			r->paths = (const char *const *)m->update_mask->paths;
			r->n_paths = m->update_mask->n_paths;
		}
		return LABELS(r, m->info, why, len);
	}
	case SNAP_OP_USAGE:
		r->key = ((const Containerd__Services__Snapshots__V1__UsageRequest *)r->msg)->key;
		return RPC_OK;
	case SNAP_OP_LIST:
	case SNAP_OP_CLEANUP:
		return RPC_OK;
	}
	return refuse(why, len, RPC_INTERNAL, "no such operation");
}

/* What every op's fields must be. An empty key is refused where a
 * snapshot is made (containerd's storage does the same); a lookup of
 * one finds nothing (NOT_FOUND, from the store, as in containerd). */
static enum rpc_code check(struct snap_request *r, char *why, size_t len)
{
	bool makes = r->op == SNAP_OP_PREPARE || r->op == SNAP_OP_VIEW || r->op == SNAP_OP_COMMIT;

	if (r->op == SNAP_OP_LIST || r->op == SNAP_OP_CLEANUP)
		return RPC_OK;
	if (!r->key)
		r->key = "";
	if (!r->parent)
		r->parent = "";
	if (makes && !*r->key)
		return refuse(why, len, RPC_INVALID_ARGUMENT, "key must not be empty");
	if (r->op == SNAP_OP_COMMIT && (!r->name || !*r->name))
		return refuse(why, len, RPC_INVALID_ARGUMENT, "name must not be empty");
	if (!is_utf8(r->key) || !is_utf8(r->parent) || (r->name && !is_utf8(r->name)))
		return refuse(why, len, RPC_INVALID_ARGUMENT, "key, parent or name is not UTF-8");
	for (size_t i = 0; i < r->n_paths; i++) {
		const char *p = r->paths[i] ? r->paths[i] : "";

		if (strcmp(p, "labels") && (strncmp(p, "labels.", 7) || !p[7] || !is_utf8(p)))
			return refuse(why, len, RPC_INVALID_ARGUMENT,
				      "cannot update a field of a snapshot other than its labels");
	}
	return RPC_OK;
}

enum rpc_code snap_request_parse(const char *method, const uint8_t *buf, size_t len,
				 struct snap_request *r, char *why, size_t whylen)
{
	enum rpc_code code;
	size_t op;

	memset(r, 0, sizeof(*r));
	why[0] = 0;
	for (op = 0; op < ARRAY_SIZE(snap_method_names); op++)
		if (!strcmp(method, snap_method_names[op]))
			break;
	if (op == ARRAY_SIZE(snap_method_names)) {
		snprintf(why, whylen, "%s is not implemented", method);
		return RPC_UNIMPLEMENTED;
	}
	r->op = (enum snap_op)op;
	r->msg = protobuf_c_message_unpack(descriptors[op], NULL, len, buf);
	if (!r->msg)
		return refuse(why, whylen, RPC_INVALID_ARGUMENT, "malformed request");
	code = fields_of(r, why, whylen);
	if (code == RPC_OK)
		code = check(r, why, whylen);
	if (code != RPC_OK)
		snap_request_release(r);
	return code;
}

void snap_request_release(struct snap_request *r)
{
	json_decref(r->labels);
	if (r->msg)
		protobuf_c_message_free_unpacked(r->msg, NULL);
	memset(r, 0, sizeof(*r));
}
