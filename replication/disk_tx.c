/*
 * Disk writes with epoch barriers, the primary's side (docs/stream-format.md
 * §10, docs/disks.md).
 *
 * Each writable disk of a protected VM has an observer on its virtio-blk
 * device (hv_blk_set_observer): every write, zeroing and flush the guest makes
 * is queued as a §10 record of the open epoch, on the I/O thread, after the
 * local image took it and before the guest sees it complete. The pause parks
 * the I/O thread between requests, so disk_tx_seal() in the pause closes the
 * open epoch exactly: what was queued before belongs to it, what comes after
 * to the next. The replication thread sends queued records while the epoch
 * runs (disk_tx_send) as DISK frames, and before epoch e's own frame it sends
 * what is left of e and e's seals, so the replica holds e's writes whole when
 * e's stream arrives.
 *
 * The queue is bounded: past half its cap the replication thread is asked to
 * end the epoch early (as a full output queue does); past the cap the
 * session fails (the replica would have to hold more than it may), never a
 * write dropped silently. The observer never blocks: the I/O thread must stay
 * free to park for a pause, or the pause would wait on the sender that waits
 * on the pause.
 *
 * The initial copy of a disk (disk_tx_copy) is part of epoch 0: every range
 * of the image, zero ranges and holes as DISK_ZERO, read while the guest
 * writes. A write the guest completes before a chunk is read is in what was
 * read; one queued after the chunk's record is applied after it. A write
 * that lands while the chunk is being read, and is queued before the chunk's
 * record, would be undone at the replica by the chunk's older bytes: the
 * observer marks the chunks it touches during the copy, and a chunk marked
 * between the start of its read and the (locked) queueing of its record is
 * read again (copy_chunk). So the last record for each byte the replica
 * applies is the image's content at the seal. (Verify mode's disk digests
 * found the race: kvm_repl_diskrw, epoch 0.)
 *
 * Re-protection (§8.5, disk_sums.c): with the replica's digests and this
 * end's, taken after the observers were put in place, the copy skips each
 * range both hashed alike, without reading it. The argument holds: the
 * replica holds that range as this end hashed it, and every write that
 * completed afterwards is queued.
 */
#define LOG_TAG "disk"
#include "replication/disk_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK   (1u << 20) /* the initial copy reads and sends this much at a time */
#define COPY_RETRIES 4u		/* reads of a chunk the guest writes meanwhile, unlocked */
#define FRAME_TARGET (4u << 20) /* a DISK frame's records, about */

struct tx_rec {
	struct tx_rec *next;
	struct repl_disk_op op; /* op.data points at data[] */
	uint8_t data[];
};

struct tx_disk {
	struct disk_tx *tx;
	uint32_t idx;
	uint64_t ops, bytes; /* of the open epoch */
	/*
	 * During the initial copy: the chunks (COPY_CHUNK) a guest write or
	 * zeroing touched since the copy last looked (under tx->lock).
	 */
	struct util_bitmap copy_dirty;
};

struct tx_seal {
	uint64_t epoch;
	uint64_t ops[REPL_DISK_MAX], bytes[REPL_DISK_MAX];
	bool valid;
};

struct disk_tx {
	unsigned n;
	struct tx_disk disks[REPL_DISK_MAX];
	/* disk_tx_for_vm: the devices observed, and their images opened for the initial copy */
	struct hv_blk *blks[REPL_DISK_MAX];
	int fds[REPL_DISK_MAX];
	bool observing;
	uint64_t cap;
	disk_tx_wake_fn wake;
	void *wake_arg;

