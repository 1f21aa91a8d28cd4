/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's mount table: a list kept small (a mount per image), so
 * a linear search. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "serve/mounttab.h"
#include "serve/worker.h"

struct lmount *mtab_find(const struct mount_table *t, const char *mnt)
{
	for (size_t i = 0; i < t->nmounts; i++)
		if (!strcmp(t->mounts[i]->mountpoint, mnt))
			return t->mounts[i];
	return NULL;
}

int mtab_add(struct mount_table *t, struct lmount *m)
{
	struct lmount **a = realloc(t->mounts, (t->nmounts + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	t->mounts = a;
	a[t->nmounts++] = m;
	return 0;
}

struct lmount *mtab_take(struct mount_table *t, size_t i)
{
	struct lmount *m = t->mounts[i];
	t->mounts[i] = t->mounts[--t->nmounts];
	return m;
}

int mtab_reserve(struct mount_table *t, const char *real, char **mine)
{
	bool busy = mtab_find(t, real) != NULL;
	for (size_t i = 0; i < t->nmounting; i++)
		busy |= !strcmp(t->mounting[i], real);
	if (busy)
		return -EBUSY;
	char **ing = realloc(t->mounting, (t->nmounting + 1) * sizeof(*ing));
	if (!ing)
		return -ENOMEM;
	t->mounting = ing;
	if (!(*mine = strdup(real)))
		return -ENOMEM;
	t->mounting[t->nmounting++] = *mine;
	return 0;
}

void mtab_unreserve(struct mount_table *t, const char *mine)
{
	for (size_t i = 0; i < t->nmounting; i++)
		if (t->mounting[i] == mine) {
			t->mounting[i] = t->mounting[--t->nmounting];
			break;
		}
}
