/*
 * castord: the DR copy of a VM (docs/dr.md, "Through castord"). `castor dr
 * protect VM --to HOST:PORT` sets the pair's DR target, the same on every
 * node; the castord of the VM's primary then keeps a DR session (castor-vmm's
 * async mode) toward that DR replica, a castor-vmm outside the cluster:
 *
 *   - no DR session in castor-vmm: one is asked for (ProtectRequest, async);
 *   - one that gave up (degraded and not resuming: its replica refused, took
 *     over or restarted): asked again, every RETRY_S, a full copy -- so a DR
 *     replica started afresh at the DR site is filled again by itself;
 *   - the target cleared (`castor dr unprotect VM`): the session it started
 *     is stopped.
 *
 * After a failover the twin's castord does the same from the new primary: the
 * old DR replica holds the old primary's copy and refuses it ("start a new
 * replica"), which castor status shows until the DR site starts a fresh one.
 * Each tick the DR session's state, RPO and alerts go to the group as
 * DR_FIGURES (castor status on any node), and to this node's /metrics.
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "clusterd/castord.h"
#include "util/util.h"

/* a DR session that gave up is asked for again at most this often */
#define RETRY_S 10u
/* figures older than this are not shown: their primary stopped sending them */
#define DR_FRESH_NS (3 * 1000000000ull)

static void dr_stop(struct local_vm *l, const char *vm, const char *why_stopped)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__UnprotectRequest ur = CASTOR__UNPROTECT_REQUEST__INIT;
	char why[300];

	ur.dr = true;
	ur.force = true; /* an initial copy in progress too */
	req.body_case = CASTOR__REQUEST__BODY_UNPROTECT;
	req.unprotect = &ur;
	if (vms_call(l, &req, NULL, why, sizeof(why)) < 0)
		LOG_WARN("vm %s: stopping its DR session toward %s: %s", vm, l->dr.addr, why);
	else
		LOG_INFO("vm %s: its DR session toward %s stopped (%s)", vm, l->dr.addr,
			 why_stopped);
	l->dr = (struct local_dr){0};
}

/* Ask castor-vmm for a DR session toward the pair's target; `state` says how it went. */
static void dr_start(struct local_vm *l, const struct cd_pair *p)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__ProtectRequest pr = CASTOR__PROTECT_REQUEST__INIT;
	char why[300];

	pr.peer = (char *)p->dr_addr;
	pr.mode = "async";
	pr.rpo_ms = p->dr_rpo_ms;
	pr.max_mbit = p->dr_max_mbit;
	req.body_case = CASTOR__REQUEST__BODY_PROTECT;
	req.protect = &pr;
	l->dr.asked_ns = util_now_ns();
	snprintf(l->dr.addr, sizeof(l->dr.addr), "%s", p->dr_addr);
	if (vms_call(l, &req, NULL, why, sizeof(why)) < 0) {
		snprintf(l->dr.state, sizeof(l->dr.state), "refused: %.150s", why);
		l->dr.started = false;
		return;
	}
	l->dr.started = true;
	snprintf(l->dr.state, sizeof(l->dr.state), "syncing");
	LOG_INFO("vm %s: a DR session toward %s asked of its castor-vmm (RPO target %u ms)", p->vm,
		 p->dr_addr, p->dr_rpo_ms);
}

/*
 * castor-vmm counts the RPO's crossings of its target (and logs them in its own log):
 * each new one is said in castord's log too, where the cluster's operator looks.
 */
static void dr_alert(struct local_vm *l, const char *vm, uint64_t alerts)
{
	if (alerts > l->dr.alerts)
		LOG_WARN("vm %s: DR RPO alert (%" PRIu64 " so far): the DR replica's newest "
			 "checkpoint is %.1f s old (target %.1f s)",
			 vm, alerts, (double)l->dr.rpo_ns / 1e9, l->dr.rpo_target_ms / 1e3);
	l->dr.alerts = alerts;
}

