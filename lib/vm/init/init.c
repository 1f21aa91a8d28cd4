/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole-vm-init: PID 1 of an `anole run --vm` guest (docs/DESIGN-vm.md).
 * A static program in the initramfs that lib/vm writes per run, next to
 * the kernel modules the guest needs and /anole.conf, the run's
 * configuration. It loads the modules, mounts the anole image read-only
 * as EROFS (its data blobs as device= disks), a tmpfs-backed
 * overlay on top as the container's root, runs the command there with
 * its stdin, stdout and stderr on virtio-serial ports, passes it the
 * signals the host sends as "kill N" lines on the status console, reports
 * how it ended there and powers the guest off.
 *
 * Libc only: it is linked statically so that the initramfs needs no
 * loader and no libraries.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <poll.h>
#include <signal.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CONF_PATH "/anole.conf"
#define CONF_MAX (1u << 20)
#define ROOT "/mnt/root"

/* The virtio-serial ports, numbered as lib/vm/vm.c numbers them. */
enum { PORT_STDIN = 1, PORT_STDOUT, PORT_STDERR, PORT_STATUS, NPORTS };

struct conf {
	char *argv[256], *env[256], *modules[32], *volumes[16], *pmem[32];
	size_t argc, envc, nmodules, nvolumes, npmem;
	const char *workdir;
	unsigned long uid, gid, ndevices;
};

static int status_fd = -1;

/* Say why the guest stops: on the status port once it is open (the host
 * prints that line), always on the kernel console (the host keeps its
 * last line for when no status came). Then power off. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status_fd >= 0)
		dprintf(status_fd, "error %s\n", msg);
	fprintf(stderr, "anole-vm-init: %s\n", msg);
	sync();
	reboot(RB_POWER_OFF);
	_exit(1);
}

static void mount_or_die(const char *src, const char *dst, const char *type, unsigned long flags,
			 const char *data)
{
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		die("mkdir %s: %s", dst, strerror(errno));
	if (mount(src, dst, type, flags, data) < 0)
		die("mount %s on %s (%s): %s", src, dst, type, strerror(errno));
}

static char *read_conf(size_t *len)
{
	int fd = open(CONF_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("%s: %s", CONF_PATH, strerror(errno));
	char *buf = malloc(CONF_MAX + 1);
	if (!buf)
		die("out of memory");
	size_t n = 0;
	ssize_t r;
	while (n < CONF_MAX && (r = read(fd, buf + n, CONF_MAX - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static unsigned long number(const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end)
		die("%s: %s: not a number", CONF_PATH, s);
	return v;
}

static void add(char **list, size_t *n, size_t max, char *v)
{
	if (*n + 1 >= max)
		die("%s: too many entries", CONF_PATH);
	list[(*n)++] = v;
	list[*n] = NULL;
}

/* /anole.conf: records "K:VALUE", each ended by a NUL byte. */
static void parse_conf(struct conf *c)
{
	size_t len;
	char *buf = read_conf(&len);
	for (size_t off = 0; off < len;) {
		char *rec = buf + off;
		off += strlen(rec) + 1;
		if (strlen(rec) < 2 || rec[1] != ':')
			die("%s: bad record", CONF_PATH);
		char *v = rec + 2;
		switch (rec[0]) {
		case 'a':
			add(c->argv, &c->argc, 256, v);
			break;
		case 'e':
			add(c->env, &c->envc, 256, v);
			break;
		case 'm':
			add(c->modules, &c->nmodules, 32, v);
			break;
		case 'w':
			c->workdir = v;
			break;
		case 'v':
			if ((v[0] != 'r' && v[0] != 'w') || v[1] != '/')
				die("%s: bad volume %s", CONF_PATH, v);
			add(c->volumes, &c->nvolumes, 16, v);
			break;
		case 'u':
			c->uid = number(v);
			break;
		case 'g':
			c->gid = number(v);
			break;
		case 'd':
			c->ndevices = number(v);
			break;
		case 'p':
			if (!strchr(v, '@'))
				die("%s: bad pmem disk %s", CONF_PATH, v);
			add(c->pmem, &c->npmem, 32, v);
			break;
		default:
			die("%s: unknown record '%c'", CONF_PATH, rec[0]);
		}
	}
	if (!c->argc)
		die("%s: no command", CONF_PATH);
}

