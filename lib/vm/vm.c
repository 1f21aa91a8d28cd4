/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole run --vm: QEMU's microvm machine (or q35, the baseline:
 * vm_machine) with Debian's cloud kernel, the initramfs of
 * lib/vm/initramfs.c and the image as a read-only virtio-blk disk
 * (docs/DESIGN-vm.md). This process listens on five unix sockets
 * that QEMU connects to: the kernel console (a serial port, kept apart so
 * that the kernel's messages never mix with the container's output), the
 * status console (hvc0: "exit N", "signal N" or "error MSG" from the
 * guest's init; "kill N" to it, a signal for the command) and the container's stdin, stdout and stderr
 * (virtio-serial ports 1-3). It forwards stdio until QEMU is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "util/util.h"
#include "vm/pool.h"
#include "vm/vm.h"

#define QEMU "qemu-system-x86_64"
#define GUEST_MEM "256M"
/* TCG's translation buffer: QEMU's default is 1 GiB, of which a boot
 * fills 44 MiB; 64 MiB bounds what a long run can grow it to at no cost
 * to a boot (32 MiB flushes it during one: 2-3x slower) */
#define TCG_TB_SIZE "tb-size=64"
#define CONNECT_SECONDS 30
#define IMAGE_FD 4 /* QEMU's fd of the image; its blobs' follow */
#define MAX_DEVICES 20 /* as the guest's init takes */
#define MAX_VOLUMES 8
#define VIRTIOFSD "/usr/lib/qemu/virtiofsd" /* qemu-system-common's */
#define KEEP_TAIL ((size_t)4096) /* bytes of the console and QEMU's stderr kept */
#define STOP_GRACE_SECONDS 10 /* a forwarded signal's wait before the power-off */
#define NDISKS (1 + MAX_DEVICES) /* disk 0 the metadata image, 1 + N blob N */
/* a virtio-pmem disk's size must be a multiple of this: the guest maps it
 * with struct pages (ZONE_DEVICE, what DAX needs), which takes whole
 * 2 MiB subsections; QEMU never grows the file to fit */
#define PMEM_ALIGN (2ll << 20)
#define PMEM_SLOT 0x10 /* disk K on virtio-pmem: PCI slot PMEM_SLOT + K */

/* Sockets QEMU connects to, and QEMU's stderr (a pipe). */
enum chan { CH_CONSOLE, CH_STATUS, CH_STDIN, CH_STDOUT, CH_STDERR, NSOCK, CH_QEMU = NSOCK, NCHAN };
static const char *const chan_name[NSOCK] = {"con", "st", "in", "out", "err"};

struct vm {
	const struct vm_options *o;
	struct anole_error *err;
	struct vm_kernel k;
	char init[PATH_MAX], qemu[PATH_MAX];
	int image_fd, initrd_fd;
	char dir[128];
	int lfd[NSOCK], fd[NCHAN];
	bool kvm;
	const struct vm_machine *m; /* microvm, or q35 (ANOLE_VM_MACHINE) */
	/* the guest's init says "up" on the status console as it starts: a
	 * boot that has not by boot_deadline is stopped (boot_stalled) */
	bool up, boot_stalled;
	double boot_deadline;
	const char *accel_why; /* "" or " (why this accelerator)" */
	/* each disk's size, and whether it goes on virtio-pmem (ANOLE_VM_DISK) */
	long long disk_size[NDISKS];
	bool pmem[NDISKS];
	size_t npmem;
	char disk_why[160]; /* ANOLE_VM_DISK=pmem not taken: why */
	pid_t pid;
	int pidfd, sigfd;
	struct strbuf tail[NCHAN]; /* the console, status and QEMU's stderr */
	/* a volume: its source, whether read-only, its virtiofsd's listening
	 * socket (DIR/fsN, QEMU connects) and pid */
	struct volume {
		char src[PATH_MAX];
		const char *dst;
		size_t dst_len;
		bool ro;
		int lfd;
		pid_t pid;
	} vol[MAX_VOLUMES];
	char inbuf[65536];
	size_t inlen;
	bool stdin_done;
	struct vm_cgroup cg; /* QEMU's and virtiofsd's (lib/vm/pool.c) */
};

/* The run's cgroup's memory limit: the guest's RAM, TCG's translation
 * buffer, and 256 MiB for QEMU itself (20-35 MiB idle), virtiofsd and the
 * page cache of what QEMU reads (reclaimed at the limit, never a kill). */
static uint64_t memory_limit(const struct vm *v)
{
	uint64_t mib = 256 + (v->kvm ? 0 : 64) + 256;
	return mib << 20;
}

/* In QEMU's or virtiofsd's child, before its exec: into the run's cgroup,
 * so that nothing of theirs is ever charged elsewhere. */
static void enter_cgroup(const struct vm *v)
{
	int r = vm_cgroup_enter(&v->cg);
	if (r < 0) {
		dprintf(2, "anole: the run's cgroup: %s\n", strerror(-r));
		_exit(127);
	}
}

static void take_cgroup(struct vm *v)
{
	const char *why = "";
	vm_cgroup_take(&v->cg, memory_limit(v), &why);
	if (v->cg.kind == VM_CG_NONE)
		log_line(v->o->log, v->o->log_ctx, "vm: no cgroup for QEMU (%s): it runs without a "
			 "memory limit", why);
}

/* anole-vm-init: $ANOLE_VM_INIT, beside this executable (the build
 * tree), or in ../libexec/anole (an installed tree). */
static int find_init(struct vm *v)
{
	const char *env = getenv("ANOLE_VM_INIT");
	if (env && *env) {
		snprintf(v->init, sizeof(v->init), "%s", env);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		const char *dir = dirname(exe);
		snprintf(v->init, sizeof(v->init), "%s/anole-vm-init", dir);
		if (!access(v->init, R_OK))
			return 0;
		snprintf(v->init, sizeof(v->init), "%s/../libexec/anole/anole-vm-init", dir);
		if (!access(v->init, R_OK))
			return 0;
	}
	return anole_err(v->err, ENOENT, "no anole-vm-init beside anole or in ../libexec/anole");
}

static int find_qemu(struct vm *v)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = strdup(path && *path ? path : "/usr/bin:/bin");
	if (!copy)
		return anole_err(v->err, ENOMEM, "out of memory");
	char *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(v->qemu, sizeof(v->qemu), "%s/%s", d, QEMU);
		if (!access(v->qemu, X_OK))
			return 0;
	}
	return anole_err(v->err, ENOENT, "%s not found: install qemu-system-x86", QEMU);
}

