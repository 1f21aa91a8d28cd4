/* SPDX-License-Identifier: Apache-2.0 */
/* Build sources: each feeds a tree_writer from one kind of input. */
#ifndef ANOLE_SOURCE_H
#define ANOLE_SOURCE_H

#include "erofs/tree.h"

/* A directory on a local filesystem, walked in name order. */
int source_dir(struct tree_writer *tw, const char *path, struct anole_error *err);

#endif
