/*
 * The secondary: keep a twin of the primary's VM, one epoch at a time, and
 * start it on failover (design.md §4).
 *
 * A thread ("castor-listen") accepts connections. Each must open with a
 * HELLO within HELLO_WAIT_MS; anything else (a port scan, a health check,
 * garbage, a stall) is logged and closed, and the listener goes on. The first
 * primary that says hello is welcomed and handed to the receiving thread
 * ("castor-twin"); later ones are refused with -EBUSY and a sentence, while
 * the first keeps being served. A primary lost before its initial copy was
 * applied frees the replica for the next one; after that the twin belongs to
 * that primary, and only a failover (or quitting) ends it.
 *
 * The receiving thread serves one primary. Its first epoch is a full
 * stream: the twin is restored from it (not started). Every later epoch is
 * received whole into memory, decoded against the twin's RAM, checked, and
 * only then applied (hv_snapshot_apply refuses anything partial or
 * corrupt, so a primary dying at any byte leaves the twin at its last
 * epoch); then it is acked. In verify mode the twin's RAM digest after the
 * apply must equal the one the primary took in its pause, or the ack says
 * -EILSEQ.
 *
 * When the stream stops (the primary died, or went silent for the
 * connection's timeout; an idle primary sends heartbeats) the twin waits in
 * "primary-lost" for a failover; after a BYE (the primary stopped protecting
 * on purpose and runs on) in "released", where a failover needs force. Either
 * which starts its vCPUs from the last applied epoch. A failover while
 * epochs still arrive cuts the connection first; the apply lock makes it
 * wait for an epoch being applied to finish.
 */
#define LOG_TAG "secondary"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replication/secondary_int.h"
#include "util/util.h"

#define ACCEPT_POLL_MS 200
#define HELLO_WAIT_MS  1000 /* a connection that says nothing this long is not a primary */

const char *secondary_name(struct repl_secondary *s)
{
	return s->o.vm.name ? s->o.vm.name : "twin";
}

void secondary_note_error(struct repl_secondary *s, const char *fmt, const char *what)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->st.last_error, sizeof(s->st.last_error), fmt, what);
	pthread_mutex_unlock(&s->lock);
	LOG_ERR("vm %s: %s", secondary_name(s), s->st.last_error);
}

static void set_state(struct repl_secondary *s, enum repl_state to, const char *why)
{
	pthread_mutex_lock(&s->lock);
	repl_state_change(secondary_name(s), &s->st.state, to, why);
	pthread_mutex_unlock(&s->lock);
}

/* The DIGEST record of a decoded epoch, if it has one. */
static bool find_digest(const uint8_t *buf, size_t len, struct repl_digest_rec *d)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;

	hv_stream_iter_init(&it, buf, len);
	while (hv_stream_next(&it, &r) > 0)
		if (r.optional && r.type == (REPL_REC_DIGEST & ~HV_REC_F_OPTIONAL) &&
		    r.len == sizeof(*d)) {
			memcpy(d, r.body, sizeof(*d));
			return true;
		}
	return false;
}

