/*
 * castor bench dr: a DR session's RPO and the bytes its checkpoints carry
 * (docs/dr.md), the test guest protected twice over loopback in this
 * process -- a synchronous twin (interval mode, --twin-interval) and beside
 * it a DR session (async mode, --rpo) whose link is capped at --link-mbit
 * (SO_MAX_PACING_RATE: TCP paces the primary's sends to the cap, as a WAN's
 * bandwidth would) -- swept over guest dirty rates and link rates.
 *
 * For every (rate, link) cell, after both sessions protect and a warm-up:
 * the DR session's RPO p50/p99 (sampled just before each checkpoint commits,
 * the worst moment of each cycle) and its alerts; the bytes per DR
 * checkpoint on the wire; and, over the same span, the twin's bytes divided
 * by the DR checkpoints -- what the epochs one checkpoint coalesces would
 * have sent had each gone to the DR site. Their ratio is what coalescing
 * saves. The twin's epochs are real ones (the DR session runs beside a
 * twin, as in production), so the guest pays both sessions' pauses.
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"
#include "replication/repl.h"
#include "util/util.h"

#ifndef CASTOR_GUEST_BIN
#define CASTOR_GUEST_BIN "castor-tg.bin"
#endif

#define SEC	  ((uint64_t)1000000000)
#define MAX_LIST  16
#define SYNC_WAIT (600 * SEC) /* the DR initial copy crosses the capped link */

struct dr_opts {
	const char *image;
	uint64_t mem, wss, secs_ns;
	uint32_t cpus, rpo_ms, twin_ms;
	uint64_t rates[MAX_LIST], links[MAX_LIST]; /* pages/ms per vCPU; Mbit/s (0: no cap) */
	unsigned nrates, nlinks;
	bool json;
};

struct dr_cell {
	uint64_t rate, link_mbit;
	uint64_t checkpoints, twin_epochs, alerts;
	double rpo_p50_ms, rpo_p99_ms;
	double dr_bytes_per_ckpt, twin_bytes_per_ckpt;
	double guest_pages_per_s;
	const char *error;
};

/* rates: pages/ms per vCPU or max; links: Mbit/s or none */
static int parse_list(const char *s, uint64_t *out, unsigned *n, bool rates)
{
	return rates ? cli_bench_list(s, out, n, MAX_LIST, "max", TG_RATE_MAX, 60000)
		     : cli_bench_list(s, out, n, MAX_LIST, "none", 0, 100000);
}

/* Wait until `p` protects (or fails, or `deadline`); its status in `st`. */
static bool protects(struct repl_primary *p, uint64_t deadline, struct repl_status *st)
{
	do {
		util_sleep_ns(20000000);
		repl_primary_status(p, st);
	} while (st->state == REPL_S_SYNCING && util_now_ns() < deadline);
	return st->state == REPL_S_PROTECTED;
}

