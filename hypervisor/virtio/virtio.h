/*
 * virtio inside castor_hv (private to hypervisor/): split virtqueues (queue.c),
 * the virtio-mmio transport (mmio.c) and the devices (net.c, blk.c).
 *
 * Guest memory is reached through struct vq_mem, so queue processing can run
 * against a plain buffer in unit tests: `ptr` gives a read-only view of a
 * guest-physical range (NULL unless it is all RAM), `write` is the one way to
 * write guest RAM (hv_mem_write() in the VMM, which marks the pages dirty).
 *
 * Rules the queue code keeps: a descriptor chain is followed at most `size`
 * steps; every address/length pair is checked against RAM before use; device-
 * writable buffers come after device-readable ones; a queue that breaks a rule
 * is marked broken and processes nothing more until the device is reset.
 */
#ifndef CASTOR_HV_VIRTIO_H
#define CASTOR_HV_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- constants of the virtio 1.x specification --------------------------------------- */

#define VIRTIO_F_VERSION_1	32
#define VIRTIO_RING_F_EVENT_IDX 29

#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER	  2
#define VIRTIO_STATUS_DRIVER_OK	  4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED	  128

#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

/* ---- guest memory seam ---------------------------------------------------------------- */

struct vq_mem {
	void *ctx;
	const uint8_t *(*ptr)(void *ctx, uint64_t gpa, uint64_t len);
	int (*write)(void *ctx, uint64_t gpa, const void *src, size_t len);
};

/* ---- split virtqueues (queue.c) -------------------------------------------------------- */

#define VQ_MAX_SIZE 1024
#define VQ_MAX_SEGS 64 /* descriptors in one chain */

struct vq_buf {
	uint64_t gpa;
	uint32_t len;
};

/* One popped descriptor chain: device-readable (out) then device-writable (in). */
struct vq_elem {
	uint16_t head;
	unsigned n_out, n_in;
	uint64_t out_bytes, in_bytes;
	struct vq_buf out[VQ_MAX_SEGS];
	struct vq_buf in[VQ_MAX_SEGS];
};

struct vq {
	const struct vq_mem *mem;
	uint16_t size; /* QueueNum, a power of 2 */
	bool ready;
	bool event_idx;		    /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool broken;		    /* a rule was broken: nothing more until reset */
	uint64_t desc, avail, used; /* guest-physical */
	uint16_t last_avail;	    /* next avail ring entry to consume */
	uint16_t used_idx;	    /* next used ring entry to fill */
	uint16_t signalled_used;    /* used_idx at the last interrupt */
	bool signalled_valid;
	const char *name; /* for logs: "net0.rx" */
};

void vq_init(struct vq *q, const struct vq_mem *mem, const char *name);
void vq_reset(struct vq *q);
/* Check a queue's addresses and size when the driver sets QueueReady. 0 or -EINVAL. */
int vq_validate(struct vq *q);
/*
 * Take the next available chain. 0: *e filled; -ENOENT: nothing available;
 * -EBADMSG: a malformed chain (the queue is now broken; log says why).
 */
int vq_pop(struct vq *q, struct vq_elem *e);
/* Give back the last `n` popped chains unused (a device short of buffers). */
void vq_unpop(struct vq *q, uint16_t n);
/* Return a chain with `written` bytes written into its device-writable buffers. */
int vq_push(struct vq *q, const struct vq_elem *e, uint32_t written);
/* Whether the driver wants an interrupt for what was pushed since the last one. */
bool vq_should_interrupt(struct vq *q);
/* Whether the driver has made chains available that were not popped yet. */
bool vq_has_avail(struct vq *q);
/* With EVENT_IDX: ask for a notification when the driver adds past last_avail. */
int vq_publish_avail_event(struct vq *q);
/* Copy `len` bytes at offset `off` of the chain's readable part into dst. */
int vq_read_out(struct vq *q, const struct vq_elem *e, uint64_t off, void *dst, size_t len);
/* Copy `len` bytes into the chain's writable part at offset `off` (marks pages dirty). */
int vq_write_in(struct vq *q, const struct vq_elem *e, uint64_t off, const void *src, size_t len);

