/*
 * The epoch-tagged output queue (netbuffer/epoch_queue.c), i.e. output commit:
 * unprotected outputs pass through at once; protected ones are released only
 * by nb_epoch_release() of their (sealed) epoch, in queue order, never from
 * the open epoch; discard drops exactly what is pending; the bound refuses
 * with -ENOBUFS and calls full_cb once per epoch; waiters wake on release,
 * discard and free; stats add up; and all of it holds with three producer
 * threads racing a sealer/releaser and a second releaser.
 *
 * Every output carries, in its payload, the epoch the test knows (or, with
 * threads, a lower bound of) its tag; the release callback checks it against
 * the epoch the test acknowledged and the epoch open at that moment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netbuffer/netbuf.h"

/* The payload of every test output (followed by filler up to its length). */
struct out_rec {
	uint32_t producer;
	uint32_t magic;
	uint64_t seq;
	uint64_t epoch; /* the epoch it was queued in (a lower bound with threads) */
};
#define REC_MAGIC 0x6e627121u

#define MAX_LOG 4096

struct rel_log {
	uint32_t kind;
	size_t len;
	struct out_rec rec;
};

/*
 * The epoch acknowledged by the nb_epoch_release() call this thread is making:
 * release_cb runs on the releasing thread, so this is the ack it serves.
 */
static _Thread_local uint64_t acked_here;

/* What the release callback sees and checks. */
struct ctx {
	/* >= the queue's open epoch at all times (set before nb_epoch_begin) */
	_Atomic uint64_t open;
	_Atomic int protected_; /* 0: every release is a pass-through */

	/* recorded by the callback */
	struct rel_log log[MAX_LOG];
	_Atomic uint64_t n;
	_Atomic uint64_t early;	    /* released before its epoch was acknowledged */
	_Atomic uint64_t from_open; /* released from the open epoch */
	_Atomic uint64_t overlap;   /* two callbacks at once */
	_Atomic uint64_t disorder;  /* a producer's outputs out of order */
	_Atomic uint64_t corrupt;   /* payload not what was queued */
	_Atomic int in_cb;
	uint64_t next_seq[4]; /* per producer, the next seq expected */

	_Atomic uint64_t full_calls;
};

static void check_rec(struct ctx *c, const struct out_rec *r, size_t len)
{
	const unsigned char *filler = (const unsigned char *)(r + 1);
	size_t i;

	if (r->magic != REC_MAGIC || r->producer >= 4) {
		c->corrupt++;
		return;
	}
	for (i = 0; i < len - sizeof(*r); i++)
		if (filler[i] != (unsigned char)(r->seq + i))
			c->corrupt++;
	if (r->seq != c->next_seq[r->producer])
		c->disorder++;
	c->next_seq[r->producer] = r->seq + 1;
	if (c->protected_) {
		if (r->epoch > acked_here)
			c->early++;
		if (r->epoch >= c->open)
			c->from_open++;
	}
}

static void release_cb(void *arg, uint32_t kind, const void *data, size_t len)
{
	struct ctx *c = arg;
	struct out_rec r = {0};
	uint64_t n;

	if (atomic_fetch_add(&c->in_cb, 1) != 0)
		c->overlap++;
	if (len >= sizeof(r)) {
		memcpy(&r, data, sizeof(r));
		check_rec(c, data, len);
	}
	n = atomic_fetch_add(&c->n, 1);
	if (n < MAX_LOG) {
		c->log[n].kind = kind;
		c->log[n].len = len;
		c->log[n].rec = r;
	}
	atomic_fetch_sub(&c->in_cb, 1);
}

static void full_cb(void *arg)
{
	struct ctx *c = arg;

	c->full_calls++;
}

static struct ctx *ctx_new(void)
{
	struct ctx *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	return c;
}

/* Queue one output of `len` bytes (>= sizeof(struct out_rec)). */
static int put(struct nb_queue *q, uint32_t producer, uint64_t seq, uint64_t epoch, size_t len)
{
	unsigned char buf[2048];
	struct out_rec r = {producer, REC_MAGIC, seq, epoch};
	size_t i;

	assert_true(len >= sizeof(r) && len <= sizeof(buf));
	memcpy(buf, &r, sizeof(r));
	for (i = 0; i < len - sizeof(r); i++)
		buf[sizeof(r) + i] = (unsigned char)(seq + i);
	return nb_output(q, NB_KIND_NET_FRAME, buf, len);
}

