/*
 * The epoch-tagged output queue (output commit, design.md §5): one FIFO of
 * copied outputs, each tagged with the epoch open when it was appended.
 *
 * Two locks. `lock` guards the list, the counters and the state, and is only
 * ever held for short, non-blocking sections (never across a callback).
 * `release_lock` serializes deliveries: it is held across release_cb, so two
 * releasers (or a releaser and an unprotected pass-through) never interleave
 * outputs. Lock order: release_lock, then lock.
 *
 * Because epochs only grow and appends happen under `lock`, the list is
 * sorted by epoch, and "every sealed epoch <= e" is a prefix of it: the
 * entries whose epoch is <= min(e, open_epoch - 1).
 */
#define LOG_TAG "nbq"
#include "netbuffer/netbuf.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBQ_DELAY_WINDOW 1024

struct nb_queue;
static void account_release(struct nb_queue *q, size_t len, uint64_t delay_ns);

struct nbq_entry {
	struct nbq_entry *next;
	uint64_t epoch;
	uint64_t t_ns; /* when it was queued */
	uint32_t kind;
	size_t len;
	unsigned char data[];
};

struct nb_queue {
	char name[64];
	uint64_t max_bytes;
	uint32_t max_entries;
	nb_release_fn release_cb;
	nb_full_fn full_cb;
	void *arg;

	pthread_mutex_t release_lock; /* held across release_cb */
	pthread_mutex_t lock;	      /* everything below */
	pthread_cond_t room;	      /* pending shrank, or a discard, or closing */
	pthread_cond_t gone;	      /* the last waiter left (for nb_queue_free) */

	bool is_protected;    /* written under lock, read without by nb_queue_is_protected */
	bool full_fired;      /* full_cb already called in the open epoch */
	bool closing;	      /* nb_queue_free() has started */
	uint64_t open_epoch;  /* outputs queued now get this tag */
	uint64_t open_count;  /* outputs queued in the open epoch */
	uint64_t discard_gen; /* bumped by every discard */
	uint32_t waiters;     /* threads in nb_queue_wait_room() */

	struct nbq_entry *head, **tail;

	struct nb_queue_stats st;
	uint64_t delays[NBQ_DELAY_WINDOW]; /* ring of recent queue delays */
	uint32_t delay_n, delay_next;
};

int nb_queue_new(const struct nb_queue_opts *o, nb_release_fn release_cb, nb_full_fn full_cb,
		 void *arg, struct nb_queue **out)
{
	struct nb_queue_opts def = {0};
	struct nb_queue *q = NULL;
	pthread_condattr_t ca;
	int rc = 0;

	if (!o)
		o = &def;
	if (!release_cb || !out || o->max_entries > INT_MAX) {
		rc = -EINVAL;
		goto out;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(q->name, sizeof(q->name), "%s", o->name ? o->name : "vm");
	q->max_bytes = o->max_bytes ? o->max_bytes : NB_QUEUE_DEFAULT_MAX_BYTES;
	q->max_entries = o->max_entries ? o->max_entries : NB_QUEUE_DEFAULT_MAX_ENTRIES;
	q->release_cb = release_cb;
	q->full_cb = full_cb;
	q->arg = arg;
	q->tail = &q->head;
	pthread_mutex_init(&q->release_lock, NULL);
	pthread_mutex_init(&q->lock, NULL);
	/* wait_room's deadline must not move with the wall clock */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->room, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&q->gone, NULL);
	*out = q;
out:
	return rc;
}

/* Drop every queued entry; q->lock held. Returns how many were dropped. */
static uint64_t drop_all(struct nb_queue *q)
{
	struct nbq_entry *e = q->head, *next;
	uint64_t n = 0;

	for (; e; e = next) {
		next = e->next;
		q->st.discarded_outputs++;
		q->st.discarded_bytes += e->len;
		q->st.pending_outputs--;
		q->st.pending_bytes -= e->len;
		free(e);
		n++;
	}
	q->head = NULL;
	q->tail = &q->head;
	q->open_count = 0;
	q->full_fired = false;
	q->discard_gen++;
	pthread_cond_broadcast(&q->room);
	return n;
}