	pthread_mutex_t lock; /* guards the fields below */
	struct tx_rec *head, *tail;
	uint64_t queued_bytes, woken_at;
	uint64_t open; /* the epoch new records belong to */
	bool closed;   /* stopped, or failed: records are no longer kept */
	int error;     /* -ENOBUFS past the cap, -ENOMEM */
	/* seals of epochs closed but whose seals were not sent yet (at most two: e and e+1) */
	struct tx_seal seals[2];
	struct disk_tx_stats st;
	/* per observed disk: the ranges the replica holds as this end read them (§8.5) */
	struct tx_same {
		struct util_bitmap bits;
		uint32_t range_bytes;
		uint64_t image_bytes;
		bool valid;
	} same[REPL_DISK_MAX];
};

int disk_tx_new(const uint32_t *disks, unsigned n, uint64_t cap, disk_tx_wake_fn wake,
		void *wake_arg, struct disk_tx **out)
{
	struct disk_tx *tx;
	unsigned i;

	if (n > REPL_DISK_MAX)
		return -EINVAL;
	tx = calloc(1, sizeof(*tx));
	if (!tx)
		return -ENOMEM;
	tx->n = n;
	for (i = 0; i < n; i++) {
		if (disks[i] >= REPL_DISK_MAX) {
			free(tx);
			return -EINVAL;
		}
		tx->disks[i] = (struct tx_disk){.tx = tx, .idx = disks[i]};
	}
	for (i = 0; i < REPL_DISK_MAX; i++)
		tx->fds[i] = -1;
	tx->cap = cap ? cap : DISK_TX_CAP;
	tx->wake = wake;
	tx->wake_arg = wake_arg;
	pthread_mutex_init(&tx->lock, NULL);
	*out = tx;
	return 0;
}

static void drop_all(struct disk_tx *tx)
{
	struct tx_rec *r = tx->head, *next;

	for (; r; r = next) {
		next = r->next;
		free(r);
	}
	tx->head = tx->tail = NULL;
	tx->queued_bytes = 0;
}

void disk_tx_free(struct disk_tx *tx)
{
	if (!tx)
		return;
	drop_all(tx);
	for (unsigned i = 0; i < REPL_DISK_MAX; i++) {
		if (tx->fds[i] >= 0)
			close(tx->fds[i]);
		util_bitmap_dispose(&tx->same[i].bits);
	}
	pthread_mutex_destroy(&tx->lock);
	free(tx);
}

void *disk_tx_observer_arg(struct disk_tx *tx, unsigned i)
{
	return i < tx->n ? &tx->disks[i] : NULL;
}

unsigned disk_tx_ndisks(const struct disk_tx *tx)
{
	return tx->n;
}

void disk_tx_close(struct disk_tx *tx)
{
	pthread_mutex_lock(&tx->lock);
	tx->closed = true;
	drop_all(tx);
	pthread_mutex_unlock(&tx->lock);
}

/* Wake the sender when a queue_locked() asked for it: after the lock is dropped. */
struct tx_wake {
	bool wake, overflow;
};

static void tx_wake(struct disk_tx *tx, const struct tx_wake *w)
{
	if ((w->wake || w->overflow) && tx->wake)
		tx->wake(tx->wake_arg, w->overflow);
}

/*
 * Queue one record of the open epoch, with tx->lock held. A guest's write or
 * zeroing (guest) during the initial copy marks the chunks it touched.
 */
