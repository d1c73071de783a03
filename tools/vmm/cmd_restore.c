/*
 * castor-vmm restore: a VM rebuilt from a snapshot chain (a full snapshot and
 * its incrementals), started at once unless --paused; --lazy runs it before
 * its RAM is loaded.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tools/vmm/cmds.h"

static int build(struct vmm *v)
{
	struct vmm_opts *o = v->o;
	const uint8_t *maps[MAX_SNAPSHOTS];
	size_t lens[MAX_SNAPSHOTS];
	char why[512];
	int rc;

	rc = vmm_map_snapshots(o->snapshots, o->nsnapshots, maps, lens, why, sizeof(why));
	if (!rc) {
		rc = hv_snapshot_restore(&o->vm, maps, lens, o->nsnapshots,
					 o->lazy ? HV_RESTORE_LAZY : 0, vmm_restore_add_devices, v,
					 &v->vm, why, sizeof(why));
		/* a lazy VM loads its pages from these mappings: they live with the process */
		if (rc < 0 || !o->lazy)
			vmm_unmap_snapshots(maps, lens, o->nsnapshots);
	}
	if (rc < 0)
		fprintf(stderr, "castor-vmm: cannot restore: %s\n", why);
	return rc;
}

static int start(struct vmm *v)
{
	int rc = hv_vm_start(v->vm);

	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot start the VM: %s\n", strerror(-rc));
		return rc;
	}
	if (v->o->start_paused)
		vmm_control_hold_pause(v->ctl);
	return 0;
}

static const struct vmm_role_ops restore_role = {.build = build, .start = start};

int vmm_cmd_restore(int argc, char **argv)
{
	struct vmm_opts o;
	int rc;

	rc = vmm_cmd_opts(VMM_RESTORE, argc, argv, &o);
	if (rc)
		return rc;
	if (!o.nsnapshots)
		return vmm_bad_usage("--snapshot FILE is required");
	return vmm_serve(&o, &restore_role);
}
