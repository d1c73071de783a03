/*
 * castor-vmm replica: waits for a primary on --listen and keeps its twin,
 * one epoch behind; `castor ha failover` starts the twin, which then runs
 * here as any VM does (and can be protected in turn). The guest, its RAM size
 * and the session's options come from the primary.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "tools/vmm/cmds.h"

void vmm_secondary_opts(struct vmm *v, struct repl_secondary_opts *so)
{
	struct vmm_opts *o = v->o;

	*so = (struct repl_secondary_opts){
		.listen = o->listen,
		.conn = o->ro.conn,
		.key = o->ro.key,
		.encrypt = o->ro.encrypt,
		.vm = o->vm,
		.add_devices = vmm_restore_add_devices,
		.add_devices_arg = v,
		.thread_nice = o->ro.thread_nice,
		.thread_rt = o->ro.thread_rt,
		.log_cb = vmm_event_line,
	};
	/* the twin's disks: the writable ones receive the primary's writes */
	for (unsigned i = 0; i < o->ndisks && i < REPL_DISK_MAX; i++)
		so->disks[so->ndisks++] = (struct repl_twin_disk){
			.path = o->disks[i].path, .read_only = o->disks[i].read_only};
}

static int build(struct vmm *v)
{
	struct repl_secondary_opts so;
	char why[512];
	int rc;

	vmm_secondary_opts(v, &so);
	rc = repl_secondary_start(&so, &v->secondary, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "castor-vmm: replica: %s\n", why);
	return rc;
}

static const struct vmm_role_ops replica_role = {.build = build};

int vmm_cmd_listening(unsigned cmd, const struct vmm_role_ops *role, int argc, char **argv)
{
	struct vmm_opts o;
	struct sockaddr_storage ss;
	unsigned sslen;
	char why[256];
	int rc;

	rc = vmm_cmd_opts(cmd, argc, argv, &o);
	if (rc)
		return rc;
	if (!o.listen)
		return vmm_bad_usage("--listen HOST:PORT is required");
	if (repl_parse_addr(o.listen, &ss, &sslen, why, sizeof(why)) < 0)
		return vmm_bad_usage("--listen: %s", why);
	if (vmm_link_allowed(&o, "--listen", o.listen, why, sizeof(why)) < 0)
		return vmm_bad_usage("%s", why);
	rc = vmm_serve(&o, role);
	repl_key_wipe(&o.key);
	return rc;
}

int vmm_cmd_replica(int argc, char **argv)
{
	return vmm_cmd_listening(VMM_REPLICA, &replica_role, argc, argv);
}