static void queue_locked(struct tx_disk *d, enum repl_disk_op_kind kind, uint64_t offset,
			 const void *data, uint64_t len, bool guest, struct tx_wake *w)
{
	struct disk_tx *tx = d->tx;
	size_t dlen = kind == REPL_DISK_OP_WRITE ? (size_t)len : 0;
	struct tx_rec *r;

	if (tx->closed)
		return;
	if (guest && d->copy_dirty.words && len)
		util_bitmap_set_range(&d->copy_dirty, offset / COPY_CHUNK,
				      (offset + len - 1) / COPY_CHUNK - offset / COPY_CHUNK + 1);
	if (tx->queued_bytes + dlen > tx->cap) {
		LOG_ERR("disk %u: %" PRIu64 " bytes of writes wait for the replica (the most is "
			"%" PRIu64 "): the replica falls behind, protection stops",
			d->idx, tx->queued_bytes, tx->cap);
		tx->error = -ENOBUFS;
		goto fail;
	}
	r = malloc(sizeof(*r) + dlen);
	if (!r) {
		tx->error = -ENOMEM;
		goto fail;
	}
	r->next = NULL;
	r->op = (struct repl_disk_op){
		.kind = kind, .epoch = tx->open, .disk = d->idx, .offset = offset, .len = len};
	if (dlen) {
		memcpy(r->data, data, dlen);
		r->op.data = r->data;
	}
	if (tx->tail)
		tx->tail->next = r;
	else
		tx->head = r;
	tx->tail = r;
	tx->queued_bytes += dlen;
	d->ops++;
	d->bytes += dlen;
	tx->st.queued_ops++;
	tx->st.queued_bytes += dlen;
	/* wake the sender every MiB; ask for an early epoch end past half the cap */
	if (tx->queued_bytes >= tx->woken_at + (1u << 20)) {
		tx->woken_at = tx->queued_bytes;
		w->wake = true;
	}
	w->overflow = w->overflow || tx->queued_bytes > tx->cap / 2;
	return;
fail:
	/* the guest's request succeeded locally; the session is what fails */
	tx->closed = true;
	drop_all(tx);
	w->overflow = true;
}

/* The observer's calls: one record of the open epoch. */
static int queue(struct tx_disk *d, enum repl_disk_op_kind kind, uint64_t offset, const void *data,
		 uint64_t len)
{
	struct tx_wake w = {0};

	pthread_mutex_lock(&d->tx->lock);
	queue_locked(d, kind, offset, data, len, true, &w);
	pthread_mutex_unlock(&d->tx->lock);
	tx_wake(d->tx, &w);
	return 0;
}

/*
 * Split a request into records of at most REPL_DISK_WRITE_MAX (virtio-blk's
 * requests are no larger, but the initial copy's and a test's may be).
 */
static int obs_wrote(void *arg, uint64_t offset, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		size_t n = len < REPL_DISK_WRITE_MAX ? len : REPL_DISK_WRITE_MAX;

		queue(arg, REPL_DISK_OP_WRITE, offset, p, n);
		offset += n;
		p += n;
		len -= n;
	}
	return 0;
}

static int obs_zeroed(void *arg, uint64_t offset, uint64_t len)
{
	return queue(arg, REPL_DISK_OP_ZERO, offset, NULL, len);
}

static int obs_flushed(void *arg)
{
	return queue(arg, REPL_DISK_OP_FLUSH, 0, NULL, 0);
}

const struct hv_blk_observer_ops disk_tx_observer = {
	.wrote = obs_wrote,
	.zeroed = obs_zeroed,
	.flushed = obs_flushed,
};

int disk_tx_seal(struct disk_tx *tx, uint64_t epoch)
{
	struct tx_seal *s;
	unsigned i;
	int rc = 0;

	pthread_mutex_lock(&tx->lock);
	if (tx->error) {
		rc = tx->error;
		goto out;
	}
	if (epoch != tx->open) {
		rc = -EPROTO;
		goto out;
	}
	s = !tx->seals[0].valid ? &tx->seals[0] : !tx->seals[1].valid ? &tx->seals[1] : NULL;
	if (!s) {
		rc = -EPROTO;
		goto out;
	}
	s->valid = true;
	s->epoch = epoch;
	for (i = 0; i < tx->n; i++) {
		s->ops[i] = tx->disks[i].ops;
		s->bytes[i] = tx->disks[i].bytes;
		tx->disks[i].ops = tx->disks[i].bytes = 0;
	}
	tx->open = epoch + 1;
out:
	pthread_mutex_unlock(&tx->lock);
	return rc;
}

