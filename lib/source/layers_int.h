/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer merge's internals (layers.c and the files beside it): the
 * merged tree's nodes, the current layer's files for hard links, and the
 * functions one part calls in another. Nothing outside lib/source/layers*.c
 * includes this; source.h is the interface.
 */
#ifndef ANOLE_SOURCE_LAYERS_INT_H
#define ANOLE_SOURCE_LAYERS_INT_H

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "source/source.h"
#include "util/dyn_archive.h"
#include "util/strmap.h"
#include "util/arena.h"

enum mkind { MK_DIR, MK_OTHER, MK_WHITEOUT, MK_DEAD };

struct mnode {
	struct mnode *parent, *first, *next; /* children, in arrival order */
	struct tinode *inode;                /* NULL for whiteouts */
	/* layers fit in 16 bits (layers_add() checks), so that a node with
	 * a name of up to 6 bytes takes 48 bytes of the arena, not 56 */
	uint16_t layer; /* the layer that put it here */
	uint16_t floor; /* dirs: layers below this add no children */
	uint16_t meta_floor; /* implied dirs: below this, metadata is of a
				deleted directory */
	uint8_t kind;
	bool explicit_dir : 1; /* a layer entry gave this dir its metadata */
	bool opaque : 1;       /* separate mode: gets trusted.overlay.opaque */
	bool ghost : 1;        /* a dir made only to hold whiteouts: not in the
				  image unless a real entry turns up in it */
	uint16_t namelen;
	char name[];
};

_Static_assert(sizeof(void *) != 8 || offsetof(struct mnode, name) <= 42, "struct mnode grew");

/* A file of the current layer, for hard links to find: one per entry,
 * so a million-file layer keeps it small (16 bytes, and its name in a
 * shared buffer after its directory's path, which files of one directory
 * share) and only hidden files get more. */
struct lfile {
	uintptr_t ref; /* its struct tinode, or a struct lhidden with the low bit set */
	uint64_t path; /* offset of its entry in files.paths, see remember_file() */
};

/* A hidden file: its data went to the scratch file, not the image. */
struct lhidden {
	struct tinode *inode;
	bool materialized; /* a visible link has since stored its data */
	uint64_t scratch_off;
	struct data_extent *ext; /* sparse: its data runs */
	size_t next;
};

/* path -> lfile: open addressing over indexes into @v (+1; 0 = free). */
struct files {
	uint32_t *slot;
	size_t cap;
	struct lfile *v;
	size_t n, vcap;
	struct strbuf paths;
	uint64_t last_dir; /* the directory path stored last, and its length */
	size_t last_dirlen;
};

struct layers {
	struct tree_writer *tw;
	struct anole_error *err;
	bool separate;
	struct mnode *root;
	struct mnode **tab; /* (parent, name) -> live node */
	size_t tabcap, tabcount;
	struct arena nodes; /* every node, freed at once */

	/* the layer being read */
	uint32_t layer;
	const char *what;
	struct blob_stream *bs;
	struct files files;
	struct strbuf path; /* normalized path of the current entry */
	struct strbuf ename; /* "LAYER: 'PATH'", see entry_name() */
	struct xattr_setbuf xs;
	int spool_fd;       /* one file's data, for the writer to read */
	int big_fd;         /* the same for files too big for memory */
	int scratch_fd;     /* data of hidden files hard links may need */
	uint64_t scratch_len;
	char *buf;
	struct layers_stats stats;
	struct dirmeta *dm; /* separate mode: directories of lower layers */
	const char *const *lower; /* separate mode: images of the layers below */
	size_t nlower;
	struct strmap *pend; /* target path -> struct pending: hard links into
				lower layers */
};

/* Links of a higher layer to a file a lower layer will bring. */
struct pending {
	char *path;
	char *first_link; /* for messages */
	uint32_t layer; /* of the links: the target comes from below it */
	bool resolved;
	struct mnode **links;
	size_t n, cap;
};

/* What a directory looked like in the layers below, for the directories a
 * layer implies without an entry of its own (parents of changed files):
 * stacked with overlayfs, the upper copy's metadata is what shows. */
struct dmeta {
	char *path;
	uint32_t mode, uid, gid, mtime_nsec;
	int64_t mtime;
	char *symlink; /* the path is a symlink to this, not a directory */
	bool gone;     /* a later layer deleted or replaced it */
	/* layer + 1 that last made it, and that last cut off what lower
	 * layers had under it: a record made before a cut above it is stale */
	uint32_t born, cut;
	struct strbuf xattrs; /* name\0, u16 size, value; repeated */
};

