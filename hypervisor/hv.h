/*
 * castor_hv: the KVM virtual machine monitor library.
 *
 * One struct hv_vm is one KVM guest: its RAM (a memfd mapped shared and
 * registered in KVM memory slots, with a hole below 4 GiB), vCPU threads, a
 * small PIO/MMIO bus with a 16550 serial port and the Castor test device, and
 * an I/O thread for devices that work asynchronously.
 *
 * What replication and migration rely on (design.md §3) is here:
 *   - hv_vm_pause()/hv_vm_resume(): every vCPU out of KVM_RUN and parked, the
 *     I/O thread between two events; counted, so independent callers nest.
 *   - hv_dirty_start()/hv_dirty_harvest()/hv_dirty_stop(): the pages written
 *     since the last harvest, by the guest (KVM's dirty log, manual protect)
 *     and by the VMM itself.
 *   - hv_mem_write(): the one way the VMM writes guest RAM; it marks the pages
 *     dirty. Writing guest RAM any other way is a bug that corrupts replicas.
 *
 * Typical use: hv_vm_create(), hv_tg_load() (the test guest), hv_vm_start(),
 * then pause/harvest/resume at will, hv_vm_free() at the end.
 *
 * Threads: every function may be called from any thread that is not a vCPU
 * thread, unless its comment says otherwise. Functions that read vCPU state
 * need the VM paused.
 */
#ifndef CASTOR_HV_H
#define CASTOR_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "util/util.h"

#define HV_PAGE_SIZE  4096u
#define HV_PAGE_SHIFT 12u
#define HV_MAX_VCPUS  8u
#define HV_MIN_MEM    (16ull << 20)
/* RAM above this guest-physical address moves to 4 GiB: the hole is for MMIO. */
#define HV_HOLE_START (3ull << 30)
#define HV_HOLE_END   (4ull << 30)

struct hv_vm;

/* ---- /dev/kvm ------------------------------------------------------------------ */

/*
 * Open `path` (NULL = "/dev/kvm"), check the API version and every capability
 * Castor needs. On failure `why` (if not NULL) names the missing piece.
 */
int hv_kvm_probe(const char *path, char *why, size_t why_len);

/* ---- VM life cycle ---------------------------------------------------------------- */

struct hv_vm_config {
	const char *name;     /* for logs; "vm" when NULL */
	const char *kvm_path; /* NULL = "/dev/kvm" */
	uint64_t mem_bytes;   /* HV_MIN_MEM .. host's available memory, page multiple */
	uint32_t ncpus;	      /* 1 .. HV_MAX_VCPUS */
	int serial_fd;	      /* COM1 output; -1 = discard. Not owned. */
};

/* Why a config is refused, for command lines: 0 or -EINVAL/-ERANGE with `why`. */
/* MemAvailable of /proc/meminfo in bytes (0 when unknown): the cap on a guest's RAM. */
uint64_t hv_host_available_bytes(void);
int hv_vm_config_check(const struct hv_vm_config *cfg, char *why, size_t why_len);

int hv_vm_create(const struct hv_vm_config *cfg, struct hv_vm **vm_out);
/* Stops the vCPUs if they run, releases everything. NULL is fine. */
void hv_vm_free(struct hv_vm *vm);

const char *hv_vm_name(const struct hv_vm *vm);
uint32_t hv_vm_ncpus(const struct hv_vm *vm);
uint64_t hv_vm_mem_bytes(const struct hv_vm *vm);

/* Starts one thread per vCPU (named "vcpuN") and the I/O thread ("hv-io"). */
int hv_vm_start(struct hv_vm *vm);
/* Stops every vCPU and joins the threads; the VM cannot be started again. */
int hv_vm_stop(struct hv_vm *vm);

/*
 * Pause: returns once every vCPU is outside KVM_RUN and parked and the I/O
 * thread is between two events. Counted: each pause needs one resume, and the
 * VM runs again when the count drops to zero. A vCPU that failed (triple
 * fault, internal error) counts as parked.
 */
int hv_vm_pause(struct hv_vm *vm);
int hv_vm_resume(struct hv_vm *vm);
bool hv_vm_is_paused(struct hv_vm *vm);

