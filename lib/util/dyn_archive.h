/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libarchive through dlopen (see dynlib.h). Include this instead of
 * <archive.h> and <archive_entry.h>; call anole_archive_load() before the
 * first archive_* call.
 */
#ifndef ANOLE_DYN_ARCHIVE_H
#define ANOLE_DYN_ARCHIVE_H

#include <archive.h>
#include <archive_entry.h>

#include "util/dynlib.h"

#define ANOLE_ARCHIVE_SONAME "libarchive.so.13"

/* Every libarchive function anole calls: listed here and again as a
 * macro below. A name missing below links to the real symbol and fails
 * the link (libarchive is not linked); one missing here fails to compile. */
#define ANOLE_ARCHIVE_FUNCS(X)                                                                     \
	X(archive_entry_acl_add_entry)                                                             \
	X(archive_entry_acl_next)                                                                  \
	X(archive_entry_acl_reset)                                                                 \
	X(archive_entry_clear)                                                                     \
	X(archive_entry_copy_hardlink)                                                             \
	X(archive_entry_copy_pathname)                                                             \
	X(archive_entry_copy_symlink)                                                              \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_free)                                                                      \
	X(archive_entry_gid)                                                                       \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_hardlink_utf8)                                                             \
	X(archive_entry_mode)                                                                      \
	X(archive_entry_mtime)                                                                     \
	X(archive_entry_mtime_nsec)                                                                \
	X(archive_entry_new)                                                                       \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_pathname_utf8)                                                             \
	X(archive_entry_rdevmajor)                                                                 \
	X(archive_entry_rdevminor)                                                                 \
	X(archive_entry_set_gid)                                                                   \
	X(archive_entry_set_mode)                                                                  \
	X(archive_entry_set_mtime)                                                                 \
	X(archive_entry_set_rdevmajor)                                                             \
	X(archive_entry_set_rdevminor)                                                             \
	X(archive_entry_set_size)                                                                  \
	X(archive_entry_set_uid)                                                                   \
	X(archive_entry_size)                                                                      \
	X(archive_entry_sparse_add_entry)                                                          \
	X(archive_entry_sparse_next)                                                               \
	X(archive_entry_sparse_reset)                                                              \
	X(archive_entry_symlink)                                                                   \
	X(archive_entry_symlink_utf8)                                                              \
	X(archive_entry_uid)                                                                       \
	X(archive_entry_xattr_add_entry)                                                           \
	X(archive_entry_xattr_next)                                                                \
	X(archive_entry_xattr_reset)                                                               \
	X(archive_errno)                                                                           \
	X(archive_error_string)                                                                    \
	X(archive_filter_bytes)                                                                    \
	X(archive_read_data_block)                                                                 \
	X(archive_read_data_skip)                                                                  \
	X(archive_read_free)                                                                       \
	X(archive_read_header_position)                                                            \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open)                                                                       \
	X(archive_read_support_filter_gzip)                                                        \
	X(archive_read_support_filter_xz)                                                          \
	X(archive_read_support_filter_zstd)                                                        \
	X(archive_read_support_format_empty)                                                       \
	X(archive_read_support_format_raw)                                                         \
	X(archive_read_support_format_tar)                                                         \
	X(archive_set_error)                                                                       \
	X(archive_write_add_filter_none)                                                           \
	X(archive_write_close)                                                                     \
	X(archive_write_data)                                                                      \
	X(archive_write_fail)                                                                      \
	X(archive_write_free)                                                                      \
	X(archive_write_header)                                                                    \
	X(archive_write_new)                                                                       \
	X(archive_write_open2)                                                                     \
	X(archive_write_open_fd)                                                                   \
	X(archive_write_set_format_cpio_newc)                                                      \
	X(archive_write_set_format_option)                                                         \
	X(archive_write_set_format_pax)

DYNLIB_DECLARE(anole_archive, ANOLE_ARCHIVE_FUNCS)

