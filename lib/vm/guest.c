/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a guest is made of, found and checked before QEMU starts: the
 * kernel (scripts/vm-kernel caches Debian's), anole's init, and an image
 * the guest kernel can mount.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anole/erofs_fs.h"
#include "util/util.h"
#include "vm/vm.h"

#define DEFAULT_KERNEL_DIR "/var/cache/anole/vm/kernel"

/* The EROFS of Linux 6.1 (the guest kernel): everything up to fragments
 * and dedupe; long xattr prefixes came in 6.4, 48-bit and metabox later. */
#define GUEST_INCOMPAT                                                                             \
	(EROFS_INCOMPAT_ZERO_PADDING | EROFS_INCOMPAT_COMPR_CFGS | EROFS_INCOMPAT_CHUNKED_FILE |    \
	 EROFS_INCOMPAT_DEVICE_TABLE | EROFS_INCOMPAT_ZTAILPACKING | EROFS_INCOMPAT_FRAGMENTS)

static bool has_kernel(const char *dir)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/vmlinuz", dir);
	return access(path, R_OK) == 0;
}

int vm_find_kernel(struct vm_kernel *k, struct anole_error *err)
{
	const char *env = getenv("ANOLE_VM_KERNEL");
	const char *cache = getenv("ANOLE_CACHE_DIR");
	if (env && *env)
		snprintf(k->dir, sizeof(k->dir), "%s", env);
	else if (cache && *cache &&
		 (snprintf(k->dir, sizeof(k->dir), "%s/vm/kernel", cache), has_kernel(k->dir)))
		;
	else
		snprintf(k->dir, sizeof(k->dir), "%s", DEFAULT_KERNEL_DIR);
	if (!has_kernel(k->dir))
		return anole_err(err, ENOENT,
				 "no guest kernel in %s: run scripts/vm-kernel (as root) to fetch "
				 "Debian's linux-image-cloud-amd64 there",
				 k->dir);
	char path[700];
	snprintf(path, sizeof(path), "%s/version", k->dir);
	FILE *f = fopen(path, "re");
	snprintf(k->version, sizeof(k->version), "(unknown version)");
	if (f) {
		if (fgets(k->version, sizeof(k->version), f))
			k->version[strcspn(k->version, "\n")] = '\0';
		fclose(f);
	}
	return 0;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Whether a line of the guest kernel's config (the "config" file beside
 * vmlinuz) starts with "CONFIG_" and ends with "_" @suffix ("PVM_GUEST=y"
 * matches any CONFIG_..._PVM_GUEST=y). No config: no line matches. */
static bool kernel_config_has(const struct vm_kernel *k, const char *suffix)
{
	char path[700], line[256];
	snprintf(path, sizeof(path), "%s/config", k->dir);
	FILE *f = fopen(path, "re");
	size_t slen = strlen(suffix);
	bool yes = false;
	while (f && !yes && fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, "\n");
		yes = strncmp(line, "CONFIG_", 7) == 0 && n >= 7 + slen &&
		      line[n - slen - 1] == '_' && memcmp(line + n - slen, suffix, slen) == 0;
	}
	if (f)
		fclose(f);
	return yes;
}

bool vm_choose_accel(const struct vm_kernel *k, const char **why)
{
	const char *env = getenv("ANOLE_VM_ACCEL");
	if (env && (!strcmp(env, "kvm") || !strcmp(env, "tcg"))) {
		*why = " (ANOLE_VM_ACCEL)";
		return !strcmp(env, "kvm");
	}
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		*why = " (no /dev/kvm)";
		return false;
	}
	close(fd);
	/* A host whose KVM is PVM alone (no VT-x or AMD-V under it, as in
	 * a nested cloud VM) runs only kernels built as PVM guests; a stock
	 * kernel hangs there at its first instruction after decompression. */
	bool hardware = exists("/sys/module/kvm_intel") || exists("/sys/module/kvm_amd");
	if (!hardware && exists("/sys/module/kvm_pvm") && !kernel_config_has(k, "PVM_GUEST=y")) {
		*why = " (/dev/kvm is PVM and the guest kernel is no PVM guest)";
		return false;
	}
	*why = "";
	return true;
}

