/* SPDX-License-Identifier: Apache-2.0 */
/* A unary and server-streaming gRPC server over gRPC's C core API
 * (grpc/grpc.h), independent of any service: it hands each call's
 * method and request bytes to a handler and sends back what the handler
 * put in struct rpc_reply (docs/DESIGN-snapshotter.md). */
#ifndef ANOLE_SNAPSHOTTER_RPC_H
#define ANOLE_SNAPSHOTTER_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "anole/anole.h"

/* gRPC status codes (the numbers are the protocol's). */
enum rpc_code {
	RPC_OK = 0,
	RPC_UNKNOWN = 2,
	RPC_INVALID_ARGUMENT = 3,
	RPC_NOT_FOUND = 5,
	RPC_ALREADY_EXISTS = 6,
	RPC_FAILED_PRECONDITION = 9,
	RPC_UNIMPLEMENTED = 12,
	RPC_INTERNAL = 13,
	RPC_UNAVAILABLE = 14,
};

#define RPC_MSG_MAX 64

/* What a handler answers: zero or more messages (more than one only for
 * a server-streaming method), then the status. */
struct rpc_reply {
	uint8_t *msg[RPC_MSG_MAX]; /* malloc'd, freed by the server */
	size_t len[RPC_MSG_MAX];
	size_t n;
	enum rpc_code code;
	char detail[512];
};

typedef void (*rpc_handler)(void *ctx, const char *method, const uint8_t *req, size_t len,
			    struct rpc_reply *reply);

/* Add a message to @reply (takes @buf); -ENOSPC when full (@buf freed). */
int rpc_reply_add(struct rpc_reply *reply, uint8_t *buf, size_t len);
/* Set the status and its one-line detail. */
void rpc_reply_status(struct rpc_reply *reply, enum rpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Serve on @addr ("unix:/PATH") until SIGTERM or SIGINT, several calls
 * at once (each in a thread of its own: @handler must be thread-safe).
 * 0 after a clean shutdown. */
int rpc_serve(const char *addr, rpc_handler handler, void *ctx, struct anole_error *err);

#endif
