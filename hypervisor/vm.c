/*
 * The VM: creation, start/stop, and the pause protocol.
 *
 * Pause protocol: the pauser sets pause_req, kicks every vCPU thread, and
 * waits until `parked` equals `active` (threads still in their run loop; a
 * failed vCPU leaves the loop and stops counting). Then it closes the I/O
 * gate. Resume opens the gate, clears pause_req and wakes the parked threads.
 * pause_lock serialises pausers; park_lock guards parked/active.
 */
#define LOG_TAG "vm"
#include "hypervisor/hv_int.h"
#include "hypervisor/devices/persist.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hypervisor/guest/abi.h"

#define HV_TSS_ADDR	     0xfffbd000ull
#define HV_IDENTITY_MAP_ADDR 0xfffbc000ull

static const char *const run_state_names[] = {"created", "running", "paused", "stopped"};
static const char *const vcpu_state_names[] = {"idle", "running", "parked", "stopped", "failed"};

const char *hv_run_state_str(enum hv_run_state s)
{
	return (unsigned)s < 4 ? run_state_names[s] : "?";
}

const char *hv_vcpu_state_str(enum hv_vcpu_state s)
{
	return (unsigned)s < 5 ? vcpu_state_names[s] : "?";
}

uint64_t hv_host_available_bytes(void)
{
	unsigned long long kb = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

int hv_vm_config_check(const struct hv_vm_config *cfg, char *why, size_t why_len)
{
	uint64_t avail;

	if (cfg->ncpus < 1 || cfg->ncpus > HV_MAX_VCPUS) {
		snprintf(why, why_len, "vCPU count %u is out of range (1 to %u)", cfg->ncpus,
			 HV_MAX_VCPUS);
		return -ERANGE;
	}
	if (cfg->mem_bytes < HV_MIN_MEM) {
		snprintf(why, why_len,
			 "memory size %" PRIu64 " bytes is below the minimum of %llu MiB",
			 cfg->mem_bytes, HV_MIN_MEM >> 20);
		return -ERANGE;
	}
	if (cfg->mem_bytes % HV_PAGE_SIZE) {
		snprintf(why, why_len, "memory size %" PRIu64 " is not a multiple of 4 KiB",
			 cfg->mem_bytes);
		return -EINVAL;
	}
	avail = hv_host_available_bytes();
	if (avail && cfg->mem_bytes > avail) {
		snprintf(why, why_len,
			 "memory size %" PRIu64 " MiB exceeds the host's available memory (%" PRIu64
			 " MiB)",
			 cfg->mem_bytes >> 20, avail >> 20);
		return -ERANGE;
	}
	return 0;
}

static int vm_ioctls(struct hv_vm *vm)
{
	struct kvm_pit_config pit = {.flags = 0};
	struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2};
	uint64_t ident = HV_IDENTITY_MAP_ADDR;

	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)HV_TSS_ADDR) < 0)
		return -errno;
	if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return -errno;
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return -errno;
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
		return -errno;
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
	if (ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0)
		return -errno;
	return 0;
}

/* COM1's IRQ 4, through the in-kernel PIC and IOAPIC (serial.c calls it on edges). */
static void serial_irq_line(void *arg, bool level)
{
	struct hv_vm *vm = arg;
	struct kvm_irq_level l = {.irq = 4, .level = level};

	if (ioctl(vm->fd, KVM_IRQ_LINE, &l) < 0)
		LOG_GUEST_WARN("vm %s: raising COM1's interrupt: %s", vm->name, strerror(errno));
}

