/*
 * castor_netbuf: the network side of a VM: the tap backend of
 * virtio-net -- frames pass straight through between the guest's NIC and a
 * tap device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, non-blocking, served on the
 * VM's I/O thread) -- and output commit: the epoch-tagged output queue
 * (second half of this header, design.md §5).
 *
 * Use: nb_tap_open() an existing tap, nb_tap_attach() it to a VM that has not
 * started (this adds the virtio-net device), and nb_tap_free() after
 * hv_vm_stop() and before hv_vm_free().
 *
 * A tap that disappears while the VM runs (its interface deleted) is logged
 * and marked dead; the guest keeps running and its frames are dropped.
 */
#ifndef CASTOR_NETBUF_H
#define CASTOR_NETBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"

/* "52:54:00:12:34:56" -> 6 bytes; -EINVAL unless exactly that form (unicast). */
int nb_mac_parse(const char *s, uint8_t mac[6]);
void nb_mac_format(const uint8_t mac[6], char out[18]);

struct nb_tap;

/*
 * Open the existing tap interface `ifname` (-ENODEV when there is none: taps
 * are created by the operator, e.g. `ip tuntap add dev NAME mode tap`).
 * `why` receives a sentence on failure.
 */
int nb_tap_open(const char *ifname, struct nb_tap **out, char *why, size_t why_len);
/* Add a virtio-net device with `mac` to `vm` and connect it to the tap. */
int nb_tap_attach(struct nb_tap *tap, struct hv_vm *vm, const uint8_t mac[6]);
void nb_tap_free(struct nb_tap *tap); /* NULL is fine */

struct nb_tap_stats {
	uint64_t tx_frames, tx_bytes, tx_dropped; /* guest -> tap */
	uint64_t tx_queued, tx_queue_full;	  /* held for an ack / refused by a full queue */
	uint64_t announces;			  /* frames sent by nb_tap_announce */
	uint64_t rx_frames, rx_bytes, rx_dropped; /* tap -> guest */
	uint64_t rx_waits;			  /* times the guest had no buffer */
	bool dead;				  /* the interface went away */
};
void nb_tap_stats(struct nb_tap *tap, struct nb_tap_stats *out);
const char *nb_tap_name(const struct nb_tap *tap);
struct hv_net *nb_tap_net(struct nb_tap *tap);

/* ---- output commit: the epoch-tagged output queue (epoch_queue.c) -------------- */

/*
 * Under replication nothing a protected VM emits may leave the host before the
 * secondary has acknowledged the epoch that produced it (design.md §4-§5).
 * Every output (a guest TX frame, a test-device output) goes through
 * nb_output(). Unprotected, it is handed to the release callback at once.
 * Protected, a copy is queued under the open epoch; the replication engine
 * seals the open epoch during its pause (nb_epoch_begin) and, when the
 * secondary's ack for epoch e arrives, releases every sealed epoch <= e
 * (nb_epoch_release), oldest first. nb_epoch_discard() drops what was never
 * released (failover, protection stopped abnormally).
 *
 * Order: outputs are released in the order they entered the queue, across
 * epochs; an output is tagged with the epoch open at the moment it is queued
 * (never an earlier one), and the open epoch is never released.
 *
 * Bounds: at most max_bytes of payload and max_entries outputs are pending
 * (queued, not yet released or discarded); the real heap use is that plus a
 * small header per output. An output that does not fit is refused with
 * -ENOBUFS and nothing is queued; the first refusal of an epoch calls full_cb
 * so that the engine ends the epoch early (an early checkpoint, never a drop
 * of committed data). A network device keeps the frame in its TX ring and
 * retries after nb_queue_wait_room().
 *
 * Threads: nb_output() and nb_queue_wait_room() may be called from any number
 * of threads at once (vCPU threads, the I/O thread) while another thread
 * seals, releases or discards; nb_epoch_begin/release/discard and
 * nb_queue_set_protected() may each be called from any thread. Releases are
 * serialized: release_cb never runs on two threads at once, so outputs never
 * interleave. release_cb runs without the queue's state lock held, but with
 * the release lock held: it may call nb_queue_stats() and nothing else of this
 * queue. full_cb runs on the thread that called nb_output(), with no lock
 * held; it must not call back into the queue (it may be on a vCPU thread:
 * it should just ask the engine to end the epoch). nb_queue_free() must not
 * race with any other call except nb_queue_wait_room(), whose waiters it
 * wakes (-ECANCELED) and waits for.
 */