static void protect(struct nb_queue *q, struct ctx *c, uint64_t first)
{
	assert_int_equal(nb_queue_set_protected(q, true, first), 0);
	c->protected_ = 1;
	c->open = first;
}

static int begin(struct nb_queue *q, struct ctx *c, uint64_t next)
{
	uint64_t was = c->open;
	int rc;

	c->open = next;
	rc = nb_epoch_begin(q, next);
	if (rc < 0)
		c->open = was;
	return rc;
}

static int release(struct nb_queue *q, struct ctx *c, uint64_t e)
{
	acked_here = e;
	return nb_epoch_release(q, e);
}

static void assert_clean(struct ctx *c)
{
	assert_int_equal(c->early, 0);
	assert_int_equal(c->from_open, 0);
	assert_int_equal(c->overlap, 0);
	assert_int_equal(c->disorder, 0);
	assert_int_equal(c->corrupt, 0);
}

/* queued = released + discarded + pending, and the pending numbers are these */
static void assert_accounts(struct nb_queue *q, uint64_t pending, uint64_t pending_bytes)
{
	struct nb_queue_stats s;

	nb_queue_stats(q, &s);
	assert_int_equal(s.queued_outputs,
			 s.released_outputs + s.discarded_outputs + s.pending_outputs);
	assert_int_equal(s.queued_bytes, s.released_bytes + s.discarded_bytes + s.pending_bytes);
	assert_int_equal(s.pending_outputs, pending);
	assert_int_equal(s.pending_bytes, pending_bytes);
}

static void passthrough_when_unprotected(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t i;

	assert_int_equal(nb_queue_new(NULL, release_cb, full_cb, c, &q), 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(put(q, 0, i, 0, 100), 0);
		assert_int_equal(c->n, i + 1); /* released before nb_output returned */
	}
	nb_queue_stats(q, &s);
	assert_false(s.is_protected);
	assert_int_equal(s.passed_outputs, 10);
	assert_int_equal(s.passed_bytes, 1000);
	assert_int_equal(s.queued_outputs, 0);
	assert_int_equal(s.pending_outputs, 0);
	/* seal/release mean nothing unprotected */
	assert_int_equal(nb_epoch_begin(q, 5), -EINVAL);
	assert_int_equal(nb_epoch_release(q, 5), 0);
	assert_clean(c);
	nb_queue_free(q);
	free(c);
}

