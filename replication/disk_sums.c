/*
 * The replica's disk digests before an initial copy (docs/stream-format.md
 * §8.5, docs/disks.md): what lets re-protection send only what changed.
 *
 * A primary with writable disks asks for them in its HELLO (SUMS). Right after
 * the handshake, before it reads anything, the replica hashes each of its
 * writable copies range by range (holes are not read) and sends the digests
 * as SUMS frames, then an empty SUMS frame. The primary reads them all before
 * it sends anything, so neither end can wait on the other with full socket
 * buffers; meanwhile it hashes its own images on a thread of its own
 * (disk_tx_take_sums), with its observers already in place. Its initial copy
 * then skips each range both ends hashed alike. Nothing writes the replica's
 * copy between its hashing and the copy's records (it serves one primary, and
 * reads the records only after the digests are out), and a guest write that
 * completes after the primary hashed a range is queued after it -- so the
 * replica ends with the image either way, as for the full copy (disk_tx.c).
 *
 * Also here: the whole path between two local images for `castor bench
 * resync` (repl_disk_copy_loopback).
 */
#define LOG_TAG "disk"
#include "replication/disk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "replication/seal.h"
#include "util/util.h"

/* ---- the replica's end ------------------------------------------------------------------- */

static int send_frame(struct repl_link *l, const struct disk_sums_head *h, const uint8_t *d)
{
	struct epoch_hdr eh = {.magic = DISK_SUMS_MAGIC,
			       .len = h ? sizeof(*h) + (uint64_t)h->count * REPL_DISK_DIGEST_BYTES
					: 0};
	struct iovec iov[3] = {{&eh, sizeof(eh)},
			       {(void *)h, h ? sizeof(*h) : 0},
			       {(void *)d, h ? (size_t)h->count * REPL_DISK_DIGEST_BYTES : 0}};

	return repl_link_send_iov(l, iov, h ? 3 : 1);
}

int disk_hasher_init(struct disk_hasher *h, int fd, uint64_t image_bytes)
{
	int rc;

	*h = (struct disk_hasher){.fd = fd, .image_bytes = image_bytes};
	h->range_bytes = disk_sums_range_bytes(image_bytes);
	if (!h->range_bytes || !image_bytes || image_bytes % DISK_SECTOR)
		return -EFBIG; /* too large to hash, or not whole sectors */
	h->nranges = image_bytes / h->range_bytes + !!(image_bytes % h->range_bytes);
	rc = dsync_zero_digest_init(&h->zd);
	if (rc < 0)
		return rc;
	h->buf = malloc(DISK_SUMS_RANGE_MAX);
	if (!h->buf) {
		dsync_zero_digest_dispose(&h->zd);
		return -ENOMEM;
	}
	disk_holes_init(&h->holes, fd, image_bytes);
	return 0;
}

int disk_hasher_range(struct disk_hasher *h, uint64_t r, uint8_t out[REPL_DISK_DIGEST_BYTES])
{
	uint64_t off = r * h->range_bytes;
	uint64_t n = h->image_bytes - off < h->range_bytes ? h->image_bytes - off : h->range_bytes;
	int rc;

	if (disk_is_hole(&h->holes, off, n)) {
		memcpy(out, dsync_zero_digest(&h->zd, n), REPL_DISK_DIGEST_BYTES);
		return 0;
	}
	rc = disk_read_full(h->fd, h->buf, (size_t)n, off);
	if (rc < 0)
		return rc;
	dsync_digest(h->buf, (size_t)n, out);
	return 0;
}

void disk_hasher_dispose(struct disk_hasher *h)
{
	if (h->buf)
		dsync_zero_digest_dispose(&h->zd);
	free(h->buf);
	h->buf = NULL;
}

int disk_sums_hash(int fd, uint64_t image_bytes, const bool *stop, struct disk_sums *out)
{
	struct disk_hasher h;
	int rc;

	*out = (struct disk_sums){0};
	rc = disk_hasher_init(&h, fd, image_bytes);
	if (rc < 0)
		return rc;
	out->d = malloc((size_t)h.nranges * REPL_DISK_DIGEST_BYTES);
	if (!out->d) {
		rc = -ENOMEM;
		goto out;
	}
	out->range_bytes = h.range_bytes;
	out->image_bytes = image_bytes;
	out->nranges = h.nranges;
	for (; out->got < h.nranges; out->got++) {
		if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED)) {
			rc = -ECANCELED;
			break;
		}
		rc = disk_hasher_range(&h, out->got, out->d + out->got * REPL_DISK_DIGEST_BYTES);
		if (rc < 0)
			break;
	}
