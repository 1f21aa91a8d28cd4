/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ELF load hints: what the dynamic loader reads to start each program of
 * an image, as ranges of its data blobs. When a program starts, the
 * loader opens its libraries one after another, each a lazy miss and a
 * round trip; which libraries and which of their bytes (headers,
 * .dynamic, hash, symbol, string and version tables, relocations, GOT
 * and data) is fixed by the ELF files themselves. `anole convert`
 * computes it from the image it wrote; the daemon fetches a program's
 * set when the program's first extent is read (docs/FORMAT.md).
 *
 * Only 64-bit little-endian ELF is read. Paths resolve inside the image:
 * RUNPATH (or RPATH) with $ORIGIN, /etc/ld.so.conf and its includes, then
 * the default directories, as ld.so searches without LD_LIBRARY_PATH.
 */
#include <elf.h>
#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "anole/erofs_fs.h"
#include "lazy/hints.h"
#include "util/strmap.h"
#include "util/util.h"

#define MAX_PHDRS 256
#define MAX_SHDRS 8192
#define MAX_DYN 8192
#define MAX_NEEDED 256
#define MAX_CLOSURE ((size_t)1024) /* files one program loads */
#define MAX_LINKS 40
#define MAX_DIRS 64
#define MAX_SPANS_PER_FILE 1024
#define HINT_BUF (1u << 16)

struct span {
	uint64_t off, len;
};

struct blob_span {
	uint64_t dev, off, len;
};

struct elf_file {
	char *path; /* canonical, inside the image */
	struct anole_inode ino;
	uint16_t machine;
	char *needed[MAX_NEEDED];
	size_t nneeded;
	char *runpath; /* RUNPATH, or RPATH when there is none */
	char *interp;
	struct span spans[64]; /* file ranges the loader reads */
	size_t nspans;
	bool program; /* has an interpreter or needs libraries */
	/* computed: where those ranges lie in the blobs, in file order */
	struct blob_span *blob_spans;
	size_t nblob_spans;
	bool mapped;
	uint64_t first_dev, first_off, first_len; /* where its byte 0 lies */
	bool first_known;
	bool bad; /* not ELF, or unreadable */
	size_t index; /* in hints.files */
	/* its interpreter and libraries, found once (NULL: not in the image) */
	bool linked;
	struct elf_file *interp_file, **libs;
	unsigned int seen; /* the closure walk that reached it last */
};

struct hints {
	struct anole_image *img;
	struct elf_file **files;
	size_t nfiles, files_cap;
	struct strmap *by_path; /* canonical path -> index + 1 */
	unsigned int walk;      /* closure walks so far */
	char *dirs[MAX_DIRS];
	size_t ndirs;
	/* before_read capture */
	struct blob_span *cap;
	size_t ncap, capcap;
	bool capturing, capture_first, new_span;
	uint64_t fdev, foff, flen;
	bool fset;
	char *buf; /* HINT_BUF bytes */
};

/* ---- paths inside the image ---------------------------------------------- */

/* Walk again from the root: @path (in @buf) replaces what was left. */
static int restart_walk(struct hints *h, char *buf, size_t size, const char *path,
			struct anole_inode *ino, char *cur, size_t *curlen)
{
	if (snprintf(buf, size, "%s", path) >= (int)size)
		return 0;
	*curlen = 0;
	cur[0] = 0;
	int r = anole_inode_read(h->img, anole_image_info(h->img)->root_nid, ino);
	return r < 0 ? r : 1;
}

/* Resolve @path (absolute) inside the image, following symlinks; the
 * canonical path goes to @out (malloc'd) when asked. 1 when found, 0
 * when not, negative on a bad image. */
