/*
 * hv_linux_load() into guest RAM, without KVM: the VM is a struct hv_vm made
 * by hand (its RAM an anonymous mapping, vCPU 0 without a KVM fd), so the load
 * runs to its last step -- setting vCPU 0's registers -- and fails there with
 * EBADF, after everything the kernel will read is in RAM. The test then reads
 * RAM as the kernel would: the kernel's bytes where the image says, the
 * command line, the initrd, boot_params (bzImage) or the PVH start_info
 * (vmlinux), the RSDP it points to, the DSDT's virtio devices, the GDT the
 * boot protocol wants and the identity page tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/hv_int.h"
#include "hypervisor/virtio/virtio.h"
#include "tests/unit/kernel_images.h"

#define MEM (256ull << 20)

static char dir[] = "/tmp/castor-test-linux-load.XXXXXX";

static struct hv_vm *fake_vm(unsigned nvirtio)
{
	struct hv_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	snprintf(vm->name, sizeof(vm->name), "lx");
	vm->ncpus = 2;
	vm->mem.size = MEM;
	vm->mem.pages = MEM / HV_PAGE_SIZE;
	vm->mem.base = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(vm->mem.base != MAP_FAILED);
	vm->mem.vmm_dirty = calloc(vm->mem.pages / 64 + 1, sizeof(uint64_t));
	for (unsigned i = 0; i < HV_MAX_VCPUS; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].idx = i;
		vm->vcpus[i].fd = -1; /* no KVM: the last step of the load fails with EBADF */
	}
	for (unsigned i = 0; i < nvirtio; i++) {
		vm->virtio[i] = calloc(1, sizeof(*vm->virtio[i]));
		virtio_mmio_slot(i, &vm->virtio[i]->base, &vm->virtio[i]->gsi);
	}
	vm->nvirtio = nvirtio;
	return vm;
}

static void fake_free(struct hv_vm *vm)
{
	for (unsigned i = 0; i < vm->nvirtio; i++)
		free(vm->virtio[i]);
	munmap(vm->mem.base, MEM);
	free(vm->mem.vmm_dirty);
	free(vm);
}

static const uint8_t *ram(struct hv_vm *vm, uint64_t gpa)
{
	return vm->mem.base + gpa;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static char *path_of(const char *name)
{
	static char p[4][128];
	static unsigned i;
	char *out = p[i++ % 4];

	snprintf(out, 128, "%s/%s", dir, name);
	return out;
}

/* The initrd: 3 MiB of a pattern the test can find again. */
static const char *make_initrd(void)
{
	size_t len = 3u << 20;
	uint8_t *b = malloc(len);

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 13 + 7);
	write_file(path_of("initrd"), b, len);
	free(b);
	return path_of("initrd");
}

static bool dirty(struct hv_vm *vm, uint64_t gpa)
{
	uint64_t pfn = gpa / HV_PAGE_SIZE;

	return (vm->mem.vmm_dirty[pfn / 64] >> (pfn % 64)) & 1;
}

/* The RSDP's signature and its XSDT's, and "LNRO0005" n times in the ACPI area. */
static void check_acpi(struct hv_vm *vm, uint64_t rsdp, unsigned nvirtio)
{
	uint64_t xsdt;
	const uint8_t *a = ram(vm, BOOT_LINUX_ACPI_GPA);
	unsigned found = 0;

	assert_true(rsdp >= BOOT_LINUX_ACPI_GPA &&
		    rsdp < BOOT_LINUX_ACPI_GPA + BOOT_LINUX_ACPI_LEN);
	assert_memory_equal(ram(vm, rsdp), "RSD PTR ", 8);
	memcpy(&xsdt, ram(vm, rsdp + 24), 8);
	assert_memory_equal(ram(vm, xsdt), "XSDT", 4);
	for (size_t i = 0; i + 8 <= BOOT_LINUX_ACPI_LEN; i++)
		found += !memcmp(a + i, "LNRO0005", 8);
	assert_int_equal(found, nvirtio);
}

/* The GDT of the boot protocol: code64 at 0x10, data at 0x18, code32 at 0x20. */
static void check_gdt_and_tables(struct hv_vm *vm)
{
	uint64_t gdt[5], pml4;

	memcpy(gdt, ram(vm, BOOT_LINUX_GDT_GPA), sizeof(gdt));
	assert_int_equal(gdt[BOOT_LINUX_CS64 / 8], 0x00af9a000000ffffull);
	assert_int_equal(gdt[BOOT_LINUX_DS / 8], 0x00cf92000000ffffull);
	assert_int_equal(gdt[BOOT_LINUX_CS32 / 8], 0x00cf9a000000ffffull);
	memcpy(&pml4, ram(vm, 0x10000), 8);
	assert_true(pml4 & 1); /* present: the identity map the 64-bit entry runs on */
}

