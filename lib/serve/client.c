/* SPDX-License-Identifier: Apache-2.0 */
/* Talking to the daemon, and starting it when it is not there. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/paths.h"
#include "serve/serve.h"
#include "util/util.h"

/* One root directory into @dst: @a then @b; *@cut when it does not fit. */
static void root(char *dst, size_t size, bool *cut, const char *a, const char *b)
{
	int n = snprintf(dst, size, "%s%s", a, b);
	*cut |= n < 0 || (size_t)n >= size;
}

void serve_paths_init(struct serve_paths *p)
{
	p->cut = false;
	const char *rt = getenv("ANOLE_RUNTIME_DIR"), *cache = getenv("ANOLE_CACHE_DIR");
	if (geteuid() == 0 || (rt && *rt && cache && *cache)) {
		root(p->runtime, sizeof(p->runtime), &p->cut, rt && *rt ? rt : "/run/anole", "");
		root(p->cache, sizeof(p->cache), &p->cut,
		     cache && *cache ? cache : "/var/lib/anole/cache", "");
		return;
	}
	/* users: their own runtime and cache directories */
	const char *xrt = getenv("XDG_RUNTIME_DIR"), *xc = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char uid[16];
	snprintf(uid, sizeof(uid), "%u", (unsigned)geteuid());
	if (rt && *rt)
		root(p->runtime, sizeof(p->runtime), &p->cut, rt, "");
	else if (xrt && *xrt)
		root(p->runtime, sizeof(p->runtime), &p->cut, xrt, "/anole");
	else
		root(p->runtime, sizeof(p->runtime), &p->cut, "/tmp/anole-", uid);
	/* (without HOME, one of its own: a shared /tmp/.cache is anyone's) */
	if (cache && *cache)
		root(p->cache, sizeof(p->cache), &p->cut, cache, "");
	else if (xc && *xc)
		root(p->cache, sizeof(p->cache), &p->cut, xc, "/anole");
	else if (home && *home)
		root(p->cache, sizeof(p->cache), &p->cut, home, "/.cache/anole");
	else
		root(p->cache, sizeof(p->cache), &p->cut, "/tmp/anole-cache-", uid);
}

int serve_paths_whole(const struct serve_paths *p, struct anole_error *err)
{
	if (p->cut)
		return anole_err(err, ENAMETOOLONG,
				 "the runtime or cache directory (ANOLE_RUNTIME_DIR, ANOLE_CACHE_DIR, "
				 "XDG_RUNTIME_DIR, XDG_CACHE_HOME or HOME) is longer than the %zu "
				 "bytes anole takes",
				 sizeof(p->runtime) - 1);
	return 0;
}