static int resolve(struct hints *h, const char *path, struct anole_inode *ino, char **out)
{
	char buf[4096], link[4096], cur[4096], next[8192];
	size_t curlen = 0;
	int links = 0;
	int r = restart_walk(h, buf, sizeof(buf), path, ino, cur, &curlen);
	for (char *p = buf; r > 0;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 1 && p[0] == '.') {
			p = e;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			/* the parent of a canonical path: walk to it again */
			while (curlen && cur[curlen - 1] != '/')
				curlen--;
			cur[curlen ? curlen - 1 : 0] = 0;
			snprintf(next, sizeof(next), "%s%s", cur, e);
			r = restart_walk(h, buf, sizeof(buf), next, ino, cur, &curlen);
			p = buf;
			continue;
		}
		if (!S_ISDIR(ino->mode))
			return 0;
		struct anole_inode dir = *ino;
		if ((r = anole_lookup_child(h->img, &dir, p, n, ino)) <= 0)
			return r;
		if (S_ISLNK(ino->mode)) {
			if (++links > MAX_LINKS)
				return 0;
			if ((r = anole_readlink(h->img, ino, link, sizeof(link))) < 0)
				return r;
			snprintf(next, sizeof(next), "%s%s%s%s", link[0] == '/' ? "" : cur,
				 link[0] == '/' ? "" : "/", link, e);
			r = restart_walk(h, buf, sizeof(buf), next, ino, cur, &curlen);
			p = buf;
			continue;
		}
		if (curlen + 1 + n >= sizeof(cur))
			return 0;
		cur[curlen++] = '/';
		memcpy(cur + curlen, p, n);
		curlen += n;
		cur[curlen] = 0;
		p = e;
	}
	if (r <= 0)
		return r;
	if (out && !(*out = strdup(curlen ? cur : "/")))
		return -ENOMEM;
	return 1;
}

/* ---- reading ELF ------------------------------------------------------------ */

static int read_exact(struct hints *h, const struct anole_inode *ino, void *buf, size_t len,
		      uint64_t off)
{
	if (off > ino->size || len > ino->size - off)
		return -EBADMSG;
	ssize_t n = anole_pread(h->img, ino, buf, len, off);
	return n == (ssize_t)len ? 0 : n < 0 ? (int)n : -EBADMSG;
}

static void add_span(struct elf_file *f, uint64_t off, uint64_t len)
{
	if (!len || off >= f->ino.size || f->nspans == ARRAY_SIZE(f->spans))
		return;
	f->spans[f->nspans++] = (struct span){off, MIN(len, f->ino.size - off)};
}

/* The file offset of virtual address @va, through the PT_LOAD headers. */
static bool va_to_off(const Elf64_Phdr *ph, size_t n, uint64_t va, uint64_t *off)
{
	for (size_t i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && va >= ph[i].p_vaddr &&
		    va - ph[i].p_vaddr < ph[i].p_filesz) {
			*off = ph[i].p_offset + (va - ph[i].p_vaddr);
			return true;
		}
	return false;
}

static char *read_str(struct hints *h, const struct anole_inode *ino, uint64_t off)
{
	char s[1024];
	size_t len = (size_t)MIN((uint64_t)sizeof(s) - 1, ino->size > off ? ino->size - off : 0);
	if (!len || anole_pread(h->img, ino, s, len, off) != (ssize_t)len)
		return NULL;
	s[len] = 0;
	return strlen(s) < len ? strdup(s) : NULL;
}

/* Sections the loader reads: allocated, not code, and not read-only data
 * other than its own tables. */
static bool loader_section(const Elf64_Shdr *s)
{
	if (!(s->sh_flags & SHF_ALLOC) || s->sh_type == SHT_NOBITS ||
	    (s->sh_flags & SHF_EXECINSTR))
		return false;
	return s->sh_type != SHT_PROGBITS || (s->sh_flags & SHF_WRITE);
}

