/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole run --vm (docs/DESIGN-vm.md): a container's command in a microVM
 * of QEMU, with Debian's cloud kernel and anole's own init (lib/vm/init),
 * the anole image handed to the guest as a read-only disk.
 */
#ifndef ANOLE_VM_H
#define ANOLE_VM_H

#include <stdbool.h>
#include <stddef.h>

#include "anole/anole.h"

struct vm_options {
	const char *image;             /* an anole image file (its metadata image) */
	const int *device_fds;         /* its data blobs, in device table order */
	size_t ndevices;
	bool lazy;                     /* a lazy image's: refusals say "convert" */
	const char *const *argv;       /* the command, argc > 0 */
	size_t argc;
	const char *const *env;        /* KEY=VALUE each */
	size_t nenv;
	const char *workdir;           /* NULL: / */
	const char *user;              /* UID[:GID], NULL: 0:0 */
	const char *const *volumes;    /* /SRC:/DST[:ro|rw], shared by virtio-fs */
	size_t nvolumes;
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
};

/* Run the command in a guest; *status: its exit status (128 + signal).
 * The guest's stdin, stdout and stderr are this process's; SIGINT,
 * SIGTERM and SIGHUP go to the command (its status stays its own); a
 * second one, or 10 s without an end, powers the guest off (status 128 +
 * signal). The QEMU
 * process dies with this one (PR_SET_PDEATHSIG) and nothing is left on
 * disk: the initramfs is an unnamed file, the sockets' directory goes as
 * soon as QEMU is connected. */
int vm_run(const struct vm_options *o, int *status, struct anole_error *err);

/* Internals of lib/vm. */

/* The guest kernel: DIR/vmlinuz and DIR/modules (scripts/vm-kernel). */
struct vm_kernel {
	char dir[512];
	char version[128];
};
/* $ANOLE_VM_KERNEL, else $ANOLE_CACHE_DIR/vm/kernel where it holds a
 * kernel, else /var/cache/anole/vm/kernel. */
int vm_find_kernel(struct vm_kernel *k, struct anole_error *err);

/* The machine QEMU emulates: microvm (virtio-mmio, no firmware: the
 * default) or q35 (SeaBIOS, PCI: the Kata-QEMU-like baseline of
 * bench/sandbox). */
struct vm_machine {
	const char *name;      /* QEMU's -M */
	const char *virtio;    /* its virtio devices' suffix: virtio-blk-SUFFIX */
	const char *transport; /* the guest's module that finds them */
	const char *globals;   /* with volumes: "" or "|-global|..." (vhost-user wants virtio 1.0) */
};
/* $ANOLE_VM_MACHINE's machine ("microvm" or "q35"; unset or empty:
 * microvm), or NULL for another name. */
const struct vm_machine *vm_machine(void);
/* The machine called @name, or NULL. */
const struct vm_machine *vm_machine_named(const char *name);

/* KVM or TCG for a guest running kernel @k: $ANOLE_VM_ACCEL ("kvm" or
 * "tcg") when set, else KVM where /dev/kvm opens and can run that kernel.
 * @why: "" or " (reason)", to follow the accelerator's name in a log. */
bool vm_choose_accel(const struct vm_kernel *k, const char **why);

/* Refuse an image the guest kernel @k cannot mount (a codec its config
 * does not enable; features and block sizes past Linux 6.1's), with one
 * line naming why. */
int vm_check_image(const struct vm_kernel *k, int fd, const char *name, size_t ndevices, bool lazy,
		   struct anole_error *err);

/* Write to @fd a newc cpio initramfs: /init (the file @init), the kernel
 * modules the guest needs (and virtiofs's when @virtiofs, virtio-pmem's when
 * @pmem), in load order,
 * and /anole.conf: @conf (records
 * "K:VALUE\0", lib/vm/init/init.c) after one "m:" record per module. */
int vm_initramfs(int fd, const char *init, const struct vm_kernel *k, bool virtiofs, bool pmem,
		 const char *conf, size_t conf_len, struct anole_error *err);

#endif
