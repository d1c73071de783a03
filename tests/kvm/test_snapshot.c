/*
 * Snapshots of the test guest on real KVM:
 *   - a snapshot restores into a new VM with the same RAM (hash), every page
 *     verifies against the guest's rule, and the counters continue from the
 *     snapshot's values once it runs;
 *   - full + 5 incrementals restore to the same RAM as a full snapshot at the end;
 *   - a snapshot taken while the guest runs restores to a consistent guest;
 *   - bad input is refused with a clear error: truncation, a flipped byte,
 *     a newer revision, an unknown mandatory record, a RAM size mismatch,
 *     a broken chain;
 *   - a warm restore into a VM made ahead of time (a standby) gives the same
 *     VM, eagerly or lazily, and refuses VMs that do not fit or are not blank;
 *   - a chain's last incremental taken back (hv_snap_chain_rewind, a lost
 *     checkpoint): the next one follows the one before and carries its pages,
 *     and full + that one restores to the RAM of the moment it was taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/kvm/kvm_common.h"

#define SEC 1000000000ull
#define MEM (64ull << 20)

static struct hv_vm *running_guest(void)
{
	struct hv_tg_config tg;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.wss_bytes = 1 << 20;
	tg.out_rate = 500;
	return kvm_test_vm(2, MEM, &tg, -1);
}

static int restore_flags(const struct kvm_blob *b, unsigned n, uint64_t mem, unsigned flags,
			 struct hv_vm **out, char *why);

static int restore(const struct kvm_blob *b, unsigned n, uint64_t mem, struct hv_vm **out,
		   char *why)
{
	return restore_flags(b, n, mem, 0, out, why);
}

static int restore_flags(const struct kvm_blob *b, unsigned n, uint64_t mem, unsigned flags,
			 struct hv_vm **out, char *why)
{
	struct hv_vm_config cfg = {.name = "restored", .mem_bytes = mem, .serial_fd = -1};
	const uint8_t *s[8];
	size_t l[8];
	unsigned i;

	for (i = 0; i < n; i++) {
		s[i] = b[i].data;
		l[i] = b[i].len;
	}
	return hv_snapshot_restore(&cfg, s, l, n, flags, NULL, NULL, out, why, 256);
}

/* `r` runs on from the snapshot: both vCPUs get past t0, in order and unfaulted. Leaves `r` paused.
 */
static void assert_runs_on(struct hv_vm *r, const struct hv_tg_vcpu *t0)
{
	struct hv_tg_vcpu t1[2];

	assert_true(kvm_run_past(r, 2, t0, t1)); /* it runs on from the snapshot */
	for (uint32_t i = 0; i < 2; i++) {
		assert_int_equal(t1[i].order_errors, 0);
		assert_false(t1[i].faulted);
	}
}

