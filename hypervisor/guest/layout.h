/*
 * The test guest's private layout constants, shared by entry.S and the C code
 * (so: #defines only, no C). Values that abi.h also defines are repeated here
 * for the assembler and pinned against abi.h by _Static_assert in header.c.
 *
 * The rw area (the only image bytes written once the workload runs):
 *   rw_gpa + 0                 struct tg_vcpu_state, one page per vCPU (TGL_MAX_CPUS)
 *   + TGL_STATE_BYTES          the system page: GDT, then one TSS per vCPU
 *   + TGL_STATE_BYTES + 4096   per vCPU i, TGL_STACK_STRIDE bytes at i * TGL_STACK_STRIDE:
 *                              ring-0 stack (TGL_R0_STACK), then ring-3 stack (TGL_R3_STACK)
 *   + TGL_DEV_OFFSET           the device area, TGL_DEV_BYTES: struct tg_dev (dev.h),
 *                              virtqueues, packet and disk buffers, driver and TCP state
 */
#ifndef CASTOR_TG_LAYOUT_H
#define CASTOR_TG_LAYOUT_H

/* Copies of abi.h values, for entry.S. */
#define TGL_MAX_CPUS	   8
#define TGL_MMIO_FAULT	   0xfe00000c /* TG_MMIO_BASE + TG_REG_FAULT */
#define TGL_BOOT_MULTIBOOT 1
#define TGL_PAGE_SIZE	   4096

#define TGL_STATE_BYTES	 (TGL_MAX_CPUS * TGL_PAGE_SIZE)
#define TGL_R0_STACK	 8192
#define TGL_R3_STACK	 16384
#define TGL_STACK_STRIDE (TGL_R0_STACK + TGL_R3_STACK)
#define TGL_DEV_OFFSET	 (TGL_STATE_BYTES + TGL_PAGE_SIZE + TGL_MAX_CPUS * TGL_STACK_STRIDE)
#define TGL_DEV_BYTES	 0x50000 /* >= sizeof(struct tg_dev), checked in dev.c */

/* GDT selectors. */
#define TGL_SEL_KCODE 0x08
#define TGL_SEL_KDATA 0x10
#define TGL_SEL_UDATA 0x1b /* descriptor 0x18, RPL 3 */
#define TGL_SEL_UCODE 0x23 /* descriptor 0x20, RPL 3 */
#define TGL_SEL_TSS0  0x28 /* vCPU i's TSS: TGL_SEL_TSS0 + 16 * i */
#define TGL_GDT_BYTES (TGL_SEL_TSS0 + 16 * TGL_MAX_CPUS)

/* 64-bit TSS: 104 bytes; each vCPU's sits in a 128-byte slot after the GDT. */
#define TGL_TSS_OFFSET 256 /* from the start of the system page */
#define TGL_TSS_STRIDE 128
#define TGL_TSS_SIZE   104

/* Exceptions 0-31 only: the guest never enables interrupts. */
#define TGL_IDT_ENTRIES 32

/*
 * Guest-detected errors reported on TG_REG_FAULT. CPU exceptions report
 * vector | cpl << 8 (at most 0x3ff); these are 0xff00 | reason.
 */
#define TGL_FAULT_BAD_PARAMS 0xff01 /* tg_params magic, version or values */
#define TGL_FAULT_BAD_CPU    0xff02 /* vCPU index >= TG_MAX_CPUS */
#define TGL_FAULT_BAD_BOOT   0xff03 /* bad multiboot magic or info, unknown boot kind */
#define TGL_FAULT_DEVICE     0xff04 /* a virtio device named in the params did not come up */

#endif