out:
	disk_hasher_dispose(&h);
	if (rc < 0)
		disk_sums_dispose(out);
	return rc;
}

/* One disk's digests, range by range, DISK_SUMS_FRAME_RANGES to a frame. */
static int send_disk(struct repl_link *l, const struct disk_sums_src *src, uint8_t *digests,
		     bool (*stop)(void *), void *stop_arg, char *why, size_t why_len)
{
	struct disk_sums_head h = {.disk = src->disk, .image_bytes = src->image_bytes};
	struct disk_hasher hs;
	uint64_t r = 0;
	int rc;

	rc = disk_hasher_init(&hs, src->fd, src->image_bytes);
	if (rc == -EFBIG)
		return 0; /* no frame names it: the primary copies it all */
	if (rc < 0)
		return util_why(why, why_len, rc, "%s", strerror(-rc));
	h.range_bytes = hs.range_bytes;
	while (r < hs.nranges) {
		h.first = r;
		h.count = hs.nranges - r < DISK_SUMS_FRAME_RANGES ? (uint32_t)(hs.nranges - r)
								  : DISK_SUMS_FRAME_RANGES;
		for (uint32_t i = 0; i < h.count; i++) {
			rc = disk_hasher_range(&hs, r + i,
					       digests + (size_t)i * REPL_DISK_DIGEST_BYTES);
			if (rc < 0) {
				util_why(why, why_len, rc,
					 "disk %u: reading the copy at %" PRIu64 ": %s", src->disk,
					 (r + i) * hs.range_bytes, strerror(-rc));
				goto out;
			}
		}
		if (stop && stop(stop_arg)) {
			rc = util_why(why, why_len, -ECANCELED, "stopped");
			goto out;
		}
		rc = send_frame(l, &h, digests);
		if (rc < 0) {
			util_why(why, why_len, rc, "sending disk %u's digests: %s", src->disk,
				 strerror(-rc));
			goto out;
		}
		r += h.count;
	}
out:
	disk_hasher_dispose(&hs);
	return rc;
}

int disk_sums_send(struct repl_link *l, const struct disk_sums_src *src, unsigned n,
		   bool (*stop)(void *), void *stop_arg, char *why, size_t why_len)
{
	uint8_t *digests = malloc((size_t)DISK_SUMS_FRAME_RANGES * REPL_DISK_DIGEST_BYTES);
	unsigned i;
	int rc = 0;

	if (!digests)
		return util_why(why, why_len, -ENOMEM, "%s", strerror(ENOMEM));
	for (i = 0; i < n && !rc; i++)
		rc = send_disk(l, &src[i], digests, stop, stop_arg, why, why_len);
	if (!rc) {
		rc = send_frame(l, NULL, NULL);
		if (rc < 0)
			util_why(why, why_len, rc, "sending the end of the digests: %s",
				 strerror(-rc));
	}
	free(digests);
	return rc;
}

/* ---- the primary's end ------------------------------------------------------------------- */

void disk_sums_dispose(struct disk_sums *s)
{
	free(s->d);
	*s = (struct disk_sums){0};
}

/* Keep one frame's digests if its disk is one we copy (want[disk]) and it follows on. */
static int take(struct disk_sums *all, const bool *want, const struct disk_sums_frame *f, char *why,
		size_t why_len)
{
	struct disk_sums *s = &all[f->disk];

	if (!want[f->disk])
		return 0; /* not replicated here: checked, not kept */
	if (!s->d) {
		if (f->first)
			return util_why(why, why_len, -EPROTO,
					"disk %u's digests start at range %" PRIu64 ", not 0",
					f->disk, f->first);
		s->d = malloc((size_t)f->nranges * REPL_DISK_DIGEST_BYTES);
		if (!s->d)
			return util_why(why, why_len, -ENOMEM, "%s", strerror(ENOMEM));
		s->range_bytes = f->range_bytes;
		s->image_bytes = f->image_bytes;
		s->nranges = f->nranges;
	} else if (f->range_bytes != s->range_bytes || f->image_bytes != s->image_bytes ||
		   f->first != s->got) {
		return util_why(why, why_len, -EPROTO,
				"disk %u's digests out of order (range %" PRIu64 " after %" PRIu64
				" of %" PRIu64 ")",
				f->disk, f->first, s->got, s->nranges);
	}
	memcpy(s->d + s->got * REPL_DISK_DIGEST_BYTES, f->digests,
	       (size_t)f->count * REPL_DISK_DIGEST_BYTES);
	s->got += f->count;
	return 0;
}

