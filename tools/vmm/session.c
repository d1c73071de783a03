/*
 * Replication sessions on the VM that runs here. Protection is not a start-up
 * role: `castor ha protect` starts a session on any running VM (also a twin
 * that took over), `castor ha unprotect` ends it, and `castor ha protect`
 * again points a new session at another replica. `castor-vmm run --protect`
 * is the same call made before the control socket opens.
 *
 * Only the main thread starts and stops sessions. The vCPU and I/O threads
 * kick the primary (an output in output mode, a full queue) under kick_lock,
 * so a session stopped here is never kicked after it is freed.
 */
#define LOG_TAG "session"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <unistd.h>

#include "migrate/mig.h"
#include "netbuffer/netbuf.h"
#include "tools/vmm/vmm.h"

#define ANNOUNCE_ROUNDS 5 /* RARP at 0, 50, 150, 300, 500 ms */

void vmm_kick(struct vmm *v)
{
	pthread_mutex_lock(&v->kick_lock);
	if (v->primary)
		repl_primary_kick(v->primary);
	pthread_mutex_unlock(&v->kick_lock);
}

static void set_primary(struct vmm *v, struct repl_primary *p, bool kick_on_output)
{
	pthread_mutex_lock(&v->kick_lock);
	v->primary = p;
	__atomic_store_n(&v->kick_on_output, kick_on_output, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&v->kick_lock);
}

/* The DR session's lines in the event log ("dr ack 5"), apart from the synchronous one's. */
static void dr_event_line(void *arg, const char *line)
{
	char buf[192];

	snprintf(buf, sizeof(buf), "dr %s", line);
	vmm_event_line(arg, buf);
}

static bool has_writable_disk(struct hv_vm *vm)
{
	for (unsigned i = 0; hv_vm_blk(vm, i); i++)
		if (!hv_blk_read_only(hv_vm_blk(vm, i)))
			return true;
	return false;
}

/* Whether a session may start beside `other` (NULL: none). */
static int beside(struct vmm *v, struct repl_primary *other, bool dr, char *why, size_t why_len)
{
	struct repl_status st;

	if (!other)
		return 0;
	repl_primary_status(other, &st);
	if (st.migration && st.state != REPL_S_STOPPED)
		return util_why(why, why_len, -EBUSY,
				"migrating to %s (%s): protect the VM on the host it lands on",
				st.peer, repl_state_str(st.state));
	/* a disk's writes go to one session's replica (replication/disk_tx.c) */
	if (has_writable_disk(v->vm))
		return util_why(
			why, why_len, -EOPNOTSUPP,
			"the VM has a writable disk, which its %s session to %s replicates: "
			"such a VM has one session at a time ('castor %s unprotect' first)",
			dr ? "synchronous" : "DR", st.peer, dr ? "ha" : "dr");
	return 0;
}

