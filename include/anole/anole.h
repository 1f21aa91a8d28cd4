/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libanole: build, read, check and extract Linux-kernel-native EROFS images.
 *
 * Every function that can fail returns 0 (or a non-negative count) on
 * success and a negative errno on failure; the human-readable reason,
 * naming the path, nid or byte offset at fault, is left in the
 * struct anole_error passed in (or kept by the image handle).
 */
#ifndef ANOLE_ANOLE_H
#define ANOLE_ANOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ANOLE_VERSION "0.2.0"

/* Bytes of file data compressed at a time unless told otherwise. */
#define ANOLE_DEFAULT_PCLUSTER (1024u << 10)

struct anole_error {
	int code;       /* positive errno of the first failure, 0 if none */
	char msg[1024]; /* one line, no trailing newline */
};

/* ---- building ---------------------------------------------------------- */

struct anole_progress {
	const char *phase; /* "scan", "data", "metadata" */
	uint64_t inodes;
	uint64_t bytes;
	double seconds;
};

struct anole_build_options {
	unsigned int blkszbits;       /* 0 means 12 (4096-byte blocks) */
	const uint8_t *uuid;          /* 16 bytes, or NULL for all zeros */
	const char *label;            /* volume name, at most 16 bytes */
	bool clamp_mtime;             /* clamp mtimes newer than mtime_clamp */
	int64_t mtime_clamp;
	const char *compress;         /* "ALGO[:LEVEL]" (lz4, lz4hc, deflate, lzma,
					 zstd, none); NULL = none */
	uint32_t pcluster_size;       /* bytes compressed at a time; 0 = default */
	unsigned int threads;         /* compression threads; 0 = all cores */
	int fragments;                /* pack small files and tails together:
					 0 = by algorithm (on, but off for lz4
					 and lz4hc, which old tools read), 1 on,
					 -1 off */
	bool dedupe;                  /* store repeated data once */
	/* Container image sources (tar, oci:, docker://). */
	const char *platform;         /* OS/ARCH[/VARIANT] picked from image
					 indexes; NULL = linux/amd64 */
	int tls_verify;               /* 0 = default (on, except plain HTTP for
					 localhost and 127.0.0.0/8), 1 always
					 verify, -1 plain HTTP/no verification */
	bool layers_separate;         /* one image per layer, overlayfs
					 whiteouts; @image names a directory */
	bool separate_data;           /* file data in a content-addressed blob,
					 DIR/blobs/sha256/HEX beside the image
					 (DIR = the image's directory), which
					 the image names in its device table */
	/* separate_data with compression and dedupe: data blobs of earlier
	 * images whose extents this image may point at instead of storing
	 * them again (at most 64) */
	const struct anole_base_blob *bases;
	size_t nbases;
	/* separate_data: the digest table's range size, 1 << range_bits
	 * bytes (12..20); 0 = ANOLE_RANGE_BITS_DEFAULT (64 KiB) */
	unsigned range_bits;
	void (*progress)(const struct anole_progress *p, void *ctx);
	void *progress_ctx;
	/* container sources: when set, gets the image config's "config"
	 * object (Env, Entrypoint, Cmd, WorkingDir, User...) as JSON,
	 * malloc'd (NULL when the image has none); the caller frees it */
	char **run_config;
};

/* An earlier image's data blob, known by its chunk index file. */
struct anole_base_blob {
	const char *digest;      /* "sha256:HEX" of the blob */
	const char *chunks_path; /* its chunk index (anole/lazy_fs.h) */
	uint64_t size;           /* the blob's bytes, 0 = unknown; checked against the index */
};

struct anole_build_stats {
	uint64_t inodes, dirs, regular, symlinks, special, hardlinks;
	uint64_t data_bytes;  /* bytes of file content read */
	uint64_t image_bytes;
	uint64_t shared_xattrs;
	uint64_t compact_inodes, extended_inodes;
	uint64_t compressed_files, compressed_bytes_in, compressed_bytes_out;
	uint64_t fragment_bytes; /* small files and tails packed together */
	uint64_t dedupe_bytes;   /* file bytes found again and not stored */
	/* container sources */
	uint64_t layers, layer_entries;
	uint64_t hidden_entries; /* replaced or deleted by a higher layer */
	uint64_t whiteouts;
	/* separate_data: the data blob beside the image */
	uint64_t blob_bytes;
	char blob_digest[72]; /* "sha256:HEX", empty when none */
	char blob_digests[72]; /* its digest table, DIR/blobs/sha256/HEX too */
	char blob_chunks[72];  /* its chunk index, likewise */
	uint64_t bases_used;   /* bit i: the image reads base blob i */
	uint64_t base_reused_bytes; /* file bytes found in base blobs */
	double seconds;
};

