/*
 * virtio-net and virtio-blk with the test guest on real KVM. For the NIC the
 * test itself is the backend -- the wire: it injects ARP and UDP frames with
 * hv_net_rx() and collects what the guest transmits -- so the device, the
 * guest's driver and stack, and dirty tracking of the VMM's RX writes are all
 * exercised without a tap. (Taps and namespaces: tests/net.)
 *
 *   - the guest answers ARP and UDP requests, in order, counting;
 *   - a harvest covers every page that changed while frames were received and
 *     while the disk was read, including the pages the VMM wrote;
 *   - the disk workload leaves an image that verifies against the disk rule;
 *   - a read-only disk refuses writes with an error status the guest reports;
 *   - after the guest resets a device, the device works again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "tests/kvm/kvm_common.h"

#define SEC	 1000000000ull
#define HDR	 12 /* virtio_net_hdr_v1 */
#define GUEST_IP "10.0.0.2"
#define PEER_IP	 "10.0.0.1"

static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 1};
static const uint8_t guest_mac[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};

/* ---- the wire: a backend that queues what the guest sends ---------------------------- */

#define WIRE_MAX 512
struct wire {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint8_t frames[WIRE_MAX][1600];
	size_t lens[WIRE_MAX];
	unsigned head, tail;
	struct hv_net *net;
};

static int wire_tx(void *be, const struct iovec *iov, int iovcnt, size_t len)
{
	struct wire *w = be;
	size_t off = 0;
	int i;

	pthread_mutex_lock(&w->lock);
	if (w->tail - w->head < WIRE_MAX && len <= sizeof(w->frames[0])) {
		for (i = 0; i < iovcnt; i++) {
			memcpy(w->frames[w->tail % WIRE_MAX] + off, iov[i].iov_base,
			       iov[i].iov_len);
			off += iov[i].iov_len;
		}
		w->lens[w->tail % WIRE_MAX] = len;
		w->tail++;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static const struct hv_net_backend_ops wire_ops = {.tx = wire_tx};

/* Wait for the next frame the guest sent; its length (0 on timeout). */
static size_t wire_recv(struct wire *w, uint8_t *buf, uint64_t timeout_ns)
{
	uint64_t end = util_now_ns() + timeout_ns;
	size_t len = 0;

	pthread_mutex_lock(&w->lock);
	while (w->head == w->tail && util_now_ns() < end) {
		pthread_mutex_unlock(&w->lock);
		util_sleep_ns(200000);
		pthread_mutex_lock(&w->lock);
	}
	if (w->head != w->tail) {
		len = w->lens[w->head % WIRE_MAX];
		memcpy(buf, w->frames[w->head % WIRE_MAX], len);
		w->head++;
	}
	pthread_mutex_unlock(&w->lock);
	return len;
}

struct inject {
	struct wire *w;
	uint8_t frame[1600];
	size_t len;
	int rc;
	bool done;
};

static void inject_cb(void *arg)
{
	struct inject *in = arg;

	in->rc = hv_net_rx(in->w->net, in->frame, in->len);
	__atomic_store_n(&in->done, true, __ATOMIC_RELEASE);
}

/* hv_net_rx() belongs on the I/O thread: run it there and wait. */
static int wire_send(struct wire *w, struct hv_vm *vm, const uint8_t *frame, size_t len)
{
	struct inject *in = calloc(1, sizeof(*in));
	int rc;

	in->w = w;
	memcpy(in->frame, frame, len);
	in->len = len;
	assert_int_equal(hv_io_call(vm, inject_cb, in), 0);
	while (!__atomic_load_n(&in->done, __ATOMIC_ACQUIRE))
		util_sleep_ns(100000);
	rc = in->rc;
	free(in);
	return rc;
}

/* ---- frames ------------------------------------------------------------------------- */

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static size_t eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memset(f, 0, HDR);
	memcpy(f + HDR, dst, 6);
	memcpy(f + HDR + 6, peer_mac, 6);
	f[HDR + 12] = (uint8_t)(type >> 8);
	f[HDR + 13] = (uint8_t)type;
	return HDR + 14;
}

static size_t arp_request(uint8_t *f)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	size_t o = eth(f, bcast, 0x0806);
	uint8_t *a = f + o;
	in_addr_t sip = inet_addr(PEER_IP), tip = inet_addr(GUEST_IP);

	memcpy(a, "\x00\x01\x08\x00\x06\x04\x00\x01", 8);
	memcpy(a + 8, peer_mac, 6);
	memcpy(a + 14, &sip, 4);
	memset(a + 18, 0, 6);
	memcpy(a + 24, &tip, 4);
	return o + 28;
}

