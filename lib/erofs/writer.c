/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EROFS image writer.
 *
 * Image layout (4 KiB blocks by default):
 *
 *   block 0          superblock at byte 1024
 *   data area        regular file contents, in the order the source gives
 *                    them (full blocks; tails that are not inlined)
 *   late area        directory blocks and long symlinks (they need nids, or
 *                    are only known after the scan)
 *   shared xattrs    xattr_blkaddr
 *   metadata area    meta_blkaddr: inodes with inline xattrs, chunk maps
 *                    and inline tails; the root inode first (nid 0)
 *
 * Data is written while the source is scanned; everything that depends on
 * nids is written by tw_finish() once the whole tree is known.
 */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <zstd.h>

#include "anole/erofs_fs.h"
#include "erofs/tree.h"
#include "erofs/zpipe.h"
#include "erofs/zindex.h"
#include "erofs/cdc.h"
#include "erofs/blobmeta.h"
#include "util/digest.h"
#include "util/arena.h"

#define OPEN_META_BLOCKS 16

struct tree_writer {
	struct anole_build_options opts;
	struct anole_error *err;
	char *image_path;
	struct outfile out;  /* the image */
	struct outfile blob; /* separate_data: the data blob */
	int data_fd;         /* where data blocks go: out.fd or blob.fd */
	uint64_t data_base;  /* block address of data_fd's first block */
	char blob_hex[65];
	struct strbuf blob_table, blob_chunks; /* its digest table, chunk index */
	struct wbase *bases; /* other images' blobs it may point into */
	size_t nbases;
	unsigned int ndevs;  /* device table slots written */
	int spool_fd;
	uint64_t spool_len;
	unsigned int blkbits;
	uint32_t blksz;
	uint64_t next_blk;

	struct arena mem;       /* every tdentry */
	struct arena imem;      /* every tinode, linked or not: freed by a walk */
	struct tinode **inodes; /* linked, in creation order; [0] is the root */
	size_t ninodes, icap;
	struct xattr_table *xt;
	struct anole_build_stats stats;
	double t0, last_progress;
	char *buf; /* copy buffer */

	struct codec_spec zspec;
	uint32_t pcluster;
	struct zpipe *zp; /* NULL for uncompressed images */
	bool fragments;
	int frag_fd; /* small files and tails, packed together */
	uint64_t frag_len;
	struct tinode *packed;
	struct digest_map *frag_seen; /* with fragments: fragment digest -> offset */
	bool cdc;                     /* with dedupe: content-defined extents */
	struct cdc_params cdcp;
	struct frag_rec *frags;       /* every fragment stored, for reordering */
	size_t nfrags, frag_cap;
	struct strbuf frag_keys;
	uint32_t *key_cache;          /* see frag_key() */
};

/* A base blob: where it sits in the unified address space. */
struct wbase {
	struct digest d;
	uint64_t uni, blocks;
	uint64_t reused; /* file bytes found in it */
	bool used;
};

/* A fragment and the key it is grouped by in the packed inode: 8 bytes,
 * one per small file of a million-file tree. Fragments are stored one
 * after the other, so where one is in frag_fd is the sum of the lengths
 * before it. Until reorder_fragments(), an inode's frag_off is the index
 * of its record, not an offset. */
struct frag_rec {
	uint32_t len; /* at most a copy buffer */
	uint32_t key; /* offset of "extension\0basename\0" in frag_keys */
};

#define COPY_BUF (1u << 20)

/* Data blocks of a separate-data image live at this address and up, on
 * the extra device: far above any metadata, well below 2^32. Block 1 of
 * the image holds the device table. */
#define DATA_DEVICE_BASE (1ull << 28)
#define DEVT_BLOCK 1

static char *blob_dir(const struct tree_writer *tw)
{
	const char *slash = strrchr(tw->image_path, '/');
	char *d = NULL;
	if (asprintf(&d, "%.*s%sblobs/sha256", slash ? (int)(slash - tw->image_path) : 0,
		     tw->image_path, slash ? "/" : "") < 0)
		return NULL;
	return d;
}

static int open_blob(struct tree_writer *tw)
{
	_cleanup_free_ char *dir = blob_dir(tw);
	_cleanup_free_ char *probe = NULL;
	if (!dir || asprintf(&probe, "%s/x", dir) < 0)
		return anole_err(tw->err, ENOMEM, "out of memory");
	int r = mkdir_parents(dir, 0755);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: %s", dir, strerror(-r));
	r = outfile_open(&tw->blob, probe);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: cannot create the data blob: %s", dir,
				 strerror(-r));
	tw->data_fd = tw->blob.fd;
	tw->data_base = DATA_DEVICE_BASE;
	tw->next_blk = DATA_DEVICE_BASE;
	return 0;
}

/* Byte offset of data block @blk in data_fd. */
static uint64_t data_pos(const struct tree_writer *tw, uint64_t blk)
{
	return (blk - tw->data_base) << tw->blkbits;
}

static int load_bases(struct tree_writer *tw);

int tw_new(struct tree_writer **out, const char *image, const struct anole_build_options *opts,
	   struct anole_error *err)
{
	struct tree_writer *tw = calloc(1, sizeof(*tw));
	if (!tw)
		return anole_err(err, ENOMEM, "out of memory");
	tw->out.fd = tw->blob.fd = tw->data_fd = tw->spool_fd = tw->frag_fd = -1;
	tw->err = err;
	if (opts)
		tw->opts = *opts;
	tw->blkbits = tw->opts.blkszbits ? tw->opts.blkszbits : 12;
	if (tw->blkbits != 12) {
		free(tw);
		return anole_err(err, EINVAL, "only 4096-byte blocks are supported");
	}
	tw->blksz = 1u << tw->blkbits;
	tw->next_blk = 1; /* block 0 holds the superblock */
	tw->t0 = tw->last_progress = now_seconds();
	tw->image_path = strdup(image);
	tw->buf = malloc(COPY_BUF);
	int r = tw->image_path && tw->buf ? xattr_table_new(&tw->xt) : -ENOMEM;
	if (r < 0) {
		tw_free(tw);
		return anole_err(err, ENOMEM, "out of memory");
	}
	r = outfile_open(&tw->out, image);
	if (r < 0) {
		tw_free(tw);
		return anole_err(err, -r, "%s: cannot create output: %s", image, strerror(-r));
	}
	tw->data_fd = tw->out.fd;
	if (tw->opts.separate_data && (r = open_blob(tw)) < 0) {
		tw_free(tw);
		return r;
	}
	/* The spool holds tails and chunk maps until metadata is written. */
	r = tmpfile_unnamed("/tmp");
	if (r < 0) {
		tw_free(tw);
		return anole_err(err, -r, "cannot create a spool file in %s: %s",
				 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", strerror(-r));
	}
	tw->spool_fd = r;

	if (tw->opts.compress && (r = codec_parse(tw->opts.compress, &tw->zspec, err)) < 0) {
		tw_free(tw);
		return r;
	}
	tw->pcluster = tw->opts.pcluster_size ? tw->opts.pcluster_size : ANOLE_DEFAULT_PCLUSTER;
	/* an extent must be able to save a block: at least two of them */
	if (tw->pcluster < 2 * tw->blksz || tw->pcluster > Z_EROFS_PCLUSTER_MAX_SIZE ||
	    tw->pcluster % tw->blksz) {
		uint32_t pc = tw->pcluster, bs = tw->blksz;
		tw_free(tw);
		return anole_err(err, EINVAL,
				 "pcluster size %u: choose a multiple of %u from %u to %u bytes", pc,
				 bs, 2 * bs, Z_EROFS_PCLUSTER_MAX_SIZE);
	}
	if (tw->zspec.kind != CODEC_NONE) {
		unsigned int threads = tw->opts.threads;
		if (!threads) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);
			threads = n > 0 ? (unsigned int)n : 1;
		}
		r = zpipe_new(tw, &tw->zspec, tw->pcluster, threads, tw->opts.dedupe, &tw->zp);
		if (r < 0) {
			tw_free(tw);
			return anole_err(err, -r, "cannot start compression threads: %s",
					 strerror(-r));
		}
		/* lz4 images stay readable by erofs-utils 1.5 and kernels before
		 * 6.1, and keep the fastest random reads: no fragments unless asked */
		bool lz4 = tw->zspec.kind == CODEC_LZ4 || tw->zspec.kind == CODEC_LZ4HC;
		tw->fragments = tw->opts.fragments > 0 || (!tw->opts.fragments && !lz4);
		/* dedupe finds repeats wherever they sit: extents are cut by
		 * content (needs room for cuts at least 8 KiB apart) */
		tw->cdc = tw->opts.dedupe && tw->pcluster >= (32u << 10);
		tw->cdcp = cdc_for(tw->pcluster);
		zpipe_set_cdc(tw->zp, tw->cdc);
		if (tw->fragments && digest_map_new(&tw->frag_seen) < 0) {
			tw_free(tw);
			return anole_err(err, ENOMEM, "out of memory");
		}
		if (tw->fragments && (tw->frag_fd = tmpfile_unnamed("/tmp")) < 0) {
			r = tw->frag_fd;
			tw_free(tw);
			return anole_err(err, -r, "cannot create a fragment file: %s", strerror(-r));
		}
	}
	if (tw->opts.nbases && (r = load_bases(tw)) < 0) {
		tw_free(tw);
		return r;
	}
	*out = tw;
	return 0;
}

