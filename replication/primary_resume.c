/*
 * Async (DR) mode's resume (docs/stream-format.md §8.7, docs/dr.md): when the
 * link to the replica breaks, the guest runs on (async mode holds no output)
 * and the session connects again, RESUME in its HELLO, every
 * RESUME_RETRY_MS. The replica, which kept its copy at the last checkpoint it
 * applied whole, acks that checkpoint's stream id first: either the last one
 * sent (only its ack was lost) or the one before (the last one was lost in
 * flight: the chain takes it back, and its pages go out again with the next).
 * No full copy. A replica that holds anything else, or refuses for good (it
 * took over, restarted, keeps disks), ends the session degraded: protect
 * again.
 */
#define LOG_TAG "primary"
#include "replication/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define RESUME_RETRY_MS	 1000u
#define RESUME_LOG_EVERY 30u /* tries between two log lines while the replica is away */

/* Wait `ms` or until the session is stopped; true when stopped. */
static bool stopped_within(struct repl_primary *p, uint32_t ms)
{
	struct timespec ts = util_mono_ts(util_now_ns() + (uint64_t)ms * 1000000ull);
	bool stop;

	pthread_mutex_lock(&p->lock);
	while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
		;
	stop = p->stop;
	pthread_mutex_unlock(&p->lock);
	return stop;
}

/* Refusals that another try would meet again. */
static bool final_refusal(int rc)
{
	return rc == -ENOENT || rc == -EIO || rc == -EINVAL || rc == -EOPNOTSUPP ||
	       rc == -EALREADY || rc == -EACCES || rc == -ESTALE;
}

/* Give up: the session stays degraded with `why`; a new protection copies everything. */
static int give_up(struct repl_primary *p, int rc, const char *why)
{
	pthread_mutex_lock(&p->lock);
	snprintf(p->st.last_error, sizeof(p->st.last_error), "no resume: %.140s", why);
	pthread_mutex_unlock(&p->lock);
	LOG_ERR("vm %s: async: cannot resume toward %s: %s; protect again (a full copy)",
		hv_vm_name(p->vm), p->peer, why);
	repl_log_event(p->o.log_cb, p->o.log_arg, "resume-failed %" PRIu64, p->epoch);
	return rc;
}

/*
 * One try: connect with RESUME, hear the checkpoint the replica holds, pick
 * up from it. 0 (resumed), or -errno with `why`.
 */
static int try_resume(struct repl_primary *p, char *why, size_t why_len)
{
	struct repl_link l = {.t = p->t};
	struct repl_conn *old;
	uint64_t id = 0, at;
	int32_t status = 0;
	int rc, back;

	rc = primary_open_link(p, &l, true, why, why_len);
	if (rc < 0)
		goto out;
	rc = repl_ack_recv(&l, &id, &status);
	if (!rc && status)
		rc = status;
	if (rc < 0) {
		util_why(why, why_len, rc, "the replica named no checkpoint (%s)", strerror(-rc));
		goto out;
	}
	back = hv_snap_chain_rewind(p->chain, id);
	if (back < 0) {
		rc = util_why(why, why_len, -ESTALE,
			      "the replica holds checkpoint %016" PRIx64
			      ", neither of the last two this session sent",
			      id);
		goto out;
	}
	/*
	 * The encoder's page cache holds what was sent, lost or not: the next
	 * epoch's deltas would be against pages the replica may never have had.
	 */
	repl_encoder_reset(p->enc);
	/* the new link in, the broken one out (stop aborts p->link under the lock) */
	pthread_mutex_lock(&p->lock);
	old = p->link.c;
	repl_link_dispose(&p->link);
	p->link = l;
	l = (struct repl_link){0};
	if (back) {
		/* the checkpoint in flight was lost: its number is used again */
		p->epoch = p->st.acked_epoch;
		p->st.epoch = p->epoch;
	} else if (p->st.acked_epoch != p->epoch) {
		/* it had arrived whole; only its ack was lost */
		p->st.acked_epoch = p->epoch;
		p->st.epochs++;
		primary_note_checkpoint(p, p->unacked_ns);
	}
	at = p->epoch;
	p->unacked_ns = 0;
	p->last_io_ns = util_now_ns();
	p->st.last_error[0] = '\0';
	primary_set_state(p, REPL_S_PROTECTED, "resumed");
	pthread_mutex_unlock(&p->lock);
	p->t->close(old);
	LOG_INFO("vm %s: async: resumed toward %s from checkpoint %" PRIu64 " without a full "
		 "copy (%s)",
		 hv_vm_name(p->vm), p->peer, at,
		 back ? "the one in flight was lost: its pages go again"
		      : "the one in flight had arrived");
	repl_log_event(p->o.log_cb, p->o.log_arg, "resumed %" PRIu64, at);
out:
	if (l.c) {
		repl_link_dispose(&l);
		p->t->close(l.c);
	}
	return rc;
}

int primary_resume_async(struct repl_primary *p)
{
	char why[REPL_WELCOME_TEXT + 128] = "";
	unsigned tries = 0;
	int rc;

	/* the replica may still read the broken link: an end of stream tells it now */
	pthread_mutex_lock(&p->lock);
	if (p->link.c && p->t->abort)
		p->t->abort(p->link.c);
	pthread_mutex_unlock(&p->lock);
	LOG_WARN("vm %s: async: the link to %s broke; the guest runs on, and the session "
		 "connects again every %u ms to resume from the replica's checkpoint",
		 hv_vm_name(p->vm), p->peer, RESUME_RETRY_MS);
	for (;;) {
		if (stopped_within(p, RESUME_RETRY_MS))
			return -ECANCELED;
		why[0] = '\0';
		rc = try_resume(p, why, sizeof(why));
		if (!rc)
			return 0;
		if (primary_stopping(p))
			return -ECANCELED;
		if (final_refusal(rc))
			return give_up(p, rc, why);
		if (tries++ % RESUME_LOG_EVERY == 0)
			LOG_INFO("vm %s: async: not resumed yet (try %u): %s", hv_vm_name(p->vm),
				 tries, why);
		pthread_mutex_lock(&p->lock);
		snprintf(p->st.last_error, sizeof(p->st.last_error), "resuming: %.140s", why);
		pthread_mutex_unlock(&p->lock);
	}
}