static int parse_id(const char *s, size_t len, unsigned long *id)
{
	char buf[16];
	if (!len || len >= sizeof(buf) || strspn(s, "0123456789") < len)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	*id = strtoul(buf, NULL, 10);
	return errno || *id > 0xfffffffeul ? -1 : 0;
}

static int add_record(struct strbuf *c, char key, const char *value)
{
	if (strbuf_addf(c, "%c:%s", key, value) < 0 || strbuf_add(c, "", 1) < 0)
		return -ENOMEM;
	return 0;
}

/* The serial the guest's init finds disk @k by. */
static void disk_serial(size_t k, char *buf, size_t len)
{
	if (k)
		snprintf(buf, len, "anole.d%zu", k - 1);
	else
		snprintf(buf, len, "anole.meta");
}

/* /anole.conf's records (lib/vm/init/init.c reads them). */
static int build_conf(struct vm *v, struct strbuf *c)
{
	const struct vm_options *o = v->o;
	unsigned long uid = 0, gid = 0;
	if (o->user) {
		const char *colon = strchr(o->user, ':');
		size_t ulen = colon ? (size_t)(colon - o->user) : strlen(o->user);
		if (parse_id(o->user, ulen, &uid) < 0 ||
		    (colon && parse_id(colon + 1, strlen(colon + 1), &gid) < 0))
			return anole_err(v->err, EINVAL,
					 "--user %s: anole run --vm takes numbers, UID[:GID]", o->user);
		if (!colon)
			gid = uid;
	}
	char num[32];
	int r = 0;
	for (size_t i = 0; r >= 0 && i < o->argc; i++)
		r = add_record(c, 'a', o->argv[i]);
	bool path = false;
	for (size_t i = 0; r >= 0 && i < o->nenv; i++) {
		path |= !strncmp(o->env[i], "PATH=", 5);
		r = add_record(c, 'e', o->env[i]);
	}
	/* runc's default, as anole run gives */
	if (r >= 0 && !path)
		r = add_record(c, 'e', "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (r >= 0 && o->workdir)
		r = add_record(c, 'w', o->workdir);
	snprintf(num, sizeof(num), "%lu", uid);
	if (r >= 0)
		r = add_record(c, 'u', num);
	snprintf(num, sizeof(num), "%lu", gid);
	if (r >= 0)
		r = add_record(c, 'g', num);
	/* v:MODE/DST, MODE r or w; volume N is virtio-fs tag anole.vN */
	for (size_t i = 0; r >= 0 && i < o->nvolumes; i++) {
		if (strbuf_addf(c, "v:%c%.*s", v->vol[i].ro ? 'r' : 'w', (int)v->vol[i].dst_len,
				v->vol[i].dst) < 0 || strbuf_add(c, "", 1) < 0)
			r = -ENOMEM;
	}
	snprintf(num, sizeof(num), "%zu", o->ndevices);
	if (r >= 0)
		r = add_record(c, 'd', num);
	/* p:SERIAL@PCI: the disk named SERIAL is the virtio-pmem device at
	 * that PCI address (it has no serial of its own) */
	for (size_t k = 0; r >= 0 && k <= o->ndevices; k++) {
		if (!v->pmem[k])
			continue;
		char serial[32];
		disk_serial(k, serial, sizeof(serial));
		if (strbuf_addf(c, "p:%s@0000:00:%02x.0", serial, PMEM_SLOT + (unsigned)k) < 0 ||
		    strbuf_add(c, "", 1) < 0)
			r = -ENOMEM;
	}
	return r < 0 ? anole_err(v->err, ENOMEM, "out of memory") : 0;
}

static int make_initramfs(struct vm *v)
{
	struct strbuf conf = {0};
	int r = build_conf(v, &conf);
	if (r >= 0) {
		v->initrd_fd = tmpfile_unnamed("/tmp");
		if (v->initrd_fd < 0)
			r = anole_err(v->err, -v->initrd_fd, "initramfs: scratch file: %s",
				      strerror(-v->initrd_fd));
	}
	if (r >= 0)
		r = vm_initramfs(v->initrd_fd, v->init, &v->k, v->o->nvolumes > 0, v->npmem > 0, conf.buf, conf.len,
				 v->err);
	strbuf_release(&conf);
	return r;
}

/* The sockets' directory, mode 0700, gone once QEMU has connected. */
static void remove_sockets(struct vm *v)
{
	if (!v->dir[0])
		return;
	for (int i = 0; i < NSOCK; i++) {
		char path[200];
		snprintf(path, sizeof(path), "%s/%s", v->dir, chan_name[i]);
		unlink(path);
	}
	for (size_t i = 0; i < v->o->nvolumes; i++) {
		char path[200];
		snprintf(path, sizeof(path), "%s/fs%zu", v->dir, i);
		unlink(path);
	}
	rmdir(v->dir);
	v->dir[0] = '\0';
}

static int listen_sockets(struct vm *v)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(v->dir, sizeof(v->dir), "%s/anole-vm-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (strlen(v->dir) > 80 || !mkdtemp(v->dir)) {
		v->dir[0] = '\0';
		return anole_err(v->err, errno ? errno : ENAMETOOLONG,
				 "a directory for QEMU's sockets: %s", strerror(errno));
	}
	for (int i = 0; i < NSOCK; i++) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", v->dir, chan_name[i]);
		v->lfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (v->lfd[i] < 0 || bind(v->lfd[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(v->lfd[i], 1) < 0)
			return anole_err(v->err, errno, "%s: %s", sa.sun_path, strerror(errno));
	}
	/* virtiofsd's: made here, so that QEMU's connect finds them listening */
	for (size_t i = 0; i < v->o->nvolumes; i++) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fs%zu", v->dir, i);
		v->vol[i].lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (v->vol[i].lfd < 0 || bind(v->vol[i].lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(v->vol[i].lfd, 1) < 0)
			return anole_err(v->err, errno, "%s: %s", sa.sun_path, strerror(errno));
	}
	return 0;
}

/* The host's TSC rate: under TCG the guest's TSC is the host's, and a
 * busy host makes the guest's own calibration against the PIT fail,
 * which stalls its boot (microvm has no HPET or ACPI PM timer). */
static unsigned long tsc_khz(void)
{
#if defined(__x86_64__)
	struct timespec a, b, pause = {0, 20000000L};
	clock_gettime(CLOCK_MONOTONIC, &a);
	unsigned long long t0 = __rdtsc();
	nanosleep(&pause, NULL);
	unsigned long long t1 = __rdtsc();
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
	return ns > 0 ? (unsigned long)((double)(t1 - t0) * 1e6 / ns) : 0;
#else
	return 0;
#endif
}

/* How the disks go to the guest: ANOLE_VM_DISK=blk (the default) or
 * pmem. On pmem, a disk is the host's file mapped shared and read-only
 * into the guest, which reads it with DAX: guests of the same image share
 * the host's page cache instead of each copying it into its own (for the
 * files EROFS reads with DAX: uncompressed, no inline tail). Blk stays the
 * default because anole's own images gain nothing from it (measured:
 * docs/DECISIONS.md). Only files, and only those whose size is a multiple
 * of PMEM_ALIGN; all disks on pmem or none (dax=always is one option for
 * the mount). A lazy image stays on blk: a partial blob file's missing
 * ranges are fetched on read() (the daemon's pre-content mark); a mapping
 * of it gets no such event per page fault. */
static int choose_disks(struct vm *v)
{
	const char *env = getenv("ANOLE_VM_DISK");
	bool want = env && !strcmp(env, "pmem");
	if (env && *env && !want && strcmp(env, "blk"))
		return anole_err(v->err, EINVAL, "ANOLE_VM_DISK=%s: expected blk or pmem", env);
	if (want && v->o->lazy)
		snprintf(v->disk_why, sizeof(v->disk_why), "a lazy image's blobs are fetched as "
			 "they are read, not as a mapping of them faults");
	/* QEMU 7.2's microvm plugs no memory device: a virtio-pmem-pci on its
	 * PCIe host bridge (pcie=on) is created, but its memory is never
	 * mapped, and the guest finds the region at address 0, over its RAM
	 * (nd_pmem: "could not reserve region"). q35 maps it above the RAM. */
	const char *mach = getenv("ANOLE_VM_MACHINE");
	if (want && !v->disk_why[0] && mach && *mach && strcmp(mach, "q35"))
		snprintf(v->disk_why, sizeof(v->disk_why), "ANOLE_VM_MACHINE=%s plugs no memory "
			 "device (QEMU 7.2), q35 does", mach);
	for (size_t k = 0; k <= v->o->ndevices; k++) {
		struct stat st;
		int fd = k ? v->o->device_fds[k - 1] : v->image_fd;
		if (fstat(fd, &st) < 0)
			return anole_err(v->err, errno, "fstat: %s", strerror(errno));
		v->disk_size[k] = (long long)st.st_size;
		if (want && !v->disk_why[0] && (!S_ISREG(st.st_mode) || !st.st_size ||
						st.st_size % PMEM_ALIGN))
			snprintf(v->disk_why, sizeof(v->disk_why), "%s%s is %lld bytes, not a "
				 "multiple of 2 MiB", k ? "a blob of " : "", v->o->image,
				 (long long)st.st_size);
	}
	for (size_t k = 0; want && !v->disk_why[0] && k <= v->o->ndevices; k++)
		v->pmem[k] = true;
	v->npmem = want && !v->disk_why[0] ? v->o->ndevices + 1 : 0;
	if (v->npmem)
		v->m = vm_machine_named("q35");
	return 0;
}

/* The disks' arguments: blk disks by serial (the guest's vdX names follow
 * probe order), pmem disks by PCI slot, each in a memory slot of its own
 * beyond the guest's RAM. */
static void disk_args(struct vm *v, struct strbuf *s)
{
	long long maxmem = 256ll << 20;
	for (size_t k = 0; k <= v->o->ndevices; k++) {
		char serial[32];
		disk_serial(k, serial, sizeof(serial));
		if (!v->pmem[k]) {
			strbuf_addf(s, "|-drive|if=none,id=disk%zu,file=/dev/fd/%zu,format=raw,"
				       "readonly=on|-device|virtio-blk-%s,drive=disk%zu,serial=%s",
				    k, IMAGE_FD + k, v->m->virtio, k, serial);
			continue;
		}
		strbuf_addf(s, "|-object|memory-backend-file,id=pm%zu,mem-path=/dev/fd/%zu,size=%lld,"
			       "share=on,readonly=on"
			       "|-device|virtio-pmem-pci,memdev=pm%zu,bus=pcie.0,addr=0x%02x",
			    k, IMAGE_FD + k, v->disk_size[k], k, PMEM_SLOT + (unsigned)k);
		maxmem += v->disk_size[k];
	}
	if (v->npmem)
		strbuf_addf(s, "|-m|slots=%zu,maxmem=%lldM", v->npmem, (maxmem + (1 << 20) - 1) >> 20);
}

/* QEMU's command line; @s holds its strings. */
static char **qemu_argv(struct vm *v, struct strbuf *s)
{
	char append[256];
	unsigned long khz = v->kvm ? 0 : tsc_khz();
	/* q35 with memory slots: the hotplug range above 4 GiB makes the
	 * kernel set up 64 MiB of DMA bounce buffers (SWIOTLB), zeroed, so
	 * each guest's RAM; virtio without VIRTIO_F_ACCESS_PLATFORM never
	 * bounces */
	int n = snprintf(append, sizeof(append), "console=ttyS0 quiet panic=-1%s",
			 v->npmem ? " swiotlb=noforce" : "");
	if (khz)
		snprintf(append + n, sizeof(append) - (size_t)n, " tsc_early_khz=%lu", khz);
	/* virtio-fs: virtiofsd maps the guest's memory, so it is a shared memfd */
	const char *bus = v->m->virtio;
	strbuf_addf(s, "%s|-M|%s%s|-accel|%s|-cpu|%s|-m|" GUEST_MEM "|-smp|1|-nodefaults|"
		       "-no-user-config|-display|none|-sandbox|on|-no-reboot|-nic|none|"
		       "-kernel|%s/vmlinuz|-initrd|/dev/fd/3|-append|%s|"
		       "-device|virtio-serial-%s,max_ports=4|-serial|chardev:con|"
		       "-device|virtconsole,chardev=st,nr=0|"
		       "-device|virtserialport,chardev=in,nr=1,name=anole.stdin|"
		       "-device|virtserialport,chardev=out,nr=2,name=anole.stdout|"
		       "-device|virtserialport,chardev=err,nr=3,name=anole.stderr|"
		       /* free page reporting: the guest's freed memory goes back */
		       "-device|virtio-balloon-%s,free-page-reporting=on",
		    v->qemu, v->m->name, v->o->nvolumes ? ",memory-backend=mem" : "",
		    v->kvm ? "kvm" : "tcg," TCG_TB_SIZE, v->kvm ? "host" : "max", v->k.dir, append, bus,
		    bus);
	/* (libvhost-user serves virtio 1.0 only) */
	if (v->o->nvolumes)
		strbuf_addf(s, "|-object|memory-backend-memfd,id=mem,size=" GUEST_MEM ",share=on%s",
			    v->m->globals);
	for (size_t i = 0; i < v->o->nvolumes; i++)
		strbuf_addf(s, "|-chardev|socket,id=fs%zu,path=%s/fs%zu"
			       "|-device|vhost-user-fs-%s,chardev=fs%zu,tag=anole.v%zu",
			    i, v->dir, i, bus, i, i);
	disk_args(v, s);
	for (int i = 0; i < NSOCK; i++)
		strbuf_addf(s, "|-chardev|socket,id=%s,path=%s/%s", chan_name[i], v->dir,
			    chan_name[i]);
	if (!s->buf || strpbrk(v->k.dir, "|,") || strpbrk(v->dir, "|,"))
		return NULL;
	size_t count = 2;
	for (const char *p = s->buf; *p; p++)
		count += *p == '|';
	char **argv = calloc(count, sizeof(*argv));
	char *save = NULL;
	size_t i = 0;
	for (char *t = argv ? strtok_r(s->buf, "|", &save) : NULL; t; t = strtok_r(NULL, "|", &save))
		argv[i++] = t;
	return argv;
}

static void __attribute__((noreturn)) exec_qemu(struct vm *v, char **argv, int errpipe)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* its own process group: a terminal's Ctrl-C comes to anole, which
	 * stops QEMU; and it dies with anole */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* no transparent huge pages: a 4 KiB page the guest touches
	 * would cost the host 2 MiB, and khugepaged would fill back the
	 * holes free page reporting makes (docs/DESIGN-vm.md) */
	prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	enter_cgroup(v);
	/* above every fd it is moved to, before any move */
	int low = IMAGE_FD + 1 + (int)v->o->ndevices;
	int initrd = fcntl(v->initrd_fd, F_DUPFD_CLOEXEC, low);
	int image = fcntl(v->image_fd, F_DUPFD_CLOEXEC, low);
	int devs[MAX_DEVICES];
	for (size_t i = 0; i < v->o->ndevices; i++)
		if ((devs[i] = fcntl(v->o->device_fds[i], F_DUPFD_CLOEXEC, low)) < 0)
			_exit(127);
	int null = open("/dev/null", O_RDWR);
	if (initrd < 0 || image < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
	    dup2(errpipe, 2) < 0 || dup2(initrd, 3) < 0 || dup2(image, IMAGE_FD) < 0)
		_exit(127);
	for (size_t i = 0; i < v->o->ndevices; i++)
		if (dup2(devs[i], IMAGE_FD + 1 + (int)i) < 0)
			_exit(127);
	execv(argv[0], argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* -v /SRC:/DST[:ro|rw]: SRC an existing directory, its real path kept. */
static int parse_volumes(struct vm *v)
{
	const struct vm_options *o = v->o;
	if (o->nvolumes > MAX_VOLUMES)
		return anole_err(v->err, E2BIG, "%zu volumes: a guest takes at most %d", o->nvolumes,
				 MAX_VOLUMES);
	for (size_t i = 0; i < o->nvolumes; i++) {
		struct volume *vol = &v->vol[i];
		const char *spec = o->volumes[i], *dst = strchr(spec, ':');
		const char *mode = dst ? strchr(dst + 1, ':') : NULL;
		char src[PATH_MAX];
		size_t slen = dst ? (size_t)(dst - spec) : 0;
		vol->dst = dst ? dst + 1 : NULL;
		vol->dst_len = mode ? (size_t)(mode - vol->dst) : dst ? strlen(vol->dst) : 0;
		vol->ro = mode && !strcmp(mode + 1, "ro");
		if (!dst || *spec != '/' || slen >= sizeof(src) || *vol->dst != '/' ||
		    (mode && strcmp(mode + 1, "ro") && strcmp(mode + 1, "rw")))
			return anole_err(v->err, EINVAL, "--volume %s: expected /SRC:/DST[:ro]", spec);
		memcpy(src, spec, slen);
		src[slen] = '\0';
		struct stat st;
		if (!realpath(src, vol->src) || stat(vol->src, &st) < 0 || !S_ISDIR(st.st_mode))
			return anole_err(v->err, errno ? errno : ENOTDIR, "--volume %s: %s", spec,
					 errno ? strerror(errno) : "not a directory");
	}
	if (o->nvolumes && access(VIRTIOFSD, X_OK) < 0)
		return anole_err(v->err, ENOENT, "%s not found: volumes need qemu-system-common's "
				 "virtiofsd", VIRTIOFSD);
	return 0;
}

/* virtiofsd for volume @i, on its listening socket. A read-only volume is
 * read-only on the host, not only in the guest (whose root could remount
 * it): virtiofsd serves a read-only bind mount of SRC, and every mount
 * below it, in a mount namespace of its own. */
static void __attribute__((noreturn)) exec_virtiofsd(struct vm *v, size_t i)
{
	struct volume *vol = &v->vol[i];
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	enter_cgroup(v);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    (vol->ro && (mount(vol->src, vol->src, NULL, MS_BIND | MS_REC, NULL) < 0 ||
			 syscall(SYS_mount_setattr, AT_FDCWD, vol->src, AT_RECURSIVE, &ro,
				 sizeof(ro)) < 0))) {
		dprintf(2, "virtiofsd for %s: %s\n", vol->src, strerror(errno));
		_exit(127);
	}
	int null = open("/dev/null", O_RDWR);
	/* (its log is chatter; a failure shows as the guest's mount error) */
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
	    dup2(vol->lfd, 3) < 0)
		_exit(127);
	char source[PATH_MAX + 40];
	snprintf(source, sizeof(source), "source=%s,cache=none", vol->src);
	execl(VIRTIOFSD, VIRTIOFSD, "--fd=3", "-o", source, (char *)NULL);
	dprintf(2, "exec %s: %s\n", VIRTIOFSD, strerror(errno));
	_exit(127);
}

