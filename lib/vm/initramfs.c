/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest's initramfs, written per run (docs/DESIGN-vm.md): a newc cpio
 * (what the kernel unpacks) holding anole's init, the few kernel modules
 * the guest needs in load order, and the run's configuration. Everything
 * else the guest runs comes from the image.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/dyn_archive.h"
#include "util/util.h"
#include "vm/vm.h"

/* What the guest needs that Debian's kernels build as modules: the
 * machine's virtio transport (virtio_mmio, virtio_pci: vm_machine), then
 * the image's disk, the stdio ports, EROFS and overlayfs. Dependencies
 * come from modules.dep; the built-in ones (modules.builtin) are skipped,
 * so another kernel works too. crc32c_generic is no dependency in
 * modules.dep but a softdep of libcrc32c (EROFS's), which asks the crypto
 * API for crc32c as it loads: built into the cloud kernel, a module of the
 * full one, and the guest has no modprobe to load it on demand.
 * virtio_balloon reports freed guest pages to the host. */
static const char *const guest_modules[] = {"virtio_blk", "virtio_console", "crc32c_generic",
					    "erofs", "overlay", "virtio_balloon"};

static const char *const pmem_modules[] = {"virtio_pci", "virtio_pmem", "nd_pmem"};

#define MAX_MODULES 32
#define MAX_FILE (64u << 20)

struct modlist {
	char *path[MAX_MODULES]; /* under the modules directory, load order */
	size_t n;
};

static void modlist_free(struct modlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->path[i]);
}

static int slurp(const char *path, char **data, size_t *len, struct anole_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return anole_err(err, errno, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_FILE)
		return anole_err(err, EINVAL, "%s: not a regular file of at most 64 MiB", path);
	*len = (size_t)st.st_size;
	*data = malloc(*len + 1);
	if (!*data)
		return anole_err(err, ENOMEM, "out of memory");
	int r = pread_full(fd, *data, *len, 0);
	if (r < 0) {
		free(*data);
		*data = NULL;
		return anole_err(err, -r, "%s: %s", path, strerror(-r));
	}
	(*data)[*len] = '\0';
	return 0;
}

static int modlist_add(struct modlist *l, const char *path, size_t len, struct anole_error *err)
{
	for (size_t i = 0; i < l->n; i++)
		if (strlen(l->path[i]) == len && !strncmp(l->path[i], path, len))
			return 0;
	if (l->n == MAX_MODULES)
		return anole_err(err, E2BIG, "the guest needs more than %d modules", MAX_MODULES);
	l->path[l->n] = strndup(path, len);
	if (!l->path[l->n])
		return anole_err(err, ENOMEM, "out of memory");
	l->n++;
	return 0;
}

/* The line of modules.dep whose module is NAME.ko, or NULL. */
static const char *dep_line(const char *dep, const char *name)
{
	size_t nlen = strlen(name);
	for (const char *line = dep; *line;) {
		const char *colon = strchr(line, ':');
		const char *end = strchrnul(line, '\n');
		if (colon && colon < end && (size_t)(colon - line) >= nlen + 3 &&
		    !strncmp(colon - nlen - 3, name, nlen) && !strncmp(colon - 3, ".ko", 3) &&
		    (colon - nlen - 3 == line || *(colon - nlen - 4) == '/'))
			return line;
		line = *end ? end + 1 : end;
	}
	return NULL;
}

/* NAME and what it needs: modules.dep lists a module's dependencies so
 * that they load last to first. */
static int resolve(struct modlist *l, const char *dep, const char *builtin, const char *name,
		   const struct vm_kernel *k, struct anole_error *err)
{
	char key[160];
	snprintf(key, sizeof(key), "/%s.ko\n", name);
	if (strstr(builtin, key))
		return 0;
	const char *line = dep_line(dep, name);
	if (!line)
		return anole_err(err, ENOENT, "guest kernel %s: no module %s", k->version, name);
	const char *colon = strchr(line, ':');
	const char *end = strchrnul(line, '\n');
	const char *tok[MAX_MODULES];
	size_t len[MAX_MODULES], n = 0;
	for (const char *p = colon + 1; p < end && n < MAX_MODULES;) {
		while (p < end && *p == ' ')
			p++;
		const char *q = p;
		while (q < end && *q != ' ')
			q++;
		if (q > p) {
			tok[n] = p;
			len[n++] = (size_t)(q - p);
		}
		p = q;
	}
	for (size_t i = n; i-- > 0;) {
		int r = modlist_add(l, tok[i], len[i], err);
		if (r < 0)
			return r;
	}
	return modlist_add(l, line, (size_t)(colon - line), err);
}

