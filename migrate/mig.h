/*
 * castor_migrate: live migration (docs/migration.md). Built so far: the
 * precopy policy -- the decision, after every pass of hypervisor/precopy.c,
 * between another pass, the final stop-and-copy and giving up -- and how much
 * to throttle a guest that dirties faster than the link carries.
 *
 * The policy is a pure function of the pass statistics (hv_precopy_stats),
 * so every rule is tested without a VM (unit_migpolicy):
 *   - stop and copy as soon as what is left would go in --downtime at the
 *     link rate just measured;
 *   - a guest that does not converge (its dirty rate near or above the link
 *     rate, or what is left not shrinking) is throttled, as QEMU's
 *     auto-converge does: 20 %, then 10 % more at every pass that still does not
 *     converge, up to 99 %; the caller applies mig_policy_throttle();
 *   - past --timeout, give up: the source runs on unharmed. Never a loop
 *     without end.
 */
#ifndef CASTOR_MIG_H
#define CASTOR_MIG_H

#include <stdint.h>

#include "hypervisor/hv.h"
#include "replication/repl.h"

struct mig_policy_opts {
	uint32_t downtime_ms;	 /* the longest pause the guest may see; 0: 30 */
	uint64_t timeout_ns;	 /* give up after this long; 0: 10 minutes */
	uint32_t throttle_first; /* the first throttle, percent of vCPU time taken; 0: 20 */
	uint32_t throttle_step;	 /* added each time it still does not converge; 0: 10 */
	uint32_t throttle_max;	 /* 0: 99 */
	bool no_throttle; /* never throttle: a guest that does not converge meets the timeout */
	bool postcopy;	  /* switch to postcopy after the initial copy (repl_migration) */
	uint64_t test_cut_pages; /* test hook (repl_migration) */
};

struct mig_policy {
	struct mig_policy_opts o;
	uint32_t throttle;	       /* percent of vCPU time to take from the guest now */
	uint32_t throttle_raises;      /* how often it was raised */
	uint32_t stalled;	       /* passes in a row that did not converge */
	uint64_t last_pending;	       /* what was left after the previous pass */
	uint64_t expected_downtime_ns; /* at the last decision */
	enum hv_precopy_action last;
	char why[160]; /* the reason of the last decision, for progress and summaries */
};

void mig_policy_init(struct mig_policy *p, const struct mig_policy_opts *o);
/* An hv_precopy_policy_fn: `arg` is a struct mig_policy. */
enum hv_precopy_action mig_policy_decide(void *arg, const struct hv_precopy_stats *st);
/* The throttle the vCPUs should run under now (0: none). */
uint32_t mig_policy_throttle(const struct mig_policy *p);

/*
 * ---- the source (source.c) ----------------------------------------------------------
 * What a migration's source adds to the replication session that carries it
 * (repl_primary_opts.migrate): the policy above, asked after every round, and
 * the throttle it calls for, applied by a thread that pauses the whole VM
 * between 10 ms slices of running, long enough to take that share of its
 * time (QEMU's auto-converge rule). Free it after the session.
 */
struct mig_source;
struct mig_progress {
	uint32_t throttle; /* percent of the guest's time taken now */
	uint32_t throttle_raises;
	uint32_t throttle_peak; /* the most it took at any time */
	uint64_t throttled_ns;	/* paused by the throttle, in all */
	uint64_t expected_downtime_ns;
	enum hv_precopy_action last;
	char why[160]; /* the policy's last reason */
};
int mig_source_new(struct hv_vm *vm, const struct mig_policy_opts *o, struct mig_source **out);
const struct repl_migration *mig_source_session(struct mig_source *m);
void mig_source_progress(struct mig_source *m, struct mig_progress *out);
void mig_source_free(struct mig_source *m); /* stops the throttle; NULL is fine */

#endif
