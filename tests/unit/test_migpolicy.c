/*
 * The precopy policy of live migration (migrate/policy.c) against a simulated
 * guest and link: each pass sends what is dirty at the link's rate while the
 * guest, slowed by the policy's throttle, dirties pages of its working set.
 * An idle guest stops after one pass; a slow one converges without throttling
 * within the downtime; one that outruns the link is throttled until it
 * converges; one that cannot be caught even at 99 % is given up at the
 * timeout -- the loop always ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "migrate/mig.h"

#define PAGE_WIRE (HV_PAGE_SIZE + 8)

struct sim {
	uint64_t ram_pages, wss_pages;
	double link_bps, dirty_pps; /* the guest unthrottled */
};

struct outcome {
	enum hv_precopy_action action;
	uint32_t passes, throttle;
	double downtime_ms; /* what the stop-and-copy would take */
};

static struct outcome run(const struct sim *s, const struct mig_policy_opts *o)
{
	struct mig_policy p;
	struct hv_precopy_stats st;
	uint64_t pending = s->ram_pages;
	struct outcome out = {0};

	mig_policy_init(&p, o);
	memset(&st, 0, sizeof(st));
	st.ram_pages = s->ram_pages;
	for (;;) {
		double secs = (double)pending * PAGE_WIRE / s->link_bps;
		double rate = s->dirty_pps * (100.0 - mig_policy_throttle(&p)) / 100.0;
		uint64_t dirtied = (uint64_t)(rate * secs);
		enum hv_precopy_action a;

		st.passes++;
		st.pass_pages = pending;
		st.pass_bytes = pending * PAGE_WIRE;
		st.pass_ns = (uint64_t)(secs * 1e9);
		st.total_pages += pending;
		st.total_ns += st.pass_ns;
		st.link_rate_bps = (uint64_t)s->link_bps;
		st.dirty_rate_pps = (uint64_t)rate;
		st.pending_pages = dirtied < s->wss_pages ? dirtied : s->wss_pages;
		a = mig_policy_decide(&p, &st);
		assert_true(p.why[0] != 0);
		if (a != HV_PRECOPY_CONTINUE) {
			out.action = a;
			out.passes = st.passes;
			out.throttle = mig_policy_throttle(&p);
			out.downtime_ms = (double)st.pending_pages * PAGE_WIRE / s->link_bps * 1e3;
			return out;
		}
		pending = st.pending_pages;
		assert_true(st.passes < 100000); /* the policy must end it long before */
	}
}

static const struct mig_policy_opts dflt = {.downtime_ms = 30, .timeout_ns = 60ull * 1000000000};

static void idle_guest(void **state)
{
	/* 1 GiB, nothing dirtied: one pass and the copy is done */
	const struct sim s = {.ram_pages = 262144, .wss_pages = 262144, .link_bps = 1e9};
	struct outcome o = run(&s, &dflt);

	(void)state;
	assert_int_equal(o.action, HV_PRECOPY_STOP_AND_COPY);
	assert_int_equal(o.passes, 1);
	assert_int_equal(o.throttle, 0);
}

static void slow_guest_converges(void **state)
{
	/* 50 MB/s of dirtying against a 1 GB/s link: a few passes, no throttle */
	const struct sim s = {.ram_pages = 262144,
			      .wss_pages = 65536,
			      .link_bps = 1e9,
			      .dirty_pps = 50e6 / HV_PAGE_SIZE};
	struct outcome o = run(&s, &dflt);

	(void)state;
	assert_int_equal(o.action, HV_PRECOPY_STOP_AND_COPY);
	assert_int_equal(o.throttle, 0);
	assert_true(o.passes <= 5);
	assert_true(o.downtime_ms <= 30.0);
}

static void fast_guest_throttled(void **state)
{
	/* 2 GB/s of dirtying over a 64 MiB set against a 500 MB/s link: throttled until it
	 * converges, then stopped within the downtime */
	const struct sim s = {.ram_pages = 262144,
			      .wss_pages = 16384,
			      .link_bps = 5e8,
			      .dirty_pps = 2e9 / HV_PAGE_SIZE};
	struct outcome o = run(&s, &dflt);

	(void)state;
	assert_int_equal(o.action, HV_PRECOPY_STOP_AND_COPY);
	assert_true(o.throttle >= 20);
	assert_true(o.downtime_ms <= 30.0);
}

static void hopeless_guest_given_up(void **state)
{
	/* a 256 MiB set rewritten at 20 GB/s over a 10 MB/s link: even at 99 % it outruns
	 * the link; the policy gives up at the timeout with the reason */
	const struct sim s = {.ram_pages = 262144,
			      .wss_pages = 65536,
			      .link_bps = 1e7,
			      .dirty_pps = 2e10 / HV_PAGE_SIZE};
	const struct mig_policy_opts o5 = {.downtime_ms = 30, .timeout_ns = 900ull * 1000000000};
	struct outcome o = run(&s, &o5);

	(void)state;
	assert_int_equal(o.action, HV_PRECOPY_ABORT);
	assert_int_equal(o.throttle, 99); /* raised at every pass that did not converge */
}

static void no_throttle_meets_the_timeout(void **state)
{
	/* the guest fast_guest_throttled converges with: never throttled, it outruns the link
	 * until the timeout, and the reason says throttling is off */
	const struct sim s = {.ram_pages = 262144,
			      .wss_pages = 16384,
			      .link_bps = 5e8,
			      .dirty_pps = 2e9 / HV_PAGE_SIZE};
	const struct mig_policy_opts o = {
		.downtime_ms = 30, .timeout_ns = 60ull * 1000000000, .no_throttle = true};
	struct mig_policy p;
	struct outcome out = run(&s, &o);

	(void)state;
	assert_int_equal(out.action, HV_PRECOPY_ABORT);
	assert_int_equal(out.throttle, 0);
	mig_policy_init(&p, &o);
	{
		struct hv_precopy_stats st = {.passes = 2,
					      .pass_pages = 16384,
					      .pass_bytes = 16384ull * PAGE_WIRE,
					      .pass_ns = 1000000000,
					      .total_ns = 2000000000,
					      .link_rate_bps = 500000000,
					      .dirty_rate_pps = 500000,
					      .pending_pages = 16384};

		p.last_pending = 16384;
		assert_int_equal(mig_policy_decide(&p, &st), HV_PRECOPY_CONTINUE);
		assert_int_equal(mig_policy_throttle(&p), 0);
		assert_non_null(strstr(p.why, "throttling is off"));
	}
}

static void defaults(void **state)
{
	const struct mig_policy_opts none = {0};
	struct mig_policy p;

	(void)state;
	mig_policy_init(&p, &none);
	assert_int_equal(p.o.downtime_ms, 30);
	assert_int_equal(p.o.throttle_first, 20);
	assert_int_equal(p.o.throttle_step, 10);
	assert_int_equal(p.o.throttle_max, 99);
	assert_true(p.o.timeout_ns > 0);
	assert_int_equal(mig_policy_throttle(&p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(idle_guest),
		cmocka_unit_test(slow_guest_converges),
		cmocka_unit_test(fast_guest_throttled),
		cmocka_unit_test(hopeless_guest_given_up),
		cmocka_unit_test(no_throttle_meets_the_timeout),
		cmocka_unit_test(defaults),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