static size_t udp_request(uint8_t *f, uint64_t seq)
{
	size_t o = eth(f, guest_mac, 0x0800);
	uint8_t *ip = f + o, *udp = ip + 20, pseudo[12];
	in_addr_t sip = inet_addr(PEER_IP), dip = inet_addr(GUEST_IP);
	int n = snprintf((char *)udp + 8, 32, "%llu", (unsigned long long)seq);
	uint16_t ulen = (uint16_t)(8 + n), tlen = (uint16_t)(20 + ulen), c;

	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tlen >> 8);
	ip[3] = (uint8_t)tlen;
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &sip, 4);
	memcpy(ip + 16, &dip, 4);
	c = csum(ip, 20, 0);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	udp[0] = 0x9c; /* source port 40000 */
	udp[1] = 0x40;
	udp[2] = TG_UDP_PORT >> 8;
	udp[3] = TG_UDP_PORT & 0xff;
	udp[4] = (uint8_t)(ulen >> 8);
	udp[5] = (uint8_t)ulen;
	udp[6] = udp[7] = 0;
	memcpy(pseudo, &sip, 4);
	memcpy(pseudo + 4, &dip, 4);
	pseudo[8] = 0;
	pseudo[9] = 17;
	pseudo[10] = (uint8_t)(ulen >> 8);
	pseudo[11] = (uint8_t)ulen;
	{
		uint32_t sum = 0;
		const uint8_t *p = pseudo;
		int k;

		for (k = 0; k < 12; k += 2)
			sum += (uint32_t)p[k] << 8 | p[k + 1];
		c = csum(udp, ulen, sum);
	}
	if (!c)
		c = 0xffff;
	udp[6] = (uint8_t)(c >> 8);
	udp[7] = (uint8_t)c;
	return o + tlen;
}

/* Next UDP answer from the guest: "<seq> <count>"; false on timeout. */
static bool udp_answer(struct wire *w, uint64_t *seq, uint64_t *count)
{
	uint8_t f[1600];
	size_t len;

	while ((len = wire_recv(w, f, 10 * SEC)) > 0) {
		const uint8_t *ip = f + HDR + 14;
		char text[64];
		size_t ihl, n;

		if (len < HDR + 14 + 28 || f[HDR + 12] != 0x08 || f[HDR + 13] != 0x00 ||
		    ip[9] != 17)
			continue;
		ihl = (size_t)(ip[0] & 15) * 4;
		n = len - HDR - 14 - ihl - 8;
		if (n >= sizeof(text))
			continue;
		memcpy(text, ip + ihl + 8, n);
		text[n] = 0;
		unsigned long long s, c;
		if (sscanf(text, "%llu %llu", &s, &c) == 2) {
			*seq = s;
			*count = c;
			return true;
		}
	}
	return false;
}

/* ---- fixtures ------------------------------------------------------------------------- */

