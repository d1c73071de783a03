/*
 * ACPI tables built by the VMM (boot.h), so that a stock Linux kernel finds
 * its CPUs, interrupt controllers and virtio-mmio devices the way it does on
 * firmware: Debian's kernel discovers virtio-mmio only through ACPI
 * (LNRO0005). The set mirrors a hardware-reduced platform like QEMU's microvm:
 *
 *   RSDP (rev 2) -> XSDT -> FADT (rev 6, HW_REDUCED_ACPI) -> DSDT (AML, aml.c)
 *                        -> MADT (LAPICs, IOAPIC, IRQ0 -> GSI2, LINT1 = NMI)
 *
 * Hardware-reduced means no PM1 blocks, PM timer, SCI, GPEs or FACS: the
 * guest runs in ACPI mode from the start and needs nothing of ours at run
 * time. Every multi-byte field is little-endian (htole*), and every table is
 * a packed struct pinned to the spec's size.
 */
#define LOG_TAG "acpi"
#include "hypervisor/hv_int.h"
#include "hypervisor/boot/aml.h"
#include "hypervisor/boot/boot.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OEM_ID		 "CASTOR"
#define OEM_TABLE_ID	 "CASTORVM"
#define OEM_REVISION	 1
#define CREATOR_ID	 "CSTR"
#define CREATOR_REVISION 1

/* KVM's in-kernel irqchip puts them at the PC's usual addresses. */
#define LAPIC_GPA   0xfee00000u
#define IOAPIC_GPA  0xfec00000u
#define IOAPIC_PINS 24 /* KVM_IOAPIC_NUM_PINS */
#define PIT_IRQ	    0
#define PIT_GSI	    2 /* the IOAPIC pin the PIT is wired to, as on every PC */
#define COM1_PORT   0x3f8
#define COM1_PORTS  8
#define COM1_IRQ    4
#define FOUR_GIB    0x100000000ull /* what 32-bit fields (DSDT, Memory32Fixed) can reach */

/*
 * virtio/mmio.c raises its line through an irqfd with a resample fd: KVM
 * holds the GSI asserted until the guest's EOI, then the VMM asserts it again
 * if InterruptStatus is still set. That is a level-triggered line; described
 * as edge, Linux would EOI before its handler runs (handle_edge_irq), and
 * each interrupt would come a second time, usually for nothing.
 */
#define VIRTIO_IRQ_FLAGS (AML_IRQ_CONSUMER) /* level, active high, exclusive */

/* ---- table layouts (ACPI 6.x, chapter 5) ---------------------------------------------- */

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "ACPI table header");

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum; /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t ext_checksum; /* over all `length` bytes */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
#define RSDP_V1_LEN 20

/* Generic Address Structure */
struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS");

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0; /* INT_MODEL in ACPI 1.0 */
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags");
_Static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT");
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT, revision 6");

#define FADT_REVISION	     6
#define FADT_MINOR_VERSION   0
#define FADT_HW_REDUCED_ACPI (1u << 20)
/* IAPC_BOOT_ARCH: what a PC would have and this VM has not, or has */
#define BOOT_ARCH_LEGACY_DEVICES       (1u << 0) /* ISA-style devices: our 16550 */
#define BOOT_ARCH_VGA_NOT_PRESENT      (1u << 2)
#define BOOT_ARCH_CMOS_RTC_NOT_PRESENT (1u << 5)

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT");

/*
 * Revision 4: nothing here needs the Online Capable bit of revision 5
 * (ACPI 6.3), and every vCPU is present and enabled from the start.
 */
#define MADT_REVISION	 4
#define MADT_PCAT_COMPAT (1u << 0)

/* 8-bit APIC ids in xAPIC entries; more vCPUs would need x2APIC entries (type 9) */
_Static_assert(HV_MAX_VCPUS < 255, "vCPU and IOAPIC ids fit a Processor Local APIC entry");

