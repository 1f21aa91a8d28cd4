/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compressed files: mapping (which extent holds a file byte, and where its
 * stored bytes are) and decoding, with the kernel's rules (fs/erofs/zmap.c,
 * decompressor*.c in Linux 6.18): full and compact lcluster indexes, big
 * pclusters, partially referenced pclusters, the inline tail
 * (ztailpacking), fragments in the packed inode, encoded extents, plain
 * pclusters shifted or interlaced. Everything read from the image is
 * checked before use; every loop moves strictly towards an end. The parts
 * and what each owns: erofs/zmap_int.h.
 */
#include "erofs/zmap_int.h"

/* ---- the superblock's compression configuration ------------------------ */

static int check_cfg(struct anole_image *img, struct zimage *z, unsigned int alg,
		     const uint8_t *rec, uint32_t len, uint64_t at)
{
	uint32_t need[] = {sizeof(struct z_erofs_lz4_cfgs), sizeof(struct z_erofs_lzma_cfgs),
			   sizeof(struct z_erofs_deflate_cfgs), sizeof(struct z_erofs_zstd_cfgs)};
	if (len < need[alg])
		return img_corrupt(img, UINT64_MAX, at, "%s configuration of %u bytes",
				   codec_alg_name(alg), len);
	switch (alg) {
	case Z_EROFS_COMPRESSION_LZ4: {
		struct z_erofs_lz4_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.max_pclusterblks > Z_EROFS_PCLUSTER_MAX_SIZE / img_blksz(img))
			return img_corrupt(img, UINT64_MAX, at,
					   "lz4 configuration: pclusters of %u blocks",
					   c.max_pclusterblks);
		return 0;
	}
	case Z_EROFS_COMPRESSION_LZMA: {
		struct z_erofs_lzma_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.format || c.dict_size < 4096 || c.dict_size > Z_EROFS_LZMA_MAX_DICT_SIZE)
			return img_corrupt(img, UINT64_MAX, at,
					   "lzma configuration: format %u, dictionary of %u bytes",
					   c.format, c.dict_size);
		z->lzma_dict = c.dict_size;
		return 0;
	}
	case Z_EROFS_COMPRESSION_DEFLATE: {
		struct z_erofs_deflate_cfgs c;
		memcpy(&c, rec, sizeof(c));
		if (c.windowbits > 15)
			return anole_err(img_err(img), EOPNOTSUPP,
					 "%s: byte offset %llu: deflate window of 2^%u bytes is not "
					 "supported", img_path(img), (unsigned long long)at,
					 c.windowbits);
		return 0;
	}
	default: {
		struct z_erofs_zstd_cfgs c;
		memcpy(&c, rec, sizeof(c));
		/* the kernel keeps zstd windows within a pcluster (1 MiB) */
		if (c.format || c.windowlog > 10)
			return img_corrupt(img, UINT64_MAX, at,
					   "zstd configuration: format %u, window of 2^%u bytes",
					   c.format, c.windowlog + 10u);
		z->zstd_window = 1u << (c.windowlog + 10);
		return 0;
	}
	}
}

/* One record per algorithm the superblock lists, in algorithm order, each
 * 4-aligned and led by its 16-bit size (0 meaning 64 KiB). */
static int parse_cfgs(struct anole_image *img, struct zimage *z, const struct erofs_super_block *sb)
{
	uint64_t off = EROFS_SUPER_OFFSET + sizeof(*sb) + 16ull * sb->sb_extslots;
	for (unsigned int alg = 0; alg < Z_EROFS_COMPRESSION_MAX; alg++) {
		if (!(z->algs & (1u << alg)))
			continue;
		off = ROUND_UP(off, 4);
		uint16_t len16;
		int r = img_meta_read(img, UINT64_MAX, off, &len16, sizeof(len16));
		if (r < 0)
			return r;
		uint32_t len = len16 ? len16 : 65536u;
		uint8_t rec[16] = {0};
		if ((r = img_meta_read(img, UINT64_MAX, off + 2, rec, MIN(len, sizeof(rec)))) < 0 ||
		    (len > sizeof(rec) &&
		     (r = img_meta_read(img, UINT64_MAX, off + 2 + len - 1, rec + 15, 1)) < 0))
			return r;
		if ((r = check_cfg(img, z, alg, rec, len, off)) < 0)
			return r;
		off += 2 + len;
	}
	return 0;
}

