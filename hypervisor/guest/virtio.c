/*
 * virtio-mmio version 2 transport and split virtqueues (virtio 1.x, 2.7 and
 * 4.2), driver side, polled. See virtio.h for the rules kept here.
 */
#include "hypervisor/guest/tg.h"
#include "hypervisor/guest/virtio.h"

/* Status reads before a reset counts as failed: ~17 us each on kvm_pvm. */
#define RESET_POLLS 5000u

int tg_virtio_is_device(uint64_t base, uint32_t device_id)
{
	return vio_read32(base, VIO_MAGIC_VALUE) == VIO_MAGIC &&
	       vio_read32(base, VIO_VERSION) == 2 && vio_read32(base, VIO_DEVICE_ID) == device_id;
}

uint64_t tg_virtio_find_microvm(uint32_t device_id)
{
	uint32_t i;

	for (i = 0; i < VIO_MICROVM_COUNT; i++) {
		uint64_t base = VIO_MICROVM_BASE + (uint64_t)i * VIO_MICROVM_STRIDE;

		if (tg_virtio_is_device(base, device_id))
			return base;
	}
	return 0;
}

int tg_virtio_reset(uint64_t base)
{
	uint32_t i;

	vio_write32(base, VIO_STATUS, 0);
	for (i = 0; i < RESET_POLLS; i++) {
		if (vio_read32(base, VIO_STATUS) == 0)
			return 0;
		tg_pause();
	}
	return -1;
}

static uint64_t read_features(uint64_t base)
{
	uint64_t lo, hi;

	vio_write32(base, VIO_DEVICE_FEATURES_SEL, 0);
	lo = vio_read32(base, VIO_DEVICE_FEATURES);
	vio_write32(base, VIO_DEVICE_FEATURES_SEL, 1);
	hi = vio_read32(base, VIO_DEVICE_FEATURES);
	return hi << 32 | lo;
}

