/*
 * castor_hv internals, shared by the files of hypervisor/ only.
 *
 * Ioctl seams: kvm.c (system fd, capabilities), vm.c (VM-wide), memory.c
 * (memory slots), dirty.c (dirty log), vcpu.c (KVM_RUN and run-time vCPU
 * queries), boot/entry64.c (initial vCPU state).
 */
#ifndef CASTOR_HV_INT_H
#define CASTOR_HV_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>

#include "hypervisor/hv.h"
#include "hypervisor/state.h"

/*
 * In a function with `rc`, `why`, `why_len` and an `out:` label: describe the
 * failure in `why`, set rc to -EINVAL and leave.
 */
#define FAIL_WHY(...)                                                                              \
	do {                                                                                       \
		snprintf(why, why_len, __VA_ARGS__);                                               \
		rc = -EINVAL;                                                                      \
		goto out;                                                                          \
	} while (0)

struct hv_vm;
struct hv_vcpu;

/* ---- kvm.c ------------------------------------------------------------------------ */

struct hv_kvm {
	int fd; /* /dev/kvm */
	int vcpu_mmap_size;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID */
	uint32_t tsc_khz;
	/*
	 * No kvm_intel or kvm_amd: /dev/kvm is kvm_pvm, which emulates guest
	 * ring 0 and cannot run `lock cmpxchg16b` there (CX16 is hidden).
	 */
	bool ring0_emulated;
	/* KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC emulates TSC-deadline mode */
	bool tsc_deadline;
};
int kvm_open(const char *path, struct hv_kvm *kvm, char *why, size_t why_len);
void kvm_close(struct hv_kvm *kvm);

/* ---- bus.c: port and MMIO dispatch ------------------------------------------------------ */

/*
 * A device's access handler, called on the vCPU thread that exited. `data` is
 * `len` bytes (1, 2, 4 or 8) in guest byte order; for reads the handler fills
 * it. `offset` is relative to the range's base.
 */
typedef void (*hv_bus_access_fn)(void *dev, struct hv_vcpu *vcpu, uint64_t offset, uint8_t *data,
				 uint32_t len, bool is_write);

struct hv_bus_range {
	uint64_t base, len;
	hv_bus_access_fn access;
	void *dev;
};

#define HV_BUS_MAX 32

struct hv_bus {
	struct hv_bus_range ranges[HV_BUS_MAX];
	unsigned n;
};
int bus_add(struct hv_bus *bus, uint64_t base, uint64_t len, hv_bus_access_fn access, void *dev);
/* false when nothing claims the address (reads return all ones). */
bool bus_dispatch(struct hv_bus *bus, struct hv_vcpu *vcpu, uint64_t addr, uint8_t *data,
		  uint32_t len, bool is_write);

/* ---- devices -------------------------------------------------------------------------- */

/* Drives the UART's interrupt line (IRQ 4) to `level`; called with the UART's lock held. */
typedef void (*serial_irq_fn)(void *arg, bool level);
struct hv_serial {
	pthread_mutex_t lock;
	int out_fd;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	/*
	 * The transmitter is always empty (bytes leave at once), so the one
	 * interrupt is "THR empty": pending after a byte is written or THRI is
	 * enabled, cleared by reading IIR, as a 16550 does.
	 */
	bool thre_pending, irq_level;
	serial_irq_fn irq_cb; /* NULL: no line (polled guests) */
	void *irq_arg;
	char line[256];
	size_t line_len;
};
void serial_init(struct hv_serial *s, int out_fd);
void serial_set_irq(struct hv_serial *s, serial_irq_fn cb, void *arg);
void serial_dispose(struct hv_serial *s);
void serial_access(void *dev, struct hv_vcpu *vcpu, uint64_t offset, uint8_t *data, uint32_t len,
		   bool is_write);

struct hv_testdev_vcpu {
	uint64_t next_seq; /* number expected for the next output */
	uint64_t outputs;
	uint64_t order_errors;
	bool ready;
	bool faulted;
	uint32_t fault;
};

