/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The EROFS on-disk format, as anole reads and writes it.
 *
 * Written from the format description in the Linux kernel
 * (fs/erofs/erofs_fs.h, Documentation/filesystems/erofs.rst). All fields
 * are little-endian; every structure's size is checked at compile time so
 * a typo cannot silently shift a field.
 */
#ifndef ANOLE_EROFS_FS_H
#define ANOLE_EROFS_FS_H

#include <stdint.h>

#define EROFS_MAGIC 0xE0F5E1E2u
#define EROFS_SUPER_OFFSET 1024u
#define EROFS_ISLOT_BITS 5 /* nids count 32-byte slots */
#define EROFS_NAME_LEN 255u

/* feature_compat */
#define EROFS_COMPAT_SB_CHKSUM 0x00000001u
#define EROFS_COMPAT_MTIME 0x00000002u
#define EROFS_COMPAT_XATTR_FILTER 0x00000004u
#define EROFS_COMPAT_SHARED_EA_IN_METABOX 0x00000008u /* shared xattrs in the metabox */
#define EROFS_COMPAT_PLAIN_XATTR_PFX 0x00000010u      /* prefix table in the metadata area */

/* feature_incompat */
#define EROFS_INCOMPAT_ZERO_PADDING 0x00000001u
#define EROFS_INCOMPAT_COMPR_CFGS 0x00000002u /* also BIG_PCLUSTER */
#define EROFS_INCOMPAT_CHUNKED_FILE 0x00000004u
#define EROFS_INCOMPAT_DEVICE_TABLE 0x00000008u /* also COMPR_HEAD2 */
#define EROFS_INCOMPAT_ZTAILPACKING 0x00000010u
#define EROFS_INCOMPAT_FRAGMENTS 0x00000020u /* also DEDUPE */
#define EROFS_INCOMPAT_XATTR_PREFIXES 0x00000040u
#define EROFS_INCOMPAT_48BIT 0x00000080u
#define EROFS_INCOMPAT_METABOX 0x00000100u

/* What anole's reader understands today; anything else is refused. */
#define ANOLE_READER_INCOMPAT                                                                      \
	(EROFS_INCOMPAT_ZERO_PADDING | EROFS_INCOMPAT_COMPR_CFGS | EROFS_INCOMPAT_CHUNKED_FILE |    \
	 EROFS_INCOMPAT_DEVICE_TABLE | EROFS_INCOMPAT_ZTAILPACKING | EROFS_INCOMPAT_FRAGMENTS)
/* ...and the metadata layouts: long xattr name prefixes, 48-bit
 * addressing, inodes in a (compressed) metabox inode */
#define ANOLE_READER_INCOMPAT_META                                                                 \
	(EROFS_INCOMPAT_XATTR_PREFIXES | EROFS_INCOMPAT_48BIT | EROFS_INCOMPAT_METABOX)

struct erofs_super_block {
	uint32_t magic;
	uint32_t checksum; /* crc32c of bytes 1024..block end, this field as 0 */
	uint32_t feature_compat;
	uint8_t blkszbits;
	uint8_t sb_extslots; /* superblock size = 128 + sb_extslots * 16 */
	union {
		uint16_t root_nid;
		uint16_t blocks_hi; /* (48BIT, rootnid_8b set) */
	};
	uint64_t inos;
	uint64_t epoch;      /* base seconds of compact inode mtimes */
	uint32_t fixed_nsec; /* nanoseconds of compact inode mtimes */
	uint32_t blocks;
	uint32_t meta_blkaddr;
	uint32_t xattr_blkaddr;
	uint8_t uuid[16];
	uint8_t volume_name[16];
	uint32_t feature_incompat;
	uint16_t available_compr_algs; /* or lz4_max_distance */
	uint16_t extra_devices;
	uint16_t devt_slotoff; /* device table at devt_slotoff * 128 */
	uint8_t dirblkbits;
	uint8_t xattr_prefix_count;
	uint32_t xattr_prefix_start;
	uint64_t packed_nid;
	uint8_t xattr_filter_reserved;
	uint8_t ishare_xattr_prefix_id;
	uint8_t reserved[2];
	uint32_t build_time;  /* (48BIT) seconds after epoch the image was made */
	uint64_t rootnid_8b;  /* (48BIT) root nid, when not 0 */
	uint64_t reserved2;
	/* the first extension slot (sb_extslots >= 1) follows: */
} __attribute__((packed));

/* In the first extension slot: the metabox inode's nid (METABOX). */
#define EROFS_SB_METABOX_NID_OFF 128u
#define EROFS_SB_EXTSLOT_SIZE 16u

