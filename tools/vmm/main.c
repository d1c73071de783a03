/*
 * castor-vmm: runs one KVM guest and serves its control socket.
 *
 *   castor-vmm run --mem SIZE --cpus N --test-guest --control PATH [options]
 *   castor-vmm restore --snapshot FILE ... --control PATH [...]
 *   castor-vmm replica --listen HOST:PORT --control PATH [--net/--disk as the primary]
 *   castor-vmm standby --mem SIZE --cpus N --control PATH [--lazy] [--net/--disk as the original]
 *   castor-vmm incoming --listen HOST:PORT --control PATH [--net/--disk as the source]
 *
 * Each command lives in its own cmd_*.c; this file only finds it.
 * Exit status: 0 after a quit request or SIGTERM/SIGINT, 1 when the VM could
 * not be set up or run, 2 for a bad command line.
 */
#include <stdio.h>
#include <string.h>

#include "tools/vmm/cmds.h"

#ifndef CASTOR_GUEST_BIN
#define CASTOR_GUEST_BIN "castor-tg.bin"
#endif

static const struct vmm_cmd cmds[] = {
	{"run", vmm_cmd_run},	      {"restore", vmm_cmd_restore},   {"replica", vmm_cmd_replica},
	{"standby", vmm_cmd_standby}, {"incoming", vmm_cmd_incoming},
};

int vmm_cmd_opts(unsigned cmd, int argc, char **argv, struct vmm_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cmd = cmd;
	hv_tg_config_default(&o->tg);
	o->tg.image_path = CASTOR_GUEST_BIN;
	o->vm.serial_fd = -1;
	return vmm_opts_parse(argc, argv, o);
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
		vmm_usage(stdout);
		return 0;
	}
	for (i = 0; argc >= 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].main(argc - 1, argv + 1);
	if (argc < 2)
		fprintf(stderr, "castor-vmm: missing command\n");
	else
		fprintf(stderr, "castor-vmm: unknown command '%s'\n", argv[1]);
	vmm_usage(stderr);
	return 2;
}
