/*
 * Disk resync, the source's end and the record I/O both ends share (repl.h,
 * "disks: resync between two hosts"; docs/stream-format.md §11).
 *
 * The source connects, says hello with the DISK flag (the session layer of
 * §8.1: keys, proofs and sealing exactly as for a VM), and then walks its
 * image batch by batch (512 ranges): it reads each range that holds data --
 * holes are found with SEEK_DATA and never read -- digests it, and sends it
 * when the mode says so (every range; a digest unlike the destination's
 * SUMS; a region the dirty-region log marks). A range that reads as zeros
 * goes as a ZERO record, so a sparse image stays sparse. At most two batches
 * are unacknowledged, so the destination's writes and fdatasyncs run while
 * the source reads the next batch, and a destination that fails is heard of
 * within two batches. With verify, the digests of every range feed the image
 * digest, which the destination compares with its own.
 */
#define LOG_TAG "disk-sync"
#include "replication/disk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- records on a link --------------------------------------------------------------- */

int dsync_io_init(struct dsync_io *io, struct repl_link *l)
{
	*io = (struct dsync_io){.l = l};
	io->out = malloc(DSYNC_OUT_BYTES);
	io->in = malloc(DSYNC_REC_MAX + 8);
	if (!io->out || !io->in) {
		dsync_io_dispose(io);
		return -ENOMEM;
	}
	return 0;
}

void dsync_io_dispose(struct dsync_io *io)
{
	free(io->out);
	free(io->in);
	io->out = io->in = NULL;
}

int dsync_flush(struct dsync_io *io)
{
	struct iovec iov = {io->out, io->out_len};
	int rc;

	if (!io->out_len)
		return 0;
	rc = repl_link_send_iov(io->l, &iov, 1);
	io->out_len = 0;
	return rc;
}

int dsync_put(struct dsync_io *io, uint32_t type, const void *a, size_t alen, const void *b,
	      size_t blen)
{
	static const uint8_t zeros[8];
	struct disk_rec_hdr h = {.type = type, .length = (uint32_t)(alen + blen)};
	size_t pad = (8 - (alen + blen) % 8) % 8, total = sizeof(h) + alen + blen + pad;
	int rc;

	if (io->out_len + total > DSYNC_OUT_BYTES) {
		rc = dsync_flush(io);
		if (rc < 0)
			return rc;
	}
	if (total > DSYNC_OUT_BYTES) { /* never for §11's records; kept honest anyway */
		struct iovec iov[4] = {{&h, sizeof(h)},
				       {(void *)a, alen},
				       {(void *)b, blen},
				       {(void *)zeros, pad}};

		return repl_link_send_iov(io->l, iov, 4);
	}
	memcpy(io->out + io->out_len, &h, sizeof(h));
	memcpy(io->out + io->out_len + sizeof(h), a, alen);
	if (blen)
		memcpy(io->out + io->out_len + sizeof(h) + alen, b, blen);
	memset(io->out + io->out_len + sizeof(h) + alen + blen, 0, pad);
	io->out_len += total;
	return 0;
}

int dsync_get(struct dsync_io *io, struct dsync_rec *out, char *why, size_t why_len)
{
	struct disk_rec_hdr h;
	int rc;

	rc = dsync_flush(io);
	for (;;) {
		size_t padded;

		if (!rc)
			rc = repl_link_recv(io->l, &h, sizeof(h));
		if (!rc)
			rc = dsync_hdr_check(io->p, h.type, h.length, why, why_len);
		if (rc < 0)
			break;
		padded = h.length + (8 - h.length % 8) % 8;
		rc = padded ? repl_link_recv(io->l, io->in, padded) : 0;
		if (rc < 0)
			break;
		for (size_t i = h.length; i < padded; i++)
			if (io->in[i])
				return util_why(why, why_len, -EPROTO,
						"record 0x%04x(%s) with non-zero padding", h.type,
						dsync_type_str(h.type));
		rc = dsync_rec_parse(io->p, h.type, io->in, h.length, out, why, why_len);
		if (rc < 0 || out->type)
			break;
		LOG_DBG("optional record 0x%08x of %u bytes skipped", h.type, h.length);
	}
	return rc; /* a link error leaves `why` to the caller, who knows the peer */
}

