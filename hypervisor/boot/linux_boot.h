/*
 * linux_boot.h: the pieces of a Linux boot that need no VM -- recognising a
 * kernel image (kernel.c), planning where everything goes in guest-physical
 * memory (layout.c), and filling the structures the kernel reads first: the
 * e820 map, boot_params (the "zero page") and the PVH start_info (zeropage.c).
 * Internal to castor_hv; linux.c puts it all into a VM, and the unit tests and
 * the fuzzer call these functions directly.
 *
 * Guest-physical layout of a Linux guest (below 1 MiB; see docs/guests.md):
 *   0x3000  GDT             0x4000  command line (up to 4 KiB)
 *   0x6000  PVH start_info  0x7000  boot_params
 *   0x8000..0x10000 boot stacks     0x10000.. boot page tables (entry64.c)
 *   0xe0000..0x100000 ACPI tables (reserved in the e820 map)
 *   0x100000 the kernel; the initrd as high as the kernel allows, below 3 GiB
 */
#ifndef CASTOR_HV_LINUX_BOOT_H
#define CASTOR_HV_LINUX_BOOT_H

#include <asm/bootparam.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOOT_LINUX_GDT_GPA	  0x3000ull
#define BOOT_LINUX_CMDLINE_GPA	  0x4000ull
#define BOOT_LINUX_CMDLINE_MAX	  4096u /* with the NUL */
#define BOOT_LINUX_START_INFO_GPA 0x6000ull
#define BOOT_LINUX_PARAMS_GPA	  0x7000ull
#define BOOT_LINUX_ACPI_GPA	  0xe0000ull
#define BOOT_LINUX_ACPI_LEN	  0x20000u
#define BOOT_LINUX_EBDA_GPA	  0x9fc00ull
#define BOOT_LINUX_KERNEL_GPA	  0x100000ull

/* GDT of a Linux boot: the 64-bit protocol wants CS 0x10 and DS 0x18; PVH runs on 0x20. */
#define BOOT_LINUX_CS64 0x10u
#define BOOT_LINUX_DS	0x18u
#define BOOT_LINUX_CS32 0x20u

#define BOOT_E820_RAM	   1u
#define BOOT_E820_RESERVED 2u
#define BOOT_E820_MAX	   8u

/* ---- kernel images (kernel.c) ---------------------------------------------------------- */

enum boot_kernel_kind { BOOT_K_BZIMAGE = 1, BOOT_K_ELF };
const char *boot_kernel_kind_str(enum boot_kernel_kind k);

#define BOOT_MAX_SEGMENTS 16u

struct boot_segment {
	uint64_t file_off, filesz; /* bytes taken from the image */
	uint64_t gpa, memsz;	   /* where they go; memsz - filesz zero bytes follow */
};

struct boot_kernel {
	enum boot_kernel_kind kind;
	/*
	 * What is copied into guest RAM. A bzImage is one segment (the
	 * protected-mode kernel after its setup sectors, at 1 MiB); a vmlinux is
	 * its PT_LOAD segments at their physical addresses.
	 */
	struct boot_segment seg[BOOT_MAX_SEGMENTS];
	unsigned nseg;
	/* [lo, hi): what the kernel occupies once running (a bzImage's init_size included). */
	uint64_t lo, hi;
	/* 64-bit entry with boot_params in %rsi; 0 when there is none (PVH only) */
	uint64_t entry64;
	/* 32-bit PVH entry with start_info in %ebx (XEN_ELFNOTE_PHYS32_ENTRY); 0 = no note */
	uint64_t pvh_entry;
	uint16_t protocol;	  /* bzImage boot protocol (0x020f = 2.15); 0 for ELF */
	uint32_t cmdline_max;	  /* longest command line, NUL excluded */
	uint64_t initrd_addr_max; /* highest address an initrd byte may have */
	/* a bzImage's setup header as the file has it: boot_params.hdr starts from it */
	struct setup_header hdr;
	size_t hdr_len; /* bytes of hdr that came from the file */
};

/*
 * Recognise a bzImage (setup header: boot flag, "HdrS", protocol >= 2.12,
 * XLF_KERNEL_64) or an ELF64 x86-64 vmlinux (PT_LOAD segments, the PVH note).
 * Every offset and length is checked against `len`. 0, or -EINVAL / -ENOEXEC /
 * -ENOTSUP with `why` naming the problem.
 */
int boot_kernel_parse(const uint8_t *img, size_t len, struct boot_kernel *out, char *why,
		      size_t why_len);

/* ---- where things go (layout.c) --------------------------------------------------------- */

struct boot_plan {
	uint64_t lowmem_end; /* end of the RAM below the 3 GiB hole */
	uint64_t initrd_gpa, initrd_size;
	size_t cmdline_len; /* NUL excluded */
	bool pvh;	    /* enter through the PVH note, else the 64-bit entry */
};

/*
 * Check that the kernel, an initrd of `initrd_size` bytes (0 = none) and a
 * command line of `cmdline_len` bytes fit a guest of `mem_bytes`, and place
 * the initrd. 0, or -E2BIG / -ENOMEM / -EINVAL with `why`.
 */
int boot_linux_plan(const struct boot_kernel *k, uint64_t mem_bytes, uint64_t initrd_size,
		    size_t cmdline_len, struct boot_plan *out, char *why, size_t why_len);

/* ---- the structures the kernel reads (zeropage.c) --------------------------------------- */

struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
};

/* The guest's memory map: RAM, the reserved EBDA and ACPI area, RAM above 4 GiB. */
unsigned boot_e820_build(uint64_t mem_bytes, struct boot_e820 *e, unsigned max);

/* boot_params for the 64-bit entry. */
void boot_params_build(struct boot_params *bp, const struct boot_kernel *k,
		       const struct boot_plan *p, uint64_t mem_bytes, uint64_t rsdp_gpa);

/*
 * PVH: hvm_start_info, its memory map and the initrd's module entry, all in
 * one page at BOOT_LINUX_START_INFO_GPA. `page` is BOOT_PVH_PAGE bytes.
 */
#define BOOT_PVH_PAGE 4096u
void boot_pvh_build(uint8_t *page, const struct boot_plan *p, uint64_t mem_bytes,
		    uint64_t rsdp_gpa);

/* The PVH ABI (Xen's public arch-x86/hvm/start_info.h), as the guest reads it. */
#define BOOT_PVH_MAGIC 0x336ec578u
struct boot_pvh_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct boot_pvh_module {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
struct boot_pvh_memmap {
	uint64_t addr, size;
	uint32_t type, reserved;
};
_Static_assert(sizeof(struct boot_pvh_start_info) == 56, "hvm_start_info v1 is 56 bytes");
_Static_assert(sizeof(struct boot_pvh_module) == 32, "hvm_modlist_entry is 32 bytes");
_Static_assert(sizeof(struct boot_pvh_memmap) == 24, "hvm_memmap_table_entry is 24 bytes");

/* Offsets inside the start_info page. */
#define BOOT_PVH_MODLIST_OFF 0x40u
#define BOOT_PVH_MEMMAP_OFF  0x80u

#endif