struct madt_lapic {
	uint8_t type; /* 0 */
	uint8_t length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8, "MADT Processor Local APIC");
#define MADT_LAPIC_ENABLED 1u

struct madt_ioapic {
	uint8_t type; /* 1 */
	uint8_t length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_ioapic) == 12, "MADT I/O APIC");

struct madt_iso {
	uint8_t type; /* 2 */
	uint8_t length;
	uint8_t bus; /* 0: ISA */
	uint8_t source;
	uint32_t gsi;
	uint16_t flags; /* 0: conforms to the bus (edge, active high for ISA) */
} __attribute__((packed));
_Static_assert(sizeof(struct madt_iso) == 10, "MADT Interrupt Source Override");

struct madt_lapic_nmi {
	uint8_t type; /* 4 */
	uint8_t length;
	uint8_t processor_uid; /* 0xff: all processors */
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT Local APIC NMI");

enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_ISO = 2, MADT_LAPIC_NMI = 4 };

#define XSDT_ENTRIES  2 /* FADT, MADT; the DSDT hangs off the FADT */
#define DSDT_REVISION 2 /* 2 and up: AML integers are 64-bit */

/* Where each table goes, as offsets into the caller's buffer. */
struct layout {
	size_t rsdp, xsdt, fadt, madt, dsdt, end;
	size_t xsdt_len, madt_len, dsdt_len;
	size_t aml_peak; /* what building the DSDT's AML takes (aml.h) */
};

/* The first offset at or after off whose guest-physical address is a multiple of align. */
static size_t place(uint64_t gpa, size_t off, uint64_t align)
{
	return (size_t)(((gpa + off + align - 1) & ~(align - 1)) - gpa);
}

/* ---- DSDT ------------------------------------------------------------------------------ */

/* The 16550 as firmware describes COM1; Linux's 8250_pnp binds to PNP0501. */
static void dsdt_com1(struct aml *a)
{
	size_t dev = aml_device_begin(a, "COM1"), crs;

	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	crs = aml_res_begin(a);
	aml_res_io(a, COM1_PORT, COM1_PORTS);
	aml_res_irq_noflags(a, COM1_IRQ);
	aml_res_end(a, crs);
	aml_end(a, dev);
}

/* Linux's virtio_mmio driver matches LNRO0005 and takes the window and the interrupt from _CRS. */
static void dsdt_virtio(struct aml *a, unsigned i, const struct acpi_mmio_dev *d)
{
	char name[5];
	size_t dev, crs;

	_Static_assert(HV_MAX_VIRTIO <= 16, "one hex digit names the device");
	snprintf(name, sizeof(name), "VIO%X", i & 0xfu);
	dev = aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_string(a, "LNRO0005");
	aml_name(a, "_UID");
	aml_integer(a, i);
	/* cache-coherent DMA: what x86 assumes anyway, said so for any reader */
	aml_name(a, "_CCA");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	crs = aml_res_begin(a);
	aml_res_memory32_fixed(a, true, (uint32_t)d->base, d->size);
	aml_res_interrupt(a, VIRTIO_IRQ_FLAGS, d->gsi);
	aml_res_end(a, crs);
	aml_end(a, dev);
}

/* The DSDT's AML (what follows its header): 0, -EINVAL (a bad name: a bug here) or -ENOSPC. */
static int dsdt_aml(const struct acpi_config *cfg, struct aml *a)
{
	size_t sb = aml_scope_begin(a, "\\_SB");
	unsigned i;

	if (cfg->com1)
		dsdt_com1(a);
	for (i = 0; i < cfg->nvirtio; i++)
		dsdt_virtio(a, i, &cfg->virtio[i]);
	aml_end(a, sb);
	return aml_status(a);
}

/* ---- the fixed tables ------------------------------------------------------------------ */

