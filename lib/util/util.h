/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by the whole library: cleanup, errors, memory. */
#ifndef ANOLE_UTIL_H
#define ANOLE_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anole/anole.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ROUND_UP(x, a) ((((x) + (a) - 1) / (a)) * (a))
#define DIV_ROUND_UP(x, a) (((x) + (a) - 1) / (a))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Filesystems report corruption as EUCLEAN; so do we. */
#ifndef EFSCORRUPTED
#define EFSCORRUPTED EUCLEAN

/* How deep directories nest below the root: build makes no deeper tree
 * than check, extract and export walk. */
#define ANOLE_MAX_DEPTH 4096
#endif

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))
#define _cleanup_close_ __attribute__((cleanup(closep)))
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))

/* Record the first error in @err and return -code, so callers can write
 * `return anole_err(err, EINVAL, "...")`. Later errors never overwrite the
 * first: the first one names the real cause. */
int anole_err_(struct anole_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* @x, which is negative: told so, static analysers follow error paths as
 * the code does */
#define anole_negative(x)                                                                          \
	({                                                                                         \
		int anole_negative_r_ = (x);                                                       \
		if (anole_negative_r_ >= 0)                                                        \
			__builtin_unreachable();                                                   \
		anole_negative_r_;                                                                 \
	})
#define anole_err(...) anole_negative(anole_err_(__VA_ARGS__))

uint32_t anole_crc32c(uint32_t crc, const void *data, size_t len);

/* Read or write exactly len bytes at off; short transfers become errors. */
/* A progress line through a caller's log callback (none: nothing). */
void log_line(void (*log)(void *, const char *), void *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int pread_full(int fd, void *buf, size_t len, uint64_t off);
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int write_full(int fd, const void *buf, size_t len);

/* Room for @need elements of @size bytes in the array @v of *@cap: @v
 * itself when it has it, else @v grown to twice as many (@first when
 * empty), or to @need if that is more, *@cap updated. NULL when out of
 * memory (@v is kept as it was). */
void *array_grow(void *v, size_t *cap, size_t need, size_t size, size_t first);

/* A growable byte buffer. */
struct strbuf {
	char *buf;
	size_t len, cap;
};
int strbuf_grow(struct strbuf *sb, size_t extra);
int strbuf_add(struct strbuf *sb, const void *data, size_t len);
int strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_release(struct strbuf *sb);

/* Human-readable sizes and names with unprintable bytes escaped. */
const char *fmt_bytes(uint64_t n, char buf[static 32]);
void escape_name(const char *in, size_t len, struct strbuf *out);

/*
 * An output file that appears under its name only when committed: an
 * O_TMPFILE in the target's directory (or, where that is missing, a
 * visible temporary name), linked and renamed over the target at the end,
 * so readers see the old file or the whole new one. Functions return 0 or
 * -errno.
 */
struct outfile {
	int fd;
	char *tmp_path; /* the visible temporary name, when no O_TMPFILE */
};
/* Open (read-write, mode 0644) in the directory of @path. */
int outfile_open(struct outfile *f, const char *path);
/* Put the file under @path, replacing what is there. */
int outfile_commit(struct outfile *f, const char *path);
/* Close; an uncommitted file vanishes. */
void outfile_close(struct outfile *f);
/* The whole of @data as @path, in one atomic step. */
int outfile_write(const char *path, const void *data, size_t len);
/* The same for a secret: mode 0600 before the file has its name. */
int outfile_write_private(const char *path, const void *data, size_t len);

/* An unnamed scratch file in $TMPDIR, else @fallback_dir; -errno on
 * failure. */
int tmpfile_unnamed(const char *fallback_dir);

/* Monotonic seconds, for progress and summaries. */
double now_seconds(void);

/* mkdir -p: @path and every missing parent, each new one with @mode;
 * directories already there are fine, anything else in the way is
 * -ENOTDIR. 0 or -errno. */
int mkdir_parents(const char *path, mode_t mode);

#endif
