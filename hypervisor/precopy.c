/*
 * The precopy loop (hv_precopy.h) and the pass-count policy. The loop runs
 * inside hv_snapshot_save_opts(), between the stream's HEADER and the pause:
 * each pass takes the snapshot chain's dirty log, writes those pages while
 * the guest runs, measures the pass and asks the policy what next.
 */
#define LOG_TAG "precopy"
#include <errno.h>
#include <inttypes.h>

#include "hypervisor/hv_int.h"

const char *hv_precopy_action_str(enum hv_precopy_action a)
{
	switch (a) {
	case HV_PRECOPY_CONTINUE:
		return "continue";
	case HV_PRECOPY_STOP_AND_COPY:
		return "stop-and-copy";
	case HV_PRECOPY_ABORT:
		return "abort";
	}
	return "?";
}

enum hv_precopy_action hv_precopy_passes_policy(void *arg, const struct hv_precopy_stats *st)
{
	const struct hv_precopy_passes *p = arg;

	if (st->passes >= p->max_passes || st->pending_pages <= p->stop_pages)
		return HV_PRECOPY_STOP_AND_COPY;
	return HV_PRECOPY_CONTINUE;
}

static uint64_t per_second(uint64_t n, uint64_t ns)
{
	return ns ? (uint64_t)((double)n * 1e9 / (double)ns) : 0;
}

int precopy_run(struct hv_snap_chain *c, struct hv_stream_writer *w, struct util_bitmap *dirty,
		hv_precopy_policy_fn policy, void *arg, struct hv_precopy_stats *st)
{
	struct hv_vm *vm = c->vm;
	uint64_t t0 = util_now_ns();
	enum hv_precopy_action a = HV_PRECOPY_CONTINUE;
	int rc;

	*st = (struct hv_precopy_stats){.ram_pages = vm->mem.pages};
	while (a == HV_PRECOPY_CONTINUE) {
		uint64_t tp = util_now_ns(), b0 = hv_stream_writer_bytes(w), n;

		rc = hv_dirty_log_take(c->log, dirty, NULL);
		if (rc < 0)
			return rc;
		n = snapshot_collect(c, dirty);
		rc = hv_stream_write_pages(w, c->pfns, n, vm->mem.base);
		if (rc < 0)
			return rc;
		st->passes++;
		st->pass_pages = n;
		st->pass_bytes = hv_stream_writer_bytes(w) - b0;
		st->pass_ns = util_now_ns() - tp;
		st->total_pages += n;
		st->total_ns = util_now_ns() - t0;
		rc = hv_dirty_log_count(c->log, &st->pending_pages);
		if (rc < 0)
			return rc;
		st->dirty_rate_pps = per_second(st->pending_pages, st->pass_ns);
		st->link_rate_bps = per_second(st->pass_bytes, st->pass_ns);
		a = policy(arg, st);
		LOG_DBG("vm %s: pass %u: %" PRIu64 " pages in %.1f ms, %" PRIu64 " dirty since; %s",
			vm->name, st->passes, n, (double)st->pass_ns / 1e6, st->pending_pages,
			hv_precopy_action_str(a));
	}
	return a == HV_PRECOPY_ABORT ? -ECANCELED : 0;
}
