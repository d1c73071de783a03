/*
 * The primary: protect a running VM by sending it, epoch after epoch, to the
 * secondary (design.md §4).
 *
 * One thread ("castor-repl") runs the whole loop. It connects, sends the
 * initial full copy (live passes while the guest runs, then a short pause),
 * and then for every epoch e:
 *   1. waits until the epoch should end: interval_ms after the previous
 *      pause, or earlier when kicked (output mode: the guest emitted output,
 *      no sooner than min_spacing_ms; the output queue is full) or when the
 *      dirty-page cap is passed;
 *   2. pauses the VM for only: the dirty-log take, the copy of the dirty
 *      pages to staging, the vCPU/VM/device state, sealing epoch e of the
 *      output queue (and in verify mode the RAM digest); resumes;
 *   3. encodes the epoch (codec_enc.c), sends it, waits for its ack;
 *   4. on the ack releases the outputs of epoch e.
 * The guest runs during 1, 3 and 4. A send or ack that fails leaves the
 * primary "degraded": the guest keeps running, its outputs stay held (they
 * are never released without an ack), and the loop ends.
 *
 * While it waits in 1 longer than a quarter of the connection's timeout (or
 * of the replica's, if shorter: it says in its WELCOME), the thread sends a
 * heartbeat (PING, answered by a PONG), so a dead link is noticed within 1.25
 * timeouts whatever the interval, and the replica never mistakes a long
 * interval for a dead primary.
 */
#define LOG_TAG "primary"
#include "replication/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netbuffer/netbuf.h"
#include "replication/codec.h"
#include "replication/disk_int.h"
#include "replication/engine.h"
#include "util/util.h"

#define MS		    1000000ull
#define SYNC_LIVE_PASSES    8u	 /* initial copy: at most this many passes while running */
#define SYNC_STOP_PAGES	    256u /* and stop once this few pages are left dirty */
#define ROUND_LIVE_PASSES   2u	 /* a migration's round: its pages, then what that dirtied */
#define DIRTY_POLL_MS	    2u	 /* how often the dirty cap is checked */
#define DEFAULT_CACHE_PAGES 16384u
#define DEFAULT_INTERVAL_MS 25u
#define DEFAULT_RPO_MS	    5000u      /* async mode's target */
#define SYNC_CHUNK	    (4u << 20) /* the initial copy is sent in pieces: progress */
#define WELCOME_WAIT_MS	    5000u      /* a replica busy with a port scan answers late */

void primary_set_state(struct repl_primary *p, enum repl_state to, const char *why)
{
	repl_state_change(hv_vm_name(p->vm), &p->st.state, to, why);
}

void primary_fail(struct repl_primary *p, int rc, const char *what)
{
	pthread_mutex_lock(&p->lock);
	if (p->stop) { /* we cut the connection ourselves: not a failure */
		pthread_mutex_unlock(&p->lock);
		LOG_INFO("vm %s: epoch %" PRIu64 ": %s ended by stop", hv_vm_name(p->vm), p->epoch,
			 what);
		return;
	}
	snprintf(p->st.last_error, sizeof(p->st.last_error), "epoch %" PRIu64 ": %s: %s", p->epoch,
		 what, strerror(-rc));
	if (p->o.migrate) { /* nothing is held: the migration is over, the source runs on */
		LOG_ERR("vm %s: migration to %s aborted: %s; the VM runs on here",
			hv_vm_name(p->vm), p->peer, p->st.last_error);
		primary_set_state(p, REPL_S_STOPPED, what);
		pthread_mutex_unlock(&p->lock);
		repl_log_event(p->o.log_cb, p->o.log_arg, "migration-aborted %" PRIu64, p->epoch);
		return;
	}
	LOG_ERR("vm %s: %s; %s", hv_vm_name(p->vm), p->st.last_error,
		p->o.outq ? "output stays held" : "outputs flow (no output commit: async mode)");
	primary_set_state(p, REPL_S_DEGRADED, what);
	pthread_mutex_unlock(&p->lock);
	repl_log_event(p->o.log_cb, p->o.log_arg, "degraded %" PRIu64, p->epoch);
}

/*
 * In the pause: the content of epoch p->epoch is fixed. Seal its outputs
 * (later ones belong to the next epoch) and, in verify mode, digest RAM and
 * the replicated disks.
 */
