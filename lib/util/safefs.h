/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File-system steps another local user cannot redirect. anole runs as
 * root in directories other users may write to (/var/tmp, the parent of
 * an extract's target); a path re-resolved there can be swapped for a
 * symlink between two steps. These helpers work from directory file
 * descriptors only: they never follow a symlink, never descend into
 * another mount, and act on a name only after opening it without
 * following links. Functions return 0 or -errno.
 */
#ifndef ANOLE_SAFEFS_H
#define ANOLE_SAFEFS_H

#include <stdbool.h>

#include "util/util.h"

/* Remove everything below the directory @fd, not @fd itself. A symlink
 * is removed, never followed; a directory on another mount (a mount
 * point) is left whole and makes the result -EXDEV. Removes what it can
 * and returns the first error. Without root, directories we own but may
 * not write or search are given u+rwx first (an extract's 0555 ones).
 * One directory is open at a time, so depth (up to 65536 levels) costs
 * memory, not descriptors. */
int rm_tree_contents(int fd);
/* Remove @name in @dirfd and, if it is a directory, all below it. */
int rm_tree_at(int dirfd, const char *name);

/*
 * A private work directory: PREFIX + 6 random characters in a directory,
 * made by us, mode 0700, and flocked for as long as @fd is open. That
 * makes it provably ours and provably abandoned once its lock is free:
 * workdir_clean() removes only such directories.
 */
struct workdir {
	int parent; /* the directory it is in (our own descriptor) */
	int fd;     /* the work directory, flocked */
	char name[64];
};
int workdir_create(struct workdir *w, int parent, const char *prefix);
/* Remove it with everything in it, and close it. Safe on a zeroed or
 * failed one (parent and fd -1). */
int workdir_remove(struct workdir *w);
/* Remove the abandoned work directories PREFIX* in @parent: each must be
 * a directory (not a symlink) owned by this user, mode 0700, on
 * @parent's mount, with its lock free (and that of a NAME.lock file
 * beside it, which converts made before work directories were locked
 * themselves held instead). Anything else is left alone. */
void workdir_clean(int parent, const char *prefix);

/* Every name in the directory @fd but . and .., each as its d_type byte,
 * the name and a NUL, read whole (changing a directory while reading it
 * may skip entries). */
int dir_list(int fd, struct strbuf *out);

/* @fd (any, O_PATH too) as a /proc/self/fd path, which reaches the very
 * inode @fd holds, for calls that take only paths. */
void fd_path(int fd, char buf[static 32]);

#endif
