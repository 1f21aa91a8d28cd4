/* SPDX-License-Identifier: Apache-2.0 */
/*
 * anole_export(): an image's tree as a POSIX pax tar, written by libarchive.
 *
 * The walk uses only the public reader API, depth first in the on-disk
 * (byte-sorted) order of every directory, so the same image always gives
 * the same bytes: no clock, no user or group name lookups, xattrs sorted
 * by name, and names encoded the same whatever the caller's locale.
 *
 * Entries: "./" for the root, then "./PATH". Hard links after the first
 * name become hardlink entries; files with holes become GNU 1.0 sparse
 * entries (what GNU tar writes and reads); sockets, which tar cannot hold,
 * are left out with one warning. File data streams through a 1 MiB buffer.
 */
#include <fcntl.h>
#include <locale.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "util/dyn_archive.h"
#include "util/util.h"

#define DATA_CHUNK (1u << 20)
/* Holes are fed to libarchive (which skips them) from a read-only zero
 * mapping: address space only, no memory behind it. archive_write_data()
 * takes at most INT_MAX bytes a call, so a 1 PiB hole is 2^20 calls. */
#define HOLE_CHUNK ((size_t)1 << 30)
/* No filesystem anole builds from holds bigger files; past this a (most
 * likely corrupt) size would keep us feeding holes for minutes. */
#define MAX_FILE_SIZE ((uint64_t)1 << 53)

/* nid -> index of the first path (hard links) or just membership
 * (directories seen), open addressing. */
struct nid_map {
	uint64_t *nids; /* stored as nid + 1; 0 = empty */
	char **paths;   /* NULL for a plain set */
	size_t n, cap;
};

struct run {
	uint64_t off, len;
};

struct xa {
	char *name;
	void *value;
	size_t size;
	size_t seq; /* order met: the first of equal names wins */
};

struct exporter {
	struct anole_image *img;
	struct anole_error *err;
	const struct anole_export_options *opts;
	const char *out;     /* as given, for messages */
	int fd;
	int write_errno;     /* the output's write error, if any */
	bool discard;        /* failed: libarchive's last words go nowhere */
	struct archive *a;
	struct archive_entry *e;
	struct strbuf path;  /* "./REL" of the current entry ("." for the root) */
	struct nid_map links, dirs;
	struct run *runs;
	size_t nruns, rcap;
	struct xa *xas;
	size_t nxa, xcap;
	bool xa_oom;
	char *buf;
	const void *zeros;
	size_t zeros_len;
	bool zeros_mapped;
	uint64_t sockets;
	char *first_socket;
};

/* ---- messages ---------------------------------------------------------- */

/* The current path with unprintable bytes escaped, for one-line messages. */
static const char *shown(struct exporter *x, struct strbuf *tmp)
{
	const char *p = x->path.buf ? x->path.buf : ".";
	if (p[0] == '.' && p[1] == '/')
		p += 2;
	if (!*p || !strcmp(p, "."))
		return ".";
	escape_name(p, strlen(p), tmp);
	return tmp->buf ? tmp->buf : "?";
}

/* A reader call failed on the current path: keep the reader's reason
 * (naming the nid and offset) and put the path in front. */
static int read_failed(struct exporter *x, int r)
{
	if (x->err->code)
		return r;
	struct strbuf tmp = {0};
	const struct anole_error *ie = anole_image_error(x->img);
	int code = ie->code ? ie->code : (r < 0 ? -r : EIO);
	anole_err(x->err, code, "%s: %s", shown(x, &tmp), ie->code ? ie->msg : strerror(code));
	strbuf_release(&tmp);
	return -code;
}

static int corrupt(struct exporter *x, const char *what)
{
	struct strbuf tmp = {0};
	int r = anole_err(x->err, EFSCORRUPTED, "%s: corrupt image: %s", shown(x, &tmp), what);
	strbuf_release(&tmp);
	return r;
}