/* In the order given: lib/vm put each module after what it depends on. */
static void load_modules(const struct conf *c)
{
	for (size_t i = 0; i < c->nmodules; i++) {
		int fd = open(c->modules[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("%s: %s", c->modules[i], strerror(errno));
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			die("load %s: %s", c->modules[i], strerror(errno));
		close(fd);
	}
}

/* The loaded modules' files: in the initramfs (a ramfs) they would keep
 * their pages, about 1 MiB of guest memory the host backs, for the
 * guest's life. */
static void drop_modules(const struct conf *c)
{
	for (size_t i = 0; i < c->nmodules; i++)
		unlink(c->modules[i]);
}

/* Free page reporting (virtio_balloon) hands the guest's free memory
 * back to the host in chunks of page_reporting_order, which the driver
 * sets to the pageblock order (2 MiB). A zone is reported only while its
 * free memory stays above its low watermark plus 32 chunks: ZONE_DMA
 * (16 MiB), which holds the compressed kernel the firmware loaded at
 * 1 MiB, never is at 2 MiB. 128 KiB chunks (order 5) pass there, and
 * give back the fragments slab leaves between its pages: 22 MiB less
 * host memory per idle guest (docs/DESIGN-vm.md). The flush starts 2 s
 * after the driver registers; this write comes first. Best effort: a
 * kernel without the parameter reports as it does. */
static void report_small_chunks(void)
{
	int fd = open("/sys/module/page_reporting/parameters/page_reporting_order",
		      O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "5\n", 2);
		close(fd);
	}
}

/* Devices appear as their drivers probe them, which may be after
 * finit_module returned: wait for the node, up to 10 s. */
static int open_wait(const char *path, int flags)
{
	struct timespec step = {0, 10000000L};
	for (int i = 0; i < 1000; i++) {
		int fd = open(path, flags | O_CLOEXEC);
		/* ENODEV, ENXIO: the node is there, its port not ready yet */
		if (fd >= 0 || (errno != ENOENT && errno != ENODEV && errno != ENXIO))
			return fd;
		nanosleep(&step, NULL);
	}
	return -1;
}

/* The device in sysfs class directory @dir whose attribute @attr reads
 * @want: its /dev node in @path. */
static bool find_by_attr(const char *dir, const char *attr, const char *want, char *path,
			 size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	while (d && !found && (e = readdir(d))) {
		char file[300], buf[64] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/%s", dir, e->d_name, attr);
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0 && (buf[n] = '\0', buf[strcspn(buf, "\n")] = '\0', !strcmp(buf, want))) {
			snprintf(path, len, "/dev/%s", e->d_name);
			found = true;
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* The virtio-serial port QEMU named @name (lib/vm/vm.c): its node is
 * /dev/vportNpM with N the virtio device's index, which depends on the
 * order of QEMU's devices; the name in sysfs does not. */
static bool find_port(const char *name, char *path, size_t len)
{
	return find_by_attr("/sys/class/virtio-ports", "name", name, path, len);
}

static const char *const port_name[NPORTS] = {
	[PORT_STDIN] = "anole.stdin", [PORT_STDOUT] = "anole.stdout",
	[PORT_STDERR] = "anole.stderr"};

static int open_port(int nr, int flags)
{
	char path[300] = "/dev/hvc0";
	struct timespec step = {0, 10000000L};
	for (int i = 0; nr != PORT_STATUS && !find_port(port_name[nr], path, sizeof(path)); i++) {
		if (i == 1000)
			die("no virtio-serial port named %s", port_name[nr]);
		nanosleep(&step, NULL);
	}
	int fd = open_wait(path, flags);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	return fd;
}

/* The disk whose virtio serial is @serial (lib/vm/vm.c names the image
 * anole.meta and its blobs anole.d0...): /dev/vdX letters follow the order
 * the devices are probed in, which QEMU's order does not fix. */
static bool find_disk(const char *serial, char *path, size_t len)
{
	return find_by_attr("/sys/block", "serial", serial, path, len);
}

/* The pmem disk of the virtio-pmem device at PCI address @pci: virtio-pmem
 * has no serial, and pmemN numbers follow probe order, but the device's
 * sysfs path (/sys/devices/pci0000:00/PCI/virtioN/ndbusN/...) names it. */
static bool find_pmem(const char *pci, char *path, size_t len)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	char want[64];
	bool found = false;
	snprintf(want, sizeof(want), "/%s/", pci);
	while (d && !found && (e = readdir(d))) {
		char link[600], target[1024];
		if (strncmp(e->d_name, "pmem", 4))
			continue;
		snprintf(link, sizeof(link), "/sys/block/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = '\0', strstr(target, want))) {
			snprintf(path, len, "/dev/%s", e->d_name);
			found = true;
		}
	}
	if (d)
		closedir(d);
	return found;
}

/* Disk @serial's PCI address when it is on virtio-pmem (a p:SERIAL@PCI
 * record), else NULL. */
static const char *pmem_pci(const struct conf *c, const char *serial)
{
	size_t n = strlen(serial);
	for (size_t i = 0; i < c->npmem; i++)
		if (!strncmp(c->pmem[i], serial, n) && c->pmem[i][n] == '@')
			return c->pmem[i] + n + 1;
	return NULL;
}

static bool find_any(const struct conf *c, const char *serial, char *path, size_t len)
{
	const char *pci = pmem_pci(c, serial);
	return pci ? find_pmem(pci, path, len) : find_disk(serial, path, len);
}

/* The disk named @serial, once its driver has probed it (up to 10 s). */
static void wait_disk(const struct conf *c, const char *serial, char *path, size_t len)
{
	struct timespec step = {0, 10000000L};
	for (int i = 0; !find_any(c, serial, path, len); i++) {
		if (i == 1000)
			die(pmem_pci(c, serial) ? "no virtio-pmem disk for %s" :
						  "no virtio disk with serial %s",
			    serial);
		nanosleep(&step, NULL);
	}
	int fd = open_wait(path, O_RDONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	close(fd);
}

/* The image read-only (its blobs as device=), a tmpfs upper layer, the
 * overlay of both as the container's root. */
static void mount_root(const struct conf *c)
{
	char opts[512] = "", meta[300], dev[300], serial[32];
	size_t len = 0;
	if (c->ndevices > 20)
		die("%lu data devices: at most 20", c->ndevices);
	wait_disk(c, "anole.meta", meta, sizeof(meta));
	for (unsigned long i = 0; i < c->ndevices; i++) {
		snprintf(serial, sizeof(serial), "anole.d%lu", i);
		wait_disk(c, serial, dev, sizeof(dev));
		len += (size_t)snprintf(opts + len, sizeof(opts) - len, "%sdevice=%s",
					len ? "," : "", dev);
	}
	/* every disk on pmem: uncompressed files read through DAX, from the
	 * host's page cache (EROFS takes one DAX choice for all its devices;
	 * compressed files go through the guest's page cache anyway) */
	if (c->npmem == c->ndevices + 1)
		snprintf(opts + len, sizeof(opts) - len, "%sdax=always", len ? "," : "");
	if (mkdir("/mnt", 0755) < 0 && errno != EEXIST)
		die("mkdir /mnt: %s", strerror(errno));
	mount_or_die(meta, "/mnt/lower", "erofs", MS_RDONLY, opts);
	mount_or_die("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755");
	if (mkdir("/mnt/rw/upper", 0755) < 0 || mkdir("/mnt/rw/work", 0700) < 0)
		die("mkdir in /mnt/rw: %s", strerror(errno));
	mount_or_die("overlay", ROOT, "overlay", 0,
		     "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work");
	mount_or_die("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_or_die("sysfs", ROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
		     NULL);
	mount_or_die("devtmpfs", ROOT "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL);
}

/* mkdir -p in the container's root (the overlay's upper layer takes it). */
static void mkdirs(char *path)
{
	for (char *p = path + strlen(ROOT) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		die("mkdir %s: %s", path, strerror(errno));
}

/* Volume N is the virtio-fs share tagged anole.vN (lib/vm/vm.c); its
 * record is MODE/DST, MODE r or w. Read-only here as well as on the host. */
static void mount_volumes(const struct conf *c)
{
	for (size_t i = 0; i < c->nvolumes; i++) {
		char dst[4096], tag[32];
		const char *v = c->volumes[i];
		size_t n = strlen(v);
		if (strstr(v, "/../") || (n >= 3 && !strcmp(v + n - 3, "/..")))
			die("volume %s: '..' in its path", v + 1);
		snprintf(dst, sizeof(dst), ROOT "%s", v + 1);
		snprintf(tag, sizeof(tag), "anole.v%zu", i);
		mkdirs(dst);
		if (mount(tag, dst, "virtiofs", v[0] == 'r' ? MS_RDONLY : 0, NULL) < 0)
			die("mount volume %s: %s", v + 1, strerror(errno));
	}
}

/* The container's process: its ports as stdin, stdout and stderr, the
 * overlay as its root, the configured user, directory and environment. */
static void __attribute__((noreturn)) child(const struct conf *c, const int ports[NPORTS])
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setsid();
	for (int i = 0; i < 3; i++)
		if (dup2(ports[PORT_STDIN + i], i) < 0)
			_exit(126);
	const char *wd = c->workdir && *c->workdir ? c->workdir : "/";
	if (chroot(ROOT) < 0 || chdir("/") < 0) {
		dprintf(2, "anole-vm-init: chroot: %s\n", strerror(errno));
		_exit(126);
	}
	if (chdir(wd) < 0) {
		dprintf(2, "anole-vm-init: workdir %s: %s\n", wd, strerror(errno));
		_exit(126);
	}
	if (setgroups(0, NULL) < 0 || setgid((gid_t)c->gid) < 0 || setuid((uid_t)c->uid) < 0) {
		dprintf(2, "anole-vm-init: user %lu:%lu: %s\n", c->uid, c->gid, strerror(errno));
		_exit(126);
	}
	/* execvp searches the PATH of environ: the container's */
	environ = (char **)c->env;
	execvp(c->argv[0], c->argv);
	int e = errno;
	dprintf(2, "anole-vm-init: %s: %s\n", c->argv[0], strerror(e));
	_exit(e == ENOENT ? 127 : 126);
}

/* "kill N" lines from the host (a signal anole got): N to the command,
 * as runc sends a stop to the container's process; how it ends is still
 * its own status. Partial lines wait in @buf. */
static void host_lines(pid_t pid, char *buf, size_t *len, size_t size)
{
	ssize_t n = read(status_fd, buf + *len, size - 1 - *len);
	if (n <= 0)
		return;
	*len += (size_t)n;
	buf[*len] = '\0';
	char *line = buf, *nl;
	while ((nl = strchr(line, '\n'))) {
		*nl = '\0';
		int sig;
		if (sscanf(line, "kill %d", &sig) == 1 && sig > 0 && sig < 65)
			kill(pid, sig);
		line = nl + 1;
	}
	*len = strlen(line);
	memmove(buf, line, *len + 1);
	if (*len == size - 1)
		*len = 0; /* no line this long comes from anole */
}

/* Reap every process (orphans come to PID 1) until the command ends;
 * meanwhile pass the host's signals on. SIGCHLD is blocked and read from
 * @sigfd so that one poll waits for both. */
static int wait_for(pid_t pid, int sigfd)
{
	char buf[128];
	size_t len = 0;
	bool host = true;
	for (;;) {
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0)
			if (p == pid)
				return st;
		if (p < 0 && errno != EINTR)
			die("wait: %s", strerror(errno));
		struct pollfd fds[2] = {{.fd = sigfd, .events = POLLIN},
					{.fd = host ? status_fd : -1, .events = POLLIN}};
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (fds[0].revents) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) < 0 && errno != EAGAIN)
				die("signalfd: %s", strerror(errno));
		}
		if (fds[1].revents & POLLIN)
			host_lines(pid, buf, &len, sizeof(buf));
		else if (fds[1].revents)
			host = false; /* the host end is gone: nothing more to read */
	}
}

