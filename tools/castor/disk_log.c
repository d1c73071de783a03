/*
 * castor disk log show|mark: look at a dirty-region log (replication/
 * disk_log.c, docs/disks.md) -- how many regions it marks and whether it
 * could be trusted -- or mark a range by hand, after changing an image
 * outside Castor (the next dirty resync then sends it).
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/castor/disk.h"
#include "tools/castor/json.h"
#include "util/util.h"

struct log_opts {
	const char *cmd, *log, *image;
	uint64_t region, offset, length;
	bool have_offset, have_length, json;
};

/* 0, 1 after --help, or -EINVAL after a message. */
static int parse(int argc, char **argv, struct log_opts *o, char *who, size_t who_len)
{
	static const struct option opts[] = {
		{"log", required_argument, NULL, 'l'},	  {"image", required_argument, NULL, 'i'},
		{"region", required_argument, NULL, 'r'}, {"offset", required_argument, NULL, 'o'},
		{"length", required_argument, NULL, 'n'}, {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},	  {0},
	};
	int c;

	if (argc < 2 || (strcmp(argv[1], "show") && strcmp(argv[1], "mark"))) {
		cli_err("disk log: give show or mark");
		return -EINVAL;
	}
	o->cmd = argv[1];
	snprintf(who, who_len, "disk log %s", o->cmd);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->log = optarg;
			break;
		case 'i':
			o->image = optarg;
			break;
		case 'r':
			if (util_parse_size(optarg, &o->region) < 0) {
				cli_err("%s: --region: '%s' is not a size", who, optarg);
				return -EINVAL;
			}
			break;
		case 'o':
		case 'n':
			if (util_parse_size(optarg, c == 'o' ? &o->offset : &o->length) < 0) {
				cli_err("%s: --%s: '%s' is not a byte count", who,
					c == 'o' ? "offset" : "length", optarg);
				return -EINVAL;
			}
			*(c == 'o' ? &o->have_offset : &o->have_length) = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			cli_disk_usage(stdout);
			return 1;
		default:
			cli_opt_error(who, c, argv + 1);
			return -EINVAL;
		}
	}
	if (cli_disk_no_args(who, argc - 1, argv + 1) < 0)
		return -EINVAL;
	if (!o->log || !o->image) {
		cli_err("%s: --log FILE and --image FILE are required", who);
		return -EINVAL;
	}
	if (!strcmp(o->cmd, "mark") && (!o->have_offset || !o->have_length || !o->length)) {
		cli_err("%s: --offset BYTES and --length BYTES (not 0) are required", who);
		return -EINVAL;
	}
	if (!strcmp(o->cmd, "show") && (o->have_offset || o->have_length)) {
		cli_err("%s: --offset and --length are for mark", who);
		return -EINVAL;
	}
	return 0;
}

static void show(const struct log_opts *o, const char *abs, struct repl_disk_log *log,
		 uint64_t size, const char *why)
{
	uint64_t n = repl_disk_log_count(log), region = repl_disk_log_region_bytes(log);
	uint64_t bytes = n * region > size ? size : n * region;

	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "log", o->log);
		cli_json_str(&j, "image", abs);
		cli_json_u64(&j, "image_bytes", size);
		cli_json_u64(&j, "region_bytes", region);
		cli_json_u64(&j, "regions", repl_disk_log_regions(log));
		cli_json_u64(&j, "dirty_regions", n);
		cli_json_u64(&j, "dirty_bytes", bytes);
		cli_json_bool(&j, "complete", repl_disk_log_is_complete(log));
		cli_json_str(&j, "problem", why[0] ? why : NULL);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	printf("castor: disk log %s of %s: %llu of %llu regions of %llu KiB dirty (%.1f MiB, "
	       "%.2f %% of the image)%s%s\n",
	       o->log, abs, (unsigned long long)n, (unsigned long long)repl_disk_log_regions(log),
	       (unsigned long long)(region >> 10), (double)bytes / (1024.0 * 1024.0),
	       100.0 * (double)bytes / (double)size, why[0] ? "; " : "", why);
}

int cli_disk_log(int argc, char **argv)
{
	struct log_opts o = {0};
	struct repl_disk_log *log = NULL;
	char who[32], abs[PATH_MAX], why[512];
	uint64_t size;
	int fd = -1, rc;

	rc = parse(argc, argv, &o, who, sizeof(who));
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	rc = cli_disk_open(who, o.image, false, &fd, abs, &size);
	if (rc < 0)
		goto out;
	rc = repl_disk_log_open(o.log, size, (uint32_t)o.region, &log, why, sizeof(why));
	if (rc < 0) {
		cli_err("%s: %s", who, why);
		goto out;
	}
	if (!strcmp(o.cmd, "show")) {
		show(&o, abs, log, size, why);
		goto out;
	}
	rc = repl_disk_log_mark(log, o.offset, o.length);
	if (rc < 0) {
		cli_err("%s: %llu+%llu passes the image's end (%llu bytes)", who,
			(unsigned long long)o.offset, (unsigned long long)o.length,
			(unsigned long long)size);
		goto out;
	}
	rc = repl_disk_log_save(log, why, sizeof(why));
	if (rc < 0)
		cli_err("%s: %s", who, why);
out:
	repl_disk_log_free(log);
	if (fd >= 0)
		close(fd);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