static int parse_elf(struct hints *h, struct elf_file *f)
{
	Elf64_Ehdr eh;
	if (f->ino.size < sizeof(eh) || read_exact(h, &f->ino, &eh, sizeof(eh), 0) < 0 ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || !eh.e_phnum || eh.e_phnum > MAX_PHDRS)
		return -EBADMSG;
	f->machine = eh.e_machine;
	Elf64_Phdr ph[MAX_PHDRS];
	size_t nph = eh.e_phnum;
	if (read_exact(h, &f->ino, ph, nph * sizeof(*ph), eh.e_phoff) < 0)
		return -EBADMSG;
	add_span(f, 0, MAX(eh.e_phoff + nph * sizeof(*ph), sizeof(eh)));
	const Elf64_Phdr *dyn = NULL;
	for (size_t i = 0; i < nph; i++) {
		if (ph[i].p_type == PT_DYNAMIC && !dyn) {
			dyn = &ph[i];
			add_span(f, ph[i].p_offset, ph[i].p_filesz); /* read next, for DT_NEEDED */
		}
		else if (ph[i].p_type == PT_INTERP && ph[i].p_filesz > 1 && !f->interp)
			f->interp = read_str(h, &f->ino, ph[i].p_offset);
	}
	/* the loader's tables, by section when the file keeps its headers */
	bool by_section = false;
	if (eh.e_shnum && eh.e_shnum <= MAX_SHDRS && eh.e_shentsize == sizeof(Elf64_Shdr)) {
		_cleanup_free_ Elf64_Shdr *sh = calloc(eh.e_shnum, sizeof(*sh));
		if (sh && read_exact(h, &f->ino, sh, eh.e_shnum * sizeof(*sh), eh.e_shoff) >= 0) {
			by_section = true;
			for (size_t i = 0; i < eh.e_shnum; i++)
				if (loader_section(&sh[i]))
					add_span(f, sh[i].sh_offset, sh[i].sh_size);
		}
	}
	if (!by_section)
		for (size_t i = 0; i < nph; i++)
			if (ph[i].p_type == PT_DYNAMIC ||
			    (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_W)))
				add_span(f, ph[i].p_offset, ph[i].p_filesz);
	if (!dyn) {
		f->program = f->interp != NULL;
		return 0;
	}
	size_t ndyn = (size_t)MIN(dyn->p_filesz / sizeof(Elf64_Dyn), MAX_DYN);
	_cleanup_free_ Elf64_Dyn *d = calloc(MAX(ndyn, 1), sizeof(*d));
	if (!d)
		return -ENOMEM;
	if (read_exact(h, &f->ino, d, ndyn * sizeof(*d), dyn->p_offset) < 0)
		return -EBADMSG;
	uint64_t strtab = 0, strsz = 0, runpath = UINT64_MAX, rpath = UINT64_MAX;
	bool have_strtab = false;
	for (size_t i = 0; i < ndyn && d[i].d_tag != DT_NULL; i++) {
		if (d[i].d_tag == DT_STRTAB)
			have_strtab = va_to_off(ph, nph, d[i].d_un.d_ptr, &strtab);
		else if (d[i].d_tag == DT_STRSZ)
			strsz = d[i].d_un.d_val;
		else if (d[i].d_tag == DT_RUNPATH)
			runpath = d[i].d_un.d_val;
		else if (d[i].d_tag == DT_RPATH)
			rpath = d[i].d_un.d_val;
	}
	if (!have_strtab)
		return 0;
	for (size_t i = 0; i < ndyn && d[i].d_tag != DT_NULL; i++)
		if (d[i].d_tag == DT_NEEDED && d[i].d_un.d_val < strsz && f->nneeded < MAX_NEEDED) {
			char *s = read_str(h, &f->ino, strtab + d[i].d_un.d_val);
			if (s)
				f->needed[f->nneeded++] = s;
		}
	uint64_t rp = runpath != UINT64_MAX ? runpath : rpath;
	if (rp < strsz)
		f->runpath = read_str(h, &f->ino, strtab + rp);
	f->program = f->interp || f->nneeded;
	return 0;
}

/* ---- blob ranges ------------------------------------------------------------- */

static int capture(void *ctx, unsigned int dev, uint64_t off, uint64_t len)
{
	struct hints *h = ctx;
	if (h->capture_first && !h->fset) {
		h->fdev = dev;
		h->foff = off;
		h->flen = len;
		h->fset = true;
	}
	if (!len || !h->capturing)
		return 0;
	/* the same or the next bytes of the same blob: one span */
	struct blob_span *last = h->ncap && !h->new_span ? &h->cap[h->ncap - 1] : NULL;
	h->new_span = false;
	if (last && last->dev == dev && off >= last->off && off <= last->off + last->len) {
		last->len = MAX(last->len, off + len - last->off);
		return 0;
	}
	if (h->ncap == h->capcap || !h->cap) {
		size_t c = h->capcap ? 2 * h->capcap : 64;
		struct blob_span *n = realloc(h->cap, c * sizeof(*n));
		if (!n)
			return -ENOMEM;
		h->cap = n;
		h->capcap = c;
	}
	h->cap[h->ncap++] = (struct blob_span){dev, off, len};
	return 0;
}

/* The blob spans of @f's loader ranges, in file order, each once. */
static int map_ranges(struct hints *h, struct elf_file *f)
{
	char *buf = h->buf;
	h->ncap = 0;
	h->fset = false;
	h->capture_first = true;
	h->capturing = true;
	if (anole_pread(h->img, &f->ino, buf, 1, 0) == 1 && h->fset) {
		f->first_known = true;
		f->first_dev = h->fdev;
		f->first_off = h->foff;
		f->first_len = h->flen;
	}
	h->capture_first = false;
	for (size_t i = 0; i < f->nspans; i++, h->new_span = true)
		for (uint64_t o = f->spans[i].off; o < f->spans[i].off + f->spans[i].len;) {
			size_t n = (size_t)MIN((uint64_t)HINT_BUF,
					       f->spans[i].off + f->spans[i].len - o);
			if (anole_pread(h->img, &f->ino, buf, n, o) != (ssize_t)n)
				break;
			o += n;
		}
	h->capturing = false;
	size_t n = 0;
	for (size_t i = 0; i < h->ncap && n < MAX_SPANS_PER_FILE; i++) {
		bool seen = false;
		for (size_t j = 0; j < n && !seen; j++)
			seen = h->cap[j].dev == h->cap[i].dev && h->cap[j].off <= h->cap[i].off &&
			       h->cap[i].off + h->cap[i].len <= h->cap[j].off + h->cap[j].len;
		if (!seen)
			h->cap[n++] = h->cap[i];
	}
	if (!(f->blob_spans = malloc(MAX(n, 1) * sizeof(*f->blob_spans))))
		return -ENOMEM;
	memcpy(f->blob_spans, h->cap, n * sizeof(*f->blob_spans));
	f->nblob_spans = n;
	f->mapped = true;
	return 0;
}