static int run_cell(const struct dr_opts *o, struct hv_vm *vm, struct dr_cell *c)
{
	struct repl_secondary_opts so = {.listen = "127.0.0.1:0",
					 .vm = {.name = "bench-twin", .serial_fd = -1}};
	struct repl_secondary_opts dso = {.listen = "127.0.0.1:0",
					  .vm = {.name = "bench-dr", .serial_fd = -1}};
	struct repl_primary_opts tpo = {.interval_ms = o->twin_ms};
	struct repl_primary_opts dpo = {.mode = REPL_MODE_ASYNC, .rpo_ms = o->rpo_ms};
	struct repl_secondary *twin = NULL, *dr = NULL;
	struct repl_primary *tp = NULL, *dp = NULL;
	struct repl_status ts, ds, ts1, ds1;
	uint64_t deadline, g0, t0;
	char why[256], tpeer[64], dpeer[64];
	int rc;

	/* the cap in bytes a second; a long initial copy at a low cap: a patient link */
	dpo.conn.max_rate_bytes = c->link_mbit * 1000000 / 8;
	dpo.conn.timeout_ms = 30000;
	rc = hv_tg_set_rates(vm, c->rate, 0);
	if (rc < 0)
		return rc;
	rc = repl_secondary_start(&so, &twin, why, sizeof(why));
	if (!rc)
		rc = repl_secondary_start(&dso, &dr, why, sizeof(why));
	if (rc < 0) {
		cli_err("bench dr: secondary: %s", why);
		goto out;
	}
	snprintf(tpeer, sizeof(tpeer), "127.0.0.1:%u", repl_secondary_port(twin));
	snprintf(dpeer, sizeof(dpeer), "127.0.0.1:%u", repl_secondary_port(dr));
	tpo.peer = tpeer;
	dpo.peer = dpeer;
	rc = repl_primary_start(vm, &tpo, &tp, why, sizeof(why));
	if (!rc)
		rc = repl_primary_start(vm, &dpo, &dp, why, sizeof(why));
	if (rc < 0) {
		cli_err("bench dr: primary: %s", why);
		goto out;
	}
	deadline = util_now_ns() + SYNC_WAIT;
	if (!protects(tp, deadline, &ts) || !protects(dp, deadline, &ds)) {
		c->error = "not protected";
		rc = -EIO;
		goto out;
	}
	/* a few checkpoints past the initial copy (which carried what the guest wrote
	 * during it): the steady state */
	deadline = util_now_ns() + 4 * (uint64_t)o->rpo_ms * 1000000 + 10 * SEC;
	while (ds.epochs < 3 && ds.state == REPL_S_PROTECTED && util_now_ns() < deadline) {
		util_sleep_ns(50000000);
		repl_primary_status(dp, &ds);
	}
	repl_primary_reset_samples(dp);
	repl_primary_status(tp, &ts);
	repl_primary_status(dp, &ds);
	g0 = cli_bench_guest_pages(vm);
	t0 = util_now_ns();
	util_sleep_ns(o->secs_ns);
	repl_primary_status(tp, &ts1);
	repl_primary_status(dp, &ds1);
	c->guest_pages_per_s =
		(double)(cli_bench_guest_pages(vm) - g0) * 1e9 / (double)(util_now_ns() - t0);
	if (ts1.state != REPL_S_PROTECTED || ds1.state != REPL_S_PROTECTED) {
		c->error = ts1.state != REPL_S_PROTECTED ? "the twin's session failed"
							 : "the DR session failed";
		rc = -EIO;
		goto out;
	}
	c->checkpoints = ds1.epochs - ds.epochs;
	c->twin_epochs = ts1.epochs - ts.epochs;
	c->alerts = ds1.rpo_alerts - ds.rpo_alerts;
	c->rpo_p50_ms = (double)ds1.rpo_p50_ns / 1e6;
	c->rpo_p99_ms = (double)ds1.rpo_p99_ns / 1e6;
	if (!c->checkpoints) {
		c->error = "no DR checkpoint in the span: give it more --secs";
		rc = -EAGAIN;
		goto out;
	}
	c->dr_bytes_per_ckpt =
		(double)(ds1.total_wire_bytes - ds.total_wire_bytes) / (double)c->checkpoints;
	c->twin_bytes_per_ckpt =
		(double)(ts1.total_wire_bytes - ts.total_wire_bytes) / (double)c->checkpoints;
out:
	/* the DR session first: its link may be the slow one */
	repl_primary_free(dp);
	repl_primary_free(tp);
	repl_secondary_free(dr);
	repl_secondary_free(twin);
	return rc;
}

static void print_cell(const struct dr_opts *o, const struct dr_cell *c)
{
	char link[24];

	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_u64(&j, "rate", c->rate);
		cli_json_u64(&j, "link_mbit", c->link_mbit);
		cli_json_u64(&j, "rpo_target_ms", o->rpo_ms);
		cli_json_u64(&j, "twin_interval_ms", o->twin_ms);
		cli_json_str(&j, "error", c->error);
		cli_json_u64(&j, "checkpoints", c->checkpoints);
		cli_json_u64(&j, "twin_epochs", c->twin_epochs);
		cli_json_double(&j, "rpo_p50_ms", c->rpo_p50_ms);
		cli_json_double(&j, "rpo_p99_ms", c->rpo_p99_ms);
		cli_json_u64(&j, "rpo_alerts", c->alerts);
		cli_json_double(&j, "dr_bytes_per_checkpoint", c->dr_bytes_per_ckpt);
		cli_json_double(&j, "twin_bytes_per_checkpoint", c->twin_bytes_per_ckpt);
		cli_json_double(&j, "guest_pages_per_s", c->guest_pages_per_s);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	snprintf(link, sizeof(link), c->link_mbit ? "%" PRIu64 : "none", c->link_mbit);
	if (c->rate == TG_RATE_MAX)
		printf("%-6s", "max");
	else
		printf("%-6" PRIu64, c->rate);
	if (c->error) {
		printf(" %-6s  %s\n", link, c->error);
		return;
	}
	printf(" %-6s %6" PRIu64 " %6" PRIu64 " %9.0f %9.0f %6" PRIu64
	       " %10.2f %10.2f %6.1fx %9.0f\n",
	       link, c->checkpoints, c->twin_epochs, c->rpo_p50_ms, c->rpo_p99_ms, c->alerts,
	       c->dr_bytes_per_ckpt / (1 << 20), c->twin_bytes_per_ckpt / (1 << 20),
	       c->dr_bytes_per_ckpt > 0 ? c->twin_bytes_per_ckpt / c->dr_bytes_per_ckpt : 0,
	       c->guest_pages_per_s);
}

