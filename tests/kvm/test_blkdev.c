/*
 * virtio-blk driven by a virtio driver written in this test, through the MMIO
 * window of a second disk (the test guest drives only the first): feature
 * negotiation, GET_ID, write/read/flush/discard against the image, and the
 * device's answers to bad requests -- out-of-range sectors, unknown types, a
 * missing status byte, a looping descriptor chain (DEVICE_NEEDS_RESET), a
 * write to a read-only disk -- and a working device again after a reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kvm/kvm_common.h"

#define SEC	  1000000000ull
#define QSZ	  8
#define IMG_BYTES (1u << 20)

/* register offsets and values from the virtio spec */
#define R_MAGIC	       0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_DEV_FEAT     0x010
#define R_DEV_FEAT_SEL 0x014
#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QSEL	       0x030
#define R_QNUM_MAX     0x034
#define R_QNUM	       0x038
#define R_QREADY       0x044
#define R_QNOTIFY      0x050
#define R_INT_STATUS   0x060
#define R_INT_ACK      0x064
#define R_STATUS       0x070
#define R_QDESC	       0x080
#define R_QDRIVER      0x090
#define R_QDEVICE      0x0a0
#define R_CONFIG       0x100
#define S_ACK	       1
#define S_DRIVER       2
#define S_DRIVER_OK    4
#define S_FEATURES_OK  8
#define S_NEEDS_RESET  64
#define F_RO	       5
#define F_FLUSH	       9
#define F_DISCARD      13
#define T_IN	       0
#define T_OUT	       1
#define T_FLUSH	       4
#define T_GET_ID       8
#define T_DISCARD      11

struct drv {
	struct hv_vm *vm;
	struct hv_blk *blk;
	uint64_t base; /* MMIO window */
	uint64_t mem;  /* our rings and buffers, in the guest's scratch area */
	uint16_t avail_idx, used_seen;
	char *img;
	char *gimg; /* the test guest's own disk */
	bool ro;
};

#define DESC(d)	  ((d)->mem)
#define AVAIL(d)  ((d)->mem + 0x1000)
#define USED(d)	  ((d)->mem + 0x2000)
#define HDR(d)	  ((d)->mem + 0x3000)
#define DATA(d)	  ((d)->mem + 0x4000)
#define STATUS(d) ((d)->mem + 0x8000)

static uint32_t rd(struct drv *d, uint64_t off)
{
	uint32_t v = 0;

	assert_int_equal(hv_mmio_access(d->vm, d->base + off, &v, 4, false), 0);
	return v;
}

static void wr(struct drv *d, uint64_t off, uint32_t v)
{
	assert_int_equal(hv_mmio_access(d->vm, d->base + off, &v, 4, true), 0);
}

static void put(struct drv *d, uint64_t gpa, const void *p, size_t n)
{
	assert_int_equal(hv_mem_write(d->vm, gpa, p, n), 0);
}

static void desc(struct drv *d, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	uint8_t e[16];

	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	memcpy(e + 14, &next, 2);
	put(d, DESC(d) + 16u * i, e, 16);
}

/* Reset and bring the device up again with one queue; returns the features offered. */
static uint64_t init(struct drv *d)
{
	uint64_t f, zero[3] = {0};

	wr(d, R_STATUS, 0);
	assert_int_equal(rd(d, R_STATUS), 0);
	wr(d, R_STATUS, S_ACK | S_DRIVER);
	wr(d, R_DEV_FEAT_SEL, 0);
	f = rd(d, R_DEV_FEAT);
	wr(d, R_DEV_FEAT_SEL, 1);
	f |= (uint64_t)rd(d, R_DEV_FEAT) << 32;
	assert_true(f >> 32 & 1); /* VERSION_1 */
	wr(d, R_DRV_FEAT_SEL, 0);
	wr(d, R_DRV_FEAT, (uint32_t)f & ~(1u << 29)); /* no EVENT_IDX: one notify per request */
	wr(d, R_DRV_FEAT_SEL, 1);
	wr(d, R_DRV_FEAT, 1); /* VERSION_1 */
	wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_true(rd(d, R_STATUS) & S_FEATURES_OK);
	wr(d, R_QSEL, 0);
	assert_true(rd(d, R_QNUM_MAX) >= QSZ);
	wr(d, R_QNUM, QSZ);
	put(d, AVAIL(d), zero, sizeof(zero));
	put(d, USED(d), zero, sizeof(zero));
	wr(d, R_QDESC, (uint32_t)DESC(d));
	wr(d, R_QDESC + 4, 0);
	wr(d, R_QDRIVER, (uint32_t)AVAIL(d));
	wr(d, R_QDRIVER + 4, 0);
	wr(d, R_QDEVICE, (uint32_t)USED(d));
	wr(d, R_QDEVICE + 4, 0);
	wr(d, R_QREADY, 1);
	wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	d->avail_idx = d->used_seen = 0;
	return f;
}

