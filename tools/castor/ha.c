/*
 * castor ha <command>: replication of one castor-vmm (a protecting primary
 * or a replica), through its control socket.
 *
 *   castor ha status   --socket PATH [--json]
 *   castor ha failover --socket PATH [--json]
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

void cli_ha_usage(FILE *f)
{
	fputs("usage: castor ha <command> --socket PATH [--json]\n"
	      "\n"
	      "commands:\n"
	      "  status    replication state, epochs, pause times, bytes, ack round trip, lag\n"
	      "  failover  (replica) start the twin from its last committed epoch\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH   control socket of the castor-vmm (required)\n"
	      "  -j, --json          print the reply as one JSON object\n"
	      "  -h, --help          this text\n",
	      f);
}

static void ha_json(const Castor__HaStatus *h)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "role", h->role ? h->role : "");
	cli_json_str(&j, "state", h->state ? h->state : "");
	cli_json_str(&j, "mode", h->mode ? h->mode : "");
	cli_json_u64(&j, "interval_ms", h->interval_ms);
	cli_json_u64(&j, "epoch", h->epoch);
	cli_json_u64(&j, "acked_epoch", h->acked_epoch);
	cli_json_u64(&j, "epochs", h->epochs);
	cli_json_u64(&j, "last_pause_ns", h->last_pause_ns);
	cli_json_u64(&j, "pause_p50_ns", h->pause_p50_ns);
	cli_json_u64(&j, "pause_p99_ns", h->pause_p99_ns);
	cli_json_u64(&j, "last_raw_bytes", h->last_raw_bytes);
	cli_json_u64(&j, "last_wire_bytes", h->last_wire_bytes);
	cli_json_u64(&j, "total_raw_bytes", h->total_raw_bytes);
	cli_json_u64(&j, "total_wire_bytes", h->total_wire_bytes);
	cli_json_u64(&j, "last_pages", h->last_pages);
	cli_json_u64(&j, "ack_rtt_last_ns", h->ack_rtt_last_ns);
	cli_json_u64(&j, "ack_rtt_p50_ns", h->ack_rtt_p50_ns);
	cli_json_u64(&j, "encode_p50_ns", h->encode_p50_ns);
	cli_json_u64(&j, "lag_ns", h->lag_ns);
	cli_json_u64(&j, "early_ends", h->early_ends);
	cli_json_u64(&j, "verify_ok", h->verify_ok);
	cli_json_u64(&j, "verify_bad", h->verify_bad);
	cli_json_u64(&j, "outputs_held", h->outputs_held);
	cli_json_u64(&j, "outputs_released", h->outputs_released);
	cli_json_u64(&j, "outputs_discarded", h->outputs_discarded);
	cli_json_u64(&j, "outputs_dropped", h->outputs_dropped);
	cli_json_u64(&j, "output_delay_p50_ns", h->output_delay_p50_ns);
	cli_json_u64(&j, "output_delay_p99_ns", h->output_delay_p99_ns);
	cli_json_u64(&j, "output_delay_max_ns", h->output_delay_max_ns);
	cli_json_u64(&j, "outputs_queued", h->outputs_queued);
	cli_json_u64(&j, "bytes_queued", h->bytes_queued);
	cli_json_u64(&j, "bytes_released", h->bytes_released);
	cli_json_u64(&j, "bytes_discarded", h->bytes_discarded);
	cli_json_u64(&j, "queue_high_water_bytes", h->queue_high_water_bytes);
	cli_json_u64(&j, "port", h->port);
	cli_json_str(&j, "last_error", h->last_error ? h->last_error : "");
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

static void ha_table(const Castor__HaStatus *h)
{
	double ratio = h->total_raw_bytes
			       ? 100.0 * (double)h->total_wire_bytes / (double)h->total_raw_bytes
			       : 0;

	printf("role %s, state %s, %s mode, %u ms epochs\n", h->role, h->state, h->mode,
	       h->interval_ms);
	printf("epoch %" PRIu64 " (acked %" PRIu64 "), %" PRIu64 " epochs done, %" PRIu64
	       " ended early\n",
	       h->epoch, h->acked_epoch, h->epochs, h->early_ends);
	printf("pause: last %.3f ms, p50 %.3f ms, p99 %.3f ms\n", (double)h->last_pause_ns / 1e6,
	       (double)h->pause_p50_ns / 1e6, (double)h->pause_p99_ns / 1e6);
	printf("last epoch: %" PRIu64 " pages, %" PRIu64 " bytes raw, %" PRIu64
	       " on the wire; all: %.1f %% of raw\n",
	       h->last_pages, h->last_raw_bytes, h->last_wire_bytes, ratio);
	printf("encode p50 %.3f ms; ack rtt: last %.3f ms, p50 %.3f ms; lag %.3f ms\n",
	       (double)h->encode_p50_ns / 1e6, (double)h->ack_rtt_last_ns / 1e6,
	       (double)h->ack_rtt_p50_ns / 1e6, (double)h->lag_ns / 1e6);
	printf("outputs: %" PRIu64 " held, %" PRIu64 " released, %" PRIu64 " discarded, %" PRIu64
	       " dropped; delay p50 %.3f ms, p99 %.3f ms\n",
	       h->outputs_held, h->outputs_released, h->outputs_discarded, h->outputs_dropped,
	       (double)h->output_delay_p50_ns / 1e6, (double)h->output_delay_p99_ns / 1e6);
	if (h->outputs_queued)
		printf("output queue: %" PRIu64 " outputs / %" PRIu64 " bytes queued, %" PRIu64
		       " bytes released, %" PRIu64 " discarded; high water %" PRIu64
		       " bytes; delay max %.3f ms\n",
		       h->outputs_queued, h->bytes_queued, h->bytes_released, h->bytes_discarded,
		       h->queue_high_water_bytes, (double)h->output_delay_max_ns / 1e6);
	if (h->verify_ok || h->verify_bad)
		printf("verify: %" PRIu64 " digests matched, %" PRIu64 " differed\n", h->verify_ok,
		       h->verify_bad);
	if (h->port)
		printf("listening on port %u\n", h->port);
	if (h->last_error && *h->last_error)
		printf("last error: %s\n", h->last_error);
}

int cli_ha_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest sr = CASTOR__HA_STATUS_REQUEST__INIT;
	Castor__FailoverRequest fr = CASTOR__FAILOVER_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__HaStatus *h;
	const char *socket = NULL, *cmd;
	bool json = false;
	int c, rc, ret = CLI_EXIT_FAIL;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_ha_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	cmd = argv[1];
	if (strcmp(cmd, "status") && strcmp(cmd, "failover")) {
		cli_err("ha: unknown command '%s'", cmd);
		cli_ha_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:jh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			cli_ha_usage(stdout);
			return CLI_EXIT_OK;
		default:
			cli_err("ha %s: bad option '%s'", cmd, argv[optind - 1]);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("ha %s: unexpected argument '%s'", cmd, argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!socket) {
		cli_err("ha %s: --socket PATH is required", cmd);
		return CLI_EXIT_USAGE;
	}
	req.id = (uint64_t)getpid();
	if (!strcmp(cmd, "status")) {
		req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
		req.ha_status = &sr;
	} else {
		req.body_case = CASTOR__REQUEST__BODY_FAILOVER;
		req.failover = &fr;
	}
	rc = pb_call(socket, &req, &resp, PB_CALL_TIMEOUT_MS);
	if (rc < 0) {
		cli_err("ha %s: no reply from %s: %s", cmd, socket, strerror(-rc));
		goto out;
	}
	if (resp->error) {
		cli_err("ha %s: %s (%s)", cmd, resp->message ? resp->message : "",
			strerror(-resp->error));
		goto out;
	}
	h = resp->body_case == CASTOR__RESPONSE__BODY_HA_STATUS	 ? resp->ha_status
	    : resp->body_case == CASTOR__RESPONSE__BODY_FAILOVER ? resp->failover
								 : NULL;
	if (!h) {
		cli_err("ha %s: unexpected reply from %s", cmd, socket);
		goto out;
	}
	if (json)
		ha_json(h);
	else
		ha_table(h);
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
