/*
 * castor migrate: live migration of the VM of one castor-vmm to a
 * `castor-vmm incoming` on another host (docs/migration.md).
 *
 *   castor migrate --socket PATH --to HOST:PORT [--downtime MS] [--timeout S]
 *                  [--verify] [--link-timeout MS] [--no-throttle] [--postcopy] [--json]
 *   castor migrate --socket PATH --cancel
 *   castor migrate --socket PATH --switch-to-postcopy
 *   castor migrate --socket PATH --resume [--json]
 *   castor migrate VM [--to NODE] [--castord PATH] [--json]   (through castord)
 *
 * It starts the migration, shows its progress (refreshed in place on a
 * terminal, one line per round otherwise) and its summary; once the
 * destination runs the VM it ends the source's castor-vmm.
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"
#include "util/util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#define MIGRATE_CALL_TIMEOUT_MS 15000 /* the destination is reached and welcomes us first */
#define POLL_MS			100

void cli_migrate_usage(FILE *f)
{
	fputs("usage: castor migrate --socket PATH --to HOST:PORT [options]\n"
	      "       castor migrate --socket PATH --cancel\n"
	      "       castor migrate --socket PATH --switch-to-postcopy\n"
	      "       castor migrate --socket PATH --resume [--json]\n"
	      "       castor migrate VM [--to NODE] [--castord PATH] [--json]  (a cluster VM,\n"
	      "                 through castord: it starts the destination and moves it)\n"
	      "\n"
	      "Moves the running VM of a castor-vmm to a 'castor-vmm incoming' on another host\n"
	      "while it runs (docs/migration.md): a copy of its RAM, rounds of what the guest\n"
	      "dirtied meanwhile, then a short pause in which the rest and the device state\n"
	      "move; the VM runs at the destination and the source castor-vmm ends.\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH     control socket of the source castor-vmm (required)\n"
	      "  --to HOST:PORT        the destination's --listen address (required)\n"
	      "  --downtime MS         the longest pause to aim for (default 30)\n"
	      "  --timeout S           give up after this long; the VM runs on here (default "
	      "600)\n"
	      "  --verify              the destination checks a digest of all RAM each round\n"
	      "  --link-timeout MS     a silent destination is dead after this long\n"
	      "  --no-throttle         never slow the guest down (a guest that dirties faster\n"
	      "                        than the link then meets --timeout)\n"
	      "  --postcopy            switch to postcopy after the initial copy: the VM runs\n"
	      "                        at the destination at once and fetches the pages it\n"
	      "                        lacks from here (if the source is lost before they all\n"
	      "                        arrive, the VM is lost: docs/migration.md)\n"
	      "  --switch-to-postcopy  a migration in its rounds switches to postcopy after\n"
	      "                        the round under way\n"
	      "  --resume              a postcopy whose link broke (postcopy-broken) connects\n"
	      "                        to its destination again and sends what it lacks\n"
	      "  --cancel              give a migration in progress up (the VM runs on here);\n"
	      "                        after 'in doubt', resume the VM here (only when the\n"
	      "                        destination does not run it)\n"
	      "  -j, --json            the summary as one JSON object; no progress lines\n"
	      "  -h, --help            this text\n",
	      f);
}

struct mig_args {
	const char *socket;
	Castor__MigrateRequest mr;
	bool json;
};

enum {
	OPT_TO = 0x100,
	OPT_DOWNTIME,
	OPT_TIMEOUT,
	OPT_VERIFY,
	OPT_LINK_TIMEOUT,
	OPT_CANCEL,
	OPT_NO_THROTTLE,
	OPT_POSTCOPY,
	OPT_SWITCH_POSTCOPY,
	OPT_RESUME
};