int zmap_image_init(struct anole_image *img, struct zimage **out)
{
	struct zimage *z = calloc(1, sizeof(*z));
	if (!z)
		return anole_err(img_err(img), ENOMEM, "out of memory");
	*out = z;
	struct erofs_super_block sb;
	int r = img_meta_read(img, UINT64_MAX, EROFS_SUPER_OFFSET, &sb, sizeof(sb));
	if (r < 0)
		return r;
	z->zero_padding = sb.feature_incompat & EROFS_INCOMPAT_ZERO_PADDING;
	z->big = sb.feature_incompat & EROFS_INCOMPAT_COMPR_CFGS;
	if (sb.feature_incompat & EROFS_INCOMPAT_FRAGMENTS)
		z->packed_nid = sb.packed_nid;
	if (!(sb.feature_incompat & EROFS_INCOMPAT_COMPR_CFGS)) {
		z->algs = 1u << Z_EROFS_COMPRESSION_LZ4;
		return 0;
	}
	z->algs = sb.available_compr_algs;
	if (z->algs & ~((1u << Z_EROFS_COMPRESSION_MAX) - 1))
		return anole_err(img_err(img), EOPNOTSUPP,
				 "%s: byte offset 1108: unknown compression algorithms 0x%x",
				 img_path(img), z->algs);
	return parse_cfgs(img, z, &sb);
}

void zmap_image_free(struct zimage *z)
{
	if (!z)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(z->slot); i++)
		free(z->slot[i].buf);
	free(z->in);
	free(z);
}

uint64_t zmap_packed_nid(const struct anole_image *img)
{
	return img_zimage(img)->packed_nid;
}

/* ---- the inode's map header ---------------------------------------------- */

static void rec_init(struct zrec *m, struct anole_image *img, const struct anole_inode *ino)
{
	memset(m, 0, sizeof(*m));
	m->img = img;
	m->ino = ino;
	m->blkbits = (unsigned int)__builtin_ctz(img_blksz(img));
	m->lbits = ino->z_lclusterbits;
	m->body_end = ino->pos + ino->inode_isize + ino->xattr_isize;
	m->nlcl = DIV_ROUND_UP(ino->size, 1ull << m->lbits);
}

/* The byte after the inode's last index or extent record. */
static int index_end(struct zrec *m, uint64_t *end)
{
	const struct anole_inode *ino = m->ino;
	if (is_ext(ino)) {
		uint64_t n = ext_recsz(ino) > 8 ? ino->z_extents : m->nlcl;
		*end = ext_start(ino, m->body_end) + n * ext_recsz(ino) + (ext_recsz(ino) == 4 ? 8 : 0);
		return 0;
	}
	if (!is_compact(ino)) {
		*end = Z_EROFS_FULL_INDEX_START(m->body_end) + m->nlcl * 8;
		return 0;
	}
	uint64_t ebase = ROUND_UP_8(m->body_end) + sizeof(struct z_erofs_map_header), pos;
	uint64_t totalidx = DIV_ROUND_UP(ino->size, 1ull << m->blkbits);
	unsigned int packsize;
	int r = zindex_compact_pos(ebase, totalidx, ino->z_advise & Z_EROFS_ADVISE_COMPACTED_2B,
				   m->lbits, totalidx - 1, &pos, &packsize);
	if (r == -EINVAL)
		return img_corrupt(m->img, ino->nid, ino->pos,
				   "compact indexes of lclusters of 2^%u bytes", m->lbits);
	*end = (pos & ~(uint64_t)(packsize - 1)) + packsize;
	return 0;
}

