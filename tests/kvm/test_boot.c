/*
 * The test guest boots with 1, 2 and 4 vCPUs: every vCPU runs its workload in
 * ring 3, its counter advances, its outputs arrive in order, and vCPU 0's
 * serial text appears.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>

#include "tests/kvm/kvm_common.h"

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = 0;
}

static void boot_with(uint32_t ncpus)
{
	char serial_path[] = "/tmp/castor-test-serial-XXXXXX";
	struct hv_tg_config tg;
	struct hv_tg_vcpu t0[HV_MAX_VCPUS], t1;
	struct hv_vm *vm;
	char text[8192];
	uint32_t i;
	int fd, tries;

	fd = mkstemp(serial_path);
	assert_true(fd >= 0);
	kvm_test_tg_config(&tg);
	tg.rate = 50;
	tg.out_rate = 500;
	tg.serial_tick = true;
	vm = kvm_test_vm(ncpus, 64ull << 20, &tg, fd);
	assert_non_null(vm);

	util_sleep_ns(200 * 1000000ull);
	for (i = 0; i < ncpus; i++)
		assert_int_equal(hv_tg_vcpu(vm, i, &t0[i]), 0);
	util_sleep_ns(1100 * 1000000ull); /* past one serial tick */
	for (i = 0; i < ncpus; i++) {
		assert_int_equal(hv_tg_vcpu(vm, i, &t1), 0);
		assert_true(t1.ready);
		assert_false(t1.faulted);
		assert_true(t1.counter > t0[i].counter);
		assert_true(t1.outputs_seen > t0[i].outputs_seen);
		assert_int_equal(t1.order_errors, 0);
	}

	/*
	 * With the VM paused, every vCPU was running its workload in ring 3.
	 * vCPU 0's serial tick uses port I/O, which kvm_pvm turns into a #GP that
	 * the guest carries out in ring 0 (about 3 ms a second): a pause that lands
	 * there is retried. Ten misses in a row would mean the guest is not in ring 3.
	 */
	for (tries = 0;; tries++) {
		uint32_t in_ring3 = 0;

		assert_true(tries < 10);
		assert_int_equal(hv_vm_pause(vm), 0);
		for (i = 0; i < ncpus; i++) {
			struct hv_vcpu_brief b;

			assert_int_equal(hv_vcpu_brief(vm, i, &b), 0);
			assert_true(b.long_mode);
			in_ring3 += b.cpl == 3;
		}
		assert_int_equal(hv_vm_resume(vm), 0);
		if (in_ring3 == ncpus)
			break;
		util_sleep_ns(7 * 1000000ull);
	}
	hv_vm_free(vm);

	read_file(serial_path, text, sizeof(text));
	unlink(serial_path);
	close(fd);
	assert_non_null(strstr(text, "castor-tg: boot=castor"));
	assert_non_null(strstr(text, "castor-tg: t="));
}

static void boot_1cpu(void **state)
{
	boot_with(1);
}

static void boot_2cpu(void **state)
{
	boot_with(2);
}

static void boot_4cpu(void **state)
{
	boot_with(4);
}

/* A running VM refuses register reads: they need it paused. */
static void brief_needs_pause(void **state)
{
	struct hv_tg_config tg;
	struct hv_vcpu_brief b;
	struct hv_vm *vm;

	kvm_test_tg_config(&tg);
	vm = kvm_test_vm(1, 32ull << 20, &tg, -1);
	assert_non_null(vm);
	assert_int_equal(hv_vcpu_brief(vm, 0, &b), -EBUSY);
	hv_vm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(boot_1cpu),
		cmocka_unit_test(boot_2cpu),
		cmocka_unit_test(boot_4cpu),
		cmocka_unit_test(brief_needs_pause),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
