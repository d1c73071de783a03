/*
 * The HA pair's state machine (design.md §6). One const table says which
 * event moves a pair from which state to which, and under which guard: the
 * safety rules are guards evaluated on what the cluster knows (struct
 * cd_view), never on how long something has been silent:
 *
 *   - a replica is promoted only with quorum and only when the primary is
 *     known gone (its node left the membership, or its castord reported the
 *     VM's castor-vmm dead);
 *   - a primary whose replica is lost goes on unprotected, releasing the
 *     outputs it held, only with quorum and once the replica is known gone;
 *   - a node without quorum starts nothing, promotes nothing and releases
 *     nothing: every transition that could let a second copy talk to the
 *     world needs quorum. Entering DEGRADED (holding output) and stopping are
 *     always allowed: they only make the VM quieter.
 */
#define LOG_TAG "pair"
#include "clusterd/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

const char *cd_pair_state_str(enum cd_pair_state s)
{
	static const char *const n[CD_PAIR_N_STATES] = {
		[CD_PAIR_S_DEFINED] = "defined",	 [CD_PAIR_S_STARTING] = "starting",
		[CD_PAIR_S_UNPROTECTED] = "unprotected", [CD_PAIR_S_PLACING] = "placing",
		[CD_PAIR_S_SYNCING] = "syncing",	 [CD_PAIR_S_PROTECTED] = "protected",
		[CD_PAIR_S_DEGRADED] = "degraded",	 [CD_PAIR_S_FAILING_OVER] = "failing-over",
		[CD_PAIR_S_STOPPING] = "stopping",	 [CD_PAIR_S_MOVING] = "moving",
		[CD_PAIR_S_MIGRATING] = "migrating",
	};

	return (unsigned)s < CD_PAIR_N_STATES ? n[s] : "?";
}

const char *cd_pair_event_str(enum cd_pair_event e)
{
	static const char *const n[CD_PAIR_N_EVENTS] = {
		[CD_PAIR_E_START] = "start",
		[CD_PAIR_E_STARTED] = "started",
		[CD_PAIR_E_START_FAILED] = "start-failed",
		[CD_PAIR_E_PROTECT] = "protect",
		[CD_PAIR_E_REPLICA_READY] = "replica-ready",
		[CD_PAIR_E_SYNCED] = "synced",
		[CD_PAIR_E_REPLICA_LOST] = "replica-lost",
		[CD_PAIR_E_PRIMARY_LOST] = "primary-lost",
		[CD_PAIR_E_PROMOTED] = "promoted",
		[CD_PAIR_E_UNPROTECT] = "unprotect",
		[CD_PAIR_E_STOP] = "stop",
		[CD_PAIR_E_STOPPED] = "stopped",
		[CD_PAIR_E_MIGRATE] = "migrate",
		[CD_PAIR_E_INCOMING_READY] = "incoming-ready",
		[CD_PAIR_E_MIGRATED] = "migrated",
		[CD_PAIR_E_MIGRATE_FAILED] = "migrate-failed",
		[CD_PAIR_E_DR_PROTECT] = "dr-protect",
		[CD_PAIR_E_DR_UNPROTECT] = "dr-unprotect",
		[CD_PAIR_E_RESTART] = "restart",
	};

	return (unsigned)e < CD_PAIR_N_EVENTS ? n[e] : "?";
}

/* ---- guards: NULL when allowed, else the rule that forbids ----------------------------- */

typedef const char *(*guard_fn)(const struct cd_view *v);

static const char *need_quorum(const struct cd_view *v)
{
	return v->quorate ? NULL : "this node has no quorum";
}

static const char *primary_known_gone(const struct cd_view *v)
{
	if (!v->quorate)
		return "this node has no quorum: it never promotes";
	return v->primary_gone ? NULL
			       : "the primary is not known gone (its node is a member and its "
				 "castor-vmm was not reported dead)";
}

static const char *replica_known_gone(const struct cd_view *v)
{
	if (!v->quorate)
		return "this node has no quorum: it never releases held output";
	return v->replica_gone ? NULL : "the replica is not known gone: it could still take over";
}

static const char *replica_host(const struct cd_view *v)
{
	if (!v->quorate)
		return "this node has no quorum";
	return v->have_replica_host ? NULL : "no other live host can take a replica";
}

struct transition {
	enum cd_pair_state from;
	enum cd_pair_event event;
	enum cd_pair_state to;
	guard_fn guard; /* NULL: always */
};

