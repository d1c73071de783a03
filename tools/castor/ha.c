/*
 * castor ha <command>: replication of one castor-vmm (a protecting primary
 * or a replica), through its control socket.
 *
 *   castor ha status    --socket PATH [--json]
 *   castor ha protect   --socket PATH --peer HOST:PORT [session options] [--json]
 *   castor ha unprotect --socket PATH [--force] [--json]
 *   castor ha failover  --socket PATH [--force] [--json]
 *
 * Without --socket, protect/unprotect/failover name a cluster VM and go to
 * castord (ha_cluster.c).
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"
#include "util/util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

void cli_ha_usage(FILE *f)
{
	fputs("usage: castor ha <command> --socket PATH [options]\n"
	      "       castor ha protect VM [--host H] | unprotect VM | failover VM [--force]\n"
	      "                 [--castord PATH] [--json]     (through castord: the cluster's "
	      "VMs)\n"
	      "\n"
	      "commands:\n"
	      "  status     replication state, epochs, pause times, bytes, ack round trip, lag\n"
	      "  protect    protect the running VM toward a replica (castor-vmm replica):\n"
	      "             initial copy while the guest runs, then epochs\n"
	      "  unprotect  stop protecting; held outputs are released (docs/operations.md)\n"
	      "  failover   (replica) start the twin from its last committed epoch\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH     control socket of the castor-vmm (required)\n"
	      "  -j, --json            print the reply as one JSON object\n"
	      "  -h, --help            this text\n"
	      "protect:\n"
	      "  --peer HOST:PORT      the replica (required)\n"
	      "  --mode interval|output|async  Remus epochs, Kemari (end the epoch at an\n"
	      "                        output), or async: a disaster-recovery copy, no output\n"
	      "                        held (docs/dr.md)\n"
	      "  --interval MS         epoch length; in output mode the longest (default 25)\n"
	      "  --min-spacing MS      output mode: the shortest epoch (default 1)\n"
	      "  --rpo MS              async mode: the RPO target (default 5000)\n"
	      "  --max-dirty PAGES     end an epoch early past this many dirty pages\n"
	      "  --max-mbit N          cap the link at N Mbit/s (a DR link sharing a WAN)\n"
	      "  --verify              compare a digest of all RAM at every epoch (costly)\n"
	      "  --exact-dirty         re-protect every page each epoch (no hot pages)\n"
	      "  --timeout MS          a silent replica is dead after this long\n"
	      "  --wait                return once protected (or failed), not when syncing "
	      "starts\n"
	      "unprotect, failover:\n"
	      "  --force               unprotect: abandon an initial copy in progress;\n"
	      "                        failover: even though the primary still streams or\n"
	      "                        stopped protecting on purpose (fence it first)\n",
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
	cli_json_u64(&j, "disk_verify_ok", h->disk_verify_ok);
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
	cli_json_str(&j, "peer", h->peer ? h->peer : "");
	cli_json_u64(&j, "sync_sent_bytes", h->sync_sent_bytes);
	cli_json_u64(&j, "sync_total_bytes", h->sync_total_bytes);
	cli_json_u64(&j, "heartbeats", h->heartbeats);
	cli_json_bool(&j, "twin_unusable", h->twin_unusable);
	cli_json_u64(&j, "disks", h->disks);
	cli_json_u64(&j, "disk_bytes", h->disk_bytes);
	cli_json_u64(&j, "disk_pending_bytes", h->disk_pending_bytes);
	cli_json_u64(&j, "disk_copy_bytes", h->disk_copy_bytes);
	cli_json_u64(&j, "disk_copy_same_bytes", h->disk_copy_same_bytes);
	cli_json_u64(&j, "hot_pages", h->hot_pages);
	cli_json_u64(&j, "cold_faults", h->cold_faults);
	cli_json_u64(&j, "sessions", h->sessions);
	cli_json_bool(&j, "failed_over", h->failed_over);
	cli_json_str(&j, "link", h->link ? h->link : "");
	cli_json_bool(&j, "insecure", h->insecure);
	cli_json_bool(&j, "migration", h->migration);
	cli_json_u64(&j, "rpo_target_ms", h->rpo_target_ms);
	cli_json_u64(&j, "max_mbit", h->max_mbit);
	cli_json_u64(&j, "rpo_ns", h->rpo_ns);
	cli_json_u64(&j, "rpo_p50_ns", h->rpo_p50_ns);
	cli_json_u64(&j, "rpo_p99_ns", h->rpo_p99_ns);
	cli_json_u64(&j, "rpo_alerts", h->rpo_alerts);
	cli_json_u64(&j, "ckpt_age_ns", h->ckpt_age_ns);
	cli_json_bool(&j, "postcopy", h->postcopy);
	cli_json_u64(&j, "pc_pages", h->pc_pages);
	cli_json_u64(&j, "pc_sent", h->pc_sent);
	cli_json_u64(&j, "pc_zero", h->pc_zero);
	cli_json_u64(&j, "pc_asked", h->pc_asked);
	cli_json_u64(&j, "pc_on_demand", h->pc_on_demand);
	if (h->migration) {
		cli_json_u64(&j, "rounds", h->rounds);
		cli_json_u64(&j, "pending_pages", h->pending_pages);
		cli_json_u64(&j, "dirty_rate_pps", h->dirty_rate_pps);
		cli_json_u64(&j, "link_rate_bps", h->link_rate_bps);
		cli_json_u64(&j, "expected_downtime_ns", h->expected_downtime_ns);
		cli_json_u64(&j, "throttle_pct", h->throttle_pct);
		cli_json_u64(&j, "throttle_peak_pct", h->throttle_peak_pct);
		cli_json_u64(&j, "throttled_ns", h->throttled_ns);
		cli_json_u64(&j, "downtime_ns", h->downtime_ns);
		cli_json_u64(&j, "migration_ns", h->migration_ns);
		cli_json_u64(&j, "final_pages", h->final_pages);
		cli_json_str(&j, "policy", h->policy ? h->policy : "");
	}
	cli_json_str(&j, "last_error", h->last_error ? h->last_error : "");
	if (h->dr && h->dr->state) { /* the DR session beside the synchronous one */
		cli_json_object_begin(&j, "dr");
		cli_json_str(&j, "state", h->dr->state);
		cli_json_str(&j, "peer", h->dr->peer ? h->dr->peer : "");
		cli_json_u64(&j, "acked_epoch", h->dr->acked_epoch);
		cli_json_u64(&j, "rpo_target_ms", h->dr->rpo_target_ms);
		cli_json_u64(&j, "rpo_ns", h->dr->rpo_ns);
		cli_json_u64(&j, "rpo_alerts", h->dr->rpo_alerts);
		cli_json_u64(&j, "verify_ok", h->dr->verify_ok);
		cli_json_u64(&j, "verify_bad", h->dr->verify_bad);
		cli_json_object_end(&j);
	}
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
	if (h->verify_ok || h->verify_bad) {
		printf("verify: %" PRIu64 " digests matched, %" PRIu64 " differed", h->verify_ok,
		       h->verify_bad);
		if (h->disk_verify_ok)
			printf("; %" PRIu64 " disk images found equal", h->disk_verify_ok);
		printf("\n");
	}
	if (h->disks)
		printf("disks: %u replicated; %.1f MiB %s, %.1f MiB waiting to be sent\n", h->disks,
		       (double)h->disk_bytes / (1 << 20),
		       !strcmp(h->role, "primary") ? "written" : "applied to the copies",
		       (double)h->disk_pending_bytes / (1 << 20));
	if (h->disks && !strcmp(h->role, "primary"))
		printf("disks' initial copy: %.1f MiB of data sent, %.1f MiB the replica held "
		       "already\n",
		       (double)h->disk_copy_bytes / (1 << 20),
		       (double)h->disk_copy_same_bytes / (1 << 20));
	if (!strcmp(h->role, "primary") && (h->hot_pages || h->cold_faults))
		printf("hot pages: %" PRIu64 " (sent every epoch); %" PRIu64 " write faults\n",
		       h->hot_pages, h->cold_faults);
	if (h->port)
		printf("listening on port %u\n", h->port);
	if (h->peer && *h->peer)
		printf("replica %s; %" PRIu64 " heartbeats\n", h->peer, h->heartbeats);
	if (h->sync_total_bytes && !strcmp(h->state, "syncing"))
		printf("initial copy: %" PRIu64 " of %" PRIu64 " bytes sent (%.0f %%)\n",
		       h->sync_sent_bytes, h->sync_total_bytes,
		       100.0 * (double)h->sync_sent_bytes / (double)h->sync_total_bytes);
	else if (!strcmp(h->state, "syncing") && !strcmp(h->role, "primary") && h->disks)
		printf("initial copy: the disks first (%.1f MiB read and sent), then RAM\n",
		       (double)h->disk_bytes / (1 << 20));
	else if (!strcmp(h->state, "syncing") && !strcmp(h->role, "primary"))
		printf("initial copy: being built while the guest runs\n");
	if (h->link && *h->link)
		printf("link: %s\n",
		       !strcmp(h->link, "plain")
			       ? "PLAIN: neither authenticated nor encrypted (no --key)"
		       : !strcmp(h->link, "encrypted") ? "authenticated and encrypted (--key)"
						       : "authenticated, not encrypted (--key)");
	if (h->max_mbit)
		printf("link capped at %u Mbit/s (--max-mbit)\n", h->max_mbit);
	if (h->insecure)
		printf("INSECURE: castor-vmm runs with --insecure (no key needed off loopback)\n");
	if (h->twin_unusable)
		printf("the twin is UNUSABLE: a failover is refused\n");
	if (h->rpo_target_ms)
		printf("RPO: the replica's newest checkpoint is %.1f s old (p50 %.1f s, p99 %.1f s "
		       "before each new one; target %.1f s, %" PRIu64 " alerts)\n",
		       (double)h->rpo_ns / 1e9, (double)h->rpo_p50_ns / 1e9,
		       (double)h->rpo_p99_ns / 1e9, (double)h->rpo_target_ms / 1e3, h->rpo_alerts);
	if (h->ckpt_age_ns && !strcmp(h->role, "replica"))
		printf("newest checkpoint: epoch %" PRIu64 ", applied whole %.1f s ago\n", h->epoch,
		       (double)h->ckpt_age_ns / 1e9);
	if (h->postcopy)
		printf("postcopy: %" PRIu64 " of %" PRIu64 " pages %s (%" PRIu64 " zero), %" PRIu64
		       " %s\n",
		       h->pc_sent, h->pc_pages, !strcmp(h->role, "primary") ? "sent" : "placed",
		       h->pc_zero, h->pc_asked,
		       !strcmp(h->role, "primary") ? "requests" : "faults asked for one");
	if (h->failed_over)
		printf("this VMM's twin took over and runs here\n");
	if (h->last_error && *h->last_error)
		printf("last error: %s\n", h->last_error);
	if (h->dr && h->dr->state) /* beside the synchronous session (castor dr status) */
		printf("DR session beside it: %s toward %s, the replica's newest checkpoint %.1f s "
		       "old (target %.1f s, %" PRIu64 " alerts)\n",
		       h->dr->state, h->dr->peer ? h->dr->peer : "", (double)h->dr->rpo_ns / 1e9,
		       (double)h->dr->rpo_target_ms / 1e3, h->dr->rpo_alerts);
}