/* ---- files and the library search --------------------------------------------- */

static void file_free(struct elf_file *f)
{
	if (!f)
		return;
	free(f->path);
	for (size_t i = 0; i < f->nneeded; i++)
		free(f->needed[i]);
	free(f->runpath);
	free(f->interp);
	free(f->blob_spans);
	free(f->libs);
	free(f);
}

/* The file at canonical @path, parsed once; NULL when it is not ELF or
 * cannot be read. */
static struct elf_file *get_file(struct hints *h, const char *path, const struct anole_inode *ino)
{
	void **slot = strmap_slot(h->by_path, path, strlen(path), true);
	if (!slot)
		return NULL;
	if (*slot) {
		struct elf_file *f = h->files[(uintptr_t)*slot - 1];
		return f->bad ? NULL : f;
	}
	struct elf_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return NULL;
	}
	f->ino = *ino;
	if (h->nfiles == h->files_cap) {
		size_t c = h->files_cap ? 2 * h->files_cap : 256;
		struct elf_file **n = realloc(h->files, c * sizeof(*n));
		if (!n) {
			file_free(f);
			return NULL;
		}
		h->files = n;
		h->files_cap = c;
	}
	f->index = h->nfiles;
	h->files[h->nfiles++] = f;
	*slot = (void *)(uintptr_t)h->nfiles;
	f->bad = !S_ISREG(ino->mode) || parse_elf(h, f) < 0;
	return f->bad ? NULL : f;
}

/* Library @name for @from: RUNPATH/RPATH ($ORIGIN), ld.so.conf, defaults. */
static struct elf_file *find_library(struct hints *h, const struct elf_file *from, const char *name)
{
	char path[4096];
	struct anole_inode ino;
	_cleanup_free_ char *canon = NULL;
	if (strchr(name, '/')) {
		if (name[0] != '/' || resolve(h, name, &ino, &canon) <= 0)
			return NULL;
		return get_file(h, canon, &ino);
	}
	/* the object's own search path first */
	const char *rp = from->runpath;
	while (rp && *rp) {
		const char *e = strchrnul(rp, ':');
		char dir[2048];
		size_t n = MIN((size_t)(e - rp), sizeof(dir) - 1);
		memcpy(dir, rp, n);
		dir[n] = 0;
		const char *tail = !strncmp(dir, "$ORIGIN", 7)	  ? dir + 7
				   : !strncmp(dir, "${ORIGIN}", 9) ? dir + 9
								   : NULL;
		int w = tail ? snprintf(path, sizeof(path), "%.*s%s/%s",
					(int)(strrchr(from->path, '/') - from->path), from->path, tail,
					name)
			     : snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (w > 0 && w < (int)sizeof(path) && path[0] == '/' &&
		    resolve(h, path, &ino, &canon) > 0) {
			struct elf_file *f = get_file(h, canon, &ino);
			if (f && f->machine == from->machine)
				return f;
		}
		free(canon);
		canon = NULL;
		rp = *e ? e + 1 : e;
	}
	for (size_t i = 0; i < h->ndirs; i++) {
		int w = snprintf(path, sizeof(path), "%s/%s", h->dirs[i], name);
		if (w > 0 && w < (int)sizeof(path) && resolve(h, path, &ino, &canon) > 0) {
			struct elf_file *f = get_file(h, canon, &ino);
			if (f && f->machine == from->machine)
				return f;
		}
		free(canon);
		canon = NULL;
	}
	return NULL;
}

static void add_dir(struct hints *h, const char *dir, size_t len)
{
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (!len || dir[0] != '/' || h->ndirs == MAX_DIRS)
		return;
	for (size_t i = 0; i < h->ndirs; i++)
		if (strlen(h->dirs[i]) == len && !memcmp(h->dirs[i], dir, len))
			return;
	char *d = strndup(dir, len);
	if (d)
		h->dirs[h->ndirs++] = d;
}

