/*
 * Disk resync (replication/disk_sync.c, disk_recv.c, disk_wire.c) between two
 * real images over loopback TCP, the destination on a thread of its own:
 *   - checksum mode sends exactly the ranges whose digests differ (a range
 *     that became zeros as a ZERO), and the images end equal, digests compared;
 *   - holes stay holes: a hole range is never read and a range of zeros is
 *     punched at the destination; a full copy into an empty file stays sparse;
 *   - dirty mode sends exactly what the log marks, and a log that missed a
 *     write is caught by the image digests (-EILSEQ at both ends);
 *   - a destination of another size is refused (-ERANGE at both ends);
 *   - keys: the same key seals the link; another key, or none against one,
 *     is refused and the destination keeps listening;
 *   - a connection cut at any byte, either way, ends both ends with an error
 *     within the timeout, and a later sync repairs the image;
 *   - a destination whose file system fills up (a real 1 MiB tmpfs) stops
 *     the source with its -ENOSPC;
 *   - a VM hello at a disk destination, and a disk hello at a VM replica's
 *     session layer, are refused by name;
 *   - the record checks of §11 (dsync_rec_parse) refuse what the spec refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_test.h"
#include "replication/disk_int.h"

#define MiB   (1ull << 20)
#define RANGE (64u << 10)
/* 2 batches, the last one short, and a last range of 12800 bytes */
#define SIZE (40 * MiB + 12800)

