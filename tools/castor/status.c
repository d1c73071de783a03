/*
 * castor status: the cluster at a glance, from the local castord -- its nodes
 * (membership, quorum) and its VMs -- as aligned tables, or one JSON object.
 *
 *   castor status [--castord PATH] [--json] [--watch]
 *
 * --watch asks again every second: on a terminal the tables are redrawn in
 * place; otherwise each snapshot follows the last, after a dated line.
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_status_usage(FILE *f)
{
	fputs("usage: castor status [--castord PATH] [--json] [--watch]\n"
	      "\n"
	      "  the cluster's nodes (member or gone, witness, quorum) and its VMs\n"
	      "  --castord PATH   castord's control socket (default " CLI_CASTORD_SOCKET ")\n"
	      "  --json           one JSON object: {\"nodes\": ..., \"vms\": ...}\n"
	      "  --watch          ask again every second (Ctrl-C ends it); redrawn in place on a\n"
	      "                   terminal\n",
	      f);
}

static int ask(const char *socket, Castor__Request *req, Castor__Response **resp)
{
	req->id = (uint64_t)getpid();
	return cli_castord_call("status", socket, req, resp);
}

static void print_json(const Castor__NodeList *n, const Castor__VmList *v)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "node", n->local_name ? n->local_name : "");
	cli_json_bool(&j, "connected", n->connected);
	cli_json_bool(&j, "quorate", n->quorate);
	cli_json_str(&j, "layout_problem", n->layout_problem ? n->layout_problem : "");
	cli_json_array_begin(&j, "nodes");
	for (size_t i = 0; i < n->n_node; i++) {
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", n->node[i]->name ? n->node[i]->name : "");
		cli_json_bool(&j, "member", n->node[i]->member);
		cli_json_bool(&j, "witness", n->node[i]->witness);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_array_begin(&j, "vms");
	for (size_t i = 0; i < v->n_vm; i++) {
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", v->vm[i]->name);
		cli_json_str(&j, "state", v->vm[i]->state);
		cli_json_str(&j, "host", v->vm[i]->primary);
		cli_json_str(&j, "replica", v->vm[i]->replica);
		cli_json_str(&j, "last_event", v->vm[i]->last_event);
		cli_json_u64(&j, "failovers", v->vm[i]->failovers);
		cli_json_str(&j, "protection", v->vm[i]->protection);
		if (v->vm[i]->has_figures) {
			cli_json_double(&j, "epochs_per_s", v->vm[i]->epochs_per_s);
			cli_json_double(&j, "lag_ms", (double)v->vm[i]->lag_ns / 1e6);
			cli_json_u64(&j, "epochs", v->vm[i]->epochs);
		} else {
			cli_json_str(&j, "epochs_per_s", NULL);
			cli_json_str(&j, "lag_ms", NULL);
			cli_json_str(&j, "epochs", NULL);
		}
		cli_json_u64(&j, "last_failover_unix", v->vm[i]->last_failover_unix);
		/* the DR copy: its target, and what the primary's castord said of it */
		cli_json_str(&j, "dr_addr", v->vm[i]->dr_addr);
		cli_json_u64(&j, "dr_rpo_target_ms", v->vm[i]->dr_rpo_target_ms);
		cli_json_u64(&j, "dr_max_mbit", v->vm[i]->dr_max_mbit);
		if (v->vm[i]->has_dr) {
			cli_json_str(&j, "dr_state", v->vm[i]->dr_state);
			cli_json_double(&j, "dr_rpo_ms", (double)v->vm[i]->dr_rpo_ns / 1e6);
			cli_json_u64(&j, "dr_rpo_alerts", v->vm[i]->dr_rpo_alerts);
		} else {
			cli_json_str(&j, "dr_state", NULL);
			cli_json_str(&j, "dr_rpo_ms", NULL);
			cli_json_str(&j, "dr_rpo_alerts", NULL);
		}
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

/* "2 (14:03:51)": the count, and when this castord applied the last one (today), or
 * its date; the count alone when this castord did not see it. */
static void failovers_str(const Castor__VmDefinition *m, char *out, size_t len)
{
	time_t at = (time_t)m->last_failover_unix, now = time(NULL);
	struct tm tm, today;
	char when[24];

	if (!m->last_failover_unix || !localtime_r(&at, &tm) || !localtime_r(&now, &today)) {
		snprintf(out, len, "%" PRIu64, m->failovers);
		return;
	}
	strftime(when, sizeof(when),
		 tm.tm_yday == today.tm_yday && tm.tm_year == today.tm_year ? "%H:%M:%S" : "%m-%d",
		 &tm);
	snprintf(out, len, "%" PRIu64 " (%s)", m->failovers, when);
}