static void read_ld_conf(struct hints *h, const char *path, int depth);

struct include_ctx {
	const char *pattern;
	char **names;
	size_t n, cap;
};

static int include_entry(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int type)
{
	struct include_ctx *c = ctx;
	(void)nid;
	(void)type;
	char n[256];
	if (len >= sizeof(n) || c->n == 256)
		return 0;
	memcpy(n, name, len);
	n[len] = 0;
	if (fnmatch(c->pattern, n, FNM_PERIOD))
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		char **x = realloc(c->names, cap * sizeof(*x));
		if (!x)
			return 0;
		c->names = x;
		c->cap = cap;
	}
	if ((c->names[c->n] = strdup(n)))
		c->n++;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "include DIR/PATTERN" (as /etc/ld.so.conf.d/ with a glob): files of one
 * directory, in name order */
static void read_ld_include(struct hints *h, const char *pattern, int depth)
{
	char dir[1024];
	const char *slash = strrchr(pattern, '/');
	if (!slash || pattern[0] != '/' || (size_t)(slash - pattern) >= sizeof(dir))
		return;
	memcpy(dir, pattern, (size_t)(slash - pattern));
	dir[slash - pattern] = 0;
	struct anole_inode d;
	_cleanup_free_ char *canon = NULL;
	if (resolve(h, dir[0] ? dir : "/", &d, &canon) <= 0 || !S_ISDIR(d.mode))
		return;
	struct include_ctx c = {.pattern = slash + 1};
	(void)anole_readdir(h->img, &d, include_entry, &c);
	qsort(c.names, c.n, sizeof(*c.names), name_cmp);
	for (size_t i = 0; i < c.n; i++) {
		char p[2048];
		if (snprintf(p, sizeof(p), "%s/%s", dir, c.names[i]) < (int)sizeof(p))
			read_ld_conf(h, p, depth + 1);
		free(c.names[i]);
	}
	free(c.names);
}

static void read_ld_conf(struct hints *h, const char *path, int depth)
{
	struct anole_inode ino;
	_cleanup_free_ char *canon = NULL;
	if (depth > 4 || resolve(h, path, &ino, &canon) <= 0 || !S_ISREG(ino.mode) ||
	    ino.size > (1u << 20))
		return;
	_cleanup_free_ char *text = malloc(ino.size + 1);
	if (!text || anole_pread(h->img, &ino, text, ino.size, 0) != (ssize_t)ino.size)
		return;
	text[ino.size] = 0;
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		line += strspn(line, " \t");
		size_t len = strcspn(line, " \t\r");
		if (!strncmp(line, "include", 7) && (line[7] == ' ' || line[7] == '\t')) {
			char *pat = line + 7;
			pat += strspn(pat, " \t");
			pat[strcspn(pat, " \t\r")] = 0;
			read_ld_include(h, pat, depth);
		} else if (len && line[0] == '/') {
			add_dir(h, line, len);
		}
	}
}

/* ---- programs and their closures ------------------------------------------------ */

struct walk_ctx {
	struct hints *h;
	char path[4096];
	size_t len;
	int depth;
	int err;
};

static bool maybe_elf(const char *name, size_t len, const struct anole_inode *ino)
{
	if (!S_ISREG(ino->mode) || ino->size < sizeof(Elf64_Ehdr))
		return false;
	return (ino->mode & 0111) || memmem(name, len, ".so", 3);
}

static int walk_entry(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int type)
{
	struct walk_ctx *w = ctx;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	if (type != EROFS_FT_DIR && type != EROFS_FT_REG_FILE)
		return 0;
	if (w->len + 1 + len >= sizeof(w->path))
		return 0;
	size_t saved = w->len;
	w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, len);
	w->len += len;
	w->path[w->len] = 0;
	struct anole_inode ino;
	int r = anole_inode_read(w->h->img, nid, &ino);
	if (r < 0) {
		w->err = r;
	} else if (S_ISDIR(ino.mode) && w->depth < 64) {
		w->depth++;
		r = anole_readdir(w->h->img, &ino, walk_entry, w);
		w->depth--;
	} else if (maybe_elf(name, len, &ino)) {
		(void)get_file(w->h, w->path, &ino);
	}
	w->len = saved;
	w->path[saved] = 0;
	return r < 0 ? r : 0;
}

