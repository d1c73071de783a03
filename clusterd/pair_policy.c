/*
 * What castord should do next about a pair (docs/cluster.md): where a VM
 * starts, where its replica goes, and which event this node must send now --
 * as a pure function of the pair, its definition and the membership, so that
 * every rule is tested without a cluster (unit_pairs).
 *
 * Duties fall to one node each, so that an event is sent once:
 *   - the speaker (the quorate partition's lowest node id) reports the VMs
 *     of a host that left: its primaries lost, its replicas lost;
 *   - the primary's host asks for a replica when the VM should be protected
 *     and has none (after a start, a failover or a replica loss; not after the
 *     operator's `castor ha unprotect`), or, with
 *     no host left to take one, lets the VM go on unprotected.
 * The rest (starting the replica, protecting, promoting the twin) are
 * reactions of the named host to the events themselves (castord_vms.c).
 */
#define LOG_TAG "pairs"
#include "clusterd/cluster.h"

#include <stdio.h>
#include <string.h>

/* -1: not a known node; else whether it is a member that may run VMs. */
static int host_status(const struct cd_view_nodes *v, const char *host)
{
	for (unsigned i = 0; i < v->n; i++)
		if (v->node[i].name[0] && !strcmp(v->node[i].name, host))
			return v->node[i].member && !v->node[i].witness;
	return -1;
}

bool cd_host_can_run(const struct cd_view_nodes *v, const char *host)
{
	return host_status(v, host) == 1;
}

/* Known, and not a member any more (a name never seen is not "gone": it may be joining). */
static bool host_left(const struct cd_view_nodes *v, const char *host)
{
	for (unsigned i = 0; i < v->n; i++)
		if (v->node[i].name[0] && !strcmp(v->node[i].name, host))
			return !v->node[i].member;
	return false;
}

static unsigned load_of(const struct cd_pairs *all, const char *host)
{
	unsigned load = 0;

	for (unsigned i = 0; i < all->n; i++)
		load += !strcmp(all->e[i].pair.primary, host) +
			!strcmp(all->e[i].pair.replica, host);
	return load;
}

bool cd_choose_host(const struct cd_vmdef *def, const struct cd_view_nodes *v,
		    const struct cd_pairs *all, const char *avoid, const char *avoid2,
		    char out[CD_NAME_MAX])
{
	unsigned best = UINT32_MAX;

	out[0] = 0;
	for (unsigned i = 0; i < def->nhosts; i++) {
		const char *h = def->hosts[i];

		if (cd_host_can_run(v, h) && strcmp(h, avoid) && strcmp(h, avoid2)) {
			snprintf(out, CD_NAME_MAX, "%s", h);
			return true;
		}
	}
	for (unsigned i = 0; i < v->n; i++) {
		const char *h = v->node[i].name;
		unsigned load;

		if (!h[0] || !cd_host_can_run(v, h) || !strcmp(h, avoid) || !strcmp(h, avoid2))
			continue;
		load = load_of(all, h);
		if (load < best || (load == best && strcmp(h, out) < 0)) {
			best = load;
			snprintf(out, CD_NAME_MAX, "%s", h);
		}
	}
	return out[0] != 0;
}

static bool is_speaker(const struct cd_view_nodes *v)
{
	uint32_t lowest = UINT32_MAX;

	for (unsigned i = 0; i < v->n; i++)
		if (v->node[i].member && v->node[i].nodeid < lowest)
			lowest = v->node[i].nodeid;
	return lowest == v->local_nodeid;
}

static bool event(struct cd_pairmsg *out, const struct cd_pair *p, enum cd_pair_event e,
		  const struct cd_view *view, const char *replica, const char *reason)
{
	cd_pairmsg_event(out, p->vm, e, p->primary, view, reason);
	snprintf(out->replica, sizeof(out->replica), "%s", replica ? replica : "");
	return true;
}

bool cd_pair_next(const struct cd_pair *p, const struct cd_vmdef *def,
		  const struct cd_view_nodes *v, const struct cd_pairs *all, const char *me,
		  bool allow_two_node, struct cd_pairmsg *out)
{
	struct cd_view view = {.quorate = true};
	char host[CD_NAME_MAX], reason[160];

	if (!v->connected || !v->quorate || cd_layout_problem(v, allow_two_node))
		return false; /* without quorum nothing is decided, nothing released */
	if (p->state == CD_PAIR_S_DEFINED)
		return false;

	if (is_speaker(v) && p->primary[0] && host_left(v, p->primary)) {
		view.primary_gone = true;
		snprintf(reason, sizeof(reason), "host %s left the cluster", p->primary);
		return event(out, p,
			     p->state == CD_PAIR_S_STOPPING   ? CD_PAIR_E_STOPPED
			     : p->state == CD_PAIR_S_STARTING ? CD_PAIR_E_START_FAILED
							      : CD_PAIR_E_PRIMARY_LOST,
			     &view, NULL, reason);
	}
	if (is_speaker(v) && p->replica[0] && host_left(v, p->replica) &&
	    (p->state == CD_PAIR_S_PLACING || p->state == CD_PAIR_S_SYNCING ||
	     p->state == CD_PAIR_S_PROTECTED || p->state == CD_PAIR_S_FAILING_OVER ||
	     p->state == CD_PAIR_S_MOVING || p->state == CD_PAIR_S_MIGRATING)) {
		view.replica_gone = true;
		snprintf(reason, sizeof(reason), "replica host %s left the cluster", p->replica);
		return event(out, p, CD_PAIR_E_REPLICA_LOST, &view, p->replica, reason);
	}
	if (strcmp(p->primary, me) || !def || def->protection == CD_PROT_NONE)
		return false;
	if (p->state == CD_PAIR_S_UNPROTECTED && !p->held) {
		if (!cd_choose_host(def, v, all, me, "", host))
			return false; /* no host can take a replica: it runs unprotected */
		view.have_replica_host = true;
		snprintf(reason, sizeof(reason), "a replica on %s", host);
		return event(out, p, CD_PAIR_E_PROTECT, &view, host, reason);
	}
	if (p->state == CD_PAIR_S_DEGRADED) {
		/* the lost replica's host only if no other can take one */
		if (cd_choose_host(def, v, all, me, p->replica, host) ||
		    cd_choose_host(def, v, all, me, "", host)) {
			view.have_replica_host = true;
			snprintf(reason, sizeof(reason), "re-protect: a replica on %s", host);
			return event(out, p, CD_PAIR_E_PROTECT, &view, host, reason);
		}
		/*
		 * No live host can take a replica, the lost replica's host included (a
		 * primary that stopped replicating reports a replica lost whose host may
		 * live on, and then that host is chosen above): it is not a member, so
		 * the replica is known gone
		 */
		view.replica_gone = true;
		return event(out, p, CD_PAIR_E_UNPROTECT, &view, NULL,
			     "no host can take a replica: the VM goes on unprotected");
	}
	return false;
}