/* libarchive refused something: a write error of ours, or its own. */
static int archive_failed(struct exporter *x, const char *what)
{
	if (x->err->code)
		return -x->err->code;
	if (x->write_errno)
		return anole_err(x->err, x->write_errno, "%s: cannot write: %s",
				 strcmp(x->out, "-") ? x->out : "standard output",
				 strerror(x->write_errno));
	struct strbuf tmp = {0};
	int e = archive_errno(x->a) > 0 ? archive_errno(x->a) : EIO;
	const char *why = archive_error_string(x->a);
	int r = anole_err(x->err, e, "%s: cannot %s: %s", shown(x, &tmp), what,
			  why ? why : strerror(e));
	strbuf_release(&tmp);
	return r;
}

static int oom(struct exporter *x)
{
	return anole_err(x->err, ENOMEM, "out of memory");
}

/* ---- small tables ------------------------------------------------------ */

static size_t nid_slot(const struct nid_map *m, uint64_t nid)
{
	uint64_t h = (nid + 1) * 0x9e3779b97f4a7c15ull;
	size_t i = (size_t)(h >> 20) & (m->cap - 1);
	while (m->nids[i] && m->nids[i] != nid + 1)
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* The slot's path (or "" for sets) when @nid is present, else NULL. */
static const char *nid_find(const struct nid_map *m, uint64_t nid)
{
	if (!m->n)
		return NULL;
	size_t i = nid_slot(m, nid);
	if (!m->nids[i])
		return NULL;
	return m->paths ? m->paths[i] : "";
}

static int nid_add(struct nid_map *m, uint64_t nid, const char *path, bool with_paths)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct nid_map g = {.cap = m->cap ? m->cap * 2 : 256};
		g.nids = calloc(g.cap, sizeof(*g.nids));
		if (with_paths)
			g.paths = calloc(g.cap, sizeof(*g.paths));
		if (!g.nids || (with_paths && !g.paths)) {
			free(g.nids);
			free(g.paths);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->nids[i])
				continue;
			size_t j = nid_slot(&g, m->nids[i] - 1);
			g.nids[j] = m->nids[i];
			if (with_paths)
				g.paths[j] = m->paths[i];
		}
		g.n = m->n;
		free(m->nids);
		free(m->paths);
		*m = g;
	}
	size_t i = nid_slot(m, nid);
	if (with_paths && path && !(m->paths[i] = strdup(path)))
		return -ENOMEM;
	m->nids[i] = nid + 1;
	m->n++;
	return 0;
}

static void nid_free(struct nid_map *m)
{
	if (m->paths)
		for (size_t i = 0; i < m->cap; i++)
			free(m->paths[i]);
	free(m->paths);
	free(m->nids);
}

/* ---- output ------------------------------------------------------------ */

static la_ssize_t out_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct exporter *x = ctx;
	if (x->discard)
		return (la_ssize_t)len;
	int r = write_full(x->fd, buf, len);
	if (r < 0) {
		x->write_errno = -r;
		archive_set_error(a, -r, "%s", strerror(-r));
		return -1;
	}
	return (la_ssize_t)len;
}

/* ---- attributes -------------------------------------------------------- */

static int collect_xattr(void *ctx, const char *name, const void *value, size_t size)
{
	struct exporter *x = ctx;
	struct xa *xas = array_grow(x->xas, &x->xcap, x->nxa + 1, sizeof(*xas), 16);
	if (!xas)
		goto oom;
	x->xas = xas;
	struct xa *v = &x->xas[x->nxa];
	v->name = strdup(name);
	v->value = malloc(size ? size : 1);
	if (!v->name || !v->value) {
		free(v->name);
		free(v->value);
		goto oom;
	}
	memcpy(v->value, value, size);
	v->size = size;
	v->seq = x->nxa++;
	return 0;
oom:
	x->xa_oom = true;
	return -ENOMEM;
}

