/*
 * The checker proves a copy of test-guest RAM exact: a paused VM's RAM
 * verifies, and a copy with one flipped byte, one stale page or one lost
 * write does not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "tests/kvm/kvm_common.h"

static void checker(void **state)
{
	struct hv_tg_config tg;
	struct hv_tg_check res;
	struct hv_vm *vm;
	uint64_t mem = 64ull << 20, base1, bad;
	uint8_t *copy;
	int rc;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.wss_bytes = 256 * 1024; /* 64 pages: many full cycles */
	vm = kvm_test_vm(2, mem, &tg, -1);
	assert_non_null(vm);
	util_sleep_ns(200 * 1000000ull);
	assert_int_equal(hv_vm_pause(vm), 0);
	copy = malloc(mem);
	assert_non_null(copy);
	memcpy(copy, hv_ram_base(vm), mem);
	assert_int_equal(hv_vm_resume(vm), 0);
	hv_vm_free(vm);

	rc = hv_tg_check_ram(copy, mem, &res);
	if (rc)
		print_error("checker: %s\n", res.why);
	assert_int_equal(rc, 0);
	assert_int_equal(res.ncpus, 2);
	assert_true(res.counters[0] > 64 * 10); /* wrapped many times */
	assert_true(res.pages_checked >= 2 * 63);

	/*
	 * One flipped byte in vCPU 1's region, in a page other than the one
	 * the vCPU was writing when paused (the checker skips that page).
	 */
	base1 = tg_region_base(1, 64);
	bad = base1 + ((res.counters[1] + 5) % 64) * 4096;
	copy[bad + 100] ^= 0x40;
	assert_int_equal(hv_tg_check_ram(copy, mem, &res), -EBADMSG);
	assert_int_equal(res.first_bad_gpa, bad);
	assert_true(strlen(res.why) > 0);
	copy[bad + 100] ^= 0x40;
	assert_int_equal(hv_tg_check_ram(copy, mem, &res), 0);

	/* a counter that claims a write the page does not hold (a lost write) */
	((struct tg_vcpu_state *)(copy + 0))->counter = 0; /* not the state page: no effect */
	{
		struct tg_image_header *h =
			(struct tg_image_header *)(copy + TG_LOAD_ADDR + TG_IMAGE_HDR_OFFSET);
		struct tg_vcpu_state *st = (struct tg_vcpu_state *)(copy + h->state_gpa);

		st->counter += 2;
		assert_int_equal(hv_tg_check_ram(copy, mem, &res), -EBADMSG);
		st->counter -= 2;
	}
	/* not a test guest at all */
	memset(copy + TG_PARAMS_GPA, 0, 4096);
	assert_int_equal(hv_tg_check_ram(copy, mem, &res), -EINVAL);
	free(copy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(checker),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