static void exact_restore(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_tg_check chk;
	struct hv_tg_vcpu t0[2], t1, t2[2];
	struct kvm_blob b;
	char why[256] = "";
	uint32_t h0, i;

	assert_non_null(vm);
	util_sleep_ns(100 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	b = kvm_snapshot(vm, HV_STREAM_FULL); /* while paused: the snapshot is this exact moment */
	h0 = kvm_ram_hash(vm);
	for (i = 0; i < 2; i++)
		assert_int_equal(hv_tg_vcpu(vm, i, &t0[i]), 0);
	assert_int_equal(hv_vm_resume(vm), 0);
	hv_vm_free(vm);

	if (restore(&b, 1, 0, &r, why) < 0)
		fail_msg("restore: %s", why);
	assert_int_equal(hv_vm_ncpus(r), 2);
	assert_int_equal(kvm_ram_hash(r), h0);
	assert_int_equal(hv_tg_check_ram(hv_ram_base(r), MEM, &chk), 0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(hv_tg_vcpu(r, i, &t1), 0);
		assert_int_equal(t1.counter, t0[i].counter);
		assert_int_equal(t1.outputs_seen, t0[i].outputs_seen);
	}
	assert_int_equal(hv_vm_start(r), 0);
	assert_true(kvm_run_past(r, 2, t0, t2)); /* it runs on from the snapshot */
	for (i = 0; i < 2; i++) {
		assert_true(t2[i].outputs_seen >= t0[i].outputs_seen);
		assert_int_equal(t2[i].order_errors, 0); /* output numbering continued */
		assert_false(t2[i].faulted);
	}
	assert_int_equal(hv_tg_check_ram(hv_ram_base(r), MEM, &chk), 0);
	hv_vm_free(r);
	free(b.data);
}

static void snapshot_while_running(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_tg_check chk;
	struct kvm_blob b;
	char why[256] = "";

	assert_non_null(vm);
	util_sleep_ns(50 * 1000000ull);
	b = kvm_snapshot(vm, HV_STREAM_FULL);
	hv_vm_free(vm);
	if (restore(&b, 1, 0, &r, why) < 0)
		fail_msg("restore: %s", why);
	if (hv_tg_check_ram(hv_ram_base(r), MEM, &chk) < 0)
		fail_msg("restored RAM: %s", chk.why);
	assert_int_equal(hv_vm_start(r), 0);
	util_sleep_ns(50 * 1000000ull);
	assert_int_equal(hv_vm_pause(r), 0);
	assert_int_equal(hv_tg_check_ram(hv_ram_base(r), MEM, &chk), 0);
	hv_vm_free(r);
	free(b.data);
}

static int slow_cb(void *arg, struct hv_vm *vm, struct hv_stream_writer *w)
{
	(void)arg, (void)vm, (void)w;
	util_sleep_ns((HV_SLOW_PAUSE_MS + 20) * 1000000ull);
	return 0;
}

/* A pause's parts add up, and a slow one is logged with them (stderr caught in a memfd). */
static void slow_pause_logged(void **state)
{
	struct hv_vm *vm = running_guest();
	struct hv_snapshot_opts o = {.pause_cb = slow_cb};
	struct hv_snapshot_stats st = {0};
	struct hv_stream_writer *w = NULL;
	int err = dup(STDERR_FILENO), mfd = memfd_create("stderr", 0);
	char log[4096] = "";
	ssize_t n;

	assert_non_null(vm);
	assert_true(err >= 0 && mfd >= 0);
	assert_int_equal(hv_stream_writer_mem(&w), 0);
	fflush(stderr);
	dup2(mfd, STDERR_FILENO);
	assert_int_equal(hv_snapshot_save_opts(vm, w, HV_STREAM_FULL, &o, &st), 0);
	fflush(stderr);
	dup2(err, STDERR_FILENO);
	close(err);
	n = pread(mfd, log, sizeof(log) - 1, 0);
	close(mfd);
	assert_true(n > 0);
	assert_true(st.stop_ns > 0 && st.stop_ns <= st.harvest_ns);
	assert_true(st.harvest_ns + st.copy_ns + st.state_ns <= st.pause_ns);
	assert_true(st.pause_ns >= HV_SLOW_PAUSE_MS * 1000000ull);
	if (!strstr(log, "a pause of") || !strstr(log, "stopping the vCPUs"))
		fail_msg("no slow-pause warning in: %s", log);
	hv_stream_writer_free(w);
	hv_vm_free(vm);
}

/*
 * A full snapshot with no live pass copies every page in the pause: more than
 * the 2 560 pages from which the copy streams past the cache. Restored, the
 * RAM is byte for byte what the paused guest had.
 */
static void pause_copy_exact(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_snapshot_opts o = {.precopy = NULL}; /* no live pass */
	struct hv_snapshot_stats st = {0};
	struct hv_stream_writer *w = NULL;
	const uint8_t *data;
	char why[256] = "";
	size_t len;

	assert_non_null(vm);
	util_sleep_ns(50 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0); /* the snapshot's pause nests in this one */
	assert_int_equal(hv_stream_writer_mem(&w), 0);
	assert_int_equal(hv_snapshot_save_opts(vm, w, HV_STREAM_FULL, &o, &st), 0);
	assert_true(st.staged_pages >= 2560);
	data = hv_stream_writer_data(w, &len);
	if (hv_snapshot_restore(
		    &(struct hv_vm_config){.name = "restored", .mem_bytes = MEM, .serial_fd = -1},
		    &data, &len, 1, 0, NULL, NULL, &r, why, sizeof(why)) < 0)
		fail_msg("restore: %s", why);
	assert_memory_equal(hv_ram_base(r), hv_ram_base(vm), MEM);
	hv_vm_free(r);
	hv_stream_writer_free(w);
	hv_vm_free(vm);
}

static void chain_equals_full(void **state)
{
	struct hv_vm *vm = running_guest(), *a = NULL, *c = NULL;
	struct kvm_blob chain[6], full;
	char why[256] = "";
	uint32_t live;
	int i;

	assert_non_null(vm);
	chain[0] = kvm_snapshot(vm, HV_STREAM_FULL);
	for (i = 1; i < 6; i++) {
		util_sleep_ns(20 * 1000000ull);
		if (i == 5)
			assert_int_equal(hv_vm_pause(vm), 0);
		struct hv_snapshot_stats st;

		chain[i] = kvm_snapshot_stats(vm, HV_STREAM_INCREMENTAL, &st);
		/* only what changed: the guest writes 2 x 256 pages of 16 384 */
		assert_true(st.precopy_pages + st.staged_pages < 2048);
	}
	full = kvm_snapshot(vm, HV_STREAM_FULL);
	live = kvm_ram_hash(vm);
	hv_vm_free(vm);

	if (restore(chain, 6, 0, &a, why) < 0)
		fail_msg("chain: %s", why);
	if (restore(&full, 1, 0, &c, why) < 0)
		fail_msg("full: %s", why);
	assert_int_equal(kvm_ram_hash(a), live);
	assert_int_equal(kvm_ram_hash(c), live);
	hv_vm_free(a);
	hv_vm_free(c);

	/* a chain with a link missing is refused */
	free(chain[3].data);
	chain[3] = chain[4];
	assert_int_equal(restore(chain, 5, 0, &a, why), -EINVAL);
	assert_non_null(strstr(why, "does not follow"));
	/* so is an incremental on its own */
	assert_int_equal(restore(&chain[5], 1, 0, &a, why), -EINVAL);
	assert_non_null(strstr(why, "starts with a full snapshot"));
	for (i = 0; i < 6; i++)
		if (i != 3)
			free(chain[i].data);
	free(full.data);
}

/*
 * A chain taken while the guest writes as fast as it can: every link's live
 * pass misses what the guest writes during it, and only the pause's second
 * harvest brings that back. The restored chain must verify against the
 * guest's own rule, and hold every page the live pass saw change.
 */
/*
 * The hook: between the live pass and the pause, wait until each vCPU has
 * rewritten its whole working set (256 pages); in the pause, note the RAM the
 * snapshot must hold.
 */
static void let_guest_write(void *arg, struct hv_vm *vm, bool paused)
{
	struct hv_tg_vcpu v0, v1, n0, n1;
	uint64_t deadline = util_now_ns() + 30 * 1000000000ull;

	if (paused) {
		*(uint32_t *)arg = kvm_ram_hash(vm);
		return;
	}
	assert_int_equal(hv_tg_vcpu(vm, 0, &v0), 0);
	assert_int_equal(hv_tg_vcpu(vm, 1, &v1), 0);
	do {
		util_sleep_ns(1000000);
		assert_int_equal(hv_tg_vcpu(vm, 0, &n0), 0);
		assert_int_equal(hv_tg_vcpu(vm, 1, &n1), 0);
	} while ((n0.counter < v0.counter + 256 || n1.counter < v1.counter + 256) &&
		 util_now_ns() < deadline);
}

static void chain_while_running(void **state)
{
	struct hv_vm *vm = running_guest(), *a = NULL;
	struct kvm_blob chain[6];
	struct hv_tg_check chk;
	char why[256] = "";
	uint64_t staged = 0;
	uint32_t at_pause = 0;
	int i;

	assert_non_null(vm);
	hv_snapshot_set_hook(vm, let_guest_write, &at_pause);
	chain[0] = kvm_snapshot(vm, HV_STREAM_FULL);
	for (i = 1; i < 6; i++) {
		struct hv_snapshot_stats st;

		util_sleep_ns(10 * 1000000ull);
		chain[i] = kvm_snapshot_stats(vm, HV_STREAM_INCREMENTAL, &st);
		assert_true(st.precopy_pages > 0);
		staged += st.staged_pages;
	}
	hv_vm_free(vm);

	if (restore(chain, 6, 0, &a, why) < 0)
		fail_msg("chain: %s", why);
	if (hv_tg_check_ram(hv_ram_base(a), MEM, &chk) < 0)
		fail_msg("restored chain: %s", chk.why);
	assert_int_equal(kvm_ram_hash(a), at_pause);
	assert_true(staged > 0); /* the guest did write during the live passes */
	hv_vm_free(a);
	for (i = 0; i < 6; i++)
		free(chain[i].data);
}

/* One snapshot of chain `c` with no live pass (as replication's epochs), into a blob. */
static struct kvm_blob chain_save(struct hv_snap_chain *c, enum hv_stream_kind kind,
				  struct hv_snapshot_stats *st)
{
	struct hv_snapshot_opts o = {0};
	struct hv_stream_writer *w = NULL;
	struct kvm_blob b = {0};
	const uint8_t *data;

	assert_int_equal(hv_stream_writer_mem(&w), 0);
	assert_int_equal(hv_snap_chain_save(c, w, kind, &o, st), 0);
	data = hv_stream_writer_data(w, &b.len);
	b.data = malloc(b.len);
	assert_non_null(b.data);
	memcpy(b.data, data, b.len);
	hv_stream_writer_free(w);
	return b;
}

static void chain_rewind(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_snapshot_stats s0, s1, s2, s3;
	struct hv_snap_chain *c = NULL;
	struct kvm_blob b[4];
	char why[256] = "";
	uint32_t live;

	assert_non_null(vm);
	assert_int_equal(hv_snap_chain_new(vm, &c), 0);
	b[0] = chain_save(c, HV_STREAM_FULL, &s0);
	assert_int_equal(hv_snap_chain_rewind(c, s0.stream_id), 0); /* nothing to take back */
	util_sleep_ns(20 * 1000000ull);
	b[1] = chain_save(c, HV_STREAM_INCREMENTAL, &s1);
	assert_true(s1.staged_pages > 0);
	/* the checkpoint s1 is lost: the next one follows s0 and carries s1's pages */
	assert_int_equal(hv_snap_chain_rewind(c, 12345), -ESTALE);
	assert_int_equal(hv_snap_chain_rewind(c, s0.stream_id), 1);
	assert_int_equal(hv_snap_chain_rewind(c, s0.stream_id), 0); /* done already */
	util_sleep_ns(20 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	b[2] = chain_save(c, HV_STREAM_INCREMENTAL, &s2);
	live = kvm_ram_hash(vm);
	assert_int_equal(s2.parent_id, s0.stream_id);
	assert_true(s2.staged_pages >= s1.staged_pages);
	/* two steps back are refused: only the last one can be taken back */
	b[3] = chain_save(c, HV_STREAM_INCREMENTAL, &s3);
	assert_int_equal(hv_snap_chain_rewind(c, s0.stream_id), -ESTALE);
	assert_int_equal(hv_snap_chain_rewind(c, s2.stream_id), 1);
	hv_snap_chain_free(c);
	hv_vm_free(vm);

	/* full + the one after the lost checkpoint: the RAM of the moment it was taken */
	struct kvm_blob pair[2] = {b[0], b[2]};

	if (restore(pair, 2, 0, &r, why) < 0)
		fail_msg("full + the checkpoint after the lost one: %s", why);
	assert_int_equal(kvm_ram_hash(r), live);
	hv_vm_free(r);
	/* the lost one never fits between them */
	struct kvm_blob bad[3] = {b[0], b[1], b[2]};

	assert_int_equal(restore(bad, 3, 0, &r, why), -EINVAL);
	assert_non_null(strstr(why, "does not follow"));
	for (int i = 0; i < 4; i++)
		free(b[i].data);
}

static void bad_input(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct kvm_blob b, x;
	char why[256];
	size_t cut;

	assert_non_null(vm);
	b = kvm_snapshot(vm, HV_STREAM_FULL);
	hv_vm_free(vm);
	x.data = malloc(b.len + 64);

	/* truncated anywhere: refused, and no VM is made */
	for (cut = 0; cut < b.len; cut += b.len / 7 + 1) {
		x.len = cut;
		memcpy(x.data, b.data, cut);
		assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);
		assert_null(r);
	}
	x.len = b.len - 1;
	assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);

	/* one flipped byte inside a page's data: only the checksum can tell */
	memcpy(x.data, b.data, b.len);
	x.len = b.len;
	{
		struct hv_stream_iter it;
		struct hv_stream_record rec;
		size_t at = 0;

		hv_stream_iter_init(&it, x.data, x.len);
		while (!at && hv_stream_next(&it, &rec) > 0) {
			uint32_t count;

			if (rec.type != HV_REC_PAGES)
				continue;
			memcpy(&count, rec.body, 4);
			if (rec.len > 8 + 8ull * count) /* it carries RAW payload */
				at = (size_t)(rec.body - x.data) + 8 + 8ull * count + 100;
		}
		assert_true(at > 0);
		x.data[at] ^= 0x10;
	}
	assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);
	assert_non_null(strstr(why, "checksum"));

	/* a newer revision */
	memcpy(x.data, b.data, b.len);
	x.data[8 + 8] = 2;
	assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);
	assert_non_null(strstr(why, "newer"));

	/* an unknown mandatory record right after the header */
	memcpy(x.data, b.data, 72);
	{
		uint32_t rec[2] = {0x77, 0};

		memcpy(x.data + 72, rec, 8);
	}
	memcpy(x.data + 80, b.data + 72, b.len - 72);
	x.len = b.len + 8;
	assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);
	assert_non_null(strstr(why, "unknown mandatory record"));

	/* garbage after END */
	memcpy(x.data, b.data, b.len);
	memset(x.data + b.len, 0, 8);
	x.len = b.len + 8;
	assert_int_equal(restore(&x, 1, 0, &r, why), -EBADMSG);

	/* a VM of another size */
	assert_int_equal(restore(&b, 1, 2 * MEM, &r, why), -EINVAL);
	assert_non_null(strstr(why, "RAM size mismatch"));
	assert_null(r);

	free(x.data);
	free(b.data);
}