static int parse_u32(const char *name, const char *arg, uint64_t max, uint32_t *out)
{
	uint64_t v;

	if (util_parse_u64(arg, &v) < 0 || v == 0 || v > max) {
		cli_err("migrate: --%s: '%s' is not a number from 1 to %" PRIu64, name, arg, max);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct mig_args *a)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"to", required_argument, NULL, OPT_TO},
		{"downtime", required_argument, NULL, OPT_DOWNTIME},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"verify", no_argument, NULL, OPT_VERIFY},
		{"link-timeout", required_argument, NULL, OPT_LINK_TIMEOUT},
		{"cancel", no_argument, NULL, OPT_CANCEL},
		{"no-throttle", no_argument, NULL, OPT_NO_THROTTLE},
		{"postcopy", no_argument, NULL, OPT_POSTCOPY},
		{"switch-to-postcopy", no_argument, NULL, OPT_SWITCH_POSTCOPY},
		{"resume", no_argument, NULL, OPT_RESUME},
		{NULL, 0, NULL, 0},
	};
	int c, idx, rc = 0;

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
			cli_migrate_usage(stdout);
			return 1;
		case OPT_TO:
			a->mr.peer = optarg;
			break;
		case OPT_DOWNTIME:
			rc = parse_u32("downtime", optarg, 60000, &a->mr.downtime_ms);
			break;
		case OPT_TIMEOUT:
			rc = parse_u32("timeout", optarg, 86400, &a->mr.timeout_s);
			break;
		case OPT_LINK_TIMEOUT:
			rc = parse_u32("link-timeout", optarg, 600000, &a->mr.timeout_ms);
			break;
		case OPT_VERIFY:
			a->mr.verify = true;
			break;
		case OPT_CANCEL:
			a->mr.cancel = true;
			break;
		case OPT_NO_THROTTLE:
			a->mr.no_throttle = true;
			break;
		case OPT_POSTCOPY:
			a->mr.postcopy = true;
			break;
		case OPT_SWITCH_POSTCOPY:
			a->mr.switch_to_postcopy = true;
			break;
		case OPT_RESUME:
			a->mr.resume = true;
			break;
		default:
			cli_opt_error("migrate", c, argv);
			return -EINVAL;
		}
		if (rc < 0)
			return rc;
	}
	if (optind < argc) {
		cli_err("migrate: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!a->socket) {
		cli_err("migrate: --socket PATH (the source castor-vmm) is required");
		return -EINVAL;
	}
	if ((a->mr.cancel || a->mr.switch_to_postcopy || a->mr.resume) &&
	    ((a->mr.peer && *a->mr.peer) || a->mr.downtime_ms || a->mr.timeout_s ||
	     a->mr.timeout_ms || a->mr.verify || a->mr.no_throttle || a->mr.postcopy ||
	     a->mr.cancel + a->mr.switch_to_postcopy + a->mr.resume > 1 ||
	     ((a->mr.cancel || a->mr.switch_to_postcopy) && a->json))) {
		cli_err("migrate: --%s takes no other option than --socket%s",
			a->mr.cancel		   ? "cancel"
			: a->mr.switch_to_postcopy ? "switch-to-postcopy"
						   : "resume",
			a->mr.resume ? " and --json" : "");
		return -EINVAL;
	}
	if (!a->mr.cancel && !a->mr.switch_to_postcopy && !a->mr.resume &&
	    (!a->mr.peer || !*a->mr.peer)) {
		cli_err("migrate: --to HOST:PORT (the destination's castor-vmm incoming) is "
			"required");
		return -EINVAL;
	}
	return 0;
}

static int status(const char *socket, Castor__Response **resp)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest sr = CASTOR__HA_STATUS_REQUEST__INIT;

	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
	req.ha_status = &sr;
	if (*resp)
		protobuf_c_message_free_unpacked(&(*resp)->base, NULL);
	*resp = NULL;
	return cli_call("migrate", socket, PB_CALL_TIMEOUT_MS, false, &req, resp);
}

