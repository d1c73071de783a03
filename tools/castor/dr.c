/*
 * castor dr <command>: disaster recovery, seen from one castor-vmm -- the
 * primary of an async (DR) session or its replica at the DR site -- through
 * its control socket (docs/dr.md).
 *
 *   castor dr status   --socket PATH [--json]
 *   castor dr failover --socket PATH [--force] [--json]
 *   castor dr test     --socket PATH --dir DIR [--boot [--vmm PATH]] [--json]
 *   castor dr unprotect --socket PATH [--force] [--json]
 *
 * status says, at the primary, how old the replica's newest checkpoint is
 * against the RPO target; at the replica, which checkpoint it holds, how long
 * ago it was applied whole, and whether a failover would start from it.
 * failover names that checkpoint before it starts the copy from it. The
 * refusals are the replica's own (castor ha failover's): while the primary
 * still streams checkpoints, or after it stopped protecting on purpose, only
 * --force starts a second copy.
 *
 * test copies the replica's newest checkpoint (RAM, state, replicated disks)
 * into DIR while replication goes on, and boots that copy -- with --boot, or
 * by the command it prints -- on taps of its own, bridged nowhere: a DR drill
 * that the primary's network never sees.
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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
	      "  unprotect  (primary) stop the DR session; a synchronous one beside it goes\n"
	      "             on (castor ha unprotect stops that one)\n"
	      "  test       (DR replica) copy its newest checkpoint -- RAM, state and the\n"
	      "             replicated disks -- into --dir while replication goes on, and\n"
	      "             say how to boot it isolated (or boot it: --boot)\n"
	      "\n"
	      "options:\n"
	      "  -s, --socket PATH     control socket of the castor-vmm (required)\n"
	      "  -f, --force           failover: even though the primary still streams or\n"
	      "                        stopped protecting on purpose (fence it first);\n"
	      "                        unprotect: abandon an initial copy in progress\n"
	      "  -d, --dir DIR         test: where the copy goes (created 0700 if missing;\n"
	      "                        refused if it holds a copy already)\n"
	      "  -b, --boot            test: start the copy (castor-vmm restore) on taps\n"
	      "                        bridged nowhere; stop it with castor vm quit\n"
	      "      --vmm PATH        test --boot: the castor-vmm to run (default: from PATH)\n"
	      "  -j, --json            print one JSON object\n"
	      "  -h, --help            this text\n"
	      "A DR session is started with castor ha protect --mode async --rpo MS, alone\n"
	      "or beside a synchronous session (docs/dr.md), or through castord:\n"
	      "\n",
	      f);
	cli_dr_cluster_usage(f);
}

struct dr_args {
	const char *socket, *dir, *vmm;
	bool json, force, boot;
};

static int parse_args(const char *cmd, int argc, char **argv, struct dr_args *a)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'}, {"force", no_argument, NULL, 'f'},
		{"dir", required_argument, NULL, 'd'},	  {"boot", no_argument, NULL, 'b'},
		{"vmm", required_argument, NULL, 'V'},	  {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:fd:bjh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			a->socket = optarg;
			break;
		case 'f':
			if (strcmp(cmd, "failover") && strcmp(cmd, "unprotect")) {
				cli_err("dr %s: --force applies to 'castor dr failover' and "
					"'unprotect' only",
					cmd);
				return -EINVAL;
			}
			a->force = true;
			break;
		case 'd':
		case 'b':
		case 'V':
			if (strcmp(cmd, "test")) {
				cli_err("dr %s: --%s applies to 'castor dr test' only", cmd,
					c == 'd'   ? "dir"
					: c == 'b' ? "boot"
						   : "vmm");
				return -EINVAL;
			}
			if (c == 'd')
				a->dir = optarg;
			else if (c == 'b')
				a->boot = true;
			else
				a->vmm = optarg;
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
	if (optind < argc && (!strcmp(cmd, "failover") || !strcmp(cmd, "test"))) {
		cli_err("dr %s: it runs at the DR site, against the DR replica: give its --socket "
			"PATH, not a VM ('%s'): the DR site is outside the cluster",
			cmd, argv[optind]);
		return -EINVAL;
	}
	if (optind < argc) {
		cli_err("dr %s: unexpected argument '%s'", cmd, argv[optind]);
		return -EINVAL;
	}
	if (!a->socket) {
		cli_err("dr %s: --socket PATH is required", cmd);
		return -EINVAL;
	}
	if (!strcmp(cmd, "test") && (!a->dir || !*a->dir)) {
		cli_err("dr test: --dir DIR is required (where the copy goes)");
		return -EINVAL;
	}
	if (a->vmm && !a->boot) {
		cli_err("dr test: --vmm goes with --boot");
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
		sr.dr = true; /* at a primary, the DR session (beside a synchronous one or not) */
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
	cli_json_u64(&j, "max_mbit", h->max_mbit);
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

