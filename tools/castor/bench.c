/*
 * castor bench: Castor's performance measurements. Each command runs real
 * VMs of the test guest in this process and prints a table (or --json, one
 * object per line). Figures and the commands behind them: docs/benchmarks.md.
 *
 *   castor bench pause [--cpus 1,2,4] [--cycles N] [--gap-us N] [--mem SIZE]
 *   castor bench dirty [--mem SIZE] [--reps N] [--cpus N]
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"
#include "tools/castor/json.h"

#ifndef CASTOR_GUEST_BIN
#define CASTOR_GUEST_BIN "castor-tg.bin"
#endif

#define SEC 1000000000ull

struct bench_opts {
	const char *image;
	const char *cpus_list;
	uint64_t mem;
	uint64_t cycles;
	uint64_t gap_us;
	uint64_t reps;
	bool json;
};

void cli_bench_usage(FILE *f)
{
	fputs("usage: castor bench <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  pause   pause+resume latency percentiles for several vCPU counts\n"
	      "          --cpus LIST (1,2,4)  --cycles N (2000)  --gap-us N (500)  --mem SIZE "
	      "(256M)\n"
	      "  dirty   dirty-harvest time at 1%, 10%, 100% of pages dirty, beside the bare\n"
	      "          KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG ioctls\n"
	      "          --mem SIZE (1G)  --reps N (20)  --cpus N (1)\n"
	      "  snapshot  snapshot pause (full; incremental at 1% dirty) and restore-to-running\n"
	      "          --mem SIZE (1G)  --reps N (20)\n"
	      "  checkpoint  replication over loopback swept over epoch intervals and guest\n"
	      "          dirty rates: pause and its parts beside their bare cost, epochs/s,\n"
	      "          bytes per epoch raw and encoded, guest throughput (castor bench\n"
	      "          checkpoint --help)\n"
	      "  dr      a DR session beside a twin, its link capped, swept over guest dirty\n"
	      "          rates and link rates: RPO p50/p99, bytes per DR checkpoint against the\n"
	      "          twin's epochs it coalesces (castor bench dr --help)\n"
	      "  resync  re-protecting a disk after part of it was rewritten: full copy,\n"
	      "          checksum resync, dirty-log resync over loopback; bytes and time\n"
	      "          --size SIZE (4G)  --changed PCT (1%)  --piece SIZE (64K)\n"
	      "          --align SIZE (64K)  --range SIZE (64K)  --dir DIR (/var/tmp)  --keep\n"
	      "  seal    cost of sealing a replication link (authenticate-only, encrypted):\n"
	      "          GB/s and ns per 4 KiB page, beside memcpy; no VM\n"
	      "          --size SIZE (256M)  --reps N (5)\n"
	      "  net     UDP and TCP request/response latency and rate, TCP throughput, against\n"
	      "          a running test guest: --target IP  --count N (2000)  --window N (32)\n"
	      "          (run it where the guest is reachable, e.g. ip netns exec TAG-client ...)\n"
	      "\n"
	      "common options: --json (one JSON object per result), --guest-image FILE\n",
	      f);
}

static struct hv_vm *bench_vm(const struct bench_opts *o, uint32_t ncpus, uint64_t rate,
			      uint64_t wss)
{
	return cli_bench_vm(o->image, o->mem, ncpus, rate, wss);
}

int cli_bench_list(const char *s, uint64_t *out, unsigned *n, unsigned cap, const char *word,
		   uint64_t word_value, uint64_t hi)
{
	char buf[256], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (*n == cap)
			return -EINVAL;
		if (word && !strcmp(tok, word))
			v = word_value;
		else if (util_parse_u64(tok, &v) < 0 || !v || v > hi)
			return -EINVAL;
		out[(*n)++] = v;
	}
	return *n ? 0 : -EINVAL;
}

uint64_t cli_bench_guest_pages(struct hv_vm *vm)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < hv_vm_ncpus(vm); i++) {
		struct hv_tg_vcpu t = {0};

		hv_tg_vcpu(vm, i, &t);
		sum += t.counter;
	}
	return sum;
}

struct hv_vm *cli_bench_vm(const char *image, uint64_t mem, uint32_t ncpus, uint64_t rate,
			   uint64_t wss)
{
	struct hv_vm_config cfg = {
		.name = "bench", .mem_bytes = mem, .ncpus = ncpus, .serial_fd = -1};
	struct hv_tg_config tg;
	struct hv_vm *vm = NULL;
	int rc;

	hv_tg_config_default(&tg);
	tg.image_path = image;
	tg.rate = rate;
	tg.out_rate = 0;
	tg.serial_tick = false;
	if (wss)
		tg.wss_bytes = wss;
	rc = hv_vm_create(&cfg, &vm);
	if (rc < 0) {
		cli_err("cannot create a %u-vCPU VM: %s", ncpus, strerror(-rc));
		return NULL;
	}
	rc = hv_tg_load(vm, &tg);
	if (!rc)
		rc = hv_vm_start(vm);
	if (!rc)
		rc = hv_tg_wait_ready(vm, 30 * SEC);
	if (rc < 0) {
		cli_err("cannot start the test guest: %s", strerror(-rc));
		hv_vm_free(vm);
		return NULL;
	}
	return vm;
}

static int bench_pause_one(const struct bench_opts *o, uint32_t ncpus, struct cli_json *j)
{
	uint64_t *pause_ns = NULL, *resume_ns = NULL, *cycle_ns = NULL, k;
	struct hv_vm *vm;
	int rc = 0;

	vm = bench_vm(o, ncpus, 100, 0);
	if (!vm)
		return -EIO;
	pause_ns = calloc(o->cycles, sizeof(uint64_t));
	resume_ns = calloc(o->cycles, sizeof(uint64_t));
	cycle_ns = calloc(o->cycles, sizeof(uint64_t));
	if (!pause_ns || !resume_ns || !cycle_ns) {
		rc = -ENOMEM;
		goto out;
	}
	for (k = 0; k < o->cycles + 100; k++) {
		uint64_t t0, t1, t2;

		util_sleep_ns(o->gap_us * 1000); /* let the vCPUs get back into KVM_RUN */
		t0 = util_now_ns();
		rc = hv_vm_pause(vm);
		t1 = util_now_ns();
		if (!rc)
			rc = hv_vm_resume(vm);
		t2 = util_now_ns();
		if (rc < 0)
			goto out;
		if (k < 100)
			continue; /* warm-up */
		pause_ns[k - 100] = t1 - t0;
		resume_ns[k - 100] = t2 - t1;
		cycle_ns[k - 100] = t2 - t0;
	}
	if (j) {
		cli_json_object_begin(j, NULL);
		cli_json_str(j, "bench", "pause");
		cli_json_u64(j, "vcpus", ncpus);
		cli_json_u64(j, "cycles", o->cycles);
		cli_json_double(j, "pause_p50_us", util_percentile(pause_ns, o->cycles, 50) / 1e3);
		cli_json_double(j, "pause_p99_us", util_percentile(pause_ns, o->cycles, 99) / 1e3);
		cli_json_double(j, "resume_p50_us",
				util_percentile(resume_ns, o->cycles, 50) / 1e3);
		cli_json_double(j, "resume_p99_us",
				util_percentile(resume_ns, o->cycles, 99) / 1e3);
		cli_json_double(j, "cycle_p50_us", util_percentile(cycle_ns, o->cycles, 50) / 1e3);
		cli_json_double(j, "cycle_p99_us", util_percentile(cycle_ns, o->cycles, 99) / 1e3);
		cli_json_object_end(j);
		rc = cli_json_finish(j);
	} else {
		printf("%-6u %13.1f %13.1f %14.1f %14.1f %13.1f %13.1f\n", ncpus,
		       util_percentile(pause_ns, o->cycles, 50) / 1e3,
		       util_percentile(pause_ns, o->cycles, 99) / 1e3,
		       util_percentile(resume_ns, o->cycles, 50) / 1e3,
		       util_percentile(resume_ns, o->cycles, 99) / 1e3,
		       util_percentile(cycle_ns, o->cycles, 50) / 1e3,
		       util_percentile(cycle_ns, o->cycles, 99) / 1e3);
	}