static void nothing_released_before_its_epoch_is(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t seq = 0, i;

	assert_int_equal(nb_queue_new(NULL, release_cb, full_cb, c, &q), 0);
	protect(q, c, 1);
	for (i = 0; i < 3; i++)
		assert_int_equal(put(q, 0, seq++, 1, 64), 0);
	assert_int_equal(c->n, 0);
	/* the ack of an epoch that is still open releases nothing */
	assert_int_equal(release(q, c, 1), 0);
	assert_int_equal(c->n, 0);
	assert_int_equal(begin(q, c, 2), 3);
	assert_int_equal(c->n, 0); /* sealed is not released */
	for (i = 0; i < 2; i++)
		assert_int_equal(put(q, 0, seq++, 2, 64), 0);
	assert_int_equal(release(q, c, 1), 3);
	assert_int_equal(c->n, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(c->log[i].rec.epoch, 1);
	assert_int_equal(release(q, c, 1), 0); /* twice is harmless */
	assert_int_equal(begin(q, c, 3), 2);
	assert_int_equal(release(q, c, 2), 2);
	assert_int_equal(c->n, 5);
	nb_queue_stats(q, &s);
	assert_int_equal(s.last_released_epoch, 2);
	assert_int_equal(s.open_epoch, 3);
	assert_clean(c);
	assert_accounts(q, 0, 0);
	nb_queue_free(q);
	free(c);
}

static void epochs_release_in_queue_order(void **state)
{
	/* epoch 4 is empty; epoch 7 is a jump */
	static const uint64_t epochs[] = {1, 2, 3, 4, 5, 7};
	static const int counts[] = {3, 1, 5, 0, 2, 4};
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	uint64_t seq = 0, total = 0, bytes = 0, i;
	int k, j;

	assert_int_equal(nb_queue_new(NULL, release_cb, NULL, c, &q), 0);
	protect(q, c, epochs[0]);
	for (k = 0; k < 6; k++) {
		for (j = 0; j < counts[k]; j++) {
			size_t len = sizeof(struct out_rec) + (size_t)(seq * 37 % 500);

			assert_int_equal(put(q, 1, seq++, epochs[k], len), 0);
			bytes += len;
		}
		total += (uint64_t)counts[k];
		assert_int_equal(begin(q, c, k < 5 ? epochs[k + 1] : 8), counts[k]);
	}
	assert_accounts(q, total, bytes);
	/* one ack covering several epochs: all of them, oldest first */
	assert_int_equal(release(q, c, 3), 9);
	assert_int_equal(release(q, c, 7), (int)total - 9);
	assert_int_equal(c->n, total);
	for (i = 0; i < total; i++) {
		assert_int_equal(c->log[i].rec.seq, i);
		if (i)
			assert_true(c->log[i].rec.epoch >= c->log[i - 1].rec.epoch);
	}
	/* epoch numbers must grow */
	assert_int_equal(nb_epoch_begin(q, 8), -EINVAL);
	assert_int_equal(nb_epoch_begin(q, 3), -EINVAL);
	assert_clean(c);
	assert_accounts(q, 0, 0);
	nb_queue_free(q);
	free(c);
}

static void release_ahead_of_sealed_keeps_the_open_epoch(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t seq = 0;

	assert_int_equal(nb_queue_new(NULL, release_cb, NULL, c, &q), 0);
	/* epoch 0 open: nothing is sealed at all */
	protect(q, c, 0);
	assert_int_equal(put(q, 0, seq++, 0, 40), 0);
	assert_int_equal(release(q, c, UINT64_MAX), 0);
	assert_int_equal(c->n, 0);
	assert_int_equal(begin(q, c, 10), 1);
	assert_int_equal(put(q, 0, seq++, 10, 40), 0);
	assert_int_equal(put(q, 0, seq++, 10, 40), 0);
	/* an ack far ahead releases the sealed epoch 0 only, never the open 10 */
	assert_int_equal(release(q, c, 100), 1);
	assert_int_equal(release(q, c, 10), 0);
	assert_int_equal(c->n, 1);
	nb_queue_stats(q, &s);
	assert_int_equal(s.last_released_epoch, 9);
	assert_int_equal(s.pending_outputs, 2);
	assert_int_equal(begin(q, c, 11), 2);
	assert_int_equal(release(q, c, 10), 2);
	assert_clean(c);
	assert_accounts(q, 0, 0);
	nb_queue_free(q);
	free(c);
}

static void discard_drops_all_pending(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t seq = 0;

	assert_int_equal(nb_queue_new(NULL, release_cb, NULL, c, &q), 0);
	protect(q, c, 1);
	assert_int_equal(put(q, 0, seq++, 1, 100), 0);
	assert_int_equal(put(q, 0, seq++, 1, 100), 0);
	assert_int_equal(begin(q, c, 2), 2);
	assert_int_equal(put(q, 0, seq++, 2, 50), 0);
	nb_epoch_discard(q);
	assert_int_equal(c->n, 0);
	nb_queue_stats(q, &s);
	assert_int_equal(s.discarded_outputs, 3);
	assert_int_equal(s.discarded_bytes, 250);
	assert_true(s.is_protected);
	assert_int_equal(s.open_epoch, 2);
	assert_accounts(q, 0, 0);
	/* the late ack of a discarded epoch finds nothing */
	assert_int_equal(release(q, c, 1), 0);
	/* later outputs start clean: the open epoch counts only them */
	c->next_seq[0] = seq;
	assert_int_equal(put(q, 0, seq++, 2, 60), 0);
	assert_int_equal(begin(q, c, 3), 1);
	assert_int_equal(release(q, c, 2), 1);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->log[0].rec.seq, 3);
	assert_accounts(q, 0, 0);

	/* protection off discards what is pending, then outputs pass through */
	assert_int_equal(put(q, 0, seq++, 3, 70), 0);
	assert_int_equal(nb_queue_set_protected(q, false, 0), 0);
	c->protected_ = 0;
	nb_queue_stats(q, &s);
	assert_false(s.is_protected);
	assert_int_equal(s.discarded_outputs, 4);
	assert_int_equal(s.discarded_bytes, 320);
	c->next_seq[0] = seq;
	assert_int_equal(put(q, 0, seq++, 0, 80), 0);
	assert_int_equal(c->n, 2);
	assert_clean(c);
	assert_accounts(q, 0, 0);

	/* pending outputs at free are counted as discarded, not released */
	protect(q, c, 1);
	assert_int_equal(put(q, 0, seq++, 1, 90), 0);
	nb_queue_free(q);
	assert_int_equal(c->n, 2);
	free(c);
}