static int verify(struct repl_secondary *s, uint64_t epoch)
{
	struct repl_digest_rec d;
	uint32_t mine;

	if (!find_digest(s->decoded.data, s->decoded.len, &d))
		return twin_disks_verify(s, s->decoded.data, s->decoded.len, epoch);
	mine = repl_ram_digest(s->twin);
	pthread_mutex_lock(&s->lock);
	if (mine == d.crc32c) {
		s->st.verify_ok++;
	} else {
		s->st.verify_bad++;
		s->twin_broken = true; /* never run a twin known to differ */
		s->st.twin_unusable = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (mine != d.crc32c) {
		char what[96];

		snprintf(what, sizeof(what),
			 "epoch %" PRIu64 ": RAM digest %08x, the primary's %08x", epoch, mine,
			 d.crc32c);
		secondary_note_error(s, "verify: %s", what);
		return -EILSEQ;
	}
	return twin_disks_verify(s, s->decoded.data, s->decoded.len, epoch);
}

/* The twin from the first (full) epoch. */
static int first_epoch(struct repl_secondary *s, const uint8_t *buf, size_t len, uint64_t *id_out)
{
	const uint8_t *streams[1];
	struct hv_stream_header h;
	struct hv_vm *twin = NULL;
	char why[256];
	size_t lens[1];
	int rc;

	if (len < 8 + sizeof(h)) {
		secondary_note_error(s, "the first epoch is %s", "too short");
		return -EBADMSG;
	}
	memcpy(&h, buf + 8, sizeof(h));
	/* the peer names the RAM size: hold it to what a VM on this host may have */
	{
		struct hv_vm_config c = {.mem_bytes = h.mem_bytes, .ncpus = h.ncpus};

		if (hv_vm_config_check(&c, why, sizeof(why)) < 0) {
			secondary_note_error(s, "initial copy refused: %s", why);
			return -EBADMSG;
		}
	}
	rc = repl_decode(buf, len, NULL, h.mem_bytes, &s->decoded, NULL, why, sizeof(why));
	if (rc < 0) {
		secondary_note_error(s, "initial copy refused: %s", why);
		return rc;
	}
	memcpy(&h, s->decoded.data + 8, sizeof(h));
	if (h.kind != HV_STREAM_FULL) {
		secondary_note_error(s, "initial copy refused: %s", "not a full stream");
		return -EBADMSG;
	}
	streams[0] = s->decoded.data;
	lens[0] = s->decoded.len;
	rc = hv_snapshot_restore(&s->o.vm, streams, lens, 1, 0, s->o.add_devices,
				 s->o.add_devices_arg, &twin, why, sizeof(why));
	if (rc < 0) {
		secondary_note_error(s, "initial copy refused: %s", why);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->twin = twin;
	s->st.epoch = 0;
	s->st.epochs = 1;
	s->commit_ns = util_now_ns();
	s->applied_id = h.stream_id;
	s->st.last_raw_bytes = s->decoded.len;
	s->st.last_wire_bytes = len;
	pthread_mutex_unlock(&s->lock);
	*id_out = h.stream_id;
	return verify(s, 0);
}

static void apply_patches(void *arg, uint8_t *ram)
{
	repl_patches_apply(arg, ram);
}

static int next_epoch(struct repl_secondary *s, const uint8_t *buf, size_t len, uint64_t epoch,
		      uint64_t *id_out)
{
	struct hv_stream_header h;
	char why[256];
	uint64_t raw;
	int rc;

	rc = repl_decode(buf, len, hv_ram_base(s->twin), hv_ram_pages(s->twin) * HV_PAGE_SIZE,
			 &s->decoded, &s->patches, why, sizeof(why));
	if (rc < 0) {
		secondary_note_error(s, "epoch refused: %s", why);
		return rc;
	}
	memcpy(&h, s->decoded.data + 8, sizeof(h));
	*id_out = h.stream_id;
	rc = hv_snapshot_apply_patched(s->twin, s->decoded.data, s->decoded.len, apply_patches,
				       &s->patches, why, sizeof(why));
	if (rc == -EIO) {
		pthread_mutex_lock(&s->lock);
		s->twin_broken = true;
		s->st.twin_unusable = true;
		pthread_mutex_unlock(&s->lock);
	}
	if (rc < 0) {
		secondary_note_error(s, "epoch not applied: %s", why);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->st.epoch = epoch;
	s->st.epochs++;
	s->commit_ns = util_now_ns();
	s->applied_id = h.stream_id;
	/* raw: the revision-1 stream this epoch stands for, patched pages as RAW entries */
	raw = s->decoded.len + s->patches.n * (8 + HV_PAGE_SIZE);
	s->st.last_raw_bytes = raw;
	s->st.last_wire_bytes = len;
	s->st.total_raw_bytes += raw;
	s->st.total_wire_bytes += len;
	pthread_mutex_unlock(&s->lock);
	return verify(s, epoch);
}

/* One record of a DISK frame, for the epoch `epoch` under way. */
/*
 * Serve one primary until its stream stops. Returns true when a migration's
 * source handed the VM over (SWITCH): the link is then kept in s->switch_link
 * for the answer, and the caller must neither dispose nor close it.
 */
static bool serve(struct repl_secondary *s, struct repl_link *l, uint64_t first_max, bool resume)
{
	uint64_t epoch = 0, max_len = first_max;
	bool refused = false, bye = false, switched = false;
	int rc = 0, disks = 0;

	if (resume) {
		/*
		 * A primary that lost its link comes back (async mode, §8.7): the
		 * twin stays, and an ack of the checkpoint it holds tells the
		 * primary where to pick up; the epochs follow it.
		 */
		uint64_t id;

		pthread_mutex_lock(&s->lock);
		epoch = s->st.epoch + 1;
		id = s->applied_id;
		pthread_mutex_unlock(&s->lock);
		max_len = 2 * hv_ram_pages(s->twin) * HV_PAGE_SIZE + (64u << 20);
		if (s->t->set_timeout)
			s->t->set_timeout(l->c, s->o.conn.timeout_ms ? s->o.conn.timeout_ms
								     : REPL_DEFAULT_TIMEOUT_MS);
		rc = repl_ack_send(l, id, 0);
		LOG_INFO("vm %s: the primary resumes from checkpoint %" PRIu64 " (%016" PRIx64 ")",
			 secondary_name(s), epoch - 1, id);
	} else if (s->t->set_timeout) { /* the primary builds the initial copy first: be patient */
		s->t->set_timeout(l->c, REPL_SYNC_TIMEOUT_MS);
	}
	while (rc >= 0) {
		enum repl_frame kind;
		uint64_t id = 0;
		size_t len = 0;
		uint8_t *buf;

		rc = repl_frame_recv_into(l, max_len, &s->rx, &s->rx_cap, &len, &kind);
		if (rc < 0)
			break;
		if (kind == REPL_FRAME_BYE) {
			bye = true;
			break;
		}
		if (kind == REPL_FRAME_DISK) {
			rc = twin_disk_frame(s, s->rx, len, epoch);
			if (rc < 0) {
				refused = true;
				break;
			}
			continue;
		}
		if (kind == REPL_FRAME_POSTCOPY) {
			rc = twin_pc_frame(s, s->rx, len);
			if (rc < 0) {
				refused = true;
				break;
			}
			continue;
		}
		if (kind == REPL_FRAME_SWITCH) {
			/* only a migration's source, with its copy applied, hands the VM over */
			if (s->o.incoming && s->twin) {
				switched = true;
				break;
			}
			secondary_note_error(s, "%s",
					     "a SWITCH where no migration was under way: refused");
			refused = true;
			rc = -EPROTO;
			break;
		}
		buf = s->rx;
		disks = 0;
		pthread_mutex_lock(&s->apply_lock);
		pthread_mutex_lock(&s->lock);
		rc = s->stop ? -ECANCELED : 0;
		pthread_mutex_unlock(&s->lock);
		if (!rc)
			rc = disks = twin_disks_commit(s, epoch);
		if (rc >= 0)
			rc = s->twin ? next_epoch(s, buf, len, epoch, &id)
				     : first_epoch(s, buf, len, &id);
		if (rc < 0 && epoch > 0 && (disks > 0 || (disks < 0 && disks != -EBADMSG))) {
			/* its disks are ahead of its RAM, or between two epochs */
			pthread_mutex_lock(&s->lock);
			s->twin_broken = true;
			s->st.twin_unusable = true;
			pthread_mutex_unlock(&s->lock);
		}
		pthread_mutex_unlock(&s->apply_lock);
		if (rc == -ECANCELED)
			break;
		if (rc < 0) {
			refused = true; /* last_error already says why */
			repl_ack_send(l, id, rc);
			break;
		}
		if (repl_ack_send(l, id, 0) < 0)
			break;
		repl_log_event(s->o.log_cb, s->o.log_arg, "applied %" PRIu64, epoch);
		if (epoch == 0) {
			/* the initial copy's buffers are far larger than an epoch's: give them back
			 */
			free(s->rx);
			s->rx = NULL;
			s->rx_cap = 0;
			repl_buf_dispose(&s->decoded);
			/* a migration's rounds can be as large as the copy: stay patient */
			if (s->t->set_timeout && !s->o.incoming)
				s->t->set_timeout(l->c, s->o.conn.timeout_ms
								? s->o.conn.timeout_ms
								: REPL_DEFAULT_TIMEOUT_MS);
			if (!s->o.incoming)
				set_state(s, REPL_S_PROTECTED, "synced");
			max_len = 2 * hv_ram_pages(s->twin) * HV_PAGE_SIZE + (64u << 20);
		}
		epoch++;
	}
	twin_disks_discard(s, epoch);
	pthread_mutex_lock(&s->lock);
	if (switched) {
		s->taken = true;
		s->switch_link = *l;
		s->switch_held = true;
		repl_state_change(secondary_name(s), &s->st.state, REPL_S_SWITCHING,
				  "the source handed the VM over");
		pthread_mutex_unlock(&s->lock);
		LOG_INFO("vm %s: the source paused after epoch %" PRIu64 " and hands the VM over",
			 secondary_name(s), s->st.epoch);
		return true;
	}
	if (!s->twin && !s->stop) {
		/* nothing of this primary was kept: the next one may come */
		if (!refused) /* else last_error says why it was refused */
			snprintf(s->st.last_error, sizeof(s->st.last_error),
				 "a primary left before its initial copy was applied (%s)",
				 bye ? "it said goodbye" : strerror(-rc));
		LOG_WARN("vm %s: %s; waiting for a primary again", secondary_name(s),
			 s->st.last_error);
		repl_state_change(secondary_name(s), &s->st.state, REPL_S_IDLE, "primary left");
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	s->taken = true;
	if (bye && s->o.incoming) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the source gave the migration up after epoch %" PRIu64
			 " and runs on: nothing runs here",
			 s->st.epoch);
		LOG_WARN("vm %s: %s", secondary_name(s), s->st.last_error);
	} else if (bye) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the primary stopped protecting after epoch %" PRIu64
			 " and runs on: a failover needs --force",
			 s->st.epoch);
		LOG_WARN("vm %s: %s", secondary_name(s), s->st.last_error);
	} else if (!s->stop && rc != -ECANCELED && !refused && s->o.incoming) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the source went away before handing the VM over, after epoch %" PRIu64
			 " (%s): nothing runs here; the source runs on if it is alive",
			 s->st.epoch, strerror(-rc));
		LOG_WARN("vm %s: %s", secondary_name(s), s->st.last_error);
	} else if (!s->stop && rc != -ECANCELED && !refused) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the primary's stream stopped after epoch %" PRIu64 " (%s)", s->st.epoch,
			 strerror(-rc));
		LOG_WARN("vm %s: %s; the twin waits at epoch %" PRIu64 " for a failover",
			 secondary_name(s), s->st.last_error, s->st.epoch);
	}
	repl_state_change(secondary_name(s), &s->st.state,
			  bye ? REPL_S_RELEASED : REPL_S_PRIMARY_LOST,
			  bye ? "primary said goodbye" : "stream stopped");
	pthread_mutex_unlock(&s->lock);
	return false;
}

