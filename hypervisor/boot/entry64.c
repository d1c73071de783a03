/*
 * 64-bit direct entry: identity page tables over all guest-physical space
 * (2 MiB pages, user-accessible so a ring-3 guest can use them), a flat GDT,
 * and each vCPU's registers, CPUID and run state. Boot-time layout:
 *   0x4000            GDT (null, 0x08 code64, 0x10 data)
 *   0x8000..0x10000   boot stacks, one page per vCPU
 *   0x10000           PML4, then PDPT, then one PD per GiB
 */
#define LOG_TAG "boot"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define BOOT_GDT_GPA	0x3000ull
#define BOOT_STACKS_TOP 0x10000ull
#define BOOT_PML4_GPA	0x10000ull
#define BOOT_PT_END	0xa0000ull

#define PTE_P  0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_A  0x20ull
#define PTE_D  0x40ull
#define PTE_PS 0x80ull
/* A and D preset: the CPU never writes the tables, so they never show up dirty */
#define PTE_TABLE   (PTE_P | PTE_RW | PTE_US | PTE_A)
#define PTE_LEAF_2M (PTE_TABLE | PTE_D | PTE_PS)

#define CR0_PE	       0x1ull
#define CR0_MP	       0x2ull
#define CR0_ET	       0x10ull
#define CR0_NE	       0x20ull
#define CR0_WP	       0x10000ull
#define CR0_PG	       0x80000000ull
#define CR4_PAE	       0x20ull
#define CR4_OSFXSR     0x200ull
#define CR4_OSXMMEXCPT 0x400ull
#define EFER_LME       0x100ull
#define EFER_LMA       0x400ull

static uint64_t max_gpa(struct hv_vm *vm)
{
	uint64_t size = vm->mem.size;

	return size <= HV_HOLE_START ? size : HV_HOLE_END + size - HV_HOLE_START;
}

int boot_build_page_tables(struct hv_vm *vm)
{
	uint64_t top = max_gpa(vm), gib, i, e;
	uint64_t pdpt = BOOT_PML4_GPA + HV_PAGE_SIZE;
	uint64_t pd0 = pdpt + HV_PAGE_SIZE;
	int rc;

	if (top < HV_HOLE_END)
		top = HV_HOLE_END; /* map the MMIO hole too */
	gib = (top + (1ull << 30) - 1) >> 30;
	if (gib > 512 || pd0 + gib * HV_PAGE_SIZE > BOOT_PT_END) {
		LOG_ERR("vm %s: %llu GiB of guest-physical space do not fit the boot page tables",
			vm->name, (unsigned long long)gib);
		return -E2BIG;
	}
	e = pdpt | PTE_TABLE;
	rc = hv_mem_write(vm, BOOT_PML4_GPA, &e, sizeof(e));
	for (i = 0; !rc && i < gib; i++) {
		uint64_t pd[512], j;

		e = (pd0 + i * HV_PAGE_SIZE) | PTE_TABLE;
		rc = hv_mem_write(vm, pdpt + i * 8, &e, sizeof(e));
		for (j = 0; j < 512; j++)
			pd[j] = ((i << 30) + (j << 21)) | PTE_LEAF_2M;
		if (!rc)
			rc = hv_mem_write(vm, pd0 + i * HV_PAGE_SIZE, pd, sizeof(pd));
	}
	if (!rc) {
		const uint64_t gdt[3] = {0, 0x00af9a000000ffffull, 0x00cf92000000ffffull};

		rc = hv_mem_write(vm, BOOT_GDT_GPA, gdt, sizeof(gdt));
	}
	return rc;
}

int boot_vcpu_cpuid(struct hv_vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->vm->kvm.cpuid;
	struct kvm_cpuid2 *c;
	uint32_t i;
	int rc = 0;

	c = malloc(sizeof(*c) + sup->nent * sizeof(sup->entries[0]));
	if (!c)
		return -ENOMEM;
	memcpy(c, sup, sizeof(*c) + sup->nent * sizeof(sup->entries[0]));
	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffffu) | (v->idx << 24); /* initial APIC id */
			if (v->vm->kvm.ring0_emulated)
				e->ecx &= ~(1u << 13); /* CX16: kvm_pvm cannot emulate it */
			e->ecx |= 1u << 31;	       /* running under a hypervisor */
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->idx; /* x2APIC id */
			break;
		default:
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		rc = -errno;
	free(c);
	return rc;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = code64 ? 0 : 1;
	s->s = 1;
	s->l = code64 ? 1 : 0;
	s->g = 1;
}

int boot_vcpu_enter(struct hv_vcpu *v, const struct boot_entry *e)
{
	struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	seg_flat(&sregs.cs, e->cs, 0xb, !e->protected32);
	seg_flat(&sregs.ds, e->ds, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.limit = 0x67;
	sregs.tr.type = 0xb; /* busy TSS: 64-bit in long mode, 32-bit in protected mode */
	sregs.tr.present = 1;
	memset(&sregs.ldt, 0, sizeof(sregs.ldt));
	sregs.ldt.type = 0x2;
	sregs.ldt.unusable = 1;
	sregs.gdt.base = BOOT_GDT_GPA;
	sregs.gdt.limit = e->gdt_limit;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	if (e->protected32) {
		/* PVH: flat 32-bit protected mode, paging off (xen/arch-x86/hvm/start_info.h) */
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	} else {
		sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
		sregs.cr3 = BOOT_PML4_GPA;
		sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
		sregs.efer = EFER_LME | EFER_LMA;
	}
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 0x2;
	regs.rip = e->rip;
	regs.rdi = e->rdi;
	regs.rsi = e->rsi;
	regs.rdx = e->rdx;
	regs.rbx = e->rbx;
	regs.rsp = BOOT_STACKS_TOP - (uint64_t)v->idx * HV_PAGE_SIZE;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	/* with the in-kernel irqchip, APs wait for INIT/SIPI unless told otherwise */
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return 0;
}

int boot_vcpu_entry64(struct hv_vcpu *v, uint64_t rip, uint64_t rdi, uint64_t rsi, uint64_t rdx)
{
	const struct boot_entry e = {.cs = 0x08,
				     .ds = 0x10,
				     .gdt_limit = 3 * 8 - 1,
				     .rip = rip,
				     .rdi = rdi,
				     .rsi = rsi,
				     .rdx = rdx};

	return boot_vcpu_enter(v, &e);
}

int boot_vcpu_tsc_khz(struct hv_vcpu *v, uint32_t *khz_out)
{
	int r = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);

	if (r <= 0)
		return r < 0 ? -errno : -ENOTSUP;
	*khz_out = (uint32_t)r;
	return 0;
}
