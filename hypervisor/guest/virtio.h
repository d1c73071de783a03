/*
 * virtio-mmio (version 2, "modern") transport and split virtqueues for the
 * test guest's poll-mode drivers (net.c, blk.c). Everything runs in ring 3 on
 * vCPU 0 with interrupts off: completions are found by polling the used
 * ring's idx in memory, and the only MMIO register touched after set-up is
 * QueueNotify, written only when the device asked for it (EVENT_IDX) or did
 * not forbid it (VRING_USED_F_NO_NOTIFY). Constants follow the virtio 1.x
 * spec; they are our own (the guest includes no system headers).
 *
 * A queue's rings live in one page of the rw area (struct tg_vq_page):
 * descriptors at 0, the driver area (avail ring) at TG_VQ_AVAIL_OFF, the device
 * area (used ring) at TG_VQ_USED_OFF, for up to TG_VQ_MAX entries.
 */
#ifndef CASTOR_TG_VIRTIO_H
#define CASTOR_TG_VIRTIO_H

#include <stdint.h>

/* Registers (virtio 1.x, 4.2.2). */
#define VIO_MAGIC_VALUE		0x000
#define VIO_VERSION		0x004
#define VIO_DEVICE_ID		0x008
#define VIO_DEVICE_FEATURES	0x010
#define VIO_DEVICE_FEATURES_SEL 0x014
#define VIO_DRIVER_FEATURES	0x020
#define VIO_DRIVER_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL		0x030
#define VIO_QUEUE_NUM_MAX	0x034
#define VIO_QUEUE_NUM		0x038
#define VIO_QUEUE_READY		0x044
#define VIO_QUEUE_NOTIFY	0x050
#define VIO_STATUS		0x070
#define VIO_QUEUE_DESC_LOW	0x080
#define VIO_QUEUE_DESC_HIGH	0x084
#define VIO_QUEUE_DRIVER_LOW	0x090
#define VIO_QUEUE_DRIVER_HIGH	0x094
#define VIO_QUEUE_DEVICE_LOW	0x0a0
#define VIO_QUEUE_DEVICE_HIGH	0x0a4
#define VIO_CONFIG_GENERATION	0x0fc
#define VIO_CONFIG		0x100

#define VIO_MAGIC 0x74726976u /* "virt" */

/* Device status bits. */
#define VIO_S_ACKNOWLEDGE 1u
#define VIO_S_DRIVER	  2u
#define VIO_S_DRIVER_OK	  4u
#define VIO_S_FEATURES_OK 8u
#define VIO_S_FAILED	  128u

#define VIO_ID_NET 1u
#define VIO_ID_BLK 2u

/* Transport and ring feature bits. */
#define VIO_F_RING_EVENT_IDX 29
#define VIO_F_VERSION_1	     32

/* Ring flags. */
#define VRING_DESC_F_NEXT	   1u
#define VRING_DESC_F_WRITE	   2u
#define VRING_AVAIL_F_NO_INTERRUPT 1u
#define VRING_USED_F_NO_NOTIFY	   1u

/* QEMU microvm's transports, which params.c scans for "net=auto"/"blk=auto". */
#define VIO_MICROVM_BASE   0xfeb00000ull
#define VIO_MICROVM_STRIDE 0x200u
#define VIO_MICROVM_COUNT  24u

#define TG_VQ_MAX	128u /* entries: the rings of one queue fit one page */
#define TG_VQ_AVAIL_OFF 2048u
#define TG_VQ_USED_OFF	2560u

struct tg_vq_page {
	uint8_t bytes[4096];
} __attribute__((aligned(4096)));

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One split virtqueue, driver side. Lives in the rw area (struct tg_dev). */
struct tg_vq {
	uint64_t mmio; /* the transport's base */
	uint32_t index;
	uint16_t size;	    /* entries, a power of two <= TG_VQ_MAX */
	uint16_t avail_idx; /* our copy of avail->idx, including unpublished entries */
	uint16_t published; /* avail->idx as last published */
	uint16_t last_used; /* used entries consumed */
	uint32_t event_idx; /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint64_t notifies;  /* QueueNotify writes (diagnostics) */
	volatile struct vring_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;  /* flags, idx, {u32 id, u32 len}[size], avail_event */
};

static inline uint32_t vio_read32(uint64_t base, uint32_t off)
{
	return *(volatile uint32_t *)(uintptr_t)(base + off);
}

static inline void vio_write32(uint64_t base, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(base + off) = v;
}

static inline uint8_t vio_read8(uint64_t base, uint32_t off)
{
	return *(volatile uint8_t *)(uintptr_t)(base + off);
}

static inline uint16_t vio_read16(uint64_t base, uint32_t off)
{
	return *(volatile uint16_t *)(uintptr_t)(base + off);
}

/* The full barrier the spec asks for between publishing avail->idx and
 * reading avail_event / the used flags (x86 may pass a load before a store). */
static inline void vio_mb(void)
{
	__asm__ volatile("mfence" : : : "memory");
}

/*
 * Transport, in init order. tg_virtio_begin() checks MagicValue, Version 2
 * and the device ID, resets the device, sets ACKNOWLEDGE and DRIVER, accepts
 * `wanted` & DeviceFeatures (VIRTIO_F_VERSION_1 must be offered; EVENT_IDX is
 * accepted when offered and wanted), sets FEATURES_OK and checks the device
 * kept it. Then the driver sets up its queues and calls tg_virtio_driver_ok().
 * Failing steps return -1 with a reason and leave the device FAILED or reset.
 */
int tg_virtio_begin(uint64_t base, uint32_t device_id, uint64_t wanted, uint64_t *features_out,
		    const char **why_out);
int tg_virtio_driver_ok(uint64_t base, const char **why_out);
/* Status = 0, then wait (bounded) until the device reads back 0; 0 or -1. */
int tg_virtio_reset(uint64_t base);
/* Is there a modern virtio-mmio device of `device_id` at base? */
int tg_virtio_is_device(uint64_t base, uint32_t device_id);

/*
 * Queue `index`: size = min(QueueNumMax, want) rounded down to a power of two
 * (at least `min_size`); rings in `page`, zeroed here. Descriptors are left for
 * the driver to fill. Returns 0 or -1 with a reason.
 */
int tg_vq_setup(struct tg_vq *vq, uint64_t base, uint32_t index, struct tg_vq_page *page,
		uint16_t want, uint16_t min_size, uint64_t features, const char **why_out);
/* Make descriptor chain `head` available (not yet visible to the device). */
void tg_vq_add(struct tg_vq *vq, uint16_t head);
/* Publish what tg_vq_add() queued and notify the device if it wants it. */
void tg_vq_kick(struct tg_vq *vq);
/* One used entry, if any: 1 with *id_out and *len_out set, else 0. One read
 * of used->idx when there is nothing. */
int tg_vq_get_used(struct tg_vq *vq, uint32_t *id_out, uint32_t *len_out);

#endif
