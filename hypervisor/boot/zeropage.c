/*
 * The structures a Linux kernel reads before anything else: the e820 memory
 * map, boot_params (the "zero page", for the 64-bit entry) and the PVH
 * start_info (for the 32-bit PVH entry of a vmlinux). Pure functions over
 * buffers: linux.c writes the results into guest RAM.
 */
#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/hv_vm.h"

#include <string.h>

#define BOOT_LOADER_UNDEFINED 0xff /* type_of_loader: "no assigned id" */
#define BZ_HDR_MAGIC	      0x53726448u
#define ELF_KERNEL_ALIGN      0x1000000u

unsigned boot_e820_build(uint64_t mem_bytes, struct boot_e820 *e, unsigned max)
{
	uint64_t low = mem_bytes < HV_HOLE_START ? mem_bytes : HV_HOLE_START;
	struct boot_e820 all[BOOT_E820_MAX];
	unsigned n = 0, i;

	all[n++] = (struct boot_e820){0, BOOT_LINUX_EBDA_GPA, BOOT_E820_RAM};
	all[n++] = (struct boot_e820){BOOT_LINUX_EBDA_GPA, 0xa0000 - BOOT_LINUX_EBDA_GPA,
				      BOOT_E820_RESERVED};
	/* the ACPI tables live in the old BIOS area, where a scan for the RSDP looks too */
	all[n++] = (struct boot_e820){BOOT_LINUX_ACPI_GPA, BOOT_LINUX_ACPI_LEN, BOOT_E820_RESERVED};
	all[n++] = (struct boot_e820){BOOT_LINUX_KERNEL_GPA, low - BOOT_LINUX_KERNEL_GPA,
				      BOOT_E820_RAM};
	if (mem_bytes > HV_HOLE_START)
		all[n++] =
			(struct boot_e820){HV_HOLE_END, mem_bytes - HV_HOLE_START, BOOT_E820_RAM};
	for (i = 0; i < n && i < max; i++)
		e[i] = all[i];
	return i;
}

void boot_params_build(struct boot_params *bp, const struct boot_kernel *k,
		       const struct boot_plan *p, uint64_t mem_bytes, uint64_t rsdp_gpa)
{
	struct boot_e820 map[BOOT_E820_MAX];
	unsigned n, i;

	memset(bp, 0, sizeof(*bp));
	if (k->kind == BOOT_K_BZIMAGE) {
		memcpy(&bp->hdr, &k->hdr, k->hdr_len);
	} else {
		/* a vmlinux has no setup header: make the one its 64-bit entry reads */
		bp->hdr.boot_flag = 0xaa55;
		bp->hdr.header = BZ_HDR_MAGIC;
		bp->hdr.kernel_alignment = ELF_KERNEL_ALIGN;
		bp->hdr.cmdline_size = k->cmdline_max + 1;
		bp->hdr.loadflags = LOADED_HIGH;
	}
	bp->hdr.type_of_loader = BOOT_LOADER_UNDEFINED;
	bp->hdr.cmd_line_ptr = (uint32_t)BOOT_LINUX_CMDLINE_GPA;
	bp->ext_cmd_line_ptr = (uint32_t)(BOOT_LINUX_CMDLINE_GPA >> 32);
	bp->hdr.ramdisk_image = (uint32_t)p->initrd_gpa;
	bp->hdr.ramdisk_size = (uint32_t)p->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(p->initrd_gpa >> 32);
	bp->ext_ramdisk_size = (uint32_t)(p->initrd_size >> 32);
	bp->acpi_rsdp_addr = rsdp_gpa;

	n = boot_e820_build(mem_bytes, map, BOOT_E820_MAX);
	for (i = 0; i < n; i++) {
		bp->e820_table[i].addr = map[i].addr;
		bp->e820_table[i].size = map[i].size;
		bp->e820_table[i].type = map[i].type;
	}
	bp->e820_entries = (uint8_t)n;
}

void boot_pvh_build(uint8_t *page, const struct boot_plan *p, uint64_t mem_bytes, uint64_t rsdp_gpa)
{
	struct boot_pvh_start_info si = {.magic = BOOT_PVH_MAGIC, .version = 1};
	struct boot_e820 map[BOOT_E820_MAX];
	unsigned n, i;

	_Static_assert(BOOT_PVH_MEMMAP_OFF + BOOT_E820_MAX * sizeof(struct boot_pvh_memmap) <=
			       BOOT_PVH_PAGE,
		       "the PVH memory map fits its page");
	_Static_assert(BOOT_PVH_MODLIST_OFF + sizeof(struct boot_pvh_module) <= BOOT_PVH_MEMMAP_OFF,
		       "the module list sits before the memory map");
	memset(page, 0, BOOT_PVH_PAGE);
	n = boot_e820_build(mem_bytes, map, BOOT_E820_MAX);
	for (i = 0; i < n; i++) {
		struct boot_pvh_memmap m = {
			.addr = map[i].addr, .size = map[i].size, .type = map[i].type};

		memcpy(page + BOOT_PVH_MEMMAP_OFF + i * sizeof(m), &m, sizeof(m));
	}
	si.memmap_paddr = BOOT_LINUX_START_INFO_GPA + BOOT_PVH_MEMMAP_OFF;
	si.memmap_entries = n;
	si.cmdline_paddr = BOOT_LINUX_CMDLINE_GPA;
	si.rsdp_paddr = rsdp_gpa;
	if (p->initrd_size) {
		struct boot_pvh_module mod = {.paddr = p->initrd_gpa, .size = p->initrd_size};

		memcpy(page + BOOT_PVH_MODLIST_OFF, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_LINUX_START_INFO_GPA + BOOT_PVH_MODLIST_OFF;
	}
	memcpy(page, &si, sizeof(si));
}