/* The superblock checksum covers the block holding it from byte 1024 on:
 * blocks of 512 and 1024 bytes are covered whole (the superblock lies in
 * the block after byte 1024), larger ones to their end. */
static inline uint32_t erofs_sb_csum_len(uint32_t blksz)
{
	return blksz > EROFS_SUPER_OFFSET ? blksz - EROFS_SUPER_OFFSET : blksz;
}

struct erofs_deviceslot {
	uint8_t tag[64];
	uint32_t blocks;
	uint32_t uniaddr; /* first block in the unified address space */
	uint16_t blocks_hi;
	uint16_t uniaddr_hi;
	uint8_t reserved[52];
} __attribute__((packed));

/* i_format: bit 0 version, bits 1..3 data layout */
enum erofs_datalayout {
	EROFS_INODE_FLAT_PLAIN = 0,
	EROFS_INODE_COMPRESSED_FULL = 1,
	EROFS_INODE_FLAT_INLINE = 2,
	EROFS_INODE_COMPRESSED_COMPACT = 3,
	EROFS_INODE_CHUNK_BASED = 4,
};
#define EROFS_I_VERSION_MASK 0x1u
#define EROFS_I_DATALAYOUT_SHIFT 1
#define EROFS_I_DATALAYOUT_MASK 0x7u
#define EROFS_I_NLINK_1_BIT 4      /* compact non-directories: nlink 1, i_nb is startblk_hi */
#define EROFS_I_DOT_OMITTED_BIT 4  /* directories: no "." entry stored */
#define EROFS_I_KNOWN_BITS 0x1fu   /* bits above are features anole does not know */

/* Bit 63 of a nid: the inode lies in the metabox inode's data. */
#define EROFS_NID_METABOX_BIT 63
#define EROFS_NID_MASK ((1ull << EROFS_NID_METABOX_BIT) - 1)

#define EROFS_CHUNK_FORMAT_BLKBITS_MASK 0x001fu
#define EROFS_CHUNK_FORMAT_INDEXES 0x0020u
#define EROFS_CHUNK_FORMAT_48BIT 0x0040u
#define EROFS_NULL_ADDR 0xffffffffu /* a hole in a chunk map */

struct erofs_inode_compact {
	uint16_t i_format;
	uint16_t i_xattr_icount;
	uint16_t i_mode;
	union {
		uint16_t i_nlink;
		uint16_t i_startblk_hi; /* (i_format bit 4, non-directories) */
	};
	uint32_t i_size;
	uint32_t i_mtime; /* seconds after superblock epoch */
	uint32_t i_u;     /* start block, rdev, or chunk format */
	uint32_t i_ino;
	uint16_t i_uid;
	uint16_t i_gid;
	uint32_t i_reserved;
} __attribute__((packed));

struct erofs_inode_extended {
	uint16_t i_format;
	uint16_t i_xattr_icount;
	uint16_t i_mode;
	union {
		uint16_t i_reserved;
		uint16_t i_startblk_hi; /* start block bits 32..47 */
	};
	uint64_t i_size;
	uint32_t i_u;
	uint32_t i_ino;
	uint32_t i_uid;
	uint32_t i_gid;
	uint64_t i_mtime;
	uint32_t i_mtime_nsec;
	uint32_t i_nlink;
	uint8_t i_reserved2[16];
} __attribute__((packed));

struct erofs_xattr_ibody_header {
	uint32_t h_name_filter;
	uint8_t h_shared_count;
	uint8_t h_reserved2[7];
	/* followed by h_shared_count 32-bit shared xattr ids */
} __attribute__((packed));

enum erofs_xattr_index {
	EROFS_XATTR_INDEX_USER = 1,
	EROFS_XATTR_INDEX_POSIX_ACL_ACCESS = 2,
	EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT = 3,
	EROFS_XATTR_INDEX_TRUSTED = 4,
	EROFS_XATTR_INDEX_LUSTRE = 5,
	EROFS_XATTR_INDEX_SECURITY = 6,
};
#define EROFS_XATTR_LONG_PREFIX 0x80u      /* e_name_index: a long prefix's number */
#define EROFS_XATTR_LONG_PREFIX_MASK 0x7fu

/* The long prefix table (XATTR_PREFIXES) holds xattr_prefix_count
 * records from byte xattr_prefix_start * 4 of the metabox, the packed
 * inode, or (PLAIN_XATTR_PFX, or neither inode) the image: each a 16-bit
 * length, then that many bytes: a short prefix's index and the rest of
 * the prefix; each record starts 4-aligned. */
