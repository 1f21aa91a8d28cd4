/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The writer's file data: flat files (blocks and a tail, inline or not),
 * chunked files (sparse, with a chunk map), the spool, and handing
 * compressed files to the pipeline (lib/erofs/zpipe.c).
 */
#include <zstd.h>

#include "anole/erofs_fs.h"
#include "erofs/writer.h"
#include "erofs/zpipe.h"
#include "erofs/cdc.h"

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
		 * other data (tw_write_cold_tails), away from data that is read */
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
			return tw_frag_add_file(tw, ino, fd, path);
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

/* The blocks of small files write_flat kept out of the metadata. */
int tw_write_cold_tails(struct tree_writer *tw)
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