static void header_init(struct acpi_header *h, const char *sig, size_t len, uint8_t rev)
{
	memcpy(h->signature, sig, sizeof(h->signature));
	h->length = htole32((uint32_t)len);
	h->revision = rev;
	memcpy(h->oem_id, OEM_ID, sizeof(h->oem_id));
	memcpy(h->oem_table_id, OEM_TABLE_ID, sizeof(h->oem_table_id));
	h->oem_revision = htole32(OEM_REVISION);
	memcpy(h->creator_id, CREATOR_ID, sizeof(h->creator_id));
	h->creator_revision = htole32(CREATOR_REVISION);
}

/* The byte that makes p[0 .. len) sum to zero, given that it is zero now. */
static uint8_t checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return (uint8_t)-sum;
}

/* Set the header's checksum of the whole table at t (written in full, checksum 0). */
static void table_seal(uint8_t *t)
{
	struct acpi_header h;

	memcpy(&h, t, sizeof(h));
	t[offsetof(struct acpi_header, checksum)] = checksum(t, le32toh(h.length));
}

static void write_rsdp(uint8_t *buf, const struct layout *l, uint64_t gpa)
{
	struct acpi_rsdp r = {0};

	memcpy(r.signature, "RSD PTR ", sizeof(r.signature));
	memcpy(r.oem_id, OEM_ID, sizeof(r.oem_id));
	r.revision = 2; /* ACPI 2.0 and later: the XSDT is there; no RSDT needed */
	r.length = htole32(sizeof(r));
	r.xsdt_address = htole64(gpa + l->xsdt);
	r.checksum = checksum((const uint8_t *)&r, RSDP_V1_LEN);
	r.ext_checksum = checksum((const uint8_t *)&r, sizeof(r));
	memcpy(buf + l->rsdp, &r, sizeof(r));
}

static void write_xsdt(uint8_t *buf, const struct layout *l, uint64_t gpa)
{
	const uint64_t entries[XSDT_ENTRIES] = {htole64(gpa + l->fadt), htole64(gpa + l->madt)};
	struct acpi_header h = {0};

	header_init(&h, "XSDT", l->xsdt_len, 1);
	memcpy(buf + l->xsdt, &h, sizeof(h));
	memcpy(buf + l->xsdt + sizeof(h), entries, sizeof(entries));
	table_seal(buf + l->xsdt);
}

static void write_fadt(uint8_t *buf, const struct layout *l, uint64_t gpa, bool com1)
{
	struct acpi_fadt f = {0};
	uint16_t boot_arch = BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT;

	header_init(&f.h, "FACP", sizeof(f), FADT_REVISION);
	/* both DSDT pointers, equal: ACPICA warns when a 32-bit one disagrees with X_DSDT */
	f.dsdt = htole32((uint32_t)(gpa + l->dsdt));
	f.x_dsdt = htole64(gpa + l->dsdt);
	/*
	 * No 8042 bit: there is no keyboard controller, and Linux then leaves
	 * i8042 alone. No RTC, no VGA: nothing answers at 0x70 or 0x3c0.
	 */
	if (com1)
		boot_arch |= BOOT_ARCH_LEGACY_DEVICES;
	f.iapc_boot_arch = htole16(boot_arch);
	f.flags = htole32(FADT_HW_REDUCED_ACPI);
	f.minor_version = FADT_MINOR_VERSION;
	memcpy(buf + l->fadt, &f, sizeof(f));
	table_seal(buf + l->fadt);
}

static size_t madt_length(uint32_t ncpus)
{
	return sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
	       sizeof(struct madt_ioapic) + sizeof(struct madt_iso) + sizeof(struct madt_lapic_nmi);
}