enum hv_run_state { HV_S_CREATED = 0, HV_S_RUNNING, HV_S_PAUSED, HV_S_STOPPED };
const char *hv_run_state_str(enum hv_run_state s);
enum hv_run_state hv_vm_run_state(struct hv_vm *vm);

enum hv_vcpu_state {
	HV_VCPU_S_IDLE = 0,
	HV_VCPU_S_RUNNING,
	HV_VCPU_S_PARKED,
	HV_VCPU_S_STOPPED,
	HV_VCPU_S_FAILED
};
const char *hv_vcpu_state_str(enum hv_vcpu_state s);

struct hv_vcpu_stats {
	enum hv_vcpu_state state;
	uint64_t exits; /* KVM_RUN returns, all reasons */
	uint64_t io_exits;
	uint64_t mmio_exits;
	uint64_t kicks; /* KVM_RUN returns caused by a pause kick */
};
int hv_vcpu_stats(struct hv_vm *vm, uint32_t idx, struct hv_vcpu_stats *out);

struct hv_pause_stats {
	uint64_t pauses;
	uint64_t last_pause_ns; /* request to all parked, of the last pause */
	uint64_t uptime_ns;	/* since hv_vm_start() */
};
void hv_vm_pause_stats(struct hv_vm *vm, struct hv_pause_stats *out);

/* A vCPU's registers in brief. The VM must be paused (-EBUSY otherwise). */
struct hv_vcpu_brief {
	uint64_t rip, rsp, rflags, cr3;
	uint8_t cpl; /* from CS.DPL */
	bool long_mode;
};
int hv_vcpu_brief(struct hv_vm *vm, uint32_t idx, struct hv_vcpu_brief *out);

/* ---- guest memory --------------------------------------------------------------------- */

/*
 * RAM offsets: guest RAM is one memfd; byte `off` of it is at guest-physical
 * `off` below HV_HOLE_START and at `off + (HV_HOLE_END - HV_HOLE_START)` above.
 * Dirty bitmaps and RAM images are indexed by RAM offset / HV_PAGE_SIZE.
 */
int hv_ram_gpa_to_offset(uint64_t mem_bytes, uint64_t gpa, uint64_t *off_out);
uint64_t hv_ram_pages(const struct hv_vm *vm);
/* The whole RAM as mapped by the VMM (read it; write only via hv_mem_write). */
const uint8_t *hv_ram_base(const struct hv_vm *vm);
int hv_ram_memfd(const struct hv_vm *vm);

/* Copy out of guest RAM; -EFAULT when [gpa, gpa+len) is not all RAM. */
int hv_mem_read(struct hv_vm *vm, uint64_t gpa, void *dst, size_t len);
/*
 * The VMM's one way to write guest RAM: copies, then marks every touched page
 * in the VMM-side dirty bitmap (after the copy, so a harvest that sees the bit
 * sees the data). -EFAULT when the range is not all RAM.
 */
int hv_mem_write(struct hv_vm *vm, uint64_t gpa, const void *src, size_t len);

/* ---- dirty tracking ------------------------------------------------------------------ */

/*
 * Start: every page counts as dirty until the first harvest (KVM's
 * initially-all-set mode), so harvest #1 returns all of RAM.
 */
int hv_dirty_start(struct hv_vm *vm);
int hv_dirty_stop(struct hv_vm *vm);
bool hv_dirty_is_tracking(struct hv_vm *vm);

struct hv_harvest_stats {
	uint64_t pages;	    /* dirty pages returned */
	uint64_t vmm_pages; /* of them, pages the VMM-side bitmap contributed (may overlap) */
	uint64_t get_ns;    /* KVM_GET_DIRTY_LOG, all slots */
	uint64_t clear_ns;  /* KVM_CLEAR_DIRTY_LOG, all slots */
	uint64_t total_ns;
};
/*
 * Harvest: `out` (util_bitmap_init'ed with hv_ram_pages() bits) receives the
 * pages written since the previous harvest, by the guest or through
 * hv_mem_write(); both sources are reset. Safe while the guest runs (a page
 * written during the harvest is reported now or next time, never lost).
 * `stats` may be NULL.
 */