/*
 * A page may appear twice in a stream; the later copy wins. Splice a RAW copy
 * of a scratch page (non-zero) ahead of the snapshot's own ZERO copy of it,
 * and the restored page must be zero.
 */
static void later_copy_wins(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_stream_writer *w = NULL;
	struct hv_stream_iter it;
	struct hv_stream_record rec;
	struct kvm_blob b, x;
	uint64_t first, end, entry;
	uint8_t page[4096];
	uint32_t hdr[2] = {1, 0};
	char why[256] = "";
	int more;

	assert_non_null(vm);
	assert_int_equal(hv_tg_scratch(vm, &first, &end), 0);
	assert_int_equal(hv_vm_pause(vm), 0);
	b = kvm_snapshot(vm, HV_STREAM_FULL);
	hv_vm_free(vm);

	memset(page, 0xa5, sizeof(page));
	entry = (first + 3) | (uint64_t)HV_PAGE_RAW << HV_PAGE_ENC_SHIFT;
	assert_int_equal(hv_stream_writer_mem(&w), 0);
	hv_stream_iter_init(&it, b.data, b.len);
	while ((more = hv_stream_next(&it, &rec)) > 0) {
		struct iovec iov = {(void *)rec.body, rec.len};

		assert_int_equal(hv_stream_write(w, rec.type, &iov, 1), 0);
		if (rec.type == HV_REC_HEADER) {
			struct iovec extra[3] = {{hdr, 8}, {&entry, 8}, {page, sizeof(page)}};

			assert_int_equal(hv_stream_write(w, HV_REC_PAGES, extra, 3), 0);
		}
	}
	assert_int_equal(more, 0);
	assert_int_equal(hv_stream_finish(w), 0);
	x.data = (uint8_t *)hv_stream_writer_data(w, &x.len);
	if (restore(&x, 1, 0, &r, why) < 0)
		fail_msg("restore: %s", why);
	assert_int_equal(hv_mem_read(r, (first + 3) * HV_PAGE_SIZE, page, sizeof(page)), 0);
	for (size_t i = 0; i < sizeof(page); i++)
		if (page[i])
			fail_msg("byte %zu of the page is 0x%x: the earlier RAW copy won", i,
				 page[i]);
	hv_vm_free(r);
	hv_stream_writer_free(w);
	free(b.data);
}