/* Offer every extent of the base blobs to the pipeline's dedupe map. The
 * bases take the unified addresses from DATA_DEVICE_BASE up, in order; the
 * image's own blob comes after them. */
static int load_bases(struct tree_writer *tw)
{
	if (!tw->opts.separate_data || !tw->zp || !tw->opts.dedupe)
		return anole_err(tw->err, EINVAL,
				 "base blobs need separate data, compression and dedupe");
	if (tw->opts.nbases > 64)
		return anole_err(tw->err, E2BIG, "%zu base blobs: at most 64", tw->opts.nbases);
	tw->bases = calloc(tw->opts.nbases, sizeof(*tw->bases));
	if (!tw->bases)
		return anole_err(tw->err, ENOMEM, "out of memory");
	uint64_t uni = DATA_DEVICE_BASE;
	for (size_t i = 0; i < tw->opts.nbases; i++) {
		const struct anole_base_blob *b = &tw->opts.bases[i];
		struct wbase *w = &tw->bases[tw->nbases++];
		if (digest_parse(b->digest, &w->d) < 0)
			return anole_err(tw->err, EINVAL, "base blob '%s': not a sha256 digest",
					 b->digest);
		struct chunk_index ci;
		int r = chunk_index_load(b->chunks_path, &ci, tw->err);
		if (r < 0)
			return r;
		if (b->size && b->size != ci.head.blob_blocks << 12) {
			chunk_index_release(&ci);
			return anole_err(tw->err, EBADMSG,
					 "%s: chunk index describes %llu blocks, blob %s has %llu bytes",
					 b->chunks_path, (unsigned long long)ci.head.blob_blocks,
					 b->digest, (unsigned long long)b->size);
		}
		w->uni = uni;
		w->blocks = ci.head.blob_blocks;
		for (uint64_t k = 0; k < ci.head.count && r >= 0; k++) {
			const struct anole_chunk_entry *e = &ci.e[k];
			struct digest key;
			memcpy(key.b, e->key, sizeof(key.b));
			r = zpipe_preload(tw->zp, &key,
					  zpipe_where(uni + e->blkaddr, e->cblocks, e->nblocks));
		}
		chunk_index_release(&ci);
		if (r < 0)
			return anole_err(tw->err, -r, "out of memory");
		uni += w->blocks;
		if (uni > (1ull << 31))
			return anole_err(tw->err, EFBIG, "base blobs exceed 2^31 blocks");
	}
	tw->data_base = tw->next_blk = uni;
	return 0;
}

void tw_note_reuse(struct tree_writer *tw, uint64_t blk, uint64_t len)
{
	for (size_t i = 0; i < tw->nbases; i++) {
		struct wbase *w = &tw->bases[i];
		if (blk >= w->uni && blk < w->uni + w->blocks) {
			w->used = true;
			w->reused += len;
			return;
		}
	}
}

uint64_t tw_next_block(const struct tree_writer *tw)
{
	return tw->next_blk;
}

uint32_t tw_blksz(const struct tree_writer *tw)
{
	return tw->blksz;
}

struct anole_error *tw_error(struct tree_writer *tw)
{
	return tw->err;
}

void tw_add_data_bytes(struct tree_writer *tw, uint64_t n)
{
	tw->stats.data_bytes += n;
	tw_progress(tw, "data", false);
}

int tw_data_append(struct tree_writer *tw, const void *data, size_t len, uint64_t *blk)
{
	size_t padded = ROUND_UP(len, tw->blksz);
	*blk = tw->next_blk;
	if (tw->next_blk + padded / tw->blksz >= EROFS_NULL_ADDR)
		return anole_err(tw->err, EFBIG, "image exceeds 2^32 blocks");
	int r = pwrite_full(tw->data_fd, data, padded, data_pos(tw, tw->next_blk));
	if (r < 0)
		return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
				 strerror(-r));
	tw->next_blk += padded / tw->blksz;
	return 0;
}

static void free_inode(void *p)
{
	struct tinode *ino = p;
	if (S_ISDIR(ino->mode) && ino->u.dir) {
		free(ino->u.dir->child);
		free(ino->u.dir);
	} else if (S_ISLNK(ino->mode)) {
		free(ino->u.symlink);
	}
}

void tw_free(struct tree_writer *tw)
{
	if (!tw)
		return;
	zpipe_free(tw->zp);
	digest_map_free(tw->frag_seen);
	free(tw->frags);
	strbuf_release(&tw->frag_keys);
	free(tw->key_cache);
	strbuf_release(&tw->blob_table);
	strbuf_release(&tw->blob_chunks);
	free(tw->bases);
	outfile_close(&tw->blob);
	outfile_close(&tw->out);
	if (tw->spool_fd >= 0)
		close(tw->spool_fd);
	if (tw->frag_fd >= 0)
		close(tw->frag_fd);
	/* every inode made, also those a source gave up on or replaced */
	arena_foreach(&tw->imem, sizeof(struct tinode), free_inode);
	free(tw->inodes);
	arena_release(&tw->imem);
	arena_release(&tw->mem);
	xattr_table_free(tw->xt);
	free(tw->image_path);
	free(tw->buf);
	free(tw);
}

struct xattr_table *tw_xattrs(struct tree_writer *tw)
{
	return tw->xt;
}

void tw_progress(struct tree_writer *tw, const char *phase, bool force)
{
	if (!tw->opts.progress)
		return;
	double now = now_seconds();
	if (!force && now - tw->last_progress < 0.2)
		return;
	tw->last_progress = now;
	struct anole_progress p = {
		.phase = phase,
		.inodes = tw->ninodes,
		.bytes = tw->stats.data_bytes,
		.seconds = now - tw->t0,
	};
	tw->opts.progress(&p, tw->opts.progress_ctx);
}

/* arena_foreach() walks inodes in steps of their size */
_Static_assert(sizeof(struct tinode) % 8 == 0, "struct tinode is not a multiple of 8 bytes");

