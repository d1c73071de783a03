/*
 * The cluster's pairs: one struct cd_pair per VM that has ever run, the same
 * on every node (docs/cluster.md, "Starting and stopping VMs").
 *
 * A pair changes only through an EVENT message delivered to every member in
 * CPG's agreed order. The sender decides: it checks the safety rules against
 * its own view before sending, and the message carries that view (quorate,
 * primary gone, ...) so that every receiver evaluates the same guard on the
 * same facts and reaches the same state -- a receiver whose quorum callback
 * happens to lag a message behind does not fork the table. Each applied event
 * bumps the entry's generation; when a node joins, every member replays its
 * entries as SYNC messages and the highest generation wins, as with the
 * definitions (defs.c).
 */
#define LOG_TAG "pairs"
#include "clusterd/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

#define F_ALL                                                                                      \
	(CD_PAIRMSG_F_QUORATE | CD_PAIRMSG_F_PRIMARY_GONE | CD_PAIRMSG_F_REPLICA_GONE |            \
	 CD_PAIRMSG_F_REPLICA_HOST | CD_PAIRMSG_F_HELD)

void cd_pairs_init(struct cd_pairs *s)
{
	memset(s, 0, sizeof(*s));
}

struct cd_pair_entry *cd_pairs_find(struct cd_pairs *s, const char *vm)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->e[i].pair.vm, vm))
			return &s->e[i];
	return NULL;
}

/* The entry of `vm`, made in DEFINED if there is none yet; NULL when the table is full. */
static struct cd_pair_entry *get(struct cd_pairs *s, const char *vm)
{
	struct cd_pair_entry *e = cd_pairs_find(s, vm);

	if (e || s->n == CD_MAX_DEFS)
		return e;
	e = &s->e[s->n++];
	memset(e, 0, sizeof(*e));
	cd_pair_init(&e->pair, vm);
	return e;
}

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, CD_NAME_MAX, "%s", src ? src : "");
}

