/*
 * The ACPI tables castor gives a Linux guest (hypervisor/boot/acpi.c), read
 * back by field offsets from the ACPI spec rather than through acpi.c's own
 * structs: every checksum, the pointer chain RSDP -> XSDT -> FADT/MADT ->
 * DSDT, one enabled Local APIC per vCPU and the IOAPIC, a LNRO0005 device per
 * virtio window with its window and level-triggered GSI, and the refusals
 * (too small a buffer, configurations out of range). test_acpi_iasl.sh has
 * iasl read the same tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hypervisor/boot/boot.h"
#include "hypervisor/hv_int.h"
#include "hypervisor/virtio/virtio.h"

#define GPA	 0xe0000ull
#define BUF_SIZE 0x4000u

struct built {
	uint8_t buf[BUF_SIZE];
	uint64_t gpa, rsdp;
	size_t used;
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* The first n virtio slots of a castor VM (virtio/mmio.c). */
static void devices(struct acpi_mmio_dev *d, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		virtio_mmio_slot(i, &d[i].base, &d[i].gsi);
		d[i].size = VIRTIO_MMIO_SIZE;
	}
}

static int build(struct built *b, uint64_t gpa, uint32_t ncpus, unsigned nvirtio, bool com1)
{
	struct acpi_mmio_dev d[HV_MAX_VIRTIO];
	struct acpi_config cfg = {.ncpus = ncpus, .virtio = d, .nvirtio = nvirtio, .com1 = com1};
	char why[200] = "";
	int rc;

	devices(d, nvirtio);
	memset(b->buf, 0xa5, sizeof(b->buf));
	b->gpa = gpa;
	rc = acpi_build(&cfg, gpa, b->buf, sizeof(b->buf), &b->rsdp, &b->used, why, sizeof(why));
	if (rc < 0)
		print_message("acpi_build: %s\n", why);
	return rc;
}

/*
 * The table whose guest-physical address is gpa: inside what was built,
 * with the signature expected, a length that fits, and a zero checksum.
 */
static const uint8_t *table_at(const struct built *b, uint64_t gpa, const char *sig)
{
	const uint8_t *t;
	uint32_t len;

	assert_true(gpa >= b->gpa && gpa - b->gpa + 36 <= b->used);
	t = b->buf + (gpa - b->gpa);
	assert_memory_equal(t, sig, 4);
	len = get32(t + 4);
	assert_true(len >= 36 && gpa - b->gpa + len <= b->used);
	assert_int_equal(sum(t, len), 0);
	assert_memory_equal(t + 10, "CASTOR", 6);
	return t;
}

static const uint8_t *rsdp_check(const struct built *b)
{
	const uint8_t *r;

	assert_int_equal(b->rsdp % 16, 0); /* where guests look for it */
	assert_true(b->rsdp >= b->gpa && b->rsdp - b->gpa + 36 <= b->used);
	r = b->buf + (b->rsdp - b->gpa);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(sum(r, 20), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(get32(r + 16), 0); /* no RSDT */
	assert_int_equal(get32(r + 20), 36);
	assert_int_equal(sum(r, 36), 0);
	return r;
}

/* FADT and MADT from the XSDT, each exactly once and nothing else. */
static void xsdt_check(const struct built *b, const uint8_t **fadt, const uint8_t **madt)
{
	const uint8_t *x = table_at(b, get64(rsdp_check(b) + 24), "XSDT");
	uint32_t len = get32(x + 4), i;

	*fadt = *madt = NULL;
	assert_int_equal((len - 36) % 8, 0);
	assert_int_equal((len - 36) / 8, 2);
	for (i = 36; i < len; i += 8) {
		uint64_t gpa = get64(x + i);

		assert_int_equal(gpa % 8, 0);
		if (!*fadt && gpa - b->gpa + 4 <= b->used &&
		    !memcmp(b->buf + (gpa - b->gpa), "FACP", 4))
			*fadt = table_at(b, gpa, "FACP");
		else
			*madt = table_at(b, gpa, "APIC");
	}
	assert_non_null(*fadt);
	assert_non_null(*madt);
}

static const uint8_t *fadt_check(const struct built *b, const uint8_t *f)
{
	assert_int_equal(get32(f + 4), 276);
	assert_int_equal(f[8], 6);
	assert_int_equal(get32(f + 112) & (1u << 20), 1u << 20); /* HW_REDUCED_ACPI */
	assert_int_equal(get32(f + 36), 0);			 /* no FACS */
	assert_int_equal(get64(f + 132), 0);
	assert_int_equal(get32(f + 40), get64(f + 140)); /* DSDT and X_DSDT agree */
	return table_at(b, get64(f + 140), "DSDT");
}

static void madt_check(const uint8_t *m, uint32_t ncpus)
{
	uint32_t len = get32(m + 4), off, lapics = 0, ioapics = 0, isos = 0;

	assert_int_equal(get32(m + 36), 0xfee00000u);
	assert_int_equal(get32(m + 40) & 1, 1); /* PCAT_COMPAT */
	for (off = 44; off < len; off += m[off + 1]) {
		const uint8_t *e = m + off;

		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0: /* Processor Local APIC */
			assert_int_equal(e[1], 8);
			assert_int_equal(e[3], lapics); /* APIC ids 0 .. ncpus-1, in order */
			assert_int_equal(get32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1: /* I/O APIC */
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], ncpus);
			assert_int_equal(get32(e + 4), 0xfec00000u);
			assert_int_equal(get32(e + 8), 0);
			ioapics++;
			break;
		case 2: /* Interrupt Source Override: the PIT */
			assert_int_equal(e[1], 10);
			assert_int_equal(e[3], 0);
			assert_int_equal(get32(e + 4), 2);
			isos++;
			break;
		case 4: /* Local APIC NMI */
			assert_int_equal(e[1], 6);
			break;
		default:
			fail_msg("MADT entry type %u", e[0]);
		}
	}
	assert_int_equal(off, len);
	assert_int_equal(lapics, ncpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
}