struct tinode *tw_inode_new(struct tree_writer *tw)
{
	return arena_alloc(&tw->imem, sizeof(struct tinode));
}

static int register_inode(struct tree_writer *tw, struct tinode *ino)
{
	if (tw->ninodes == tw->icap) {
		size_t ncap = tw->icap ? tw->icap * 2 : 1024;
		struct tinode **n = realloc(tw->inodes, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		tw->inodes = n;
		tw->icap = ncap;
	}
	if (tw->opts.clamp_mtime && ino->mtime > tw->opts.mtime_clamp) {
		ino->mtime = tw->opts.mtime_clamp;
		ino->mtime_nsec = 0;
	}
	tw->inodes[tw->ninodes++] = ino;
	ino->ino = (uint32_t)tw->ninodes;
	if (S_ISDIR(ino->mode)) {
		ino->u.dir = calloc(1, sizeof(struct tdir));
		if (!ino->u.dir)
			return -ENOMEM;
	}
	return 0;
}

int tw_root(struct tree_writer *tw, struct tinode **root)
{
	if (tw->ninodes)
		return anole_err(tw->err, EINVAL, "root added twice");
	if (!S_ISDIR((*root)->mode))
		return anole_err(tw->err, ENOTDIR, "the root of an image must be a directory");
	int r = register_inode(tw, *root);
	if (r < 0) {
		*root = NULL;
		return anole_err(tw->err, -r, "out of memory");
	}
	(*root)->nlink = 1;
	return 0;
}

void tdentry_path(const struct tdentry *d, struct strbuf *out)
{
	if (!d) {
		strbuf_add(out, "/", 1);
		return;
	}
	const struct tdentry *chain[4096];
	size_t n = 0;
	for (; d && n < ARRAY_SIZE(chain); d = d->parent)
		chain[n++] = d;
	while (n--) {
		strbuf_add(out, "/", 1);
		escape_name(chain[n]->name, chain[n]->namelen, out);
	}
}

/* check and extract would refuse the image: say so now, with the end of
 * the path */
static int too_deep(struct tree_writer *tw, const struct tdir *pd, const char *name,
		    size_t namelen)
{
	struct strbuf p = {0};
	tdentry_path(pd->parent, &p);
	strbuf_add(&p, "/", 1);
	escape_name(name, namelen, &p);
	int r = anole_err(tw->err, ELOOP,
			  "'%s%s': directories nested deeper than %d (check and extract refuse "
			  "deeper trees)",
			  p.len > 120 ? "..." : "", p.buf ? p.buf + (p.len > 120 ? p.len - 120 : 0) : "",
			  ANOLE_MAX_DEPTH);
	strbuf_release(&p);
	return r;
}

int tw_add(struct tree_writer *tw, struct tinode *parent, const char *name, size_t namelen,
	   struct tinode *inode, struct tdentry **out)
{
	if (!namelen || namelen > EROFS_NAME_LEN || memchr(name, '/', namelen) ||
	    memchr(name, 0, namelen) || (namelen == 1 && name[0] == '.') ||
	    (namelen == 2 && name[0] == '.' && name[1] == '.'))
		return anole_err(tw->err, EINVAL, "invalid file name '%.*s'", (int)MIN(namelen, 255),
				 name);
	if (!S_ISDIR(parent->mode))
		return anole_err(tw->err, ENOTDIR, "parent of '%.*s' is not a directory",
				 (int)namelen, name);
	struct tdir *pd = parent->u.dir;
	if (S_ISDIR(inode->mode) && !inode->nlink && pd->depth >= ANOLE_MAX_DEPTH)
		return too_deep(tw, pd, name, namelen);
	/* a dentry that fails below stays in the arena until the writer goes */
	struct tdentry *d = arena_alloc(&tw->mem, offsetof(struct tdentry, name) + namelen);
	if (!d)
		return anole_err(tw->err, ENOMEM, "out of memory");
	d->inode = inode;
	d->parent = pd->parent;
	d->namelen = (uint16_t)namelen;
	memcpy(d->name, name, namelen);
	/* dentry->parent names the parent *dentry* so paths can be rebuilt */
	if (pd->nchild == pd->cap) {
		uint32_t ncap = pd->cap ? pd->cap * 2 : 8;
		struct tdentry **n = realloc(pd->child, ncap * sizeof(*n));
		if (!n)
			return anole_err(tw->err, ENOMEM, "out of memory");
		pd->child = n;
		pd->cap = ncap;
	}
	if (!inode->nlink) {
		int r = register_inode(tw, inode);
		if (r < 0)
			return anole_err(tw->err, -r, "out of memory");
	} else if (S_ISDIR(inode->mode)) {
		return anole_err(tw->err, EMLINK, "directory '%.*s' linked twice", (int)namelen,
				 name);
	} else {
		tw->stats.hardlinks++;
	}
	if (inode->nlink == UINT32_MAX)
		return anole_err(tw->err, EMLINK, "too many links to '%.*s'", (int)namelen, name);
	inode->nlink++;
	pd->child[pd->nchild++] = d;
	if (S_ISDIR(inode->mode)) {
		pd->nsubdirs++;
		inode->u.dir->parent = d;
		inode->u.dir->depth = pd->depth + 1;
	}
	if (out)
		*out = d;
	return 0;
}

/* ---- file data --------------------------------------------------------- */

static int copy_range(struct tree_writer *tw, int fd, uint64_t off, uint64_t len, uint64_t dst,
		      const char *path)
{
	uint64_t done = 0;
	bool cfr = true;

	while (done < len) {
		size_t want = (size_t)MIN(len - done, (uint64_t)COPY_BUF);
		ssize_t n;
		if (cfr) {
			loff_t in = (loff_t)(off + done), outoff = (loff_t)(dst + done);
			n = copy_file_range(fd, &in, tw->data_fd, &outoff, want, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP || errno == EBADF)) {
				cfr = false;
				continue;
			}
		} else {
			n = pread(fd, tw->buf, want, (off_t)(off + done));
			if (n > 0) {
				int r = pwrite_full(tw->data_fd, tw->buf, (size_t)n, dst + done);
				if (r < 0)
					return anole_err(tw->err, -r, "%s: cannot write image: %s",
							 tw->image_path, strerror(-r));
			}
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return anole_err(tw->err, errno, "%s: read error at offset %llu: %s", path,
					 (unsigned long long)(off + done), strerror(errno));
		}
		if (n == 0)
			return anole_err(tw->err, EIO,
					 "%s: file shrank while being read (at offset %llu)", path,
					 (unsigned long long)(off + done));
		done += (uint64_t)n;
		tw->stats.data_bytes += (uint64_t)n;
		tw_progress(tw, "data", false);
	}
	return 0;
}

int tw_spool(struct tree_writer *tw, const void *data, size_t len, uint64_t *off)
{
	*off = tw->spool_len;
	int r = pwrite_full(tw->spool_fd, data, len, tw->spool_len);
	if (r < 0)
		return anole_err(tw->err, -r, "spool file: %s", strerror(-r));
	tw->spool_len += len;
	return 0;
}

/* Inline the tail after the inode only when it will fit in one block even
 * with an extended inode and every xattr inline: then layout never has to
 * undo the choice. */
static bool tail_fits_inline(struct tree_writer *tw, const struct tinode *ino, uint64_t tail)
{
	uint64_t need = sizeof(struct erofs_inode_extended) +
			xattr_set_max_ibody(tw->xt, ino->xattr_set) + tail;
	return tail && need <= tw->blksz;
}

/* zstd's fastest level saves less than an eighth (compressed data). Tails
 * under 1 KiB count as compressible: alone they do not compress (a frame
 * costs bytes), in the metadata image with others they do, and start-ups
 * read many such files (/etc/hostname, /etc/ld.so.conf...). */
