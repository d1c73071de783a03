/*
 * castor disk <command>: disk images between hosts without a VM
 * (docs/disks.md).
 *
 *   castor disk sync --from FILE --to HOST:PORT [--mode checksum|full|dirty] ...
 *   castor disk receive --image FILE --listen HOST:PORT ...
 *   castor disk log show|mark --log FILE --image FILE ...
 *
 * One file per command (disk_sync.c, disk_receive.c, disk_log.c) behind the
 * table below; this file holds what they share (disk.h).
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/castor/disk.h"
#include "tools/castor/json.h"
#include "util/util.h"

struct disk_cmd {
	const char *name;
	cli_main_fn run; /* argv[0] is the command */
};

static const struct disk_cmd cmds[] = {
	{"sync", cli_disk_sync},
	{"receive", cli_disk_receive},
	{"log", cli_disk_log},
};

void cli_disk_usage(FILE *f)
{
	fputs("usage: castor disk <command> [options]\n"
	      "\n"
	      "commands:\n"
	      "  sync     make a remote image (castor disk receive) equal to a local one,\n"
	      "           sending only what differs\n"
	      "           --from FILE  --to HOST:PORT  [--mode checksum|full|dirty (checksum)]\n"
	      "           [--log FILE (dirty mode: the regions to send; any mode: reset after\n"
	      "           success)]  [--range SIZE (64K)]  [--no-verify]  [--json]  [--quiet]\n"
	      "  receive  wait for one castor disk sync and write what it sends into FILE\n"
	      "           --image FILE  --listen HOST:PORT  [--wait SECONDS (for ever)]\n"
	      "           [--json]  [--quiet]\n"
	      "  log      a dirty-region log: show how much it marks, or mark a range by hand\n"
	      "           show|mark --log FILE --image FILE [--region SIZE (64K)]\n"
	      "           mark: --offset BYTES --length BYTES;  show: [--json]\n"
	      "\n"
	      "sync and receive: [--key FILE [--encrypt] | --insecure]  [--timeout MS (30000)]\n"
	      "Without --key both ends stay on loopback addresses unless --insecure.\n"
	      "The two images must have the same size (truncate -s SIZE FILE).\n",
	      f);
}