/* Kinds of output; the queue does not interpret them, release_cb does. */
enum nb_output_kind {
	NB_KIND_NET_FRAME = 1, /* a guest TX frame, virtio-net header included */
	NB_KIND_RECORD = 2,    /* a record of the owner's own (castor-vmm: a test-device output) */
};

struct nb_queue;

/*
 * Called for each released output, in queue order, on the thread that calls
 * nb_epoch_release() (or nb_output() when unprotected). `data` is the queue's
 * copy (or the caller's buffer when unprotected), valid only during the call.
 */
typedef void (*nb_release_fn)(void *arg, uint32_t kind, const void *data, size_t len);
/*
 * Called at most once per epoch, when an output is refused because the queue
 * is full: the engine should end the epoch early. See the thread rules above.
 */
typedef void (*nb_full_fn)(void *arg);

#define NB_QUEUE_DEFAULT_MAX_BYTES   (16ull << 20)
#define NB_QUEUE_DEFAULT_MAX_ENTRIES 65536u

struct nb_queue_opts {
	const char *name;     /* for logs (the VM's name); copied; "vm" when NULL */
	uint64_t max_bytes;   /* pending payload bound; 0 = NB_QUEUE_DEFAULT_MAX_BYTES */
	uint32_t max_entries; /* pending outputs bound, <= INT_MAX; 0 = the default */
};

/*
 * A new queue, unprotected. `o` may be NULL (defaults); `release_cb` is
 * required, `full_cb` may be NULL; both get `arg`. -EINVAL on bad options.
 */
int nb_queue_new(const struct nb_queue_opts *o, nb_release_fn release_cb, nb_full_fn full_cb,
		 void *arg, struct nb_queue **out);
/* Drops whatever is pending (counted as discarded), wakes waiters. NULL is fine. */
void nb_queue_free(struct nb_queue *q);

/*
 * Protection on: from now on outputs are queued, under epoch `first_epoch`
 * (the open epoch). -EALREADY when already protected (nothing changes).
 * Protection off: outputs pass through again; whatever is still pending is
 * discarded first (release the acknowledged epochs before turning it off).
 * An output racing with the switch lands on either side of it.
 */
int nb_queue_set_protected(struct nb_queue *q, bool on, uint64_t first_epoch);
/*
 * A new protection period on a queue that may still hold outputs of the last
 * one (a primary whose replica was lost, protected again toward another):
 * protection on, epoch `first_epoch` open, and every held output moved into
 * it. They are released with that epoch, whose checkpoint captures the state
 * that produced them. Returns the number of outputs moved.
 */
int nb_queue_restart(struct nb_queue *q, uint64_t first_epoch);
/*
 * Protection off, releasing (not discarding) every held output in queue
 * order, the open epoch's included: for a primary that stops protecting when
 * no replica can take over. Outputs queued meanwhile go out after them.
 * Returns the number released.
 */
int nb_queue_release_all(struct nb_queue *q);

/*
 * One output of `kind` (data copied when queued). 0, or: -EINVAL (len 0, NULL
 * data), -EMSGSIZE (len > max_bytes: it could never fit), -ENOBUFS (the bound
 * would be exceeded: nothing queued, full_cb called if it was not yet in this
 * epoch), -ENOMEM.
 */
