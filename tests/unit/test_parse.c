/* Command-line values: sizes, numbers, guest parameters, VM limits, RAM layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"

static void sizes(void **state)
{
	uint64_t v;

	assert_int_equal(util_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util_parse_size("16M", &v), 0);
	assert_int_equal(v, 16ull << 20);
	assert_int_equal(util_parse_size("1G", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(util_parse_size("2gib", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(util_parse_size("1T", &v), 0);
	assert_int_equal(v, 1ull << 40);
	assert_int_equal(util_parse_size("64KB", &v), 0);
	assert_int_equal(v, 64ull << 10);
	assert_int_equal(util_parse_size("abc", &v), -EINVAL);
	assert_int_equal(util_parse_size("", &v), -EINVAL);
	assert_int_equal(util_parse_size("-1G", &v), -EINVAL);
	assert_int_equal(util_parse_size("1X", &v), -EINVAL);
	assert_int_equal(util_parse_size("1Gx", &v), -EINVAL);
	assert_int_equal(util_parse_size(" 1G", &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(util_parse_size("99999999999T", &v), -ERANGE);
	assert_int_equal(util_parse_size("010M", &v), 0);
	assert_int_equal(v, 10ull << 20);
	assert_int_equal(util_parse_size("0x10", &v), -EINVAL);
}

static void numbers(void **state)
{
	uint64_t v;

	assert_int_equal(util_parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	/* decimal only: a leading zero is not octal, and hex is refused */
	assert_int_equal(util_parse_u64("010", &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(util_parse_u64("08", &v), 0);
	assert_int_equal(v, 8);
	assert_int_equal(util_parse_u64("0x10", &v), -EINVAL);
	assert_int_equal(util_parse_u64("0X10", &v), -EINVAL);
	assert_int_equal(util_parse_u64("+5", &v), -EINVAL);
	assert_int_equal(util_parse_u64("5 ", &v), -EINVAL);
	assert_int_equal(util_parse_u64("18446744073709551615", &v), 0);
	assert_int_equal(util_parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(util_parse_u64("12a", &v), -EINVAL);
	assert_int_equal(util_parse_u64("-3", &v), -EINVAL);
	assert_int_equal(util_parse_u64(NULL, &v), -EINVAL);
}

static void signed_numbers(void **state)
{
	int64_t v;

	assert_int_equal(util_parse_i64("-10", &v), 0);
	assert_int_equal(v, -10);
	assert_int_equal(util_parse_i64("19", &v), 0);
	assert_int_equal(v, 19);
	assert_int_equal(util_parse_i64("-9223372036854775809", &v), -ERANGE);
	assert_int_equal(util_parse_i64("-", &v), -EINVAL);
	assert_int_equal(util_parse_i64("5x", &v), -EINVAL);
	assert_int_equal(util_parse_i64(" 5", &v), -EINVAL);
	assert_int_equal(util_parse_i64("", &v), -EINVAL);
	assert_int_equal(util_parse_i64("-010", &v), 0);
	assert_int_equal(v, -10);
	assert_int_equal(util_parse_i64("0x10", &v), -EINVAL);
}

static void guest_params(void **state)
{
	struct hv_tg_config c;
	char why[200];

	hv_tg_config_default(&c);
	assert_int_equal(hv_tg_config_set(&c, "wss=8M", why, sizeof(why)), 0);
	assert_int_equal(c.wss_bytes, 8ull << 20);
	assert_int_equal(hv_tg_config_set(&c, "rate=max", why, sizeof(why)), 0);
	assert_true(c.rate == TG_RATE_MAX);
	assert_int_equal(hv_tg_config_set(&c, "rate=250", why, sizeof(why)), 0);
	assert_int_equal(c.rate, 250);
	assert_int_equal(hv_tg_config_set(&c, "window=256", why, sizeof(why)), 0);
	assert_int_equal(hv_tg_config_set(&c, "window=257", why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "window"));
	assert_int_equal(hv_tg_config_set(&c, "window=0", why, sizeof(why)), -ERANGE);
	assert_int_equal(hv_tg_config_set(&c, "wss=100", why, sizeof(why)), -ERANGE);
	assert_int_equal(hv_tg_config_set(&c, "tick=2", why, sizeof(why)), -ERANGE);
	assert_int_equal(hv_tg_config_set(&c, "outrate=x", why, sizeof(why)), -EINVAL);
	assert_int_equal(hv_tg_config_set(&c, "colour=red", why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "unknown guest parameter 'colour'"));
	assert_int_equal(hv_tg_config_set(&c, "noequals", why, sizeof(why)), -EINVAL);
	assert_int_equal(hv_tg_config_set(&c, "=5", why, sizeof(why)), -EINVAL);
	/* the host side is decimal like every other number (the guest's own
	   multiboot parser takes 0x, documented in docs/test-guest.md) */
	assert_int_equal(hv_tg_config_set(&c, "seed=010", why, sizeof(why)), 0);
	assert_int_equal(c.seed, 10);
	assert_int_equal(hv_tg_config_set(&c, "seed=0x2a", why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "seed"));
}

static void vm_limits(void **state)
{
	struct hv_vm_config c = {.mem_bytes = 64ull << 20, .ncpus = 2};
	char why[200];

	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), 0);
	c.ncpus = 0;
	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "vCPU count 0"));
	c.ncpus = 99;
	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), -ERANGE);
	c.ncpus = HV_MAX_VCPUS;
	c.mem_bytes = 0;
	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "below the minimum"));
	c.mem_bytes = (64ull << 20) + 1;
	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), -EINVAL);
	c.mem_bytes = 1ull << 50; /* more than any host here has */
	assert_int_equal(hv_vm_config_check(&c, why, sizeof(why)), -ERANGE);
	assert_non_null(strstr(why, "available memory"));
}

