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
/*
 * castor-vmm standby (main.c owns it): a VM created and made ready ahead of
 * time -- KVM slots registered, devices attached, RAM allocated unless lazy --
 * that a RestoreRequest fills from a snapshot chain and starts.
 */
struct vmm_standby {
	struct hv_vm *vm; /* blank until a restore succeeds, then the running VM */
	bool lazy;	  /* restores load RAM on first touch */
	bool used;	  /* a chain was restored into it */
};
/*
 * Restore the chain of snapshot files `paths` into the standby's VM and start
 * it. On failure `why` says why and the VM stays blank, ready for another try.
 */
int vmm_standby_restore(struct vmm_standby *sb, char *const *paths, unsigned n, uint64_t *bytes,
			char *why, size_t why_len);

struct vmm_ha {
	struct repl_primary *primary;
	struct repl_secondary *secondary;
	struct nb_queue *outq;	     /* the test device's outputs */
	uint64_t outputs_dropped;    /* refused by a full queue (atomic) */
	bool kick_on_output;	     /* output mode: an output ends the epoch */
	struct hv_vm *failed_over;   /* replica: the twin, running, after failover */
	struct vmm_standby *standby; /* castor-vmm standby */
	struct vmm_devices *devs;    /* where released frames go */
};

/* `vm` may be NULL on a replica until failover; `ha` may be NULL. */
int vmm_control_open(struct event_base *base, struct hv_vm *vm, const struct vmm_devices *devs,
		     struct vmm_ha *ha, const char *path, struct vmm_control **ctl_out);
/* Pause the VM on behalf of the control socket (as `castor vm pause` would). */
int vmm_control_hold_pause(struct vmm_control *ctl);
/* Closes every connection and removes the socket file. NULL is fine. */
void vmm_control_free(struct vmm_control *ctl);

#endif