static void write_features(uint64_t base, uint64_t f)
{
	vio_write32(base, VIO_DRIVER_FEATURES_SEL, 0);
	vio_write32(base, VIO_DRIVER_FEATURES, (uint32_t)f);
	vio_write32(base, VIO_DRIVER_FEATURES_SEL, 1);
	vio_write32(base, VIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

static int fail(uint64_t base, const char *why, const char **why_out)
{
	vio_write32(base, VIO_STATUS, vio_read32(base, VIO_STATUS) | VIO_S_FAILED);
	*why_out = why;
	return -1;
}

int tg_virtio_begin(uint64_t base, uint32_t device_id, uint64_t wanted, uint64_t *features_out,
		    const char **why_out)
{
	uint64_t offered, accepted;

	if (vio_read32(base, VIO_MAGIC_VALUE) != VIO_MAGIC) {
		*why_out = "no virtio-mmio MagicValue at the address";
		return -1;
	}
	if (vio_read32(base, VIO_VERSION) != 2) {
		*why_out = "not a modern (Version 2) virtio-mmio transport; QEMU needs "
			   "-global virtio-mmio.force-legacy=false";
		return -1;
	}
	if (vio_read32(base, VIO_DEVICE_ID) != device_id) {
		*why_out = "wrong virtio DeviceID at the address";
		return -1;
	}
	if (tg_virtio_reset(base)) {
		*why_out = "the device did not come back from reset";
		return -1;
	}
	vio_write32(base, VIO_STATUS, VIO_S_ACKNOWLEDGE);
	vio_write32(base, VIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER);

	offered = read_features(base);
	if (!(offered & 1ull << VIO_F_VERSION_1))
		return fail(base, "the device does not offer VIRTIO_F_VERSION_1", why_out);
	accepted = offered & (wanted | 1ull << VIO_F_VERSION_1);
	write_features(base, accepted);
	vio_write32(base, VIO_STATUS, VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK);
	if (!(vio_read32(base, VIO_STATUS) & VIO_S_FEATURES_OK))
		return fail(base, "the device refused our features (FEATURES_OK)", why_out);
	*features_out = accepted;
	return 0;
}

int tg_virtio_driver_ok(uint64_t base, const char **why_out)
{
	uint32_t st = VIO_S_ACKNOWLEDGE | VIO_S_DRIVER | VIO_S_FEATURES_OK;

	vio_write32(base, VIO_STATUS, st | VIO_S_DRIVER_OK);
	if (vio_read32(base, VIO_STATUS) & VIO_S_FAILED) {
		*why_out = "the device failed at DRIVER_OK";
		return -1;
	}
	return 0;
}

int tg_vq_setup(struct tg_vq *vq, uint64_t base, uint32_t index, struct tg_vq_page *page,
		uint16_t want, uint16_t min_size, uint64_t features, const char **why_out)
{
	uint64_t desc = (uint64_t)(uintptr_t)page->bytes;
	uint64_t avail = desc + TG_VQ_AVAIL_OFF, used = desc + TG_VQ_USED_OFF;
	uint32_t max, size;
	uint32_t i;

	vio_write32(base, VIO_QUEUE_SEL, index);
	if (vio_read32(base, VIO_QUEUE_READY)) {
		*why_out = "a virtqueue is already live after reset";
		return -1;
	}
	max = vio_read32(base, VIO_QUEUE_NUM_MAX);
	size = want < TG_VQ_MAX ? want : TG_VQ_MAX;
	if (max < size)
		size = max;
	while (size & (size - 1)) /* round down to a power of two */
		size &= size - 1;
	if (size == 0 || size < min_size) {
		*why_out = "a virtqueue is missing or too small (QueueNumMax)";
		return -1;
	}

	for (i = 0; i < sizeof(page->bytes); i++)
		((volatile uint8_t *)page->bytes)[i] = 0;
	vq->mmio = base;
	vq->index = index;
	vq->size = (uint16_t)size;
	vq->avail_idx = vq->published = vq->last_used = 0;
	vq->event_idx = (features >> VIO_F_RING_EVENT_IDX) & 1;
	vq->notifies = 0;
	vq->desc = (volatile struct vring_desc *)(uintptr_t)desc;
	vq->avail = (volatile uint16_t *)(uintptr_t)avail;
	vq->used = (volatile uint16_t *)(uintptr_t)used;
	/* We poll: without EVENT_IDX, ask for no interrupts (with it, used_event rules). */
	vq->avail[0] = (uint16_t)(vq->event_idx ? 0 : VRING_AVAIL_F_NO_INTERRUPT);

	vio_write32(base, VIO_QUEUE_NUM, size);
	vio_write32(base, VIO_QUEUE_DESC_LOW, (uint32_t)desc);
	vio_write32(base, VIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	vio_write32(base, VIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	vio_write32(base, VIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	vio_write32(base, VIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	vio_write32(base, VIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	vio_write32(base, VIO_QUEUE_READY, 1);
	return 0;
}

void tg_vq_add(struct tg_vq *vq, uint16_t head)
{
	vq->avail[2 + (vq->avail_idx & (vq->size - 1))] = head;
	vq->avail_idx++;
}

/* virtio 1.x 2.7.10: notify if `event` lies in [old, new). */
static int need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

void tg_vq_kick(struct tg_vq *vq)
{
	uint16_t old = vq->published, cur = vq->avail_idx;
	int notify;

	if (old == cur)
		return;
	tg_barrier(); /* ring entries (and the buffers) before the index */
	vq->avail[1] = cur;
	vq->published = cur;
	vio_mb(); /* the index before reading what the device asked for */
	if (vq->event_idx)
		notify = need_event(vq->used[2 + 4 * vq->size], cur, old);
	else
		notify = !(vq->used[0] & VRING_USED_F_NO_NOTIFY);
	if (notify) {
		vio_write32(vq->mmio, VIO_QUEUE_NOTIFY, vq->index);
		vq->notifies++;
	}
}

int tg_vq_get_used(struct tg_vq *vq, uint32_t *id_out, uint32_t *len_out)
{
	volatile uint32_t *elem;

	if (vq->used[1] == vq->last_used)
		return 0;
	tg_barrier(); /* the index before the entry (x86 keeps loads in order) */
	elem = (volatile uint32_t *)(vq->used + 2) + 2 * (vq->last_used & (vq->size - 1));
	*id_out = elem[0];
	*len_out = elem[1];
	vq->last_used++;
	if (vq->event_idx)
		vq->avail[2 + vq->size] = vq->last_used; /* used_event */
	tg_barrier();					 /* the caller reads the buffer only now */
	return 1;
}