struct hv_testdev {
	struct hv_vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t state_gpa; /* guest's struct tg_vcpu_state array */
	uint64_t mbox_done; /* low 32 bits of the last mailbox seq reported */
	uint64_t mbox_reports;
	struct hv_testdev_vcpu vcpu[HV_MAX_VCPUS];
	hv_tg_output_fn output_cb;
	void *output_arg;
};
void testdev_init(struct hv_testdev *t, struct hv_vm *vm);
void testdev_dispose(struct hv_testdev *t);
void testdev_access(void *dev, struct hv_vcpu *vcpu, uint64_t offset, uint8_t *data, uint32_t len,
		    bool is_write);

/* ---- memory.c / dirty.c -------------------------------------------------------------- */

struct hv_slot {
	uint32_t id;
	uint64_t gpa;
	uint64_t size;
	uint64_t ram_off; /* offset in the memfd */
	uint32_t flags;	  /* KVM_MEM_* currently registered */
};

#define HV_MAX_SLOTS 2

struct hv_mem {
	int memfd;
	uint8_t *base; /* whole memfd, MAP_SHARED */
	uint64_t size;
	uint64_t pages;
	struct hv_slot slots[HV_MAX_SLOTS];
	unsigned nslots;
	/* VMM-side dirty bitmap: set with atomic OR after the data is written */
	uint64_t *vmm_dirty;
	atomic_bool tracking;
	/*
	 * KVM_SET_USER_MEMORY_REGION waits for an SRCU grace period: ~7 ms per
	 * slot under kvm_pvm, mostly asleep. A thread registers the slots while
	 * the VM is built and loaded; mem_slots_wait() joins it before anything
	 * needs them (KVM_RUN, dirty logging, teardown).
	 */
	pthread_t slot_thread;
	bool slot_thread_live;
	int slot_rc;
	bool prealloc; /* hv_vm_prepare() allocated every page up front */
};
int mem_init(struct hv_vm *vm, uint64_t size);
int mem_slots_wait(struct hv_vm *vm); /* 0, or why the slots could not be registered */
int mem_prealloc(struct hv_vm *vm);   /* allocate every page of the memfd now */
int mem_wipe(struct hv_vm *vm);	      /* all RAM zero and unwritten again */
/* Pages the VMM wrote (after the data is in place): the one way to set VMM dirty bits. */
void mem_mark_dirty(struct hv_vm *vm, uint64_t first_pfn, uint64_t npages);
/* Read-only view of [gpa, gpa + len) when it is all RAM (and contiguous), else NULL. */
const uint8_t *mem_ptr(struct hv_vm *vm, uint64_t gpa, uint64_t len);
void mem_dispose(struct hv_mem *mem);
int mem_slots_set_logging(struct hv_vm *vm, bool on);
void dirty_dispose(struct hv_vm *vm); /* frees every dirty log */

struct hv_dirty_log {
	struct hv_vm *vm;
	struct util_bitmap acc; /* pages dirtied since this consumer's last take */
	struct hv_dirty_log *next;
};

/* Count the pages of `b` as dirtied again, for this consumer's next take. */
void dirty_log_add(struct hv_dirty_log *l, const struct util_bitmap *b);

struct hv_dirty {
	pthread_mutex_t lock; /* one harvest at a time; guards the log list */
	struct util_bitmap scratch;
	struct hv_dirty_totals totals;
	struct hv_dirty_log *logs;	  /* every consumer */
	struct hv_dirty_log *default_log; /* the one hv_dirty_harvest() takes */
	/*
	 * Hot pages (hv_dirty_set_hot; dirty.c, "Hot pages"): `hotmap` the pages
	 * left writable at the last harvest (hot_count of them, at most hot_max), `mask` the pages
	 * to protect again, `stamp` each page's cold-fault clock + 1 at its last
	 * report. cold_faults counts the pages that faulted since hot went on;
	 * cold_clock is its 32-bit reading at the last harvest (clock_faults).
	 */
	bool hot, hot_fresh; /* hot_fresh: no harvest since hot pages went on */
	unsigned hot_users;  /* sessions that asked for them (hot while > 0) */
	uint64_t *hotmap, *mask;
	uint32_t *stamp;
	uint64_t hot_max, hot_count, cold_faults, clock_faults;
	uint32_t cold_clock;
	/* the re-check cursor: this harvest re-checks RAM words [from, from + len) mod all;
	 * recheck_ns is the time the cursor has reached */
	uint64_t recheck_from, recheck_len, recheck_ns;
};