out:
	if (rc < 0)
		cli_err("pause benchmark with %u vCPUs: %s", ncpus, strerror(-rc));
	free(pause_ns);
	free(resume_ns);
	free(cycle_ns);
	hv_vm_free(vm);
	return rc;
}

static int bench_pause(const struct bench_opts *o)
{
	char *list = strdup(o->cpus_list), *tok, *save = NULL;
	struct cli_json j;
	int rc = 0;

	if (!list)
		return CLI_EXIT_FAIL;
	if (!o->json) {
		printf("castor bench pause: %llu cycles after 100 warm-up, %llu MiB guest, "
		       "%llu us between cycles\n",
		       (unsigned long long)o->cycles, (unsigned long long)(o->mem >> 20),
		       (unsigned long long)o->gap_us);
		printf("%-6s %13s %13s %14s %14s %13s %13s\n", "vcpus", "pause_p50_us",
		       "pause_p99_us", "resume_p50_us", "resume_p99_us", "cycle_p50_us",
		       "cycle_p99_us");
	}
	for (tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
		uint64_t n;

		if (util_parse_u64(tok, &n) < 0 || n < 1 || n > HV_MAX_VCPUS) {
			cli_err("bench pause: --cpus: '%s' is not a vCPU count (1 to %u)", tok,
				HV_MAX_VCPUS);
			free(list);
			return CLI_EXIT_USAGE;
		}
		cli_json_init(&j, stdout);
		rc = bench_pause_one(o, (uint32_t)n, o->json ? &j : NULL);
	}
	free(list);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int bench_dirty(const struct bench_opts *o, uint32_t ncpus)
{
	static const unsigned pcts[] = {1, 10, 100};
	uint64_t *h_ns = NULL, *b_ns = NULL, first, end;
	struct util_bitmap bm = {0};
	struct hv_vm *vm;
	unsigned pi;
	int rc;

	vm = bench_vm(o, ncpus, 0, TG_PAGE_SIZE);
	if (!vm)
		return CLI_EXIT_FAIL;
	h_ns = calloc(o->reps, sizeof(uint64_t));
	b_ns = calloc(o->reps, sizeof(uint64_t));
	rc = (!h_ns || !b_ns) ? -ENOMEM : util_bitmap_init(&bm, hv_ram_pages(vm));
	if (!rc)
		rc = hv_tg_scratch(vm, &first, &end);
	if (!rc)
		rc = hv_dirty_start(vm);
	if (!rc)
		rc = hv_dirty_harvest(vm, &bm, NULL); /* the initial all-dirty round */
	if (rc < 0)
		goto out;
	if (!o->json)
		printf("castor bench dirty: %llu MiB guest (%llu pages), %llu reps; harvest = "
		       "Castor's "
		       "hv_dirty_harvest(), bare = KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG alone\n"
		       "%-6s %8s %15s %15s %14s %14s %7s\n",
		       (unsigned long long)(o->mem >> 20), (unsigned long long)hv_ram_pages(vm),
		       (unsigned long long)o->reps, "dirty", "pages", "harvest_p50_us",
		       "harvest_p90_us", "bare_p50_us", "bare_p90_us", "ratio");
	for (pi = 0; pi < 3; pi++) {
		uint64_t stride = 100 / pcts[pi];
		uint64_t count = (end - first) / stride, r, pages = 0;
		double hp50, bp50;

		for (r = 0; r < o->reps; r++) {
			struct hv_harvest_stats st;

			/* the guest writes the set, then the VM is paused for the timing */
			rc = hv_tg_dirty_range(vm, first, count, stride, r + 1, 60 * SEC);
			if (!rc)
				rc = hv_vm_pause(vm);
			if (!rc)
				rc = hv_dirty_harvest(vm, &bm, &st);
			if (!rc)
				rc = hv_vm_resume(vm);
			if (!rc)
				rc = hv_tg_dirty_range(vm, first, count, stride, r + 1, 60 * SEC);
			if (!rc)
				rc = hv_vm_pause(vm);
			if (!rc)
				rc = hv_dirty_bare_ioctls(vm, &b_ns[r]);
			if (!rc)
				rc = hv_vm_resume(vm);
			if (rc < 0)
				goto out;
			h_ns[r] = st.total_ns;
			pages = st.pages;
		}
		hp50 = util_percentile(h_ns, o->reps, 50) / 1e3;
		bp50 = util_percentile(b_ns, o->reps, 50) / 1e3;
		if (o->json) {
			struct cli_json j;

			cli_json_init(&j, stdout);
			cli_json_object_begin(&j, NULL);
			cli_json_str(&j, "bench", "dirty");
			cli_json_u64(&j, "mem_mib", o->mem >> 20);
			cli_json_u64(&j, "dirty_pct", pcts[pi]);
			cli_json_u64(&j, "pages", pages);
			cli_json_double(&j, "harvest_p50_us", hp50);
			cli_json_double(&j, "harvest_p90_us",
					util_percentile(h_ns, o->reps, 90) / 1e3);
			cli_json_double(&j, "bare_p50_us", bp50);
			cli_json_double(&j, "bare_p90_us",
					util_percentile(b_ns, o->reps, 90) / 1e3);
			cli_json_double(&j, "ratio", bp50 > 0 ? hp50 / bp50 : 0);
			cli_json_object_end(&j);
			cli_json_finish(&j);
		} else {
			printf("%5u%% %8llu %15.1f %15.1f %14.1f %14.1f %7.2f\n", pcts[pi],
			       (unsigned long long)pages, hp50,
			       util_percentile(h_ns, o->reps, 90) / 1e3, bp50,
			       util_percentile(b_ns, o->reps, 90) / 1e3,
			       bp50 > 0 ? hp50 / bp50 : 0);
		}
	}
out:
	if (rc < 0)
		cli_err("dirty benchmark: %s", strerror(-rc));
	util_bitmap_dispose(&bm);
	free(h_ns);
	free(b_ns);
	hv_vm_free(vm);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/*
 * Snapshot pause (full, incremental at 1 % of pages dirty) and restore-to-
 * running, for a guest of o->mem. Snapshots go to a memfd (page cache speed:
 * the pause does not depend on the disk, the total time does).
 */
/* Empty the snapshot file and rewind it (ftruncate leaves the offset alone). */
static int rewind_fd(int fd)
{
	return ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ? -errno : 0;
}

#define BUSY_RATE 100u /* pages per ms per vCPU */

/*
 * Incremental snapshots of a guest that keeps writing: 2 vCPUs rewrite a
 * working set of 1 % of RAM at BUSY_RATE pages/ms each, and an incremental is
 * taken every 50 ms. The live pass sends the working set; the pause re-sends
 * what the guest wrote meanwhile.
 */
static int bench_snapshot_busy(const struct bench_opts *o, int fd, uint64_t *pause_out,
			       uint64_t *pages_out, uint64_t *staged_out)
{
	uint64_t wss = (o->mem / TG_PAGE_SIZE / 100 / 2) * TG_PAGE_SIZE, r;
	struct hv_vm *vm = bench_vm(o, 2, BUSY_RATE, wss ? wss : TG_PAGE_SIZE);
	struct hv_snapshot_stats st;
	int rc;

	if (!vm)
		return -EIO;
	rc = rewind_fd(fd);
	if (!rc)
		rc = hv_snapshot_save(vm, fd, HV_STREAM_FULL, &st);
	for (r = 0; !rc && r < o->reps; r++) {
		util_sleep_ns(50 * 1000000ull);
		rc = rewind_fd(fd);
		if (!rc)
			rc = hv_snapshot_save(vm, fd, HV_STREAM_INCREMENTAL, &st);
		pause_out[r] = st.pause_ns;
		*pages_out = st.precopy_pages + st.staged_pages;
		*staged_out = st.staged_pages;
	}
	hv_vm_free(vm);
	return rc;
}

/*
 * Restore the full snapshot `map` and start it, timed from the call to the
 * vCPU threads started: into a new VM, or (warm) into a standby made first
 * (slots registered; RAM faulted in unless lazy), untimed.
 */
static int time_restore(const struct bench_opts *o, uint32_t ncpus, const uint8_t *map, size_t len,
			bool warm, bool lazy, uint64_t *ns)
{
	struct hv_vm_config cfg = {.name = warm ? "standby" : "restored",
				   .mem_bytes = warm ? o->mem : 0,
				   .ncpus = warm ? ncpus : 0,
				   .serial_fd = -1};
	unsigned flags = lazy ? HV_RESTORE_LAZY : 0;
	struct hv_vm *rv = NULL;
	char why[256] = "";
	uint64_t t0;
	int rc = 0;

	if (warm) {
		rc = hv_vm_create(&cfg, &rv);
		if (!rc)
			rc = hv_vm_prepare(rv, !lazy);
		if (rc < 0) {
			cli_err("bench snapshot: standby: %s", strerror(-rc));
			hv_vm_free(rv);
			return rc;
		}
	}
	t0 = util_now_ns();
	if (warm)
		rc = hv_snapshot_restore_into(rv, &map, &len, 1, flags, NULL, NULL, why,
					      sizeof(why));
	else
		rc = hv_snapshot_restore(&cfg, &map, &len, 1, flags, NULL, NULL, &rv, why,
					 sizeof(why));
	if (!rc)
		rc = hv_vm_start(rv);
	*ns = util_now_ns() - t0;
	if (rc < 0)
		cli_err("bench snapshot: %srestore: %s", warm ? "warm " : "",
			why[0] ? why : strerror(-rc));
	hv_vm_free(rv);
	return rc;
}

/* "NAME_p50_ms" and "NAME_p99_ms" of `n` samples in ns. */
static void json_p50_p99(struct cli_json *j, const char *name, uint64_t *v, uint64_t n)
{
	char key[96];

	snprintf(key, sizeof(key), "%s_p50_ms", name);
	cli_json_double(j, key, util_percentile(v, n, 50) / 1e6);
	snprintf(key, sizeof(key), "%s_p99_ms", name);
	cli_json_double(j, key, util_percentile(v, n, 99) / 1e6);
}

static void print_p50_p99(const char *what, uint64_t *v, uint64_t n)
{
	printf("  %s p50 %8.3f ms  p99 %8.3f ms\n", what, util_percentile(v, n, 50) / 1e6,
	       util_percentile(v, n, 99) / 1e6);
}

static int bench_snapshot(const struct bench_opts *o)
{
	uint64_t *full_p = calloc(o->reps, 8), *inc_p = calloc(o->reps, 8),
		 *rst = calloc(o->reps, 8), *rst_lazy = calloc(o->reps, 8),
		 *busy_p = calloc(o->reps, 8), *warm = calloc(o->reps, 8),
		 *warm_lazy = calloc(o->reps, 8);
	uint64_t first, end, count, r, full_bytes = 0, inc_bytes = 0, inc_pages = 0;
	uint64_t busy_pages = 0, busy_staged = 0;
	struct hv_vm *vm = bench_vm(o, 2, 0, TG_PAGE_SIZE);
	int fd = memfd_create("bench-snapshot", 0), rc = 0;

	if (!vm || fd < 0 || !full_p || !inc_p || !rst || !rst_lazy || !busy_p || !warm ||
	    !warm_lazy) {
		rc = -ENOMEM;
		goto out;
	}
	rc = hv_tg_scratch(vm, &first, &end);
	count = (end - first) / 100; /* 1 % of the guest's pages */
	for (r = 0; !rc && r < o->reps; r++) {
		struct hv_snapshot_stats st;
		const uint8_t *map;
		size_t len;

		/* a full snapshot starts a chain */
		if ((rc = rewind_fd(fd)) < 0 ||
		    (rc = hv_snapshot_save(vm, fd, HV_STREAM_FULL, &st)) < 0)
			break;
		full_p[r] = st.pause_ns;
		full_bytes = st.bytes;
		/* the guest dirties 1 % of its pages, then an incremental */
		rc = hv_tg_dirty_range(vm, first, count, 100, r + 1, 60 * SEC);
		if (!rc)
			rc = rewind_fd(fd);
		if (!rc)
			rc = hv_snapshot_save(vm, fd, HV_STREAM_INCREMENTAL, &st);
		if (rc < 0)
			break;
		inc_p[r] = st.pause_ns;
		inc_bytes = st.bytes;
		inc_pages = st.precopy_pages + st.staged_pages;
		/* restore to running, from the full snapshot just taken */
		if ((rc = rewind_fd(fd)) < 0 ||
		    (rc = hv_snapshot_save(vm, fd, HV_STREAM_FULL, &st)) < 0)
			break;
		len = st.bytes;
		map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			rc = -errno;
			break;
		}
		/* the source VM's vCPUs must not compete for the cores while we time */
		hv_vm_pause(vm);
		for (int k = 0; !rc && k < 4;
		     k++) /* new VM, new VM lazily, standby, lazy standby */
			rc = time_restore(o, hv_vm_ncpus(vm), map, len, k >= 2, k % 2,
					  &(k == 0   ? rst
					    : k == 1 ? rst_lazy
					    : k == 2 ? warm
						     : warm_lazy)[r]);
		hv_vm_resume(vm);
		munmap((void *)map, len);
	}
	if (!rc)
		rc = bench_snapshot_busy(o, fd, busy_p, &busy_pages, &busy_staged);
	if (rc < 0)
		goto out;
	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "bench", "snapshot");
		cli_json_u64(&j, "mem_mib", o->mem >> 20);
		json_p50_p99(&j, "full_pause", full_p, o->reps);
		cli_json_u64(&j, "full_bytes", full_bytes);
		cli_json_u64(&j, "incremental_pages", inc_pages);
		json_p50_p99(&j, "incremental_pause", inc_p, o->reps);
		cli_json_u64(&j, "incremental_bytes", inc_bytes);
		cli_json_u64(&j, "busy_incremental_pages", busy_pages);
		cli_json_u64(&j, "busy_incremental_staged_pages", busy_staged);
		json_p50_p99(&j, "busy_incremental_pause", busy_p, o->reps);
		json_p50_p99(&j, "restore_to_running", rst, o->reps);
		json_p50_p99(&j, "lazy_restore_to_running", rst_lazy, o->reps);
		json_p50_p99(&j, "warm_restore_to_running", warm, o->reps);
		json_p50_p99(&j, "warm_lazy_restore_to_running", warm_lazy, o->reps);
		cli_json_object_end(&j);
		cli_json_finish(&j);
	} else {
		printf("castor bench snapshot: %llu MiB guest, 2 vCPUs, %llu reps, snapshots to a "
		       "memfd\n",
		       (unsigned long long)(o->mem >> 20), (unsigned long long)o->reps);
		printf("  full snapshot:        pause p50 %8.3f ms  p99 %8.3f ms  (%.1f MiB)\n",
		       util_percentile(full_p, o->reps, 50) / 1e6,
		       util_percentile(full_p, o->reps, 99) / 1e6, (double)full_bytes / (1 << 20));
		printf("  incremental, 1%% dirty: pause p50 %8.3f ms  p99 %8.3f ms  (%llu pages, "
		       "%.1f MiB)\n",
		       util_percentile(inc_p, o->reps, 50) / 1e6,
		       util_percentile(inc_p, o->reps, 99) / 1e6, (unsigned long long)inc_pages,
		       (double)inc_bytes / (1 << 20));
		printf("  incremental, guest writing %u pages/ms over 1%% of RAM: pause p50 %8.3f "
		       "ms  "
		       "p99 %8.3f ms  (%llu pages, %llu of them staged in the pause)\n",
		       2 * BUSY_RATE, util_percentile(busy_p, o->reps, 50) / 1e6,
		       util_percentile(busy_p, o->reps, 99) / 1e6, (unsigned long long)busy_pages,
		       (unsigned long long)busy_staged);
		print_p50_p99("restore to running:  ", rst, o->reps);
		print_p50_p99("lazy restore:        ", rst_lazy, o->reps);
		print_p50_p99("warm restore (into a standby):     ", warm, o->reps);
		print_p50_p99("warm lazy restore (into a standby):", warm_lazy, o->reps);
	}
