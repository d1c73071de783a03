/*
 * The precopy policies (hv_precopy.h): the pass-count policy of snapshots and
 * of replication's initial copy stops after its passes or once little is left
 * dirty, and never aborts; a policy's answer is what the loop does (the loop
 * itself runs on real VMs in the kvm tests: test_snapshot, kvm_repl_*).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "hypervisor/hv.h"

static void passes_policy(void **state)
{
	struct hv_precopy_passes eight = {.max_passes = 8, .stop_pages = 256};
	struct hv_precopy_passes one = {.max_passes = 1};
	struct hv_precopy_stats st = {.passes = 1, .ram_pages = 262144, .pending_pages = 100000};

	(void)state;
	/* much left, passes left: go on */
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_CONTINUE);
	st.passes = 7;
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_CONTINUE);
	/* the last pass: stop and copy whatever is left */
	st.passes = 8;
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_STOP_AND_COPY);
	/* little left: stop early */
	st.passes = 2;
	st.pending_pages = 256;
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_STOP_AND_COPY);
	st.pending_pages = 257;
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_CONTINUE);
	/* a guest dirtying faster than the link never makes it abort: it stops at 8 */
	st.dirty_rate_pps = 1000000;
	st.link_rate_bps = 1;
	st.passes = 8;
	assert_int_equal(hv_precopy_passes_policy(&eight, &st), HV_PRECOPY_STOP_AND_COPY);
	/* a snapshot's single pass */
	st.passes = 1;
	assert_int_equal(hv_precopy_passes_policy(&one, &st), HV_PRECOPY_STOP_AND_COPY);
	assert_string_equal(hv_precopy_action_str(HV_PRECOPY_ABORT), "abort");
	assert_string_equal(hv_precopy_action_str(HV_PRECOPY_STOP_AND_COPY), "stop-and-copy");
	assert_string_equal(hv_precopy_action_str(HV_PRECOPY_CONTINUE), "continue");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(passes_policy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
