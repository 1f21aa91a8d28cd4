/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: ANOLE_SMC_EXEC as the new image finds it in its environment
 * (lib/smc/execenv.c): any string. Beyond not crashing, the parser must
 * move forward to the end, every entry it accepts must be in range (the
 * new image checks the descriptors, not the numbers' ranges), and an
 * accepted entry must format and parse back to itself.
 */
#include <stdlib.h>
#include <string.h>

#include "smc/execenv.h"

static bool ent_eq(const struct smc_exec_ent *a, const struct smc_exec_ent *b)
{
	if (a->server != b->server || a->flags != b->flags || a->memfd != b->memfd || a->ctl != b->ctl ||
	    a->ring != b->ring || a->tx_bytes != b->tx_bytes || a->rx_bytes != b->rx_bytes ||
	    a->dport != b->dport || a->nnum != b->nnum)
		return false;
	for (int i = 0; i < 4; i++)
		if (a->efd[i] != b->efd[i])
			return false;
	for (int i = 0; i < a->nnum; i++)
		if (a->num[i] != b->num[i])
			return false;
	return true;
}

static void check_roundtrip(const struct smc_exec_ent *e)
{
	char buf[1024] = SMC_EXEC_VERSION;
	size_t off = strlen(buf), pos = 0;
	struct smc_exec_ent back;

	if (smc_exec_format(buf, sizeof(buf), &off, e) || smc_exec_parse(buf, &pos, &back) != 1 ||
	    smc_exec_parse(buf, &pos, &back) != 0)
		abort();
	pos = 0;
	smc_exec_parse(buf, &pos, &back);
	if (!ent_eq(&back, e))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct smc_exec_ent e;
	size_t pos = 0, len;
	int rc, n = 0;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	len = strlen(s);
	while ((rc = smc_exec_parse(s, &pos, &e)) != 0) {
		if (pos > len || ++n > (int)len + 1)
			abort();
		if (rc < 0)
			continue;
		if (e.nnum < 1 || e.nnum > SMC_EXEC_MAXNUM || e.flags > SMC_EXEC_FLAGS || e.memfd < 0 ||
		    e.ctl < 0)
			abort();
		for (int i = 0; i < 4; i++)
			if (e.efd[i] < 0)
				abort();
		for (int i = 0; i < e.nnum; i++)
			if (e.num[i] < 0 || e.num[i] >= SMC_EXEC_FD_LIMIT)
				abort();
		check_roundtrip(&e);
	}
	free(s);
	return 0;
}
