/*
 * What castord should do next about a pair (docs/cluster.md): where a VM
 * starts, where its replica goes, and which event this node must send now --
 * as a pure function of the pair, its definition and the membership, so that
 * every rule is tested without a cluster (unit_pairs).
 *
 * Duties fall to one node each, so that an event is sent once:
 *   - the speaker (the quorate partition's lowest node id) reports the VMs
 *     of a host that left: its primaries lost, its replicas lost; and starts
 *     again a VM that died with no twin when its definition asks for it
 *     (restart = on-failure: at most CD_RESTART_MAX times in a window of
 *     CD_RESTART_WINDOW_S; a VM that writes a disk only on the host it ran
 *     on, whose disk holds its writes -- another host's copy would not);
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

const char *cd_restart_blocked(const struct cd_pair *p, const struct cd_vmdef *def,
			       const struct cd_view_nodes *v, const struct cd_pairs *all,
			       uint64_t now_s, uint32_t *count_out, char host[CD_NAME_MAX])
{
	static char why[200];
	uint32_t count = p->restarts;

	host[0] = 0;
	if (p->state != CD_PAIR_S_DEFINED || !p->restart_host[0] || !def ||
	    def->restart != CD_RESTART_ON_FAILURE)
		return "";
	/* a window begins at its first restart; a clock behind it is still inside it */
	if (!p->restarted_at ||
	    (now_s >= p->restarted_at && now_s - p->restarted_at >= CD_RESTART_WINDOW_S))
		count = 0;
	*count_out = count;
	if (count >= CD_RESTART_MAX) {
		snprintf(why, sizeof(why),
			 "restarted %u times in %u minutes: not again until castor vm start %s",
			 count, CD_RESTART_WINDOW_S / 60, p->vm);
		return why;
	}
	if (cd_vmdef_writes_disk(def)) {
		if (!cd_host_can_run(v, p->restart_host)) {
			snprintf(why, sizeof(why),
				 "it writes a disk, whose writes are on %s, and %s cannot run it "
				 "now",
				 p->restart_host, p->restart_host);
			return why;
		}
		snprintf(host, CD_NAME_MAX, "%s", p->restart_host);
	} else if (!cd_choose_host(def, v, all, "", "", host)) {
		return "no live host can run it";
	}
	return NULL;
}

/* A VM that died with no twin, started again: the speaker's RESTART, or none. */
static bool restart_next(const struct cd_pair *p, const struct cd_vmdef *def,
			 const struct cd_view_nodes *v, const struct cd_pairs *all, uint64_t now_s,
			 struct cd_pairmsg *out)
{
	struct cd_view view = {.quorate = true};
	char host[CD_NAME_MAX], reason[400];
	uint32_t count = 0;

	if (!is_speaker(v) || cd_restart_blocked(p, def, v, all, now_s, &count, host))
		return false;
	snprintf(reason, sizeof(reason), "%u of %u in %u min, on %s, after %.180s", count + 1,
		 CD_RESTART_MAX, CD_RESTART_WINDOW_S / 60, host, p->last_reason);
	cd_pairmsg_event(out, p->vm, CD_PAIR_E_RESTART, host, &view, reason);
	out->restarts = count + 1;
	out->restarted_at = count ? p->restarted_at : now_s;
	return true;
}

bool cd_pair_next(const struct cd_pair *p, const struct cd_vmdef *def,
		  const struct cd_view_nodes *v, const struct cd_pairs *all, const char *me,
		  bool allow_two_node, uint64_t now_s, struct cd_pairmsg *out)
{
	struct cd_view view = {.quorate = true};
	char host[CD_NAME_MAX], reason[160];

	if (!v->connected || !v->quorate || cd_layout_problem(v, allow_two_node))
		return false; /* without quorum nothing is decided, nothing released */
	if (p->state == CD_PAIR_S_DEFINED)
		return restart_next(p, def, v, all, now_s, out);

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