void dsync_io_finish(struct dsync_io *io, const struct repl_disk_sync_opts *o,
		     struct repl_disk_sync_stats *st, uint64_t t0)
{
	struct repl_link *l = io->l;

	st->tx_bytes = l->tx_bytes;
	st->rx_bytes = l->rx_bytes;
	st->elapsed_ns = t0 ? util_now_ns() - t0 : 0;
	if (o->progress)
		o->progress(o->progress_arg, st);
	dsync_io_dispose(io);
	repl_link_dispose(l);
	if (l->c)
		l->t->close(l->c);
	l->c = NULL;
}

bool dsync_is_link_error(int rc)
{
	return rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -EPIPE || rc == -EBADMSG;
}

void dsync_put_error(struct dsync_io *io, int status, const char *text)
{
	struct dsync_error e = {.status = status < 0 && status >= -4095 ? status : -EIO};

	snprintf(e.text, sizeof(e.text), "%s", text);
	if (!dsync_put(io, DSYNC_ERROR, &e, sizeof(e), NULL, 0))
		dsync_flush(io);
}

/* ---- the source ------------------------------------------------------------------------ */

/* The destination's SUMS of one batch, kept until that batch is processed. */
struct sums_slot {
	bool have;
	uint64_t batch;
	uint32_t count;
	struct dsync_batch_sums s;
};

struct src {
	struct dsync_side e;
	struct sums_slot *sums; /* two: batches k and k + 1 */
	uint64_t next_ack, next_sums;
	uint64_t zero_from, zero_len; /* a run of zero ranges not yet sent */
	bool begun;		      /* BEGIN queued: the destination may hear an ERROR */
	bool peer_done;		      /* it sent an ERROR or its RESULT: it hears nothing more */
};

static int take_sums(struct src *s, const struct dsync_rec *r)
{
	struct sums_slot *slot = &s->sums[r->u.sums.batch % 2];
	const uint8_t *d = r->u.sums.digests;

	if (r->u.sums.batch != s->next_sums || slot->have)
		return util_why(s->e.why, s->e.why_len, -EPROTO,
				"SUMS of batch %" PRIu64 " out of order (expected %" PRIu64 ")",
				r->u.sums.batch, s->next_sums);
	slot->have = true;
	slot->batch = r->u.sums.batch;
	slot->count = r->u.sums.count;
	memcpy(slot->s.zero, r->u.sums.zero_bits, 8 * ((slot->count + 63) / 64));
	for (uint32_t i = 0; i < slot->count; i++)
		if (!dsync_sums_is_zero(r, i)) {
			memcpy(slot->s.d[i], d, REPL_DISK_DIGEST_BYTES);
			d += REPL_DISK_DIGEST_BYTES;
		}
	s->next_sums++;
	return 0;
}

static bool slot_is_zero(const struct sums_slot *slot, uint32_t i)
{
	return (slot->s.zero[i / 64] >> (i % 64)) & 1;
}

/* The peer's ERROR as our failure. */
static int peer_error(struct src *s, const struct dsync_rec *r)
{
	s->peer_done = true;
	return util_why(s->e.why, s->e.why_len, r->u.error.status, "the destination failed: %s",
			r->u.error.text);
}

/*
 * Read the destination's records until ACK `ack` (if want_ack) and the SUMS
 * of `sums` (if want_sums) have arrived; RESULT when want_result.
 */
static int wait_for(struct src *s, bool want_ack, uint64_t ack, bool want_sums, uint64_t sums,
		    struct dsync_rec *result_out)
{
	struct dsync_rec r;
	int rc;

