/*
 * The primary's side of disk replication (replication/disk_tx.c), over a real
 * loopback link, the far end parsing DISK frames as a replica does:
 *   - records belong to the open epoch; a seal closes it (in order only) and
 *     counts each disk's records and data bytes; a send up to epoch e sends
 *     e's records and, asked to, its seals, and nothing of e + 1;
 *   - the queue's cap: past half of it the owner is asked to end the epoch
 *     early, past all of it the session fails (-ENOBUFS from then on), and
 *     nothing is queued any more;
 *   - the initial copy: every range of an image (holes and zero ranges as
 *     DISK_ZERO, never read), with the guest writing meanwhile both where the
 *     copy has been and where it has not: applied in order, the far image
 *     equals the near one;
 *   - re-protection (§8.5): the far end sends its copy's digests first and
 *     the copy sends only the ranges that differ -- data where the near image
 *     has data, zeros where it has a hole the far copy does not -- and the
 *     far image still ends equal, the guest writing throughout; an answer
 *     out of order is refused with the reason;
 *   - a guest writing as fast as it can while the copy reads: the far image
 *     still ends equal (a chunk a write raced is read again);
 *   - verify mode's image digest counts holes as zeros.
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
#include <sys/uio.h>
#include <unistd.h>

#include "disk_test.h"
#include "replication/disk_int.h"

#define MiB (1u << 20)

static const struct repl_transport_ops *T = &repl_tcp_ops;

struct link_pair {
	struct repl_listener *l;
	struct repl_link a, b; /* a: the primary's end, b: the replica's */
};

