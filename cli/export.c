/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

int cmd_export(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cli_error("export is not implemented yet");
	return 1;
}
