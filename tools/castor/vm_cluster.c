/*
 * castor vm define|undefine|list|show|start|stop: the cluster's VMs, through
 * the local castord (docs/cluster.md). The other `castor vm` commands talk to
 * one castor-vmm (vm.c).
 *
 *   castor vm define FILE      [--castord PATH] [--json]
 *   castor vm undefine VM      [--castord PATH] [--json]
 *   castor vm list             [--castord PATH] [--json]
 *   castor vm show VM          [--castord PATH] [--json]
 *   castor vm start VM         [--host H] [--castord PATH] [--json]
 *   castor vm stop VM          [--castord PATH] [--json]
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEF_BYTES (64u << 10)

bool cli_vm_is_cluster_cmd(const char *cmd)
{
	return !strcmp(cmd, "define") || !strcmp(cmd, "undefine") || !strcmp(cmd, "list") ||
	       !strcmp(cmd, "show") || !strcmp(cmd, "start") || !strcmp(cmd, "stop");
}

void cli_vm_cluster_usage(FILE *f)
{
	fputs("cluster commands (through the local castord; docs/cluster.md):\n"
	      "  define FILE   define a VM cluster-wide from a definition file\n"
	      "  undefine VM   remove its definition\n"
	      "  list          every defined VM\n"
	      "  show VM       one VM's definition, as defined\n"
	      "  start VM      run it: on --host H, else its first live host, else the\n"
	      "                least loaded (castord starts and watches its castor-vmm)\n"
	      "  stop VM       stop it, wherever it runs\n"
	      "  --castord PATH  castord's control socket (default " CLI_CASTORD_SOCKET ")\n",
	      f);
}

/* The file, whole, as a NUL-terminated string (at most 64 KiB). */
static char *read_def(const char *path)
{
	struct stat st;
	char *buf = NULL;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_DEF_BYTES) {
		cli_err("vm define: %s: %s", path,
			fd < 0			     ? strerror(errno)
			: !S_ISREG(st.st_mode)	     ? "not a regular file"
			: st.st_size > MAX_DEF_BYTES ? "over 64 KiB"
						     : strerror(errno));
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		goto out;
	r = read(fd, buf, (size_t)st.st_size);
	if (r != st.st_size || memchr(buf, 0, (size_t)st.st_size)) {
		cli_err("vm define: %s: %s", path, r < 0 ? strerror(errno) : "not a text file");
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[r] = 0;
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

static void def_json(struct cli_json *j, const Castor__VmDefinition *v, bool text)
{
	cli_json_object_begin(j, NULL);
	cli_json_str(j, "name", v->name ? v->name : "");
	cli_json_str(j, "guest", v->guest ? v->guest : "");
	cli_json_u64(j, "mem_bytes", v->mem_bytes);
	cli_json_u64(j, "cpus", v->cpus);
	cli_json_str(j, "protection", v->protection ? v->protection : "");
	cli_json_u64(j, "interval_ms", v->interval_ms);
	cli_json_array_begin(j, "hosts");
	for (size_t i = 0; i < v->n_hosts; i++)
		cli_json_str(j, NULL, v->hosts[i]);
	cli_json_array_end(j);
	cli_json_u64(j, "disks", v->disks);
	cli_json_u64(j, "nics", v->nics);
	cli_json_u64(j, "generation", v->generation);
	cli_json_u64(j, "origin", v->origin);
	cli_json_str(j, "state", v->state ? v->state : "");
	cli_json_str(j, "primary", v->primary ? v->primary : "");
	cli_json_str(j, "replica", v->replica ? v->replica : "");
	cli_json_str(j, "last_event", v->last_event ? v->last_event : "");
	cli_json_u64(j, "failovers", v->failovers);
	cli_json_bool(j, "held", v->held);
	cli_json_str(j, "restart", v->restart ? v->restart : "");
	cli_json_u64(j, "restarts", v->restarts);
	cli_json_str(j, "restart_note", v->restart_note ? v->restart_note : "");
	if (text)
		cli_json_str(j, "text", v->text ? v->text : "");
	cli_json_object_end(j);
}

static void def_line(const Castor__VmDefinition *v)
{
	printf("%-20s %-12s %-8s %-6s %6" PRIu64 "M %4u  %-9s %6u  ", v->name, v->state,
	       v->primary && *v->primary ? v->primary : "-", v->guest, v->mem_bytes >> 20, v->cpus,
	       v->protection, v->interval_ms);
	for (size_t i = 0; i < v->n_hosts; i++)
		printf("%s%s", i ? "," : "", v->hosts[i]);
	printf("%s\n", v->n_hosts ? "" : "any");
	if (v->last_event && *v->last_event && !strcmp(v->state, "defined"))
		printf("%-20s last: %s\n", "", v->last_event);
	if (!strcmp(v->state, "defined") && v->restart_note && *v->restart_note)
		printf("%-20s restart: %s\n", "", v->restart_note);
}

static int print(const char *cmd, bool json, const Castor__Response *resp)
{
	struct cli_json j;

	if (!strcmp(cmd, "list")) {
		const Castor__VmList *l = resp->vm_list;

		if (json) {
			cli_json_init(&j, stdout);
			cli_json_object_begin(&j, NULL);
			cli_json_array_begin(&j, "vms");
			for (size_t i = 0; i < l->n_vm; i++)
				def_json(&j, l->vm[i], false);
			cli_json_array_end(&j);
			cli_json_object_end(&j);
			cli_json_finish(&j);
			return CLI_EXIT_OK;
		}
		printf("%-20s %-12s %-8s %-6s %7s %4s  %-9s %6s  %s\n", "NAME", "STATE", "HOST",
		       "GUEST", "MEM", "CPUS", "PROTECT", "MS", "HOSTS");
		for (size_t i = 0; i < l->n_vm; i++)
			def_line(l->vm[i]);
		return CLI_EXIT_OK;
	}
	{
		const Castor__VmDefinition *v = !strcmp(cmd, "define")	   ? resp->vm_define
						: !strcmp(cmd, "undefine") ? resp->vm_undefine
						: !strcmp(cmd, "start")	   ? resp->vm_start
						: !strcmp(cmd, "stop")	   ? resp->vm_stop
									   : resp->vm_show;

		if (json) {
			cli_json_init(&j, stdout);
			def_json(&j, v, !strcmp(cmd, "show"));
			cli_json_finish(&j);
		} else if (!strcmp(cmd, "show")) {
			fputs(v->text ? v->text : "", stdout);
		} else if (!strcmp(cmd, "start") || !strcmp(cmd, "stop")) {
			/* the request is sent; the state follows in `castor vm list` */
			printf("%s %s on %s\n", v->name, v->state, v->primary);
		} else {
			printf("%s %s\n", v->name,
			       !strcmp(cmd, "define") ? "defined" : "undefined");
		}
	}
	return CLI_EXIT_OK;
}

int cli_vm_cluster_main(int argc, char **argv)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__VmDefineRequest dr = CASTOR__VM_DEFINE_REQUEST__INIT;
	Castor__VmUndefineRequest ur = CASTOR__VM_UNDEFINE_REQUEST__INIT;
	Castor__VmListRequest lr = CASTOR__VM_LIST_REQUEST__INIT;
	Castor__VmShowRequest sr = CASTOR__VM_SHOW_REQUEST__INIT;
	Castor__VmStartRequest str = CASTOR__VM_START_REQUEST__INIT;
	Castor__VmStopRequest stp = CASTOR__VM_STOP_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const char *socket, *cmd = argv[1], *arg = NULL, *host = NULL;
	char *text = NULL;
	bool json, takes_arg = strcmp(cmd, "list") != 0;
	int rc, ret = CLI_EXIT_FAIL;

	argc--;
	argv++;
	rc = cli_castord_opts(cmd, argc, argv, &socket, &json, !strcmp(cmd, "start") ? &host : NULL,
			      cli_vm_cluster_usage);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	if (takes_arg && optind < argc)
		arg = argv[optind++];
	if (optind < argc) {
		cli_err("vm %s: unexpected argument '%s'", cmd, argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (takes_arg && !arg) {
		cli_err("vm %s: %s is required", cmd, !strcmp(cmd, "define") ? "FILE" : "VM");
		return CLI_EXIT_USAGE;
	}
	req.id = (uint64_t)getpid();
	if (!strcmp(cmd, "define")) {
		text = read_def(arg);
		if (!text)
			return CLI_EXIT_FAIL;
		dr.text = text;
		dr.file = (char *)arg;
		req.body_case = CASTOR__REQUEST__BODY_VM_DEFINE;
		req.vm_define = &dr;
	} else if (!strcmp(cmd, "undefine")) {
		ur.name = (char *)arg;
		req.body_case = CASTOR__REQUEST__BODY_VM_UNDEFINE;
		req.vm_undefine = &ur;
	} else if (!strcmp(cmd, "show")) {
		sr.name = (char *)arg;
		req.body_case = CASTOR__REQUEST__BODY_VM_SHOW;
		req.vm_show = &sr;
	} else if (!strcmp(cmd, "start")) {
		str.name = (char *)arg;
		str.host = (char *)(host ? host : "");
		req.body_case = CASTOR__REQUEST__BODY_VM_START;
		req.vm_start = &str;
	} else if (!strcmp(cmd, "stop")) {
		stp.name = (char *)arg;
		req.body_case = CASTOR__REQUEST__BODY_VM_STOP;
		req.vm_stop = &stp;
	} else {
		req.body_case = CASTOR__REQUEST__BODY_VM_LIST;
		req.vm_list = &lr;
	}
	{
		char who[32];

		snprintf(who, sizeof(who), "vm %s", cmd);
		rc = cli_castord_call(who, socket, &req, &resp);
	}
	if (rc < 0)
		goto out;
	ret = print(cmd, json, resp);
out:
	free(text);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
