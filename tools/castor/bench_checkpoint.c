/*
 * castor bench checkpoint: checkpoint replication of the test guest over
 * loopback, primary and secondary in this process (as they would share a
 * host's cores), swept over epoch intervals and guest dirty rates.
 *
 * For every (rate, interval) cell: the guest runs unprotected for --secs to
 * measure its own speed (its page-write counter), then protected for --secs.
 * Reported: pause p50/p99 and its parts, epochs/s, pages, raw and wire bytes
 * per epoch, ack round trip, and the guest's throughput against its
 * unprotected run. The protected samples start half a second after the
 * initial copy (WARMUP_NS): the steady state, not the first epochs that carry
 * what the guest wrote during that copy. Beside them, the unavoidable parts of a pause measured
 * bare in the same run, after replication stopped: a pause/resume cycle (the
 * vCPU kick), the bare dirty log ioctls and a memcpy of the pages the guest
 * dirties in one epoch's real length (which may exceed its interval), or of
 * as many pages as the epochs carried when hot pages made those more, and
 * the state save as the pause does it. encode_p50_ms: the primary encoding
 * an epoch after its pause; host_steal: the share of this machine's CPU time
 * its host took during the protected run.
 *
 * --repeat N runs every cell N times, each run its own unprotected measure
 * followed by its protected one (so a slow moment of the host hits both), and
 * ends with one summary line per cell: the median guest throughput with its
 * min and max, and the median pause p50 -- a cliff shows as spread, never as
 * one lucky or unlucky figure.
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

#define SEC	   ((uint64_t)1000000000)
#define MAX_LIST   16
#define MAX_REPEAT 50
#define WARMUP_NS  (SEC / 2) /* protected, before the samples start */

struct ck_opts {
	const char *image;
	uint64_t mem, wss, secs_ns;
	uint32_t cpus;
	uint64_t intervals[MAX_LIST], rates[MAX_LIST];
	unsigned nintervals, nrates;
	const char *csv;
	unsigned repeat; /* runs per cell */
	bool json, exact_dirty;
	int nice; /* of both replication threads */
	int rt;	  /* their SCHED_FIFO priority: as repl_primary_opts.thread_rt */
};

struct ck_cell {
	uint64_t rate, interval_ms;
	double base_rate, prot_rate; /* guest pages/s unprotected, protected */
	double epochs_per_s;
	struct repl_status st;
	uint64_t kick_ns, dirty_bare_ns, memcpy_ns; /* bare parts */
	uint64_t bare_pages;			    /* pages the bare memcpy copied */
	double pages_per_epoch, raw_per_epoch, wire_per_epoch;
	double steal; /* share of this machine's CPU time its host took during the protected run */
	const char *error;
};

/*
 * Ticks of CPU time the host stole from this (virtual) machine, and all ticks,
 * from the cpu line of /proc/stat; false when it cannot be read.
 */
static bool host_ticks(uint64_t *steal, uint64_t *total)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return false;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return false;
	*steal = v[7];
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	return true;
}

static int parse_list(const char *s, uint64_t *out, unsigned *n, bool allow_max)
{
	return cli_bench_list(s, out, n, MAX_LIST, allow_max ? "max" : NULL, TG_RATE_MAX, 60000);
}

/* The guest's pages per second over `ns`. */
static double guest_rate(struct hv_vm *vm, uint64_t ns)
{
	uint64_t c0 = cli_bench_guest_pages(vm), t0 = util_now_ns(), c1, t1;

	util_sleep_ns(ns);
	c1 = cli_bench_guest_pages(vm);
	t1 = util_now_ns();
	return (double)(c1 - c0) * 1e9 / (double)(t1 - t0);
}

/* p50 of a pause/resume cycle: what kicking the vCPUs out costs. */
static uint64_t bare_kick(struct hv_vm *vm)
{
	uint64_t v[50];
	unsigned i;

	for (i = 0; i < 50; i++) {
		uint64_t t0 = util_now_ns();

		hv_vm_pause(vm);
		hv_vm_resume(vm);
		v[i] = util_now_ns() - t0;
		util_sleep_ns(200000);
	}
	return util_percentile(v, 50, 50);
}