void dr_progress(struct daemon *d, const struct cd_pair *p)
{
	struct local_vm *l = vms_local(d, p->vm, LOCAL_PRIMARY);
	Castor__Response *resp;
	const char *err;
	const Castor__HaStatus *h;
	struct cd_pairmsg m;
	bool has, given_up = false;

	if (!l || !l->ready)
		return;
	if (!p->dr_addr[0] && !l->dr.started) {
		l->dr.valid = false;
		return; /* no target, and no session of castord's: nothing to keep */
	}
	resp = sess_ha_status(d, p, true, NULL);
	if (!resp)
		return;
	h = resp->ha_status;
	has = h && h->role && !strcmp(h->role, "primary") && h->mode && !strcmp(h->mode, "async") &&
	      h->state && strcmp(h->state, "stopped");
	if (!p->dr_addr[0] || (has && l->dr.started && strcmp(h->peer, p->dr_addr))) {
		/* the target was cleared, or moved: castord's session goes */
		if (has && l->dr.started)
			dr_stop(l, p->vm,
				p->dr_addr[0] ? "its DR target moved" : "castor dr unprotect");
		l->dr = (struct local_dr){0};
		goto out;
	}
	if (has) { /* what castor-vmm says of it, whatever follows */
		err = h->last_error ? h->last_error : "";
		if (!strcmp(h->state, "degraded"))
			snprintf(l->dr.state, sizeof(l->dr.state), "degraded: %.140s", err);
		else
			snprintf(l->dr.state, sizeof(l->dr.state), "%s", h->state);
		given_up = !strcmp(h->state, "degraded") && strncmp(err, "resuming", 8);
	}
	if (!has || given_up) {
		if (!l->dr.asked_ns || util_now_ns() - l->dr.asked_ns >= RETRY_S * 1000000000ull)
			dr_start(l, p);
	} else {
		l->dr.started = true; /* castord keeps it from now on, even if started by hand */
		snprintf(l->dr.addr, sizeof(l->dr.addr), "%s", h->peer);
		l->dr.rpo_ns = h->rpo_ns;
		l->dr.rpo_target_ms = h->rpo_target_ms;
		l->dr.checkpoints = h->epochs;
		dr_alert(l, p->vm, h->rpo_alerts);
	}
	/* each new refusal once; a session resuming by itself logs its own lines */
	if (strncmp(l->dr.state, "refused", 7) && strncmp(l->dr.state, "degraded", 8))
		l->dr.logged[0] = 0;
	else if (strcmp(l->dr.state, l->dr.logged) &&
		 strncmp(l->dr.state, "degraded: resuming", 18)) {
		LOG_WARN("vm %s: its DR copy at %s: %s (asked again every %u s)", p->vm, p->dr_addr,
			 l->dr.state, RETRY_S);
		snprintf(l->dr.logged, sizeof(l->dr.logged), "%s", l->dr.state);
	}
	l->dr.valid = true;
	if (!l->dr.rpo_target_ms)
		l->dr.rpo_target_ms = p->dr_rpo_ms;
	cd_pairmsg_dr_figures(&m, p->vm, d->conf.node, p->dr_addr, l->dr.state, l->dr.checkpoints,
			      l->dr.rpo_ns, l->dr.rpo_target_ms, l->dr.alerts, p->dr_max_mbit);
	castord_send_msg(d, &m);
out:
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

void dr_heard(struct daemon *d, const struct cd_pairmsg *m)
{
	struct vm_heard *h = vms_heard(d, m->vm, true);

	if (!h)
		return;
	snprintf(h->dr_primary, sizeof(h->dr_primary), "%s", m->primary);
	snprintf(h->dr_addr, sizeof(h->dr_addr), "%s", m->dr_addr);
	snprintf(h->dr_state, sizeof(h->dr_state), "%.159s", m->reason);
	h->dr_rpo_ns = m->dr_rpo_ns;
	h->dr_alerts = m->dr_alerts;
	h->dr_checkpoints = m->epochs;
	h->dr_rpo_target_ms = m->dr_rpo_ms;
	h->dr_at_ns = util_now_ns();
}

void dr_fill(struct daemon *d, Castor__VmDefinition *o, const struct cd_pair *p)
{
	const struct vm_heard *h = vms_heard(d, p->vm, false);

	o->dr_addr = (char *)p->dr_addr;
	o->dr_rpo_target_ms = p->dr_rpo_ms;
	o->dr_max_mbit = p->dr_max_mbit;
	o->dr_state = "";
	if (!p->dr_addr[0] || !h || !h->dr_at_ns || util_now_ns() - h->dr_at_ns >= DR_FRESH_NS ||
	    strcmp(h->dr_primary, p->primary) || strcmp(h->dr_addr, p->dr_addr))
		return;
	o->has_dr = true;
	o->dr_state = (char *)h->dr_state;
	o->dr_rpo_ns = h->dr_rpo_ns;
	o->dr_rpo_alerts = h->dr_alerts;
	o->dr_checkpoints = h->dr_checkpoints;
}

void dr_render_metrics(struct daemon *d, struct evbuffer *b)
{
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
		{"castor_vm_dr_up", "gauge", "1 while the DR session is protected"},
		{"castor_vm_dr_rpo_seconds", "gauge",
		 "the age of the DR replica's newest checkpoint"},
		{"castor_vm_dr_rpo_target_seconds", "gauge", "the DR session's RPO target"},
		{"castor_vm_dr_rpo_alerts_total", "counter", "the RPO's crossings of its target"},
		{"castor_vm_dr_checkpoints_total", "counter",
		 "checkpoints acknowledged by the DR replica"},
	};

	for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		evbuffer_add_printf(b,
				    "# HELP %s %s (primaries with a DR copy, from this host)\n"
				    "# TYPE %s %s\n",
				    fam[k].name, fam[k].help, fam[k].name, fam[k].type);
		for (unsigned i = 0; i < CD_MAX_DEFS; i++) {
			const struct local_vm *l = &d->local[i];
			const struct local_dr *r = &l->dr;
			const double v[] = {
				!strcmp(r->state, "protected"), (double)r->rpo_ns / 1e9,
				r->rpo_target_ms / 1e3,		(double)r->alerts,
				(double)r->checkpoints,
			};

			if (!l->proc || l->role != LOCAL_PRIMARY || !r->valid)
				continue;
			evbuffer_add_printf(b, "%s{node=\"%s\",vm=\"%s\",dr=\"%s\"} %.9g\n",
					    fam[k].name, d->conf.node, l->name, r->addr, v[k]);
		}
	}
}