/* microvm's virtio-mmio transports are legacy unless told; a PCI
 * device is transitional, and the vhost-user ones are virtio 1.0. */
static const struct vm_machine machines[] = {
	{"microvm", "device", "virtio_mmio", "|-global|virtio-mmio.force-legacy=false"},
	{"q35", "pci", "virtio_pci", ""},
};

const struct vm_machine *vm_machine_named(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(machines); i++)
		if (!strcmp(name, machines[i].name))
			return &machines[i];
	return NULL;
}

const struct vm_machine *vm_machine(void)
{
	const char *env = getenv("ANOLE_VM_MACHINE");
	return env && *env ? vm_machine_named(env) : &machines[0];
}


/* Bit n of available_compr_algs: the codecs EROFS numbers 0..3, and the
 * config option that makes the kernel's EROFS read each. */
static const struct {
	const char *name, *config;
} codecs[] = {
	{"lz4", "EROFS_FS_ZIP=y"},
	{"lzma", "EROFS_FS_ZIP_LZMA=y"},
	{"deflate", "EROFS_FS_ZIP_DEFLATE=y"},
	{"zstd", "EROFS_FS_ZIP_ZSTD=y"},
};

/* The first codec of @algs the guest kernel cannot read, or -1. A kernel
 * without a config file is taken to read none, which is refused with the
 * hint to use lz4 (what Debian 12's cloud kernel reads). */
static int unreadable_codec(const struct vm_kernel *k, uint16_t algs)
{
	for (unsigned i = 0; i < 16; i++)
		if ((algs & (1u << i)) &&
		    (i >= ARRAY_SIZE(codecs) || !kernel_config_has(k, codecs[i].config)))
			return (int)i;
	return -1;
}

/* The codecs of the guest kernel, "lz4, zstd" into @buf. */
static const char *readable_codecs(const struct vm_kernel *k, char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(codecs); i++)
		if (kernel_config_has(k, codecs[i].config))
			n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? ", " : "",
					      codecs[i].name);
	return n ? buf : "no compressed data";
}

int vm_check_image(const struct vm_kernel *k, int fd, const char *name, size_t ndevices, bool lazy,
		   struct anole_error *err)
{
	struct erofs_super_block sb;
	int r = pread_full(fd, &sb, sizeof(sb), EROFS_SUPER_OFFSET);
	if (r < 0 || le32toh(sb.magic) != EROFS_MAGIC)
		return anole_err(err, EINVAL, "%s: not an EROFS image", name);
	if (sb.blkszbits != 12)
		return anole_err(err, EINVAL,
				 "%s: %u-byte blocks: the guest kernel (Linux 6.1) mounts 4096 only",
				 name, 1u << (sb.blkszbits & 31));
	uint32_t incompat = le32toh(sb.feature_incompat);
	if (incompat & ~GUEST_INCOMPAT)
		return anole_err(err, EINVAL,
				 "%s: uses EROFS features 0x%x that the guest kernel (Linux 6.1) "
				 "cannot read",
				 name, incompat & ~GUEST_INCOMPAT);
	uint16_t algs = (incompat & EROFS_INCOMPAT_COMPR_CFGS) ? le16toh(sb.available_compr_algs)
							       : 0;
	int bad = unreadable_codec(k, algs);
	if (bad >= 0) {
		char can[64];
		return anole_err(err, EINVAL,
				 "%s: compressed with %s: the guest kernel (%s) reads %s; %s it "
				 "with -z lz4",
				 name, (size_t)bad < ARRAY_SIZE(codecs) ? codecs[bad].name : "?",
				 k->version, readable_codecs(k, can, sizeof(can)),
				 lazy ? "convert" : "rebuild");
	}
	if (le16toh(sb.extra_devices) != ndevices)
		return anole_err(err, EINVAL, "%s: data in %u blob devices, %zu given", name,
				 le16toh(sb.extra_devices), ndevices);
	return 0;
}