static int start_virtiofsd(struct vm *v)
{
	for (size_t i = 0; i < v->o->nvolumes; i++) {
		v->vol[i].pid = fork();
		if (v->vol[i].pid == 0)
			exec_virtiofsd(v, i);
		if (v->vol[i].pid < 0)
			return anole_err(v->err, errno, "fork: %s", strerror(errno));
		close(v->vol[i].lfd);
		v->vol[i].lfd = -1;
	}
	return 0;
}

static int start_qemu(struct vm *v)
{
	struct strbuf s = {0};
	_cleanup_free_ char **argv = qemu_argv(v, &s);
	int p[2];
	if (!argv) {
		strbuf_release(&s);
		return anole_err(v->err, EINVAL, "%s or %s: a path QEMU cannot take (',' or '|')",
				 v->k.dir, v->dir);
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		strbuf_release(&s);
		return anole_err(v->err, errno, "pipe: %s", strerror(errno));
	}
	v->pid = fork();
	if (v->pid == 0)
		exec_qemu(v, argv, p[1]);
	int e = errno;
	strbuf_release(&s);
	close(p[1]);
	v->fd[CH_QEMU] = p[0];
	if (v->pid < 0)
		return anole_err(v->err, e, "fork: %s", strerror(e));
	v->pidfd = (int)syscall(SYS_pidfd_open, v->pid, 0);
	if (v->pidfd < 0)
		return anole_err(v->err, errno, "pidfd_open: %s", strerror(errno));
	return 0;
}