void nb_queue_free(struct nb_queue *q)
{
	uint64_t n;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->closing = true;
	pthread_cond_broadcast(&q->room);
	while (q->waiters)
		pthread_cond_wait(&q->gone, &q->lock);
	n = drop_all(q);
	pthread_mutex_unlock(&q->lock);
	if (n)
		LOG_WARN("vm %s: output queue freed with %llu outputs pending; discarded", q->name,
			 (unsigned long long)n);
	pthread_cond_destroy(&q->gone);
	pthread_cond_destroy(&q->room);
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&q->release_lock);
	free(q);
}

int nb_queue_set_protected(struct nb_queue *q, bool on, uint64_t first_epoch)
{
	uint64_t n = 0, open;
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	open = q->open_epoch;
	if (on && q->is_protected) {
		rc = -EALREADY;
	} else if (on) {
		__atomic_store_n(&q->is_protected, true, __ATOMIC_RELEASE);
		q->open_epoch = first_epoch;
		q->open_count = 0;
		q->full_fired = false;
		q->st.last_released_epoch = 0;
	} else if (q->is_protected) {
		__atomic_store_n(&q->is_protected, false, __ATOMIC_RELEASE);
		n = drop_all(q);
	}
	pthread_mutex_unlock(&q->lock);
	if (rc == -EALREADY)
		LOG_WARN("vm %s: output queue already protected (epoch %llu open)", q->name,
			 (unsigned long long)open);
	else if (on)
		LOG_INFO("vm %s: outputs held until acknowledged, from epoch %llu", q->name,
			 (unsigned long long)first_epoch);
	else if (n)
		LOG_WARN("vm %s: protection off with %llu outputs unacknowledged; discarded",
			 q->name, (unsigned long long)n);
	return rc;
}

/*
 * Deliver, in queue order, the entries tagged <= limit, one at a time (so
 * producers regain room as outputs leave), until a discard (discard_gen moves
 * on) takes the rest. Release lock and q->lock held; q->lock is dropped around
 * each callback. Returns how many went out.
 */
static int deliver(struct nb_queue *q, uint64_t limit, uint64_t gen)
{
	struct nbq_entry *ent;
	uint64_t delay;
	size_t len;
	int n = 0;

	while ((ent = q->head) && ent->epoch <= limit && q->discard_gen == gen) {
		q->head = ent->next;
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->lock);
		delay = util_now_ns() - ent->t_ns;
		q->release_cb(q->arg, ent->kind, ent->data, ent->len);
		len = ent->len;
		free(ent);
		pthread_mutex_lock(&q->lock);
		account_release(q, len, delay);
		n++;
	}
	return n;
}

int nb_queue_restart(struct nb_queue *q, uint64_t first_epoch)
{
	struct nbq_entry *e;
	uint64_t n = 0;

	pthread_mutex_lock(&q->lock);
	for (e = q->head; e; e = e->next, n++)
		e->epoch = first_epoch;
	__atomic_store_n(&q->is_protected, true, __ATOMIC_RELEASE);
	q->open_epoch = first_epoch;
	q->open_count = n;
	q->full_fired = false;
	q->st.last_released_epoch = 0;
	pthread_mutex_unlock(&q->lock);
	LOG_INFO("vm %s: outputs held until acknowledged, from epoch %llu (%llu held from before)",
		 q->name, (unsigned long long)first_epoch, (unsigned long long)n);
	return n > INT_MAX ? INT_MAX : (int)n;
}

int nb_queue_release_all(struct nb_queue *q)
{
	int n;

	pthread_mutex_lock(&q->release_lock);
	pthread_mutex_lock(&q->lock);
	/*
	 * Later outputs pass through, and pass_through() waits for the release
	 * lock we hold: they go out after every output held before them.
	 */
	__atomic_store_n(&q->is_protected, false, __ATOMIC_RELEASE);
	n = deliver(q, UINT64_MAX, q->discard_gen);
	q->open_count = 0;
	if (q->waiters)
		pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->lock);
	pthread_mutex_unlock(&q->release_lock);
	if (n)
		LOG_WARN("vm %s: protection off: %d held outputs released without an "
			 "acknowledgement",
			 q->name, n);
	return n;
}