static int cmp_xa(const void *a, const void *b)
{
	const struct xa *p = a, *q = b;
	int c = strcmp(p->name, q->name);
	return c ? c : (p->seq > q->seq) - (p->seq < q->seq);
}

static void clear_xattrs(struct exporter *x)
{
	for (size_t i = 0; i < x->nxa; i++) {
		free(x->xas[i].name);
		free(x->xas[i].value);
	}
	x->nxa = 0;
}

static uint32_t le(const uint8_t *p, int n)
{
	uint32_t v = 0;
	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* A system.posix_acl_* value (version 2: 4-byte header, then 8-byte
 * entries: tag, perm, id, little endian) also as libarchive ACL entries,
 * which pax writes as SCHILY.acl.access/default: tar --acls sets ACLs from
 * those (and would reset ACLs without them). libarchive keeps the access
 * ACL's user::, group:: and other:: in the mode, so with a mask the
 * header's group bits are group::, as bsdtar writes them; setting the ACL
 * restores the mode. */
static int add_acl(struct exporter *x, int type, const uint8_t *v, size_t size)
{
	if (size < 4 || (size - 4) % 8 || le(v, 4) != 2)
		return corrupt(x, "malformed POSIX ACL xattr");
	for (size_t off = 4; off < size; off += 8) {
		uint32_t tag = le(v + off, 2), perm = le(v + off + 2, 2), id = le(v + off + 4, 4);
		int aetag;
		switch (tag) {
		case 0x01: aetag = ARCHIVE_ENTRY_ACL_USER_OBJ; break;
		case 0x02: aetag = ARCHIVE_ENTRY_ACL_USER; break;
		case 0x04: aetag = ARCHIVE_ENTRY_ACL_GROUP_OBJ; break;
		case 0x08: aetag = ARCHIVE_ENTRY_ACL_GROUP; break;
		case 0x10: aetag = ARCHIVE_ENTRY_ACL_MASK; break;
		case 0x20: aetag = ARCHIVE_ENTRY_ACL_OTHER; break;
		default: return corrupt(x, "malformed POSIX ACL xattr");
		}
		if (perm & ~7u)
			return corrupt(x, "malformed POSIX ACL xattr");
		bool named = tag == 0x02 || tag == 0x08;
		/* libarchive's qualifier is an int: larger ids go as their
		 * decimal name, which tar reads as the number */
		char name[16];
		snprintf(name, sizeof(name), "%u", id);
		if (archive_entry_acl_add_entry(x->e, type, (int)perm, aetag,
						named && id <= INT32_MAX ? (int)id : -1,
						named && id > INT32_MAX ? name : NULL) != ARCHIVE_OK)
			return corrupt(x, "malformed POSIX ACL xattr");
	}
	return 0;
}

/* Every xattr of @ino, sorted by name, onto the entry. POSIX ACLs go both
 * as the system.posix_acl_* xattrs they are on disk and as ACLs. A name
 * stored twice counts once, with its first value, as the kernel reads it. */
static int add_xattrs(struct exporter *x, const struct anole_inode *ino)
{
	x->xa_oom = false;
	int r = anole_xattrs(x->img, ino, collect_xattr, x);
	if (r < 0 && x->xa_oom) {
		clear_xattrs(x);
		return oom(x);
	}
	if (r < 0) {
		clear_xattrs(x);
		return read_failed(x, r);
	}
	if (x->nxa > 1)
		qsort(x->xas, x->nxa, sizeof(*x->xas), cmp_xa);
	for (size_t i = 0; i < x->nxa; i++) {
		if (i && !strcmp(x->xas[i].name, x->xas[i - 1].name))
			continue;
		archive_entry_xattr_add_entry(x->e, x->xas[i].name, x->xas[i].value,
					      x->xas[i].size);
		int type = !strcmp(x->xas[i].name, "system.posix_acl_access")
				   ? ARCHIVE_ENTRY_ACL_TYPE_ACCESS
			   : !strcmp(x->xas[i].name, "system.posix_acl_default")
				   ? ARCHIVE_ENTRY_ACL_TYPE_DEFAULT
				   : 0;
		if (type && (r = add_acl(x, type, x->xas[i].value, x->xas[i].size)) < 0) {
			clear_xattrs(x);
			return r;
		}
	}
	clear_xattrs(x);
	return 0;
}

/* pax writes "SEC.FRACTION" with the sign of SEC for the whole value (what
 * GNU tar reads), while anole keeps nsec in [0, 1e9) below SEC. Convert;
 * times strictly between -1 s and 0 have no such form (libarchive cannot
 * write "-0.x") and become -1 s. */
static void set_mtime(struct archive_entry *e, const struct anole_inode *ino)
{
	int64_t sec = ino->mtime;
	long nsec = (long)ino->mtime_nsec;
	if (sec < 0 && nsec > 0) {
		if (sec == -1) {
			nsec = 0;
		} else {
			sec += 1;
			nsec = 1000000000L - nsec;
		}
	}
	archive_entry_set_mtime(e, (time_t)sec, nsec);
}

/* ---- file data --------------------------------------------------------- */

static int add_run(struct exporter *x, uint64_t off, uint64_t len)
{
	if (x->nruns && x->runs[x->nruns - 1].off + x->runs[x->nruns - 1].len == off) {
		x->runs[x->nruns - 1].len += len;
		return 0;
	}
	struct run *runs = array_grow(x->runs, &x->rcap, x->nruns + 1, sizeof(*runs), 16);
	if (!runs)
		return oom(x);
	x->runs = runs;
	x->runs[x->nruns++] = (struct run){off, len};
	return 0;
}

/* The data runs of a regular file; *sparse when it has any hole. */
static int map_file(struct exporter *x, const struct anole_inode *ino, bool *sparse)
{
	x->nruns = 0;
	*sparse = false;
	for (uint64_t off = 0; off < ino->size;) {
		bool hole;
		uint64_t end;
		int r = anole_map(x->img, ino, off, &hole, &end);
		if (r < 0)
			return read_failed(x, r);
		if (hole)
			*sparse = true;
		else if ((r = add_run(x, off, end - off)) < 0)
			return r;
		off = end;
	}
	return 0;
}

static int write_zeros(struct exporter *x, uint64_t len)
{
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)x->zeros_len);
		la_ssize_t w = archive_write_data(x->a, x->zeros, n);
		if (w < 0 || (size_t)w != n)
			return archive_failed(x, "write data");
		len -= n;
	}
	return 0;
}