static unsigned count(const uint8_t *hay, size_t n, const void *needle, size_t len)
{
	unsigned c = 0;
	size_t i;

	for (i = 0; i + len <= n; i++)
		c += !memcmp(hay + i, needle, len);
	return c;
}

/* The DSDT's devices, found by their encodings in the AML (iasl parses it for real). */
static void dsdt_check(const uint8_t *d, unsigned nvirtio, bool com1)
{
	static const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01}; /* EisaId */
	struct acpi_mmio_dev devs[HV_MAX_VIRTIO];
	uint32_t len = get32(d + 4);
	unsigned i;

	devices(devs, nvirtio);
	assert_int_equal(count(d, len, "LNRO0005", 8), nvirtio);
	assert_int_equal(count(d, len, pnp0501, sizeof(pnp0501)), com1);
	for (i = 0; i < nvirtio; i++) {
		uint32_t base = (uint32_t)devs[i].base, gsi = devs[i].gsi;
		/* Memory32Fixed(ReadWrite, base, size) */
		uint8_t mem[12] = {0x86, 0x09, 0x00, 0x01};
		/* Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive) { gsi } */
		const uint8_t irq[] = {0x89, 0x06, 0x00, 0x01, 0x01, (uint8_t)gsi, 0, 0, 0};
		char name[5] = {'V', 'I', 'O', (char)('0' + i), 0};

		put32(mem + 4, base);
		put32(mem + 8, devs[i].size);
		assert_int_equal(count(d, len, mem, sizeof(mem)), 1);
		assert_int_equal(count(d, len, irq, sizeof(irq)), 1);
		assert_int_equal(count(d, len, name, 4), 1);
	}
}

static void check_all(const struct built *b, uint32_t ncpus, unsigned nvirtio, bool com1)
{
	const uint8_t *fadt, *madt, *dsdt;
	size_t i;

	xsdt_check(b, &fadt, &madt);
	dsdt = fadt_check(b, fadt);
	madt_check(madt, ncpus);
	dsdt_check(dsdt, nvirtio, com1);
	/* the DSDT comes last and ends the tables; nothing past them is touched */
	assert_int_equal((size_t)(dsdt - b->buf) + get32(dsdt + 4), b->used);
	for (i = b->used; i < sizeof(b->buf); i++)
		assert_int_equal(b->buf[i], 0xa5);
}

static void tables_for_each_size(void **state)
{
	static const uint32_t ncpus[] = {1, 2, 8};
	static const unsigned nvirtio[] = {0, 1, 8};
	static struct built b;
	size_t c, v;

	for (c = 0; c < sizeof(ncpus) / sizeof(ncpus[0]); c++) {
		for (v = 0; v < sizeof(nvirtio) / sizeof(nvirtio[0]); v++) {
			assert_int_equal(build(&b, GPA, ncpus[c], nvirtio[v], true), 0);
			check_all(&b, ncpus[c], nvirtio[v], true);
		}
	}
	assert_int_equal(build(&b, GPA, 2, 1, false), 0);
	check_all(&b, 2, 1, false);
}