static int module_order(struct modlist *l, const struct vm_kernel *k, bool virtiofs, bool pmem,
			struct anole_error *err)
{
	char path[700];
	_cleanup_free_ char *dep = NULL;
	_cleanup_free_ char *builtin = NULL;
	size_t len;
	snprintf(path, sizeof(path), "%s/modules/modules.dep", k->dir);
	int r = slurp(path, &dep, &len, err);
	snprintf(path, sizeof(path), "%s/modules/modules.builtin", k->dir);
	if (r >= 0)
		r = slurp(path, &builtin, &len, err);
	const struct vm_machine *m = vm_machine();
	if (r >= 0)
		r = m ? resolve(l, dep, builtin, m->transport, k, err)
		      : anole_err(err, EINVAL, "ANOLE_VM_MACHINE: microvm or q35");
	for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(guest_modules); i++)
		r = resolve(l, dep, builtin, guest_modules[i], k, err);
	/* volumes only: fuse and virtiofs are 0.2 MiB more to load */
	if (r >= 0 && virtiofs)
		r = resolve(l, dep, builtin, "virtiofs", k, err);
	/* disks on virtio-pmem only (a q35 guest): the PCI transport, the
	 * device and the pmem block driver, which DAX goes through (0.3 MiB) */
	for (size_t i = 0; r >= 0 && pmem && i < ARRAY_SIZE(pmem_modules); i++)
		r = resolve(l, dep, builtin, pmem_modules[i], k, err);
	return r;
}

static int add_entry(struct archive *a, struct archive_entry *e, const char *name, mode_t mode,
		     const void *data, size_t len, struct anole_error *err)
{
	archive_entry_clear(e);
	archive_entry_copy_pathname(e, name);
	archive_entry_set_mode(e, mode);
	archive_entry_set_size(e, (la_int64_t)len);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (len && archive_write_data(a, data, len) != (la_ssize_t)len))
		return anole_err(err, EIO, "initramfs: %s: %s", name, archive_error_string(a));
	return 0;
}

static int add_file(struct archive *a, struct archive_entry *e, const char *name, const char *path,
		    mode_t mode, struct anole_error *err)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = slurp(path, &data, &len, err);
	return r < 0 ? r : add_entry(a, e, name, mode, data, len, err);
}

static int write_cpio(struct archive *a, const char *init, const struct vm_kernel *k,
		      const struct modlist *l, const char *conf, size_t conf_len,
		      struct anole_error *err)
{
	struct archive_entry *e = archive_entry_new();
	struct strbuf c = {0};
	if (!e)
		return anole_err(err, ENOMEM, "out of memory");
	int r = add_file(a, e, "init", init, S_IFREG | 0755, err);
	if (r >= 0)
		r = add_entry(a, e, "modules", S_IFDIR | 0755, NULL, 0, err);
	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		char src[900], name[300];
		const char *base = strrchr(l->path[i], '/');
		snprintf(src, sizeof(src), "%s/modules/%s", k->dir, l->path[i]);
		snprintf(name, sizeof(name), "modules/%s", base ? base + 1 : l->path[i]);
		r = add_file(a, e, name, src, S_IFREG | 0644, err);
		if (r >= 0 && (strbuf_addf(&c, "m:/%s", name) < 0 || strbuf_add(&c, "", 1) < 0))
			r = anole_err(err, ENOMEM, "out of memory");
	}
	if (r >= 0 && strbuf_add(&c, conf, conf_len) < 0)
		r = anole_err(err, ENOMEM, "out of memory");
	if (r >= 0)
		r = add_entry(a, e, "anole.conf", S_IFREG | 0644, c.buf, c.len, err);
	strbuf_release(&c);
	archive_entry_free(e);
	return r;
}

int vm_initramfs(int fd, const char *init, const struct vm_kernel *k, bool virtiofs, bool pmem,
		 const char *conf, size_t conf_len, struct anole_error *err)
{
	struct modlist l = {0};
	int r = anole_archive_load(err);
	if (r >= 0)
		r = module_order(&l, k, virtiofs, pmem, err);
	struct archive *a = r >= 0 ? archive_write_new() : NULL;
	if (r >= 0 && !a)
		r = anole_err(err, ENOMEM, "out of memory");
	if (r >= 0 && (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK ||
		       archive_write_add_filter_none(a) != ARCHIVE_OK ||
		       archive_write_open_fd(a, fd) != ARCHIVE_OK))
		r = anole_err(err, EIO, "initramfs: %s", archive_error_string(a));
	if (r >= 0)
		r = write_cpio(a, init, k, &l, conf, conf_len, err);
	if (r >= 0 && archive_write_close(a) != ARCHIVE_OK)
		r = anole_err(err, EIO, "initramfs: %s", archive_error_string(a));
	if (a)
		archive_write_free(a);
	modlist_free(&l);
	return r;
}