int disk_sums_recv(struct repl_link *l, const bool want[REPL_DISK_MAX],
		   struct disk_sums out[REPL_DISK_MAX], char *why, size_t why_len)
{
	const size_t max = DISK_SUMS_HEAD_BYTES + DISK_SUMS_FRAME_RANGES * REPL_DISK_DIGEST_BYTES;
	uint8_t *body = malloc(max);
	uint64_t total = 0; /* ranges heard, kept or not: a replica that never ends is refused */
	unsigned i;
	int rc = 0;

	for (i = 0; i < REPL_DISK_MAX; i++)
		out[i] = (struct disk_sums){0};
	if (!body)
		return util_why(why, why_len, -ENOMEM, "%s", strerror(ENOMEM));
	for (;;) {
		struct disk_sums_frame f;
		struct epoch_hdr h;

		rc = repl_link_recv(l, &h, sizeof(h));
		if (rc < 0) {
			util_why(why, why_len, rc, "no disk digests from the replica (%s)",
				 strerror(-rc));
			goto out;
		}
		if (h.magic != DISK_SUMS_MAGIC) {
			rc = util_why(why, why_len, -EBADMSG,
				      "the replica sent 0x%016" PRIx64 " where its disk digests "
				      "belong (an older build?)",
				      h.magic);
			goto out;
		}
		if (!h.len)
			break; /* the end */
		if (h.len > max) {
			rc = util_why(why, why_len, -EPROTO, "a SUMS frame of %" PRIu64 " bytes",
				      h.len);
			goto out;
		}
		rc = repl_link_recv(l, body, (size_t)h.len);
		if (rc < 0) {
			util_why(why, why_len, rc, "the replica's disk digests cut short (%s)",
				 strerror(-rc));
			goto out;
		}
		rc = disk_sums_frame_parse(body, (size_t)h.len, &f, why, why_len);
		if (!rc && (total += f.count) > (uint64_t)REPL_DISK_MAX * DISK_SUMS_RANGES_MAX)
			rc = util_why(why, why_len, -EPROTO,
				      "more disk digests than %u disks can have", REPL_DISK_MAX);
		if (!rc && out[f.disk].d && out[f.disk].got == out[f.disk].nranges)
			rc = util_why(why, why_len, -EPROTO, "disk %u's digests came twice",
				      f.disk);
		if (!rc)
			rc = take(out, want, &f, why, why_len);
		if (rc < 0)
			goto out;
	}
	for (i = 0; i < REPL_DISK_MAX; i++)
		if (out[i].d && out[i].got != out[i].nranges) {
			rc = util_why(why, why_len, -EPROTO,
				      "disk %u's digests end at range %" PRIu64 " of %" PRIu64, i,
				      out[i].got, out[i].nranges);
			goto out;
		}
out:
	free(body);
	if (rc < 0)
		for (i = 0; i < REPL_DISK_MAX; i++)
			disk_sums_dispose(&out[i]);
	return rc;
}

const uint8_t *disk_sums_get(const struct disk_sums *s, uint64_t range)
{
	return s->d && range < s->nranges ? s->d + range * REPL_DISK_DIGEST_BYTES : NULL;
}

/* ---- the whole path between two local images (castor bench resync) ---------------------- */

struct loop_dest {
	struct repl_link l;
	int fd;
	uint64_t bytes;
	bool full;
	int rc;
	char why[192];
};

