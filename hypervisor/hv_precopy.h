/*
 * The precopy loop: passes over the guest's dirty pages while it runs, before
 * the short pause that copies what is left. Mechanism apart from policy: the
 * loop (precopy.c) writes each pass and measures it; a policy callback looks
 * at the statistics after every pass and answers continue, stop-and-copy or
 * abort. A full snapshot, replication's initial copy and live migration are
 * the same loop with different policies.
 */
#ifndef CASTOR_HV_PRECOPY_H
#define CASTOR_HV_PRECOPY_H

#include <stdint.h>

enum hv_precopy_action {
	HV_PRECOPY_CONTINUE = 0,  /* another pass while the guest runs */
	HV_PRECOPY_STOP_AND_COPY, /* pause, copy what is left, finish */
	HV_PRECOPY_ABORT,	  /* give up: the save fails with -ECANCELED, the guest runs on */
};
const char *hv_precopy_action_str(enum hv_precopy_action a);

/* What the policy sees after each pass. Rates are 0 until they can be measured. */
struct hv_precopy_stats {
	uint32_t passes;	 /* passes done (>= 1 when the policy is asked) */
	uint64_t ram_pages;	 /* the guest's RAM */
	uint64_t pass_pages;	 /* pages written by the last pass */
	uint64_t pass_bytes;	 /* bytes the writer took for them */
	uint64_t pass_ns;	 /* how long the last pass took */
	uint64_t total_pages;	 /* pages written by all passes */
	uint64_t total_ns;	 /* since the first pass began */
	uint64_t dirty_rate_pps; /* pages the guest dirtied per second during the last pass */
	uint64_t link_rate_bps;	 /* bytes per second the writer took in the last pass */
	uint64_t pending_pages;	 /* dirty now: what the next pass or the pause would copy */
};
typedef enum hv_precopy_action (*hv_precopy_policy_fn)(void *arg,
						       const struct hv_precopy_stats *st);

/*
 * The policy of snapshots and of replication's initial copy: stop and copy
 * after `max_passes` passes, or as soon as at most `stop_pages` pages are
 * left dirty; never abort. `arg` is a struct hv_precopy_passes.
 */
struct hv_precopy_passes {
	uint32_t max_passes;
	uint64_t stop_pages;
};
enum hv_precopy_action hv_precopy_passes_policy(void *arg, const struct hv_precopy_stats *st);

#endif