static int write_data(struct exporter *x, const struct anole_inode *ino, uint64_t off,
		      uint64_t len)
{
	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)DATA_CHUNK);
		ssize_t got = anole_pread(x->img, ino, x->buf, n, off);
		if (got < 0)
			return read_failed(x, (int)got);
		if ((size_t)got != n)
			return corrupt(x, "short read");
		la_ssize_t w = archive_write_data(x->a, x->buf, n);
		if (w < 0 || (size_t)w != n)
			return archive_failed(x, "write data");
		off += n;
		len -= n;
	}
	return 0;
}

/* The whole logical stream: libarchive stores the data runs it was told
 * of and skips the holes between them. */
static int write_file(struct exporter *x, const struct anole_inode *ino)
{
	uint64_t pos = 0;
	int r;
	for (size_t i = 0; i < x->nruns; i++) {
		if ((r = write_zeros(x, x->runs[i].off - pos)) < 0 ||
		    (r = write_data(x, ino, x->runs[i].off, x->runs[i].len)) < 0)
			return r;
		pos = x->runs[i].off + x->runs[i].len;
	}
	return write_zeros(x, ino->size - pos);
}

/* ---- the walk ---------------------------------------------------------- */

static int export_dir(struct exporter *x, const struct anole_inode *dir, int depth);