static struct hv_vm *net_vm(struct wire *w, struct hv_tg_config *tg)
{
	struct hv_vm_config cfg = {
		.name = "virtio", .mem_bytes = 64ull << 20, .ncpus = 2, .serial_fd = -1};
	struct hv_net_config nc = {.ops = &wire_ops, .be = w};
	struct hv_vm *vm = NULL;
	struct tg_io_state io;
	uint64_t end = util_now_ns() + 20 * SEC;

	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	memcpy(nc.mac, guest_mac, 6);
	if (hv_vm_create(&cfg, &vm) < 0)
		return NULL;
	if (hv_net_add(vm, &nc, &w->net) < 0 || hv_tg_load(vm, tg) < 0 || hv_vm_start(vm) < 0 ||
	    hv_tg_wait_ready(vm, 30 * SEC) < 0)
		goto fail;
	do {
		if (hv_tg_io_state(vm, &io) == 0 && io.net_up == TG_READY_MAGIC)
			return vm;
		util_sleep_ns(10 * 1000000ull);
	} while (util_now_ns() < end);
fail:
	hv_vm_free(vm);
	return NULL;
}

static void net_tg(struct hv_tg_config *tg)
{
	kvm_test_tg_config(tg);
	tg->rate = 20;
	tg->out_rate = 0;
	tg->ip = inet_addr(GUEST_IP);
}

static void arp_and_udp(void **state)
{
	struct wire *w = calloc(1, sizeof(*w));
	struct hv_tg_config tg;
	struct hv_vm *vm;
	uint8_t f[1600];
	uint64_t seq, count, k, first_count = 0;
	size_t len;

	net_tg(&tg);
	vm = net_vm(w, &tg);
	assert_non_null(vm);

	len = arp_request(f);
	assert_int_equal(wire_send(w, vm, f, len), 0);
	len = wire_recv(w, f, 10 * SEC);
	assert_true(len >= HDR + 14 + 28);
	assert_memory_equal(f + HDR, peer_mac, 6);	/* to us */
	assert_memory_equal(f + HDR + 6, guest_mac, 6); /* from the NIC's MAC */
	assert_int_equal(f[HDR + 12], 0x08);
	assert_int_equal(f[HDR + 13], 0x06);
	assert_int_equal(f[HDR + 14 + 7], 2); /* ARP reply */

	for (k = 1; k <= 300; k++) {
		len = udp_request(f, k);
		assert_int_equal(wire_send(w, vm, f, len), 0);
		assert_true(udp_answer(w, &seq, &count));
		assert_int_equal(seq, k);
		if (k == 1)
			first_count = count;
		assert_int_equal(count, first_count + k - 1);
	}
	hv_vm_free(vm);
	free(w);
}

/* Every page that changed while frames came in is in the harvest, RX buffers included. */
static void rx_pages_are_harvested(void **state)
{
	struct wire *w = calloc(1, sizeof(*w));
	struct hv_tg_config tg;
	struct util_bitmap h;
	struct hv_vm *vm;
	uint64_t pages, changed, seq, count, k, round, missed;
	uint8_t *copy, f[1600];
	struct hv_net_stats ns0, ns1;

	net_tg(&tg);
	vm = net_vm(w, &tg);
	assert_non_null(vm);
	pages = hv_ram_pages(vm);
	copy = malloc(pages * HV_PAGE_SIZE);
	assert_int_equal(util_bitmap_init(&h, pages), 0);
	assert_int_equal(hv_dirty_start(vm), 0);
	for (round = 0; round < 5; round++) {
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_dirty_harvest(vm, &h, NULL), 0);
		memcpy(copy, hv_ram_base(vm), pages * HV_PAGE_SIZE);
		hv_net_stats(w->net, &ns0);
		assert_int_equal(hv_vm_resume(vm), 0);
		for (k = 0; k < 40; k++) {
			assert_int_equal(wire_send(w, vm, f, udp_request(f, round * 100 + k + 1)),
					 0);
			assert_true(udp_answer(w, &seq, &count));
		}
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_dirty_harvest(vm, &h, NULL), 0);
		hv_net_stats(w->net, &ns1);
		assert_int_equal(ns1.rx_frames - ns0.rx_frames, 40);
		changed = kvm_changed_pages(vm, copy, &h, &missed);
		if (missed != UINT64_MAX)
			fail_msg("page 0x%llx changed while receiving but was not harvested",
				 (unsigned long long)missed);
		assert_true(changed > 0);
		assert_int_equal(hv_vm_resume(vm), 0);
	}
	util_bitmap_dispose(&h);
	free(copy);
	hv_vm_free(vm);
	free(w);
}