	while ((want_ack && s->next_ack <= ack) || (want_sums && s->next_sums <= sums) ||
	       result_out) {
		rc = dsync_get(&s->e.io, &r, s->e.why, s->e.why_len);
		if (rc < 0)
			return rc;
		switch (r.type) {
		case DSYNC_ACK:
			if (r.u.batch != s->next_ack)
				return util_why(s->e.why, s->e.why_len, -EPROTO,
						"ACK of batch %" PRIu64 " (expected %" PRIu64 ")",
						r.u.batch, s->next_ack);
			s->next_ack++;
			s->e.st->batches_done = s->next_ack;
			if (s->e.o->progress)
				s->e.o->progress(s->e.o->progress_arg, s->e.st);
			break;
		case DSYNC_SUMS:
			if (s->e.p.mode != REPL_DISK_SYNC_CHECKSUM)
				return util_why(s->e.why, s->e.why_len, -EPROTO, "SUMS in %s mode",
						repl_disk_sync_mode_str(s->e.p.mode));
			rc = take_sums(s, &r);
			if (rc < 0)
				return rc;
			break;
		case DSYNC_RESULT:
			if (!result_out || s->next_ack != s->e.p.nbatches)
				return util_why(s->e.why, s->e.why_len, -EPROTO,
						"RESULT before the last ACK");
			*result_out = r;
			s->peer_done = true;
			return 0;
		case DSYNC_ERROR:
			return peer_error(s, &r);
		default:
			return util_why(s->e.why, s->e.why_len, -EPROTO,
					"the destination sent a %s record", dsync_type_str(r.type));
		}
	}
	return 0;
}

static int put_zero_run(struct src *s)
{
	struct dsync_zero z = {.offset = s->zero_from, .length = s->zero_len};
	int rc;

	if (!s->zero_len)
		return 0;
	rc = dsync_put(&s->e.io, DSYNC_ZERO, &z, sizeof(z), NULL, 0);
	s->e.st->zero_bytes += s->zero_len;
	s->zero_len = 0;
	return rc;
}

/* Does range r (index i in its batch) go to the destination, given our digest? */
static bool must_send(struct src *s, uint64_t r, uint32_t i, uint64_t len, const uint8_t *digest)
{
	const struct sums_slot *slot = &s->sums[(r / DSYNC_BATCH_RANGES) % 2];

	switch (s->e.p.mode) {
	case REPL_DISK_SYNC_FULL:
		return true;
	case REPL_DISK_SYNC_DIRTY:
		return repl_disk_log_is_dirty(s->e.o->log, r);
	default:
		/* a digest of zeros stands for a range marked zero: one comparison */
		return memcmp(slot_is_zero(slot, i) ? dsync_zero_digest(&s->e.zd, len)
						    : slot->s.d[i],
			      digest, REPL_DISK_DIGEST_BYTES) != 0;
	}
}

static int do_range(struct src *s, uint64_t r, uint32_t i)
{
	uint64_t off = r * s->e.p.range_bytes, len = dsync_range_len(&s->e.p, r);
	uint8_t digest[REPL_DISK_DIGEST_BYTES];
	bool need_digest =
		s->e.p.mode == REPL_DISK_SYNC_CHECKSUM || (s->e.p.flags & DSYNC_F_VERIFY);
	bool zero;
	int rc;

	if (s->e.p.mode == REPL_DISK_SYNC_DIRTY && !need_digest &&
	    !repl_disk_log_is_dirty(s->e.o->log, r))
		return 0; /* dirty mode without verify reads only what it sends */
	zero = disk_is_hole(&s->e.holes, off, len);
	if (zero) {
		memcpy(digest, dsync_zero_digest(&s->e.zd, len), sizeof(digest));
	} else {
		s->e.st->read_bytes += len;
		rc = disk_read_full(s->e.fd, s->e.buf, (size_t)len, off);
		if (rc < 0)
			return util_why(s->e.why, s->e.why_len, rc,
					"reading %" PRIu64 " bytes at %" PRIu64
					" of the source image: %s",
					len, off, strerror(-rc));
		dsync_digest(s->e.buf, (size_t)len, digest);
		zero = !memcmp(digest, dsync_zero_digest(&s->e.zd, len), sizeof(digest));
	}
	s->e.st->compared_bytes += len;
	if (s->e.p.flags & DSYNC_F_VERIFY)
		dsync_image_digest_add(&s->e.img, digest);
	if (!must_send(s, r, i, len, digest))
		return put_zero_run(s);
	s->e.st->ranges_sent++;
	if (zero) { /* runs of zero ranges go as one ZERO */
		if (!s->zero_len)
			s->zero_from = off;
		s->zero_len += len;
		return 0;
	}
	rc = put_zero_run(s);
	if (!rc)
		rc = dsync_put(&s->e.io, DSYNC_DATA, &off, sizeof(off), s->e.buf, (size_t)len);
	s->e.st->data_bytes += len;
	return rc;
}