static const struct transition table[] = {
	{CD_PAIR_S_DEFINED, CD_PAIR_E_START, CD_PAIR_S_STARTING, need_quorum},
	/* a VM that died with no twin, started again by the cluster (restart = on-failure) */
	{CD_PAIR_S_DEFINED, CD_PAIR_E_RESTART, CD_PAIR_S_STARTING, need_quorum},
	{CD_PAIR_S_STARTING, CD_PAIR_E_STARTED, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_STARTING, CD_PAIR_E_START_FAILED, CD_PAIR_S_DEFINED, NULL},
	{CD_PAIR_S_STARTING, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_STARTING, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_PROTECT, CD_PAIR_S_PLACING, replica_host},
	/* the VM died with no twin: it is only a definition again (castord may restart it) */
	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_PLACING, CD_PAIR_E_REPLICA_READY, CD_PAIR_S_SYNCING, NULL},
	/* the replica could not be started: nothing was held for it */
	{CD_PAIR_S_PLACING, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_PLACING, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_PLACING, CD_PAIR_E_UNPROTECT, CD_PAIR_S_UNPROTECTED, need_quorum},
	{CD_PAIR_S_PLACING, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_SYNCING, CD_PAIR_E_SYNCED, CD_PAIR_S_PROTECTED, NULL},
	/*
	 * Output has been held since protection began and the replica may have
	 * acknowledged the copy just before it went: release only as from DEGRADED.
	 */
	{CD_PAIR_S_SYNCING, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_DEGRADED, NULL},
	/* no full copy at the replica: nothing to promote */
	{CD_PAIR_S_SYNCING, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_SYNCING, CD_PAIR_E_UNPROTECT, CD_PAIR_S_UNPROTECTED, need_quorum},
	{CD_PAIR_S_SYNCING, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_PROTECTED, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_DEGRADED, NULL},
	{CD_PAIR_S_PROTECTED, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_FAILING_OVER, primary_known_gone},
	{CD_PAIR_S_PROTECTED, CD_PAIR_E_UNPROTECT, CD_PAIR_S_UNPROTECTED, need_quorum},
	{CD_PAIR_S_PROTECTED, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_DEGRADED, CD_PAIR_E_UNPROTECT, CD_PAIR_S_UNPROTECTED, replica_known_gone},
	/* re-protect elsewhere: the held outputs go out with the new replica's first ack */
	{CD_PAIR_S_DEGRADED, CD_PAIR_E_PROTECT, CD_PAIR_S_PLACING, replica_host},
	/* both copies gone: the VM is only its definition */
	{CD_PAIR_S_DEGRADED, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_DEGRADED, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_FAILING_OVER, CD_PAIR_E_PROMOTED, CD_PAIR_S_UNPROTECTED, NULL},
	/* the twin died before it ran: both copies gone */
	{CD_PAIR_S_FAILING_OVER, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_DEFINED, need_quorum},
	{CD_PAIR_S_FAILING_OVER, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	{CD_PAIR_S_STOPPING, CD_PAIR_E_STOPPED, CD_PAIR_S_DEFINED, NULL},

	/*
	 * Live migration of an unprotected VM. The destination never runs the VM
	 * unless the source hands it over (castor-vmm's rule), so only the start
	 * needs quorum; every failure leaves the VM where it ran.
	 */
	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_MIGRATE, CD_PAIR_S_MOVING, need_quorum},
	{CD_PAIR_S_MOVING, CD_PAIR_E_INCOMING_READY, CD_PAIR_S_MIGRATING, NULL},
	{CD_PAIR_S_MOVING, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_MOVING, CD_PAIR_E_MIGRATE_FAILED, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_MOVING, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_MOVING, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_MIGRATED, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_MIGRATE_FAILED, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_REPLICA_LOST, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_PRIMARY_LOST, CD_PAIR_S_DEFINED, primary_known_gone},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_STOP, CD_PAIR_S_STOPPING, NULL},

	/*
	 * Disaster recovery (docs/dr.md): the DR target is set on a running VM
	 * that is not moving, with quorum, and cleared in any state it can have
	 * one; neither changes the state (cd_pairs_apply keeps the target).
	 */
	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_DR_PROTECT, CD_PAIR_S_UNPROTECTED, need_quorum},
	{CD_PAIR_S_PLACING, CD_PAIR_E_DR_PROTECT, CD_PAIR_S_PLACING, need_quorum},
	{CD_PAIR_S_SYNCING, CD_PAIR_E_DR_PROTECT, CD_PAIR_S_SYNCING, need_quorum},
	{CD_PAIR_S_PROTECTED, CD_PAIR_E_DR_PROTECT, CD_PAIR_S_PROTECTED, need_quorum},
	{CD_PAIR_S_DEGRADED, CD_PAIR_E_DR_PROTECT, CD_PAIR_S_DEGRADED, need_quorum},
	{CD_PAIR_S_STARTING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_STARTING, NULL},
	{CD_PAIR_S_UNPROTECTED, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_UNPROTECTED, NULL},
	{CD_PAIR_S_PLACING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_PLACING, NULL},
	{CD_PAIR_S_SYNCING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_SYNCING, NULL},
	{CD_PAIR_S_PROTECTED, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_PROTECTED, NULL},
	{CD_PAIR_S_DEGRADED, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_DEGRADED, NULL},
	{CD_PAIR_S_FAILING_OVER, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_FAILING_OVER, NULL},
	{CD_PAIR_S_STOPPING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_STOPPING, NULL},
	{CD_PAIR_S_MOVING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_MOVING, NULL},
	{CD_PAIR_S_MIGRATING, CD_PAIR_E_DR_UNPROTECT, CD_PAIR_S_MIGRATING, NULL},
};

