/*
 * vCPU and VM-wide state: save to stream records, load from them. The VM must
 * be paused (or not yet started). The set of MSRs is every one KVM lists that
 * it also lets us read and write back, probed once when the VM is created.
 */
#define LOG_TAG "state"
#include "hypervisor/hv_int.h"
#include "hypervisor/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_ARCH_CAPABILITIES 0x10a /* not settable under kvm_pvm; a feature MSR anyway */

static int msr_one(int fd, unsigned long req, uint32_t index, uint64_t *value)
{
	/* struct kvm_msrs ends in a flexible array: lay out header and one entry by hand */
	uint64_t buf[(sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)) / 8 + 1] = {0};
	struct kvm_msrs *m = (struct kvm_msrs *)buf;
	int r;

	m->nmsrs = 1;
	m->entries[0].index = index;
	m->entries[0].data = *value;
	r = ioctl(fd, req, m);
	if (r != 1)
		return -EIO;
	*value = m->entries[0].data;
	return 0;
}

int state_probe_msrs(struct hv_vm *vm)
{
	struct kvm_msr_list *list = NULL;
	uint32_t n = 256, i;
	int fd = vm->vcpus[0].fd, rc = 0;

	for (;;) {
		list = calloc(1, sizeof(*list) + n * sizeof(uint32_t));
		if (!list)
			return -ENOMEM;
		list->nmsrs = n;
		if (ioctl(vm->kvm.fd, KVM_GET_MSR_INDEX_LIST, list) == 0)
			break;
		rc = -errno;
		n = list->nmsrs;
		free(list);
		list = NULL;
		if (rc != -E2BIG || n > 4 * HV_MSRS_MAX)
			return rc;
	}
	vm->msrs = calloc(list->nmsrs ? list->nmsrs : 1, sizeof(uint32_t));
	if (!vm->msrs) {
		free(list);
		return -ENOMEM;
	}
	vm->nmsrs = 0;
	for (i = 0; i < list->nmsrs && vm->nmsrs < HV_MSRS_MAX; i++) {
		uint64_t v = 0;

		if (list->indices[i] == MSR_ARCH_CAPABILITIES)
			continue;
		/* before the guest runs, so writing the value back disturbs nothing */
		if (msr_one(fd, KVM_GET_MSRS, list->indices[i], &v) < 0 ||
		    msr_one(fd, KVM_SET_MSRS, list->indices[i], &v) < 0)
			continue;
		vm->msrs[vm->nmsrs++] = list->indices[i];
	}
	LOG_DBG("vm %s: %u of %u listed MSRs are saved", vm->name, vm->nmsrs, list->nmsrs);
	free(list);
	return 0;
}

int state_save_vcpu(struct hv_vcpu *v, struct hv_stream_writer *w)
{
	struct hv_vm *vm = v->vm;
	struct hv_vcpu_rec *rec = calloc(1, sizeof(*rec));
	struct kvm_msrs *msrs = NULL;
	struct hv_msr_entry *out = NULL;
	uint32_t hdr[2], i;
	int rc = 0;

	msrs = calloc(1, sizeof(*msrs) + vm->nmsrs * sizeof(struct kvm_msr_entry));
	out = calloc(vm->nmsrs ? vm->nmsrs : 1, sizeof(*out));
	if (!rec || !msrs || !out) {
		rc = -ENOMEM;
		goto out;
	}
	rec->index = v->idx;
	if (ioctl(v->fd, KVM_GET_REGS, &rec->regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &rec->sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_XSAVE, rec->xsave) < 0 ||
	    ioctl(v->fd, KVM_GET_XCRS, &rec->xcrs) < 0 ||
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &rec->debugregs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &rec->lapic) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &rec->events) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &rec->mp) < 0) {
		rc = -errno;
		LOG_ERRNO(rc, "vm %s: vcpu %u: reading state", vm->name, v->idx);
		goto out;
	}
	msrs->nmsrs = vm->nmsrs;
	for (i = 0; i < vm->nmsrs; i++)
		msrs->entries[i].index = vm->msrs[i];
	if (ioctl(v->fd, KVM_GET_MSRS, msrs) != (int)vm->nmsrs) {
		rc = -EIO;
		LOG_ERR("vm %s: vcpu %u: reading MSRs", vm->name, v->idx);
		goto out;
	}
	for (i = 0; i < vm->nmsrs; i++)
		out[i] = (struct hv_msr_entry){.index = msrs->entries[i].index,
					       .value = msrs->entries[i].data};
	{
		struct iovec iov[2] = {{rec, sizeof(*rec)}};

		rc = hv_stream_write(w, HV_REC_VCPU, iov, 1);
		hdr[0] = v->idx;
		hdr[1] = vm->nmsrs;
		iov[0] = (struct iovec){hdr, sizeof(hdr)};
		iov[1] = (struct iovec){out, vm->nmsrs * sizeof(*out)};
		if (!rc)
			rc = hv_stream_write(w, HV_REC_VCPU_MSRS, iov, 2);
	}
out:
	free(rec);
	free(msrs);
	free(out);
	return rc;
}