static void progress(const Castor__HaStatus *h, bool tty)
{
	double mib = (double)h->total_wire_bytes / (1 << 20);

	if (!strcmp(h->state, "syncing") && !h->sync_total_bytes && h->disks)
		printf("copy: the disks first, %.1f MiB read and sent",
		       (double)h->disk_bytes / (1 << 20));
	else if (!strcmp(h->state, "syncing") && !h->sync_total_bytes)
		printf("copy: RAM being captured while the guest runs");
	else if (!strcmp(h->state, "syncing"))
		printf("copy: %.1f of %.1f MiB sent", (double)h->sync_sent_bytes / (1 << 20),
		       (double)h->sync_total_bytes / (1 << 20));
	else if (!strcmp(h->state, "postcopy"))
		printf("postcopy: the VM runs at the destination; %" PRIu64 " of %" PRIu64
		       " pages sent, %" PRIu64 " of them asked for",
		       h->pc_sent, h->pc_pages, h->pc_on_demand);
	else
		printf("round %u: %.1f MiB sent, %.1f MiB left, dirty %.0f MB/s, link %.0f MB/s, "
		       "expected downtime %.1f ms, throttle %u %%",
		       h->rounds, mib, (double)h->pending_pages * 4096 / (1 << 20),
		       (double)h->dirty_rate_pps * 4096 / 1e6, (double)h->link_rate_bps / 1e6,
		       (double)h->expected_downtime_ns / 1e6, h->throttle_pct);
	printf(tty ? "\033[K\r" : "\n");
	fflush(stdout);
}

static void summary_json(const Castor__HaStatus *h)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "state", h->state);
	cli_json_str(&j, "peer", h->peer ? h->peer : "");
	cli_json_u64(&j, "total_ns", h->migration_ns);
	cli_json_u64(&j, "downtime_ns", h->downtime_ns);
	cli_json_u64(&j, "rounds", h->rounds);
	cli_json_u64(&j, "final_pages", h->final_pages);
	cli_json_u64(&j, "wire_bytes", h->total_wire_bytes);
	cli_json_u64(&j, "raw_bytes", h->total_raw_bytes);
	cli_json_u64(&j, "throttle_peak_pct", h->throttle_peak_pct);
	cli_json_u64(&j, "throttle_raises", h->throttle_raises);
	cli_json_u64(&j, "throttled_ns", h->throttled_ns);
	cli_json_u64(&j, "verify_ok", h->verify_ok);
	cli_json_bool(&j, "postcopy", h->postcopy);
	cli_json_u64(&j, "postcopy_pages", h->pc_pages);
	cli_json_u64(&j, "postcopy_sent", h->pc_sent);
	cli_json_u64(&j, "postcopy_zero", h->pc_zero);
	cli_json_u64(&j, "postcopy_asked", h->pc_asked);
	cli_json_u64(&j, "postcopy_on_demand", h->pc_on_demand);
	cli_json_str(&j, "policy", h->policy ? h->policy : "");
	cli_json_str(&j, "last_error", h->last_error ? h->last_error : "");
	cli_json_object_end(&j);
	cli_json_finish(&j);
}

/* The source ran its course: it ends now rather than after its linger. */
static void quit_source(const char *socket)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__QuitRequest qr = CASTOR__QUIT_REQUEST__INIT;
	Castor__Response *resp = NULL;

	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_QUIT;
	req.quit = &qr;
	/* its reply has no body; and if it is gone already, so much the better */
	if (pb_call(socket, &req, &resp, PB_CALL_TIMEOUT_MS) == 0)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* A cluster VM through castord: no --socket, and a VM named. */
static bool is_cluster_call(int argc, char **argv)
{
	bool vm = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--socket") || !strncmp(argv[i], "--socket=", 9) ||
		    !strcmp(argv[i], "-s") || (!strncmp(argv[i], "-s", 2) && argv[i][2] != '-'))
			return false;
		if (argv[i][0] != '-' && (i == 1 || strcmp(argv[i - 1], "--to")) &&
		    strcmp(argv[i - 1], "--castord"))
			vm = true;
	}
	return vm;
}