/* The replica's part: digests, then epoch 0's records applied until its seal. */
static void *loop_dest_main(void *arg)
{
	struct loop_dest *d = arg;
	struct disk_sums_src src = {.disk = 0, .fd = d->fd, .image_bytes = d->bytes};
	uint8_t *buf = NULL;
	size_t cap = 0, len;
	bool sealed = false;

	if (!d->full)
		d->rc = disk_sums_send(&d->l, &src, 1, NULL, NULL, d->why, sizeof(d->why));
	while (!d->rc && !sealed) {
		enum repl_frame kind;
		struct repl_disk_op op;
		size_t off = 0;
		int n;

		d->rc = repl_frame_recv_into(&d->l, REPL_DISK_FRAME_MAX, &buf, &cap, &len, &kind);
		if (!d->rc && kind != REPL_FRAME_DISK)
			d->rc = util_why(d->why, sizeof(d->why), -EPROTO,
					 "a frame that is no DISK");
		while (!d->rc && (n = repl_disk_frame_next(buf, len, &off, &op, d->why,
							   sizeof(d->why))) != 0) {
			if (n < 0)
				d->rc = n;
			else if (op.kind == REPL_DISK_OP_WRITE)
				d->rc = disk_write_full(d->fd, op.data, op.len, op.offset);
			else if (op.kind == REPL_DISK_OP_ZERO)
				d->rc = disk_zero_range(d->fd, op.offset, op.len);
			sealed |= !d->rc && op.kind == REPL_DISK_OP_SEAL;
		}
	}
	if (!d->rc && fdatasync(d->fd) < 0)
		d->rc = -errno;
	free(buf);
	if (d->rc < 0) { /* the source hears the end rather than wait on a full socket */
		d->l.t->close(d->l.c);
		d->l.c = NULL;
	}
	return NULL;
}

int repl_disk_copy_loopback(int src, int dst, uint64_t image_bytes, bool full,
			    struct repl_disk_copy_stats *st, char *why, size_t why_len)
{
	static const uint32_t disks[1] = {0};
	const struct repl_transport_ops *t = &repl_tcp_ops;
	struct repl_conn_opts co = {.timeout_ms = 120000};
	struct loop_dest d = {.fd = dst, .bytes = image_bytes, .full = full};
	struct repl_link a = {.t = t};
	struct repl_listener *ln = NULL;
	struct disk_tx *tx = NULL;
	struct disk_tx_stats ds;
	pthread_t th;
	char addr[64];
	int rc;

	why[0] = 0;
	d.l.t = t;
	rc = t->listen("127.0.0.1:0", &co, &ln);
	if (!rc) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", t->local_port(ln));
		rc = t->connect(addr, &co, &a.c);
	}
	if (!rc)
		rc = t->accept(ln, 5000, &d.l.c);
	if (!rc)
		rc = disk_tx_new(disks, 1, 0, NULL, NULL, &tx);
	if (rc < 0) {
		util_why(why, why_len, rc, "loopback: %s", strerror(-rc));
		goto out;
	}
	rc = -pthread_create(&th, NULL, loop_dest_main, &d);
	if (rc < 0) {
		util_why(why, why_len, rc, "a thread: %s", strerror(-rc));
		goto out;
	}
	rc = full ? 0 : disk_tx_take_sums(tx, &a, &src, &image_bytes, why, why_len);
	if (!rc) {
		rc = disk_tx_copy(tx, 0, src, image_bytes, &a, NULL, NULL);
		if (rc < 0)
			util_why(why, why_len, rc, "the copy: %s", strerror(-rc));
	}
	if (!rc)
		rc = disk_tx_seal(tx, 0);
	if (!rc)
		rc = disk_tx_send(tx, &a, 0, true);
	if (rc < 0 && !why[0])
		util_why(why, why_len, rc, "sending: %s", strerror(-rc));
	if (rc < 0) { /* the destination hears the end */
		t->close(a.c);
		a.c = NULL;
	}
	pthread_join(th, NULL);
	if (!rc && d.rc < 0)
		rc = util_why(why, why_len, d.rc, "the destination: %s", d.why);
	disk_tx_stats(tx, &ds);
	*st = (struct repl_disk_copy_stats){
		.wire_bytes = a.tx_bytes + a.rx_bytes,
		.data_bytes = ds.copy_data_bytes,
		.same_bytes = ds.copy_same_bytes,
		.range_bytes = disk_sums_range_bytes(image_bytes),
	};
out:
	disk_tx_free(tx);
	repl_link_dispose(&a);
	repl_link_dispose(&d.l);
	if (a.c)
		t->close(a.c);
	if (d.l.c)
		t->close(d.l.c);
	if (ln)
		t->close_listener(ln);
	return rc;
}
