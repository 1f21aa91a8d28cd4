/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's mount table (mounttab.c): the lazy mounts it serves, and
 * the mount points being set up. All under the worker's lock. */
#ifndef ANOLE_SERVE_MOUNTTAB_H
#define ANOLE_SERVE_MOUNTTAB_H

#include <stddef.h>

struct lmount;

struct mount_table {
	struct lmount **mounts;
	size_t nmounts;
	char **mounting; /* mount points being set up */
	size_t nmounting;
};

/* The mount at (real path) @mnt, or NULL. */
struct lmount *mtab_find(const struct mount_table *t, const char *mnt);
int mtab_add(struct mount_table *t, struct lmount *m);
/* Take mount @i out of the table (the last one takes its place). */
struct lmount *mtab_take(struct mount_table *t, size_t i);
/* One mount per mount point, also while one is being set up: -EBUSY when
 * @real is mounted or being set up, else *mine is a copy of it, listed
 * until mtab_unreserve(). */
int mtab_reserve(struct mount_table *t, const char *real, char **mine);
void mtab_unreserve(struct mount_table *t, const char *mine);

#endif