static int do_batch(struct src *s, uint64_t k)
{
	uint32_t n = dsync_batch_count(&s->e.p, k);
	int rc = 0;

	for (uint32_t i = 0; i < n && !rc; i++)
		rc = do_range(s, k * DSYNC_BATCH_RANGES + i, i);
	if (!rc)
		rc = put_zero_run(s); /* a ZERO never crosses a batch */
	if (!rc)
		rc = dsync_put(&s->e.io, DSYNC_MARK, &k, sizeof(k), NULL, 0);
	/* out now, so the destination writes batch k while we read k + 1 */
	if (!rc)
		rc = dsync_flush(&s->e.io);
	s->sums[k % 2].have = false;
	return rc;
}

static int run_source(struct src *s)
{
	struct dsync_begin b = {.image_bytes = s->e.p.image_bytes,
				.range_bytes = s->e.p.range_bytes,
				.batch_ranges = DSYNC_BATCH_RANGES,
				.mode = s->e.p.mode,
				.flags = s->e.p.flags};
	struct dsync_end end = {0};
	struct dsync_rec res;
	bool sums = s->e.p.mode == REPL_DISK_SYNC_CHECKSUM;
	int rc;

	rc = dsync_put(&s->e.io, DSYNC_BEGIN, &b, sizeof(b), NULL, 0);
	s->begun = true;
	for (uint64_t k = 0; !rc && k < s->e.p.nbatches; k++) {
		rc = wait_for(s, k >= 2, k - 2, sums, k, NULL);
		if (!rc)
			rc = do_batch(s, k);
	}
	if (rc < 0)
		return rc;
	end.ranges = s->e.st->ranges_sent;
	end.data_bytes = s->e.st->data_bytes;
	end.zero_bytes = s->e.st->zero_bytes;
	if (s->e.p.flags & DSYNC_F_VERIFY) {
		dsync_image_digest_final(&s->e.img, end.digest);
		memcpy(s->e.st->digest, end.digest, sizeof(end.digest));
	}
	rc = dsync_put(&s->e.io, DSYNC_END, &end, sizeof(end), NULL, 0);
	if (!rc)
		rc = wait_for(s, false, 0, false, 0, &res);
	if (rc < 0)
		return rc;
	if (res.u.result.status == -EILSEQ)
		return util_why(s->e.why, s->e.why_len, -EILSEQ,
				"the images differ after the sync (digests differ)%s",
				s->e.p.mode == REPL_DISK_SYNC_DIRTY
					? ": the dirty-region log missed writes, or the "
					  "destination is not the image it was synced with; run a "
					  "checksum resync"
					: "");
	if (res.u.result.status)
		return util_why(s->e.why, s->e.why_len, res.u.result.status,
				"the destination answered %s", strerror(-res.u.result.status));
	s->e.st->written_bytes = res.u.result.written;
	s->e.st->verified = s->e.p.flags & DSYNC_F_VERIFY;
	return 0;
}

/* Connect and say hello as a disk source; `why` names what the peer said. */
static int connect_source(const char *peer, uint64_t image_bytes,
			  const struct repl_disk_sync_opts *o, struct repl_link *l, char *why,
			  size_t why_len)
{
	struct repl_conn_opts co = o->conn;
	struct repl_hello h = {.mem_bytes = image_bytes};
	struct repl_handshake hs;
	char pwhy[192];
	uint32_t idle;
	int rc;

	if (!co.timeout_ms)
		co.timeout_ms = REPL_DISK_SYNC_TIMEOUT_MS;
	rc = l->t->connect(peer, &co, &l->c);
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot connect to %s (%s)", peer, strerror(-rc));
	repl_handshake_init(&hs, o->key, o->encrypt);
	hs.disk = true;
	rc = repl_hello_send(l, &hs, &h);
	if (!rc)
		rc = repl_welcome_recv(l, &hs, &idle, pwhy, sizeof(pwhy));
	else
		snprintf(pwhy, sizeof(pwhy), "%s", strerror(-rc));
	repl_handshake_dispose(&hs);
	if (rc == -ECONNRESET)
		return util_why(why, why_len, rc,
				"%s closed the connection during the handshake (%s): is it a "
				"castor disk receive? (a VM replica closes disk sources)",
				peer, strerror(-rc));
	if (rc < 0)
		return util_why(why, why_len, rc, "%s refused: %s", peer, pwhy);
	return 0;
}

