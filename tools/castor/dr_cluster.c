/*
 * castor dr protect|unprotect|status VM: a VM's DR copy through the local
 * castord (docs/dr.md, "Through castord"). The cluster keeps the DR target
 * on the VM's pair; the primary's castord keeps the DR session toward it,
 * from whichever host runs the VM. With --socket PATH instead of a VM,
 * `castor dr` talks to one castor-vmm (dr.c).
 *
 *   castor dr protect VM --to HOST:PORT [--rpo MS] [--max-mbit N] [--castord PATH] [--json]
 *   castor dr unprotect VM [--castord PATH] [--json]
 *   castor dr status VM    [--castord PATH] [--json]
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"
#include "util/util.h"

#include <getopt.h>
#include <string.h>
#include <unistd.h>

bool cli_dr_is_cluster_call(int argc, char **argv)
{
	if (argc < 2)
		return false;
	if (!strcmp(argv[1], "protect"))
		return true;
	if (strcmp(argv[1], "unprotect") && strcmp(argv[1], "status"))
		return false;
	if (cli_names_socket(argc, argv))
		return false;
	/* a VM named, or nothing at all (dr.c says what is missing) */
	for (int i = 2; i < argc; i++)
		if (argv[i][0] != '-')
			return true;
	return false;
}

static void print_json(const Castor__VmDefinition *v)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "name", v->name);
	cli_json_str(&j, "state", v->state);
	cli_json_str(&j, "primary", v->primary);
	cli_json_str(&j, "dr_addr", v->dr_addr);
	cli_json_u64(&j, "dr_rpo_target_ms", v->dr_rpo_target_ms);
	cli_json_u64(&j, "dr_max_mbit", v->dr_max_mbit);
	cli_json_bool(&j, "has_dr", v->has_dr);
	cli_json_str(&j, "dr_state", v->has_dr ? v->dr_state : NULL);
	if (v->has_dr) {
		cli_json_u64(&j, "dr_rpo_ns", v->dr_rpo_ns);
		cli_json_u64(&j, "dr_rpo_alerts", v->dr_rpo_alerts);
		cli_json_u64(&j, "dr_checkpoints", v->dr_checkpoints);
	} else {
		cli_json_str(&j, "dr_rpo_ns", NULL);
		cli_json_str(&j, "dr_rpo_alerts", NULL);
		cli_json_str(&j, "dr_checkpoints", NULL);
	}
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

/* The DR line of castor dr status VM (and of castor status, after the VM's name). */
void cli_dr_line(const Castor__VmDefinition *v, char *out, size_t len)
{
	char cap[48] = "";

	if (v->dr_max_mbit)
		snprintf(cap, sizeof(cap), "; link capped at %u Mbit/s", v->dr_max_mbit);
	if (!v->dr_addr || !*v->dr_addr) {
		snprintf(out, len, "no DR copy");
		return;
	}
	if (!v->has_dr) {
		snprintf(out, len,
			 "DR copy at %s (RPO target %.1f s): no word from the primary's castord "
			 "in the last 3 s",
			 v->dr_addr, v->dr_rpo_target_ms / 1e3);
		return;
	}
	if (!strcmp(v->dr_state, "protected"))
		snprintf(out, len,
			 "DR copy at %s, protected: the newest checkpoint is %.1f s old (target "
			 "%.1f s; %llu alerts; %llu checkpoints%s)",
			 v->dr_addr, (double)v->dr_rpo_ns / 1e9, v->dr_rpo_target_ms / 1e3,
			 (unsigned long long)v->dr_rpo_alerts,
			 (unsigned long long)v->dr_checkpoints, cap);
	else
		snprintf(out, len, "DR copy at %s (RPO target %.1f s%s): %s", v->dr_addr,
			 v->dr_rpo_target_ms / 1e3, cap, v->dr_state);
}

void cli_dr_cluster_usage(FILE *f)
{
	fputs("through castord (a VM's name instead of --socket):\n"
	      "  castor dr protect VM --to HOST:PORT [--rpo MS] [--max-mbit N]\n"
	      "             keep a DR copy of the running VM at the DR replica HOST:PORT (a\n"
	      "             castor-vmm replica at the DR site), from whichever host runs it;\n"
	      "             --rpo: the RPO target in ms (default 5000); --max-mbit N: cap\n"
	      "             the DR link at N Mbit/s (default: no cap)\n"
	      "  castor dr unprotect VM    stop keeping it\n"
	      "  castor dr status VM       its DR copy: state, RPO, alerts\n"
	      "  --castord PATH            castord's control socket (default " CLI_CASTORD_SOCKET
	      ")\n",
	      f);
}