int vmm_protect(struct vmm *v, const struct repl_primary_opts *o, char *why, size_t why_len)
{
	struct repl_primary_opts ro = *o;
	bool dr = o->mode == REPL_MODE_ASYNC;
	struct repl_primary **slot = dr ? &v->dr : &v->primary;
	struct repl_primary *p = NULL, *old = NULL;
	struct repl_status st;
	int rc;

	if (!v->vm) {
		snprintf(why, why_len, "no VM runs here yet (%s)",
			 v->secondary ? "a replica protects nothing until its twin takes over"
				      : "a standby waits for 'castor vm restore'");
		return -ENODEV;
	}
	if (*slot) {
		repl_primary_status(*slot, &st);
		/*
		 * A degraded session is over (its replica is gone; an async one
		 * may be trying to resume, and stops): a new one replaces it, and
		 * a synchronous one's initial copy takes the outputs still held
		 * (repl_primary_start). Any other is refused: one replica per kind.
		 */
		if (st.state != REPL_S_DEGRADED && !(st.migration && st.state == REPL_S_STOPPED)) {
			snprintf(why, why_len,
				 dr ? "already keeping a DR copy at %s (%s): 'castor dr unprotect' "
				      "first to point it elsewhere"
				    : "already protecting to %s (%s): 'castor ha unprotect' first "
				      "to "
				      "point it elsewhere",
				 st.peer, repl_state_str(st.state));
			return -EALREADY;
		}
		old = *slot;
	}
	rc = beside(v, dr ? v->primary : v->dr, dr, why, why_len);
	if (rc < 0)
		return rc;
	/* the process's key, and its rule for links without one, hold for every session */
	rc = ro.peer ? vmm_link_allowed(v->o, "the replica", ro.peer, why, why_len) : 0;
	if (rc < 0)
		return rc;
	ro.key = v->o->ro.key;
	ro.encrypt = v->o->ro.encrypt;
	/* the process's defaults for what the request leaves out */
	if (!ro.conn.timeout_ms)
		ro.conn.timeout_ms = v->o->ro.conn.timeout_ms;
	if (!ro.conn.cut_after_bytes)
		ro.conn.cut_after_bytes = v->o->ro.conn.cut_after_bytes;
	ro.thread_nice = v->o->ro.thread_nice;
	ro.thread_rt = v->o->ro.thread_rt;
	/* the DR session holds no output: the queue is the synchronous session's alone */
	ro.outq = dr ? NULL : v->outq;
	ro.log_cb = dr ? dr_event_line : vmm_event_line;
	/*
	 * The new session starts before a degraded one is dropped: if it cannot,
	 * the VM stays degraded, its outputs held, rather than losing its session.
	 */
	rc = repl_primary_start(v->vm, &ro, &p, why, why_len);
	if (rc < 0)
		return rc;
	if (dr) {
		v->dr = p;
	} else {
		set_primary(v, p, ro.mode == REPL_MODE_OUTPUT);
		if (v->mig) { /* a migration given up before: its throttle thread goes too */
			mig_source_free(v->mig);
			v->mig = NULL;
		}
	}
	if (old) { /* st: the old session's, read above */
		LOG_INFO("vm %s: the %s %ssession to %s is replaced by one to %s", v->name,
			 repl_state_str(st.state), dr ? "DR " : "", st.peer,
			 ro.peer ? ro.peer : "?");
		repl_primary_free(old);
		/* its hot pages are dropped; the new session asks for them after its copy */
	}
	v->sessions++;
	vmm_event_line(NULL, dr ? "dr protect" : "protect");
	return 0;
}

/* The DR session stops: nothing held, nothing to release. */
static int dr_unprotect(struct vmm *v, const struct repl_status *st)
{
	struct repl_primary *p = v->dr;
	int64_t acked;

	v->dr = NULL;
	acked = repl_primary_stop(p, true);
	repl_primary_free(p);
	LOG_INFO("vm %s: the DR session stopped (was %s to %s; last acknowledged checkpoint "
		 "%" PRId64 ")",
		 v->name, repl_state_str(st->state), st->peer, acked);
	vmm_event_line(NULL, "dr unprotect");
	return 0;
}

int vmm_unprotect(struct vmm *v, bool force, bool dr, uint64_t *released_out, char *why,
		  size_t why_len)
{
	struct repl_primary *p = dr ? v->dr : v->primary ? v->primary : v->dr;
	struct repl_status st;
	int64_t acked;
	int rc, n;

	*released_out = 0;
	if (!p) {
		snprintf(why, why_len,
			 dr ? "this VM has no DR session" : "this VM is not protected");
		return -ENOENT;
	}
	repl_primary_status(p, &st);
	if (st.migration) {
		snprintf(why, why_len, "this VM is not protected but %s to %s%s",
			 st.state == REPL_S_STOPPED ? "was migrating" : "migrating", st.peer,
			 st.state == REPL_S_STOPPED ? ""
						    : ": 'castor migrate --cancel' gives it up");
		return -ENOENT;
	}
	if (st.state == REPL_S_SYNCING && !force) {
		snprintf(why, why_len,
			 "the initial copy to %s is in progress (%" PRIu64 " of %" PRIu64
			 " bytes sent): add --force to abandon it",
			 st.peer, st.sync_sent_bytes, st.sync_total_bytes);
		return -EBUSY;
	}
	if (p == v->dr)
		return dr_unprotect(v, &st);
	set_primary(v, NULL, false);
	acked = repl_primary_stop(p, true);
	repl_primary_free(p);
	/*
	 * With the VM paused no output is produced: the held ones go out first,
	 * then the queue passes outputs straight through.
	 */
	rc = hv_vm_pause(v->vm);
	n = nb_queue_release_all(v->outq);
	if (!rc)
		hv_vm_resume(v->vm);
	*released_out = (uint64_t)n;
	LOG_INFO("vm %s: unprotected (was %s to %s; last acknowledged epoch %" PRId64
		 "); %d held outputs released",
		 v->name, repl_state_str(st.state), st.peer, acked, n);
	{
		char line[64];

		snprintf(line, sizeof(line), "unprotect %d", n);
		vmm_event_line(NULL, line);
	}
	return 0;
}

