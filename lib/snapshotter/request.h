/* SPDX-License-Identifier: Apache-2.0 */
/* containerd's snapshots requests, decoded with protobuf-c and checked
 * before the service acts on them: a request either becomes a struct
 * snap_request whose fields hold what its method needs, or the gRPC
 * status to answer. No store, no containerd: the fuzz target runs it on
 * bytes alone (tests/fuzz/fuzz_snapreq.c). */
#ifndef ANOLE_SNAPSHOTTER_REQUEST_H
#define ANOLE_SNAPSHOTTER_REQUEST_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshotter/rpc.h"

/* containerd's labels.Validate: a label's key and value together */
#define SNAP_LABEL_MAX 4096

enum snap_op {
	SNAP_OP_PREPARE,
	SNAP_OP_VIEW,
	SNAP_OP_MOUNTS,
	SNAP_OP_COMMIT,
	SNAP_OP_REMOVE,
	SNAP_OP_STAT,
	SNAP_OP_UPDATE,
	SNAP_OP_LIST,
	SNAP_OP_USAGE,
	SNAP_OP_CLEANUP,
};

struct snap_request {
	enum snap_op op;
	/* the snapshot acted on: Prepare's and View's new one, Commit's
	 * active one, Update's; UTF-8 for every method but List and Cleanup
	 * (NULL there), non-empty where a snapshot is made */
	const char *key;
	/* Prepare, View: "" for none (and "" for the other keyed methods) */
	const char *parent;
	/* Commit: the committed snapshot's name, non-empty */
	const char *name;
	/* Prepare, View, Commit, Update: an object of string values (owned) */
	json_t *labels;
	/* Update's field mask: each "labels" or "labels.KEY" */
	const char *const *paths;
	size_t n_paths;
	/* the decoded message the strings above point into */
	ProtobufCMessage *msg;
};

/* The method names containerd calls, for each op ("/containerd...Prepare"). */
extern const char *const snap_method_names[SNAP_OP_CLEANUP + 1];

/* Decode @len bytes as @method's request and check them: RPC_OK with @r
 * filled (release it), or the code to answer with its reason in @why
 * (UNIMPLEMENTED for a method the service has not, INVALID_ARGUMENT for
 * bytes that are no valid request). */
enum rpc_code snap_request_parse(const char *method, const uint8_t *buf, size_t len,
				 struct snap_request *r, char *why, size_t whylen);
void snap_request_release(struct snap_request *r);

#endif
