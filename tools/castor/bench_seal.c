/*
 * castor bench seal: what sealing a replication link costs (docs/security.md).
 *
 * Seals and then opens a buffer of guest-like data in records of 4 KiB (a
 * page, the worst case: one tag per page) and of REPL_SEAL_RECORD_MAX (what
 * an epoch is sent in), authenticate-only and encrypted, through the same
 * primitives the link uses (repl_seal_record, repl_seal_open), and prints
 * GB/s and ns per 4 KiB page of each beside a memcpy of the same bytes. No
 * VM, no network: the cost of the crypto alone, per core.
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "replication/repl.h"
#include "tools/castor/json.h"
#include "util/util.h"

struct seal_row {
	const char *mode; /* "memcpy", "auth", "encrypt" */
	size_t record;
	double seal_gbs, open_gbs, seal_ns_page, open_ns_page;
};

/* Best of `reps` passes over buf: seal every record, then open every one. */
static int measure(uint8_t *buf, uint8_t *tags, size_t size, unsigned reps, bool encrypt,
		   struct seal_row *r)
{
	struct repl_seal *tx = NULL, *rx = NULL;
	uint64_t best_seal = UINT64_MAX, best_open = UINT64_MAX;
	size_t nrec = size / r->record;
	int rc;

	rc = repl_seal_pair_new(encrypt, &tx, &rx);
	for (unsigned k = 0; !rc && k < reps; k++) {
		uint64_t t0 = util_now_ns(), t1;

		for (size_t i = 0; !rc && i < nrec; i++)
			rc = repl_seal_record(tx, buf + i * r->record, r->record,
					      tags + i * REPL_SEAL_TAG);
		t1 = util_now_ns();
		for (size_t i = 0; !rc && i < nrec; i++)
			rc = repl_seal_open(rx, buf + i * r->record, r->record,
					    tags + i * REPL_SEAL_TAG);
		if (t1 - t0 < best_seal)
			best_seal = t1 - t0;
		if (util_now_ns() - t1 < best_open)
			best_open = util_now_ns() - t1;
	}
	if (!rc) {
		double pages = (double)(nrec * r->record) / 4096;

		r->seal_gbs = (double)(nrec * r->record) / (double)best_seal;
		r->open_gbs = (double)(nrec * r->record) / (double)best_open;
		r->seal_ns_page = (double)best_seal / pages;
		r->open_ns_page = (double)best_open / pages;
	}
	repl_seal_free(tx);
	repl_seal_free(rx);
	return rc;
}

static void memcpy_row(uint8_t *buf, uint8_t *dst, size_t size, unsigned reps, struct seal_row *r)
{
	uint64_t best = UINT64_MAX;

	for (unsigned k = 0; k < reps; k++) {
		uint64_t t0 = util_now_ns();

		memcpy(dst, buf, size);
		if (util_now_ns() - t0 < best)
			best = util_now_ns() - t0;
	}
	r->seal_gbs = r->open_gbs = (double)size / (double)best;
	r->seal_ns_page = r->open_ns_page = (double)best / ((double)size / 4096);
}

static void report(const struct seal_row *r, bool json)
{
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "bench", "seal");
		cli_json_str(&j, "mode", r->mode);
		cli_json_u64(&j, "record_bytes", r->record);
		cli_json_double(&j, "seal_gb_s", r->seal_gbs);
		cli_json_double(&j, "open_gb_s", r->open_gbs);
		cli_json_double(&j, "seal_ns_per_page", r->seal_ns_page);
		cli_json_double(&j, "open_ns_per_page", r->open_ns_page);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	printf("%-8s %9zu %9.2f %9.2f %12.0f %12.0f\n", r->mode, r->record, r->seal_gbs,
	       r->open_gbs, r->seal_ns_page, r->open_ns_page);
}

int cli_bench_seal(int argc, char **argv)
{
	static const struct option opts[] = {
		{"size", required_argument, NULL, 's'},
		{"reps", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	static const size_t records[] = {4096, REPL_SEAL_RECORD_MAX};
	uint64_t size = 256ull << 20, reps = 5;
	uint8_t *buf = NULL, *tags = NULL, *dst = NULL;
	bool json = false;
	int c, rc = 0;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (util_parse_size(optarg, &size) < 0 || size < REPL_SEAL_RECORD_MAX ||
			    size > (16ull << 30)) {
				cli_err("bench seal: bad --size '%s' (1M to 16G)", optarg);
				return CLI_EXIT_USAGE;
			}
			size -= size % REPL_SEAL_RECORD_MAX;
			break;
		case 'r':
			if (util_parse_u64(optarg, &reps) < 0 || !reps || reps > 1000) {
				cli_err("bench seal: bad --reps '%s' (1 to 1000)", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		default: /* '?' or ':' */
			cli_opt_error("bench seal", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	buf = malloc(size);
	dst = malloc(size);
	tags = malloc(size / 4096 * REPL_SEAL_TAG);
	if (!buf || !dst || !tags) {
		cli_err("bench seal: out of memory for %llu bytes", (unsigned long long)size);
		rc = -ENOMEM;
		goto out;
	}
	/* guest-like bytes: neither zero nor constant (the crypto does not care, memcpy might) */
	for (size_t i = 0; i < size; i += 8) {
		uint64_t v = i * 0x9e3779b97f4a7c15ull;

		memcpy(buf + i, &v, 8);
	}
	if (!json)
		printf("castor bench seal: %llu MiB, best of %llu, one core\n"
		       "%-8s %9s %9s %9s %12s %12s\n",
		       (unsigned long long)(size >> 20), (unsigned long long)reps, "mode", "record",
		       "seal_GB/s", "open_GB/s", "seal_ns/4K", "open_ns/4K");
	{
		struct seal_row r = {.mode = "memcpy", .record = size};

		memcpy_row(buf, dst, size, (unsigned)reps, &r);
		report(&r, json);
	}
	for (int enc = 0; enc < 2 && !rc; enc++)
		for (size_t i = 0; i < sizeof(records) / sizeof(records[0]) && !rc; i++) {
			struct seal_row r = {.mode = enc ? "encrypt" : "auth",
					     .record = records[i]};

			rc = measure(buf, tags, size, (unsigned)reps, enc, &r);
			if (rc < 0)
				cli_err("bench seal: %s", strerror(-rc));
			else
				report(&r, json);
		}
out:
	free(buf);
	free(dst);
	free(tags);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