/* Build @image from @source: a directory, a tar file ("-" for stdin; plain,
 * gzip, zstd or xz), "oci:DIR[:TAG]" or "docker://HOST/REPO[:TAG|@DIGEST]".
 * Container layers merge with OCI whiteout rules. The image appears
 * atomically under its name only when the whole build succeeded. */
int anole_build(const char *source, const char *image, const struct anole_build_options *opts,
		struct anole_build_stats *stats, struct anole_error *err);

/* ---- reading ----------------------------------------------------------- */

struct anole_image;

struct anole_image_info {
	unsigned int blkszbits;
	uint64_t blocks, inodes;
	uint64_t root_nid;
	uint32_t meta_blkaddr, xattr_blkaddr;
	uint32_t feature_compat, feature_incompat;
	uint64_t epoch;
	uint32_t fixed_nsec;
	uint32_t checksum;
	uint8_t uuid[16];
	char label[17];
	uint64_t file_size;
	unsigned int extra_devices; /* data blobs, blob devices, tars */
	uint64_t packed_nid, metabox_nid; /* 0: none */
	unsigned int xattr_prefix_count;  /* long xattr name prefixes */
	uint32_t xattr_prefix_start;
};

struct anole_inode {
	uint64_t nid;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t rdev; /* Linux dev_t as makedev() encodes it */
	uint32_t ino;
	uint8_t layout; /* enum erofs_datalayout */
	bool extended;
	bool dot_omitted; /* a directory without a stored "." entry */
	uint16_t xattr_icount;
	/* where things are, for readers and inspectors */
	uint64_t pos;          /* byte offset of the on-disk inode (bit 63, as in
				  its nid: in the metabox inode's data) */
	uint32_t inode_isize, xattr_isize;
	uint64_t startblk;     /* flat layouts; UINT64_MAX: a plain file all hole */
	uint16_t chunkformat;  /* chunk-based layout */
	bool z_frag_whole;     /* all data in the packed inode */
	uint64_t z_frag_off;   /* fragment offset in the packed inode */
	uint64_t z_tail_la;    /* where the fragment part of the file begins */
	uint16_t z_advise;     /* compressed layouts */
	uint8_t z_algorithms;  /* HEAD1 in the low nibble, HEAD2 in the high */
	uint8_t z_lclusterbits;
	uint32_t z_blocks;     /* blocks of compressed data */
	uint16_t z_idata_size; /* ztailpacking: bytes of the inline last pcluster */
	uint64_t z_idata_pos;  /* and their byte offset in the image */
	uint64_t z_extents;    /* encoded extent records (Z_EROFS_ADVISE_EXTENTS) */
};

int anole_image_open(const char *path, struct anole_image **img, struct anole_error *err);
struct anole_image_options {
	/* the data blobs' paths in device table order (NULL entries, or no
	 * array: blobs/sha256/HEX or HEX next to the image) */
	const char *const *devices;
	size_t ndevices;
	/* called before data is read from [off, off+len) of device @dev
	 * (0-based); a negative errno fails the read with it */
	int (*before_read)(void *ctx, unsigned int dev, uint64_t off, uint64_t len);
	void *ctx;
};
int anole_image_open_with(const char *path, const struct anole_image_options *opts,
			  struct anole_image **img, struct anole_error *err);
void anole_image_close(struct anole_image *img);
const struct anole_image_info *anole_image_info(const struct anole_image *img);
/* The path of data blob @i (0-based) the image reads through its device
 * table, or NULL. */
const char *anole_image_device(const struct anole_image *img, unsigned int i);
/* How device table slot @i (0-based) names its device: "sha256:HEX"
 * (anole's blobs), "no tag", or tag "TEXT"; NULL past the last. */
