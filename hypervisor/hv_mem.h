/*
 * hv_mem.h: guest memory and dirty tracking. Guest RAM is one memfd mapped
 * shared; hv_mem_write() is the VMM's only way to write it, and it marks the
 * pages it touches so that a harvest (or a dirty log's take) returns the
 * guest's writes and the VMM's alike. Part of castor_hv's public header hv.h.
 */
#ifndef CASTOR_HV_MEM_H
#define CASTOR_HV_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct hv_vm;

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
 * Hot pages: a page the guest writes again within a short stretch of its own
 * progress (the write faults between its two writes, plus the pages already
 * hot, at most hv_dirty_set_hot_max()'s limit) is left writable in KVM (not write-protected
 * again), so the guest takes no fault on it; it is then reported dirty by
 * every harvest, written or not. A cursor passing over all RAM every 2 s
 * protects hot pages again: those still written come back hot after one
 * fault, those that cooled drop out. Harvests stay a superset of the pages
 * written -- what replication needs -- for far fewer write faults on a guest
 * that rewrites the same pages, however slowly it sweeps them: the rule
 * counts progress, not time, so it reaches the same hot set from a cold or a
 * warm start. Off by default (exact harvests). Counted: each user (a
 * replication session) turns them on and off once for itself, and they stay
 * on while one still wants them. -ENOMEM.
 */
int hv_dirty_set_hot(struct hv_vm *vm, bool on);
/*
 * The hot set's limit in pages (default HV_DIRTY_HOT_MAX_DEFAULT, 64 MiB):
 * hot pages are resent by every epoch, so it bounds that cost. A working set
 * larger than about 32/33 of it does not turn hot. -EINVAL for 0 or more
 * than the VM's pages.
 */
#define HV_DIRTY_HOT_MAX_DEFAULT 16384u
int hv_dirty_set_hot_max(struct hv_vm *vm, uint64_t pages);
/* Pages this log would return now, without taking them (costs a sync with KVM). */
int hv_dirty_log_count(struct hv_dirty_log *log, uint64_t *pages_out);

struct hv_dirty_totals {
	uint64_t harvests;
	uint64_t last_pages;
	uint64_t last_ns;
	uint64_t vmm_pages;   /* pages the VMM marked, over all harvests */
	uint64_t hot_pages;   /* hot pages (hv_dirty_set_hot) after the last harvest */
	uint64_t cold_faults; /* pages that faulted while hot pages were on, since the VM began */
};
void hv_dirty_totals(struct hv_vm *vm, struct hv_dirty_totals *out);

/*
 * For benchmarks only: the bare KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG over
 * every slot into a scratch bitmap, with nothing else; the time it took. It
 * consumes KVM's dirty bits (they are lost to the next harvest).
 */
int hv_dirty_bare_ioctls(struct hv_vm *vm, uint64_t *ns_out);

#endif
