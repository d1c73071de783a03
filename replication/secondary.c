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

#include "replication/codec.h"
#include "replication/disk_int.h"
#include "replication/engine.h"
#include "util/util.h"

#define ACCEPT_POLL_MS 200
#define HELLO_WAIT_MS  1000 /* a connection that says nothing this long is not a primary */

struct repl_secondary {
	struct repl_secondary_opts o;
	struct repl_key key; /* o.key points here (wiped on free) */
	char *listen_addr;
	const struct repl_transport_ops *t;
	struct repl_listener *listener;
	pthread_t thread, listen_thread;
	bool thread_live, listen_live;
	struct repl_buf decoded;
	struct repl_patches patches; /* the decoded epoch's PATCH pages, into rx */
	uint8_t *rx;		     /* the epoch being received, kept across epochs */
	size_t rx_cap;
	uint64_t first_max; /* the largest initial copy the welcomed primary may send */
	bool sums;	    /* the welcomed primary asked for the disks' digests (§8.5) */

	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t cond;  /* a primary was handed over, or stop */
	bool stop;
	bool taken;			/* a primary's copy arrived: no other primary, ever */
	struct repl_conn *pending;	/* welcomed, not yet picked up by the receiver */
	struct repl_seal *pending_seal; /* its link's seal (NULL: plain), handed over with it */
	struct repl_conn *conn;		/* the primary being served */
	struct hv_vm *twin; /* NULL until the full copy is applied; handed out on failover */
	struct repl_link switch_link; /* a migration's source waiting for RUNNING */
	bool switch_held;
	bool twin_broken; /* an apply failed half-way, or verify found it different */
	struct repl_status st;
	/* held while an epoch is applied, and by failover: never both at once */
	pthread_mutex_t apply_lock;

	/* the twin's writable disks (receiving thread only) */
	struct twin_disk {
		int fd; /* -1: none, or read-only */
		uint64_t bytes;
		struct repl_disk_epoch *buf; /* epochs from 1 on; epoch 0 is written at once */
		bool replicated;	     /* the primary sealed epoch 0 for it */
		uint64_t ops0, bytes0;	     /* epoch 0's records as written */
		bool seal_valid;
		uint64_t seal_epoch, seal_ops, seal_bytes;
	} disks[REPL_DISK_MAX];
};

static const char *name_of(struct repl_secondary *s)
{
	return s->o.vm.name ? s->o.vm.name : "twin";
}

static void set_state(struct repl_secondary *s, enum repl_state to, const char *why)
{
	pthread_mutex_lock(&s->lock);
	repl_state_change(name_of(s), &s->st.state, to, why);
	pthread_mutex_unlock(&s->lock);
}

