/* castor-vmm internals: the control server (control.c) and its owner (main.c). */
#ifndef CASTOR_TOOLS_VMM_H
#define CASTOR_TOOLS_VMM_H

#include <stdbool.h>

#include "hypervisor/hv.h"

struct event_base;
struct vmm_control;

/*
 * Listen on `path` (a unix socket) and serve control requests for `vm` on
 * `base`. A stale socket file is replaced; one a live process answers on is
 * refused with -EADDRINUSE. QuitRequest ends the loop after its reply.
 */
int vmm_control_open(struct event_base *base, struct hv_vm *vm, const char *path,
		     struct vmm_control **ctl_out);
/* Closes every connection and removes the socket file. NULL is fine. */
void vmm_control_free(struct vmm_control *ctl);

#endif