static int cluster_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"castord", required_argument, NULL, 'c'},
		{"to", required_argument, NULL, 't'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__VmMigrateRequest mr = CASTOR__VM_MIGRATE_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__VmDefinition *v;
	const char *socket = CLI_CASTORD_SOCKET, *host = "";
	bool json = false;
	int c, ret = CLI_EXIT_FAIL;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			socket = optarg;
			break;
		case 't':
			host = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			cli_migrate_usage(stdout);
			return CLI_EXIT_OK;
		default:
			cli_opt_error("migrate", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		cli_err("migrate: one VM, please (or --socket PATH for one castor-vmm)");
		return CLI_EXIT_USAGE;
	}
	mr.name = argv[optind];
	mr.host = (char *)host;
	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_VM_MIGRATE;
	req.vm_migrate = &mr;
	if (cli_castord_call("migrate", socket, &req, &resp) < 0)
		goto out;
	v = resp->vm_migrate;
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", v->name);
		cli_json_str(&j, "state", v->state);
		cli_json_str(&j, "primary", v->primary);
		cli_json_str(&j, "replica", v->replica);
		cli_json_object_end(&j);
		cli_json_finish(&j);
	} else {
		printf("%s on %s: migrating to %s ('castor vm show %s' follows it)\n", v->name,
		       v->primary, v->replica, v->name);
	}
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}

int cli_migrate_main(int argc, char **argv)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__Response *resp = NULL;
	struct mig_args a = {.mr = CASTOR__MIGRATE_REQUEST__INIT};
	const Castor__HaStatus *h;
	bool tty = isatty(STDOUT_FILENO);
	uint32_t shown = 0;
	int rc, ret = CLI_EXIT_FAIL;

	if (is_cluster_call(argc, argv))
		return cluster_main(argc, argv);
	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_MIGRATE;
	req.migrate = &a.mr;
	if (cli_call("migrate", a.socket, MIGRATE_CALL_TIMEOUT_MS, false, &req, &resp) < 0)
		goto out;
	if (a.mr.cancel) {
		printf("cancelled: the VM runs on at the source\n");
		ret = CLI_EXIT_OK;
		goto out;
	}
	if (a.mr.switch_to_postcopy) {
		printf("the migration switches to postcopy after the round under way\n");
		ret = CLI_EXIT_OK;
		goto out;
	}
	for (;;) {
		if (status(a.socket, &resp) < 0)
			goto out;
		h = resp->ha_status;
		if (!h || !h->state || !h->migration) {
			cli_err("migrate: %s no longer reports the migration", a.socket);
			goto out;
		}
		if (strcmp(h->state, "syncing") && strcmp(h->state, "migrating") &&
		    strcmp(h->state, "postcopy"))
			break;
		if (!a.json && (tty || h->rounds + h->pc_sent / 4096 != shown)) {
			progress(h, tty);
			shown = h->rounds + (uint32_t)(h->pc_sent / 4096);
		}
		usleep(POLL_MS * 1000);
	}
	if (tty && !a.json)
		printf("\033[K");
	if (a.json)
		summary_json(h);
	if (!strcmp(h->state, "migrated")) {
		if (!a.json)
			printf("migrated to %s in %.1f ms: downtime %.3f ms, %u rounds, %.1f MiB "
			       "sent (%.1f MiB before encoding), %" PRIu64
			       " pages in the final pause%s%.0u%s\n",
			       h->peer, (double)h->migration_ns / 1e6, (double)h->downtime_ns / 1e6,
			       h->rounds, (double)h->total_wire_bytes / (1 << 20),
			       (double)h->total_raw_bytes / (1 << 20), h->final_pages,
			       h->throttle_peak_pct ? ", throttled up to " : "",
			       h->throttle_peak_pct, h->throttle_peak_pct ? " %" : "");
		if (!a.json && h->postcopy)
			printf("postcopy: %" PRIu64 " pages came after the switch (%" PRIu64
			       " zero), %" PRIu64 " of them because the VM asked for them\n",
			       h->pc_sent, h->pc_zero, h->pc_on_demand);
		quit_source(a.socket);
		ret = CLI_EXIT_OK;
	} else {
		cli_err("migrate: %s: %s", h->state, h->last_error ? h->last_error : "");
	}
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ret;
}