static int note_socket(struct exporter *x)
{
	if (!x->sockets++ && !(x->first_socket = strdup(x->path.buf)))
		return oom(x);
	return 0;
}

/* Out of line: its buffer must not sit in every frame of the recursion. */
static __attribute__((noinline)) int set_symlink(struct exporter *x, struct archive_entry *e,
						 const struct anole_inode *ino)
{
	char target[4096];
	int r = anole_readlink(x->img, ino, target, sizeof(target));
	if (r < 0)
		return read_failed(x, r);
	archive_entry_copy_symlink(e, target);
	return 0;
}

static int export_inode(struct exporter *x, const struct anole_inode *ino, int depth)
{
	struct archive_entry *e = x->e;
	uint32_t type = ino->mode & S_IFMT;
	bool linked = type != S_IFDIR && ino->nlink > 1;
	bool sparse = false;
	int r;

	switch (type) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK: case S_IFIFO:
		break;
	case S_IFSOCK:
		return note_socket(x);
	default:
		return corrupt(x, "unknown file type");
	}

	archive_entry_clear(e);
	archive_entry_copy_pathname(e, x->path.buf);
	archive_entry_set_mode(e, ino->mode);
	archive_entry_set_uid(e, ino->uid);
	archive_entry_set_gid(e, ino->gid);
	set_mtime(e, ino);

	const char *first = linked ? nid_find(&x->links, ino->nid) : NULL;
	if (first) {
		archive_entry_copy_hardlink(e, first);
		archive_entry_set_size(e, 0);
		if (archive_write_header(x->a, e) < ARCHIVE_WARN)
			return archive_failed(x, "write the tar header");
		return 0;
	}
	if (linked && nid_add(&x->links, ino->nid, x->path.buf, true) < 0)
		return oom(x);

	if ((r = add_xattrs(x, ino)) < 0)
		return r;
	switch (type) {
	case S_IFREG:
		if (ino->size > MAX_FILE_SIZE)
			return corrupt(x, "file larger than 8 PiB");
		archive_entry_set_size(e, (la_int64_t)ino->size);
		if ((r = map_file(x, ino, &sparse)) < 0)
			return r;
		if (sparse) {
			for (size_t i = 0; i < x->nruns; i++)
				archive_entry_sparse_add_entry(e, (la_int64_t)x->runs[i].off,
							       (la_int64_t)x->runs[i].len);
			if (!x->nruns) /* all hole: one empty run marks the end */
				archive_entry_sparse_add_entry(e, (la_int64_t)ino->size, 0);
		}
		break;
	case S_IFLNK:
		if ((r = set_symlink(x, e, ino)) < 0)
			return r;
		break;
	case S_IFCHR:
	case S_IFBLK:
		archive_entry_set_rdevmajor(e, major(ino->rdev));
		archive_entry_set_rdevminor(e, minor(ino->rdev));
		break;
	}

	if (archive_write_header(x->a, e) < ARCHIVE_WARN)
		return archive_failed(x, "write the tar header");
	if (type == S_IFREG && (r = write_file(x, ino)) < 0)
		return r;
	if (type == S_IFDIR)
		return export_dir(x, ino, depth + 1);
	return 0;
}

struct dent {
	uint64_t nid;
	char *name;
};
struct dent_list {
	struct dent *v;
	size_t n, cap;
	bool oom;
};

static int collect_dent(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int ft)
{
	struct dent_list *l = ctx;
	(void)ft;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	struct dent *v = array_grow(l->v, &l->cap, l->n + 1, sizeof(*v), 32);
	if (!v)
		goto oom;
	l->v = v;
	if (!(l->v[l->n].name = strndup(name, len)))
		goto oom;
	l->v[l->n++].nid = nid;
	return 0;
oom:
	l->oom = true;
	return -ENOMEM;
}