int hv_dirty_harvest(struct hv_vm *vm, struct util_bitmap *out, struct hv_harvest_stats *stats);

/*
 * Dirty logs: independent consumers of dirty tracking (snapshots, migration,
 * replication, the control socket). Each sees every page written since its
 * own previous take; one consumer's take never hides pages from another.
 * A new log counts every page as dirty. Tracking runs while any log exists
 * or hv_dirty_start() is in force.
 */
struct hv_dirty_log;
int hv_dirty_log_new(struct hv_vm *vm, struct hv_dirty_log **out);
/* Like hv_dirty_harvest(), for this log: `out` gets the pages since its last take. */
int hv_dirty_log_take(struct hv_dirty_log *log, struct util_bitmap *out,
		      struct hv_harvest_stats *stats);
void hv_dirty_log_free(struct hv_dirty_log *log); /* NULL is fine */
/*
 * Hot pages: a page found dirty again within 50-100 ms of an earlier harvest
 * that found it dirty is left writable in KVM (not write-protected again), so
 * the guest takes no fault on it; it is then reported dirty by every harvest,
 * written or not, until a full clear every 16 harvests lets cold pages drop
 * out. Harvests stay a superset of the pages written -- what replication
 * needs -- for far fewer write faults on a guest that rewrites the same pages,
 * even one that sweeps them slower than one page per harvest. Off by default
 * (exact harvests). -ENOMEM.
 */
int hv_dirty_set_hot(struct hv_vm *vm, bool on);
/* Pages this log would return now, without taking them (costs a sync with KVM). */
int hv_dirty_log_count(struct hv_dirty_log *log, uint64_t *pages_out);

struct hv_dirty_totals {
	uint64_t harvests;
	uint64_t last_pages;
	uint64_t last_ns;
	uint64_t vmm_pages; /* pages the VMM marked, over all harvests */
};
void hv_dirty_totals(struct hv_vm *vm, struct hv_dirty_totals *out);

/*
 * For benchmarks only: the bare KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG over
 * every slot into a scratch bitmap, with nothing else; the time it took. It
 * consumes KVM's dirty bits (they are lost to the next harvest).
 */
int hv_dirty_bare_ioctls(struct hv_vm *vm, uint64_t *ns_out);

/* ---- the I/O thread ------------------------------------------------------------------ */

/*
 * Watch an fd on the I/O thread's event loop. Callbacks pass the pause gate:
 * none runs while the VM is paused, and a pause waits for a running one.
 * `events` is HV_IO_READ and/or HV_IO_WRITE; the watch starts enabled and
 * persists. The fd stays the caller's.
 */
#define HV_IO_READ  0x02
#define HV_IO_WRITE 0x04
struct hv_io_watch;
typedef void (*hv_io_fn)(void *arg, int fd, short events);
int hv_io_watch_add(struct hv_vm *vm, int fd, short events, hv_io_fn cb, void *arg,
		    struct hv_io_watch **out);
int hv_io_watch_enable(struct hv_io_watch *w, bool on);
void hv_io_watch_free(struct hv_io_watch *w); /* NULL is fine */
/* Run fn(arg) once on the I/O thread, behind the gate (from any thread). */
int hv_io_call(struct hv_vm *vm, void (*fn)(void *arg), void *arg);

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
};
void hv_blk_stats(struct hv_blk *blk, struct hv_blk_stats *out);
uint64_t hv_blk_mmio_base(const struct hv_blk *blk);

/* ---- the stream format (docs/stream-format.md) ---------------------------------------- */

#define HV_STREAM_MAGIC	   0x4d52545352545343ull /* "CSTRSTRM" */
#define HV_STREAM_REVISION 1u
#define HV_REC_F_OPTIONAL  0x80000000u
/* holds the largest PAGES record: 8 + 8 * 4096 + 4096 * 4096 bytes */
#define HV_REC_MAX_LEN ((16u << 20) + 65536u)
#define HV_PAGES_MAX   4096u /* entries in one PAGES record */