static bool incompressible(const void *data, size_t len)
{
	if (len < 1024)
		return false;
	size_t cap = ZSTD_compressBound(len);
	_cleanup_free_ char *out = malloc(cap);
	if (!out)
		return false;
	size_t n = ZSTD_compress(out, cap, data, len, 1);
	return !ZSTD_isError(n) && n > len - len / 8;
}

static int write_flat(struct tree_writer *tw, struct tinode *ino, int fd, const char *path)
{
	uint64_t size = ino->size;
	uint64_t full = size >> tw->blkbits;
	uint64_t tail = size & (tw->blksz - 1);
	int r;

	ino->data_kind = TDATA_FLAT;
	ino->inline_tail = tail_fits_inline(tw, ino, tail);
	/* no blocks at all: say block 0, not wherever the allocator was */
	ino->startblk = full || !ino->inline_tail ? tw->next_blk : 0;
	r = copy_range(tw, fd, 0, full << tw->blkbits, data_pos(tw, tw->next_blk), path);
	if (r < 0)
		return r;
	tw->next_blk += full;
	if (!tail)
		return 0;

	memset(tw->buf, 0, tw->blksz);
	r = pread_full(fd, tw->buf, tail, full << tw->blkbits);
	if (r < 0)
		return anole_err(tw->err, r == -ENODATA ? EIO : -r,
				 "%s: %s while reading the last %llu bytes", path,
				 r == -ENODATA ? "file shrank" : strerror(-r),
				 (unsigned long long)tail);
	tw->stats.data_bytes += tail;
	if (ino->inline_tail && tw->opts.separate_data && incompressible(tw->buf, tail)) {
		/* a lazy image's metadata is fetched whole before anything runs:
		 * bytes that do not compress (.gz documentation, mostly) wait in
		 * the data blob until read; a small file's block goes after all
		 * other data (write_cold_tails), away from data that is read */
		ino->inline_tail = false;
		if (!full) {
			ino->cold_tail = true;
			ino->tail_len = (uint32_t)tail;
			return tw_spool(tw, tw->buf, tail, &ino->tail_off);
		}
	}
	if (ino->inline_tail) {
		ino->tail_len = (uint32_t)tail;
		return tw_spool(tw, tw->buf, tail, &ino->tail_off);
	}
	r = pwrite_full(tw->data_fd, tw->buf, tw->blksz, data_pos(tw, tw->next_blk));
	if (r < 0)
		return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
				 strerror(-r));
	tw->next_blk++;
	return 0;
}

/* Chunks that hold any data, for a chunk size of 1 << cbits bytes. */
static uint64_t data_chunks(const struct data_extent *ext, size_t n, unsigned int cbits)
{
	uint64_t count = 0, last = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		if (!ext[i].len)
			continue;
		uint64_t first = ext[i].off >> cbits, end = (ext[i].off + ext[i].len - 1) >> cbits;
		if (last != UINT64_MAX && first <= last)
			first = last + 1;
		if (first <= end)
			count += end - first + 1;
		last = MAX(last == UINT64_MAX ? 0 : last, end);
	}
	return count;
}

static int write_chunked(struct tree_writer *tw, struct tinode *ino, int fd,
			 const struct data_extent *ext, size_t next, const char *path)
{
	uint64_t size = ino->size;
	unsigned int best = 0;
	uint64_t best_cost = UINT64_MAX;

	/* Pick the chunk size that costs least: map entries against zeros
	 * written for holes too small to skip. */
	for (unsigned int cb = 0; cb <= 20; cb++) {
		unsigned int cbits = tw->blkbits + cb;
		uint64_t nchunks = DIV_ROUND_UP(size, 1ull << cbits);
		if (nchunks > (1u << 24))
			continue; /* a map above 64 MiB is never the answer */
		uint64_t cost = nchunks * 4 + (data_chunks(ext, next, cbits) << cbits);
		if (cost <= best_cost) {
			best_cost = cost;
			best = cb;
		}
		if (nchunks == 1)
			break;
	}
	unsigned int cbits = tw->blkbits + best;
	uint64_t csize = 1ull << cbits;
	uint64_t nchunks = DIV_ROUND_UP(size, csize);
	_cleanup_free_ uint32_t *map = malloc(nchunks * sizeof(uint32_t));
	if (!map)
		return anole_err(tw->err, ENOMEM, "%s: out of memory for chunk map", path);
	for (uint64_t c = 0; c < nchunks; c++)
		map[c] = EROFS_NULL_ADDR;

	size_t e = 0;
	for (uint64_t c = 0; c < nchunks; c++) {
		uint64_t cstart = c << cbits, cend = MIN(size, cstart + csize);
		while (e < next && ext[e].off + ext[e].len <= cstart)
			e++;
		if (e == next || ext[e].off >= cend)
			continue; /* a hole */
		if (tw->next_blk >= EROFS_NULL_ADDR)
			return anole_err(tw->err, EFBIG, "image exceeds 2^32 blocks");
		map[c] = (uint32_t)tw->next_blk;
		uint64_t len = cend - cstart;
		/* Read the chunk through pread: holes inside it read as zeros. */
		for (uint64_t done = 0; done < len;) {
			size_t want = (size_t)MIN(len - done, (uint64_t)COPY_BUF);
			int r = pread_full(fd, tw->buf, want, cstart + done);
			if (r < 0)
				return anole_err(tw->err, r == -ENODATA ? EIO : -r,
						 "%s: %s at offset %llu", path,
						 r == -ENODATA ? "file shrank" : strerror(-r),
						 (unsigned long long)(cstart + done));
			size_t padded = ROUND_UP(want, tw->blksz);
			memset(tw->buf + want, 0, padded - want);
			r = pwrite_full(tw->data_fd, tw->buf, padded, data_pos(tw, tw->next_blk) + done);
			if (r < 0)
				return anole_err(tw->err, -r, "%s: cannot write image: %s",
						 tw->image_path, strerror(-r));
			done += want;
			tw->stats.data_bytes += want;
		}
		tw->next_blk += DIV_ROUND_UP(len, tw->blksz);
		tw_progress(tw, "data", false);
	}
	ino->data_kind = TDATA_CHUNKS;
	ino->chunkbits = (uint8_t)best;
	ino->nchunks = (uint32_t)nchunks;
	return tw_spool(tw, map, nchunks * sizeof(uint32_t), &ino->tail_off);
}

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
static int reorder_fragments(struct tree_writer *tw)
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
	ino->frag_off = tw->nfrags; /* the record's index, see reorder_fragments() */
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
static int add_fragment_file(struct tree_writer *tw, struct tinode *ino, int fd, const char *path)
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
static int add_packed_inode(struct tree_writer *tw)
{
	struct tinode *p = tw_inode_new(tw);
	if (!p)
		return anole_err(tw->err, ENOMEM, "out of memory");
	p->mode = S_IFREG | 0400;
	p->size = tw->frag_len;
	p->mtime = tw->inodes[0]->mtime;
	p->mtime_nsec = tw->inodes[0]->mtime_nsec;
	int r = register_inode(tw, p);
	if (r < 0)
		return anole_err(tw->err, -r, "out of memory");
	p->nlink = 1;
	tw->packed = p;
	tw->stats.data_bytes -= tw->frag_len; /* counted once, as fragments */
	return zpipe_file(tw->zp, p, tw->frag_fd, true, "packed inode");
}

