/* SPDX-License-Identifier: Apache-2.0 */
/* ELF load hints: the blob ranges the dynamic loader reads to start each
 * program of an image (docs/FORMAT.md). */
#ifndef ANOLE_LAZY_HINTS_H
#define ANOLE_LAZY_HINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anole/anole.h"

/* The load hints of the image @meta_path whose data blobs are @devices
 * (device table order; NULL: next to the image): JSON text (malloc'd) in
 * *json_out, with every file's path under "paths" when @with_paths. */
int load_hints_build(const char *meta_path, const char *const *devices, size_t ndevices,
		     bool with_paths, char **json_out, struct anole_error *err);



/* Parsed hints, checked against the image (what the daemon keeps). */
struct hint_span {
	uint32_t dev;
	uint64_t off, len;
};
struct hint_trigger {
	uint32_t dev;
	uint64_t off, len; /* a program's first extent */
	uint32_t prog;
};
struct load_hints {
	struct hint_span *spans;   /* every file's, one after another */
	uint32_t *file_start;      /* nfiles + 1 indices into spans */
	uint32_t *closure;         /* every program's files, one after another */
	uint32_t *prog_start;      /* nprogs + 1 indices into closure */
	struct hint_trigger *trig; /* sorted by (dev, off) */
	uint8_t *fired, *file_done;
	size_t nspans, nfiles, nclosure, nprogs;
};
/* Parse hints text (untrusted: it comes from the registry) for an image
 * whose data blobs have @dev_sizes. -EBADMSG and a reason in @why when
 * anything is out of place. */
int load_hints_parse(const char *text, size_t len, const uint64_t *dev_sizes, size_t ndevs,
		     struct load_hints **out, char *why, size_t why_size);
void load_hints_free(struct load_hints *h);
/* Where program @argv0 (a path, or a name looked up in @path_env as
 * execvp does; NULL: the usual PATH) of the image @meta_path begins in
 * its data blobs: that read starts it. -ENOENT when it is not there or
 * its first bytes are not in a data blob. Reads no data. */
int load_hints_program_at(const char *meta_path, const char *const *devices, size_t ndevices,
			  const char *argv0, const char *path_env, uint32_t *dev, uint64_t *off,
			  uint64_t *len);
#endif