int vmm_failover(struct vmm *v, bool force, char *why, size_t why_len)
{
	struct hv_vm *vm = NULL;
	int rc;

	if (!v->secondary) {
		snprintf(why, why_len, "this castor-vmm is not a replica");
		return -EOPNOTSUPP;
	}
	rc = repl_secondary_failover(v->secondary, force, &vm, why, why_len);
	if (rc < 0)
		return rc;
	v->failed_over = true;
	v->vm = vm;
	/*
	 * The guest's MAC now lives behind this host's taps: a RARP from it
	 * teaches bridges its new port, as QEMU's announce does. (A gratuitous
	 * ARP would need the guest's IP, which the VMM does not know.)
	 */
	for (unsigned i = 0; i < v->devs.ntaps; i++)
		nb_tap_announce(v->devs.taps[i], v->devs.macs[i], 0, ANNOUNCE_ROUNDS);
	return 0;
}

void vmm_sessions_stop(struct vmm *v)
{
	struct repl_primary *p = v->primary;

	set_primary(v, NULL, false);
	repl_primary_free(p); /* before the VM stops: its thread pauses the VM */
	repl_primary_free(v->dr);
	v->dr = NULL;
	mig_source_free(v->mig); /* after the session that asks its policy */
	v->mig = NULL;
	repl_secondary_free(v->secondary);
	v->secondary = NULL;
}

/* ---- live migration ------------------------------------------------------------------ */

#define MIG_WATCH_MS	  50
#define MIGRATED_LINGER_S 10 /* `castor migrate` reads the summary and quits us before */

/* Source: the session's end stops the throttle; the destination running the VM ends us. */
static void mig_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vmm *v = arg;
	struct repl_status st;

	(void)fd;
	(void)what;
	if (!v->primary)
		return;
	repl_primary_status(v->primary, &st);
	if (!st.migration || st.state == REPL_S_SYNCING || st.state == REPL_S_MIGRATING)
		return;
	if (v->mig) { /* past the rounds: no throttle may pause the VM any more */
		mig_source_progress(v->mig, &v->mig_last);
		mig_source_free(v->mig);
		v->mig = NULL;
	}
	if (st.state == REPL_S_POSTCOPY) /* the pages go until the destination has them all */
		return;
	if (st.state != REPL_S_MIGRATED) {
		event_del(v->mig_watch);
		return;
	}
	if (!v->migrated_ns) {
		v->migrated_ns = util_now_ns();
		LOG_INFO("vm %s: runs at %s now; this process ends within %d s", v->name, st.peer,
			 MIGRATED_LINGER_S);
	} else if (util_now_ns() - v->migrated_ns > MIGRATED_LINGER_S * 1000000000ull) {
		event_del(v->mig_watch);
		event_base_loopexit(v->base, NULL);
	}
}

