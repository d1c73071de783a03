/*
 * A migration's source side (mig.h): the precopy policy asked after every
 * round of the replication session that carries the migration, and the vCPU
 * throttle it calls for. The throttle is a thread that, while it is on, lets
 * the guest run RUN_SLICE_MS at a time and pauses the whole VM (vCPUs and I/O
 * thread parked, as castor vm pause does) for as long as makes the throttle's
 * share -- 2.5 ms at 20 %, 990 ms at 99 % -- as QEMU's auto-converge does: the
 * share holds however coarse the host's sleeps are.
 */
#define LOG_TAG "migrate"
#include "migrate/mig.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define RUN_SLICE_MS 10u

struct mig_source {
	struct hv_vm *vm;
	struct repl_migration session;
	pthread_t thread;
	bool thread_live;

	pthread_mutex_t lock; /* guards what follows */
	pthread_cond_t cond;
	bool stop;
	struct mig_policy policy;
	uint64_t throttled_ns; /* the VM was paused by the throttle this long, in all */
	uint32_t throttle_peak;
};

/* Sleep ns, or less when the source is freed (up to 990 ms at 99 %: never wait it out). */
static void sleep_ns(struct mig_source *m, uint64_t ns)
{
	struct timespec ts;
	uint64_t until;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	until = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ns;
	ts.tv_sec = (time_t)(until / 1000000000ull);
	ts.tv_nsec = (long)(until % 1000000000ull);
	pthread_mutex_lock(&m->lock);
	while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&m->lock);
}

static void *throttle_loop(void *arg)
{
	struct mig_source *m = arg;
	const uint64_t slice = RUN_SLICE_MS * 1000000ull;

	pthread_setname_np(pthread_self(), "castor-throttle");
	for (;;) {
		uint32_t t;
		uint64_t t0;

		pthread_mutex_lock(&m->lock);
		while (!m->stop && !mig_policy_throttle(&m->policy))
			pthread_cond_wait(&m->cond, &m->lock);
		t = mig_policy_throttle(&m->policy);
		pthread_mutex_unlock(&m->lock);
		if (m->stop)
			break;
		t0 = util_now_ns();
		if (hv_vm_pause(m->vm) < 0) { /* the VM stopped: nothing to throttle */
			sleep_ns(m, slice);
			continue;
		}
		sleep_ns(m, slice * t / (100 - t));
		hv_vm_resume(m->vm);
		pthread_mutex_lock(&m->lock);
		m->throttled_ns += util_now_ns() - t0;
		pthread_mutex_unlock(&m->lock);
		sleep_ns(m, slice);
	}
	return NULL;
}

static enum hv_precopy_action decide(void *arg, const struct hv_precopy_stats *st)
{
	struct mig_source *m = arg;
	enum hv_precopy_action a;

	pthread_mutex_lock(&m->lock);
	a = mig_policy_decide(&m->policy, st);
	if (m->policy.throttle > m->throttle_peak)
		m->throttle_peak = m->policy.throttle;
	if (a != HV_PRECOPY_CONTINUE)
		m->policy.throttle = 0; /* the final pause, or the source runs on: no throttle */
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	LOG_INFO("vm %s: %s", hv_vm_name(m->vm), m->policy.why);
	return a;
}

int mig_source_new(struct hv_vm *vm, const struct mig_policy_opts *o, struct mig_source **out)
{
	struct mig_source *m;
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vm = vm;
	mig_policy_init(&m->policy, o);
	m->session.policy = decide;
	m->session.policy_arg = m;
	m->session.postcopy = o->postcopy;
	m->session.test_cut_pages = o->test_cut_pages;
	pthread_mutex_init(&m->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&m->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	rc = -pthread_create(&m->thread, NULL, throttle_loop, m);
	if (rc < 0) {
		mig_source_free(m);
		return rc;
	}
	m->thread_live = true;
	*out = m;
	return 0;
}

const struct repl_migration *mig_source_session(struct mig_source *m)
{
	return &m->session;
}

void mig_source_progress(struct mig_source *m, struct mig_progress *out)
{
	pthread_mutex_lock(&m->lock);
	memset(out, 0, sizeof(*out));
	out->throttle = m->policy.throttle;
	out->throttle_raises = m->policy.throttle_raises;
	out->throttle_peak = m->throttle_peak;
	out->expected_downtime_ns = m->policy.expected_downtime_ns;
	out->throttled_ns = m->throttled_ns;
	out->last = m->policy.last;
	snprintf(out->why, sizeof(out->why), "%s", m->policy.why);
	pthread_mutex_unlock(&m->lock);
}

void mig_source_free(struct mig_source *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_live)
		pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
