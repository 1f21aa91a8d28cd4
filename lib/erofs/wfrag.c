/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fragments: small files and file tails packed together into the packed
 * inode, stored once when they repeat, grouped by name before the packed
 * inode is compressed.
 */
#include <sys/stat.h>

#include "erofs/writer.h"
#include "erofs/zpipe.h"
#include "erofs/cdc.h"
#include "util/digest.h"

/* Keys seen lately, by hash: a tree of many small files repeats names
 * ("__init__.py", "f000" in every directory of the million-file tree), and
 * one copy of each is enough. A fixed number of slots: a tree of unique
 * names costs no more than without it. */
#define KEY_CACHE 4096

/* The offset of "@ext\0@base\0" in frag_keys: where it is already, or
 * where it was added; -1 when out of memory. */
static int64_t frag_key(struct tree_writer *tw, const char *ext, const char *base)
{
	size_t el = strlen(ext) + 1, bl = strlen(base) + 1;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < el; i++)
		h = (h ^ (uint8_t)ext[i]) * 16777619u;
	for (size_t i = 0; i < bl; i++)
		h = (h ^ (uint8_t)base[i]) * 16777619u;
	if (!tw->key_cache && !(tw->key_cache = calloc(KEY_CACHE, sizeof(*tw->key_cache))))
		return -1;
	uint32_t *slot = &tw->key_cache[h & (KEY_CACHE - 1)];
	if (*slot) {
		const char *k = tw->frag_keys.buf + *slot - 1;
		if (!strcmp(k, ext) && !strcmp(k + el, base))
			return *slot - 1;
	}
	uint64_t off = tw->frag_keys.len;
	if (off >= UINT32_MAX || strbuf_add(&tw->frag_keys, ext, el) < 0 ||
	    strbuf_add(&tw->frag_keys, base, bl) < 0)
		return -1;
	*slot = (uint32_t)off + 1;
	return (int64_t)off;
}

static int remember_fragment(struct tree_writer *tw, uint32_t len, const char *path)
{
	if (tw->nfrags == tw->frag_cap) {
		size_t ncap = tw->frag_cap ? tw->frag_cap * 2 : 1024;
		struct frag_rec *n = ncap <= UINT32_MAX ? realloc(tw->frags, ncap * sizeof(*n)) : NULL;
		if (!n)
			return anole_err(tw->err, ENOMEM, "out of memory");
		tw->frags = n;
		tw->frag_cap = ncap;
	}
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	const char *ext = dot && dot != base ? dot + 1 : "";
	int64_t key = frag_key(tw, ext, base);
	if (key < 0)
		return anole_err(tw->err, ENOMEM, "out of memory (fragment keys)");
	tw->frags[tw->nfrags++] = (struct frag_rec){.len = len, .key = (uint32_t)key};
	return 0;
}

/* Orders record indexes by key, then by index (which is the order the
 * fragments were stored in): a total order, so any sort gives one result. */
static int cmp_frag_key(const void *a, const void *b, void *arg)
{
	const struct tree_writer *tw = arg;
	uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
	const char *keys = tw->frag_keys.buf;
	const char *kx = keys + tw->frags[i].key, *ky = keys + tw->frags[j].key;
	int c = strcmp(kx, ky);
	if (!c)
		c = strcmp(kx + strlen(kx) + 1, ky + strlen(ky) + 1);
	return c ? c : (i < j ? -1 : i > j);
}

/* Copy the fragments into a new file in the order of @perm; @off holds
 * where each is in frag_fd, and gets where it is in the new file. */
static int copy_fragments(struct tree_writer *tw, const uint32_t *perm, uint64_t *off)
{
	int fd = tmpfile_unnamed("/tmp");
	if (fd < 0)
		return anole_err(tw->err, -fd, "cannot create a fragment file: %s", strerror(-fd));
	uint64_t at = 0;
	for (size_t i = 0; i < tw->nfrags; i++) {
		uint32_t len = tw->frags[perm[i]].len;
		int r = pread_full(tw->frag_fd, tw->buf, len, off[perm[i]]);
		if (r >= 0)
			r = pwrite_full(fd, tw->buf, len, at);
		if (r < 0) {
			close(fd);
			return anole_err(tw->err, EIO, "fragment file: %s", strerror(-r));
		}
		off[perm[i]] = at;
		at += len;
	}
	close(tw->frag_fd);
	tw->frag_fd = fd;
	return 0;
}

/* Group fragments of like files (same extension, then same name: all the
 * "copyright" files, all the ".py" files) so that the packed inode's
 * pclusters compress better; then point every inode at its offset. Sorts
 * 4-byte indexes, not the records: qsort's scratch copy of the array is
 * the size of what it sorts. */