/* Make chain `head` available, notify, wait for it on the used ring; its length. */
static uint32_t submit(struct drv *d, uint16_t head)
{
	uint64_t end = util_now_ns() + 10 * SEC;
	uint16_t idx;
	uint32_t elem[2];

	put(d, AVAIL(d) + 4 + 2u * (d->avail_idx % QSZ), &head, 2);
	d->avail_idx++;
	put(d, AVAIL(d) + 2, &d->avail_idx, 2);
	wr(d, R_QNOTIFY, 0);
	do {
		assert_int_equal(hv_mem_read(d->vm, USED(d) + 2, &idx, 2), 0);
		if (idx != d->used_seen)
			break;
		util_sleep_ns(200000);
	} while (util_now_ns() < end);
	assert_int_not_equal(idx, d->used_seen);
	assert_int_equal(hv_mem_read(d->vm, USED(d) + 4 + 8u * (d->used_seen % QSZ), elem, 8), 0);
	d->used_seen++;
	assert_int_equal(elem[0], head);
	return elem[1];
}

/* A request: header, optional data (device-writable for reads), status. Its status. */
static uint8_t request(struct drv *d, uint32_t type, uint64_t sector, uint32_t len, bool dev_writes)
{
	uint8_t hdr[16] = {0}, status = 0xee;

	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
	put(d, HDR(d), hdr, 16);
	put(d, STATUS(d), &status, 1);
	if (len) {
		desc(d, 0, HDR(d), 16, 1, 1);
		desc(d, 1, DATA(d), len, (uint16_t)(1 | (dev_writes ? 2 : 0)), 2);
	} else {
		desc(d, 0, HDR(d), 16, 1, 2);
	}
	desc(d, 2, STATUS(d), 1, 2, 0);
	submit(d, 0);
	assert_int_equal(hv_mem_read(d->vm, STATUS(d), &status, 1), 0);
	return status;
}

static struct drv *setup_drv(bool ro)
{
	struct hv_vm_config cfg = {
		.name = "blkdev", .mem_bytes = 64ull << 20, .ncpus = 1, .serial_fd = -1};
	struct hv_tg_config tg;
	struct drv *d = calloc(1, sizeof(*d));
	char guest_img[] = "/tmp/castor-test-g-XXXXXX";
	struct hv_blk_config b0 = {.path = guest_img}, b1;
	struct hv_blk *blk0, *blk1;
	uint64_t first, end;
	int fd;

	fd = mkstemp(guest_img);
	assert_true(fd >= 0 && ftruncate(fd, IMG_BYTES) == 0);
	close(fd);
	d->img = strdup("/tmp/castor-test-blkdev-XXXXXX");
	fd = mkstemp(d->img);
	assert_true(fd >= 0 && ftruncate(fd, IMG_BYTES) == 0);
	close(fd);
	d->ro = ro;
	b1 = (struct hv_blk_config){.path = d->img, .read_only = ro};
	kvm_test_tg_config(&tg);
	tg.rate = 10;
	tg.out_rate = 0;
	assert_int_equal(hv_vm_create(&cfg, &d->vm), 0);
	assert_int_equal(hv_blk_add(d->vm, &b0, &blk0), 0); /* the guest's */
	assert_int_equal(hv_blk_add(d->vm, &b1, &blk1), 0); /* ours */
	assert_int_equal(hv_tg_load(d->vm, &tg), 0);
	assert_int_equal(hv_vm_start(d->vm), 0);
	assert_int_equal(hv_tg_wait_ready(d->vm, 30 * SEC), 0);
	d->gimg = strdup(guest_img);
	d->base = hv_blk_mmio_base(blk1);
	d->blk = blk1;
	assert_int_equal(hv_tg_scratch(d->vm, &first, &end), 0);
	d->mem = (first + 16) * HV_PAGE_SIZE;
	assert_int_equal(rd(d, R_MAGIC), 0x74726976);
	assert_int_equal(rd(d, R_VERSION), 2);
	assert_int_equal(rd(d, R_DEVICE_ID), 2);
	return d;
}