struct waiter {
	struct nb_queue *q;
	size_t len;
	int timeout_ms;
	int rc;
	_Atomic int done;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->rc = nb_queue_wait_room(w->q, w->len, w->timeout_ms);
	w->done = 1;
	return NULL;
}

/* Start a waiter and return once it is inside nb_queue_wait_room(). */
static void start_waiter(pthread_t *th, struct waiter *w)
{
	struct nb_queue_stats s;

	w->done = 0;
	assert_int_equal(pthread_create(th, NULL, wait_thread, w), 0);
	do {
		util_sleep_ns(100000);
		nb_queue_stats(w->q, &s);
	} while (s.room_waiters == 0 && !w->done);
}

/* Join a waiter that must have been woken: 10 s is "never", not a timing. */
static void join_soon(pthread_t th)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	assert_int_equal(pthread_timedjoin_np(th, NULL, &ts), 0);
}

static void bound_refuses_and_asks_for_an_early_epoch(void **state)
{
	struct nb_queue_opts o = {.name = "t", .max_bytes = 1000, .max_entries = 4};
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	struct waiter w;
	pthread_t th;
	uint64_t seq = 0;

	assert_int_equal(nb_queue_new(&o, release_cb, full_cb, c, &q), 0);
	protect(q, c, 1);
	assert_int_equal(put(q, 0, seq++, 1, 300), 0);
	assert_int_equal(put(q, 0, seq++, 1, 300), 0);
	assert_int_equal(put(q, 0, seq++, 1, 300), 0);
	assert_int_equal(put(q, 0, seq, 1, 300), -ENOBUFS); /* 1200 > 1000 */
	assert_int_equal(c->full_calls, 1);
	assert_int_equal(put(q, 0, seq, 1, 101), -ENOBUFS);
	assert_int_equal(c->full_calls, 1);	       /* once per epoch */
	assert_int_equal(put(q, 0, seq++, 1, 100), 0); /* exactly 1000 fits */
	assert_accounts(q, 4, 1000);
	assert_int_equal(put(q, 1, 0, 1, 32), -ENOBUFS); /* 5 entries > 4 */
	assert_int_equal(c->full_calls, 1);
	nb_queue_stats(q, &s);
	assert_int_equal(s.refused_outputs, 3);
	assert_int_equal(s.full_events, 1);
	assert_int_equal(s.high_water_bytes, 1000);
	assert_int_equal(s.queued_outputs, 4);

	/* a new epoch may call full_cb again, once */
	assert_int_equal(begin(q, c, 2), 4);
	assert_int_equal(put(q, 1, 0, 2, 32), -ENOBUFS);
	assert_int_equal(put(q, 1, 0, 2, 32), -ENOBUFS);
	assert_int_equal(c->full_calls, 2);

	/* no room: a zero timeout says so at once */
	assert_int_equal(nb_queue_wait_room(q, 32, 0), -ETIMEDOUT);
	assert_int_equal(nb_queue_wait_room(q, 32, 20), -ETIMEDOUT);
	/* a waiter (with no time limit) wakes when a release makes room */
	w = (struct waiter){.q = q, .len = 300, .timeout_ms = -1};
	start_waiter(&th, &w);
	assert_false(w.done);
	assert_int_equal(release(q, c, 1), 4);
	join_soon(th);
	assert_int_equal(w.rc, 0);
	assert_accounts(q, 0, 0);
	assert_int_equal(put(q, 1, 0, 2, 1000), 0);
	assert_int_equal(put(q, 1, 1, 2, 32), -ENOBUFS);
	assert_int_equal(c->full_calls, 2);

	/* a discard cancels waiters */
	w = (struct waiter){.q = q, .len = 32, .timeout_ms = -1};
	start_waiter(&th, &w);
	nb_epoch_discard(q);
	join_soon(th);
	assert_int_equal(w.rc, -ECANCELED);
	/* after a discard the bound starts over, and so does full_cb */
	assert_int_equal(put(q, 1, 0, 2, 1000), 0);
	assert_int_equal(put(q, 1, 1, 2, 32), -ENOBUFS);
	assert_int_equal(c->full_calls, 3);

	/* and so does freeing the queue */
	w = (struct waiter){.q = q, .len = 32, .timeout_ms = -1};
	start_waiter(&th, &w);
	nb_queue_free(q);
	join_soon(th);
	assert_int_equal(w.rc, -ECANCELED);
	assert_clean(c);
	free(c);
}

