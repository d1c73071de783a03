/*
 * castor-vmm's control socket, replication's requests (50..): HA status,
 * protect, unprotect, failover, live migration and a DR replica's copy. The
 * framing, the connection and every other request are control.c's; each reply
 * body here is static, as control.c packs it right after the handler on the
 * single-threaded event loop.
 */
#define LOG_TAG "control"
#include "tools/vmm/vmm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "migrate/mig.h"
#include "netbuffer/netbuf.h"
#include "proto/pb.h"
#include "replication/repl.h"

/* What one HaStatus points into; static, as the reply is packed after the handler. */
struct ha_bufs {
	char err[sizeof(((struct repl_status *)0)->last_error)];
	char peer[sizeof(((struct repl_status *)0)->peer)];
	char policy[sizeof(((struct mig_progress *)0)->why)];
};

/* The status of session `p` (NULL: the replica's, or none). */
static void ha_fill_one(struct vmm *v, Castor__HaStatus *h, struct repl_primary *p,
			struct ha_bufs *b)
{
	struct repl_status st = {0};
	char *err = b->err, *peer = b->peer;

	h->role = p ? "primary" : v->secondary ? "replica" : "none";
	if (p)
		repl_primary_status(p, &st);
	else if (v->secondary)
		repl_secondary_status(v->secondary, &st);
	h->state = (char *)repl_state_str(st.state);
	h->mode = (char *)repl_mode_str(st.mode);
	h->interval_ms = st.interval_ms;
	h->epoch = st.epoch;
	h->acked_epoch = st.acked_epoch;
	h->epochs = st.epochs;
	h->last_pause_ns = st.last_pause_ns;
	h->pause_p50_ns = st.pause_p50_ns;
	h->pause_p99_ns = st.pause_p99_ns;
	h->last_raw_bytes = st.last_raw_bytes;
	h->last_wire_bytes = st.last_wire_bytes;
	h->total_raw_bytes = st.total_raw_bytes;
	h->total_wire_bytes = st.total_wire_bytes;
	h->last_pages = st.last_pages;
	h->ack_rtt_last_ns = st.ack_rtt_last_ns;
	h->ack_rtt_p50_ns = st.ack_rtt_p50_ns;
	h->encode_p50_ns = st.encode_p50_ns;
	h->lag_ns = st.lag_ns;
	h->early_ends = st.early_ends;
	h->verify_ok = st.verify_ok;
	h->verify_bad = st.verify_bad;
	h->disk_verify_ok = st.disk_verify_ok;
	h->rpo_target_ms = st.rpo_target_ms;
	h->rpo_ns = st.rpo_ns;
	h->rpo_p50_ns = st.rpo_p50_ns;
	h->rpo_p99_ns = st.rpo_p99_ns;
	h->rpo_alerts = st.rpo_alerts;
	h->max_mbit = (uint32_t)(st.max_rate_bytes / 125000u);
	h->ckpt_age_ns = st.ckpt_age_ns;
	h->postcopy = st.postcopy;
	h->pc_pages = st.pc.pages;
	h->pc_sent = st.pc.sent;
	h->pc_zero = st.pc.zero;
	h->pc_asked = st.pc.asked;
	h->pc_on_demand = st.pc.on_demand;
	h->sync_sent_bytes = st.sync_sent_bytes;
	h->sync_total_bytes = st.sync_total_bytes;
	h->heartbeats = st.heartbeats;
	h->twin_unusable = st.twin_unusable;
	h->disks = st.disks;
	h->disk_bytes = st.disk_bytes;
	h->disk_pending_bytes = st.disk_pending_bytes;
	h->disk_copy_bytes = st.disk_copy_bytes;
	h->disk_copy_same_bytes = st.disk_copy_same_bytes;
	h->hot_pages = st.hot_pages;
	h->cold_faults = st.cold_faults;
	h->sessions = v->sessions;
	h->failed_over = v->failed_over;
	h->link = (char *)(st.link_encrypted				      ? "encrypted"
			   : st.link_authenticated			      ? "authenticated"
			   : st.state == REPL_S_IDLE || (!p && !v->secondary) ? ""
									      : "plain");
	h->insecure = v->o->insecure;
	snprintf(peer, sizeof(b->peer), "%s", st.peer);
	h->peer = peer;
	snprintf(err, sizeof(b->err), "%s", st.last_error);
	h->last_error = err;
	/* the queue is the synchronous session's: a DR session beside it holds none */
	if (v->outq && !(p && p == v->dr && v->primary)) {
		struct nb_queue_stats q;

		nb_queue_stats(v->outq, &q);
		h->outputs_held = q.pending_outputs;
		h->outputs_released = q.released_outputs + q.passed_outputs;
		h->outputs_discarded = q.discarded_outputs;
		h->output_delay_p50_ns = q.delay_p50_ns;
		h->output_delay_p99_ns = q.delay_p99_ns;
		h->output_delay_max_ns = q.delay_max_ns;
		h->outputs_queued = q.queued_outputs;
		h->bytes_queued = q.queued_bytes;
		h->bytes_released = q.released_bytes;
		h->bytes_discarded = q.discarded_bytes;
		h->queue_high_water_bytes = q.high_water_bytes;
		h->outputs_dropped = q.refused_outputs; /* frames and test-device outputs */
	}
	if (v->secondary)
		h->port = repl_secondary_port(v->secondary);
	h->migration = st.migration;
	if (st.migration) {
		char *policy = b->policy;
		struct mig_progress mp = v->mig_last;

		if (v->mig)
			mig_source_progress(v->mig, &mp);
		h->rounds = st.rounds;
		h->pending_pages = st.pending_pages;
		h->dirty_rate_pps = st.dirty_rate_pps;
		h->link_rate_bps = st.link_rate_bps;
		h->expected_downtime_ns = mp.expected_downtime_ns;
		h->throttle_pct = mp.throttle;
		h->throttle_raises = mp.throttle_raises;
		h->throttle_peak_pct = mp.throttle_peak;
		h->throttled_ns = mp.throttled_ns;
		h->downtime_ns = st.downtime_ns;
		h->migration_ns = st.migration_ns;
		h->final_pages = st.final_pages;
		snprintf(policy, sizeof(b->policy), "%s", mp.why);
		h->policy = policy;
	}
}

