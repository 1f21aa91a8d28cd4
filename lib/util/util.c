/* SPDX-License-Identifier: Apache-2.0 */
#include "util.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

int anole_err_(struct anole_error *err, int code, const char *fmt, ...)
{
	if (code <= 0)
		code = EIO;
	if (err && !err->code) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

/* CRC32C (Castagnoli), reflected, table-driven. No Debian library offers
 * CRC32C to userspace; it only guards the superblock, so a table is plenty. */
static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc32c_table[i] = c;
	}
}

uint32_t anole_crc32c(uint32_t crc, const void *data, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const uint8_t *p = data;

	pthread_once(&once, crc32c_init);
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void *array_grow(void *v, size_t *cap, size_t need, size_t size, size_t first)
{
	if (need <= *cap)
		return v;
	size_t ncap = MAX(*cap ? *cap * 2 : first, need);
	if (ncap > SIZE_MAX / size)
		return NULL;
	void *nv = realloc(v, ncap * size);
	if (nv)
		*cap = ncap;
	return nv;
}

int strbuf_grow(struct strbuf *sb, size_t extra)
{
	if (sb->buf && sb->len + extra + 1 <= sb->cap)
		return 0;
	size_t cap = sb->cap ? sb->cap : 64;
	while (cap < sb->len + extra + 1)
		cap *= 2;
	char *n = realloc(sb->buf, cap);
	if (!n)
		return -ENOMEM;
	sb->buf = n;
	sb->cap = cap;
	return 0;
}

int strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
	int r = strbuf_grow(sb, len);
	if (r)
		return r;
	if (len)
		memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = 0;
	return 0;
}

int strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	int r = strbuf_grow(sb, (size_t)n);
	if (r)
		return r;
	va_start(ap, fmt);
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
	return 0;
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->buf);
	*sb = (struct strbuf){0};
}

const char *fmt_bytes(uint64_t n, char buf[static 32])
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	unsigned u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 32, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, 32, "%.1f %s", v, units[u]);
	return buf;
}

void escape_name(const char *in, size_t len, struct strbuf *out)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c < 0x20 || c == 0x7f || c == '\\')
			strbuf_addf(out, "\\x%02x", c);
		else
			strbuf_add(out, &in[i], 1);
	}
	if (!out->buf)
		strbuf_add(out, "", 0);
}

double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tmpfile_unnamed(const char *fallback_dir)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = fallback_dir;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	_cleanup_free_ char *path = NULL;
	if (asprintf(&path, "%s/anole-XXXXXX", dir) < 0)
		return -ENOMEM;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

int outfile_open(struct outfile *f, const char *path)
{
	*f = (struct outfile){.fd = -1};
	if (!*path)
		return -ENOENT;
	_cleanup_free_ char *dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = 0;
	else if (slash)
		*slash = 0;
	else
		memcpy(dir, ".", 2);
	f->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
	if (f->fd >= 0)
		return 0;
	/* a filesystem without O_TMPFILE: a visible temporary name */
	if (asprintf(&f->tmp_path, "%s.anole-tmp-XXXXXX", path) < 0) {
		f->tmp_path = NULL;
		return -ENOMEM;
	}
	f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
	if (f->fd < 0) {
		int e = errno;
		free(f->tmp_path);
		f->tmp_path = NULL;
		return -e;
	}
	fchmod(f->fd, 0644);
	return 0;
}

int outfile_commit(struct outfile *f, const char *path)
{
	if (f->tmp_path) {
		if (rename(f->tmp_path, path) < 0)
			return -errno;
		free(f->tmp_path);
		f->tmp_path = NULL;
		return 0;
	}
	/* link the anonymous file under a temporary name, then rename */
	char proc[64];
	_cleanup_free_ char *tmp = NULL;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
	for (int attempt = 0;; attempt++) {
		free(tmp);
		if (asprintf(&tmp, "%s.anole-tmp-%d-%d", path, (int)getpid(), attempt) < 0) {
			tmp = NULL;
			return -ENOMEM;
		}
		if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0)
			break;
		if (errno != EEXIST || attempt > 100)
			return -errno;
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

void outfile_close(struct outfile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp_path) {
		unlink(f->tmp_path);
		free(f->tmp_path);
	}
	*f = (struct outfile){.fd = -1};
}

static int outfile_write_mode(const char *path, const void *data, size_t len, mode_t mode)
{
	struct outfile f;
	int r = outfile_open(&f, path);
	if (r >= 0 && mode && fchmod(f.fd, mode) < 0)
		r = -errno;
	if (r >= 0)
		r = pwrite_full(f.fd, data, len, 0);
	if (r >= 0)
		r = outfile_commit(&f, path);
	outfile_close(&f);
	return r;
}

int outfile_write(const char *path, const void *data, size_t len)
{
	return outfile_write_mode(path, data, len, 0);
}

int outfile_write_private(const char *path, const void *data, size_t len)
{
	return outfile_write_mode(path, data, len, 0600);
}

void log_line(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
{
	if (!log)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log(ctx, line);
}

/* Each prefix ending before a '/' (and the whole path) in turn, so that
 * a parent made by someone else meanwhile is no failure. */
int mkdir_parents(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (!*path)
		return -ENOENT;
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *s = buf + 1;; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*s = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(buf, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