static void stats_are_plausible(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t seq = 0, e, i;

	assert_int_equal(nb_queue_new(NULL, release_cb, NULL, c, &q), 0);
	protect(q, c, 1);
	nb_queue_stats(q, &s);
	assert_true(s.is_protected);
	assert_int_equal(s.delay_last_ns, 0);
	assert_int_equal(s.delay_p99_ns, 0);
	for (e = 1; e <= 20; e++) {
		for (i = 0; i < e; i++)
			assert_int_equal(put(q, 0, seq++, e, 100), 0);
		util_sleep_ns(100000);
		assert_int_equal(begin(q, c, e + 1), (int)e);
		if (e % 4 == 0)
			assert_int_equal(release(q, c, e) > 0, 1);
	}
	assert_int_equal(begin(q, c, 22), 0);
	assert_int_equal(release(q, c, 21), 0); /* epoch 20 went out with the ack of 20 */
	nb_queue_stats(q, &s);
	assert_int_equal(s.released_outputs, 210);
	assert_int_equal(s.released_bytes, 21000);
	/* the most pending at once: epochs 17-20, just before the ack of 20 */
	assert_int_equal(s.high_water_bytes, (17 + 18 + 19 + 20) * 100);
	assert_true(s.delay_last_ns > 0);
	assert_true(s.delay_p50_ns > 0);
	assert_true(s.delay_p50_ns <= s.delay_p99_ns);
	assert_true(s.delay_p99_ns <= s.delay_max_ns);
	assert_true(s.delay_last_ns <= s.delay_max_ns);
	assert_int_equal(s.last_released_epoch, 21);
	assert_clean(c);
	assert_accounts(q, 0, 0);
	nb_queue_free(q);
	free(c);
}

/* ---- threads ------------------------------------------------------------------- */

#define MT_PRODUCERS 3
#define MT_PER	     20000

struct mt {
	struct nb_queue *q;
	struct ctx *c;
	_Atomic uint64_t opened; /* an epoch known to be open (or sealed): a lower bound */
	_Atomic uint64_t sealed; /* the newest sealed epoch */
	_Atomic int producers_left;
	_Atomic int done;      /* the last epoch is sealed */
	_Atomic int want_seal; /* full_cb asked for an early epoch */
	_Atomic uint64_t retries;
	_Atomic uint64_t errors;
};

struct producer {
	struct mt *mt;
	uint32_t id;
};

static void mt_full_cb(void *arg)
{
	struct mt *mt = arg;

	mt->want_seal = 1;
	mt->c->full_calls++;
}

static void mt_release_cb(void *arg, uint32_t kind, const void *data, size_t len)
{
	struct mt *mt = arg;

	release_cb(mt->c, kind, data, len);
}