int vmm_migrate(struct vmm *v, const struct vmm_migrate_req *r, char *why, size_t why_len)
{
	struct mig_policy_opts po = {.downtime_ms = r->downtime_ms,
				     .timeout_ns = (uint64_t)r->timeout_s * 1000000000ull,
				     .no_throttle = r->no_throttle,
				     .postcopy = r->postcopy,
				     .test_cut_pages = v->o->pc_test_cut_pages};
	struct repl_primary_opts ro = {.peer = r->peer, .verify = r->verify};
	struct repl_primary *p = NULL, *old = NULL;
	struct mig_source *m = NULL;
	struct repl_status st;
	int rc;

	if (!v->vm) {
		snprintf(why, why_len, "no VM runs here yet");
		return -ENODEV;
	}
	if (!r->peer || !*r->peer) {
		snprintf(why, why_len, "migrate: the destination's HOST:PORT is required");
		return -EINVAL;
	}
	if (v->dr) {
		repl_primary_status(v->dr, &st);
		snprintf(
			why, why_len,
			"this VM keeps a DR copy at %s (%s): 'castor dr unprotect' first, migrate, "
			"then protect it again from its new host",
			st.peer, repl_state_str(st.state));
		return -EALREADY;
	}
	if (v->primary) {
		repl_primary_status(v->primary, &st);
		/* a migration that was given up may be tried again; anything else is refused */
		if (!(st.migration && st.state == REPL_S_STOPPED)) {
			snprintf(why, why_len,
				 st.migration
					 ? "already migrating to %s (%s)"
					 : "this VM is protected toward %s (%s): 'castor ha "
					   "unprotect' first, migrate, then protect it again from "
					   "its new host",
				 st.peer, repl_state_str(st.state));
			return -EALREADY;
		}
		old = v->primary;
	}
	rc = vmm_link_allowed(v->o, "the destination", r->peer, why, why_len);
	if (rc < 0)
		return rc;
	ro.key = v->o->ro.key;
	ro.encrypt = v->o->ro.encrypt;
	ro.conn.timeout_ms = r->timeout_ms ? r->timeout_ms : v->o->ro.conn.timeout_ms;
	ro.conn.cut_after_bytes = v->o->ro.conn.cut_after_bytes;
	ro.thread_nice = v->o->ro.thread_nice;
	ro.thread_rt = v->o->ro.thread_rt;
	ro.log_cb = vmm_event_line;
	if (!v->mig_watch) {
		v->mig_watch = event_new(v->base, -1, EV_PERSIST, mig_watch_cb, v);
		if (!v->mig_watch) {
			snprintf(why, why_len, "out of memory");
			return -ENOMEM;
		}
	}
	rc = mig_source_new(v->vm, &po, &m);
	if (rc < 0) {
		snprintf(why, why_len, "cannot set the migration up (%s)", strerror(-rc));
		return rc;
	}
	ro.migrate = mig_source_session(m);
	if (old) { /* the session given up before: its throttle is long gone */
		set_primary(v, NULL, false);
		repl_primary_free(old);
	}
	rc = repl_primary_start(v->vm, &ro, &p, why, why_len);
	if (rc < 0) {
		mig_source_free(m);
		return rc;
	}
	mig_source_free(v->mig);
	v->mig = m;
	memset(&v->mig_last, 0, sizeof(v->mig_last));
	set_primary(v, p, false);
	{
		struct timeval tv = {0, MIG_WATCH_MS * 1000};

		event_add(v->mig_watch, &tv);
	}
	vmm_event_line(NULL, "migrate");
	return 0;
}

/* The session of a migration from here, its status in *st; -ENOENT without one. */
static int session_here(struct vmm *v, struct repl_status *st, char *why, size_t why_len)
{
	if (!v->primary) {
		snprintf(why, why_len, "no migration from here");
		return -ENOENT;
	}
	repl_primary_status(v->primary, st);
	return 0;
}

int vmm_migrate_postcopy(struct vmm *v, char *why, size_t why_len)
{
	struct repl_status st;
	int rc = session_here(v, &st, why, why_len);

	if (rc < 0)
		return rc;
	rc = repl_primary_postcopy(v->primary);
	if (rc == -EINVAL)
		snprintf(why, why_len, "no migration from here: the VM is protected to %s",
			 st.peer);
	else if (rc < 0)
		snprintf(why, why_len, "the migration is past its rounds (%s)",
			 repl_state_str(st.state));
	else
		LOG_INFO("vm %s: the migration to %s switches to postcopy after this round",
			 v->name, st.peer);
	return rc;
}

