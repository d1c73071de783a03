/*
 * castor dr <command>: disaster recovery, seen from one castor-vmm -- the
 * primary of an async (DR) session or its replica at the DR site -- through
 * its control socket (docs/dr.md).
 *
 *   castor dr status   --socket PATH [--json]
 *   castor dr failover --socket PATH [--force] [--json]
 *
 * status says, at the primary, how old the replica's newest checkpoint is
 * against the RPO target; at the replica, which checkpoint it holds, how long
 * ago it was applied whole, and whether a failover would start from it.
 * failover names that checkpoint before it starts the copy from it. The
 * refusals are the replica's own (castor ha failover's): while the primary
 * still streams checkpoints, or after it stopped protecting on purpose, only
 * --force starts a second copy.
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

void cli_dr_usage(FILE *f)
{
	fputs("usage: castor dr <command> --socket PATH [options]\n"
	      "\n"
	      "commands:\n"
	      "  status     at the primary: the RPO (the age of the replica's newest\n"
	      "             checkpoint) against its target; at the DR replica: the\n"
	      "             checkpoint it holds, how old, and whether it can take over\n"
	      "  failover   (DR replica) start the copy from its newest checkpoint, naming\n"
	      "             it and its age first\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH     control socket of the castor-vmm (required)\n"
	      "  -f, --force           failover: even though the primary still streams or\n"
	      "                        stopped protecting on purpose (fence it first)\n"
	      "  -j, --json            print one JSON object\n"
	      "  -h, --help            this text\n"
	      "A DR session is started with castor ha protect --mode async --rpo MS.\n",
	      f);
}

struct dr_args {
	const char *socket;
	bool json, force;
};

static int parse_args(const char *cmd, int argc, char **argv, struct dr_args *a)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"force", no_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:fjh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			a->socket = optarg;
			break;
		case 'f':
			if (strcmp(cmd, "failover")) {
				cli_err("dr %s: --force applies to 'castor dr failover' only", cmd);
				return -EINVAL;
			}
			a->force = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			cli_dr_usage(stdout);
			return 1;
		case ':':
			cli_err("dr %s: option '%s' needs a value", cmd, argv[optind - 1]);
			return -EINVAL;
		default:
			cli_err("dr %s: unknown option '%s'", cmd, argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		cli_err("dr %s: unexpected argument '%s'", cmd, argv[optind]);
		return -EINVAL;
	}
	if (!a->socket) {
		cli_err("dr %s: --socket PATH is required", cmd);
		return -EINVAL;
	}
	return 0;
}

static int ha_call(const char *who, const char *socket, bool failover, bool force,
		   Castor__Response **resp)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest sr = CASTOR__HA_STATUS_REQUEST__INIT;
	Castor__FailoverRequest fr = CASTOR__FAILOVER_REQUEST__INIT;
	const Castor__HaStatus *h;
	int rc;

	req.id = (uint64_t)getpid();
	if (failover) {
		fr.force = force;
		req.body_case = CASTOR__REQUEST__BODY_FAILOVER;
		req.failover = &fr;
	} else {
		req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
		req.ha_status = &sr;
	}
	rc = cli_call(who, socket, PB_CALL_TIMEOUT_MS, false, &req, resp);
	if (rc < 0)
		return rc;
	h = failover ? (*resp)->failover : (*resp)->ha_status;
	if (!h || !h->role || !h->state || !h->mode) {
		cli_err("%s: unexpected reply from %s", who, socket);
		return -EPROTO;
	}
	return 0;
}

static bool is_replica(const Castor__HaStatus *h)
{
	return !strcmp(h->role, "replica");
}

/* What a failover at this replica would do now, in a sentence; true if it would start. */
static bool failover_outlook(const Castor__HaStatus *h, char *out, size_t len)
{
	if (h->failed_over || !strcmp(h->state, "failed-over")) {
		snprintf(out, len, "done: the copy runs here");
		return false;
	}
	if (h->twin_unusable) {
		snprintf(out, len, "refused: the copy is unusable (%s)", h->last_error);
		return false;
	}
	if (!strcmp(h->state, "idle") || !strcmp(h->state, "syncing")) {
		snprintf(out, len, "refused: no checkpoint yet (the initial copy has not arrived)");
		return false;
	}
	if (!strcmp(h->state, "primary-lost")) {
		snprintf(out, len, "ready: it would start from checkpoint %" PRIu64, h->epoch);
		return true;
	}
	snprintf(out, len, "refused without --force: the primary %s (state %s); fence it first",
		 !strcmp(h->state, "released") ? "stopped protecting on purpose and may still run"
					       : "still streams checkpoints",
		 h->state);
	return false;
}

