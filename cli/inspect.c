/* SPDX-License-Identifier: Apache-2.0 */
/* anole inspect [--json] [--load-hints] [--device=PATH]... IMAGE [PATH] */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "anole/erofs_fs.h"
#include "cli.h"

static const char usage_text[] =
	"anole inspect [--json] [--load-hints] [--device=PATH]... IMAGE [PATH]\n"
	"\n"
	"Without PATH: the superblock. With PATH: that inode (layout, data\n"
	"location, xattrs; entries of a directory).\n"
	"IMAGE may be a lazy image: an OCI layout DIR, oci:DIR[:TAG] or\n"
	"docker://HOST/REPO[:TAG]; without PATH that shows its manifest, data\n"
	"blobs with sizes, and the dedup summary it was converted with.\n"
	"\n"
	"  --json        machine-readable output\n"
	"  --load-hints  what the dynamic loader reads to start each program,\n"
	"                as `anole convert` stores it (an image whose data lies\n"
	"                in blobs beside it: `build --separate-data`)\n" CLI_DEVICE_HELP;

/* Each program with the files the loader opens to start it and the
 * bytes of blob it reads from them. */
static int print_hints(const char *json_text)
{
	json_t *doc = json_loads(json_text, 0, NULL);
	json_t *files = json_object_get(doc, "files"), *paths = json_object_get(doc, "paths");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(doc, "programs"), i, p) {
		uint64_t bytes = 0;
		size_t n = json_array_size(p);
		for (size_t k = 3; k < n; k++) {
			json_t *f = json_array_get(files, (size_t)json_integer_value(json_array_get(p, k)));
			for (size_t s = 2; s < json_array_size(f); s += 3)
				bytes += (uint64_t)json_integer_value(json_array_get(f, s));
		}
		printf("%s: %zu files, %.1f KiB of blobs\n",
		       json_string_value(json_array_get(
			       paths, (size_t)json_integer_value(json_array_get(p, 3)))),
		       n - 3, (double)bytes / 1024);
		for (size_t k = 4; k < n; k++)
			printf("  %s\n", json_string_value(json_array_get(
						  paths, (size_t)json_integer_value(json_array_get(p, k)))));
	}
	json_decref(doc);
	return 0;
}

/* Names are bytes; JSON wants UTF-8: escape what is not. */
static json_t *name_json(const char *name, size_t len)
{
	json_t *j = json_stringn(name, len);
	if (j)
		return j;
	char buf[256 * 4 + 1];
	size_t o = 0;
	for (size_t k = 0; k < len; k++) {
		unsigned char ch = (unsigned char)name[k];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			buf[o++] = (char)ch;
		else
			o += (size_t)sprintf(buf + o, "\\x%02x", ch);
	}
	return json_stringn(buf, o);
}

static const char *layout_name(unsigned int l)
{
	static const char *names[] = {"flat-plain", "compressed-full", "flat-inline",
				      "compressed-compact", "chunk-based"};
	return l < sizeof(names) / sizeof(names[0]) ? names[l] : "unknown";
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "regular";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "symlink";
	case S_IFCHR: return "char-device";
	case S_IFBLK: return "block-device";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	}
	return "unknown";
}

static json_t *features_json(uint32_t compat, uint32_t incompat)
{
	static const struct {
		bool incompat;
		uint32_t bit;
		const char *name;
	} f[] = {
		{false, EROFS_COMPAT_SB_CHKSUM, "sb_chksum"},
		{false, EROFS_COMPAT_MTIME, "mtime"},
		{false, EROFS_COMPAT_XATTR_FILTER, "xattr_filter"},
		{false, EROFS_COMPAT_SHARED_EA_IN_METABOX, "shared_ea_in_metabox"},
		{false, EROFS_COMPAT_PLAIN_XATTR_PFX, "plain_xattr_pfx"},
		{true, EROFS_INCOMPAT_ZERO_PADDING, "zero_padding"},
		{true, EROFS_INCOMPAT_COMPR_CFGS, "compr_cfgs"},
		{true, EROFS_INCOMPAT_CHUNKED_FILE, "chunked_file"},
		{true, EROFS_INCOMPAT_DEVICE_TABLE, "device_table"},
		{true, EROFS_INCOMPAT_ZTAILPACKING, "ztailpacking"},
		{true, EROFS_INCOMPAT_FRAGMENTS, "fragments"},
		{true, EROFS_INCOMPAT_XATTR_PREFIXES, "xattr_prefixes"},
		{true, EROFS_INCOMPAT_48BIT, "48bit"},
		{true, EROFS_INCOMPAT_METABOX, "metabox"},
	};
	json_t *a = json_array();
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if ((f[i].incompat ? incompat : compat) & f[i].bit)
			json_array_append_new(a, json_string(f[i].name));
	return a;
}

