/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EROFS image writer: its options and output files, progress, and
 * tw_finish(), which runs the writer's rooms in order once the tree is
 * known. The rooms, and the image's layout, are in erofs/writer.h.
 */
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "erofs/writer.h"

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
	if (tw->opts.separate_data && (r = tw_open_blob(tw)) < 0) {
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
		tw->fragments = tw->opts.fragments > 0 ||
				(!tw->opts.fragments && codec_fragments(&tw->zspec));
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
	if (tw->opts.nbases && (r = tw_load_bases(tw)) < 0) {
		tw_free(tw);
		return r;
	}
	*out = tw;
	return 0;
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
	free(tw->place);
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

static int commit(struct tree_writer *tw)
{
	int r = outfile_commit(&tw->out, tw->image_path);
	return r < 0 ? anole_err(tw->err, -r, "%s: cannot rename into place: %s", tw->image_path,
				 strerror(-r))
		     : 0;
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
	if (tw->frag_len && ((r = tw_reorder_fragments(tw)) < 0 || (r = tw_add_packed_inode(tw)) < 0))
		return r;
	if (tw->zp && (r = zpipe_drain(tw->zp)) < 0)
		return r;
	if (tw->zp)
		zpipe_stop(tw->zp);
	if ((r = tw_write_cold_tails(tw)) < 0)
		return r;
	tw_progress(tw, "metadata", true);
	for (size_t i = 0; i < tw->ninodes; i++)
		xattr_set_use(tw->xt, tw->inodes[i]->xattr_set);
	if ((r = xattr_table_finalize(tw->xt)) < 0)
		return anole_err(tw->err, -r, "out of memory");
	if ((r = tw_sort_dirs(tw)) < 0)
		return r;
	tw_choose_epoch(tw, &l);

	bool blob = tw->data_base && tw->next_blk > tw->data_base;
	if (blob && (r = tw_seal_blob(tw)) < 0)
		return r;
	if (tw->data_base && (r = tw_write_devices(tw, blob)) < 0)
		return r;
	/* with data blobs, metadata starts after the device table */
	l.late_blk = tw->data_base ? DEVT_BLOCK + tw_devt_blocks(tw) : tw->next_blk;
	uint32_t incompat = 0;
	if ((r = tw_layout(tw, &l, &incompat)) < 0)
		return r;
	uint64_t xattr_blkaddr = l.late_blk;
	uint32_t shared = xattr_shared_size(tw->xt);
	uint64_t meta_blkaddr = xattr_blkaddr + DIV_ROUND_UP(shared, tw->blksz);
	if (!shared)
		xattr_blkaddr = 0;

	_cleanup_free_ uint32_t *order = NULL;
	uint64_t meta_blocks = 0;
	if ((r = tw_place_inodes(tw, &order, &meta_blocks)) < 0)
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
	if ((r = tw_write_inodes(tw, order, meta_blkaddr, &l)) < 0)
		return r;
	if ((r = tw_write_superblock(tw, &l, meta_blkaddr, xattr_blkaddr, blocks, incompat)) < 0)
		return r;
	if (ftruncate(tw->out.fd, (off_t)(blocks << tw->blkbits)) < 0)
		return anole_err(tw->err, errno, "%s: %s", tw->image_path, strerror(errno));
	/* the blob first: an image never names a blob that is not there */
	if (blob && (r = tw_commit_blob(tw)) < 0)
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