/* The guest's bytes, printable: no terminal control sequences in our
 * line. */
static const char *printable(char *line)
{
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return line;
}

/* The last line of what came on @ch, or "". */
static const char *last_line(struct vm *v, enum chan ch)
{
	struct strbuf *t = &v->tail[ch];
	if (!t->len)
		return "";
	while (t->len && (t->buf[t->len - 1] == '\n' || t->buf[t->len - 1] == '\r'))
		t->buf[--t->len] = '\0';
	char *line = strrchr(t->buf, '\n');
	return printable(line ? line + 1 : t->buf);
}

/* The console's panic line (a trace and the kernel offset follow it),
 * else its last line. */
static const char *console_reason(struct vm *v)
{
	struct strbuf *t = &v->tail[CH_CONSOLE];
	char *panic = t->len ? strstr(t->buf, "Kernel panic - ") : NULL;
	if (!panic)
		return last_line(v, CH_CONSOLE);
	panic[strcspn(panic, "\r\n")] = '\0';
	return printable(panic);
}

static void keep_tail(struct strbuf *t, const char *data, size_t len)
{
	if (strbuf_add(t, data, len) < 0)
		return;
	if (t->len > 2 * KEEP_TAIL) {
		memmove(t->buf, t->buf + t->len - KEEP_TAIL, KEEP_TAIL);
		t->len = KEEP_TAIL;
	}
	t->buf[t->len] = '\0';
}