static int in_pause(void *arg, struct hv_vm *vm, struct hv_stream_writer *w)
{
	struct repl_primary *p = arg;
	int rc;

	p->sealed = 0;
	if (p->dtx) {
		rc = disk_tx_seal(p->dtx, p->epoch);
		if (rc < 0)
			return rc;
	}
	if (p->o.outq) {
		rc = nb_epoch_begin(p->o.outq, p->epoch + 1);
		if (rc < 0)
			return rc;
		p->sealed = rc;
	}
	if (p->o.verify && !p->pc_switch) {
		struct repl_digest_rec d = {.epoch = p->epoch, .crc32c = repl_ram_digest(vm)};
		struct iovec iov = {&d, sizeof(d)};

		rc = hv_stream_write(w, REPL_REC_DIGEST, &iov, 1);
		/* and the disks', which the replica compares once it has committed the epoch */
		if (!rc && p->dtx)
			rc = disk_tx_write_digests(p->dtx, p->epoch, w);
		return rc;
	}
	return 0;
}

static void sync_progress(void *arg, uint64_t sent, uint64_t total)
{
	struct repl_primary *p = arg;

	pthread_mutex_lock(&p->lock);
	p->st.sync_sent_bytes = sent;
	p->st.sync_total_bytes = total;
	pthread_mutex_unlock(&p->lock);
}

/*
 * Capture epoch p->epoch into p->w (full: the initial copy). `live`: passes
 * while the guest runs before the pause (the initial copy, a migration's
 * rounds); else everything is copied in the pause (epochs).
 */
int primary_capture(struct repl_primary *p, enum hv_stream_kind kind, bool live,
		    struct util_bitmap *defer, struct hv_snapshot_stats *st)
{
	static const struct hv_precopy_passes sync = {.max_passes = SYNC_LIVE_PASSES,
						      .stop_pages = SYNC_STOP_PAGES};
	static const struct hv_precopy_passes round = {.max_passes = ROUND_LIVE_PASSES,
						       .stop_pages = SYNC_STOP_PAGES};
	struct hv_snapshot_opts so = {
		.precopy = live ? hv_precopy_passes_policy : NULL,
		.precopy_arg = (void *)(kind == HV_STREAM_FULL ? &sync : &round),
		.pause_cb = in_pause,
		.pause_arg = p,
		.defer = defer,
	};
	int rc;

	hv_stream_writer_reset(p->w);
	rc = hv_snap_chain_save(p->chain, p->w, kind, &so, st);
	return rc;
}

/*
 * Async mode, with p->lock held, once a checkpoint taken at pause_ns is
 * acknowledged: the RPO just before it (the age of the previous one) is a
 * sample; past the target an alert is logged, and a line when it is back.
 */
void primary_note_checkpoint(struct repl_primary *p, uint64_t pause_ns)
{
	uint64_t now = util_now_ns(), target = (uint64_t)p->o.rpo_ms * MS;

	if (p->ckpt_ns)
		repl_window_add(&p->rpos, now - p->ckpt_ns);
	if (p->ckpt_ns && now - p->ckpt_ns > target && !p->rpo_over) {
		p->rpo_over = true;
		p->st.rpo_alerts++;
		LOG_WARN("vm %s: RPO alert: the replica's newest checkpoint was %.1f s old "
			 "(target %.1f s)",
			 hv_vm_name(p->vm), (double)(now - p->ckpt_ns) / 1e9, (double)target / 1e9);
		repl_log_event(p->o.log_cb, p->o.log_arg, "rpo-over %" PRIu64, p->epoch);
	} else if (p->rpo_over && now - pause_ns <= target) {
		p->rpo_over = false;
		LOG_INFO("vm %s: RPO back within its target: the newest checkpoint is %.1f s old",
			 hv_vm_name(p->vm), (double)(now - pause_ns) / 1e9);
	}
	if (pause_ns)
		p->ckpt_ns = pause_ns;
}