/* The receiving thread: serve each primary the listener hands over. */
static void *receiver(void *arg)
{
	struct repl_secondary *s = arg;

	pthread_setname_np(pthread_self(), "castor-twin");
	repl_thread_sched(secondary_name(s), s->o.thread_nice, s->o.thread_rt);
	for (;;) {
		struct repl_link l = {.t = s->t};
		uint64_t first_max;
		bool kept, ended, sums, resume;

		pthread_mutex_lock(&s->lock);
		while (!s->stop && !s->pending)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stop) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		l.c = s->pending;
		l.seal = s->pending_seal;
		s->pending = NULL;
		s->pending_seal = NULL;
		s->conn = l.c;
		first_max = s->first_max;
		sums = s->sums;
		resume = s->pending_resume;
		pthread_mutex_unlock(&s->lock);
		kept = (!sums || twin_disks_send_sums(s, &l)) && serve(s, &l, first_max, resume);
		pthread_mutex_lock(&s->lock);
		s->conn = NULL;
		ended = s->o.incoming && s->taken && !s->stop;
		pthread_mutex_unlock(&s->lock);
		if (!kept) {
			repl_link_dispose(&l);
			s->t->close(l.c);
		}
		/* a migration destination serves one source: its end is the caller's to act on */
		if (ended) {
			if (s->o.on_end)
				s->o.on_end(s->o.end_arg);
			break;
		}
	}
	return NULL;
}