struct dirmeta {
	struct strmap *m; /* path -> struct dmeta */
};

#define SPOOL_MEM_MAX (64ull << 20)
/* A sparse entry's size is only a claim. 2^56 bytes is what the writer's
 * chunk maps cover (2^24 chunks of 4 GiB). */
#define MAX_FILE_SIZE (1ull << 56)
#define IO_BUF (1u << 20)


/* ---- the merged tree and lower directories (layers_tree.c) -------------- */

uint64_t lm_fnv1a_step(uint64_t h, const char *s, size_t len);
uint64_t lm_fnv1a(uint64_t h, const char *s, size_t len);
size_t lm_tab_find(const struct layers *l, const struct mnode *parent, const char *name,
		   size_t len, uint64_t h);
int lm_tab_grow(struct layers *l);
struct mnode *lm_lookup(struct layers *l, struct mnode *parent, const char *name, size_t len);
void lm_move_node(struct layers *l, struct mnode *c, struct mnode *dst);
struct tinode *lm_new_inode(struct layers *l);
void *lm_record(struct strmap *m, const char *key, size_t len, size_t size, bool create);
const char *lm_entry_name(struct layers *l, const char *path);
struct dmeta *dm_slot(struct dirmeta *dm, const char *path, size_t len, bool create);
bool dm_is_dir(const struct dmeta *d);
void dm_cut(struct layers *l, const char *path, size_t len);
const struct dmeta *dm_step(struct layers *l, size_t len, uint32_t *cutoff);
void dm_remember(struct layers *l, const struct tinode *ino);
void dm_other(struct layers *l, const struct tinode *ino);
void dm_gone(struct layers *l, const char *path, size_t len);
void dm_implied(struct layers *l, size_t len, const struct dmeta *d, struct tinode *ino);
struct mnode *lm_put_node(struct layers *l, struct mnode *parent, const char *name, size_t len,
			  enum mkind kind);
struct tinode *lm_implicit_dir_inode(struct layers *l);
struct mnode *lm_put_implicit_dir(struct layers *l, struct mnode *parent, const char *name,
				  size_t len, bool ghost);
void lm_unghost(struct mnode *n);
void lm_cut_below(struct layers *l, struct mnode *n, bool deleted);

/* ---- paths and placement (layers.c) ------------------------------------- */

/* Where an entry goes: VISIBLE; HIDDEN (a higher layer deleted or
 * replaced a directory on its way); CUT (a directory above it is opaque to
 * this layer: only a directory a higher layer implied can still take its
 * metadata from here). */
enum { VISIBLE = 0, HIDDEN = 1, CUT = 2 };

int lm_normalize(struct layers *l, const char *raw, struct strbuf *out);
int lm_place(struct layers *l, bool is_dir, const char *symlink, struct mnode **out,
	     bool *update);

/* ---- an entry's inode and data (layers_data.c) -------------------------- */

int lm_fill_inode(struct layers *l, struct archive_entry *e, struct tinode *ino);
int lm_spool_fd_for(struct layers *l, uint64_t size, int *fd);
int lm_sparse_runs(struct archive_entry *e, uint64_t size, struct data_extent **out,
		   size_t *n);
int lm_copy_entry_data(struct layers *l, struct archive *a, uint64_t size, int fd,
		       uint64_t base, bool sparse);
int lm_store_data(struct layers *l, struct archive *a, struct archive_entry *e,
		  struct tinode *ino);

/* ---- hard links (layers_links.c) ---------------------------------------- */

void lm_files_reset(struct layers *l);
int lm_remember_file(struct layers *l, struct tinode *ino, struct lhidden *hid);
int lm_remember_hidden(struct layers *l, struct tinode *ino, uint64_t scratch_off,
		       struct data_extent *ext, size_t next);
int lm_keep_hidden(struct layers *l, struct archive *a, struct archive_entry *e,
		   struct tinode *ino);
void lm_free_pending(void *v);
struct pending *lm_waiting_for(struct layers *l);
void lm_resolve_links(struct pending *p, struct tinode *ino);
int lm_hard_link(struct layers *l, const char *target_raw);

#endif
