/* SPDX-License-Identifier: Apache-2.0 */
/* Reader internals shared by check, extract and inspect. */
#ifndef ANOLE_READER_H
#define ANOLE_READER_H

#include "util/util.h"

int img_corrupt_(struct anole_image *img, uint64_t nid, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define img_corrupt(...) anole_negative(img_corrupt_(__VA_ARGS__))
struct anole_error *img_err(struct anole_image *img);
const char *img_path(const struct anole_image *img);
uint32_t img_blksz(const struct anole_image *img);
int img_meta_read(struct anole_image *img, uint64_t nid, uint64_t off, void *buf, size_t len);
/* Where the metadata space holding @pos ends (for bounds checks): the
 * image, or for positions with bit 63 the metabox inode's data. */
uint64_t img_meta_end(const struct anole_image *img, uint64_t pos);
/* The metabox inode: 1 and *ino when the image has one, else 0. */
int img_metabox_inode(struct anole_image *img, struct anole_inode *ino);
/* The file and offset holding data bytes [pa, pa+len) of the unified
 * address space (an error naming @nid when none has them all). */
int img_locate(struct anole_image *img, uint64_t nid, uint64_t pa, uint64_t len, int *fd,
	       uint64_t *off);
/* anole_map for an uncompressed file, and where its bytes from @off to
 * *run_end lie: *fd at *at, or *fd -1 when they are no file's bytes
 * (a hole, a tail in the metabox, a compressed file): read them with
 * anole_pread. */
int img_data_at(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
		uint64_t *run_end, int *fd, uint64_t *at);
/* Compressed files' state (erofs/zmap.h). */
struct zimage *img_zimage(const struct anole_image *img);

/* One directory's entries, "." and ".." included, in on-disk order. */
struct dent {
	uint64_t nid;
	uint8_t type;
	uint8_t len;
	char name[256]; /* NUL-terminated copy */
};
struct dent_list {
	struct dent *v;
	size_t n, cap;
};
uint8_t mode_to_ftype(uint32_t mode);
int read_dir_entries(struct anole_image *img, const struct anole_inode *dir, struct dent_list *out);

#endif