/* The DR session stops; a synchronous session beside it goes on. */
static int dr_unprotect(const struct dr_args *a)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__UnprotectRequest ur = CASTOR__UNPROTECT_REQUEST__INIT;
	Castor__Response *resp = NULL;

	ur.dr = true;
	ur.force = a->force;
	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_UNPROTECT;
	req.unprotect = &ur;
	if (cli_call("dr unprotect", a->socket, PB_CALL_TIMEOUT_MS, false, &req, &resp) < 0)
		return CLI_EXIT_FAIL;
	if (a->json)
		printf("{\"stopped\": true}\n");
	else
		printf("the DR session stopped; the DR replica keeps its last checkpoint\n");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return CLI_EXIT_OK;
}

/* ---- castor dr test ---------------------------------------------------------------- */

/* The restore of the copy, as argv (strings in `store`), on taps named after our pid. */
struct boot_cmd {
	char *argv[64];
	char store[12 * PATH_MAX];
	size_t used;
	unsigned argc;
	bool overflow;
};

static void boot_arg(struct boot_cmd *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void boot_arg(struct boot_cmd *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->argc + 1 >= sizeof(b->argv) / sizeof(b->argv[0]) || b->used >= sizeof(b->store)) {
		b->overflow = true;
		return;
	}
	va_start(ap, fmt);
	n = vsnprintf(b->store + b->used, sizeof(b->store) - b->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(b->store) - b->used) {
		b->overflow = true;
		return;
	}
	b->argv[b->argc++] = b->store + b->used;
	b->argv[b->argc] = NULL;
	b->used += (size_t)n + 1;
}

static void boot_cmd_build(struct boot_cmd *b, const char *vmm, const char *dir,
			   const Castor__DrCopyResult *r)
{
	size_t i;

	b->argc = 0;
	b->used = 0;
	b->overflow = false;
	boot_arg(b, "%s", vmm);
	boot_arg(b, "restore");
	boot_arg(b, "--snapshot");
	boot_arg(b, "%s", r->snapshot);
	for (i = 0; i < r->n_disks; i++) {
		boot_arg(b, "--disk");
		boot_arg(b, "%s%s", r->disks[i],
			 i < r->n_disks_read_only && r->disks_read_only[i] ? ",ro" : "");
	}
	/* taps of its own network namespace (boot_copy): the drill cannot reach the LAN */
	for (i = 0; i < r->n_macs; i++) {
		boot_arg(b, "--net");
		boot_arg(b, "tap=drtest%zu,mac=%s", i, r->macs[i]);
	}
	boot_arg(b, "--name");
	boot_arg(b, "drtest");
	boot_arg(b, "--control");
	boot_arg(b, "%s/test.sock", dir);
	boot_arg(b, "--serial");
	boot_arg(b, "%s/serial.log", dir);
}