static void free_dents(struct dent_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

/* The entries of @dir (already written), in on-disk order: byte order,
 * which anole_readdir enforces. */
static int export_dir(struct exporter *x, const struct anole_inode *dir, int depth)
{
	if (depth > ANOLE_MAX_DEPTH)
		return corrupt(x, "directory tree too deep");
	if (nid_find(&x->dirs, dir->nid))
		return corrupt(x, "directory reached twice (a loop)");
	if (nid_add(&x->dirs, dir->nid, NULL, false) < 0)
		return oom(x);

	struct dent_list l = {0};
	int r = anole_readdir(x->img, dir, collect_dent, &l);
	if (r < 0)
		r = l.oom ? oom(x) : read_failed(x, r);
	size_t plen = x->path.len;
	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		x->path.len = plen;
		x->path.buf[plen] = 0;
		/* the root is "."; everything else "./REL" */
		if (strbuf_add(&x->path, "/", 1) < 0 ||
		    strbuf_add(&x->path, l.v[i].name, strlen(l.v[i].name)) < 0) {
			r = oom(x);
			break;
		}
		struct anole_inode ino;
		if (l.v[i].nid == dir->nid)
			r = corrupt(x, "entry points to its own directory");
		else if ((r = anole_inode_read(x->img, l.v[i].nid, &ino)) < 0)
			r = read_failed(x, r);
		else
			r = export_inode(x, &ino, depth);
	}
	if (r >= 0) {
		x->path.len = plen;
		x->path.buf[plen] = 0;
	}
	free_dents(&l);
	return r;
}

/* ---- output file ------------------------------------------------------- */

struct target {
	int fd;
	bool own;            /* we opened it */
	bool atomic;         /* a regular file: out, committed at the end */
	struct outfile out;
};

static int open_target(const char *out, struct target *t, struct anole_error *err)
{
	*t = (struct target){.fd = -1, .out = {.fd = -1}};
	if (!strcmp(out, "-")) {
		fflush(stdout);
		t->fd = STDOUT_FILENO;
		return 0;
	}
	struct stat st;
	if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			return anole_err(err, EISDIR, "%s: is a directory", out);
		/* a device or a pipe: write into it, never replace it */
		t->fd = open(out, O_WRONLY | O_CLOEXEC | O_NOCTTY);
		if (t->fd < 0)
			return anole_err(err, errno, "%s: %s", out, strerror(errno));
		t->own = true;
		return 0;
	}
	int r = outfile_open(&t->out, out);
	if (r < 0)
		return anole_err(err, -r, "%s: cannot create: %s", out, strerror(-r));
	t->fd = t->out.fd;
	t->atomic = true;
	return 0;
}

/* Put the finished archive under its name (atomically replacing what was
 * there) or, on failure, make it vanish. */
static int close_target(const char *out, struct target *t, bool ok, struct anole_error *err)
{
	int r = 0;
	if (t->atomic) {
		if (ok && (r = outfile_commit(&t->out, out)) < 0)
			r = anole_err(err, -r, "%s: cannot rename into place: %s", out, strerror(-r));
		outfile_close(&t->out);
	} else if (t->own && t->fd >= 0 && close(t->fd) < 0 && ok) {
		r = anole_err(err, errno, "%s: cannot write: %s", out, strerror(errno));
	}
	t->fd = -1;
	return r;
}

/* ---- entry point ------------------------------------------------------- */

