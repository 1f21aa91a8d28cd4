/* SPDX-License-Identifier: Apache-2.0 */
/* Control socket requests: what the daemon accepts, and what it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>

#include <cmocka.h>

#include "serve/request.h"

static int parse(const char *text, struct ctl_request *req, char *why)
{
	return ctl_request_parse(text, strlen(text), req, why, 160);
}

static void accepts_what_clients_send(void **state)
{
	(void)state;
	struct ctl_request req;
	char why[160];
	assert_int_equal(parse("{\"op\":\"mount\",\"ref\":\"docker://h/r:t\",\"mountpoint\":\"/m\","
			       "\"options\":\"\",\"prefetch\":\"none\",\"prefetch_rate\":5,"
			       "\"tls_verify\":-1,\"fuse\":true,\"record\":false,\"exec\":\"node\","
			       "\"no_load_hints\":true}\n{\"op\":",
			       &req, why),
			 0);
	assert_int_equal(req.op, CTL_MOUNT);
	assert_string_equal(req.ref, "docker://h/r:t");
	assert_string_equal(req.mountpoint, "/m");
	assert_string_equal(req.prefetch, "none");
	assert_int_equal(req.prefetch_rate, 5);
	assert_true(req.has_prefetch_rate);
	assert_int_equal(req.tls_verify, -1);
	assert_true(req.fuse);
	assert_false(req.record);
	assert_string_equal(req.exec, "node");
	assert_true(req.no_load_hints);
	ctl_request_release(&req);
	assert_int_equal(parse("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\"}", &req, why),
			 0);
	assert_null(req.options);
	assert_null(req.exec);
	assert_false(req.no_load_hints);
	assert_int_equal(req.tls_verify, 0);
	assert_null(req.cred_basic);
	assert_null(req.cred_token);
	ctl_request_release(&req);
	/* a mount's registry credentials: either, both, or null for none */
	assert_int_equal(parse("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\","
			       "\"credentials\":{\"basic\":\"YTpi\",\"identity_token\":\"t-1\"}}",
			       &req, why),
			 0);
	assert_string_equal(req.cred_basic, "YTpi");
	assert_string_equal(req.cred_token, "t-1");
	ctl_request_release(&req);
	assert_int_equal(parse("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\","
			       "\"credentials\":null}",
			       &req, why),
			 0);
	assert_null(req.cred_basic);
	assert_null(req.devices);
	ctl_request_release(&req);
	/* an image file's devices */
	assert_int_equal(parse("{\"op\":\"mount\",\"ref\":\"/i.img\",\"mountpoint\":\"/m\","
			       "\"fuse\":true,\"devices\":[\"/a.tar\",\"/b\"]}",
			       &req, why),
			 0);
	assert_int_equal(json_array_size(req.devices), 2);
	assert_string_equal(json_string_value(json_array_get(req.devices, 1)), "/b");
	ctl_request_release(&req);
	assert_int_equal(parse("{\"op\":\"umount\",\"mountpoint\":\"/m\"}", &req, why), 0);
	assert_int_equal(req.op, CTL_UMOUNT);
	ctl_request_release(&req);
	assert_int_equal(parse("{\"op\":\"status\",\"later\":[1]}", &req, why), 0);
	assert_int_equal(req.op, CTL_STATUS);
	ctl_request_release(&req);
}

static void refuses(const char *text, const char *want)
{
	struct ctl_request req;
	char why[160] = "";
	assert_int_equal(parse(text, &req, why), -EINVAL);
	assert_null(req.json);
	if (!strstr(why, want))
		fail_msg("%s: \"%s\" does not say \"%s\"", text, why, want);
}

static void refuses_and_says_why(void **state)
{
	(void)state;
	refuses("", "not a JSON object");
	refuses("[\"op\",\"status\"]", "not a JSON object");
	refuses("{\"op\":1}", "op must be a string");
	refuses("{\"ref\":\"r\"}", "no op");
	refuses("{\"op\":\"format\"}", "unknown request format");
	refuses("{\"op\":\"status\",\"op\":\"mount\"}", "not a JSON object");
	refuses("{\"op\":\"umount\"}", "umount: needs mountpoint");
	refuses("{\"op\":\"trace\",\"mountpoint\":\"\"}", "trace: needs mountpoint");
	refuses("{\"op\":\"mount\",\"mountpoint\":\"/m\"}", "needs ref");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"fuse\":\"yes\"}",
		"fuse must be true or false");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"exec\":[\"sh\"]}",
		"exec must be a string");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"no_load_hints\":1}",
		"no_load_hints must be true or false");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"tls_verify\":2}",
		"tls_verify must be");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"prefetch_rate\":-1}",
		"prefetch_rate must be");
	/* credentials go into HTTP headers */
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"credentials\":\"a:b\"}",
		"credentials must be an object");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\","
		"\"credentials\":{\"password\":\"x\"}}",
		"credentials.password is unknown");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\","
		"\"credentials\":{\"basic\":\"YTpi\\r\\nX-Evil: 1\"}}",
		"credentials.basic holds a bad byte");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\","
		"\"credentials\":{\"identity_token\":7}}",
		"identity_token must be a string");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"devices\":\"/a\"}",
		"devices must be a list");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"devices\":[\"/a\",2]}",
		"device 2 must be a path");
	refuses("{\"op\":\"mount\",\"ref\":\"r\",\"mountpoint\":\"/m\",\"devices\":[\"\"]}",
		"device 1 must be a path");
	/* jansson refuses a NUL itself; the parser would too */
	refuses("{\"op\":\"mount\",\"ref\":\"r\\u0000x\",\"mountpoint\":\"/m\"}", "bad request");
}

