/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One layer entry's inode (mode, owner, times, xattrs) and its data, spooled
 * for the writer; sparse entries keep their holes. See layers.c.
 */
#include "source/layers_int.h"

/* Same name twice in one header: the later wins (as pax says). An empty
 * value is an empty xattr, as GNU tar and containerd (which reads Go's
 * PAXRecords) restore it; umoci 0.4.7 drops it (Go's Header.Xattrs
 * skips empty values). */
static int entry_xattrs(struct layers *l, struct archive_entry *e, struct tinode *ino)
{
	struct xa {
		const char *name;
		const void *value;
		size_t size;
	} v[1024];
	size_t n = 0;
	bool has_acl = false;
	int r;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &v[n].name, &v[n].value, &v[n].size) == ARCHIVE_OK) {
		if (!v[n].name)
			continue;
		if (++n == ARRAY_SIZE(v))
			return anole_err(l->err, E2BIG, "%s: '%s': too many xattrs", l->what,
					 l->path.buf);
	}
	for (size_t i = 0; i < n; i++) {
		bool later = false;
		for (size_t j = i + 1; j < n && !later; j++)
			later = !strcmp(v[i].name, v[j].name);
		if (later)
			continue;
		has_acl |= !strncmp(v[i].name, "system.posix_acl_", 17);
		if ((r = xattr_set_add(tw_xattrs(l->tw), &l->xs, v[i].name, v[i].value, v[i].size,
				       l->err, lm_entry_name(l, l->path.buf))) < 0)
			return r;
	}
	if (!has_acl && (r = source_acl_xattrs(tw_xattrs(l->tw), &l->xs, e, &ino->mode, l->err,
					       lm_entry_name(l, l->path.buf))) < 0)
		return r;
	r = xattr_set_intern(tw_xattrs(l->tw), &l->xs, &ino->xattr_set);
	return r < 0 ? anole_err(l->err, -r, "out of memory") : 0;
}

int lm_fill_inode(struct layers *l, struct archive_entry *e, struct tinode *ino)
{
	ino->mode = archive_entry_mode(e);
	ino->uid = (uint32_t)archive_entry_uid(e);
	ino->gid = (uint32_t)archive_entry_gid(e);
	ino->mtime = archive_entry_mtime(e);
	ino->mtime_nsec = (uint32_t)archive_entry_mtime_nsec(e);
	if (ino->mtime_nsec >= 1000000000u)
		ino->mtime_nsec = 0;
	/* libarchive reads pax "-5.25" as -5 s and 0.25 s, meaning -5.25 s */
	if (ino->mtime < 0 && ino->mtime_nsec) {
		ino->mtime -= 1;
		ino->mtime_nsec = 1000000000u - ino->mtime_nsec;
	}
	if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX ||
	    archive_entry_gid(e) < 0 || archive_entry_gid(e) > UINT32_MAX)
		return anole_err(l->err, ERANGE, "%s: '%s': uid or gid out of range", l->what,
				 l->path.buf);
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		if (archive_entry_size(e) < 0)
			return anole_err(l->err, EINVAL, "%s: '%s': negative size", l->what,
					 l->path.buf);
		ino->size = (uint64_t)archive_entry_size(e);
		if (ino->size > MAX_FILE_SIZE)
			return anole_err(l->err, EFBIG,
					 "%s: '%s': %llu bytes, more than the 2^56 anole stores "
					 "in a file", l->what, l->path.buf,
					 (unsigned long long)ino->size);
		break;
	case AE_IFDIR:
	case AE_IFIFO:
		break;
	case AE_IFCHR:
	case AE_IFBLK:
		ino->rdev = (uint32_t)makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
		break;
	case AE_IFLNK: {
		const char *t = source_entry_symlink(e);
		if (!t || !*t)
			return anole_err(l->err, EINVAL, "%s: '%s': symlink without a target",
					 l->what, l->path.buf);
		size_t tlen = strlen(t);
		if (tlen > 4095)
			return anole_err(l->err, ENAMETOOLONG, "%s: '%s': symlink target too long",
					 l->what, l->path.buf);
		if (!(ino->u.symlink = strdup(t)))
			return anole_err(l->err, ENOMEM, "out of memory");
		ino->size = tlen;
		break;
	}
	default:
		return anole_err(l->err, EINVAL, "%s: '%s': unsupported entry type 0%o", l->what,
				 l->path.buf, archive_entry_filetype(e));
	}
	return entry_xattrs(l, e, ino);
}