static json_t *super_json(const struct anole_image_info *i)
{
	char uuid[37];
	snprintf(uuid, sizeof(uuid),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 i->uuid[0], i->uuid[1], i->uuid[2], i->uuid[3], i->uuid[4], i->uuid[5],
		 i->uuid[6], i->uuid[7], i->uuid[8], i->uuid[9], i->uuid[10], i->uuid[11],
		 i->uuid[12], i->uuid[13], i->uuid[14], i->uuid[15]);
	uint64_t image_bytes = i->blocks << i->blkszbits;
	json_t *o = json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s, s:s, s:I, s:I, s:I, s:I}",
			 "block_size", 1 << i->blkszbits, "blocks", (json_int_t)i->blocks,
			 "image_bytes", (json_int_t)image_bytes, "inodes",
			 (json_int_t)i->inodes, "root_nid", (json_int_t)i->root_nid,
			 "meta_blkaddr", (json_int_t)i->meta_blkaddr, "xattr_blkaddr",
			 (json_int_t)i->xattr_blkaddr, "features",
			 features_json(i->feature_compat, i->feature_incompat), "uuid", uuid,
			 "label", i->label, "epoch", (json_int_t)i->epoch, "fixed_nsec",
			 (json_int_t)i->fixed_nsec, "checksum", (json_int_t)i->checksum,
			 "file_bytes", (json_int_t)i->file_size);
	/* a nid with bit 63 lies in the metabox: shown as the nid there */
	if (i->root_nid >> EROFS_NID_METABOX_BIT) {
		json_object_set_new(o, "root_nid", json_integer((json_int_t)(i->root_nid & EROFS_NID_MASK)));
		json_object_set_new(o, "root_in_metabox", json_true());
	}
	if (i->packed_nid)
		json_object_set_new(o, "packed_nid", json_integer((json_int_t)i->packed_nid));
	if (i->metabox_nid || (i->feature_incompat & EROFS_INCOMPAT_METABOX))
		json_object_set_new(o, "metabox_nid", json_integer((json_int_t)i->metabox_nid));
	if (i->xattr_prefix_count)
		json_object_set_new(o, "long_xattr_prefixes", json_integer(i->xattr_prefix_count));
	return o;
}

static int xattr_cb(void *ctx, const char *name, const void *value, size_t size)
{
	json_t *a = ctx;
	/* values are bytes; show text when printable, else hex */
	const unsigned char *v = value;
	bool text = true;
	for (size_t k = 0; k < size; k++)
		if ((v[k] < 0x20 && !(k == size - 1 && v[k] == 0)) || v[k] >= 0x7f)
			text = false;
	json_t *val;
	if (text) {
		val = json_stringn(value, size && v[size - 1] == 0 ? size - 1 : size);
	} else {
		size_t shown = size > 64 ? 64 : size;
		char hex[64 * 2 + 4];
		for (size_t k = 0; k < shown; k++)
			sprintf(hex + 2 * k, "%02x", v[k]);
		if (shown < size)
			memcpy(hex + 2 * shown, "...", 4);
		val = json_string(hex);
	}
	json_array_append_new(a, json_pack("{s:s, s:I, s:o*}", "name", name, "size",
					   (json_int_t)size, "value", val));
	return 0;
}

struct dir_ctx {
	json_t *a;
};

static int dir_cb(void *ctx, const char *name, size_t len, uint64_t nid, unsigned int type)
{
	struct dir_ctx *d = ctx;
	json_t *n = name_json(name, len);
	json_t *e = json_pack("{s:o, s:I, s:i}", "name", n, "nid",
			      (json_int_t)(nid & EROFS_NID_MASK), "type", type);
	if (nid >> EROFS_NID_METABOX_BIT)
		json_object_set_new(e, "metabox", json_true());
	json_array_append_new(d->a, e);
	return 0;
}