/* QEMU connects to each socket as it starts; then the directory goes. */
static int accept_all(struct vm *v)
{
	int left = NSOCK;
	double end = now_seconds() + CONNECT_SECONDS;
	while (left) {
		struct pollfd p[NSOCK + 1];
		for (int i = 0; i < NSOCK; i++)
			p[i] = (struct pollfd){.fd = v->fd[i] < 0 ? v->lfd[i] : -1, .events = POLLIN};
		p[NSOCK] = (struct pollfd){.fd = v->pidfd, .events = POLLIN};
		int n = poll(p, NSOCK + 1, 1000);
		if (n < 0 && errno != EINTR)
			return anole_err(v->err, errno, "poll: %s", strerror(errno));
		if (p[NSOCK].revents)
			return 1; /* QEMU ended before it connected: its stderr says why */
		if (now_seconds() > end)
			return anole_err(v->err, ETIMEDOUT, "QEMU did not connect in %d s",
					 CONNECT_SECONDS);
		for (int i = 0; n > 0 && i < NSOCK; i++) {
			if (!p[i].revents)
				continue;
			v->fd[i] = accept4(v->lfd[i], NULL, NULL, SOCK_CLOEXEC);
			if (v->fd[i] < 0)
				return anole_err(v->err, errno, "accept: %s", strerror(errno));
			left--;
		}
	}
	for (int i = 0; i < NSOCK; i++) {
		close(v->lfd[i]);
		v->lfd[i] = -1;
	}
	remove_sockets(v);
	return 0;
}