int tw_reorder_fragments(struct tree_writer *tw)
{
	size_t n = MAX(tw->nfrags, 1);
	_cleanup_free_ uint32_t *perm = malloc(n * sizeof(*perm));
	_cleanup_free_ uint64_t *off = malloc(n * sizeof(*off));
	if (!perm || !off)
		return anole_err(tw->err, ENOMEM, "out of memory");
	uint64_t at = 0;
	for (size_t i = 0; i < tw->nfrags; i++) {
		perm[i] = (uint32_t)i;
		off[i] = at;
		at += tw->frags[i].len;
	}
	int r;
	if (tw->nfrags > 1) {
		qsort_r(perm, tw->nfrags, sizeof(*perm), cmp_frag_key, tw);
		if ((r = copy_fragments(tw, perm, off)) < 0)
			return r;
	}
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		if (!ino->has_frag && ino->data_kind != TDATA_FRAG)
			continue;
		if (ino->frag_off >= tw->nfrags)
			return anole_err(tw->err, EINVAL, "internal error: lost fragment");
		ino->frag_off = off[ino->frag_off];
	}
	/* not needed again: free them before the packed inode's compression
	 * and the metadata layout need memory */
	free(tw->frags);
	tw->frags = NULL;
	tw->nfrags = tw->frag_cap = 0;
	strbuf_release(&tw->frag_keys);
	free(tw->key_cache);
	tw->key_cache = NULL;
	return 0;
}

/* Fragments this long are stored once however many files end in them
 * (copyright files, changelogs of packages built from one source), as
 * mkfs.erofs does with -Efragments. Shorter ones cost a map entry each for
 * little (a million tiny files) and compress well next to each other
 * anyway; --dedupe stores every repeat once. */
#define FRAG_DEDUPE_MIN 1024

/* Put @len bytes of @ino's end in the packed inode (or point at the same
 * bytes packed before). The pipeline calls this when it retires a job
 * whose extents stopped short of the file's end. */
int tw_pack_fragment(struct tree_writer *tw, struct tinode *ino, const void *data, size_t len,
		     const char *path)
{
	ino->has_frag = true;
	ino->frag_off = tw->nfrags; /* the record's index, see tw_reorder_fragments() */
	int found = 0;
	if (tw->frag_seen && (len >= FRAG_DEDUPE_MIN || tw->opts.dedupe)) {
		/* the same bytes already packed: point at them */
		struct digest d;
		sha256(data, len, &d);
		found = digest_map_get_or_put(tw->frag_seen, &d, &ino->frag_off);
		if (found < 0)
			return anole_err(tw->err, ENOMEM, "out of memory");
	}
	if (found) {
		tw->stats.dedupe_bytes += len;
		return 0;
	}
	int r = pwrite_full(tw->frag_fd, data, len, tw->frag_len);
	if (r < 0)
		return anole_err(tw->err, -r, "fragment file: %s", strerror(-r));
	if ((r = remember_fragment(tw, (uint32_t)len, path)) < 0)
		return r;
	tw->frag_len += len;
	tw->stats.fragment_bytes += len;
	return 0;
}

/* A file's last partial pcluster (all of it, when small) joins the packed
 * inode, where it is compressed together with its neighbours; the full
 * pclusters before it are compressed on their own. Where extents fill
 * their pcluster, the pipeline fills first and packs what is left. */
int tw_frag_add_file(struct tree_writer *tw, struct tinode *ino, int fd, const char *path)
{
	_cleanup_free_ uint64_t *cuts = NULL;
	size_t ncuts = 0;
	uint64_t head;
	if (!tw->cdc && zpipe_fills(tw->zp)) {
		/* tails are packed as jobs retire: small files too, in order */
		if (ino->size > tw->pcluster)
			return zpipe_file_packed_tail(tw->zp, ino, fd, path);
		return zpipe_file_fragment(tw->zp, ino, fd, path);
	}
	if (tw->cdc) {
		int r = cdc_cuts(fd, ino->size, &tw->cdcp, (uint8_t *)tw->buf, 1, &cuts, &ncuts, &head);
		if (r < 0)
			return anole_err(tw->err, -r, "%s: %s", path, strerror(-r));
	} else {
		head = ino->size - ino->size % tw->pcluster;
	}
	uint64_t tail = ino->size - head;
	if (tail) {
		int r = pread_full(fd, tw->buf, (size_t)tail, head);
		if (r < 0)
			return anole_err(tw->err, r == -ENODATA ? EIO : -r, "%s: %s at offset %llu",
					 path, r == -ENODATA ? "file shrank while being read"
							     : strerror(-r),
					 (unsigned long long)head);
		if ((r = tw_pack_fragment(tw, ino, tw->buf, (size_t)tail, path)) < 0)
			return r;
		tw_add_data_bytes(tw, tail);
	}
	if (!head) {
		ino->data_kind = TDATA_FRAG;
		return 0;
	}
	if (tw->cdc)
		return zpipe_file_cuts(tw->zp, ino, fd, cuts, ncuts, path);
	return zpipe_file_head(tw->zp, ino, fd, head, path);
}

/* The packed inode: a regular file outside the tree, compressed like any
 * other, whose bytes are the fragments. */
int tw_add_packed_inode(struct tree_writer *tw)
{
	struct tinode *p = tw_inode_new(tw);
	if (!p)
		return anole_err(tw->err, ENOMEM, "out of memory");
	p->mode = S_IFREG | 0400;
	p->size = tw->frag_len;
	p->mtime = tw->inodes[0]->mtime;
	p->mtime_nsec = tw->inodes[0]->mtime_nsec;
	int r = tw_register_inode(tw, p);
	if (r < 0)
		return anole_err(tw->err, -r, "out of memory");
	p->nlink = 1;
	tw->packed = p;
	tw->stats.data_bytes -= tw->frag_len; /* counted once, as fragments */
	return zpipe_file(tw->zp, p, tw->frag_fd, true, "packed inode");
}

