/* SPDX-License-Identifier: Apache-2.0 */
/* What the fuzz targets share. */
#ifndef ANOLE_FUZZ_H
#define ANOLE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* The input as a file: a memfd holding it, *path = /proc/self/fd/N.
 * Returns the descriptor (the caller closes it) or -1. */
static inline int fuzz_memfd(const uint8_t *data, size_t size, char path[static 32])
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, 32, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