static void pair_open(struct link_pair *p)
{
	struct repl_conn_opts o = {.timeout_ms = 10000};
	char addr[64];

	memset(p, 0, sizeof(*p));
	p->a.t = p->b.t = T;
	assert_int_equal(T->listen("127.0.0.1:0", &o, &p->l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(p->l));
	assert_int_equal(T->connect(addr, &o, &p->a.c), 0);
	assert_int_equal(T->accept(p->l, 2000, &p->b.c), 0);
}

static void pair_close(struct link_pair *p)
{
	T->close(p->a.c);
	T->close(p->b.c);
	T->close_listener(p->l);
}

/* What the far end saw: records in order (data not kept), and an image written from them. */
struct seen {
	struct repl_disk_op ops[64];
	unsigned n, seals, want_seals;
	uint64_t zero_records, write_records;
	int img_fd; /* >= 0: apply writes and zeroings here */
	struct repl_link *l;
	int rc;
	bool sums; /* first send the digests of img_fd's image (sums_bytes long) */
	uint64_t sums_bytes;
};

/* Read DISK frames until want_seals seals came. */
static void *reader(void *arg)
{
	struct seen *s = arg;
	uint8_t *buf = NULL;
	size_t cap = 0, len;

	if (s->sums) {
		struct disk_sums_src src = {
			.disk = 0, .fd = s->img_fd, .image_bytes = s->sums_bytes};
		char why[192];

		s->rc = disk_sums_send(s->l, &src, 1, NULL, NULL, why, sizeof(why));
		if (s->rc < 0) {
			fprintf(stderr, "%s\n", why);
			return NULL;
		}
	}
	while (s->seals < s->want_seals) {
		enum repl_frame kind;
		size_t off = 0;

		s->rc = repl_frame_recv_into(s->l, REPL_DISK_FRAME_MAX, &buf, &cap, &len, &kind);
		if (s->rc < 0)
			break;
		if (kind != REPL_FRAME_DISK) {
			s->rc = -EPROTO;
			break;
		}
		for (;;) {
			struct repl_disk_op op;
			char why[160];
			int n = repl_disk_frame_next(buf, len, &off, &op, why, sizeof(why));

			if (n == 0)
				break;
			if (n < 0) {
				s->rc = n;
				fprintf(stderr, "%s\n", why);
				goto out;
			}
			if (op.kind == REPL_DISK_OP_SEAL)
				s->seals++;
			if (op.kind == REPL_DISK_OP_ZERO)
				s->zero_records++;
			if (op.kind == REPL_DISK_OP_WRITE)
				s->write_records++;
			if (s->img_fd >= 0 && op.kind == REPL_DISK_OP_WRITE)
				s->rc = disk_write_full(s->img_fd, op.data, op.len, op.offset);
			if (s->img_fd >= 0 && op.kind == REPL_DISK_OP_ZERO)
				s->rc = disk_zero_range(s->img_fd, op.offset, op.len);
			if (s->rc < 0)
				goto out;
			op.data = NULL;
			if (s->n < 64)
				s->ops[s->n++] = op;
		}
	}
out:
	free(buf);
	return NULL;
}

static void expect(const struct repl_disk_op *op, enum repl_disk_op_kind kind, uint64_t epoch,
		   uint32_t disk)
{
	assert_int_equal(op->kind, kind);
	assert_int_equal(op->epoch, epoch);
	assert_int_equal(op->disk, disk);
}

static void records_per_epoch(void **state)
{
	static const uint32_t disks[2] = {0, 2};
	const struct hv_blk_observer_ops *obs = &disk_tx_observer;
	uint8_t data[8192];
	struct seen s = {.img_fd = -1};
	struct link_pair p;
	struct disk_tx *tx;
	void *d0, *d2;

	(void)state;
	memset(data, 0xab, sizeof(data));
	pair_open(&p);
	assert_int_equal(disk_tx_new(disks, 2, 0, NULL, NULL, &tx), 0);
	d0 = disk_tx_observer_arg(tx, 0);
	d2 = disk_tx_observer_arg(tx, 1);
	assert_null(disk_tx_observer_arg(tx, 2));
	assert_int_equal(obs->wrote(d0, 4096, data, sizeof(data)), 0);
	assert_int_equal(obs->zeroed(d2, 0, 65536), 0);
	assert_int_equal(obs->flushed(d0), 0);
	assert_int_equal(disk_tx_seal(tx, 1), -EPROTO); /* epoch 0 is open */
	assert_int_equal(disk_tx_seal(tx, 0), 0);
	assert_int_equal(obs->wrote(d0, 0, data, 512), 0); /* epoch 1 */

	/* epoch 0 and its seals; epoch 1's write stays queued */
	s.l = &p.b;
	s.want_seals = 2;
	assert_int_equal(disk_tx_send(tx, &p.a, 0, true), 0);
	reader(&s);
	assert_int_equal(s.rc, 0);
	assert_int_equal(s.n, 5);
	expect(&s.ops[0], REPL_DISK_OP_WRITE, 0, 0);
	assert_int_equal(s.ops[0].offset, 4096);
	assert_int_equal(s.ops[0].len, sizeof(data));
	expect(&s.ops[1], REPL_DISK_OP_ZERO, 0, 2);
	expect(&s.ops[2], REPL_DISK_OP_FLUSH, 0, 0);
	expect(&s.ops[3], REPL_DISK_OP_SEAL, 0, 0);
	assert_int_equal(s.ops[3].ops, 2);
	assert_int_equal(s.ops[3].bytes, sizeof(data));
	expect(&s.ops[4], REPL_DISK_OP_SEAL, 0, 2);
	assert_int_equal(s.ops[4].ops, 1);
	assert_int_equal(s.ops[4].bytes, 0);

	/* epoch 1 while it runs, then its seals alone; an unsealed epoch has none to send */
	assert_int_equal(disk_tx_send(tx, &p.a, 1, true), -EPROTO);
	assert_int_equal(disk_tx_seal(tx, 1), 0);
	assert_int_equal(disk_tx_send(tx, &p.a, 1, true), 0);
	s = (struct seen){.img_fd = -1, .l = &p.b, .want_seals = 2};
	reader(&s);
	assert_int_equal(s.rc, 0);
	assert_int_equal(s.n, 3);
	expect(&s.ops[0], REPL_DISK_OP_WRITE, 1, 0);
	expect(&s.ops[1], REPL_DISK_OP_SEAL, 1, 0);
	assert_int_equal(s.ops[1].ops, 1);
	assert_int_equal(s.ops[1].bytes, 512);
	expect(&s.ops[2], REPL_DISK_OP_SEAL, 1, 2);
	assert_int_equal(s.ops[2].ops, 0);

	/* closed: records are no longer kept */
	disk_tx_close(tx);
	assert_int_equal(obs->wrote(d0, 0, data, 512), 0);
	{
		struct disk_tx_stats st;

		disk_tx_stats(tx, &st);
		assert_int_equal(st.queued_ops, 4);
		assert_int_equal(st.pending_bytes, 0);
	}
	disk_tx_free(tx);
	pair_close(&p);
}

struct wakes {
	unsigned calls, overflows;
};

static void count_wake(void *arg, bool overflow)
{
	struct wakes *w = arg;

	w->calls++;
	w->overflows += overflow;
}

static void cap_fails_the_session(void **state)
{
	static const uint32_t disks[1] = {0};
	static uint8_t data[20 << 10];
	struct wakes w = {0};
	struct disk_tx_stats st;
	struct link_pair p;
	struct disk_tx *tx;
	void *d0;

	(void)state;
	pair_open(&p);
	assert_int_equal(disk_tx_new(disks, 1, 64 << 10, count_wake, &w, &tx), 0);
	d0 = disk_tx_observer_arg(tx, 0);
	assert_int_equal(disk_tx_observer.wrote(d0, 0, data, sizeof(data)), 0);
	assert_int_equal(w.overflows, 0);
	assert_int_equal(disk_tx_observer.wrote(d0, 0, data, sizeof(data)), 0);
	assert_int_equal(disk_tx_observer.wrote(d0, 0, data, sizeof(data)), 0);
	assert_true(w.overflows >= 1); /* past half the cap: end the epoch early */
	disk_tx_stats(tx, &st);
	assert_int_equal(st.error, 0);
	/* past the cap: the guest's write still succeeds; the session is what fails */
	assert_int_equal(disk_tx_observer.wrote(d0, 0, data, sizeof(data)), 0);
	disk_tx_stats(tx, &st);
	assert_int_equal(st.error, -ENOBUFS);
	assert_int_equal(st.pending_bytes, 0);
	assert_int_equal(disk_tx_send(tx, &p.a, 0, false), -ENOBUFS);
	assert_int_equal(disk_tx_seal(tx, 0), -ENOBUFS);
	disk_tx_free(tx);
	pair_close(&p);
}

struct guest {
	int fd;
	struct disk_tx *tx;
	unsigned calls;
};

/* The guest writes while the copy runs: behind the copy and ahead of it. */
static void guest_writes(void *arg, uint64_t done, uint64_t total)
{
	struct guest *g = arg;
	uint8_t buf[4096];
	uint64_t off;

	(void)total;
	if (g->calls++ % 2)
		return;
	for (off = 0; off < 2; off++) {
		uint64_t at = off ? done + 4096 * g->calls : done / 2;

		at -= at % 512;
		if (at + sizeof(buf) > 4 * MiB)
			continue;
		dt_fill(buf, sizeof(buf), at, 900 + g->calls);
		assert_int_equal(disk_write_full(g->fd, buf, sizeof(buf), at), 0);
		assert_int_equal(disk_tx_observer.wrote(disk_tx_observer_arg(g->tx, 0), at, buf,
							sizeof(buf)),
				 0);
	}
}

/*
 * Copy near onto far as a protected VM's initial copy does (with sums: the far
 * end's digests first), the guest writing near meanwhile; the far image must
 * end equal. What the far end saw in *s, the queue's figures in *st.
 */
static void copy_with_guest(const char *near, const char *far, bool sums, struct seen *s,
			    struct disk_tx_stats *st)
{
	static const uint32_t disks[1] = {0};
	struct link_pair p;
	struct guest g;
	struct disk_tx *tx;
	pthread_t th;
	char why[192];
	int fd;

	*s = (struct seen){.want_seals = 1, .sums = sums, .sums_bytes = 4 * MiB};
	fd = open(near, O_RDWR);
	assert_true(fd >= 0);
	s->img_fd = open(far, O_RDWR);
	assert_true(s->img_fd >= 0);
	pair_open(&p);
	assert_int_equal(disk_tx_new(disks, 1, 0, NULL, NULL, &tx), 0);
	g = (struct guest){.fd = fd, .tx = tx};
	s->l = &p.b;
	assert_int_equal(pthread_create(&th, NULL, reader, s), 0);
	if (sums) {
		const uint64_t bytes = 4 * MiB;

		assert_int_equal(disk_tx_take_sums(tx, &p.a, &fd, &bytes, why, sizeof(why)), 0);
	}
	assert_int_equal(disk_tx_copy(tx, 0, fd, 4 * MiB, &p.a, guest_writes, &g), 0);
	guest_writes(&g, 4 * MiB - 8192, 4 * MiB); /* one more, after the copy */
	assert_int_equal(disk_tx_seal(tx, 0), 0);
	assert_int_equal(disk_tx_send(tx, &p.a, 0, true), 0);
	pthread_join(th, NULL);
	assert_int_equal(s->rc, 0);
	assert_true(g.calls >= 2);
	assert_true(dt_same(near, far));
	disk_tx_stats(tx, st);
	close(fd);
	close(s->img_fd);
	disk_tx_free(tx);
	pair_close(&p);
}

struct racer {
	int fd;
	struct disk_tx *tx;
	volatile bool stop;
	unsigned writes;
};

/* A guest writing 4 KiB blocks as fast as it can, anywhere, while the copy reads. */
static void *race_writes(void *arg)
{
	struct racer *g = arg;
	uint8_t buf[4096];
	uint64_t x = 88172645463325252ull;

	while (!g->stop) {
		uint64_t at;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		at = (x % (4 * MiB / 4096)) * 4096;
		dt_fill(buf, sizeof(buf), at, 2000 + g->writes);
		assert_int_equal(disk_write_full(g->fd, buf, sizeof(buf), at), 0);
		disk_tx_observer.wrote(disk_tx_observer_arg(g->tx, 0), at, buf, sizeof(buf));
		g->writes++;
	}
	return NULL;
}

/*
 * Writes racing the copy's reads: one that lands in the image while a chunk
 * is read, and is queued before that chunk's record, would be undone at the
 * far end by the chunk's older bytes. The copy reads such a chunk again; the
 * far image ends equal however the writes fall.
 */
static void copy_races_a_writing_guest(void **state)
{
	static const uint32_t disks[1] = {0};
	char dir[PATH_MAX], near[PATH_MAX], far[PATH_MAX];
	struct disk_tx_stats st;
	struct link_pair p;
	struct racer g = {0};
	struct disk_tx *tx;
	struct seen s;
	pthread_t th, gt;
	int fd;

	(void)state;
	dt_mkdir(dir, sizeof(dir));
	dt_path(near, sizeof(near), dir, "near.img");
	dt_path(far, sizeof(far), dir, "far.img");
	dt_image(near, 4 * MiB, false, 41);
	dt_image(far, 4 * MiB, false, 42);
	for (int round = 0; round < 3; round++) {
		s = (struct seen){.want_seals = 1};
		fd = open(near, O_RDWR);
		assert_true(fd >= 0);
		s.img_fd = open(far, O_RDWR);
		assert_true(s.img_fd >= 0);
		pair_open(&p);
		assert_int_equal(disk_tx_new(disks, 1, 0, NULL, NULL, &tx), 0);
		g = (struct racer){.fd = fd, .tx = tx};
		s.l = &p.b;
		assert_int_equal(pthread_create(&th, NULL, reader, &s), 0);
		assert_int_equal(pthread_create(&gt, NULL, race_writes, &g), 0);
		assert_int_equal(disk_tx_copy(tx, 0, fd, 4 * MiB, &p.a, NULL, NULL), 0);
		g.stop = true;
		pthread_join(gt, NULL);
		assert_int_equal(disk_tx_seal(tx, 0), 0);
		assert_int_equal(disk_tx_send(tx, &p.a, 0, true), 0);
		pthread_join(th, NULL);
		assert_int_equal(s.rc, 0);
		assert_true(dt_same(near, far));
		disk_tx_stats(tx, &st);
		print_message("round %d: %u writes during the copy, %llu chunks read again\n",
			      round, g.writes, (unsigned long long)st.copy_rereads);
		close(fd);
		close(s.img_fd);
		disk_tx_free(tx);
		pair_close(&p);
	}
	dt_rmdir(dir);
}

static void initial_copy_reproduces_the_image(void **state)
{
	char dir[PATH_MAX], near[PATH_MAX], far[PATH_MAX];
	struct disk_tx_stats st;
	struct seen s;

	(void)state;
	dt_mkdir(dir, sizeof(dir));
	dt_path(near, sizeof(near), dir, "near.img");
	dt_path(far, sizeof(far), dir, "far.img");
	/* data, a hole, explicit zeros, data; the far copy starts as other data */
	dt_image(near, 4 * MiB, true, 0);
	dt_write(near, 0, MiB, 11);
	dt_write(near, 2 * MiB, MiB / 2, 0);
	dt_write(near, 3 * MiB, MiB - 4096, 12);
	dt_image(far, 4 * MiB, false, 13);
	copy_with_guest(near, far, false, &s, &st);
	assert_true(s.zero_records >= 1); /* the hole and the zeros, never read */
	assert_int_equal(st.copy_same_bytes, 0);
	dt_rmdir(dir);
}

static void copy_sends_only_what_differs(void **state)
{
	char dir[PATH_MAX], near[PATH_MAX], far[PATH_MAX];
	struct disk_tx_stats st;
	struct seen s;
	const uint64_t R = DISK_SUMS_RANGE_MIN;

	(void)state;
	dt_mkdir(dir, sizeof(dir));
	dt_path(near, sizeof(near), dir, "near.img");
	dt_path(far, sizeof(far), dir, "far.img");
	/* both: data in the first 3 MiB with one range of zeros, a hole in the last MiB */
	for (int i = 0; i < 2; i++) {
		dt_image(i ? far : near, 4 * MiB, true, 0);
		dt_write(i ? far : near, 0, 3 * MiB, 11);
		dt_write(i ? far : near, MiB + MiB / 2, R, 0);
	}
	/* the far copy lost five ranges: rewritten, partly rewritten, zeroed, data in the hole */
	dt_write(far, 2 * R, R, 21);
	dt_write(far, MiB + R, 2 * R, 22);
	dt_write(far, 2 * MiB + 8192, 4096, 23);
	dt_write(far, 2 * MiB + MiB / 2, R, 0);
	dt_write(far, 3 * MiB + 4 * R, R, 24);
	assert_false(dt_same(near, far));
	copy_with_guest(near, far, true, &s, &st);
	/* the five ranges, and at most the two the guest wrote ahead of the copy */
	assert_true(st.copy_data_bytes >= 5 * R);
	assert_true(st.copy_data_bytes <= 7 * R);
	assert_true(st.copy_same_bytes >= 3 * MiB - 7 * R);
	assert_true(s.zero_records >= 1); /* the hole's MiB, which the far copy wrote in */
	dt_rmdir(dir);
}

static uint32_t image_crc(const char *path, uint64_t bytes)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint32_t crc = 0;

	assert_true(fd >= 0);
	assert_int_equal(disk_image_crc32c(fd, bytes, &crc), 0);
	close(fd);
	return crc;
}

