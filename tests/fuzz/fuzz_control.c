/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: bytes on the daemon's control socket -> a checked request.
 * Beyond not crashing, an accepted request must carry what its operation
 * needs: the daemon acts on it without looking again.
 */
#include <stdlib.h>
#include <string.h>

#include "serve/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_request req;
	char why[160];
	if (ctl_request_parse((const char *)data, size, &req, why, sizeof(why)) < 0) {
		if (!why[0] || !memchr(why, 0, sizeof(why)))
			abort(); /* a refusal always says why */
		return 0;
	}
	switch (req.op) {
	case CTL_MOUNT:
		if (!req.ref || !*req.ref || req.tls_verify < -1 || req.tls_verify > 1)
			abort();
		/* credentials go into HTTP headers: no CR, LF or other controls */
		for (const char *p = req.cred_basic; p && *p; p++)
			if (*p <= ' ' || *p > '~')
				abort();
		for (const char *p = req.cred_token; p && *p; p++)
			if (*p <= ' ' || *p > '~')
				abort();
		/* fall through */
	case CTL_UMOUNT:
	case CTL_TRACE:
		if (!req.mountpoint || !*req.mountpoint)
			abort();
		break;
	case CTL_STATUS:
	case CTL_METRICS:
		break;
	default:
		abort();
	}
	ctl_request_release(&req);
	return 0;
}
