/*
 * The replica's disk epoch buffer (replication/disk.c) on real files:
 *   - nothing reaches the image before its epoch commits; a commit applies
 *     its writes in order (a later overlapping write wins), zeroings punch
 *     holes, and ends with fdatasync only when the epoch had a flush or FUA;
 *   - a commit stops at its epoch; discard(e) forgets e and later epochs and
 *     keeps earlier ones;
 *   - epochs in order only; ranges inside the image only;
 *   - a cap on buffered memory: past it a record is refused (-ENOBUFS) and
 *     nothing of it is kept;
 *   - an image that fills up (a real 1 MiB tmpfs) or passes the file size
 *     limit (RLIMIT_FSIZE) fails the commit with -ENOSPC / -EFBIG, and every
 *     later call fails the same way until reset;
 *   - the §10 records: encode, parse back, and every refusal of the spec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "disk_test.h"
#include "replication/disk_int.h"

#define MiB (1u << 20)

struct fixture {
	char dir[PATH_MAX];
	char img[PATH_MAX];
	int fd;
	struct repl_disk_epoch *b;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	dt_mkdir(f->dir, sizeof(f->dir));
	dt_path(f->img, sizeof(f->img), f->dir, "replica.img");
	dt_image(f->img, 4 * MiB, false, 1);
	f->fd = open(f->img, O_RDWR);
	assert_true(f->fd >= 0);
	assert_int_equal(repl_disk_epoch_new(f->fd, 4 * MiB, 1 * MiB, "test disk 0", &f->b), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	repl_disk_epoch_free(f->b);
	close(f->fd);
	dt_rmdir(f->dir);
	free(f);
	return 0;
}

/* The image's bytes at [off, off + len) equal seed's data at that offset. */
static bool holds(const char *path, uint64_t off, size_t len, uint32_t seed)
{
	uint8_t *want = malloc(len), *got = malloc(len);
	int fd = open(path, O_RDONLY);
	bool ok;

	dt_fill(want, len, off, seed);
	ok = pread(fd, got, len, (off_t)off) == (ssize_t)len && !memcmp(want, got, len);
	close(fd);
	free(want);
	free(got);
	return ok;
}

static void put(struct repl_disk_epoch *b, uint64_t e, uint64_t off, size_t len, uint32_t seed,
		uint32_t flags, int want)
{
	uint8_t *buf = malloc(len);

	dt_fill(buf, len, off, seed);
	assert_int_equal(repl_disk_epoch_write(b, e, off, buf, len, flags), want);
	free(buf);
}

static void commit_applies_in_order(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_epoch_stats st;

	put(f->b, 1, 0, 8192, 7, 0, 0);
	put(f->b, 1, 4096, 4096, 8, 0, 0); /* overlaps the first: it must win */
	assert_int_equal(repl_disk_epoch_zero(f->b, 1, 1 * MiB, 128 << 10), 0);
	/* buffered only: the image still holds what it had */
	assert_true(holds(f->img, 0, 8192, 1));
	assert_true(holds(f->img, 1 * MiB, 128 << 10, 1));
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 3);
	assert_int_equal(st.buffered_bytes, 8192 + 4096);
	assert_int_equal(repl_disk_epoch_commit(f->b, 1), 0);
	assert_true(holds(f->img, 0, 4096, 7));
	assert_true(holds(f->img, 4096, 4096, 8));
	assert_true(holds(f->img, 1 * MiB, 128 << 10, 0));
	assert_true(dt_is_hole(f->img, 1 * MiB, 128 << 10));
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 0);
	assert_int_equal(st.committed_epochs, 1);
	assert_int_equal(st.last_committed, 1);
	assert_int_equal(st.applied_bytes, 8192 + 4096);
	assert_int_equal(st.syncs, 0); /* no flush, no FUA: no fdatasync */
	/* a flush makes the commit durable */
	put(f->b, 2, 8192, 512, 9, 0, 0);
	assert_int_equal(repl_disk_epoch_flush(f->b, 2), 0);
	assert_int_equal(repl_disk_epoch_commit(f->b, 2), 0);
	/* so does a FUA write */
	put(f->b, 3, 8192, 512, 10, REPL_DISK_W_FUA, 0);
	assert_int_equal(repl_disk_epoch_commit(f->b, 3), 0);
	/* an epoch with nothing in it commits too */
	assert_int_equal(repl_disk_epoch_commit(f->b, 4), 0);
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.syncs, 2);
	assert_int_equal(st.last_committed, 4);
	assert_true(holds(f->img, 8192, 512, 10));
}

