/*
 * Hot pages converge (issue 18): a guest sweeping 16 MiB as fast as it can,
 * harvested every 5 ms (paused, harvested, resumed: an epoch's rhythm), reaches
 * the same regime from a cold start (hot pages on while it sweeps at 5 ms) and
 * after a warm-up (hot pages found at 100 ms first, then 5 ms). Both are
 * measured over the same stretch of the guest's progress -- two sweeps and 64
 * harvests, after eight and 64 -- and compared with each other:
 *   - hot pages: within a factor 1.5, and at least half the working set;
 *   - write faults per page the guest writes: within a factor 1.5 (plus 0.02
 *     for noise), and below 0.5.
 * Why 1.5: the hot set is the working set less the 1/32 of it re-checked in a
 * harvest, and the faults per write are those re-checks (one per hot page per
 * 32 harvests) spread over however many writes a harvest holds; both depend on
 * the guest's speed between harvests, which a loaded host moves by tens of
 * percent, but a bistable rule (the one this replaces) moves them by 10-100x:
 * a cold start left every page cold (a fault per write) and a warm one hot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>

#include "tests/kvm/kvm_common.h"

#define SEC	  1000000000ull
#define MS	  1000000ull
#define WSS	  (16ull << 20)
#define WSS_PAGES (WSS / 4096)

struct regime {
	double hot;		 /* hot pages, mean over the harvests measured */
	double pages;		 /* pages per harvest, mean */
	double faults_per_write; /* cold faults per page the guest wrote */
	double writes;		 /* pages the guest wrote per harvest: its speed */
	unsigned harvests;
};

/*
 * Harvest every interval_ns (paused) until the guest has written `sweeps`
 * sweeps more and `harvests` harvests were made (a fast guest sweeps in less
 * than a harvest: the re-checks of 1/32 of RAM per harvest need 32 to come
 * round); with `r`, the regime over that stretch. Fails after 10 minutes
 * without that much progress (a hang guard, not a measure).
 */
static void run_sweeps(struct hv_vm *vm, struct util_bitmap *h, uint64_t interval_ns,
		       uint64_t sweeps, unsigned harvests, struct regime *r)
{
	struct hv_dirty_totals t0, t;
	struct hv_harvest_stats st;
	struct hv_tg_vcpu c0, c;
	uint64_t end = util_now_ns() + 600 * SEC;
	double hot = 0, pages = 0;
	unsigned n = 0;

	assert_int_equal(hv_tg_vcpu(vm, 0, &c0), 0);
	hv_dirty_totals(vm, &t0);
	for (;;) {
		util_sleep_ns(interval_ns);
		assert_int_equal(hv_vm_pause(vm), 0);
		assert_int_equal(hv_dirty_harvest(vm, h, &st), 0);
		assert_int_equal(hv_tg_vcpu(vm, 0, &c), 0);
		assert_int_equal(hv_vm_resume(vm), 0);
		hv_dirty_totals(vm, &t);
		hot += (double)t.hot_pages;
		pages += (double)st.pages;
		n++;
		if (c.counter - c0.counter >= sweeps * WSS_PAGES && n >= harvests)
			break;
		if (util_now_ns() > end)
			fail_msg("the guest wrote %" PRIu64 " pages in 10 minutes, not %" PRIu64,
				 c.counter - c0.counter, sweeps * WSS_PAGES);
		assert_false(c.faulted);
	}
	if (r) {
		r->hot = hot / n;
		r->pages = pages / n;
		r->faults_per_write =
			(double)(t.cold_faults - t0.cold_faults) / (double)(c.counter - c0.counter);
		r->writes = (double)(c.counter - c0.counter) / n;
		r->harvests = n;
	}
}

/* A fresh 1-vCPU guest sweeping 16 MiB at full speed, hot pages on; warm-up optional. */
static void regime(bool warm, struct regime *r)
{
	struct hv_tg_config tg;
	struct util_bitmap h;
	struct hv_vm *vm;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.wss_bytes = WSS;
	tg.out_rate = 0;
	vm = kvm_test_vm(1, 256ull << 20, &tg, -1);
	assert_non_null(vm);
	assert_int_equal(util_bitmap_init(&h, hv_ram_pages(vm)), 0);
	assert_int_equal(hv_dirty_start(vm), 0);
	assert_int_equal(hv_dirty_set_hot(vm, true), 0);
	if (warm)
		run_sweeps(vm, &h, 100 * MS, 2, 4, NULL);
	run_sweeps(vm, &h, 5 * MS, 8, 64, NULL);
	run_sweeps(vm, &h, 5 * MS, 2, 64, r);
	print_message("%s start: %.0f hot pages, %.0f pages per harvest, %.3f faults per write, "
		      "%.0f page writes per harvest (%u harvests)\n",
		      warm ? "warm" : "cold", r->hot, r->pages, r->faults_per_write, r->writes,
		      r->harvests);
	util_bitmap_dispose(&h);
	hv_vm_free(vm);
}

static void cold_and_warm_starts_converge(void **state)
{
	struct regime cold, warm;

	regime(false, &cold);
	regime(true, &warm);
	assert_true(cold.hot >= WSS_PAGES / 2 && warm.hot >= WSS_PAGES / 2);
	assert_true(cold.hot <= 1.5 * warm.hot && warm.hot <= 1.5 * cold.hot);
	assert_true(cold.faults_per_write < 0.5 && warm.faults_per_write < 0.5);
	assert_true(cold.faults_per_write <= 1.5 * warm.faults_per_write + 0.02);
	assert_true(warm.faults_per_write <= 1.5 * cold.faults_per_write + 0.02);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cold_and_warm_starts_converge),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