/* An output of `len` fits now; q->lock held. */
static bool has_room(const struct nb_queue *q, size_t len)
{
	/* pending_bytes <= max_bytes always: no overflow, whatever max_bytes is */
	return !q->is_protected || (len <= q->max_bytes - q->st.pending_bytes &&
				    q->st.pending_outputs < q->max_entries);
}

static int check_len(const struct nb_queue *q, size_t len)
{
	if (!len)
		return -EINVAL;
	/* the second test keeps sizeof(entry) + len from wrapping when max_bytes is huge */
	if (len > q->max_bytes || len > SIZE_MAX - sizeof(struct nbq_entry))
		return -EMSGSIZE;
	return 0;
}

/* Unprotected: hand the caller's buffer straight to release_cb. */
static int pass_through(struct nb_queue *q, uint32_t kind, const void *data, size_t len)
{
	pthread_mutex_lock(&q->release_lock);
	q->release_cb(q->arg, kind, data, len);
	pthread_mutex_lock(&q->lock);
	q->st.passed_outputs++;
	q->st.passed_bytes += len;
	pthread_mutex_unlock(&q->lock);
	pthread_mutex_unlock(&q->release_lock);
	return 0;
}

int nb_output(struct nb_queue *q, uint32_t kind, const void *data, size_t len)
{
	struct nbq_entry *e = NULL;
	bool fire_full = false, prot;
	uint64_t epoch = 0;
	int rc;

	if (!q || !data)
		return -EINVAL;
	rc = check_len(q, len);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&q->lock);
	prot = q->is_protected;
	pthread_mutex_unlock(&q->lock);
	if (!prot)
		return pass_through(q, kind, data, len);

	/* copy outside the lock; the bound is checked when appending */
	e = malloc(sizeof(*e) + len);
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	e->next = NULL;
	e->kind = kind;
	e->len = len;
	memcpy(e->data, data, len);
	e->t_ns = util_now_ns();

	pthread_mutex_lock(&q->lock);
	if (!q->is_protected) {
		/* protection went off while we copied: the output passes after all */
		pthread_mutex_unlock(&q->lock);
		rc = pass_through(q, kind, data, len);
		goto out;
	}
	if (!has_room(q, len)) {
		q->st.refused_outputs++;
		if (!q->full_fired && q->full_cb) {
			q->full_fired = true;
			q->st.full_events++;
			fire_full = true;
			epoch = q->open_epoch;
		}
		pthread_mutex_unlock(&q->lock);
		rc = -ENOBUFS;
		goto out;
	}
	/* the tag is the epoch open now, never an earlier one */
	e->epoch = q->open_epoch;
	*q->tail = e;
	q->tail = &e->next;
	e = NULL;
	q->open_count++;
	q->st.queued_outputs++;
	q->st.queued_bytes += len;
	q->st.pending_outputs++;
	q->st.pending_bytes += len;
	if (q->st.pending_bytes > q->st.high_water_bytes)
		q->st.high_water_bytes = q->st.pending_bytes;
	pthread_mutex_unlock(&q->lock);