/* Encode, send and wait for the ack of the epoch in p->w; then release its outputs. */
int primary_ship(struct repl_primary *p, const struct hv_snapshot_stats *sst)
{
	struct repl_codec_stats cst = {0};
	uint64_t acked_id, t0, rtt, enc_ns;
	const uint8_t *data;
	int32_t status;
	size_t len;
	int rc;

	/* the outputs of this epoch, in queue order: the ack below releases them */
	repl_log_event(p->o.log_cb, p->o.log_arg, "epoch %" PRIu64 " outputs %d", p->epoch,
		       p->sealed);
	data = hv_stream_writer_data(p->w, &len);
	t0 = util_now_ns();
	rc = repl_encode(p->enc, data, len, &p->wire, &cst);
	enc_ns = util_now_ns() - t0;
	if (rc < 0) {
		primary_fail(p, rc, "encoding");
		return rc;
	}
	t0 = util_now_ns();
	/* what is left of this epoch's disk writes, and their seals, go first */
	if (p->dtx) {
		rc = disk_tx_send(p->dtx, &p->link, p->epoch, true);
		if (rc < 0) {
			primary_fail(p, rc,
				     rc == -ENOBUFS ? "disk writes (the replica fell behind)"
						    : "sending disk writes");
			return rc;
		}
	}
	if (p->st.state == REPL_S_SYNCING || p->st.state == REPL_S_MIGRATING)
		rc = repl_epoch_send_progress(&p->link, p->wire.data, p->wire.len, SYNC_CHUNK,
					      sync_progress, p);
	else
		rc = repl_epoch_send(&p->link, p->wire.data, p->wire.len);
	if (rc < 0) {
		p->lost_link = true;
		primary_fail(p, rc, "sending");
		return rc;
	}
	/* the peer acks once it has applied the stream: a big one gets longer */
	rc = repl_ack_recv_sized(&p->link,
				 p->st.state == REPL_S_SYNCING ? REPL_SYNC_TIMEOUT_MS
							       : p->o.conn.timeout_ms,
				 len, &acked_id, &status);
	/* a refusal may come before the receiver could read the stream's id */
	if (!rc && !status && acked_id != sst->stream_id)
		rc = -EPROTO;
	if (rc < 0) {
		p->lost_link = rc != -EPROTO;
		primary_fail(p, rc, "waiting for the ack");
		return rc;
	}
	if (status) {
		repl_encoder_reset(p->enc);
		primary_fail(
			p, status,
			status == -EILSEQ
				? "verify: the secondary's RAM or disk digest differs from ours"
			: p->o.migrate ? "the destination refused it (its log says why; its --net "
					 "and --disk "
					 "must match this VM's devices)"
				       : "the secondary refused the epoch");
		return status;
	}
	rtt = util_now_ns() - t0;
	p->last_ship_ns = rtt;
	/* the ack is logged before any output it frees */
	repl_log_event(p->o.log_cb, p->o.log_arg, "ack %" PRIu64, p->epoch);
	if (p->o.outq)
		nb_epoch_release(p->o.outq, p->epoch);

	pthread_mutex_lock(&p->lock);
	p->st.acked_epoch = p->epoch;
	p->st.epochs++;
	p->st.last_raw_bytes = cst.in_bytes;
	p->st.last_wire_bytes = cst.out_bytes;
	p->st.total_raw_bytes += cst.in_bytes;
	p->st.total_wire_bytes += cst.out_bytes;
	p->st.last_pages = sst->precopy_pages + sst->staged_pages;
	p->st.ack_rtt_last_ns = rtt;
	repl_window_add(&p->rtts, rtt);
	repl_window_add(&p->encodes, enc_ns);
	if (p->o.verify)
		p->st.verify_ok++;
	if (p->o.mode == REPL_MODE_ASYNC)
		primary_note_checkpoint(p, p->unacked_ns);
	p->unacked_ns = 0;
	p->last_io_ns = util_now_ns();
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void primary_note_pause(struct repl_primary *p, const struct hv_snapshot_stats *sst,
			uint64_t pause_at)
{
	pthread_mutex_lock(&p->lock);
	p->st.epoch = p->epoch;
	p->st.last_pause_ns = sst->pause_ns;
	repl_window_add(&p->pauses, sst->pause_ns);
	repl_window_add(&p->harvests, sst->harvest_ns);
	repl_window_add(&p->copies, sst->copy_ns);
	repl_window_add(&p->states, sst->state_ns);
	p->unacked_ns = pause_at;
	pthread_mutex_unlock(&p->lock);
}

enum wait_end { WAIT_CAPTURE, WAIT_STOP, WAIT_LINK_DEAD, WAIT_DISK_FAILED };

/* A heartbeat, with p->lock held (dropped around the round trip). */
static int heartbeat(struct repl_primary *p)
{
	int rc;

	pthread_mutex_unlock(&p->lock);
	rc = repl_ping(&p->link);
	pthread_mutex_lock(&p->lock);
	if (!rc) {
		p->st.heartbeats++;
		p->last_io_ns = util_now_ns();
	}
	return rc;
}

/*
 * Wait until the epoch that began at `start` should end. Sets *early when it
 * ends before its interval, *err when a heartbeat found the link dead.
 */
static enum wait_end wait_epoch_end(struct repl_primary *p, uint64_t start, bool *early, int *err)
{
	uint64_t interval = (uint64_t)p->o.interval_ms * MS;
	uint64_t spacing = (uint64_t)p->o.min_spacing_ms * MS;
	uint64_t deadline = start + interval, next_poll = start + DIRTY_POLL_MS * MS;
	uint32_t idle = p->idle_ms < p->o.conn.timeout_ms ? p->idle_ms : p->o.conn.timeout_ms;
	uint64_t hb = (uint64_t)idle * MS / 4;
	enum wait_end go = WAIT_CAPTURE;

	*early = false;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t now = util_now_ns(), until = deadline;
		struct timespec ts;

		if (p->stop) {
			go = WAIT_STOP;
			break;
		}
		if (p->disk_wake) {
			/* the open epoch's disk writes go while it runs, not all after its pause */
			p->disk_wake = false;
			pthread_mutex_unlock(&p->lock);
			*err = disk_tx_send(p->dtx, &p->link, p->epoch + 1, false);
			pthread_mutex_lock(&p->lock);
			if (*err < 0) {
				go = p->stop ? WAIT_STOP : WAIT_DISK_FAILED;
				break;
			}
			continue;
		}
		if (now >= deadline)
			break;
		if (now >= p->last_io_ns + hb) {
			*err = heartbeat(p);
			if (*err < 0) {
				go = p->stop ? WAIT_STOP : WAIT_LINK_DEAD;
				break;
			}
			continue;
		}
		if (p->last_io_ns + hb < until)
			until = p->last_io_ns + hb;
		if (p->kicked && now >= start + spacing) {
			*early = true;
			break;
		}
		if (p->kicked && start + spacing < until)
			until = start + spacing;
		if (p->o.max_dirty_pages) {
			uint64_t pending = 0;

			if (now >= next_poll) {
				pthread_mutex_unlock(&p->lock);
				hv_snap_chain_pending(p->chain, &pending);
				pthread_mutex_lock(&p->lock);
				next_poll = now + DIRTY_POLL_MS * MS;
				if (pending >= p->o.max_dirty_pages) {
					*early = true;
					break;
				}
			}
			if (next_poll < until)
				until = next_poll;
		}
		ts = util_mono_ts(until);
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	p->kicked = false;
	if (*early)
		p->st.early_ends++;
	pthread_mutex_unlock(&p->lock);
	return go;
}

/* The loop ends on a stop: a graceful one tells a replica that is in sync. */
static void say_bye(struct repl_primary *p)
{
	bool bye;
	int rc;

	pthread_mutex_lock(&p->lock);
	bye = p->graceful && p->st.state == REPL_S_PROTECTED;
	pthread_mutex_unlock(&p->lock);
	if (!bye)
		return;
	rc = repl_bye_send(&p->link);
	if (rc < 0)
		LOG_WARN("vm %s: could not tell the replica that protection ends (%s)",
			 hv_vm_name(p->vm), strerror(-rc));
	else
		LOG_INFO("vm %s: protection ends after epoch %" PRIu64 "; the replica was told",
			 hv_vm_name(p->vm), p->st.acked_epoch);
}

static void run(struct repl_primary *p);

static void disk_wake(void *arg, bool overflow)
{
	struct repl_primary *p = arg;

	pthread_mutex_lock(&p->lock);
	p->disk_wake = true;
	if (overflow)
		p->kicked = true; /* end the epoch early, as a full output queue does */
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void *loop(void *arg)
{
	struct repl_primary *p = arg;
	bool open;

	pthread_setname_np(pthread_self(), "castor-repl");
	repl_thread_sched(hv_vm_name(p->vm), p->o.thread_nice, p->o.thread_rt);
	run(p);
	disk_tx_stop(p->dtx); /* the session is over: its disks' writes are no longer kept */
	if (!p->o.migrate)
		return NULL;
	/* a migration cut short by a cancel ends here, where its owner can see it */
	pthread_mutex_lock(&p->lock);
	open = p->st.state == REPL_S_SYNCING || p->st.state == REPL_S_MIGRATING;
	pthread_mutex_unlock(&p->lock);
	if (open)
		primary_migration_over(p, REPL_S_STOPPED, "cancelled",
				       "the migration was cancelled: the VM runs on here");
	return NULL;
}

static void run(struct repl_primary *p)
{
	struct hv_snapshot_stats sst;
	enum wait_end we;
	uint64_t start;
	bool early;
	int rc, err = 0;

	/* the replica restores the whole copy before its ack, and writes the disks' first */
	if (p->t->set_timeout)
		p->t->set_timeout(p->link.c, REPL_SYNC_TIMEOUT_MS);
	if (p->dtx) {
		char why[200], what[240];

		rc = disk_tx_start(p->dtx, &p->link, hv_vm_name(p->vm), true, why, sizeof(why));
		if (rc < 0) {
			snprintf(what, sizeof(what), "the disks' initial copy (%s)", why);
			primary_fail(p, rc, what);
			return;
		}
	}
	/* epoch 0: the initial full copy */
	start = util_now_ns();
	rc = primary_capture(p, HV_STREAM_FULL, true, NULL, &sst);
	if (rc < 0) {
		primary_fail(p, rc, "initial copy");
		return;
	}
	primary_note_pause(p, &sst, util_now_ns());
	LOG_INFO("vm %s: initial copy: %" PRIu64 " pages in %u live passes + %" PRIu64
		 " in the pause (%.3f ms), %.1f MiB",
		 hv_vm_name(p->vm), sst.precopy_pages, sst.live_passes, sst.staged_pages,
		 (double)sst.pause_ns / 1e6, (double)sst.bytes / (1 << 20));
	if (primary_ship(p, &sst) < 0)
		return;
	if (p->t->set_timeout)
		p->t->set_timeout(p->link.c, p->o.conn.timeout_ms);
	if (p->o.migrate) {
		primary_migrate(p, &sst, start);
		return;
	}
	/*
	 * Hot pages from the epochs on: in the initial copy's long live passes
	 * half the guest's pages would look hot and be resent for many epochs.
	 */
	if (!p->o.exact_dirty && hv_dirty_set_hot(p->vm, true) < 0)
		LOG_WARN("vm %s: no hot pages (out of memory): every dirty page is "
			 "write-protected again",
			 hv_vm_name(p->vm));
	else if (!p->o.exact_dirty)
		p->hot_on = true;
	pthread_mutex_lock(&p->lock);
	primary_set_state(p, REPL_S_PROTECTED, "synced");
	pthread_mutex_unlock(&p->lock);

	/* async mode without disks picks up where a broken link left it (primary_resume.c) */
	do {
		p->lost_link = false;
		start = util_now_ns();
		while ((we = wait_epoch_end(p, start, &early, &err)) == WAIT_CAPTURE) {
			pthread_mutex_lock(&p->lock);
			p->epoch++;
			pthread_mutex_unlock(&p->lock);
			start = util_now_ns();
			rc = primary_capture(p, HV_STREAM_INCREMENTAL, false, NULL, &sst);
			if (rc < 0) {
				primary_fail(p, rc, "capturing the epoch");
				break;
			}
			primary_note_pause(p, &sst, start);
			if (primary_ship(p, &sst) < 0)
				break;
		}
		if (we == WAIT_LINK_DEAD) {
			p->lost_link = true;
			primary_fail(p, err, "heartbeat");
		} else if (we == WAIT_DISK_FAILED) {
			primary_fail(p, err,
				     err == -ENOBUFS ? "disk writes (the replica fell behind)"
						     : "sending disk writes");
		} else if (we == WAIT_STOP) {
			say_bye(p);
			return;
		}
	} while (p->lost_link && p->o.mode == REPL_MODE_ASYNC && !p->dtx &&
		 primary_resume_async(p) == 0);
}

/*
 * Connect, say hello, and hear the replica accept us (or why not); with a
 * key, both ends prove it and the link is sealed before anything else.
 */
int primary_open_link(struct repl_primary *p, struct repl_link *l, bool resume, char *why,
		      size_t why_len)
{
	struct repl_hello h = {.mem_bytes = hv_vm_mem_bytes(p->vm), .ncpus = hv_vm_ncpus(p->vm)};
	char what[REPL_WELCOME_TEXT + 64];
	uint32_t tmo = p->o.conn.timeout_ms;
	struct repl_handshake hs;
	int rc;

	repl_handshake_init(&hs, p->o.key, p->o.encrypt);
	hs.migrate = p->o.migrate != NULL;
	hs.sums = p->dtx != NULL && !resume; /* re-protection sends only what the replica lacks */
	hs.resume = resume;
	rc = p->t->connect(p->peer, &p->o.conn, &l->c);
	if (rc < 0) {
		snprintf(why, why_len, "cannot reach the %s at %s (%s)",
			 p->o.migrate ? "destination" : "replica", p->peer, strerror(-rc));
		goto out;
	}
	if (p->t->set_timeout && tmo < WELCOME_WAIT_MS)
		p->t->set_timeout(l->c, WELCOME_WAIT_MS);
	rc = repl_hello_send(l, &hs, &h);
	if (rc < 0)
		snprintf(what, sizeof(what), "cannot say hello (%s)", strerror(-rc));
	else
		rc = repl_welcome_recv(l, &hs, &p->idle_ms, what, sizeof(what));
	if (rc < 0) {
		snprintf(why, why_len, "the %s at %s refused: %s",
			 p->o.migrate ? "destination" : "replica", p->peer, what);
		goto out;
	}
	if (p->t->set_timeout && tmo < WELCOME_WAIT_MS)
		p->t->set_timeout(l->c, tmo);
	p->last_io_ns = util_now_ns();
	p->st.link_authenticated = repl_link_is_sealed(l);
	p->st.link_encrypted = repl_link_is_encrypted(l);
out:
	repl_handshake_dispose(&hs);
	return rc;
}

int repl_primary_start(struct hv_vm *vm, const struct repl_primary_opts *o,
		       struct repl_primary **out, char *why, size_t why_len)
{
	struct repl_primary *p;
	bool was_protected;
	int rc = 0;

	*out = NULL;
	if (!o->peer)
		return util_why(why, why_len, -EINVAL, "no secondary address given");
	if (repl_sched_check(o->thread_nice, o->thread_rt, why, why_len) < 0)
		return -EINVAL;
	if (o->mode == REPL_MODE_OUTPUT && o->min_spacing_ms > o->interval_ms && o->interval_ms)
		return util_why(why, why_len, -EINVAL,
				"the minimum spacing (%u ms) is longer than the interval (%u ms)",
				o->min_spacing_ms, o->interval_ms);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->vm = vm;
	p->o = *o;
	if (p->o.migrate) {
		p->o.outq = NULL; /* a migrating VM is not protected: its outputs flow */
		p->o.exact_dirty = true;
	}
	if (p->o.mode == REPL_MODE_ASYNC) {
		/* disaster recovery: checkpoints, no output commit (docs/dr.md) */
		p->o.outq = NULL;
		if (!p->o.rpo_ms)
			p->o.rpo_ms = DEFAULT_RPO_MS;
		if (!p->o.interval_ms)
			p->o.interval_ms = p->o.rpo_ms / 2 ? p->o.rpo_ms / 2 : 1;
	}
	p->started_ns = util_now_ns();
	p->t = o->transport ? o->transport : &repl_tcp_ops;
	p->link.t = p->t;
	if (o->key) {
		p->key = *o->key;
		p->o.key = &p->key;
	}
	if (!p->o.interval_ms)
		p->o.interval_ms = DEFAULT_INTERVAL_MS;
	/* zstd -1: the same ratio as 1 on the test guest, 30 % faster (codec_enc.c) */
	if (!p->o.zstd_level)
		p->o.zstd_level = -1;
	if (!p->o.cache_pages)
		p->o.cache_pages = DEFAULT_CACHE_PAGES;
	if (!p->o.conn.timeout_ms)
		p->o.conn.timeout_ms = REPL_DEFAULT_TIMEOUT_MS;
	p->peer = strdup(o->peer);
	p->o.peer = p->peer;
	pthread_mutex_init(&p->lock, NULL);
	{
		/* wait_epoch_end() sleeps until a CLOCK_MONOTONIC deadline */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	repl_buf_init(&p->wire);
	p->st.is_primary = true;
	p->st.migration = p->o.migrate != NULL;
	p->st.mode = p->o.mode;
	p->st.interval_ms = p->o.interval_ms;
	p->st.max_rate_bytes = p->o.conn.max_rate_bytes;
	if (!p->peer) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(p->st.peer, sizeof(p->st.peer), "%s", p->peer);
	rc = repl_encoder_new(hv_ram_pages(vm) * HV_PAGE_SIZE, p->o.cache_pages, p->o.zstd_level,
			      &p->enc);
	if (!rc)
		rc = hv_stream_writer_mem(&p->w);
	/* a chain of its own: `castor vm snapshot` keeps working while protected */
	if (!rc)
		rc = hv_snap_chain_new(vm, &p->chain);
	if (rc < 0) {
		snprintf(why, why_len, "cannot set up the encoder (%s)", strerror(-rc));
		goto fail;
	}
	rc = disk_tx_for_vm(vm, disk_wake, p, &p->dtx, why, why_len);
	if (rc < 0)
		goto fail;
	for (unsigned i = 0; p->o.verify && hv_vm_blk(vm, i); i++)
		if (!hv_blk_read_only(hv_vm_blk(vm, i)) &&
		    hv_blk_bytes(hv_vm_blk(vm, i)) > REPL_VERIFY_DISK_MAX)
			LOG_WARN("vm %s: verify: disk %s is over %llu MiB: its image is not "
				 "digested in the pauses (RAM is)",
				 hv_vm_name(vm), hv_blk_path(hv_vm_blk(vm, i)),
				 REPL_VERIFY_DISK_MAX >> 20);
	rc = primary_open_link(p, &p->link, false, why, why_len);
	if (rc < 0)
		goto fail;
	/*
	 * Epoch 0, the initial copy, holds every output from now on and every
	 * output still held from before (the owner protected the queue before the
	 * VM ran, or a replica was lost): its checkpoint covers the state that
	 * produced them all.
	 */
	was_protected = p->o.outq && nb_queue_is_protected(p->o.outq);
	if (p->o.outq)
		nb_queue_restart(p->o.outq, 0);
	primary_set_state(p, REPL_S_SYNCING, "start");
	rc = pthread_create(&p->thread, NULL, loop, p);
	if (rc) {
		rc = -rc;
		snprintf(why, why_len, "cannot start the replication thread (%s)", strerror(-rc));
		/* no session: a queue that held nothing before holds nothing now */
		if (p->o.outq && !was_protected)
			nb_queue_release_all(p->o.outq);
		goto fail;
	}
	p->thread_live = true;
	/* async holds nothing: what a degraded session before it still held goes out now */
	if (o->mode == REPL_MODE_ASYNC && o->outq && nb_queue_is_protected(o->outq))
		LOG_INFO("vm %s: async protection holds no output: %d held outputs released",
			 hv_vm_name(vm), nb_queue_release_all(o->outq));
	if (p->o.migrate)
		LOG_INFO("vm %s: migrating to %s%s, link %s", hv_vm_name(vm), p->peer,
			 p->o.verify ? ", verify" : "",
			 p->st.link_encrypted	    ? "authenticated and encrypted"
			 : p->st.link_authenticated ? "authenticated"
						    : "unauthenticated (no key)");
	else
		LOG_INFO("vm %s: protecting to %s, %s mode, %u ms epochs%s, link %s",
			 hv_vm_name(vm), p->peer, repl_mode_str(p->o.mode), p->o.interval_ms,
			 p->o.verify ? ", verify" : "",
			 p->st.link_encrypted	    ? "authenticated and encrypted"
			 : p->st.link_authenticated ? "authenticated"
						    : "unauthenticated (no key)");
	*out = p;
	return 0;
fail:
	repl_primary_free(p);
	return rc;
}

void repl_primary_kick(struct repl_primary *p)
{
	pthread_mutex_lock(&p->lock);
	if (!p->kicked) {
		p->kicked = true;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
}

void repl_primary_reset_samples(struct repl_primary *p)
{
	pthread_mutex_lock(&p->lock);
	p->pauses.n = p->rtts.n = p->harvests.n = p->copies.n = p->states.n = p->encodes.n = 0;
	p->rpos.n = 0;
	pthread_mutex_unlock(&p->lock);
}

void repl_primary_status(struct repl_primary *p, struct repl_status *out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->st;
	out->pause_p50_ns = repl_window_pct(&p->pauses, 50);
	out->pause_p99_ns = repl_window_pct(&p->pauses, 99);
	out->ack_rtt_p50_ns = repl_window_pct(&p->rtts, 50);
	out->encode_p50_ns = repl_window_pct(&p->encodes, 50);
	out->harvest_p50_ns = repl_window_pct(&p->harvests, 50);
	out->copy_p50_ns = repl_window_pct(&p->copies, 50);
	out->state_p50_ns = repl_window_pct(&p->states, 50);
	out->lag_ns = p->unacked_ns ? util_now_ns() - p->unacked_ns : 0;
	if (p->o.mode == REPL_MODE_ASYNC) {
		out->rpo_target_ms = p->o.rpo_ms;
		out->rpo_ns = p->ckpt_ns ? util_now_ns() - p->ckpt_ns : 0;
		out->rpo_p50_ns = repl_window_pct(&p->rpos, 50);
		out->rpo_p99_ns = repl_window_pct(&p->rpos, 99);
	}
	pthread_mutex_unlock(&p->lock);
	{
		struct hv_dirty_totals dt;

		hv_dirty_totals(p->vm, &dt);
		out->hot_pages = dt.hot_pages;
		out->cold_faults = dt.cold_faults;
	}
	if (p->dtx) {
		struct disk_tx_stats ds;

		disk_tx_stats(p->dtx, &ds);
		out->disks = disk_tx_ndisks(p->dtx);
		out->disk_bytes = ds.queued_bytes;
		out->disk_pending_bytes = ds.pending_bytes;
		out->disk_copy_bytes = ds.copy_data_bytes;
		out->disk_copy_same_bytes = ds.copy_same_bytes;
	}
}

void repl_primary_cancel(struct repl_primary *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	if (p->link.c && p->t->abort)
		p->t->abort(p->link.c);
	pthread_mutex_unlock(&p->lock);
}

int64_t repl_primary_stop(struct repl_primary *p, bool graceful)
{
	int64_t acked;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	p->graceful = graceful && p->st.state == REPL_S_PROTECTED;
	graceful = p->graceful;
	pthread_cond_broadcast(&p->cond);
	/* a send or ack wait in progress ends now, unless it is the last epoch to finish */
	if (p->link.c && p->t->abort && !graceful)
		p->t->abort(p->link.c);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_live)
		pthread_join(p->thread, NULL);
	p->thread_live = false;
	pthread_mutex_lock(&p->lock);
	if (p->st.state != REPL_S_IDLE)
		primary_set_state(p, REPL_S_STOPPED, graceful ? "unprotect" : "stop");
	acked = p->st.epochs ? (int64_t)p->st.acked_epoch : -ENOENT;
	pthread_mutex_unlock(&p->lock);
	return acked;
}

void repl_primary_free(struct repl_primary *p)
{
	if (!p)
		return;
	repl_primary_stop(p, false);
	disk_tx_stop(p->dtx);
	disk_tx_free(p->dtx);
	if (p->hot_on)
		hv_dirty_set_hot(p->vm, false);
	repl_link_dispose(&p->link);
	if (p->link.c)
		p->t->close(p->link.c);
	repl_key_wipe(&p->key);
	repl_encoder_free(p->enc);
	hv_stream_writer_free(p->w);
	hv_snap_chain_free(p->chain);
	repl_buf_dispose(&p->wire);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->peer);
	free(p);
}
