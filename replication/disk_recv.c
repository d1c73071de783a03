/*
 * Disk resync, the destination's end (repl.h, "disks: resync between two
 * hosts"; docs/stream-format.md §11).
 *
 * It listens, greets connections as the session layer's replica would
 * (strangers and VM primaries are answered and closed, and the listener goes
 * on), refuses a source whose image is of another size, and then follows the
 * source's BEGIN: in checksum mode it digests its image one batch ahead of
 * the source (holes found with SEEK_DATA are sent as zero marks without being
 * read), writes what arrives, makes each batch durable before it acks it, and
 * at the end compares its image digest with the source's. A write that fails
 * (no space, an I/O error, a file size limit) is told to the source in an
 * ERROR and ends the sync: nothing is skipped, and the image is said to be
 * partly updated.
 */
#define LOG_TAG "disk-recv"
#include "replication/disk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A connection has this long to say hello, as at a VM replica. */
#define HELLO_WAIT_MS 2000

struct dst {
	struct dsync_side e;
	uint8_t *rec;				   /* a SUMS record being built */
	struct dsync_batch_sums *sums;		   /* checksum mode: batches k and k + 1 */
	uint64_t touched[DSYNC_BATCH_RANGES / 64]; /* ranges of this batch written or zeroed */
	bool peer_failed;			   /* the source sent an ERROR */
	bool result_sent;
};