static void *producer_thread(void *arg)
{
	struct producer *p = arg;
	struct mt *mt = p->mt;
	unsigned char buf[512];
	uint64_t seq;

	for (seq = 0; seq < MT_PER; seq++) {
		/* read before queuing: the output's tag can only be this or later */
		struct out_rec r = {p->id, REC_MAGIC, seq, mt->opened};
		size_t len = sizeof(r) + (size_t)((seq * 7 + p->id) % (sizeof(buf) - sizeof(r)));
		size_t i;
		int rc;

		memcpy(buf, &r, sizeof(r));
		for (i = 0; i < len - sizeof(r); i++)
			buf[sizeof(r) + i] = (unsigned char)(seq + i);
		/* as a NIC would: keep the frame and retry once there is room */
		while ((rc = nb_output(mt->q, NB_KIND_NET_FRAME, buf, len)) == -ENOBUFS) {
			mt->retries++;
			rc = nb_queue_wait_room(mt->q, len, 100);
			if (rc < 0 && rc != -ETIMEDOUT)
				break;
		}
		if (rc < 0)
			mt->errors++;
	}
	mt->producers_left--;
	return NULL;
}

static void mt_seal(struct mt *mt, uint64_t next)
{
	mt->c->open = next;
	if (nb_epoch_begin(mt->q, next) < 0)
		mt->errors++;
	mt->sealed = next - 1;
	mt->opened = next;
}

/*
 * The engine: seals an epoch every ~50 us, or at once when full_cb asks, and
 * releases what the secondary acked two epochs ago; now and then an ack from
 * far ahead (which must not release the open epoch).
 */
static void *sealer_thread(void *arg)
{
	struct mt *mt = arg;
	struct nb_queue_stats s;
	uint64_t e = 1, iter = 0;

	while (mt->producers_left > 0) {
		if (!mt->want_seal)
			util_sleep_ns(50000);
		mt->want_seal = 0;
		mt_seal(mt, ++e);
		if (e >= 3) {
			acked_here = iter % 7 == 0 ? e + 5 : e - 2;
			nb_epoch_release(mt->q, acked_here);
		}
		if (iter++ % 16 == 0)
			nb_queue_stats(mt->q, &s);
	}
	/* the last epoch: seal, and ack everything */
	mt_seal(mt, e + 1);
	mt->done = 1;
	acked_here = e;
	nb_epoch_release(mt->q, e);
	return (void *)(uintptr_t)e;
}

/* A second releaser racing the sealer's: acks just behind, sometimes ahead. */
static void *acker_thread(void *arg)
{
	struct mt *mt = arg;
	uint64_t iter = 0;

	while (!mt->done) {
		uint64_t sealed = mt->sealed;

		acked_here = iter++ % 5 == 0 ? sealed + 3 : sealed;
		nb_epoch_release(mt->q, acked_here);
		util_sleep_ns(30000);
	}
	return NULL;
}

static void threads_keep_order_and_totals(void **state)
{
	struct nb_queue_opts o = {.max_bytes = 64 << 10, .max_entries = 1000};
	struct ctx *c = ctx_new();
	struct mt mt = {.c = c, .opened = 1, .producers_left = MT_PRODUCERS};
	struct producer p[MT_PRODUCERS];
	pthread_t th[MT_PRODUCERS], sealer, acker;
	struct nb_queue_stats s;
	void *epochs;
	uint32_t i;

	assert_int_equal(nb_queue_new(&o, mt_release_cb, mt_full_cb, &mt, &mt.q), 0);
	protect(mt.q, c, 1);
	assert_int_equal(pthread_create(&sealer, NULL, sealer_thread, &mt), 0);
	assert_int_equal(pthread_create(&acker, NULL, acker_thread, &mt), 0);
	for (i = 0; i < MT_PRODUCERS; i++) {
		p[i] = (struct producer){&mt, i};
		assert_int_equal(pthread_create(&th[i], NULL, producer_thread, &p[i]), 0);
	}
	for (i = 0; i < MT_PRODUCERS; i++)
		pthread_join(th[i], NULL);
	pthread_join(sealer, &epochs);
	pthread_join(acker, NULL);
	nb_queue_stats(mt.q, &s);
	print_message("%llu epochs, %llu retries after -ENOBUFS, %llu full events, high water "
		      "%llu bytes, delay p50 %llu us p99 %llu us\n",
		      (unsigned long long)(uintptr_t)epochs, (unsigned long long)mt.retries,
		      (unsigned long long)s.full_events, (unsigned long long)s.high_water_bytes,
		      (unsigned long long)s.delay_p50_ns / 1000,
		      (unsigned long long)s.delay_p99_ns / 1000);
	assert_int_equal(mt.errors, 0);
	assert_true((uintptr_t)epochs > 10);
	assert_int_equal(c->n, MT_PRODUCERS * MT_PER);
	for (i = 0; i < MT_PRODUCERS; i++)
		assert_int_equal(c->next_seq[i], MT_PER);
	assert_int_equal(s.queued_outputs, MT_PRODUCERS * MT_PER);
	assert_int_equal(s.released_outputs, MT_PRODUCERS * MT_PER);
	assert_int_equal(s.discarded_outputs, 0);
	assert_int_equal(s.passed_outputs, 0);
	assert_int_equal(s.full_events, c->full_calls);
	assert_true(s.high_water_bytes <= o.max_bytes);
	assert_clean(c);
	assert_accounts(mt.q, 0, 0);
	nb_queue_free(mt.q);
	free(c);
}

