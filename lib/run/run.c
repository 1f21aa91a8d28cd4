/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole run: a container from a lazy image. The image is mounted lazily
 * (through the daemon), a writable overlayfs goes on top (upper layer on
 * a tmpfs or a directory), an OCI runtime bundle is made from the
 * runtime's own default spec patched with the image's config and the
 * caller's options, and an existing OCI runtime (runc or crun) runs it.
 * Signals go to the runtime, its exit status comes back, and every mount
 * is undone however the run ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "anole/anole.h"
#include "registry/registry.h"
#include "serve/paths.h"
#include "serve/request.h"
#include "serve/serve.h"
#include "util/util.h"
#include "vm/vm.h"

struct run {
	const struct anole_run_options *o;
	struct anole_error *err;
	/* ROOT/run/ID and its parts, built to their length */
	char *dir, *lower, *rw, *rootfs, *bundle;
	char id[64];
	const char *runtime;
	bool lower_mounted, rw_mounted, rootfs_mounted, created;
};

/* Run a helper to its end, quietly; its exit status or -errno. */
static int run_quiet(char *const argv[], const char *cwd)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		if (cwd && chdir(cwd) < 0)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* crun 1.8 refuses hybrid cgroup hierarchies (cgroup v1 controllers plus
 * v2 at /sys/fs/cgroup/unified): prefer it only where it works. */
static const char *pick_runtime(const struct anole_run_options *o, struct anole_error *err,
				int *r)
{
	*r = 0;
	if (o->runtime) {
		char *argv[] = {(char *)o->runtime, "--version", NULL};
		if (run_quiet(argv, NULL) != 0)
			*r = anole_err(err, ENOENT, "OCI runtime '%s' does not run", o->runtime);
		return o->runtime;
	}
	struct stat st;
	bool hybrid = !stat("/sys/fs/cgroup/unified", &st) && S_ISDIR(st.st_mode);
	static const char *const candidates[] = {"crun", "runc"};
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
		if (hybrid && !strcmp(candidates[i], "crun"))
			continue;
		char *argv[] = {(char *)candidates[i], "--version", NULL};
		if (run_quiet(argv, NULL) == 0)
			return candidates[i];
	}
	*r = anole_err(err, ENOENT,
		       "no working OCI runtime: install runc (or crun on a cgroup v2 host), or "
		       "name one with --runtime");
	return NULL;
}

/* Decimal digits only, below 2^31 (no sign, no spaces, not empty). */
static bool number(const char *s, unsigned *v)
{
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
		return false;
	unsigned long long x = strtoull(s, NULL, 10);
	if (x >= (1ull << 31))
		return false;
	*v = (unsigned)x;
	return true;
}

/* "uid[:gid]" or names from the image's /etc/passwd and /etc/group. */
static int lookup_id(const char *rootfs, const char *file, const char *name, unsigned *id,
		     unsigned *gid)
{
	char *end;
	if (number(name, id))
		return 0;
	/* the image's file, resolved inside the image: a symlink in it must
	 * not lead to the host's files */
	char path[64], line[1024];
	snprintf(path, sizeof(path), "etc/%s", file);
	_cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	/* a regular file only (a device or fifo there would be the host's),
	 * and not endless */
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
			       .resolve = RESOLVE_IN_ROOT};
	int fd = root < 0 ? -1 : (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
	}
	_cleanup_fclose_ FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
	if (fd >= 0 && !f)
		close(fd);
	size_t n = strlen(name), seen = 0;
	while (f && seen < (4u << 20) && fgets(line, sizeof(line), f)) {
		seen += strlen(line);
		if (strncmp(line, name, n) || line[n] != ':')
			continue;
		char *p = strchr(line + n + 1, ':'); /* past the password */
		if (!p)
			break;
		end = strchr(p + 1, ':');
		if (!end)
			break;
		*end = 0;
		if (!number(p + 1, id))
			break;
		char *g = end + 1, *gend = strchr(g, ':');
		if (gid && gend) {
			*gend = 0;
			if (!number(g, gid))
				break;
		}
		return 0;
	}
	return -ENOENT;
}