static int ask(const char *who, const char *socket, Castor__Request *req, Castor__Response **resp)
{
	req->id = (uint64_t)getpid();
	return cli_castord_call(who, socket, req, resp);
}

int cli_dr_cluster_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"castord", required_argument, NULL, 'c'},
		{"to", required_argument, NULL, 't'},
		{"rpo", required_argument, NULL, 'r'},
		{"max-mbit", required_argument, NULL, 'M'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__VmDrRequest dr = CASTOR__VM_DR_REQUEST__INIT;
	Castor__VmShowRequest sr = CASTOR__VM_SHOW_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__VmDefinition *v;
	const char *cmd = argv[1], *socket = CLI_CASTORD_SOCKET, *to = NULL, *vm;
	char who[32], line[400];
	bool json = false;
	uint64_t rpo = 0, mbit = 0;
	int c, ret = CLI_EXIT_FAIL;

	snprintf(who, sizeof(who), "dr %s", cmd);
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			socket = optarg;
			break;
		case 't':
		case 'r':
		case 'M':
			if (strcmp(cmd, "protect")) {
				cli_err("%s: --%s goes with 'dr protect'", who,
					c == 't'   ? "to"
					: c == 'r' ? "rpo"
						   : "max-mbit");
				return CLI_EXIT_USAGE;
			}
			if (c == 't') {
				to = optarg;
			} else if (c == 'r' &&
				   (util_parse_u64(optarg, &rpo) < 0 || !rpo || rpo > 600000)) {
				cli_err("%s: --rpo: '%s' is not a number of milliseconds "
					"(1-600000)",
					who, optarg);
				return CLI_EXIT_USAGE;
			} else if (c == 'M' &&
				   (util_parse_u64(optarg, &mbit) < 0 || !mbit || mbit > 100000)) {
				cli_err("%s: --max-mbit: '%s' is not a rate in Mbit/s (1-100000)",
					who, optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			cli_dr_usage(stdout);
			return CLI_EXIT_OK;
		default:
			cli_opt_error(who, c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	vm = cli_one_vm(who, argc, argv);
	if (!vm)
		return CLI_EXIT_USAGE;
	if (!strcmp(cmd, "protect") && (!to || !*to)) {
		cli_err("dr protect: --to HOST:PORT (the DR replica) is required");
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(cmd, "status")) {
		sr.name = (char *)vm;
		req.body_case = CASTOR__REQUEST__BODY_VM_SHOW;
		req.vm_show = &sr;
	} else {
		dr.name = (char *)vm;
		dr.to = (char *)(to ? to : "");
		dr.rpo_ms = (uint32_t)rpo;
		dr.max_mbit = (uint32_t)mbit;
		req.body_case = CASTOR__REQUEST__BODY_VM_DR;
		req.vm_dr = &dr;
	}
	if (ask(who, socket, &req, &resp) < 0)
		goto out;
	v = resp->vm_show ? resp->vm_show : resp->vm_dr;
	if (json) {
		print_json(v);
	} else if (!strcmp(cmd, "protect")) {
		printf("%s on %s: a DR copy at %s (RPO target %.1f s%s%.0u%s); 'castor dr status "
		       "%s' follows it\n",
		       v->name, v->primary, v->dr_addr, v->dr_rpo_target_ms / 1e3,
		       v->dr_max_mbit ? ", link capped at " : "", v->dr_max_mbit,
		       v->dr_max_mbit ? " Mbit/s" : "", v->name);
	} else if (!strcmp(cmd, "unprotect")) {
		printf("%s on %s: no DR copy any more; its DR session stops\n", v->name,
		       v->primary);
	} else {
		cli_dr_line(v, line, sizeof(line));
		printf("%s, %s%s%s: %s\n", v->name, v->state, *v->primary ? " on " : "", v->primary,
		       line);
	}
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
