/* Pause stops the guest, resume continues it, and pause/resume never hangs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "tests/kvm/kvm_common.h"

static void counters(struct hv_vm *vm, uint64_t *c, uint64_t *o)
{
	uint32_t i;

	for (i = 0; i < hv_vm_ncpus(vm); i++) {
		struct hv_tg_vcpu t;

		assert_int_equal(hv_tg_vcpu(vm, i, &t), 0);
		c[i] = t.counter;
		o[i] = t.outputs_seen;
	}
}

static void pause_stops_guest(void **state)
{
	uint64_t c0[HV_MAX_VCPUS], o0[HV_MAX_VCPUS], c1[HV_MAX_VCPUS], o1[HV_MAX_VCPUS];
	struct hv_tg_config tg;
	struct hv_vm *vm;
	uint32_t i;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.out_rate = 1000;
	vm = kvm_test_vm(2, 64ull << 20, &tg, -1);
	assert_non_null(vm);
	util_sleep_ns(50 * 1000000ull);

	assert_int_equal(hv_vm_pause(vm), 0);
	assert_true(hv_vm_is_paused(vm));
	counters(vm, c0, o0);
	util_sleep_ns(50 * 1000000ull);
	counters(vm, c1, o1);
	for (i = 0; i < 2; i++) {
		assert_int_equal(c0[i], c1[i]);
		assert_int_equal(o0[i], o1[i]);
	}
	/* nested pause: one resume is not enough */
	assert_int_equal(hv_vm_pause(vm), 0);
	assert_int_equal(hv_vm_resume(vm), 0);
	util_sleep_ns(20 * 1000000ull);
	counters(vm, c1, o1);
	assert_int_equal(c0[0], c1[0]);

	assert_int_equal(hv_vm_resume(vm), 0);
	assert_false(hv_vm_is_paused(vm));
	util_sleep_ns(50 * 1000000ull);
	counters(vm, c1, o1);
	for (i = 0; i < 2; i++)
		assert_true(c1[i] > c0[i]);
	/* a resume without a pause is refused */
	assert_int_equal(hv_vm_resume(vm), -EINVAL);
	hv_vm_free(vm);
}

static void many_cycles(void **state)
{
	uint64_t c0[HV_MAX_VCPUS], o0[HV_MAX_VCPUS], c1[HV_MAX_VCPUS], o1[HV_MAX_VCPUS];
	struct hv_tg_config tg;
	struct hv_pause_stats ps;
	struct hv_vm *vm;
	uint32_t i, n = 4;
	int k;

	kvm_test_tg_config(&tg);
	tg.rate = 200;
	tg.out_rate = 2000;
	vm = kvm_test_vm(n, 64ull << 20, &tg, -1);
	assert_non_null(vm);
	for (k = 0; k < 10000; k++) {
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_vm_resume(vm), 0);
	}
	hv_vm_pause_stats(vm, &ps);
	assert_true(ps.pauses >= 10000);
	/*
	 * every vCPU survived and still makes progress, outputs still in order;
	 * 4 vCPUs share 2 cores here, and a host that takes the CPU away (steal)
	 * can keep a woken vCPU off it for 100 ms: give them up to 5 s
	 */
	counters(vm, c0, o0);
	for (k = 0; k < 50; k++) {
		bool all = true;

		util_sleep_ns(100 * 1000000ull);
		counters(vm, c1, o1);
		for (i = 0; i < n; i++) {
			struct hv_vcpu_stats s;

			all &= hv_vcpu_stats(vm, i, &s) == 0 && s.state == HV_VCPU_S_RUNNING &&
			       c1[i] > c0[i];
		}
		if (all)
			break;
	}
	for (i = 0; i < n; i++) {
		struct hv_vcpu_stats s;
		struct hv_tg_vcpu t;

		assert_int_equal(hv_vcpu_stats(vm, i, &s), 0);
		assert_int_equal(s.state, HV_VCPU_S_RUNNING);
		assert_true(c1[i] > c0[i]);
		assert_int_equal(hv_tg_vcpu(vm, i, &t), 0);
		assert_int_equal(t.order_errors, 0);
	}
	hv_vm_free(vm);
}

/* Pause and resume from several threads at once: counted, never stuck. */
struct racer {
	struct hv_vm *vm;
	int errors;
};

static void *race_main(void *arg)
{
	struct racer *r = arg;
	int k;

	for (k = 0; k < 2000; k++) {
		if (hv_vm_pause(r->vm) < 0)
			r->errors++;
		if (hv_vm_resume(r->vm) < 0)
			r->errors++;
	}
	return NULL;
}

static void concurrent_pausers(void **state)
{
	struct hv_tg_config tg;
	struct racer r[3];
	pthread_t th[3];
	struct hv_vm *vm;
	int i;

	kvm_test_tg_config(&tg);
	vm = kvm_test_vm(2, 32ull << 20, &tg, -1);
	assert_non_null(vm);
	for (i = 0; i < 3; i++) {
		r[i] = (struct racer){vm, 0};
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
	}
	for (i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(r[i].errors, 0);
	}
	assert_false(hv_vm_is_paused(vm));
	hv_vm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pause_stops_guest),
		cmocka_unit_test(many_cycles),
		cmocka_unit_test(concurrent_pausers),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
