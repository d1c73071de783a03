/*
 * castor ha protect|unprotect|failover VM: a VM's protection through the local
 * castord (docs/cluster.md), the cluster choosing the hosts and enforcing
 * quorum. With --socket PATH instead of a VM, `castor ha` talks to one
 * castor-vmm (ha.c).
 *
 *   castor ha protect VM   [--host H] [--castord PATH] [--json]
 *   castor ha unprotect VM [--castord PATH] [--json]
 *   castor ha failover VM  [--force] [--castord PATH] [--json]
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <getopt.h>
#include <string.h>
#include <unistd.h>

bool cli_ha_is_cluster_call(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "protect") && strcmp(argv[1], "unprotect") &&
			 strcmp(argv[1], "failover")))
		return false;
	return !cli_names_socket(argc, argv);
}

int cli_ha_cluster_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"castord", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
		{"force", no_argument, NULL, 'f'},	   {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},	   {NULL, 0, NULL, 0},
	};
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__VmProtectRequest pr = CASTOR__VM_PROTECT_REQUEST__INIT;
	Castor__VmUnprotectRequest ur = CASTOR__VM_UNPROTECT_REQUEST__INIT;
	Castor__VmFailoverRequest fr = CASTOR__VM_FAILOVER_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__VmDefinition *v;
	const char *cmd = argv[1], *socket = CLI_CASTORD_SOCKET, *host = NULL, *vm;
	char who[32];
	bool json = false, force = false;
	int c, ret = CLI_EXIT_FAIL;

	snprintf(who, sizeof(who), "ha %s", cmd);
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			socket = optarg;
			break;
		case 'H':
			if (strcmp(cmd, "protect")) {
				cli_err("%s: --host goes with 'ha protect'", who);
				return CLI_EXIT_USAGE;
			}
			host = optarg;
			break;
		case 'f':
			if (strcmp(cmd, "failover")) {
				cli_err("%s: --force goes with 'ha failover' (or with --socket)",
					who);
				return CLI_EXIT_USAGE;
			}
			force = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			cli_ha_usage(stdout);
			return CLI_EXIT_OK;
		default:
			cli_opt_error(who, c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	vm = cli_one_vm(who, argc, argv);
	if (!vm)
		return CLI_EXIT_USAGE;
	req.id = (uint64_t)getpid();
	if (!strcmp(cmd, "protect")) {
		pr.name = (char *)vm;
		pr.host = (char *)(host ? host : "");
		req.body_case = CASTOR__REQUEST__BODY_VM_PROTECT;
		req.vm_protect = &pr;
	} else if (!strcmp(cmd, "unprotect")) {
		ur.name = (char *)vm;
		req.body_case = CASTOR__REQUEST__BODY_VM_UNPROTECT;
		req.vm_unprotect = &ur;
	} else {
		fr.name = (char *)vm;
		fr.force = force;
		req.body_case = CASTOR__REQUEST__BODY_VM_FAILOVER;
		req.vm_failover = &fr;
	}
	if (cli_castord_call(who, socket, &req, &resp) < 0)
		goto out;
	v = resp->vm_protect	 ? resp->vm_protect
	    : resp->vm_unprotect ? resp->vm_unprotect
				 : resp->vm_failover;
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", v->name);
		cli_json_str(&j, "state", v->state);
		cli_json_str(&j, "primary", v->primary);
		cli_json_str(&j, "replica", v->replica);
		cli_json_object_end(&j);
		cli_json_finish(&j);
	} else if (!strcmp(cmd, "protect")) {
		printf("%s on %s: a replica is being placed on %s\n", v->name, v->primary,
		       v->replica);
	} else if (!strcmp(cmd, "unprotect")) {
		printf("%s on %s: protection ends; castord will not re-protect it until "
		       "'castor ha protect %s'\n",
		       v->name, v->primary, v->name);
	} else {
		printf("%s: failing over from %s to %s\n", v->name, v->primary, v->replica);
	}
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