static json_t *inode_json(struct anole_image *img, const char *path, const struct anole_inode *i)
{
	json_t *o = json_pack("{s:o, s:I, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:i}", "path",
			      name_json(path, strlen(path)), "nid", (json_int_t)(i->nid & EROFS_NID_MASK),
			      "type", type_name(i->mode),
			      "inode_format", i->extended ? "extended" : "compact", "layout",
			      layout_name(i->layout), "mode", i->mode & 07777, "uid",
			      (json_int_t)i->uid, "gid", (json_int_t)i->gid, "nlink",
			      (json_int_t)i->nlink, "size", (json_int_t)i->size, "mtime",
			      (json_int_t)i->mtime, "mtime_nsec", i->mtime_nsec);
	/* (the reader marks positions in the metabox with bit 63, as nids) */
	if (i->nid >> EROFS_NID_METABOX_BIT)
		json_object_set_new(o, "in_metabox", json_true());
	json_object_set_new(o, "inode_offset", json_integer((json_int_t)(i->pos & EROFS_NID_MASK)));
	json_object_set_new(o, "xattr_bytes", json_integer(i->xattr_isize));
	if (i->dot_omitted)
		json_object_set_new(o, "dot_omitted", json_true());
	if (i->layout == EROFS_INODE_FLAT_PLAIN && i->startblk == UINT64_MAX)
		json_object_set_new(o, "hole", json_true());
	else if (i->layout == EROFS_INODE_FLAT_PLAIN || i->layout == EROFS_INODE_FLAT_INLINE)
		json_object_set_new(o, "start_block", json_integer((json_int_t)i->startblk));
	if (i->layout == EROFS_INODE_CHUNK_BASED)
		json_object_set_new(o, "chunk_size",
				    json_integer((json_int_t)1 << (anole_image_info(img)->blkszbits +
								 (i->chunkformat & 0x1f))));
	if (S_ISCHR(i->mode) || S_ISBLK(i->mode))
		json_object_set_new(o, "rdev", json_pack("{s:i, s:i}", "major", major(i->rdev),
							 "minor", minor(i->rdev)));
	if (S_ISLNK(i->mode)) {
		char t[4096];
		if (anole_readlink(img, i, t, sizeof(t)) >= 0)
			json_object_set_new(o, "target", name_json(t, strlen(t)));
	}
	json_t *x = json_array();
	anole_xattrs(img, i, xattr_cb, x);
	json_object_set_new(o, "xattrs", x);
	if (S_ISDIR(i->mode)) {
		struct dir_ctx d = {json_array()};
		anole_readdir(img, i, dir_cb, &d);
		json_object_set_new(o, "entries", d.a);
	}
	return o;
}

static void print_text(json_t *o, int indent)
{
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		switch (json_typeof(v)) {
		case JSON_STRING:
			printf("%*s%-14s %s\n", indent, "", key, json_string_value(v));
			break;
		case JSON_INTEGER:
			if (!strcmp(key, "mode"))
				printf("%*s%-14s 0%llo\n", indent, "", key,
				       (unsigned long long)json_integer_value(v));
			else
				printf("%*s%-14s %lld\n", indent, "", key,
				       (long long)json_integer_value(v));
			break;
		case JSON_ARRAY: {
			size_t n = json_array_size(v), k;
			json_t *e;
			if (!n) {
				printf("%*s%-14s -\n", indent, "", key);
				break;
			}
			if (json_is_string(json_array_get(v, 0))) {
				printf("%*s%-14s", indent, "", key);
				json_array_foreach(v, k, e) printf(" %s", json_string_value(e));
				printf("\n");
				break;
			}
			printf("%*s%s (%zu):\n", indent, "", key, n);
			json_array_foreach(v, k, e)
			{
				if (json_object_get(e, "origin"))
					printf("%*s%s  %s\n", indent + 2, "",
					       json_string_value(json_object_get(e, "digest")),
					       json_string_value(json_object_get(e, "origin")));
				else if (json_object_get(e, "digest") || json_object_get(e, "tag"))
					printf("%*s%s  %lld bytes\n", indent + 2, "",
					       json_string_value(json_object_get(e, "path")
								 ? json_object_get(e, "path")
								 : json_object_get(e, "digest")),
					       (long long)json_integer_value(json_object_get(e, "bytes")));
				else if (json_object_get(e, "nid"))
					printf("%*s%-8lld %s\n", indent + 2, "",
					       (long long)json_integer_value(json_object_get(e, "nid")),
					       json_string_value(json_object_get(e, "name")));
				else
					printf("%*s%s (%lld bytes) = %s\n", indent + 2, "",
					       json_string_value(json_object_get(e, "name")),
					       (long long)json_integer_value(json_object_get(e, "size")),
					       json_string_value(json_object_get(e, "value")));
			}
			break;
		}
		case JSON_OBJECT:
			printf("%*s%s:\n", indent, "", key);
			print_text(v, indent + 2);
			break;
		case JSON_TRUE:
			printf("%*s%-14s yes\n", indent, "", key);
			break;
		default:
			break;
		}
	}
}

/* Print and free @o. */
static void emit(json_t *o, bool json)
{
	if (json) {
		json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		print_text(o, 0);
	}
	json_decref(o);
}

