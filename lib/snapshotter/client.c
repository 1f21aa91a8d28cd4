// SPDX-License-Identifier: Apache-2.0
/* containerd's API from C: gRPC's C core, one batch per call (send the
 * headers, the one message and the close; receive the headers, the one
 * reply and the status), on a channel to containerd's Unix socket. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshotter/client.h"
#include "util/util.h"

/* containerd answers at once; an unpack's Prepare waits for a lazy
 * mount, which fetches the metadata image */
#define CALL_SECONDS 300

struct rpc_client {
	grpc_channel *ch;
	grpc_completion_queue *cq;
	char ns[256], lease[256];
	long deadline_ms;
};

int rpc_client_open(const char *sock, const char *ns, struct rpc_client **out,
		    struct anole_error *err)
{
	struct rpc_client *c = calloc(1, sizeof(*c));
	char target[4200];
	grpc_channel_credentials *creds;

	if (!c)
		return anole_err(err, ENOMEM, "out of memory");
	if (snprintf(target, sizeof(target), "unix:%s", sock) >= (int)sizeof(target) ||
	    snprintf(c->ns, sizeof(c->ns), "%s", ns) >= (int)sizeof(c->ns)) {
		free(c);
		return anole_err(err, ENAMETOOLONG, "containerd: socket path or namespace too long");
	}
	c->deadline_ms = CALL_SECONDS * 1000L;
	grpc_init();
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	creds = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	*out = c;
	return 0;
}

void rpc_client_close(struct rpc_client *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->ch);
	grpc_completion_queue_shutdown(c->cq);
	grpc_completion_queue_destroy(c->cq);
	grpc_shutdown();
	free(c);
}

void rpc_client_lease(struct rpc_client *c, const char *lease)
{
	snprintf(c->lease, sizeof(c->lease), "%s", lease);
}

void rpc_client_deadline(struct rpc_client *c, long ms)
{
	c->deadline_ms = ms > 0 ? ms : CALL_SECONDS * 1000L;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *req)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	grpc_slice s = grpc_slice_malloc(n);
	grpc_byte_buffer *bb;

	protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static int unpack(grpc_byte_buffer *bb, uint8_t **reply, size_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;

	*reply = NULL;
	*len = 0;
	if (!bb || !grpc_byte_buffer_reader_init(&rd, bb))
		return 0;
	s = grpc_byte_buffer_reader_readall(&rd);
	*len = GRPC_SLICE_LENGTH(s);
	*reply = malloc(*len ? *len : 1);
	if (*reply)
		memcpy(*reply, GRPC_SLICE_START_PTR(s), *len);
	grpc_slice_unref(s);
	grpc_byte_buffer_reader_destroy(&rd);
	return *reply ? 0 : -ENOMEM;
}

int rpc_client_call(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
		    uint8_t **reply, size_t *len, struct anole_error *err)
{
	grpc_metadata md[2];
	grpc_metadata_array md0, md1;
	grpc_byte_buffer *out = pack(req), *in = NULL;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice detail = grpc_empty_slice(), m = grpc_slice_from_copied_string(method);
	grpc_op ops[6];
	grpc_call *call;
	grpc_event ev;
	int rc;

	memset(md, 0, sizeof(md));
	md[0].key = grpc_slice_from_static_string("containerd-namespace");
	md[0].value = grpc_slice_from_copied_string(c->ns);
	md[1].key = grpc_slice_from_static_string("containerd-lease");
	md[1].value = grpc_slice_from_copied_string(c->lease);
	call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
					gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
						     gpr_time_from_millis(c->deadline_ms,
									  GPR_TIMESPAN)),
					NULL);
	grpc_metadata_array_init(&md0);
	grpc_metadata_array_init(&md1);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = c->lease[0] ? 2 : 1;
	ops[0].data.send_initial_metadata.metadata = md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = out;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &md0;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &in;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &md1;
	ops[5].data.recv_status_on_client.status = &code;
	ops[5].data.recv_status_on_client.status_details = &detail;
	/* one batch for the whole unary call; the call's deadline above bounds
	 * it (containerd's content Write commits but its status never
	 * arrives here: the caller checks by Info, docs/DECISIONS.md) */
	if (grpc_call_start_batch(call, ops, 6, &ops, NULL) != GRPC_CALL_OK)
		rc = anole_err(err, EIO, "containerd: %s: the call could not start", method);
	else {
		ev = grpc_completion_queue_pluck(c->cq, &ops, gpr_inf_future(GPR_CLOCK_REALTIME),
						 NULL);
		rc = ev.type == GRPC_OP_COMPLETE ? (int)code
						 : anole_err(err, EIO, "containerd: %s: no answer", method);
	}
	if (rc > 0)
		anole_err(err, EIO, "%.*s", (int)GRPC_SLICE_LENGTH(detail),
			  (const char *)GRPC_SLICE_START_PTR(detail));
	if (rc == 0 && unpack(in, reply, len) < 0)
		rc = anole_err(err, ENOMEM, "out of memory");
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	for (int i = 0; i < 2; i++) {
		grpc_slice_unref(md[i].key);
		grpc_slice_unref(md[i].value);
	}
	grpc_slice_unref(m);
	grpc_slice_unref(detail);
	grpc_metadata_array_destroy(&md0);
	grpc_metadata_array_destroy(&md1);
	grpc_call_unref(call);
	return rc;
}