#define PROTECT_CALL_TIMEOUT_MS 30000

enum ha_opt {
	OPT_PEER = 0x100,
	OPT_MODE,
	OPT_INTERVAL,
	OPT_MIN_SPACING,
	OPT_RPO,
	OPT_MAX_MBIT,
	OPT_MAX_DIRTY,
	OPT_VERIFY,
	OPT_EXACT_DIRTY,
	OPT_TIMEOUT,
	OPT_FORCE,
	OPT_WAIT,
};

struct ha_args {
	const char *socket;
	bool json, force, wait;
	Castor__ProtectRequest pr;
	bool have_session_opts;
};

static int parse_ms(const char *cmd, const char *name, const char *arg, uint32_t *out)
{
	uint64_t v;

	if (util_parse_u64(arg, &v) < 0 || v == 0 || v > 600000) {
		cli_err("ha %s: --%s: '%s' is not a number of milliseconds (1-600000)", cmd, name,
			arg);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* One option of `cmd`; -EINVAL after a message. */
static int ha_opt(const char *cmd, int c, const char *name, const char *arg, struct ha_args *a)
{
	uint64_t v;

	switch (c) {
	case OPT_PEER:
		a->pr.peer = (char *)arg;
		return 0;
	case OPT_MODE:
		if (strcmp(arg, "interval") && strcmp(arg, "output") && strcmp(arg, "async")) {
			cli_err("ha %s: --mode: '%s' is not interval, output or async", cmd, arg);
			return -EINVAL;
		}
		a->pr.mode = (char *)arg;
		return 0;
	case OPT_INTERVAL:
		return parse_ms(cmd, name, arg, &a->pr.interval_ms);
	case OPT_MIN_SPACING:
		return parse_ms(cmd, name, arg, &a->pr.min_spacing_ms);
	case OPT_RPO:
		return parse_ms(cmd, name, arg, &a->pr.rpo_ms);
	case OPT_TIMEOUT:
		return parse_ms(cmd, name, arg, &a->pr.timeout_ms);
	case OPT_MAX_MBIT:
		if (util_parse_u64(arg, &v) < 0 || v == 0 || v > 100000) {
			cli_err("ha %s: --max-mbit: '%s' is not a rate in Mbit/s (1-100000)", cmd,
				arg);
			return -EINVAL;
		}
		a->pr.max_mbit = (uint32_t)v;
		return 0;
	case OPT_MAX_DIRTY:
		if (util_parse_u64(arg, &v) < 0 || v == 0) {
			cli_err("ha %s: --max-dirty: '%s' is not a page count", cmd, arg);
			return -EINVAL;
		}
		a->pr.max_dirty_pages = v;
		return 0;
	case OPT_VERIFY:
		a->pr.verify = true;
		return 0;
	case OPT_EXACT_DIRTY:
		a->pr.exact_dirty = true;
		return 0;
	case OPT_FORCE:
		a->force = true;
		return 0;
	case OPT_WAIT:
		a->wait = true;
		return 0;
	}
	return -EINVAL;
}

/* Which options each command takes, beyond --socket, --json and --help. */
static bool opt_applies(const char *cmd, int c)
{
	if (!strcmp(cmd, "protect"))
		return c != OPT_FORCE;
	if (!strcmp(cmd, "unprotect") || !strcmp(cmd, "failover"))
		return c == OPT_FORCE;
	return false;
}

static int parse_args(const char *cmd, int argc, char **argv, struct ha_args *a)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"peer", required_argument, NULL, OPT_PEER},
		{"mode", required_argument, NULL, OPT_MODE},
		{"interval", required_argument, NULL, OPT_INTERVAL},
		{"min-spacing", required_argument, NULL, OPT_MIN_SPACING},
		{"rpo", required_argument, NULL, OPT_RPO},
		{"max-mbit", required_argument, NULL, OPT_MAX_MBIT},
		{"max-dirty", required_argument, NULL, OPT_MAX_DIRTY},
		{"verify", no_argument, NULL, OPT_VERIFY},
		{"exact-dirty", no_argument, NULL, OPT_EXACT_DIRTY},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"force", no_argument, NULL, OPT_FORCE},
		{"wait", no_argument, NULL, OPT_WAIT},
		{NULL, 0, NULL, 0},
	};
	int c, idx;

	opterr = 0;
	optind = 1;
	while ((idx = -1, c = getopt_long(argc, argv, ":s:jh", opts, &idx)) != -1) {
		switch (c) {
		case 's':
			a->socket = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			cli_ha_usage(stdout);
			return 1;
		case ':':
			cli_err("ha %s: option '%s' needs a value", cmd, argv[optind - 1]);
			return -EINVAL;
		case '?':
			cli_err("ha %s: unknown option '%s'", cmd, argv[optind - 1]);
			return -EINVAL;
		default:
			if (!opt_applies(cmd, c)) {
				cli_err("ha %s: --%s does not apply to 'castor ha %s'", cmd,
					opts[idx].name, cmd);
				return -EINVAL;
			}
			if (ha_opt(cmd, c, opts[idx].name, optarg, a) < 0)
				return -EINVAL;
		}
	}
	if (optind < argc) {
		cli_err("ha %s: unexpected argument '%s'", cmd, argv[optind]);
		return -EINVAL;
	}
	if (!a->socket) {
		cli_err("ha %s: --socket PATH is required", cmd);
		return -EINVAL;
	}
	if (!strcmp(cmd, "protect") && (!a->pr.peer || !*a->pr.peer)) {
		cli_err("ha protect: --peer HOST:PORT (the replica) is required");
		return -EINVAL;
	}
	return 0;
}