/*
 * With dirty tracking on, after one interval of the guest writing each time:
 * the bare dirty-log ioctls (p50 of 5), then one real harvest whose pages are
 * copied, bare, to a staging buffer as a pause would (p50 of 5 copies, each
 * after an interval of the guest rewriting them, with the vCPUs stopped). The
 * copy takes at least `want` pages, as many as the protected epochs carried:
 * hot pages make those a superset of what the guest wrote, and the pause must
 * be weighed against copying what it copied. The extra pages are the next
 * ones of the guest's work regions, where its hot pages are.
 */
static void bare_dirty(struct hv_vm *vm, uint64_t interval_ms, uint64_t want, uint64_t *ioctl_ns,
		       uint64_t *memcpy_ns, uint64_t *pages_out)
{
	const uint8_t *ram = hv_ram_base(vm);
	struct util_bitmap b = {0};
	uint64_t ns = 0, v[5], n = 0, p, *pfns = NULL;
	uint8_t *dst = NULL;
	unsigned i;

	*ioctl_ns = *memcpy_ns = *pages_out = 0;
	if (hv_dirty_start(vm) < 0)
		return;
	for (i = 0; i < 5; i++) {
		util_sleep_ns(interval_ms * 1000000ull);
		hv_dirty_bare_ioctls(vm, &ns);
		v[i] = ns;
	}
	*ioctl_ns = util_percentile(v, 5, 50);
	if (util_bitmap_init(&b, hv_ram_pages(vm)) < 0)
		goto out;
	/* the first harvest of a log holds every page: take it, then one interval's worth */
	if (hv_dirty_harvest(vm, &b, NULL) < 0)
		goto out;
	util_sleep_ns(interval_ms * 1000000ull);
	if (hv_dirty_harvest(vm, &b, NULL) < 0)
		goto out;
	n = util_bitmap_count(&b);
	for (p = TG_WORK_BASE / HV_PAGE_SIZE; n < want && p < b.nbits; p++)
		if (!util_bitmap_is_set(&b, p)) {
			util_bitmap_set(&b, p);
			n++;
		}
	pfns = malloc((n ? n : 1) * sizeof(*pfns));
	dst = malloc((n ? n : 1) * HV_PAGE_SIZE);
	if (!pfns || !dst)
		goto out;
	memset(dst, 0, n * HV_PAGE_SIZE); /* faulted in, as the staging buffer is */
	n = 0;
	for (p = util_bitmap_next_set(&b, 0); p < b.nbits; p = util_bitmap_next_set(&b, p + 1))
		pfns[n++] = p;
	/*
	 * Each copy as a pause makes it: the guest has just rewritten the pages
	 * for an interval, and the vCPUs are stopped while we copy.
	 */
	for (i = 0; i < 5; i++) {
		uint64_t t0, k;

		util_sleep_ns(interval_ms * 1000000ull);
		hv_vm_pause(vm);
		t0 = util_now_ns();
		for (k = 0; k < n; k++)
			memcpy(dst + k * HV_PAGE_SIZE, ram + pfns[k] * HV_PAGE_SIZE, HV_PAGE_SIZE);
		v[i] = util_now_ns() - t0;
		hv_vm_resume(vm);
	}
	*memcpy_ns = util_percentile(v, 5, 50);
	*pages_out = n;
out:
	hv_dirty_stop(vm);
	util_bitmap_dispose(&b);
	free(pfns);
	free(dst);
}

