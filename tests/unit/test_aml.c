/*
 * The AML encoder (hypervisor/boot/aml.c) byte for byte against the ACPI
 * spec's grammar: PkgLength at each of its width boundaries, the shortest
 * integer encodings, NameStrings (root, dual, multi), EISA ids, resource
 * descriptors, bad names refused, and a buffer that is too small never
 * written past. The DSDT as a whole is checked by iasl (test_acpi_iasl.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "hypervisor/boot/aml.h"

#define CAP 0x20000u

static uint8_t out[CAP];

static void start(struct aml *a)
{
	memset(out, 0xee, sizeof(out));
	aml_init(a, out, sizeof(out));
}

static void expect(const struct aml *a, const uint8_t *bytes, size_t n)
{
	assert_int_equal(aml_status(a), 0);
	assert_int_equal(a->len, n);
	assert_memory_equal(out, bytes, n);
}

/* PkgLength as the spec decodes it: the value and the bytes it took. */
static size_t pkg_length(const uint8_t *p, size_t *bytes)
{
	size_t n = (p[0] >> 6) + 1, v, i;

	*bytes = n;
	if (n == 1)
		return p[0] & 0x3f;
	v = p[0] & 0x0f;
	for (i = 1; i < n; i++)
		v |= (size_t)p[i] << (4 + 8 * (i - 1));
	return v;
}

/*
 * Scope(ABCD) around a string: body = name (4) + string (2 + chars). The
 * PkgLength must take 1 byte up to 63 in all, 2 up to 4095, 3 up to 2^20-1,
 * and count itself.
 */
static void pkg_length_widths(void **state)
{
	static const struct {
		size_t body, width;
	} cases[] = {
		{6, 1},
		{62, 1},
		{63, 2},
		{4093, 2},
		{4094, 3},
		{(1u << 20) - 4, 3},
		{(1u << 20) - 3, 4},
	};
	static char str[1u << 20];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t chars = cases[i].body - 6, width, mark;
		struct aml a;
		uint8_t *big = NULL;

		if (cases[i].body + 8 > CAP) {
			big = test_malloc(cases[i].body + 8 + 16);
			aml_init(&a, big, cases[i].body + 8 + 16);
		} else {
			start(&a);
		}
		memset(str, 'x', chars);
		str[chars] = '\0';
		mark = aml_scope_begin(&a, "ABCD");
		aml_string(&a, str);
		aml_end(&a, mark);
		assert_int_equal(aml_status(&a), 0);
		{
			const uint8_t *p = big ? big : out;

			assert_int_equal(p[0], 0x10);
			assert_int_equal(pkg_length(p + 1, &width), cases[i].width + cases[i].body);
			assert_int_equal(width, cases[i].width);
			assert_int_equal(a.len, 1 + width + cases[i].body);
			assert_memory_equal(p + 1 + width, "ABCD\x0d", 5);
			assert_int_equal(p[a.len - 1], 0);
		}
		test_free(big);
	}
}

static void integers(void **state)
{
	static const struct {
		uint64_t v;
		uint8_t bytes[9];
		size_t n;
	} cases[] = {
		{0, {0x00}, 1},
		{1, {0x01}, 1},
		{2, {0x0a, 0x02}, 2},
		{0xff, {0x0a, 0xff}, 2},
		{0x100, {0x0b, 0x00, 0x01}, 3},
		{0xffff, {0x0b, 0xff, 0xff}, 3},
		{0x10000, {0x0c, 0x00, 0x00, 0x01, 0x00}, 5},
		{0xd0001000, {0x0c, 0x00, 0x10, 0x00, 0xd0}, 5},
		{0x100000000ull, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}, 9},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aml a;

		start(&a);
		aml_integer(&a, cases[i].v);
		expect(&a, cases[i].bytes, cases[i].n);
	}
}

typedef void (*put_name_fn)(struct aml *a, const char *name);

/* Each of bad[] is refused: aml_status() says -EINVAL and nothing is written. */
static void refused(put_name_fn put, const char *const *bad, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		struct aml a;

		start(&a);
		put(&a, bad[i]);
		assert_int_equal(aml_status(&a), -EINVAL);
		assert_int_equal(a.len, 0);
	}
}

