/*
 * What both ends of the checkpoint engine share: modes and states with their
 * names, the table of legal state changes, sample windows and the RAM digest.
 */
#define LOG_TAG "repl"
#include "replication/engine.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/util.h"

const char *repl_mode_str(enum repl_mode m)
{
	return m == REPL_MODE_OUTPUT ? "output" : m == REPL_MODE_ASYNC ? "async" : "interval";
}

int repl_mode_parse(const char *s, enum repl_mode *out)
{
	if (!strcmp(s, "interval"))
		*out = REPL_MODE_INTERVAL;
	else if (!strcmp(s, "output"))
		*out = REPL_MODE_OUTPUT;
	else if (!strcmp(s, "async"))
		*out = REPL_MODE_ASYNC;
	else
		return -EINVAL;
	return 0;
}

const char *repl_state_str(enum repl_state s)
{
	switch (s) {
	case REPL_S_IDLE:
		return "idle";
	case REPL_S_SYNCING:
		return "syncing";
	case REPL_S_PROTECTED:
		return "protected";
	case REPL_S_DEGRADED:
		return "degraded";
	case REPL_S_PRIMARY_LOST:
		return "primary-lost";
	case REPL_S_FAILED_OVER:
		return "failed-over";
	case REPL_S_STOPPED:
		return "stopped";
	case REPL_S_RELEASED:
		return "released";
	case REPL_S_MIGRATING:
		return "migrating";
	case REPL_S_MIGRATED:
		return "migrated";
	case REPL_S_IN_DOUBT:
		return "in-doubt";
	case REPL_S_SWITCHING:
		return "switching";
	case REPL_S_POSTCOPY:
		return "postcopy";
	case REPL_S_POSTCOPY_BROKEN:
		return "postcopy-broken";
	}
	return "?";
}

/* from -> to, one bit per allowed target state */
#define TO(s) (1u << (s))
static const unsigned allowed[REPL_N_STATES] = {
	[REPL_S_IDLE] = TO(REPL_S_SYNCING) | TO(REPL_S_STOPPED),
	/* a replica whose primary left before its initial copy was applied waits again */
	[REPL_S_SYNCING] = TO(REPL_S_PROTECTED) | TO(REPL_S_DEGRADED) | TO(REPL_S_PRIMARY_LOST) |
			   TO(REPL_S_STOPPED) | TO(REPL_S_IDLE) | TO(REPL_S_MIGRATING) |
			   TO(REPL_S_SWITCHING),
	[REPL_S_PROTECTED] = TO(REPL_S_DEGRADED) | TO(REPL_S_PRIMARY_LOST) |
			     TO(REPL_S_FAILED_OVER) | TO(REPL_S_STOPPED) | TO(REPL_S_RELEASED),
	/* async mode picks up where a broken link left it, at both ends (§8.7) */
	[REPL_S_DEGRADED] = TO(REPL_S_STOPPED) | TO(REPL_S_PROTECTED),
	[REPL_S_PRIMARY_LOST] = TO(REPL_S_FAILED_OVER) | TO(REPL_S_STOPPED) | TO(REPL_S_PROTECTED),
	[REPL_S_FAILED_OVER] = TO(REPL_S_STOPPED),
	[REPL_S_STOPPED] = 0,
	/* the primary said goodbye: a forced failover only */
	[REPL_S_RELEASED] = TO(REPL_S_FAILED_OVER) | TO(REPL_S_STOPPED),
	/* a migration's source: aborted (stopped, it runs on), done, or unsure */
	[REPL_S_MIGRATING] = TO(REPL_S_MIGRATED) | TO(REPL_S_IN_DOUBT) | TO(REPL_S_STOPPED) |
			     TO(REPL_S_POSTCOPY),
	/* postcopy: every page sent (migrated), or the link broke first */
	[REPL_S_POSTCOPY] = TO(REPL_S_MIGRATED) | TO(REPL_S_POSTCOPY_BROKEN) | TO(REPL_S_STOPPED) |
			    TO(REPL_S_IN_DOUBT),
	/* 'castor migrate --resume': the same pages, on a new connection */
	[REPL_S_POSTCOPY_BROKEN] = TO(REPL_S_STOPPED) | TO(REPL_S_POSTCOPY),
	[REPL_S_MIGRATED] = TO(REPL_S_STOPPED),
	[REPL_S_IN_DOUBT] = TO(REPL_S_STOPPED),
	/* a migration's destination: it runs, or it could not start (stopped) */
	[REPL_S_SWITCHING] = TO(REPL_S_FAILED_OVER) | TO(REPL_S_STOPPED),
};

int repl_state_change(const char *vm, enum repl_state *state, enum repl_state to, const char *why)
{
	if (*state == to)
		return 0;
	if ((unsigned)*state >= REPL_N_STATES || (unsigned)to >= REPL_N_STATES ||
	    !(allowed[*state] & TO(to))) {
		LOG_ERR("vm %s: refused state change %s -(%s)-> %s", vm, repl_state_str(*state),
			why, repl_state_str(to));
		return -EINVAL;
	}
	LOG_INFO("vm %s: %s -(%s)-> %s", vm, repl_state_str(*state), why, repl_state_str(to));
	*state = to;
	return 0;
}

void repl_window_add(struct repl_window *w, uint64_t x)
{
	w->v[w->n++ % REPL_WINDOW] = x;
}

uint64_t repl_window_pct(const struct repl_window *w, double pct)
{
	uint64_t tmp[REPL_WINDOW];
	size_t n = w->n < REPL_WINDOW ? (size_t)w->n : REPL_WINDOW;

	if (!n)
		return 0;
	memcpy(tmp, w->v, n * sizeof(tmp[0]));
	return util_percentile(tmp, n, pct);
}

uint32_t repl_ram_digest(const struct hv_vm *vm)
{
	return util_crc32c_final(util_crc32c_update(UTIL_CRC32C_INIT, hv_ram_base(vm),
						    (size_t)hv_ram_pages(vm) * HV_PAGE_SIZE));
}

void repl_log_event(repl_log_fn cb, void *arg, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!cb)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cb(arg, line);
}

int repl_sched_check(int nice, int rt, char *why, size_t why_len)
{
	if (nice < -20 || nice > 19)
		return util_why(why, why_len, -EINVAL, "nice value %d is not in -20..19", nice);
	if (rt < -1 || rt > 99)
		return util_why(why, why_len, -EINVAL,
				"real-time priority %d is not in 1..99 (0: default, -1: none)", rt);
	return 0;
}

void repl_thread_sched(const char *vm_name, int nice, int rt)
{
	struct sched_param sp = {.sched_priority = rt ? rt : REPL_DEFAULT_RT};
	int rc;

	/* on Linux a nice value belongs to a thread: PRIO_PROCESS with its tid */
	if (nice && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) < 0)
		LOG_WARN("vm %s: cannot set the replication thread's nice value to %d (%s)",
			 vm_name, nice, strerror(errno));
	if (rt < 0)
		return;
	rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	if (rc)
		LOG_WARN("vm %s: the replication thread stays in normal scheduling: SCHED_FIFO "
			 "priority %d refused (%s); it shares the cores with the vCPUs",
			 vm_name, sp.sched_priority, strerror(rc));
}