#define archive_entry_acl_add_entry anole_archive.archive_entry_acl_add_entry
#define archive_entry_acl_next anole_archive.archive_entry_acl_next
#define archive_entry_acl_reset anole_archive.archive_entry_acl_reset
#define archive_entry_clear anole_archive.archive_entry_clear
#define archive_entry_copy_hardlink anole_archive.archive_entry_copy_hardlink
#define archive_entry_copy_pathname anole_archive.archive_entry_copy_pathname
#define archive_entry_copy_symlink anole_archive.archive_entry_copy_symlink
#define archive_entry_filetype anole_archive.archive_entry_filetype
#define archive_entry_free anole_archive.archive_entry_free
#define archive_entry_gid anole_archive.archive_entry_gid
#define archive_entry_hardlink anole_archive.archive_entry_hardlink
#define archive_entry_hardlink_utf8 anole_archive.archive_entry_hardlink_utf8
#define archive_entry_mode anole_archive.archive_entry_mode
#define archive_entry_mtime anole_archive.archive_entry_mtime
#define archive_entry_mtime_nsec anole_archive.archive_entry_mtime_nsec
#define archive_entry_new anole_archive.archive_entry_new
#define archive_entry_pathname anole_archive.archive_entry_pathname
#define archive_entry_pathname_utf8 anole_archive.archive_entry_pathname_utf8
#define archive_entry_rdevmajor anole_archive.archive_entry_rdevmajor
#define archive_entry_rdevminor anole_archive.archive_entry_rdevminor
#define archive_entry_set_gid anole_archive.archive_entry_set_gid
#define archive_entry_set_mode anole_archive.archive_entry_set_mode
#define archive_entry_set_mtime anole_archive.archive_entry_set_mtime
#define archive_entry_set_rdevmajor anole_archive.archive_entry_set_rdevmajor
#define archive_entry_set_rdevminor anole_archive.archive_entry_set_rdevminor
#define archive_entry_set_size anole_archive.archive_entry_set_size
#define archive_entry_set_uid anole_archive.archive_entry_set_uid
#define archive_entry_size anole_archive.archive_entry_size
#define archive_entry_sparse_add_entry anole_archive.archive_entry_sparse_add_entry
#define archive_entry_sparse_next anole_archive.archive_entry_sparse_next
#define archive_entry_sparse_reset anole_archive.archive_entry_sparse_reset
#define archive_entry_symlink anole_archive.archive_entry_symlink
#define archive_entry_symlink_utf8 anole_archive.archive_entry_symlink_utf8
#define archive_entry_uid anole_archive.archive_entry_uid
#define archive_entry_xattr_add_entry anole_archive.archive_entry_xattr_add_entry
#define archive_entry_xattr_next anole_archive.archive_entry_xattr_next
#define archive_entry_xattr_reset anole_archive.archive_entry_xattr_reset
#define archive_errno anole_archive.archive_errno
#define archive_error_string anole_archive.archive_error_string
#define archive_filter_bytes anole_archive.archive_filter_bytes
#define archive_read_data_block anole_archive.archive_read_data_block
#define archive_read_data_skip anole_archive.archive_read_data_skip
#define archive_read_free anole_archive.archive_read_free
#define archive_read_header_position anole_archive.archive_read_header_position
#define archive_read_new anole_archive.archive_read_new
#define archive_read_next_header anole_archive.archive_read_next_header
#define archive_read_open anole_archive.archive_read_open
#define archive_read_support_filter_gzip anole_archive.archive_read_support_filter_gzip
#define archive_read_support_filter_xz anole_archive.archive_read_support_filter_xz
#define archive_read_support_filter_zstd anole_archive.archive_read_support_filter_zstd
#define archive_read_support_format_empty anole_archive.archive_read_support_format_empty
#define archive_read_support_format_raw anole_archive.archive_read_support_format_raw
#define archive_read_support_format_tar anole_archive.archive_read_support_format_tar
#define archive_set_error anole_archive.archive_set_error
#define archive_write_add_filter_none anole_archive.archive_write_add_filter_none
#define archive_write_close anole_archive.archive_write_close
#define archive_write_data anole_archive.archive_write_data
#define archive_write_fail anole_archive.archive_write_fail
#define archive_write_free anole_archive.archive_write_free
#define archive_write_header anole_archive.archive_write_header
#define archive_write_new anole_archive.archive_write_new
#define archive_write_open2 anole_archive.archive_write_open2
#define archive_write_open_fd anole_archive.archive_write_open_fd
#define archive_write_set_format_cpio_newc anole_archive.archive_write_set_format_cpio_newc
#define archive_write_set_format_option anole_archive.archive_write_set_format_option
#define archive_write_set_format_pax anole_archive.archive_write_set_format_pax

#endif