static int run_cell(const struct ck_opts *o, struct hv_vm *vm, struct ck_cell *c)
{
	struct repl_secondary_opts so = {.listen = "127.0.0.1:0",
					 .vm = {.name = "bench-twin", .serial_fd = -1},
					 .thread_nice = o->nice,
					 .thread_rt = o->rt};
	struct repl_primary_opts po = {.interval_ms = (uint32_t)c->interval_ms,
				       .exact_dirty = o->exact_dirty,
				       .thread_nice = o->nice,
				       .thread_rt = o->rt};
	struct repl_secondary *sec = NULL;
	struct repl_primary *pri = NULL;
	uint64_t e0, t0, deadline;
	char why[256], peer[64];
	int rc;

	rc = hv_tg_set_rates(vm, c->rate, 0);
	if (rc < 0)
		return rc;
	util_sleep_ns(200000000ull);
	c->base_rate = guest_rate(vm, o->secs_ns);
	c->kick_ns = bare_kick(vm);

	rc = repl_secondary_start(&so, &sec, why, sizeof(why));
	if (rc < 0) {
		cli_err("bench checkpoint: secondary: %s", why);
		goto out;
	}
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", repl_secondary_port(sec));
	po.peer = peer;
	rc = repl_primary_start(vm, &po, &pri, why, sizeof(why));
	if (rc < 0) {
		cli_err("bench checkpoint: primary: %s", why);
		goto out;
	}
	deadline = util_now_ns() + 120 * SEC;
	do {
		util_sleep_ns(10000000);
		repl_primary_status(pri, &c->st);
	} while (c->st.state == REPL_S_SYNCING && util_now_ns() < deadline);
	if (c->st.state != REPL_S_PROTECTED) {
		c->error = "not protected";
		rc = -EIO;
		goto out;
	}
	/* past the first epochs (the pages written during the initial copy): steady state */
	util_sleep_ns(WARMUP_NS);
	repl_primary_reset_samples(pri);
	repl_primary_status(pri, &c->st);
	e0 = c->st.epochs;
	t0 = util_now_ns();
	{
		uint64_t raw0 = c->st.total_raw_bytes, wire0 = c->st.total_wire_bytes, ep;

		uint64_t st0 = 0, tot0 = 0, st1, tot1;
		bool have = host_ticks(&st0, &tot0);

		c->prot_rate = guest_rate(vm, o->secs_ns);
		repl_primary_status(pri, &c->st);
		c->steal = -1;
		if (have && host_ticks(&st1, &tot1) && tot1 > tot0)
			c->steal = (double)(st1 - st0) / (double)(tot1 - tot0);
		ep = c->st.epochs - e0;
		c->epochs_per_s = (double)ep * 1e9 / (double)(util_now_ns() - t0);
		c->raw_per_epoch = ep ? (double)(c->st.total_raw_bytes - raw0) / (double)ep : 0;
		c->wire_per_epoch = ep ? (double)(c->st.total_wire_bytes - wire0) / (double)ep : 0;
	}
	if (c->st.state != REPL_S_PROTECTED) {
		c->error = c->st.last_error[0] ? "degraded" : "not protected";
		rc = -EIO;
		goto out;
	}
	/* an epoch's pages, from its raw size: 4 KiB and an 8-byte entry per page */
	c->pages_per_epoch = c->raw_per_epoch / (HV_PAGE_SIZE + 8);
out:
	repl_primary_free(pri);
	repl_secondary_free(sec);
	if (!rc) {
		/* the bare parts over what an epoch really lasted (it may outlast its interval) */
		uint64_t epoch_ms = c->epochs_per_s > 0 ? (uint64_t)(1000.0 / c->epochs_per_s) : 0;

		bare_dirty(vm, epoch_ms > c->interval_ms ? epoch_ms : c->interval_ms,
			   (uint64_t)c->pages_per_epoch, &c->dirty_bare_ns, &c->memcpy_ns,
			   &c->bare_pages);
	}
	return rc;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void csv_header(FILE *f)
{
	fputs("rate_pages_per_ms,interval_ms,pause_p50_ms,pause_p99_ms,harvest_p50_ms,"
	      "copy_p50_ms,state_p50_ms,kick_bare_ms,dirty_bare_ms,memcpy_bare_ms,memcpy_pages,"
	      "bare_sum_ms,"
	      "pause_over_bare,epochs_per_s,pages_per_epoch,raw_bytes_per_epoch,"
	      "wire_bytes_per_epoch,wire_over_raw,guest_rate_unprotected,guest_rate_protected,"
	      "guest_throughput,ack_rtt_p50_ms,encode_p50_ms,host_steal,hot_pages,status\n",
	      f);
}

static double bare_sum(const struct ck_cell *c)
{
	return ms(c->kick_ns) + ms(c->dirty_bare_ns) + ms(c->memcpy_ns) + ms(c->st.state_p50_ns);
}

static void csv_row(FILE *f, const struct ck_cell *c)
{
	char rate[24];
	double sum = bare_sum(c);

	if (c->rate == TG_RATE_MAX)
		snprintf(rate, sizeof(rate), "max");
	else
		snprintf(rate, sizeof(rate), "%" PRIu64, c->rate);
	fprintf(f,
		"%s,%" PRIu64 ",%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%" PRIu64
		",%.3f,%.2f,%.1f,%.0f,%.0f,"
		"%.0f,%.3f,%.0f,%.0f,%.3f,%.3f,%.3f,%.3f,%" PRIu64 ",%s\n",
		rate, c->interval_ms, ms(c->st.pause_p50_ns), ms(c->st.pause_p99_ns),
		ms(c->st.harvest_p50_ns), ms(c->st.copy_p50_ns), ms(c->st.state_p50_ns),
		ms(c->kick_ns), ms(c->dirty_bare_ns), ms(c->memcpy_ns), c->bare_pages, sum,
		sum > 0 ? ms(c->st.pause_p50_ns) / sum : 0, c->epochs_per_s, c->pages_per_epoch,
		c->raw_per_epoch, c->wire_per_epoch,
		c->raw_per_epoch > 0 ? c->wire_per_epoch / c->raw_per_epoch : 0, c->base_rate,
		c->prot_rate, c->base_rate > 0 ? c->prot_rate / c->base_rate : 0,
		ms(c->st.ack_rtt_p50_ns), ms(c->st.encode_p50_ns), c->steal, c->st.hot_pages,
		c->error ? c->error : "ok");
}

/* The median of n values (sorted in place); 0 when n is 0. */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One cell's runs: the figures its summary is made of. */
struct ck_runs {
	double throughput[MAX_REPEAT], pause_p50_ms[MAX_REPEAT], pages[MAX_REPEAT];
	unsigned n, failed;
};

static void runs_add(struct ck_runs *r, const struct ck_cell *c)
{
	if (c->error || c->base_rate <= 0) {
		r->failed++;
		return;
	}
	r->throughput[r->n] = c->prot_rate / c->base_rate;
	r->pause_p50_ms[r->n] = ms(c->st.pause_p50_ns);
	r->pages[r->n] = c->pages_per_epoch;
	r->n++;
}

static void runs_print(const struct ck_opts *o, const struct ck_cell *c, struct ck_runs *r)
{
	double tmed = median(r->throughput, r->n);
	double tmin = r->n ? r->throughput[0] : 0, tmax = r->n ? r->throughput[r->n - 1] : 0;
	double pmed = median(r->pause_p50_ms, r->n), gmed = median(r->pages, r->n);
	char rate[24];

	if (c->rate == TG_RATE_MAX)
		snprintf(rate, sizeof(rate), "max");
	else
		snprintf(rate, sizeof(rate), "%" PRIu64, c->rate);
	if (o->json) {
		struct cli_json js;

		cli_json_init(&js, stdout);
		cli_json_object_begin(&js, NULL);
		cli_json_str(&js, "bench", "checkpoint-summary");
		cli_json_u64(&js, "rate", c->rate);
		cli_json_u64(&js, "interval_ms", c->interval_ms);
		cli_json_u64(&js, "runs", r->n);
		cli_json_u64(&js, "failed_runs", r->failed);
		cli_json_double(&js, "guest_throughput_median", tmed);
		cli_json_double(&js, "guest_throughput_min", tmin);
		cli_json_double(&js, "guest_throughput_max", tmax);
		cli_json_double(&js, "pause_p50_ms_median", pmed);
		cli_json_double(&js, "pages_per_epoch_median", gmed);
		cli_json_object_end(&js);
		cli_json_finish(&js);
		return;
	}
	printf("# summary rate=%s interval=%" PRIu64 " ms: guest throughput median %.3f (min %.3f, "
	       "max %.3f, spread %.3f) over %u runs%s; pause p50 median %.3f ms; %.0f pages per "
	       "epoch (median)\n",
	       rate, c->interval_ms, tmed, tmin, tmax, tmax - tmin, r->n,
	       r->failed ? " (some runs failed)" : "", pmed, gmed);
}

/* One run of a cell: a CSV row on stdout (or a JSON object) and in --csv. */
static void print_run(const struct ck_opts *o, const struct ck_cell *cell, FILE *csv)
{
	if (o->json) {
		struct cli_json js;

		cli_json_init(&js, stdout);
		cli_json_object_begin(&js, NULL);
		cli_json_str(&js, "bench", "checkpoint");
		cli_json_u64(&js, "rate", cell->rate);
		cli_json_u64(&js, "interval_ms", cell->interval_ms);
		cli_json_double(&js, "pause_p50_ms", ms(cell->st.pause_p50_ns));
		cli_json_double(&js, "pause_p99_ms", ms(cell->st.pause_p99_ns));
		cli_json_double(&js, "bare_sum_ms", bare_sum(cell));
		cli_json_double(&js, "epochs_per_s", cell->epochs_per_s);
		cli_json_double(&js, "host_steal", cell->steal);
		cli_json_u64(&js, "hot_pages", cell->st.hot_pages);
		cli_json_double(&js, "raw_bytes_per_epoch", cell->raw_per_epoch);
		cli_json_double(&js, "wire_bytes_per_epoch", cell->wire_per_epoch);
		cli_json_double(&js, "guest_throughput",
				cell->base_rate > 0 ? cell->prot_rate / cell->base_rate : 0);
		cli_json_str(&js, "status", cell->error ? cell->error : "ok");
		cli_json_object_end(&js);
		cli_json_finish(&js);
	} else {
		csv_row(stdout, cell);
	}
	fflush(stdout);
	if (csv) {
		csv_row(csv, cell);
		fflush(csv);
	}
}

void cli_bench_checkpoint_usage(FILE *f);
void cli_bench_checkpoint_usage(FILE *f)
{
	fputs("usage: castor bench checkpoint [--intervals 5,10,25,50,100] [--rates max,100,10]\n"
	      "                               [--secs N] [--mem SIZE] [--wss SIZE] [--cpus N]\n"
	      "                               [--csv FILE] [--exact-dirty] [--repl-nice N]\n"
	      "                               [--repl-rt N] [--repeat N] [--json]\n"
	      "                               [--guest-image FILE]\n"
	      "  rates are the guest's pages per ms per vCPU (--cpus, default 2), 'max'\n"
	      "  unthrottled;\n"
	      "  --wss is each vCPU's work region (default 8M: a 16 MiB hot set)\n"
	      "  --repeat N runs each cell N times (1-50), each with its own unprotected run,\n"
	      "  and ends each cell with its median, min and max (docs/benchmarks.md)\n",
	      f);
}

int cli_bench_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"intervals", required_argument, NULL, 'I'},
		{"rates", required_argument, NULL, 'R'},
		{"secs", required_argument, NULL, 's'},
		{"mem", required_argument, NULL, 'm'},
		{"wss", required_argument, NULL, 'w'},
		{"cpus", required_argument, NULL, 'C'},
		{"exact-dirty", no_argument, NULL, 'E'},
		{"repl-nice", required_argument, NULL, 'N'},
		{"repl-rt", required_argument, NULL, 'T'},
		{"csv", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"guest-image", required_argument, NULL, 'i'},
		{"repeat", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct ck_opts o = {.image = CASTOR_GUEST_BIN,
			    .mem = 1ull << 30,
			    .wss = 8ull << 20,
			    .secs_ns = 3 * SEC,
			    .cpus = 2,
			    .repeat = 1};
	struct hv_vm *vm = NULL;
	FILE *csv = NULL;
	unsigned i, j;
	uint64_t v;
	int c, rc, ret = CLI_EXIT_FAIL;

	parse_list("5,10,25,50,100", o.intervals, &o.nintervals, false);
	parse_list("max,100,10", o.rates, &o.nrates, true);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'I':
		case 'R':
			if ((c == 'I' ? parse_list(optarg, o.intervals, &o.nintervals, false)
				      : parse_list(optarg, o.rates, &o.nrates, true)) < 0) {
				cli_err("bench checkpoint: bad list '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 's':
			if (util_parse_u64(optarg, &v) < 0 || !v || v > 600) {
				cli_err("bench checkpoint: --secs wants 1-600, not '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			o.secs_ns = v * SEC;
			break;
		case 'm':
		case 'w':
			if (util_parse_size(optarg, &v) < 0 || !v) {
				cli_err("bench checkpoint: '%s' is not a size", optarg);
				return CLI_EXIT_USAGE;
			}
			if (c == 'm')
				o.mem = v;
			else
				o.wss = v;
			break;
		case 'c':
			o.csv = optarg;
			break;
		case 'E':
			o.exact_dirty = true;
			break;
		case 'N': {
			int64_t n;

			if (util_parse_i64(optarg, &n) < 0 || n < -20 || n > 19) {
				cli_err("bench checkpoint: --repl-nice wants -20..19, not '%s'",
					optarg);
				return CLI_EXIT_USAGE;
			}
			o.nice = (int)n;
			break;
		}
		case 'T': {
			int64_t n;

			if (util_parse_i64(optarg, &n) < 0 || n < 0 || n > 99) {
				cli_err("bench checkpoint: --repl-rt wants 1..99 (0: none), not "
					"'%s'",
					optarg);
				return CLI_EXIT_USAGE;
			}
			o.rt = n ? (int)n : -1;
			break;
		}
		case 'C':
			if (util_parse_u64(optarg, &v) < 0 || !v || v > HV_MAX_VCPUS) {
				cli_err("bench checkpoint: --cpus wants 1-%u, not '%s'",
					HV_MAX_VCPUS, optarg);
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
		case 'r':
			if (util_parse_u64(optarg, &v) < 0 || !v || v > MAX_REPEAT) {
				cli_err("bench checkpoint: --repeat wants 1-%u, not '%s'",
					MAX_REPEAT, optarg);
				return CLI_EXIT_USAGE;
			}
			o.repeat = (unsigned)v;
			break;
		case 'h':
			cli_bench_checkpoint_usage(stdout);
			return CLI_EXIT_OK;
		default: /* '?' or ':' */
			cli_opt_error("bench checkpoint", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	if (o.csv) {
		csv = fopen(o.csv, "w");
		if (!csv) {
			cli_err("bench checkpoint: %s: %s", o.csv, strerror(errno));
			return CLI_EXIT_FAIL;
		}
		csv_header(csv);
	}
	vm = cli_bench_vm(o.image, o.mem, o.cpus, 0, o.wss);
	if (!vm)
		goto out;
	if (!o.json) {
		printf("castor bench checkpoint: %" PRIu64 " MiB guest, %u vCPUs, %" PRIu64
		       " KiB work region each, %" PRIu64 " s per run; loopback TCP, both ends in "
		       "this process; replication threads at nice %d, %s\n",
		       o.mem >> 20, o.cpus, o.wss >> 10, (uint64_t)(o.secs_ns / SEC), o.nice,
		       o.rt < 0 ? "SCHED_OTHER"
		       : o.rt	? "SCHED_FIFO (--repl-rt)"
				: "SCHED_FIFO 1");
		csv_header(stdout);
	}
	for (i = 0; i < o.nrates; i++) {
		for (j = 0; j < o.nintervals; j++) {
			struct ck_runs runs = {0};
			struct ck_cell cell;

			for (unsigned k = 0; k < o.repeat; k++) {
				cell = (struct ck_cell){.rate = o.rates[i],
							.interval_ms = o.intervals[j]};
				rc = run_cell(&o, vm, &cell);
				if (rc < 0 && !cell.error)
					cell.error = "failed";
				print_run(&o, &cell, csv);
				runs_add(&runs, &cell);
			}
			if (o.repeat > 1)
				runs_print(&o, &cell, &runs);
		}
	}
	ret = CLI_EXIT_OK;
out:
	hv_vm_free(vm);
	if (csv)
		fclose(csv);
	return ret;
}
