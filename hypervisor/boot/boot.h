/*
 * What the files of hypervisor/boot/ offer each other and the rest of
 * castor_hv (internal to the library, like hv_int.h): the pieces a guest
 * loader puts into guest memory before the first vCPU runs.
 */
#ifndef CASTOR_BOOT_H
#define CASTOR_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ACPI tables (acpi.c) ------------------------------------------------------------- */

/*
 * ACPI tables for a Linux guest: RSDP, XSDT, FADT (hardware-reduced, so no
 * FACS), MADT and a DSDT that lists the virtio-mmio devices as LNRO0005 and
 * the 16550 on COM1 (docs/guests.md, "ACPI tables"). A pure function of the
 * configuration: the loader copies the result into guest RAM at `gpa` and
 * hands the guest *rsdp_gpa_out (boot_params.acpi_rsdp_addr, or PVH's
 * rsdp_paddr).
 */

/* One virtio-mmio window and the GSI its device raises (virtio/mmio.c). */
struct acpi_mmio_dev {
	uint64_t base; /* below 4 GiB: described with Memory32Fixed */
	uint32_t size;
	uint32_t gsi; /* an IOAPIC pin: 1 or 3..23, each device its own, 4 only without com1 */
};

struct acpi_config {
	uint32_t ncpus;			    /* 1 .. HV_MAX_VCPUS; LAPIC ids 0 .. ncpus-1 */
	const struct acpi_mmio_dev *virtio; /* nvirtio entries, device i gets _UID i */
	unsigned nvirtio;		    /* 0 .. HV_MAX_VIRTIO */
	bool com1;			    /* describe the 16550 at 0x3f8, IRQ 4 (PNP0501) */
};

/*
 * Lay the tables out in buf[0 .. len), which the guest will see at
 * guest-physical `gpa` (below 4 GiB: the FADT also carries the DSDT's 32-bit
 * address). The RSDP comes first, at the first 16-byte aligned address; the
 * other tables follow, 8-byte aligned, and nothing past *used_out is written.
 * Returns 0; -EINVAL for a configuration out of range, -ENOSPC when len is
 * too small (then *used_out is the size needed) or -ENOMEM, each with the
 * reason in why (why may be NULL when why_len is 0). buf may be NULL when
 * len is 0.
 */
int acpi_build(const struct acpi_config *cfg, uint64_t gpa, uint8_t *buf, size_t len,
	       uint64_t *rsdp_gpa_out, size_t *used_out, char *why, size_t why_len);

#endif