/*
 * Verify mode's disk digest: a hole counts as the zeros it reads as, so a
 * sparse image and a dense one with the same bytes digest alike; one changed
 * byte does not; the whole image counts, its last partial chunk too.
 */
static void image_digest_reads_holes_as_zeros(void **state)
{
	char dir[PATH_MAX], sparse[PATH_MAX], dense[PATH_MAX];
	const uint64_t size = 3 * MiB + 4096;
	uint8_t *all = malloc(size);
	int fd;

	(void)state;
	assert_non_null(all);
	dt_mkdir(dir, sizeof(dir));
	dt_path(sparse, sizeof(sparse), dir, "sparse.img");
	dt_path(dense, sizeof(dense), dir, "dense.img");
	dt_image(sparse, size, true, 0);
	dt_write(sparse, MiB / 2, 4096, 31);
	dt_write(sparse, 3 * MiB, 4096, 32);
	fd = open(sparse, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, all, size, 0), (ssize_t)size);
	close(fd);
	dt_image(dense, size, false, 5);
	dt_write(dense, 0, size, 0);
	dt_write(dense, MiB / 2, 4096, 31);
	dt_write(dense, 3 * MiB, 4096, 32);
	assert_true(dt_same(sparse, dense));
	assert_int_equal(image_crc(sparse, size),
			 util_crc32c_final(util_crc32c_update(UTIL_CRC32C_INIT, all, size)));
	assert_int_equal(image_crc(sparse, size), image_crc(dense, size));
	dt_write(dense, size - 1, 1, 33);
	assert_int_not_equal(image_crc(sparse, size), image_crc(dense, size));
	free(all);
	dt_rmdir(dir);
}

