/*
 * hv_io.h: the I/O thread ("hv-io"), one event loop per VM for devices and
 * backends that work asynchronously. Its callbacks pass the pause gate, so a
 * paused VM sees no device activity. Part of castor_hv's public header hv.h.
 */
#ifndef CASTOR_HV_IO_H
#define CASTOR_HV_IO_H

#include <stdbool.h>

struct hv_vm;

/* ---- the I/O thread ------------------------------------------------------------------ */

/*
 * Watch an fd on the I/O thread's event loop. Callbacks pass the pause gate:
 * none runs while the VM is paused, and a pause waits for a running one.
 * `events` is HV_IO_READ and/or HV_IO_WRITE; the watch starts enabled and
 * persists. The fd stays the caller's.
 */
#define HV_IO_READ  0x02
#define HV_IO_WRITE 0x04
struct hv_io_watch;
typedef void (*hv_io_fn)(void *arg, int fd, short events);
int hv_io_watch_add(struct hv_vm *vm, int fd, short events, hv_io_fn cb, void *arg,
		    struct hv_io_watch **out);
int hv_io_watch_enable(struct hv_io_watch *w, bool on);
void hv_io_watch_free(struct hv_io_watch *w); /* NULL is fine */
/* Run fn(arg) once on the I/O thread, behind the gate (from any thread). */
int hv_io_call(struct hv_vm *vm, void (*fn)(void *arg), void *arg);

#endif
