/* SPDX-License-Identifier: Apache-2.0 */
/* The shared-memory connections an exec() hands to the new image, as
 * the value of one environment variable (docs/DESIGN-smc.md, "exec").
 * Pure text: no descriptor is looked at here, so the parser can be
 * fuzzed; the new image checks every descriptor it names (exec.c). */
#ifndef ANOLE_SMC_EXECENV_H
#define ANOLE_SMC_EXECENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMC_EXEC_ENV "ANOLE_SMC_EXEC"
#define SMC_EXEC_VERSION "1"
/* The program's numbers of one connection that are passed. */
#define SMC_EXEC_MAXNUM 16
/* Program numbers below this (conntab.h's SMC_FD_MAX). */
#define SMC_EXEC_FD_LIMIT 65536

enum {
	SMC_EXEC_RD_SHUT = 1,
	SMC_EXEC_WR_SHUT = 2,
	SMC_EXEC_PEER_GONE = 4,
	SMC_EXEC_FLAGS = 7,
};

/* One connection: its side and state, the library's descriptors and the
 * program's numbers. */
struct smc_exec_ent {
	bool server;
	unsigned flags;
	int memfd, ctl;
	int efd[4]; /* rx_data, rx_space, tx_data, tx_space */
	uint32_t ring;
	uint64_t tx_bytes, rx_bytes;
	uint16_t dport;
	int nnum;
	int num[SMC_EXEC_MAXNUM];
};

/* The value starts: SMC_EXEC_VERSION, then ";"-separated entries. */
/* Appends @e to @buf (of @len bytes, NUL-terminated, holding *@off
 * bytes); 0, or -E2BIG if it does not fit (@buf unchanged then). No
 * allocation, no locale: it runs between vfork() and exec. */
int smc_exec_format(char *buf, size_t len, size_t *off, const struct smc_exec_ent *e);
/* The next entry of @s from *@pos (0 at the start: the version is
 * checked there): 1 with @e filled, 0 at the end (or for a value of
 * another version), -EINVAL for an entry that does not parse (skipped:
 * *@pos is past it). Any string is safe. */
int smc_exec_parse(const char *s, size_t *pos, struct smc_exec_ent *e);

#endif