static int connect_daemon(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* RUNTIME/daemon.log: appended to, ours, never through a symlink. */
static int open_log(const struct serve_files *f, struct anole_error *err)
{
	return serve_open_own(f->log, O_WRONLY | O_CREAT | O_APPEND, 0600, err);
}

/* The executable that runs `anole daemon`: this one, unless a program
 * other than anole (anole-snapshotter) names the anole beside it. */
static const char *daemon_exe = "/proc/self/exe";

void serve_set_daemon_exe(const char *path)
{
	daemon_exe = path;
}

/* `anole daemon`, detached, its output in RUNTIME/daemon.log; it says
 * on @status why it cannot start ("error MESSAGE" lines). */
static int spawn_daemon(const struct serve_paths *p, const struct serve_files *f, int status,
			struct anole_error *err)
{
	int r = serve_paths_check(p, true, err);
	if (r < 0)
		return r;
	_cleanup_close_ int log = open_log(f, err);
	if (log < 0)
		return log;
	char env[64];
	snprintf(env, sizeof(env), "%d", status);
	pid_t pid = fork();
	if (pid < 0)
		return anole_err(err, errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		setsid();
		if (fork() != 0)
			_exit(0);
		int in = open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 ||
		    fcntl(status, F_SETFD, 0) < 0 || setenv("ANOLE_DAEMON_STATUS_FD", env, 1) < 0)
			_exit(127);
		execl(daemon_exe, "anole", "daemon", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
	return 0;
}

/* What the daemon said on its status pipe: 1 when every writer closed
 * it (started, or gone), 0 while it is open. The first "error" line, if
 * any, is in @why; "busy" (another daemon runs) sets *busy. */
static int read_status(int fd, char *why, size_t size, bool *busy, struct strbuf *sb)
{
	char buf[1024];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (strbuf_add(sb, buf, (size_t)n) < 0)
			return 1;
	if (n < 0)
		return 0; /* EAGAIN: still open */
	strbuf_add(sb, "", 1);
	for (char *line = sb->buf, *end; line && *line; line = end ? end + 1 : NULL) {
		end = strchr(line, '\n');
		if (end)
			*end = 0;
		/* the first says why; the holder's giving up comes after */
		if (!strncmp(line, "error ", 6) && !*why)
			snprintf(why, size, "%s", line + 6);
		*busy |= !strncmp(line, "busy ", 5);
	}
	return 1;
}

static int start_and_connect(const struct serve_paths *p, const struct serve_files *f,
			     const struct sockaddr_un *sa, struct anole_error *err)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
		return anole_err(err, errno, "pipe: %s", strerror(errno));
	int r = spawn_daemon(p, f, pipefd[1], err);
	close(pipefd[1]);
	if (r < 0) {
		close(pipefd[0]);
		return r;
	}
	/* a new daemon listens within tens of milliseconds, and a container's
	 * start waits for it: look every 2 ms (a failed connect costs
	 * microseconds), then every 50. A daemon that cannot serve says why
	 * and closes the pipe; one that finds another running goes quietly,
	 * and that one is asked. */
	char why[600] = "";
	struct strbuf sb = {0};
	bool closed = false, busy = false;
	long after_close = 0;
	int fd = -ETIMEDOUT;
	for (long waited = 0, ms = 2; waited < 10000; waited += ms, ms = waited < 2000 ? 2 : 50) {
		if ((fd = connect_daemon(sa)) >= 0)
			break;
		if (!closed)
			closed = read_status(pipefd[0], why, sizeof(why), &busy, &sb);
		if (closed && *why)
			break;
		/* closed without a word: it listens by now, or never will */
		if (closed && !busy && (after_close += ms) > 1000)
			break;
		struct timespec ts = {0, ms * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	close(pipefd[0]);
	strbuf_release(&sb);
	if (fd >= 0)
		return fd;
	if (*why)
		return anole_err(err, EIO, "the anole daemon cannot start: %s", why);
	return anole_err(err, ETIMEDOUT, "the anole daemon did not start; see %s", f->log);
}

static int request_once(const char *request, bool start, char **reply, bool *unanswered,
			struct anole_error *err);

int serve_request(const char *request, bool start, char **reply, struct anole_error *err)
{
	bool unanswered = false;
	int r = request_once(request, start, reply, &unanswered, err);
	/* a daemon that was just ending: ask the next one */
	if (r < 0 && unanswered && start) {
		memset(err, 0, sizeof(*err));
		r = request_once(request, start, reply, &unanswered, err);
	}
	return r;
}

static int request_once(const char *request, bool start, char **reply, bool *unanswered,
			struct anole_error *err)
{
	struct serve_paths p;
	serve_paths_init(&p);
	_cleanup_serve_files_ struct serve_files f = {0};
	struct sockaddr_un sa;
	int fd = serve_paths_whole(&p, err);
	if (fd < 0 || (fd = serve_files_init(&f, &p, err)) < 0 ||
	    (fd = serve_socket_addr(f.sock, &sa, err)) < 0)
		return fd;
	/* a socket in a directory someone else controls could be anyone's */
	fd = serve_dir_check(p.runtime, false, err);
	if (fd == -ENOENT && !start) {
		memset(err, 0, sizeof(*err));
		return anole_err(err, ENOENT, "no anole daemon runs (%s)", f.sock);
	}
	if (fd < 0 && fd != -ENOENT)
		return fd;
	memset(err, 0, sizeof(*err));
	fd = connect_daemon(&sa);
	if (fd == -EACCES || fd == -EPERM)
		return anole_err(err, -fd, "%s: %s: the daemon there is not yours", f.sock,
				 strerror(-fd));
	if (fd < 0 && start)
		fd = start_and_connect(&p, &f, &sa, err);
	else if (fd < 0)
		return anole_err(err, ENOENT, "no anole daemon runs (%s)", f.sock);
	if (fd < 0)
		return fd;
	/* send, not write: a daemon gone mid-request is an error, not SIGPIPE */
	int r = 0;
	size_t len = strlen(request), off = 0;
	while (off <= len) {
		const char *chunk = off < len ? request + off : "\n";
		size_t n = off < len ? len - off : 1;
		ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = -errno;
			break;
		}
		off += (size_t)w;
	}
	struct strbuf in = {0};
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (strbuf_add(&in, buf, (size_t)n) < 0) {
			r = -ENOMEM;
			break;
		}
	}
	close(fd);
	if (r >= 0 && strbuf_add(&in, "", 1) < 0)
		r = -ENOMEM;
	if (r < 0 || in.len <= 1) {
		strbuf_release(&in);
		*unanswered = true;
		return anole_err(err, r < 0 ? -r : EPIPE,
				 "the anole daemon ended the request without an answer; see %s",
				 f.log);
	}
	*reply = in.buf;
	return 0;
}

int anole_daemon(struct anole_error *err)
{
	return serve_daemon(err);
}

int anole_daemon_request(const char *request, int start, char **reply, struct anole_error *err)
{
	return serve_request(request, start != 0, reply, err);
}