static int call(const char *cmd, const char *socket, Castor__Request *req, Castor__Response **resp)
{
	char who[32];

	snprintf(who, sizeof(who), "ha %s", cmd);
	/* protect answers once the replica is reached and has welcomed it: a connect
	 * timeout and a busy replica's hello deadline may come first */
	return cli_call(who, socket,
			strcmp(cmd, "protect") ? PB_CALL_TIMEOUT_MS : PROTECT_CALL_TIMEOUT_MS,
			false, req, resp);
}

/* protect --wait: poll the status until the session is protected or has failed. */
static int wait_protected(const struct ha_args *a, Castor__Response **resp)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest sr = CASTOR__HA_STATUS_REQUEST__INIT;
	int rc;

	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
	req.ha_status = &sr;
	/* a DR session may start beside a synchronous one: its own state is the one */
	sr.dr = a->pr.mode && !strcmp(a->pr.mode, "async");
	for (;;) {
		const char *state;

		if (*resp)
			protobuf_c_message_free_unpacked(&(*resp)->base, NULL);
		*resp = NULL;
		rc = call("protect", a->socket, &req, resp);
		if (rc < 0)
			return rc;
		state = (*resp)->ha_status && (*resp)->ha_status->state ? (*resp)->ha_status->state
									: "";
		if (strcmp(state, "syncing"))
			return strcmp(state, "protected") ? -EIO : 0;
		usleep(100 * 1000);
	}
}

