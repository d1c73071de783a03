/*
 * castor node <command>: the cluster's nodes, from the local castord.
 *
 *   castor node list [--socket PATH] [--json]
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

void cli_node_usage(FILE *f)
{
	fputs("usage: castor node list [--castord PATH] [--json]\n"
	      "\n"
	      "  list    every node castord knows: name, corosync node id, member or not,\n"
	      "          witness; this partition's quorum\n"
	      "\n"
	      "options:\n"
	      "  --castord PATH      castord's control socket (default " CLI_CASTORD_SOCKET ")\n"
	      "  -j, --json          print the reply as one JSON object\n"
	      "  -h, --help          this text\n",
	      f);
}

static void list_json(const Castor__NodeList *l)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_bool(&j, "connected", l->connected);
	cli_json_bool(&j, "quorate", l->quorate);
	cli_json_str(&j, "local_name", l->local_name ? l->local_name : "");
	cli_json_u64(&j, "local_nodeid", l->local_nodeid);
	cli_json_u64(&j, "total_votes", l->total_votes);
	cli_json_u64(&j, "expected_votes", l->expected_votes);
	cli_json_u64(&j, "quorum", l->quorum);
	cli_json_str(&j, "layout_problem", l->layout_problem ? l->layout_problem : "");
	cli_json_array_begin(&j, "nodes");
	for (size_t i = 0; i < l->n_node; i++) {
		const Castor__NodeInfo *n = l->node[i];

		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", n->name ? n->name : "");
		cli_json_u64(&j, "nodeid", n->nodeid);
		cli_json_bool(&j, "member", n->member);
		cli_json_bool(&j, "witness", n->witness);
		cli_json_bool(&j, "local", n->local);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

static void list_table(const Castor__NodeList *l)
{
	printf("node %s: %s, %s", l->local_name, l->connected ? "corosync up" : "NO COROSYNC",
	       l->quorate ? "quorate" : "NOT QUORATE (nothing is promoted or released here)");
	if (l->connected)
		printf(" (%u of %u votes, %u needed)", l->total_votes, l->expected_votes,
		       l->quorum);
	if (l->layout_problem && *l->layout_problem)
		printf("\nLAYOUT REFUSED: %s\n", l->layout_problem);
	printf("\n%-20s %8s  %-8s %s\n", "NAME", "NODEID", "STATE", "");
	for (size_t i = 0; i < l->n_node; i++) {
		const Castor__NodeInfo *n = l->node[i];

		printf("%-20s %8u  %-8s %s%s\n", n->name && *n->name ? n->name : "?", n->nodeid,
		       n->member ? "member" : "gone", n->witness ? "witness " : "",
		       n->local ? "(this node)" : "");
	}
}

int cli_node_main(int argc, char **argv)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__NodeListRequest nr = CASTOR__NODE_LIST_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const char *socket;
	bool json;
	int rc, ret = CLI_EXIT_FAIL;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_node_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "list")) {
		cli_err("node: unknown command '%s'", argv[1]);
		cli_node_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	rc = cli_castord_opts("node list", argc - 1, argv + 1, &socket, &json, NULL,
			      cli_node_usage);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	argc--;
	argv++;
	if (optind < argc) {
		cli_err("node list: unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_NODE_LIST;
	req.node_list = &nr;
	rc = cli_castord_call("node list", socket, &req, &resp);
	if (rc < 0)
		goto out;
	if (json)
		list_json(resp->node_list);
	else
		list_table(resp->node_list);
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