/* After the guest resets its NIC, the NIC works again. */
static void net_reset(void **state)
{
	struct wire *w = calloc(1, sizeof(*w));
	struct hv_tg_config tg;
	struct tg_io_state io;
	struct hv_vm *vm;
	uint8_t f[1600];
	uint64_t seq, count;

	net_tg(&tg);
	vm = net_vm(w, &tg);
	assert_non_null(vm);
	assert_int_equal(wire_send(w, vm, f, udp_request(f, 1)), 0);
	assert_true(udp_answer(w, &seq, &count));
	assert_int_equal(hv_tg_mailbox(vm, TG_CMD_NET_RESET, 20 * SEC), 0);
	assert_int_equal(hv_tg_io_state(vm, &io), 0);
	assert_int_equal(io.net_resets, 1);
	assert_int_equal(wire_send(w, vm, f, udp_request(f, 2)), 0);
	assert_true(udp_answer(w, &seq, &count));
	assert_int_equal(seq, 2);
	hv_vm_free(vm);
	free(w);
}

/* ---- disk ------------------------------------------------------------------------------ */

#define BLK_COUNT 64
#define IMG_BYTES (8u << 20)

static char *make_image(uint64_t seed, bool prefill)
{
	char *path = strdup("/tmp/castor-test-disk-XXXXXX");
	int fd = mkstemp(path);
	uint64_t b, w;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_BYTES), 0);
	if (prefill) { /* pass 1 of the disk rule over the whole area */
		uint64_t blk[TG_BLK_BLOCK / 8];

		for (b = 0; b < BLK_COUNT; b++) {
			for (w = 0; w < TG_BLK_BLOCK / 8; w++)
				blk[w] = tg_blk_word(b, 1, seed, (uint32_t)w);
			assert_int_equal(pwrite(fd, blk, sizeof(blk), (off_t)(b * TG_BLK_BLOCK)),
					 (ssize_t)sizeof(blk));
		}
	}
	close(fd);
	return path;
}

static struct hv_vm *blk_vm(const char *img, bool ro, struct hv_tg_config *tg, struct hv_blk **b)
{
	struct hv_vm_config cfg = {
		.name = "disk", .mem_bytes = 64ull << 20, .ncpus = 1, .serial_fd = -1};
	struct hv_blk_config bc = {.path = img, .read_only = ro};
	struct hv_vm *vm = NULL;

	if (hv_vm_create(&cfg, &vm) < 0)
		return NULL;
	if (hv_blk_add(vm, &bc, b) < 0 || hv_tg_load(vm, tg) < 0 || hv_vm_start(vm) < 0 ||
	    hv_tg_wait_ready(vm, 30 * SEC) < 0) {
		hv_vm_free(vm);
		return NULL;
	}
	return vm;
}

static void blk_tg(struct hv_tg_config *tg, bool verify_only)
{
	kvm_test_tg_config(tg);
	tg->rate = 20;
	tg->out_rate = 0;
	tg->blk_first = 0;
	tg->blk_count = BLK_COUNT;
	tg->blk_rate = 5000;
	tg->blk_verify_only = verify_only;
}

static bool wait_io(struct hv_vm *vm, struct tg_io_state *io,
		    bool (*done)(const struct tg_io_state *))
{
	uint64_t end = util_now_ns() + 60 * SEC;

	while (util_now_ns() < end) {
		if (hv_tg_io_state(vm, io) == 0 && done(io))
			return true;
		util_sleep_ns(10 * 1000000ull);
	}
	return false;
}