int cd_pairs_apply(struct cd_pairs *s, const struct cd_pairmsg *m, const char **why_out)
{
	struct cd_pair_entry *e;
	struct cd_view v = {
		.quorate = m->flags & CD_PAIRMSG_F_QUORATE,
		.primary_gone = m->flags & CD_PAIRMSG_F_PRIMARY_GONE,
		.replica_gone = m->flags & CD_PAIRMSG_F_REPLICA_GONE,
		.have_replica_host = m->flags & CD_PAIRMSG_F_REPLICA_HOST,
	};
	int rc;

	if (why_out)
		*why_out = NULL;
	if (m->kind == CD_PAIRMSG_FIGURES || m->kind == CD_PAIRMSG_DR_FIGURES) {
		if (why_out)
			*why_out = "figures change no pair";
		return -EINVAL;
	}
	e = get(s, m->vm);
	if (!e) {
		if (why_out)
			*why_out = "the pair table is full";
		return -ENOSPC;
	}
	if (m->kind == CD_PAIRMSG_SYNC) {
		if (m->generation <= e->generation)
			return 0; /* what we hold is as new or newer */
		e->generation = m->generation;
		e->pair.state = m->state;
		copy_name(e->pair.primary, m->primary);
		copy_name(e->pair.replica, m->replica);
		snprintf(e->pair.replica_addr, sizeof(e->pair.replica_addr), "%s", m->addr);
		e->pair.failovers = m->failovers;
		e->pair.held = m->flags & CD_PAIRMSG_F_HELD;
		snprintf(e->pair.last_reason, sizeof(e->pair.last_reason), "%s", m->reason);
		snprintf(e->pair.dr_addr, sizeof(e->pair.dr_addr), "%s", m->dr_addr);
		e->pair.dr_rpo_ms = m->dr_rpo_ms;
		e->pair.dr_max_mbit = m->dr_max_mbit;
		copy_name(e->pair.restart_host, m->restart_host);
		e->pair.restarts = m->restarts;
		e->pair.restarted_at = m->restarted_at;
		return 0;
	}
	/* the event names the hosts it is about: a stale one (other hosts') is ignored */
	if (m->event != CD_PAIR_E_START && m->event != CD_PAIR_E_RESTART && m->primary[0] &&
	    e->pair.primary[0] && strcmp(m->primary, e->pair.primary)) {
		LOG_INFO("%s: %s about primary %s ignored: the VM's primary is %s now", m->vm,
			 cd_pair_event_str(m->event), m->primary, e->pair.primary);
		if (why_out)
			*why_out = "the event is about a host that is not the VM's primary";
		return -ESTALE;
	}
	if (m->event != CD_PAIR_E_PROTECT && m->event != CD_PAIR_E_MIGRATE && m->replica[0] &&
	    strcmp(m->replica, e->pair.replica)) {
		LOG_INFO("%s: %s about replica %s ignored: the VM's replica is '%s' now", m->vm,
			 cd_pair_event_str(m->event), m->replica, e->pair.replica);
		if (why_out)
			*why_out = "the event is about a host that is not the VM's replica";
		return -ESTALE;
	}
	rc = cd_pair_apply(&e->pair, m->event, &v, m->reason, why_out);
	if (rc < 0)
		return rc;
	if (m->event == CD_PAIR_E_START || m->event == CD_PAIR_E_RESTART)
		copy_name(e->pair.primary, m->primary);
	if (m->event == CD_PAIR_E_START) { /* the operator's start: a fresh count */
		e->pair.restarts = 0;
		e->pair.restarted_at = 0;
	}
	if (m->event == CD_PAIR_E_RESTART) { /* decode made sure it carries its count */
		e->pair.restarts = m->restarts;
		e->pair.restarted_at = m->restarted_at;
	}
	if (m->event == CD_PAIR_E_START || m->event == CD_PAIR_E_RESTART ||
	    m->event == CD_PAIR_E_PROTECT)
		e->pair.held = false;
	if (m->event == CD_PAIR_E_UNPROTECT && (m->flags & CD_PAIRMSG_F_HELD))
		e->pair.held = true;
	if (m->event == CD_PAIR_E_PROTECT || m->event == CD_PAIR_E_MIGRATE) {
		copy_name(e->pair.replica, m->replica);
		e->pair.replica_addr[0] = 0;
	}
	if (m->event == CD_PAIR_E_REPLICA_READY || m->event == CD_PAIR_E_INCOMING_READY)
		snprintf(e->pair.replica_addr, sizeof(e->pair.replica_addr), "%s", m->addr);
	/* the DR target (decode made sure DR_PROTECT names one) */
	if (m->event == CD_PAIR_E_DR_PROTECT) {
		snprintf(e->pair.dr_addr, sizeof(e->pair.dr_addr), "%s", m->dr_addr);
		e->pair.dr_rpo_ms = m->dr_rpo_ms;
		e->pair.dr_max_mbit = m->dr_max_mbit;
		LOG_INFO("%s: a DR copy at %s, RPO target %u ms, link cap %u Mbit/s (0: none)",
			 m->vm, e->pair.dr_addr, e->pair.dr_rpo_ms, e->pair.dr_max_mbit);
	}
	if (m->event == CD_PAIR_E_DR_UNPROTECT)
		e->pair.dr_addr[0] = 0;
	if (!e->pair.dr_addr[0] || e->pair.state == CD_PAIR_S_DEFINED) {
		if (e->pair.dr_addr[0])
			LOG_INFO("%s: its DR target %s is dropped: the VM runs nowhere (the DR "
				 "copy was of the run that ended)",
				 m->vm, e->pair.dr_addr);
		e->pair.dr_addr[0] = 0;
		e->pair.dr_rpo_ms = 0;
		e->pair.dr_max_mbit = 0;
	}
	e->generation++;
	return 0;
}

/* ---- the messages ------------------------------------------------------------------------ */

unsigned cd_pairmsg_encode(const struct cd_pairmsg *m, struct cd_pairmsg_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = CD_PAIRMSG_MAGIC;
	h->kind = m->kind;
	h->event = m->event;
	h->state = m->state;
	h->flags = m->flags;
	h->generation = m->generation;
	h->failovers = m->failovers;
	h->epochs = m->epochs;
	h->epochs_milli_per_s = m->epochs_milli_per_s;
	h->lag_ns = m->lag_ns;
	h->dr_rpo_ms = m->dr_rpo_ms;
	h->dr_max_mbit = m->dr_max_mbit;
	h->dr_rpo_ns = m->dr_rpo_ns;
	h->dr_alerts = m->dr_alerts;
	h->restarts = m->restarts;
	h->restarted_at = m->restarted_at;
	copy_name(h->restart_host, m->restart_host);
	snprintf(h->dr_addr, sizeof(h->dr_addr), "%s", m->dr_addr);
	copy_name(h->vm, m->vm);
	copy_name(h->primary, m->primary);
	copy_name(h->replica, m->replica);
	snprintf(h->addr, sizeof(h->addr), "%s", m->addr);
	snprintf(h->reason, sizeof(h->reason), "%s", m->reason);
	return sizeof(*h);
}