/* ---- vcpu.c -------------------------------------------------------------------------- */

struct hv_vcpu {
	struct hv_vm *vm;
	uint32_t idx;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	_Atomic int state; /* enum hv_vcpu_state */
	_Atomic uint64_t exits, io_exits, mmio_exits, kicks;
};
int vcpu_create(struct hv_vm *vm, uint32_t idx);
void vcpu_dispose(struct hv_vcpu *vcpu);
int vcpu_start_thread(struct hv_vcpu *vcpu);
void vcpu_kick(struct hv_vcpu *vcpu);
int vcpu_get_brief(struct hv_vcpu *vcpu, struct hv_vcpu_brief *out);
int vcpu_signal_setup(void);

/* ---- io thread (io.c) -------------------------------------------------------------------
 */

struct event_base;
struct hv_io {
	struct event_base *base;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t gate_lock;
	pthread_cond_t gate_cond;
	bool gate_closed; /* paused: no device callback may start */
	bool busy;	  /* a device callback is running */
	struct event *stop_ev;
};
int io_init(struct hv_io *io);
int io_start(struct hv_io *io);
void io_stop(struct hv_io *io);
void io_dispose(struct hv_io *io);
/* Wait for the running callback to finish and keep new ones from starting. */
void io_gate_close(struct hv_io *io);
void io_gate_open(struct hv_io *io);

/* ---- boot/ -----------------------------------------------------------------------------
 */

/* Identity page tables, GDT, and a vCPU's 64-bit entry state (boot/entry64.c). */
int boot_build_page_tables(struct hv_vm *vm);
int boot_vcpu_entry64(struct hv_vcpu *vcpu, uint64_t rip, uint64_t rdi, uint64_t rsi, uint64_t rdx);
/* A vCPU's first state in general: long mode on the boot page tables, or PVH's flat
 * 32-bit protected mode without paging. Selectors index the GDT at 0x3000. */
struct boot_entry {
	bool protected32;
	uint16_t cs, ds, gdt_limit;
	uint64_t rip, rdi, rsi, rdx, rbx;
};
int boot_vcpu_enter(struct hv_vcpu *vcpu, const struct boot_entry *e);
int boot_vcpu_cpuid(struct hv_vcpu *vcpu);
int boot_vcpu_tsc_khz(struct hv_vcpu *vcpu, uint32_t *khz_out);

/*
 * The host's view of the test guest (boot/testguest.c): struct hv_tg is
 * private to that file; vm->tg is made by hv_tg_load() or by restoring a
 * snapshot of a test guest, and freed by hv_vm_free() (testguest_free).
 */
struct hv_tg;
/* What a snapshot keeps of that view (the test device's record carries it). */
struct testguest_saved {
	uint64_t state_gpa; /* the guest's vCPU state pages */
	uint64_t rw_gpa, rw_bytes;
	uint64_t mbox_seq; /* the host's last mailbox seq */
};
/* false when no test guest is loaded (nothing to save). */
bool testguest_save(struct hv_vm *vm, struct testguest_saved *out);
/* A restored test guest: hv_tg_* work on the VM from now on. 0 or -ENOMEM. */
int testguest_restore(struct hv_vm *vm, const struct testguest_saved *in);
/* A restore was refused: the VM holds no test guest again (the output callback stays). */
void testguest_forget(struct hv_vm *vm);
void testguest_free(struct hv_tg *tg); /* NULL is fine */

