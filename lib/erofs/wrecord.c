/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's records: inodes with their xattrs, inline data, chunk
 * maps and compression indexes, directory blocks, long symlinks, and the
 * superblock.
 */
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "erofs/writer.h"
#include "erofs/zpipe.h"
#include "erofs/zindex.h"

uint8_t mode_to_ftype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return EROFS_FT_REG_FILE;
	case S_IFDIR: return EROFS_FT_DIR;
	case S_IFCHR: return EROFS_FT_CHRDEV;
	case S_IFBLK: return EROFS_FT_BLKDEV;
	case S_IFIFO: return EROFS_FT_FIFO;
	case S_IFSOCK: return EROFS_FT_SOCK;
	case S_IFLNK: return EROFS_FT_SYMLINK;
	}
	return EROFS_FT_UNKNOWN;
}

struct seqbuf {
	struct tree_writer *tw;
	uint64_t base; /* image offset of buf[0] */
	size_t len;
	char *buf;
};

static int seq_flush(struct seqbuf *s)
{
	int r = pwrite_full(s->tw->out.fd, s->buf, s->len, s->base);
	if (r < 0)
		return anole_err(s->tw->err, -r, "%s: cannot write image: %s", s->tw->image_path,
				 strerror(-r));
	s->base += s->len;
	s->len = 0;
	return 0;
}