int hv_vm_create(const struct hv_vm_config *cfg, struct hv_vm **vm_out)
{
	struct hv_vm *vm;
	char why[256];
	uint32_t i;
	int rc;

	*vm_out = NULL;
	rc = hv_vm_config_check(cfg, why, sizeof(why));
	if (rc < 0) {
		LOG_ERR("%s", why);
		return rc;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	snprintf(vm->name, sizeof(vm->name), "%s", cfg->name ? cfg->name : "vm");
	vm->fd = -1;
	vm->kvm.fd = -1;
	vm->mem.memfd = -1;
	vm->ncpus = cfg->ncpus;
	for (i = 0; i < HV_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_mutex_init(&vm->park_lock, NULL);
	pthread_cond_init(&vm->parked_cond, NULL);
	pthread_cond_init(&vm->resume_cond, NULL);
	pthread_mutex_init(&vm->dirty.lock, NULL);
	serial_init(&vm->serial, cfg->serial_fd);
	testdev_init(&vm->testdev, vm);
	atomic_store(&vm->run_state, HV_S_CREATED);

	rc = kvm_open(cfg->kvm_path, &vm->kvm, why, sizeof(why));
	if (rc < 0) {
		LOG_ERR("vm %s: %s", vm->name, why);
		goto fail;
	}
	vm->fd = ioctl(vm->kvm.fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		rc = -errno;
		LOG_ERRNO(rc, "vm %s: KVM_CREATE_VM", vm->name);
		goto fail;
	}
	rc = vm_ioctls(vm);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: setting up the VM", vm->name);
		goto fail;
	}
	serial_set_irq(&vm->serial, serial_irq_line, vm);
	rc = mem_init(vm, cfg->mem_bytes);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: guest RAM of %" PRIu64 " MiB", vm->name,
			  cfg->mem_bytes >> 20);
		goto fail;
	}
	rc = bus_add(&vm->pio, TG_COM1, 8, serial_access, &vm->serial);
	if (!rc)
		rc = bus_add(&vm->mmio, TG_MMIO_BASE, TG_MMIO_SIZE, testdev_access, &vm->testdev);
	/* rank 0: their records come before every virtio device's, as they always have */
	if (!rc)
		rc = persist_register(vm, &serial_persist_ops, &vm->serial, "serial0", 0);
	if (!rc)
		rc = persist_register(vm, &testdev_persist_ops, &vm->testdev, "testdev", 0);
	if (rc < 0)
		goto fail;
	rc = io_init(&vm->io);
	if (rc < 0)
		goto fail;
	rc = vcpu_signal_setup();
	if (rc < 0)
		goto fail;
	for (i = 0; i < vm->ncpus; i++) {
		rc = vcpu_create(vm, i);
		if (!rc)
			rc = boot_vcpu_cpuid(&vm->vcpus[i]);
		if (rc < 0) {
			LOG_ERRNO(rc, "vm %s: creating vcpu %u", vm->name, i);
			goto fail;
		}
	}
	rc = state_probe_msrs(vm);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: listing MSRs", vm->name);
		goto fail;
	}
	LOG_INFO("vm %s: created: %u vCPUs, %" PRIu64 " MiB", vm->name, vm->ncpus,
		 cfg->mem_bytes >> 20);
	*vm_out = vm;
	return 0;
fail:
	hv_vm_free(vm);
	return rc;
}

void hv_vm_free(struct hv_vm *vm)
{
	uint32_t i;

	if (!vm)
		return;
	hv_vm_stop(vm);
	mem_slots_wait(vm); /* the slot thread uses vm->fd and the mapping */
	snapshot_dispose(vm);
	lazy_dispose(vm); /* the vCPUs are stopped: nobody waits on a page any more */
	for (i = 0; i < vm->nnets; i++)
		net_free(vm->nets[i]);
	for (i = 0; i < vm->nblks; i++)
		blk_free(vm->blks[i]);
	for (i = 0; i < HV_MAX_VCPUS; i++)
		if (vm->vcpus[i].vm)
			vcpu_dispose(&vm->vcpus[i]);
	io_dispose(&vm->io);
	mem_dispose(&vm->mem);
	dirty_dispose(vm);
	free(vm->msrs);
	if (vm->fd >= 0)
		close(vm->fd);
	kvm_close(&vm->kvm);
	serial_dispose(&vm->serial);
	testdev_dispose(&vm->testdev);
	testguest_free(vm->tg);
	pthread_mutex_destroy(&vm->dirty.lock);
	pthread_cond_destroy(&vm->resume_cond);
	pthread_cond_destroy(&vm->parked_cond);
	pthread_mutex_destroy(&vm->park_lock);
	pthread_mutex_destroy(&vm->pause_lock);
	free(vm);
}

const char *hv_vm_name(const struct hv_vm *vm)
{
	return vm->name;
}

uint32_t hv_vm_ncpus(const struct hv_vm *vm)
{
	return vm->ncpus;
}

uint64_t hv_vm_mem_bytes(const struct hv_vm *vm)
{
	return vm->mem.size;
}

enum hv_run_state hv_vm_run_state(struct hv_vm *vm)
{
	return (enum hv_run_state)atomic_load(&vm->run_state);
}

int hv_vm_start(struct hv_vm *vm)
{
	uint32_t i;
	int rc = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->run_state) != HV_S_CREATED) {
		rc = -EINVAL;
		goto out;
	}
	if (!vm->booted && !vm->restored) {
		LOG_ERR("vm %s: nothing to run: no guest loaded", vm->name);
		rc = -EINVAL;
		goto out;
	}
	rc = mem_slots_wait(vm);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: guest RAM could not be given to KVM", vm->name);
		goto out;
	}
	if (vm->restored)
		persist_devices_restart(vm);
	rc = io_start(&vm->io);
	if (rc < 0)
		goto out;
	vm->start_ns = util_now_ns();
	pthread_mutex_lock(&vm->park_lock);
	vm->active = vm->ncpus;
	pthread_mutex_unlock(&vm->park_lock);
	atomic_store(&vm->run_state, HV_S_RUNNING);
	for (i = 0; i < vm->ncpus; i++) {
		rc = vcpu_start_thread(&vm->vcpus[i]);
		if (rc < 0) {
			LOG_ERRNO(rc, "vm %s: starting vcpu %u", vm->name, i);
			pthread_mutex_lock(&vm->park_lock);
			vm->active -= vm->ncpus - i;
			pthread_mutex_unlock(&vm->park_lock);
			pthread_mutex_unlock(&vm->pause_lock);
			hv_vm_stop(vm);
			return rc;
		}
	}
	LOG_INFO("vm %s: running", vm->name);