const char *anole_image_device_tag(const struct anole_image *img, unsigned int i);
/* The first error the image handle met (empty when none). */
const struct anole_error *anole_image_error(const struct anole_image *img);

int anole_inode_read(struct anole_image *img, uint64_t nid, struct anole_inode *ino);
int anole_lookup(struct anole_image *img, const char *path, struct anole_inode *ino);
/* The entry @name (@len bytes) of directory @dir: 1 and *ino when there,
 * 0 when not (not an error), negative on a bad image. */
int anole_lookup_child(struct anole_image *img, const struct anole_inode *dir, const char *name,
		       size_t len, struct anole_inode *ino);

typedef int (*anole_dirent_fn)(void *ctx, const char *name, size_t namelen, uint64_t nid,
			       unsigned int file_type);
/* Calls @fn for every entry, "." and ".." included; a non-zero return stops
 * the walk and is passed back. */
int anole_readdir(struct anole_image *img, const struct anole_inode *dir, anole_dirent_fn fn,
		  void *ctx);

/* Returns bytes read (short only at end of file). */
ssize_t anole_pread(struct anole_image *img, const struct anole_inode *ino, void *buf, size_t len,
		    uint64_t off);
/* Is [off, off+len) of a file a hole? Sets *data_end to where the current
 * data or hole run ends, so callers can skip holes (past @off and within
 * the file when @off is inside it; else an error). */
int anole_map(struct anole_image *img, const struct anole_inode *ino, uint64_t off, bool *hole,
	      uint64_t *run_end);
int anole_readlink(struct anole_image *img, const struct anole_inode *ino, char *buf, size_t size);

typedef int (*anole_xattr_fn)(void *ctx, const char *name, const void *value, size_t size);
int anole_xattrs(struct anole_image *img, const struct anole_inode *ino, anole_xattr_fn fn,
		 void *ctx);

/* What the dynamic loader reads to start each program of the image at
 * @image, whose data lies in blobs beside it (`build --separate-data`, a
 * lazy image's metadata image): the ELF load hints `anole convert`
 * stores (docs/FORMAT.md), as JSON with each file's path under "paths". */
int anole_load_hints(const char *image, char **json, struct anole_error *err);

/* ---- whole-image operations --------------------------------------------- */

struct anole_check_stats {
	uint64_t inodes, dirs, files, bytes;
};
/* Walk and validate everything; reads every data byte. */
int anole_check(struct anole_image *img, struct anole_check_stats *stats);

struct anole_extract_options {
	bool restore_owner; /* chown, as root */
	bool quiet;
	unsigned int threads; /* decoding threads; 0 = one per core, 1 = none besides the caller */
};
/* Restore the whole tree under @dir (created if missing, must be empty;
 * never a symlink), all or nothing: a failure leaves @dir as it was. */
int anole_extract(struct anole_image *img, const char *dir,
		  const struct anole_extract_options *opts, struct anole_error *err);

struct anole_export_options {
	bool quiet;
};
/* Write the whole tree as a POSIX (pax) tar to @out ("-" for stdout), with
 * xattrs, hard links, devices and sub-second times. */
int anole_export(struct anole_image *img, const char *out, const struct anole_export_options *opts,
		 struct anole_error *err);

/* ---- lazy images (metadata image + data blobs; docs/FORMAT.md) ---------- */

struct anole_convert_options {
	struct anole_build_options build; /* compress NULL = zstd; separate data and
					     dedupe are implied; fragments default off */
	const char *const *dedup_with;    /* lazy images whose blobs may be reused */
	size_t ndedup_with;
	uint64_t upload_chunk;            /* 0 = one PUT per blob, else PATCHes */
	const char *work_dir;             /* staging for registry targets;
					     NULL = $TMPDIR, else /var/tmp */
	void (*log)(void *ctx, const char *line); /* one line per step, or NULL */
	void *log_ctx;
};

struct anole_convert_stats {
	struct anole_build_stats build;
	char manifest_digest[72];
	uint64_t total_bytes;   /* manifest + every blob it references */
	uint64_t new_bytes;     /* bytes of blobs the target did not have */
	unsigned int blobs, blobs_uploaded, blobs_present, blobs_mounted;
	unsigned int base_blobs, base_blobs_used;
};

