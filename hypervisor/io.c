/*
 * The I/O thread: one libevent loop for devices that work asynchronously
 * (virtio queues, tap fds). Pausing the VM closes a gate that every device
 * callback passes through, so a pause never lands in the middle of one.
 */
#define LOG_TAG "io"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <stdlib.h>

static void *io_thread_main(void *arg)
{
	struct hv_io *io = arg;

	pthread_setname_np(pthread_self(), "hv-io");
	event_base_loop(io->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hv_io *io = arg;

	event_base_loopbreak(io->base);
}

int io_init(struct hv_io *io)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, (void (*)(void))evthread_use_pthreads);
	pthread_mutex_init(&io->gate_lock, NULL);
	pthread_cond_init(&io->gate_cond, NULL);
	io->base = event_base_new();
	if (!io->base)
		return -ENOMEM;
	io->stop_ev = event_new(io->base, -1, 0, stop_cb, io);
	if (!io->stop_ev)
		return -ENOMEM;
	return 0;
}

int io_start(struct hv_io *io)
{
	int r;

	r = pthread_create(&io->thread, NULL, io_thread_main, io);
	if (r)
		return -r;
	io->thread_started = true;
	return 0;
}

void io_stop(struct hv_io *io)
{
	if (!io->thread_started)
		return;
	event_active(io->stop_ev, 0, 0);
	pthread_join(io->thread, NULL);
	io->thread_started = false;
}

void io_dispose(struct hv_io *io)
{
	io_stop(io);
	if (io->stop_ev)
		event_free(io->stop_ev);
	io->stop_ev = NULL;
	if (io->base)
		event_base_free(io->base);
	io->base = NULL;
	pthread_cond_destroy(&io->gate_cond);
	pthread_mutex_destroy(&io->gate_lock);
}

void io_gate_close(struct hv_io *io)
{
	pthread_mutex_lock(&io->gate_lock);
	io->gate_closed = true;
	while (io->busy)
		pthread_cond_wait(&io->gate_cond, &io->gate_lock);
	pthread_mutex_unlock(&io->gate_lock);
}

void io_gate_open(struct hv_io *io)
{
	pthread_mutex_lock(&io->gate_lock);
	io->gate_closed = false;
	pthread_cond_broadcast(&io->gate_cond);
	pthread_mutex_unlock(&io->gate_lock);
}

/* ---- watches: every callback passes the pause gate -------------------------------- */

struct hv_io_watch {
	struct hv_io *io;
	struct event *ev;
	hv_io_fn cb;
	void *arg;
	bool enabled;
};

static void gate_enter(struct hv_io *io)
{
	pthread_mutex_lock(&io->gate_lock);
	while (io->gate_closed)
		pthread_cond_wait(&io->gate_cond, &io->gate_lock);
	io->busy = true;
	pthread_mutex_unlock(&io->gate_lock);
}

static void gate_leave(struct hv_io *io)
{
	pthread_mutex_lock(&io->gate_lock);
	io->busy = false;
	pthread_cond_broadcast(&io->gate_cond);
	pthread_mutex_unlock(&io->gate_lock);
}

static void watch_trampoline(evutil_socket_t fd, short what, void *arg)
{
	struct hv_io_watch *w = arg;

	gate_enter(w->io);
	w->cb(w->arg, fd, what);
	gate_leave(w->io);
}

int hv_io_watch_add(struct hv_vm *vm, int fd, short events, hv_io_fn cb, void *arg,
		    struct hv_io_watch **out)
{
	struct hv_io_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->io = &vm->io;
	w->cb = cb;
	w->arg = arg;
	w->ev = event_new(vm->io.base, fd, (short)(events | EV_PERSIST), watch_trampoline, w);
	if (!w->ev) {
		free(w);
		return -ENOMEM;
	}
	if (event_add(w->ev, NULL) < 0) {
		event_free(w->ev);
		free(w);
		return -EIO;
	}
	w->enabled = true;
	*out = w;
	return 0;
}

int hv_io_watch_enable(struct hv_io_watch *w, bool on)
{
	if (on == w->enabled)
		return 0;
	if ((on ? event_add(w->ev, NULL) : event_del(w->ev)) < 0)
		return -EIO;
	w->enabled = on;
	return 0;
}

void hv_io_watch_free(struct hv_io_watch *w)
{
	if (!w)
		return;
	event_free(w->ev); /* event_free deletes it first, waiting for a running callback */
	free(w);
}

struct io_call {
	struct hv_io *io;
	void (*fn)(void *);
	void *arg;
};

static void call_trampoline(evutil_socket_t fd, short what, void *arg)
{
	struct io_call *c = arg;

	gate_enter(c->io);
	c->fn(c->arg);
	gate_leave(c->io);
	free(c);
}

int hv_io_call(struct hv_vm *vm, void (*fn)(void *arg), void *arg)
{
	struct io_call *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->io = &vm->io;
	c->fn = fn;
	c->arg = arg;
	if (event_base_once(vm->io.base, -1, EV_TIMEOUT, call_trampoline, c, NULL) < 0) {
		free(c);
		return -EIO;
	}
	return 0;
}