/* Tap drtest<i> in the current network namespace, up (it dies with the namespace). */
static int make_tap(unsigned i, char *why, size_t why_len)
{
	char name[IFNAMSIZ];
	struct ifreq ifr = {0};
	int fd, s = -1, rc = 0;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return util_why(why, why_len, -errno, "/dev/net/tun: %s", strerror(errno));
	snprintf(name, sizeof(name), "drtest%u", i % 100);
	memcpy(ifr.ifr_name, name, sizeof(name));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
		rc = util_why(why, why_len, -errno, "creating tap %s: %s", name, strerror(errno));
	close(fd);
	if (!rc)
		s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (!rc && (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0))
		rc = util_why(why, why_len, -errno, "tap %s: %s", name, strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (!rc && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		rc = util_why(why, why_len, -errno, "setting tap %s up: %s", name, strerror(errno));
	if (s >= 0)
		close(s);
	return rc;
}

/*
 * The copy's castor-vmm, in a session and a network namespace of its own
 * whose only interfaces are its taps (drtest0, ...): nothing it sends leaves
 * that namespace, which goes away with the process, taps and all. Waits until
 * its control socket is there.
 */
static int boot_copy(const struct boot_cmd *b, const char *dir, unsigned ntaps, pid_t *pid_out)
{
	char log[PATH_MAX + 16], sock[PATH_MAX + 16], why[256];
	struct stat sb;
	int status, tries, fd;
	unsigned i;
	pid_t pid;

	snprintf(log, sizeof(log), "%s/vmm.log", dir);
	snprintf(sock, sizeof(sock), "%s/test.sock", dir);
	/* an earlier drill's socket here would pass for this one's */
	if (lstat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(sock);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_err("dr test: %s: %s", log, strerror(errno));
		return -errno;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		cli_err("dr test: fork: %s", strerror(errno));
		close(fd);
		return -EAGAIN;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setsid(); /* it outlives this command */
		if (unshare(CLONE_NEWNET) < 0) {
			dprintf(2, "castor dr test: a network namespace of its own: %s\n",
				strerror(errno));
			_exit(126);
		}
		for (i = 0; i < ntaps; i++) {
			if (make_tap(i, why, sizeof(why)) < 0) {
				dprintf(2, "castor dr test: %s\n", why);
				_exit(126);
			}
		}
		execvp(b->argv[0], b->argv);
		dprintf(2, "castor dr test: cannot run %s: %s (name it with --vmm PATH)\n",
			b->argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	/* a restore takes well under a second here; allow a slow host a minute */
	for (tries = 0; tries < 600; tries++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			cli_err("dr test: castor-vmm restore ended (%s %d) before it ran; its log "
				"is %s",
				WIFEXITED(status) ? "status" : "signal",
				WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), log);
			return -ECHILD;
		}
		if (stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode)) {
			*pid_out = pid;
			return 0;
		}
		nanosleep(&(struct timespec){0, 100000000}, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cli_err("dr test: the copy did not come up within 60 s (killed); its log is %s", log);
	return -ETIMEDOUT;
}

static int dr_test(const struct dr_args *a)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__DrCopyRequest dr = CASTOR__DR_COPY_REQUEST__INIT;
	Castor__Response *resp = NULL;
	const Castor__DrCopyResult *r;
	static struct boot_cmd b;
	char dir[PATH_MAX];
	pid_t pid = 0;
	unsigned i;
	int ret = CLI_EXIT_FAIL;

	if (mkdir(a->dir, 0700) < 0 && errno != EEXIST) {
		cli_err("dr test: cannot create %s: %s", a->dir, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (!realpath(a->dir, dir)) { /* the replica resolves nothing of ours */
		cli_err("dr test: %s: %s", a->dir, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	dr.dir = dir;
	req.id = (uint64_t)getpid();
	req.body_case = CASTOR__REQUEST__BODY_DR_COPY;
	req.dr_copy = &dr;
	/* the disks are copied while it waits: minutes for large images without shared extents */
	if (cli_call("dr test", a->socket, 30 * 60 * 1000, false, &req, &resp) < 0)
		goto out;
	r = resp->dr_copy;
	if (!r || !r->snapshot || !*r->snapshot) {
		cli_err("dr test: unexpected reply from %s", a->socket);
		goto out;
	}
	boot_cmd_build(&b, a->vmm ? a->vmm : "castor-vmm", dir, r);
	if (b.overflow) {
		cli_err("dr test: the copy's paths are too long for one command line");
		goto out;
	}
	if (a->boot && boot_copy(&b, dir, (unsigned)r->n_macs, &pid) < 0)
		goto out;
	if (a->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_u64(&j, "epoch", r->epoch);
		cli_json_u64(&j, "ckpt_age_ns", r->ckpt_age_ns);
		cli_json_str(&j, "snapshot", r->snapshot);
		cli_json_u64(&j, "snapshot_bytes", r->snapshot_bytes);
		cli_json_u64(&j, "disk_bytes", r->disk_bytes);
		cli_json_u64(&j, "copy_ns", r->total_ns);
		cli_json_array_begin(&j, "disks");
		for (i = 0; i < r->n_disks; i++)
			cli_json_str(&j, NULL, r->disks[i]);
		cli_json_array_end(&j);
		cli_json_array_begin(&j, "boot");
		for (i = 0; i < b.argc; i++)
			cli_json_str(&j, NULL, b.argv[i]);
		cli_json_array_end(&j);
		if (pid) {
			cli_json_i64(&j, "pid", pid);
			cli_json_str(&j, "control", b.argv[b.argc - 3]);
		}
		cli_json_object_end(&j);
		if (cli_json_finish(&j) < 0)
			goto out;
	} else {
		printf("checkpoint %" PRIu64 " (applied whole %.1f s before) copied to %s in %.0f "
		       "ms: RAM and state %.1f MiB, disks %.1f MiB; replication went on\n",
		       r->epoch, (double)r->ckpt_age_ns / 1e9, dir, (double)r->total_ns / 1e6,
		       (double)r->snapshot_bytes / (1 << 20), (double)r->disk_bytes / (1 << 20));
		if (pid) {
			printf("the copy runs isolated (castor-vmm pid %d, its NICs on taps "
			       "bridged "
			       "nowhere); look with castor vm status --socket %s, stop it with "
			       "castor vm quit --socket %s\n",
			       (int)pid, b.argv[b.argc - 3], b.argv[b.argc - 3]);
		} else {
			printf("boot it isolated (its NICs on taps bridged nowhere) with:\n ");
			for (i = 0; i < b.argc; i++)
				printf(" %s", b.argv[i]);
			printf("\n");
		}
	}
	ret = CLI_EXIT_OK;
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
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
	if (cli_dr_is_cluster_call(argc, argv))
		return cli_dr_cluster_main(argc, argv);
	if (strcmp(cmd, "status") && strcmp(cmd, "failover") && strcmp(cmd, "test") &&
	    strcmp(cmd, "unprotect")) {
		cli_err("dr: unknown command '%s' (status, failover, test, unprotect, protect)",
			cmd);
		cli_dr_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	rc = parse_args(cmd, argc - 1, argv + 1, &a);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	if (!strcmp(cmd, "failover"))
		return dr_failover(&a);
	if (!strcmp(cmd, "test"))
		return dr_test(&a);
	if (!strcmp(cmd, "unprotect"))
		return dr_unprotect(&a);
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
