/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE fallback: the same lazy image served by a libfuse3 low-level
 * file system in the worker, for kernels without pre-content events and
 * for users without root. anole's own EROFS reader walks the metadata and
 * decompresses; before it reads a data range the range is fetched and
 * verified into the same cache as the kernel path uses (fetch_wait).
 *
 * The reader is single-threaded per handle, so each FUSE thread borrows a
 * handle from a small pool. FUSE inode numbers are EROFS nids, shifted so
 * that the root is FUSE_ROOT_ID.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/fusefs.h"
#include "serve/worker.h"

#define POOL 8
#define TIMEOUT 86400.0 /* the image never changes */

struct fusefs {
	struct lmount *m;
	struct blob **devblobs; /* in device table order */
	const char **devpaths;
	size_t ndevs;
	uint64_t root_nid;
	pthread_mutex_t lock;
	struct anole_image *pool[POOL];
	int npool;
	struct fuse_session *se;
	pthread_t thread;
	bool running;
};

static int before_read(void *ctx, unsigned int dev, uint64_t off, uint64_t len)
{
	struct fusefs *fs = ctx;
	struct worker *wk = fs->m->wk;
	if (dev >= fs->ndevs)
		return -EIO;
	pthread_mutex_lock(&wk->lock);
	if (fs->m->record)
		trace_note(fs->m, fs->devblobs[dev], off, len);
	if (!fs->devblobs[dev]->complete)
		note_read_locked(wk, fs->devblobs[dev], off, len);
	pthread_mutex_unlock(&wk->lock);
	return fetch_wait(wk, fs->devblobs[dev], off, len);
}

static struct anole_image *img_get(struct fusefs *fs)
{
	pthread_mutex_lock(&fs->lock);
	struct anole_image *img = fs->npool ? fs->pool[--fs->npool] : NULL;
	pthread_mutex_unlock(&fs->lock);
	if (img)
		return img;
	struct anole_image_options o = {.devices = fs->devpaths, .ndevices = fs->ndevs,
					.before_read = before_read, .ctx = fs};
	if (fs->m->local) /* an image file: its own devices, nothing to fetch */
		o = (struct anole_image_options){
			.devices = (const char *const *)fs->m->devpaths,
			.ndevices = fs->m->ndevpaths};
	struct anole_error err = {0};
	/* a blob's path changes when it completes (partial/ to blobs/), under
	 * the worker's lock: open under it too */
	pthread_mutex_lock(&fs->m->wk->lock);
	for (size_t i = 0; i < fs->ndevs; i++)
		fs->devpaths[i] = fs->devblobs[i]->path;
	int r = anole_image_open_with(fs->m->meta_path, &o, &img, &err);
	pthread_mutex_unlock(&fs->m->wk->lock);
	if (r < 0) {
		wlog("%s", err.msg);
		return NULL;
	}
	return img;
}

/* A handle that met an error is closed, not reused: its state is suspect. */
static void img_put(struct fusefs *fs, struct anole_image *img, bool failed)
{
	pthread_mutex_lock(&fs->lock);
	if (!failed && fs->npool < POOL) {
		fs->pool[fs->npool++] = img;
		img = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	anole_image_close(img);
}

static uint64_t to_nid(const struct fusefs *fs, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? fs->root_nid : ino - 2;
}

static fuse_ino_t to_ino(const struct fusefs *fs, uint64_t nid)
{
	return nid == fs->root_nid ? FUSE_ROOT_ID : nid + 2;
}

static void fill_stat(const struct fusefs *fs, const struct anole_inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = to_ino(fs, in->nid);
	st->st_mode = in->mode;
	st->st_nlink = in->nlink;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	st->st_size = (off_t)in->size;
	st->st_rdev = in->rdev;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)DIV_ROUND_UP(in->size, 512);
	st->st_mtim.tv_sec = in->mtime;
	st->st_mtim.tv_nsec = in->mtime_nsec;
	st->st_atim = st->st_ctim = st->st_mtim;
}

