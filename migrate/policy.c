/*
 * The precopy policy of live migration (mig.h). Each decision looks at the
 * pass that just ended: how many bytes a page took on the wire, how fast the
 * link carried them, how fast the guest dirtied pages meanwhile and how many
 * are dirty now.
 */
#define LOG_TAG "migrate"
#include "migrate/mig.h"

#include <stdio.h>
#include <string.h>

#include "util/util.h"

#define NS_PER_MS	   1000000ull
#define DEFAULT_TIMEOUT	   (600ull * 1000000000ull)
#define STALLS_TO_THROTTLE 1 /* passes that do not converge before throttling more */
/* a guest dirtying at 90 % of the link rate or more cannot be caught up with */
#define CONVERGE_NUM 9
#define CONVERGE_DEN 10

void mig_policy_init(struct mig_policy *p, const struct mig_policy_opts *o)
{
	memset(p, 0, sizeof(*p));
	p->o = *o;
	if (!p->o.downtime_ms)
		p->o.downtime_ms = 30;
	if (!p->o.timeout_ns)
		p->o.timeout_ns = DEFAULT_TIMEOUT;
	if (!p->o.throttle_first)
		p->o.throttle_first = 20;
	if (!p->o.throttle_step)
		p->o.throttle_step = 10;
	if (!p->o.throttle_max || p->o.throttle_max > 99)
		p->o.throttle_max = 99;
	p->last = HV_PRECOPY_CONTINUE;
}

uint32_t mig_policy_throttle(const struct mig_policy *p)
{
	return p->throttle;
}

static enum hv_precopy_action decided(struct mig_policy *p, enum hv_precopy_action a)
{
	p->last = a;
	return a;
}

static void raise_throttle(struct mig_policy *p)
{
	if (p->o.no_throttle)
		return;
	uint32_t t = p->throttle ? p->throttle + p->o.throttle_step : p->o.throttle_first;

	if (t > p->o.throttle_max)
		t = p->o.throttle_max;
	if (t != p->throttle) {
		p->throttle = t;
		p->throttle_raises++;
	}
}

enum hv_precopy_action mig_policy_decide(void *arg, const struct hv_precopy_stats *st)
{
	struct mig_policy *p = arg;
	/* bytes a page took on the wire in this pass (a page and its entry before any) */
	double page_bytes = st->pass_pages ? (double)st->pass_bytes / (double)st->pass_pages
					   : (double)HV_PAGE_SIZE + 8;
	double link = (double)st->link_rate_bps, dirty = (double)st->dirty_rate_pps * page_bytes;
	bool converging;

	if (st->total_ns >= p->o.timeout_ns) {
		snprintf(
			p->why, sizeof(p->why),
			"no convergence within %llu s (%llu pages left, throttle %u %%): given up, "
			"the source runs on",
			(unsigned long long)(p->o.timeout_ns / 1000000000ull),
			(unsigned long long)st->pending_pages, p->throttle);
		return decided(p, HV_PRECOPY_ABORT);
	}
	if (!st->pending_pages) {
		p->expected_downtime_ns = 0;
		snprintf(p->why, sizeof(p->why), "nothing left to copy");
		return decided(p, HV_PRECOPY_STOP_AND_COPY);
	}
	if (link <= 0) {
		/* nothing measured yet (an empty pass): one more to learn the link */
		snprintf(p->why, sizeof(p->why), "the link rate is not known yet");
		p->last_pending = st->pending_pages;
		return decided(p, HV_PRECOPY_CONTINUE);
	}
	p->expected_downtime_ns = (uint64_t)((double)st->pending_pages * page_bytes / link * 1e9);
	if (p->expected_downtime_ns <= (uint64_t)p->o.downtime_ms * NS_PER_MS) {
		snprintf(p->why, sizeof(p->why),
			 "%llu pages left: about %.1f ms at %.0f MB/s, within the %u ms downtime",
			 (unsigned long long)st->pending_pages,
			 (double)p->expected_downtime_ns / 1e6, link / 1e6, p->o.downtime_ms);
		return decided(p, HV_PRECOPY_STOP_AND_COPY);
	}
	converging = dirty * CONVERGE_DEN < link * CONVERGE_NUM &&
		     (st->passes < 2 || st->pending_pages < p->last_pending);
	p->last_pending = st->pending_pages;
	if (converging) {
		p->stalled = 0;
		snprintf(p->why, sizeof(p->why), "%llu pages left, converging",
			 (unsigned long long)st->pending_pages);
		return decided(p, HV_PRECOPY_CONTINUE);
	}
	if (++p->stalled >= STALLS_TO_THROTTLE) {
		p->stalled = 0;
		raise_throttle(p);
	}
	snprintf(p->why, sizeof(p->why),
		 "not converging: the guest dirties %.0f MB/s against a %.0f MB/s link; throttle "
		 "%u %%%s",
		 dirty / 1e6, link / 1e6, p->throttle,
		 p->o.no_throttle ? " (throttling is off)" : "");
	return decided(p, HV_PRECOPY_CONTINUE);
}
