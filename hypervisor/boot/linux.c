/*
 * Booting a Linux kernel: the files are mapped read-only, recognised and
 * planned by the pure functions of linux_boot.h, then copied into guest RAM
 * with hv_mem_write() together with the command line, the ACPI tables, the
 * boot page tables and boot_params or the PVH start_info. Only vCPU 0 gets an
 * entry state; the others stay in KVM's reset state and wait for the kernel's
 * INIT/SIPI, as on real hardware.
 */
#define LOG_TAG "linux"
#include "hypervisor/hv_int.h"
#include "hypervisor/boot/boot.h"
#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KERNEL_FILE_MAX (1ull << 30) /* no kernel is this big: refuse before mapping it */

/* GDT of a Linux boot (linux_boot.h): 0x10 code64, 0x18 data, 0x20 code32 for PVH. */
static const uint64_t linux_gdt[5] = {0, 0, 0x00af9a000000ffffull, 0x00cf92000000ffffull,
				      0x00cf9a000000ffffull};

struct mapped {
	const uint8_t *p;
	size_t len;
};

static void unmap(struct mapped *m)
{
	if (m->p)
		munmap((void *)m->p, m->len);
	m->p = NULL;
	m->len = 0;
}

/* Map a regular, non-empty file read-only. */
static int map_file(const char *what, const char *path, uint64_t max, struct mapped *out, char *why,
		    size_t why_len)
{
	struct stat st;
	void *p;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return util_why(why, why_len, -errno, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = util_why(why, why_len, -errno, "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = util_why(why, why_len, -EINVAL, "%s %s: not a regular file", what, path);
		goto out;
	}
	if (st.st_size == 0) {
		rc = util_why(why, why_len, -EINVAL, "%s %s: the file is empty", what, path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = util_why(why, why_len, -E2BIG, "%s %s: %llu MiB is too large (at most %llu)",
			      what, path, (unsigned long long)st.st_size >> 20,
			      (unsigned long long)max >> 20);
		goto out;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		rc = util_why(why, why_len, -errno, "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	out->p = p;
	out->len = (size_t)st.st_size;
out:
	close(fd);
	return rc;
}

struct linux_boot {
	struct mapped kernel, initrd;
	struct boot_kernel k;
	struct boot_plan plan;
	const char *cmdline;
};

static void linux_boot_dispose(struct linux_boot *b)
{
	unmap(&b->kernel);
	unmap(&b->initrd);
}

static int prepare(const struct hv_linux_config *cfg, uint64_t mem_bytes, struct linux_boot *b,
		   char *why, size_t why_len)
{
	char inner[384];
	int rc;

	memset(b, 0, sizeof(*b));
	b->cmdline = cfg->cmdline ? cfg->cmdline : "";
	if (!cfg->kernel)
		return util_why(why, why_len, -EINVAL, "no kernel given");
	rc = map_file("kernel", cfg->kernel, KERNEL_FILE_MAX, &b->kernel, why, why_len);
	if (rc < 0)
		return rc;
	rc = boot_kernel_parse(b->kernel.p, b->kernel.len, &b->k, inner, sizeof(inner));
	if (rc < 0)
		return util_why(why, why_len, rc, "kernel %s: %s", cfg->kernel, inner);
	if (cfg->initrd) {
		rc = map_file("initrd", cfg->initrd, UINT64_MAX, &b->initrd, why, why_len);
		if (rc < 0)
			return rc;
	}
	rc = boot_linux_plan(&b->k, mem_bytes, b->initrd.len, strlen(b->cmdline), &b->plan, inner,
			     sizeof(inner));
	if (rc < 0)
		return util_why(why, why_len, rc, "%s", inner);
	return 0;
}

int hv_linux_check(const struct hv_linux_config *cfg, uint64_t mem_bytes, char *why, size_t why_len)
{
	struct linux_boot b;
	int rc;

	rc = prepare(cfg, mem_bytes, &b, why, why_len);
	linux_boot_dispose(&b);
	return rc;
}

static int write_acpi(struct hv_vm *vm, uint64_t *rsdp_out, char *why, size_t why_len)
{
	struct acpi_mmio_dev devs[HV_MAX_VIRTIO];
	struct acpi_config cfg = {.ncpus = vm->ncpus, .virtio = devs, .com1 = true};
	uint8_t *buf;
	size_t used;
	unsigned i;
	int rc;

	for (i = 0; i < vm->nvirtio; i++)
		devs[i] = (struct acpi_mmio_dev){.base = vm->virtio[i]->base,
						 .size = VIRTIO_MMIO_SIZE,
						 .gsi = vm->virtio[i]->gsi};
	cfg.nvirtio = vm->nvirtio;
	buf = calloc(1, BOOT_LINUX_ACPI_LEN);
	if (!buf)
		return -ENOMEM;
	rc = acpi_build(&cfg, BOOT_LINUX_ACPI_GPA, buf, BOOT_LINUX_ACPI_LEN, rsdp_out, &used, why,
			why_len);
	if (!rc)
		rc = hv_mem_write(vm, BOOT_LINUX_ACPI_GPA, buf, used);
	free(buf);
	return rc;
}

static int write_boot_info(struct hv_vm *vm, const struct linux_boot *b, uint64_t rsdp)
{
	uint8_t *page;
	int rc;

	_Static_assert(sizeof(struct boot_params) <= BOOT_PVH_PAGE, "boot_params is one page");
	page = calloc(1, BOOT_PVH_PAGE);
	if (!page)
		return -ENOMEM;
	if (b->plan.pvh) {
		boot_pvh_build(page, &b->plan, vm->mem.size, rsdp);
		rc = hv_mem_write(vm, BOOT_LINUX_START_INFO_GPA, page, BOOT_PVH_PAGE);
	} else {
		boot_params_build((struct boot_params *)page, &b->k, &b->plan, vm->mem.size, rsdp);
		rc = hv_mem_write(vm, BOOT_LINUX_PARAMS_GPA, page, sizeof(struct boot_params));
	}
	free(page);
	return rc;
}

static int write_images(struct hv_vm *vm, const struct linux_boot *b)
{
	char cmdline[BOOT_LINUX_CMDLINE_MAX] = {0};
	unsigned i;
	int rc = 0;

	/* RAM is fresh (zero): a segment's bss needs no writing */
	for (i = 0; !rc && i < b->k.nseg; i++)
		rc = hv_mem_write(vm, b->k.seg[i].gpa, b->kernel.p + b->k.seg[i].file_off,
				  b->k.seg[i].filesz);
	if (!rc && b->initrd.len)
		rc = hv_mem_write(vm, b->plan.initrd_gpa, b->initrd.p, b->initrd.len);
	memcpy(cmdline, b->cmdline, b->plan.cmdline_len);
	if (!rc)
		rc = hv_mem_write(vm, BOOT_LINUX_CMDLINE_GPA, cmdline, b->plan.cmdline_len + 1);
	return rc;
}

/* The map as the kernel will print it ("BIOS-e820: [mem A-B] usable"), for comparison. */
static void log_e820(struct hv_vm *vm)
{
	struct boot_e820 map[BOOT_E820_MAX];
	unsigned i, n = boot_e820_build(vm->mem.size, map, BOOT_E820_MAX);

	for (i = 0; i < n; i++)
		LOG_INFO("vm %s: e820: [mem 0x%016" PRIx64 "-0x%016" PRIx64 "] %s", vm->name,
			 map[i].addr, map[i].addr + map[i].size - 1,
			 map[i].type == BOOT_E820_RAM ? "usable" : "reserved");
}

int hv_linux_load(struct hv_vm *vm, const struct hv_linux_config *cfg, char *why, size_t why_len)
{
	struct boot_entry e = {.ds = BOOT_LINUX_DS, .gdt_limit = sizeof(linux_gdt) - 1};
	struct linux_boot b;
	uint64_t rsdp = 0;
	int rc;

	rc = prepare(cfg, vm->mem.size, &b, why, why_len);
	if (rc < 0)
		goto out;
	rc = write_images(vm, &b);
	if (rc < 0) {
		util_why(why, why_len, rc, "copying the kernel and initrd into guest RAM: %s",
			 strerror(-rc));
		goto out;
	}
	rc = write_acpi(vm, &rsdp, why, why_len);
	if (rc < 0)
		goto out;
	rc = boot_build_page_tables(vm);
	if (!rc)
		rc = hv_mem_write(vm, BOOT_LINUX_GDT_GPA, linux_gdt, sizeof(linux_gdt));
	if (!rc)
		rc = write_boot_info(vm, &b, rsdp);
	if (rc < 0) {
		util_why(why, why_len, rc, "writing the boot structures: %s", strerror(-rc));
		goto out;
	}
	if (b.plan.pvh) {
		e.protected32 = true;
		e.cs = BOOT_LINUX_CS32;
		e.rip = b.k.pvh_entry;
		e.rbx = BOOT_LINUX_START_INFO_GPA;
	} else {
		e.cs = BOOT_LINUX_CS64;
		e.rip = b.k.entry64;
		e.rsi = BOOT_LINUX_PARAMS_GPA;
	}
	rc = boot_vcpu_enter(&vm->vcpus[0], &e);
	if (rc < 0) {
		util_why(why, why_len, rc, "setting vCPU 0's entry state: %s", strerror(-rc));
		goto out;
	}
	vm->booted = true;
	LOG_INFO("vm %s: %s %s loaded: %s entry at 0x%" PRIx64 ", kernel [0x%" PRIx64 ", 0x%" PRIx64
		 "), initrd %zu bytes at 0x%" PRIx64 ", ACPI RSDP at 0x%" PRIx64
		 ", %u virtio devices, command line \"%s\"",
		 vm->name, boot_kernel_kind_str(b.k.kind), cfg->kernel,
		 b.plan.pvh ? "PVH 32-bit" : "64-bit", e.rip, b.k.lo, b.k.hi, b.initrd.len,
		 b.plan.initrd_gpa, rsdp, vm->nvirtio, b.cmdline);
	log_e820(vm);
out:
	linux_boot_dispose(&b);
	return rc;
}