/*
 * `dr`: the DR session's status (or, without one, the synchronous session's).
 * Otherwise the synchronous session's (or the DR session's when alone), the
 * DR session's in h->dr when both run.
 */
static void ha_fill(struct vmm *v, Castor__HaStatus *h, bool dr)
{
	static struct ha_bufs main_bufs, dr_bufs;
	static Castor__HaStatus dr_status;

	ha_fill_one(v, h, dr ? (v->dr ? v->dr : v->primary) : (v->primary ? v->primary : v->dr),
		    &main_bufs);
	if (!dr && v->primary && v->dr) {
		castor__ha_status__init(&dr_status);
		ha_fill_one(v, &dr_status, v->dr, &dr_bufs);
		h->dr = &dr_status;
	}
}

static int do_migrate(struct vmm *v, const Castor__MigrateRequest *mr, const char **msg)
{
	static char why[512];
	struct vmm_migrate_req r = {.peer = mr->peer,
				    .downtime_ms = mr->downtime_ms,
				    .timeout_s = mr->timeout_s,
				    .timeout_ms = mr->timeout_ms,
				    .verify = mr->verify,
				    .no_throttle = mr->no_throttle,
				    .postcopy = mr->postcopy};
	int rc;

	if (mr->downtime_ms > 60000 || mr->timeout_s > 86400 || mr->timeout_ms > 600000) {
		*msg = "migrate: downtime over 60000 ms, timeout over 86400 s or a link timeout "
		       "over 600000 ms";
		return -EINVAL;
	}
	if (mr->cancel + mr->switch_to_postcopy + mr->resume > 1) {
		*msg = "migrate: --cancel, --switch-to-postcopy and --resume are one at a time";
		return -EINVAL;
	}
	if (mr->cancel)
		rc = vmm_migrate_cancel(v, why, sizeof(why));
	else if (mr->switch_to_postcopy)
		rc = vmm_migrate_postcopy(v, why, sizeof(why));
	else if (mr->resume)
		rc = vmm_migrate_resume(v, why, sizeof(why));
	else
		rc = vmm_migrate(v, &r, why, sizeof(why));
	if (rc < 0)
		*msg = why;
	return rc;
}

