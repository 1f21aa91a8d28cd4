/* SPDX-License-Identifier: Apache-2.0 */
/* Digest tables and chunk indexes: round trips, and hostile files refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "erofs/blobmeta.h"

static void digest_table_round_trip(void **state)
{
	(void)state;
	struct digest_table t, back;
	uint64_t size = 3 * (1ull << 16) + 17; /* a short last range */
	assert_int_equal(digest_table_init(&t, size, 16), 0);
	assert_int_equal(t.head.count, 4);
	for (int i = 0; i < 4; i++)
		memset(t.d[i].b, i + 1, 32);
	struct strbuf raw = {0};
	assert_int_equal(digest_table_encode(&t, &raw), 0);
	assert_int_equal(raw.len, 64 + 4 * 32);
	struct anole_error err = {0};
	assert_int_equal(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t"), 0);
	assert_memory_equal(back.d, t.d, 4 * 32);
	digest_table_release(&back);

	/* another blob size, a cut table, a bad magic: refused with a message */
	assert_true(digest_table_decode(raw.buf, raw.len, size + (1u << 20), &back, &err, "t") < 0);
	assert_non_null(strstr(err.msg, "t: digest table describes"));
	err = (struct anole_error){0};
	assert_true(digest_table_decode(raw.buf, raw.len - 1, size, &back, &err, "t") < 0);
	assert_true(digest_table_decode(raw.buf, 10, size, &back, &err, "t") < 0);
	/* ranges of 4 KiB to 1 MiB only; the count must follow from them */
	for (int bits = 0; bits < 64; bits++) {
		raw.buf[8] = (char)bits;
		if (bits != 16)
			assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	}
	raw.buf[8] = 16;
	assert_int_equal(digest_table_init(&back, size, 11), -EINVAL);
	assert_int_equal(digest_table_init(&back, size, 21), -EINVAL);
	raw.buf[0] ^= 1;
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	strbuf_release(&raw);
	digest_table_release(&t);
}