int vmm_migrate_resume(struct vmm *v, char *why, size_t why_len)
{
	struct repl_status st;
	int rc = session_here(v, &st, why, why_len);

	if (rc < 0)
		return rc;
	rc = repl_primary_postcopy_resume(v->primary);
	if (rc < 0) {
		snprintf(why, why_len, "nothing to resume: the migration is %s",
			 repl_state_str(st.state));
		return rc;
	}
	LOG_INFO("vm %s: postcopy to %s resumes on request", v->name, st.peer);
	if (v->mig_watch) { /* it ends us once the destination holds every page */
		struct timeval tv = {0, MIG_WATCH_MS * 1000};

		event_add(v->mig_watch, &tv);
	}
	return 0;
}

int vmm_migrate_cancel(struct vmm *v, char *why, size_t why_len)
{
	struct repl_status st;

	if (!v->primary) {
		snprintf(why, why_len, "no migration from here");
		return -ENOENT;
	}
	repl_primary_status(v->primary, &st);
	if (!st.migration) {
		snprintf(why, why_len, "no migration from here: the VM is protected to %s",
			 st.peer);
		return -ENOENT;
	}
	switch (st.state) {
	case REPL_S_MIGRATED:
		snprintf(why, why_len, "too late: the VM runs at %s", st.peer);
		return -EALREADY;
	case REPL_S_POSTCOPY_BROKEN:
		if (!st.pc.running_ns) {
			/* the destination never said it runs it: the operator says it does not */
			repl_primary_stop(v->primary, false);
			hv_vm_resume(v->vm);
			LOG_WARN("vm %s: resumed here after a postcopy broken before the "
				 "destination answered, on request",
				 v->name);
			vmm_event_line(NULL, "migration-resumed");
			return 0;
		}
		/* fall through */
	case REPL_S_POSTCOPY:
		snprintf(why, why_len,
			 "too late: the VM runs at %s (postcopy); this process holds %" PRIu64
			 " pages it still lacks",
			 st.peer, st.pc.pages - st.pc.sent);
		return -EALREADY;
	case REPL_S_STOPPED:
		snprintf(why, why_len, "the migration is already over: %s", st.last_error);
		return -EALREADY;
	case REPL_S_IN_DOUBT:
		/* the operator says the destination does not run it: this copy goes on */
		repl_primary_stop(v->primary, false);
		hv_vm_resume(v->vm);
		LOG_WARN("vm %s: resumed here after a migration in doubt, on request", v->name);
		vmm_event_line(NULL, "migration-resumed");
		return 0;
	default: /* the session's thread ends it; the main loop goes on meanwhile */
		repl_primary_cancel(v->primary);
		LOG_INFO("vm %s: migration to %s cancelled on request", v->name, st.peer);
		return 0;
	}
}

/* Incoming: the source's stream ended; act on it here, on the main thread. */
static void incoming_end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vmm *v = arg;
	struct repl_status st;
	char why[320], c;

	(void)what;
	while (read(fd, &c, 1) > 0)
		;
	if (!v->secondary || v->vm)
		return;
	repl_secondary_status(v->secondary, &st);
	if (st.state == REPL_S_SWITCHING && vmm_failover(v, true, why, sizeof(why)) == 0) {
		LOG_INFO("vm %s: migrated in: the VM runs here", v->name);
		vmm_event_line(NULL, "migrated-in");
		return;
	}
	if (st.state == REPL_S_SWITCHING)
		LOG_ERR("vm %s: the source handed the VM over but it would not start here: %s",
			v->name, why);
	else
		LOG_ERR("vm %s: %s", v->name, st.last_error[0] ? st.last_error : "the source left");
	fprintf(stderr, "castor-vmm: incoming: the migration did not complete: %s\n",
		st.state == REPL_S_SWITCHING ? why : st.last_error);
	v->exit_status = 1;
	event_base_loopexit(v->base, NULL);
}

int vmm_incoming_watch(struct vmm *v)
{
	v->mig_end = event_new(v->base, v->mig_pipe[0], EV_READ | EV_PERSIST, incoming_end_cb, v);
	if (!v->mig_end || event_add(v->mig_end, NULL) < 0)
		return -ENOMEM;
	return 0;
}