/* @f's interpreter and libraries, as the loader finds them. */
static void link_file(struct hints *h, struct elf_file *f)
{
	struct anole_inode ino;
	_cleanup_free_ char *canon = NULL;
	f->linked = true;
	if (f->interp && resolve(h, f->interp, &ino, &canon) > 0)
		f->interp_file = get_file(h, canon, &ino);
	if (f->nneeded && !(f->libs = calloc(f->nneeded, sizeof(*f->libs))))
		return;
	for (size_t i = 0; i < f->nneeded; i++)
		f->libs[i] = find_library(h, f, f->needed[i]);
}

/* Add @f to the closure @out of this walk, unless it is there already. */
static void reach(struct hints *h, struct elf_file *f, size_t *out, size_t *n, size_t max)
{
	if (f && f->seen != h->walk && *n < max) {
		f->seen = h->walk;
		out[(*n)++] = f->index;
	}
}

/* @f's closure in load order, as indexes into h->files: itself, its
 * interpreter, then its libraries breadth first, as ld.so loads them. */
static size_t closure(struct hints *h, struct elf_file *f, size_t *out, size_t max)
{
	size_t n = 0;
	h->walk++;
	if (!f->linked)
		link_file(h, f);
	reach(h, f, out, &n, max);
	reach(h, f->interp_file, out, &n, max);
	for (size_t k = 0; k < n; k++) {
		struct elf_file *g = h->files[out[k]];
		if (!g->linked)
			link_file(h, g);
		for (size_t i = 0; g->libs && i < g->nneeded; i++)
			reach(h, g->libs[i], out, &n, max);
	}
	return n;
}

static void hints_free(struct hints *h)
{
	for (size_t i = 0; i < h->nfiles; i++)
		file_free(h->files[i]);
	free(h->files);
	strmap_free(h->by_path, NULL);
	for (size_t i = 0; i < h->ndirs; i++)
		free(h->dirs[i]);
	free(h->cap);
	free(h->buf);
}

static const char *const default_dirs[] = {"/lib64", "/usr/lib64", "/lib", "/usr/lib"};

int load_hints_build(const char *meta_path, const char *const *devices, size_t ndevices,
		     bool with_paths, char **json_out, struct anole_error *err)
{
	*json_out = NULL;
	struct hints h = {0};
	struct anole_image_options io = {
		.devices = devices, .ndevices = ndevices, .before_read = capture, .ctx = &h};
	int r = anole_image_open_with(meta_path, &io, &h.img, err);
	if (r < 0)
		return r;
	if (!(h.by_path = strmap_new()) || !(h.buf = malloc(HINT_BUF))) {
		r = anole_err(err, ENOMEM, "out of memory");
		goto out;
	}
	read_ld_conf(&h, "/etc/ld.so.conf", 0);
	for (size_t i = 0; i < ARRAY_SIZE(default_dirs); i++)
		add_dir(&h, default_dirs[i], strlen(default_dirs[i]));
	struct anole_inode root;
	struct walk_ctx w = {.h = &h};
	if ((r = anole_inode_read(h.img, anole_image_info(h.img)->root_nid, &root)) < 0 ||
	    (r = anole_readdir(h.img, &root, walk_entry, &w)) < 0 || (r = w.err) < 0) {
		r = anole_err(err, -r, "%s: %s", meta_path, anole_image_error(h.img)->msg);
		goto out;
	}
	json_t *files = json_array(), *programs = json_array();
	size_t nwalked = h.nfiles;
	size_t *cl = malloc(MAX_CLOSURE * sizeof(*cl));
	for (size_t i = 0; cl && i < nwalked; i++) {
		struct elf_file *f = h.files[i];
		if (f->bad || !f->program)
			continue;
		size_t n = closure(&h, f, cl, MAX_CLOSURE);
		if (!f->mapped && map_ranges(&h, f) < 0)
			break;
		if (!f->first_known || n == 0)
			continue;
		json_t *p = json_pack("[I,I,I]", (json_int_t)f->first_dev, (json_int_t)f->first_off,
				      (json_int_t)f->first_len);
		for (size_t k = 0; p && k < n; k++) {
			struct elf_file *g = h.files[cl[k]];
			if (!g->mapped && map_ranges(&h, g) < 0)
				continue;
			json_array_append_new(p, json_integer((json_int_t)cl[k]));
		}
		json_array_append_new(programs, p);
	}
	/* the files table: every file, so indices stay those of h.files */
	for (size_t i = 0; i < h.nfiles; i++) {
		struct elf_file *f = h.files[i];
		json_t *a = json_array();
		for (size_t k = 0; a && k < f->nblob_spans; k++) {
			const struct blob_span *b = &f->blob_spans[k];
			json_array_append_new(a, json_integer((json_int_t)b->dev));
			json_array_append_new(a, json_integer((json_int_t)b->off));
			json_array_append_new(a, json_integer((json_int_t)b->len));
		}
		json_array_append_new(files, a ? a : json_array());
	}
	free(cl);
	json_t *doc = json_pack("{s:i,s:o,s:o}", "version", 1, "files", files, "programs",
				programs);
	if (doc && with_paths) {
		json_t *paths = json_array();
		for (size_t i = 0; i < h.nfiles; i++)
			json_array_append_new(paths, json_string(h.files[i]->path));
		json_object_set_new(doc, "paths", paths);
	}
	*json_out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	if (!*json_out)
		r = anole_err(err, ENOMEM, "out of memory");
out:
	if (h.img)
		anole_image_close(h.img);
	hints_free(&h);
	return r;
}