/* The order QEMU uses: registers, FPU, sregs, MSRs, run state, LAPIC, events, debug. */
int state_load_vcpu(struct hv_vcpu *v, const struct hv_vcpu_rec *rec, const uint8_t *msr_body,
		    uint32_t msr_len)
{
	uint32_t hdr[2], i;
	struct kvm_msrs *msrs;
	int rc = 0;

	if (msr_len < 8)
		return -EBADMSG;
	memcpy(hdr, msr_body, 8);
	if (hdr[0] != v->idx || hdr[1] > HV_MSRS_MAX || msr_len != 8 + 16ull * hdr[1])
		return -EBADMSG;
	if (ioctl(v->fd, KVM_SET_REGS, &rec->regs) < 0 ||
	    ioctl(v->fd, KVM_SET_XSAVE, rec->xsave) < 0 ||
	    ioctl(v->fd, KVM_SET_XCRS, &rec->xcrs) < 0 ||
	    ioctl(v->fd, KVM_SET_SREGS, &rec->sregs) < 0) {
		rc = -errno;
		LOG_ERRNO(rc, "vm %s: vcpu %u: setting registers", v->vm->name, v->idx);
		return rc;
	}
	msrs = calloc(1, sizeof(*msrs) + hdr[1] * sizeof(struct kvm_msr_entry));
	if (!msrs)
		return -ENOMEM;
	msrs->nmsrs = hdr[1];
	for (i = 0; i < hdr[1]; i++) {
		struct hv_msr_entry e;

		memcpy(&e, msr_body + 8 + 16ull * i, sizeof(e));
		if (e.reserved) {
			free(msrs);
			return -EBADMSG;
		}
		msrs->entries[i].index = e.index;
		msrs->entries[i].data = e.value;
	}
	if (ioctl(v->fd, KVM_SET_MSRS, msrs) != (int)hdr[1]) {
		LOG_ERR("vm %s: vcpu %u: KVM refused MSR #%d of %u", v->vm->name, v->idx,
			ioctl(v->fd, KVM_SET_MSRS, msrs), hdr[1]);
		free(msrs);
		return -EIO;
	}
	free(msrs);
	if (ioctl(v->fd, KVM_SET_MP_STATE, &rec->mp) < 0 ||
	    ioctl(v->fd, KVM_SET_LAPIC, &rec->lapic) < 0 ||
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &rec->events) < 0 ||
	    ioctl(v->fd, KVM_SET_DEBUGREGS, &rec->debugregs) < 0) {
		rc = -errno;
		LOG_ERRNO(rc, "vm %s: vcpu %u: setting run state", v->vm->name, v->idx);
	}
	return rc;
}

int state_save_vm(struct hv_vm *vm, struct hv_stream_writer *w)
{
	struct kvm_irqchip chips[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct iovec iov;
	int i, rc;

	memset(chips, 0, sizeof(chips));
	for (i = 0; i < 3; i++) {
		chips[i].chip_id = (uint32_t)i;
		if (ioctl(vm->fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
			return -errno;
	}
	memset(&pit, 0, sizeof(pit));
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->fd, KVM_GET_PIT2, &pit) < 0 || ioctl(vm->fd, KVM_GET_CLOCK, &clock) < 0)
		return -errno;
	iov = (struct iovec){chips, sizeof(chips)};
	rc = hv_stream_write(w, HV_REC_IRQCHIP, &iov, 1);
	iov = (struct iovec){&pit, sizeof(pit)};
	if (!rc)
		rc = hv_stream_write(w, HV_REC_PIT, &iov, 1);
	iov = (struct iovec){&clock, sizeof(clock)};
	if (!rc)
		rc = hv_stream_write(w, HV_REC_CLOCK, &iov, 1);
	return rc;
}

int state_load_irqchip(struct hv_vm *vm, const uint8_t *body)
{
	struct kvm_irqchip chips[3];
	int i;

	memcpy(chips, body, sizeof(chips));
	for (i = 0; i < 3; i++) {
		if (chips[i].chip_id != (uint32_t)i)
			return -EBADMSG;
		if (ioctl(vm->fd, KVM_SET_IRQCHIP, &chips[i]) < 0)
			return -errno;
	}
	return 0;
}

int state_load_pit(struct hv_vm *vm, const uint8_t *body)
{
	struct kvm_pit_state2 pit;

	memcpy(&pit, body, sizeof(pit));
	return ioctl(vm->fd, KVM_SET_PIT2, &pit) < 0 ? -errno : 0;
}

int state_load_clock(struct hv_vm *vm, const uint8_t *body)
{
	struct kvm_clock_data clock, set;

	memcpy(&clock, body, sizeof(clock));
	memset(&set, 0, sizeof(set));
	set.clock = clock.clock; /* the guest's kvmclock continues from here */
	return ioctl(vm->fd, KVM_SET_CLOCK, &set) < 0 ? -errno : 0;
}

int hv_vm_ioapic_irr(struct hv_vm *vm, uint32_t *irr_out)
{
	struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};

	if (hv_vm_run_state(vm) == HV_S_RUNNING)
		return -EBUSY;
	if (ioctl(vm->fd, KVM_GET_IRQCHIP, &chip) < 0)
		return -errno;
	*irr_out = chip.chip.ioapic.irr;
	return 0;
}