/* Encode r into buf at *len (the caller made room); data and padding too. */
static int put(uint8_t *buf, size_t *len, const struct repl_disk_op *op)
{
	uint8_t head[REPL_DISK_OP_HEAD];
	size_t pad = repl_disk_op_pad(op);
	int h = repl_disk_op_encode(op, head);

	if (h < 0)
		return h;
	memcpy(buf + *len, head, (size_t)h);
	*len += (size_t)h;
	if (op->kind == REPL_DISK_OP_WRITE) {
		memcpy(buf + *len, op->data, op->len);
		*len += op->len;
	}
	memset(buf + *len, 0, pad);
	*len += pad;
	return 0;
}

static size_t rec_size(const struct repl_disk_op *op)
{
	return REPL_DISK_OP_HEAD + (op->kind == REPL_DISK_OP_WRITE ? op->len : 0) + 8;
}

/* Send one DISK frame holding buf[0..len). */
static int send_frame(struct disk_tx *tx, struct repl_link *l, const uint8_t *buf, size_t len)
{
	int rc = repl_disk_frame_send(l, buf, len);

	if (!rc) {
		pthread_mutex_lock(&tx->lock);
		tx->st.frames++;
		tx->st.sent_bytes += len;
		pthread_mutex_unlock(&tx->lock);
	}
	return rc;
}