/* Unprotected, several producers at once: release_cb still never runs twice at once. */
static void threads_unprotected_never_overlap(void **state)
{
	struct ctx *c = ctx_new();
	struct mt mt = {.c = c, .producers_left = MT_PRODUCERS};
	struct producer p[MT_PRODUCERS];
	pthread_t th[MT_PRODUCERS];
	struct nb_queue_stats s;
	uint32_t i;

	assert_int_equal(nb_queue_new(NULL, mt_release_cb, mt_full_cb, &mt, &mt.q), 0);
	for (i = 0; i < MT_PRODUCERS; i++) {
		p[i] = (struct producer){&mt, i};
		assert_int_equal(pthread_create(&th[i], NULL, producer_thread, &p[i]), 0);
	}
	for (i = 0; i < MT_PRODUCERS; i++)
		pthread_join(th[i], NULL);
	nb_queue_stats(mt.q, &s);
	assert_int_equal(mt.errors, 0);
	assert_int_equal(s.passed_outputs, MT_PRODUCERS * MT_PER);
	assert_int_equal(s.queued_outputs, 0);
	assert_int_equal(c->full_calls, 0);
	assert_clean(c);
	nb_queue_free(mt.q);
	free(c);
}

static void bad_inputs_are_refused(void **state)
{
	struct nb_queue_opts o = {.max_bytes = 4096};
	struct nb_queue_opts too_many = {.max_entries = 0x80000000u};
	struct ctx *c = ctx_new();
	struct nb_queue *q = NULL;
	static unsigned char big[4097];
	struct nb_queue_stats s;

	assert_int_equal(nb_queue_new(NULL, NULL, NULL, c, &q), -EINVAL);
	assert_int_equal(nb_queue_new(NULL, release_cb, NULL, c, NULL), -EINVAL);
	assert_int_equal(nb_queue_new(&too_many, release_cb, NULL, c, &q), -EINVAL);
	assert_null(q);
	nb_queue_free(NULL);
	assert_int_equal(nb_output(NULL, 0, big, 1), -EINVAL);

	assert_int_equal(nb_queue_new(&o, release_cb, full_cb, c, &q), 0);
	/* the same refusals protected or not */
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, 0), -EINVAL);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, NULL, 10), -EINVAL);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, SIZE_MAX), -EMSGSIZE);
	protect(q, c, 1);
	assert_int_equal(nb_queue_set_protected(q, true, 7), -EALREADY);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, 0), -EINVAL);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, NULL, 10), -EINVAL);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, SIZE_MAX), -EMSGSIZE);
	assert_int_equal(nb_queue_wait_room(q, 0, 0), -EINVAL);
	assert_int_equal(nb_queue_wait_room(q, sizeof(big), 0), -EMSGSIZE);
	/* the largest output fits an empty queue */
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, 4096), 0);
	assert_int_equal(nb_epoch_begin(q, 1), -EINVAL); /* must grow */
	assert_int_equal(nb_epoch_begin(q, 0), -EINVAL);
	nb_queue_stats(q, &s);
	assert_int_equal(s.open_epoch, 1);
	assert_int_equal(s.queued_outputs, 1);
	assert_int_equal(s.full_events, 0);
	assert_int_equal(c->n, 0);
	assert_accounts(q, 1, 4096);
	nb_queue_free(q);

	/* a bound past any real length still refuses lengths that would wrap */
	o.max_bytes = UINT64_MAX;
	assert_int_equal(nb_queue_new(&o, release_cb, full_cb, c, &q), 0);
	protect(q, c, 1);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, SIZE_MAX), -EMSGSIZE);
	assert_int_equal(nb_output(q, NB_KIND_RECORD, big, SIZE_MAX - 8), -EMSGSIZE);
	nb_queue_free(q);
	free(c);
}

