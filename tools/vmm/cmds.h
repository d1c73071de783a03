/* The castor-vmm commands (one file each) and what main.c needs to find them. */
#ifndef CASTOR_TOOLS_VMM_CMDS_H
#define CASTOR_TOOLS_VMM_CMDS_H

#include "tools/vmm/vmm.h"

struct vmm_cmd {
	const char *name;
	int (*main)(int argc, char **argv); /* argv[0] is the command's name */
};

int vmm_cmd_run(int argc, char **argv);
int vmm_cmd_restore(int argc, char **argv);
int vmm_cmd_replica(int argc, char **argv);
int vmm_cmd_standby(int argc, char **argv);

/* The defaults every command starts from, then argv parsed: 0 or exit status 2. */
int vmm_cmd_opts(unsigned cmd, int argc, char **argv, struct vmm_opts *o);

#endif