static void bzimage_loaded(void **state)
{
	struct hv_vm *vm = fake_vm(2);
	uint8_t *img = bzimage(0x020f, XLF_KERNEL_64);
	const char *cmdline = "console=ttyS0 castor.ip=10.0.0.2/24";
	struct hv_linux_config cfg = {.kernel = path_of("bzImage"), .cmdline = cmdline};
	const struct boot_params *bp;
	char why[512] = "";
	size_t off = (BZ_SECTS + 1) * 512;

	(void)state;
	for (size_t i = off; i < BZ_LEN; i++)
		img[i] = (uint8_t)(i * 7);
	write_file(cfg.kernel, img, BZ_LEN);
	cfg.initrd = make_initrd();
	assert_int_equal(hv_linux_load(vm, &cfg, why, sizeof(why)), -EBADF);
	assert_non_null(strstr(why, "vCPU 0's entry state"));
	/* the protected-mode kernel at 1 MiB, and marked dirty (a replica would get it) */
	assert_memory_equal(ram(vm, 0x100000), img + off, BZ_LEN - off);
	assert_true(dirty(vm, 0x100000));
	bp = (const struct boot_params *)ram(vm, BOOT_LINUX_PARAMS_GPA);
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.version, 0x020f);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, BOOT_LINUX_CMDLINE_GPA);
	assert_string_equal((const char *)ram(vm, bp->hdr.cmd_line_ptr), cmdline);
	assert_int_equal(bp->hdr.ramdisk_size, 3u << 20);
	for (size_t i = 0; i < (3u << 20); i += 4099)
		assert_int_equal(ram(vm, bp->hdr.ramdisk_image)[i], (uint8_t)(i * 13 + 7));
	assert_int_equal(bp->e820_entries, 4);
	check_acpi(vm, bp->acpi_rsdp_addr, 2);
	check_gdt_and_tables(vm);
	free(img);
	fake_free(vm);
}

static void vmlinux_loaded_pvh(void **state)
{
	struct hv_vm *vm = fake_vm(3);
	uint8_t *img = vmlinux(true);
	struct hv_linux_config cfg = {.kernel = path_of("vmlinux"), .cmdline = "quiet"};
	struct boot_pvh_start_info si;
	struct boot_pvh_module mod;
	char why[512] = "";

	(void)state;
	memset(img + ELF_LOAD_AT, 0x5a, 0x1000);
	write_file(cfg.kernel, img, ELF_LEN);
	cfg.initrd = make_initrd();
	assert_int_equal(hv_linux_load(vm, &cfg, why, sizeof(why)), -EBADF);
	/* the segment at its physical address */
	assert_int_equal(ram(vm, ELF_PADDR)[0], 0x5a);
	assert_int_equal(ram(vm, ELF_PADDR)[0xfff], 0x5a);
	memcpy(&si, ram(vm, BOOT_LINUX_START_INFO_GPA), sizeof(si));
	assert_int_equal(si.magic, BOOT_PVH_MAGIC);
	assert_string_equal((const char *)ram(vm, si.cmdline_paddr), "quiet");
	assert_int_equal(si.nr_modules, 1);
	memcpy(&mod, ram(vm, si.modlist_paddr), sizeof(mod));
	assert_int_equal(mod.size, 3u << 20);
	assert_int_equal(ram(vm, mod.paddr)[1], (uint8_t)(13 + 7));
	assert_int_equal(si.memmap_entries, 4);
	check_acpi(vm, si.rsdp_paddr, 3);
	check_gdt_and_tables(vm);
	free(img);
	fake_free(vm);
}

static void refused_before_ram(void **state)
{
	struct hv_vm *vm = fake_vm(0);
	struct hv_linux_config cfg = {.kernel = path_of("junk")};
	char why[512] = "";
	uint8_t junk[4096] = {1, 2, 3};

	(void)state;
	write_file(cfg.kernel, junk, sizeof(junk));
	assert_int_equal(hv_linux_load(vm, &cfg, why, sizeof(why)), -ENOEXEC);
	assert_non_null(strstr(why, "neither an ELF vmlinux nor a bzImage"));
	/* nothing was written: RAM is untouched and nothing is dirty */
	for (uint64_t p = 0; p < vm->mem.pages / 64; p++)
		assert_int_equal(vm->mem.vmm_dirty[p], 0);
	fake_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bzimage_loaded),
		cmocka_unit_test(vmlinux_loaded_pvh),
		cmocka_unit_test(refused_before_ram),
	};
	char cmd[128];
	int rc;

	if (!mkdtemp(dir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0 && !rc)
		rc = 1;
	return rc;
}
