/*
 * Fixed-layout state records of the stream format (docs/stream-format.md
 * §2.3-2.5), private to hypervisor/. The layouts mirror the spec in order;
 * every offset is pinned so a kernel header change cannot move them silently.
 */
#ifndef CASTOR_HV_STATE_H
#define CASTOR_HV_STATE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

struct hv_vcpu_rec {
	uint32_t index;
	uint32_t reserved;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint8_t xsave[4096]; /* struct kvm_xsave: it ends in a flexible array, so no member */
	struct kvm_xcrs xcrs;
	struct kvm_debugregs debugregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	uint32_t reserved2;
};
_Static_assert(offsetof(struct hv_vcpu_rec, regs) == 8, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, sregs) == 152, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, xsave) == 464, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, xcrs) == 4560, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, debugregs) == 4952, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, lapic) == 5080, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, events) == 6104, "VCPU layout");
_Static_assert(offsetof(struct hv_vcpu_rec, mp) == 6168, "VCPU layout");
_Static_assert(sizeof(struct hv_vcpu_rec) == 6176, "VCPU layout");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "VCPU layout: xsave");
#define HV_VCPU_REC_LEN 6176u

struct hv_msr_entry {
	uint32_t index;
	uint32_t reserved;
	uint64_t value;
};
_Static_assert(sizeof(struct hv_msr_entry) == 16, "VCPU_MSRS layout");
#define HV_MSRS_MAX 1024u

_Static_assert(sizeof(struct kvm_irqchip) == 520, "IRQCHIP layout");
_Static_assert(sizeof(struct kvm_pit_state2) == 112, "PIT layout");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "CLOCK layout");

#endif
