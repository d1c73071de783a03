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
int vmm_cmd_incoming(int argc, char **argv);

/*
 * replica and incoming: parse argv for `cmd`, check --listen, and serve `role`
 * (cmd_replica.c). The exit status.
 */
int vmm_cmd_listening(unsigned cmd, const struct vmm_role_ops *role, int argc, char **argv);
/* The secondary's options both fill from the command line (cmd_replica.c). */
void vmm_secondary_opts(struct vmm *v, struct repl_secondary_opts *so);

/* The defaults every command starts from, then argv parsed: 0 or exit status 2. */
int vmm_cmd_opts(unsigned cmd, int argc, char **argv, struct vmm_opts *o);

#endif