int tw_file_data(struct tree_writer *tw, struct tinode *ino, int fd, const struct data_extent *ext,
		 size_t next, const char *path)
{
	if (!ino->size)
		return 0;
	int r;
	if (tw->zp) {
		/* Everything that takes blocks goes through the pipeline, so
		 * blocks are handed out in one deterministic order. */
		if (ext) {
			/* Sparse files keep their holes as an uncompressed chunk
			 * map; they are rare, so stalling the pipeline to
			 * allocate their blocks in order costs little. */
			if ((r = zpipe_drain(tw->zp)) < 0)
				return r;
			return write_chunked(tw, ino, fd, ext, next, path);
		}
		if (tw->fragments)
			return add_fragment_file(tw, ino, fd, path);
		if (ino->size > tw->blksz && tw->cdc) {
			_cleanup_free_ uint64_t *cuts = NULL;
			size_t n;
			uint64_t end;
			r = cdc_cuts(fd, ino->size, &tw->cdcp, (uint8_t *)tw->buf, 0, &cuts, &n, &end);
			if (r < 0)
				return anole_err(tw->err, -r, "%s: %s", path, strerror(-r));
			return zpipe_file_cuts(tw->zp, ino, fd, cuts, n, path);
		}
		if (ino->size > tw->blksz)
			return zpipe_file(tw->zp, ino, fd, true, path);
		if (!tail_fits_inline(tw, ino, ino->size))
			return zpipe_file(tw->zp, ino, fd, false, path);
	}
	r = ext ? write_chunked(tw, ino, fd, ext, next, path) : write_flat(tw, ino, fd, path);
	if (r < 0)
		return r;
	if (tw->next_blk >= EROFS_NULL_ADDR)
		return anole_err(tw->err, EFBIG, "image exceeds 2^32 blocks");
	return 0;
}

/* ---- layout ------------------------------------------------------------ */

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

struct dref {
	const char *name;
	uint16_t len;
	struct tinode *inode;
};

static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, MIN(alen, blen));
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int cmp_dentry(const void *x, const void *y)
{
	const struct tdentry *a = *(const struct tdentry *const *)x;
	const struct tdentry *b = *(const struct tdentry *const *)y;
	return cmp_name(a->name, a->namelen, b->name, b->namelen);
}

/* The entries of a directory as stored: "." and ".." merged in by name. */
static struct dref *dir_refs(struct tinode *dir, struct tinode *parent, uint32_t *n)
{
	struct tdir *d = dir->u.dir;
	struct dref *r = malloc((d->nchild + 2) * sizeof(*r));
	if (!r)
		return NULL;
	uint32_t k = 0, i = 0;
	struct dref dots[2] = {{".", 1, dir}, {"..", 2, parent}};
	unsigned int di = 0;
	while (i < d->nchild || di < 2) {
		if (di < 2 && (i == d->nchild || cmp_name(dots[di].name, dots[di].len,
							    d->child[i]->name,
							    d->child[i]->namelen) < 0)) {
			r[k++] = dots[di++];
		} else {
			r[k++] = (struct dref){d->child[i]->name, d->child[i]->namelen,
					       d->child[i]->inode};
			i++;
		}
	}
	*n = k;
	return r;
}

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

static struct tinode *parent_of(struct tree_writer *tw, struct tinode *dir)
{
	struct tdentry *d = dir->u.dir->parent;
	if (!d)
		return tw->inodes[0];
	/* the dentry's parent field names the grandparent dentry; the parent
	 * directory inode is found through it, or the root */
	return d->parent ? d->parent->inode : tw->inodes[0];
}

static void inode_path(struct tree_writer *tw, struct tinode *ino, struct strbuf *out)
{
	/* Directories know their dentry; for others, search is not worth it. */
	if (S_ISDIR(ino->mode))
		tdentry_path(ino->u.dir->parent, out);
	else
		strbuf_addf(out, "inode #%u", ino->ino);
	(void)tw;
}

static int sort_dirs(struct tree_writer *tw)
{
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		if (!S_ISDIR(ino->mode))
			continue;
		struct tdir *d = ino->u.dir;
		if (d->nchild)
			qsort(d->child, d->nchild, sizeof(*d->child), cmp_dentry);
		for (uint32_t k = 1; k < d->nchild; k++) {
			if (!cmp_dentry(&d->child[k - 1], &d->child[k])) {
				struct strbuf p = {0};
				inode_path(tw, ino, &p);
				int r = anole_err(tw->err, EEXIST, "%s: duplicate entry '%.*s'",
						  p.buf, (int)d->child[k]->namelen,
						  d->child[k]->name);
				strbuf_release(&p);
				return r;
			}
		}
	}
	return 0;
}

struct layout {
	int64_t epoch;
	uint32_t fixed_nsec;
	uint64_t late_blk;
};

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
static void choose_epoch(struct tree_writer *tw, struct layout *l)
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
	uint32_t ibody;
	xattr_set_ibody(tw->xt, ino->xattr_set, &ibody);
	if (ibody > erofs_xattr_ibody_size(UINT16_MAX)) {
		struct strbuf p = {0};
		inode_path(tw, ino, &p);
		int r = anole_err(tw->err, E2BIG, "%s: extended attributes too large (%u bytes)",
				  p.buf, ibody);
		strbuf_release(&p);
		return r;
	}
	ino->xattr_icount = ibody ? (uint16_t)((ibody - 12) / 4 + 1) : 0;

	uint64_t tail = 0, late_blocks = 0;
	uint32_t extra = 0;
	if (S_ISDIR(ino->mode)) {
		uint32_t n;
		_cleanup_free_ struct dref *r = dir_refs(ino, parent_of(tw, ino), &n);
		if (!r)
			return anole_err(tw->err, ENOMEM, "out of memory");
		ino->size = dir_size(r, n, tw->blksz);
		tail = ino->size & (tw->blksz - 1);
		late_blocks = ino->size >> tw->blkbits;
	} else if (S_ISLNK(ino->mode)) {
		tail = ino->size;
	}
	ino->extended = !fits_compact(ino, l);
	uint32_t core = ino->extended ? sizeof(struct erofs_inode_extended)
				      : sizeof(struct erofs_inode_compact);

	if (S_ISDIR(ino->mode) || S_ISLNK(ino->mode)) {
		if (tail && core + ibody + tail <= tw->blksz) {
			ino->layout = EROFS_INODE_FLAT_INLINE;
			ino->inline_tail = true;
			ino->tail_len = (uint32_t)tail;
			extra = (uint32_t)tail;
		} else {
			ino->layout = EROFS_INODE_FLAT_PLAIN;
			ino->inline_tail = false;
			late_blocks = DIV_ROUND_UP(ino->size, tw->blksz);
		}
		ino->startblk = late_blocks ? l->late_blk : 0;
		l->late_blk += late_blocks;
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_CHUNKS) {
		ino->layout = EROFS_INODE_CHUNK_BASED;
		extra = ino->nchunks * 4;
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_FRAG) {
		ino->layout = EROFS_INODE_COMPRESSED_FULL;
		uint32_t end = core + ibody;
		extra = (uint32_t)(ROUND_UP_8(end) - end) + sizeof(struct z_erofs_map_header);
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_Z &&
		   ino->zcompact && (!ino->has_frag || tw->frag_len <= UINT32_MAX)) {
		/* compact indexes: half the size of full ones */
		ino->layout = EROFS_INODE_COMPRESSED_COMPACT;
		uint32_t end = core + ibody;
		extra = (uint32_t)(ROUND_UP_8(end) - end + sizeof(struct z_erofs_map_header) +
				   zindex_compact4_size(ino->nchunks));
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_Z) {
		ino->layout = EROFS_INODE_COMPRESSED_FULL;
		uint32_t end = core + ibody;
		extra = (uint32_t)(Z_EROFS_FULL_INDEX_START(end) - end) +
			ino->nchunks * (uint32_t)sizeof(struct z_erofs_lcluster_index);
	} else if (S_ISREG(ino->mode) && ino->data_kind == TDATA_FLAT && ino->inline_tail) {
		ino->layout = EROFS_INODE_FLAT_INLINE;
		extra = ino->tail_len;
	} else {
		ino->layout = EROFS_INODE_FLAT_PLAIN;
	}
	ino->meta_size = core + ibody + extra;
	if (ino->extended)
		tw->stats.extended_inodes++;
	else
		tw->stats.compact_inodes++;
	return 0;
}

