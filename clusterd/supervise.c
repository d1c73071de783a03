/*
 * The processes castord starts (docs/cluster.md): one castor-vmm per VM that
 * runs on this host. Each is spawned with its output appended to a log file
 * of its own, watched through a pidfd on castord's event loop -- so a crash
 * is known the moment it happens, with its wait status and the last line it
 * printed -- and called ready once its control socket exists.
 */
#define LOG_TAG "supervise"
#include "clusterd/cluster.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/util.h"

#define READY_POLL_MS 100
#define LAST_LINE_MAX 160

struct cd_proc {
	char name[CD_NAME_MAX];
	pid_t pid;
	int pidfd;
	bool exited;
	char log_path[CD_PATH_MAX + CD_NAME_MAX + 16];
	char ready_path[CD_PATH_MAX + CD_NAME_MAX + 16];
	struct event *exit_ev, *ready_ev;
	cd_proc_ready_fn ready_cb;
	cd_proc_exit_fn exit_cb;
	void *arg;
};

void cd_wait_status_str(int wstatus, char *buf, size_t len)
{
	if (wstatus < 0)
		snprintf(buf, len, "ended (status unknown)");
	else if (WIFEXITED(wstatus))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(wstatus),
			 strsignal(WTERMSIG(wstatus)));
	else
		snprintf(buf, len, "ended (wait status 0x%x)", (unsigned)wstatus);
}

/*
 * What the child said last, for the operator: the last line castor-vmm wrote
 * as itself ("castor-vmm: ..."), else the last non-empty line ("" when none).
 */
static void last_line(const char *path, char *out, size_t len)
{
	char buf[4096];
	ssize_t r = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *line, *save = NULL, *pick = NULL, *own = NULL;
	size_t n;

	out[0] = 0;
	if (fd >= 0) {
		off_t size = lseek(fd, 0, SEEK_END);

		if (size > 0)
			r = pread(fd, buf, sizeof(buf) - 1,
				  size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1
								: 0);
		close(fd);
	}
	if (r <= 0)
		return;
	buf[r] = 0;
	for (line = strtok_r(buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		if (!line[strspn(line, " \t")])
			continue;
		pick = line;
		if (!strncmp(line, "castor-vmm: ", 12))
			own = line;
	}
	if (own)
		pick = own;
	if (!pick)
		return;
	n = strlen(pick) < len - 1 ? strlen(pick) : len - 1;
	memcpy(out, pick, n);
	out[n] = 0;
}

static void exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cd_proc *p = arg;
	char line[LAST_LINE_MAX], st[96];
	int wstatus = -1;

	(void)fd;
	(void)what;
	if (waitpid(p->pid, &wstatus, WNOHANG) != p->pid)
		wstatus = -1;
	p->exited = true;
	if (p->ready_ev)
		event_del(p->ready_ev);
	last_line(p->log_path, line, sizeof(line));
	cd_wait_status_str(wstatus, st, sizeof(st));
	LOG_INFO("%s: castor-vmm (pid %d) %s%s%s", p->name, (int)p->pid, st, line[0] ? ": " : "",
		 line);
	p->exit_cb(p->arg, p, wstatus, line);
}

static void ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cd_proc *p = arg;
	struct stat sb;

	(void)fd;
	(void)what;
	if (p->exited || stat(p->ready_path, &sb) < 0 || !S_ISSOCK(sb.st_mode))
		return;
	event_del(p->ready_ev);
	LOG_INFO("%s: castor-vmm (pid %d) is ready: %s", p->name, (int)p->pid, p->ready_path);
	p->ready_cb(p->arg, p);
}

static int spawn(struct cd_proc *p, char *const argv[], int log_fd, char *why, size_t why_len)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	int r;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dflt);
	sigaddset(&dflt, SIGPIPE); /* castord ignores it; castor-vmm expects the default */
	sigaddset(&dflt, SIGTERM);
	sigaddset(&dflt, SIGINT);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	/* its own process group: a signal to castord's group does not reach the VMs */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, log_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, log_fd, 2);
	r = posix_spawnp(&p->pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r)
		return util_why(why, why_len, -r, "cannot start %s: %s", argv[0], strerror(r));
	return 0;
}

int cd_proc_start(struct event_base *base, const struct cd_proc_spec *spec, struct cd_proc **out,
		  char *why, size_t why_len)
{
	struct cd_proc *p = calloc(1, sizeof(*p));
	int log_fd = -1, rc;

	if (!p)
		return -ENOMEM;
	p->pidfd = -1;
	snprintf(p->name, sizeof(p->name), "%s", spec->name);
	snprintf(p->log_path, sizeof(p->log_path), "%s", spec->log_path);
	snprintf(p->ready_path, sizeof(p->ready_path), "%s", spec->ready_path);
	p->ready_cb = spec->ready_cb;
	p->exit_cb = spec->exit_cb;
	p->arg = spec->arg;
	log_fd = open(spec->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (log_fd < 0) {
		rc = util_why(why, why_len, -errno, "log file %s: %s", spec->log_path,
			      strerror(errno));
		goto fail;
	}
	rc = spawn(p, spec->argv, log_fd, why, why_len);
	if (rc < 0)
		goto fail;
	p->pidfd = pidfd_open(p->pid, 0);
	if (p->pidfd < 0) {
		rc = util_why(why, why_len, -errno, "pidfd_open: %s", strerror(errno));
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		goto fail;
	}
	p->exit_ev = event_new(base, p->pidfd, EV_READ, exit_cb, p);
	p->ready_ev = event_new(base, -1, EV_PERSIST, ready_cb, p);
	if (!p->exit_ev || !p->ready_ev || event_add(p->exit_ev, NULL) < 0) {
		rc = util_why(why, why_len, -ENOMEM, "cannot watch the process");
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		goto fail;
	}
	{
		const struct timeval tv = {0, READY_POLL_MS * 1000};

		event_add(p->ready_ev, &tv);
	}
	close(log_fd);
	LOG_INFO("%s: castor-vmm started, pid %d, log %s", p->name, (int)p->pid, p->log_path);
	*out = p;
	return 0;
fail:
	if (log_fd >= 0)
		close(log_fd);
	cd_proc_free(p);
	return rc;
}

bool cd_proc_is_running(const struct cd_proc *p)
{
	siginfo_t si;

	if (p->exited)
		return false;
	memset(&si, 0, sizeof(si));
	/* WNOWAIT: leave the zombie for exit_cb, which reaps it and reports */
	if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return false;
	return si.si_pid == 0;
}

pid_t cd_proc_pid(const struct cd_proc *p)
{
	return p->pid;
}

const char *cd_proc_name(const struct cd_proc *p)
{
	return p->name;
}

int cd_proc_kill(struct cd_proc *p, int sig)
{
	if (p->exited)
		return -ESRCH;
	/* through the pidfd: never a recycled pid */
	return pidfd_send_signal(p->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

void cd_proc_free(struct cd_proc *p)
{
	if (!p)
		return;
	if (p->pid > 0 && !p->exited) {
		if (p->pidfd >= 0)
			pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
		waitpid(p->pid, NULL, 0);
	}
	if (p->exit_ev)
		event_free(p->exit_ev);
	if (p->ready_ev)
		event_free(p->ready_ev);
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
}