static bool three_passes(const struct tg_io_state *io)
{
	return io->blk_generation >= 3;
}

static void check_image(const char *img, const struct tg_io_state *io, uint64_t seed)
{
	struct hv_tg_disk_check res;
	int fd = open(img, O_RDONLY);
	uint8_t *map = mmap(NULL, IMG_BYTES, PROT_READ, MAP_SHARED, fd, 0);

	assert_true(map != MAP_FAILED);
	if (hv_tg_check_disk(map, IMG_BYTES, 0, BLK_COUNT, seed, io->blk_generation, io->blk_next,
			     &res) < 0)
		fail_msg("disk image: %s", res.why);
	munmap(map, IMG_BYTES);
	close(fd);
}

static void disk_workload_verifies(void **state)
{
	struct hv_tg_config tg;
	struct tg_io_state io;
	struct hv_blk *b;
	struct hv_blk_stats bs;
	struct hv_vm *vm;
	char *img = make_image(0, false);

	blk_tg(&tg, false);
	vm = blk_vm(img, false, &tg, &b);
	assert_non_null(vm);
	assert_true(wait_io(vm, &io, three_passes));
	assert_int_equal(hv_vm_pause(vm), 0);
	assert_int_equal(hv_tg_io_state(vm, &io), 0);
	assert_int_equal(io.blk_bad, 0);
	assert_int_equal(io.blk_io_errors, 0);
	assert_true(io.blk_verified >= 2 * BLK_COUNT);
	check_image(img, &io, tg.seed);
	/* a block changed behind the guest's back is caught by the checker */
	{
		int fd = open(img, O_RDWR);
		uint64_t junk = 0x1234;

		assert_int_equal(pwrite(fd, &junk, 8, 5 * TG_BLK_BLOCK + 64), 8);
		close(fd);
		struct hv_tg_disk_check res;
		int fd2 = open(img, O_RDONLY);
		uint8_t *map = mmap(NULL, IMG_BYTES, PROT_READ, MAP_SHARED, fd2, 0);

		assert_int_equal(hv_tg_check_disk(map, IMG_BYTES, 0, BLK_COUNT, tg.seed,
						  io.blk_generation, io.blk_next, &res),
				 -EBADMSG);
		assert_int_equal(res.first_bad, 5);
		munmap(map, IMG_BYTES);
		close(fd2);
	}
	hv_blk_stats(b, &bs);
	assert_true(bs.writes >= 2 * BLK_COUNT);
	assert_int_equal(bs.errors, 0);
	assert_int_equal(hv_vm_resume(vm), 0);
	hv_vm_free(vm);
	unlink(img);
	free(img);
}

static bool some_errors(const struct tg_io_state *io)
{
	return io->blk_io_errors >= 5;
}

static void read_only_disk_refuses_writes(void **state)
{
	struct hv_tg_config tg;
	struct tg_io_state io;
	struct hv_blk *b;
	struct hv_blk_stats bs;
	struct hv_vm *vm;
	char *img = make_image(0, false);
	struct stat st0, st1;

	assert_int_equal(stat(img, &st0), 0);
	blk_tg(&tg, false);
	vm = blk_vm(img, true, &tg, &b);
	assert_non_null(vm);
	assert_true(wait_io(vm, &io, some_errors));
	assert_int_equal(io.blk_written, 0);
	hv_blk_stats(b, &bs);
	assert_int_equal(bs.writes, 0);
	assert_true(bs.errors >= 5);
	hv_vm_free(vm);
	/* not one byte written: the image is still all zeros */
	{
		int fd = open(img, O_RDONLY);
		static uint8_t buf[IMG_BYTES];
		uint64_t i;

		assert_int_equal(read(fd, buf, IMG_BYTES), IMG_BYTES);
		for (i = 0; i < IMG_BYTES; i++)
			if (buf[i])
				fail_msg("read-only image changed at byte %llu",
					 (unsigned long long)i);
		close(fd);
	}
	assert_int_equal(stat(img, &st1), 0);
	assert_int_equal(st0.st_size, st1.st_size);
	unlink(img);
	free(img);
}

