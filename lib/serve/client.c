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

#include "serve/serve.h"
#include "util/util.h"

void serve_paths_init(struct serve_paths *p)
{
	const char *rt = getenv("ANOLE_RUNTIME_DIR"), *cache = getenv("ANOLE_CACHE_DIR");
	if (geteuid() == 0 || (rt && *rt && cache && *cache)) {
		snprintf(p->runtime, sizeof(p->runtime), "%s", rt && *rt ? rt : "/run/anole");
		snprintf(p->cache, sizeof(p->cache), "%s",
			 cache && *cache ? cache : "/var/lib/anole/cache");
		return;
	}
	/* users: their own runtime and cache directories */
	const char *xrt = getenv("XDG_RUNTIME_DIR"), *xc = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	if (rt && *rt)
		snprintf(p->runtime, sizeof(p->runtime), "%s", rt);
	else if (xrt && *xrt)
		snprintf(p->runtime, sizeof(p->runtime), "%s/anole", xrt);
	else
		snprintf(p->runtime, sizeof(p->runtime), "/tmp/anole-%u", (unsigned)geteuid());
	if (cache && *cache)
		snprintf(p->cache, sizeof(p->cache), "%s", cache);
	else if (xc && *xc)
		snprintf(p->cache, sizeof(p->cache), "%s/anole", xc);
	else
		snprintf(p->cache, sizeof(p->cache), "%s/.cache/anole", home && *home ? home : "/tmp");
}

static int connect_daemon(const struct serve_paths *p)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/daemon.sock", p->runtime) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* `anole daemon`, detached, its output in RUNTIME/daemon.log. */
static int spawn_daemon(const struct serve_paths *p, struct anole_error *err)
{
	if (mkdir(p->runtime, 0700) < 0 && errno != EEXIST)
		return anole_err(err, errno, "%s: %s", p->runtime, strerror(errno));
	char log[600];
	snprintf(log, sizeof(log), "%s/daemon.log", p->runtime);
	pid_t pid = fork();
	if (pid < 0)
		return anole_err(err, errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		setsid();
		if (fork() != 0)
			_exit(0);
		int in = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (in < 0 || out < 0)
			_exit(127);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		execl("/proc/self/exe", "anole", "daemon", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, NULL, 0);
	return 0;
}

static int start_and_connect(const struct serve_paths *p, struct anole_error *err)
{
	int r = spawn_daemon(p, err);
	if (r < 0)
		return r;
	/* a new daemon listens within tens of milliseconds, and a container's
	 * start waits for it: look every 2 ms (a failed connect costs
	 * microseconds), then every 50 */
	for (long waited = 0, ms = 2; waited < 10000; waited += ms, ms = waited < 2000 ? 2 : 50) {
		int fd = connect_daemon(p);
		if (fd >= 0)
			return fd;
		struct timespec ts = {0, ms * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return anole_err(err, ETIMEDOUT, "the anole daemon did not start; see %s/daemon.log",
			 p->runtime);
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
	int fd = connect_daemon(&p);
	if (fd < 0 && start)
		fd = start_and_connect(&p, err);
	else if (fd < 0)
		return anole_err(err, ENOENT, "no anole daemon runs (%s/daemon.sock)", p.runtime);
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
				 "the anole daemon ended the request without an answer; see "
				 "%s/daemon.log",
				 p.runtime);
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