static int seq_put(struct seqbuf *s, uint64_t pos, const void *data, size_t len)
{
	if (pos < s->base + s->len)
		return anole_err(s->tw->err, EINVAL, "internal error: metadata overlap");
	while (s->base + s->len < pos) {
		size_t gap = (size_t)MIN(pos - s->base - s->len, (uint64_t)(COPY_BUF - s->len));
		memset(s->buf + s->len, 0, gap);
		s->len += gap;
		if (s->len == COPY_BUF) {
			int r = seq_flush(s);
			if (r < 0)
				return r;
		}
	}
	const char *p = data;
	while (len) {
		size_t n = MIN(len, COPY_BUF - s->len);
		memcpy(s->buf + s->len, p, n);
		s->len += n;
		p += n;
		len -= n;
		if (s->len == COPY_BUF) {
			int r = seq_flush(s);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static uint32_t encode_rdev(uint32_t rdev)
{
	unsigned int maj = major(rdev), min = minor(rdev);
	return (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12);
}

/* Directory data: entries packed into blocks, names after each block's
 * dirents, names never crossing a block. */
static int dir_data(struct tree_writer *tw, struct tinode *ino, struct strbuf *out)
{
	uint32_t n;
	_cleanup_free_ struct dref *r = tw_dir_refs(tw, ino, &n);
	if (!r || strbuf_grow(out, ROUND_UP(ino->size, tw->blksz)) < 0)
		return anole_err(tw->err, ENOMEM, "out of memory");
	out->len = 0;
	for (uint32_t i = 0; i < n;) {
		uint32_t used = 0, k = i;
		while (k < n && used + sizeof(struct erofs_dirent) + r[k].len <= tw->blksz)
			used += sizeof(struct erofs_dirent) + r[k++].len;
		char *blk = out->buf + out->len;
		memset(blk, 0, tw->blksz);
		uint32_t nameoff = (k - i) * sizeof(struct erofs_dirent);
		for (uint32_t j = i; j < k; j++) {
			struct erofs_dirent de = {
				.nid = tw_place(tw, r[j].inode)->nid,
				.nameoff = (uint16_t)nameoff,
				.file_type = mode_to_ftype(r[j].inode->mode),
			};
			memcpy(blk + (j - i) * sizeof(de), &de, sizeof(de));
			memcpy(blk + nameoff, r[j].name, r[j].len);
			nameoff += r[j].len;
		}
		out->len += k < n ? tw->blksz : used;
		i = k;
	}
	return 0;
}

static int write_inode(struct tree_writer *tw, struct seqbuf *s, uint64_t pos, struct tinode *ino,
		       const struct layout *l, struct strbuf *scratch)
{
	const struct tplace *p = tw_place(tw, ino);
	char core[64] = {0};
	uint32_t nlink = S_ISDIR(ino->mode) ? 2 + ino->u.dir->nsubdirs : ino->nlink;
	uint32_t iu = 0;
	uint16_t fmt = (uint16_t)((p->extended ? 1 : 0) | (p->layout << EROFS_I_DATALAYOUT_SHIFT));
	const void *tail = NULL;
	int r;

	if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode))
		iu = encode_rdev(ino->rdev);
	else if (p->layout == EROFS_INODE_CHUNK_BASED)
		iu = ino->chunkbits;
	else if (p->layout == EROFS_INODE_COMPRESSED_FULL ||
		 p->layout == EROFS_INODE_COMPRESSED_COMPACT)
		iu = ino->data_kind == TDATA_FRAG ? 0 : ino->zblocks;
	else
		iu = (uint32_t)ino->startblk;

	if (p->extended) {
		struct erofs_inode_extended *e = (void *)core;
		e->i_format = fmt;
		e->i_xattr_icount = p->xattr_icount;
		e->i_mode = (uint16_t)ino->mode;
		e->i_size = ino->size;
		e->i_u = iu;
		e->i_ino = ino->ino;
		e->i_uid = ino->uid;
		e->i_gid = ino->gid;
		e->i_mtime = (uint64_t)ino->mtime;
		e->i_mtime_nsec = ino->mtime_nsec;
		e->i_nlink = nlink;
	} else {
		struct erofs_inode_compact *c = (void *)core;
		c->i_format = fmt;
		c->i_xattr_icount = p->xattr_icount;
		c->i_mode = (uint16_t)ino->mode;
		c->i_nlink = (uint16_t)nlink;
		c->i_size = (uint32_t)ino->size;
		c->i_mtime = (uint32_t)(ino->mtime - l->epoch);
		c->i_u = iu;
		c->i_ino = ino->ino;
		c->i_uid = (uint16_t)ino->uid;
		c->i_gid = (uint16_t)ino->gid;
	}
	uint32_t csize = p->extended ? 64 : 32, ibody;
	r = seq_put(s, pos, core, csize);
	if (r < 0)
		return r;
	const void *xb = xattr_set_ibody(tw->xt, ino->xattr_set, &ibody);
	if (ibody && (r = seq_put(s, pos + csize, xb, ibody)) < 0)
		return r;
	uint64_t at = pos + csize + ibody;

	if (S_ISDIR(ino->mode)) {
		if ((r = dir_data(tw, ino, scratch)) < 0)
			return r;
		uint64_t full = ino->inline_tail ? ino->size >> tw->blkbits
						 : DIV_ROUND_UP(ino->size, tw->blksz);
		if (full) {
			/* pad the last block with zeros: the kernel reads whole blocks */
			if (strbuf_grow(scratch, tw->blksz) < 0)
				return anole_err(tw->err, ENOMEM, "out of memory");
			memset(scratch->buf + scratch->len, 0,
			       (size_t)((full << tw->blkbits) - MIN(scratch->len, full << tw->blkbits)));
			r = pwrite_full(tw->out.fd, scratch->buf, (size_t)(full << tw->blkbits),
					ino->startblk << tw->blkbits);
			if (r < 0)
				return anole_err(tw->err, -r, "%s: cannot write image: %s",
						 tw->image_path, strerror(-r));
		}
		if (ino->inline_tail)
			tail = scratch->buf + (full << tw->blkbits);
	} else if (S_ISLNK(ino->mode)) {
		if (ino->inline_tail) {
			tail = ino->u.symlink;
		} else {
			memset(tw->buf, 0, ROUND_UP(ino->size, tw->blksz));
			memcpy(tw->buf, ino->u.symlink, ino->size);
			r = pwrite_full(tw->out.fd, tw->buf, ROUND_UP(ino->size, tw->blksz),
					ino->startblk << tw->blkbits);
			if (r < 0)
				return anole_err(tw->err, -r, "%s: cannot write image: %s",
						 tw->image_path, strerror(-r));
		}
	} else if (p->layout == EROFS_INODE_COMPRESSED_FULL && ino->data_kind == TDATA_FRAG) {
		/* the whole file is a fragment: the 8-byte header is its offset
		 * in the packed inode, with the top bit set */
		uint64_t h = ino->frag_off | (1ull << 63);
		return seq_put(s, pos + ROUND_UP_8(csize + ibody), &h, sizeof(h));
	} else if (p->layout == EROFS_INODE_COMPRESSED_FULL ||
		   p->layout == EROFS_INODE_COMPRESSED_COMPACT) {
		bool compact = p->layout == EROFS_INODE_COMPRESSED_COMPACT;
		struct z_erofs_map_header h = {
			/* compact indexes need both big-pcluster bits alike */
			.h_advise = (uint16_t)(Z_EROFS_ADVISE_BIG_PCLUSTER_1 |
					       (compact ? Z_EROFS_ADVISE_BIG_PCLUSTER_2 : 0)),
			.h_algorithmtype = (uint8_t)codec_erofs_alg(tw->zspec.kind),
		};
		if (ino->has_frag) {
			h.h_advise |= Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
			h.h_fragmentoff = (uint32_t)ino->frag_off;
		}
		uint64_t hpos = pos + ROUND_UP_8(csize + ibody);
		if ((r = seq_put(s, hpos, &h, sizeof(h))) < 0)
			return r;
		size_t len = ino->nchunks * sizeof(struct z_erofs_lcluster_index);
		if (strbuf_grow(scratch, len) < 0)
			return anole_err(tw->err, ENOMEM, "out of memory");
		r = pread_full(tw->spool_fd, scratch->buf, len, ino->tail_off);
		if (r < 0)
			return anole_err(tw->err, EIO, "spool file: read error");
		if (ino->has_frag) {
			/* the fragment moved when fragments were grouped: its
			 * head carries the final offset's high half */
			struct z_erofs_lcluster_index *idx = (void *)scratch->buf;
			uint64_t tail_lcn = ino->ztail_la >> tw->blkbits;
			idx[tail_lcn].di_u.blkaddr = (uint32_t)(ino->frag_off >> 32);
		}
		if (compact) {
			size_t clen = (size_t)zindex_compact4_size(ino->nchunks);
			_cleanup_free_ uint8_t *packs = malloc(clen);
			if (!packs)
				return anole_err(tw->err, ENOMEM, "out of memory");
			zindex_compact4((const void *)scratch->buf, ino->nchunks, packs);
			return seq_put(s, hpos + sizeof(h), packs, clen);
		}
		return seq_put(s, pos + Z_EROFS_FULL_INDEX_START(csize + ibody), scratch->buf, len);
	} else if (p->layout == EROFS_INODE_CHUNK_BASED ||
		   (p->layout == EROFS_INODE_FLAT_INLINE && S_ISREG(ino->mode))) {
		size_t len = p->layout == EROFS_INODE_CHUNK_BASED ? ino->nchunks * 4u
								     : ino->tail_len;
		if (strbuf_grow(scratch, len) < 0)
			return anole_err(tw->err, ENOMEM, "out of memory");
		r = pread_full(tw->spool_fd, scratch->buf, len, ino->tail_off);
		if (r < 0)
			return anole_err(tw->err, EIO, "spool file: read error");
		return seq_put(s, at, scratch->buf, len);
	}
	if (tail)
		return seq_put(s, at, tail, ino->tail_len);
	return 0;
}

/* The per-algorithm record that follows the superblock (COMPR_CFGS). */
static size_t compr_cfgs(struct tree_writer *tw, uint8_t *p)
{
	return codec_cfgs(&tw->zspec, zpipe_window(tw->zp), zpipe_max_cblocks(tw->zp), p);
}

int tw_write_superblock(struct tree_writer *tw, const struct layout *l, uint64_t meta_blkaddr,
			    uint64_t xattr_blkaddr, uint64_t blocks, uint32_t incompat)
{
	_cleanup_free_ char *blk = calloc(1, tw->blksz);
	if (!blk)
		return anole_err(tw->err, ENOMEM, "out of memory");
	struct erofs_super_block *sb = (void *)(blk + EROFS_SUPER_OFFSET);
	sb->magic = EROFS_MAGIC;
	sb->feature_compat = EROFS_COMPAT_SB_CHKSUM | EROFS_COMPAT_MTIME;
	sb->blkszbits = (uint8_t)tw->blkbits;
	sb->root_nid = (uint16_t)tw->place[0].nid;
	sb->inos = tw->ninodes - (tw->packed ? 1 : 0);
	if (tw->packed) {
		sb->packed_nid = tw_place(tw, tw->packed)->nid;
		incompat |= EROFS_INCOMPAT_FRAGMENTS;
	}
	sb->epoch = (uint64_t)l->epoch;
	sb->fixed_nsec = l->fixed_nsec;
	sb->blocks = (uint32_t)blocks;
	sb->meta_blkaddr = (uint32_t)meta_blkaddr;
	sb->xattr_blkaddr = (uint32_t)xattr_blkaddr;
	if (tw->opts.uuid)
		memcpy(sb->uuid, tw->opts.uuid, 16);
	if (tw->opts.label)
		memcpy(sb->volume_name, tw->opts.label, MIN(strlen(tw->opts.label), sizeof(sb->volume_name)));
	if (tw->ndevs) {
		incompat |= EROFS_INCOMPAT_DEVICE_TABLE;
		sb->extra_devices = (uint16_t)tw->ndevs;
		sb->devt_slotoff = (uint16_t)((DEVT_BLOCK << tw->blkbits) / sizeof(struct erofs_deviceslot));
	}
	sb->feature_incompat = incompat;
	if (incompat & EROFS_INCOMPAT_COMPR_CFGS) {
		sb->available_compr_algs = (uint16_t)(1u << codec_erofs_alg(tw->zspec.kind));
		compr_cfgs(tw, (uint8_t *)blk + EROFS_SUPER_OFFSET + sizeof(*sb));
	}

	uint32_t end = tw->blksz; /* the checksum covers the rest of block 0 */
	sb->checksum = anole_crc32c(~0u, blk + EROFS_SUPER_OFFSET, end - EROFS_SUPER_OFFSET);
	int r = pwrite_full(tw->out.fd, blk, end, 0);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
				 strerror(-r));
	return 0;
}


/* Every inode in nid order, through one buffer: the metadata area is
 * written front to back. */
int tw_write_inodes(struct tree_writer *tw, const uint32_t *order, uint64_t meta_blkaddr,
		    const struct layout *l)
{
	_cleanup_free_ char *sbuf = malloc(COPY_BUF);
	struct seqbuf s = {.tw = tw, .base = meta_blkaddr << tw->blkbits, .buf = sbuf};
	struct strbuf scratch = {0};
	if (!sbuf)
		return anole_err(tw->err, ENOMEM, "out of memory");
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[order[i]];
		uint64_t pos = (meta_blkaddr << tw->blkbits) +
			       (tw->place[order[i]].nid << EROFS_ISLOT_BITS);
		int r = write_inode(tw, &s, pos, ino, l, &scratch);
		if (r < 0) {
			strbuf_release(&scratch);
			return r;
		}
		if (!(i & 0xfff))
			tw_progress(tw, "metadata", false);
	}
	strbuf_release(&scratch);
	return seq_flush(&s);
}
