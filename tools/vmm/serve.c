/*
 * What every castor-vmm command does around its VM: the serial output and
 * the event log, the output queue, the control socket, the signals that end
 * the process, the event loop, and the teardown in the one order that is
 * safe (sessions stop before the VM: their threads pause it; the taps' watches
 * live on the VM's I/O thread, so the VM stops before the taps go).
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "netbuffer/netbuf.h"
#include "tools/vmm/vmm.h"

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	LOG_INFO("signal %d: shutting down", (int)sig);
	event_base_loopexit(arg, NULL);
}

static int open_serial(const char *path)
{
	if (!path || !strcmp(path, "-"))
		return dup(STDOUT_FILENO);
	if (!strcmp(path, "none"))
		return -1;
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

/*
 * Every disk image of this process is locked for its lifetime (flock, as
 * `castor disk` does): a writable one exclusively, a read-only one shared. Two
 * writers of one image -- a replica's copy that is in fact the primary's image
 * on shared storage, a second castor-vmm started by mistake, a `castor disk
 * sync` into it -- would corrupt it without a word. A previous owner that is
 * still exiting (quit, then restore) gets two seconds.
 */
#define LOCK_WAIT_MS 2000

static int lock_disks(const struct vmm_opts *o, int *fds)
{
	unsigned i, waited;

	for (i = 0; i < o->ndisks; i++) {
		const struct vmm_disk *d = &o->disks[i];

		fds[i] = open(d->path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			fprintf(stderr, "castor-vmm: disk %s: %s\n", d->path, strerror(errno));
			return -errno;
		}
		for (waited = 0;; waited += 50) {
			struct timespec ts = {0, 50 * 1000000L};

			if (!flock(fds[i], (d->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB))
				break;
			if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS) {
				fprintf(stderr,
					"castor-vmm: disk %s is in use: another process %s it (a "
					"castor-vmm, or a castor disk command); %s\n",
					d->path, d->read_only ? "writes" : "uses",
					d->read_only
						? "a read-only disk may be shared only with "
						  "readers"
						: "a writable disk belongs to one VM at a time, "
						  "and a replica needs its own copy");
				return -EBUSY;
			}
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

int vmm_serve(struct vmm_opts *o, const struct vmm_role_ops *role)
{
	int lock_fds[HV_MAX_DEVICES];
	struct vmm v = {.o = o, .mig_pipe = {-1, -1}};
	struct event_base *base = NULL;
	struct event *sigint_ev = NULL, *sigterm_ev = NULL;
	int rc, status = 1, serial_fd = -1;

	pthread_mutex_init(&v.kick_lock, NULL);
	v.name = o->vm.name ? o->vm.name : "vm";
	signal(SIGPIPE, SIG_IGN);
	for (unsigned i = 0; i < HV_MAX_DEVICES; i++)
		lock_fds[i] = -1;
	if (lock_disks(o, lock_fds) < 0)
		goto out;
	serial_fd = open_serial(o->serial);
	if (serial_fd < 0 && o->serial && strcmp(o->serial, "none")) {
		fprintf(stderr, "castor-vmm: cannot open serial output %s: %s\n", o->serial,
			strerror(errno));
		goto out;
	}
	o->vm.serial_fd = serial_fd;
	if (o->event_log && vmm_event_log_open(o->event_log) < 0) {
		fprintf(stderr, "castor-vmm: --event-log %s: %s\n", o->event_log, strerror(errno));
		goto out;
	}
	rc = vmm_outq_new(&v);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: output queue: %s\n", strerror(-rc));
		goto out;
	}
	if (role->build(&v) < 0)
		goto out;
	base = event_base_new();
	if (!base)
		goto out;
	v.base = base;
	rc = vmm_control_open(base, &v, o->control, &v.ctl);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: control socket %s: %s\n", o->control, strerror(-rc));
		goto out;
	}
	sigint_ev = evsignal_new(base, SIGINT, stop_cb, base);
	sigterm_ev = evsignal_new(base, SIGTERM, stop_cb, base);
	if (!sigint_ev || !sigterm_ev || evsignal_add(sigint_ev, NULL) < 0 ||
	    evsignal_add(sigterm_ev, NULL) < 0)
		goto out;
	if (role->start && role->start(&v) < 0)
		goto out;
	LOG_INFO("vm %s: control socket %s", v.name, o->control);
	event_base_dispatch(base);
	status = v.exit_status;
out:
	vmm_control_free(v.ctl);
	vmm_sessions_stop(&v);
	if (v.mig_watch)
		event_free(v.mig_watch);
	if (v.mig_end)
		event_free(v.mig_end);
	for (unsigned i = 0; i < 2; i++)
		if (v.mig_pipe[i] >= 0)
			close(v.mig_pipe[i]);
	if (!v.vm)
		v.vm = v.standby.vm;
	if (v.vm)
		hv_vm_stop(v.vm);
	for (unsigned i = 0; i < v.devs.ntaps; i++)
		nb_tap_free(v.devs.taps[i]);
	hv_vm_free(v.vm);
	nb_queue_free(v.outq);
	if (sigint_ev)
		event_free(sigint_ev);
	if (sigterm_ev)
		event_free(sigterm_ev);
	if (base)
		event_base_free(base);
	if (serial_fd >= 0)
		close(serial_fd);
	vmm_event_log_close();
	for (unsigned i = 0; i < HV_MAX_DEVICES; i++)
		if (lock_fds[i] >= 0)
			close(lock_fds[i]);
	pthread_mutex_destroy(&v.kick_lock);
	return status;
}