int nb_output(struct nb_queue *q, uint32_t kind, const void *data, size_t len);
/*
 * Wait up to timeout_ms (< 0: no limit) until an output of `len` bytes would
 * fit (always true unprotected). 0, -ETIMEDOUT, -ECANCELED (the queue was
 * discarded or is being freed meanwhile), -EINVAL/-EMSGSIZE as nb_output.
 * Room is not reserved: another producer may take it first.
 */
int nb_queue_wait_room(struct nb_queue *q, size_t len, int timeout_ms);

/*
 * Seal the open epoch and open `next_epoch` (called by the engine while the
 * VM is paused). Returns the number of outputs queued in the sealed epoch, or
 * -EINVAL when the queue is not protected or next_epoch <= the open epoch.
 */
int nb_epoch_begin(struct nb_queue *q, uint64_t next_epoch);
/*
 * The secondary acknowledged epoch `e`: release, in queue order, every output
 * of a sealed epoch <= e. An `e` at or past the open epoch releases only the
 * sealed ones. Returns the number of outputs released. release_cb runs on
 * this thread; concurrent calls are serialized.
 */
int nb_epoch_release(struct nb_queue *q, uint64_t e);
/*
 * Drop every output not yet released (counted as discarded). Protection and
 * the open epoch stay as they are; later outputs start a clean queue.
 * Waiters in nb_queue_wait_room() return -ECANCELED.
 */
void nb_epoch_discard(struct nb_queue *q);

struct nb_queue_stats {
	bool is_protected;
	uint64_t passed_outputs, passed_bytes;	     /* released at once, unprotected */
	uint64_t queued_outputs, queued_bytes;	     /* accepted into the queue, ever */
	uint64_t released_outputs, released_bytes;   /* of those, released */
	uint64_t discarded_outputs, discarded_bytes; /* of those, discarded */
	uint64_t refused_outputs;		     /* -ENOBUFS returns */
	uint64_t full_events;			     /* full_cb calls */
	uint64_t room_waiters;			     /* threads in nb_queue_wait_room() now */
	/* queued = released + discarded + pending, always */
	uint64_t pending_outputs, pending_bytes, high_water_bytes;
	uint64_t open_epoch;	      /* meaningful while protected */
	uint64_t last_released_epoch; /* highest epoch released; 0 before any */
	/*
	 * Queue delay, nb_output() to release, of queued outputs: the last one,
	 * the largest ever, and percentiles over the last 1024 released.
	 */
	uint64_t delay_last_ns, delay_max_ns, delay_p50_ns, delay_p99_ns;
};
void nb_queue_stats(struct nb_queue *q, struct nb_queue_stats *out);
bool nb_queue_is_protected(struct nb_queue *q);

/* ---- the tap under output commit -------------------------------------------------- */

/*
 * Route this tap's TX (guest -> tap) through `q` as outputs of kind
 * NB_KIND_NET_FRAME | index << 8 while `q` is protected; unprotected, frames
 * still go straight to the tap with no copy. The owner's release callback
 * hands released frames back with nb_tap_release(). Call before the VM runs.
 */
#define NB_KIND_MASK	    0xffu
#define NB_KIND_INDEX(kind) ((kind) >> 8)
/* Called on the I/O thread after a frame was queued (output mode ends the epoch); may be NULL. */
typedef void (*nb_queued_fn)(void *arg);
void nb_tap_set_queue(struct nb_tap *tap, struct nb_queue *q, uint32_t index,
		      nb_queued_fn queued_cb, void *arg);
/* A released frame (virtio-net header included) to the tap; any thread. */
void nb_tap_release(struct nb_tap *tap, const void *frame, size_t len);

/*
 * Announce the guest's MAC from this tap (after a failover, so that bridges and
 * peers learn its new port): a RARP, and a gratuitous ARP when `ipv4` (network
 * order) is not 0, sent `rounds` times at 50, 100, 150, ... ms spacing, as QEMU's
 * announce does, on a thread of its own (joined by nb_tap_free, or by the
 * next announce).
 */
int nb_tap_announce(struct nb_tap *tap, const uint8_t mac[6], uint32_t ipv4, unsigned rounds);

#endif