/* USER[:GROUP], names or numbers, as the image at @rootfs has them. */
static int resolve_user(const char *rootfs, const char *ref, const char *user, unsigned *uid,
			unsigned *gid, struct anole_error *err)
{
	*uid = *gid = 0;
	if (user && *user) {
		char u[256];
		snprintf(u, sizeof(u), "%s", user);
		char *g = strchr(u, ':');
		if (g)
			*g++ = 0;
		if (lookup_id(rootfs, "passwd", u, uid, gid) < 0 ||
		    (g && lookup_id(rootfs, "group", g, gid, NULL) < 0))
			return anole_err(err, ENOENT, "%s: user '%s' is not in the image", ref, user);
	}
	return 0;
}

static json_t *strings(json_t *a)
{
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
		if (json_is_string(v))
			json_array_append(out, v);
	return out;
}

/* What the container's process is: the image's config and the options,
 * as docker run makes it. */
struct process_config {
	json_t *args, *env; /* arrays of strings */
	const char *cwd;    /* the image's or the option's, else "/" */
	unsigned uid, gid;
};

static int process_config(const struct anole_run_options *o, json_t *image, const char *rootfs,
			  struct process_config *pc, struct anole_error *err)
{
	*pc = (struct process_config){0};
	/* the command: Entrypoint + (the given command, else Cmd) */
	json_t *args = strings(json_object_get(image, "Entrypoint"));
	int ret = 0;
	if (o->argc) {
		for (size_t i = 0; i < o->argc && ret >= 0; i++) {
			json_t *a = json_string(o->argv[i]);
			if (!a)
				ret = anole_err(err, EINVAL, "argument %zu is not UTF-8 text", i + 1);
			json_array_append_new(args, a);
		}
	} else {
		json_t *cmd = strings(json_object_get(image, "Cmd"));
		json_array_extend(args, cmd);
		json_decref(cmd);
	}
	if (ret >= 0 && !json_array_size(args))
		ret = anole_err(err, EINVAL, "%s: the image names no command: give one", o->ref);
	if (ret < 0) {
		json_decref(args);
		return ret;
	}
	json_t *env = strings(json_object_get(image, "Env"));
	bool has_path = false;
	size_t i;
	json_t *v;
	json_array_foreach(env, i, v)
		has_path |= !strncmp(json_string_value(v), "PATH=", 5);
	if (!has_path)
		json_array_append_new(
			env, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	for (size_t k = 0; k < o->nenv && ret >= 0; k++) {
		json_t *e = json_string(o->env[k]);
		if (!e)
			ret = anole_err(err, EINVAL, "--env %zu is not UTF-8 text", k + 1);
		json_array_append_new(env, e);
	}
	const char *wd = o->workdir ? o->workdir : json_string_value(json_object_get(image, "WorkingDir"));
	pc->cwd = wd && *wd ? wd : "/";
	const char *user = o->user ? o->user : json_string_value(json_object_get(image, "User"));
	if (ret >= 0)
		ret = resolve_user(rootfs, o->ref, user, &pc->uid, &pc->gid, err);
	if (ret < 0) {
		json_decref(args);
		json_decref(env);
		return ret;
	}
	pc->args = args;
	pc->env = env;
	return 0;
}

#define SMC_LIB_IN "/run/anole/libanole-smc.so"
#define SMC_DIR_IN "/run/anole/smc"

/* Shared-memory sockets in the container: the library preloaded after any
 * the image preloads, and where its rendezvous directory is. */
static void smc_env(json_t *env)
{
	size_t i;
	json_t *v;
	json_array_foreach(env, i, v) {
		const char *old = json_string_value(v);
		if (!strncmp(old, "LD_PRELOAD=", 11)) {
			json_array_set_new(env, i, json_sprintf("%s%s" SMC_LIB_IN, old,
								old[11] ? " " : ""));
			break;
		}
	}
	if (i == json_array_size(env))
		json_array_append_new(env, json_string("LD_PRELOAD=" SMC_LIB_IN));
	json_array_append_new(env, json_string("ANOLE_SMC_DIR=" SMC_DIR_IN));
}

/* ... and bound into it: the library read-only, the rendezvous shared. */
static void smc_mounts(const struct anole_run_options *o, json_t *mounts)
{
	json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:[s,s]}", "destination", SMC_LIB_IN,
						"type", "bind", "source", o->smc_lib, "options",
						"bind", "ro"));
	json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:[s,s]}", "destination", SMC_DIR_IN,
						"type", "bind", "source", o->smc_dir, "options",
						"bind", "rw"));
}

