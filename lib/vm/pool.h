/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A pool of pre-created cgroups for anole run --vm (docs/DESIGN-vm.md):
 * each run's QEMU and virtiofsd go into a cgroup of their own with a
 * memory limit, taken from ANOLE_VM_CGROUP's free ones and given back when
 * the run ends.
 */
#ifndef ANOLE_VM_POOL_H
#define ANOLE_VM_POOL_H

#include <stdint.h>
#include <sys/types.h>

#include "anole/anole.h"

#define VM_CGROUP_DIR "anole-vm" /* below each hierarchy's root */

enum vm_cgroup_kind { VM_CG_NONE, VM_CG_V2, VM_CG_V1 };

/* One run's cgroup. On v1 the memory hierarchy's directory is renamed
 * free.N -> run.PID while the run holds it (and the pids hierarchy's
 * twin with it); v2 cannot rename a cgroup, so there it keeps its name.
 * Either way the run holds an flock on the directory: a free.N or run.*
 * whose lock can be taken belongs to no live run. */
struct vm_cgroup {
	enum vm_cgroup_kind kind;
	int dirfd;      /* the run's cgroup (memory's on v1), locked */
	int pids_dirfd; /* the pids limit's directory (v1: the twin), or -1 */
	int base, pids_base; /* their parents, VM_CGROUP_DIR */
	char name[32];  /* under VM_CGROUP_DIR */
	/* v1: a forked watcher returns the cgroup if anole dies (SIGKILL)
	 * before it could: it holds the read end of this pipe */
	int watch_fd;
	pid_t watcher;
};

/* Take a cgroup for a run and set its memory limit to @limit bytes and
 * its pids limit. 0 with cg->kind set; VM_CG_NONE with *why saying why
 * (no memory controller, not root, $ANOLE_VM_CGROUP=none) when the run
 * goes without one. */
void vm_cgroup_take(struct vm_cgroup *cg, uint64_t limit, const char **why);

/* In a child of the run, before its exec: move itself into the cgroup.
 * 0 or -errno; 0 when there is none. */
int vm_cgroup_enter(const struct vm_cgroup *cg);

/* After the run's processes are reaped: the cgroup back to the pool (or
 * removed when the pool holds enough). */
void vm_cgroup_release(struct vm_cgroup *cg);

/* anole vm pool N: create free cgroups until N are free; how many are
 * (at least N), or a negative errno. @where: the directory, for a user. */
int vm_cgroup_fill(unsigned n, char *where, size_t where_len, struct anole_error *err);

#endif
