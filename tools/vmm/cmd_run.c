/*
 * castor-vmm run: a new VM of the test guest or of a Linux kernel, started at once; with
 * --protect, protected from its first instruction (no output ever leaves it
 * unheld), as `castor ha protect` would protect it later.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <string.h>

#include "netbuffer/netbuf.h"
#include "tools/vmm/cmds.h"

static int build(struct vmm *v)
{
	struct vmm_opts *o = v->o;
	int rc;

	rc = hv_vm_create(&o->vm, &v->vm);
	if (rc < 0) {
		const char *kvm = o->vm.kvm_path ? o->vm.kvm_path : "/dev/kvm";

		if (rc == -ENOENT)
			fprintf(stderr,
				"castor-vmm: cannot create the VM: %s does not exist (no KVM "
				"on this host)\n",
				kvm);
		else
			fprintf(stderr, "castor-vmm: cannot create the VM: %s\n", strerror(-rc));
		return rc;
	}
	rc = vmm_add_devices(v, v->vm);
	if (rc < 0)
		return rc;
	if (o->kernel.kernel) {
		char why[512];

		rc = hv_linux_load(v->vm, &o->kernel, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: cannot load the kernel: %s\n", why);
			return rc;
		}
	} else {
		rc = hv_tg_load(v->vm, &o->tg);
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: cannot load the test guest %s: %s\n",
				o->tg.image_path, strerror(-rc));
			return rc;
		}
	}
	/*
	 * A protected VM never emits unheld output, not even before the first
	 * epoch; an async (disaster-recovery) copy holds none at all.
	 */
	if (o->protect && o->ro.mode != REPL_MODE_ASYNC)
		nb_queue_set_protected(v->outq, true, 0);
	return 0;
}

static int start(struct vmm *v)
{
	struct vmm_opts *o = v->o;
	char why[512];
	int rc;

	rc = hv_vm_start(v->vm);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot start the VM: %s\n", strerror(-rc));
		return rc;
	}
	if (!o->protect)
		return 0;
	o->ro.peer = o->protect;
	rc = vmm_protect(v, &o->ro, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "castor-vmm: --protect: %s\n", why);
	return rc;
}

static const struct vmm_role_ops run_role = {.build = build, .start = start};

int vmm_cmd_run(int argc, char **argv)
{
	struct vmm_opts o;
	struct sockaddr_storage ss;
	unsigned sslen;
	char why[512];
	int rc;

	rc = vmm_cmd_opts(VMM_RUN, argc, argv, &o);
	if (rc)
		return rc;
	if (!o.have_mem)
		return vmm_bad_usage("--mem is required");
	if (!o.have_cpus)
		return vmm_bad_usage("--cpus is required");
	if (o.test_guest && o.kernel.kernel)
		return vmm_bad_usage(
			"--test-guest and --kernel exclude each other: one guest per VM");
	if (!o.test_guest && !o.kernel.kernel)
		return vmm_bad_usage("give the guest: --test-guest or --kernel FILE");
	if (!o.kernel.kernel && (o.kernel.initrd || o.kernel.cmdline))
		return vmm_bad_usage("--initrd and --cmdline go with --kernel");
	if (hv_vm_config_check(&o.vm, why, sizeof(why)) < 0)
		return vmm_bad_usage("%s", why);
	/* the files are read and checked now: a bad kernel is refused before any VM exists */
	if (o.kernel.kernel && hv_linux_check(&o.kernel, o.vm.mem_bytes, why, sizeof(why)) < 0) {
		fprintf(stderr, "castor-vmm: %s\n", why);
		return 2; /* like any bad command line */
	}
	if (o.protect) {
		if (o.ro.mode == REPL_MODE_OUTPUT && o.ro.interval_ms &&
		    o.ro.min_spacing_ms > o.ro.interval_ms)
			return vmm_bad_usage("--min-spacing is longer than --interval");
		if (repl_parse_addr(o.protect, &ss, &sslen, why, sizeof(why)) < 0)
			return vmm_bad_usage("--protect: %s", why);
		if (vmm_link_allowed(&o, "--protect", o.protect, why, sizeof(why)) < 0)
			return vmm_bad_usage("%s", why);
	}
	rc = vmm_serve(&o, &run_role);
	repl_key_wipe(&o.key);
	return rc;
}