struct fixture {
	char dir[PATH_MAX];
	char src[PATH_MAX], dst[PATH_MAX];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	dt_mkdir(f->dir, sizeof(f->dir));
	dt_path(f->src, sizeof(f->src), f->dir, "src.img");
	dt_path(f->dst, sizeof(f->dst), f->dir, "dst.img");
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

/* ---- the destination on a thread ------------------------------------------------------ */

struct receiver {
	pthread_t th;
	int fd;
	uint64_t size;
	struct repl_listener *ln;
	int wait_ms;
	struct repl_disk_sync_opts o;
	struct repl_disk_sync_stats st;
	int rc;
	char why[512];
};

static void *receive_main(void *arg)
{
	struct receiver *r = arg;

	r->rc = repl_disk_sync_receive(&repl_tcp_ops, r->ln, r->wait_ms, r->fd, r->size, &r->o,
				       &r->st, r->why, sizeof(r->why));
	return NULL;
}

/* Listen on loopback for `path` with `o`; the port to sync to. */
static uint16_t receiver_start(struct receiver *r, const char *path,
			       const struct repl_disk_sync_opts *o)
{
	char why[160];

	memset(r, 0, sizeof(*r));
	r->o = *o;
	if (!r->o.conn.timeout_ms)
		r->o.conn.timeout_ms = 2000;
	r->wait_ms = 1500;
	r->fd = open(path, O_RDWR);
	assert_true(r->fd >= 0);
	assert_int_equal(repl_disk_image_size(r->fd, &r->size, why, sizeof(why)), 0);
	assert_int_equal(repl_tcp_ops.listen("127.0.0.1:0", &r->o.conn, &r->ln), 0);
	assert_int_equal(pthread_create(&r->th, NULL, receive_main, r), 0);
	return repl_tcp_ops.local_port(r->ln);
}

static int receiver_join(struct receiver *r)
{
	pthread_join(r->th, NULL);
	repl_tcp_ops.close_listener(r->ln);
	close(r->fd);
	return r->rc;
}

/* Sync src to a receiver of dst; both results and stats. */
struct result {
	int src_rc, dst_rc;
	struct repl_disk_sync_stats src, dst;
	char src_why[512], dst_why[512];
	uint64_t ms;
};

static void sync_pair(const char *src, const char *dst, const struct repl_disk_sync_opts *so,
		      const struct repl_disk_sync_opts *dopts, struct result *res)
{
	struct repl_disk_sync_opts o = *so, d = dopts ? *dopts : (struct repl_disk_sync_opts){0};
	struct receiver r;
	char peer[32], why[160];
	uint64_t size, t0 = util_now_ns();
	uint16_t port = receiver_start(&r, dst, &d);
	int fd = open(src, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(repl_disk_image_size(fd, &size, why, sizeof(why)), 0);
	if (!o.conn.timeout_ms)
		o.conn.timeout_ms = 2000;
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", port);
	memset(res, 0, sizeof(*res));
	res->src_rc = repl_disk_sync_send(peer, fd, size, &o, &res->src, res->src_why,
					  sizeof(res->src_why));
	res->dst_rc = receiver_join(&r);
	res->dst = r.st;
	memcpy(res->dst_why, r.why, sizeof(r.why));
	res->ms = (util_now_ns() - t0) / 1000000;
	close(fd);
	if (res->src_rc || res->dst_rc)
		printf("  source %d (%s), destination %d (%s), %llu ms\n", res->src_rc,
		       res->src_why, res->dst_rc, res->dst_why, (unsigned long long)res->ms);
}

static void expect_ok(const struct result *r)
{
	assert_int_equal(r->src_rc, 0);
	assert_int_equal(r->dst_rc, 0);
	assert_true(r->src.verified);
	assert_true(r->dst.verified);
	assert_memory_equal(r->src.digest, r->dst.digest, REPL_DISK_DIGEST_BYTES);
	assert_int_equal(r->src.data_bytes, r->dst.data_bytes);
	assert_int_equal(r->src.zero_bytes, r->dst.zero_bytes);
	assert_int_equal(r->src.tx_bytes, r->dst.rx_bytes);
	assert_int_equal(r->src.rx_bytes, r->dst.tx_bytes);
}

static const struct repl_disk_sync_opts checksum = {.mode = REPL_DISK_SYNC_CHECKSUM};

/* ---- what is sent ------------------------------------------------------------------------- */

static void checksum_sends_only_what_differs(void **state)
{
	struct fixture *f = *state;
	struct result r;

	dt_image(f->src, SIZE, false, 1);
	dt_image(f->dst, SIZE, false, 1);
	/* three ranges differ (one is the short last range), one became zeros */
	dt_write(f->src, 0, 100, 2);
	dt_write(f->src, 50 * RANGE + 1000, 10, 3);
	dt_write(f->src, SIZE - 10, 10, 4);
	dt_write(f->src, 600 * RANGE, RANGE, 0);
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
	assert_int_equal(r.src.ranges, 641);
	assert_int_equal(r.src.batches, 2);
	assert_int_equal(r.src.ranges_sent, 4);
	assert_int_equal(r.src.data_bytes, 2 * RANGE + 12800);
	assert_int_equal(r.src.zero_bytes, RANGE);
	assert_int_equal(r.dst.written_bytes, 3 * RANGE + 12800);
	assert_true(dt_is_hole(f->dst, 600 * RANGE, RANGE)); /* zeros became a hole */
	/* on the wire: the data, the SUMS (32 bytes a range) and little else */
	assert_in_range(r.src.tx_bytes, r.src.data_bytes, r.src.data_bytes + 4096);
	assert_in_range(r.src.rx_bytes, 641 * 32, 641 * 32 + 4096);
	/* again: nothing left to send */
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_int_equal(r.src.ranges_sent, 0);
}

static void holes_stay_holes(void **state)
{
	struct fixture *f = *state;
	const struct repl_disk_sync_opts full = {.mode = REPL_DISK_SYNC_FULL};
	struct result r;

	/* a sparse source with data in two ranges, over a destination full of data */
	dt_image(f->src, SIZE, true, 0);
	dt_write(f->src, 7 * RANGE, RANGE, 5);
	dt_write(f->src, 500 * RANGE, 100, 6);
	dt_image(f->dst, SIZE, false, 7);
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
	assert_int_equal(r.src.data_bytes, 2 * RANGE);
	assert_int_equal(r.src.zero_bytes, SIZE - 2 * RANGE);
	/* the source read only its two data ranges; the holes were known without reading */
	assert_int_equal(r.src.read_bytes, 2 * RANGE);
	assert_int_equal(r.src.compared_bytes, SIZE);
	assert_true(dt_is_hole(f->dst, 8 * RANGE, 400 * RANGE));
	/* a full copy into an empty file: sparse where the source is */
	dt_image(f->dst, SIZE, true, 0);
	sync_pair(f->src, f->dst, &full, NULL, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
	assert_int_equal(r.src.ranges_sent, 641);
	assert_int_equal(r.src.data_bytes, 2 * RANGE);
	assert_true(dt_is_hole(f->dst, 8 * RANGE, 400 * RANGE));
	/* the destination marked its zero ranges in SUMS: a few bytes each, not 32; it read
	 * nothing for them, only the two ranges it wrote, back for the digest */
	dt_image(f->dst, SIZE, true, 0);
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_true(r.src.rx_bytes < 1024);
	assert_int_equal(r.dst.read_bytes, 2 * RANGE);
}

static void dirty_mode_sends_what_the_log_marks(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_sync_opts dirty = {.mode = REPL_DISK_SYNC_DIRTY};
	struct repl_disk_log *log = NULL;
	char path[PATH_MAX], why[256];
	struct result r;

	dt_path(path, sizeof(path), f->dir, "src.dirtylog");
	dt_image(f->src, SIZE, false, 1);
	dt_image(f->dst, SIZE, false, 1);
	assert_int_equal(repl_disk_log_open(path, SIZE, 0, &log, why, sizeof(why)), 0);
	repl_disk_log_clear(log);
	/* three writes, each marked as a primary would before writing */
	dt_write(f->src, 3 * RANGE, 4096, 8);
	assert_int_equal(repl_disk_log_mark(log, 3 * RANGE, 4096), 1);
	dt_write(f->src, 520 * RANGE - 512, 1024, 9); /* over two regions */
	assert_int_equal(repl_disk_log_mark(log, 520 * RANGE - 512, 1024), 1);
	dirty.log = log;
	sync_pair(f->src, f->dst, &dirty, NULL, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
	assert_int_equal(r.src.ranges_sent, 3);
	assert_int_equal(r.src.data_bytes, 3 * RANGE);
	assert_true(r.src.rx_bytes < 1024); /* no SUMS */
	/* without verify, only the dirty ranges are read */
	dirty.no_verify = true;
	sync_pair(f->src, f->dst, &dirty, NULL, &r);
	assert_int_equal(r.src_rc, 0);
	assert_int_equal(r.dst_rc, 0);
	assert_false(r.src.verified);
	assert_int_equal(r.src.compared_bytes, 3 * RANGE);
	/* a write the log missed: the digests differ at both ends, and say so */
	dirty.no_verify = false;
	repl_disk_log_clear(log);
	dt_write(f->src, 100 * RANGE, 8, 10);
	sync_pair(f->src, f->dst, &dirty, NULL, &r);
	assert_int_equal(r.src_rc, -EILSEQ);
	assert_int_equal(r.dst_rc, -EILSEQ);
	assert_non_null(strstr(r.src_why, "dirty-region log missed writes"));
	assert_false(dt_same(f->src, f->dst));
	/* a checksum resync repairs it */
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_int_equal(r.src.ranges_sent, 1);
	assert_true(dt_same(f->src, f->dst));
	repl_disk_log_free(log);
}

/* ---- refusals ----------------------------------------------------------------------------- */

/* disk_copy_image (a DR test's copy of a replica's disk): byte for byte, a short last piece too */
static void an_image_copies_whole(void **state)
{
	struct fixture *f = *state;
	int from, to;

	dt_image(f->src, SIZE, false, 3);
	dt_write(f->src, SIZE - 100, 100, 4);
	dt_image(f->dst, 0, true, 0);
	from = open(f->src, O_RDONLY);
	to = open(f->dst, O_WRONLY);
	assert_true(from >= 0 && to >= 0);
	assert_int_equal(disk_copy_image(from, to, SIZE), 0);
	close(from);
	close(to);
	assert_true(dt_same(f->src, f->dst));
	/* a source shorter than it was said to be: an error, not a short copy */
	dt_image(f->dst, 0, true, 0);
	from = open(f->src, O_RDONLY);
	to = open(f->dst, O_WRONLY);
	assert_int_not_equal(disk_copy_image(from, to, SIZE + MiB), 0);
	close(from);
	close(to);
}

static void another_size_is_refused(void **state)
{
	struct fixture *f = *state;
	struct result r;

	dt_image(f->src, SIZE, false, 1);
	dt_image(f->dst, SIZE - 512, true, 0);
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	assert_int_equal(r.src_rc, -ERANGE);
	assert_int_equal(r.dst_rc, -ERANGE);
	assert_non_null(strstr(r.src_why, "the same size"));
	assert_int_equal(r.dst.written_bytes, 0);
}

static void keys(void **state)
{
	struct fixture *f = *state;
	struct repl_key k1, k2;
	struct repl_disk_sync_opts s = checksum, d = {0};
	char p1[PATH_MAX], p2[PATH_MAX], why[256];
	struct result r;

	dt_path(p1, sizeof(p1), f->dir, "k1");
	dt_path(p2, sizeof(p2), f->dir, "k2");
	assert_int_equal(repl_key_generate(p1, why, sizeof(why)), 0);
	assert_int_equal(repl_key_generate(p2, why, sizeof(why)), 0);
	assert_int_equal(repl_key_load(p1, &k1, why, sizeof(why)), 0);
	assert_int_equal(repl_key_load(p2, &k2, why, sizeof(why)), 0);
	dt_image(f->src, SIZE, false, 1);
	dt_image(f->dst, SIZE, false, 2);
	/* the same key, encrypted: the seal adds its 20 bytes per record of up to 1 MiB */
	s.key = d.key = &k1;
	s.encrypt = true;
	sync_pair(f->src, f->dst, &s, &d, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
	/* another key: refused, and the destination waits on for the right one */
	d.key = &k2;
	dt_write(f->src, 0, 10, 3);
	sync_pair(f->src, f->dst, &s, &d, &r);
	assert_int_equal(r.src_rc, -EACCES);
	assert_int_equal(r.dst_rc, -ETIMEDOUT);
	/* a key at one end only */
	s.key = NULL;
	s.encrypt = false;
	sync_pair(f->src, f->dst, &s, &d, &r);
	assert_int_equal(r.src_rc, -EACCES);
	assert_non_null(strstr(r.src_why, "key"));
	assert_int_equal(r.dst_rc, -ETIMEDOUT);
	assert_false(dt_same(f->src, f->dst));
	repl_key_wipe(&k1);
	repl_key_wipe(&k2);
}

/* ---- failures at any byte ----------------------------------------------------------------- */

static void cut_anywhere(void **state)
{
	struct fixture *f = *state;
	struct repl_disk_sync_opts cut = checksum, dcut = {0};
	uint64_t tx, rx;
	struct result r;

	dt_image(f->src, SIZE, false, 1);
	dt_image(f->dst, SIZE, false, 1);
	for (uint64_t off = 0; off < SIZE; off += 7 * RANGE)
		dt_write(f->src, off, 512, 2); /* 92 ranges differ */
	/* how many bytes each way a whole sync takes */
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	tx = r.src.tx_bytes;
	rx = r.src.rx_bytes;
	/* the source's connection cut after n bytes: in the hello, the BEGIN, the data, the END */
	const uint64_t at[] = {1,   40,	  64,	  100,	  104,	    110,
			       200, 4096, tx / 3, tx / 2, tx - 100, tx - 1};
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		dt_image(f->dst, SIZE, false, 1);
		cut.conn.cut_after_bytes = at[i];
		printf("source cut after %llu of %llu bytes\n", (unsigned long long)at[i],
		       (unsigned long long)tx);
		sync_pair(f->src, f->dst, &cut, NULL, &r);
		assert_true(r.src_rc < 0);
		assert_true(r.dst_rc < 0);
		assert_true(r.ms < 5000); /* the timeout is 2 s, the wait for a source 1.5 s */
	}
	/* the destination's cut after n bytes: in the welcome, the SUMS, the ACKs, the RESULT */
	const uint64_t dat[] = {1, 100, 200, 300, 5000, rx / 2, rx - 60, rx - 1};
	for (size_t i = 0; i < sizeof(dat) / sizeof(dat[0]); i++) {
		dt_image(f->dst, SIZE, false, 1);
		dcut.conn.cut_after_bytes = dat[i];
		printf("destination cut after %llu of %llu bytes\n", (unsigned long long)dat[i],
		       (unsigned long long)rx);
		sync_pair(f->src, f->dst, &checksum, &dcut, &r);
		assert_true(r.src_rc < 0);
		assert_true(r.dst_rc < 0);
		assert_true(r.ms < 5000);
	}
	/* whatever the cut left, a sync repairs it */
	sync_pair(f->src, f->dst, &checksum, NULL, &r);
	expect_ok(&r);
	assert_true(dt_same(f->src, f->dst));
}

static void a_full_destination_stops_the_source(void **state)
{
	struct fixture *f = *state;
	const struct repl_disk_sync_opts full = {.mode = REPL_DISK_SYNC_FULL};
	char dst[PATH_MAX];
	struct result r;

	if (!dt_have_small_fs)
		skip();
	/* 40 MiB of data for an empty image on a 1 MiB file system */
	dt_image(f->src, SIZE, false, 1);
	dt_path(dst, sizeof(dst), dt_small_fs_path, "dst.img");
	dt_image(dst, SIZE, true, 0);
	sync_pair(f->src, dst, &full, NULL, &r);
	assert_int_equal(r.dst_rc, -ENOSPC);
	assert_int_equal(r.src_rc, -ENOSPC);
	assert_non_null(strstr(r.src_why, "the destination failed: writing"));
	assert_non_null(strstr(r.dst_why, "partly updated"));
	assert_true(r.ms < 5000);
	unlink(dst);
}

/* ---- the session layer's two kinds ------------------------------------------------------ */

static void hellos_of_the_other_kind_are_refused(void **state)
{
	struct fixture *f = *state;
	const struct repl_transport_ops *t = &repl_tcp_ops;
	struct repl_conn_opts co = {.timeout_ms = 2000};
	struct repl_handshake hs;
	struct repl_hello h = {.mem_bytes = SIZE, .ncpus = 1};
	struct receiver rv;
	struct repl_link l = {.t = t};
	struct repl_listener *ln;
	struct repl_conn *c;
	char peer[32], why[256];
	uint32_t idle;

	/* a VM primary at a disk destination: a WELCOME that says what it reached */
	dt_image(f->dst, SIZE, true, 0);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", receiver_start(&rv, f->dst, &checksum));
	assert_int_equal(t->connect(peer, &co, &l.c), 0);
	repl_handshake_init(&hs, NULL, false);
	assert_int_equal(repl_hello_send(&l, &hs, &h), 0);
	assert_int_equal(repl_welcome_recv(&l, &hs, &idle, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "not a disk source"));
	repl_handshake_dispose(&hs);
	t->close(l.c);
	assert_int_equal(receiver_join(&rv), -ETIMEDOUT); /* and it waits on for a source */
	/* a disk source at a VM replica's session layer */
	assert_int_equal(t->listen("127.0.0.1:0", &co, &ln), 0);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", t->local_port(ln));
	assert_int_equal(t->connect(peer, &co, &l.c), 0);
	assert_int_equal(t->accept(ln, 2000, &c), 0);
	repl_handshake_init(&hs, NULL, false);
	hs.disk = true;
	assert_int_equal(repl_hello_send(&l, &hs, &h), 0);
	repl_handshake_dispose(&hs);
	{
		struct repl_link rl = {.t = t, .c = c};

		repl_handshake_init(&hs, NULL, false); /* a VM replica's: no DISK */
		assert_int_equal(repl_hello_recv(&rl, &hs, &h, why, sizeof(why)), -EPROTO);
		assert_non_null(strstr(why, "not a VM primary"));
		repl_handshake_dispose(&hs);
	}
	t->close(c);
	t->close(l.c);
	/* a migration's source at a replica, and a protecting primary at a migration
	 * destination: -EOPNOTSUPP, each told what it reached */
	for (int migrating = 0; migrating < 2; migrating++) {
		struct repl_link rl = {.t = t};

		assert_int_equal(t->connect(peer, &co, &l.c), 0);
		assert_int_equal(t->accept(ln, 2000, &rl.c), 0);
		repl_handshake_init(&hs, NULL, false);
		hs.migrate = migrating;
		assert_int_equal(repl_hello_send(&l, &hs, &h), 0);
		repl_handshake_dispose(&hs);
		repl_handshake_init(&hs, NULL, false);
		hs.migrate = !migrating;
		assert_int_equal(repl_hello_recv(&rl, &hs, &h, why, sizeof(why)), -EOPNOTSUPP);
		assert_non_null(strstr(why, migrating ? "castor-vmm incoming" : "not a migration"));
		repl_handshake_dispose(&hs);
		t->close(rl.c);
		t->close(l.c);
	}
	t->close_listener(ln);
}

/* ---- the record checks ------------------------------------------------------------------- */

static int parse(const struct dsync_params *p, uint32_t type, const void *body, uint32_t len)
{
	struct dsync_rec r;
	char why[256];
	int rc = dsync_rec_parse(p, type, body, len, &r, why, sizeof(why));

	if (rc < 0)
		printf("    refused: %s\n", why);
	return rc;
}

static void records_are_checked(void **state)
{
	struct dsync_begin b = {.image_bytes = SIZE,
				.range_bytes = RANGE,
				.batch_ranges = DSYNC_BATCH_RANGES,
				.mode = REPL_DISK_SYNC_CHECKSUM,
				.flags = DSYNC_F_VERIFY};
	struct dsync_params p;
	uint8_t buf[DSYNC_SUMS_MAX + 64] = {0};
	struct dsync_sums_head sh = {.batch = 1, .count = 641 - 512};
	uint64_t words[3] = {0};
	struct dsync_zero z;
	struct dsync_rec r;
	char why[256];
	uint64_t v;

	(void)state;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), 0);
	dsync_params_from_begin(&b, &p);
	assert_int_equal(p.nranges, 641);
	assert_int_equal(p.nbatches, 2);
	/* BEGIN: the range size, the batch size, the mode, reserved bits */
	b.range_bytes = 3000;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), -EPROTO);
	b.range_bytes = 2 << 20;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), -EPROTO);
	b.range_bytes = RANGE;
	b.batch_ranges = 1024;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), -EPROTO);
	b.batch_ranges = DSYNC_BATCH_RANGES;
	b.mode = 4;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), -EPROTO);
	b.mode = 2;
	b.flags = 2;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b)), -EPROTO);
	b.flags = 1;
	assert_int_equal(parse(NULL, DSYNC_BEGIN, &b, sizeof(b) - 8), -EPROTO);
	/* nothing but BEGIN and ERROR before BEGIN */
	v = 0;
	assert_int_equal(parse(NULL, DSYNC_MARK, &v, 8), -EPROTO);
	/* SUMS of the last batch: 129 ranges, 3 bitmap words, one range marked zero */
	words[0] = 1;
	memcpy(buf, &sh, sizeof(sh));
	memcpy(buf + sizeof(sh), words, sizeof(words));
	assert_int_equal(parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 128 * 32), 0);
	assert_int_equal(dsync_rec_parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 128 * 32, &r, why,
					 sizeof(why)),
			 0);
	assert_true(dsync_sums_is_zero(&r, 0));
	assert_false(dsync_sums_is_zero(&r, 1));
	assert_int_equal(parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 129 * 32), -EPROTO);
	words[2] = 1ull << 1; /* bit 129: past the batch's ranges */
	memcpy(buf + sizeof(sh), words, sizeof(words));
	assert_int_equal(parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 127 * 32), -EPROTO);
	words[2] = 0;
	memcpy(buf + sizeof(sh), words, sizeof(words));
	sh.count = 512; /* the last batch has 129 */
	memcpy(buf, &sh, sizeof(sh));
	assert_int_equal(parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 128 * 32), -EPROTO);
	sh.count = 129;
	sh.batch = 2; /* no such batch */
	memcpy(buf, &sh, sizeof(sh));
	assert_int_equal(parse(&p, DSYNC_SUMS, buf, sizeof(sh) + 24 + 128 * 32), -EPROTO);
	/* DATA: a range's start, exactly its length (the last is short) */
	v = 640ull * RANGE;
	memcpy(buf, &v, 8);
	assert_int_equal(parse(&p, DSYNC_DATA, buf, 8 + 12800), 0);
	assert_int_equal(parse(&p, DSYNC_DATA, buf, 8 + RANGE), -EPROTO);
	v = RANGE + 512;
	memcpy(buf, &v, 8);
	assert_int_equal(parse(&p, DSYNC_DATA, buf, 8 + RANGE), -EPROTO);
	v = 641ull * RANGE;
	memcpy(buf, &v, 8);
	assert_int_equal(parse(&p, DSYNC_DATA, buf, 8 + RANGE), -EPROTO);
	/* a length over what DATA may have is refused from the header alone */
	assert_int_equal(dsync_hdr_check(&p, DSYNC_DATA, 8 + RANGE + 1, why, sizeof(why)), -EPROTO);
	assert_int_equal(dsync_hdr_check(&p, DSYNC_SUMS, DSYNC_SUMS_MAX + 1, why, sizeof(why)),
			 -EPROTO);
	/* ZERO: whole ranges, or to the image's end */
	z = (struct dsync_zero){.offset = 2 * RANGE, .length = 3 * RANGE};
	assert_int_equal(parse(&p, DSYNC_ZERO, &z, sizeof(z)), 0);
	z.length = RANGE + 1;
	assert_int_equal(parse(&p, DSYNC_ZERO, &z, sizeof(z)), -EPROTO);
	z = (struct dsync_zero){.offset = 639ull * RANGE, .length = RANGE + 12800};
	assert_int_equal(parse(&p, DSYNC_ZERO, &z, sizeof(z)), 0);
	z.length += RANGE;
	assert_int_equal(parse(&p, DSYNC_ZERO, &z, sizeof(z)), -EPROTO);
	z.length = 0;
	assert_int_equal(parse(&p, DSYNC_ZERO, &z, sizeof(z)), -EPROTO);
	/* MARK and ACK of batches that exist */
	v = 1;
	assert_int_equal(parse(&p, DSYNC_ACK, &v, 8), 0);
	v = 2;
	assert_int_equal(parse(&p, DSYNC_MARK, &v, 8), -EPROTO);
	/* RESULT and ERROR statuses */
	{
		struct dsync_result res = {.status = 1};
		struct dsync_error e = {.status = -ENOSPC};

		assert_int_equal(parse(&p, DSYNC_RESULT, &res, sizeof(res)), -EPROTO);
		res.status = -EILSEQ;
		assert_int_equal(parse(&p, DSYNC_RESULT, &res, sizeof(res)), 0);
		memcpy(e.text, "bad\nline\x01", 10);
		assert_int_equal(dsync_rec_parse(&p, DSYNC_ERROR, (const uint8_t *)&e, sizeof(e),
						 &r, why, sizeof(why)),
				 0);
		assert_string_equal(r.u.error.text, "bad?line?"); /* one printable line */
		e.status = 0;
		assert_int_equal(parse(&p, DSYNC_ERROR, &e, sizeof(e)), -EPROTO);
	}
	/* unknown types: mandatory refused, optional skipped; a known type marked optional */
	assert_int_equal(parse(&p, 0x0120, buf, 8), -EPROTO);
	assert_int_equal(
		dsync_rec_parse(&p, 0x0120 | DISK_REC_F_OPTIONAL, buf, 8, &r, why, sizeof(why)), 0);
	assert_int_equal(r.type, 0);
	assert_int_equal(parse(&p, DSYNC_ACK | DISK_REC_F_OPTIONAL, &v, 8), -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(checksum_sends_only_what_differs, setup, teardown),
		cmocka_unit_test_setup_teardown(holes_stay_holes, setup, teardown),
		cmocka_unit_test_setup_teardown(dirty_mode_sends_what_the_log_marks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(another_size_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(an_image_copies_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(keys, setup, teardown),
		cmocka_unit_test_setup_teardown(cut_anywhere, setup, teardown),
		cmocka_unit_test_setup_teardown(a_full_destination_stops_the_source, setup,
						teardown),
		cmocka_unit_test_setup_teardown(hellos_of_the_other_kind_are_refused, setup,
						teardown),
		cmocka_unit_test(records_are_checked),
	};
	return dt_run(__FILE__, tests, sizeof(tests) / sizeof(tests[0]), 1 * MiB);
}
