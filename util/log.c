#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int log_level = -1;

static enum util_log_level level_from_env(void)
{
	const char *s = getenv("CASTOR_LOG");

	if (!s)
		return LOG_LVL_INFO;
	if (!strcasecmp(s, "debug") || !strcasecmp(s, "dbg"))
		return LOG_LVL_DBG;
	if (!strcasecmp(s, "warn"))
		return LOG_LVL_WARN;
	if (!strcasecmp(s, "err") || !strcasecmp(s, "error"))
		return LOG_LVL_ERR;
	return LOG_LVL_INFO;
}

void util_log_set_level(enum util_log_level level)
{
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

enum util_log_level util_log_get_level(void)
{
	int l = __atomic_load_n(&log_level, __ATOMIC_RELAXED);

	if (l < 0) {
		l = (int)level_from_env();
		__atomic_store_n(&log_level, l, __ATOMIC_RELAXED);
	}
	return (enum util_log_level)l;
}

void util_log(enum util_log_level level, const char *tag, int err, const char *fmt, ...)
{
	static const char *const names[] = {"ERR", "WARN", "INFO", "DBG"};
	char msg[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level > util_log_get_level())
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (err < 0 && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(-err));
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* one fprintf per message keeps lines from different threads whole */
	fprintf(stderr, "%02d:%02d:%02d.%06ld %s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000, names[level], tag, msg);
}

void util_log_limited(struct util_ratelimit *rl, enum util_log_level level, const char *tag,
		      const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	uint64_t more = 0;
	char msg[1024];
	va_list ap;
	bool open;

	if (level > util_log_get_level())
		return;
	pthread_mutex_lock(&lock);
	open = util_ratelimit_is_open(rl, util_now_ns(), &more);
	pthread_mutex_unlock(&lock);
	if (!open)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (more)
		util_log(level, tag, 0, "%s (%llu more like this since)", msg,
			 (unsigned long long)more);
	else
		util_log(level, tag, 0, "%s", msg);
}
