// SPDX-License-Identifier: Apache-2.0
/* grpc-call SOCKET METHOD HEX: one unary gRPC call on unix:SOCKET with the
 * request bytes HEX (as written, malformed ones too), over gRPC's C core.
 * Prints "CODE DETAIL" and, on a second line, the reply's bytes in hex.
 * For tests that must send what containerd never would. Exit 0 when the
 * call got a status, 1 when it could not be made. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unhex(const char *s, unsigned char *out, size_t cap)
{
	size_t n = 0;
	unsigned v;

	while (n < cap && sscanf(s + 2 * n, "%2x", &v) == 1)
		out[n++] = (unsigned char)v;
	return n;
}

static void print_reply(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;

	if (!bb || !grpc_byte_buffer_reader_init(&rd, bb)) {
		putchar('\n');
		return;
	}
	s = grpc_byte_buffer_reader_readall(&rd);
	for (size_t i = 0; i < GRPC_SLICE_LENGTH(s); i++)
		printf("%02x", GRPC_SLICE_START_PTR(s)[i]);
	putchar('\n');
	grpc_slice_unref(s);
	grpc_byte_buffer_reader_destroy(&rd);
}

int main(int argc, char **argv)
{
	static unsigned char req[65536];
	char target[4200];
	grpc_metadata_array md0, md1;
	grpc_byte_buffer *out, *in = NULL;
	grpc_status_code code = GRPC_STATUS_UNKNOWN;
	grpc_slice detail = grpc_empty_slice(), method, s;
	grpc_channel_credentials *creds;
	grpc_completion_queue *cq;
	grpc_channel *ch;
	grpc_call *call;
	grpc_op ops[6];
	grpc_event ev;
	size_t n;

	if (argc != 4 || strlen(argv[3]) % 2 || strlen(argv[3]) / 2 > sizeof(req)) {
		fputs("usage: grpc-call SOCKET METHOD HEX\n", stderr);
		return 2;
	}
	n = unhex(argv[3], req, sizeof(req));
	snprintf(target, sizeof(target), "unix:%s", argv[1]);
	grpc_init();
	cq = grpc_completion_queue_create_for_pluck(NULL);
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	method = grpc_slice_from_copied_string(argv[2]);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
					gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
						     gpr_time_from_seconds(60, GPR_TIMESPAN)),
					NULL);
	s = grpc_slice_from_copied_buffer((const char *)req, n);
	out = grpc_raw_byte_buffer_create(&s, 1);
	grpc_metadata_array_init(&md0);
	grpc_metadata_array_init(&md1);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
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
	if (grpc_call_start_batch(call, ops, 6, &ops, NULL) != GRPC_CALL_OK)
		return 1;
	ev = grpc_completion_queue_pluck(cq, &ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (ev.type != GRPC_OP_COMPLETE)
		return 1;
	printf("%d %.*s\n", (int)code, (int)GRPC_SLICE_LENGTH(detail),
	       (const char *)GRPC_SLICE_START_PTR(detail));
	print_reply(in);
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	grpc_slice_unref(s);
	grpc_slice_unref(method);
	grpc_slice_unref(detail);
	grpc_metadata_array_destroy(&md0);
	grpc_metadata_array_destroy(&md1);
	grpc_call_unref(call);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
	return 0;
}
