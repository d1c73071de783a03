/*
 * castor disk sync: make the image of a `castor disk receive` equal to a
 * local one, sending what differs (replication/disk_sync.c,
 * docs/disks.md). Progress on stderr, a summary on stdout. With --log, the
 * dirty-region log is what dirty mode sends, and after a successful sync in
 * any mode it is reset to "nothing dirty": the destination now holds this
 * image, which is the point the log counts from.
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/castor/disk.h"
#include "util/util.h"

#define WHO "disk sync"

struct sync_opts {
	const char *from, *to, *log;
	enum repl_disk_sync_mode mode;
	uint64_t range;
	bool no_verify;
	struct cli_disk_common c;
};

/* 0, 1 after --help, or -EINVAL after a message. */
static int parse(int argc, char **argv, struct sync_opts *o)
{
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"mode", required_argument, NULL, 'm'},
		{"log", required_argument, NULL, 'l'},
		{"range", required_argument, NULL, 'r'},
		{"no-verify", no_argument, NULL, 'n'},
		CLI_DISK_COMMON_OPTS,
		{0},
	};
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->from = optarg;
			break;
		case 't':
			o->to = optarg;
			break;
		case 'm':
			if (repl_disk_sync_mode_parse(optarg, &o->mode) < 0) {
				cli_err(WHO ": --mode: '%s' is not checksum, full or dirty",
					optarg);
				return -EINVAL;
			}
			break;
		case 'l':
			o->log = optarg;
			break;
		case 'r':
			if (util_parse_size(optarg, &o->range) < 0 || o->range < 4096 ||
			    o->range > (1u << 20) || (o->range & (o->range - 1))) {
				cli_err(WHO ": --range: '%s' is not a power of two from 4K to 1M",
					optarg);
				return -EINVAL;
			}
			break;
		case 'n':
			o->no_verify = true;
			break;
		default:
			rc = cli_disk_common_opt(WHO, &o->c, c, optarg, argv);
			if (rc)
				return rc;
		}
	}
	if (cli_disk_no_args(WHO, argc, argv) < 0)
		return -EINVAL;
	if (!o->from || !o->to) {
		cli_err(WHO ": --from FILE and --to HOST:PORT are required");
		return -EINVAL;
	}
	if (o->mode == REPL_DISK_SYNC_DIRTY && !o->log) {
		cli_err(WHO ": --mode dirty needs --log FILE (the dirty-region log)");
		return -EINVAL;
	}
	if (o->mode == REPL_DISK_SYNC_DIRTY && o->range) {
		cli_err(WHO ": --range does not apply to --mode dirty: the log's regions are "
			    "the ranges");
		return -EINVAL;
	}
	return cli_disk_link_check(WHO, &o->c.link, "--to", o->to);
}

int cli_disk_sync(int argc, char **argv)
{
	struct sync_opts o = {.mode = REPL_DISK_SYNC_CHECKSUM};
	struct cli_disk_progress prog = {.who = WHO, .source = true};
	struct repl_disk_sync_opts so = {0};
	struct repl_disk_sync_stats st = {0};
	struct repl_disk_log *log = NULL;
	char abs[PATH_MAX], why[512];
	uint64_t size;
	int fd = -1, rc;

	rc = parse(argc, argv, &o);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	rc = cli_disk_open(WHO, o.from, false, &fd, abs, &size);
	if (rc < 0)
		goto out;
	if (o.log) {
		rc = repl_disk_log_open(o.log, size, o.range ? (uint32_t)o.range : 0, &log, why,
					sizeof(why));
		if (rc < 0) {
			cli_err(WHO ": --log: %s", why);
			goto out;
		}
		if (why[0] && o.mode == REPL_DISK_SYNC_DIRTY)
			cli_err(WHO ": warning: %s: the whole image will be sent", why);
	}
	cli_disk_link_apply(&o.c.link, &so);
	so.mode = o.mode;
	so.range_bytes = (uint32_t)o.range;
	so.no_verify = o.no_verify;
	so.log = log;
	if (!o.c.quiet && !o.c.json) {
		so.progress = cli_disk_progress;
		so.progress_arg = &prog;
	}
	rc = repl_disk_sync_send(o.to, fd, size, &so, &st, why, sizeof(why));
	if (rc < 0)
		cli_err(WHO ": %s", why);
	cli_disk_summary(WHO, abs, o.to, true, &st, rc, o.c.json);
	if (!rc && log) {
		/* the destination holds this image now: the log counts from here */
		repl_disk_log_clear(log);
		rc = repl_disk_log_save(log, why, sizeof(why));
		if (rc < 0)
			cli_err(WHO ": %s", why);
	}
out:
	repl_disk_log_free(log);
	cli_disk_link_dispose(&o.c.link);
	if (fd >= 0)
		close(fd);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