static void note_error(struct repl_secondary *s, const char *fmt, const char *what)
{
	pthread_mutex_lock(&s->lock);
	snprintf(s->st.last_error, sizeof(s->st.last_error), fmt, what);
	pthread_mutex_unlock(&s->lock);
	LOG_ERR("vm %s: %s", name_of(s), s->st.last_error);
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
		return 0;
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
		note_error(s, "verify: %s", what);
		return -EILSEQ;
	}
	return 0;
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
		note_error(s, "the first epoch is %s", "too short");
		return -EBADMSG;
	}
	memcpy(&h, buf + 8, sizeof(h));
	/* the peer names the RAM size: hold it to what a VM on this host may have */
	{
		struct hv_vm_config c = {.mem_bytes = h.mem_bytes, .ncpus = h.ncpus};

		if (hv_vm_config_check(&c, why, sizeof(why)) < 0) {
			note_error(s, "initial copy refused: %s", why);
			return -EBADMSG;
		}
	}
	rc = repl_decode(buf, len, NULL, h.mem_bytes, &s->decoded, NULL, why, sizeof(why));
	if (rc < 0) {
		note_error(s, "initial copy refused: %s", why);
		return rc;
	}
	memcpy(&h, s->decoded.data + 8, sizeof(h));
	if (h.kind != HV_STREAM_FULL) {
		note_error(s, "initial copy refused: %s", "not a full stream");
		return -EBADMSG;
	}
	streams[0] = s->decoded.data;
	lens[0] = s->decoded.len;
	rc = hv_snapshot_restore(&s->o.vm, streams, lens, 1, 0, s->o.add_devices,
				 s->o.add_devices_arg, &twin, why, sizeof(why));
	if (rc < 0) {
		note_error(s, "initial copy refused: %s", why);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->twin = twin;
	s->st.epoch = 0;
	s->st.epochs = 1;
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
		note_error(s, "epoch refused: %s", why);
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
		note_error(s, "epoch not applied: %s", why);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->st.epoch = epoch;
	s->st.epochs++;
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
static int disk_record(struct repl_secondary *s, const struct repl_disk_op *op, uint64_t epoch,
		       char *why, size_t why_len)
{
	struct twin_disk *d = &s->disks[op->disk];
	int rc;

	if (d->fd < 0)
		return util_why(
			why, why_len, -EPROTO,
			"the primary replicates disk %u, which is not a writable disk here "
			"(give the replica the same --disk list, writable where the primary's is)",
			op->disk);
	if (epoch > 0 && !d->replicated)
		return util_why(why, why_len, -EPROTO,
				"writes for disk %u, whose initial copy never came", op->disk);
	if (op->epoch != epoch)
		return util_why(why, why_len, -EPROTO,
				"a %s of epoch %" PRIu64 " while epoch %" PRIu64 " is under way",
				repl_disk_op_kind_str(op->kind), op->epoch, epoch);
	if (op->kind == REPL_DISK_OP_SEAL) {
		d->seal_valid = true;
		d->seal_epoch = op->epoch;
		d->seal_ops = op->ops;
		d->seal_bytes = op->bytes;
		return 0;
	}
	if (epoch > 0) {
		rc = repl_disk_epoch_add(d->buf, op);
		if (rc < 0)
			return util_why(
				why, why_len, rc, "disk %u: epoch %" PRIu64 ": %s", op->disk, epoch,
				rc == -ENOBUFS	? "more writes than the replica may buffer"
				: rc == -EINVAL ? "a write past the end of the replica's image"
						: strerror(-rc));
		return 0;
	}
	/* epoch 0, the initial copy: nothing runs from this image before it completes */
	if ((op->kind != REPL_DISK_OP_FLUSH) &&
	    (op->offset > d->bytes || op->len > d->bytes - op->offset))
		return util_why(
			why, why_len, -EFBIG,
			"disk %u: the primary's image is larger than the replica's (%" PRIu64
			" bytes)",
			op->disk, d->bytes);
	if (op->kind == REPL_DISK_OP_WRITE)
		rc = disk_write_full(d->fd, op->data, op->len, op->offset);
	else if (op->kind == REPL_DISK_OP_ZERO)
		rc = disk_zero_range(d->fd, op->offset, op->len);
	else
		rc = 0;
	if (rc < 0)
		return util_why(why, why_len, rc, "disk %u: writing the initial copy: %s", op->disk,
				strerror(-rc));
	d->ops0++;
	d->bytes0 += op->kind == REPL_DISK_OP_WRITE ? op->len : 0;
	return 0;
}

/* A DISK frame: §10 records, each {u32 type, u32 length, body, pad to 8}. */
static int disk_frame(struct repl_secondary *s, const uint8_t *buf, size_t len, uint64_t epoch)
{
	char why[256];
	size_t off = 0;
	int rc;

	while (off < len) {
		struct repl_disk_op op;
		uint32_t type, rlen;

		if (len - off < 8) {
			note_error(s, "a DISK frame: %s", "a record cut short");
			return -EBADMSG;
		}
		memcpy(&type, buf + off, 4);
		memcpy(&rlen, buf + off + 4, 4);
		if (rlen > len - off - 8) {
			note_error(s, "a DISK frame: %s", "a record longer than the frame");
			return -EBADMSG;
		}
		rc = repl_disk_op_parse(type, buf + off + 8, rlen, &op, why, sizeof(why));
		if (!rc)
			rc = disk_record(s, &op, epoch, why, sizeof(why));
		if (rc < 0) {
			note_error(s, "disk writes refused: %s", why);
			return rc;
		}
		off += 8 + rlen + ((8 - rlen % 8) % 8);
	}
	return 0;
}

/*
 * Epoch `epoch` arrived whole: every replicated disk's seal must match what
 * arrived, and the writes land in the images (epoch 0's already did: it is
 * made durable). Before the RAM, so an epoch is acked only with its disks.
 * Returns the number of disks committed, or -errno (the twin is then unusable).
 */
static int disks_commit(struct repl_secondary *s, uint64_t epoch)
{
	unsigned i;
	int rc, n = 0;

	for (i = 0; i < REPL_DISK_MAX; i++) {
		struct twin_disk *d = &s->disks[i];
		char what[160];

		if (d->fd < 0 || (!d->replicated && epoch > 0))
			continue;
		if (!d->seal_valid || d->seal_epoch != epoch) {
			if (epoch == 0 && !d->ops0)
				continue; /* the primary does not replicate this disk */
			snprintf(what, sizeof(what), "disk %u: no seal for epoch %" PRIu64, i,
				 epoch);
			note_error(s, "disk writes refused: %s", what);
			return -EBADMSG;
		}
		d->seal_valid = false;
		if (epoch == 0) {
			rc = d->ops0 == d->seal_ops && d->bytes0 == d->seal_bytes ? 0 : -EBADMSG;
			if (!rc && fdatasync(d->fd) < 0)
				rc = -errno;
		} else {
			rc = repl_disk_epoch_check(d->buf, epoch, d->seal_ops, d->seal_bytes);
			if (!rc)
				rc = repl_disk_epoch_commit(d->buf, epoch);
		}
		if (rc < 0) {
			snprintf(what, sizeof(what), "disk %u, epoch %" PRIu64 ": %s", i, epoch,
				 rc == -EBADMSG ? "the writes that arrived do not match the seal"
						: strerror(-rc));
			note_error(s, "disk writes not applied: %s", what);
			return rc;
		}
		pthread_mutex_lock(&s->lock);
		s->st.disk_bytes += epoch ? d->seal_bytes : d->bytes0;
		s->st.disks += !d->replicated;
		pthread_mutex_unlock(&s->lock);
		d->replicated = true;
		n++;
	}
	return n;
}

/* The stream stopped: what arrived of an epoch that did not complete is forgotten. */
static void disks_discard(struct repl_secondary *s, uint64_t epoch)
{
	unsigned i;

	for (i = 0; i < REPL_DISK_MAX; i++) {
		struct twin_disk *d = &s->disks[i];

		if (d->fd < 0)
			continue;
		if (d->buf)
			repl_disk_epoch_discard(d->buf, epoch);
		d->seal_valid = false;
		if (!s->twin) { /* a new primary starts over */
			d->ops0 = d->bytes0 = 0;
			d->replicated = false;
		}
	}
	if (!s->twin) {
		pthread_mutex_lock(&s->lock);
		s->st.disks = 0;
		s->st.disk_bytes = 0;
		pthread_mutex_unlock(&s->lock);
	}
}

/*
 * Serve one primary until its stream stops. Returns true when a migration's
 * source handed the VM over (SWITCH): the link is then kept in s->switch_link
 * for the answer, and the caller must neither dispose nor close it.
 */
static bool serve(struct repl_secondary *s, struct repl_link *l, uint64_t first_max)
{
	uint64_t epoch = 0, max_len = first_max;
	bool refused = false, bye = false, switched = false;
	int rc, disks = 0;

	if (s->t->set_timeout) /* the primary builds the initial copy first: be patient */
		s->t->set_timeout(l->c, REPL_SYNC_TIMEOUT_MS);
	for (;;) {
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
			rc = disk_frame(s, s->rx, len, epoch);
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
			note_error(s, "%s", "a SWITCH where no migration was under way: refused");
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
			rc = disks = disks_commit(s, epoch);
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
	disks_discard(s, epoch);
	pthread_mutex_lock(&s->lock);
	if (switched) {
		s->taken = true;
		s->switch_link = *l;
		s->switch_held = true;
		repl_state_change(name_of(s), &s->st.state, REPL_S_SWITCHING,
				  "the source handed the VM over");
		pthread_mutex_unlock(&s->lock);
		LOG_INFO("vm %s: the source paused after epoch %" PRIu64 " and hands the VM over",
			 name_of(s), s->st.epoch);
		return true;
	}
	if (!s->twin && !s->stop) {
		/* nothing of this primary was kept: the next one may come */
		if (!refused) /* else last_error says why it was refused */
			snprintf(s->st.last_error, sizeof(s->st.last_error),
				 "a primary left before its initial copy was applied (%s)",
				 bye ? "it said goodbye" : strerror(-rc));
		LOG_WARN("vm %s: %s; waiting for a primary again", name_of(s), s->st.last_error);
		repl_state_change(name_of(s), &s->st.state, REPL_S_IDLE, "primary left");
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	s->taken = true;
	if (bye && s->o.incoming) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the source gave the migration up after epoch %" PRIu64
			 " and runs on: nothing runs here",
			 s->st.epoch);
		LOG_WARN("vm %s: %s", name_of(s), s->st.last_error);
	} else if (bye) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the primary stopped protecting after epoch %" PRIu64
			 " and runs on: a failover needs --force",
			 s->st.epoch);
		LOG_WARN("vm %s: %s", name_of(s), s->st.last_error);
	} else if (!s->stop && rc != -ECANCELED && !refused && s->o.incoming) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the source went away before handing the VM over, after epoch %" PRIu64
			 " (%s): nothing runs here; the source runs on if it is alive",
			 s->st.epoch, strerror(-rc));
		LOG_WARN("vm %s: %s", name_of(s), s->st.last_error);
	} else if (!s->stop && rc != -ECANCELED && !refused) {
		snprintf(s->st.last_error, sizeof(s->st.last_error),
			 "the primary's stream stopped after epoch %" PRIu64 " (%s)", s->st.epoch,
			 strerror(-rc));
		LOG_WARN("vm %s: %s; the twin waits at epoch %" PRIu64 " for a failover",
			 name_of(s), s->st.last_error, s->st.epoch);
	}
	repl_state_change(name_of(s), &s->st.state, bye ? REPL_S_RELEASED : REPL_S_PRIMARY_LOST,
			  bye ? "primary said goodbye" : "stream stopped");
	pthread_mutex_unlock(&s->lock);
	return false;
}

