/*
 * The poll-mode virtio-blk driver and the disk workload (abi.h, the disk
 * rule tg_blk_word()). One queue, one request in flight at a time, always
 * the same three descriptors: the 16-byte header (device-readable), the
 * 4 KiB data buffer, the status byte (device-writable); a flush skips the
 * data.
 *
 * The workload, per block b of pass g, at params->blk_rate blocks per second:
 * write b with pass g, wait, read it back, verify; after the last block a
 * flush (when negotiated), then pass g + 1. With TG_IO_F_BLK_VERIFY_ONLY it
 * never writes: each block is read and checked against the rule with the
 * pass taken from its own word 1. Each poll looks at the used ring once and
 * starts at most one request, so the workload loop never waits on the disk.
 *
 * io_state->blk_next is the block whose write is in flight, and moves past
 * it when the write completes; at a pass boundary blk_next = 0 is stored
 * before blk_generation = g + 1 (abi.h describes what a reader may see).
 * A write the device refuses (a read-only disk) counts in blk_io_errors, is
 * not read back, and the workload moves on to the next block.
 */
#include "hypervisor/guest/dev.h"

#define STATUS_NONE 0xffu /* what we put in the status byte before a request */

int tg_blk_start(struct tg_dev *d, const char **why_out)
{
	struct tg_blk *b = &d->blk;
	uint64_t wanted =
		1ull << VIO_F_RING_EVENT_IDX | 1ull << VIO_BLK_F_FLUSH | 1ull << VIO_BLK_F_RO;
	volatile struct vring_desc *desc;
	uint32_t gen, lo, hi;

	b->up = 0;
	b->busy = 0;
	if (tg_virtio_begin(b->mmio, VIO_ID_BLK, wanted, &b->features, why_out))
		return -1;
	do {
		gen = vio_read32(b->mmio, VIO_CONFIG_GENERATION);
		lo = vio_read32(b->mmio, VIO_CONFIG);
		hi = vio_read32(b->mmio, VIO_CONFIG + 4);
	} while (vio_read32(b->mmio, VIO_CONFIG_GENERATION) != gen);
	b->capacity = (uint64_t)hi << 32 | lo;
	if (tg_vq_setup(&b->vq, b->mmio, 0, &d->blk_q_page, BLK_QUEUE_SIZE, 3, b->features,
			why_out)) {
		tg_virtio_reset(b->mmio);
		return -1;
	}
	desc = b->vq.desc;
	desc[0].addr = (uint64_t)(uintptr_t)&d->blk_req;
	desc[0].len = 16;
	desc[0].flags = VRING_DESC_F_NEXT;
	desc[0].next = 1;
	desc[1].addr = (uint64_t)(uintptr_t)d->blk_data;
	desc[1].len = TG_BLK_BLOCK;
	desc[1].next = 2;
	desc[2].addr = (uint64_t)(uintptr_t)&d->blk_req.status;
	desc[2].len = 1;
	desc[2].flags = VRING_DESC_F_WRITE;
	desc[2].next = 0;
	if (tg_virtio_driver_ok(b->mmio, why_out)) {
		tg_virtio_reset(b->mmio);
		return -1;
	}
	b->due = 0; /* whatever was in flight before a reset goes again at once */
	b->up = 1;
	return 0;
}

void tg_blk_workload_init(struct tg_dev *d, const volatile struct tg_params *p)
{
	struct tg_blk *b = &d->blk;
	volatile struct tg_io_state *io = tg_io();

	b->first = p->blk_first;
	b->count = p->blk_count;
	b->seed = p->seed;
	b->verify_only = !!(p->io_flags & TG_IO_F_BLK_VERIFY_ONLY);
	b->step = BLK_STEP_BLOCK;
	b->gen = 1;
	b->next = 0;
	b->rate = 0;
	b->period = 0;
	b->due = 0;
	b->runnable = b->count > 0 && b->first <= b->capacity &&
		      b->count <= (b->capacity - b->first) / BLK_SECTORS_PER_BLOCK;
	if (b->runnable) {
		io->blk_next = 0;
		io->blk_generation = 1;
	}
}

static void submit(struct tg_dev *d, uint32_t type, uint64_t block)
{
	struct tg_blk *b = &d->blk;
	volatile struct tg_blk_req *req = &d->blk_req;
	volatile struct vring_desc *desc = b->vq.desc;

	req->type = type;
	req->reserved = 0;
	req->sector = type == VIO_BLK_T_FLUSH ? 0 : b->first + block * BLK_SECTORS_PER_BLOCK;
	req->status = STATUS_NONE;
	if (type == VIO_BLK_T_FLUSH) {
		desc[0].next = 2;
	} else {
		desc[0].next = 1;
		desc[1].flags = VRING_DESC_F_NEXT | (type == VIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0);
	}
	tg_vq_add(&b->vq, 0);
	tg_vq_kick(&b->vq);
	b->busy = 1;
	b->cur_type = type;
}

