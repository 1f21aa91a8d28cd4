/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: bytes as each of containerd's snapshots requests -> a
 * checked request or a status (lib/snapshotter/request.c), as the
 * snapshotter decodes them before acting, without a containerd. Beyond
 * not crashing or leaking: an accepted request carries what its method
 * needs (the service acts on it without looking again), and a refusal
 * has a code and says why.
 */
#include <stdlib.h>
#include <string.h>

#include "snapshotter/request.h"

static void check_string(const char *s)
{
	json_t *j = json_string(s);

	if (!j)
		abort(); /* not UTF-8: the records could not hold it */
	json_decref(j);
}

static void check_accepted(const struct snap_request *r)
{
	const char *k;
	json_t *v;

	if (!r->msg)
		abort();
	if (r->op == SNAP_OP_LIST || r->op == SNAP_OP_CLEANUP) {
		if (r->key || r->labels)
			abort();
		return;
	}
	if (!r->key || !r->parent)
		abort();
	check_string(r->key);
	check_string(r->parent);
	if ((r->op == SNAP_OP_PREPARE || r->op == SNAP_OP_VIEW || r->op == SNAP_OP_COMMIT) &&
	    !*r->key)
		abort();
	if (r->op == SNAP_OP_COMMIT && (!r->name || !*r->name))
		abort();
	if ((r->op == SNAP_OP_PREPARE || r->op == SNAP_OP_VIEW || r->op == SNAP_OP_COMMIT ||
	     r->op == SNAP_OP_UPDATE) &&
	    !json_is_object(r->labels))
		abort();
	json_object_foreach (r->labels, k, v)
		if (!*k || !json_is_string(v) || strlen(k) + json_string_length(v) > SNAP_LABEL_MAX)
			abort();
	for (size_t i = 0; i < r->n_paths; i++)
		if (strcmp(r->paths[i], "labels") &&
		    (strncmp(r->paths[i], "labels.", 7) || !r->paths[i][7]))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_request r;
	char why[512];

	for (size_t op = 0; op <= SNAP_OP_CLEANUP; op++) {
		enum rpc_code code = snap_request_parse(snap_method_names[op], data, size, &r, why,
							sizeof(why));

		if (code == RPC_OK) {
			if (r.op != op)
				abort();
			check_accepted(&r);
			snap_request_release(&r);
		} else if (!why[0] || !memchr(why, 0, sizeof(why)) || r.msg || r.labels)
			abort(); /* a refusal says why and holds nothing */
	}
	if (snap_request_parse("/containerd.services.snapshots.v1.Snapshots/Nope", data, size, &r,
			       why, sizeof(why)) != RPC_UNIMPLEMENTED)
		abort();
	return 0;
}
