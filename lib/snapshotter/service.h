/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ANOLE_SNAPSHOTTER_SERVICE_H
#define ANOLE_SNAPSHOTTER_SERVICE_H

#include "snapshotter/rpc.h"
#include "snapshotter/store.h"

/* The rpc_handler of containerd's snapshots service; @ctx is the
 * struct snap_store. */
void snap_service(void *ctx, const char *method, const uint8_t *req, size_t len,
		  struct rpc_reply *reply);

#endif