#define N_TRANSITIONS (sizeof(table) / sizeof(table[0]))

static const struct transition *find(enum cd_pair_state s, enum cd_pair_event e)
{
	for (size_t i = 0; i < N_TRANSITIONS; i++)
		if (table[i].from == s && table[i].event == e)
			return &table[i];
	return NULL;
}

bool cd_pair_is_legal(enum cd_pair_state s, enum cd_pair_event e)
{
	return find(s, e) != NULL;
}

bool cd_view_can_release_output(const struct cd_view *v)
{
	return v->quorate;
}

const char *cd_layout_problem(const struct cd_view_nodes *v, bool allow_two_node)
{
	bool witness = false;

	if (!v->connected || allow_two_node)
		return NULL;
	for (unsigned i = 0; i < v->n; i++)
		witness |= v->node[i].witness;
	if (v->two_node)
		return "corosync runs votequorum's two_node mode: either node alone is quorate, so "
		       "a partition makes two primaries; use a witness (a third castord with "
		       "witness = yes) instead, or set allow_two_node = yes in castord.conf to "
		       "force it";
	if (v->expected_votes == 2 && !witness)
		return "a two-node cluster without a witness cannot tell a dead peer from a "
		       "partition (either way it loses quorum and nothing fails over); add a "
		       "witness (a third castord with witness = yes), or set allow_two_node = "
		       "yes in castord.conf to force it";
	return NULL;
}

void cd_pair_init(struct cd_pair *p, const char *vm)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->vm, sizeof(p->vm), "%s", vm);
	p->state = CD_PAIR_S_DEFINED;
}

int cd_pair_apply(struct cd_pair *p, enum cd_pair_event e, const struct cd_view *v,
		  const char *reason, const char **why_out)
{
	const struct transition *t = find(p->state, e);
	const char *rule = NULL;

	if (why_out)
		*why_out = NULL;
	if (!t) {
		LOG_WARN("%s: %s: event %s refused (it means nothing in this state)", p->vm,
			 cd_pair_state_str(p->state), cd_pair_event_str(e));
		if (why_out)
			*why_out = "the event means nothing in this state";
		return -EINVAL;
	}
	if (t->guard)
		rule = t->guard(v);
	if (rule) {
		LOG_WARN("%s: %s -(%s: %s)-> %s refused: %s", p->vm, cd_pair_state_str(p->state),
			 cd_pair_event_str(e), reason ? reason : "", cd_pair_state_str(t->to),
			 rule);
		if (why_out)
			*why_out = rule;
		return -EPERM;
	}
	LOG_INFO("%s: %s -(%s: %s)-> %s", p->vm, cd_pair_state_str(p->state), cd_pair_event_str(e),
		 reason ? reason : "", cd_pair_state_str(t->to));
	if (e == CD_PAIR_E_MIGRATED) /* the destination runs the VM now */
		snprintf(p->primary, sizeof(p->primary), "%s", p->replica);
	if (e == CD_PAIR_E_PROMOTED) {
		/* the replica's host runs the VM now; the next replica goes elsewhere */
		snprintf(p->primary, sizeof(p->primary), "%s", p->replica);
		p->replica[0] = 0;
		p->failovers++;
	}
	if (t->to == CD_PAIR_S_DEFINED || t->to == CD_PAIR_S_UNPROTECTED) {
		p->replica[0] = 0;
		p->replica_addr[0] = 0;
	}
	/*
	 * A restart is due when the VM died with no twin to take over: its primary
	 * lost, or its twin lost while it failed over; not when it was stopped or
	 * could not start (castor-vmm refused it: starting it again would fail again)
	 */
	if (t->to == CD_PAIR_S_DEFINED &&
	    (e == CD_PAIR_E_PRIMARY_LOST || e == CD_PAIR_E_REPLICA_LOST))
		snprintf(p->restart_host, sizeof(p->restart_host), "%s", p->primary);
	else
		p->restart_host[0] = 0;
	if (t->to == CD_PAIR_S_DEFINED)
		p->primary[0] = 0;
	snprintf(p->last_reason, sizeof(p->last_reason), "%s: %s", cd_pair_event_str(e),
		 reason ? reason : "");
	p->state = t->to;
	return 0;
}