static int setup_archive(struct exporter *x)
{
	x->a = archive_write_new();
	x->e = archive_entry_new();
	if (!x->a || !x->e)
		return oom(x);
	/* Full pax: every entry carries its mtime with nanoseconds. Binary
	 * header strings: names are bytes, whatever the locale. Xattrs as
	 * SCHILY.xattr.NAME, the keys GNU tar, star and libarchive read. */
	if (archive_write_set_format_pax(x->a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(x->a) != ARCHIVE_OK ||
	    archive_write_set_format_option(x->a, "pax", "xattrheader", "SCHILY") != ARCHIVE_OK ||
	    archive_write_open2(x->a, x, NULL, out_write, NULL, NULL) != ARCHIVE_OK)
		return archive_failed(x, "start the tar");
	return 0;
}

int anole_export(struct anole_image *img, const char *out, const struct anole_export_options *opts,
		 struct anole_error *err)
{
	static const struct anole_export_options defaults;
	struct exporter x = {.img = img, .err = err, .opts = opts ? opts : &defaults,
			     .out = out, .fd = -1};
	struct target t;
	struct anole_inode root;
	/* before the output exists: nothing to undo */
	int r = anole_archive_load(err);
	if (r < 0)
		return r;
	r = open_target(out, &t, err);
	if (r < 0)
		return r;
	/* libarchive encodes names from the thread's LC_CTYPE: UTF-8 names
	 * (the usual ones) go into pax "path" records as they are, any other
	 * bytes as hdrcharset=BINARY. Fix the locale so the output does not
	 * depend on the caller's. */
	locale_t base = duplocale(LC_GLOBAL_LOCALE), utf8 = (locale_t)0, saved = (locale_t)0;
	if (base && !(utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", base)))
		freelocale(base);
	if (utf8)
		saved = uselocale(utf8);
	x.fd = t.fd;
	x.buf = malloc(DATA_CHUNK);
	for (size_t len = HOLE_CHUNK; len >= DATA_CHUNK && !x.zeros; len >>= 4) {
		void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
		if (m != MAP_FAILED) {
			x.zeros = m;
			x.zeros_len = len;
			x.zeros_mapped = true;
		}
	}
	if (!x.zeros) {
		x.zeros = calloc(1, DATA_CHUNK);
		x.zeros_len = DATA_CHUNK;
	}
	if (!x.buf || !x.zeros || strbuf_add(&x.path, ".", 1) < 0) {
		r = oom(&x);
		goto out;
	}
	if ((r = setup_archive(&x)) < 0)
		goto out;
	r = anole_inode_read(img, anole_image_info(img)->root_nid, &root);
	if (r < 0)
		r = read_failed(&x, r);
	else if (!S_ISDIR(root.mode))
		r = corrupt(&x, "root is not a directory");
	else
		r = export_inode(&x, &root, -1); /* the root's entries are at depth 0 */
	if (r >= 0 && archive_write_close(x.a) != ARCHIVE_OK)
		r = archive_failed(&x, "finish the tar");
out:
	if (x.a) {
		if (r < 0) {
			/* Nothing more reaches the output. Marked failed, close
			 * skips the rest of the entry; it still has to run:
			 * libarchive 3.6 frees its block buffer there, not in
			 * archive_write_free(). */
			x.discard = true;
			archive_write_fail(x.a);
			archive_write_close(x.a);
		}
		archive_write_free(x.a);
	}
	if (x.e)
		archive_entry_free(x.e);
	if (utf8) {
		uselocale(saved);
		freelocale(utf8);
	}
	int c = close_target(out, &t, r >= 0, err);
	if (r >= 0)
		r = c;
	if (r >= 0 && x.sockets && !x.opts->quiet) {
		struct strbuf s = {0};
		const char *p = x.first_socket + 2;
		escape_name(p, strlen(p), &s);
		fprintf(stderr, "anole: warning: left out %llu socket%s (tar cannot store "
				"sockets): %s%s\n",
			(unsigned long long)x.sockets, x.sockets > 1 ? "s" : "", s.buf,
			x.sockets > 1 ? " and others" : "");
		strbuf_release(&s);
	}
	free(x.first_socket);
	nid_free(&x.links);
	nid_free(&x.dirs);
	free(x.runs);
	free(x.xas);
	free(x.buf);
	if (x.zeros_mapped)
		munmap((void *)x.zeros, x.zeros_len);
	else
		free((void *)x.zeros);
	strbuf_release(&x.path);
	return r;
}