static void ram_layout(void **state)
{
	uint64_t off;

	assert_int_equal(hv_ram_gpa_to_offset(1ull << 30, 0x1000, &off), 0);
	assert_int_equal(off, 0x1000);
	assert_int_equal(hv_ram_gpa_to_offset(1ull << 30, 1ull << 30, &off), -EFAULT);
	/* 5 GiB: 3 below the hole, 2 above 4 GiB */
	assert_int_equal(hv_ram_gpa_to_offset(5ull << 30, (3ull << 30) - 1, &off), 0);
	assert_int_equal(off, (3ull << 30) - 1);
	assert_int_equal(hv_ram_gpa_to_offset(5ull << 30, 3ull << 30, &off), -EFAULT);
	assert_int_equal(hv_ram_gpa_to_offset(5ull << 30, 4ull << 30, &off), 0);
	assert_int_equal(off, 3ull << 30);
	assert_int_equal(hv_ram_gpa_to_offset(5ull << 30, (6ull << 30) - 1, &off), 0);
	assert_int_equal(off, (5ull << 30) - 1);
	assert_int_equal(hv_ram_gpa_to_offset(5ull << 30, 6ull << 30, &off), -EFAULT);
}

/* The host's copy of the page rule agrees with itself: the window stays in the page. */
static void page_rule(void **state)
{
	uint64_t pfn;
	uint32_t w;

	for (pfn = 0; pfn < 5000; pfn += 7)
		for (w = 1; w <= TG_WINDOW_MAX; w += 51) {
			uint32_t ws = tg_window_start(pfn, 42, w);

			assert_true(ws >= 2);
			assert_true(ws + w <= TG_PAGE_WORDS);
		}
	assert_int_equal(tg_word(100, 5, 9, 64, 0), 100 ^ 9);
	assert_int_equal(tg_word(100, 5, 9, 64, 1), 5);
	assert_int_equal(tg_word(100, 5, 9, 64, 511), 0);
}

/* util_is_zero: empty is zero; one byte set anywhere, first or last, is not. */
static void zero_buffers(void **state)
{
	static uint8_t page[4096];

	(void)state;
	assert_true(util_is_zero(page, 0));
	assert_true(util_is_zero(page, sizeof(page)));
	page[0] = 1;
	assert_false(util_is_zero(page, sizeof(page)));
	assert_true(util_is_zero(page + 1, sizeof(page) - 1));
	page[0] = 0;
	page[sizeof(page) - 1] = 0x80;
	assert_false(util_is_zero(page, sizeof(page)));
	assert_true(util_is_zero(page, sizeof(page) - 1));
	page[sizeof(page) - 1] = 0;
}

/* util_mono_ts: a util_now_ns() instant as seconds and nanoseconds, and it is monotonic time. */
static void mono_ts(void **state)
{
	struct timespec ts = util_mono_ts(3000000000ull + 999999999ull), now;
	uint64_t t = util_now_ns();

	(void)state;
	assert_int_equal(ts.tv_sec, 3);
	assert_int_equal(ts.tv_nsec, 999999999);
	ts = util_mono_ts(t);
	clock_gettime(CLOCK_MONOTONIC, &now);
	assert_true(ts.tv_sec <= now.tv_sec && now.tv_sec - ts.tv_sec <= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(zero_buffers), cmocka_unit_test(sizes),
		cmocka_unit_test(numbers),	cmocka_unit_test(signed_numbers),
		cmocka_unit_test(guest_params), cmocka_unit_test(vm_limits),
		cmocka_unit_test(ram_layout),	cmocka_unit_test(page_rule),
		cmocka_unit_test(mono_ts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