static void print_tables(const Castor__NodeList *n, const Castor__VmList *v)
{
	printf("cluster seen from %s: %s, %s\n\n", n->local_name,
	       n->connected ? "corosync up" : "NO COROSYNC",
	       n->quorate ? "quorate" : "NOT QUORATE (nothing is promoted or released here)");
	if (n->layout_problem && *n->layout_problem)
		printf("LAYOUT REFUSED: %s\n\n", n->layout_problem);
	printf("%-20s %-8s %s\n", "NODE", "STATE", "");
	for (size_t i = 0; i < n->n_node; i++)
		printf("%-20s %-8s %s\n",
		       n->node[i]->name && *n->node[i]->name ? n->node[i]->name : "?",
		       n->node[i]->member ? "member" : "gone",
		       n->node[i]->witness ? "witness" : "");
	printf("\n%-20s %-12s %-8s %-8s %-10s %8s %8s %-19s %s\n", "VM", "STATE", "HOST", "REPLICA",
	       "PROTECT", "EPOCHS/S", "LAG", "FAILOVERS (LAST)", "HOSTS");
	for (size_t i = 0; i < v->n_vm; i++) {
		const Castor__VmDefinition *m = v->vm[i];
		char rate[16] = "-", lag[16] = "-", fo[32];

		if (m->has_figures) {
			snprintf(rate, sizeof(rate), "%.1f", m->epochs_per_s);
			snprintf(lag, sizeof(lag), "%.0fms", (double)m->lag_ns / 1e6);
		}
		failovers_str(m, fo, sizeof(fo));
		printf("%-20s %-12s %-8s %-8s %-10s %8s %8s %-19s ", m->name, m->state,
		       *m->primary ? m->primary : "-", *m->replica ? m->replica : "-",
		       m->protection, rate, lag, fo);
		for (size_t h = 0; h < v->vm[i]->n_hosts; h++)
			printf("%s%s", h ? "," : "", v->vm[i]->hosts[h]);
		printf("%s\n", v->vm[i]->n_hosts ? "" : "any");
		if (*m->last_event && !strcmp(m->state, "defined"))
			printf("%-20s last: %s\n", "", m->last_event);
		if (m->dr_addr && *m->dr_addr) {
			char line[400];

			cli_dr_line(m, line, sizeof(line));
			printf("%-20s %s\n", "", line);
		}
	}
	if (!v->n_vm)
		printf("(none defined: castor vm define FILE)\n");
}

/* One snapshot: both questions, then the tables or the JSON. 0, or -errno after a message. */
static int snapshot(const char *socket, bool json)
{
	Castor__Request nreq = CASTOR__REQUEST__INIT, vreq = CASTOR__REQUEST__INIT;
	Castor__NodeListRequest nr = CASTOR__NODE_LIST_REQUEST__INIT;
	Castor__VmListRequest vr = CASTOR__VM_LIST_REQUEST__INIT;
	Castor__Response *nresp = NULL, *vresp = NULL;
	int rc;

	nreq.body_case = CASTOR__REQUEST__BODY_NODE_LIST;
	nreq.node_list = &nr;
	vreq.body_case = CASTOR__REQUEST__BODY_VM_LIST;
	vreq.vm_list = &vr;
	rc = ask(socket, &nreq, &nresp);
	if (!rc)
		rc = ask(socket, &vreq, &vresp);
	if (!rc && json)
		print_json(nresp->node_list, vresp->vm_list);
	else if (!rc)
		print_tables(nresp->node_list, vresp->vm_list);
	if (nresp)
		protobuf_c_message_free_unpacked(&nresp->base, NULL);
	if (vresp)
		protobuf_c_message_free_unpacked(&vresp->base, NULL);
	return rc;
}

int cli_status_main(int argc, char **argv)
{
	char *args[64];
	const char *socket;
	bool json, watch = false, tty = isatty(STDOUT_FILENO);
	int n = 0, rc;

	/* --watch is status's own; the rest are every castord command's options */
	for (int i = 0; i < argc && n < (int)(sizeof(args) / sizeof(args[0])) - 1; i++) {
		if (i && !strcmp(argv[i], "--watch"))
			watch = true;
		else
			args[n++] = argv[i];
	}
	args[n] = NULL;
	rc = cli_castord_opts("status", n, args, &socket, &json, NULL, cli_status_usage);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	if (optind < n) {
		cli_err("status: unexpected argument '%s'", args[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!watch)
		return snapshot(socket, json) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	for (unsigned k = 0;; k++) {
		if (tty && !json) {
			printf("\033[H\033[2J"); /* home, clear: redrawn in place */
		} else {
			time_t now = time(NULL);
			char when[32];

			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
			if (!json)
				printf("%s--- castor status at %s\n", k ? "\n" : "", when);
		}
		if (snapshot(socket, json) < 0)
			return CLI_EXIT_FAIL;
		fflush(stdout);
		sleep(1);
	}
}
