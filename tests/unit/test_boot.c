/*
 * A Linux boot without a VM: recognising kernels (bzImage and ELF vmlinux,
 * built here byte by byte from the boot protocol and the ELF spec), the e820
 * map for many memory sizes, initrd placement and its refusals, and the
 * boot_params and PVH start_info the kernel reads first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/boot/linux_boot.h"
#include "tests/unit/kernel_images.h"
#include "hypervisor/hv.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void bzimage_accepted(void **state)
{
	uint8_t *b = bzimage(0x020f, XLF_KERNEL_64);
	struct boot_kernel k;
	char why[256];

	(void)state;
	assert_int_equal(boot_kernel_parse(b, BZ_LEN, &k, why, sizeof(why)), 0);
	assert_int_equal(k.kind, BOOT_K_BZIMAGE);
	assert_int_equal(k.protocol, 0x020f);
	assert_int_equal(k.nseg, 1);
	assert_int_equal(k.seg[0].file_off, (BZ_SECTS + 1) * 512);
	assert_int_equal(k.seg[0].filesz, BZ_LEN - (BZ_SECTS + 1) * 512);
	assert_int_equal(k.seg[0].gpa, 0x100000);
	assert_int_equal(k.entry64, 0x100200);
	assert_int_equal(k.pvh_entry, 0);
	/* unpacked at pref_address: init_size bytes from there */
	assert_int_equal(k.lo, 0x100000);
	assert_int_equal(k.hi, 0x1000000 + 20 * MiB);
	assert_int_equal(k.cmdline_max, 2047);
	assert_int_equal(k.initrd_addr_max, 0x7fffffff);
	free(b);
}

static void expect_refused(const uint8_t *img, size_t len, int rc, const char *words)
{
	struct boot_kernel k;
	char why[256] = "";

	assert_int_equal(boot_kernel_parse(img, len, &k, why, sizeof(why)), rc);
	if (!strstr(why, words))
		fail_msg("expected '%s' in: %s", words, why);
}

static void bzimage_refused(void **state)
{
	uint8_t *b;

	(void)state;
	b = bzimage(0x020b, XLF_KERNEL_64);
	expect_refused(b, BZ_LEN, -ENOTSUP, "older than 2.12");
	free(b);

	b = bzimage(0x020f, 0);
	expect_refused(b, BZ_LEN, -ENOTSUP, "XLF_KERNEL_64");
	free(b);

	b = bzimage(0x020f, XLF_KERNEL_64);
	b[0x211] = 0;
	expect_refused(b, BZ_LEN, -ENOTSUP, "zImage");
	/* cut after the setup sectors, then in the middle of the kernel */
	b[0x211] = LOADED_HIGH;
	expect_refused(b, (BZ_SECTS + 1) * 512, -EINVAL, "truncated");
	expect_refused(b, BZ_LEN / 2, -EINVAL, "truncated");
	/* cut inside the setup header */
	expect_refused(b, 0x240, -EINVAL, "truncated");
	/* a boot sector that is not Linux */
	kimg_put32(b + 0x202, 0x12345678);
	expect_refused(b, BZ_LEN, -ENOEXEC, "not a bzImage");
	free(b);
}

static Elf64_Phdr *phdr(uint8_t *b, unsigned i)
{
	return (Elf64_Phdr *)(b + sizeof(Elf64_Ehdr)) + i;
}

static void elf_accepted(void **state)
{
	uint8_t *b = vmlinux(true);
	struct boot_kernel k;
	char why[256];

	(void)state;
	assert_int_equal(boot_kernel_parse(b, ELF_LEN, &k, why, sizeof(why)), 0);
	assert_int_equal(k.kind, BOOT_K_ELF);
	assert_int_equal(k.nseg, 1);
	assert_int_equal(k.seg[0].gpa, ELF_PADDR);
	assert_int_equal(k.seg[0].file_off, ELF_LOAD_AT);
	assert_int_equal(k.seg[0].memsz, 0x300000);
	assert_int_equal(k.pvh_entry, ELF_PADDR + 0x100);
	assert_int_equal(k.entry64, ELF_PADDR + 0x40);
	assert_int_equal(k.lo, ELF_PADDR);
	assert_int_equal(k.hi, ELF_PADDR + 0x300000);
	free(b);

	/* without the note: the 64-bit entry only */
	b = vmlinux(false);
	assert_int_equal(boot_kernel_parse(b, ELF_LEN, &k, why, sizeof(why)), 0);
	assert_int_equal(k.pvh_entry, 0);
	assert_int_equal(k.entry64, ELF_PADDR + 0x40);
	free(b);
}