/*
 * A HELLO with RESUME at the replica's port: a primary in async mode whose link
 * broke comes back to go on from the checkpoint held here (§8.7). Only a
 * replica that holds a usable twin, lost its primary's stream and keeps no
 * disks takes it; the checkpoint's stream id, acked first, makes sure the
 * epochs that follow are that primary's (an epoch that does not follow it is
 * refused as any other). 0, or -errno with a sentence in `text`.
 */
static int resume_check(struct repl_secondary *s, const struct repl_hello *h, char *text,
			size_t len)
{
	int rc = 0;

	if (s->o.incoming)
		return util_why(
			text, len, -ENOENT,
			"a postcopy's source coming back, but no postcopy waits for it here");
	for (unsigned i = 0; i < REPL_DISK_MAX; i++)
		if (s->disks[i].fd >= 0)
			return util_why(text, len, -EOPNOTSUPP,
					"this replica keeps disks, and a resume carries RAM only: "
					"protect again");
	pthread_mutex_lock(&s->lock);
	if (!s->twin)
		rc = util_why(text, len, -ENOENT, "nothing to resume here: no checkpoint held");
	else if (s->twin_broken)
		rc = util_why(text, len, -EIO, "the copy here is unusable: %s", s->st.last_error);
	else if (h->mem_bytes != hv_vm_mem_bytes(s->twin) || h->ncpus != hv_vm_ncpus(s->twin))
		rc = util_why(text, len, -EINVAL,
			      "the copy here is of another VM (%u vCPUs, %" PRIu64 " MiB)",
			      hv_vm_ncpus(s->twin), hv_vm_mem_bytes(s->twin) >> 20);
	else if (s->st.state != REPL_S_PRIMARY_LOST)
		rc = util_why(text, len, -EBUSY, "the copy here cannot be resumed (state %s)",
			      repl_state_str(s->st.state));
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/*
 * A new connection: it must say hello in time -- and, with a key, prove it
 * holds the key -- and only one primary is served. Returns true when `c` was
 * handed to the receiver (it owns it now). Every refusal is logged with the
 * peer's address, and the listener goes on.
 */
static bool greet(struct repl_secondary *s, struct repl_conn *c)
{
	struct repl_link l = {.t = s->t, .c = c};
	struct repl_handshake hs;
	struct repl_hello h;
	char why[192], text[REPL_WELCOME_TEXT], peer[64] = "a peer";
	int32_t status = 0;
	uint64_t first_max = hv_host_available_bytes();
	bool handed = false;

	if (s->t->peer_name && s->t->peer_name(c, peer, sizeof(peer)) < 0)
		snprintf(peer, sizeof(peer), "a peer (address unknown)");
	repl_handshake_init(&hs, s->o.key, s->o.encrypt);
	hs.migrate = s->o.incoming;
	if (s->t->set_timeout)
		s->t->set_timeout(c, HELLO_WAIT_MS);
	status = repl_hello_recv(&l, &hs, &h, why, sizeof(why));
	if (status == -EOPNOTSUPP) { /* a migration at a replica, or the other way round */
		LOG_WARN("vm %s: %s refused: %s", secondary_name(s), peer, why);
		repl_welcome_send(&l, &hs, status, 0, why);
		goto out;
	}
	if (status < 0) {
		LOG_WARN("vm %s: %s is not a primary: %s; closed", secondary_name(s), peer, why);
		goto out;
	}
	status = repl_handshake_check(&hs, text, sizeof(text));
	if (!status && hs.resume)
		status = resume_check(s, &h, text, sizeof(text));
	if (!status) {
		/* the peer names the RAM size: hold it to what a VM on this host may have */
		struct hv_vm_config vc = {.mem_bytes = h.mem_bytes, .ncpus = h.ncpus};

		if (hv_vm_config_check(&vc, why, sizeof(why)) < 0) {
			status = -EFBIG;
			snprintf(text, sizeof(text), "this host cannot hold the VM: %.80s", why);
		}
	}
	/* the initial copy: all of RAM, encoded, with its state and a margin */
	if (!status && (!first_max || first_max > 2 * h.mem_bytes + (64u << 20)))
		first_max = 2 * h.mem_bytes + (64u << 20);
	pthread_mutex_lock(&s->lock);
	if (!status && ((s->taken && !hs.resume) || s->conn || s->pending || s->stop)) {
		status = -EBUSY;
		snprintf(text, sizeof(text),
			 s->taken ? "this replica holds the twin of another primary (%s): start a "
				    "new replica"
				  : "this replica serves another primary (%s)",
			 repl_state_str(s->st.state));
	}
	pthread_mutex_unlock(&s->lock);
	if (status) {
		LOG_WARN("vm %s: primary %s refused: %s", secondary_name(s), peer, text);
		repl_welcome_send(&l, &hs, status, 0, text);
		goto out;
	}
	if (repl_welcome_send(&l, &hs, 0,
			      s->o.conn.timeout_ms ? s->o.conn.timeout_ms : REPL_DEFAULT_TIMEOUT_MS,
			      "welcome") < 0) {
		LOG_WARN("vm %s: primary %s went away during its hello", secondary_name(s), peer);
		goto out;
	}
	if (repl_proof_recv(&l, &hs, why, sizeof(why)) < 0) {
		LOG_WARN("vm %s: primary %s failed the handshake: %s; closed", secondary_name(s),
			 peer, why);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	if (!s->stop) { /* nobody else got in: this thread is the only one that greets */
		s->pending = c;
		s->pending_seal = l.seal;
		l.seal = NULL;
		s->first_max = first_max;
		s->sums = hs.sums;
		s->pending_resume = hs.resume;
		s->st.link_authenticated = s->pending_seal != NULL;
		s->st.link_encrypted = hs.encrypt && s->pending_seal;
		if (hs.resume)
			s->st.last_error[0] = '\0';
		repl_state_change(secondary_name(s), &s->st.state,
				  hs.resume ? REPL_S_PROTECTED : REPL_S_SYNCING,
				  hs.resume ? "primary resumed" : "primary connected");
		pthread_cond_signal(&s->cond);
		handed = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (handed)
		LOG_INFO("vm %s: primary %s welcomed, link %s", secondary_name(s), peer,
			 hs.encrypt && s->o.key ? "authenticated and encrypted"
			 : s->o.key		? "authenticated"
						: "unauthenticated (no key)");
out:
	repl_handshake_dispose(&hs);
	repl_link_dispose(&l);
	return handed;
}

static void *listener(void *arg)
{
	struct repl_secondary *s = arg;

	pthread_setname_np(pthread_self(), "castor-listen");
	for (;;) {
		struct repl_conn *c = NULL;
		bool stop;
		int rc;

		pthread_mutex_lock(&s->lock);
		stop = s->stop;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
		rc = s->t->accept(s->listener, ACCEPT_POLL_MS, &c);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc < 0) {
			LOG_ERRNO(rc, "vm %s: accept", secondary_name(s));
			continue;
		}
		if (!greet(s, c))
			s->t->close(c);
	}
	return NULL;
}

int repl_secondary_start(const struct repl_secondary_opts *o, struct repl_secondary **out,
			 char *why, size_t why_len)
{
	struct repl_secondary *s;
	int rc;

	*out = NULL;
	if (!o->listen)
		return util_why(why, why_len, -EINVAL, "no address to listen on");
	if (repl_sched_check(o->thread_nice, o->thread_rt, why, why_len) < 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	for (unsigned i = 0; i < REPL_DISK_MAX; i++)
		s->disks[i].fd = -1;
	if (o->key) {
		s->key = *o->key;
		s->o.key = &s->key;
	}
	s->t = o->transport ? o->transport : &repl_tcp_ops;
	s->listen_addr = strdup(o->listen);
	s->o.listen = s->listen_addr;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->apply_lock, NULL);
	pthread_mutex_init(&s->pc_send_lock, NULL);
	repl_buf_init(&s->decoded);
	repl_patches_init(&s->patches);
	if (!s->listen_addr) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = twin_disks_open(s, why, why_len);
	if (rc < 0)
		goto fail;
	rc = s->t->listen(s->listen_addr, &s->o.conn, &s->listener);
	if (rc < 0) {
		snprintf(why, why_len, "cannot listen on %s (%s)", s->listen_addr, strerror(-rc));
		goto fail;
	}
	rc = -pthread_create(&s->thread, NULL, receiver, s);
	if (rc < 0) {
		snprintf(why, why_len, "cannot start the receiver (%s)", strerror(-rc));
		goto fail;
	}
	s->thread_live = true;
	rc = -pthread_create(&s->listen_thread, NULL, listener, s);
	if (rc < 0) {
		snprintf(why, why_len, "cannot start the listener (%s)", strerror(-rc));
		goto fail;
	}
	s->listen_live = true;
	LOG_INFO("vm %s: waiting for a primary on %s (port %u)", secondary_name(s), s->listen_addr,
		 repl_secondary_port(s));
	*out = s;
	return 0;
fail:
	repl_secondary_free(s);
	return rc;
}

uint16_t repl_secondary_port(const struct repl_secondary *s)
{
	return s->listener ? s->t->local_port(s->listener) : 0;
}

/* Stop both threads: cut the connection, wait for them. */
static void stop_receiver(struct repl_secondary *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	if (s->conn && s->t->abort)
		s->t->abort(s->conn);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->listen_live)
		pthread_join(s->listen_thread, NULL);
	s->listen_live = false;
	if (s->thread_live)
		pthread_join(s->thread, NULL);
	s->thread_live = false;
	/* a primary welcomed after the receiver's last look is closed here */
	if (s->pending)
		s->t->close(s->pending);
	s->pending = NULL;
	repl_seal_free(s->pending_seal);
	s->pending_seal = NULL;
}

/* A migration's source waits to hear whether the VM runs here: tell it, and close. */
static void answer_switch(struct repl_secondary *s, int rc)
{
	bool kept;
	int err;

	if (!s->switch_held)
		return;
	kept = twin_pc_answer(s, rc, &err); /* postcopy keeps the link for the pages */
	if (err < 0)
		LOG_WARN("vm %s: could not tell the source that the VM %s (%s)", secondary_name(s),
			 rc ? "did not start" : "runs here", strerror(-err));
	if (rc < 0) {
		pthread_mutex_lock(&s->lock);
		repl_state_change(secondary_name(s), &s->st.state, REPL_S_STOPPED,
				  "could not start");
		pthread_mutex_unlock(&s->lock);
	}
	if (!kept) {
		repl_link_dispose(&s->switch_link);
		s->t->close(s->switch_link.c);
	}
	s->switch_held = false;
}

int repl_secondary_failover(struct repl_secondary *s, bool force, struct hv_vm **vm_out, char *why,
			    size_t why_len)
{
	uint64_t t0 = util_now_ns();
	enum repl_state was;
	struct hv_vm *twin;
	int rc;

	*vm_out = NULL;
	pthread_mutex_lock(&s->lock);
	was = s->st.state;
	rc = was == REPL_S_FAILED_OVER ? -EALREADY : !s->twin ? -ENOENT : s->twin_broken ? -EIO : 0;
	if (!rc && s->o.incoming && was != REPL_S_SWITCHING)
		rc = -EPERM;
	if (!rc && was == REPL_S_SWITCHING)
		force = true; /* the source paused for good and asked for it */
	if (!rc && !force && (was == REPL_S_PROTECTED || was == REPL_S_SYNCING))
		rc = -EBUSY;
	if (!rc && !force && was == REPL_S_RELEASED)
		rc = -EBUSY;
	pthread_mutex_unlock(&s->lock);
	if (rc == -EALREADY)
		snprintf(why, why_len, "failover already done");
	else if (rc == -ENOENT)
		snprintf(why, why_len, "no twin: the initial copy never arrived");
	else if (rc == -EIO)
		snprintf(why, why_len, "the twin is unusable: %s", s->st.last_error);
	else if (rc == -EPERM)
		snprintf(why, why_len,
			 "a migration destination runs the VM only when its source hands it over "
			 "(state %s%s%s)",
			 repl_state_str(was), s->st.last_error[0] ? ": " : "", s->st.last_error);
	else if (rc == -EBUSY && was == REPL_S_RELEASED)
		snprintf(why, why_len,
			 "the primary stopped protecting on purpose and may still run: two copies "
			 "would answer; add --force only if it is gone");
	else if (rc == -EBUSY)
		snprintf(why, why_len,
			 "the primary is still streaming epochs (state %s): two copies would "
			 "answer; add --force only if it is being fenced",
			 repl_state_str(was));
	if (rc < 0) {
		if (was == REPL_S_SWITCHING) { /* the source resumes */
			pthread_mutex_lock(&s->apply_lock);
			answer_switch(s, rc);
			pthread_mutex_unlock(&s->apply_lock);
		}
		return rc;
	}
	stop_receiver(s);
	pthread_mutex_lock(&s->apply_lock);
	pthread_mutex_lock(&s->lock);
	/* the twin is taken or about to run: nobody else may connect (refused at once) */
	if (s->listener && s->t->close_listener)
		s->t->close_listener(s->listener);
	s->listener = NULL;
	twin = s->twin;
	rc = !twin ? -ENOENT : s->twin_broken ? -EIO : 0;
	pthread_mutex_unlock(&s->lock);
	if (rc == -ENOENT)
		snprintf(why, why_len, "no twin: the initial copy never arrived");
	else if (rc == -EIO)
		snprintf(why, why_len, "the twin is unusable: %s", s->st.last_error);
	if (!rc && was == REPL_S_SWITCHING) {
		rc = twin_pc_begin(s, twin);
		if (rc < 0)
			snprintf(why, why_len, "postcopy could not be set up (%s)", strerror(-rc));
	}
	if (!rc) {
		rc = hv_vm_start(twin);
		if (rc < 0)
			snprintf(why, why_len, "the twin would not start (%s)", strerror(-rc));
	}
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		s->twin = NULL;
		repl_state_change(secondary_name(s), &s->st.state, REPL_S_FAILED_OVER, "failover");
		pthread_mutex_unlock(&s->lock);
		LOG_INFO("vm %s: failed over at epoch %" PRIu64 " in %.3f ms", secondary_name(s),
			 s->st.epoch, (double)(util_now_ns() - t0) / 1e6);
		repl_log_event(s->o.log_cb, s->o.log_arg, "failover %" PRIu64, s->st.epoch);
		*vm_out = twin;
	}
	answer_switch(s, rc);
	pthread_mutex_unlock(&s->apply_lock);
	return rc;
}