static int do_failover(struct vmm *v, const Castor__FailoverRequest *fr, const char **msg)
{
	static char why[320]; /* the event loop is single-threaded */
	int rc = vmm_failover(v, fr->force, why, sizeof(why));

	if (rc < 0)
		*msg = why;
	return rc;
}

static int do_dr_copy(struct vmm *v, const Castor__DrCopyRequest *dr, Castor__DrCopyResult *res,
		      const char **msg)
{
	/* the event loop is single-threaded: these outlive the reply's packing */
	static char why[4200], macs[HV_MAX_DEVICES][18];
	static char *disks[HV_MAX_DEVICES], *mac_ptrs[HV_MAX_DEVICES];
	static protobuf_c_boolean ro[HV_MAX_DEVICES];
	static struct vmm_dr_copy c;
	uint64_t t0 = util_now_ns();
	unsigned i;
	int rc;

	rc = vmm_dr_copy(v, dr->dir, &c, why, sizeof(why));
	if (rc < 0) {
		*msg = why;
		return rc;
	}
	for (i = 0; i < c.ndisks; i++) {
		disks[i] = c.disks[i];
		ro[i] = c.disk_read_only[i];
	}
	for (i = 0; i < c.nnets; i++) {
		nb_mac_format(c.macs[i], macs[i]);
		mac_ptrs[i] = macs[i];
	}
	res->epoch = c.epoch;
	res->ckpt_age_ns = c.age_ns;
	res->snapshot = c.snapshot;
	res->snapshot_bytes = c.snap_bytes;
	res->n_disks = c.ndisks;
	res->disks = disks;
	res->n_disks_read_only = c.ndisks;
	res->disks_read_only = ro;
	res->disk_bytes = c.disk_bytes;
	res->n_macs = c.nnets;
	res->macs = mac_ptrs;
	res->total_ns = util_now_ns() - t0;
	return 0;
}

/* The request's session options over the process's defaults. */
static int protect_opts(const Castor__ProtectRequest *pr, struct repl_primary_opts *ro, char *why,
			size_t why_len)
{
	memset(ro, 0, sizeof(*ro));
	if (!pr->peer || !*pr->peer)
		return util_why(why, why_len, -EINVAL,
				"protect: the replica's HOST:PORT is required");
	ro->peer = pr->peer;
	if (pr->mode && *pr->mode && repl_mode_parse(pr->mode, &ro->mode) < 0)
		return util_why(why, why_len, -EINVAL,
				"protect: mode '%.32s' is not interval, output or async", pr->mode);
	if (pr->rpo_ms && ro->mode != REPL_MODE_ASYNC)
		return util_why(why, why_len, -EINVAL,
				"protect: an RPO target goes with mode async");
	if (pr->interval_ms > 600000 || pr->min_spacing_ms > 600000 || pr->timeout_ms > 600000 ||
	    pr->rpo_ms > 600000)
		return util_why(why, why_len, -EINVAL, "protect: a time over 600000 ms");
	if (pr->max_mbit > 100000)
		return util_why(why, why_len, -EINVAL,
				"protect: a link cap of %u Mbit/s is over 100000", pr->max_mbit);
	ro->conn.max_rate_bytes = (uint64_t)pr->max_mbit * 125000u;
	ro->interval_ms = pr->interval_ms;
	ro->min_spacing_ms = pr->min_spacing_ms;
	ro->rpo_ms = pr->rpo_ms;
	ro->max_dirty_pages = pr->max_dirty_pages;
	ro->verify = pr->verify;
	ro->exact_dirty = pr->exact_dirty;
	ro->conn.timeout_ms = pr->timeout_ms;
	return 0;
}