static bool is_string(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

static bool is_host(const char *s)
{
	return !s[0] || cd_is_name(s);
}

int cd_pairmsg_decode(const void *buf, size_t len, struct cd_pairmsg *out)
{
	struct cd_pairmsg_hdr h;
	bool figures, dr, restart;

	if (len != sizeof(h))
		return -EBADMSG;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != CD_PAIRMSG_MAGIC || (h.flags & ~F_ALL))
		return -EBADMSG;
	if (h.kind != CD_PAIRMSG_EVENT && h.kind != CD_PAIRMSG_SYNC &&
	    h.kind != CD_PAIRMSG_FIGURES && h.kind != CD_PAIRMSG_DR_FIGURES)
		return -EBADMSG;
	figures = h.kind == CD_PAIRMSG_FIGURES || h.kind == CD_PAIRMSG_DR_FIGURES;
	if (figures && (h.event || h.state || h.flags || h.generation || h.failovers ||
			!cd_is_name(h.primary)))
		return -EBADMSG;
	if (!figures && (h.epochs || h.epochs_milli_per_s || h.lag_ns))
		return -EBADMSG;
	if (h.kind != CD_PAIRMSG_DR_FIGURES && (h.dr_rpo_ns || h.dr_alerts))
		return -EBADMSG;
	if (h.kind == CD_PAIRMSG_DR_FIGURES && (h.epochs_milli_per_s || h.lag_ns))
		return -EBADMSG;
	/* a DR target travels with DR_PROTECT, SYNC and DR_FIGURES; an RPO only with one */
	dr = h.kind == CD_PAIRMSG_SYNC || h.kind == CD_PAIRMSG_DR_FIGURES ||
	     (h.kind == CD_PAIRMSG_EVENT && h.event == CD_PAIR_E_DR_PROTECT);
	if (!is_string(h.dr_addr, sizeof(h.dr_addr)) ||
	    (!dr && (h.dr_addr[0] || h.dr_rpo_ms || h.dr_max_mbit)) ||
	    (!h.dr_addr[0] && (h.dr_rpo_ms || h.dr_max_mbit)))
		return -EBADMSG;
	if (h.kind == CD_PAIRMSG_EVENT && h.event == CD_PAIR_E_DR_PROTECT && !h.dr_addr[0])
		return -EBADMSG;
	if (h.kind == CD_PAIRMSG_SYNC && h.state == CD_PAIR_S_DEFINED && h.dr_addr[0])
		return -EBADMSG; /* a VM that runs nowhere keeps no DR copy */
	if (h.kind == CD_PAIRMSG_EVENT && h.event >= CD_PAIR_N_EVENTS)
		return -EBADMSG;
	/* restarts: a RESTART carries the count it makes, a SYNC the entry's */
	restart = h.kind == CD_PAIRMSG_EVENT && h.event == CD_PAIR_E_RESTART;
	if (!is_string(h.restart_host, sizeof(h.restart_host)) || !is_host(h.restart_host) ||
	    h.restarts > CD_RESTART_MAX ||
	    (!restart && h.kind != CD_PAIRMSG_SYNC && (h.restarts || h.restarted_at)) ||
	    (restart && (!h.restarts || !h.restarted_at || !h.primary[0])) ||
	    (h.restart_host[0] && (h.kind != CD_PAIRMSG_SYNC || h.state != CD_PAIR_S_DEFINED)))
		return -EBADMSG;
	/* the operator's hold: set by castor ha unprotect, kept by a replay */
	if ((h.flags & CD_PAIRMSG_F_HELD) && h.kind != CD_PAIRMSG_SYNC &&
	    !(h.kind == CD_PAIRMSG_EVENT && h.event == CD_PAIR_E_UNPROTECT))
		return -EBADMSG;
	if (h.kind == CD_PAIRMSG_SYNC && (h.state >= CD_PAIR_N_STATES || !h.generation))
		return -EBADMSG;
	if (!is_string(h.vm, sizeof(h.vm)) || !is_string(h.primary, sizeof(h.primary)) ||
	    !is_string(h.replica, sizeof(h.replica)) || !is_string(h.addr, sizeof(h.addr)) ||
	    !is_string(h.reason, sizeof(h.reason)))
		return -EBADMSG;
	if (!cd_is_name(h.vm) || !is_host(h.primary) || !is_host(h.replica))
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	out->kind = h.kind;
	out->event = h.event;
	out->state = h.state;
	out->flags = h.flags;
	out->generation = h.generation;
	out->failovers = h.failovers;
	out->epochs = h.epochs;
	out->epochs_milli_per_s = h.epochs_milli_per_s;
	out->lag_ns = h.lag_ns;
	out->dr_rpo_ms = h.dr_rpo_ms;
	out->dr_max_mbit = h.dr_max_mbit;
	out->dr_rpo_ns = h.dr_rpo_ns;
	out->dr_alerts = h.dr_alerts;
	out->restarts = h.restarts;
	out->restarted_at = h.restarted_at;
	copy_name(out->restart_host, h.restart_host);
	snprintf(out->dr_addr, sizeof(out->dr_addr), "%s", h.dr_addr);
	copy_name(out->vm, h.vm);
	copy_name(out->primary, h.primary);
	copy_name(out->replica, h.replica);
	snprintf(out->addr, sizeof(out->addr), "%s", h.addr);
	snprintf(out->reason, sizeof(out->reason), "%s", h.reason);
	return 0;
}