/* Version 2: ranges cut where the writer says, their lengths listed. */
static void digest_table_cuts(void **state)
{
	(void)state;
	uint64_t size = (3u << 20) - 4096;
	uint64_t starts[] = {0, 4096, 12288, 1u << 20, 2u << 20};
	struct digest_table t, back;
	assert_int_equal(digest_table_init_cuts(&t, size, 16, starts, 5), 0);
	assert_int_equal(t.max_len, 1u << 20);
	for (int i = 0; i < 5; i++)
		memset(t.d[i].b, i + 1, 32);
	struct strbuf raw = {0};
	assert_int_equal(digest_table_encode(&t, &raw), 0);
	assert_int_equal(raw.len, 64 + 5 * 36);
	assert_memory_equal(raw.buf, "ANOLEDT2", 8);
	struct anole_error err = {0};
	assert_int_equal(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t"), 0);
	assert_memory_equal(back.d, t.d, 5 * 32);
	assert_memory_equal(back.off, t.off, 6 * sizeof(uint64_t));
	assert_int_equal(digest_table_range_at(&back, 0), 0);
	assert_int_equal(digest_table_range_at(&back, 4095), 0);
	assert_int_equal(digest_table_range_at(&back, 4096), 1);
	assert_int_equal(digest_table_range_at(&back, 12287), 1);
	assert_int_equal(digest_table_range_at(&back, (1u << 20) - 1), 2);
	assert_int_equal(digest_table_range_at(&back, size - 1), 4);
	assert_int_equal(digest_table_range_len(&back, 4), (1u << 20) - 4096);
	digest_table_release(&back);
	/* lengths that do not add up to the blob, a zero length, a range
	 * over 1 MiB, a count the length does not hold: refused */
	uint32_t *lens = (uint32_t *)(void *)(raw.buf + 64 + 5 * 32);
	lens[4] -= 4096;
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	assert_non_null(strstr(err.msg, "ranges hold"));
	lens[3] += lens[4] + 4096; /* the sum is right, range 3 too long */
	lens[4] = 0;
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	lens[3] = 1u << 20; /* and now only range 4 is empty */
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	lens[3] = 1u << 20;
	lens[4] = (1u << 20) - 4096;
	lens[1] += 1; /* not whole blocks, though the sum is right */
	lens[2] -= 1;
	err = (struct anole_error){0};
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	assert_non_null(strstr(err.msg, "4 KiB blocks"));
	lens[1] -= 1;
	lens[2] += 1;
	assert_int_equal(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t"), 0);
	digest_table_release(&back);
	assert_true(digest_table_decode(raw.buf, raw.len - 4, size, &back, &err, "t") < 0);
	raw.buf[24] = 6;
	assert_true(digest_table_decode(raw.buf, raw.len, size, &back, &err, "t") < 0);
	strbuf_release(&raw);
	digest_table_release(&t);
	/* the writer's cuts are checked too */
	uint64_t bad[] = {0, 8192, 4096};
	assert_int_equal(digest_table_init_cuts(&t, size, 16, bad, 3), -EINVAL);
	uint64_t far[] = {0, 4096};
	assert_int_equal(digest_table_init_cuts(&t, size, 16, far, 2), -EINVAL);
	assert_int_equal(digest_table_init_cuts(&t, size, 11, starts, 5), -EINVAL);
	assert_int_equal(digest_table_init_cuts(&t, size, 16, starts, 0), -EINVAL);
	uint64_t late[] = {4096};
	assert_int_equal(digest_table_init_cuts(&t, size, 16, late, 1), -EINVAL);
}

static void write_index(const char *path, struct chunk_index *c)
{
	struct strbuf raw = {0};
	assert_int_equal(chunk_index_encode(c, &raw), 0);
	assert_int_equal(outfile_write(path, raw.buf, raw.len), 0);
	strbuf_release(&raw);
}

static void chunk_index_checks(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_blobmeta.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[64];
	snprintf(path, sizeof(path), "%s/ci", dir);

	struct anole_chunk_entry e[2] = {{.blkaddr = 0, .cblocks = 3, .nblocks = 3},
					 {.blkaddr = 3, .cblocks = 0, .nblocks = 7}};
	memset(e[0].key, 1, 32);
	memset(e[1].key, 2, 32);
	struct chunk_index c = {.e = e};
	memcpy(c.head.magic, ANOLE_CHUNK_INDEX_MAGIC, 8);
	c.head.blkszbits = 12;
	c.head.count = 2;
	c.head.blob_blocks = 10;
	c.head.pcluster = 32768;
	write_index(path, &c);
	struct chunk_index back;
	struct anole_error err = {0};
	assert_int_equal(chunk_index_load(path, &back, &err), 0);
	assert_int_equal(back.head.count, 2);
	assert_memory_equal(back.e, e, sizeof(e));
	chunk_index_release(&back);

	/* an entry past the blob's end */
	c.head.blob_blocks = 9;
	write_index(path, &c);
	assert_true(chunk_index_load(path, &back, &err) < 0);
	assert_non_null(strstr(err.msg, "entry 1 lies outside the blob"));
	/* a count the file does not hold */
	c.head.blob_blocks = 10;
	c.head.count = 3;
	c.e = NULL;
	struct strbuf raw = {0};
	assert_int_equal(strbuf_add(&raw, &c.head, sizeof(c.head)), 0);
	assert_int_equal(strbuf_add(&raw, e, sizeof(e)), 0);
	assert_int_equal(outfile_write(path, raw.buf, raw.len), 0);
	strbuf_release(&raw);
	err = (struct anole_error){0};
	assert_true(chunk_index_load(path, &back, &err) < 0);
	assert_non_null(strstr(err.msg, "not a chunk index"));
	/* a count whose byte size wraps to the file's size */
	c.head.count = 2 + (1ull << 60); /* x 48 wraps to 96 */
	raw = (struct strbuf){0};
	assert_int_equal(strbuf_add(&raw, &c.head, sizeof(c.head)), 0);
	assert_int_equal(strbuf_add(&raw, e, sizeof(e)), 0);
	assert_int_equal(outfile_write(path, raw.buf, raw.len), 0);
	strbuf_release(&raw);
	assert_true(chunk_index_load(path, &back, &err) < 0);
	/* an entry larger than the writer's pcluster */
	c.head.count = 2;
	c.head.pcluster = 16384;
	c.e = e;
	write_index(path, &c);
	assert_true(chunk_index_load(path, &back, &err) < 0);

	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(digest_table_round_trip),
		cmocka_unit_test(digest_table_cuts),
		cmocka_unit_test(chunk_index_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
