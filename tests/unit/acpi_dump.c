/*
 * acpi_dump: the ACPI tables castor gives a Linux guest (hypervisor/boot/acpi.c),
 * one file per table, for `iasl -d` (tests/unit/test_acpi_iasl.sh, docs/guests.md).
 *
 *   acpi_dump DIR NCPUS NVIRTIO [nocom1]
 *
 * Virtio devices sit in the slots virtio/mmio.c gives them. The tables are
 * found the way a guest finds them -- RSDP, then the XSDT's entries, then the
 * FADT's X_DSDT -- and written to DIR/RSDP.dat, XSDT.dat, FACP.dat, APIC.dat
 * and DSDT.dat (named by signature). stdout gets one line per table
 * ("table SIG GPA LENGTH") and per device ("virtio I BASE SIZE GSI"), which
 * the test checks the disassembly against. Exit 0, or 1 with a message.
 */
#include "hypervisor/boot/boot.h"
#include "hypervisor/hv_int.h"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLES_GPA 0xe0000ull /* the BIOS area, where a guest scanning for the RSDP looks */
#define TABLES_MAX 0x10000u

static uint8_t tables[TABLES_MAX];

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* Write the table at gpa (length from its header, or `len` if nonzero) to DIR/SIG.dat. */
static int dump(const char *dir, uint64_t gpa, size_t used, const char *sig, uint32_t len)
{
	const char *name = strcmp(sig, "RSD PTR ") ? sig : "RSDP";
	char path[4096];
	uint64_t off = gpa - TABLES_GPA;
	FILE *f;

	if (gpa < TABLES_GPA || off + 8 > used) {
		fprintf(stderr, "acpi_dump: %s at 0x%" PRIx64 " is outside the tables\n", sig, gpa);
		return -EINVAL;
	}
	if (memcmp(tables + off, sig, strlen(sig)) != 0) {
		fprintf(stderr, "acpi_dump: 0x%" PRIx64 " does not hold %s\n", gpa, sig);
		return -EINVAL;
	}
	if (!len)
		len = get32(tables + off + 4);
	if (off + len > used) {
		fprintf(stderr, "acpi_dump: %s of %u bytes runs past the tables\n", sig, len);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s/%.4s.dat", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(tables + off, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		return -EIO;
	}
	printf("table %.4s 0x%" PRIx64 " %u\n", name, gpa, len);
	return 0;
}

int main(int argc, char **argv)
{
	struct acpi_mmio_dev devs[HV_MAX_VIRTIO];
	struct acpi_config cfg = {.virtio = devs, .com1 = true};
	uint64_t rsdp, xsdt, fadt = 0, madt = 0;
	size_t used = 0;
	uint32_t xsdt_len, i;
	char why[256] = "";
	int rc;

	if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "nocom1") != 0)) {
		fprintf(stderr, "usage: acpi_dump DIR NCPUS NVIRTIO [nocom1]\n");
		return 1;
	}
	cfg.ncpus = (uint32_t)strtoul(argv[2], NULL, 0);
	cfg.nvirtio = (unsigned)strtoul(argv[3], NULL, 0);
	cfg.com1 = argc == 4;
	for (i = 0; i < cfg.nvirtio && i < HV_MAX_VIRTIO; i++) {
		virtio_mmio_slot(i, &devs[i].base, &devs[i].gsi);
		devs[i].size = VIRTIO_MMIO_SIZE;
	}
	rc = acpi_build(&cfg, TABLES_GPA, tables, sizeof(tables), &rsdp, &used, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "acpi_dump: acpi_build: %s (%s)\n", why, strerror(-rc));
		return 1;
	}
	for (i = 0; i < cfg.nvirtio; i++)
		printf("virtio %u 0x%" PRIx64 " 0x%x %u\n", i, devs[i].base, devs[i].size,
		       devs[i].gsi);
	if (dump(argv[1], rsdp, used, "RSD PTR ", 36) < 0)
		return 1;
	xsdt = get64(tables + (rsdp - TABLES_GPA) + 24);
	if (dump(argv[1], xsdt, used, "XSDT", 0) < 0)
		return 1;
	xsdt_len = get32(tables + (xsdt - TABLES_GPA) + 4);
	for (i = 36; i + 8 <= xsdt_len; i += 8) {
		uint64_t t = get64(tables + (xsdt - TABLES_GPA) + i);

		if (t >= TABLES_GPA && t - TABLES_GPA + 4 <= used &&
		    !memcmp(tables + (t - TABLES_GPA), "FACP", 4))
			fadt = t;
		else
			madt = t;
	}
	if (dump(argv[1], fadt, used, "FACP", 0) < 0 || dump(argv[1], madt, used, "APIC", 0) < 0)
		return 1;
	if (dump(argv[1], get64(tables + (fadt - TABLES_GPA) + 140), used, "DSDT", 0) < 0)
		return 1;
	return 0;
}