/* Convert @source (anything anole_build reads) into a lazy image at
 * @target ("docker://HOST/REPO[:TAG]" or "oci:DIR[:TAG]"). */
int anole_convert(const char *source, const char *target, const struct anole_convert_options *o,
		  struct anole_convert_stats *stats, struct anole_error *err);

struct anole_pull_options {
	int tls_verify;
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
};
struct anole_pull_stats {
	char manifest_digest[72];
	uint64_t bytes_fetched, bytes_present;
	unsigned int blobs_fetched, blobs_present;
};
/* Fetch a lazy image and everything it references into the OCI layout
 * @dir (created when missing), verifying every byte, the data blobs range
 * by range against their digest tables. Nothing unverified is left there. */
int anole_pull(const char *ref, const char *dir, const struct anole_pull_options *o,
	       struct anole_pull_stats *stats, struct anole_error *err);

/* What a lazy image's manifest says. */
struct anole_lazy_blob {
	char digest[72], digests[72], chunks[72];
	uint64_t size, digests_size, chunks_size;
	/* its digest table is version 2 (ranges cut at its extents): a lazy
	 * mount needs no chunk index to fetch extents whole */
	bool cut_at_extents;
};
struct anole_lazy_info {
	char manifest_digest[72], meta_digest[72], config_digest[72];
	uint64_t manifest_size, meta_size, config_size;
	/* the metadata image itself: the layer is zstd-compressed when these
	 * differ from meta_digest/meta_size */
	char meta_image_digest[72];
	uint64_t meta_image_size;
	char *config_json;      /* the config blob's text */
	char *meta_path;        /* local layouts: the metadata image */
	char hints_digest[72];  /* ELF load hints; empty when the image has none */
	uint64_t hints_size;
	size_t nblobs;
	struct anole_lazy_blob *blobs;
};
/* Read a lazy image's manifest and config from a layout ("oci:DIR[:TAG]"
 * or DIR) or a registry. */
int anole_lazy_open(const char *ref, int tls_verify, struct anole_lazy_info **out,
		    struct anole_error *err);
void anole_lazy_free(struct anole_lazy_info *li);

/* ---- the lazy mount service ---------------------------------------------------
 * A daemon serves lazy mounts: the kernel reads the images, the daemon
 * fills missing ranges of their data blobs when a reader first needs them
 * (fanotify pre-content events). $ANOLE_RUNTIME_DIR (default /run/anole)
 * holds its socket, pid files and log; $ANOLE_CACHE_DIR (default
 * /var/lib/anole/cache) the shared cache. */
/* Run the daemon in this process until nothing is mounted. */
int anole_daemon(struct anole_error *err);
/* One JSON request ({"op":"mount"|"umount"|"trace"|"status"|"metrics", ...}) to the
 * daemon, started first when @start and not running; *reply is its JSON
 * answer (free it). */
int anole_daemon_request(const char *request, int start, char **reply, struct anole_error *err);
/* What a mount request carries as "credentials": the caller's for the
 * registry @ref ("docker://...") names, from $REGISTRY_AUTH_FILE or
 * ~/.docker/config.json, as JSON text (free it; it holds a secret), or
 * *json = NULL when there are none. The daemon uses only these for the
 * mount, never its own environment's. A reference with a user name or
 * password is refused. */
int anole_mount_credentials(const char *ref, char **json, struct anole_error *err);