static void discard_forgets_the_epoch_and_later(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_epoch_stats st;

	put(f->b, 5, 0, 4096, 11, 0, 0);
	put(f->b, 6, 4096, 4096, 12, 0, 0);
	put(f->b, 7, 8192, 4096, 13, 0, 0);
	repl_disk_epoch_discard(f->b, 6); /* 6 arrived in part, 7 after it */
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 1);
	assert_int_equal(st.buffered_bytes, 4096);
	assert_int_equal(repl_disk_epoch_commit(f->b, 7), 0);
	assert_true(holds(f->img, 0, 4096, 11));
	assert_true(holds(f->img, 4096, 8192, 1)); /* never written */
	/* the epochs discarded may come again */
	put(f->b, 8, 4096, 4096, 14, 0, 0);
	repl_disk_epoch_discard(f->b, 0);
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 0);
	assert_int_equal(repl_disk_epoch_commit(f->b, 8), 0);
	assert_true(holds(f->img, 4096, 4096, 1));
}

/* A commit applies its epoch and those before it, never a later one already buffered. */
static void commit_stops_at_its_epoch(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_epoch_stats st;

	put(f->b, 5, 0, 4096, 15, 0, 0);
	put(f->b, 6, 0, 4096, 16, 0, 0);
	put(f->b, 6, 8192, 4096, 17, 0, 0);
	assert_int_equal(repl_disk_epoch_commit(f->b, 5), 0);
	assert_true(holds(f->img, 0, 4096, 15));
	assert_true(holds(f->img, 8192, 4096, 1)); /* epoch 6 is still only buffered */
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 2);
	assert_int_equal(st.buffered_bytes, 8192);
	assert_int_equal(repl_disk_epoch_commit(f->b, 6), 0);
	assert_true(holds(f->img, 0, 4096, 16));
	assert_true(holds(f->img, 8192, 4096, 17));
}

static void order_and_range_are_checked(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_epoch_stats st;

	put(f->b, 3, 0, 512, 2, 0, 0);
	put(f->b, 2, 0, 512, 2, 0, -ESTALE); /* older than one buffered */
	assert_int_equal(repl_disk_epoch_commit(f->b, 3), 0);
	put(f->b, 3, 0, 512, 2, 0, -ESTALE); /* already committed */
	assert_int_equal(repl_disk_epoch_commit(f->b, 3), -ESTALE);
	put(f->b, 4, 4 * MiB - 512, 1024, 2, 0, -EINVAL); /* past the end */
	assert_int_equal(repl_disk_epoch_zero(f->b, 4, 5 * MiB, 512), -EINVAL);
	put(f->b, 4, 0, 512, 2, 0x2, -EINVAL); /* an unknown flag */
	put(f->b, 4, 4 * MiB - 512, 512, 2, 0, 0);
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_ops, 1);
	assert_int_equal(st.error, 0); /* refusals of the caller's records fail nothing */
	/* DISK_SEAL's counts */
	assert_int_equal(repl_disk_epoch_check(f->b, 4, 1, 512), 0);
	assert_int_equal(repl_disk_epoch_check(f->b, 4, 2, 512), -EBADMSG);
	assert_int_equal(repl_disk_epoch_check(f->b, 4, 1, 1024), -EBADMSG);
}

static void the_cap_bounds_memory(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_epoch_stats st;
	uint64_t kept = 0;
	int rc = 0;

	/* 1 MiB cap: 64 KiB writes fit until the cap, then one is refused whole */
	for (int i = 0; i < 32 && !rc; i++) {
		uint8_t buf[65536];

		dt_fill(buf, sizeof(buf), (uint64_t)i << 16, 3);
		rc = repl_disk_epoch_write(f->b, 9, (uint64_t)i << 16, buf, sizeof(buf), 0);
		kept += !rc;
	}
	assert_int_equal(rc, -ENOBUFS);
	assert_in_range(kept, 14, 15);
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_bytes, kept << 16);
	assert_int_equal(st.buffered_ops, kept);
	/* flushes and zeroings count too: a flood of them is refused as well */
	for (int i = 0; i < 100000 && !rc; i++)
		rc = repl_disk_epoch_flush(f->b, 9);
	assert_int_equal(rc, -ENOBUFS);
	/* the caller fails the epoch: discard frees everything */
	repl_disk_epoch_discard(f->b, 9);
	repl_disk_epoch_stats(f->b, &st);
	assert_int_equal(st.buffered_bytes, 0);
	assert_int_equal(st.buffered_ops, 0);
	put(f->b, 9, 0, 65536, 3, 0, 0);
	assert_int_equal(repl_disk_epoch_commit(f->b, 9), 0);
}

