/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer: an EROFS image's bytes -> open, check (every inode, every
 * data byte, decompression included), then a walk of its own through
 * lookup, readdir, xattrs, readlink and reads at odd offsets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "anole/anole.h"
#include "fuzz.h"

#define MAX_WALK 2000 /* inodes visited by the walk, so an input stays fast */

struct walk {
	struct anole_image *img;
	unsigned visited;
	unsigned depth;
};

static int visit(struct walk *w, uint64_t nid);

static int on_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	(void)ctx, (void)name, (void)value, (void)size;
	return 0;
}

static int on_dirent(void *ctx, const char *name, size_t namelen, uint64_t nid, unsigned type)
{
	struct walk *w = ctx;
	(void)type;
	if ((namelen == 1 && name[0] == '.') || (namelen == 2 && !memcmp(name, "..", 2)))
		return 0;
	if (w->visited >= MAX_WALK || w->depth >= 32)
		return 1;
	w->depth++;
	visit(w, nid);
	w->depth--;
	return 0;
}

static int visit(struct walk *w, uint64_t nid)
{
	struct anole_inode ino;
	w->visited++;
	if (anole_inode_read(w->img, nid, &ino) < 0)
		return -1;
	anole_xattrs(w->img, &ino, on_xattr, NULL);
	char buf[4096];
	switch (ino.mode & 0170000) {
	case 0040000:
		return anole_readdir(w->img, &ino, on_dirent, w);
	case 0120000:
		return anole_readlink(w->img, &ino, buf, sizeof(buf));
	case 0100000: {
		uint64_t offs[] = {0, 1, 4095, ino.size / 2, ino.size ? ino.size - 1 : 0};
		for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
			anole_pread(w->img, &ino, buf, sizeof(buf), offs[i]);
		bool hole;
		uint64_t end;
		anole_map(w->img, &ino, 0, &hole, &end);
		return 0;
	}
	default:
		return 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[32];
	int fd = fuzz_memfd(data, size, path);
	if (fd < 0)
		return 0;
	struct anole_image *img = NULL;
	struct anole_error err = {0};
	if (anole_image_open(path, &img, &err) >= 0) {
		struct anole_check_stats st;
		anole_check(img, &st);
		anole_image_close(img);
	}
	img = NULL;
	if (anole_image_open(path, &img, &err) >= 0) {
		struct walk w = {.img = img};
		struct anole_inode root;
		if (anole_lookup(img, "/", &root) >= 0)
			visit(&w, root.nid);
		struct anole_inode ino;
		anole_lookup(img, "/usr/bin/../lib/./x", &ino);
		anole_image_close(img);
	}
	close(fd);
	return 0;
}