static void status_json(const Castor__HaStatus *h)
{
	struct cli_json j;
	char outlook[256];
	bool ready = is_replica(h) && failover_outlook(h, outlook, sizeof(outlook));

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "role", h->role);
	cli_json_str(&j, "state", h->state);
	cli_json_str(&j, "mode", h->mode);
	cli_json_bool(&j, "dr_session", !strcmp(h->mode, "async"));
	cli_json_u64(&j, "epoch", h->epoch);
	cli_json_u64(&j, "acked_epoch", h->acked_epoch);
	cli_json_u64(&j, "checkpoints", h->epochs);
	cli_json_u64(&j, "rpo_target_ms", h->rpo_target_ms);
	cli_json_u64(&j, "rpo_ns", h->rpo_ns);
	cli_json_u64(&j, "rpo_p50_ns", h->rpo_p50_ns);
	cli_json_u64(&j, "rpo_p99_ns", h->rpo_p99_ns);
	cli_json_u64(&j, "rpo_alerts", h->rpo_alerts);
	cli_json_u64(&j, "ckpt_age_ns", h->ckpt_age_ns);
	cli_json_str(&j, "peer", h->peer ? h->peer : "");
	if (is_replica(h)) {
		cli_json_bool(&j, "failover_ready", ready);
		cli_json_str(&j, "failover", outlook);
	}
	cli_json_str(&j, "last_error", h->last_error ? h->last_error : "");
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

static void status_text(const Castor__HaStatus *h)
{
	char outlook[256];

	if (!strcmp(h->role, "none")) {
		printf("not protected: no DR session (castor ha protect --mode async --rpo MS)\n");
		return;
	}
	if (!is_replica(h)) {
		if (strcmp(h->mode, "async"))
			printf("primary in %s mode: a synchronous session, not a DR one (its "
			       "replica "
			       "is never behind by more than an epoch)\n",
			       h->mode);
		else
			printf("DR primary, %s, toward %s: the replica's newest checkpoint is %.1f "
			       "s "
			       "old (target %.1f s; p50 %.1f s, p99 %.1f s; %" PRIu64
			       " alerts); checkpoint %" PRIu64 " acknowledged\n",
			       h->state, h->peer && *h->peer ? h->peer : "(no replica)",
			       (double)h->rpo_ns / 1e9, (double)h->rpo_target_ms / 1e3,
			       (double)h->rpo_p50_ns / 1e9, (double)h->rpo_p99_ns / 1e9,
			       h->rpo_alerts, h->acked_epoch);
	} else {
		failover_outlook(h, outlook, sizeof(outlook));
		if (h->ckpt_age_ns)
			printf("replica, %s: checkpoint %" PRIu64 ", applied whole %.1f s ago "
			       "(%" PRIu64 " applied)\n",
			       h->state, h->epoch, (double)h->ckpt_age_ns / 1e9, h->epochs);
		else
			printf("replica, %s: no checkpoint held\n", h->state);
		printf("failover: %s\n", outlook);
	}
	if (h->last_error && *h->last_error)
		printf("last error: %s\n", h->last_error);
}

static int dr_failover(const struct dr_args *a)
{
	Castor__Response *st = NULL, *fo = NULL;
	uint64_t epoch, age_ns;
	char outlook[256];
	int ret = CLI_EXIT_FAIL;

	if (ha_call("dr failover", a->socket, false, false, &st) < 0)
		goto out;
	if (!is_replica(st->ha_status)) {
		cli_err("dr failover: %s is a %s, not a DR replica", a->socket,
			!strcmp(st->ha_status->role, "none") ? "VM without protection"
							     : st->ha_status->role);
		goto out;
	}
	if (!failover_outlook(st->ha_status, outlook, sizeof(outlook)) && !a->force) {
		cli_err("dr failover: %s", outlook);
		goto out;
	}
	epoch = st->ha_status->epoch;
	age_ns = st->ha_status->ckpt_age_ns;
	if (!a->json)
		printf("starting the copy from checkpoint %" PRIu64
		       ", applied whole %.1f s ago%s\n",
		       epoch, (double)age_ns / 1e9, a->force ? " (forced)" : "");
	/* the replica decides again: its state may have moved since the status */
	if (ha_call("dr failover", a->socket, true, a->force, &fo) < 0)
		goto out;
	if (a->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "state", fo->failover->state);
		cli_json_u64(&j, "epoch", fo->failover->epoch);
		cli_json_u64(&j, "ckpt_age_ns", age_ns);
		cli_json_bool(&j, "forced", a->force);
		cli_json_object_end(&j);
		cli_json_finish(&j);
	} else {
		printf("the copy runs from checkpoint %" PRIu64 " (state %s)\n",
		       fo->failover->epoch, fo->failover->state);
	}
	ret = CLI_EXIT_OK;
out:
	if (st)
		protobuf_c_message_free_unpacked(&st->base, NULL);
	if (fo)
		protobuf_c_message_free_unpacked(&fo->base, NULL);
	return ret;
}

int cli_dr_main(int argc, char **argv)
{
	Castor__Response *resp = NULL;
	struct dr_args a = {0};
	const char *cmd;
	int rc, ret = CLI_EXIT_FAIL;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_dr_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	cmd = argv[1];
	if (strcmp(cmd, "status") && strcmp(cmd, "failover")) {
		cli_err("dr: unknown command '%s' (status, failover)", cmd);
		cli_dr_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	rc = parse_args(cmd, argc - 1, argv + 1, &a);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	if (!strcmp(cmd, "failover"))
		return dr_failover(&a);
	if (ha_call("dr status", a.socket, false, false, &resp) < 0)
		goto out;
	if (a.json)
		status_json(resp->ha_status);
	else
		status_text(resp->ha_status);
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
