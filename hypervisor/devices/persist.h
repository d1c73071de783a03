/*
 * Device state in the stream (private to hypervisor/): every device saves and
 * loads its own castor.DeviceState (proto/state.proto) behind a const struct
 * persist_ops, as Firecracker's devices implement Persist. persist.c only
 * walks the VM's devices, frames the DEVICE records and checks that a
 * snapshot's devices are this VM's; what a device's state is stays in that
 * device's file. Adding a device means its ops table and one
 * persist_register() where the device is created.
 */
#ifndef CASTOR_HV_PERSIST_H
#define CASTOR_HV_PERSIST_H

#include <stdbool.h>
#include <stddef.h>

#include "state.pb-c.h"

struct hv_vm;

/*
 * Memory for the parts of one record while it is built (sub-messages, repeated
 * fields): zeroed, freed by persist.c once the record is packed. A save hook
 * may also point into its device (a name, a MAC), which outlives the packing.
 */
struct persist_mem;
void *persist_alloc(struct persist_mem *mem, size_t size); /* NULL: out of memory */
/* A message of type `desc` from `mem`, already initialised (its INIT value); NULL: no memory. */
void *persist_new(struct persist_mem *mem, const ProtobufCMessageDescriptor *desc);

struct persist_ops {
	/* The member of DeviceState.state this device's records carry. */
	Castor__DeviceState__StateCase kind;
	/*
	 * Whether every snapshot must hold this device's record: a restore
	 * without it is refused by name. The virtio devices are required (the
	 * --net and --disk options must match the snapshot's); the 16550 and the
	 * test device are not.
	 */
	bool required;
	/* Whether the device has state to save now (may be NULL: always). */
	bool (*has_state)(void *dev);
	/*
	 * Fill `out` -- its state member and state_case; persist.c sets the id --
	 * with the VM paused. 0 or -errno.
	 */
	int (*save)(void *dev, Castor__DeviceState *out, struct persist_mem *mem);
	/*
	 * Check `in` (its state_case is `kind`) against this device and apply it,
	 * before the VM first runs. A mismatch is -EINVAL with `why` naming the
	 * device, and leaves the device as it was.
	 */
	int (*load)(void *dev, const Castor__DeviceState *in, char *why, size_t why_len);
	/* After a restore, before the VM runs again (may be NULL): see persist_devices_restart. */
	void (*restart)(void *dev);
};

/*
 * Register a device whose state goes into snapshots under `id` (not copied: it
 * must live as long as the device). Records are written by ascending `rank`,
 * then in the order the devices were registered. -ENOSPC when the VM has as
 * many as it can hold (HV_MAX_DEVS).
 */
int persist_register(struct hv_vm *vm, const struct persist_ops *ops, void *dev, const char *id,
		     unsigned rank);

extern const struct persist_ops serial_persist_ops;  /* devices/serial.c */
extern const struct persist_ops testdev_persist_ops; /* devices/testdev.c */

#endif
