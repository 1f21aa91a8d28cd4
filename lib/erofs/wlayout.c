/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's layout: each inode's on-disk form (compact or extended,
 * data layout, inline tail), the late blocks of directories and long
 * symlinks, and nids (inodes packed into metadata blocks).
 */
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/writer.h"
#include "erofs/zindex.h"

/* Size in bytes of a directory's data: entries packed into blocks. */
static uint64_t dir_size(const struct dref *r, uint32_t n, uint32_t blksz)
{
	uint64_t blocks = 0;
	uint32_t used = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t need = sizeof(struct erofs_dirent) + r[i].len;
		if (!blocks || used + need > blksz) {
			blocks++;
			used = 0;
		}
		used += need;
	}
	return (blocks - 1) * blksz + used;
}

static bool fits_compact(const struct tinode *ino, const struct layout *l)
{
	uint64_t nlink = S_ISDIR(ino->mode) ? 2ull + ino->u.dir->nsubdirs : ino->nlink;
	return ino->uid <= UINT16_MAX && ino->gid <= UINT16_MAX && nlink <= UINT16_MAX &&
	       ino->size <= UINT32_MAX && ino->mtime_nsec == l->fixed_nsec &&
	       ino->mtime >= l->epoch && (uint64_t)(ino->mtime - l->epoch) <= UINT32_MAX;
}

/* Compact inodes store mtime as seconds after the superblock epoch with one
 * shared nanosecond value: choose the epoch and nanoseconds that let the
 * most inodes stay compact. */
void tw_choose_epoch(struct tree_writer *tw, struct layout *l)
{
	uint32_t cand = 0, votes = 0;
	for (size_t i = 0; i < tw->ninodes; i++) {
		uint32_t ns = tw->inodes[i]->mtime_nsec;
		if (!votes) {
			cand = ns;
			votes = 1;
		} else {
			votes += ns == cand ? 1 : -1u;
		}
	}
	size_t count = 0;
	for (size_t i = 0; i < tw->ninodes; i++)
		count += tw->inodes[i]->mtime_nsec == cand;
	l->fixed_nsec = count * 2 > tw->ninodes ? cand : 0;
	l->epoch = INT64_MAX;
	for (size_t i = 0; i < tw->ninodes; i++)
		if (tw->inodes[i]->mtime_nsec == l->fixed_nsec && tw->inodes[i]->mtime < l->epoch)
			l->epoch = tw->inodes[i]->mtime;
	if (l->epoch == INT64_MAX || l->epoch < 0)
		l->epoch = 0;
}

static int layout_inode(struct tree_writer *tw, struct tinode *ino, struct layout *l)
{
	struct tplace *p = tw_place(tw, ino);
	uint32_t ibody;
	xattr_set_ibody(tw->xt, ino->xattr_set, &ibody);
	if (ibody > erofs_xattr_ibody_size(UINT16_MAX)) {
		struct strbuf path = {0};
		tw_inode_path(tw, ino, &path);
		int r = anole_err(tw->err, E2BIG, "%s: extended attributes too large (%u bytes)",
				  path.buf, ibody);
		strbuf_release(&path);
		return r;
	}
	p->xattr_icount = ibody ? (uint16_t)((ibody - 12) / 4 + 1) : 0;

	uint64_t tail = 0, late_blocks = 0;
	uint32_t extra = 0;
	if (S_ISDIR(ino->mode)) {
		uint32_t n;
		_cleanup_free_ struct dref *r = tw_dir_refs(tw, ino, &n);
		if (!r)
			return anole_err(tw->err, ENOMEM, "out of memory");
		ino->size = dir_size(r, n, tw->blksz);
		tail = ino->size & (tw->blksz - 1);
		late_blocks = ino->size >> tw->blkbits;
	} else if (S_ISLNK(ino->mode)) {
		tail = ino->size;
	}
	p->extended = !fits_compact(ino, l);
	uint32_t core = p->extended ? sizeof(struct erofs_inode_extended)
				      : sizeof(struct erofs_inode_compact);

	if (S_ISDIR(ino->mode) || S_ISLNK(ino->mode)) {
		if (tail && core + ibody + tail <= tw->blksz) {
			p->layout = EROFS_INODE_FLAT_INLINE;
			ino->inline_tail = true;
			ino->tail_len = (uint32_t)tail;
			extra = (uint32_t)tail;
		} else {
			p->layout = EROFS_INODE_FLAT_PLAIN;
			ino->inline_tail = false;
			late_blocks = DIV_ROUND_UP(ino->size, tw->blksz);
		}
		ino->startblk = late_blocks ? l->late_blk : 0;
		l->late_blk += late_blocks;
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_CHUNKS) {
		p->layout = EROFS_INODE_CHUNK_BASED;
		extra = ino->nchunks * 4;
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_FRAG) {
		p->layout = EROFS_INODE_COMPRESSED_FULL;
		uint32_t end = core + ibody;
		extra = (uint32_t)(ROUND_UP_8(end) - end) + sizeof(struct z_erofs_map_header);
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_Z &&
		   ino->zcompact && (!ino->has_frag || tw->frag_len <= UINT32_MAX)) {
		/* compact indexes: half the size of full ones */
		p->layout = EROFS_INODE_COMPRESSED_COMPACT;
		uint32_t end = core + ibody;
		extra = (uint32_t)(ROUND_UP_8(end) - end + sizeof(struct z_erofs_map_header) +
				   zindex_compact4_size(ino->nchunks));
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_Z) {
		p->layout = EROFS_INODE_COMPRESSED_FULL;
		uint32_t end = core + ibody;
		extra = (uint32_t)(Z_EROFS_FULL_INDEX_START(end) - end) +
			ino->nchunks * (uint32_t)sizeof(struct z_erofs_lcluster_index);
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_FLAT && ino->inline_tail) {
		p->layout = EROFS_INODE_FLAT_INLINE;
		extra = ino->tail_len;
	} else {
		p->layout = EROFS_INODE_FLAT_PLAIN;
	}
	p->meta_size = core + ibody + extra;
	if (p->extended)
		tw->stats.extended_inodes++;
	else
		tw->stats.compact_inodes++;
	return 0;
}

