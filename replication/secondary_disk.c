/*
 * The twin's writable disks (docs/disks.md, docs/stream-format.md §8.4,
 * §8.5): the digests a re-protecting primary asks for, epoch 0's records
 * written at once, every later epoch's kept aside and written when the epoch
 * commits -- before its RAM is applied and acked -- or dropped with it; in
 * verify mode each copy's digest compared with the primary's. Called from the receiving thread only
 * (secondary.c).
 */
#define LOG_TAG "secondary"
#include "replication/secondary_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

static int take_record(struct repl_secondary *s, const struct repl_disk_op *op, uint64_t epoch,
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
int twin_disk_frame(struct repl_secondary *s, const uint8_t *buf, size_t len, uint64_t epoch)
{
	struct repl_disk_op op;
	char why[256];
	size_t off = 0;
	int rc;

	while ((rc = repl_disk_frame_next(buf, len, &off, &op, why, sizeof(why))) > 0) {
		rc = take_record(s, &op, epoch, why, sizeof(why));
		if (rc < 0)
			break;
	}
	if (rc < 0)
		secondary_note_error(s, "disk writes refused: %s", why);
	return rc;
}

/*
 * Epoch `epoch` arrived whole: every replicated disk's seal must match what
 * arrived, and the writes land in the images (epoch 0's already did: it is
 * made durable). Before the RAM, so an epoch is acked only with its disks.
 * Returns the number of disks committed, or -errno (the twin is then unusable).
 */
int twin_disks_commit(struct repl_secondary *s, uint64_t epoch)
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
			secondary_note_error(s, "disk writes refused: %s", what);
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
			secondary_note_error(s, "disk writes not applied: %s", what);
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

static int disk_digest_check(struct repl_secondary *s, const struct repl_disk_digest_rec *r,
			     uint64_t epoch)
{
	struct twin_disk *d = r->disk < REPL_DISK_MAX ? &s->disks[r->disk] : NULL;
	char what[160];
	uint32_t mine;
	int rc;

	if (r->epoch != epoch || !d || d->fd < 0 || !d->replicated || r->image_bytes != d->bytes) {
		snprintf(what, sizeof(what),
			 "epoch %" PRIu64 ": a digest of disk %u (%" PRIu64 " bytes, epoch %" PRIu64
			 ") that names no copy this replica writes",
			 epoch, r->disk, r->image_bytes, r->epoch);
		secondary_note_error(s, "verify: %s", what);
		return -EBADMSG;
	}
	rc = disk_image_crc32c(d->fd, d->bytes, &mine);
	if (rc < 0) {
		snprintf(what, sizeof(what), "disk %u: %s", r->disk, strerror(-rc));
		secondary_note_error(s, "verify: cannot read the copy of %s", what);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	if (mine == r->crc32c) {
		s->st.disk_verify_ok++;
	} else {
		s->st.verify_bad++;
		s->twin_broken = true; /* never run a twin whose disk is known to differ */
		s->st.twin_unusable = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (mine != r->crc32c) {
		snprintf(what, sizeof(what),
			 "epoch %" PRIu64 ": disk %u's digest %08x, the primary's %08x", epoch,
			 r->disk, mine, r->crc32c);
		secondary_note_error(s, "verify: %s", what);
		return -EILSEQ;
	}
	return 0;
}

int twin_disks_verify(struct repl_secondary *s, const uint8_t *stream, size_t len, uint64_t epoch)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	int rc;

	hv_stream_iter_init(&it, stream, len);
	while (hv_stream_next(&it, &r) > 0) {
		struct repl_disk_digest_rec d;

		if (!r.optional || r.type != (REPL_REC_DISK_DIGEST & ~HV_REC_F_OPTIONAL))
			continue;
		if (r.len != sizeof(d)) {
			secondary_note_error(s, "verify: %s",
					     "a disk digest record of the wrong size");
			return -EBADMSG;
		}
		memcpy(&d, r.body, sizeof(d));
		rc = disk_digest_check(s, &d, epoch);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int twin_disks_copy(struct repl_secondary *s, const int *fds, unsigned n, uint64_t *bytes_out,
		    char *why, size_t why_len)
{
	unsigned i;
	int rc;

	*bytes_out = 0;
	for (i = 0; i < n && i < REPL_DISK_MAX; i++) {
		struct twin_disk *d = &s->disks[i];
		struct stat sb;

		if (fds[i] < 0)
			continue;
		if (d->fd < 0 || !d->replicated)
			return util_why(why, why_len, -EINVAL,
					"disk %u is not one the primary replicates here", i);
		if (fstat(d->fd, &sb) < 0)
			return util_why(why, why_len, -errno, "disk %u: %s", i, strerror(errno));
		rc = disk_copy_image(d->fd, fds[i], (uint64_t)sb.st_size);
		if (!rc && ftruncate(fds[i], sb.st_size) < 0) /* the size exactly, as the image */
			rc = -errno;
		if (!rc && fdatasync(fds[i]) < 0)
			rc = -errno;
		if (rc < 0)
			return util_why(why, why_len, rc, "copying disk %u: %s", i, strerror(-rc));
		*bytes_out += (uint64_t)sb.st_size;
	}
	return 0;
}

/* The stream stopped: what arrived of an epoch that did not complete is forgotten. */
void twin_disks_discard(struct repl_secondary *s, uint64_t epoch)
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
bool twin_disks_send_sums(struct repl_secondary *s, struct repl_link *l)
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
			LOG_WARN("vm %s: %s; waiting for a primary again", secondary_name(s),
				 s->st.last_error);
		}
		repl_state_change(secondary_name(s), &s->st.state, REPL_S_IDLE, "primary left");
		pthread_mutex_unlock(&s->lock);
		return false;
	}
	if (n)
		LOG_INFO("vm %s: digests of %u disk%s sent in %.1f s", secondary_name(s), n,
			 n == 1 ? "" : "s", (double)(util_now_ns() - t0) / 1e9);
	return true;
}

int twin_disks_open(struct repl_secondary *s, char *why, size_t why_len)
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
		snprintf(name, sizeof(name), "%s disk %u", secondary_name(s), i);
		rc = repl_disk_epoch_new(d->fd, d->bytes, 0, name, &d->buf);
		if (rc < 0)
			return util_why(why, why_len, rc, "disk %s: %s", path, strerror(-rc));
	}
	return 0;
}

void twin_disks_close(struct repl_secondary *s)
{
	for (unsigned i = 0; i < REPL_DISK_MAX; i++) {
		repl_disk_epoch_free(s->disks[i].buf);
		s->disks[i].buf = NULL;
		if (s->disks[i].fd >= 0)
			close(s->disks[i].fd);
		s->disks[i].fd = -1;
	}
}
