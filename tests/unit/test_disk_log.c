/*
 * The dirty-region log (replication/disk_log.c) on real files:
 *   - a mark says when a region is new (the caller must save before the
 *     write), and the marks survive a save and a reload (a restart);
 *   - a log that is missing, damaged anywhere (a bit flipped, cut short,
 *     grown, another image size or region size, garbage, a stray bit past the
 *     last region under a valid checksum) loads as every region dirty,
 *     never as nothing dirty;
 *   - a save replaces the file whole (no .tmp left; a stale .tmp of ours is
 *     replaced, a symbolic link there is refused and the old log kept);
 *   - clear, count and next walk the marks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_test.h"
#include "replication/disk_int.h"

#define IMAGE	(100ull << 20) /* 1600 regions of 64 KiB */
#define REGIONS 1600u
#define REGION	(64u << 10)

struct fixture {
	char dir[PATH_MAX];
	char log[PATH_MAX];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	dt_mkdir(f->dir, sizeof(f->dir));
	dt_path(f->log, sizeof(f->log), f->dir, "img.dirtylog");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dt_rmdir(f->dir);
	free(f);
	return 0;
}

static struct repl_disk_log *open_log(const char *path, uint64_t image, uint32_t region,
				      bool want_complete)
{
	struct repl_disk_log *l = NULL;
	char why[256];

	assert_int_equal(repl_disk_log_open(path, image, region, &l, why, sizeof(why)), 0);
	assert_non_null(l);
	assert_int_equal(repl_disk_log_is_complete(l), want_complete);
	assert_int_equal(why[0] != 0, !want_complete); /* a reason whenever it is not trusted */
	return l;
}

static void save(struct repl_disk_log *l)
{
	char why[256];

	assert_int_equal(repl_disk_log_save(l, why, sizeof(why)), 0);
}

/* A log with regions 0, 5 and 1599 marked, saved. */
static void make_log(const char *path)
{
	struct repl_disk_log *l = open_log(path, IMAGE, 0, false); /* missing: all dirty */

	repl_disk_log_clear(l);
	assert_int_equal(repl_disk_log_mark(l, 0, 1), 1);
	assert_int_equal(repl_disk_log_mark(l, 5 * REGION + 100, 10), 1);
	assert_int_equal(repl_disk_log_mark(l, IMAGE - 1, 1), 1);
	save(l);
	repl_disk_log_free(l);
}

static void marks_survive_a_restart(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_log *l;
	char tmp[PATH_MAX + 8];

	make_log(f->log);
	snprintf(tmp, sizeof(tmp), "%s.tmp", f->log);
	assert_int_not_equal(access(tmp, F_OK), 0); /* the new file was renamed over */
	l = open_log(f->log, IMAGE, 0, true);
	assert_int_equal(repl_disk_log_regions(l), REGIONS);
	assert_int_equal(repl_disk_log_region_bytes(l), REGION);
	assert_int_equal(repl_disk_log_count(l), 3);
	assert_int_equal(repl_disk_log_next(l, 0), 0);
	assert_int_equal(repl_disk_log_next(l, 1), 5);
	assert_int_equal(repl_disk_log_next(l, 6), REGIONS - 1);
	assert_int_equal(repl_disk_log_next(l, REGIONS), REGIONS);
	/* marks of regions already marked need no save; a range over two regions marks both */
	assert_int_equal(repl_disk_log_mark(l, 5 * REGION, REGION), 0);
	assert_int_equal(repl_disk_log_mark(l, 7 * REGION - 1, 2), 1);
	assert_true(repl_disk_log_is_dirty(l, 6));
	assert_true(repl_disk_log_is_dirty(l, 7));
	assert_int_equal(repl_disk_log_count(l), 5);
	assert_int_equal(repl_disk_log_mark(l, IMAGE - 1, 2), -EINVAL);
	assert_int_equal(repl_disk_log_mark(l, IMAGE + REGION, 1), -EINVAL);
	repl_disk_log_clear(l);
	assert_int_equal(repl_disk_log_count(l), 0);
	assert_int_equal(repl_disk_log_next(l, 0), REGIONS);
	save(l);
	repl_disk_log_free(l);
	l = open_log(f->log, IMAGE, 0, true);
	assert_int_equal(repl_disk_log_count(l), 0); /* a saved clean log loads clean */
	repl_disk_log_free(l);
}

/* Whatever was done to the file, it loads as every region dirty. */
static void expect_all_dirty(const char *path, uint64_t image, uint32_t region)
{
	struct repl_disk_log *l = open_log(path, image, region, false);
	uint64_t n = repl_disk_log_regions(l);

	assert_int_equal(repl_disk_log_count(l), n);
	assert_int_equal(repl_disk_log_next(l, n - 1), n - 1);
	repl_disk_log_free(l);
}