/* The runtime's default spec, patched with the image and the options. */
static int make_bundle(struct run *r, json_t *image)
{
	const struct anole_run_options *o = r->o;
	char *spec[] = {(char *)r->runtime, "spec", NULL};
	int rc = run_quiet(spec, r->bundle);
	_cleanup_free_ char *path = serve_path(r->bundle, "config.json");
	if (!path)
		return anole_err(r->err, ENOMEM, "out of memory");
	json_error_t je;
	json_t *s = rc == 0 ? json_load_file(path, 0, &je) : NULL;
	if (!s)
		return anole_err(r->err, EIO, "%s spec: no usable default spec (exit %d)", r->runtime,
				 rc);
	json_t *process = json_object_get(s, "process");
	struct process_config pc;
	int ret = process_config(o, image, r->rootfs, &pc, r->err);
	if (ret < 0)
		goto out;
	json_object_set_new(process, "args", pc.args);
	if (o->smc_lib)
		smc_env(pc.env);
	json_object_set_new(process, "env", pc.env);
	json_object_set_new(process, "cwd", json_string(pc.cwd));
	json_object_set_new(process, "user", json_pack("{s:I,s:I}", "uid", (json_int_t)pc.uid,
						       "gid", (json_int_t)pc.gid));
	json_object_set_new(process, "terminal", json_boolean(isatty(0) && isatty(1)));
	/* a container as users expect from docker run: root's usual powers */
	/* ... less CAP_NET_RAW: raw sockets forge packets and sniff the
	 * namespace's traffic, and a ping needs no raw socket */
	json_t *caps = json_pack("[s,s,s,s,s,s,s,s,s,s,s,s,s]", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
				 "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_SETGID",
				 "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
				 "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
				 "CAP_AUDIT_WRITE");
	json_object_set_new(process, "capabilities",
			    json_pack("{s:O,s:O,s:O}", "bounding", caps, "effective", caps,
				      "permitted", caps));
	json_decref(caps);
	json_object_set_new(s, "root", json_pack("{s:s,s:b}", "path", r->rootfs, "readonly", 0));
	json_object_set_new(s, "hostname", json_string("anole"));
	json_t *mounts = json_object_get(s, "mounts");
	/* host networking needs the host's resolver */
	if (o->net_host)
		json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:[s,s]}", "destination",
							"/etc/resolv.conf", "type", "bind",
							"source", "/etc/resolv.conf", "options",
							"rbind", "ro"));
	if (o->smc_lib)
		smc_mounts(o, mounts);
	for (size_t k = 0; k < o->nvolumes; k++) {
		char vol[1200];
		snprintf(vol, sizeof(vol), "%s", o->volumes[k]);
		char *dst = strchr(vol, ':');
		char *mode = dst ? strchr(dst + 1, ':') : NULL;
		if (dst)
			*dst++ = 0;
		if (mode)
			*mode++ = 0;
		if (!dst || *vol != '/' || *dst != '/' || (mode && strcmp(mode, "ro") && strcmp(mode, "rw"))) {
			ret = anole_err(r->err, EINVAL, "--volume %s: expected /SRC:/DST[:ro]",
					o->volumes[k]);
			goto out;
		}
		/* "ro" alone would leave the mounts below SRC writable: "rro"
		 * makes the whole tree read-only (mount_setattr, AT_RECURSIVE) */
		json_t *opts = mode && !strcmp(mode, "ro") ? json_pack("[s,s,s]", "rbind", "ro", "rro")
							   : json_pack("[s,s]", "rbind", "rw");
		json_array_append_new(mounts, json_pack("{s:s,s:s,s:s,s:o}", "destination", dst,
							"type", "bind", "source", vol, "options",
							opts));
	}
	/* host network: no network namespace (the default spec has one,
	 * where the runtime brings up loopback only) */
	json_t *ns = json_object_get(json_object_get(s, "linux"), "namespaces");
	for (size_t i = json_array_size(ns); i-- > 0;)
		if (o->net_host &&
		    !strcmp(json_string_value(json_object_get(json_array_get(ns, i), "type")) ?: "",
			    "network"))
			json_array_remove(ns, i);
	if (json_dump_file(s, path, JSON_INDENT(1)) < 0)
		ret = anole_err(r->err, EIO, "%s: cannot write", path);