void cd_pairmsg_event(struct cd_pairmsg *m, const char *vm, enum cd_pair_event e, const char *host,
		      const struct cd_view *v, const char *reason)
{
	memset(m, 0, sizeof(*m));
	m->kind = CD_PAIRMSG_EVENT;
	m->event = e;
	copy_name(m->vm, vm);
	copy_name(m->primary, host);
	m->flags = (v->quorate ? CD_PAIRMSG_F_QUORATE : 0) |
		   (v->primary_gone ? CD_PAIRMSG_F_PRIMARY_GONE : 0) |
		   (v->replica_gone ? CD_PAIRMSG_F_REPLICA_GONE : 0) |
		   (v->have_replica_host ? CD_PAIRMSG_F_REPLICA_HOST : 0);
	snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
}

void cd_pairmsg_figures(struct cd_pairmsg *m, const char *vm, const char *host, uint64_t epochs,
			uint64_t epochs_milli_per_s, uint64_t lag_ns)
{
	memset(m, 0, sizeof(*m));
	m->kind = CD_PAIRMSG_FIGURES;
	copy_name(m->vm, vm);
	copy_name(m->primary, host);
	m->epochs = epochs;
	m->epochs_milli_per_s = epochs_milli_per_s;
	m->lag_ns = lag_ns;
}

void cd_pairmsg_dr_figures(struct cd_pairmsg *m, const char *vm, const char *host,
			   const char *dr_addr, const char *state, uint64_t checkpoints,
			   uint64_t rpo_ns, uint32_t rpo_target_ms, uint64_t alerts,
			   uint32_t max_mbit)
{
	memset(m, 0, sizeof(*m));
	m->kind = CD_PAIRMSG_DR_FIGURES;
	copy_name(m->vm, vm);
	copy_name(m->primary, host);
	snprintf(m->dr_addr, sizeof(m->dr_addr), "%s", dr_addr ? dr_addr : "");
	m->dr_rpo_ms = m->dr_addr[0] ? rpo_target_ms : 0;
	m->dr_max_mbit = m->dr_addr[0] ? max_mbit : 0;
	snprintf(m->reason, sizeof(m->reason), "%s", state ? state : "");
	m->epochs = checkpoints;
	m->dr_rpo_ns = rpo_ns;
	m->dr_alerts = alerts;
}

void cd_pairmsg_dr(struct cd_pairmsg *m, const char *vm, const char *host, const struct cd_view *v,
		   const char *dr_addr, uint32_t rpo_ms, uint32_t max_mbit, const char *reason)
{
	cd_pairmsg_event(m, vm, dr_addr ? CD_PAIR_E_DR_PROTECT : CD_PAIR_E_DR_UNPROTECT, host, v,
			 reason);
	if (dr_addr) {
		snprintf(m->dr_addr, sizeof(m->dr_addr), "%s", dr_addr);
		m->dr_rpo_ms = rpo_ms;
		m->dr_max_mbit = max_mbit;
	}
}

void cd_pairmsg_sync(struct cd_pairmsg *m, const struct cd_pair_entry *e)
{
	memset(m, 0, sizeof(*m));
	m->kind = CD_PAIRMSG_SYNC;
	m->state = e->pair.state;
	m->flags = e->pair.held ? CD_PAIRMSG_F_HELD : 0;
	m->generation = e->generation;
	m->failovers = (uint32_t)e->pair.failovers;
	copy_name(m->vm, e->pair.vm);
	copy_name(m->primary, e->pair.primary);
	copy_name(m->replica, e->pair.replica);
	snprintf(m->addr, sizeof(m->addr), "%s", e->pair.replica_addr);
	snprintf(m->reason, sizeof(m->reason), "%s", e->pair.last_reason);
	snprintf(m->dr_addr, sizeof(m->dr_addr), "%s", e->pair.dr_addr);
	m->dr_rpo_ms = e->pair.dr_addr[0] ? e->pair.dr_rpo_ms : 0;
	m->dr_max_mbit = e->pair.dr_addr[0] ? e->pair.dr_max_mbit : 0;
	copy_name(m->restart_host, e->pair.state == CD_PAIR_S_DEFINED ? e->pair.restart_host : "");
	m->restarts = e->pair.restarts;
	m->restarted_at = e->pair.restarted_at;
}
