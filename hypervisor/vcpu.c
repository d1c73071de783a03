/*
 * vCPU threads: KVM_RUN, exit dispatch, and the kick that takes a vCPU out of
 * KVM_RUN for a pause (SIGUSR1, whose handler sets immediate_exit).
 */
#define LOG_TAG "vcpu"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define HV_KICK_SIGNAL SIGUSR1

/* The running vCPU's kvm_run, for the kick handler. */
static __thread struct kvm_run *tls_run;

static void kick_handler(int sig)
{
	struct kvm_run *run = tls_run;

	if (run)
		run->immediate_exit = 1;
}

int vcpu_signal_setup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(HV_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct hv_vm *vm, uint32_t idx)
{
	struct hv_vcpu *v = &vm->vcpus[idx];
	void *run;

	v->vm = vm;
	v->idx = idx;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)idx);
	if (v->fd < 0)
		return -errno;
	run = mmap(NULL, (size_t)vm->kvm.vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd,
		   0);
	if (run == MAP_FAILED)
		return -errno;
	v->run = run;
	atomic_store(&v->state, HV_VCPU_S_IDLE);
	return 0;
}

void vcpu_dispose(struct hv_vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->vm->kvm.vcpu_mmap_size);
	v->run = NULL;
	if (v->fd >= 0)
		close(v->fd);
	v->fd = -1;
}

void vcpu_kick(struct hv_vcpu *v)
{
	if (v->thread_started)
		pthread_kill(v->thread, HV_KICK_SIGNAL);
}

static void handle_io(struct hv_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t i;

	atomic_fetch_add_explicit(&v->io_exits, 1, memory_order_relaxed);
	for (i = 0; i < run->io.count; i++) {
		bus_dispatch(&v->vm->pio, v, run->io.port, data, run->io.size,
			     run->io.direction == KVM_EXIT_IO_OUT);
		data += run->io.size;
	}
}

static void handle_mmio(struct hv_vcpu *v)
{
	struct kvm_run *run = v->run;

	atomic_fetch_add_explicit(&v->mmio_exits, 1, memory_order_relaxed);
	if (run->mmio.len > 8)
		return;
	bus_dispatch(&v->vm->mmio, v, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
		     run->mmio.is_write);
}

static void log_failure(struct hv_vcpu *v, const char *what)
{
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		LOG_ERR("vm %s: vcpu %u: %s (rip 0x%llx rsp 0x%llx)", v->vm->name, v->idx, what,
			(unsigned long long)regs.rip, (unsigned long long)regs.rsp);
	else
		LOG_ERR("vm %s: vcpu %u: %s", v->vm->name, v->idx, what);
}

/* Continue or stop, after one exit. */
enum run_next { RUN_CONTINUE, RUN_FAIL };

static enum run_next handle_exit(struct hv_vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return RUN_CONTINUE;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return RUN_CONTINUE;
	case KVM_EXIT_INTR:
		return RUN_CONTINUE;
	case KVM_EXIT_HLT:
		/* only without the in-kernel irqchip; keep the vCPU alive */
		return RUN_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		log_failure(v, "guest shut down (triple fault)");
		return RUN_FAIL;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		log_failure(v, what);
		return RUN_FAIL;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error, suberror %u",
			 run->internal.suberror);
		log_failure(v, what);
		return RUN_FAIL;
	case KVM_EXIT_SYSTEM_EVENT:
		snprintf(what, sizeof(what), "system event %u", run->system_event.type);
		log_failure(v, what);
		return RUN_FAIL;
	default:
		snprintf(what, sizeof(what), "unhandled exit reason %u", run->exit_reason);
		log_failure(v, what);
		return RUN_FAIL;
	}
}

static void *vcpu_thread_main(void *arg)
{
	struct hv_vcpu *v = arg;
	struct hv_vm *vm = v->vm;
	char name[16];
	int r;

	snprintf(name, sizeof(name), "vcpu%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	tls_run = v->run;
	atomic_store(&v->state, HV_VCPU_S_RUNNING);
	for (;;) {
		/*
		 * The pauser sets pause_req before it kicks, and the kick sets
		 * immediate_exit: whether the signal lands before, during or
		 * after KVM_RUN, this check or an immediate EINTR sees it.
		 */
		if (atomic_load(&vm->pause_req) || atomic_load(&vm->stop_req)) {
			if (atomic_load(&vm->stop_req))
				break;
			vm_vcpu_park(vm, v);
			continue;
		}
		r = ioctl(v->fd, KVM_RUN, 0);
		atomic_fetch_add_explicit(&v->exits, 1, memory_order_relaxed);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				atomic_fetch_add_explicit(&v->kicks, 1, memory_order_relaxed);
				continue;
			}
			LOG_ERRNO(-errno, "vm %s: vcpu %u: KVM_RUN", vm->name, v->idx);
			atomic_store(&v->state, HV_VCPU_S_FAILED);
			goto out;
		}
		if (handle_exit(v) == RUN_FAIL) {
			atomic_store(&v->state, HV_VCPU_S_FAILED);
			goto out;
		}
	}
	atomic_store(&v->state, HV_VCPU_S_STOPPED);
out:
	tls_run = NULL;
	vm_vcpu_exited(vm, v);
	return NULL;
}

int vcpu_start_thread(struct hv_vcpu *v)
{
	sigset_t set, old;
	int r;

	/* the new thread inherits this mask: make sure the kick is deliverable */
	sigemptyset(&set);
	sigaddset(&set, HV_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, &old);
	r = pthread_create(&v->thread, NULL, vcpu_thread_main, v);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	v->thread_started = true;
	return 0;
}

int vcpu_get_brief(struct hv_vcpu *v, struct hv_vcpu_brief *out)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	out->rip = regs.rip;
	out->rsp = regs.rsp;
	out->rflags = regs.rflags;
	out->cr3 = sregs.cr3;
	out->cpl = sregs.cs.dpl;
	out->long_mode = (sregs.efer & (1u << 10)) != 0; /* EFER.LMA */
	return 0;
}