enum hv_rec_type {
	HV_REC_HEADER = 0x0001,
	HV_REC_PAGES = 0x0002,
	HV_REC_VCPU = 0x0010,
	HV_REC_VCPU_MSRS = 0x0011,
	HV_REC_IRQCHIP = 0x0020,
	HV_REC_PIT = 0x0021,
	HV_REC_CLOCK = 0x0022,
	HV_REC_DEVICE = 0x0030,
	HV_REC_END = 0x00ff,
};
const char *hv_rec_type_str(uint32_t type);

enum hv_stream_kind { HV_STREAM_FULL = 1, HV_STREAM_INCREMENTAL = 2 };

enum hv_page_enc { HV_PAGE_RAW = 0, HV_PAGE_ZERO = 1, HV_PAGE_XOR_ZSTD = 2, HV_PAGE_ZSTD = 3 };
#define HV_PAGE_PFN_MASK  ((1ull << 52) - 1)
#define HV_PAGE_ENC_SHIFT 60

struct hv_stream_header {
	uint64_t magic;
	uint32_t version;
	uint32_t kind;
	uint32_t ncpus;
	uint32_t page_size;
	uint64_t mem_bytes;
	uint64_t stream_id;
	uint64_t parent_id;
	uint64_t created_ns;
	uint64_t reserved;
};
_Static_assert(sizeof(struct hv_stream_header) == 64, "HEADER layout");
_Static_assert(HV_REC_MAX_LEN >= 8 + 8 * HV_PAGES_MAX + HV_PAGES_MAX * HV_PAGE_SIZE, "REC_MAX_LEN");

struct hv_stream_end {
	uint64_t records;
	uint32_t checksum;
	uint32_t reserved;
	uint64_t pages;
};
_Static_assert(sizeof(struct hv_stream_end) == 24, "END layout");

/* Writer: to an fd (buffered) or to memory. Computes the END checksum as it goes. */
struct hv_stream_writer;
int hv_stream_writer_fd(int fd, struct hv_stream_writer **out);
int hv_stream_writer_mem(struct hv_stream_writer **out);
int hv_stream_write(struct hv_stream_writer *w, uint32_t type, const struct iovec *iov, int iovcnt);
/* A PAGES record (or several) for `n` pages of `ram` (RAM-offset layout); zero pages as ZERO. */
int hv_stream_write_pages(struct hv_stream_writer *w, const uint64_t *pfns, size_t n,
			  const uint8_t *ram);
/* Same, from a staging buffer holding page i of pfns[] at data + i * 4096. */
int hv_stream_write_staged(struct hv_stream_writer *w, const uint64_t *pfns, size_t n,
			   const uint8_t *data);
/* Write out what is buffered (fd writers); nothing else is written until the next record. */
int hv_stream_flush(struct hv_stream_writer *w);
/* The END record, then a flush. */
int hv_stream_finish(struct hv_stream_writer *w);
const uint8_t *hv_stream_writer_data(const struct hv_stream_writer *w, size_t *len);
/* A memory writer made empty for the next stream, keeping its buffer (-EINVAL for fd writers). */
int hv_stream_writer_reset(struct hv_stream_writer *w);
uint64_t hv_stream_writer_bytes(const struct hv_stream_writer *w);
void hv_stream_writer_free(struct hv_stream_writer *w);

/*
 * Reader over a whole stream in memory (a mapped file, a received epoch).
 * hv_stream_check() validates everything the format says -- framing, lengths,
 * padding, ordering, known mandatory types, HEADER, PAGES arithmetic, the END
 * count and checksum -- before anything is applied. Then hv_stream_next()
 * walks the records.
 */
struct hv_stream_record {
	uint32_t type; /* without the optional flag */
	bool optional;
	const uint8_t *body;
	uint32_t len;
	uint64_t offset; /* of the record header in the stream */
};
int hv_stream_check(const uint8_t *buf, size_t len, struct hv_stream_header *hdr_out, char *why,
		    size_t why_len);
struct hv_stream_iter {
	const uint8_t *buf;
	size_t len, off;
};
void hv_stream_iter_init(struct hv_stream_iter *it, const uint8_t *buf, size_t len);
/* 1 with *rec filled, 0 after END, -EBADMSG on malformed framing. */
int hv_stream_next(struct hv_stream_iter *it, struct hv_stream_record *rec);