out:
	pthread_mutex_unlock(&vm->pause_lock);
	return rc;
}

int hv_vm_stop(struct hv_vm *vm)
{
	uint32_t i;

	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->run_state) == HV_S_STOPPED) {
		pthread_mutex_unlock(&vm->pause_lock);
		return 0;
	}
	atomic_store(&vm->stop_req, true);
	pthread_mutex_lock(&vm->park_lock);
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->park_lock);
	for (i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
	if (vm->pause_depth)
		io_gate_open(&vm->io);
	vm->pause_depth = 0;
	io_stop(&vm->io);
	if (atomic_load(&vm->run_state) != HV_S_CREATED)
		LOG_INFO("vm %s: stopped", vm->name);
	atomic_store(&vm->run_state, HV_S_STOPPED);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

void vm_vcpu_park(struct hv_vm *vm, struct hv_vcpu *v)
{
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&v->state, HV_VCPU_S_PARKED);
	vm->parked++;
	if (vm->parked >= vm->active)
		pthread_cond_signal(&vm->parked_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stop_req))
		pthread_cond_wait(&vm->resume_cond, &vm->park_lock);
	vm->parked--;
	atomic_store(&v->state, HV_VCPU_S_RUNNING);
	pthread_mutex_unlock(&vm->park_lock);
}

void vm_vcpu_exited(struct hv_vm *vm, struct hv_vcpu *v)
{
	pthread_mutex_lock(&vm->park_lock);
	vm->active--;
	pthread_cond_signal(&vm->parked_cond);
	pthread_mutex_unlock(&vm->park_lock);
}

int hv_vm_pause(struct hv_vm *vm)
{
	uint64_t t0;
	uint32_t i;
	int rc = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->run_state) != HV_S_RUNNING &&
	    atomic_load(&vm->run_state) != HV_S_PAUSED) {
		rc = -EINVAL;
		goto out;
	}
	if (vm->pause_depth++ > 0)
		goto out;
	t0 = util_now_ns();
	atomic_store(&vm->pause_req, true);
	for (i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->park_lock);
	while (vm->parked < vm->active)
		pthread_cond_wait(&vm->parked_cond, &vm->park_lock);
	pthread_mutex_unlock(&vm->park_lock);
	io_gate_close(&vm->io);
	vm->last_pause_ns = util_now_ns() - t0;
	vm->pauses++;
	atomic_store(&vm->run_state, HV_S_PAUSED);
out:
	pthread_mutex_unlock(&vm->pause_lock);
	return rc;
}

int hv_vm_resume(struct hv_vm *vm)
{
	int rc = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (atomic_load(&vm->run_state) != HV_S_PAUSED || !vm->pause_depth) {
		rc = -EINVAL;
		goto out;
	}
	if (--vm->pause_depth > 0)
		goto out;
	io_gate_open(&vm->io);
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->park_lock);
	atomic_store(&vm->run_state, HV_S_RUNNING);
out:
	pthread_mutex_unlock(&vm->pause_lock);
	return rc;
}

bool hv_vm_is_paused(struct hv_vm *vm)
{
	return atomic_load(&vm->run_state) == HV_S_PAUSED;
}

void hv_vm_pause_stats(struct hv_vm *vm, struct hv_pause_stats *out)
{
	pthread_mutex_lock(&vm->pause_lock);
	out->pauses = vm->pauses;
	out->last_pause_ns = vm->last_pause_ns;
	out->uptime_ns = vm->start_ns ? util_now_ns() - vm->start_ns : 0;
	pthread_mutex_unlock(&vm->pause_lock);
}

int hv_vcpu_stats(struct hv_vm *vm, uint32_t idx, struct hv_vcpu_stats *out)
{
	struct hv_vcpu *v;

	if (idx >= vm->ncpus)
		return -EINVAL;
	v = &vm->vcpus[idx];
	out->state = (enum hv_vcpu_state)atomic_load(&v->state);
	out->exits = atomic_load(&v->exits);
	out->io_exits = atomic_load(&v->io_exits);
	out->mmio_exits = atomic_load(&v->mmio_exits);
	out->kicks = atomic_load(&v->kicks);
	return 0;
}

int hv_vcpu_brief(struct hv_vm *vm, uint32_t idx, struct hv_vcpu_brief *out)
{
	enum hv_run_state s = hv_vm_run_state(vm);

	if (idx >= vm->ncpus)
		return -EINVAL;
	if (s == HV_S_RUNNING)
		return -EBUSY;
	return vcpu_get_brief(&vm->vcpus[idx], out);
}