#define EROFS_XATTR_PREFIX_MAX 128u

/* XATTR_FILTER: bit (xxh32(name after the short prefix, seed + the short
 * prefix's index) % 32) of h_name_filter set means no such xattr (Linux's
 * getxattr answers ENODATA at once); unless xattr_filter_reserved. */
#define EROFS_XATTR_FILTER_BITS 32u
#define EROFS_XATTR_FILTER_SEED 0x25BBE08Fu

struct erofs_xattr_entry {
	uint8_t e_name_len;
	uint8_t e_name_index;
	uint16_t e_value_size;
	/* followed by the name suffix and the value, padded to 4 bytes */
} __attribute__((packed));

struct erofs_dirent {
	uint64_t nid;
	uint16_t nameoff;
	uint8_t file_type;
	uint8_t reserved;
} __attribute__((packed));

enum erofs_file_type {
	EROFS_FT_UNKNOWN = 0,
	EROFS_FT_REG_FILE = 1,
	EROFS_FT_DIR = 2,
	EROFS_FT_CHRDEV = 3,
	EROFS_FT_BLKDEV = 4,
	EROFS_FT_FIFO = 5,
	EROFS_FT_SOCK = 6,
	EROFS_FT_SYMLINK = 7,
};

struct erofs_inode_chunk_index {
	uint16_t startblk_hi;
	uint16_t device_id;
	uint32_t startblk_lo;
} __attribute__((packed));

/* A chunk index's device id is masked (as the kernel does) by the smallest
 * all-ones mask that covers every device: ids above it wrap around. */
static inline uint16_t erofs_devid_mask(unsigned int extra_devices)
{
	unsigned int m = 1;
	while (m < extra_devices + 1)
		m <<= 1;
	return (uint16_t)(m - 1);
}

static inline unsigned int erofs_xattr_ibody_size(uint16_t icount)
{
	return icount ? (unsigned int)sizeof(struct erofs_xattr_ibody_header) + 4u * (icount - 1u) : 0;
}

static inline unsigned int erofs_xattr_entry_size(unsigned int name_len, unsigned int value_size)
{
	return (unsigned int)(sizeof(struct erofs_xattr_entry) + name_len + value_size + 3u) & ~3u;
}

_Static_assert(sizeof(struct erofs_super_block) == 128, "superblock is 128 bytes");
_Static_assert(sizeof(struct erofs_deviceslot) == 128, "device slot is 128 bytes");
_Static_assert(sizeof(struct erofs_inode_compact) == 32, "compact inode is 32 bytes");
_Static_assert(sizeof(struct erofs_inode_extended) == 64, "extended inode is 64 bytes");
_Static_assert(sizeof(struct erofs_xattr_ibody_header) == 12, "xattr ibody header is 12 bytes");
_Static_assert(sizeof(struct erofs_xattr_entry) == 4, "xattr entry header is 4 bytes");
_Static_assert(sizeof(struct erofs_dirent) == 12, "dirent is 12 bytes");
_Static_assert(sizeof(struct erofs_inode_chunk_index) == 8, "chunk index is 8 bytes");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "anole assumes a little-endian host");

/* ---- compressed files ---------------------------------------------------- */

enum {
	Z_EROFS_COMPRESSION_LZ4 = 0,
	Z_EROFS_COMPRESSION_LZMA = 1,
	Z_EROFS_COMPRESSION_DEFLATE = 2,
	Z_EROFS_COMPRESSION_ZSTD = 3,
	Z_EROFS_COMPRESSION_MAX
};

#define Z_EROFS_PCLUSTER_MAX_SIZE (1u << 20)   /* compressed bytes */
#define Z_EROFS_PCLUSTER_MAX_DSIZE (12u << 20) /* decompressed bytes */
#define Z_EROFS_LZMA_MAX_DICT_SIZE (8u << 20)

/* Per-algorithm configuration records follow the superblock (COMPR_CFGS),
 * each preceded by its 16-bit size, in algorithm order. */
struct z_erofs_lz4_cfgs {
	uint16_t max_distance;
	uint16_t max_pclusterblks;
	uint8_t reserved[10];
} __attribute__((packed));

struct z_erofs_lzma_cfgs {
	uint32_t dict_size;
	uint16_t format;
	uint8_t reserved[8];
} __attribute__((packed));

struct z_erofs_deflate_cfgs {
	uint8_t windowbits;
	uint8_t reserved[5];
} __attribute__((packed));

