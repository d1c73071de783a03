/*
 * castord's supervision of castor-vmm (clusterd/supervise.c) on real
 * processes: a replica castor-vmm (it needs no /dev/kvm) is called ready once
 * its control socket exists and its death by SIGKILL is reported at once
 * with the signal; a castor-vmm that refuses its command line is reported
 * with its exit status and its own last words; a program that does not exist
 * or a log that cannot be opened is an error at start, not a silent child.
 *   unit_supervise CASTOR_VMM
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clusterd/cluster.h"

static const char *vmm;
static char dir[] = "/tmp/castor-test-supervise.XXXXXX";

struct seen {
	struct event_base *base;
	bool ready, exited;
	int wstatus;
	char line[200];
};

static void child_ready(void *arg, struct cd_proc *p)
{
	struct seen *s = arg;

	assert_true(cd_proc_pid(p) > 0);
	s->ready = true;
	event_base_loopbreak(s->base);
}

static void child_exited(void *arg, struct cd_proc *p, int wstatus, const char *line)
{
	struct seen *s = arg;

	(void)p;
	s->exited = true;
	s->wstatus = wstatus;
	snprintf(s->line, sizeof(s->line), "%s", line);
	event_base_loopbreak(s->base);
}

/* Run the loop until a callback breaks it; 20 s at most. */
static void loop(struct seen *s)
{
	struct timeval tv = {20, 0};

	event_base_loopexit(s->base, &tv);
	event_base_dispatch(s->base);
}

static void replica_ready_then_killed(void **state)
{
	char sock[128], log[128];
	char *argv[] = {(char *)vmm, "replica", "--listen", "127.0.0.1:0", "--control", sock, NULL};
	struct seen s = {.base = event_base_new()};
	struct cd_proc_spec spec = {.name = "vm1",
				    .argv = argv,
				    .log_path = log,
				    .ready_path = sock,
				    .ready_cb = child_ready,
				    .exit_cb = child_exited,
				    .arg = &s};
	struct cd_proc *p = NULL;
	char why[256];

	(void)state;
	snprintf(sock, sizeof(sock), "%s/vm1.sock", dir);
	snprintf(log, sizeof(log), "%s/vm1.log", dir);
	assert_int_equal(cd_proc_start(s.base, &spec, &p, why, sizeof(why)), 0);
	loop(&s);
	assert_true(s.ready);
	assert_false(s.exited);
	assert_int_equal(cd_proc_kill(p, SIGKILL), 0);
	loop(&s);
	assert_true(s.exited);
	assert_true(WIFSIGNALED(s.wstatus) && WTERMSIG(s.wstatus) == SIGKILL);
	cd_wait_status_str(s.wstatus, why, sizeof(why));
	assert_string_equal(why, "killed by signal 9 (Killed)");
	assert_int_equal(cd_proc_kill(p, SIGTERM), -ESRCH);
	cd_proc_free(p);
	event_base_free(s.base);
}

static void refused_command_line(void **state)
{
	char log[128];
	char *argv[] = {(char *)vmm,
			"run",
			"--mem",
			"64M",
			"--cpus",
			"0",
			"--test-guest",
			"--control",
			"/nonexistent/x.sock",
			NULL};
	struct seen s = {.base = event_base_new()};
	struct cd_proc_spec spec = {.name = "vm2",
				    .argv = argv,
				    .log_path = log,
				    .ready_path = "/nonexistent/x.sock",
				    .ready_cb = child_ready,
				    .exit_cb = child_exited,
				    .arg = &s};
	struct cd_proc *p = NULL;
	char why[256];

	(void)state;
	snprintf(log, sizeof(log), "%s/vm2.log", dir);
	assert_int_equal(cd_proc_start(s.base, &spec, &p, why, sizeof(why)), 0);
	loop(&s);
	assert_true(s.exited);
	assert_false(s.ready);
	assert_true(WIFEXITED(s.wstatus));
	assert_int_equal(WEXITSTATUS(s.wstatus), 2);
	/* castor-vmm's own sentence, not the "Try --help" line after it */
	if (strncmp(s.line, "castor-vmm: ", 12) || !strstr(s.line, "vCPU count 0"))
		fail_msg("last line: '%s'", s.line);
	cd_proc_free(p);
	event_base_free(s.base);
}

static void cannot_start(void **state)
{
	char *argv[] = {"/nonexistent/castor-vmm", NULL};
	char log[128];
	struct seen s = {.base = event_base_new()};
	struct cd_proc_spec spec = {.name = "vm3",
				    .argv = argv,
				    .log_path = log,
				    .ready_path = "/x",
				    .ready_cb = child_ready,
				    .exit_cb = child_exited,
				    .arg = &s};
	struct cd_proc *p = NULL;
	char why[256] = "";

	(void)state;
	snprintf(log, sizeof(log), "%s/vm3.log", dir);
	assert_int_equal(cd_proc_start(s.base, &spec, &p, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "cannot start /nonexistent/castor-vmm"));
	assert_null(p);
	argv[0] = (char *)vmm;
	spec.log_path = "/nonexistent/dir/vm3.log";
	assert_int_equal(cd_proc_start(s.base, &spec, &p, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "log file /nonexistent/dir/vm3.log"));
	event_base_free(s.base);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replica_ready_then_killed),
		cmocka_unit_test(refused_command_line),
		cmocka_unit_test(cannot_start),
	};
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: unit_supervise CASTOR_VMM\n");
		return 2;
	}
	vmm = argv[1];
	if (!mkdtemp(dir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			rc = rc ? rc : 1;
	}
	return rc;
}
