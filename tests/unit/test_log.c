/*
 * Warnings a guest can cause (LOG_GUEST_WARN, util_log_limited) cannot flood
 * the log: a burst from one call site gives one line, and the next line let
 * through says how many were held back. stderr goes to a file for the test.
 */
#define LOG_TAG "test"
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/castor-test-log.XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	static char buf[8192];
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

static unsigned lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void burst(void)
{
	for (int i = 0; i < 1000; i++)
		LOG_GUEST_WARN("bad frame %d", i);
}

static struct util_ratelimit *later_rl;

static void later(void)
{
	util_log_limited(later_rl, LOG_LVL_WARN, "t", "later");
}

static void guest_warnings_are_limited(void **state)
{
	struct util_ratelimit rl = {.interval_ns = 100000000ull}; /* 0.1 s */
	char *out;

	(void)state;
	util_log_set_level(LOG_LVL_WARN);
	out = capture(burst);
	assert_int_equal(lines(out), 1);
	assert_non_null(strstr(out, "bad frame 0"));

	/* the limiter itself: one line, then after the interval one with the count */
	util_log_limited(&rl, LOG_LVL_WARN, "t", "first");
	for (int i = 0; i < 41; i++)
		util_log_limited(&rl, LOG_LVL_WARN, "t", "again");
	assert_int_equal(rl.suppressed, 41);
	usleep(150000);
	later_rl = &rl;
	out = capture(later);
	assert_non_null(strstr(out, "later (41 more like this since)"));
	assert_int_equal(rl.suppressed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(guest_warnings_are_limited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