out:
	free(e);
	if (fire_full) {
		LOG_DBG("vm %s: output queue full in epoch %llu; asking for an early checkpoint",
			q->name, (unsigned long long)epoch);
		q->full_cb(q->arg);
	}
	return rc;
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int nb_queue_wait_room(struct nb_queue *q, size_t len, int timeout_ms)
{
	struct timespec deadline;
	bool timed_out = false;
	uint64_t gen;
	int rc;

	if (!q)
		return -EINVAL;
	rc = check_len(q, len);
	if (rc < 0)
		return rc;
	if (timeout_ms > 0)
		deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&q->lock);
	gen = q->discard_gen;
	q->waiters++;
	for (;;) {
		if (q->closing || q->discard_gen != gen) {
			rc = -ECANCELED;
			break;
		}
		if (has_room(q, len)) {
			rc = 0;
			break;
		}
		if (timed_out || timeout_ms == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		if (timeout_ms < 0)
			pthread_cond_wait(&q->room, &q->lock);
		else if (pthread_cond_timedwait(&q->room, &q->lock, &deadline) == ETIMEDOUT)
			timed_out = true; /* one last look at the state */
	}
	q->waiters--;
	if (q->closing && !q->waiters)
		pthread_cond_signal(&q->gone);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int nb_epoch_begin(struct nb_queue *q, uint64_t next_epoch)
{
	uint64_t sealed, count = 0;
	bool prot;
	int rc;

	pthread_mutex_lock(&q->lock);
	prot = q->is_protected;
	sealed = q->open_epoch;
	if (!prot || next_epoch <= sealed) {
		rc = -EINVAL;
	} else {
		count = q->open_count;
		q->open_epoch = next_epoch;
		q->open_count = 0;
		q->full_fired = false;
		rc = (int)count; /* <= max_entries <= INT_MAX */
	}
	pthread_mutex_unlock(&q->lock);
	if (rc < 0)
		LOG_ERR("vm %s: cannot open epoch %llu (%s, epoch %llu open)", q->name,
			(unsigned long long)next_epoch, prot ? "protected" : "unprotected",
			(unsigned long long)sealed);
	else
		LOG_DBG("vm %s: epoch %llu sealed with %llu outputs", q->name,
			(unsigned long long)sealed, (unsigned long long)count);
	return rc;
}

/* Account one delivered entry (already freed: only its numbers); q->lock held. */
static void account_release(struct nb_queue *q, size_t len, uint64_t delay_ns)
{
	q->st.released_outputs++;
	q->st.released_bytes += len;
	q->st.pending_outputs--;
	q->st.pending_bytes -= len;
	q->st.delay_last_ns = delay_ns;
	if (delay_ns > q->st.delay_max_ns)
		q->st.delay_max_ns = delay_ns;
	q->delays[q->delay_next] = delay_ns;
	q->delay_next = (q->delay_next + 1) % NBQ_DELAY_WINDOW;
	if (q->delay_n < NBQ_DELAY_WINDOW)
		q->delay_n++;
	if (q->waiters)
		pthread_cond_broadcast(&q->room);
}

int nb_epoch_release(struct nb_queue *q, uint64_t e)
{
	uint64_t limit, gen;
	int n = 0;

	pthread_mutex_lock(&q->release_lock);
	pthread_mutex_lock(&q->lock);
	if (!q->is_protected || q->open_epoch == 0)
		goto out; /* nothing sealed */
	gen = q->discard_gen;
	/* the open epoch is never released, whatever the caller acknowledges */
	limit = e < q->open_epoch - 1 ? e : q->open_epoch - 1;
	/*
	 * One entry at a time, so producers regain room as outputs leave. A
	 * concurrent discard takes whatever has not been delivered yet and ends
	 * this release: what is queued after it (maybe in a new protection
	 * period, with epochs counted afresh) was not acknowledged by `e`.
	 */
	n = deliver(q, limit, gen);
	if (limit > q->st.last_released_epoch)
		q->st.last_released_epoch = limit;
out:
	pthread_mutex_unlock(&q->lock);
	pthread_mutex_unlock(&q->release_lock);
	return n;
}

void nb_epoch_discard(struct nb_queue *q)
{
	uint64_t n, epoch;

	pthread_mutex_lock(&q->lock);
	n = drop_all(q);
	epoch = q->open_epoch;
	pthread_mutex_unlock(&q->lock);
	if (n)
		LOG_WARN("vm %s: %llu unacknowledged outputs discarded (epoch %llu open)", q->name,
			 (unsigned long long)n, (unsigned long long)epoch);
}

/*
 * Lock-free: the tap asks on every TX frame, and nb_output() takes the lock
 * anyway. A frame racing the switch lands on either side of it.
 */
bool nb_queue_is_protected(struct nb_queue *q)
{
	return __atomic_load_n(&q->is_protected, __ATOMIC_ACQUIRE);
}

void nb_queue_stats(struct nb_queue *q, struct nb_queue_stats *out)
{
	uint64_t d[NBQ_DELAY_WINDOW];
	uint32_t n;

	pthread_mutex_lock(&q->lock);
	*out = q->st;
	out->is_protected = q->is_protected;
	out->open_epoch = q->open_epoch;
	out->room_waiters = q->waiters;
	n = q->delay_n;
	memcpy(d, q->delays, n * sizeof(d[0]));
	pthread_mutex_unlock(&q->lock);
	out->delay_p50_ns = util_percentile(d, n, 50);
	out->delay_p99_ns = util_percentile(d, n, 99);
}