out:
	json_decref(s);
	return ret;
}

/* *answer (when wanted) gets the daemon's reply text. */
static int daemon_call(const struct ctl_request *req, struct anole_error *err, char **answer)
{
	char *text = ctl_request_encode(req), *reply = NULL;
	if (!text)
		return anole_err(err, ENOMEM, "out of memory");
	int r = serve_request(text, true, &reply, err);
	explicit_bzero(text, strlen(text)); /* a mount's holds credentials */
	free(text);
	if (r < 0)
		return r;
	json_error_t je;
	json_t *j = json_loads(reply, 0, &je);
	free(reply);
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (!j || msg)
		r = anole_err(err, EIO, "%s", msg ? msg : "the daemon's answer is not JSON");
	if (r >= 0 && answer && !(*answer = json_dumps(j, JSON_COMPACT)))
		r = anole_err(err, ENOMEM, "out of memory");
	json_decref(j);
	return r;
}

/* The config from the daemon's answer; from the registry if it has none
 * (a daemon of an older anole). */
static int image_config(struct run *r, const char *answer, json_t **cfg)
{
	json_t *a = json_loads(answer, 0, NULL);
	json_t *c = json_object_get(a, "config");
	if (json_is_object(c)) {
		*cfg = json_incref(c);
		json_decref(a);
		return 0;
	}
	json_decref(a);
	struct anole_lazy_info *li = NULL;
	int ret = anole_lazy_open(r->o->ref, r->o->tls_verify, &li, r->err);
	if (ret < 0)
		return ret;
	*cfg = json_loads(li->config_json ? li->config_json : "{}", 0, NULL);
	anole_lazy_free(li);
	return *cfg ? 0 : anole_err(r->err, EBADMSG, "%s: the image config is not JSON", r->o->ref);
}

static volatile pid_t child_pid;
static volatile sig_atomic_t signals_seen;

/* To the runtime, which passes it to the container. A container's init
 * ignores signals it has no handler for, so a second one kills it. */
static void forward(int sig)
{
	int saved = errno;
	signals_seen++;
	if (child_pid > 0)
		kill(child_pid, sig);
	errno = saved;
}

/* The container's root: an overlay of @upper (its upper/ and work/)
 * over the lazy mount. */
static int mount_rootfs(struct run *r, const char *upper)
{
	_cleanup_free_ char *up = serve_path(upper, "upper"), *work = serve_path(upper, "work");
	_cleanup_free_ char *data = NULL;
	if (!up || !work ||
	    asprintf(&data, "lowerdir=%s,upperdir=%s,workdir=%s", r->lower, up, work) < 0) {
		data = NULL;
		return anole_err(r->err, ENOMEM, "out of memory");
	}
	if ((mkdir(up, 0755) < 0 && errno != EEXIST) || (mkdir(work, 0755) < 0 && errno != EEXIST))
		return anole_err(r->err, errno, "%s: %s", upper, strerror(errno));
	if (strpbrk(r->lower, ",:\\") || strpbrk(up, ",:\\"))
		return anole_err(r->err, EINVAL, "%s: overlayfs paths may not hold ',' ':' or '\\'",
				 up);
	if (mount("overlay", r->rootfs, "overlay", 0, data) < 0)
		return anole_err(r->err, errno, "%s: overlay: %s", r->rootfs, strerror(errno));
	return 0;
}