struct placed {
	uint64_t pos;
	struct tinode *ino;
};

static int cmp_placed(const void *x, const void *y)
{
	const struct placed *a = x, *b = y;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Assign nids: first fit over a few partly filled blocks, so that inodes
 * with inline tails waste little space while none crosses a block. */
static int place_inodes(struct tree_writer *tw, struct placed *pl, uint64_t *meta_blocks)
{
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
		struct tinode *ino = tw->inodes[i];
		uint32_t size = ROUND_UP(ino->meta_size, 1u << EROFS_ISLOT_BITS);
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
		ino->nid = pos >> EROFS_ISLOT_BITS;
		pl[i] = (struct placed){pos, ino};
	}
	if (tw->inodes[0]->nid > UINT16_MAX)
		return anole_err(tw->err, EFBIG, "root nid does not fit the superblock");
	*meta_blocks = fresh;
	qsort(pl, tw->ninodes, sizeof(*pl), cmp_placed);
	return 0;
}

/* ---- writing metadata ---------------------------------------------------- */

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
	_cleanup_free_ struct dref *r = dir_refs(ino, parent_of(tw, ino), &n);
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
				.nid = r[j].inode->nid,
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
	char core[64] = {0};
	uint32_t nlink = S_ISDIR(ino->mode) ? 2 + ino->u.dir->nsubdirs : ino->nlink;
	uint32_t iu = 0;
	uint16_t fmt = (uint16_t)((ino->extended ? 1 : 0) | (ino->layout << EROFS_I_DATALAYOUT_SHIFT));
	const void *tail = NULL;
	int r;

	if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode))
		iu = encode_rdev(ino->rdev);
	else if (ino->layout == EROFS_INODE_CHUNK_BASED)
		iu = ino->chunkbits;
	else if (ino->layout == EROFS_INODE_COMPRESSED_FULL ||
		 ino->layout == EROFS_INODE_COMPRESSED_COMPACT)
		iu = ino->data_kind == TDATA_FRAG ? 0 : ino->zblocks;
	else
		iu = (uint32_t)ino->startblk;

	if (ino->extended) {
		struct erofs_inode_extended *e = (void *)core;
		e->i_format = fmt;
		e->i_xattr_icount = ino->xattr_icount;
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
		c->i_xattr_icount = ino->xattr_icount;
		c->i_mode = (uint16_t)ino->mode;
		c->i_nlink = (uint16_t)nlink;
		c->i_size = (uint32_t)ino->size;
		c->i_mtime = (uint32_t)(ino->mtime - l->epoch);
		c->i_u = iu;
		c->i_ino = ino->ino;
		c->i_uid = (uint16_t)ino->uid;
		c->i_gid = (uint16_t)ino->gid;
	}
	uint32_t csize = ino->extended ? 64 : 32, ibody;
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
	} else if (ino->layout == EROFS_INODE_COMPRESSED_FULL && ino->data_kind == TDATA_FRAG) {
		/* the whole file is a fragment: the 8-byte header is its offset
		 * in the packed inode, with the top bit set */
		uint64_t h = ino->frag_off | (1ull << 63);
		return seq_put(s, pos + ROUND_UP_8(csize + ibody), &h, sizeof(h));
	} else if (ino->layout == EROFS_INODE_COMPRESSED_FULL ||
		   ino->layout == EROFS_INODE_COMPRESSED_COMPACT) {
		bool compact = ino->layout == EROFS_INODE_COMPRESSED_COMPACT;
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
	} else if (ino->layout == EROFS_INODE_CHUNK_BASED ||
		   (ino->layout == EROFS_INODE_FLAT_INLINE && S_ISREG(ino->mode))) {
		size_t len = ino->layout == EROFS_INODE_CHUNK_BASED ? ino->nchunks * 4u
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
	uint16_t size;
	switch (tw->zspec.kind) {
	case CODEC_LZ4:
	case CODEC_LZ4HC: {
		struct z_erofs_lz4_cfgs c = {
			.max_pclusterblks = (uint16_t)MAX(zpipe_max_cblocks(tw->zp), 1u)};
		size = sizeof(c);
		memcpy(p + 2, &c, sizeof(c));
		break;
	}
	case CODEC_LZMA: {
		struct z_erofs_lzma_cfgs c = {.dict_size = MAX(zpipe_window(tw->zp), 4096u)};
		size = sizeof(c);
		memcpy(p + 2, &c, sizeof(c));
		break;
	}
	case CODEC_DEFLATE: {
		struct z_erofs_deflate_cfgs c = {.windowbits = 15};
		size = sizeof(c);
		memcpy(p + 2, &c, sizeof(c));
		break;
	}
	case CODEC_ZSTD: {
		unsigned int wlog = 10;
		while ((1u << wlog) < zpipe_window(tw->zp))
			wlog++;
		struct z_erofs_zstd_cfgs c = {.windowlog = (uint8_t)(wlog - 10)};
		size = sizeof(c);
		memcpy(p + 2, &c, sizeof(c));
		break;
	}
	default:
		return 0;
	}
	memcpy(p, &size, 2);
	return 2u + size;
}