/* ---- reading hints (the daemon) ---------------------------------------------- */

#define HINTS_MAX_ITEMS (4u << 20)

void load_hints_free(struct load_hints *h)
{
	if (!h)
		return;
	free(h->spans);
	free(h->file_start);
	free(h->closure);
	free(h->prog_start);
	free(h->trig);
	free(h->fired);
	free(h->file_done);
	free(h);
}

static int trig_cmp(const void *a, const void *b)
{
	const struct hint_trigger *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* [dev, off, len] at @a[@i..]: in the image? */
static bool span_at(json_t *a, size_t i, const uint64_t *dev_sizes, size_t ndevs,
		    struct hint_span *s)
{
	json_t *d = json_array_get(a, i), *o = json_array_get(a, i + 1), *l = json_array_get(a, i + 2);
	if (!json_is_integer(d) || !json_is_integer(o) || !json_is_integer(l))
		return false;
	json_int_t dv = json_integer_value(d), ov = json_integer_value(o), lv = json_integer_value(l);
	if (dv < 0 || (size_t)dv >= ndevs || ov < 0 || lv <= 0 ||
	    (uint64_t)ov >= dev_sizes[dv] || (uint64_t)lv > dev_sizes[dv] - (uint64_t)ov)
		return false;
	*s = (struct hint_span){(uint32_t)dv, (uint64_t)ov, (uint64_t)lv};
	return true;
}

static int parse_doc(json_t *doc, const uint64_t *dev_sizes, size_t ndevs, struct load_hints *h,
		     char *why, size_t why_size)
{
	json_t *files = json_object_get(doc, "files"), *progs = json_object_get(doc, "programs");
	if (json_integer_value(json_object_get(doc, "version")) != 1 || !json_is_array(files) ||
	    !json_is_array(progs))
		return snprintf(why, why_size, "not load hints of version 1"), -EBADMSG;
	size_t i, nspans = 0, nclosure = 0;
	json_t *e;
	h->nfiles = json_array_size(files);
	h->nprogs = json_array_size(progs);
	json_array_foreach(files, i, e) {
		if (!json_is_array(e) || json_array_size(e) % 3)
			return snprintf(why, why_size, "file %zu: not [blob, offset, length]...", i),
			       -EBADMSG;
		nspans += json_array_size(e) / 3;
	}
	json_array_foreach(progs, i, e) {
		if (!json_is_array(e) || json_array_size(e) < 3)
			return snprintf(why, why_size, "program %zu: no first extent", i), -EBADMSG;
		nclosure += json_array_size(e) - 3;
	}
	if (nspans > HINTS_MAX_ITEMS || nclosure > HINTS_MAX_ITEMS || h->nfiles > HINTS_MAX_ITEMS ||
	    h->nprogs > HINTS_MAX_ITEMS)
		return snprintf(why, why_size, "too big"), -EBADMSG;
	h->spans = malloc(MAX(nspans, 1) * sizeof(*h->spans));
	h->file_start = malloc((h->nfiles + 1) * sizeof(*h->file_start));
	h->closure = malloc(MAX(nclosure, 1) * sizeof(*h->closure));
	h->prog_start = malloc((h->nprogs + 1) * sizeof(*h->prog_start));
	h->trig = malloc(MAX(h->nprogs, 1) * sizeof(*h->trig));
	h->fired = calloc(MAX(h->nprogs, 1), 1);
	h->file_done = calloc(MAX(h->nfiles, 1), 1);
	if (!h->spans || !h->file_start || !h->closure || !h->prog_start || !h->trig || !h->fired ||
	    !h->file_done)
		return snprintf(why, why_size, "out of memory"), -ENOMEM;
	json_array_foreach(files, i, e) {
		h->file_start[i] = (uint32_t)h->nspans;
		for (size_t k = 0; k < json_array_size(e); k += 3)
			if (!span_at(e, k, dev_sizes, ndevs, &h->spans[h->nspans++]))
				return snprintf(why, why_size, "file %zu: span %zu is not in the image",
						i, k / 3),
				       -EBADMSG;
	}
	h->file_start[h->nfiles] = (uint32_t)h->nspans;
	json_array_foreach(progs, i, e) {
		struct hint_span first;
		if (!span_at(e, 0, dev_sizes, ndevs, &first))
			return snprintf(why, why_size, "program %zu: first extent not in the image", i),
			       -EBADMSG;
		h->trig[i] = (struct hint_trigger){first.dev, first.off, first.len, (uint32_t)i};
		h->prog_start[i] = (uint32_t)h->nclosure;
		for (size_t k = 3; k < json_array_size(e); k++) {
			json_t *f = json_array_get(e, k);
			json_int_t v = json_integer_value(f);
			if (!json_is_integer(f) || v < 0 || (size_t)v >= h->nfiles)
				return snprintf(why, why_size, "program %zu: no file %zu", i, k - 3),
				       -EBADMSG;
			h->closure[h->nclosure++] = (uint32_t)v;
		}
	}
	h->prog_start[h->nprogs] = (uint32_t)h->nclosure;
	qsort(h->trig, h->nprogs, sizeof(*h->trig), trig_cmp);
	return 0;
}

int load_hints_parse(const char *text, size_t len, const uint64_t *dev_sizes, size_t ndevs,
		     struct load_hints **out, char *why, size_t why_size)
{
	*out = NULL;
	json_error_t je;
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(doc)) {
		json_decref(doc);
		snprintf(why, why_size, "not a JSON object");
		return -EBADMSG;
	}
	struct load_hints *h = calloc(1, sizeof(*h));
	int r = h ? parse_doc(doc, dev_sizes, ndevs, h, why, why_size) : -ENOMEM;
	json_decref(doc);
	if (r < 0) {
		load_hints_free(h);
		return r;
	}
	*out = h;
	return 0;
}