static void run_paths_free(struct run *r)
{
	free(r->dir);
	free(r->lower);
	free(r->rw);
	free(r->rootfs);
	free(r->bundle);
}

static void cleanup(struct run *r)
{
	if (r->created) {
		char *del[] = {(char *)r->runtime, "delete", "-f", r->id, NULL};
		run_quiet(del, NULL);
	}
	if (r->rootfs_mounted && umount2(r->rootfs, 0) < 0)
		umount2(r->rootfs, MNT_DETACH);
	if (r->rw_mounted && umount2(r->rw, 0) < 0)
		umount2(r->rw, MNT_DETACH);
	if (r->lower_mounted) {
		struct anole_error e = {0};
		struct ctl_request req = {.op = CTL_UMOUNT, .mountpoint = r->lower};
		if (daemon_call(&req, &e, NULL) < 0)
			umount2(r->lower, MNT_DETACH);
	}
	/* (never into something still mounted) */
	if (r->dir) {
		char *rm[] = {"rm", "-rf", "--one-file-system", r->dir, NULL};
		run_quiet(rm, NULL);
	}
	run_paths_free(r);
}

/* The run's directory ROOT/run/ID and its four parts; -ENOMEM. */
static int run_paths(struct run *r, const char *root)
{
	_cleanup_free_ char *runs = serve_path(root, "run");
	r->dir = runs ? serve_path(runs, r->id) : NULL;
	if (!r->dir)
		return -ENOMEM;
	r->lower = serve_path(r->dir, "lower");
	r->rw = serve_path(r->dir, "rw");
	r->rootfs = serve_path(r->dir, "rootfs");
	r->bundle = serve_path(r->dir, "bundle");
	return r->lower && r->rw && r->rootfs && r->bundle ? 0 : -ENOMEM;
}

/* A blob file the daemon named: where it is, else where it went when it
 * became complete (renamed: the same file). */
