/*
 * One request/reply exchange with a castor-vmm or castord, its failures said
 * once (cli_call: ha.c, and the castord commands), and the options the
 * commands that talk to castord share (node.c, status.c, vm_cluster.c).
 */
#include "tools/castor/cli.h"
#include "proto/pb.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

int cli_castord_opts(const char *who, int argc, char **argv, const char **socket, bool *json,
		     const char **host, void (*usage)(FILE *f))
{
	static const struct option opts[] = {
		{"castord", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 'c'}, /* as the per-VMM commands name it */
		{"json", no_argument, NULL, 'j'},
		{"host", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*socket = CLI_CASTORD_SOCKET;
	*json = false;
	if (host)
		*host = NULL;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
		case 's':
			*socket = optarg;
			break;
		case 'j':
			*json = true;
			break;
		case 'H':
			if (!host) {
				cli_err("%s: --host does not apply here", who);
				return -EINVAL;
			}
			*host = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			cli_opt_error(who, c, argv);
			return -EINVAL;
		}
	}
	return 0;
}

int cli_call(const char *who, const char *socket, int timeout_ms, bool castord,
	     Castor__Request *req, Castor__Response **resp_out)
{
	Castor__Response *resp = NULL;
	int rc = pb_call(socket, req, &resp, timeout_ms);

	*resp_out = NULL;
	if (rc < 0) {
		cli_err("%s: no reply from %s%s: %s%s", who, castord ? "castord at " : "", socket,
			strerror(-rc), castord ? " (is castord running?)" : "");
		return rc;
	}
	if (resp->error) {
		cli_err("%s: %s (%s)", who, resp->message ? resp->message : "",
			strerror(-resp->error));
		rc = resp->error;
	} else if ((int)resp->body_case != (int)req->body_case) {
		/* the reply to request body N carries body N (control.proto) */
		cli_err("%s: unexpected reply from %s", who, socket);
		rc = -EPROTO;
	}
	if (rc < 0) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return rc;
	}
	*resp_out = resp;
	return 0;
}

int cli_castord_call(const char *who, const char *socket, Castor__Request *req,
		     Castor__Response **resp_out)
{
	return cli_call(who, socket, PB_CALL_TIMEOUT_MS, true, req, resp_out);
}

const char *cli_one_vm(const char *who, int argc, char **argv)
{
	if (optind >= argc) {
		cli_err("%s: VM is required (or --socket PATH for one castor-vmm)", who);
		return NULL;
	}
	if (optind + 1 < argc) {
		cli_err("%s: unexpected argument '%s'", who, argv[optind + 1]);
		return NULL;
	}
	return argv[optind++];
}

bool cli_names_socket(int argc, char **argv)
{
	for (int i = 2; i < argc; i++)
		if (!strcmp(argv[i], "--socket") || !strncmp(argv[i], "--socket=", 9) ||
		    !strcmp(argv[i], "-s") || (!strncmp(argv[i], "-s", 2) && argv[i][2] != '-'))
			return true;
	return false;
}
