/* Page bitmaps: the currency of dirty tracking, snapshots and replication. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>

#include "util/util.h"

static void set_clear_count(void **state)
{
	struct util_bitmap b;

	assert_int_equal(util_bitmap_init(&b, 130), 0);
	assert_int_equal(util_bitmap_count(&b), 0);
	util_bitmap_set(&b, 0);
	util_bitmap_set(&b, 63);
	util_bitmap_set(&b, 64);
	util_bitmap_set(&b, 129);
	util_bitmap_set(&b, 130); /* past the end: ignored */
	util_bitmap_set(&b, 1000);
	assert_int_equal(util_bitmap_count(&b), 4);
	assert_true(util_bitmap_is_set(&b, 63));
	assert_false(util_bitmap_is_set(&b, 62));
	assert_false(util_bitmap_is_set(&b, 130));
	util_bitmap_clear(&b, 63);
	assert_false(util_bitmap_is_set(&b, 63));
	assert_int_equal(util_bitmap_count(&b), 3);
	util_bitmap_set_all(&b);
	assert_int_equal(util_bitmap_count(&b), 130); /* no bits past nbits */
	util_bitmap_clear_all(&b);
	assert_int_equal(util_bitmap_count(&b), 0);
	util_bitmap_dispose(&b);
	util_bitmap_dispose(&b); /* idempotent */
}

static void ranges(void **state)
{
	struct util_bitmap b;
	uint64_t first, count, i;

	assert_int_equal(util_bitmap_init(&b, 1000), 0);
	for (first = 0; first < 200; first += 7) {
		for (count = 0; count < 200; count += 13) {
			util_bitmap_clear_all(&b);
			util_bitmap_set_range(&b, first, count);
			assert_int_equal(util_bitmap_count(&b), count);
			for (i = 0; i < 1000; i++)
				assert_int_equal(util_bitmap_is_set(&b, i),
						 i >= first && i < first + count);
		}
	}
	util_bitmap_clear_all(&b);
	util_bitmap_set_range(&b, 990, 100); /* clipped at the end */
	assert_int_equal(util_bitmap_count(&b), 10);
	util_bitmap_set_range(&b, 5000, 10);
	assert_int_equal(util_bitmap_count(&b), 10);
	util_bitmap_dispose(&b);
}

static void next_set_walks_every_bit(void **state)
{
	struct util_bitmap b;
	uint64_t p, n = 0, prev = 0;
	unsigned seed = 7;
	int i;

	assert_int_equal(util_bitmap_init(&b, 5000), 0);
	assert_int_equal(util_bitmap_next_set(&b, 0), 5000);
	for (i = 0; i < 300; i++)
		util_bitmap_set(&b, (uint64_t)rand_r(&seed) % 5000);
	for (p = util_bitmap_next_set(&b, 0); p < b.nbits; p = util_bitmap_next_set(&b, p + 1)) {
		assert_true(util_bitmap_is_set(&b, p));
		if (n)
			assert_true(p > prev);
		prev = p;
		n++;
	}
	assert_int_equal(n, util_bitmap_count(&b));
	assert_int_equal(util_bitmap_next_set(&b, 5000), 5000);
	assert_int_equal(util_bitmap_next_set(&b, 99999), 5000);
	util_bitmap_dispose(&b);
}

static void or_and_equal(void **state)
{
	struct util_bitmap a, b, c;

	assert_int_equal(util_bitmap_init(&a, 200), 0);
	assert_int_equal(util_bitmap_init(&b, 200), 0);
	assert_int_equal(util_bitmap_init(&c, 100), 0);
	util_bitmap_set(&a, 1);
	util_bitmap_set(&b, 2);
	util_bitmap_set(&b, 199);
	util_bitmap_or(&a, &b);
	assert_int_equal(util_bitmap_count(&a), 3);
	assert_false(util_bitmap_is_equal(&a, &b));
	util_bitmap_set(&b, 1);
	assert_true(util_bitmap_is_equal(&a, &b));
	assert_false(util_bitmap_is_equal(&a, &c)); /* sizes differ */
	util_bitmap_set_all(&b);
	util_bitmap_or(&c, &b); /* only c's 100 bits */
	assert_int_equal(util_bitmap_count(&c), 100);
	util_bitmap_dispose(&a);
	util_bitmap_dispose(&b);
	util_bitmap_dispose(&c);
}

/* CRC-32C: the standard check value, chunking, and the hardware path against the table. */
static void crc32c(void **state)
{
	uint8_t buf[1000];
	uint32_t c;
	size_t i;

	c = util_crc32c_final(util_crc32c_update(UTIL_CRC32C_INIT, "123456789", 9));
	assert_int_equal(c, 0xe3069283u);
	assert_int_equal(util_crc32c_final(util_crc32c_sw_update(UTIL_CRC32C_INIT, "123456789", 9)),
			 0xe3069283u);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	c = util_crc32c_update(UTIL_CRC32C_INIT, buf, 3);
	c = util_crc32c_update(c, buf + 3, 500);
	c = util_crc32c_update(c, buf + 503, sizeof(buf) - 503);
	assert_int_equal(c, util_crc32c_update(UTIL_CRC32C_INIT, buf, sizeof(buf)));
	assert_int_equal(c, util_crc32c_sw_update(UTIL_CRC32C_INIT, buf, sizeof(buf)));
	assert_int_equal(util_crc32c_update(UTIL_CRC32C_INIT, buf + 1, 999),
			 util_crc32c_sw_update(UTIL_CRC32C_INIT, buf + 1, 999)); /* unaligned */
}

/* Long buffers take the three-block path: every length and offset agrees with the table. */
static void crc32c_long(void **state)
{
	size_t size = 5 * 3 * 4096 + 777,
	       lens[] = {3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1, 2 * 3 * 4096 + 8, size - 3};
	uint8_t *buf = malloc(size);
	uint32_t seed = 12345;

	assert_non_null(buf);
	for (size_t i = 0; i < size; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
	for (size_t off = 0; off < 3; off++)
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
			assert_int_equal(util_crc32c_update(0x12345678u, buf + off, lens[k]),
					 util_crc32c_sw_update(0x12345678u, buf + off, lens[k]));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c),
		cmocka_unit_test(crc32c_long),
		cmocka_unit_test(set_clear_count),
		cmocka_unit_test(ranges),
		cmocka_unit_test(next_set_walks_every_bit),
		cmocka_unit_test(or_and_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
