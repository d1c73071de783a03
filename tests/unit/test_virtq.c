/*
 * Split virtqueue processing (hypervisor/virtio/queue.c) against descriptor
 * chains built in a plain buffer that stands for guest RAM. Malformed chains
 * -- loops, out-of-range indices and addresses, oversize lengths, readable
 * after writable, indirect descriptors, a runaway available index -- must be
 * refused, break the queue, and never cause a write outside guest RAM or
 * outside the chain's writable buffers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/virtio/virtio.h"

#define RAM   (1u << 20)
#define QSIZE 16u
#define DESC  0x1000u
#define AVAIL 0x2000u
#define USED  0x3000u
#define DATA  0x10000u

struct fake {
	uint8_t ram[RAM];
	unsigned writes;
	uint64_t lo[4096], hi[4096]; /* every range written */
};

static const uint8_t *fake_ptr(void *ctx, uint64_t gpa, uint64_t len)
{
	struct fake *f = ctx;

	if (gpa > RAM || len > RAM - gpa)
		return NULL;
	return f->ram + gpa;
}

static int fake_write(void *ctx, uint64_t gpa, const void *src, size_t len)
{
	struct fake *f = ctx;

	if (gpa > RAM || len > RAM - gpa)
		return -EFAULT;
	memcpy(f->ram + gpa, src, len);
	if (f->writes < 4096) {
		f->lo[f->writes] = gpa;
		f->hi[f->writes] = gpa + len;
		f->writes++;
	}
	return 0;
}

struct fx {
	struct fake *f;
	struct vq_mem mem;
	struct vq q;
	struct vq_elem e;
};