static void free_drv(struct drv *d)
{
	hv_vm_free(d->vm);
	unlink(d->img);
	free(d->img);
	unlink(d->gimg);
	free(d->gimg);
	free(d);
}

static void read_image(struct drv *d, uint64_t off, void *buf, size_t len)
{
	int fd = open(d->img, O_RDONLY);

	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void io_round_trip(void **state)
{
	struct drv *d = setup_drv(false);
	uint8_t pat[1024], back[1024], id[20] = {0};
	uint64_t f = init(d), cap = 0;
	uint32_t seg[4];
	unsigned i;

	assert_true(f >> F_FLUSH & 1);
	assert_true(f >> F_DISCARD & 1);
	assert_false(f >> F_RO & 1);
	for (i = 0; i < 8; i++)
		assert_int_equal(hv_mmio_access(d->vm, d->base + R_CONFIG + i, (uint8_t *)&cap + i,
						1, false),
				 0);
	assert_int_equal(cap, IMG_BYTES / 512);

	assert_int_equal(request(d, T_GET_ID, 0, 20, true), 0);
	assert_int_equal(hv_mem_read(d->vm, DATA(d), id, 20), 0);
	assert_memory_equal(id, "castor-test-blkdev-", 19);

	for (i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 7 + 3);
	put(d, DATA(d), pat, sizeof(pat));
	assert_int_equal(request(d, T_OUT, 10, sizeof(pat), false), 0);
	read_image(d, 10 * 512, back, sizeof(back));
	assert_memory_equal(back, pat, sizeof(pat)); /* it is on disk */
	put(d, DATA(d), (uint8_t[1024]){0}, sizeof(pat));
	assert_int_equal(request(d, T_IN, 10, sizeof(pat), true), 0);
	assert_int_equal(hv_mem_read(d->vm, DATA(d), back, sizeof(back)), 0);
	assert_memory_equal(back, pat, sizeof(pat)); /* and it reads back */
	assert_int_equal(request(d, T_FLUSH, 0, 0, false), 0);

	/* discard sector 11: it reads as zeros afterwards, sector 10 is untouched */
	seg[0] = 11; /* sector, low */
	seg[1] = 0;
	seg[2] = 1; /* num_sectors */
	seg[3] = 0; /* flags */
	put(d, DATA(d), seg, sizeof(seg));
	assert_int_equal(request(d, T_DISCARD, 0, sizeof(seg), false), 0);
	read_image(d, 10 * 512, back, sizeof(back));
	assert_memory_equal(back, pat, 512);
	for (i = 512; i < 1024; i++)
		assert_int_equal(back[i], 0);
	free_drv(d);
}

static void bad_requests(void **state)
{
	struct drv *d = setup_drv(false);
	uint8_t status;
	uint32_t seg[4] = {0xffffff, 0, 8, 0};

	init(d);
	/* past the end of the disk */
	assert_int_equal(request(d, T_IN, IMG_BYTES / 512, 512, true), 1);
	assert_int_equal(request(d, T_OUT, IMG_BYTES / 512 - 1, 1024, false), 1);
	/* not a multiple of the sector size */
	assert_int_equal(request(d, T_IN, 0, 100, true), 1);
	/* an unknown request type */
	assert_int_equal(request(d, 99, 0, 512, true), 2);
	/* a discard out of range */
	put(d, DATA(d), seg, sizeof(seg));
	assert_int_equal(request(d, T_DISCARD, 0, sizeof(seg), false), 1);
	/* a request with no status byte: completed, nothing written */
	desc(d, 0, HDR(d), 16, 0, 0);
	assert_int_equal(submit(d, 0), 0);
	/* still serving */
	assert_int_equal(request(d, T_FLUSH, 0, 0, false), 0);

	/* a looping chain: the device wants a reset, and serves nothing meanwhile */
	desc(d, 0, HDR(d), 16, 1, 1);
	desc(d, 1, DATA(d), 512, 1, 0);
	put(d, AVAIL(d) + 4 + 2u * (d->avail_idx % QSZ), (uint16_t[1]){0}, 2);
	d->avail_idx++;
	put(d, AVAIL(d) + 2, &d->avail_idx, 2);
	wr(d, R_QNOTIFY, 0);
	{
		uint64_t end = util_now_ns() + 10 * SEC;

		while (!(rd(d, R_STATUS) & S_NEEDS_RESET) && util_now_ns() < end)
			util_sleep_ns(1000000);
	}
	assert_true(rd(d, R_STATUS) & S_NEEDS_RESET);
	/* after a reset by the driver, the device works again */
	init(d);
	assert_false(rd(d, R_STATUS) & S_NEEDS_RESET);
	status = request(d, T_FLUSH, 0, 0, false);
	assert_int_equal(status, 0);
	assert_int_equal(request(d, T_IN, 0, 512, true), 0);
	free_drv(d);
}

static void read_only(void **state)
{
	struct drv *d = setup_drv(true);
	uint64_t f = init(d);
	uint8_t pat[512], back[512];
	uint32_t seg[4] = {0, 0, 1, 0};

	assert_true(f >> F_RO & 1);
	assert_false(f >> F_DISCARD & 1);
	memset(pat, 0x5a, sizeof(pat));
	put(d, DATA(d), pat, sizeof(pat));
	assert_int_equal(request(d, T_OUT, 0, sizeof(pat), false), 1);
	put(d, DATA(d), seg, sizeof(seg));
	assert_int_equal(request(d, T_DISCARD, 0, sizeof(seg), false), 1);
	read_image(d, 0, back, sizeof(back));
	assert_int_equal(back[0], 0);
	assert_int_equal(back[511], 0);
	assert_int_equal(request(d, T_IN, 0, 512, true), 0); /* reads still work */
	free_drv(d);
}

/*
 * Interrupts: a completed request sets InterruptStatus and asserts the
 * device's line at the in-kernel IOAPIC through its irqfd; the driver's
 * InterruptACK clears the status. (The test guest polls; Linux guests rely
 * on this path.)
 */
static void completion_interrupts(void **state)
{
	struct drv *d = setup_drv(false);
	uint32_t irq = hv_blk_irq(d->blk), irr = 0;
	uint64_t end;

	init(d); /* without EVENT_IDX and with interrupts wanted: every completion */
	assert_int_equal(rd(d, R_INT_STATUS), 0);
	assert_int_equal(request(d, T_FLUSH, 0, 0, false), 0);
	assert_int_equal(rd(d, R_INT_STATUS) & 1, 1);
	/* the line reaches KVM's IOAPIC (read it paused; the irqfd is asynchronous) */
	end = util_now_ns() + 5 * SEC;
	do {
		assert_int_equal(hv_vm_pause(d->vm), 0);
		assert_int_equal(hv_vm_ioapic_irr(d->vm, &irr), 0);
		assert_int_equal(hv_vm_resume(d->vm), 0);
		if (irr >> irq & 1)
			break;
		util_sleep_ns(1000000);
	} while (util_now_ns() < end);
	assert_true(irr >> irq & 1);
	wr(d, R_INT_ACK, 1);
	assert_int_equal(rd(d, R_INT_STATUS), 0);
	/* a driver that asks for no interrupts gets none */
	{
		uint16_t flags = 1; /* VIRTQ_AVAIL_F_NO_INTERRUPT */

		put(d, AVAIL(d), &flags, 2);
	}
	assert_int_equal(request(d, T_FLUSH, 0, 0, false), 0);
	assert_int_equal(rd(d, R_INT_STATUS), 0);
	free_drv(d);
}

/* Features the device does not offer are refused: FEATURES_OK does not stick. */
static void feature_negotiation(void **state)
{
	struct drv *d = setup_drv(false);

	wr(d, R_STATUS, 0);
	wr(d, R_STATUS, S_ACK | S_DRIVER);
	wr(d, R_DRV_FEAT_SEL, 0);
	wr(d, R_DRV_FEAT, 1u << 28); /* INDIRECT_DESC: not offered */
	wr(d, R_DRV_FEAT_SEL, 1);
	wr(d, R_DRV_FEAT, 1);
	wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_false(rd(d, R_STATUS) & S_FEATURES_OK);
	/* and a driver without VERSION_1 (a legacy driver) is refused too */
	wr(d, R_STATUS, 0);
	wr(d, R_STATUS, S_ACK | S_DRIVER);
	wr(d, R_DRV_FEAT_SEL, 1);
	wr(d, R_DRV_FEAT, 0);
	wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	assert_false(rd(d, R_STATUS) & S_FEATURES_OK);
	free_drv(d);
}

static int add_disks(void *arg, struct hv_vm *vm)
{
	struct drv *d = arg;
	struct hv_blk_config b0 = {.path = d->gimg}, b1 = {.path = d->img};
	struct hv_blk *blk;
	int rc = hv_blk_add(vm, &b0, &blk);

	return rc < 0 ? rc : hv_blk_add(vm, &b1, &blk);
}

/*
 * A notification the device had not yet acted on when the snapshot was taken
 * is not lost with the process that caught it. The driver makes a request
 * available and notifies while the VM is paused (the I/O thread waits behind
 * the gate, the kick sits in the old castor-vmm's ioeventfd), the snapshot is
 * taken, and a VM restored from it completes the request without another
 * notification. A driver with EVENT_IDX would never notify again.
 */
static void notify_survives_restore(void **state)
{
	struct drv *d = setup_drv(false);
	struct hv_vm_config cfg = {.name = "restored", .serial_fd = -1};
	struct hv_vm *r = NULL, *old;
	struct kvm_blob b;
	const uint8_t *s[1];
	uint8_t hdr[16] = {0}, status = 0xee;
	uint32_t type = T_FLUSH, elem[2];
	uint16_t head = 0, idx = 0;
	uint64_t end;
	char why[256] = "";
	size_t l[1];

	init(d);
	assert_int_equal(hv_vm_pause(d->vm), 0);
	memcpy(hdr, &type, 4);
	put(d, HDR(d), hdr, 16);
	put(d, STATUS(d), &status, 1);
	desc(d, 0, HDR(d), 16, 1, 1);
	desc(d, 1, STATUS(d), 1, 2, 0);
	put(d, AVAIL(d) + 4, &head, 2);
	d->avail_idx = 1;
	put(d, AVAIL(d) + 2, &d->avail_idx, 2);
	wr(d, R_QNOTIFY, 0);
	util_sleep_ns(20 * 1000000ull);
	assert_int_equal(hv_mem_read(d->vm, USED(d) + 2, &idx, 2), 0);
	assert_int_equal(idx, 0); /* paused: the device has not run it */
	b = kvm_snapshot(d->vm, HV_STREAM_FULL);
	s[0] = b.data;
	l[0] = b.len;
	if (hv_snapshot_restore(&cfg, s, l, 1, 0, add_disks, d, &r, why, sizeof(why)) < 0)
		fail_msg("restore: %s", why);
	/* the old VM is gone first, as when its castor-vmm quits */
	old = d->vm;
	hv_vm_stop(old);
	d->vm = r;
	assert_int_equal(hv_vm_start(r), 0);
	end = util_now_ns() + 10 * SEC;
	do {
		assert_int_equal(hv_mem_read(r, USED(d) + 2, &idx, 2), 0);
		if (idx)
			break;
		util_sleep_ns(200000);
	} while (util_now_ns() < end);
	if (idx != 1)
		fail_msg("the restored device never ran the request notified before the snapshot "
			 "(used idx %u)",
			 idx);
	assert_int_equal(hv_mem_read(r, USED(d) + 4, elem, 8), 0);
	assert_int_equal(elem[0], head);
	assert_int_equal(hv_mem_read(r, STATUS(d), &status, 1), 0);
	assert_int_equal(status, 0);
	/* and the device goes on as usual */
	d->used_seen = 1;
	assert_int_equal(request(d, T_FLUSH, 0, 0, false), 0);
	hv_vm_free(old);
	free(b.data);
	free_drv(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(io_round_trip),
		cmocka_unit_test(bad_requests),
		cmocka_unit_test(read_only),
		cmocka_unit_test(feature_negotiation),
		cmocka_unit_test(completion_interrupts),
		cmocka_unit_test(notify_survives_restore),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