/* What the one encoder writes, the parser reads back field for field. */
static void encodes_what_it_parses(void **state)
{
	(void)state;
	json_t *devs = json_pack("[s,s]", "/d/one", "/d/two");
	json_t *creds = json_pack("{s:s}", "identity_token", "tok");
	struct ctl_request in = {.op = CTL_MOUNT,
				 .ref = "docker://h/r:t",
				 .mountpoint = "/m",
				 .options = "",
				 .prefetch = "all",
				 .exec = "/bin/sh",
				 .prefetch_rate = 1234,
				 .has_prefetch_rate = true,
				 .tls_verify = -1,
				 .fuse = true,
				 .no_load_hints = true,
				 .devices = devs};
	ctl_request_credentials(&in, creds);
	assert_null(in.cred_basic);
	assert_string_equal(in.cred_token, "tok");
	char *text = ctl_request_encode(&in), why[160];
	assert_non_null(text);
	assert_null(strchr(text, '\n'));
	struct ctl_request out;
	assert_int_equal(parse(text, &out, why), 0);
	assert_int_equal(out.op, CTL_MOUNT);
	assert_string_equal(out.ref, in.ref);
	assert_string_equal(out.mountpoint, in.mountpoint);
	assert_string_equal(out.options, "");
	assert_string_equal(out.prefetch, "all");
	assert_string_equal(out.exec, "/bin/sh");
	assert_int_equal(out.prefetch_rate, 1234);
	assert_true(out.has_prefetch_rate);
	assert_int_equal(out.tls_verify, -1);
	assert_true(out.fuse);
	assert_false(out.record);
	assert_true(out.no_load_hints);
	assert_null(out.cred_basic);
	assert_string_equal(out.cred_token, "tok");
	assert_true(json_equal(out.devices, devs));
	ctl_request_release(&out);
	free(text);
	/* fields left out read back as unset */
	struct ctl_request um = {.op = CTL_UMOUNT, .mountpoint = "/m"};
	text = ctl_request_encode(&um);
	assert_string_equal(text, "{\"op\":\"umount\",\"mountpoint\":\"/m\"}");
	free(text);
	text = ctl_request_encode(&(struct ctl_request){.op = CTL_METRICS});
	assert_string_equal(text, "{\"op\":\"metrics\"}");
	assert_int_equal(parse(text, &out, why), 0);
	assert_int_equal(out.op, CTL_METRICS);
	ctl_request_release(&out);
	free(text);
	/* a rate of 0 (no cap) is sent and read back as set; a mount
	 * without a rate leaves the daemon's alone */
	struct ctl_request nocap = {.op = CTL_MOUNT, .ref = "r", .mountpoint = "/m",
				    .has_prefetch_rate = true};
	text = ctl_request_encode(&nocap);
	assert_non_null(strstr(text, "\"prefetch_rate\":0"));
	assert_int_equal(parse(text, &out, why), 0);
	assert_true(out.has_prefetch_rate);
	assert_int_equal(out.prefetch_rate, 0);
	ctl_request_release(&out);
	free(text);
	nocap.has_prefetch_rate = false;
	text = ctl_request_encode(&nocap);
	assert_null(strstr(text, "prefetch_rate"));
	assert_int_equal(parse(text, &out, why), 0);
	assert_false(out.has_prefetch_rate);
	ctl_request_release(&out);
	free(text);
	/* not UTF-8: no text, rather than a request the daemon refuses */
	um.mountpoint = "/m\xff";
	assert_null(ctl_request_encode(&um));
	json_decref(devs);
	json_decref(creds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepts_what_clients_send),
		cmocka_unit_test(refuses_and_says_why),
		cmocka_unit_test(encodes_what_it_parses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
