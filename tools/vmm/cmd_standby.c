/*
 * castor-vmm standby: a VM made ready before anyone asks -- created, devices
 * attached, KVM slots registered, RAM faulted in unless --lazy -- so that
 * `castor vm restore` only checks and copies a snapshot chain into it.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tools/vmm/cmds.h"

static int build(struct vmm *v)
{
	struct vmm_opts *o = v->o;
	struct vmm_standby *sb = &v->standby;
	uint64_t t0 = util_now_ns();
	int rc;

	v->is_standby = true;
	rc = hv_vm_create(&o->vm, &sb->vm);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot create the VM: %s\n", strerror(-rc));
		return rc;
	}
	sb->lazy = o->lazy;
	rc = vmm_add_devices(v, sb->vm);
	if (rc < 0)
		return rc;
	rc = hv_vm_prepare(sb->vm, !o->lazy);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot make the standby ready: %s\n", strerror(-rc));
		return rc;
	}
	LOG_INFO("vm %s: standby ready in %.1f ms: %u vCPUs, %" PRIu64 " MiB%s", hv_vm_name(sb->vm),
		 (double)(util_now_ns() - t0) / 1e6, hv_vm_ncpus(sb->vm),
		 hv_vm_mem_bytes(sb->vm) >> 20,
		 o->lazy ? ", RAM loads on first touch" : ", RAM allocated");
	return 0;
}

static const struct vmm_role_ops standby_role = {.build = build};

int vmm_cmd_standby(int argc, char **argv)
{
	struct vmm_opts o;
	char why[256];
	int rc;

	rc = vmm_cmd_opts(VMM_STANDBY, argc, argv, &o);
	if (rc)
		return rc;
	if (!o.have_mem || !o.have_cpus)
		return vmm_bad_usage("a standby needs --mem and --cpus (those of the snapshots it "
				     "will restore)");
	if (hv_vm_config_check(&o.vm, why, sizeof(why)) < 0)
		return vmm_bad_usage("%s", why);
	return vmm_serve(&o, &standby_role);
}
