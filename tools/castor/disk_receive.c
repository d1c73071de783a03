/*
 * castor disk receive: listen for one `castor disk sync` and make the image
 * FILE the source's (replication/disk_recv.c, docs/disks.md). Connections
 * that are not a disk source, or fail the key's handshake, are logged and
 * the listener goes on; a source whose image has another size ends it with
 * an error, as does anything that goes wrong during the sync. Exit 0 only
 * when the image equals the source's (digests compared, unless the source
 * said --no-verify).
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

#define WHO "disk receive"

struct receive_opts {
	const char *image, *listen;
	int wait_ms;
	struct cli_disk_common c;
};

/* 0, 1 after --help, or -EINVAL after a message. */
static int parse(int argc, char **argv, struct receive_opts *o)
{
	static const struct option opts[] = {
		{"image", required_argument, NULL, 'i'},
		{"listen", required_argument, NULL, 'l'},
		{"wait", required_argument, NULL, 'w'},
		CLI_DISK_COMMON_OPTS,
		{0},
	};
	uint64_t v;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->image = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'w':
			if (util_parse_u64(optarg, &v) < 0 || !v || v > 86400) {
				cli_err(WHO
					": --wait: '%s' is not a number of seconds from 1 to 86400",
					optarg);
				return -EINVAL;
			}
			o->wait_ms = (int)v * 1000;
			break;
		default:
			rc = cli_disk_common_opt(WHO, &o->c, c, optarg, argv);
			if (rc)
				return rc;
		}
	}
	if (cli_disk_no_args(WHO, argc, argv) < 0)
		return -EINVAL;
	if (!o->image || !o->listen) {
		cli_err(WHO ": --image FILE and --listen HOST:PORT are required");
		return -EINVAL;
	}
	return cli_disk_link_check(WHO, &o->c.link, "--listen", o->listen);
}

int cli_disk_receive(int argc, char **argv)
{
	struct receive_opts o = {.wait_ms = -1};
	struct cli_disk_progress prog = {.who = WHO};
	struct repl_disk_sync_opts so = {0};
	struct repl_disk_sync_stats st = {0};
	const struct repl_transport_ops *t = &repl_tcp_ops;
	struct repl_listener *ln = NULL;
	char abs[PATH_MAX], why[512];
	uint64_t size;
	int fd = -1, rc;

	rc = parse(argc, argv, &o);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	rc = cli_disk_open(WHO, o.image, true, &fd, abs, &size);
	if (rc < 0)
		goto out;
	cli_disk_link_apply(&o.c.link, &so);
	rc = t->listen(o.listen, &so.conn, &ln);
	if (rc < 0) {
		cli_err(WHO ": cannot listen on %s: %s", o.listen, strerror(-rc));
		goto out;
	}
	/* a script waits for this line before it starts the source: --quiet keeps it */
	fprintf(stderr, "castor: " WHO ": %s (%llu bytes) waiting on port %u\n", abs,
		(unsigned long long)size, t->local_port(ln));
	if (!o.c.quiet && !o.c.json) {
		so.progress = cli_disk_progress;
		so.progress_arg = &prog;
	}
	rc = repl_disk_sync_receive(t, ln, o.wait_ms, fd, size, &so, &st, why, sizeof(why));
	if (rc < 0)
		cli_err(WHO ": %s", why);
	cli_disk_summary(WHO, abs, st.peer[0] ? st.peer : o.listen, false, &st, rc, o.c.json);
out:
	if (ln)
		t->close_listener(ln);
	cli_disk_link_dispose(&o.c.link);
	if (fd >= 0)
		close(fd);
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