/* The status console both ways: raw, so that the host's lines are not
 * echoed back into the status it reads, nor taken as terminal signals. */
static int open_status(void)
{
	int fd = open_port(PORT_STATUS, O_RDWR);
	struct termios t;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(fd, TCSANOW, &t);
	}
	return fd;
}

int main(void)
{
	if (getpid() != 1) {
		fprintf(stderr, "anole-vm-init: runs only as PID 1 of an anole guest\n");
		return 2;
	}
	static struct conf c;
	mount_or_die("proc", "/proc", "proc", 0, NULL);
	mount_or_die("sysfs", "/sys", "sysfs", 0, NULL);
	mount_or_die("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	parse_conf(&c);
	load_modules(&c);
	report_small_chunks();
	drop_modules(&c);
	int ports[NPORTS] = {-1, -1, -1, -1, -1};
	status_fd = ports[PORT_STATUS] = open_status();
	/* anole stops a guest that has not said this in time */
	dprintf(status_fd, "up\n");
	ports[PORT_STDIN] = open_port(PORT_STDIN, O_RDONLY);
	ports[PORT_STDOUT] = open_port(PORT_STDOUT, O_WRONLY);
	ports[PORT_STDERR] = open_port(PORT_STDERR, O_WRONLY);
	mount_root(&c);
	mount_volumes(&c);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		die("signalfd: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0)
		child(&c, ports);
	for (int i = PORT_STDIN; i <= PORT_STDERR; i++)
		close(ports[i]);
	int st = wait_for(pid, sigfd);
	if (WIFEXITED(st))
		dprintf(status_fd, "exit %d\n", WEXITSTATUS(st));
	else
		dprintf(status_fd, "signal %d\n", WTERMSIG(st));
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