/* ---- snapshots ----------------------------------------------------------------------- */

/*
 * Full or incremental snapshot of a running (or paused) VM into `fd`. The VM
 * is paused only to harvest dirty pages, copy them to a staging buffer and
 * save vCPU, VM and device state; everything is written after it resumes.
 * A live pass first writes, while the guest runs, all RAM (full) or the pages
 * written since the previous snapshot (incremental); the pause then re-sends
 * only what changed during that pass. Incrementals carry the pages
 * written since the previous snapshot of this VM (hv_snapshot_save with
 * HV_STREAM_FULL starts a new chain).
 */
struct hv_snapshot_stats {
	uint64_t stream_id, parent_id;
	uint64_t pause_ns; /* the VM was paused this long */
	uint64_t harvest_ns, copy_ns, state_ns;
	uint64_t stop_ns;	/* of harvest_ns: every vCPU parked and the I/O gate closed */
	uint64_t precopy_pages; /* written by the live passes, while running */
	uint32_t live_passes;
	uint64_t staged_pages; /* copied during the pause */
	uint64_t bytes;	       /* the stream's size */
	uint64_t total_ns;
};
int hv_snapshot_save(struct hv_vm *vm, int fd, enum hv_stream_kind kind,
		     struct hv_snapshot_stats *stats);
/*
 * The same into any writer (a memory writer for replication epochs), with
 * the live passes chosen: up to `live_passes` passes while the guest runs,
 * stopping early once a pass sends at most `live_stop_pages` pages (0 live
 * passes: every page is copied in the pause). `pause_cb` (may be NULL) runs
 * while the VM is paused, after the pages and state are fixed and before
 * END: it may write optional records into `w` and seal other things that
 * belong to this point (the output queue); an error from it fails the save.
 * A pause longer than HV_SLOW_PAUSE_MS is logged with its parts, as a warning.
 */
#define HV_SLOW_PAUSE_MS 100u
typedef int (*hv_snapshot_pause_fn)(void *arg, struct hv_vm *vm, struct hv_stream_writer *w);
struct hv_snapshot_opts {
	uint32_t live_passes;
	uint64_t live_stop_pages;
	hv_snapshot_pause_fn pause_cb;
	void *pause_arg;
};
int hv_snapshot_save_opts(struct hv_vm *vm, struct hv_stream_writer *w, enum hv_stream_kind kind,
			  const struct hv_snapshot_opts *o, struct hv_snapshot_stats *stats);
/* Pages the next incremental would carry so far (-ENOENT before a full snapshot). */
int hv_snapshot_pending(struct hv_vm *vm, uint64_t *pages_out);
/*
 * Test seam: `fn` runs in hv_snapshot_save() after the live pass, before the
 * pause (`paused` false), and again with the VM paused once the snapshot's
 * content is fixed (`paused` true). NULL removes it. A test uses it to make
 * the guest write in between and to see the RAM the snapshot must hold.
 */
typedef void (*hv_snapshot_hook_fn)(void *arg, struct hv_vm *vm, bool paused);
void hv_snapshot_set_hook(struct hv_vm *vm, hv_snapshot_hook_fn fn, void *arg);

/*
 * Restore: create a VM from a chain of snapshots (full first, then its
 * incrementals in order; each stream is checked whole before anything is
 * applied). `cfg` supplies what a snapshot cannot (name, serial, KVM path);
 * its mem_bytes and ncpus must be 0 or match. `add_devices` (may be NULL) adds
 * the NICs and disks in the snapshot's order before state is applied. The VM
 * is left created, not started.
 * HV_RESTORE_LAZY: RAM is not copied up front; pages are loaded when first
 * touched (userfaultfd) and in the background (lazy.c). The stream buffers
 * must then stay mapped until hv_snapshot_lazy_done() or hv_vm_free().
 */
#define HV_RESTORE_LAZY 0x1u
typedef int (*hv_restore_devices_fn)(void *arg, struct hv_vm *vm);
int hv_snapshot_restore(const struct hv_vm_config *cfg, const uint8_t *const *streams,
			const size_t *lens, unsigned nstreams, unsigned flags,
			hv_restore_devices_fn add_devices, void *arg, struct hv_vm **vm_out,
			char *why, size_t why_len);
