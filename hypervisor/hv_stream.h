/*
 * hv_stream.h: the stream format (docs/stream-format.md) and what is built
 * on it -- full and incremental snapshots, restore (eager, lazy, warm) and
 * applying epochs to a twin. The same records serve snapshots, migration and
 * replication. Part of castor_hv's public header hv.h.
 */
#ifndef CASTOR_HV_STREAM_H
#define CASTOR_HV_STREAM_H

#include "hv_precopy.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/uio.h>

#include "hv_vm.h" /* HV_PAGE_SIZE, struct hv_vm_config */

struct hv_vm;

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
	uint64_t precopy_ns;   /* the live passes took this long */
	uint64_t staged_pages; /* copied during the pause */
	uint64_t bytes;	       /* the stream's size */
	uint64_t total_ns;
};
int hv_snapshot_save(struct hv_vm *vm, int fd, enum hv_stream_kind kind,
		     struct hv_snapshot_stats *stats);
/*
 * The same into any writer (a memory writer for replication epochs), with
 * the live passes chosen by a precopy policy (hv_precopy.h; NULL: no live
 * pass, every page is copied in the pause). `pause_cb` (may be NULL) runs
 * while the VM is paused, after the pages and state are fixed and before
 * END: it may write optional records into `w` and seal other things that
 * belong to this point (the output queue); an error from it fails the save.
 * A pause longer than HV_SLOW_PAUSE_MS is logged with its parts, as a warning.
 */
#define HV_SLOW_PAUSE_MS 100u
typedef int (*hv_snapshot_pause_fn)(void *arg, struct hv_vm *vm, struct hv_stream_writer *w);
struct hv_snapshot_opts {
	hv_precopy_policy_fn precopy; /* NULL: no live pass */
	void *precopy_arg;
	hv_snapshot_pause_fn pause_cb;
	void *pause_arg;
	/*
	 * Postcopy's switch: not NULL (initialised to hv_ram_pages() bits, with
	 * no live pass): the pages written since the chain's last snapshot are
	 * not copied but set here, and the stream carries none of them (the
	 * destination fetches them later, the source staying paused).
	 */
	struct util_bitmap *defer;
};
int hv_snapshot_save_opts(struct hv_vm *vm, struct hv_stream_writer *w, enum hv_stream_kind kind,
			  const struct hv_snapshot_opts *o, struct hv_snapshot_stats *stats);
/* Pages the next incremental would carry so far (-ENOENT before a full snapshot). */
int hv_snapshot_pending(struct hv_vm *vm, uint64_t *pages_out);
/*
 * A full snapshot of a twin (a VM made by hv_snapshot_restore() that has not
 * started, kept by hv_snapshot_apply()): its RAM and state as last applied,
 * with no pause and no chain of its own. The caller keeps epochs from being
 * applied meanwhile. -EINVAL for any other VM. A DR replica's copy for a test
 * boot (`castor dr test`).
 */
int hv_snapshot_save_twin(struct hv_vm *vm, int fd, struct hv_snapshot_stats *stats);

/*
 * A snapshot chain of its own: its own dirty log (hv_dirty_log_new), staging
 * buffer and ids, so that a VM may carry several at once -- `castor vm
 * snapshot`'s (the VM's own chain, used by hv_snapshot_save*() above), a
 * replication session's, a migration's -- each seeing every page written
 * since its own last snapshot. The VM must outlive it. Two chains may save at
 * once from two threads: their pauses nest.
 */
struct hv_snap_chain;
int hv_snap_chain_new(struct hv_vm *vm, struct hv_snap_chain **out);
void hv_snap_chain_free(struct hv_snap_chain *c); /* NULL is fine */
/* hv_snapshot_save_opts() on this chain. */
int hv_snap_chain_save(struct hv_snap_chain *c, struct hv_stream_writer *w,
		       enum hv_stream_kind kind, const struct hv_snapshot_opts *o,
		       struct hv_snapshot_stats *stats);
/* hv_snapshot_pending() of this chain. */
int hv_snap_chain_pending(struct hv_snap_chain *c, uint64_t *pages_out);
/*
 * Take the chain's last snapshot back, as if it had never been saved: when
 * `to_id` is the snapshot before it, its pages count as written again and
 * the next incremental follows `to_id` (1). 0 when `to_id` is the last
 * snapshot (nothing to take back); -ESTALE when neither, or when the last
 * one cannot be taken back (a full one, one with live passes or deferred
 * pages, or a second step back). A replica that lost a checkpoint in flight
 * picks up from the one before it this way (async mode's resume).
 */
int hv_snap_chain_rewind(struct hv_snap_chain *c, uint64_t to_id);
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

/*
 * Postcopy (lazy.c): a VM that runs before some of its RAM has arrived. Call
 * hv_postcopy_begin() before its vCPUs start: the pages set in `missing`
 * (hv_ram_pages() bits) are dropped from RAM and RAM is registered with a
 * userfaultfd. A missing page touched -- by a vCPU through KVM, or by the
 * VMM -- faults: lazy.c's thread calls request(arg, pfn) once for it, and
 * whoever touched it waits until hv_postcopy_place() puts it in (any thread;
 * NULL: zeros; a page already placed is left as it is). A page touched that
 * was not missing and never written reads as zeros. Once the last missing
 * page is in, RAM is unregistered and everything runs at full speed again.
 */
struct util_bitmap;
typedef void (*hv_page_request_fn)(void *arg, uint64_t pfn);
int hv_postcopy_begin(struct hv_vm *vm, const struct util_bitmap *missing,
		      hv_page_request_fn request, void *arg);
int hv_postcopy_place(struct hv_vm *vm, uint64_t pfn, const void *page);
/*
 * No more requests (their owner goes away): a missing page touched from now
 * on waits until a hv_postcopy_place() or the VM's end. Waits for a request
 * under way.
 */
void hv_postcopy_detach(struct hv_vm *vm);
/* The pages still missing, into *out (initialised here). */
int hv_postcopy_missing(struct hv_vm *vm, struct util_bitmap *out);
/*
 * Ask again for every page a fault asked for that is still missing (the
 * owner's link to the source broke and came back: the waiters still wait).
 */
int hv_postcopy_reask(struct hv_vm *vm);
/* Pages still missing, and the faults that asked for one (0, 0 when not postcopy). */
void hv_postcopy_progress(struct hv_vm *vm, uint64_t *left_out, uint64_t *faults_out);

#endif