int repl_secondary_copy(struct repl_secondary *s, int snap_fd, const int *disk_fds, unsigned ndisks,
			struct repl_ckpt_copy *out, char *why, size_t why_len)
{
	struct hv_snapshot_stats st;
	enum repl_state state;
	struct hv_vm *twin;
	bool broken;
	int rc;

	memset(out, 0, sizeof(*out));
	if (why_len)
		why[0] = '\0';
	pthread_mutex_lock(&s->apply_lock); /* no epoch lands while we copy */
	pthread_mutex_lock(&s->lock);
	twin = s->twin;
	broken = s->twin_broken;
	state = s->st.state;
	out->epoch = s->st.epoch;
	out->age_ns = twin && s->commit_ns ? util_now_ns() - s->commit_ns : 0;
	pthread_mutex_unlock(&s->lock);
	if (!twin && state == REPL_S_FAILED_OVER)
		rc = util_why(why, why_len, -EALREADY,
			      "the twin runs already (failed over): snapshot it as any VM");
	else if (!twin)
		rc = util_why(why, why_len, -ENOENT,
			      "no checkpoint yet: the initial copy has not arrived");
	else if (broken)
		rc = util_why(why, why_len, -EIO, "the twin is unusable: %.120s", s->st.last_error);
	else
		rc = hv_snapshot_save_twin(twin, snap_fd, &st);
	if (!rc && fdatasync(snap_fd) < 0)
		rc = -errno;
	if (rc < 0 && !why[0])
		snprintf(why, why_len, "writing the checkpoint: %s", strerror(-rc));
	if (!rc) {
		out->snap_bytes = st.bytes;
		rc = twin_disks_copy(s, disk_fds, ndisks, &out->disk_bytes, why, why_len);
	}
	pthread_mutex_unlock(&s->apply_lock);
	if (!rc)
		LOG_INFO("vm %s: checkpoint %" PRIu64 " copied for a test boot (%.1f MiB of RAM "
			 "and state, %.1f MiB of disks)",
			 secondary_name(s), out->epoch, (double)out->snap_bytes / (1 << 20),
			 (double)out->disk_bytes / (1 << 20));
	return rc;
}

void repl_secondary_status(struct repl_secondary *s, struct repl_status *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->st;
	out->is_primary = false;
	if (s->twin && s->commit_ns)
		out->ckpt_age_ns = util_now_ns() - s->commit_ns;
	pthread_mutex_unlock(&s->lock);
}

void repl_secondary_free(struct repl_secondary *s)
{
	if (!s)
		return;
	stop_receiver(s);
	if (s->switch_held) /* the switch was never acted on: the source must resume */
		answer_switch(s, -ECANCELED);
	twin_pc_stop(s);
	if (s->listener && s->t->close_listener)
		s->t->close_listener(s->listener);
	hv_vm_free(s->twin);
	twin_disks_close(s);
	repl_buf_dispose(&s->decoded);
	repl_patches_dispose(&s->patches);
	free(s->rx);
	pthread_mutex_destroy(&s->apply_lock);
	pthread_mutex_destroy(&s->pc_send_lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->listen_addr);
	repl_key_wipe(&s->key);
	free(s);
}
