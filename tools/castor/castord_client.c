/*
 * What the castor commands that talk to castord share (node.c, status.c,
 * vm_cluster.c): their options and one request/reply exchange.
 */
#include "tools/castor/cli.h"
#include "proto/pb.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

int cli_castord_opts(const char *who, int argc, char **argv, const char **socket, bool *json,
		     void (*usage)(FILE *f))
{
	static const struct option opts[] = {
		{"castord", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 'c'}, /* as the per-VMM commands name it */
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*socket = CLI_CASTORD_SOCKET;
	*json = false;
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

int cli_castord_call(const char *who, const char *socket, Castor__Request *req,
		     Castor__Response **resp_out)
{
	Castor__Response *resp = NULL;
	int rc = pb_call(socket, req, &resp, PB_CALL_TIMEOUT_MS);

	*resp_out = NULL;
	if (rc < 0) {
		cli_err("%s: no reply from castord at %s: %s (is castord running?)", who, socket,
			strerror(-rc));
		return rc;
	}
	if (resp->error) {
		cli_err("%s: %s (%s)", who, resp->message ? resp->message : "",
			strerror(-resp->error));
		rc = resp->error;
	} else if ((int)resp->body_case != (int)req->body_case) {
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
