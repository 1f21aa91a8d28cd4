// SPDX-License-Identifier: Apache-2.0
/* containerd's API from C: gRPC's C core on a channel to containerd's
 * Unix socket. A unary call is one batch (send the headers, the one
 * message and the close; receive the headers, the one reply and the
 * status); a client-streaming call with one request message is three
 * (send; receive the answer; close and status), with what else the
 * server sends read in between. */
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

/* One call's state: what is sent, what comes back. */
struct call {
	grpc_call *call;
	grpc_metadata md[2];
	grpc_metadata_array md0, md1;
	grpc_byte_buffer *out, *in;
	grpc_status_code code;
	grpc_slice detail, method;
	/* in the order of the call: sends, receives, close and status */
	grpc_op ops[6];
};

static void call_start(struct rpc_client *c, struct call *k, const char *method,
		       const ProtobufCMessage *req)
{
	memset(k, 0, sizeof(*k));
	k->out = pack(req);
	k->code = GRPC_STATUS_UNKNOWN;
	k->detail = grpc_empty_slice();
	k->method = grpc_slice_from_copied_string(method);
	k->md[0].key = grpc_slice_from_static_string("containerd-namespace");
	k->md[0].value = grpc_slice_from_copied_string(c->ns);
	k->md[1].key = grpc_slice_from_static_string("containerd-lease");
	k->md[1].value = grpc_slice_from_copied_string(c->lease);
	k->call = grpc_channel_create_call(
		c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, k->method, NULL,
		gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
			     gpr_time_from_millis(c->deadline_ms, GPR_TIMESPAN)),
		NULL);
	grpc_metadata_array_init(&k->md0);
	grpc_metadata_array_init(&k->md1);
	k->ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	k->ops[0].data.send_initial_metadata.count = c->lease[0] ? 2 : 1;
	k->ops[0].data.send_initial_metadata.metadata = k->md;
	k->ops[1].op = GRPC_OP_SEND_MESSAGE;
	k->ops[1].data.send_message.send_message = k->out;
	k->ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
	k->ops[2].data.recv_initial_metadata.recv_initial_metadata = &k->md0;
	k->ops[3].op = GRPC_OP_RECV_MESSAGE;
	k->ops[3].data.recv_message.recv_message = &k->in;
	k->ops[4].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	k->ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	k->ops[5].data.recv_status_on_client.trailing_metadata = &k->md1;
	k->ops[5].data.recv_status_on_client.status = &k->code;
	k->ops[5].data.recv_status_on_client.status_details = &k->detail;
}

/* Start ops[@from..@from+@n) as one batch, tagged with its first op. */
static bool batch_start(struct call *k, size_t from, size_t n)
{
	return grpc_call_start_batch(k->call, &k->ops[from], n, &k->ops[from], NULL) ==
	       GRPC_CALL_OK;
}

/* Wait for the batch tagged @tag; whether it ended (its ops may have
 * failed: the status says why). */
static bool batch_wait(struct rpc_client *c, void *tag)
{
	grpc_event ev = grpc_completion_queue_pluck(c->cq, tag,
						    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

	return ev.type == GRPC_OP_COMPLETE;
}

/* The call's result from its status, the reply's bytes; the call freed. */
static int call_finish(struct call *k, const char *method, int rc, uint8_t **reply, size_t *len,
		       struct anole_error *err)
{
	if (rc == 0)
		rc = (int)k->code;
	if (rc > 0)
		anole_err(err, EIO, "%.*s", (int)GRPC_SLICE_LENGTH(k->detail),
			  (const char *)GRPC_SLICE_START_PTR(k->detail));
	if (rc == -EPROTO)
		rc = anole_err(err, EIO, "containerd: %s: no answer", method);
	if (rc == 0 && unpack(k->in, reply, len) < 0)
		rc = anole_err(err, ENOMEM, "out of memory");
	if (k->in)
		grpc_byte_buffer_destroy(k->in);
	grpc_byte_buffer_destroy(k->out);
	for (int i = 0; i < 2; i++) {
		grpc_slice_unref(k->md[i].key);
		grpc_slice_unref(k->md[i].value);
	}
	grpc_slice_unref(k->method);
	grpc_slice_unref(k->detail);
	grpc_metadata_array_destroy(&k->md0);
	grpc_metadata_array_destroy(&k->md1);
	grpc_call_unref(k->call);
	return rc;
}

int rpc_client_call(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
		    uint8_t **reply, size_t *len, struct anole_error *err)
{
	struct call k;
	int rc = 0;

	call_start(c, &k, method, req);
	/* one batch for the whole unary call, bounded by the call's deadline */
	if (!batch_start(&k, 0, 6))
		rc = anole_err(err, EIO, "containerd: %s: the call could not start", method);
	else if (!batch_wait(c, &k.ops[0]))
		rc = -EPROTO;
	return call_finish(&k, method, rc, reply, len, err);
}

int rpc_client_stream(struct rpc_client *c, const char *method, const ProtobufCMessage *req,
		      uint8_t **reply, size_t *len, struct anole_error *err)
{
	grpc_byte_buffer *more = NULL;
	grpc_op rd = {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &more};
	struct call k;
	int rc = 0;

	call_start(c, &k, method, req);
	/* the request; then its answer; then the close and the status, which
	 * comes only once every message the server sent has been read:
	 * containerd's Write sends its last answer a second time as it
	 * returns, so what follows the first answer is read and dropped */
	if (!batch_start(&k, 0, 2) || !batch_wait(c, &k.ops[0]) || !batch_start(&k, 2, 2) ||
	    !batch_wait(c, &k.ops[2]) || !batch_start(&k, 4, 2)) {
		rc = anole_err(err, EIO, "containerd: %s: the call could not start", method);
		grpc_call_cancel(k.call, NULL);
	}
	for (int i = 0; rc == 0 && k.in && i < 64; i++) {
		if (grpc_call_start_batch(k.call, &rd, 1, &rd, NULL) != GRPC_CALL_OK ||
		    !batch_wait(c, &rd) || !more)
			break;
		grpc_byte_buffer_destroy(more);
		more = NULL;
	}
	if (rc == 0 && !batch_wait(c, &k.ops[4]))
		rc = -EPROTO;
	return call_finish(&k, method, rc, reply, len, err);
}