/*
 * A warm restore: the same into a VM made ahead of time by hv_vm_create()
 * with the snapshot's RAM size and vCPU count, never loaded, restored or
 * started (a standby). Its KVM slots are long registered, so restore-to-
 * running skips that wait. Its devices may be added beforehand (then pass
 * add_devices NULL): they must match the snapshot's, in order. A failed
 * restore leaves the VM blank again (RAM wiped; state is all rewritten by
 * the next restore), so it can take another chain.
 */
int hv_snapshot_restore_into(struct hv_vm *vm, const uint8_t *const *streams, const size_t *lens,
			     unsigned nstreams, unsigned flags, hv_restore_devices_fn add_devices,
			     void *arg, char *why, size_t why_len);
/*
 * Make a created VM ready to be a standby: wait until its memory slots are
 * registered and, with `prealloc`, allocate all its RAM now (zeroed), so a
 * restore writes into resident pages. A preallocated VM cannot restore lazily.
 * -EBUSY: the VM has been loaded, restored or started.
 */
int hv_vm_prepare(struct hv_vm *vm, bool prealloc);
/*
 * Keep a twin in step: apply the next incremental stream (an epoch) to a VM
 * made by hv_snapshot_restore() that has not started. The stream is checked
 * whole first and must follow the last one applied (parent id); a refused
 * stream leaves the twin exactly as it was. -EIO means KVM refused state
 * after the check passed: the twin is no longer usable.
 */
int hv_snapshot_apply(struct hv_vm *vm, const uint8_t *buf, size_t len, char *why, size_t why_len);
/*
 * hv_snapshot_apply() for an epoch that also came as something other than a
 * stream (replication's word patches, docs/stream-format.md §9.2): once every
 * check has passed and before any record is applied, patch(arg, ram) writes
 * into the twin's RAM (RAM-offset layout, hv_ram_pages() * 4096 bytes). It
 * cannot fail: the caller validated what it writes. Pages of the stream are
 * applied after it, so a later copy of a patched page wins.
 */
typedef void hv_ram_patch_fn(void *arg, uint8_t *ram);
int hv_snapshot_apply_patched(struct hv_vm *vm, const uint8_t *buf, size_t len,
			      hv_ram_patch_fn *patch, void *arg, char *why, size_t why_len);
/* A lazy restore: true once every page is loaded (or the restore was not lazy). */
bool hv_snapshot_lazy_done(struct hv_vm *vm, uint64_t *loaded_out, uint64_t *faults_out);

/* ---- the test guest (hypervisor/guest/, docs/test-guest.md) ---------------------------- */

struct hv_tg_config {
	const char *image_path; /* castor-tg.bin */
	uint64_t wss_bytes;	/* work region per vCPU */
	uint64_t rate;		/* pages per ms per vCPU; TG_RATE_MAX = unthrottled */
	uint64_t out_rate;	/* outputs per second per vCPU */
	uint64_t seed;
	uint32_t window_words;
	bool serial_tick;
	/* network (needs a NIC): addresses in network byte order; ip 0 = no stack */
	uint32_t ip, netmask, gateway;
	/* disk workload (needs a disk): area and rate; blk_count 0 = none */
	uint64_t blk_first, blk_count, blk_rate;
	bool blk_verify_only;
};
void hv_tg_config_default(struct hv_tg_config *cfg);
/*
 * `key=value` as on castor-vmm's command line: wss, rate, outrate, seed, window,
 * tick, ip, mask, gw, blkfirst, blkcount, blkrate, blkverify.
 */
int hv_tg_config_set(struct hv_tg_config *cfg, const char *kv, char *why, size_t why_len);

/*
 * Load the image, write the parameter block and set every vCPU's entry state.
 * Add the devices first: the guest learns the first NIC's and the first
 * disk's addresses from the parameter block.
 */
int hv_tg_load(struct hv_vm *vm, const struct hv_tg_config *cfg);
bool hv_tg_is_loaded(struct hv_vm *vm);

