/*
 * hv_vm.h: the VM as a whole -- the /dev/kvm probe, the VM's life cycle
 * (create, start, pause/resume, stop, free), vCPU statistics and a brief look
 * at a vCPU's registers. Part of castor_hv's public header hv.h; include hv.h.
 *
 * The sizes every other area builds on (page size, vCPU limit, the MMIO hole)
 * are defined here.
 */
#ifndef CASTOR_HV_VM_H
#define CASTOR_HV_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* MemAvailable of /proc/meminfo in bytes (0 when unknown): the cap on a guest's RAM. */
uint64_t hv_host_available_bytes(void);
/* Why a config is refused, for command lines: 0 or -EINVAL/-ERANGE with `why`. */
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

#endif