/* Every inode's form, in creation order: late blocks are handed out in
 * that order. Also counts them by type for the summary. */
int tw_layout(struct tree_writer *tw, struct layout *l, uint32_t *incompat)
{
	free(tw->place);
	tw->place = calloc(MAX(tw->ninodes, 1), sizeof(*tw->place));
	if (!tw->place)
		return anole_err(tw->err, ENOMEM, "out of memory");
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		int r = layout_inode(tw, ino, l);
		if (r < 0)
			return r;
		uint8_t layout = tw->place[i].layout;
		if (layout == EROFS_INODE_CHUNK_BASED)
			*incompat |= EROFS_INCOMPAT_CHUNKED_FILE;
		if (layout == EROFS_INODE_COMPRESSED_FULL || layout == EROFS_INODE_COMPRESSED_COMPACT)
			*incompat |= EROFS_INCOMPAT_ZERO_PADDING | EROFS_INCOMPAT_COMPR_CFGS;
		if (ino == tw->packed)
			continue;
		if (S_ISDIR(ino->mode))
			tw->stats.dirs++;
		else if (S_ISREG(ino->mode))
			tw->stats.regular++;
		else if (S_ISLNK(ino->mode))
			tw->stats.symlinks++;
		else
			tw->stats.special++;
	}
	return 0;
}

/* Orders inode indexes by nid (no two are equal). */
static int cmp_nid(const void *x, const void *y, void *arg)
{
	const struct tplace *place = arg;
	uint64_t a = place[*(const uint32_t *)x].nid, b = place[*(const uint32_t *)y].nid;
	return a < b ? -1 : a > b;
}

/* Assign nids: first fit over a few partly filled blocks, so that inodes
 * with inline tails waste little space while none crosses a block. */
int tw_place_inodes(struct tree_writer *tw, uint32_t **order, uint64_t *meta_blocks)
{
	/* register_inode() numbers inodes in 32 bits: their indexes fit too */
	uint32_t *o = malloc(MAX(tw->ninodes, 1) * sizeof(*o));
	if (!o)
		return anole_err(tw->err, ENOMEM, "out of memory");
	struct {
		uint64_t blk;
		uint32_t used;
	} open[OPEN_META_BLOCKS];
	/* nid 0 is never used: the kernel reports nids as inode numbers, and
	 * readdir(3) hides entries whose inode number is 0. */
	unsigned int nopen = 1;
	uint64_t fresh = 1;
	open[0].blk = 0;
	open[0].used = 1u << EROFS_ISLOT_BITS;

	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tplace *p = &tw->place[i];
		uint32_t size = ROUND_UP(p->meta_size, 1u << EROFS_ISLOT_BITS);
		uint64_t pos;
		if (size > tw->blksz) {
			pos = fresh << tw->blkbits;
			fresh += DIV_ROUND_UP(size, tw->blksz);
		} else {
			unsigned int k;
			for (k = 0; k < nopen; k++)
				if (tw->blksz - open[k].used >= size)
					break;
			if (k == nopen) {
				if (nopen == OPEN_META_BLOCKS) {
					/* retire the fullest block */
					unsigned int full = 0;
					for (unsigned int j = 1; j < nopen; j++)
						if (open[j].used > open[full].used)
							full = j;
					open[full] = open[--nopen];
				}
				open[nopen].blk = fresh++;
				open[nopen].used = 0;
				k = nopen++;
			}
			pos = (open[k].blk << tw->blkbits) + open[k].used;
			open[k].used += size;
			if (open[k].used == tw->blksz)
				open[k] = open[--nopen];
		}
		p->nid = pos >> EROFS_ISLOT_BITS;
		o[i] = (uint32_t)i;
	}
	if (tw->place[0].nid > UINT16_MAX) {
		free(o);
		return anole_err(tw->err, EFBIG, "root nid does not fit the superblock");
	}
	*meta_blocks = fresh;
	qsort_r(o, tw->ninodes, sizeof(*o), cmp_nid, tw->place);
	*order = o;
	return 0;
}

