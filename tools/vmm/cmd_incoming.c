/*
 * castor-vmm incoming: the destination of a live migration (docs/migration.md).
 * It waits on --listen for one source (`castor migrate` on the VM's host),
 * takes its copy and rounds as a replica takes epochs, and starts the VM when
 * the source, paused for good, hands it over; from then on the VM runs here
 * as any VM does. If the source goes away or gives up before that, nothing
 * ever ran here and the process exits with status 1. The guest, its RAM size
 * and vCPUs come from the source; --net and --disk must match its devices.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/vmm/cmds.h"

/* The receiving thread: the source's stream ended (handed over, or lost). */
static void stream_ended(void *arg)
{
	struct vmm *v = arg;
	char c = 1;

	if (write(v->mig_pipe[1], &c, 1) < 0)
		LOG_ERRNO(-errno, "vm %s: cannot wake the main loop", v->name);
}

static int build(struct vmm *v)
{
	struct repl_secondary_opts so;
	char why[512];
	int rc;

	if (pipe2(v->mig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		fprintf(stderr, "castor-vmm: incoming: %s\n", strerror(errno));
		return rc;
	}
	vmm_secondary_opts(v, &so);
	so.incoming = true;
	so.on_end = stream_ended;
	so.end_arg = v;
	rc = repl_secondary_start(&so, &v->secondary, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "castor-vmm: incoming: %s\n", why);
	return rc;
}

static const struct vmm_role_ops incoming_role = {.build = build, .start = vmm_incoming_watch};

int vmm_cmd_incoming(int argc, char **argv)
{
	return vmm_cmd_listening(VMM_INCOMING, &incoming_role, argc, argv);
}
