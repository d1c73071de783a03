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
	uint8_t macs[HV_MAX_DEVICES][6];
	unsigned ntaps;
	struct vmm_disk disks[HV_MAX_DEVICES];
	unsigned ndisks;
};

/*
 * Replication of this VMM (main.c owns it): a primary protecting its VM, or
 * a replica whose twin starts on failover. Absent: NULL.
 */
struct repl_primary;
struct repl_secondary;
struct nb_queue;
struct vmm_ha {
	struct repl_primary *primary;
	struct repl_secondary *secondary;
	struct nb_queue *outq;	   /* the test device's outputs */
	uint64_t outputs_dropped;  /* refused by a full queue (atomic) */
	bool kick_on_output;	   /* output mode: an output ends the epoch */
	struct hv_vm *failed_over; /* replica: the twin, running, after failover */
	struct vmm_devices *devs;  /* where released frames go */
};

/* `vm` may be NULL on a replica until failover; `ha` may be NULL. */
int vmm_control_open(struct event_base *base, struct hv_vm *vm, const struct vmm_devices *devs,
		     struct vmm_ha *ha, const char *path, struct vmm_control **ctl_out);
/* Pause the VM on behalf of the control socket (as `castor vm pause` would). */
int vmm_control_hold_pause(struct vmm_control *ctl);
/* Closes every connection and removes the socket file. NULL is fine. */
void vmm_control_free(struct vmm_control *ctl);

#endif