/* A commit that cannot write: the error comes back, stays, and reset clears it. */
static void check_failed_commit(struct repl_disk_epoch *b, int want)
{
	struct repl_disk_epoch_stats st;

	assert_int_equal(repl_disk_epoch_commit(b, 1), want);
	repl_disk_epoch_stats(b, &st);
	assert_int_equal(st.error, want);
	assert_int_equal(st.failed_epoch, 1);
	assert_int_equal(st.buffered_ops, 0);
	assert_int_equal(st.committed_epochs, 0);
	/* nothing goes on top of a half-applied epoch */
	put(b, 2, 0, 512, 5, 0, want);
	assert_int_equal(repl_disk_epoch_flush(b, 2), want);
	assert_int_equal(repl_disk_epoch_commit(b, 2), want);
	repl_disk_epoch_reset(b);
	repl_disk_epoch_stats(b, &st);
	assert_int_equal(st.error, 0);
	put(b, 2, 0, 512, 5, 0, 0);
	assert_int_equal(repl_disk_epoch_commit(b, 2), 0);
}

static void a_full_disk_fails_the_commit(void **state)
{
	char img[PATH_MAX];
	struct repl_disk_epoch *b = NULL;
	int fd;

	(void)state;
	if (!dt_have_small_fs)
		skip();
	/* an 8 MiB sparse image on a 1 MiB file system: the writes cannot all land */
	dt_path(img, sizeof(img), dt_small_fs_path, "full.img");
	dt_image(img, 8 * MiB, true, 0);
	fd = open(img, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(repl_disk_epoch_new(fd, 8 * MiB, 4 * MiB, "full disk", &b), 0);
	for (uint64_t off = 0; off < 2 * MiB; off += 65536)
		put(b, 1, off, 65536, 4, 0, 0);
	check_failed_commit(b, -ENOSPC);
	repl_disk_epoch_free(b);
	close(fd);
	unlink(img);
}

static void a_file_size_limit_fails_the_commit(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, lim = {.rlim_cur = 2 * MiB, .rlim_max = RLIM_INFINITY};
	void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);

	/* the image is 4 MiB: a write at 3 MiB passes a 2 MiB file size limit */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	put(f->b, 1, 3 * MiB, 4096, 6, 0, 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	check_failed_commit(f->b, -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_sig);
}

/* ---- §10 records ------------------------------------------------------------------ */

/* Encode op into buf (header, fixed part, data, padding); its total length. */
static size_t encode(const struct repl_disk_op *op, uint8_t *buf)
{
	int n = repl_disk_op_encode(op, buf);
	size_t len;

	assert_true(n > 0);
	len = (size_t)n;
	if (op->kind == REPL_DISK_OP_WRITE) {
		memcpy(buf + len, op->data, op->len);
		len += op->len;
	}
	memset(buf + len, 0, repl_disk_op_pad(op));
	return len + repl_disk_op_pad(op);
}

static int parse_back(const uint8_t *buf, struct repl_disk_op *out)
{
	struct disk_rec_hdr h;
	char why[160];

	memcpy(&h, buf, sizeof(h));
	return repl_disk_op_parse(h.type, buf + sizeof(h), h.length, out, why, sizeof(why));
}

static void records_round_trip(void **state)
{
	static uint8_t data[3 * 512], buf[4096];
	const struct repl_disk_op ops[] = {
		{.kind = REPL_DISK_OP_WRITE,
		 .epoch = 7,
		 .disk = 3,
		 .flags = REPL_DISK_W_FUA,
		 .offset = 1024,
		 .len = sizeof(data),
		 .data = data},
		{.kind = REPL_DISK_OP_ZERO, .epoch = 8, .disk = 1, .offset = 512, .len = 1 << 20},
		{.kind = REPL_DISK_OP_FLUSH, .epoch = 9, .disk = 2},
		{.kind = REPL_DISK_OP_SEAL, .epoch = 9, .disk = 0, .ops = 3, .bytes = 1536},
	};

	(void)state;
	dt_fill(data, sizeof(data), 0, 9);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct repl_disk_op back;
		size_t len = encode(&ops[i], buf);

		assert_int_equal(len % 8, 0);
		assert_int_equal(parse_back(buf, &back), 0);
		assert_int_equal(back.kind, ops[i].kind);
		assert_int_equal(back.epoch, ops[i].epoch);
		assert_int_equal(back.disk, ops[i].disk);
		assert_int_equal(back.flags, ops[i].flags);
		assert_int_equal(back.offset, ops[i].offset);
		assert_int_equal(back.len, ops[i].len);
		assert_int_equal(back.ops, ops[i].ops);
		assert_int_equal(back.bytes, ops[i].bytes);
		if (back.kind == REPL_DISK_OP_WRITE)
			assert_memory_equal(back.data, data, sizeof(data));
	}
}