struct hv_tg_vcpu {
	uint64_t counter;      /* from guest memory */
	uint64_t out_seq;      /* from guest memory */
	uint64_t outputs_seen; /* outputs the test device received */
	uint64_t order_errors; /* outputs whose number was not the next one */
	bool ready;	       /* reported TG_REG_READY */
	uint32_t fault;	       /* vector | cpl << 8 reported on TG_REG_FAULT, or 0 */
	bool faulted;
};
int hv_tg_vcpu(struct hv_vm *vm, uint32_t idx, struct hv_tg_vcpu *out);
/* The guest's network and disk counters (struct tg_io_state of guest/abi.h). */
struct tg_io_state;
int hv_tg_io_state(struct hv_vm *vm, struct tg_io_state *out);
/* Wait until every vCPU reported ready; -ETIMEDOUT, or -EIO when one faulted. */
int hv_tg_wait_ready(struct hv_vm *vm, uint64_t timeout_ns);
/* Change the dirty rate / output rate of a running guest (read every loop). */
int hv_tg_set_rates(struct hv_vm *vm, uint64_t rate, uint64_t out_rate);
/* The test guest's IPv4 address (network order) from its parameters; 0 = none. */
uint32_t hv_tg_guest_ip(struct hv_vm *vm);
/* The guest-physical range of the scratch area (for mailbox commands). */
int hv_tg_scratch(struct hv_vm *vm, uint64_t *first_pfn_out, uint64_t *end_pfn_out);
/*
 * Ask vCPU 0 to write word 0 of pages first_pfn + k * stride, k < count, and
 * wait for it (the VM must be running). -EINVAL when the guest rejected it.
 */
int hv_tg_dirty_range(struct hv_vm *vm, uint64_t first_pfn, uint64_t count, uint64_t stride,
		      uint64_t value, uint64_t timeout_ns);
/*
 * Post an argument-less mailbox command (TG_CMD_NET_RESET, TG_CMD_BLK_RESET)
 * and wait for it: 0, -EINVAL (rejected), -EIO (the guest says it failed).
 */
int hv_tg_mailbox(struct hv_vm *vm, uint32_t cmd, uint64_t timeout_ns);
/*
 * Pages the guest may write besides its work regions and commanded scratch
 * pages (stacks, vCPU state pages, the parameter block): a bitmap of RAM pages.
 */
int hv_tg_housekeeping(struct hv_vm *vm, struct util_bitmap *out);

/* Called on the vCPU thread for every test-device output, in order per vCPU. */
typedef void (*hv_tg_output_fn)(void *arg, uint32_t vcpu, uint64_t seq, uint64_t counter);
void hv_tg_set_output_cb(struct hv_vm *vm, hv_tg_output_fn cb, void *arg);

/*
 * The checker: verify a copy of test-guest RAM (RAM-offset layout, as
 * hv_ram_base() or a snapshot holds it) against the guest's own rule and the
 * counters stored in that same copy. 0 when every work page is exact;
 * -EBADMSG with `why` describing the first bad page; -EINVAL when the copy
 * holds no test guest.
 */
struct hv_tg_check {
	uint32_t ncpus;
	uint64_t counters[HV_MAX_VCPUS];
	uint64_t pages_checked;
	uint64_t pages_bad;
	uint64_t first_bad_gpa;
	char why[200];
};
int hv_tg_check_ram(const uint8_t *ram, uint64_t mem_bytes, struct hv_tg_check *res);

/*
 * The disk checker: verify the test guest's disk workload area in an image
 * (the disk rule of guest/abi.h). Blocks before `next` must hold pass
 * `generation`, blocks after it pass `generation - 1` (all zeros for pass 0),
 * block `next` either (it may be in flight). 0, or -EBADMSG with `why`
 * naming the first bad block; -EINVAL when the area is not in the image.
 */
struct hv_tg_disk_check {
	uint64_t blocks_checked, blocks_bad, first_bad;
	char why[200];
};
int hv_tg_check_disk(const uint8_t *img, uint64_t img_bytes, uint64_t first_sector, uint64_t count,
		     uint64_t seed, uint64_t generation, uint64_t next,
		     struct hv_tg_disk_check *res);

#endif