static void close_chan(struct vm *v, int ch)
{
	if (v->fd[ch] >= 0)
		close(v->fd[ch]);
	v->fd[ch] = -1;
}

/* Data on a channel: the container's output to ours, the rest kept. */
static void drain(struct vm *v, int ch)
{
	char buf[65536];
	ssize_t n = read(v->fd[ch], buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close_chan(v, ch);
		return;
	}
	if (ch == CH_STDOUT || ch == CH_STDERR) {
		if (write_full(ch == CH_STDOUT ? 1 : 2, buf, (size_t)n) < 0)
			close_chan(v, ch); /* nobody reads it: the guest's writes block */
		return;
	}
	v->up |= ch == CH_STATUS;
	keep_tail(&v->tail[ch], buf, (size_t)n);
}

/* Seconds a guest may take to reach its init: $ANOLE_VM_BOOT_TIMEOUT,
 * else 30 with KVM and 120 under TCG (boots of 2-21 s seen at load 13,
 * ten at once; a guest whose timer interrupts stop under TCG idles
 * forever, seen twice in a few hundred boots). */
static double boot_timeout(const struct vm *v)
{
	const char *env = getenv("ANOLE_VM_BOOT_TIMEOUT");
	double s = env ? strtod(env, NULL) : 0;
	return s > 0 ? s : v->kvm ? 30 : 120;
}

/* Our stdin to the guest's; at its end, a half close: QEMU reads what is
 * left, then tells the guest the port closed, which reads as EOF. */