void cli_bench_dr_usage(FILE *f);
void cli_bench_dr_usage(FILE *f)
{
	fputs("usage: castor bench dr [options]\n"
	      "  the test guest protected toward a twin (interval mode) and a DR replica (async\n"
	      "  mode, its link capped), both over loopback in this process; per (rate, link):\n"
	      "  the DR checkpoints' RPO p50/p99 and alerts, MiB per DR checkpoint, and the\n"
	      "  twin's MiB over the same span per DR checkpoint (what coalescing saves)\n"
	      "  --rates LIST       guest dirty rates, pages/ms per vCPU, or max (default 1,10)\n"
	      "  --link-mbit LIST   the DR link's cap in Mbit/s, or none (default 20,100,none)\n"
	      "  --rpo MS           the DR session's RPO target (default 2000; a checkpoint every\n"
	      "                     half of it)\n"
	      "  --twin-interval MS the twin's epoch interval (default 25)\n"
	      "  --secs N           the measured span per cell (default 10)\n"
	      "  --mem SIZE (256M)  --wss SIZE (8M)  --cpus N (2)  --guest-image FILE  --json\n",
	      f);
}

int cli_bench_dr(int argc, char **argv)
{
	static const struct option opts[] = {
		{"rates", required_argument, NULL, 'R'},
		{"link-mbit", required_argument, NULL, 'L'},
		{"rpo", required_argument, NULL, 'P'},
		{"twin-interval", required_argument, NULL, 'T'},
		{"secs", required_argument, NULL, 's'},
		{"mem", required_argument, NULL, 'm'},
		{"wss", required_argument, NULL, 'w'},
		{"cpus", required_argument, NULL, 'C'},
		{"json", no_argument, NULL, 'j'},
		{"guest-image", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct dr_opts o = {.image = CASTOR_GUEST_BIN,
			    .mem = 256ull << 20,
			    .wss = 8ull << 20,
			    .secs_ns = 10 * SEC,
			    .cpus = 2,
			    .rpo_ms = 2000,
			    .twin_ms = 25};
	struct hv_vm *vm = NULL;
	uint64_t v;
	int c, ret = CLI_EXIT_FAIL;

	parse_list("1,10", o.rates, &o.nrates, true);
	parse_list("20,100,none", o.links, &o.nlinks, false);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'R':
		case 'L':
			if ((c == 'R' ? parse_list(optarg, o.rates, &o.nrates, true)
				      : parse_list(optarg, o.links, &o.nlinks, false)) < 0) {
				cli_err("bench dr: bad list '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'P':
		case 'T':
		case 's':
			if (util_parse_u64(optarg, &v) < 0 || !v ||
			    v > (c == 's' ? 600u : 600000u)) {
				cli_err("bench dr: --%s wants 1-%u, not '%s'",
					c == 'P'   ? "rpo"
					: c == 'T' ? "twin-interval"
						   : "secs",
					c == 's' ? 600u : 600000u, optarg);
				return CLI_EXIT_USAGE;
			}
			if (c == 'P')
				o.rpo_ms = (uint32_t)v;
			else if (c == 'T')
				o.twin_ms = (uint32_t)v;
			else
				o.secs_ns = v * SEC;
			break;
		case 'm':
		case 'w':
			if (util_parse_size(optarg, &v) < 0 || !v) {
				cli_err("bench dr: '%s' is not a size", optarg);
				return CLI_EXIT_USAGE;
			}
			if (c == 'm')
				o.mem = v;
			else
				o.wss = v;
			break;
		case 'C':
			if (util_parse_u64(optarg, &v) < 0 || !v || v > HV_MAX_VCPUS) {
				cli_err("bench dr: --cpus wants 1-%u, not '%s'", HV_MAX_VCPUS,
					optarg);
				return CLI_EXIT_USAGE;
			}
			o.cpus = (uint32_t)v;
			break;
		case 'j':
			o.json = true;
			break;
		case 'i':
			o.image = optarg;
			break;
		case 'h':
			cli_bench_dr_usage(stdout);
			return CLI_EXIT_OK;
		default: /* '?' or ':' */
			cli_opt_error("bench dr", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	vm = cli_bench_vm(o.image, o.mem, o.cpus, 0, o.wss);
	if (!vm)
		goto out;
	if (!o.json)
		printf("castor bench dr: %" PRIu64 " MiB guest, %u vCPUs, %" PRIu64
		       " KiB work region each, %" PRIu64 " s per cell; a twin (%u ms epochs) and a "
		       "DR session (RPO target %u ms) over loopback, the DR link capped\n"
		       "%-6s %-6s %6s %6s %9s %9s %6s %10s %10s %7s %9s\n",
		       o.mem >> 20, o.cpus, o.wss >> 10, (uint64_t)(o.secs_ns / SEC), o.twin_ms,
		       o.rpo_ms, "RATE", "MBIT", "CKPTS", "EPOCHS", "RPO_P50", "RPO_P99", "ALERTS",
		       "MIB/CKPT", "TWIN_MIB", "SAVED", "PAGES/S");
	for (unsigned i = 0; i < o.nrates; i++)
		for (unsigned k = 0; k < o.nlinks; k++) {
			struct dr_cell cell = {.rate = o.rates[i], .link_mbit = o.links[k]};

			if (run_cell(&o, vm, &cell) < 0 && !cell.error)
				cell.error = "failed";
			print_cell(&o, &cell);
		}
	ret = CLI_EXIT_OK;
out:
	hv_vm_free(vm);
	return ret;
}