/* A lazy image: its manifest, blobs and the dedup summary of its config. */
static json_t *lazy_json(const struct anole_lazy_info *li)
{
	json_t *blobs = json_array();
	for (size_t i = 0; i < li->nblobs; i++) {
		const struct anole_lazy_blob *b = &li->blobs[i];
		json_array_append_new(blobs, json_pack("{s:s,s:I,s:s,s:I,s:s,s:I}", "digest", b->digest,
						       "bytes", (json_int_t)b->size, "digest_table",
						       b->digests, "digest_table_bytes",
						       (json_int_t)b->digests_size, "chunk_index",
						       b->chunks, "chunk_index_bytes",
						       (json_int_t)b->chunks_size));
	}
	json_error_t je;
	json_t *cfg = json_loads(li->config_json ? li->config_json : "", 0, &je);
	json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:o}", "manifest", li->manifest_digest,
			      "manifest_bytes", (json_int_t)li->manifest_size, "metadata_image",
			      li->meta_digest, "metadata_image_bytes", (json_int_t)li->meta_size,
			      "data_blobs", blobs);
	if (li->meta_path)
		json_object_set_new(o, "metadata_image_path", json_string(li->meta_path));
	if (li->hints_digest[0])
		json_object_set_new(o, "load_hints", json_pack("{s:s,s:I}", "digest", li->hints_digest,
							       "bytes", (json_int_t)li->hints_size));
	if (cfg)
		json_object_set_new(o, "config", cfg);
	return o;
}

static int inspect_lazy(const char *ref, bool json)
{
	struct anole_error err = {0};
	struct anole_lazy_info *li;
	int r = anole_lazy_open(ref, 0, &li, &err);
	if (r < 0)
		return cli_fail(&err, r);
	json_t *o = lazy_json(li);
	anole_lazy_free(li);
	emit(o, json);
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						   {"load-hints", no_argument, NULL, 'L'},
						   {"help", no_argument, NULL, 'h'},
						   CLI_DEVICE_LONGOPT,
						   {0}};
	struct cli_devices devs = {0};
	bool json = false, hints = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'L')
			hints = true;
		else if (c == 'd') {
			if (cli_add_device(&devs, optarg))
				return EXIT_USAGE;
		} else if (c == 'h') {
			puts(usage_text);
			return 0;
		} else
			return cli_usage(usage_text);
	}
	if (argc - optind < 1 || argc - optind > 2)
		return cli_usage(usage_text);
	if (argc - optind == 1 && cli_is_lazy_ref(argv[optind]) && !hints)
		return inspect_lazy(argv[optind], json);

	struct anole_error err = {0};
	struct anole_image *img;
	char *image = NULL;
	int r = cli_image_path(argv[optind], &image, &err);
	if (hints) {
		char *text = NULL;
		if (argc - optind > 1) {
			free(image);
			cli_error("--load-hints takes no PATH");
			return EXIT_USAGE;
		}
		if (r >= 0)
			r = anole_load_hints(image, &text, &err);
		free(image);
		if (r < 0)
			return cli_fail(&err, r);
		r = json ? puts(text) < 0 : print_hints(text);
		free(text);
		return r ? 1 : 0;
	}
	if (r >= 0)
		r = cli_open_image(image, &devs, &img, &err);
	free(image);
	if (r < 0)
		return cli_fail(&err, r);
	json_t *o;
	if (argc - optind == 1) {
		o = super_json(anole_image_info(img));
		/* data blobs of a separate-data image, with their sizes */
		json_t *blobs = json_array();
		for (unsigned int i = 0; anole_image_device(img, i); i++) {
			const char *path = anole_image_device(img, i);
			const char *tag = anole_image_device_tag(img, i);
			struct stat st;
			json_array_append_new(
				blobs, json_pack("{s:s, s:s, s:I}",
						 strncmp(tag, "sha256:", 7) ? "tag" : "digest", tag,
						 "path", path, "bytes",
						 (json_int_t)(stat(path, &st) == 0 ? st.st_size : -1)));
		}
		if (json_array_size(blobs))
			json_object_set_new(o, "data_blobs", blobs);
		else
			json_decref(blobs);
	} else {
		struct anole_inode ino;
		r = anole_lookup(img, argv[optind + 1], &ino);
		if (r < 0) {
			int rc = cli_fail(anole_image_error(img), r);
			anole_image_close(img);
			return rc;
		}
		o = inode_json(img, argv[optind + 1], &ino);
	}
	const struct anole_error *ie = anole_image_error(img);
	if (ie->code) {
		json_decref(o);
		int rc = cli_fail(ie, -ie->code);
		anole_image_close(img);
		return rc;
	}
	emit(o, json);
	anole_image_close(img);
	return 0;
}
