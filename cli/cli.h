/* SPDX-License-Identifier: Apache-2.0 */
#ifndef ANOLE_CLI_H
#define ANOLE_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "anole/anole.h"

/* Exit codes: 0 ok, 1 the operation failed (e.g. a bad image), 2 usage. */
#define EXIT_USAGE 2

int cmd_build(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Print "anole: MSG" on stderr, one line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_usage(const char *usage);
int cli_fail(const struct anole_error *err, int r);

#endif