static void elf_refused(void **state)
{
	uint8_t *b;

	(void)state;
	b = vmlinux(true);
	expect_refused(b, ELF_LOAD_AT + 0x800, -EINVAL, "truncated");
	expect_refused(b, 40, -EINVAL, "truncated header");
	b[EI_CLASS] = ELFCLASS32;
	expect_refused(b, ELF_LEN, -ENOEXEC, "32-bit");
	b[EI_CLASS] = ELFCLASS64;
	((Elf64_Ehdr *)b)->e_type = ET_REL;
	expect_refused(b, ELF_LEN, -ENOEXEC, "not an executable");
	((Elf64_Ehdr *)b)->e_type = ET_EXEC;
	((Elf64_Ehdr *)b)->e_machine = EM_AARCH64;
	expect_refused(b, ELF_LEN, -ENOEXEC, "not x86-64");
	((Elf64_Ehdr *)b)->e_machine = EM_X86_64;
	((Elf64_Ehdr *)b)->e_phnum = 1000;
	expect_refused(b, ELF_LEN, -EINVAL, "program headers");
	((Elf64_Ehdr *)b)->e_phnum = 2;
	phdr(b, 0)->p_paddr = 0x8000; /* over the boot structures */
	expect_refused(b, ELF_LEN, -EINVAL, "1 MiB or above");
	phdr(b, 0)->p_paddr = ELF_PADDR;
	phdr(b, 0)->p_filesz = 0x400000; /* more file than memory, and past the end */
	expect_refused(b, ELF_LEN, -EINVAL, "past the end");
	phdr(b, 0)->p_filesz = 0x1000;
	kimg_put32(b + ELF_NOTE_AT + 4, 4000); /* a note larger than its segment */
	expect_refused(b, ELF_LEN, -EINVAL, "runs past its segment");
	kimg_put32(b + ELF_NOTE_AT + 4, 4);
	kimg_put32(b + ELF_NOTE_AT + 16, 0x500000); /* a PVH entry outside the kernel */
	expect_refused(b, ELF_LEN, -EINVAL, "outside the kernel");
	free(b);
}

static void neither(void **state)
{
	uint8_t junk[4096];
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	expect_refused(junk, sizeof(junk), -ENOEXEC, "neither an ELF vmlinux nor a bzImage");
	expect_refused(junk, 0, -ENOEXEC, "neither");
	expect_refused((const uint8_t *)"\x7f"
					"ELF",
		       4, -EINVAL, "truncated header");
}

/* ---- e820 ----------------------------------------------------------------------------------- */

static void e820_sizes(void **state)
{
	const uint64_t sizes[] = {16 * MiB, 64 * MiB,	       1 * GiB, 3 * GiB - 4096,
				  3 * GiB,  3 * GiB + 2 * MiB, 5 * GiB, 64 * GiB};
	unsigned s, i, n;

	(void)state;
	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint64_t mem = sizes[s], ram = 0, high = 0, end = 0;
		struct boot_e820 e[BOOT_E820_MAX];

		n = boot_e820_build(mem, e, BOOT_E820_MAX);
		assert_true(n >= 4);
		for (i = 0; i < n; i++) {
			assert_true(e[i].size > 0);
			assert_true(e[i].addr >= end); /* sorted, no overlap */
			end = e[i].addr + e[i].size;
			if (e[i].type != BOOT_E820_RAM)
				continue;
			ram += e[i].size;
			/* no RAM in the MMIO hole: virtio, IOAPIC, LAPIC live there */
			assert_false(e[i].addr < HV_HOLE_END && end > HV_HOLE_START);
			if (e[i].addr >= HV_HOLE_END)
				high += e[i].size;
		}
		/* every byte of RAM is listed, but for the EBDA-to-1 MiB legacy area */
		assert_int_equal(ram, mem - (0x100000 - 0x9fc00));
		assert_int_equal(high, mem > HV_HOLE_START ? mem - HV_HOLE_START : 0);
		assert_int_equal(n, mem > HV_HOLE_START ? 5 : 4);
		/* the ACPI area is reserved */
		assert_int_equal(e[2].addr, BOOT_LINUX_ACPI_GPA);
		assert_int_equal(e[2].type, BOOT_E820_RESERVED);
	}
}

/* ---- where the initrd goes --------------------------------------------------------------- */