/* ---- running a container ---------------------------------------------------- */
struct anole_run_options {
	const char *ref;           /* a lazy image */
	const char *const *argv;   /* the command; none: the image's */
	size_t argc;
	const char *const *env;    /* KEY=VALUE, after the image's */
	size_t nenv;
	const char *const *volumes; /* /SRC:/DST[:ro|rw] */
	size_t nvolumes;
	const char *workdir;       /* NULL: the image's */
	const char *user;          /* USER[:GROUP] or UID[:GID]; NULL: the image's */
	const char *runtime;       /* NULL: crun or runc, the first that works */
	const char *upper;         /* the writable layer's directory; NULL: a tmpfs */
	/* network: by default (neither) and with net_none, a network
	 * namespace of the container's own with only loopback; net_host: the
	 * host's network namespace and /etc/resolv.conf */
	bool net_none;
	bool net_host;
	/* shared-memory sockets: preload this libanole-smc.so in the container
	 * (bound read-only at /run/anole/libanole-smc.so) with the rendezvous
	 * directory smc_dir bound at /run/anole/smc; NULL: none */
	const char *smc_lib;
	const char *smc_dir;
	const char *prefetch;      /* recorded (NULL), all or none: as anole mount */
	bool no_load_hints;        /* as anole mount --no-load-hints */
	int tls_verify;
	/* record which data the command reads, in order (through FUSE, so
	 * every first read shows); *trace gets the list as JSON */
	bool record;
	char **trace;
	/* run the command in a microVM (lib/vm, docs/DESIGN-vm.md) instead of
	 * with an OCI runtime: the guest reads the lazy mount's metadata
	 * image and blob files as disks; volumes, runtime, upper, net and
	 * record are not taken */
	bool vm;
	void (*log)(void *ctx, const char *line);
	void *log_ctx;
};
/* Mount @o->ref lazily, put a writable overlay on it, run the command with
 * an OCI runtime, and undo every mount. *status: the command's exit status
 * (128 + signal when killed).
 *
 * The call owns the process until it returns: it forks and executes the
 * runtime (and helpers: the runtime's --version, delete and kill, rm) and
 * waits for exactly those children by pid; it installs handlers for
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT that forward the signal to the
 * runtime (a second one kills the container), and puts the caller's
 * handlers back before it returns. Call it from one thread at a time, in
 * a process that does not reap children it did not start (no SIGCHLD
 * handler calling wait(-1), SIGCHLD not ignored). It needs root: it mounts. */
int anole_run(const struct anole_run_options *o, int *status, struct anole_error *err);

/* Store a recorded prefetch list (anole_run's trace) with the image @ref:
 * an artifact tagged sha256-HEX.prefetch whose subject is the image.
 * *tag gets that tag. */
int anole_prefetch_store(const char *ref, const char *list_json, int tls_verify, char *tag,
			 size_t tag_size, struct anole_error *err);

/* The cache ($ANOLE_CACHE_DIR): blobs, complete or partial. */
struct anole_cache_entry {
	char digest[72];
	char path[800];
	uint64_t size;  /* the blob's bytes */
	uint64_t disk;  /* bytes it takes on disk (a partial blob: what is there) */
	int64_t last_used; /* the later of its atime and mtime */
	bool partial, in_use; /* in use: by a mount the daemon serves */
};
int anole_cache_list(int (*fn)(void *ctx, const struct anole_cache_entry *e), void *ctx,
		     struct anole_error *err);
struct anole_cache_gc_stats {
	uint64_t before, after, removed_bytes;
	unsigned removed, kept_in_use;
};
/* Remove blobs, least recently used first, until the cache takes at most
 * @max_size bytes on disk; never what a mount uses. */
int anole_cache_gc(uint64_t max_size, struct anole_cache_gc_stats *st, struct anole_error *err);
/* One blob as anole_cache_verify found it. */
struct anole_cache_check {
	struct anole_cache_entry e;
	bool bad;      /* bytes that do not match its digest, or its table's */
	bool skipped;  /* partial and in use: reading it would wake the daemon */
	uint64_t ranges, bad_ranges; /* partial: present ranges checked, wrong */
	char what[200]; /* what was wrong, and what was done about it */
};
struct anole_cache_verify_stats {
	uint64_t bytes;
	unsigned checked, bad, skipped;
};
/* Hash the cache again: a complete blob against its digest (removed when
 * it differs), a partial one's present ranges against its digest table
 * (ranges that differ are forgotten, fetched again when read; a partial
 * blob whose table or map is gone or wrong is removed). Partial blobs
 * the daemon holds are skipped. @fn (or NULL) sees every blob. */
int anole_cache_verify(int (*fn)(void *ctx, const struct anole_cache_check *c), void *ctx,
		       struct anole_cache_verify_stats *st, struct anole_error *err);

#ifdef __cplusplus
}
#endif
#endif