int repl_disk_sync_send(const char *peer, int fd, uint64_t image_bytes,
			const struct repl_disk_sync_opts *o, struct repl_disk_sync_stats *st,
			char *why, size_t why_len)
{
	struct repl_link l = {.t = o->transport ? o->transport : &repl_tcp_ops};
	struct src s = {
		.e = {.io.l = &l, .o = o, .st = st, .fd = fd, .why = why, .why_len = why_len}};
	struct dsync_begin b = {.image_bytes = image_bytes,
				.range_bytes = o->range_bytes ? o->range_bytes : REPL_DISK_REGION,
				.batch_ranges = DSYNC_BATCH_RANGES,
				.mode = o->mode,
				.flags = o->no_verify ? 0 : DSYNC_F_VERIFY};
	uint64_t t0 = util_now_ns();
	char bwhy[160];
	int rc;

	memset(st, 0, sizeof(*st));
	if (why_len)
		why[0] = 0;
	if (o->mode == REPL_DISK_SYNC_DIRTY) {
		if (!o->log)
			return util_why(why, why_len, -EINVAL,
					"dirty mode needs a dirty-region log");
		b.range_bytes = repl_disk_log_region_bytes(o->log);
		if (repl_disk_log_regions(o->log) * b.range_bytes < image_bytes)
			return util_why(why, why_len, -EINVAL,
					"the dirty-region log is for a smaller image");
	}
	rc = dsync_begin_check(&b, bwhy, sizeof(bwhy));
	if (rc < 0)
		return util_why(why, why_len, -EINVAL, "%s", bwhy);
	dsync_params_from_begin(&b, &s.e.p);
	*st = (struct repl_disk_sync_stats){.mode = o->mode,
					    .image_bytes = image_bytes,
					    .range_bytes = s.e.p.range_bytes,
					    .ranges = s.e.p.nranges,
					    .batches = s.e.p.nbatches};
	disk_holes_init(&s.e.holes, fd, image_bytes);
	if (s.e.p.flags & DSYNC_F_VERIFY)
		dsync_image_digest_init(&s.e.img, &s.e.p);
	s.e.buf = malloc(s.e.p.range_bytes);
	s.sums = calloc(2, sizeof(*s.sums));
	rc = s.e.buf && s.sums ? dsync_zero_digest_init(&s.e.zd) : -ENOMEM;
	if (!rc)
		rc = dsync_io_init(&s.e.io, &l);
	if (rc < 0) {
		util_why(why, why_len, rc, "out of memory");
		goto out;
	}
	rc = connect_source(peer, image_bytes, o, &l, why, why_len);
	if (rc < 0)
		goto out;
	snprintf(st->peer, sizeof(st->peer), "%s", peer);
	s.e.io.p = &s.e.p;
	rc = run_source(&s);
	if (rc < 0 && !why[0]) /* a send or receive that failed on the link */
		util_why(why, why_len, rc, "lost the destination %s (%s)", peer, strerror(-rc));
	if (rc < 0 && s.begun && !s.peer_done && !dsync_is_link_error(rc))
		dsync_put_error(&s.e.io, rc, why); /* the destination hears why we stop */
out:
	dsync_io_finish(&s.e.io, o, st, t0);
	dsync_zero_digest_dispose(&s.e.zd);
	free(s.e.buf);
	free(s.sums);
	return rc;
}

const char *repl_disk_sync_mode_str(enum repl_disk_sync_mode m)
{
	switch (m) {
	case REPL_DISK_SYNC_FULL:
		return "full";
	case REPL_DISK_SYNC_CHECKSUM:
		return "checksum";
	case REPL_DISK_SYNC_DIRTY:
		return "dirty";
	}
	return "?";
}

int repl_disk_sync_mode_parse(const char *s, enum repl_disk_sync_mode *out)
{
	for (int m = REPL_DISK_SYNC_FULL; m <= REPL_DISK_SYNC_DIRTY; m++)
		if (!strcmp(s, repl_disk_sync_mode_str(m))) {
			*out = m;
			return 0;
		}
	return -EINVAL;
}