/* ---- the program a run starts --------------------------------------------------- */

struct first_read {
	bool set;
	uint32_t dev;
	uint64_t off, len;
};

static int note_first_read(void *ctx, unsigned int dev, uint64_t off, uint64_t len)
{
	struct first_read *fr = ctx;
	if (!fr->set)
		*fr = (struct first_read){true, dev, off, len};
	return -EAGAIN; /* the data need not be here: only where it is */
}

int load_hints_program_at(const char *meta_path, const char *const *devices, size_t ndevices,
			  const char *argv0, const char *path_env, uint32_t *dev, uint64_t *off,
			  uint64_t *len)
{
	struct first_read fr = {0};
	struct hints h = {0};
	struct anole_error e = {0};
	struct anole_image_options io = {
		.devices = devices, .ndevices = ndevices, .before_read = note_first_read, .ctx = &fr};
	if (!argv0 || !*argv0 || anole_image_open_with(meta_path, &io, &h.img, &e) < 0)
		return -ENOENT;
	struct anole_inode ino;
	char path[4096];
	int found = 0;
	if (strchr(argv0, '/')) {
		if (argv0[0] == '/')
			found = resolve(&h, argv0, &ino, NULL);
	} else {
		/* as execvp: each directory of PATH in turn */
		const char *p = path_env && *path_env ? path_env : "/usr/local/sbin:/usr/local/bin:"
								   "/usr/sbin:/usr/bin:/sbin:/bin";
		while (found <= 0 && *p) {
			const char *end = strchrnul(p, ':');
			int w = snprintf(path, sizeof(path), "%.*s/%s", (int)(end - p), p, argv0);
			if (w > 0 && w < (int)sizeof(path) && path[0] == '/')
				found = resolve(&h, path, &ino, NULL);
			if (found > 0 && !S_ISREG(ino.mode))
				found = 0;
			p = *end ? end + 1 : end;
		}
	}
	char byte;
	if (found > 0 && S_ISREG(ino.mode))
		(void)anole_pread(h.img, &ino, &byte, 1, 0);
	anole_image_close(h.img);
	if (!fr.set)
		return -ENOENT;
	*dev = fr.dev;
	*off = fr.off;
	*len = fr.len;
	return 0;
}

int anole_load_hints(const char *image, char **json, struct anole_error *err)
{
	return load_hints_build(image, NULL, 0, true, json, err);
}