static void names(void **state)
{
	static const struct {
		const char *path;
		uint8_t bytes[16];
		size_t n;
	} cases[] = {
		{"\\_SB", {0x5c, '_', 'S', 'B', '_'}, 5},
		{"A.BC", {0x2e, 'A', '_', '_', '_', 'B', 'C', '_', '_'}, 9},
		{"\\_SB.COM1._CRS",
		 {0x5c, 0x2f, 3, '_', 'S', 'B', '_', 'C', 'O', 'M', '1', '_', 'C', 'R', 'S'},
		 15},
		{"\\", {0x5c, 0x00}, 2},
	};
	static const uint8_t name_op[] = {0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N',
					  'R',	'O', '0', '0', '0', '5',  0x00};
	static const char *const bad[] = {"", "abcd", "1ABC", "ABCDE", "A..B", "A.", ".A", "A-B"};
	struct aml a;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		start(&a);
		aml_name_string(&a, cases[i].path);
		expect(&a, cases[i].bytes, cases[i].n);
	}
	start(&a);
	aml_name(&a, "_HID");
	aml_string(&a, "LNRO0005");
	expect(&a, name_op, sizeof(name_op));
	refused(aml_name, bad, sizeof(bad) / sizeof(bad[0]));
	refused(aml_name_string, bad, sizeof(bad) / sizeof(bad[0]));
}

/* EisaId("PNP0501"): the compressed id, most significant byte first. */
static void eisa_ids(void **state)
{
	static const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
	static const char *const bad[] = {"pnp0501", "PNP050G", "PNP05011", "PN0501"};
	struct aml a;

	start(&a);
	aml_eisaid(&a, "PNP0501");
	expect(&a, pnp0501, sizeof(pnp0501));
	refused(aml_eisaid, bad, sizeof(bad) / sizeof(bad[0]));
}

/* A ResourceTemplate: Buffer, PkgLength, size, descriptors, end tag (ACPI 6.4). */
static void resource_template(void **state)
{
	static const uint8_t want[] = {
		0x11, 0x25, 0x0a, 0x22, /* Buffer(34): PkgLength 37, BufferSize 34 */
		0x86, 0x09, 0x00, 0x01, 0x00, 0x20, 0x00, 0xd0,	      /* Memory32Fixed(ReadWrite, */
		0x00, 0x10, 0x00, 0x00,				      /*   0xd0002000, 0x1000) */
		0x89, 0x06, 0x00, 0x01, 0x01, 0x07, 0x00, 0x00, 0x00, /* Interrupt(...) {7} */
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, /* IO(Decode16, 0x3f8, .., 8) */
		0x22, 0x10, 0x00,				/* IRQNoFlags() {4} */
		0x79, 0x00,					/* EndTag */
	};
	struct aml a;
	size_t mark;

	start(&a);
	mark = aml_res_begin(&a);
	aml_res_memory32_fixed(&a, true, 0xd0002000u, 0x1000);
	aml_res_interrupt(&a, AML_IRQ_CONSUMER, 7);
	aml_res_io(&a, 0x3f8, 8);
	aml_res_irq_noflags(&a, 4);
	aml_res_end(&a, mark);
	expect(&a, want, sizeof(want));
}

/* The same AML measured without a buffer, then written into exactly `peak` bytes. */
static size_t device(struct aml *a)
{
	size_t dev = aml_device_begin(a, "VIO0"), crs;

	aml_name(a, "_HID");
	aml_string(a, "LNRO0005");
	aml_name(a, "_CRS");
	crs = aml_res_begin(a);
	aml_res_memory32_fixed(a, true, 0xd0000000u, 0x1000);
	aml_res_end(a, crs);
	aml_end(a, dev);
	return a->len;
}

static void measure_then_write(void **state)
{
	struct aml m, a;
	uint8_t *buf;
	size_t len;

	aml_init(&m, NULL, 0);
	len = device(&m);
	assert_int_equal(aml_status(&m), -ENOSPC);
	assert_true(m.peak >= len);
	buf = test_malloc(m.peak + 1);
	buf[m.peak] = 0xee;
	aml_init(&a, buf, m.peak);
	assert_int_equal(device(&a), len);
	assert_int_equal(aml_status(&a), 0);
	assert_int_equal(buf[m.peak], 0xee);
	assert_memory_equal(buf, "\x5b\x82", 2);
	test_free(buf);
}

/* Every capacity short of the peak fails without writing past it. */
static void too_small(void **state)
{
	struct aml m, a;
	size_t cap;

	aml_init(&m, NULL, 0);
	device(&m);
	for (cap = 0; cap < m.peak; cap++) {
		memset(out, 0xee, sizeof(out));
		aml_init(&a, out, cap);
		assert_int_equal(device(&a), m.len);
		assert_int_equal(aml_status(&a), -ENOSPC);
		assert_int_equal(out[cap], 0xee);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pkg_length_widths),
		cmocka_unit_test(integers),
		cmocka_unit_test(names),
		cmocka_unit_test(eisa_ids),
		cmocka_unit_test(resource_template),
		cmocka_unit_test(measure_then_write),
		cmocka_unit_test(too_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