/* ---- virtio-mmio transport (mmio.c) ---------------------------------------------------- */

#define VIRTIO_MMIO_MAX_QUEUES 4
#define VIRTIO_MMIO_SIZE       0x1000u

struct virtio_mmio;

struct Castor__VirtioMmioState; /* proto/state.proto */
struct persist_mem;		/* devices/persist.h */

/* What a device model supplies. Hooks run with the device lock held. */
struct virtio_dev_ops {
	uint32_t device_id;
	unsigned nqueues;
	uint16_t queue_max; /* QueueNumMax */
	/* Feature bits the device offers (VERSION_1 and EVENT_IDX are added). */
	uint64_t (*features)(void *dev);
	/* Device-specific configuration space at offset 0x100 (may be NULL). */
	void (*config_read)(void *dev, uint64_t off, uint8_t *data, uint32_t len);
	void (*config_write)(void *dev, uint64_t off, const uint8_t *data, uint32_t len);
	/* The driver notified queue `qidx` (I/O thread). */
	void (*queue_notify)(void *dev, unsigned qidx);
	/* The driver set DRIVER_OK (may be NULL). */
	void (*driver_ok)(void *dev);
	/* The driver reset the device: drop in-flight work (may be NULL). */
	void (*reset)(void *dev);
	/*
	 * The device model's own state in snapshots, beside the transport's
	 * (mmio.c saves and checks that). save sets `out`'s device member and
	 * device_case, with memory from persist_alloc(mem) or the device's own.
	 * load checks the snapshot's member against this device (a disk's size)
	 * and applies it, or leaves the device as it was and returns -EINVAL with
	 * `why` naming the device; the transport's state is applied after it.
	 * Both run with the VM paused or not started; both may be NULL (no state).
	 */
	int (*save)(void *dev, struct Castor__VirtioMmioState *out, struct persist_mem *mem);
	int (*load)(void *dev, const struct Castor__VirtioMmioState *in, char *why, size_t why_len);
};

struct hv_vm;
struct hv_io_watch;

struct virtio_mmio {
	struct hv_vm *vm;
	pthread_mutex_t lock; /* registers, queues, device state */
	uint64_t base;
	uint32_t gsi;
	const struct virtio_dev_ops *ops;
	void *dev;
	char name[32];

	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t drv_features;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
	struct vq_mem mem;
	struct vq queues[VIRTIO_MMIO_MAX_QUEUES];
	char qnames[VIRTIO_MMIO_MAX_QUEUES][112];

	int notify_fd[VIRTIO_MMIO_MAX_QUEUES]; /* ioeventfd per queue */
	struct hv_io_watch *notify_watch[VIRTIO_MMIO_MAX_QUEUES];
	int irq_fd, resample_fd;
	struct hv_io_watch *resample_watch;
	uint64_t interrupts;
};

/*
 * Slot idx (< HV_MAX_VIRTIO): where the idx-th device of a VM sits and the GSI
 * it raises, for the transport and for whoever describes it (ACPI tables).
 */
void virtio_mmio_slot(unsigned idx, uint64_t *base_out, uint32_t *gsi_out);
/* Create the transport at the next free slot, register MMIO, ioeventfds and irqfd. */
int virtio_mmio_create(struct hv_vm *vm, const struct virtio_dev_ops *ops, void *dev,
		       const char *name, struct virtio_mmio **out);
void virtio_mmio_free(struct virtio_mmio *m);
bool virtio_mmio_has_feature(const struct virtio_mmio *m, unsigned bit);
bool virtio_mmio_is_live(const struct virtio_mmio *m); /* DRIVER_OK and not broken */
/* After pushing used entries on queue qidx: interrupt the guest if it wants one. */
void virtio_mmio_notify_used(struct virtio_mmio *m, unsigned qidx);
/* A queue broke a rule: set DEVICE_NEEDS_RESET and raise a config interrupt. */
void virtio_mmio_needs_reset(struct virtio_mmio *m, unsigned qidx);
/* Process a notification as if the guest had written QueueNotify: it is queued for the
 * I/O thread (takes no lock; an out-of-range qidx is ignored). */
void virtio_mmio_kick(struct virtio_mmio *m, unsigned qidx);

#endif