static bool stopping(void *arg)
{
	struct repl_secondary *s = arg;
	bool stop;

	pthread_mutex_lock(&s->lock);
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

/*
 * The primary asked for the digests of our copies (§8.5): all of them,
 * before anything of its stream is read. False when they could not be sent:
 * the primary is then dropped and the next one may come (nothing was written).
 */
static bool send_sums(struct repl_secondary *s, struct repl_link *l)
{
	struct disk_sums_src src[REPL_DISK_MAX];
	uint64_t t0 = util_now_ns();
	char why[192];
	unsigned i, n = 0;
	int rc;

	for (i = 0; i < s->o.ndisks && i < REPL_DISK_MAX; i++)
		if (s->disks[i].fd >= 0)
			src[n++] = (struct disk_sums_src){
				.disk = i, .fd = s->disks[i].fd, .image_bytes = s->disks[i].bytes};
	if (s->t->set_timeout) /* the primary reads them as they come */
		s->t->set_timeout(l->c, REPL_SYNC_TIMEOUT_MS);
	rc = disk_sums_send(l, src, n, stopping, s, why, sizeof(why));
	if (rc < 0) {
		pthread_mutex_lock(&s->lock);
		if (rc != -ECANCELED) {
			snprintf(s->st.last_error, sizeof(s->st.last_error),
				 "the disks' digests for the primary: %.100s", why);
			LOG_WARN("vm %s: %s; waiting for a primary again", name_of(s),
				 s->st.last_error);
		}
		repl_state_change(name_of(s), &s->st.state, REPL_S_IDLE, "primary left");
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	if (n)
		LOG_INFO("vm %s: digests of %u disk%s sent in %.1f s", name_of(s), n,
			 n == 1 ? "" : "s", (double)(util_now_ns() - t0) / 1e9);
	return true;
}

/* The receiving thread: serve each primary the listener hands over. */
static void *receiver(void *arg)
{
	struct repl_secondary *s = arg;

	pthread_setname_np(pthread_self(), "castor-twin");
	repl_thread_sched(name_of(s), s->o.thread_nice, s->o.thread_rt);
	for (;;) {
		struct repl_link l = {.t = s->t};
		uint64_t first_max;
		bool kept, ended, sums;

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
		pthread_mutex_unlock(&s->lock);
		kept = (!sums || send_sums(s, &l)) && serve(s, &l, first_max);
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
		LOG_WARN("vm %s: %s refused: %s", name_of(s), peer, why);
		repl_welcome_send(&l, &hs, status, 0, why);
		goto out;
	}
	if (status < 0) {
		LOG_WARN("vm %s: %s is not a primary: %s; closed", name_of(s), peer, why);
		goto out;
	}
	status = repl_handshake_check(&hs, text, sizeof(text));
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
	if (!status && (s->taken || s->conn || s->pending || s->stop)) {
		status = -EBUSY;
		snprintf(text, sizeof(text),
			 s->taken ? "this replica holds the twin of another primary (%s): start a "
				    "new replica"
				  : "this replica serves another primary (%s)",
			 repl_state_str(s->st.state));
	}
	pthread_mutex_unlock(&s->lock);
	if (status) {
		LOG_WARN("vm %s: primary %s refused: %s", name_of(s), peer, text);
		repl_welcome_send(&l, &hs, status, 0, text);
		goto out;
	}
	if (repl_welcome_send(&l, &hs, 0,
			      s->o.conn.timeout_ms ? s->o.conn.timeout_ms : REPL_DEFAULT_TIMEOUT_MS,
			      "welcome") < 0) {
		LOG_WARN("vm %s: primary %s went away during its hello", name_of(s), peer);
		goto out;
	}
	if (repl_proof_recv(&l, &hs, why, sizeof(why)) < 0) {
		LOG_WARN("vm %s: primary %s failed the handshake: %s; closed", name_of(s), peer,
			 why);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	if (!s->stop) { /* nobody else got in: this thread is the only one that greets */
		s->pending = c;
		s->pending_seal = l.seal;
		l.seal = NULL;
		s->first_max = first_max;
		s->sums = hs.sums;
		s->st.link_authenticated = s->pending_seal != NULL;
		s->st.link_encrypted = hs.encrypt && s->pending_seal;
		repl_state_change(name_of(s), &s->st.state, REPL_S_SYNCING, "primary connected");
		pthread_cond_signal(&s->cond);
		handed = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (handed)
		LOG_INFO("vm %s: primary %s welcomed, link %s", name_of(s), peer,
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
			LOG_ERRNO(rc, "vm %s: accept", name_of(s));
			continue;
		}
		if (!greet(s, c))
			s->t->close(c);
	}
	return NULL;
}

static int disks_open(struct repl_secondary *s, char *why, size_t why_len)
{
	unsigned i;
	int rc;

	if (s->o.ndisks > REPL_DISK_MAX)
		return util_why(why, why_len, -EINVAL, "at most %u disks", REPL_DISK_MAX);
	for (i = 0; i < s->o.ndisks; i++) {
		struct twin_disk *d = &s->disks[i];
		const char *path = s->o.disks[i].path;
		char name[96];

		if (s->o.disks[i].read_only)
			continue;
		d->fd = open(path, O_RDWR | O_CLOEXEC);
		if (d->fd < 0)
			return util_why(why, why_len, -errno,
					"disk %s: the replica cannot write its copy there (%s)",
					path, strerror(errno));
		rc = repl_disk_image_size(d->fd, &d->bytes, name, sizeof(name));
		if (rc < 0)
			return util_why(why, why_len, rc, "disk %s: %s", path, name);
		d->bytes -= d->bytes % DISK_SECTOR;
		snprintf(name, sizeof(name), "%s disk %u", name_of(s), i);
		rc = repl_disk_epoch_new(d->fd, d->bytes, 0, name, &d->buf);
		if (rc < 0)
			return util_why(why, why_len, rc, "disk %s: %s", path, strerror(-rc));
	}
	return 0;
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
	repl_buf_init(&s->decoded);
	repl_patches_init(&s->patches);
	if (!s->listen_addr) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = disks_open(s, why, why_len);
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
	LOG_INFO("vm %s: waiting for a primary on %s (port %u)", name_of(s), s->listen_addr,
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
	int err;

	if (!s->switch_held)
		return;
	err = repl_running_send(&s->switch_link, rc);
	if (err < 0)
		LOG_WARN("vm %s: could not tell the source that the VM %s (%s)", name_of(s),
			 rc ? "did not start" : "runs here", strerror(-err));
	if (rc < 0) {
		pthread_mutex_lock(&s->lock);
		repl_state_change(name_of(s), &s->st.state, REPL_S_STOPPED, "could not start");
		pthread_mutex_unlock(&s->lock);
	}
	repl_link_dispose(&s->switch_link);
	s->t->close(s->switch_link.c);
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
	if (!rc) {
		rc = hv_vm_start(twin);
		if (rc < 0)
			snprintf(why, why_len, "the twin would not start (%s)", strerror(-rc));
	}
	if (!rc) {
		pthread_mutex_lock(&s->lock);
		s->twin = NULL;
		repl_state_change(name_of(s), &s->st.state, REPL_S_FAILED_OVER, "failover");
		pthread_mutex_unlock(&s->lock);
		LOG_INFO("vm %s: failed over at epoch %" PRIu64 " in %.3f ms", name_of(s),
			 s->st.epoch, (double)(util_now_ns() - t0) / 1e6);
		repl_log_event(s->o.log_cb, s->o.log_arg, "failover %" PRIu64, s->st.epoch);
		*vm_out = twin;
	}
	answer_switch(s, rc);
	pthread_mutex_unlock(&s->apply_lock);
	return rc;
}

void repl_secondary_status(struct repl_secondary *s, struct repl_status *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->st;
	out->is_primary = false;
	pthread_mutex_unlock(&s->lock);
}

void repl_secondary_free(struct repl_secondary *s)
{
	if (!s)
		return;
	stop_receiver(s);
	if (s->switch_held) /* the switch was never acted on: the source must resume */
		answer_switch(s, -ECANCELED);
	if (s->listener && s->t->close_listener)
		s->t->close_listener(s->listener);
	hv_vm_free(s->twin);
	for (unsigned i = 0; i < REPL_DISK_MAX; i++) {
		repl_disk_epoch_free(s->disks[i].buf);
		if (s->disks[i].fd >= 0)
			close(s->disks[i].fd);
	}
	repl_buf_dispose(&s->decoded);
	repl_patches_dispose(&s->patches);
	free(s->rx);
	pthread_mutex_destroy(&s->apply_lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->listen_addr);
	repl_key_wipe(&s->key);
	free(s);
}