static void feed_stdin(struct vm *v, short in_revents, short out_revents)
{
	if (!v->inlen && in_revents) {
		ssize_t n = read(0, v->inbuf, sizeof(v->inbuf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		if (n <= 0)
			v->stdin_done = true;
		else
			v->inlen = (size_t)n;
	}
	if (v->inlen && out_revents) {
		ssize_t n = send(v->fd[CH_STDIN], v->inbuf, v->inlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			v->inlen = 0;
			v->stdin_done = true;
		} else if (n > 0) {
			memmove(v->inbuf, v->inbuf + n, v->inlen - (size_t)n);
			v->inlen -= (size_t)n;
		}
	}
	if (v->stdin_done && !v->inlen && v->fd[CH_STDIN] >= 0) {
		shutdown(v->fd[CH_STDIN], SHUT_WR);
		v->fd[CH_STDIN] = -1 - v->fd[CH_STDIN]; /* still open, no longer polled */
	}
}

/* The guest's power-off: QEMU ends on SIGTERM. */
static void power_off(struct vm *v)
{
	if (v->pid > 0)
		kill(v->pid, SIGTERM);
}

/* A signal to anole: the first goes to the command, as docker and runc
 * pass a stop to the container's process ("kill N" on the status
 * console: the guest's init kill()s the command); the second, or the
 * first when the status console is gone, powers the guest off. Returns
 * the signal when anole powered off. */
static int stop_signal(struct vm *v, int *forwarded, double *deadline)
{
	struct signalfd_siginfo si;
	if (read(v->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return 0;
	int sig = (int)si.ssi_signo;
	if (!*forwarded && v->fd[CH_STATUS] >= 0) {
		char line[32];
		int n = snprintf(line, sizeof(line), "kill %d\n", sig);
		if (send(v->fd[CH_STATUS], line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n) {
			*forwarded = sig;
			*deadline = now_seconds() + STOP_GRACE_SECONDS;
			return 0;
		}
	}
	power_off(v);
	return sig;
}

/* Forward until QEMU has ended and every channel is at its end; 0, or
 * the signal that stopped the guest (powered off: a second signal, or the
 * command still running STOP_GRACE_SECONDS after the first). */
static int forward(struct vm *v, int *qemu_status)
{
	int stopped = 0, forwarded = 0;
	double deadline = 0;
	bool running = true;
	for (;;) {
		struct pollfd p[NCHAN + 3];
		bool open_chan = false;
		for (int i = 0; i < NCHAN; i++) {
			bool in = i == CH_STDIN;
			p[i] = (struct pollfd){.fd = in && !v->inlen ? -1 : v->fd[i],
					       .events = in ? POLLOUT : POLLIN};
			open_chan |= !in && v->fd[i] >= 0;
		}
		if (!running && !open_chan)
			return stopped;
		bool want_stdin = running && !v->stdin_done && !v->inlen && v->fd[CH_STDIN] >= 0;
		p[NCHAN] = (struct pollfd){.fd = want_stdin ? 0 : -1, .events = POLLIN};
		p[NCHAN + 1] = (struct pollfd){.fd = running ? v->pidfd : -1, .events = POLLIN};
		p[NCHAN + 2] = (struct pollfd){.fd = v->sigfd, .events = POLLIN};
		int wait_ms = -1;
		if (forwarded && !stopped && running) {
			double left = deadline - now_seconds();
			wait_ms = left > 0 ? (int)(left * 1000) + 1 : 0;
		}
		if (!v->up && running && !v->boot_stalled) {
			double left = v->boot_deadline - now_seconds();
			int ms = left > 0 ? (int)(left * 1000) + 1 : 0;
			wait_ms = wait_ms < 0 || ms < wait_ms ? ms : wait_ms;
		}
		if (poll(p, NCHAN + 3, wait_ms) < 0 && errno != EINTR)
			return anole_err(v->err, errno, "poll: %s", strerror(errno));
		if (p[NCHAN + 2].revents) {
			int sig = stop_signal(v, &forwarded, &deadline);
			stopped = sig ? sig : stopped;
		}
		if (!v->up && running && !v->boot_stalled && now_seconds() >= v->boot_deadline) {
			v->boot_stalled = true;
			kill(v->pid, SIGKILL);
		}
		if (forwarded && !stopped && running && now_seconds() >= deadline) {
			power_off(v);
			stopped = forwarded;
		}
		for (int i = 0; i < NCHAN; i++)
			if (i != CH_STDIN && p[i].revents)
				drain(v, i);
		if (p[NCHAN].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
			feed_stdin(v, POLLIN, 0);
		if (v->inlen && p[CH_STDIN].revents)
			feed_stdin(v, 0, p[CH_STDIN].revents);
		else if (v->stdin_done)
			feed_stdin(v, 0, 0);
		if (p[NCHAN + 1].revents) {
			while (waitpid(v->pid, qemu_status, 0) < 0 && errno == EINTR)
				;
			v->pid = -1;
			running = false;
		}
	}
}

/* How the command ended, from the status console; else why not. */
static int result(struct vm *v, int qemu_status, int *status)
{
	if (v->boot_stalled)
		return anole_err(v->err, ETIMEDOUT,
				 "the guest did not start its init within %g s (accelerator %s; "
				 "ANOLE_VM_BOOT_TIMEOUT sets the limit)",
				 boot_timeout(v), v->kvm ? "kvm" : "tcg");
	const char *st = last_line(v, CH_STATUS);
	int n;
	if (sscanf(st, "exit %d", &n) == 1 && n >= 0 && n < 256) {
		*status = n;
		return 0;
	}
	if (sscanf(st, "signal %d", &n) == 1 && n > 0 && n < 128) {
		*status = 128 + n;
		return 0;
	}
	if (!strncmp(st, "error ", 6))
		return anole_err(v->err, EIO, "guest: %s", st + 6);
	const char *why = last_line(v, CH_QEMU);
	if (!*why)
		why = console_reason(v);
	/* QEMU killed by a signal anole did not send (an OOM kill, a crash,
	 * kill -9): its stderr and the console say nothing of it */
	if (WIFSIGNALED(qemu_status))
		return anole_err(v->err, EIO, "QEMU died (%s) before the command's status came",
				 strsignal(WTERMSIG(qemu_status)));
	return anole_err(v->err, EIO, "the guest ended without the command's status (QEMU exited "
			 "%d)%s%s", WEXITSTATUS(qemu_status), *why ? ": " : "", why);
}

static int block_signals(struct vm *v, sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, old);
	v->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return v->sigfd < 0 ? anole_err(v->err, errno, "signalfd: %s", strerror(errno)) : 0;
}

static void cleanup(struct vm *v, const sigset_t *old)
{
	if (v->pid > 0) {
		kill(v->pid, SIGKILL);
		while (waitpid(v->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	for (size_t i = 0; i < v->o->nvolumes; i++) {
		if (v->vol[i].pid > 0) {
			kill(v->vol[i].pid, SIGKILL);
			while (waitpid(v->vol[i].pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		if (v->vol[i].lfd >= 0)
			close(v->vol[i].lfd);
	}
	vm_cgroup_release(&v->cg);
	remove_sockets(v);
	for (int i = 0; i < NCHAN; i++) {
		if (i < NSOCK && v->lfd[i] >= 0)
			close(v->lfd[i]);
		if (v->fd[i] >= 0)
			close(v->fd[i]);
		else if (v->fd[i] < -1)
			close(-1 - v->fd[i]);
		strbuf_release(&v->tail[i]);
	}
	int fds[] = {v->image_fd, v->initrd_fd, v->pidfd, v->sigfd};
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	sigprocmask(SIG_SETMASK, old, NULL);
}

static int prepare(struct vm *v)
{
	v->m = vm_machine();
	if (!v->m)
		return anole_err(v->err, EINVAL, "ANOLE_VM_MACHINE=%s: microvm or q35",
				 getenv("ANOLE_VM_MACHINE"));
	int r = vm_find_kernel(&v->k, v->err);
	if (r >= 0)
		r = find_init(v);
	if (r >= 0)
		r = find_qemu(v);
	if (r < 0)
		return r;
	v->image_fd = open(v->o->image, O_RDONLY | O_CLOEXEC);
	if (v->image_fd < 0)
		return anole_err(v->err, errno, "%s: %s", v->o->image, strerror(errno));
	r = vm_check_image(&v->k, v->image_fd, v->o->image, v->o->ndevices, v->o->lazy, v->err);
	if (r >= 0)
		r = choose_disks(v);
	if (r >= 0)
		r = parse_volumes(v);
	if (r >= 0)
		r = make_initramfs(v);
	v->kvm = vm_choose_accel(&v->k, &v->accel_why);
	return r;
}

int vm_run(const struct vm_options *o, int *status, struct anole_error *err)
{
	struct vm v = {.o = o, .err = err, .image_fd = -1, .initrd_fd = -1, .pid = -1,
		       .pidfd = -1, .sigfd = -1};
	for (int i = 0; i < NCHAN; i++) {
		v.fd[i] = -1;
		if (i < NSOCK)
			v.lfd[i] = -1;
	}
	for (size_t i = 0; i < MAX_VOLUMES; i++)
		v.vol[i] = (struct volume){.lfd = -1, .pid = -1};
	if (!o->argc)
		return anole_err(err, EINVAL, "%s: no command given", o->image);
	if (o->ndevices > MAX_DEVICES)
		return anole_err(err, E2BIG, "%s: %zu blob devices: a guest takes at most %d",
				 o->image, o->ndevices, MAX_DEVICES);
	sigset_t old;
	int r = prepare(&v);
	if (r >= 0)
		r = block_signals(&v, &old);
	else
		sigprocmask(SIG_BLOCK, NULL, &old);
	if (r >= 0)
		r = listen_sockets(&v);
	if (r >= 0) {
		log_line(o->log, o->log_ctx, "vm: QEMU %s, accelerator %s%s, guest kernel %s",
			 v.m->name, v.kvm ? "kvm" : "tcg", v.accel_why, v.k.version);
		if (v.disk_why[0])
			log_line(o->log, o->log_ctx, "vm: ANOLE_VM_DISK=pmem: %s: virtio-blk instead",
				 v.disk_why);
		take_cgroup(&v);
		r = start_virtiofsd(&v);
		v.boot_deadline = now_seconds() + boot_timeout(&v);
		if (r >= 0)
			r = start_qemu(&v);
	}
	if (r >= 0)
		r = accept_all(&v); /* 1: QEMU ended at once, its stderr says why */
	if (r >= 0) {
		int qemu_status = 0, stopped = forward(&v, &qemu_status);
		if (stopped > 0)
			*status = 128 + stopped;
		r = stopped < 0 ? stopped : stopped > 0 ? 0 : result(&v, qemu_status, status);
	}
	cleanup(&v, &old);
	return r;
}