static int do_protect(struct vmm *v, const Castor__ProtectRequest *pr, const char **msg)
{
	static char why[512];
	struct repl_primary_opts ro;
	int rc;

	rc = protect_opts(pr, &ro, why, sizeof(why));
	if (!rc)
		rc = vmm_protect(v, &ro, why, sizeof(why));
	if (rc < 0)
		*msg = why;
	return rc;
}

static int do_unprotect(struct vmm *v, const Castor__UnprotectRequest *ur,
			Castor__UnprotectResult *res, const char **msg)
{
	static char why[320];
	uint64_t released = 0;
	int rc = vmm_unprotect(v, ur->force, ur->dr, &released, why, sizeof(why));

	if (rc < 0)
		*msg = why;
	res->outputs_released = released;
	return rc;
}

/* A request answered with the session's status once it succeeded. */
static void ha_reply(struct vmm *v, Castor__Response *resp, int rc, Castor__Response__BodyCase body,
		     Castor__HaStatus **slot, Castor__HaStatus *ha, bool dr)
{
	if (rc)
		return;
	ha_fill(v, ha, dr);
	resp->body_case = body;
	*slot = ha;
}

bool vmm_control_ha(struct vmm *v, const Castor__Request *req, Castor__Response *resp, int *rc,
		    const char **msg)
{
	static Castor__HaStatus ha;
	static Castor__UnprotectResult unp;
	static Castor__DrCopyResult drc;
	bool dr;

	castor__ha_status__init(&ha);
	switch (req->body_case) {
	case CASTOR__REQUEST__BODY_HA_STATUS:
		ha_fill(v, &ha, req->ha_status->dr);
		resp->body_case = CASTOR__RESPONSE__BODY_HA_STATUS;
		resp->ha_status = &ha;
		return true;
	case CASTOR__REQUEST__BODY_FAILOVER:
		*rc = do_failover(v, req->failover, msg);
		ha_reply(v, resp, *rc, CASTOR__RESPONSE__BODY_FAILOVER, &resp->failover, &ha,
			 false);
		return true;
	case CASTOR__REQUEST__BODY_PROTECT:
		*rc = do_protect(v, req->protect, msg);
		dr = req->protect->mode && !strcmp(req->protect->mode, "async");
		ha_reply(v, resp, *rc, CASTOR__RESPONSE__BODY_PROTECT, &resp->protect, &ha, dr);
		return true;
	case CASTOR__REQUEST__BODY_MIGRATE:
		*rc = do_migrate(v, req->migrate, msg);
		ha_reply(v, resp, *rc, CASTOR__RESPONSE__BODY_MIGRATE, &resp->migrate, &ha, false);
		return true;
	case CASTOR__REQUEST__BODY_DR_COPY:
		castor__dr_copy_result__init(&drc);
		*rc = do_dr_copy(v, req->dr_copy, &drc, msg);
		if (!*rc) {
			resp->body_case = CASTOR__RESPONSE__BODY_DR_COPY;
			resp->dr_copy = &drc;
		}
		return true;
	case CASTOR__REQUEST__BODY_UNPROTECT:
		castor__unprotect_result__init(&unp);
		*rc = do_unprotect(v, req->unprotect, &unp, msg);
		if (!*rc) {
			resp->body_case = CASTOR__RESPONSE__BODY_UNPROTECT;
			resp->unprotect = &unp;
		}
		return true;
	default:
		return false;
	}
}