/* Tables the guest sees at an odd address still put the RSDP and each table on its boundary. */
static void unaligned_address(void **state)
{
	static struct built b;
	const uint8_t *fadt, *madt;

	assert_int_equal(build(&b, GPA + 4, 2, 1, true), 0);
	assert_int_equal(b.rsdp, GPA + 16);
	check_all(&b, 2, 1, true);
	xsdt_check(&b, &fadt, &madt);
	assert_int_equal(get64(fadt + 140) % 8, 0);
}

static void too_small(void **state)
{
	static struct built b;
	struct acpi_mmio_dev d[HV_MAX_VIRTIO];
	struct acpi_config cfg = {.ncpus = 8, .virtio = d, .nvirtio = 8, .com1 = true};
	uint8_t small[BUF_SIZE];
	uint64_t rsdp = 0;
	size_t used = 0, need, i;
	char why[200] = "";

	assert_int_equal(build(&b, GPA, 8, 8, true), 0);
	need = b.used;
	devices(d, 8);
	memset(small, 0x5a, sizeof(small));
	/* one byte short: refused, the size needed reported, nothing written */
	assert_int_equal(acpi_build(&cfg, GPA, small, need - 1, &rsdp, &used, why, sizeof(why)),
			 -ENOSPC);
	assert_int_equal(used, need);
	assert_non_null(strstr(why, "need"));
	for (i = 0; i < sizeof(small); i++)
		assert_int_equal(small[i], 0x5a);
	/* no buffer at all: a way to ask for the size */
	used = 0;
	assert_int_equal(acpi_build(&cfg, GPA, NULL, 0, &rsdp, &used, NULL, 0), -ENOSPC);
	assert_int_equal(used, need);
	/* exactly enough: the same tables */
	assert_int_equal(acpi_build(&cfg, GPA, small, need, &rsdp, &used, why, sizeof(why)), 0);
	assert_memory_equal(small, b.buf, need);
}

static void refuse(struct acpi_config *cfg, uint64_t gpa, const char *what)
{
	uint8_t buf[BUF_SIZE];
	uint64_t rsdp;
	size_t used;
	char why[200] = "";

	assert_int_equal(acpi_build(cfg, gpa, buf, sizeof(buf), &rsdp, &used, why, sizeof(why)),
			 -EINVAL);
	print_message("refused (%s): %s\n", what, why);
	assert_true(why[0] != '\0');
}

static void out_of_range(void **state)
{
	struct acpi_mmio_dev d[HV_MAX_VIRTIO + 1];
	struct acpi_config cfg = {.ncpus = 1, .virtio = d, .nvirtio = 1, .com1 = true};

	devices(d, HV_MAX_VIRTIO);
	d[HV_MAX_VIRTIO] = d[0];
	d[HV_MAX_VIRTIO].base += 0x100000;
	cfg.ncpus = 0;
	refuse(&cfg, GPA, "no vCPU");
	cfg.ncpus = HV_MAX_VCPUS + 1;
	refuse(&cfg, GPA, "too many vCPUs");
	cfg.ncpus = 1;
	cfg.nvirtio = HV_MAX_VIRTIO + 1;
	refuse(&cfg, GPA, "too many virtio devices");
	cfg.nvirtio = 1;
	cfg.virtio = NULL;
	refuse(&cfg, GPA, "no device list");
	cfg.virtio = d;
	refuse(&cfg, 0x100000000ull, "tables above 4 GiB");
	refuse(&cfg, 0xffffff00ull, "tables across 4 GiB");

	d[0].gsi = 0;
	refuse(&cfg, GPA, "GSI 0 (the 8259s)");
	d[0].gsi = 2;
	refuse(&cfg, GPA, "GSI 2 (the PIT)");
	d[0].gsi = 24;
	refuse(&cfg, GPA, "GSI past the IOAPIC");
	d[0].gsi = 4;
	refuse(&cfg, GPA, "COM1's IRQ");
	d[0].gsi = 5;
	d[0].size = 0;
	refuse(&cfg, GPA, "empty window");
	d[0].size = 0x1000;
	d[0].base = 0xfffff800ull;
	refuse(&cfg, GPA, "window across 4 GiB");
	d[0].base = HV_VIRTIO_BASE;
	d[1].gsi = d[0].gsi;
	cfg.nvirtio = 2;
	refuse(&cfg, GPA, "two devices on one GSI");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tables_for_each_size),
		cmocka_unit_test(unaligned_address),
		cmocka_unit_test(too_small),
		cmocka_unit_test(out_of_range),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