static bool bit(const uint64_t *w, uint32_t i)
{
	return (w[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *w, uint32_t i)
{
	w[i / 64] |= 1ull << (i % 64);
}

/* Range r's digest as the image holds it now; *zero: it reads as zeros. */
static int digest_range(struct dst *d, uint64_t r, uint8_t out[REPL_DISK_DIGEST_BYTES], bool *zero)
{
	uint64_t off = r * d->e.p.range_bytes, len = dsync_range_len(&d->e.p, r);
	const uint8_t *zd = dsync_zero_digest(&d->e.zd, len);
	int rc;

	if (disk_is_hole(&d->e.holes, off, len)) {
		memcpy(out, zd, REPL_DISK_DIGEST_BYTES);
		*zero = true;
		return 0;
	}
	d->e.st->read_bytes += len;
	rc = disk_read_full(d->e.fd, d->e.buf, (size_t)len, off);
	if (rc < 0)
		return util_why(d->e.why, d->e.why_len, rc,
				"reading %" PRIu64 " bytes at %" PRIu64 " of the image: %s", len,
				off, strerror(-rc));
	dsync_digest(d->e.buf, (size_t)len, out);
	*zero = !memcmp(out, zd, REPL_DISK_DIGEST_BYTES);
	return 0;
}

/* Digest batch k of our image into its slot and queue its SUMS. */
static int put_sums(struct dst *d, uint64_t k)
{
	struct dsync_batch_sums *s = &d->sums[k % 2];
	uint32_t n = dsync_batch_count(&d->e.p, k), nwords = (n + 63) / 64;
	struct dsync_sums_head h = {.batch = k, .count = n};
	uint8_t *digests = d->rec + sizeof(h) + 8 * nwords;
	size_t len;
	int rc;

	memset(s->zero, 0, sizeof(s->zero));
	len = sizeof(h) + 8 * nwords;
	for (uint32_t i = 0; i < n; i++) {
		bool zero;

		rc = digest_range(d, k * DSYNC_BATCH_RANGES + i, s->d[i], &zero);
		if (rc < 0)
			return rc;
		d->e.st->compared_bytes += dsync_range_len(&d->e.p, k * DSYNC_BATCH_RANGES + i);
		if (zero) {
			set_bit(s->zero, i);
			continue;
		}
		memcpy(digests, s->d[i], REPL_DISK_DIGEST_BYTES);
		digests += REPL_DISK_DIGEST_BYTES;
		len += REPL_DISK_DIGEST_BYTES;
	}
	memcpy(d->rec, &h, sizeof(h));
	memcpy(d->rec + sizeof(h), s->zero, 8 * nwords);
	return dsync_put(&d->e.io, DSYNC_SUMS, d->rec, len, NULL, 0);
}

/* Our image failed: the sync stops (the caller tells the source). */
static int image_failed(struct dst *d, int rc, const char *what, uint64_t off, uint64_t len)
{
	return util_why(d->e.why, d->e.why_len, rc,
			"%s %" PRIu64 " bytes at %" PRIu64 " of the image: %s; the image is "
			"partly updated",
			what, len, off, strerror(-rc));
}

static int peer_error(struct dst *d, const struct dsync_rec *r)
{
	d->peer_failed = true;
	return util_why(d->e.why, d->e.why_len, r->u.error.status,
			"the source failed: %s; the image is partly updated", r->u.error.text);
}

static int unexpected(struct dst *d, const struct dsync_rec *r, const char *where)
{
	return util_why(d->e.why, d->e.why_len, -EPROTO, "a %s record %s", dsync_type_str(r->type),
			where);
}

/* The records of batch k, up to its MARK, written to the image. */
static int take_batch(struct dst *d, uint64_t k)
{
	uint64_t first = k * DSYNC_BATCH_RANGES, n = dsync_batch_count(&d->e.p, k);
	uint64_t next = first * d->e.p.range_bytes;
	uint64_t end = (first + n) * d->e.p.range_bytes;
	struct dsync_rec r;
	int rc;

	if (end > d->e.p.image_bytes)
		end = d->e.p.image_bytes;
	memset(d->touched, 0, sizeof(d->touched));
	for (;;) {
		uint64_t off, len;

		rc = dsync_get(&d->e.io, &r, d->e.why, d->e.why_len);
		if (rc < 0)
			return rc;
		if (r.type == DSYNC_MARK) {
			if (r.u.batch != k)
				return util_why(d->e.why, d->e.why_len, -EPROTO,
						"MARK of batch %" PRIu64 " in batch %" PRIu64,
						r.u.batch, k);
			return 0;
		}
		if (r.type == DSYNC_ERROR)
			return peer_error(d, &r);
		if (r.type != DSYNC_DATA && r.type != DSYNC_ZERO)
			return unexpected(d, &r, "inside a batch");
		off = r.type == DSYNC_DATA ? r.u.data.offset : r.u.zero.offset;
		len = r.type == DSYNC_DATA ? r.u.data.len : r.u.zero.length;
		if (off < next || len > end - off || off >= end)
			return util_why(d->e.why, d->e.why_len, -EPROTO,
					"%s at %" PRIu64 "+%" PRIu64 " in batch %" PRIu64
					" (bytes %" PRIu64 " to %" PRIu64
					" left): out of order or outside the batch",
					dsync_type_str(r.type), off, len, k, next, end);
		if (r.type == DSYNC_DATA) {
			rc = disk_write_full(d->e.fd, r.u.data.data, len, off);
			if (rc < 0)
				return image_failed(d, rc, "writing", off, len);
			d->e.st->data_bytes += len;
		} else {
			rc = disk_zero_range(d->e.fd, off, len);
			if (rc < 0)
				return image_failed(d, rc, "zeroing", off, len);
			d->e.st->zero_bytes += len;
		}
		d->e.holes.valid = false; /* where data lies may have changed */
		d->e.st->written_bytes += len;
		for (uint64_t o = off; o < off + len; o += d->e.p.range_bytes) {
			set_bit(d->touched, (uint32_t)(o / d->e.p.range_bytes - first));
			d->e.st->ranges_sent++;
		}
		next = off + len;
	}
}

/* Batch k is written: make it durable, take its digests, ack it. */
static int finish_batch(struct dst *d, uint64_t k)
{
	uint32_t n = dsync_batch_count(&d->e.p, k);
	bool any = false;
	int rc;

	for (uint32_t i = 0; i < DSYNC_BATCH_RANGES / 64; i++)
		any |= d->touched[i] != 0;
	if (any && fdatasync(d->e.fd) < 0)
		return image_failed(d, -errno, "making durable (fdatasync) the batch ending at",
				    (k * DSYNC_BATCH_RANGES + n) * d->e.p.range_bytes, 0);
	for (uint32_t i = 0; (d->e.p.flags & DSYNC_F_VERIFY) && i < n; i++) {
		uint8_t digest[REPL_DISK_DIGEST_BYTES];
		const struct dsync_batch_sums *s = &d->sums[k % 2];
		bool zero;

		if (d->e.p.mode == REPL_DISK_SYNC_CHECKSUM && !bit(d->touched, i)) {
			/* untouched since we digested it for SUMS */
			memcpy(digest,
			       bit(s->zero, i)
				       ? dsync_zero_digest(
						 &d->e.zd,
						 dsync_range_len(&d->e.p,
								 k * DSYNC_BATCH_RANGES + i))
				       : s->d[i],
			       sizeof(digest));
		} else {
			rc = digest_range(d, k * DSYNC_BATCH_RANGES + i, digest, &zero);
			if (rc < 0)
				return rc;
			/* checksum mode compared in put_sums: this is a read-back */
			if (d->e.p.mode != REPL_DISK_SYNC_CHECKSUM)
				d->e.st->compared_bytes +=
					dsync_range_len(&d->e.p, k * DSYNC_BATCH_RANGES + i);
		}
		dsync_image_digest_add(&d->e.img, digest);
	}
	d->e.st->batches_done = k + 1;
	if (d->e.o->progress)
		d->e.o->progress(d->e.o->progress_arg, d->e.st);
	return dsync_put(&d->e.io, DSYNC_ACK, &k, sizeof(k), NULL, 0);
}

static int run_dest(struct dst *d)
{
	struct dsync_result res = {0};
	struct dsync_rec r;
	bool sums = false;
	int rc;

	rc = dsync_get(&d->e.io, &r, d->e.why, d->e.why_len);
	if (rc < 0)
		return rc;
	if (r.type == DSYNC_ERROR)
		return peer_error(d, &r);
	if (r.type != DSYNC_BEGIN)
		return unexpected(d, &r, "before BEGIN");
	if (r.u.begin.image_bytes != d->e.st->image_bytes)
		return util_why(d->e.why, d->e.why_len, -EPROTO,
				"BEGIN for an image of %" PRIu64 " bytes; ours has %" PRIu64,
				r.u.begin.image_bytes, d->e.st->image_bytes);
	dsync_params_from_begin(&r.u.begin, &d->e.p);
	d->e.io.p = &d->e.p;
	d->e.st->mode = d->e.p.mode;
	d->e.st->range_bytes = d->e.p.range_bytes;
	d->e.st->ranges = d->e.p.nranges;
	d->e.st->batches = d->e.p.nbatches;
	sums = d->e.p.mode == REPL_DISK_SYNC_CHECKSUM;
	if (d->e.p.flags & DSYNC_F_VERIFY)
		dsync_image_digest_init(&d->e.img, &d->e.p);
	d->e.buf = malloc(d->e.p.range_bytes);
	if (!d->e.buf)
		return util_why(d->e.why, d->e.why_len, -ENOMEM, "out of memory");
	if (sums)
		rc = put_sums(d, 0);
	for (uint64_t k = 0; !rc && k < d->e.p.nbatches; k++) {
		if (sums && k + 1 < d->e.p.nbatches)
			rc = put_sums(d, k + 1);
		if (!rc)
			rc = take_batch(d, k);
		if (!rc)
			rc = finish_batch(d, k);
	}
	if (!rc)
		rc = dsync_get(&d->e.io, &r, d->e.why, d->e.why_len);
	if (rc < 0)
		return rc;
	if (r.type == DSYNC_ERROR)
		return peer_error(d, &r);
	if (r.type != DSYNC_END)
		return unexpected(d, &r, "after the last batch");
	if (r.u.end.data_bytes != d->e.st->data_bytes || r.u.end.zero_bytes != d->e.st->zero_bytes)
		return util_why(d->e.why, d->e.why_len, -EPROTO,
				"END counts %" PRIu64 " data and %" PRIu64 " zero bytes; %" PRIu64
				" and %" PRIu64 " arrived",
				r.u.end.data_bytes, r.u.end.zero_bytes, d->e.st->data_bytes,
				d->e.st->zero_bytes);
	res.written = d->e.st->written_bytes;
	if (d->e.p.flags & DSYNC_F_VERIFY) {
		dsync_image_digest_final(&d->e.img, res.digest);
		memcpy(d->e.st->digest, res.digest, sizeof(res.digest));
		if (memcmp(res.digest, r.u.end.digest, sizeof(res.digest)))
			res.status = -EILSEQ;
		d->e.st->verified = !res.status;
	}
	rc = dsync_put(&d->e.io, DSYNC_RESULT, &res, sizeof(res), NULL, 0);
	if (!rc)
		rc = dsync_flush(&d->e.io);
	d->result_sent = true;
	if (rc < 0)
		return util_why(d->e.why, d->e.why_len, rc,
				"the source left before our RESULT (%s)", strerror(-rc));
	if (res.status)
		return util_why(d->e.why, d->e.why_len, res.status,
				"the images differ after the sync (digests differ)");
	return 0;
}

/*
 * Greet one connection: a disk source of our image's size, with the right
 * key, gets through (0). Others are answered when they said hello, and
 * closed: -EAGAIN to keep listening, or the refusal's status when the
 * operator must act (an image of another size).
 */
static int greet(const struct repl_disk_sync_opts *o, uint64_t image_bytes, struct repl_link *l,
		 char *peer, size_t peer_len, char *why, size_t why_len)
{
	struct repl_handshake hs;
	struct repl_hello h;
	char pwhy[192], text[REPL_WELCOME_TEXT];
	uint32_t timeout = o->conn.timeout_ms ? o->conn.timeout_ms : REPL_DISK_SYNC_TIMEOUT_MS;
	int rc, status;

	if (!l->t->peer_name || l->t->peer_name(l->c, peer, peer_len) < 0)
		snprintf(peer, peer_len, "a peer (address unknown)");
	repl_handshake_init(&hs, o->key, o->encrypt);
	hs.disk = true;
	if (l->t->set_timeout)
		l->t->set_timeout(l->c, HELLO_WAIT_MS);
	rc = repl_hello_recv(l, &hs, &h, pwhy, sizeof(pwhy));
	if (rc < 0) {
		LOG_WARN("%s is not a disk source: %s; closed", peer, pwhy);
		if (rc == -EPROTO || rc == -EPROTONOSUPPORT) {
			snprintf(text, sizeof(text), "refused by a disk destination: %.80s", pwhy);
			repl_welcome_send(l, &hs, rc, 0, text);
		}
		rc = -EAGAIN;
		goto out;
	}
	status = repl_handshake_check(&hs, text, sizeof(text));
	if (!status && h.mem_bytes != image_bytes) {
		status = -ERANGE;
		snprintf(text, sizeof(text),
			 "the image here is %" PRIu64 " bytes, the source's %" PRIu64
			 ": give both the same size",
			 image_bytes, h.mem_bytes);
	}
	if (status) {
		LOG_WARN("disk source %s refused: %s", peer, text);
		repl_welcome_send(l, &hs, status, 0, text);
		/* a wrong size is the operator's to fix; a wrong key may be anyone's */
		rc = status == -ERANGE ? util_why(why, why_len, status, "%s", text) : -EAGAIN;
		goto out;
	}
	rc = repl_welcome_send(l, &hs, 0, timeout, "welcome");
	if (!rc)
		rc = repl_proof_recv(l, &hs, pwhy, sizeof(pwhy));
	else
		snprintf(pwhy, sizeof(pwhy), "%s", strerror(-rc));
	if (rc < 0) {
		LOG_WARN("disk source %s failed the handshake: %s; closed", peer, pwhy);
		rc = -EAGAIN;
		goto out;
	}
	if (l->t->set_timeout)
		l->t->set_timeout(l->c, timeout);
	LOG_INFO("disk source %s welcomed (%" PRIu64 " bytes), link %s", peer, image_bytes,
		 repl_link_is_encrypted(l) ? "authenticated and encrypted"
		 : repl_link_is_sealed(l)  ? "authenticated"
					   : "unauthenticated (no key)");
out:
	repl_handshake_dispose(&hs);
	return rc;
}

/* Accept until a source gets through greet(), within wait_ms (< 0: for ever). */
static int accept_source(const struct repl_transport_ops *t, struct repl_listener *ln, int wait_ms,
			 const struct repl_disk_sync_opts *o, uint64_t image_bytes,
			 struct repl_link *l, char *peer, size_t peer_len, char *why,
			 size_t why_len)
{
	uint64_t deadline = wait_ms < 0 ? 0 : util_now_ns() + (uint64_t)wait_ms * 1000000ull;
	int rc;

	for (;;) {
		int left = -1;

		if (wait_ms >= 0) {
			uint64_t now = util_now_ns();

			if (now >= deadline)
				return util_why(why, why_len, -ETIMEDOUT,
						"no disk source came within %d ms", wait_ms);
			left = (int)((deadline - now) / 1000000ull) + 1;
		}
		rc = t->accept(ln, left, &l->c);
		if (rc == -ETIMEDOUT)
			continue; /* the deadline above says it */
		if (rc < 0)
			return util_why(why, why_len, rc, "accept failed (%s)", strerror(-rc));
		rc = greet(o, image_bytes, l, peer, peer_len, why, why_len);
		if (!rc)
			return 0;
		repl_link_dispose(l);
		l->t->close(l->c);
		l->c = NULL;
		if (rc != -EAGAIN)
			return rc;
	}
}

int repl_disk_sync_receive(const struct repl_transport_ops *t, struct repl_listener *ln,
			   int wait_ms, int fd, uint64_t image_bytes,
			   const struct repl_disk_sync_opts *o, struct repl_disk_sync_stats *st,
			   char *why, size_t why_len)
{
	struct repl_link l = {.t = t ? t : &repl_tcp_ops};
	struct dst d = {
		.e = {.io.l = &l, .o = o, .st = st, .fd = fd, .why = why, .why_len = why_len}};
	uint64_t t0 = 0;
	int rc;

	*st = (struct repl_disk_sync_stats){.image_bytes = image_bytes};
	if (why_len)
		why[0] = 0;
	disk_holes_init(&d.e.holes, fd, image_bytes);
	d.sums = calloc(2, sizeof(*d.sums));
	d.rec = malloc(DSYNC_SUMS_MAX);
	rc = d.sums && d.rec ? dsync_zero_digest_init(&d.e.zd) : -ENOMEM;
	if (!rc)
		rc = dsync_io_init(&d.e.io, &l);
	if (rc < 0) {
		util_why(why, why_len, rc, "out of memory");
		goto out;
	}
	rc = accept_source(l.t, ln, wait_ms, o, image_bytes, &l, st->peer, sizeof(st->peer), why,
			   why_len);
	if (rc < 0)
		goto out;
	t0 = util_now_ns();
	rc = run_dest(&d);
	if (rc < 0 && !why[0]) /* a send or receive that failed on the link */
		util_why(why, why_len, rc, "lost the source %s (%s); the image is partly updated",
			 st->peer, strerror(-rc));
	if (rc < 0) {
		/*
		 * Tell the source why, then read and drop what it still sends
		 * until it closes (it hears the ERROR within two batches) or goes
		 * silent, so that it never blocks on a full socket.
		 */
		if (!dsync_is_link_error(rc) && !d.peer_failed && !d.result_sent) {
			struct dsync_rec r;
			char dwhy[64];

			dsync_put_error(&d.e.io, rc, why);
			while (dsync_get(&d.e.io, &r, dwhy, sizeof(dwhy)) >= 0)
				;
		}
	}
out:
	dsync_io_finish(&d.e.io, o, st, t0);
	dsync_zero_digest_dispose(&d.e.zd);
	free(d.e.buf);
	free(d.rec);
	free(d.sums);
	return rc;
}