/* ---- virtio devices (virtio/) ------------------------------------------------------- */

#define HV_MAX_VIRTIO  8
#define HV_VIRTIO_BASE 0xd0000000ull /* one 4 KiB window per device */
struct virtio_mmio;
void net_free(struct hv_net *net);
void blk_free(struct hv_blk *blk);

/* ---- state.c ----------------------------------------------------------------------------
 */

struct hv_vcpu_rec;
int state_probe_msrs(struct hv_vm *vm);
int state_save_vcpu(struct hv_vcpu *v, struct hv_stream_writer *w);
int state_load_vcpu(struct hv_vcpu *v, const struct hv_vcpu_rec *rec, const uint8_t *msr_body,
		    uint32_t msr_len);
int state_save_vm(struct hv_vm *vm, struct hv_stream_writer *w);
int state_load_irqchip(struct hv_vm *vm, const uint8_t *body);
int state_load_pit(struct hv_vm *vm, const uint8_t *body);
int state_load_clock(struct hv_vm *vm, const uint8_t *body);

/* ---- persist.c: device state as castor.DeviceState records (devices/persist.h) -------- */

/* A device whose state goes into snapshots, in the order records are written. */
struct persist_ops;
struct hv_dev {
	const struct persist_ops *ops;
	void *dev;
	const char *id; /* the record's id: "serial0", "testdev", "net0", ... */
	unsigned rank;
};
#define HV_MAX_DEVS (2 + HV_MAX_VIRTIO) /* the 16550, the test device, virtio */

int persist_save_devices(struct hv_vm *vm, struct hv_stream_writer *w);
void snapshot_dispose(struct hv_vm *vm);

/* ---- lazy.c ------------------------------------------------------------------------- */

struct hv_lazy;
int lazy_init(struct hv_vm *vm); /* before anything touches RAM */
void lazy_set_page(struct hv_vm *vm, uint64_t pfn, const uint8_t *data); /* NULL: zeros */
int lazy_start(struct hv_vm *vm);
void lazy_dispose(struct hv_vm *vm);
/*
 * Apply one DEVICE record to the VM's device of the same id: 0, or -errno with
 * `why`. `seen` (a bit per index of vm->devs, 0 before a stream's first
 * record) gains the device, for persist_devices_check().
 */
int persist_load_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t *seen,
			char *why, size_t why_len);
/* After a stream's records: -EINVAL with `why` naming a required device it had no record for. */
int persist_devices_check(struct hv_vm *vm, uint32_t seen, char *why, size_t why_len);
/*
 * A snapshot chain (hv_stream.h): a dirty-log consumer of its own, the
 * staging buffer its pauses copy into and the id its next incremental
 * follows. Several may live on one VM (snapshots, replication, migration).
 */
struct hv_snap_chain {
	struct hv_vm *vm;
	struct hv_dirty_log *log; /* pages since the chain's last snapshot */
	uint64_t last_id;	  /* stream_id of that snapshot; 0 = none yet */
	uint8_t *stage;		  /* staging buffer, kept mapped and faulted in */
	uint64_t stage_pages;
	uint64_t *pfns; /* one per RAM page: the pages of a pass or a pause */
	/*
	 * hv_snap_chain_rewind(): after an incremental saved in the pause alone
	 * (no live pass), the snapshot it follows and the pages it carried (the
	 * harvest's own bitmap, swapped in); prev_id 0 when it cannot be taken back.
	 */
	uint64_t prev_id;
	struct util_bitmap last;
};
/* The pfns set in `b`, in order, into c->pfns; returns how many. */
uint64_t snapshot_collect(struct hv_snap_chain *c, const struct util_bitmap *b);
/*
 * The precopy loop (precopy.c) on the snapshot chain's dirty log, writing
 * into `w`, until the policy stops it: 0 (stop and copy), -ECANCELED (the
 * policy aborted), or a write or harvest error. `st` holds the last figures.
 */