static void flip(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x10;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static void a_damaged_log_is_all_dirty(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	int fd;

	/* missing */
	expect_all_dirty(f->log, IMAGE, 0);
	/* one bit of the bitmap flipped: a region would be missed */
	make_log(f->log);
	flip(f->log, sizeof(struct dlog_header) + 8);
	expect_all_dirty(f->log, IMAGE, 0);
	/* a header field flipped (the generation: harmless in itself, still not trusted) */
	make_log(f->log);
	flip(f->log, offsetof(struct dlog_header, generation));
	expect_all_dirty(f->log, IMAGE, 0);
	/* cut short, and grown */
	make_log(f->log);
	assert_int_equal(stat(f->log, &st), 0);
	assert_int_equal(truncate(f->log, st.st_size - 8), 0);
	expect_all_dirty(f->log, IMAGE, 0);
	make_log(f->log);
	assert_int_equal(truncate(f->log, st.st_size + 8), 0);
	expect_all_dirty(f->log, IMAGE, 0);
	/* another image size, another region size */
	make_log(f->log);
	expect_all_dirty(f->log, IMAGE + REGION, 0);
	expect_all_dirty(f->log, IMAGE, 128 << 10);
	/* not a log at all, and empty */
	fd = open(f->log, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "hello, world\n", 13), 13);
	close(fd);
	expect_all_dirty(f->log, IMAGE, 0);
	assert_int_equal(truncate(f->log, 0), 0);
	expect_all_dirty(f->log, IMAGE, 0);
}

/* The parser on its own: a stray bit past the last region, under a valid checksum. */
static void a_stray_bit_is_refused(void **state)
{
	uint64_t image = 10 * REGION; /* 10 regions: one word, bits 10.. must be 0 */
	struct {
		struct dlog_header h;
		uint64_t w;
	} f = {.h = {.magic = DLOG_MAGIC,
		     .version = DLOG_VERSION,
		     .region_bytes = REGION,
		     .image_bytes = 10 * REGION,
		     .regions = 10},
	       .w = 1ull << 3};
	struct util_bitmap bm;
	uint64_t gen;
	char why[128];
	uint32_t crc;

	(void)state;
	assert_int_equal(util_bitmap_init(&bm, 10), 0);
	crc = util_crc32c_update(UTIL_CRC32C_INIT, &f, sizeof(f));
	f.h.crc32c = util_crc32c_final(crc);
	assert_int_equal(dlog_parse((const uint8_t *)&f, sizeof(f), image, REGION, &bm, &gen, why,
				    sizeof(why)),
			 0);
	assert_true(util_bitmap_is_set(&bm, 3));
	f.h.crc32c = 0;
	f.w |= 1ull << 10;
	crc = util_crc32c_update(UTIL_CRC32C_INIT, &f, sizeof(f));
	f.h.crc32c = util_crc32c_final(crc);
	assert_int_equal(dlog_parse((const uint8_t *)&f, sizeof(f), image, REGION, &bm, &gen, why,
				    sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "past the last region"));
	util_bitmap_dispose(&bm);
}

static void saves_replace_the_file_whole(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_log *l;
	char tmp[PATH_MAX + 8], why[256];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", f->log);
	make_log(f->log);
	/* the leftover of a save that died half-way: ours, replaced */
	fd = open(tmp, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, "partial", 7), 7);
	close(fd);
	l = open_log(f->log, IMAGE, 0, true);
	assert_int_equal(repl_disk_log_mark(l, 9 * REGION, 1), 1);
	save(l);
	assert_int_not_equal(access(tmp, F_OK), 0);
	/* a symbolic link at the temporary name: refused, and the log stays as it was */
	assert_int_equal(symlink("/etc/passwd", tmp), 0);
	assert_int_equal(repl_disk_log_mark(l, 11 * REGION, 1), 1);
	assert_true(repl_disk_log_save(l, why, sizeof(why)) < 0);
	assert_non_null(strstr(why, tmp));
	repl_disk_log_free(l);
	l = open_log(f->log, IMAGE, 0, true);
	assert_int_equal(repl_disk_log_count(l), 4); /* 0, 5, 9, 1599 */
	assert_false(repl_disk_log_is_dirty(l, 11));
	repl_disk_log_free(l);
	unlink(tmp);
}

static void bad_arguments(void **state)
{
	struct repl_disk_log *l = NULL;
	char why[256];

	(void)state;
	assert_int_equal(repl_disk_log_open("/tmp/x", IMAGE, 3000, &l, why, sizeof(why)), -EINVAL);
	assert_int_equal(repl_disk_log_open("/tmp/x", IMAGE, 2 << 20, &l, why, sizeof(why)),
			 -EINVAL);
	assert_int_equal(repl_disk_log_open("/tmp/x", 0, 0, &l, why, sizeof(why)), -EINVAL);
	assert_null(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(marks_survive_a_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(a_damaged_log_is_all_dirty, setup, teardown),
		cmocka_unit_test(a_stray_bit_is_refused),
		cmocka_unit_test_setup_teardown(saves_replace_the_file_whole, setup, teardown),
		cmocka_unit_test(bad_arguments),
	};

	return dt_run(__FILE__, tests, sizeof(tests) / sizeof(tests[0]), 0);
}