#define FS(req) ((struct fusefs *)fuse_req_userdata(req))

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	struct anole_inode in;
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	int r = anole_inode_read(img, to_nid(fs, ino), &in);
	img_put(fs, img, r < 0);
	if (r < 0)
		return (void)fuse_reply_err(req, EIO);
	struct stat st;
	fill_stat(fs, &in, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	struct anole_inode dir, in;
	int r = anole_inode_read(img, to_nid(fs, parent), &dir);
	if (r >= 0)
		r = S_ISDIR(dir.mode) ? anole_lookup_child(img, &dir, name, strlen(name), &in)
				      : -ENOTDIR;
	img_put(fs, img, r < 0);
	if (r < 0)
		return (void)fuse_reply_err(req, r == -ENOTDIR ? ENOTDIR : EIO);
	if (!r)
		return (void)fuse_reply_err(req, ENOENT);
	struct fuse_entry_param e = {.ino = to_ino(fs, in.nid), .attr_timeout = TIMEOUT,
				     .entry_timeout = TIMEOUT};
	fill_stat(fs, &in, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	char buf[4097];
	struct anole_inode in;
	int r = anole_inode_read(img, to_nid(fs, ino), &in);
	if (r >= 0)
		r = anole_readlink(img, &in, buf, sizeof(buf));
	img_put(fs, img, r < 0);
	if (r < 0)
		return (void)fuse_reply_err(req, EIO);
	fuse_reply_readlink(req, buf);
}

struct dirbuf {
	fuse_req_t req;
	struct fusefs *fs;
	char *buf;
	size_t size, used;
	off_t skip, index;
};

static int add_entry(void *ctx, const char *name, size_t namelen, uint64_t nid, unsigned int type)
{
	struct dirbuf *d = ctx;
	if (d->index++ < d->skip)
		return 0;
	char nm[256];
	if (namelen >= sizeof(nm))
		return 0;
	memcpy(nm, name, namelen);
	nm[namelen] = 0;
	/* EROFS file types are DT_* shifted the same way as S_IFMT */
	static const mode_t types[] = {0, S_IFREG, S_IFDIR, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, S_IFLNK};
	struct stat st = {.st_ino = to_ino(d->fs, nid), .st_mode = type < 8 ? types[type] : 0};
	size_t n = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, nm, &st, d->index);
	if (n > d->size - d->used)
		return 1; /* full: the next call resumes at this entry */
	d->used += n;
	return 0;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	struct dirbuf d = {.req = req, .fs = fs, .size = size, .skip = off};
	d.buf = malloc(size);
	struct anole_inode dir;
	int r = d.buf ? anole_inode_read(img, to_nid(fs, ino), &dir) : -ENOMEM;
	if (r >= 0)
		r = anole_readdir(img, &dir, add_entry, &d);
	img_put(fs, img, r < 0);
	if (r < 0)
		fuse_reply_err(req, EIO);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return (void)fuse_reply_err(req, EROFS);
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)fi;
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	_cleanup_free_ char *buf = malloc(MAX(size, 1));
	if (!img || !buf) {
		if (img)
			img_put(fs, img, false);
		return (void)fuse_reply_err(req, img ? ENOMEM : EIO);
	}
	struct anole_inode in;
	ssize_t n = anole_inode_read(img, to_nid(fs, ino), &in);
	if (n >= 0)
		n = anole_pread(img, &in, buf, size, (uint64_t)off);
	if (n < 0)
		wlog("read of nid %llu at %lld: %s", (unsigned long long)to_nid(fs, ino),
		     (long long)off, anole_image_error(img)->msg);
	img_put(fs, img, n < 0);
	if (n < 0)
		return (void)fuse_reply_err(req, EIO);
	fuse_reply_buf(req, buf, (size_t)n);
}

struct xattr_walk {
	const char *want; /* getxattr: this name; listxattr: NULL */
	struct strbuf out;
	bool found;
};

static int xattr_cb(void *ctx, const char *name, const void *value, size_t size)
{
	struct xattr_walk *w = ctx;
	if (!w->want)
		return strbuf_add(&w->out, name, strlen(name) + 1) < 0 ? -ENOMEM : 0;
	if (strcmp(name, w->want))
		return 0;
	w->found = true;
	return strbuf_add(&w->out, value, size) < 0 ? -ENOMEM : 1;
}

