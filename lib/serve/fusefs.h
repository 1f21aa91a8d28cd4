/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE fallback of the lazy mount (fusefs.c). */
#ifndef ANOLE_FUSEFS_H
#define ANOLE_FUSEFS_H

#include <stddef.h>

#include "anole/anole.h"

struct lmount;
struct blob;
struct fusefs;

/* Serve @m's metadata image at its mount point; @devblobs are its data
 * blobs in device table order. Threads of its own; its worker's lock not held. */
int fusefs_mount(struct lmount *m, struct blob **devblobs, size_t ndevs, const char *options,
		 struct fusefs **out, struct anole_error *err);
/* Unmount and stop (also after umount(8)). its worker's lock not held. */
void fusefs_unmount(struct fusefs *fs);

#endif