int cli_ha_main(int argc, char **argv)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest sr = CASTOR__HA_STATUS_REQUEST__INIT;
	Castor__FailoverRequest fr = CASTOR__FAILOVER_REQUEST__INIT;
	Castor__UnprotectRequest ur = CASTOR__UNPROTECT_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__HaStatus *h = NULL;
	struct ha_args a = {.pr = CASTOR__PROTECT_REQUEST__INIT};
	const char *cmd;
	int rc, ret = CLI_EXIT_FAIL;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_ha_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	cmd = argv[1];
	if (cli_ha_is_cluster_call(argc, argv))
		return cli_ha_cluster_main(argc, argv);
	if (strcmp(cmd, "status") && strcmp(cmd, "failover") && strcmp(cmd, "protect") &&
	    strcmp(cmd, "unprotect")) {
		cli_err("ha: unknown command '%s'", cmd);
		cli_ha_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	rc = parse_args(cmd, argc - 1, argv + 1, &a);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	req.id = (uint64_t)getpid();
	if (!strcmp(cmd, "status")) {
		req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
		req.ha_status = &sr;
	} else if (!strcmp(cmd, "protect")) {
		req.body_case = CASTOR__REQUEST__BODY_PROTECT;
		req.protect = &a.pr;
	} else if (!strcmp(cmd, "unprotect")) {
		ur.force = a.force;
		req.body_case = CASTOR__REQUEST__BODY_UNPROTECT;
		req.unprotect = &ur;
	} else {
		fr.force = a.force;
		req.body_case = CASTOR__REQUEST__BODY_FAILOVER;
		req.failover = &fr;
	}
	if (call(cmd, a.socket, &req, &resp) < 0)
		goto out;
	if (!strcmp(cmd, "protect") && a.wait && wait_protected(&a, &resp) < 0) {
		if (resp && resp->ha_status)
			cli_err("ha protect: the session ended %s: %s", resp->ha_status->state,
				resp->ha_status->last_error ? resp->ha_status->last_error : "");
		goto out;
	}
	if (resp->body_case == CASTOR__RESPONSE__BODY_UNPROTECT) {
		if (a.json)
			printf("{\"outputs_released\": %" PRIu64 "}\n",
			       resp->unprotect->outputs_released);
		else
			printf("unprotected; %" PRIu64 " held outputs released\n",
			       resp->unprotect->outputs_released);
		ret = CLI_EXIT_OK;
		goto out;
	}
	h = resp->body_case == CASTOR__RESPONSE__BODY_HA_STATUS	 ? resp->ha_status
	    : resp->body_case == CASTOR__RESPONSE__BODY_FAILOVER ? resp->failover
	    : resp->body_case == CASTOR__RESPONSE__BODY_PROTECT	 ? resp->protect
								 : NULL;
	if (!h) {
		cli_err("ha %s: unexpected reply from %s", cmd, a.socket);
		goto out;
	}
	if (a.json)
		ha_json(h);
	else
		ha_table(h);
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
