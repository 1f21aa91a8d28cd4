// SPDX-License-Identifier: Apache-2.0
/* gRPC server over the C core API: RPC_WORKERS threads, each with a
 * completion queue of its own and one outstanding request_call on it, so
 * that a slow call (a lazy Prepare waiting on a registry) holds one
 * thread and the others go on answering. Each thread serves its call in
 * two batches (receive the request; send the replies and the status),
 * which is all a unary or server-streaming method needs; as only that
 * thread ever waits on its queue, a batch's completion is the next event
 * there. A signal thread turns SIGTERM/SIGINT into a server shutdown,
 * the only safe way to wake grpc_completion_queue_next (no grpc call is
 * allowed in a signal handler); the shutdown fails every outstanding
 * request_call, which ends the workers. */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "snapshotter/rpc.h"
#include "util/util.h"

/* Calls served at once: containerd's pulls of several images and its
 * Stat/List calls meanwhile; more wait in gRPC's own queue. */
#define RPC_WORKERS 8

/* Completion queue tags: the addresses of these say which step ended
 * (the same on every queue: each has one waiter). */
static char tag_new_call, tag_batch, tag_shutdown;
/* The shutdown tag came out of the first queue (whichever wait took it). */
static atomic_bool shutdown_seen;

/* The next event; notes the shutdown tag on the way. */
static grpc_event next_event(grpc_completion_queue *cq)
{
	grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

	if (ev.type == GRPC_OP_COMPLETE && ev.tag == &tag_shutdown)
		shutdown_seen = true;
	return ev;
}

int rpc_reply_add(struct rpc_reply *reply, uint8_t *buf, size_t len)
{
	if (reply->n >= RPC_MSG_MAX) {
		free(buf);
		return -ENOSPC;
	}
	reply->msg[reply->n] = buf;
	reply->len[reply->n++] = len;
	return 0;
}

void rpc_reply_status(struct rpc_reply *reply, enum rpc_code code, const char *fmt, ...)
{
	va_list ap;

	reply->code = code;
	va_start(ap, fmt);
	vsnprintf(reply->detail, sizeof(reply->detail), fmt, ap);
	va_end(ap);
}

static void reply_free(struct rpc_reply *reply)
{
	for (size_t i = 0; i < reply->n; i++)
		free(reply->msg[i]);
	reply->n = 0;
}

/* Wait for the batch just started; false when it failed. */
static bool batch_wait(grpc_completion_queue *cq)
{
	grpc_event ev;

	do
		ev = next_event(cq);
	while (ev.type == GRPC_OP_COMPLETE && ev.tag == &tag_shutdown);
	return ev.type == GRPC_OP_COMPLETE && ev.tag == &tag_batch && ev.success;
}

static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n)
{
	if (grpc_call_start_batch(call, ops, n, &tag_batch, NULL) != GRPC_CALL_OK)
		return false;
	return batch_wait(cq);
}

/* The request's bytes (malloc'd, *len set); NULL when the client sent
 * none or memory ran out. */
static uint8_t *request_bytes(grpc_byte_buffer *bb, size_t *len)
{
	grpc_byte_buffer_reader rd;
	grpc_slice s;
	uint8_t *buf;

	if (!bb || !grpc_byte_buffer_reader_init(&rd, bb))
		return NULL;
	s = grpc_byte_buffer_reader_readall(&rd);
	grpc_byte_buffer_reader_destroy(&rd);
	*len = GRPC_SLICE_LENGTH(s);
	buf = malloc(*len ? *len : 1);
	if (buf)
		memcpy(buf, GRPC_SLICE_START_PTR(s), *len);
	grpc_slice_unref(s);
	return buf;
}

/* Send each reply message in a batch of its own (a stream's messages go
 * out in order), then the status. */
static void send_reply(grpc_call *call, grpc_completion_queue *cq, const struct rpc_reply *reply)
{
	grpc_slice detail = grpc_slice_from_copied_string(reply->detail);
	int cancelled = 0;
	grpc_op ops[2];
	size_t i;

	for (i = 0; reply->code == RPC_OK && i < reply->n; i++) {
		grpc_slice s = grpc_slice_from_copied_buffer((const char *)reply->msg[i], reply->len[i]);
		grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
		bool ok;

		grpc_slice_unref(s);
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_SEND_MESSAGE;
		ops[0].data.send_message.send_message = bb;
		ok = run_batch(call, cq, ops, 1);
		grpc_byte_buffer_destroy(bb);
		if (!ok)
			break;
	}
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[0].data.send_status_from_server.status = (grpc_status_code)reply->code;
	ops[0].data.send_status_from_server.status_details = &detail;
	ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[1].data.recv_close_on_server.cancelled = &cancelled;
	run_batch(call, cq, ops, 2);
	grpc_slice_unref(detail);
}

static void serve_call(grpc_call *call, const grpc_call_details *details, grpc_completion_queue *cq,
		       rpc_handler handler, void *ctx)
{
	grpc_byte_buffer *bb = NULL;
	struct rpc_reply reply = {.code = RPC_OK};
	char method[256];
	uint8_t *req = NULL;
	size_t len = 0, mlen = GRPC_SLICE_LENGTH(details->method);
	grpc_op ops[2];

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &bb;
	if (!run_batch(call, cq, ops, 2))
		goto out;
	req = request_bytes(bb, &len);
	if (!req)
		rpc_reply_status(&reply, RPC_INVALID_ARGUMENT, "no request message");
	else if (mlen >= sizeof(method))
		rpc_reply_status(&reply, RPC_UNIMPLEMENTED, "method name too long");
	else {
		memcpy(method, GRPC_SLICE_START_PTR(details->method), mlen);
		method[mlen] = 0;
		handler(ctx, method, req, len, &reply);
	}
	send_reply(call, cq, &reply);
out:
	reply_free(&reply);
	free(req);
	if (bb)
		grpc_byte_buffer_destroy(bb);
}