/* A replica whose digests come out of order: refused, with the reason. */
static void sums_out_of_order_refused(void **state)
{
	static const uint32_t disks[1] = {0};
	struct disk_sums_head h = {.disk = 0,
				   .range_bytes = DISK_SUMS_RANGE_MIN,
				   .image_bytes = 4 * MiB,
				   .first = 1,
				   .count = 1};
	uint8_t digest[REPL_DISK_DIGEST_BYTES] = {0};
	struct {
		uint64_t magic, len;
	} eh = {DISK_SUMS_MAGIC, sizeof(h) + sizeof(digest)};
	struct iovec iov[3] = {{&eh, sizeof(eh)}, {&h, sizeof(h)}, {digest, sizeof(digest)}};
	const uint64_t bytes = 4 * MiB;
	char dir[PATH_MAX], near[PATH_MAX], why[192] = "";
	struct link_pair p;
	struct disk_tx *tx;
	int fd;

	(void)state;
	dt_mkdir(dir, sizeof(dir));
	dt_path(near, sizeof(near), dir, "near.img");
	dt_image(near, 4 * MiB, false, 3);
	fd = open(near, O_RDONLY);
	assert_true(fd >= 0);
	pair_open(&p);
	assert_int_equal(disk_tx_new(disks, 1, 0, NULL, NULL, &tx), 0);
	assert_int_equal(repl_link_send_iov(&p.b, iov, 3), 0);
	assert_int_equal(disk_tx_take_sums(tx, &p.a, &fd, &bytes, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "start at range 1"));
	/* a frame of another kind where the digests belong */
	eh.magic = REPL_DISK_MAGIC;
	assert_int_equal(repl_link_send_iov(&p.b, iov, 3), 0);
	assert_int_equal(disk_tx_take_sums(tx, &p.a, &fd, &bytes, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "where its disk digests belong"));
	disk_tx_free(tx);
	pair_close(&p);
	close(fd);
	dt_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(records_per_epoch),
		cmocka_unit_test(cap_fails_the_session),
		cmocka_unit_test(initial_copy_reproduces_the_image),
		cmocka_unit_test(copy_sends_only_what_differs),
		cmocka_unit_test(sums_out_of_order_refused),
		cmocka_unit_test(image_digest_reads_holes_as_zeros),
		cmocka_unit_test(copy_races_a_writing_guest),
	};

	return dt_run("unit_disk_tx", tests, sizeof(tests) / sizeof(tests[0]), 0);
}