static int write_superblock(struct tree_writer *tw, const struct layout *l, uint64_t meta_blkaddr,
			    uint64_t xattr_blkaddr, uint64_t blocks, uint32_t incompat)
{
	_cleanup_free_ char *blk = calloc(1, tw->blksz);
	if (!blk)
		return anole_err(tw->err, ENOMEM, "out of memory");
	struct erofs_super_block *sb = (void *)(blk + EROFS_SUPER_OFFSET);
	sb->magic = EROFS_MAGIC;
	sb->feature_compat = EROFS_COMPAT_SB_CHKSUM | EROFS_COMPAT_MTIME;
	sb->blkszbits = (uint8_t)tw->blkbits;
	sb->root_nid = (uint16_t)tw->inodes[0]->nid;
	sb->inos = tw->ninodes - (tw->packed ? 1 : 0);
	if (tw->packed) {
		sb->packed_nid = tw->packed->nid;
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

static int commit(struct tree_writer *tw)
{
	int r = outfile_commit(&tw->out, tw->image_path);
	return r < 0 ? anole_err(tw->err, -r, "%s: cannot rename into place: %s", tw->image_path,
				 strerror(-r))
		     : 0;
}

static int cmp_chunk_key(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

struct chunk_collect {
	struct tree_writer *tw;
	struct anole_chunk_entry *e;
	size_t n;
};

static int collect_chunk(void *ctx, const struct digest *d, uint64_t where)
{
	struct chunk_collect *c = ctx;
	uint64_t blk = ZPIPE_WHERE_BLK(where);
	if (blk < c->tw->data_base)
		return 0; /* in a base blob: that blob's index lists it */
	struct anole_chunk_entry *e = &c->e[c->n++];
	memcpy(e->key, d->b, sizeof(e->key));
	e->blkaddr = (uint32_t)(blk - c->tw->data_base);
	e->cblocks = ZPIPE_WHERE_CBLOCKS(where);
	e->nblocks = ZPIPE_WHERE_NBLOCKS(where);
	return 0;
}

/* The extents stored in the blob (none without compression). */
static int collect_extents(struct tree_writer *tw, struct chunk_collect *c)
{
	*c = (struct chunk_collect){.tw = tw};
	const struct digest_map *seen = tw->zp ? zpipe_seen(tw->zp) : NULL;
	if (!seen)
		return 0;
	c->e = calloc(MAX(digest_map_count(seen), (size_t)1), sizeof(*c->e));
	if (!c->e)
		return anole_err(tw->err, ENOMEM, "out of memory");
	digest_map_foreach(seen, collect_chunk, c);
	return 0;
}

/* Takes @c's entries: the index later images reuse extents by. */
static int make_chunk_index(struct tree_writer *tw, uint64_t blocks, struct chunk_collect *c)
{
	struct chunk_index ci = {0};
	memcpy(ci.head.magic, ANOLE_CHUNK_INDEX_MAGIC, 8);
	ci.head.blkszbits = tw->blkbits;
	ci.head.algorithm = codec_erofs_alg(tw->zspec.kind);
	ci.head.pcluster = tw->pcluster;
	ci.head.blob_blocks = blocks;
	if (c->n)
		qsort(c->e, c->n, sizeof(*c->e), cmp_chunk_key);
	ci.head.count = c->n;
	ci.e = c->e;
	c->e = NULL;
	int r = chunk_index_encode(&ci, &tw->blob_chunks);
	chunk_index_release(&ci);
	return r < 0 ? anole_err(tw->err, ENOMEM, "out of memory") : 0;
}

static int cmp_entry_addr(const void *a, const void *b)
{
	const struct anole_chunk_entry *x = a, *y = b;
	return (x->blkaddr > y->blkaddr) - (x->blkaddr < y->blkaddr);
}

/* Range starts, cut so that no range reaches into a compressed extent
 * from outside it: a lazy mount fetches an extent the kernel needs whole,
 * and nothing around it. A compressed extent is one range; plain
 * stretches are cut every @unit bytes; neighbouring small pieces share a
 * range up to @unit, so the table stays small. */
struct cuts {
	uint64_t *start;
	uint64_t n, cap, open_len, unit;
};

static int cut_piece(struct cuts *c, uint64_t at, uint64_t len)
{
	if (c->n && c->open_len && c->open_len + len <= c->unit) {
		c->open_len += len;
	} else {
		if (c->n == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 1024;
			uint64_t *s = realloc(c->start, cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			c->start = s;
			c->cap = cap;
		}
		c->start[c->n++] = at;
		c->open_len = len;
	}
	if (c->open_len >= c->unit)
		c->open_len = 0; /* full: the next piece starts a range */
	return 0;
}

static int cut_plain(struct cuts *c, uint64_t from, uint64_t to)
{
	int r = 0;
	for (uint64_t at = from; at < to && r >= 0; at += c->unit)
		r = cut_piece(c, at, MIN(c->unit, to - at));
	return r;
}

static int cut_ranges(struct tree_writer *tw, struct chunk_collect *ext, uint64_t len,
		      struct cuts *c)
{
	if (ext->n)
		qsort(ext->e, ext->n, sizeof(*ext->e), cmp_entry_addr);
	uint64_t pos = 0;
	int r = 0;
	for (size_t i = 0; i < ext->n && r >= 0; i++) {
		const struct anole_chunk_entry *e = &ext->e[i];
		uint64_t at = (uint64_t)e->blkaddr << tw->blkbits;
		uint64_t end = MIN(at + ((uint64_t)e->nblocks << tw->blkbits), len);
		if (at < pos || end <= at)
			continue; /* cannot happen; an overlap would only cost bytes */
		r = cut_plain(c, pos, at);
		if (r >= 0)
			r = e->cblocks ? cut_piece(c, at, end - at) : cut_plain(c, at, end);
		pos = end;
	}
	if (r >= 0)
		r = cut_plain(c, pos, len);
	return r;
}

/* Name the data blob by its SHA-256 and make its digest table (per
 * range) and chunk index. */
static int seal_blob(struct tree_writer *tw)
{
	uint64_t blocks = tw->next_blk - tw->data_base, len = blocks << tw->blkbits;
	unsigned bits = tw->opts.range_bits ? tw->opts.range_bits : ANOLE_RANGE_BITS_DEFAULT;
	if (bits < ANOLE_RANGE_BITS_MIN || bits > ANOLE_RANGE_BITS_MAX)
		return anole_err(tw->err, EINVAL, "digest table ranges of 2^%u bytes: choose 4 KiB to "
				 "1 MiB", bits);
	struct chunk_collect ext;
	int r = collect_extents(tw, &ext);
	if (r < 0)
		return r;
	struct cuts cuts = {.unit = 1ull << bits};
	struct digest_table t = {0};
	if ((r = cut_ranges(tw, &ext, len, &cuts)) >= 0)
		r = digest_table_init_cuts(&t, len, bits, cuts.start, cuts.n);
	free(cuts.start);
	struct sha256_stream *h = r >= 0 ? sha256_stream_new() : NULL;
	if (!h) {
		if (r >= 0)
			digest_table_release(&t);
		free(ext.e);
		return anole_err(tw->err, r == -EINVAL ? EINVAL : ENOMEM,
				 r == -EINVAL ? "data blob: bad range cuts" : "out of memory");
	}
	_Static_assert(COPY_BUF >= ANOLE_RANGE_MAX, "a range per read");
	for (uint64_t i = 0; i < t.head.count && r >= 0; i++) {
		size_t n = (size_t)digest_table_range_len(&t, i);
		if ((r = pread_full(tw->data_fd, tw->buf, n, t.off[i])) < 0)
			break;
		sha256_stream_update(h, tw->buf, n);
		sha256(tw->buf, n, &t.d[i]);
	}
	struct digest d;
	sha256_stream_final(h, &d);
	sha256_stream_free(h);
	if (r >= 0 && digest_table_encode(&t, &tw->blob_table) < 0)
		r = -ENOMEM;
	digest_table_release(&t);
	if (r < 0) {
		free(ext.e);
		return anole_err(tw->err, -r, "data blob: %s", strerror(-r));
	}
	char s[DIGEST_STR_LEN + 1];
	digest_format(&d, s);
	memcpy(tw->blob_hex, s + 7, 65);
	return make_chunk_index(tw, blocks, &ext);
}

/* Device table blocks: room for every base blob and the image's own. */
static uint64_t devt_blocks(const struct tree_writer *tw)
{
	size_t slots = tw->nbases + 1;
	return DIV_ROUND_UP(slots * sizeof(struct erofs_deviceslot), tw->blksz);
}

/* One slot per blob the image reads: the used base blobs, then its own. */
static int write_devices(struct tree_writer *tw, bool own)
{
	struct erofs_deviceslot slot;
	char hex[DIGEST_STR_LEN + 1];
	uint64_t pos = DEVT_BLOCK << tw->blkbits;
	for (size_t i = 0; i <= tw->nbases; i++) {
		memset(&slot, 0, sizeof(slot));
		if (i < tw->nbases) {
			const struct wbase *w = &tw->bases[i];
			if (!w->used)
				continue;
			digest_format(&w->d, hex);
			memcpy(slot.tag, hex + 7, sizeof(slot.tag));
			slot.blocks = (uint32_t)w->blocks;
			slot.uniaddr = (uint32_t)w->uni;
			tw->stats.bases_used |= 1ull << i;
			tw->stats.base_reused_bytes += w->reused;
		} else {
			if (!own)
				break;
			/* 64 hex digits, no NUL */
			memcpy(slot.tag, tw->blob_hex, sizeof(slot.tag));
			slot.blocks = (uint32_t)(tw->next_blk - tw->data_base);
			slot.uniaddr = (uint32_t)tw->data_base;
		}
		int r = pwrite_full(tw->out.fd, &slot, sizeof(slot), pos);
		if (r < 0)
			return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
					 strerror(-r));
		pos += sizeof(slot);
		tw->ndevs++;
	}
	return 0;
}

/* Put the blob under its digest (over an equal one, if there), then its
 * digest table and chunk index under theirs. */
static int commit_blob(struct tree_writer *tw)
{
	_cleanup_free_ char *dir = blob_dir(tw), *final = NULL;
	if (!dir || asprintf(&final, "%s/%s", dir, tw->blob_hex) < 0)
		return anole_err(tw->err, ENOMEM, "out of memory");
	int r = outfile_commit(&tw->blob, final);
	if (r < 0)
		return anole_err(tw->err, -r, "%s: %s", final, strerror(-r));
	struct digest d;
	if ((r = cas_put(dir, tw->blob_table.buf, tw->blob_table.len, &d)) >= 0) {
		digest_format(&d, tw->stats.blob_digests);
		r = cas_put(dir, tw->blob_chunks.buf, tw->blob_chunks.len, &d);
		digest_format(&d, tw->stats.blob_chunks);
	}
	return r < 0 ? anole_err(tw->err, -r, "%s: cannot store the blob's tables: %s", dir,
				 strerror(-r))
		     : 0;
}

/* The blocks of small files write_flat kept out of the metadata. */
static int write_cold_tails(struct tree_writer *tw)
{
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		if (!ino->cold_tail)
			continue;
		memset(tw->buf, 0, tw->blksz);
		int r = pread_full(tw->spool_fd, tw->buf, ino->tail_len, ino->tail_off);
		if (r < 0)
			return anole_err(tw->err, r == -ENODATA ? EIO : -r, "spool file: %s",
					 strerror(r == -ENODATA ? EIO : -r));
		if (tw->next_blk >= EROFS_NULL_ADDR)
			return anole_err(tw->err, EFBIG, "%s: image too big", tw->image_path);
		if ((r = pwrite_full(tw->data_fd, tw->buf, tw->blksz, data_pos(tw, tw->next_blk))) < 0)
			return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
					 strerror(-r));
		ino->startblk = tw->next_blk++;
	}
	return 0;
}

int tw_finish(struct tree_writer *tw, struct anole_build_stats *stats)
{
	struct layout l = {0};
	int r;

	if (!tw->ninodes)
		return anole_err(tw->err, EINVAL, "empty tree");
	/* retiring jobs may still pack file tails */
	if (tw->zp && (r = zpipe_drain(tw->zp)) < 0)
		return r;
	if (tw->frag_len && ((r = reorder_fragments(tw)) < 0 || (r = add_packed_inode(tw)) < 0))
		return r;
	if (tw->zp && (r = zpipe_drain(tw->zp)) < 0)
		return r;
	if (tw->zp)
		zpipe_stop(tw->zp);
	if ((r = write_cold_tails(tw)) < 0)
		return r;
	tw_progress(tw, "metadata", true);
	for (size_t i = 0; i < tw->ninodes; i++)
		xattr_set_use(tw->xt, tw->inodes[i]->xattr_set);
	if ((r = xattr_table_finalize(tw->xt)) < 0)
		return anole_err(tw->err, -r, "out of memory");
	if ((r = sort_dirs(tw)) < 0)
		return r;
	choose_epoch(tw, &l);

	bool blob = tw->data_base && tw->next_blk > tw->data_base;
	if (blob && (r = seal_blob(tw)) < 0)
		return r;
	if (tw->data_base && (r = write_devices(tw, blob)) < 0)
		return r;
	/* with data blobs, metadata starts after the device table */
	l.late_blk = tw->data_base ? DEVT_BLOCK + devt_blocks(tw) : tw->next_blk;
	uint32_t incompat = 0;
	for (size_t i = 0; i < tw->ninodes; i++) {
		struct tinode *ino = tw->inodes[i];
		if ((r = layout_inode(tw, ino, &l)) < 0)
			return r;
		if (ino->layout == EROFS_INODE_CHUNK_BASED)
			incompat |= EROFS_INCOMPAT_CHUNKED_FILE;
		if (ino->layout == EROFS_INODE_COMPRESSED_FULL ||
		    ino->layout == EROFS_INODE_COMPRESSED_COMPACT)
			incompat |= EROFS_INCOMPAT_ZERO_PADDING | EROFS_INCOMPAT_COMPR_CFGS;
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
	uint64_t xattr_blkaddr = l.late_blk;
	uint32_t shared = xattr_shared_size(tw->xt);
	uint64_t meta_blkaddr = xattr_blkaddr + DIV_ROUND_UP(shared, tw->blksz);
	if (!shared)
		xattr_blkaddr = 0;

	_cleanup_free_ struct placed *pl = malloc(MAX(tw->ninodes, 1) * sizeof(*pl));
	if (!pl)
		return anole_err(tw->err, ENOMEM, "out of memory");
	uint64_t meta_blocks = 0;
	if ((r = place_inodes(tw, pl, &meta_blocks)) < 0)
		return r;
	uint64_t blocks = meta_blkaddr + meta_blocks;
	if (blocks > UINT32_MAX)
		return anole_err(tw->err, EFBIG, "image exceeds 2^32 blocks");

	if (shared) {
		r = pwrite_full(tw->out.fd, xattr_shared_area(tw->xt), shared,
				xattr_blkaddr << tw->blkbits);
		if (r < 0)
			return anole_err(tw->err, -r, "%s: cannot write image: %s", tw->image_path,
					 strerror(-r));
	}
	_cleanup_free_ char *sbuf = malloc(COPY_BUF);
	struct seqbuf s = {.tw = tw, .base = meta_blkaddr << tw->blkbits, .buf = sbuf};
	struct strbuf scratch = {0};
	if (!sbuf)
		return anole_err(tw->err, ENOMEM, "out of memory");
	for (size_t i = 0; i < tw->ninodes; i++) {
		r = write_inode(tw, &s, (meta_blkaddr << tw->blkbits) + pl[i].pos, pl[i].ino, &l,
				&scratch);
		if (r < 0) {
			strbuf_release(&scratch);
			return r;
		}
		if (!(i & 0xfff))
			tw_progress(tw, "metadata", false);
	}
	strbuf_release(&scratch);
	if ((r = seq_flush(&s)) < 0)
		return r;
	if ((r = write_superblock(tw, &l, meta_blkaddr, xattr_blkaddr, blocks, incompat)) < 0)
		return r;
	if (ftruncate(tw->out.fd, (off_t)(blocks << tw->blkbits)) < 0)
		return anole_err(tw->err, errno, "%s: %s", tw->image_path, strerror(errno));
	/* the blob first: an image never names a blob that is not there */
	if (blob && (r = commit_blob(tw)) < 0)
		return r;
	if ((r = commit(tw)) < 0)
		return r;

	tw->stats.inodes = tw->ninodes - (tw->packed ? 1 : 0);
	tw->stats.image_bytes = blocks << tw->blkbits;
	if (blob) {
		tw->stats.blob_bytes = (tw->next_blk - tw->data_base) << tw->blkbits;
		snprintf(tw->stats.blob_digest, sizeof(tw->stats.blob_digest), "sha256:%s",
			 tw->blob_hex);
	}
	tw->stats.shared_xattrs = xattr_shared_count(tw->xt);
	if (tw->zp) {
		const struct zpipe_stats *zs = zpipe_stats(tw->zp);
		tw->stats.compressed_files = zs->files;
		tw->stats.compressed_bytes_in = zs->bytes_in;
		tw->stats.compressed_bytes_out = zs->bytes_out;
		tw->stats.dedupe_bytes += zs->dedupe_bytes;
	}
	tw->stats.seconds = now_seconds() - tw->t0;
	tw_progress(tw, "done", true);
	if (stats)
		*stats = tw->stats;
	return 0;
}