static void block_fill(uint64_t *w, uint64_t blk, uint64_t g, uint64_t seed)
{
	uint64_t key = seed ^ blk << 24 ^ g << 8;
	uint32_t i;

	w[0] = blk ^ seed;
	w[1] = g;
	for (i = 2; i < TG_BLK_BLOCK / 8; i++)
		w[i] = tg_mix(key ^ i);
}

/* Does the block hold pass g of the rule (g = 0: all zero)? */
static int block_is(const uint64_t *w, uint64_t blk, uint64_t g, uint64_t seed)
{
	uint64_t key = seed ^ blk << 24 ^ g << 8;
	uint32_t i;

	if (g == 0) {
		for (i = 0; i < TG_BLK_BLOCK / 8; i++)
			if (w[i])
				return 0;
		return 1;
	}
	if (w[0] != (blk ^ seed) || w[1] != g)
		return 0;
	for (i = 2; i < TG_BLK_BLOCK / 8; i++)
		if (w[i] != tg_mix(key ^ i))
			return 0;
	return 1;
}

/* The block after `next - 1` is done: on to the next, the flush or the next pass. */
static void advance(struct tg_blk *b)
{
	volatile struct tg_io_state *io = tg_io();

	b->step = BLK_STEP_BLOCK;
	if (b->next < b->count)
		return;
	if (!b->verify_only && (b->features & 1ull << VIO_BLK_F_FLUSH) &&
	    b->cur_type != VIO_BLK_T_FLUSH) {
		b->step = BLK_STEP_FLUSH;
		return;
	}
	b->gen++;
	b->next = 0;
	io->blk_next = 0;
	tg_barrier();
	io->blk_generation = b->gen;
}

static void complete(struct tg_dev *d, uint32_t status)
{
	struct tg_blk *b = &d->blk;
	volatile struct tg_io_state *io = tg_io();
	const uint64_t *data = d->blk_data;
	uint64_t blk = b->next;

	if (status != VIO_BLK_S_OK)
		io->blk_io_errors++;
	switch (b->cur_type) {
	case VIO_BLK_T_OUT:
		if (status == VIO_BLK_S_OK)
			io->blk_written++;
		b->next = blk + 1;
		io->blk_next = b->next;
		if (status == VIO_BLK_S_OK)
			b->step = BLK_STEP_READBACK;
		else
			advance(b);
		break;
	case VIO_BLK_T_IN:
		if (b->verify_only) {
			b->next = blk + 1;
			io->blk_next = b->next;
		} else {
			blk--; /* the read-back of the block just written */
		}
		if (status == VIO_BLK_S_OK) {
			if (block_is(data, blk, b->verify_only ? data[1] : b->gen, b->seed))
				io->blk_verified++;
			else
				io->blk_bad++;
		}
		advance(b);
		break;
	default: /* VIO_BLK_T_FLUSH */
		advance(b);
		break;
	}
}

/* BLK_STEP_BLOCK: may a new block start now? At most blk_rate per second,
 * and a late start never turns into a burst. */
static int block_due(struct tg_dev *d, uint64_t now)
{
	struct tg_blk *b = &d->blk;
	uint64_t rate = tg_params()->blk_rate;

	if (rate == 0)
		return 0;
	if (rate != b->rate) {
		b->rate = rate;
		b->period = d->tsc_per_ms * 1000 / rate;
		if (b->period == 0)
			b->period = 1;
		b->due = now;
	}
	if ((int64_t)(now - b->due) < 0) {
		if (b->due - now > b->period) /* the TSC went backwards */
			b->due = now;
		return 0;
	}
	b->due += b->period;
	if ((int64_t)(now - b->due) > 0) /* late: start counting from now */
		b->due = now + b->period;
	return 1;
}

void tg_blk_poll(struct tg_dev *d, uint64_t now)
{
	struct tg_blk *b = &d->blk;
	uint32_t id, len;

	if (!b->up || !b->runnable)
		return;
	if (b->busy) {
		if (!tg_vq_get_used(&b->vq, &id, &len))
			return;
		b->busy = 0;
		complete(d, d->blk_req.status);
	}
	switch (b->step) {
	case BLK_STEP_BLOCK:
		if (!block_due(d, now))
			return;
		if (b->verify_only) {
			submit(d, VIO_BLK_T_IN, b->next);
		} else {
			block_fill(d->blk_data, b->next, b->gen, b->seed);
			submit(d, VIO_BLK_T_OUT, b->next);
		}
		break;
	case BLK_STEP_READBACK:
		submit(d, VIO_BLK_T_IN, b->next - 1);
		break;
	default:
		submit(d, VIO_BLK_T_FLUSH, 0);
		break;
	}
}
