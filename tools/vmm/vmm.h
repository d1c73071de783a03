/* castor-vmm internals: the control server (control.c) and its owner (main.c). */
#ifndef CASTOR_TOOLS_VMM_H
#define CASTOR_TOOLS_VMM_H

#include <stdbool.h>

#include "hypervisor/hv.h"

#define HV_MAX_DEVICES 4 /* NICs and disks, each, on castor-vmm's command line */

struct event_base;
struct vmm_control;

/*
 * Listen on `path` (a unix socket) and serve control requests for `vm` on
 * `base`. A stale socket file is replaced; one a live process answers on is
 * refused with -EADDRINUSE. QuitRequest ends the loop after its reply.
 */
/* The VM's devices, for status (owned by main.c). */
struct nb_tap;
struct vmm_disk {
	struct hv_blk *blk;
	const char *path;
	bool read_only;
};
struct vmm_devices {
	struct nb_tap *taps[HV_MAX_DEVICES];
	unsigned ntaps;
	struct vmm_disk disks[HV_MAX_DEVICES];
	unsigned ndisks;
};

int vmm_control_open(struct event_base *base, struct hv_vm *vm, const struct vmm_devices *devs,
		     const char *path, struct vmm_control **ctl_out);
/* Pause the VM on behalf of the control socket (as `castor vm pause` would). */
int vmm_control_hold_pause(struct vmm_control *ctl);
/* Closes every connection and removes the socket file. NULL is fine. */
void vmm_control_free(struct vmm_control *ctl);

#endif