static void initrd_placement(void **state)
{
	uint8_t *b = bzimage(0x020f, XLF_KERNEL_64);
	const uint64_t sizes[] = {128 * MiB, 1 * GiB, 4 * GiB};
	struct boot_kernel k;
	struct boot_plan p;
	char why[256];
	unsigned s;

	(void)state;
	assert_int_equal(boot_kernel_parse(b, BZ_LEN, &k, why, sizeof(why)), 0);
	for (s = 0; s < 3; s++) {
		uint64_t mem = sizes[s], top = mem < HV_HOLE_START ? mem : HV_HOLE_START;
		uint64_t lowmem = top;

		if (top > k.initrd_addr_max + 1)
			top = k.initrd_addr_max + 1;

		assert_int_equal(boot_linux_plan(&k, mem, 10 * MiB + 123, 30, &p, why, sizeof(why)),
				 0);
		assert_int_equal(p.lowmem_end, lowmem);
		assert_int_equal(p.initrd_size, 10 * MiB + 123);
		assert_int_equal(p.initrd_gpa % (2 * MiB), 0);
		assert_true(p.initrd_gpa >= k.hi);
		assert_true(p.initrd_gpa + p.initrd_size <= top);
		assert_true(p.initrd_gpa + p.initrd_size <= k.initrd_addr_max + 1);
		/* as high as it goes: less than one alignment step below the top */
		assert_true(top - (p.initrd_gpa + p.initrd_size) < 2 * MiB);
		assert_false(p.pvh);
	}
	/* an old kernel that reads initrds only below 896 MiB */
	k.initrd_addr_max = 0x37ffffff;
	assert_int_equal(boot_linux_plan(&k, 2 * GiB, 10 * MiB, 0, &p, why, sizeof(why)), 0);
	assert_true(p.initrd_gpa + p.initrd_size <= 0x38000000);
	free(b);
}

static void plan_refused(void **state)
{
	uint8_t *b = bzimage(0x020f, XLF_KERNEL_64);
	struct boot_kernel k;
	struct boot_plan p;
	char why[256];

	(void)state;
	assert_int_equal(boot_kernel_parse(b, BZ_LEN, &k, why, sizeof(why)), 0);
	/* an initrd larger than RAM */
	assert_int_equal(boot_linux_plan(&k, 256 * MiB, 300 * MiB, 0, &p, why, sizeof(why)),
			 -E2BIG);
	assert_non_null(strstr(why, "larger than the guest's RAM"));
	/* smaller than RAM, but not above the kernel */
	assert_int_equal(boot_linux_plan(&k, 64 * MiB, 40 * MiB, 0, &p, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "does not fit"));
	/* the kernel itself does not fit: unpacked it needs 16 + 20 MiB */
	assert_int_equal(boot_linux_plan(&k, 32 * MiB, 0, 0, &p, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "--mem"));
	/* a command line longer than the header's cmdline_size */
	assert_int_equal(boot_linux_plan(&k, 256 * MiB, 0, 2048, &p, why, sizeof(why)), -E2BIG);
	assert_non_null(strstr(why, "at most 2047"));
	assert_int_equal(boot_linux_plan(&k, 256 * MiB, 0, 2047, &p, why, sizeof(why)), 0);
	free(b);
}

/* ---- boot_params and the PVH start_info ------------------------------------------------------ */

static void parse_and_plan(const uint8_t *img, size_t len, uint64_t mem, uint64_t initrd,
			   size_t cmdline_len, struct boot_kernel *k, struct boot_plan *p)
{
	char why[256];

	assert_int_equal(boot_kernel_parse(img, len, k, why, sizeof(why)), 0);
	assert_int_equal(boot_linux_plan(k, mem, initrd, cmdline_len, p, why, sizeof(why)), 0);
}