static int check_header(struct anole_image *img, struct anole_inode *ino, uint64_t hpos)
{
	struct zimage *z = img_zimage(img);
	uint16_t big = Z_EROFS_ADVISE_BIG_PCLUSTER_1 | Z_EROFS_ADVISE_BIG_PCLUSTER_2;
	if (!is_ext(ino) && (ino->z_advise & big) && !z->big)
		return img_corrupt(img, ino->nid, hpos,
				   "big pclusters without the superblock's feature");
	if (is_compact(ino) && !(ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_1) !=
				       !(ino->z_advise & Z_EROFS_ADVISE_BIG_PCLUSTER_2))
		return img_corrupt(img, ino->nid, hpos,
				   "compact indexes with big pclusters of one head kind only");
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !z->packed_nid)
		return img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
	return 0;
}

/* Find the tail extent, as the kernel does before the first map. */
static int find_tail(struct anole_image *img, struct anole_inode *ino)
{
	struct zrec m;
	struct zextent x;
	struct ztail t = {0};
	rec_init(&m, img, ino);
	int r = is_ext(ino)
			? zmap_ext(&m, ino->size - 1, &x)
			: zmap_fo(&m, ino->size - 1, &x, &t);
	if (r < 0)
		return r;
	if (is_ext(ino)) {
		if (x.where == ZX_FRAGMENT) {
			ino->z_tail_la = x.la;
			ino->z_frag_off = x.frag_off;
		}
		return 0;
	}
	ino->z_tail_la = t.la;
	ino->z_idata_pos = t.idata_pos;
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !is_compact(ino))
		ino->z_frag_off |= (uint64_t)t.pblk << 32;
	/* a fragment from the first lcluster on: the whole file is in it */
	if ((ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER) && !(t.la >> ino->z_lclusterbits)) {
		ino->z_frag_whole = true;
		ino->z_tail_la = 0;
	}
	return 0;
}

int zmap_inode_init(struct anole_image *img, struct anole_inode *ino, uint32_t iu, uint64_t body_end)
{
	struct zimage *z = img_zimage(img);
	struct z_erofs_map_header h;
	uint64_t hpos = ROUND_UP_8(body_end), end;
	ino->z_blocks = iu;
	ino->z_tail_la = ino->size;
	if (!ino->size)
		return 0; /* the kernel never reads an empty file's map */
	int r = img_meta_read(img, ino->nid, hpos, &h, sizeof(h));
	if (r < 0)
		return r;
	if (h.h_clusterbits & 0x80) {
		/* the whole file lives in the packed inode */
		uint64_t v;
		memcpy(&v, &h, sizeof(v));
		ino->z_advise = Z_EROFS_ADVISE_FRAGMENT_PCLUSTER;
		ino->z_frag_whole = true;
		ino->z_frag_off = v & ~(1ull << 63);
		ino->z_tail_la = 0;
		return z->packed_nid ? 0
				     : img_corrupt(img, ino->nid, hpos, "fragment without a packed inode");
	}
	ino->z_advise = h.h_advise;
	ino->z_lclusterbits = (uint8_t)(__builtin_ctz(img_blksz(img)) + (h.h_clusterbits & 15));
	if (ino->layout == EROFS_INODE_COMPRESSED_FULL && (h.h_advise & Z_EROFS_ADVISE_EXTENTS)) {
		uint16_t hi = (uint16_t)(h.h_algorithmtype | h.h_clusterbits << 8);
		ino->z_extents = h.h_fragmentoff | (uint64_t)hi << 32;
		if (ext_recsz(ino) <= 8)
			ino->z_extents = 0;
	} else {
		ino->z_algorithms = h.h_algorithmtype;
		if (h.h_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)
			ino->z_frag_off = h.h_fragmentoff;
		else if (h.h_advise & Z_EROFS_ADVISE_INLINE_PCLUSTER)
			ino->z_idata_size = (uint16_t)(h.h_fragmentoff >> 16);
	}
	if ((r = check_header(img, ino, hpos)) < 0)
		return r;
	struct zrec m;
	rec_init(&m, img, ino);
	if ((r = index_end(&m, &end)) < 0)
		return r;
	if (end > img_meta_end(img, hpos)) /* the image's, or the metabox's */
		return img_corrupt(img, ino->nid, hpos, "lcluster indexes run past the %s end",
				   hpos >> EROFS_NID_METABOX_BIT ? "metabox" : "image");
	if (ino->z_idata_size || (ino->z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER))
		return find_tail(img, ino);
	return 0;
}