static void write_madt(uint8_t *buf, const struct layout *l, uint32_t ncpus)
{
	struct acpi_madt m = {0};
	struct madt_ioapic io = {.type = MADT_IOAPIC, .length = sizeof(struct madt_ioapic)};
	struct madt_iso iso = {.type = MADT_ISO, .length = sizeof(struct madt_iso)};
	struct madt_lapic_nmi nmi = {.type = MADT_LAPIC_NMI,
				     .length = sizeof(struct madt_lapic_nmi)};
	size_t off = l->madt + sizeof(m);
	uint32_t i;

	header_init(&m.h, "APIC", l->madt_len, MADT_REVISION);
	m.lapic_address = htole32(LAPIC_GPA);
	/* KVM's irqchip includes the two 8259s, and they are wired as on a PC */
	m.flags = htole32(MADT_PCAT_COMPAT);
	memcpy(buf + l->madt, &m, sizeof(m));
	for (i = 0; i < ncpus; i++) {
		struct madt_lapic c = {.type = MADT_LAPIC, .length = sizeof(struct madt_lapic)};

		c.processor_uid = (uint8_t)i;
		c.apic_id = (uint8_t)i; /* vCPU i's APIC id (KVM's default) */
		c.flags = htole32(MADT_LAPIC_ENABLED);
		memcpy(buf + off, &c, sizeof(c));
		off += sizeof(c);
	}
	/* after the LAPIC ids, as firmware numbers it; GSIs 0..23 are its pins */
	io.ioapic_id = (uint8_t)ncpus;
	io.address = htole32(IOAPIC_GPA);
	io.gsi_base = 0;
	memcpy(buf + off, &io, sizeof(io));
	off += sizeof(io);
	iso.source = PIT_IRQ;
	iso.gsi = htole32(PIT_GSI);
	memcpy(buf + off, &iso, sizeof(iso));
	off += sizeof(iso);
	/* LINT1 of every CPU is the NMI input, as on a PC */
	nmi.processor_uid = 0xff;
	nmi.lint = 1;
	memcpy(buf + off, &nmi, sizeof(nmi));
	table_seal(buf + l->madt);
}

/* scratch: l->aml_peak bytes to build the AML in, as it briefly needs more than its size */
static void write_dsdt(const struct acpi_config *cfg, uint8_t *buf, const struct layout *l,
		       uint8_t *scratch)
{
	struct acpi_header h = {0};
	struct aml a;

	aml_init(&a, scratch, l->aml_peak);
	dsdt_aml(cfg, &a); /* the same AML that plan() measured: it fits */
	header_init(&h, "DSDT", l->dsdt_len, DSDT_REVISION);
	memcpy(buf + l->dsdt, &h, sizeof(h));
	memcpy(buf + l->dsdt + sizeof(h), scratch, a.len);
	table_seal(buf + l->dsdt);
}

/* ---- checks and layout ----------------------------------------------------------------- */

static int check_config(const struct acpi_config *cfg, char *why, size_t why_len)
{
	unsigned i, j;
	int rc = 0;

	if (cfg->ncpus < 1 || cfg->ncpus > HV_MAX_VCPUS)
		FAIL_WHY("%u vCPUs: 1 to %u can be described", cfg->ncpus, HV_MAX_VCPUS);
	if (cfg->nvirtio > HV_MAX_VIRTIO)
		FAIL_WHY("%u virtio devices: at most %u", cfg->nvirtio, HV_MAX_VIRTIO);
	if (cfg->nvirtio && !cfg->virtio)
		FAIL_WHY("%u virtio devices but no list of them", cfg->nvirtio);
	for (i = 0; i < cfg->nvirtio; i++) {
		const struct acpi_mmio_dev *d = &cfg->virtio[i];

		if (d->size == 0)
			FAIL_WHY("virtio device %u: its window is empty", i);
		if (d->base > FOUR_GIB - d->size)
			FAIL_WHY("virtio device %u: window 0x%llx+0x%x is not within 4 GiB", i,
				 (unsigned long long)d->base, d->size);
		/* GSI 0 carries the 8259s' output, 2 the PIT (IRQ0's override) */
		if (d->gsi >= IOAPIC_PINS || d->gsi == 0 || d->gsi == PIT_GSI)
			FAIL_WHY("virtio device %u: GSI %u is not a free IOAPIC pin", i, d->gsi);
		/* the descriptors say "exclusive": a shared pin would be a lie */
		if (cfg->com1 && d->gsi == COM1_IRQ)
			FAIL_WHY("virtio device %u: GSI %u is COM1's", i, d->gsi);
		for (j = 0; j < i; j++)
			if (cfg->virtio[j].gsi == d->gsi)
				FAIL_WHY("virtio devices %u and %u share GSI %u", j, i, d->gsi);
	}
out:
	return rc;
}