static void xattr_reply(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	struct xattr_walk w = {.want = name};
	struct anole_inode in;
	int r = anole_inode_read(img, to_nid(fs, ino), &in);
	if (r >= 0)
		r = anole_xattrs(img, &in, xattr_cb, &w);
	img_put(fs, img, r < 0);
	if (r < 0)
		fuse_reply_err(req, EIO);
	else if (name && !w.found)
		fuse_reply_err(req, ENODATA);
	else if (!size)
		fuse_reply_xattr(req, w.out.len);
	else if (w.out.len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, w.out.buf, w.out.len);
	strbuf_release(&w.out);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	xattr_reply(req, ino, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_reply(req, ino, NULL, size);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct fusefs *fs = FS(req);
	struct anole_image *img = img_get(fs);
	if (!img)
		return (void)fuse_reply_err(req, EIO);
	const struct anole_image_info *i = anole_image_info(img);
	unsigned long bsize = 1ul << i->blkszbits; /* f_blocks counts these */
	struct statvfs sv = {.f_bsize = bsize, .f_frsize = bsize, .f_blocks = i->blocks,
			     .f_files = i->inodes, .f_namemax = 255, .f_flag = ST_RDONLY};
	img_put(fs, img, false);
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
};

static void *loop(void *arg)
{
	struct fusefs *fs = arg;
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (cfg) {
		fuse_loop_cfg_set_max_threads(cfg, 16);
		fuse_session_loop_mt(fs->se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	return NULL;
}

static void fusefs_free(struct fusefs *fs)
{
	for (int i = 0; i < fs->npool; i++)
		anole_image_close(fs->pool[i]);
	free(fs->devblobs);
	free(fs->devpaths);
	free(fs);
}

int fusefs_mount(struct lmount *m, struct blob **devblobs, size_t ndevs, const char *options,
		 struct fusefs **out, struct anole_error *err)
{
	struct fusefs *fs = calloc(1, sizeof(*fs));
	if (!fs || !(fs->devblobs = calloc(MAX(ndevs, 1), sizeof(*fs->devblobs))) ||
	    !(fs->devpaths = calloc(MAX(ndevs, 1), sizeof(*fs->devpaths)))) {
		if (fs)
			fusefs_free(fs);
		return anole_err(err, ENOMEM, "out of memory");
	}
	fs->m = m;
	fs->ndevs = ndevs;
	pthread_mutex_init(&fs->lock, NULL);
	for (size_t i = 0; i < ndevs; i++)
		fs->devblobs[i] = devblobs[i];
	struct anole_image *img = img_get(fs);
	if (!img) {
		fusefs_free(fs);
		return anole_err(err, EIO, "%s: cannot open the metadata image", m->meta_path);
	}
	fs->root_nid = anole_image_info(img)->root_nid;
	img_put(fs, img, false);

	char o[1024];
	snprintf(o, sizeof(o), "ro,default_permissions,fsname=anole,subtype=anole%s%s%s",
		 geteuid() == 0 ? ",allow_other" : "", options && *options ? "," : "",
		 options ? options : "");
	char *argv[] = {"anole", "-o", o, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	fs->se = fuse_session_new(&args, &ops, sizeof(ops), fs);
	if (!fs->se) {
		fusefs_free(fs);
		return anole_err(err, EINVAL, "%s: FUSE session: bad options '%s'", m->mountpoint, o);
	}
	if (fuse_session_mount(fs->se, m->mountpoint) != 0) {
		fuse_session_destroy(fs->se);
		fusefs_free(fs);
		return anole_err(err, EIO, "%s: FUSE mount failed (is /dev/fuse there?)",
				 m->mountpoint);
	}
	if (pthread_create(&fs->thread, NULL, loop, fs)) {
		fuse_session_unmount(fs->se);
		fuse_session_destroy(fs->se);
		fusefs_free(fs);
		return anole_err(err, EAGAIN, "cannot start the FUSE thread");
	}
	fs->running = true;
	*out = fs;
	return 0;
}

void fusefs_unmount(struct fusefs *fs)
{
	if (!fs)
		return;
	if (fs->running) {
		fuse_session_exit(fs->se);
		fuse_session_unmount(fs->se); /* wakes the loop: its /dev/fuse reads end */
		pthread_join(fs->thread, NULL);
	}
	fuse_session_destroy(fs->se);
	fusefs_free(fs);
}
