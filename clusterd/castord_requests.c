/*
 * castord's answers to the CLI about VMs (docs/cluster.md): `castor vm start|stop`,
 * `castor ha protect|unprotect|failover VM`, and the pair's fields of `vm list|show`.
 * Each request is checked here (the VM defined, the event legal now, quorum, a host
 * that can take it) and becomes one event sent to the group: it takes effect when
 * CPG delivers it, on every node alike (castord_vms.c).
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clusterd/castord.h"
#include "util/util.h"

/* figures older than this are not shown: their primary stopped sending them */
#define FIGURES_FRESH_NS (3 * 1000000000ull)

void vms_fill(struct daemon *d, Castor__VmDefinition *o, const char *name)
{
	struct cd_pair_entry *e = cd_pairs_find(d->pairs, name);
	const struct vm_heard *h = vms_heard(d, name, false);

	o->state = (char *)cd_pair_state_str(e ? e->pair.state : CD_PAIR_S_DEFINED);
	o->primary = e ? e->pair.primary : "";
	o->replica = e ? e->pair.replica : "";
	o->last_event = e ? e->pair.last_reason : "";
	o->failovers = e ? e->pair.failovers : 0;
	o->held = e && e->pair.held;
	o->restarts = e ? e->pair.restarts : 0;
	if (e && e->pair.state == CD_PAIR_S_DEFINED) {
		const struct cd_def *def = cd_defs_find(d->defs, name);
		struct cd_view_nodes nv;
		uint32_t count;
		char host[CD_NAME_MAX];

		cd_membership_view(d->members, &nv);
		o->restart_note = (char *)cd_restart_blocked(
			&e->pair, def && !def->removed ? &def->vm : NULL, &nv, d->pairs,
			(uint64_t)time(NULL), &count, host);
		if (!o->restart_note)
			o->restart_note = (char *)"due now: castord starts it again";
	}
	if (e)
		dr_fill(d, o, &e->pair);
	if (!h)
		return;
	o->last_failover_unix = h->last_failover_s;
	if (e && h->figures_at_ns && util_now_ns() - h->figures_at_ns < FIGURES_FRESH_NS &&
	    !strcmp(h->primary, e->pair.primary) &&
	    (e->pair.state == CD_PAIR_S_SYNCING || e->pair.state == CD_PAIR_S_PROTECTED ||
	     e->pair.state == CD_PAIR_S_DEGRADED)) {
		o->has_figures = true;
		o->epochs_per_s = (double)h->epochs_milli_per_s / 1000.0;
		o->lag_ns = h->lag_ns;
		o->epochs = h->epochs;
	}
}

/* The host for a start: the one asked for, else the definition's first live host, else
 * the live host with the fewest VMs (the lowest name on a tie). */
static int choose_host(struct daemon *d, const struct cd_vmdef *def, const char *asked, char *out,
		       char *why, size_t why_len)
{
	struct cd_view_nodes v;

	cd_membership_view(d->members, &v);
	if (asked && *asked) {
		if (!cd_host_can_run(&v, asked))
			return util_why(why, why_len, -EHOSTUNREACH,
					"host '%.64s' is not a live member that hosts VMs (see "
					"castor node list)",
					asked);
		snprintf(out, CD_NAME_MAX, "%s", asked);
		return 0;
	}
	if (cd_choose_host(def, &v, d->pairs, "", "", out))
		return 0;
	return util_why(why, why_len, -EHOSTUNREACH,
			def->nhosts ? "none of the VM's hosts is a live member, and no other "
				      "host can run it"
				    : "no live member can run VMs");
}

static const struct cd_def *defined(struct daemon *d, const char *name, char *why, size_t why_len)
{
	const struct cd_def *e = name ? cd_defs_find(d->defs, name) : NULL;

	if (!e || e->removed) {
		util_why(why, why_len, -ENOENT, "no VM named '%.64s' is defined", name ? name : "");
		return NULL;
	}
	return e;
}

/* Send the operator's event and fill the reply with what will follow once it is delivered. */
/*
 * Send the operator's event and fill the reply with what follows once it is
 * delivered. The reply's strings point into a static copy of the message: the
 * loop packs the reply before it reads the next request.
 */
