/*
 * A migration's source after its initial copy (docs/migration.md,
 * docs/architecture.md "Live migration"): rounds of what the guest dirtied,
 * each asked of the precopy policy; then the switch -- stop-and-copy, or
 * postcopy (§8.6: the pages the guest dirtied since the last round are named,
 * not copied, and served from this paused copy once the destination runs).
 * The VM resumes here only when the destination surely does not run it.
 */
#define LOG_TAG "primary"
#include "replication/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

bool primary_stopping(struct repl_primary *p)
{
	bool stop;

	pthread_mutex_lock(&p->lock);
	stop = p->stop;
	pthread_mutex_unlock(&p->lock);
	return stop;
}

/* What the policy sees of the round just shipped (started at t0). */
static int round_stats(struct repl_primary *p, const struct hv_snapshot_stats *sst, uint64_t t0,
		       struct hv_precopy_stats *ps)
{
	uint64_t now = util_now_ns(), pending = 0;
	int rc = hv_snap_chain_pending(p->chain, &pending);

	if (rc < 0)
		return rc;
	ps->passes++;
	ps->pass_pages = sst->precopy_pages + sst->staged_pages;
	ps->pass_bytes = p->st.last_wire_bytes;
	ps->pass_ns = now - t0;
	ps->total_pages += ps->pass_pages;
	ps->total_ns = now - p->started_ns;
	ps->pending_pages = pending;
	ps->dirty_rate_pps =
		ps->pass_ns ? (uint64_t)((double)pending * 1e9 / (double)ps->pass_ns) : 0;
	/*
	 * The link over every round so far, not the last one alone: a round
	 * also pays fixed costs (the ack's round trip, the destination's apply,
	 * a verify digest) that would make a small round look like a slow link.
	 */
	p->ship_bytes += ps->pass_bytes;
	p->ship_total_ns += p->last_ship_ns;
	ps->link_rate_bps =
		p->ship_total_ns
			? (uint64_t)((double)p->ship_bytes * 1e9 / (double)p->ship_total_ns)
			: 0;
	pthread_mutex_lock(&p->lock);
	p->st.rounds = ps->passes;
	p->st.pending_pages = pending;
	p->st.dirty_rate_pps = ps->dirty_rate_pps;
	p->st.link_rate_bps = ps->link_rate_bps;
	p->st.migration_ns = ps->total_ns;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* The migration ends in state `to`; `msg` (may be NULL) becomes the status's last error. */
void primary_migration_over(struct repl_primary *p, enum repl_state to, const char *why,
			    const char *msg)
{
	pthread_mutex_lock(&p->lock);
	if (msg)
		snprintf(p->st.last_error, sizeof(p->st.last_error), "%s", msg);
	primary_set_state(p, to, why);
	pthread_mutex_unlock(&p->lock);
	if (msg)
		LOG_ERR("vm %s: %s", hv_vm_name(p->vm), msg);
}

/* SWITCH went (or may have) and no answer came: it may run there, so this copy waits. */
static void switch_unanswered(struct repl_primary *p, int rc)
{
	char msg[200];

	snprintf(msg, sizeof(msg),
		 "the destination was told to run the VM but did not answer (%s): the VM "
		 "stays paused here; if the destination does not run it, 'castor vm "
		 "resume' it here",
		 strerror(-rc));
	primary_migration_over(p, REPL_S_IN_DOUBT, "no answer to the switch", msg);
	repl_log_event(p->o.log_cb, p->o.log_arg, "migration-in-doubt %" PRIu64, p->epoch);
}

/* RUNNING said the destination could not start the VM: it runs on here. */
static void switch_refused(struct repl_primary *p, int32_t status)
{
	char msg[160];

	hv_vm_resume(p->vm);
	snprintf(msg, sizeof(msg), "the destination could not start the VM (%s): it runs on here",
		 strerror(-status));
	primary_migration_over(p, REPL_S_STOPPED, "the destination could not start it", msg);
	repl_log_event(p->o.log_cb, p->o.log_arg, "migration-aborted %" PRIu64, p->epoch);
}

/*
 * The final round: the VM paused for good, the last pages and the state sent
 * and applied, then SWITCH. The VM resumes here unless the destination said
 * it runs it (migrated) or might (in doubt: SWITCH left, no answer came).
 */
static void switch_over(struct repl_primary *p)
{
	struct hv_snapshot_stats sst;
	uint64_t t0 = util_now_ns();
	int32_t status = 0;
	int rc;

	rc = hv_vm_pause(p->vm);
	if (rc < 0) {
		primary_fail(p, rc, "pausing for the switch");
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->epoch++;
	pthread_mutex_unlock(&p->lock);
	rc = primary_capture(p, HV_STREAM_INCREMENTAL, false, NULL, &sst);
	if (rc < 0) {
		hv_vm_resume(p->vm);
		primary_fail(p, rc, "capturing the final round");
		return;
	}
	primary_note_pause(p, &sst, t0);
	if (primary_ship(p, &sst) < 0) { /* the destination has not run anything */
		hv_vm_resume(p->vm);
		return;
	}
	rc = repl_switch_send(&p->link);
	if (!rc)
		rc = repl_running_recv(&p->link, &status);
	pthread_mutex_lock(&p->lock);
	p->st.final_pages = sst.staged_pages;
	p->st.downtime_ns = util_now_ns() - t0;
	p->st.migration_ns = util_now_ns() - p->started_ns;
	pthread_mutex_unlock(&p->lock);
	if (rc < 0) {
		switch_unanswered(p, rc);
		return;
	}
	if (status < 0) {
		switch_refused(p, status);
		return;
	}
	primary_migration_over(p, REPL_S_MIGRATED, "the destination runs it", NULL);
	LOG_INFO("vm %s: migrated to %s in %.1f ms: %u rounds, %" PRIu64
		 " pages in the final pause, downtime %.3f ms",
		 hv_vm_name(p->vm), p->peer, (double)p->st.migration_ns / 1e6, p->st.rounds,
		 sst.staged_pages, (double)p->st.downtime_ns / 1e6);
	repl_log_event(p->o.log_cb, p->o.log_arg, "migrated %" PRIu64, p->epoch);
}

static void pc_progress(void *arg, const struct repl_pc_progress *pr)
{
	struct repl_primary *p = arg;
	uint64_t cut = p->o.migrate->test_cut_pages;

	pthread_mutex_lock(&p->lock);
	p->st.pc = *pr;
	/* the test hook: the link cut once, after that many pages (docs/migration.md) */
	if (cut && pr->sent >= cut && !p->pc_cut_done && p->t->abort) {
		LOG_WARN("vm %s: postcopy: link cut after %" PRIu64 " pages (test hook)",
			 hv_vm_name(p->vm), pr->sent);
		p->t->abort(p->link.c);
		p->pc_cut_done = true;
	}
	pthread_mutex_unlock(&p->lock);
}

/*
 * Postcopy's switch (§8.6): the VM paused here for good; the pages the
 * guest dirtied since the last round are not copied but named (POSTCOPY),
 * the state goes as the final epoch, SWITCH; then the destination runs the
 * VM while this end serves those pages -- asked-for ones first -- from its
 * paused RAM until the destination holds them all.
 */
/* After a break: wait for 'castor migrate --resume' (0) or the end (-ECANCELED). */
static int wait_resume(struct repl_primary *p)
{
	int rc;

	pthread_mutex_lock(&p->lock);
	while (!p->stop && !p->pc_resume)
		pthread_cond_wait(&p->cond, &p->lock);
	rc = p->stop ? -ECANCELED : 0;
	p->pc_resume = false;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/*
 * A new connection to the destination, RESUME in its HELLO; the destination
 * answers with the pages it still lacks (a POSTCOPY frame), which must be
 * among those named at the switch: they become *missing.
 */
static int reconnect(struct repl_primary *p, const struct util_bitmap *named,
		     struct util_bitmap *missing, char *why, size_t why_len)
{
	struct repl_link l = {.t = p->t};
	struct util_bitmap got = {0};
	uint64_t pfn, unnamed = 0;
	struct repl_conn *old;
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	enum repl_frame kind;
	int rc;

	rc = primary_open_link(p, &l, true, why, why_len);
	if (rc < 0)
		goto out;
	rc = repl_frame_recv_into(&l, REPL_POSTCOPY_FRAME_MAX, &buf, &cap, &len, &kind);
	if (!rc && kind != REPL_FRAME_POSTCOPY)
		rc = -EPROTO;
	if (rc < 0) {
		util_why(why, why_len, rc, "no list of the pages it lacks (%s)", strerror(-rc));
		goto out;
	}
	rc = repl_postcopy_frame_parse(buf, len, named->nbits, &got, why, why_len);
	if (rc < 0)
		goto out;
	/* it may only lack what was named at the switch */
	for (pfn = util_bitmap_next_set(&got, 0); pfn < got.nbits;
	     pfn = util_bitmap_next_set(&got, pfn + 1))
		unnamed += !util_bitmap_is_set(named, pfn);
	if (unnamed) {
		rc = util_why(why, why_len, -EPROTO,
			      "it says it lacks %" PRIu64 " pages that were never named", unnamed);
		goto out;
	}
	util_bitmap_clear_all(missing);
	util_bitmap_or(missing, &got);
	/* the new link in; the broken one out (stop and cancel abort p->link under the lock) */
	pthread_mutex_lock(&p->lock);
	old = p->link.c;
	repl_link_dispose(&p->link);
	p->link = l;
	l = (struct repl_link){0};
	pthread_mutex_unlock(&p->lock);
	p->t->close(old);
out:
	if (l.c) {
		repl_link_dispose(&l);
		p->t->close(l.c);
	}
	free(buf);
	util_bitmap_dispose(&got);
	return rc;
}

static void postcopy_switch(struct repl_primary *p)
{
	struct hv_snapshot_stats sst;
	struct util_bitmap missing = {0}, named = {0};
	struct repl_pc_progress pr = {0};
	uint64_t t0 = util_now_ns();
	int32_t ran = REPL_PC_NOT_YET;
	char msg[256], why[200];
	int rc;

	rc = util_bitmap_init(&missing, hv_ram_pages(p->vm));
	if (rc < 0) {
		primary_fail(p, rc, "postcopy");
		return;
	}
	rc = hv_vm_pause(p->vm);
	if (rc < 0) {
		primary_fail(p, rc, "pausing for the switch");
		goto out;
	}
	pthread_mutex_lock(&p->lock);
	p->epoch++;
	p->pc_switch = true;
	pthread_mutex_unlock(&p->lock);
	rc = primary_capture(p, HV_STREAM_INCREMENTAL, false, &missing, &sst);
	if (rc < 0) {
		hv_vm_resume(p->vm);
		primary_fail(p, rc, "capturing the switch to postcopy");
		goto out;
	}
	primary_note_pause(p, &sst, t0);
	pthread_mutex_lock(&p->lock);
	p->st.postcopy = true;
	p->st.pc.pages = util_bitmap_count(&missing);
	pthread_mutex_unlock(&p->lock);
	rc = util_bitmap_init(&named, missing.nbits);
	if (!rc) {
		util_bitmap_or(&named, &missing);
		rc = repl_postcopy_frame_send(&p->link, &missing);
	}
	if (rc < 0) {
		hv_vm_resume(p->vm);
		primary_fail(p, rc, "naming the pages postcopy will bring");
		goto out;
	}
	if (primary_ship(p, &sst) < 0) { /* the destination has not run anything */
		hv_vm_resume(p->vm);
		goto out;
	}
	/* from SWITCH on the VM may run there: this copy stays paused until it is sure */
	pthread_mutex_lock(&p->lock);
	primary_set_state(p, REPL_S_POSTCOPY, "switched to postcopy");
	pthread_mutex_unlock(&p->lock);
	rc = repl_switch_send(&p->link);
	if (!rc) {
		LOG_INFO("vm %s: postcopy: the destination starts the VM; %" PRIu64 " pages follow",
			 hv_vm_name(p->vm), util_bitmap_count(&missing));
		rc = repl_postcopy_serve(&p->link, hv_ram_base(p->vm), &missing,
					 p->o.conn.timeout_ms, &ran, &pr, pc_progress, p);
	}
	pthread_mutex_lock(&p->lock);
	p->st.final_pages = 0;
	p->st.downtime_ns = (p->st.pc.running_ns ? p->st.pc.running_ns : util_now_ns()) - t0;
	pthread_mutex_unlock(&p->lock);
	/*
	 * A link that breaks after SWITCH: the VM may run there (surely, once
	 * RUNNING came), waiting for pages only this copy has. Wait for --resume,
	 * as often as it takes; before RUNNING, --cancel may also resume it here.
	 */
	why[0] = 0;
	while (ran >= 0 && rc < 0) {
		if (why[0])
			snprintf(msg, sizeof(msg), "postcopy could not resume: %.100s; %s", why,
				 ran ? "the destination may run the VM"
				     : "the VM runs at the destination");
		else if (ran)
			snprintf(msg, sizeof(msg),
				 "the link broke after the switch to postcopy, before the "
				 "destination "
				 "answered (%s): it may run the VM, waiting for pages only this "
				 "process "
				 "has: 'castor migrate --resume' once the link is back; if it does "
				 "not "
				 "run it, 'castor migrate --cancel' resumes it here",
				 strerror(-rc));
		else
			snprintf(msg, sizeof(msg),
				 "the link broke during postcopy (%s): the VM runs at the "
				 "destination, which lacks pages that exist only in this "
				 "process: keep it running, and 'castor migrate --resume' once "
				 "the link is back",
				 strerror(-rc));
		primary_migration_over(p, REPL_S_POSTCOPY_BROKEN, "the link broke", msg);
		repl_log_event(p->o.log_cb, p->o.log_arg, "postcopy-broken %" PRIu64, p->epoch);
		if (wait_resume(p) < 0)
			goto out;
		why[0] = 0;
		rc = reconnect(p, &named, &missing, why, sizeof(why));
		if (rc < 0) {
			if (!why[0])
				snprintf(why, sizeof(why), "%s", strerror(-rc));
			continue;
		}
		if (ran) { /* it answered a RESUME: it runs the VM */
			ran = 0;
			pthread_mutex_lock(&p->lock);
			p->st.pc.running_ns = pr.running_ns = util_now_ns();
			pthread_mutex_unlock(&p->lock);
		}
		LOG_INFO("vm %s: postcopy resumed: the destination lacks %" PRIu64 " pages",
			 hv_vm_name(p->vm), util_bitmap_count(&missing));
		repl_log_event(p->o.log_cb, p->o.log_arg, "postcopy-resumed %" PRIu64, p->epoch);
		rc = repl_postcopy_serve(&p->link, hv_ram_base(p->vm), &missing,
					 p->o.conn.timeout_ms, &ran, &pr, pc_progress, p);
	}
	pthread_mutex_lock(&p->lock);
	p->st.migration_ns = util_now_ns() - p->started_ns;
	pthread_mutex_unlock(&p->lock);
	if (ran < 0) {
		switch_refused(p, ran);
	} else {
		primary_migration_over(p, REPL_S_MIGRATED, "every page is at the destination",
				       NULL);
		LOG_INFO("vm %s: migrated to %s in %.1f ms (postcopy): %u rounds, %" PRIu64
			 " pages after the switch (%" PRIu64
			 " asked for), the VM ran there %.3f ms "
			 "after the pause",
			 hv_vm_name(p->vm), p->peer, (double)p->st.migration_ns / 1e6, p->st.rounds,
			 p->st.pc.sent, p->st.pc.on_demand, (double)p->st.downtime_ns / 1e6);
		repl_log_event(p->o.log_cb, p->o.log_arg, "migrated %" PRIu64, p->epoch);
	}
out:
	util_bitmap_dispose(&missing);
	util_bitmap_dispose(&named);
}

static bool postcopy_wanted(struct repl_primary *p)
{
	bool r;

	pthread_mutex_lock(&p->lock);
	r = p->o.migrate->postcopy || p->pc_asked;
	pthread_mutex_unlock(&p->lock);
	return r;
}

/*
 * After the initial copy (its stats in sst, begun at t0): rounds of what the
 * guest dirtied meanwhile, each sent while the guest runs, until the policy
 * says stop-and-copy (then the switch) or abort (the source runs on).
 */
void primary_migrate(struct repl_primary *p, const struct hv_snapshot_stats *sst, uint64_t t0)
{
	struct hv_precopy_stats ps = {.ram_pages = hv_ram_pages(p->vm)};
	struct hv_snapshot_stats rst = *sst;
	enum hv_precopy_action a;
	int rc;

	pthread_mutex_lock(&p->lock);
	primary_set_state(p, REPL_S_MIGRATING, "copied");
	pthread_mutex_unlock(&p->lock);
	for (;;) {
		rc = round_stats(p, &rst, t0, &ps);
		if (rc < 0) {
			primary_fail(p, rc, "counting dirty pages");
			return;
		}
		if (primary_stopping(p)) {
			a = HV_PRECOPY_ABORT;
			break;
		}
		a = p->o.migrate->policy(p->o.migrate->policy_arg, &ps);
		LOG_INFO("vm %s: migration round %u: %" PRIu64 " pages, %" PRIu64
			 " dirty now, link %.0f MB/s, dirtying %.0f pages/s: %s",
			 hv_vm_name(p->vm), ps.passes, ps.pass_pages, ps.pending_pages,
			 (double)ps.link_rate_bps / 1e6, (double)ps.dirty_rate_pps,
			 hv_precopy_action_str(a));
		if (a != HV_PRECOPY_ABORT && postcopy_wanted(p)) {
			postcopy_switch(p);
			return;
		}
		if (a != HV_PRECOPY_CONTINUE)
			break;
		pthread_mutex_lock(&p->lock);
		p->epoch++;
		pthread_mutex_unlock(&p->lock);
		t0 = util_now_ns();
		rc = primary_capture(p, HV_STREAM_INCREMENTAL, true, NULL, &rst);
		if (rc < 0) {
			primary_fail(p, rc, "capturing a round");
			return;
		}
		primary_note_pause(p, &rst, t0);
		if (primary_ship(p, &rst) < 0)
			return;
	}
	if (a == HV_PRECOPY_STOP_AND_COPY) {
		switch_over(p);
		return;
	}
	/* given up (the policy's deadline, or a cancel): tell the destination, run on */
	if (!primary_stopping(p) && repl_bye_send(&p->link) < 0)
		LOG_WARN("vm %s: could not tell the destination that the migration is given up",
			 hv_vm_name(p->vm));
	primary_migration_over(
		p, REPL_S_STOPPED, primary_stopping(p) ? "cancelled" : "given up",
		primary_stopping(p)
			? "the migration was cancelled: the VM runs on here"
			: "the migration was given up by its policy: the VM runs on here");
	repl_log_event(p->o.log_cb, p->o.log_arg, "migration-aborted %" PRIu64, p->epoch);
}

int repl_primary_postcopy_resume(struct repl_primary *p)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	if (p->st.state != REPL_S_POSTCOPY_BROKEN) {
		rc = -EALREADY;
	} else {
		p->pc_resume = true;
		primary_set_state(p, REPL_S_POSTCOPY, "resuming");
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int repl_primary_postcopy(struct repl_primary *p)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	if (!p->o.migrate)
		rc = -EINVAL;
	else if (p->st.state != REPL_S_SYNCING && p->st.state != REPL_S_MIGRATING)
		rc = -EALREADY;
	else
		p->pc_asked = true;
	pthread_mutex_unlock(&p->lock);
	return rc;
}