int precopy_run(struct hv_snap_chain *c, struct hv_stream_writer *w, struct util_bitmap *dirty,
		hv_precopy_policy_fn policy, void *arg, struct hv_precopy_stats *st);
/* persist_load_device() without the load: the record is this VM's, once. */
int persist_check_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t *seen,
			 char *why, size_t why_len);
/*
 * The record set of one checked stream (hv_stream_check: framing, lengths,
 * checksum) against this VM, before anything of it is applied: every vCPU
 * exactly once, each VCPU record followed by its VCPU_MSRS, at most one of
 * IRQCHIP, PIT and CLOCK, every DEVICE record this VM's and only once, every
 * required device present. `which` numbers the stream in messages.
 */
int snapshot_check_records(struct hv_vm *vm, const uint8_t *buf, size_t len, unsigned which,
			   char *why, size_t why_len);
/* Before a restored VM first runs: what the snapshot's process had been told but had not
 * done is lost with its eventfds -- a QueueNotify caught by an ioeventfd and not yet read,
 * an interrupt asserted through an irqfd. Re-notify every ready queue of every live
 * virtio device (a notify with nothing new costs nothing) and re-raise a pending
 * interrupt, so a guest that notified once and waits (EVENT_IDX) is not left waiting. */
void persist_devices_restart(struct hv_vm *vm);

/* ---- the VM ----------------------------------------------------------------------------
 */

struct hv_vm {
	char name[64];
	struct hv_kvm kvm;
	int fd;
	uint32_t ncpus;
	struct hv_mem mem;
	struct hv_dirty dirty;
	struct hv_bus pio;
	struct hv_bus mmio;
	struct hv_serial serial;
	struct hv_testdev testdev;
	struct hv_io io;
	struct hv_vcpu vcpus[HV_MAX_VCPUS];
	struct virtio_mmio *virtio[HV_MAX_VIRTIO];
	unsigned nvirtio;
	struct hv_net *nets[HV_MAX_VIRTIO];
	unsigned nnets;
	struct hv_blk *blks[HV_MAX_VIRTIO];
	unsigned nblks;
	struct hv_dev devs[HV_MAX_DEVS]; /* persist_register() */
	unsigned ndevs;

	/* MSRs saved with each vCPU (state_probe_msrs) */
	uint32_t *msrs;
	uint32_t nmsrs;
	bool restored; /* state came from a snapshot: start without booting */
	bool booted;   /* a loader (test guest, Linux) set up RAM and vCPU 0's entry */

	/* snapshots (snapshot.c) */
	struct hv_snap_chain *chain;   /* hv_snapshot_save*()'s chain; NULL until the first */
	hv_snapshot_hook_fn snap_hook; /* test seam: after the live pass, before the pause */
	void *snap_hook_arg;
	uint64_t applied_id;  /* a twin: the last stream applied to it */
	struct hv_lazy *lazy; /* a lazy restore still loading pages */

	struct hv_tg *tg; /* the test guest's host side; NULL until one is loaded or restored */

	/* pause protocol: see vm.c */
	pthread_mutex_t pause_lock; /* serialises pause/resume callers */
	unsigned pause_depth;
	pthread_mutex_t park_lock;
	pthread_cond_t parked_cond;
	pthread_cond_t resume_cond;
	atomic_bool pause_req;
	atomic_bool stop_req;
	unsigned parked;       /* vCPUs parked (under park_lock) */
	unsigned active;       /* vCPU threads in their run loop (under park_lock) */
	_Atomic int run_state; /* enum hv_run_state */
	uint64_t start_ns;
	uint64_t pauses;
	uint64_t last_pause_ns;
};

/* vcpu.c calls these from the vCPU thread. */
void vm_vcpu_park(struct hv_vm *vm, struct hv_vcpu *vcpu);
void vm_vcpu_exited(struct hv_vm *vm, struct hv_vcpu *vcpu);

#endif