int disk_tx_send(struct disk_tx *tx, struct repl_link *l, uint64_t upto, bool seal)
{
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	int rc = 0;

	if (seal) { /* an epoch shipped that was never sealed: nothing is taken off the queue */
		pthread_mutex_lock(&tx->lock);
		rc = tx->error						? tx->error
		     : tx->seals[0].valid && tx->seals[0].epoch == upto ? 0
									: -EPROTO;
		pthread_mutex_unlock(&tx->lock);
		if (rc < 0)
			return rc;
	}
	for (;;) {
		struct tx_rec *r;
		size_t need;

		pthread_mutex_lock(&tx->lock);
		if (tx->error) {
			rc = tx->error;
			pthread_mutex_unlock(&tx->lock);
			goto out;
		}
		r = tx->head;
		if (!r || r->op.epoch > upto) {
			pthread_mutex_unlock(&tx->lock);
			break;
		}
		tx->head = r->next;
		if (!tx->head)
			tx->tail = NULL;
		tx->queued_bytes -= r->op.kind == REPL_DISK_OP_WRITE ? r->op.len : 0;
		if (tx->woken_at > tx->queued_bytes)
			tx->woken_at = tx->queued_bytes;
		pthread_mutex_unlock(&tx->lock);
		need = rec_size(&r->op);
		if (len && len + need > FRAME_TARGET) {
			rc = send_frame(tx, l, buf, len);
			len = 0;
			if (rc < 0) {
				free(r);
				goto out;
			}
		}
		if (len + need > cap) {
			size_t ncap = len + need > FRAME_TARGET ? len + need : FRAME_TARGET + 64;
			uint8_t *nb = realloc(buf, ncap);

			if (!nb) {
				free(r);
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		rc = put(buf, &len, &r->op);
		free(r);
		if (rc < 0)
			goto out;
	}
	if (seal) {
		struct tx_seal s = {0};
		unsigned i;

		pthread_mutex_lock(&tx->lock);
		if (tx->seals[0].valid && tx->seals[0].epoch == upto) {
			s = tx->seals[0];
			tx->seals[0] = tx->seals[1];
			tx->seals[1].valid = false;
		}
		pthread_mutex_unlock(&tx->lock);
		if (!s.valid) {
			rc = -EPROTO; /* an epoch shipped that was never sealed */
			goto out;
		}
		if (len + tx->n * rec_size(&(struct repl_disk_op){.kind = REPL_DISK_OP_SEAL}) >
		    cap) {
			uint8_t *nb = realloc(buf, len + REPL_DISK_MAX * (REPL_DISK_OP_HEAD + 8));

			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = len + REPL_DISK_MAX * (REPL_DISK_OP_HEAD + 8);
		}
		for (i = 0; i < tx->n; i++) {
			struct repl_disk_op op = {.kind = REPL_DISK_OP_SEAL,
						  .epoch = upto,
						  .disk = tx->disks[i].idx,
						  .ops = s.ops[i],
						  .bytes = s.bytes[i]};

			rc = put(buf, &len, &op);
			if (rc < 0)
				goto out;
		}
	}
	if (len)
		rc = send_frame(tx, l, buf, len);
out:
	free(buf);
	return rc;
}

/* A run of ranges of one kind: skipped (the replica holds them), zeros, or data. */
enum piece { PIECE_NONE, PIECE_SAME, PIECE_ZERO, PIECE_DATA };

/* One piece of the copy, with tx->lock held. */
static void flush_piece(struct tx_disk *d, enum piece kind, uint64_t off, const uint8_t *p,
			uint64_t n, struct tx_wake *w)
{
	struct disk_tx *tx = d->tx;

	switch (kind) {
	case PIECE_SAME:
		tx->st.copy_same_bytes += n;
		break;
	case PIECE_ZERO:
		queue_locked(d, REPL_DISK_OP_ZERO, off, NULL, n, false, w);
		break;
	case PIECE_DATA:
		tx->st.copy_data_bytes += n;
		queue_locked(d, REPL_DISK_OP_WRITE, off, p, n, false, w);
		break;
	default:
		break;
	}
}

/*
 * Queue [off, off + n) of an image, with tx->lock held: chunk holds its bytes
 * (NULL: a hole, all zeros). With same, range by range: those the replica
 * holds are skipped, the others go as zeros or data; runs of one kind as one
 * record.
 */
static void queue_chunk(struct tx_disk *d, const struct tx_same *same, const uint8_t *chunk,
			uint64_t off, uint64_t n, struct tx_wake *w)
{
	uint64_t step = same ? same->range_bytes : n, run_at = off, at, len;
	enum piece run = PIECE_NONE, kind;

	for (at = off; at < off + n; at += len) {
		len = off + n - at < step ? off + n - at : step;
		if (same && util_bitmap_is_set(&same->bits, at / same->range_bytes))
			kind = PIECE_SAME;
		else if (!chunk || util_is_zero(chunk + (at - off), (size_t)len))
			kind = PIECE_ZERO;
		else
			kind = PIECE_DATA;
		if (kind == run)
			continue;
		flush_piece(d, run, run_at, run == PIECE_DATA ? chunk + (run_at - off) : NULL,
			    at - run_at, w);
		run = kind;
		run_at = at;
	}
	flush_piece(d, run, run_at, run == PIECE_DATA ? chunk + (run_at - off) : NULL,
		    off + n - run_at, w);
}

/* Every range of [off, off + n) held by the replica: nothing to read. */
static bool all_same(const struct tx_same *same, uint64_t off, uint64_t n)
{
	for (uint64_t r = off / same->range_bytes; r * same->range_bytes < off + n; r++)
		if (!util_bitmap_is_set(&same->bits, r))
			return false;
	return true;
}

/*
 * One chunk of the copy. A guest write racing the read could land in the
 * image while the read is under way and be queued before the chunk's record:
 * the replica would apply the write, then the chunk's older bytes over it. So
 * the chunk is read again when a write touched it meanwhile (the observer
 * marks copy_dirty under the lock, and the record is queued under the same
 * lock as the check): after COPY_RETRIES the read is made with the lock held,
 * the guest's next write completion waiting for it.
 */
static int copy_chunk(struct tx_disk *d, const struct tx_same *same, int fd,
		      struct disk_holes *holes, uint8_t *buf, uint64_t off, uint64_t n)
{
	struct disk_tx *tx = d->tx;
	uint64_t c = off / COPY_CHUNK;
	struct tx_wake w = {0};
	unsigned tries = 0;
	bool hole;
	int rc;

	for (;;) {
		bool held = ++tries > COPY_RETRIES;

		pthread_mutex_lock(&tx->lock);
		util_bitmap_clear(&d->copy_dirty, c);
		if (!held)
			pthread_mutex_unlock(&tx->lock);
		holes->valid = false; /* the guest may have written where there was a hole */
		hole = disk_is_hole(holes, off, n);
		rc = hole ? 0 : disk_read_full(fd, buf, (size_t)n, off);
		if (!held)
			pthread_mutex_lock(&tx->lock);
		if (!rc && !held && util_bitmap_is_set(&d->copy_dirty, c)) {
			tx->st.copy_rereads++;
			pthread_mutex_unlock(&tx->lock);
			continue;
		}
		if (!rc)
			queue_chunk(d, same, hole ? NULL : buf, off, n, &w);
		pthread_mutex_unlock(&tx->lock);
		tx_wake(tx, &w);
		return rc;
	}
}

int disk_tx_copy(struct disk_tx *tx, unsigned i, int fd, uint64_t image_bytes, struct repl_link *l,
		 disk_tx_copy_progress_fn progress, void *arg)
{
	const struct tx_same *same = NULL;
	struct util_bitmap dirty = {0};
	struct disk_holes holes;
	struct tx_disk *d;
	uint8_t *chunk;
	uint64_t off = 0;
	int rc = 0;

	if (i >= tx->n)
		return -EINVAL;
	d = &tx->disks[i];
	image_bytes -= image_bytes % DISK_SECTOR;
	if (tx->same[i].valid && tx->same[i].image_bytes == image_bytes)
		same = &tx->same[i];
	chunk = malloc(COPY_CHUNK);
	if (!chunk || util_bitmap_init(&dirty, image_bytes / COPY_CHUNK + 1) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&tx->lock);
	d->copy_dirty = dirty; /* the observer marks it from now on */
	pthread_mutex_unlock(&tx->lock);
	disk_holes_init(&holes, fd, image_bytes);
	while (off < image_bytes) {
		uint64_t n = image_bytes - off < COPY_CHUNK ? image_bytes - off : COPY_CHUNK;

		if (same && all_same(same, off, n)) {
			struct tx_wake w = {0};

			pthread_mutex_lock(&tx->lock);
			flush_piece(d, PIECE_SAME, off, NULL, n, &w);
			pthread_mutex_unlock(&tx->lock);
		} else {
			rc = copy_chunk(d, same, fd, &holes, chunk, off, n);
		}
		if (rc < 0)
			goto out;
		off += n;
		/* the copy's records and the guest's, in queue order, as they come */
		rc = disk_tx_send(tx, l, 0, false);
		if (rc < 0)
			goto out;
		if (progress)
			progress(arg, off, image_bytes);
	}
	rc = disk_tx_send(tx, l, 0, false);
out:
	pthread_mutex_lock(&tx->lock);
	util_bitmap_dispose(&d->copy_dirty);
	pthread_mutex_unlock(&tx->lock);
	free(chunk);
	return rc;
}

/* This end's images hashed on a thread of their own while the replica's digests arrive. */
struct hash_job {
	unsigned n;
	const int *fds;
	const uint64_t *image_bytes;
	struct disk_sums mine[REPL_DISK_MAX];
	bool stop; /* atomic: the replica's digests failed, give up */
	int rc;
	unsigned failed; /* the disk whose hashing failed */
};

static void *hash_main(void *arg)
{
	struct hash_job *j = arg;

	pthread_setname_np(pthread_self(), "castor-hash");
	for (unsigned i = 0; i < j->n && !j->rc; i++) {
		j->rc = disk_sums_hash(j->fds[i],
				       j->image_bytes[i] - j->image_bytes[i] % DISK_SECTOR,
				       &j->stop, &j->mine[i]);
		if (j->rc == -EFBIG)
			j->rc = 0; /* not hashed at either end: copied whole */
		j->failed = i;
	}
	return NULL;
}

/* Mark the ranges of observed disk i that both ends hashed alike. */
static int compare(struct disk_tx *tx, unsigned i, const struct disk_sums *mine,
		   const struct disk_sums *theirs)
{
	struct tx_same *same = &tx->same[i];
	int rc;

	util_bitmap_dispose(&same->bits);
	same->valid = false;
	if (!theirs->d || !mine->d)
		return 0;
	if (theirs->image_bytes != mine->image_bytes) {
		LOG_WARN("disk %u: the replica's copy is %" PRIu64 " bytes, this image %" PRIu64
			 ": its digests are of no use, the whole image is sent",
			 tx->disks[i].idx, theirs->image_bytes, mine->image_bytes);
		return 0;
	}
	rc = util_bitmap_init(&same->bits, mine->nranges);
	if (rc < 0)
		return rc;
	for (uint64_t r = 0; r < mine->nranges; r++)
		if (!memcmp(disk_sums_get(mine, r), disk_sums_get(theirs, r),
			    REPL_DISK_DIGEST_BYTES))
			util_bitmap_set(&same->bits, r);
	same->range_bytes = mine->range_bytes;
	same->image_bytes = mine->image_bytes;
	same->valid = true;
	return 0;
}

int disk_tx_take_sums(struct disk_tx *tx, struct repl_link *l, const int *fds,
		      const uint64_t *image_bytes, char *why, size_t why_len)
{
	struct hash_job job = {.n = tx->n, .fds = fds, .image_bytes = image_bytes};
	struct disk_sums got[REPL_DISK_MAX];
	bool want[REPL_DISK_MAX] = {0};
	pthread_t th;
	unsigned i;
	int rc;

	for (i = 0; i < tx->n; i++)
		want[tx->disks[i].idx] = true;
	rc = pthread_create(&th, NULL, hash_main, &job);
	if (rc)
		return util_why(why, why_len, -rc, "a hashing thread: %s", strerror(rc));
	rc = disk_sums_recv(l, want, got, why, why_len);
	if (rc < 0)
		__atomic_store_n(&job.stop, true, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	if (!rc && job.rc < 0)
		rc = util_why(why, why_len, job.rc, "hashing disk %u here: %s",
			      tx->disks[job.failed].idx, strerror(-job.rc));
	for (i = 0; i < tx->n && !rc; i++) {
		rc = compare(tx, i, &job.mine[i], &got[tx->disks[i].idx]);
		if (rc < 0)
			util_why(why, why_len, rc, "%s", strerror(-rc));
	}
	for (i = 0; i < REPL_DISK_MAX; i++) {
		disk_sums_dispose(&job.mine[i]);
		disk_sums_dispose(&got[i]); /* zeroed by disk_sums_recv when it failed */
	}
	return rc;
}

void disk_tx_stats(struct disk_tx *tx, struct disk_tx_stats *out)
{
	pthread_mutex_lock(&tx->lock);
	*out = tx->st;
	out->pending_bytes = tx->queued_bytes;
	out->error = tx->error;
	pthread_mutex_unlock(&tx->lock);
}

int disk_tx_for_vm(struct hv_vm *vm, disk_tx_wake_fn wake, void *wake_arg, struct disk_tx **out,
		   char *why, size_t why_len)
{
	struct hv_blk *blks[REPL_DISK_MAX];
	uint32_t idx[REPL_DISK_MAX];
	struct hv_blk *b;
	unsigned i, n = 0;
	int rc;

	*out = NULL;
	for (i = 0; (b = hv_vm_blk(vm, i)); i++) {
		if (hv_blk_read_only(b))
			continue;
		if (i >= REPL_DISK_MAX)
			return util_why(why, why_len, -EINVAL,
					"disk %u: a protected VM replicates at most %u disks", i,
					REPL_DISK_MAX);
		blks[n] = b;
		idx[n++] = i;
	}
	if (!n)
		return 0;
	rc = disk_tx_new(idx, n, 0, wake, wake_arg, out);
	if (rc < 0)
		return util_why(why, why_len, rc, "disk replication: %s", strerror(-rc));
	for (i = 0; i < n; i++) {
		(*out)->blks[i] = blks[i];
		(*out)->fds[i] = open(hv_blk_path(blks[i]), O_RDONLY | O_CLOEXEC);
		if ((*out)->fds[i] < 0) {
			rc = util_why(why, why_len, -errno,
				      "cannot read disk %s for its initial copy (%s)",
				      hv_blk_path(blks[i]), strerror(errno));
			disk_tx_free(*out);
			*out = NULL;
			return rc;
		}
	}
	return 0;
}

int disk_tx_start(struct disk_tx *tx, struct repl_link *l, const char *vm, bool sums, char *why,
		  size_t why_len)
{
	unsigned i;
	int rc;

	/* the observers first: a write after a range was read or hashed follows it */
	for (i = 0; i < tx->n; i++) {
		rc = hv_blk_set_observer(tx->blks[i], &disk_tx_observer, &tx->disks[i]);
		if (rc < 0)
			return util_why(why, why_len, rc, "observing disk %s: %s",
					hv_blk_path(tx->blks[i]), strerror(-rc));
		tx->observing = true;
	}
	/* the replica's digests, while this end hashes its own images (§8.5) */
	if (sums) {
		uint64_t t0 = util_now_ns(), bytes[REPL_DISK_MAX];

		for (i = 0; i < tx->n; i++)
			bytes[i] = hv_blk_bytes(tx->blks[i]);
		rc = disk_tx_take_sums(tx, l, tx->fds, bytes, why, why_len);
		if (rc < 0)
			return rc;
		LOG_INFO("vm %s: both ends' disk digests in %.1f s", vm,
			 (double)(util_now_ns() - t0) / 1e9);
	}
	for (i = 0; i < tx->n; i++) {
		uint64_t t0 = util_now_ns();
		struct disk_tx_stats ds;

		rc = disk_tx_copy(tx, i, tx->fds[i], hv_blk_bytes(tx->blks[i]), l, NULL, NULL);
		if (rc < 0)
			return util_why(why, why_len, rc, "copying disk %s: %s",
					hv_blk_path(tx->blks[i]), strerror(-rc));
		disk_tx_stats(tx, &ds);
		LOG_INFO("vm %s: disk %s copied in %.1f s (%.1f MiB sent so far; %.1f MiB the "
			 "replica held already)",
			 vm, hv_blk_path(tx->blks[i]), (double)(util_now_ns() - t0) / 1e9,
			 (double)ds.sent_bytes / (1 << 20), (double)ds.copy_same_bytes / (1 << 20));
	}
	return 0;
}

int disk_tx_write_digests(struct disk_tx *tx, uint64_t epoch, struct hv_stream_writer *w)
{
	unsigned i;
	int rc;

	for (i = 0; i < tx->n; i++) {
		struct repl_disk_digest_rec d = {.epoch = epoch, .disk = tx->disks[i].idx};
		struct iovec iov = {&d, sizeof(d)};

		if (!tx->blks[i] || tx->fds[i] < 0)
			continue;
		d.image_bytes = hv_blk_bytes(tx->blks[i]);
		if (d.image_bytes > REPL_VERIFY_DISK_MAX)
			continue;
		rc = disk_image_crc32c(tx->fds[i], d.image_bytes, &d.crc32c);
		if (!rc)
			rc = hv_stream_write(w, REPL_REC_DISK_DIGEST, &iov, 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void disk_tx_stop(struct disk_tx *tx)
{
	if (!tx)
		return;
	for (unsigned i = 0; i < tx->n && tx->observing; i++)
		if (tx->blks[i])
			hv_blk_set_observer(tx->blks[i], NULL, NULL);
	tx->observing = false;
	disk_tx_close(tx);
}