int cli_disk_main(int argc, char **argv)
{
	if (argc < 2) {
		cli_err("disk: missing command");
		cli_disk_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		cli_disk_usage(stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].run(argc - 1, argv + 1);
	cli_err("disk: unknown command '%s'", argv[1]);
	cli_disk_usage(stderr);
	return CLI_EXIT_USAGE;
}

/* ---- the link's options ----------------------------------------------------------------- */

int cli_disk_common_opt(const char *who, struct cli_disk_common *k, int c, const char *arg,
			char **argv)
{
	uint64_t v;

	switch (c) {
	case 0x100:
		k->link.key_file = arg;
		return 0;
	case 0x101:
		k->link.encrypt = true;
		return 0;
	case 0x102:
		k->link.insecure = true;
		return 0;
	case 0x103:
		if (util_parse_u64(arg, &v) < 0 || v < 100 || v > 3600000) {
			cli_err("%s: --timeout: '%s' is not a number of ms from 100 to 3600000",
				who, arg);
			return -EINVAL;
		}
		k->link.timeout_ms = (uint32_t)v;
		return 0;
	case 0x104:
		k->json = true;
		return 0;
	case 0x105:
		k->quiet = true;
		return 0;
	case 'h':
		cli_disk_usage(stdout);
		return 1;
	}
	cli_opt_error(who, c, argv);
	return -EINVAL;
}

int cli_disk_no_args(const char *who, int argc, char **argv)
{
	if (optind < argc) {
		cli_err("%s: unexpected argument '%s'", who, argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int cli_disk_link_check(const char *who, struct cli_disk_link *k, const char *what,
			const char *addr)
{
	struct sockaddr_storage ss;
	char why[320];
	unsigned len;

	if (k->encrypt && !k->key_file) {
		cli_err("%s: --encrypt needs --key FILE (castor key generate)", who);
		return -EINVAL;
	}
	if (k->key_file && k->insecure) {
		cli_err("%s: --insecure with --key: a keyed link is not insecure; give one", who);
		return -EINVAL;
	}
	if (repl_parse_addr(addr, &ss, &len, why, sizeof(why)) < 0) {
		cli_err("%s: %s: %s", who, what, why);
		return -EINVAL;
	}
	if (k->key_file) {
		if (repl_key_load(k->key_file, &k->key, why, sizeof(why)) < 0) {
			cli_err("%s: --key: %s", who, why);
			return -EINVAL;
		}
		k->have_key = true;
	} else if (!k->insecure && !repl_addr_is_loopback(&ss)) {
		/* whoever reaches the port first would read or write the image */
		cli_err("%s: %s %s is not a loopback address and there is no key: give --key FILE "
			"(castor key generate; the same file on both ends) or, on a network you "
			"trust, --insecure",
			who, what, addr);
		return -EINVAL;
	}
	return 0;
}

void cli_disk_link_dispose(struct cli_disk_link *k)
{
	repl_key_wipe(&k->key);
	k->have_key = false;
}

void cli_disk_link_apply(const struct cli_disk_link *k, struct repl_disk_sync_opts *o)
{
	o->key = k->have_key ? &k->key : NULL;
	o->encrypt = k->encrypt;
	o->conn.timeout_ms = k->timeout_ms;
}

/* ---- images ------------------------------------------------------------------------------- */

int cli_disk_open(const char *who, const char *path, bool write, int *fd_out, char *abs,
		  uint64_t *size_out)
{
	char why[160];
	int fd, rc;

	fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		cli_err("%s: cannot open %s for %s: %s", who, path, write ? "writing" : "reading",
			strerror(-rc));
		return rc;
	}
	if (!realpath(path, abs))
		snprintf(abs, PATH_MAX, "%s", path);
	rc = repl_disk_image_size(fd, size_out, why, sizeof(why));
	if (!rc && !*size_out)
		rc = util_why(why, sizeof(why), -EINVAL, "an empty image");
	if (rc < 0) {
		cli_err("%s: %s: %s", who, abs, why);
		goto fail;
	}
	/* two syncs into one image, or one out of an image being written, would mix them */
	if (flock(fd, (write ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		rc = -errno;
		cli_err("%s: %s is in use by another castor disk command (%s)", who, abs,
			strerror(-rc));
		goto fail;
	}
	*fd_out = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

/* ---- what is printed --------------------------------------------------------------------- */

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

void cli_disk_progress(void *arg, const struct repl_disk_sync_stats *st)
{
	struct cli_disk_progress *p = arg;
	uint64_t now = util_now_ns();

	if (!st->batches || st->batches_done >= st->batches)
		return; /* the summary says the rest */
	if (p->last_ns && now - p->last_ns < 1000000000ull)
		return;
	p->last_ns = now;
	fprintf(stderr,
		"castor: %s: %.1f of %.1f MiB compared (%.0f %%), %.1f MiB %s, batch %" PRIu64
		" of %" PRIu64 "\n",
		p->who, mib(st->compared_bytes), mib(st->image_bytes),
		100.0 * (double)st->compared_bytes / (double)st->image_bytes, mib(st->data_bytes),
		p->source ? "sent" : "received", st->batches_done, st->batches);
}

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

void cli_disk_summary(const char *who, const char *image, const char *peer, bool source,
		      const struct repl_disk_sync_stats *st, int rc, bool json)
{
	uint64_t wire = st->tx_bytes + st->rx_bytes;
	double secs = (double)st->elapsed_ns / 1e9;
	char digest[2 * REPL_DISK_DIGEST_BYTES + 1] = "";

	if (st->verified)
		hex(st->digest, REPL_DISK_DIGEST_BYTES, digest);
	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "image", image);
		cli_json_str(&j, "peer", peer);
		cli_json_str(&j, "role", source ? "source" : "destination");
		cli_json_bool(&j, "ok", !rc);
		cli_json_str(&j, "error", rc ? strerror(-rc) : NULL);
		cli_json_str(&j, "mode", st->mode ? repl_disk_sync_mode_str(st->mode) : NULL);
		cli_json_u64(&j, "image_bytes", st->image_bytes);
		cli_json_u64(&j, "range_bytes", st->range_bytes);
		cli_json_u64(&j, "ranges", st->ranges);
		cli_json_u64(&j, "compared_bytes", st->compared_bytes);
		cli_json_u64(&j, "read_bytes", st->read_bytes);
		cli_json_u64(&j, "ranges_sent", st->ranges_sent);
		cli_json_u64(&j, "data_bytes", st->data_bytes);
		cli_json_u64(&j, "zero_bytes", st->zero_bytes);
		cli_json_u64(&j, "written_bytes", st->written_bytes);
		cli_json_u64(&j, "tx_bytes", st->tx_bytes);
		cli_json_u64(&j, "rx_bytes", st->rx_bytes);
		cli_json_u64(&j, "wire_bytes", wire);
		cli_json_double(&j, "seconds", secs);
		cli_json_bool(&j, "verified", st->verified);
		cli_json_str(&j, "digest", st->verified ? digest : NULL);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	if (!st->ranges) { /* refused before BEGIN: nothing more to say */
		printf("castor: %s: %s %s %s: FAILED\n", who, image, source ? "->" : "<-", peer);
		return;
	}
	printf("castor: %s: %s %s %s (%s, ranges of %u KiB)%s\n", who, image, source ? "->" : "<-",
	       peer, repl_disk_sync_mode_str(st->mode), st->range_bytes >> 10,
	       rc ? ": FAILED" : "");
	printf("  image     %.1f MiB in %" PRIu64 " ranges, %.1f MiB compared, %.1f MiB read\n",
	       mib(st->image_bytes), st->ranges, mib(st->compared_bytes), mib(st->read_bytes));
	printf("  %s  %.1f MiB of data and %.1f MiB of zeros in %" PRIu64 " ranges\n",
	       source ? "sent    " : "received", mib(st->data_bytes), mib(st->zero_bytes),
	       st->ranges_sent);
	printf("  wire      %.2f MiB (%.2f %% of the image): %.2f MiB out, %.2f MiB in\n",
	       mib(wire), 100.0 * (double)wire / (double)(st->image_bytes ? st->image_bytes : 1),
	       mib(st->tx_bytes), mib(st->rx_bytes));
	printf("  time      %.2f s\n", secs);
	if (!rc)
		printf("  result    %s\n", st->verified ? "the images are equal (digests compared)"
							: "done (not verified: --no-verify)");
	if (st->verified)
		printf("  digest    %s\n", digest);
}