static void desc(struct fx *x, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	uint8_t *d = x->f->ram + DESC + 16u * i;

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* Make `head` available as the next entry and bump the available index. */
static void offer(struct fx *x, uint16_t head)
{
	uint16_t idx;

	memcpy(&idx, x->f->ram + AVAIL + 2, 2);
	memcpy(x->f->ram + AVAIL + 4 + 2u * (idx % QSIZE), &head, 2);
	idx++;
	memcpy(x->f->ram + AVAIL + 2, &idx, 2);
}

static uint16_t used_idx(struct fx *x)
{
	uint16_t v;

	memcpy(&v, x->f->ram + USED + 2, 2);
	return v;
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->f = calloc(1, sizeof(*x->f));
	x->mem = (struct vq_mem){.ctx = x->f, .ptr = fake_ptr, .write = fake_write};
	vq_init(&x->q, &x->mem, "test.q0");
	x->q.size = QSIZE;
	x->q.desc = DESC;
	x->q.avail = AVAIL;
	x->q.used = USED;
	x->q.ready = true;
	assert_int_equal(vq_validate(&x->q), 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	free(x->f);
	free(x);
	return 0;
}

/* Writes may only touch the used ring and the given writable range. */
static void assert_writes_within(struct fx *x, uint64_t lo, uint64_t hi)
{
	unsigned i;

	for (i = 0; i < x->f->writes; i++) {
		bool in_used = x->f->lo[i] >= USED && x->f->hi[i] <= USED + 4 + 8 * QSIZE + 2;
		bool in_buf = x->f->lo[i] >= lo && x->f->hi[i] <= hi;

		if (!in_used && !in_buf)
			fail_msg("write to [0x%llx, 0x%llx) outside the allowed ranges",
				 (unsigned long long)x->f->lo[i], (unsigned long long)x->f->hi[i]);
	}
}

static void good_chain(void **state)
{
	struct fx *x = *state;
	uint8_t out[10] = "0123456789", got[10];
	uint32_t used[2];

	memcpy(x->f->ram + DATA, out, 4);
	memcpy(x->f->ram + DATA + 0x100, out + 4, 6);
	desc(x, 3, DATA, 4, VIRTQ_DESC_F_NEXT, 7);
	desc(x, 7, DATA + 0x100, 6, VIRTQ_DESC_F_NEXT, 1);
	desc(x, 1, DATA + 0x200, 100, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(vq_pop(&x->q, &x->e), -ENOENT);
	offer(x, 3);
	assert_int_equal(vq_pop(&x->q, &x->e), 0);
	assert_int_equal(x->e.head, 3);
	assert_int_equal(x->e.n_out, 2);
	assert_int_equal(x->e.n_in, 1);
	assert_int_equal(x->e.out_bytes, 10);
	assert_int_equal(x->e.in_bytes, 100);
	assert_int_equal(vq_read_out(&x->q, &x->e, 0, got, 10), 0);
	assert_memory_equal(got, out, 10);
	assert_int_equal(vq_read_out(&x->q, &x->e, 2, got, 8), 0); /* across the seam */
	assert_memory_equal(got, out + 2, 8);
	assert_int_equal(vq_read_out(&x->q, &x->e, 5, got, 6), -EMSGSIZE);
	assert_int_equal(vq_write_in(&x->q, &x->e, 90, "abcdefghij", 10), 0);
	assert_int_equal(vq_write_in(&x->q, &x->e, 95, "abcdefghij", 10), -EMSGSIZE);
	assert_int_equal(vq_push(&x->q, &x->e, 100), 0);
	assert_int_equal(used_idx(x), 1);
	memcpy(used, x->f->ram + USED + 4, 8);
	assert_int_equal(used[0], 3);
	assert_int_equal(used[1], 100);
	assert_int_equal(vq_pop(&x->q, &x->e), -ENOENT);
	assert_writes_within(x, DATA + 0x200, DATA + 0x200 + 100);
}

static void expect_broken(struct fx *x)
{
	assert_int_equal(vq_pop(&x->q, &x->e), -EBADMSG);
	assert_true(x->q.broken);
	/* stays broken: nothing more is processed until a reset */
	offer(x, 0);
	assert_int_equal(vq_pop(&x->q, &x->e), -EBADMSG);
	assert_int_equal(used_idx(x), 0);
	assert_int_equal(x->f->writes, 0);
}

static void loop_is_refused(void **state)
{
	struct fx *x = *state;

	desc(x, 0, DATA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc(x, 1, DATA, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(x, 0);
	expect_broken(x);
}

static void self_loop_is_refused(void **state)
{
	struct fx *x = *state;

	desc(x, 5, DATA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
	offer(x, 5);
	expect_broken(x);
}

static void next_out_of_range(void **state)
{
	struct fx *x = *state;

	desc(x, 0, DATA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(x, 0);
	expect_broken(x);
}

static void head_out_of_range(void **state)
{
	struct fx *x = *state;

	offer(x, 0xffff);
	expect_broken(x);
}

static void address_outside_ram(void **state)
{
	struct fx *x = *state;

	desc(x, 0, RAM - 4, 8, VIRTQ_DESC_F_WRITE, 0); /* straddles the end */
	offer(x, 0);
	expect_broken(x);
}

static void oversize_length(void **state)
{
	struct fx *x = *state;

	desc(x, 0, DATA, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
	offer(x, 0);
	expect_broken(x);
}

static void wrapping_address(void **state)
{
	struct fx *x = *state;

	desc(x, 0, 0xfffffffffffff000ull, 0x2000, 0, 0);
	offer(x, 0);
	expect_broken(x);
}

static void readable_after_writable(void **state)
{
	struct fx *x = *state;

	desc(x, 0, DATA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	desc(x, 1, DATA + 8, 8, 0, 0);
	offer(x, 0);
	expect_broken(x);
}

static void indirect_is_refused(void **state)
{
	struct fx *x = *state;

	desc(x, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(x, 0);
	expect_broken(x);
}

static void runaway_avail_index(void **state)
{
	struct fx *x = *state;
	uint16_t idx = QSIZE + 1;

	memcpy(x->f->ram + AVAIL + 2, &idx, 2);
	expect_broken(x);
}

static void too_many_segments(void **state)
{
	struct fx *x;
	struct vq big;
	uint16_t i, head = 0, one = 1;

	setup(state);
	x = *state;
	/* a 128-entry queue with one chain of VQ_MAX_SEGS + 1 descriptors */
	vq_init(&big, &x->mem, "test.big");
	big.size = 128;
	big.desc = 0x20000;
	big.avail = 0x30000;
	big.used = 0x40000;
	big.ready = true;
	assert_int_equal(vq_validate(&big), 0);
	for (i = 0; i <= VQ_MAX_SEGS; i++) {
		uint8_t *d = x->f->ram + big.desc + 16u * i;
		uint64_t addr = DATA;
		uint32_t len = 1;
		uint16_t flags = i < VQ_MAX_SEGS ? VIRTQ_DESC_F_NEXT : 0, next = (uint16_t)(i + 1);

		memcpy(d, &addr, 8);
		memcpy(d + 8, &len, 4);
		memcpy(d + 12, &flags, 2);
		memcpy(d + 14, &next, 2);
	}
	memcpy(x->f->ram + big.avail + 4, &head, 2);
	memcpy(x->f->ram + big.avail + 2, &one, 2);
	assert_int_equal(vq_pop(&big, &x->e), -EBADMSG);
	assert_true(big.broken);
	teardown(state);
}

static void validate_refuses_bad_rings(void **state)
{
	struct fx *x = *state;

	x->q.size = 12; /* not a power of 2 */
	assert_int_equal(vq_validate(&x->q), -EBADMSG);
	vq_reset(&x->q);
	x->q.size = QSIZE;
	x->q.desc = RAM - 16; /* table runs past RAM */
	x->q.avail = AVAIL;
	x->q.used = USED;
	assert_int_equal(vq_validate(&x->q), -EBADMSG);
	vq_reset(&x->q);
	x->q.size = QSIZE;
	x->q.desc = DESC + 8; /* misaligned */
	x->q.avail = AVAIL;
	x->q.used = USED;
	assert_int_equal(vq_validate(&x->q), -EBADMSG);
	vq_reset(&x->q);
	assert_false(x->q.broken);
}

static void unpop_gives_back(void **state)
{
	struct fx *x = *state;

	desc(x, 2, DATA, 64, VIRTQ_DESC_F_WRITE, 0);
	desc(x, 4, DATA + 64, 64, VIRTQ_DESC_F_WRITE, 0);
	offer(x, 2);
	offer(x, 4);
	assert_int_equal(vq_pop(&x->q, &x->e), 0);
	assert_int_equal(vq_pop(&x->q, &x->e), 0);
	assert_int_equal(x->e.head, 4);
	vq_unpop(&x->q, 2);
	assert_true(vq_has_avail(&x->q));
	assert_int_equal(vq_pop(&x->q, &x->e), 0);
	assert_int_equal(x->e.head, 2);
}

/* EVENT_IDX: interrupt only when the used index passes the driver's used_event. */
static void event_idx_interrupts(void **state)
{
	struct fx *x = *state;
	uint16_t used_event = 2, avail_event;
	int k, irqs = 0;

	x->q.event_idx = true;
	memcpy(x->f->ram + AVAIL + 4 + 2 * QSIZE, &used_event, 2);
	desc(x, 0, DATA, 64, VIRTQ_DESC_F_WRITE, 0);
	for (k = 0; k < 5; k++) {
		offer(x, 0);
		assert_int_equal(vq_pop(&x->q, &x->e), 0);
		assert_int_equal(vq_push(&x->q, &x->e, 1), 0);
		if (vq_should_interrupt(&x->q)) {
			irqs++;
			/* the first push always interrupts; then only the one crossing used_event
			 */
			assert_true(k == 0 || x->q.used_idx == used_event + 1);
		}
	}
	assert_int_equal(irqs, 2);
	/* without EVENT_IDX the NO_INTERRUPT flag rules */
	x->q.event_idx = false;
	assert_true(vq_should_interrupt(&x->q));
	x->f->ram[AVAIL] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	assert_false(vq_should_interrupt(&x->q));
	/* avail_event published at the end of the used ring */
	x->q.event_idx = true;
	assert_int_equal(vq_publish_avail_event(&x->q), 0);
	memcpy(&avail_event, x->f->ram + USED + 4 + 8 * QSIZE, 2);
	assert_int_equal(avail_event, x->q.last_avail);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(good_chain),
		T(loop_is_refused),
		T(self_loop_is_refused),
		T(next_out_of_range),
		T(head_out_of_range),
		T(address_outside_ram),
		T(oversize_length),
		T(wrapping_address),
		T(readable_after_writable),
		T(indirect_is_refused),
		T(runaway_avail_index),
		cmocka_unit_test(too_many_segments),
		T(validate_refuses_bad_rings),
		T(unpop_gives_back),
		T(event_idx_interrupts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