out:
	if (rc < 0)
		cli_err("bench snapshot: %s", strerror(-rc));
	if (fd >= 0)
		close(fd);
	free(full_p);
	free(inc_p);
	free(rst);
	free(rst_lazy);
	free(busy_p);
	free(warm);
	free(warm_lazy);
	hv_vm_free(vm);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cli_bench_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"cpus", required_argument, NULL, 'c'},
		{"cycles", required_argument, NULL, 'n'},
		{"gap-us", required_argument, NULL, 'g'},
		{"mem", required_argument, NULL, 'm'},
		{"reps", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"guest-image", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct bench_opts o = {.image = CASTOR_GUEST_BIN, .gap_us = 500};
	const char *cmd;
	bool have_mem = false;
	uint64_t v;
	int c;

	if (argc < 2) {
		cli_err("bench: missing command");
		cli_bench_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		cli_bench_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(cmd, "net"))
		return cli_bench_net(argc - 1, argv + 1);
	if (!strcmp(cmd, "checkpoint"))
		return cli_bench_checkpoint(argc - 1, argv + 1);
	if (!strcmp(cmd, "seal"))
		return cli_bench_seal(argc - 1, argv + 1);
	if (!strcmp(cmd, "resync"))
		return cli_bench_resync(argc - 1, argv + 1);
	if (!strcmp(cmd, "dr"))
		return cli_bench_dr(argc - 1, argv + 1);
	if (strcmp(cmd, "pause") && strcmp(cmd, "dirty") && strcmp(cmd, "snapshot")) {
		cli_err("bench: unknown command '%s'", cmd);
		cli_bench_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	o.cpus_list = !strcmp(cmd, "pause") ? "1,2,4" : "1";
	o.cycles = 2000;
	o.reps = 20;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.cpus_list = optarg;
			break;
		case 'n':
		case 'g':
		case 'r':
			if (util_parse_u64(optarg, &v) < 0 ||
			    (c != 'g' && (v < 1 || v > 10000000))) {
				cli_err("bench %s: bad number '%s'", cmd, optarg);
				return CLI_EXIT_USAGE;
			}
			if (c == 'n')
				o.cycles = v;
			else if (c == 'g')
				o.gap_us = v;
			else
				o.reps = v;
			break;
		case 'm':
			if (util_parse_size(optarg, &v) < 0) {
				cli_err("bench %s: --mem: '%s' is not a size", cmd, optarg);
				return CLI_EXIT_USAGE;
			}
			o.mem = v;
			have_mem = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 'i':
			o.image = optarg;
			break;
		case 'h':
			cli_bench_usage(stdout);
			return CLI_EXIT_OK;
		default: { /* '?' or ':' */
			char who[32];

			snprintf(who, sizeof(who), "bench %s", cmd);
			cli_opt_error(who, c, argv + 1);
			return CLI_EXIT_USAGE;
		}
		}
	}
	if (optind < argc - 1) {
		cli_err("bench %s: unexpected argument '%s'", cmd, argv[optind + 1]);
		return CLI_EXIT_USAGE;
	}
	if (!have_mem)
		o.mem = !strcmp(cmd, "pause") ? 256ull << 20 : 1ull << 30;
	if (!strcmp(cmd, "pause"))
		return bench_pause(&o);
	if (!strcmp(cmd, "snapshot"))
		return bench_snapshot(&o);
	if (util_parse_u64(o.cpus_list, &v) < 0 || v < 1 || v > HV_MAX_VCPUS) {
		cli_err("bench dirty: --cpus takes one vCPU count (1 to %u)", HV_MAX_VCPUS);
		return CLI_EXIT_USAGE;
	}
	return bench_dirty(&o, (uint32_t)v);
}