static int open_blob(json_t *dev)
{
	const char *path = json_string_value(json_object_get(dev, "path"));
	const char *done = json_string_value(json_object_get(dev, "complete"));
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0 && done)
		fd = open(done, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* anole run --vm REF: the guest reads the lazy mount's own files, the
 * metadata image and each blob file as a read-only disk; a blob range not
 * here yet is fetched when QEMU reads it, through the pre-content events
 * of the daemon's marks as for any reader. User names are resolved in the
 * host's lazy mount of the same image, by the code anole run uses. */
static int run_in_vm(struct run *r, const char *answer, json_t *image, int *status)
{
	const struct anole_run_options *o = r->o;
	json_t *a = json_loads(answer, 0, NULL);
	json_t *files = json_object_get(a, "files");
	json_t *devs = json_object_get(files, "devices");
	const char *meta = json_string_value(json_object_get(files, "meta"));
	const char *path = json_string_value(json_object_get(files, "path"));
	struct process_config pc = {0};
	size_t n = json_array_size(devs);
	int *fds = calloc(MAX(n, 1), sizeof(*fds));
	const char **argv = NULL, **env = NULL;
	char user[32];
	int ret = 0;
	for (size_t i = 0; fds && i < n; i++)
		fds[i] = -1;
	if (!fds)
		ret = anole_err(r->err, ENOMEM, "out of memory");
	else if (!meta || !path)
		ret = anole_err(r->err, EPROTO, "%s: the daemon names no image files (an older "
						"anole daemon: stop it)", o->ref);
	else if (strcmp(path, "kernel"))
		/* through FUSE the blob files fill only as FUSE reads them */
		ret = anole_err(r->err, EOPNOTSUPP,
				"%s: the daemon serves it through FUSE (its cache's file system "
				"has no fanotify pre-content events): --vm needs the kernel path",
				o->ref);
	for (size_t i = 0; ret >= 0 && i < n; i++)
		if ((fds[i] = open_blob(json_array_get(devs, i))) < 0)
			ret = anole_err(r->err, -fds[i], "%s: blob %zu: %s", o->ref, i,
					strerror(-fds[i]));
	if (ret >= 0)
		ret = process_config(o, image, r->lower, &pc, r->err);
	size_t argc = json_array_size(pc.args), envc = json_array_size(pc.env);
	if (ret >= 0 && (!(argv = calloc(argc + 1, sizeof(*argv))) ||
			 !(env = calloc(envc + 1, sizeof(*env)))))
		ret = anole_err(r->err, ENOMEM, "out of memory");
	for (size_t i = 0; ret >= 0 && i < argc; i++)
		argv[i] = json_string_value(json_array_get(pc.args, i));
	for (size_t i = 0; ret >= 0 && i < envc; i++)
		env[i] = json_string_value(json_array_get(pc.env, i));
	snprintf(user, sizeof(user), "%u:%u", pc.uid, pc.gid);
	if (ret >= 0) {
		struct vm_options v = {.image = meta, .device_fds = fds, .ndevices = n,
				       .lazy = true, .argv = argv, .argc = argc, .env = env,
				       .nenv = envc, .workdir = pc.cwd, .user = user,
				       .volumes = o->volumes, .nvolumes = o->nvolumes,
				       .log = o->log, .log_ctx = o->log_ctx};
		ret = vm_run(&v, status, r->err);
	}
	for (size_t i = 0; fds && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	free(argv);
	free(env);
	json_decref(pc.args);
	json_decref(pc.env);
	json_decref(a);
	return ret;
}

int anole_run(const struct anole_run_options *o, int *status, struct anole_error *err)
{
	struct run r = {.o = o, .err = err};
	struct serve_paths p;
	serve_paths_init(&p);
	int ret = 0;
	r.runtime = o->vm ? NULL : pick_runtime(o, err, &ret);
	if (ret < 0)
		return ret;
	/* ours, not those of whoever started the daemon; a reference that
	 * holds a password is refused before it is shown anywhere */
	json_t *creds = NULL;
	if ((ret = registry_creds_for_ref(o->ref, &creds, err)) < 0)
		return ret;
	json_t *cfg = NULL, *image = NULL;
	_cleanup_free_ char *answer = NULL; /* the daemon's to our mount */

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(r.id, sizeof(r.id), "anole-%d-%lx", (int)getpid(), (unsigned long)ts.tv_nsec);
	_cleanup_free_ char *runs = serve_path(p.runtime, "run");
	if (!runs || run_paths(&r, p.runtime) < 0) {
		json_decref(creds);
		run_paths_free(&r);
		return anole_err(err, ENOMEM, "out of memory");
	}
	mkdir(p.runtime, 0700);
	mkdir(runs, 0700);
	if (mkdir(r.dir, 0700) < 0 || mkdir(r.lower, 0755) < 0 || mkdir(r.rw, 0755) < 0 ||
	    mkdir(r.rootfs, 0755) < 0 || mkdir(r.bundle, 0700) < 0) {
		ret = anole_err(err, errno, "%s: %s", r.dir, strerror(errno));
		json_decref(creds);
		cleanup(&r);
		goto out;
	}
	/* signals that would end us now end the run, and cleanup runs */
	signals_seen = 0;
	struct sigaction sa = {.sa_handler = forward}; /* no SA_RESTART: waitpid wakes */
	sigemptyset(&sa.sa_mask);
	struct sigaction old[4];
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);

	log_line(o->log, o->log_ctx, "mounting %s lazily", o->ref);
	/* recording starts from an empty cache: only then does every read show */
	const char *prefetch = o->record ? "none" : o->prefetch ? o->prefetch : "recorded";
	/* the program it will start (or the entrypoint): the daemon fetches
	 * what the loader reads to start it while the runtime starts */
	struct ctl_request mreq = {.op = CTL_MOUNT,
				   .ref = o->ref,
				   .mountpoint = r.lower,
				   .tls_verify = o->tls_verify,
				   .record = o->record,
				   .fuse = o->record,
				   .prefetch = prefetch,
				   .exec = o->argc ? o->argv[0] : "",
				   .no_load_hints = o->no_load_hints};
	ctl_request_credentials(&mreq, creds);
	ret = daemon_call(&mreq, err, &answer);
	json_decref(creds);
	r.lower_mounted = ret >= 0;
	/* the image's config comes with the mount: no second trip for it */
	if (ret >= 0)
		ret = image_config(&r, answer, &cfg);
	image = json_object_get(cfg, "imageConfig");
	const char *upper = o->upper ? o->upper : r.rw;
	if (ret >= 0 && o->vm) {
		/* interrupted while mounting: do not boot at all */
		if (signals_seen)
			ret = anole_err(err, EINTR, "%s: interrupted before the guest started", o->ref);
		else
			ret = run_in_vm(&r, answer, image, status);
		goto done;
	}
	if (ret >= 0 && !o->upper) {
		if (mount("tmpfs", r.rw, "tmpfs", 0, "mode=0755") < 0)
			ret = anole_err(err, errno, "%s: tmpfs: %s", r.rw, strerror(errno));
		r.rw_mounted = ret >= 0;
	}
	if (ret >= 0)
		ret = mount_rootfs(&r, upper);
	r.rootfs_mounted = ret >= 0;
	if (ret >= 0)
		ret = make_bundle(&r, image);
	/* interrupted while setting up: do not start it at all */
	if (ret >= 0 && signals_seen)
		ret = anole_err(err, EINTR, "%s: interrupted before the container started", o->ref);
	sigset_t block, saved_mask;
	sigemptyset(&block);
	for (size_t i = 0; i < 4; i++)
		sigaddset(&block, sigs[i]);
	if (ret >= 0) {
		log_line(o->log, o->log_ctx, "running it with %s", r.runtime);
		/* a signal between fork and child_pid would be lost: hold them */
		sigprocmask(SIG_BLOCK, &block, &saved_mask);
		pid_t pid = fork();
		if (pid == 0) {
			for (size_t i = 0; i < 4; i++)
				sigaction(sigs[i], &old[i], NULL);
			sigprocmask(SIG_SETMASK, &saved_mask, NULL);
			execlp(r.runtime, r.runtime, "run", "--bundle", r.bundle, r.id, (char *)NULL);
			fprintf(stderr, "anole: %s: %s\n", r.runtime, strerror(errno));
			_exit(127);
		}
		if (pid > 0)
			child_pid = pid;
		int fork_errno = errno;
		sigprocmask(SIG_SETMASK, &saved_mask, NULL);
		if (pid < 0) {
			ret = anole_err(err, fork_errno, "fork: %s", strerror(fork_errno));
		} else {
			r.created = true;
			int st = 0, w;
			bool killed = false;
			while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
				if (signals_seen >= 2 && !killed) {
					log_line(o->log, o->log_ctx, "second signal: killing the container");
					char *kill9[] = {(char *)r.runtime, "kill", r.id, "KILL", NULL};
					run_quiet(kill9, NULL);
					killed = true;
				}
			}
			child_pid = 0;
			if (w < 0)
				ret = anole_err(err, errno, "waiting for %s: %s", r.runtime,
						strerror(errno));
			else
				*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
	}
	if (ret >= 0 && o->record && o->trace)
		ret = daemon_call(&(struct ctl_request){.op = CTL_TRACE, .mountpoint = r.lower}, err,
				  o->trace);
done:
	cleanup(&r);
	for (size_t i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
out:
	json_decref(cfg);
	return ret;
}