static void records_refused(void **state)
{
	uint8_t body[64] = {0};
	struct disk_rec_write w = {.epoch = 1, .offset = 512};
	struct disk_rec_zero z = {.epoch = 1, .offset = 512, .length = 512};
	struct disk_rec_flush fl = {.epoch = 1};
	struct repl_disk_op op;
	char why[160];

	(void)state;
#define PARSE(type, ptr, len)                                                                      \
	repl_disk_op_parse(type, (const uint8_t *)(ptr), len, &op, why, sizeof(why))
	memcpy(body, &w, sizeof(w));
	/* a write of less than a sector, or not whole sectors */
	assert_int_equal(PARSE(REPL_DISK_REC_WRITE, body, sizeof(w) + 8), -EPROTO);
	assert_int_equal(PARSE(REPL_DISK_REC_WRITE, body, sizeof(w)), -EPROTO);
	w.offset = 100; /* not a sector's start */
	{
		static uint8_t big[sizeof(w) + 512];

		memcpy(big, &w, sizeof(w));
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE, big, sizeof(big)), -EPROTO);
		w.offset = 512;
		w.flags = 2; /* an unknown flag */
		memcpy(big, &w, sizeof(w));
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE, big, sizeof(big)), -EPROTO);
		w.flags = 0;
		w.disk = REPL_DISK_MAX; /* a fifth disk */
		memcpy(big, &w, sizeof(w));
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE, big, sizeof(big)), -EPROTO);
		w.disk = 0;
		w.offset = UINT64_MAX - 511; /* wraps */
		memcpy(big, &w, sizeof(w));
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE, big, sizeof(big)), -EPROTO);
		w.offset = 512;
		memcpy(big, &w, sizeof(w));
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE, big, sizeof(big)), 0);
		/* the optional flag on a type of §10 */
		assert_int_equal(PARSE(REPL_DISK_REC_WRITE | DISK_REC_F_OPTIONAL, big, sizeof(big)),
				 -EPROTO);
	}
	assert_int_equal(PARSE(REPL_DISK_REC_ZERO, &z, sizeof(z)), 0);
	assert_int_equal(PARSE(REPL_DISK_REC_ZERO, &z, sizeof(z) - 8), -EPROTO);
	z.length = 0;
	assert_int_equal(PARSE(REPL_DISK_REC_ZERO, &z, sizeof(z)), -EPROTO);
	z.length = DISK_ZERO_MAX + 512;
	assert_int_equal(PARSE(REPL_DISK_REC_ZERO, &z, sizeof(z)), -EPROTO);
	z.length = 512;
	z.reserved = 1;
	assert_int_equal(PARSE(REPL_DISK_REC_ZERO, &z, sizeof(z)), -EPROTO);
	assert_int_equal(PARSE(REPL_DISK_REC_FLUSH, &fl, sizeof(fl)), 0);
	fl.reserved = 1;
	assert_int_equal(PARSE(REPL_DISK_REC_FLUSH, &fl, sizeof(fl)), -EPROTO);
	assert_int_equal(PARSE(REPL_DISK_REC_SEAL, body, 24), -EPROTO);
	assert_int_equal(PARSE(0x0002, body, 8), -EPROTONOSUPPORT); /* a PAGES record */
#undef PARSE
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(commit_applies_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(discard_forgets_the_epoch_and_later, setup,
						teardown),
		cmocka_unit_test_setup_teardown(commit_stops_at_its_epoch, setup, teardown),
		cmocka_unit_test_setup_teardown(order_and_range_are_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(the_cap_bounds_memory, setup, teardown),
		cmocka_unit_test(a_full_disk_fails_the_commit),
		cmocka_unit_test_setup_teardown(a_file_size_limit_fails_the_commit, setup,
						teardown),
		cmocka_unit_test(records_round_trip),
		cmocka_unit_test(records_refused),
	};

	return dt_run(__FILE__, tests, sizeof(tests) / sizeof(tests[0]), 1 * MiB);
}
