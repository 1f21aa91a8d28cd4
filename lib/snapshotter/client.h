/* SPDX-License-Identifier: Apache-2.0 */
/* A client of containerd's gRPC API over gRPC's C core: one request
 * message per call (unary calls, and content Write as a client stream of
 * one committing message), in a namespace and, once set, under a lease, as containerd's
 * own clients send them (the containerd-namespace and containerd-lease
 * headers). */
#ifndef ANOLE_SNAPSHOTTER_CLIENT_H
#define ANOLE_SNAPSHOTTER_CLIENT_H

#include <protobuf-c/protobuf-c.h>

#include "anole/anole.h"

struct rpc_client;

int rpc_client_open(const char *sock, const char *ns, struct rpc_client **out,
		    struct anole_error *err);
void rpc_client_close(struct rpc_client *c);
/* The lease later calls are made under ("": none). */
void rpc_client_lease(struct rpc_client *c, const char *lease);

/* Call @method with @req: its gRPC status code (0 OK) with the detail in
 * @err when not 0, the reply's bytes in @reply (malloc'd, *@len); a
 * negative errno when the call could not be made. */
int rpc_client_call(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
		    uint8_t **reply, size_t *len, struct anole_error *err);
/* The same for a client-streaming or bidirectional method (content
 * Write) given one request message: its first answer in @reply, the
 * call over as soon as the server ends it. */
int rpc_client_stream(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
		      uint8_t **reply, size_t *len, struct anole_error *err);

#endif