/* ---- hooks: maps and reads ----------------------------------------------- */

int zmap_extent(struct anole_image *img, const struct anole_inode *ino, uint64_t off,
		struct zextent *x)
{
	struct zrec m;
	memset(x, 0, sizeof(*x));
	if (off >= ino->size)
		return img_corrupt(img, ino->nid, ino->pos, "no extent past the end of the file");
	if (ino->z_frag_whole) {
		*x = (struct zextent){.la = 0, .llen = ino->size, .where = ZX_FRAGMENT,
				      .frag_off = ino->z_frag_off};
		return 0;
	}
	rec_init(&m, img, ino);
	int r = is_ext(ino) ? zmap_ext(&m, off, x) : zmap_fo(&m, off, x, NULL);
	if (r < 0)
		return r;
	if (off < x->la || off - x->la >= x->llen || x->la + x->llen > ino->size)
		return img_corrupt(img, ino->nid, ino->pos,
				   "extent at %llu (%llu bytes) does not hold byte %llu",
				   (unsigned long long)x->la, (unsigned long long)x->llen,
				   (unsigned long long)off);
	if (x->where != ZX_BLOCKS && x->where != ZX_INLINE)
		return 0;
	/* what the kernel refuses to decode (z_erofs_map_sanity_check) */
	bool plain = x->form >= Z_EROFS_COMPRESSION_MAX;
	if (x->plen > Z_EROFS_PCLUSTER_MAX_SIZE || x->llen > Z_EROFS_PCLUSTER_MAX_DSIZE ||
	    !x->plen || (plain && x->llen > x->plen) || x->pa + x->plen < x->pa)
		return img_corrupt(img, ino->nid, ino->pos,
				   "extent at %llu: %u stored bytes (%s) for %llu bytes",
				   (unsigned long long)x->la, x->plen,
				   plain ? "plain" : codec_alg_name(x->form), (unsigned long long)x->llen);
	return 0;
}

int zmap_packed_inode(struct anole_image *img, struct anole_inode *out)
{
	struct zimage *z = img_zimage(img);
	if (!z->packed_loaded) {
		int r = anole_inode_read(img, z->packed_nid, &z->packed);
		if (r < 0)
			return r;
		bool compressed = z->packed.layout == EROFS_INODE_COMPRESSED_FULL ||
				  z->packed.layout == EROFS_INODE_COMPRESSED_COMPACT;
		/* its own data never lies in a fragment */
		if (!S_ISREG(z->packed.mode) ||
		    (compressed && (z->packed.z_advise & Z_EROFS_ADVISE_FRAGMENT_PCLUSTER)))
			return img_corrupt(img, z->packed_nid, z->packed.pos,
					   "the packed inode is not a plain or compressed regular file");
		z->packed_loaded = true;
	}
	*out = z->packed;
	return 0;
}

int zmap_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	     uint64_t *phys, uint64_t *run)
{
	struct zextent x;
	int r = zmap_extent(img, ino, off, &x);
	if (r < 0)
		return r;
	*hole = x.where == ZX_HOLE;
	*phys = x.where == ZX_BLOCKS ? x.pa : 0;
	*run = x.la + x.llen - off;
	if (x.where != ZX_BLOCKS)
		return 0;
	int fd;
	uint64_t at;
	return img_locate(img, ino->nid, x.pa, x.plen, &fd, &at);
}