int lm_spool_fd_for(struct layers *l, uint64_t size, int *fd)
{
	if (size <= SPOOL_MEM_MAX) {
		if (l->spool_fd < 0 && (l->spool_fd = memfd_create("anole-spool", MFD_CLOEXEC)) < 0)
			return anole_err(l->err, errno, "cannot create a spool file: %s",
					 strerror(errno));
		*fd = l->spool_fd;
		return 0;
	}
	if (l->big_fd < 0 && (l->big_fd = tmpfile_unnamed("/var/tmp")) < 0)
		return anole_err(l->err, -l->big_fd, "cannot create a temporary file: %s",
				 strerror(-l->big_fd));
	*fd = l->big_fd;
	return 0;
}

/* Data runs of a sparse entry (merged, clipped to the size). */
int lm_sparse_runs(struct archive_entry *e, uint64_t size, struct data_extent **out,
		   size_t *n)
{
	*out = NULL;
	*n = 0;
	int count = archive_entry_sparse_reset(e);
	if (count <= 0)
		return 0;
	struct data_extent *v = calloc((size_t)count, sizeof(*v));
	if (!v)
		return -ENOMEM;
	la_int64_t off, len;
	while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) {
		if (off < 0 || len <= 0 || (uint64_t)off >= size)
			continue;
		uint64_t o = (uint64_t)off, ln = MIN((uint64_t)len, size - o);
		if (*n && v[*n - 1].off + v[*n - 1].len >= o) {
			uint64_t end = MAX(v[*n - 1].off + v[*n - 1].len, o + ln);
			v[*n - 1].len = end - v[*n - 1].off;
		} else if (*n < (size_t)count) {
			v[(*n)++] = (struct data_extent){o, ln};
		}
	}
	*out = v;
	return 0;
}

/* Copy the entry's data to @fd at @base (holes stay holes). */
int lm_copy_entry_data(struct layers *l, struct archive *a, uint64_t size, int fd,
		       uint64_t base, bool sparse)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	uint64_t written = 0, end = 0;
	int r;
	if (sparse && ftruncate(fd, (off_t)base) < 0)
		return anole_err(l->err, errno, "%s: '%s': spool file: %s", l->what,
				 l->path.buf, strerror(errno));
	while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
		if (off < 0 || (uint64_t)off > size || len > size - (uint64_t)off)
			return anole_err(l->err, EINVAL, "%s: '%s': data beyond the file's size",
					 l->what, l->path.buf);
		if (len && (r = pwrite_full(fd, buf, len, base + (uint64_t)off)) < 0)
			return anole_err(l->err, -r, "%s: '%s': spool file: %s", l->what,
					 l->path.buf, strerror(-r));
		written += len;
		end = MAX(end, (uint64_t)off + len);
	}
	if (r != ARCHIVE_EOF)
		return tar_error(l->bs, a, l->path.buf, l->err);
	if (sparse) {
		if (ftruncate(fd, (off_t)(base + size)) < 0)
			return anole_err(l->err, errno, "%s: '%s': spool file: %s", l->what,
					 l->path.buf, strerror(errno));
	} else if (written != size || end != size) {
		return anole_err(l->err, EIO, "%s: '%s': %llu of %llu data bytes", l->what,
				 l->path.buf, (unsigned long long)written, (unsigned long long)size);
	}
	return 0;
}

int lm_store_data(struct layers *l, struct archive *a, struct archive_entry *e,
		  struct tinode *ino)
{
	_cleanup_free_ struct data_extent *ext = NULL;
	size_t next = 0;
	int fd, r;
	if (lm_sparse_runs(e, ino->size, &ext, &next) < 0)
		return anole_err(l->err, ENOMEM, "out of memory");
	if ((r = lm_spool_fd_for(l, ino->size, &fd)) < 0 ||
	    (r = lm_copy_entry_data(l, a, ino->size, fd, 0, ext != NULL)) < 0)
		return r;
	return tw_file_data(l->tw, ino, fd, ext, next, lm_entry_name(l, l->path.buf));
}