/* Offsets of every table, for a buffer the guest sees at gpa: 0, or -EINVAL (a bug in dsdt_aml). */
static int plan(const struct acpi_config *cfg, uint64_t gpa, struct layout *l)
{
	struct aml a;
	int rc;

	aml_init(&a, NULL, 0);
	rc = dsdt_aml(cfg, &a);
	if (rc == -ENOSPC)
		rc = 0; /* measuring into no buffer always overflows; len is what counts */
	/* the RSDP must sit on a 16-byte boundary for the guest to find or accept it */
	l->rsdp = place(gpa, 0, 16);
	l->xsdt = place(gpa, l->rsdp + sizeof(struct acpi_rsdp), 8);
	l->xsdt_len = sizeof(struct acpi_header) + XSDT_ENTRIES * sizeof(uint64_t);
	l->fadt = place(gpa, l->xsdt + l->xsdt_len, 8);
	l->madt = place(gpa, l->fadt + sizeof(struct acpi_fadt), 8);
	l->madt_len = madt_length(cfg->ncpus);
	l->dsdt = place(gpa, l->madt + l->madt_len, 8);
	l->dsdt_len = sizeof(struct acpi_header) + a.len;
	l->aml_peak = a.peak;
	l->end = l->dsdt + l->dsdt_len;
	return rc;
}

int acpi_build(const struct acpi_config *cfg, uint64_t gpa, uint8_t *buf, size_t len,
	       uint64_t *rsdp_gpa_out, size_t *used_out, char *why, size_t why_len)
{
	uint8_t *scratch = NULL;
	struct layout l;
	int rc;

	rc = check_config(cfg, why, why_len);
	if (rc < 0)
		goto out;
	if (gpa >= FOUR_GIB)
		FAIL_WHY("tables at 0x%llx: they must lie below 4 GiB", (unsigned long long)gpa);
	rc = plan(cfg, gpa, &l);
	if (rc < 0)
		FAIL_WHY("the DSDT's AML is malformed (a bug in acpi.c)");
	if (l.end > FOUR_GIB - gpa)
		FAIL_WHY("tables at 0x%llx+0x%zx do not end below 4 GiB", (unsigned long long)gpa,
			 l.end);
	*used_out = l.end;
	if (l.end > len || !buf) {
		snprintf(why, why_len, "ACPI tables need %zu bytes, %zu given", l.end, len);
		rc = -ENOSPC;
		goto out;
	}
	scratch = malloc(l.aml_peak);
	if (!scratch) {
		snprintf(why, why_len, "no memory for the DSDT (%zu bytes)", l.aml_peak);
		rc = -ENOMEM;
		goto out;
	}
	/* zero first: padding between tables, and every field not set below */
	memset(buf, 0, l.end);
	write_rsdp(buf, &l, gpa);
	write_xsdt(buf, &l, gpa);
	write_fadt(buf, &l, gpa, cfg->com1);
	write_madt(buf, &l, cfg->ncpus);
	write_dsdt(cfg, buf, &l, scratch);
	*rsdp_gpa_out = gpa + l.rsdp;
	LOG_DBG("ACPI tables at 0x%llx, %zu bytes: %u vCPUs, %u virtio devices%s",
		(unsigned long long)gpa, l.end, cfg->ncpus, cfg->nvirtio,
		cfg->com1 ? ", COM1" : "");
out:
	free(scratch);
	return rc;
}