/*
 * Lazy restore: the guest runs at once; pages it touches first are loaded on
 * demand (through KVM's faults), the rest in the background. The result is
 * the same guest: it continues from the snapshot and its RAM verifies.
 */
static void lazy_restore(void **state)
{
	struct hv_vm *vm = running_guest(), *r = NULL;
	struct hv_tg_check chk;
	struct hv_tg_vcpu t0[2];
	uint64_t loaded = 0, faults = 0, end;
	struct kvm_blob b;
	char why[256] = "";
	uint32_t h0, i;

	assert_non_null(vm);
	util_sleep_ns(50 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	b = kvm_snapshot(vm, HV_STREAM_FULL);
	h0 = kvm_ram_hash(vm);
	for (i = 0; i < 2; i++)
		assert_int_equal(hv_tg_vcpu(vm, i, &t0[i]), 0);
	hv_vm_free(vm);

	if (restore_flags(&b, 1, 0, HV_RESTORE_LAZY, &r, why) < 0)
		fail_msg("lazy restore: %s", why);
	assert_int_equal(hv_vm_start(r), 0); /* before its RAM is loaded */
	end = util_now_ns() + 30 * SEC;
	while (!hv_snapshot_lazy_done(r, &loaded, &faults) && util_now_ns() < end)
		util_sleep_ns(1000000);
	assert_true(hv_snapshot_lazy_done(r, &loaded, &faults));
	assert_true(loaded > 0);
	assert_runs_on(r, t0);
	if (hv_tg_check_ram(hv_ram_base(r), MEM, &chk) < 0)
		fail_msg("lazily restored RAM: %s", chk.why);
	hv_vm_free(r);

	/* and before it runs, the lazily restored RAM is the snapshot's, byte for byte */
	if (restore_flags(&b, 1, 0, HV_RESTORE_LAZY, &r, why) < 0)
		fail_msg("lazy restore: %s", why);
	assert_int_equal(kvm_ram_hash(r), h0); /* reading faults the pages in */
	hv_vm_free(r);
	free(b.data);
}

/* A blank 2-vCPU VM of MEM, made ready as a standby. */
static struct hv_vm *standby(uint32_t ncpus, bool prealloc)
{
	struct hv_vm_config cfg = {
		.name = "standby", .mem_bytes = MEM, .ncpus = ncpus, .serial_fd = -1};
	struct hv_vm *vm = NULL;

	assert_int_equal(hv_vm_create(&cfg, &vm), 0);
	assert_int_equal(hv_vm_prepare(vm, prealloc), 0);
	return vm;
}

static int restore_into(struct hv_vm *vm, const struct kvm_blob *b, unsigned n, unsigned flags,
			char *why)
{
	const uint8_t *s[8];
	size_t l[8];

	for (unsigned i = 0; i < n; i++) {
		s[i] = b[i].data;
		l[i] = b[i].len;
	}
	return hv_snapshot_restore_into(vm, s, l, n, flags, NULL, NULL, why, 256);
}

static void warm_restore(void **state)
{
	struct hv_vm *vm = running_guest(), *w;
	struct hv_tg_check chk;
	struct hv_tg_vcpu t0[2], t1;
	struct kvm_blob b[2], bad;
	char why[256] = "";
	uint32_t h0, i;

	assert_non_null(vm);
	util_sleep_ns(50 * 1000000ull);
	b[0] = kvm_snapshot(vm, HV_STREAM_FULL);
	util_sleep_ns(20 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	b[1] = kvm_snapshot(vm, HV_STREAM_INCREMENTAL);
	h0 = kvm_ram_hash(vm);
	for (i = 0; i < 2; i++)
		assert_int_equal(hv_tg_vcpu(vm, i, &t0[i]), 0);
	hv_vm_free(vm);

	/* a VM that does not fit is refused, by name */
	w = standby(1, true);
	assert_int_equal(restore_into(w, b, 2, 0, why), -EINVAL);
	assert_non_null(strstr(why, "vCPU count mismatch"));
	hv_vm_free(w);

	/* a refused chain leaves the standby blank: the good chain then restores into it */
	w = standby(2, true);
	bad.len = b[1].len;
	bad.data = malloc(bad.len);
	assert_non_null(bad.data);
	memcpy(bad.data, b[1].data, bad.len);
	bad.data[bad.len / 2] ^= 0x5a;
	{
		struct kvm_blob chain[2] = {b[0], bad};

		assert_true(restore_into(w, chain, 2, 0, why) < 0);
		assert_non_null(strstr(why, "snapshot 2"));
	}
	assert_int_equal(restore_into(w, b, 2, HV_RESTORE_LAZY, why), -EINVAL);
	assert_non_null(strstr(why, "lazy restore needs RAM"));
	if (restore_into(w, b, 2, 0, why) < 0)
		fail_msg("warm restore: %s", why);
	assert_int_equal(kvm_ram_hash(w), h0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(hv_tg_vcpu(w, i, &t1), 0);
		assert_int_equal(t1.counter, t0[i].counter);
	}
	/* it is no longer blank */
	assert_int_equal(restore_into(w, b, 2, 0, why), -EINVAL);
	assert_non_null(strstr(why, "not blank"));
	assert_int_equal(hv_vm_prepare(w, true), -EBUSY);
	assert_int_equal(hv_vm_start(w), 0);
	assert_runs_on(w, t0);
	assert_int_equal(hv_tg_check_ram(hv_ram_base(w), MEM, &chk), 0);
	hv_vm_free(w);

	/* refused after pages were written (its devices differ): blank again, RAM all zero */
	{
		/* an image in memory: nothing is left behind if an assertion fails */
		int fd = memfd_create("castor-warm-disk", MFD_CLOEXEC);
		char path[64];
		struct hv_blk_config bc = {.path = path};
		struct hv_blk *blk;
		const uint8_t *ram;
		uint64_t nz = 0;

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 1 << 20), 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		w = standby(2, false);
		assert_int_equal(hv_blk_add(w, &bc, &blk), 0);
		for (int k = 0; k < 2; k++) { /* the second time proves it was blank again */
			assert_true(restore_into(w, b, 2, 0, why) < 0);
			if (!strstr(why, "virtio devices"))
				fail_msg("%s", why);
		}
		ram = hv_ram_base(w);
		for (uint64_t off = 0; off < MEM; off += 8)
			nz |= *(const uint64_t *)(ram + off);
		assert_true(nz == 0);
		hv_vm_free(w);
		close(fd);
	}

	/* lazily, into a standby whose RAM is not allocated */
	w = standby(2, false);
	if (restore_into(w, b, 2, HV_RESTORE_LAZY, why) < 0)
		fail_msg("warm lazy restore: %s", why);
	assert_int_equal(kvm_ram_hash(w), h0); /* reading faults the pages in */
	assert_int_equal(hv_vm_start(w), 0);
	util_sleep_ns(50 * 1000000ull);
	assert_int_equal(hv_vm_pause(w), 0);
	if (hv_tg_check_ram(hv_ram_base(w), MEM, &chk) < 0)
		fail_msg("warm lazy restore: %s", chk.why);
	hv_vm_free(w);
	free(bad.data);
	free(b[0].data);
	free(b[1].data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_restore),     cmocka_unit_test(snapshot_while_running),
		cmocka_unit_test(chain_equals_full), cmocka_unit_test(chain_while_running),
		cmocka_unit_test(bad_input),	     cmocka_unit_test(later_copy_wins),
		cmocka_unit_test(lazy_restore),	     cmocka_unit_test(warm_restore),
		cmocka_unit_test(slow_pause_logged), cmocka_unit_test(pause_copy_exact),
		cmocka_unit_test(chain_rewind),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
