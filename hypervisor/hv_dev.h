/*
 * hv_dev.h: the virtio-mmio devices a VM can be given -- virtio-net with a
 * backend ops table (netbuffer/ implements it), virtio-blk on a raw image --
 * and guest-like MMIO access and IRQ inspection for tests and tools that drive
 * a device directly. Part of castor_hv's public header hv.h.
 */
#ifndef CASTOR_HV_DEV_H
#define CASTOR_HV_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

struct hv_vm;

/* ---- devices: virtio-mmio net and block -------------------------------------------- */

/*
 * virtio-net. Frames cross the backend interface with their 12-byte
 * struct virtio_net_hdr_v1 in front (the tap's IFF_VNET_HDR format).
 */
struct hv_net;
struct hv_net_backend_ops {
	/*
	 * Send one frame the guest transmitted (I/O thread). The iov points into
	 * guest memory and is valid only during the call: copy what must outlive
	 * it. Returns 0 when taken (sent, queued or deliberately dropped).
	 */
	int (*tx)(void *be, const struct iovec *iov, int iovcnt, size_t len);
	/* The guest posted receive buffers after hv_net_rx() said -ENOBUFS (may be NULL). */
	void (*rx_ready)(void *be);
};
struct hv_net_config {
	uint8_t mac[6];
	const struct hv_net_backend_ops *ops;
	void *be;
};
int hv_net_add(struct hv_vm *vm, const struct hv_net_config *cfg, struct hv_net **out);
/*
 * Deliver one received frame (I/O thread only). -ENOBUFS: the guest has no
 * receive buffer now -- keep the frame, rx_ready() says when to retry;
 * -EIO: the device is not running (reset, not initialised): drop it.
 */
int hv_net_rx(struct hv_net *net, const void *frame, size_t len);
struct hv_net_stats {
	uint64_t tx_frames, tx_bytes, rx_frames, rx_bytes, rx_no_buffer, rx_dropped;
	uint64_t tx_malformed; /* frames the guest queued too short or too long: dropped */
};
void hv_net_stats(struct hv_net *net, struct hv_net_stats *out);
uint64_t hv_net_mmio_base(const struct hv_net *net);
void hv_net_mac(const struct hv_net *net, char out[18]); /* "52:54:00:12:34:56" */

/*
 * A guest-like MMIO access, as if a vCPU had made it (for tests and tools that
 * drive a device directly, e.g. a virtio driver written in a test). `data` is
 * len bytes in guest byte order. -EFAULT when no device claims the address.
 */
int hv_mmio_access(struct hv_vm *vm, uint64_t gpa, void *data, uint32_t len, bool is_write);

/*
 * The in-kernel IOAPIC's interrupt request register (a bit per pin that is
 * asserted), for tests and diagnostics. The VM must be paused or not started.
 */
int hv_vm_ioapic_irr(struct hv_vm *vm, uint32_t *irr_out);
/* The IRQ line (IOAPIC pin) of a device. */
struct hv_blk;
uint32_t hv_blk_irq(const struct hv_blk *blk);
uint32_t hv_net_irq(const struct hv_net *net);

/* virtio-blk on a raw image file. */
struct hv_blk;
struct hv_blk_config {
	const char *path;
	bool read_only;
};
int hv_blk_add(struct hv_vm *vm, const struct hv_blk_config *cfg, struct hv_blk **out);
struct hv_blk_stats {
	uint64_t reads, writes, flushes, discards, errors, bytes_read, bytes_written;
	uint64_t malformed; /* requests with nowhere to put a status: returned unserved */
};
void hv_blk_stats(struct hv_blk *blk, struct hv_blk_stats *out);
/*
 * A disk's write observer (replication/ implements it: design.md §2, the
 * hypervisor exposes backend interfaces). Told of every change the guest made
 * to the image, after it succeeded and before the guest can see the request
 * complete, on the I/O thread (which a pause parks between requests, so a
 * request belongs wholly to the epoch in which its completion is visible).
 * `data` is valid during the call only. A negative return fails the request:
 * the guest sees an I/O error, though the image already holds the change.
 */
struct hv_blk_observer_ops {
	int (*wrote)(void *arg, uint64_t offset, const void *data, size_t len);
	int (*zeroed)(void *arg, uint64_t offset, uint64_t len);
	int (*flushed)(void *arg);
};
/* Set (ops non-NULL) or clear the observer; safe while the VM runs. -EROFS on a read-only disk. */
int hv_blk_set_observer(struct hv_blk *blk, const struct hv_blk_observer_ops *ops, void *arg);
bool hv_blk_read_only(const struct hv_blk *blk);
uint64_t hv_blk_bytes(const struct hv_blk *blk);
const char *hv_blk_path(const struct hv_blk *blk);
/* The VM's disks in the order they were added (NULL past the last). */
struct hv_blk *hv_vm_blk(struct hv_vm *vm, unsigned idx);
uint64_t hv_blk_mmio_base(const struct hv_blk *blk);

#endif