/*
 * A primary whose replica was lost, protected again toward another: what it
 * held is moved into the new session's first epoch and released with that
 * epoch's ack -- never before it, never lost, in queue order.
 */
static void restart_moves_held_outputs_into_the_first_epoch(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	uint64_t seq = 0, i;

	assert_int_equal(nb_queue_new(NULL, release_cb, full_cb, c, &q), 0);
	protect(q, c, 0);
	assert_int_equal(begin(q, c, 1), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(put(q, 0, seq++, 0, 80), 0); /* epoch 1: never acked */
	assert_int_equal(begin(q, c, 2), 4);
	for (i = 0; i < 2; i++)
		assert_int_equal(put(q, 0, seq++, 0, 80), 0); /* epoch 2, open */
	/* the replica is gone; a new session starts at epoch 0 */
	assert_int_equal(nb_queue_restart(q, 0), 6);
	c->open = 0;
	assert_int_equal(put(q, 0, seq++, 0, 80), 0);
	assert_int_equal(release(q, c, 0), 0); /* epoch 0 is open: nothing goes */
	assert_int_equal(c->n, 0);
	assert_int_equal(begin(q, c, 1), 7); /* the initial copy's pause seals all seven */
	assert_int_equal(put(q, 0, seq++, 1, 80), 0);
	assert_int_equal(release(q, c, 0), 7);
	assert_int_equal(c->n, 7);
	assert_clean(c);
	assert_accounts(q, 1, 80);
	nb_queue_free(q);
	free(c);
}

/*
 * Unprotect: every held output goes out, the open epoch's included, in
 * queue order, and later outputs pass through after them.
 */
static void release_all_lets_everything_out_in_order(void **state)
{
	struct ctx *c = ctx_new();
	struct nb_queue *q;
	struct nb_queue_stats s;
	uint64_t seq = 0, i;

	assert_int_equal(nb_queue_new(NULL, release_cb, full_cb, c, &q), 0);
	protect(q, c, 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(put(q, 0, seq++, 0, 64), 0);
	assert_int_equal(begin(q, c, 1), 3);
	for (i = 0; i < 2; i++)
		assert_int_equal(put(q, 0, seq++, 1, 64), 0);
	c->protected_ = 0; /* from here on releases are not acks */
	assert_int_equal(nb_queue_release_all(q), 5);
	assert_int_equal(c->n, 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(c->log[i].rec.seq, i);
	assert_int_equal(put(q, 0, seq++, 0, 64), 0); /* passes through at once */
	assert_int_equal(c->n, 6);
	nb_queue_stats(q, &s);
	assert_false(s.is_protected);
	assert_int_equal(s.discarded_outputs, 0);
	assert_int_equal(s.released_outputs, 5);
	assert_int_equal(s.passed_outputs, 1);
	assert_clean(c);
	assert_accounts(q, 0, 0);
	/* nothing held: nothing to do, and protection can start again */
	assert_int_equal(nb_queue_release_all(q), 0);
	protect(q, c, 0);
	nb_queue_free(q);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(passthrough_when_unprotected),
		cmocka_unit_test(nothing_released_before_its_epoch_is),
		cmocka_unit_test(epochs_release_in_queue_order),
		cmocka_unit_test(release_ahead_of_sealed_keeps_the_open_epoch),
		cmocka_unit_test(discard_drops_all_pending),
		cmocka_unit_test(bound_refuses_and_asks_for_an_early_epoch),
		cmocka_unit_test(stats_are_plausible),
		cmocka_unit_test(threads_keep_order_and_totals),
		cmocka_unit_test(threads_unprotected_never_overlap),
		cmocka_unit_test(bad_inputs_are_refused),
		cmocka_unit_test(restart_moves_held_outputs_into_the_first_epoch),
		cmocka_unit_test(release_all_lets_everything_out_in_order),
	};

	util_log_set_level(LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