static void params_bzimage(void **state)
{
	uint8_t *b = bzimage(0x020f, XLF_KERNEL_64);
	struct boot_params *bp = calloc(1, sizeof(*bp));
	struct boot_e820 e[BOOT_E820_MAX];
	struct boot_kernel k;
	struct boot_plan p;
	unsigned i, n;

	(void)state;
	parse_and_plan(b, BZ_LEN, 5 * GiB, 8 * MiB, 12, &k, &p);
	boot_params_build(bp, &k, &p, 5 * GiB, 0xe0000);
	/* the file's header, with what a loader fills in */
	assert_int_equal(bp->hdr.version, 0x020f);
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.init_size, 20 * MiB);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, BOOT_LINUX_CMDLINE_GPA);
	assert_int_equal(bp->ext_cmd_line_ptr, 0);
	assert_int_equal(bp->hdr.ramdisk_image, p.initrd_gpa);
	assert_int_equal(bp->hdr.ramdisk_size, 8 * MiB);
	assert_int_equal(bp->ext_ramdisk_image, 0);
	assert_int_equal(bp->acpi_rsdp_addr, 0xe0000);
	n = boot_e820_build(5 * GiB, e, BOOT_E820_MAX);
	assert_int_equal(bp->e820_entries, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(bp->e820_table[i].addr, e[i].addr);
		assert_int_equal(bp->e820_table[i].size, e[i].size);
		assert_int_equal(bp->e820_table[i].type, e[i].type);
	}
	/* boot_params must not overlap what sits beside it */
	assert_true(BOOT_LINUX_PARAMS_GPA + sizeof(*bp) <= 0x8000);
	free(bp);
	free(b);
}

static void params_vmlinux(void **state)
{
	uint8_t *b = vmlinux(false);
	struct boot_params *bp = calloc(1, sizeof(*bp));
	struct boot_kernel k;
	struct boot_plan p;

	(void)state;
	parse_and_plan(b, ELF_LEN, 256 * MiB, 0, 5, &k, &p);
	assert_false(p.pvh);
	boot_params_build(bp, &k, &p, 256 * MiB, 0xe0000);
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.cmdline_size, 2048);
	assert_int_equal(bp->hdr.ramdisk_size, 0);
	assert_int_equal(bp->e820_entries, 4);
	free(bp);
	free(b);
}

static void pvh_start_info(void **state)
{
	uint8_t *b = vmlinux(true), page[BOOT_PVH_PAGE];
	struct boot_pvh_start_info si;
	struct boot_pvh_module mod;
	struct boot_e820 e[BOOT_E820_MAX];
	struct boot_kernel k;
	struct boot_plan p;
	char why[256];
	unsigned i, n;

	(void)state;
	parse_and_plan(b, ELF_LEN, 4 * GiB, 4 * MiB, 5, &k, &p);
	assert_true(p.pvh);
	boot_pvh_build(page, &p, 4 * GiB, 0xe0040);
	memcpy(&si, page, sizeof(si));
	assert_int_equal(si.magic, BOOT_PVH_MAGIC);
	assert_int_equal(si.version, 1);
	assert_int_equal(si.cmdline_paddr, BOOT_LINUX_CMDLINE_GPA);
	assert_int_equal(si.rsdp_paddr, 0xe0040);
	assert_int_equal(si.nr_modules, 1);
	assert_int_equal(si.modlist_paddr, BOOT_LINUX_START_INFO_GPA + BOOT_PVH_MODLIST_OFF);
	memcpy(&mod, page + BOOT_PVH_MODLIST_OFF, sizeof(mod));
	assert_int_equal(mod.paddr, p.initrd_gpa);
	assert_int_equal(mod.size, 4 * MiB);
	n = boot_e820_build(4 * GiB, e, BOOT_E820_MAX);
	assert_int_equal(si.memmap_entries, n);
	assert_int_equal(si.memmap_paddr, BOOT_LINUX_START_INFO_GPA + BOOT_PVH_MEMMAP_OFF);
	for (i = 0; i < n; i++) {
		struct boot_pvh_memmap m;

		memcpy(&m, page + BOOT_PVH_MEMMAP_OFF + i * sizeof(m), sizeof(m));
		assert_int_equal(m.addr, e[i].addr);
		assert_int_equal(m.size, e[i].size);
		assert_int_equal(m.type, e[i].type);
	}
	/* no initrd: no module */
	assert_int_equal(boot_linux_plan(&k, 4 * GiB, 0, 5, &p, why, sizeof(why)), 0);
	boot_pvh_build(page, &p, 4 * GiB, 0xe0040);
	memcpy(&si, page, sizeof(si));
	assert_int_equal(si.nr_modules, 0);
	assert_int_equal(si.modlist_paddr, 0);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bzimage_accepted), cmocka_unit_test(bzimage_refused),
		cmocka_unit_test(elf_accepted),	    cmocka_unit_test(elf_refused),
		cmocka_unit_test(neither),	    cmocka_unit_test(e820_sizes),
		cmocka_unit_test(initrd_placement), cmocka_unit_test(plan_refused),
		cmocka_unit_test(params_bzimage),   cmocka_unit_test(params_vmlinux),
		cmocka_unit_test(pvh_start_info),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