static bool verified_two_rounds(const struct tg_io_state *io)
{
	return io->blk_verified >= 2 * BLK_COUNT;
}

/* Disk reads on a read-only image verify, and the pages they filled are harvested. */
static void disk_read_pages_are_harvested(void **state)
{
	struct hv_tg_config tg;
	struct tg_io_state io;
	struct util_bitmap h;
	struct hv_blk *b;
	struct hv_blk_stats bs0, bs1;
	struct hv_vm *vm;
	uint64_t pages, round, changed, missed;
	uint8_t *copy;
	char *img;

	blk_tg(&tg, true);
	img = make_image(tg.seed, true);
	vm = blk_vm(img, true, &tg, &b);
	assert_non_null(vm);
	assert_true(wait_io(vm, &io, verified_two_rounds));
	assert_int_equal(io.blk_bad, 0);
	pages = hv_ram_pages(vm);
	copy = malloc(pages * HV_PAGE_SIZE);
	assert_int_equal(util_bitmap_init(&h, pages), 0);
	assert_int_equal(hv_dirty_start(vm), 0);
	for (round = 0; round < 5; round++) {
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_dirty_harvest(vm, &h, NULL), 0);
		memcpy(copy, hv_ram_base(vm), pages * HV_PAGE_SIZE);
		hv_blk_stats(b, &bs0);
		assert_int_equal(hv_vm_resume(vm), 0);
		util_sleep_ns(30 * 1000000ull);
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_dirty_harvest(vm, &h, NULL), 0);
		hv_blk_stats(b, &bs1);
		assert_true(bs1.reads > bs0.reads);
		changed = kvm_changed_pages(vm, copy, &h, &missed);
		if (missed != UINT64_MAX)
			fail_msg("page 0x%llx changed during disk reads but was not harvested",
				 (unsigned long long)missed);
		assert_true(changed > 0);
		assert_int_equal(hv_vm_resume(vm), 0);
	}
	assert_int_equal(hv_tg_io_state(vm, &io), 0);
	assert_int_equal(io.blk_bad, 0);
	util_bitmap_dispose(&h);
	free(copy);
	hv_vm_free(vm);
	unlink(img);
	free(img);
}

/* After the guest resets its disk, the workload goes on and the image still verifies. */
static void blk_reset(void **state)
{
	struct hv_tg_config tg;
	struct tg_io_state io, io2;
	struct hv_blk *b;
	struct hv_vm *vm;
	char *img = make_image(0, false);

	blk_tg(&tg, false);
	vm = blk_vm(img, false, &tg, &b);
	assert_non_null(vm);
	assert_true(wait_io(vm, &io, three_passes));
	assert_int_equal(hv_tg_mailbox(vm, TG_CMD_BLK_RESET, 20 * SEC), 0);
	util_sleep_ns(300 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	assert_int_equal(hv_tg_io_state(vm, &io2), 0);
	assert_int_equal(io2.blk_resets, 1);
	assert_true(io2.blk_written > io.blk_written);
	assert_int_equal(io2.blk_bad, 0);
	assert_int_equal(io2.blk_io_errors, 0);
	check_image(img, &io2, tg.seed);
	assert_int_equal(hv_vm_resume(vm), 0);
	hv_vm_free(vm);
	unlink(img);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arp_and_udp),
		cmocka_unit_test(rx_pages_are_harvested),
		cmocka_unit_test(net_reset),
		cmocka_unit_test(disk_workload_verifies),
		cmocka_unit_test(read_only_disk_refuses_writes),
		cmocka_unit_test(disk_read_pages_are_harvested),
		cmocka_unit_test(blk_reset),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