struct z_erofs_zstd_cfgs {
	uint8_t format;
	uint8_t windowlog; /* log2(window) - 10 */
	uint8_t reserved[4];
} __attribute__((packed));

#define Z_EROFS_ADVISE_COMPACTED_2B 0x0001
#define Z_EROFS_ADVISE_EXTENTS 0x0001 /* full layout: encoded extent records */
#define Z_EROFS_ADVISE_BIG_PCLUSTER_1 0x0002
#define Z_EROFS_ADVISE_BIG_PCLUSTER_2 0x0004
#define Z_EROFS_ADVISE_INLINE_PCLUSTER 0x0008
#define Z_EROFS_ADVISE_INTERLACED_PCLUSTER 0x0010
#define Z_EROFS_ADVISE_FRAGMENT_PCLUSTER 0x0020
#define Z_EROFS_ADVISE_EXTRECSZ_BIT 1 /* extent records of 4 << ((advise >> 1) & 3) bytes */

/* Found at round_up(inode end + xattrs, 8) of a compressed inode. */
struct z_erofs_map_header {
	uint32_t h_fragmentoff; /* or: u16 reserved, u16 inline data size */
	uint16_t h_advise;
	uint8_t h_algorithmtype; /* low nibble HEAD1, high nibble HEAD2 */
	uint8_t h_clusterbits;   /* lcluster = block << (bits & 7); bit 7: all in packed inode */
} __attribute__((packed));

enum {
	Z_EROFS_LCLUSTER_TYPE_PLAIN = 0,
	Z_EROFS_LCLUSTER_TYPE_HEAD1 = 1,
	Z_EROFS_LCLUSTER_TYPE_NONHEAD = 2,
	Z_EROFS_LCLUSTER_TYPE_HEAD2 = 3,
};
#define Z_EROFS_LI_LCLUSTER_TYPE_MASK 3u
#define Z_EROFS_LI_PARTIAL_REF (1u << 15)
#define Z_EROFS_LI_D0_CBLKCNT (1u << 11) /* delta[0] of the 1st NONHEAD: block count */

/* Full (non-compact) lcluster index: one per logical cluster. */
struct z_erofs_lcluster_index {
	uint16_t di_advise; /* type in the low 2 bits */
	uint16_t di_clusterofs;
	union {
		uint32_t blkaddr;  /* HEAD and PLAIN */
		uint16_t delta[2]; /* NONHEAD: back to its head, on to the next */
	} di_u;
} __attribute__((packed));

/* Encoded extents (EXTENTS, 48BIT images): records of 4, 8, 16 or 32 bytes,
 * the first ones of each (4 and 8: one per lcluster; 4 implies addresses
 * from a 64-bit start before the first record), aligned to their size
 * after the map header. */
struct z_erofs_extent {
	uint32_t plen;      /* stored bytes, PARTIAL, format + 1 (0: plain) */
	uint32_t pstart_lo; /* byte address */
	uint32_t pstart_hi;
	uint32_t lstart_lo; /* file offset */
	uint32_t lstart_hi;
	uint8_t reserved[12];
} __attribute__((packed));
#define Z_EROFS_EXTENT_PLEN_PARTIAL (1u << 27)
#define Z_EROFS_EXTENT_PLEN_FMT_BIT 28
#define Z_EROFS_EXTENT_PLEN_MASK ((Z_EROFS_PCLUSTER_MAX_SIZE << 1) - 1)

/* Full indexes start 8 bytes after the map header. */
#define Z_EROFS_FULL_INDEX_START(end) (ROUND_UP_8(end) + sizeof(struct z_erofs_map_header) + 8)
#define ROUND_UP_8(x) (((x) + 7) & ~(uint64_t)7)

_Static_assert(sizeof(struct z_erofs_map_header) == 8, "map header is 8 bytes");
_Static_assert(sizeof(struct z_erofs_lcluster_index) == 8, "lcluster index is 8 bytes");
_Static_assert(sizeof(struct z_erofs_extent) == 32, "extent record is 32 bytes");
_Static_assert(sizeof(struct z_erofs_lz4_cfgs) == 14, "lz4 cfgs are 14 bytes");
_Static_assert(sizeof(struct z_erofs_lzma_cfgs) == 14, "lzma cfgs are 14 bytes");
_Static_assert(sizeof(struct z_erofs_deflate_cfgs) == 6, "deflate cfgs are 6 bytes");
_Static_assert(sizeof(struct z_erofs_zstd_cfgs) == 6, "zstd cfgs are 6 bytes");

#endif