static int request(struct daemon *d, const struct cd_pairmsg *m, enum cd_pair_state next,
		   Castor__VmDefinition *o, char *why, size_t why_len)
{
	static struct cd_pairmsg sent;
	int rc;

	sent = *m;
	rc = castord_send_msg(d, &sent);
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot send the %s to the cluster (%s)%s",
				cd_pair_event_str(m->event), strerror(-rc),
				rc == -EAGAIN ? ": the group is syncing, try again" : "");
	o->name = sent.vm;
	o->state = (char *)cd_pair_state_str(next);
	o->primary = sent.primary;
	o->replica = sent.replica;
	return 0;
}

/* The operator's event about `vm` on its primary `host`, decided on this node's view. */
static void operator_event(struct daemon *d, struct cd_pairmsg *m, const char *vm,
			   enum cd_pair_event e, const char *host, const char *what)
{
	struct cd_view v;

	castord_view_of(d, &v);
	cd_pairmsg_event(m, vm, e, host, &v, what);
}

int vms_start(struct daemon *d, const Castor__VmStartRequest *r, Castor__VmDefinition *o,
	      const char **msg)
{
	static char why[300];
	static char host[CD_NAME_MAX];
	const struct cd_def *e = defined(d, r->name, why, sizeof(why));
	struct cd_pair_entry *p;
	struct cd_pairmsg m;
	int rc;

	*msg = why;
	if (!e)
		return -ENOENT;
	p = cd_pairs_find(d->pairs, e->vm.name);
	if (p && !cd_pair_is_legal(p->pair.state, CD_PAIR_E_START)) {
		snprintf(why, sizeof(why), "vm %s is %s%s%s: stop it first", e->vm.name,
			 cd_pair_state_str(p->pair.state), p->pair.primary[0] ? " on " : "",
			 p->pair.primary);
		return -EBUSY;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	rc = choose_host(d, &e->vm, r->host, host, why, sizeof(why));
	if (rc < 0)
		return rc;
	operator_event(d, &m, e->vm.name, CD_PAIR_E_START, host, "castor vm start");
	return request(d, &m, CD_PAIR_S_STARTING, o, why, sizeof(why));
}

int vms_stop(struct daemon *d, const Castor__VmStopRequest *r, Castor__VmDefinition *o,
	     const char **msg)
{
	static char why[300];
	const struct cd_def *e = defined(d, r->name, why, sizeof(why));
	struct cd_pair_entry *p;
	struct cd_pairmsg m;

	*msg = why;
	if (!e)
		return -ENOENT;
	p = cd_pairs_find(d->pairs, e->vm.name);
	if (!p || !cd_pair_is_legal(p->pair.state, CD_PAIR_E_STOP)) {
		snprintf(why, sizeof(why), "vm %s is %s: nothing to stop", e->vm.name,
			 cd_pair_state_str(p ? p->pair.state : CD_PAIR_S_DEFINED));
		return -EALREADY;
	}
	/* stopping needs no quorum: it only makes the VM quieter */
	operator_event(d, &m, e->vm.name, CD_PAIR_E_STOP, p->pair.primary, "castor vm stop");
	return request(d, &m, CD_PAIR_S_STOPPING, o, why, sizeof(why));
}

/* The pair of a defined VM, and its entry; NULL with why when it has none in use. */
static struct cd_pair_entry *pair_of(struct daemon *d, const char *name, char *why, size_t why_len)
{
	const struct cd_def *e = defined(d, name, why, why_len);
	struct cd_pair_entry *p;

	if (!e)
		return NULL;
	p = cd_pairs_find(d->pairs, e->vm.name);
	if (!p || p->pair.state == CD_PAIR_S_DEFINED) {
		util_why(why, why_len, -ENOENT, "vm %s is not running: castor vm start %s first",
			 e->vm.name, e->vm.name);
		return NULL;
	}
	return p;
}

int vms_protect(struct daemon *d, const Castor__VmProtectRequest *r, Castor__VmDefinition *o,
		const char **msg)
{
	static char why[300];
	static char host[CD_NAME_MAX];
	struct cd_pair_entry *p = pair_of(d, r->name, why, sizeof(why));
	const struct cd_def *def;
	struct cd_view_nodes nv;
	struct cd_pairmsg m;
	int rc;

	*msg = why;
	if (!p)
		return -ENOENT;
	if (!cd_pair_is_legal(p->pair.state, CD_PAIR_E_PROTECT)) {
		snprintf(why, sizeof(why), "vm %s is %s%s%s: nothing to protect now", p->pair.vm,
			 cd_pair_state_str(p->pair.state),
			 p->pair.replica[0] ? ", replica on " : "", p->pair.replica);
		return -EALREADY;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	def = cd_defs_find(d->defs, p->pair.vm);
	if (p->pair.dr_addr[0] && cd_vmdef_writes_disk(&def->vm)) {
		snprintf(why, sizeof(why),
			 "vm %s writes a disk and keeps a DR copy at %s: its disk writes go to one "
			 "replica (castor dr unprotect it first)",
			 p->pair.vm, p->pair.dr_addr);
		return -EOPNOTSUPP;
	}
	cd_membership_view(d->members, &nv);
	if (r->host && *r->host) {
		if (!cd_host_can_run(&nv, r->host) || !strcmp(r->host, p->pair.primary)) {
			snprintf(why, sizeof(why),
				 "host '%.64s' cannot take the replica: it must be a live member "
				 "that "
				 "hosts VMs, other than the primary (%s)",
				 r->host, p->pair.primary);
			return -EHOSTUNREACH;
		}
		snprintf(host, sizeof(host), "%s", r->host);
	} else if (!cd_choose_host(&def->vm, &nv, d->pairs, p->pair.primary, "", host)) {
		snprintf(why, sizeof(why), "no live host other than %s can take a replica",
			 p->pair.primary);
		return -EHOSTUNREACH;
	}
	operator_event(d, &m, p->pair.vm, CD_PAIR_E_PROTECT, p->pair.primary, "castor ha protect");
	m.flags |= CD_PAIRMSG_F_REPLICA_HOST;
	snprintf(m.replica, sizeof(m.replica), "%s", host);
	return request(d, &m, CD_PAIR_S_PLACING, o, why, sizeof(why));
}

int vms_unprotect(struct daemon *d, const Castor__VmUnprotectRequest *r, Castor__VmDefinition *o,
		  const char **msg)
{
	static char why[300];
	struct cd_pair_entry *p = pair_of(d, r->name, why, sizeof(why));
	struct cd_pairmsg m;
	int rc;

	*msg = why;
	if (!p)
		return -ENOENT;
	if (!cd_pair_is_legal(p->pair.state, CD_PAIR_E_UNPROTECT)) {
		snprintf(why, sizeof(why), "vm %s is %s: not protected", p->pair.vm,
			 cd_pair_state_str(p->pair.state));
		return -EALREADY;
	}
	/* releasing held output needs quorum: a partition must not let a primary speak */
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	operator_event(d, &m, p->pair.vm, CD_PAIR_E_UNPROTECT, p->pair.primary,
		       "castor ha unprotect");
	/* degraded is entered only for a replica known gone (REPLICA_LOST) */
	if (p->pair.state == CD_PAIR_S_DEGRADED)
		m.flags |= CD_PAIRMSG_F_REPLICA_GONE;
	m.flags |= CD_PAIRMSG_F_HELD;
	rc = request(d, &m, CD_PAIR_S_UNPROTECTED, o, why, sizeof(why));
	o->held = true;
	return rc;
}

int vms_failover(struct daemon *d, const Castor__VmFailoverRequest *r, Castor__VmDefinition *o,
		 const char **msg)
{
	static char why[300];
	struct cd_pair_entry *p = pair_of(d, r->name, why, sizeof(why));
	struct cd_view_nodes nv;
	struct cd_pairmsg m;
	int rc;

	*msg = why;
	if (!p)
		return -ENOENT;
	if (p->pair.state != CD_PAIR_S_PROTECTED) {
		snprintf(why, sizeof(why),
			 "vm %s is %s: only a protected VM has a twin to fail over to", p->pair.vm,
			 cd_pair_state_str(p->pair.state));
		return -EALREADY;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	cd_membership_view(d->members, &nv);
	if (cd_host_can_run(&nv, p->pair.primary) && !r->force) {
		snprintf(why, sizeof(why),
			 "vm %s runs on %s, a live member: add --force to stop it there and start "
			 "the twin on %s",
			 p->pair.vm, p->pair.primary, p->pair.replica);
		return -EBUSY;
	}
	/* the operator's word, with quorum: the primary's castord fences it */
	operator_event(d, &m, p->pair.vm, CD_PAIR_E_PRIMARY_LOST, p->pair.primary,
		       "castor ha failover");
	m.flags |= CD_PAIRMSG_F_PRIMARY_GONE;
	snprintf(m.replica, sizeof(m.replica), "%s", p->pair.replica);
	return request(d, &m, CD_PAIR_S_FAILING_OVER, o, why, sizeof(why));
}

int vms_migrate(struct daemon *d, const Castor__VmMigrateRequest *r, Castor__VmDefinition *o,
		const char **msg)
{
	static char why[300];
	static char host[CD_NAME_MAX];
	struct cd_pair_entry *p = pair_of(d, r->name, why, sizeof(why));
	const struct cd_def *def;
	struct cd_view_nodes nv;
	struct cd_pairmsg m;
	int rc;

	*msg = why;
	if (!p)
		return -ENOENT;
	def = cd_defs_find(d->defs, p->pair.vm);
	if (p->pair.state == CD_PAIR_S_MOVING || p->pair.state == CD_PAIR_S_MIGRATING) {
		snprintf(why, sizeof(why), "vm %s is already %s to %s", p->pair.vm,
			 cd_pair_state_str(p->pair.state), p->pair.replica);
		return -EALREADY;
	}
	/* a protected VM (or one about to be) moves without its twin, on the operator's word */
	if (p->pair.state == CD_PAIR_S_PLACING || p->pair.state == CD_PAIR_S_SYNCING ||
	    p->pair.state == CD_PAIR_S_PROTECTED || p->pair.state == CD_PAIR_S_DEGRADED ||
	    (p->pair.state == CD_PAIR_S_UNPROTECTED && def && def->vm.protection != CD_PROT_NONE &&
	     !p->pair.held)) {
		snprintf(why, sizeof(why),
			 "vm %s is protected (%s): castor ha unprotect %s, then migrate it, then "
			 "castor ha protect %s",
			 p->pair.vm, cd_pair_state_str(p->pair.state), p->pair.vm, p->pair.vm);
		return -EBUSY;
	}
	if (p->pair.dr_addr[0]) {
		snprintf(why, sizeof(why),
			 "vm %s keeps a DR copy at %s: castor dr unprotect it, migrate it, then "
			 "castor dr protect it again (a full copy from the new host)",
			 p->pair.vm, p->pair.dr_addr);
		return -EBUSY;
	}
	if (!cd_pair_is_legal(p->pair.state, CD_PAIR_E_MIGRATE)) {
		snprintf(why, sizeof(why), "vm %s is %s: only a running VM migrates", p->pair.vm,
			 cd_pair_state_str(p->pair.state));
		return -EBUSY;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	cd_membership_view(d->members, &nv);
	if (r->host && *r->host) {
		if (!cd_host_can_run(&nv, r->host) || !strcmp(r->host, p->pair.primary)) {
			snprintf(why, sizeof(why),
				 "host '%.64s' cannot take %s: it must be a live member that "
				 "hosts VMs, other than where it runs (%s)",
				 r->host, p->pair.vm, p->pair.primary);
			return -EHOSTUNREACH;
		}
		snprintf(host, sizeof(host), "%s", r->host);
	} else if (!def || !cd_choose_host(&def->vm, &nv, d->pairs, p->pair.primary, "", host)) {
		snprintf(why, sizeof(why), "no live host other than %s can take %s",
			 p->pair.primary, p->pair.vm);
		return -EHOSTUNREACH;
	}
	operator_event(d, &m, p->pair.vm, CD_PAIR_E_MIGRATE, p->pair.primary, "castor migrate");
	snprintf(m.replica, sizeof(m.replica), "%s", host);
	return request(d, &m, CD_PAIR_S_MOVING, o, why, sizeof(why));
}

/* "HOST:PORT" with a port of 1..65535 and a host that fits; the DR site resolves it. */
static bool is_host_port(const char *s)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	return colon && colon != s && strlen(s) < sizeof(((struct cd_pair *)0)->dr_addr) &&
	       !util_parse_u64(colon + 1, &port) && port && port <= 65535 && !strchr(s, ' ');
}

int vms_dr(struct daemon *d, const Castor__VmDrRequest *r, Castor__VmDefinition *o,
	   const char **msg)
{
	static char why[300], addr[64];
	struct cd_pair_entry *p = pair_of(d, r->name, why, sizeof(why));
	const struct cd_def *def;
	enum cd_pair_state st;
	struct cd_pairmsg m;
	struct cd_view v;
	int rc;

	*msg = why;
	if (!p)
		return -ENOENT;
	castord_view_of(d, &v);
	if (!r->to || !*r->to) { /* stopping a DR copy lets no copy speak: no quorum needed */
		if (!p->pair.dr_addr[0]) {
			snprintf(why, sizeof(why), "vm %s keeps no DR copy", p->pair.vm);
			return -EALREADY;
		}
		cd_pairmsg_dr(&m, p->pair.vm, p->pair.primary, &v, NULL, 0, 0,
			      "castor dr unprotect");
		return request(d, &m, p->pair.state, o, why, sizeof(why));
	}
	def = cd_defs_find(d->defs, p->pair.vm);
	st = p->pair.state;
	if (!is_host_port(r->to)) {
		snprintf(why, sizeof(why),
			 "--to '%.64s' is not HOST:PORT (the DR replica's address)", r->to);
		return -EINVAL;
	}
	if (r->rpo_ms > 600000) {
		snprintf(why, sizeof(why), "an RPO target of %u ms is over 600000 ms", r->rpo_ms);
		return -EINVAL;
	}
	if (r->max_mbit > 100000) {
		snprintf(why, sizeof(why), "a link cap of %u Mbit/s is over 100000", r->max_mbit);
		return -EINVAL;
	}
	if (p->pair.dr_addr[0]) {
		snprintf(why, sizeof(why),
			 "vm %s keeps a DR copy at %s already: castor dr unprotect it first to "
			 "point it elsewhere",
			 p->pair.vm, p->pair.dr_addr);
		return -EALREADY;
	}
	if (!cd_pair_is_legal(st, CD_PAIR_E_DR_PROTECT)) {
		snprintf(why, sizeof(why),
			 "vm %s is %s: a DR copy is kept of a running VM, not now", p->pair.vm,
			 cd_pair_state_str(st));
		return -EBUSY;
	}
	/* a twin now, or one castord will place by itself */
	if (def && cd_vmdef_writes_disk(&def->vm) &&
	    (st != CD_PAIR_S_UNPROTECTED ||
	     (def->vm.protection != CD_PROT_NONE && !p->pair.held))) {
		snprintf(
			why, sizeof(why),
			"vm %s writes a disk and has a twin: its disk writes go to one replica, so "
			"it keeps a twin or a DR copy, not both (castor ha unprotect %s first)",
			p->pair.vm, p->pair.vm);
		return -EOPNOTSUPP;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	cd_pairmsg_dr(&m, p->pair.vm, p->pair.primary, &v, r->to, r->rpo_ms ? r->rpo_ms : 5000,
		      r->max_mbit, "castor dr protect");
	rc = request(d, &m, st, o, why, sizeof(why));
	snprintf(addr, sizeof(addr), "%s", m.dr_addr);
	o->dr_addr = addr;
	o->dr_rpo_target_ms = m.dr_rpo_ms;
	o->dr_max_mbit = m.dr_max_mbit;
	return rc;
}
