/*
 * struct tg_image_header, placed at file offset TG_IMAGE_HDR_OFFSET by
 * guest.ld. castor-vmm reads it to load the flat image and find entry64, the
 * rw area and the vCPU state pages. Written in C so that abi.h, not a copy of
 * it, defines the layout.
 */
#include "hypervisor/guest/tg.h"

/* Symbols of entry.S and guest.ld; only their addresses are used. */
extern char tg_entry64[], __load_start[], __load_end[], __bss_end[], __rw_start[], __rw_bytes[];

_Static_assert(TGL_MAX_CPUS == TG_MAX_CPUS, "layout.h and abi.h disagree");
_Static_assert(TGL_MMIO_FAULT == TG_MMIO_BASE + TG_REG_FAULT, "layout.h and abi.h disagree");
_Static_assert(TGL_BOOT_MULTIBOOT == TG_BOOT_MULTIBOOT, "layout.h and abi.h disagree");
_Static_assert(TGL_PAGE_SIZE == TG_PAGE_SIZE, "layout.h and abi.h disagree");
_Static_assert(TGL_STATE_BYTES >= TG_MAX_CPUS * sizeof(struct tg_vcpu_state), "state pages");
_Static_assert(TGL_GDT_BYTES <= TGL_TSS_OFFSET, "GDT overlaps the TSSs");
_Static_assert(TGL_TSS_OFFSET + TGL_MAX_CPUS * TGL_TSS_STRIDE <= TGL_PAGE_SIZE,
	       "GDT and TSSs must fit the system page");
_Static_assert(TGL_TSS_SIZE <= TGL_TSS_STRIDE, "TSS slot");

__attribute__((section(".tg_image_header"), used)) const struct tg_image_header tg_image_header = {
	.magic = TG_IMAGE_MAGIC,
	.version = TG_IMAGE_VERSION,
	.header_size = sizeof(struct tg_image_header),
	.load_addr = (uint64_t)(uintptr_t)__load_start,
	.entry64 = (uint64_t)(uintptr_t)tg_entry64,
	.load_end = (uint64_t)(uintptr_t)__load_end,
	.bss_end = (uint64_t)(uintptr_t)__bss_end,
	.rw_gpa = (uint64_t)(uintptr_t)__rw_start,
	.rw_bytes = (uint64_t)(uintptr_t)__rw_bytes,
	.state_gpa = (uint64_t)(uintptr_t)tg_vcpu_states,
	.max_cpus = TG_MAX_CPUS,
	.reserved = 0,
};
