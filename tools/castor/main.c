/* castor: entry point and group table of the CLI (see cli.h). */
#include "tools/castor/cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <getopt.h>
#include <string.h>

static const struct cli_group groups[] = {
	{"vm", "control one castor-vmm through its control socket", cli_vm_main, cli_vm_usage},
	{"ha", "replication of one castor-vmm: status, failover", cli_ha_main, cli_ha_usage},
	{"dr", "disaster recovery at one castor-vmm: RPO, the DR copy's failover", cli_dr_main,
	 cli_dr_usage},
	{"bench", "measure Castor (pause, dirty tracking, ...)", cli_bench_main, cli_bench_usage},
	{"stream", "verify or dump a snapshot in the stream format", cli_stream_main,
	 cli_stream_usage},
	{"key", "pre-shared keys of replication links: generate", cli_key_main, cli_key_usage},
	{"disk", "disk images between hosts without a VM: sync, receive, log", cli_disk_main,
	 cli_disk_usage},
	{"node", "the cluster's nodes, from the local castord: list", cli_node_main,
	 cli_node_usage},
	{"status", "the cluster at a glance: nodes, quorum, VMs (from castord)", cli_status_main,
	 cli_status_usage},
	{"migrate", "move a running VM to another host (live migration)", cli_migrate_main,
	 cli_migrate_usage},
	{"mkguest", "build the Linux guest image (kernel, initramfs) from Debian packages",
	 cli_mkguest_main, cli_mkguest_usage},
};

#define N_GROUPS (sizeof(groups) / sizeof(groups[0]))

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fputs("castor: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const struct cli_group *group_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_GROUPS; i++)
		if (!strcmp(groups[i].name, name))
			return &groups[i];
	return NULL;
}

static void usage(FILE *f)
{
	size_t i;

	fputs("usage: castor <group> <command> [options]\n"
	      "       castor help [group]\n"
	      "\n"
	      "groups:\n",
	      f);
	for (i = 0; i < N_GROUPS; i++)
		fprintf(f, "  %-8s %s\n", groups[i].name, groups[i].summary);
	fputs("\n'castor <group> --help' lists the commands of a group.\n"
	      "Exit status: 0 success, 1 the operation failed, 2 usage error.\n",
	      f);
}

static bool is_help(const char *arg)
{
	return !strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "help");
}

void cli_opt_error(const char *who, int c, char *const *argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (c == ':')
		cli_err("%s: option '%s' needs a value", who, arg);
	else if (!optopt) /* an unknown long option */
		cli_err("%s: unknown option '%s'", who, arg);
	else if (!strncmp(arg, "--", 2) && strchr(arg, '='))
		cli_err("%s: option '%s' takes no argument", who, arg);
	else
		cli_err("%s: unknown option '-%c'", who, optopt);
}

int main(int argc, char **argv)
{
	const struct cli_group *g;

	if (argc < 2) {
		cli_err("missing group");
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (is_help(argv[1])) {
		if (argc == 2) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		g = group_find(argv[2]);
		if (!g) {
			cli_err("help: unknown group '%s'", argv[2]);
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
		if (argc > 3) {
			cli_err("help: unexpected argument '%s'", argv[3]);
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
		g->usage(stdout);
		return CLI_EXIT_OK;
	}
	g = group_find(argv[1]);
	if (!g) {
		if (argv[1][0] == '-')
			cli_err("unknown option '%s'", argv[1]);
		else
			cli_err("unknown group '%s'", argv[1]);
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	return g->main(argc - 1, argv + 1);
}
