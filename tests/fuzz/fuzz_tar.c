/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: a layer's bytes (tar, maybe compressed: libarchive decides)
 * -> anole build, as from a container layer, then check of the image it
 * made. Exercises the tar reader, the layer rules (whiteouts, links,
 * parents) and the writer on whatever a registry could send.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "anole/anole.h"
#include "fuzz.h"

static char out[64];

static void remove_out(void)
{
	unlink(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!out[0]) {
		snprintf(out, sizeof(out), "/tmp/anole-fuzz-tar-%d.img", (int)getpid());
		atexit(remove_out);
	}
	char src[32];
	int fd = fuzz_memfd(data, size, src);
	if (fd < 0)
		return 0;
	struct anole_build_options o = {.compress = size & 1 ? "lz4" : NULL, .dedupe = size & 2};
	struct anole_build_stats st;
	struct anole_error err = {0};
	if (anole_build(src, out, &o, &st, &err) >= 0) {
		struct anole_image *img = NULL;
		if (anole_image_open(out, &img, &err) < 0)
			abort(); /* what we wrote must open */
		struct anole_check_stats cs;
		if (anole_check(img, &cs) < 0)
			abort(); /* and check clean */
		anole_image_close(img);
		unlink(out);
	} else if (getenv("ANOLE_FUZZ_VERBOSE")) {
		fprintf(stderr, "build: %s\n", err.msg);
	}
	close(fd);
	return 0;
}