struct sigwaiter {
	sigset_t set;
	grpc_server *server;
	grpc_completion_queue *cq; /* the first worker's: the shutdown tag's */
	pthread_t thread;
	atomic_bool woken;
};

static void *signal_thread(void *arg)
{
	struct sigwaiter *w = arg;
	int sig;

	sigwait(&w->set, &sig);
	grpc_server_shutdown_and_notify(w->server, w->cq, &tag_shutdown);
	return NULL;
}

/* A worker's loop ended: on a failure of its own, the signal thread is
 * still waiting, and this wakes it to shut the server (and so the other
 * workers) down; once is enough. */
static void wake_signal_thread(struct sigwaiter *w)
{
	if (!atomic_exchange(&w->woken, true))
		pthread_kill(w->thread, SIGUSR1);
}

struct worker {
	grpc_server *server;
	grpc_completion_queue *cq;
	rpc_handler handler;
	void *ctx;
	struct sigwaiter *sw;
	pthread_t thread;
};

/* Serve calls on the worker's queue until the server shuts down. */
static void *serve_loop(void *arg)
{
	struct worker *wk = arg;

	for (;;) {
		grpc_call *call = NULL;
		grpc_call_details details;
		grpc_metadata_array md;
		grpc_event ev;

		grpc_call_details_init(&details);
		grpc_metadata_array_init(&md);
		if (grpc_server_request_call(wk->server, &call, &details, &md, wk->cq, wk->cq,
					     &tag_new_call) != GRPC_CALL_OK)
			break;
		do
			ev = next_event(wk->cq);
		while (ev.type == GRPC_OP_COMPLETE && ev.tag != &tag_new_call);
		if (ev.type == GRPC_OP_COMPLETE && ev.success)
			serve_call(call, &details, wk->cq, wk->handler, wk->ctx);
		if (call)
			grpc_call_unref(call);
		grpc_call_details_destroy(&details);
		grpc_metadata_array_destroy(&md);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success)
			break;
	}
	wake_signal_thread(wk->sw);
	return NULL;
}

/* Drain and destroy a queue the server no longer uses. */
static void queue_destroy(grpc_completion_queue *cq)
{
	grpc_completion_queue_shutdown(cq);
	while (next_event(cq).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

/* Wait for the shutdown tag on the first queue (the signal thread asked
 * for it, or a failure asks now), then drain every queue. */
static void server_stop(grpc_server *server, grpc_completion_queue **cqs, size_t n, bool asked)
{
	if (!asked)
		grpc_server_shutdown_and_notify(server, cqs[0], &tag_shutdown);
	grpc_server_cancel_all_calls(server);
	while (!atomic_load(&shutdown_seen) && next_event(cqs[0]).type == GRPC_OP_COMPLETE)
		;
	grpc_server_destroy(server);
	for (size_t i = 0; i < n; i++)
		queue_destroy(cqs[i]);
}

int rpc_serve(const char *addr, rpc_handler handler, void *ctx, struct anole_error *err)
{
	struct sigwaiter w = {0};
	struct worker wk[RPC_WORKERS];
	grpc_completion_queue *cqs[RPC_WORKERS];
	grpc_server_credentials *creds;
	size_t started = 0;
	int port, rc;

	/* before grpc starts its threads, so that they all inherit the mask */
	sigemptyset(&w.set);
	sigaddset(&w.set, SIGTERM);
	sigaddset(&w.set, SIGINT);
	sigaddset(&w.set, SIGUSR1); /* our own wake-up, wake_signal_thread */
	rc = pthread_sigmask(SIG_BLOCK, &w.set, NULL);
	if (rc)
		return anole_err(err, rc, "snapshotter: blocking signals: %s", strerror(rc));
	grpc_init();
	w.server = grpc_server_create(NULL, NULL);
	for (size_t i = 0; i < RPC_WORKERS; i++) {
		cqs[i] = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(w.server, cqs[i], NULL);
	}
	w.cq = cqs[0];
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(w.server, addr, creds);
	grpc_server_credentials_release(creds);
	if (!port) {
		server_stop(w.server, cqs, RPC_WORKERS, false);
		grpc_shutdown();
		return anole_err(err, EADDRNOTAVAIL, "snapshotter: cannot listen on %s", addr);
	}
	grpc_server_start(w.server);
	rc = pthread_create(&w.thread, NULL, signal_thread, &w);
	if (rc) {
		server_stop(w.server, cqs, RPC_WORKERS, false);
		grpc_shutdown();
		return anole_err(err, rc, "snapshotter: signal thread: %s", strerror(rc));
	}
	for (; started < RPC_WORKERS; started++) {
		wk[started] = (struct worker){w.server, cqs[started], handler, ctx, &w, 0};
		rc = pthread_create(&wk[started].thread, NULL, serve_loop, &wk[started]);
		if (rc)
			break;
	}
	/* a worker that did not start: the server shuts down as on a
	 * signal, and the started ones end */
	if (started < RPC_WORKERS)
		wake_signal_thread(&w);
	for (size_t i = 0; i < started; i++)
		pthread_join(wk[i].thread, NULL);
	pthread_join(w.thread, NULL);
	server_stop(w.server, cqs, RPC_WORKERS, true);
	grpc_shutdown();
	if (started < RPC_WORKERS)
		return anole_err(err, rc, "snapshotter: worker thread: %s", strerror(rc));
	return 0;
}
