/* /dev/kvm: open it, check the API version and every capability Castor needs. */
#define LOG_TAG "kvm"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct kvm_cap_need {
	int cap;
	const char *name;
	const char *why;
};

/* Everything Castor relies on; a missing one is named in the error. */
static const struct kvm_cap_need needed_caps[] = {
	{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM"},
	{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel interrupt controller"},
	{KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel PIT"},
	{KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "TSS address"},
	{KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR", "identity map"},
	{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID setup"},
	{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "pause kick"},
	{KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", "dirty tracking"},
	{KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "device interrupts"},
	{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "device notifications"},
	{KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", "kvmclock state"},
	{KVM_CAP_XSAVE, "KVM_CAP_XSAVE", "FPU state"},
	{KVM_CAP_XCRS, "KVM_CAP_XCRS", "XCR state"},
	{KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS", "debug register state"},
	{KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", "pending event state"},
	{KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "vCPU run state"},
	{KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ", "guest TSC frequency"},
};

static int get_supported_cpuid(struct hv_kvm *kvm)
{
	struct kvm_cpuid2 *c = NULL;
	int nent = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = (uint32_t)nent;
		if (ioctl(kvm->fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return -errno;
		nent *= 2;
	}
	kvm->cpuid = c;
	return 0;
}

int kvm_open(const char *path, struct hv_kvm *kvm, char *why, size_t why_len)
{
	char dummy[8];
	size_t i;
	int r, rc;

	if (!path)
		path = "/dev/kvm";
	if (!why) {
		why = dummy;
		why_len = sizeof(dummy);
	}
	memset(kvm, 0, sizeof(*kvm));
	kvm->fd = open(path, O_RDWR | O_CLOEXEC);
	if (kvm->fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot open %s: %s", path, strerror(errno));
		return rc;
	}
	r = ioctl(kvm->fd, KVM_GET_API_VERSION, 0);
	if (r != KVM_API_VERSION) {
		snprintf(why, why_len, "%s: KVM API version %d, need %d", path, r, KVM_API_VERSION);
		rc = -ENOTSUP;
		goto fail;
	}
	for (i = 0; i < sizeof(needed_caps) / sizeof(needed_caps[0]); i++) {
		r = ioctl(kvm->fd, KVM_CHECK_EXTENSION, needed_caps[i].cap);
		if (r <= 0) {
			snprintf(why, why_len, "%s lacks %s (needed for %s)", path,
				 needed_caps[i].name, needed_caps[i].why);
			rc = -ENOTSUP;
			goto fail;
		}
	}
	r = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (!(r & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) || !(r & KVM_DIRTY_LOG_INITIALLY_SET)) {
		snprintf(why, why_len,
			 "%s: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 lacks the protect/initially-set "
			 "modes (flags 0x%x)",
			 path, r);
		rc = -ENOTSUP;
		goto fail;
	}
	kvm->vcpu_mmap_size = ioctl(kvm->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->vcpu_mmap_size <= 0) {
		snprintf(why, why_len, "%s: KVM_GET_VCPU_MMAP_SIZE failed", path);
		rc = -ENOTSUP;
		goto fail;
	}
	kvm->tsc_deadline = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	kvm->ring0_emulated = access("/sys/module/kvm_intel", F_OK) != 0 &&
			      access("/sys/module/kvm_amd", F_OK) != 0;
	rc = get_supported_cpuid(kvm);
	if (rc < 0) {
		snprintf(why, why_len, "%s: KVM_GET_SUPPORTED_CPUID: %s", path, strerror(-rc));
		goto fail;
	}
	return 0;
fail:
	kvm_close(kvm);
	return rc;
}

void kvm_close(struct hv_kvm *kvm)
{
	if (kvm->fd >= 0)
		close(kvm->fd);
	kvm->fd = -1;
	free(kvm->cpuid);
	kvm->cpuid = NULL;
}

int hv_kvm_probe(const char *path, char *why, size_t why_len)
{
	struct hv_kvm kvm;
	int rc;

	rc = kvm_open(path, &kvm, why, why_len);
	if (rc < 0)
		return rc;
	kvm_close(&kvm);
	return 0;
}
