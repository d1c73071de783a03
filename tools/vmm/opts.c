/*
 * castor-vmm's options: one table of every option with the commands it
 * applies to. Each command parses the same table, so an option given to a
 * command it means nothing to is refused by name ("--mode does not apply to
 * 'castor-vmm replica'") instead of being silently ignored.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <getopt.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netbuffer/netbuf.h"
#include "tools/vmm/vmm.h"
#include "util/util.h"

#define ALL (VMM_RUN | VMM_RESTORE | VMM_REPLICA | VMM_STANDBY | VMM_INCOMING)

enum opt_id {
	O_MEM = 0x100,
	O_CPUS,
	O_TEST_GUEST,
	O_GUEST_PARAM,
	O_GUEST_IMAGE,
	O_KERNEL,
	O_INITRD,
	O_CMDLINE,
	O_CONTROL,
	O_SERIAL,
	O_NAME,
	O_KVM,
	O_DISK,
	O_NET,
	O_SNAPSHOT,
	O_PAUSED,
	O_LAZY,
	O_PROTECT,
	O_MODE,
	O_INTERVAL,
	O_MIN_SPACING,
	O_RPO,
	O_MAX_MBIT,
	O_MAX_DIRTY,
	O_VERIFY,
	O_EXACT_DIRTY,
	O_REPL_TIMEOUT,
	O_REPL_NICE,
	O_REPL_RT,
	O_EVENT_LOG,
	O_OUTPUT_QUEUE,
	O_LISTEN,
	O_KEY,
	O_ENCRYPT,
	O_INSECURE,
	O_HELP,
};

struct opt {
	const char *name;
	int has_arg;
	int id;
	unsigned cmds;	     /* the commands it applies to */
	const char *why_not; /* why the others refuse it (NULL: a generic sentence) */
};

static const char session_only[] =
	"session options belong to the primary: give them to 'castor-vmm run --protect' or "
	"'castor ha protect'";
static const char from_snapshot[] = "the guest, its RAM size and vCPU count come from the "
				    "snapshot (or, on a replica, from the primary; on a migration "
				    "destination, from the source)";

static const struct opt table[] = {
	{"mem", required_argument, O_MEM, VMM_RUN | VMM_STANDBY, from_snapshot},
	{"cpus", required_argument, O_CPUS, VMM_RUN | VMM_STANDBY, from_snapshot},
	{"test-guest", no_argument, O_TEST_GUEST, VMM_RUN, from_snapshot},
	{"guest-param", required_argument, O_GUEST_PARAM, VMM_RUN, from_snapshot},
	{"guest-image", required_argument, O_GUEST_IMAGE, VMM_RUN, from_snapshot},
	{"kernel", required_argument, O_KERNEL, VMM_RUN, from_snapshot},
	{"initrd", required_argument, O_INITRD, VMM_RUN, from_snapshot},
	{"cmdline", required_argument, O_CMDLINE, VMM_RUN, from_snapshot},
	{"control", required_argument, O_CONTROL, ALL, NULL},
	{"serial", required_argument, O_SERIAL, ALL, NULL},
	{"name", required_argument, O_NAME, ALL, NULL},
	{"kvm", required_argument, O_KVM, ALL, NULL},
	{"disk", required_argument, O_DISK, ALL, NULL},
	{"net", required_argument, O_NET, ALL, NULL},
	{"snapshot", required_argument, O_SNAPSHOT, VMM_RESTORE,
	 "a standby is given its snapshots by 'castor vm restore'"},
	{"paused", no_argument, O_PAUSED, VMM_RESTORE,
	 "give --paused to 'castor vm restore' (standby) or 'castor-vmm restore'"},
	{"lazy", no_argument, O_LAZY, VMM_RESTORE | VMM_STANDBY, NULL},
	{"protect", required_argument, O_PROTECT, VMM_RUN,
	 "protect a running VM with 'castor ha protect'"},
	{"mode", required_argument, O_MODE, VMM_RUN, session_only},
	{"interval", required_argument, O_INTERVAL, VMM_RUN, session_only},
	{"min-spacing", required_argument, O_MIN_SPACING, VMM_RUN, session_only},
	{"rpo", required_argument, O_RPO, VMM_RUN, session_only},
	{"max-mbit", required_argument, O_MAX_MBIT, VMM_RUN, session_only},
	{"max-dirty", required_argument, O_MAX_DIRTY, VMM_RUN, session_only},
	{"verify", no_argument, O_VERIFY, VMM_RUN, session_only},
	{"exact-dirty", no_argument, O_EXACT_DIRTY, VMM_RUN, session_only},
	{"repl-timeout", required_argument, O_REPL_TIMEOUT, ALL, NULL},
	{"repl-nice", required_argument, O_REPL_NICE, ALL, NULL},
	{"repl-rt", required_argument, O_REPL_RT, ALL, NULL},
	{"event-log", required_argument, O_EVENT_LOG, ALL, NULL},
	{"output-queue", required_argument, O_OUTPUT_QUEUE, ALL, NULL},
	{"listen", required_argument, O_LISTEN, VMM_REPLICA | VMM_INCOMING,
	 "--listen is where a replica waits for its primary (or a migration destination for "
	 "its source)"},
	{"key", required_argument, O_KEY, ALL, NULL},
	{"encrypt", no_argument, O_ENCRYPT, ALL, NULL},
	{"insecure", no_argument, O_INSECURE, ALL, NULL},
	{"help", no_argument, O_HELP, ALL, NULL},
};

#define N_OPTS (sizeof(table) / sizeof(table[0]))

static const char *cmd_name(unsigned cmd)
{
	switch (cmd) {
	case VMM_RUN:
		return "run";
	case VMM_RESTORE:
		return "restore";
	case VMM_REPLICA:
		return "replica";
	case VMM_INCOMING:
		return "incoming";
	case VMM_STANDBY:
		return "standby";
	}
	return "?";
}

void vmm_usage(FILE *f)
{
	fprintf(f,
		"usage: castor-vmm run --mem SIZE --cpus N --test-guest --control PATH [options]\n"
		"       castor-vmm run --mem SIZE --cpus N --kernel FILE [--initrd FILE] "
		"[--cmdline "
		"TEXT]\n"
		"                      --control PATH [options]\n"
		"       castor-vmm restore --snapshot FILE [--snapshot INCREMENTAL ...] --control "
		"PATH\n"
		"                          [--net ...] [--disk ...] [--paused] [--serial ...]\n"
		"       castor-vmm standby --mem SIZE --cpus N --control PATH [--lazy] [--net ...] "
		"[--disk ...]\n"
		"       castor-vmm replica --listen HOST:PORT --control PATH [--net ...] [--disk "
		"...]\n"
		"       castor-vmm incoming --listen HOST:PORT --control PATH [--net ...] [--disk "
		"...]\n"
		"\n"
		"  --mem SIZE            guest RAM: 16M up to the host's available memory "
		"(K/M/G/T)\n"
		"  --cpus N              vCPUs, 1 to %u\n"
		"  --test-guest          run Castor's test guest (docs/test-guest.md)\n"
		"  --kernel FILE         boot a Linux kernel: a vmlinux (PVH entry) or a bzImage\n"
		"                        (docs/guests.md; `castor mkguest` builds one)\n"
		"  --initrd FILE         (with --kernel) the initramfs\n"
		"  --cmdline TEXT        (with --kernel) the kernel command line, e.g.\n"
		"                        \"console=ttyS0 castor.ip=10.0.0.2/24\"\n"
		"  --guest-param K=V     test-guest parameter, repeatable: wss=SIZE rate=N|max\n"
		"                        outrate=N seed=N window=N tick=0|1 (docs/test-guest.md)\n"
		"  --guest-image FILE    test-guest image (default: the one built with "
		"castor-vmm)\n"
		"  --control PATH        unix socket for `castor vm ...` and `castor ha ...`\n"
		"  --serial FILE         COM1 output (default: standard output; 'none' discards)\n"
		"  --name NAME           VM name for logs and status (default: vm)\n"
		"  --disk FILE[,ro]      a virtio-blk disk on a raw image, repeatable (%u at "
		"most)\n"
		"  --net tap=NAME[,mac=MAC]  a virtio-net NIC on an existing tap, repeatable\n"
		"                        (%u at most; MAC default 52:54:00:12:34:5N)\n"
		"  --kvm DEVICE          KVM device (default: /dev/kvm)\n"
		"  --snapshot FILE       (restore) a full snapshot, then its incrementals in "
		"order;\n"
		"                        give the same --net and --disk options as the original "
		"VM\n"
		"  --paused              (restore) leave the restored VM paused\n"
		"  --lazy                (restore, standby) run before RAM is loaded: pages "
		"come in\n"
		"                        on first touch (userfaultfd) and in the background\n"
		"standby (docs/operations.md): a VM made ready ahead of time; `castor vm "
		"restore`\n"
		"  fills it from a snapshot chain and starts it. --mem and --cpus must match the\n"
		"  snapshot's, --net and --disk the original VM's. Its RAM is allocated up front\n"
		"  unless --lazy.\n"
		"\n"
		"replication (docs/operations.md); any running VM can also be protected later\n"
		"with `castor ha protect`:\n"
		"  --protect HOST:PORT   (run) replicate to the replica listening there\n"
		"  --mode interval|output|async  Remus epochs every --interval, Kemari: end\n"
		"                        the epoch at the guest's output (default interval), or\n"
		"                        async: a disaster-recovery copy, checkpoints without\n"
		"                        holding any output (docs/dr.md)\n"
		"  --interval MS         epoch length; in output mode the longest (default 25)\n"
		"  --min-spacing MS      output mode: the shortest epoch (default 1)\n"
		"  --rpo MS              async mode: the RPO target, an alert logged past it\n"
		"                        (default 5000; checkpoints every half of it unless\n"
		"                        --interval)\n"
		"  --max-dirty PAGES     end an epoch early past this many dirty pages\n"
		"  --max-mbit N          cap the link at N Mbit/s (a DR link sharing a WAN)\n"
		"  --verify              compare a digest of all RAM at every epoch (costly)\n"
		"  --repl-timeout MS     a silent peer is dead after this long (default 2000;\n"
		"                        heartbeats keep an idle link alive)\n"
		"  --event-log FILE      append 'ack E', 'out V SEQ', ... lines (tests, audits)\n"
		"  --output-queue SIZE   bound of the outputs held for acks (default 16M)\n"
		"  --exact-dirty         re-protect every page each epoch (no hot pages)\n"
		"  --repl-nice N         nice value of the replication thread, -20..19\n"
		"                        (default 0): lower gets more CPU beside the vCPUs\n"
		"  --repl-rt N           its SCHED_FIFO priority, 1..99, or 0 for normal\n"
		"                        scheduling (default 1)\n"
		"  --listen HOST:PORT    (replica) where the primary connects; (incoming) where\n"
		"                        a live migration's source connects (castor migrate,\n"
		"                        docs/migration.md): the VM runs here once it is moved\n"
		"  --key FILE            a pre-shared key (castor key generate): every session of\n"
		"                        this process is authenticated with it, both ends the "
		"same\n"
		"  --encrypt             with --key: encrypt the link too (a replica: every link)\n"
		"  --insecure            allow sessions without a key off loopback (anyone who\n"
		"                        reaches the port can feed or read the twin: "
		"docs/security.md)\n",
		HV_MAX_VCPUS, HV_MAX_DEVICES, HV_MAX_DEVICES);
}

int vmm_bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "castor-vmm: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'castor-vmm --help'.\n");
	return 2;
}

/* "FILE" or "FILE,ro" or "FILE,rw" */
static int parse_disk(char *arg, struct vmm_disk *d)
{
	char *comma = strrchr(arg, ',');

	d->read_only = false;
	if (comma && !strcmp(comma + 1, "ro")) {
		*comma = 0;
		d->read_only = true;
	} else if (comma && !strcmp(comma + 1, "rw")) {
		*comma = 0;
	}
	if (!*arg)
		return -EINVAL;
	d->path = arg;
	return 0;
}

/* "tap=NAME" or "tap=NAME,mac=MAC" */
static int parse_net(char *arg, struct vmm_net_opt *n, unsigned idx, const char **why)
{
	char *save = NULL, *tok;
	const uint8_t dflt[6] = {0x52, 0x54, 0x00, 0x12, 0x34, (uint8_t)(0x56 + idx)};

	memcpy(n->mac, dflt, 6);
	n->tap = NULL;
	for (tok = strtok_r(arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4) && tok[4]) {
			n->tap = tok + 4;
		} else if (!strncmp(tok, "mac=", 4)) {
			if (nb_mac_parse(tok + 4, n->mac) < 0) {
				*why = "the MAC does not parse (want six hex bytes like "
				       "52:54:00:12:34:56, unicast)";
				return -EINVAL;
			}
		} else {
			*why = "expected tap=NAME[,mac=MAC]";
			return -EINVAL;
		}
	}
	if (!n->tap) {
		*why = "tap=NAME is missing";
		return -EINVAL;
	}
	return 0;
}

static int parse_ms(const char *name, const char *arg, uint32_t *out)
{
	uint64_t v;

	if (util_parse_u64(arg, &v) < 0 || v == 0 || v > 600000)
		return vmm_bad_usage("--%s: '%s' is not a number of milliseconds (1-600000)", name,
				     arg);
	*out = (uint32_t)v;
	return 0;
}

/* One option of the table, already known to apply to o->cmd. */
static int take(const struct opt *op, char *arg, struct vmm_opts *o)
{
	char why[256];
	uint64_t v;
	int64_t n;

	switch (op->id) {
	case O_MEM:
		if (util_parse_size(arg, &v) < 0)
			return vmm_bad_usage("--mem: '%s' is not a size (e.g. 512M, 1G)", arg);
		o->vm.mem_bytes = v;
		o->have_mem = true;
		break;
	case O_CPUS:
		if (util_parse_u64(arg, &v) < 0 || v > UINT32_MAX)
			return vmm_bad_usage("--cpus: '%s' is not a number", arg);
		o->vm.ncpus = (uint32_t)v;
		o->have_cpus = true;
		break;
	case O_TEST_GUEST:
		o->test_guest = true;
		break;
	case O_GUEST_PARAM:
		if (hv_tg_config_set(&o->tg, arg, why, sizeof(why)) < 0)
			return vmm_bad_usage("--guest-param: %s", why);
		break;
	case O_GUEST_IMAGE:
		o->tg.image_path = arg;
		break;
	case O_KERNEL:
		o->kernel.kernel = arg;
		break;
	case O_INITRD:
		o->kernel.initrd = arg;
		break;
	case O_CMDLINE:
		o->kernel.cmdline = arg;
		break;
	case O_CONTROL:
		o->control = arg;
		break;
	case O_SERIAL:
		o->serial = arg;
		break;
	case O_NAME:
		o->vm.name = arg;
		break;
	case O_KVM:
		o->vm.kvm_path = arg;
		break;
	case O_DISK:
		if (o->ndisks == HV_MAX_DEVICES)
			return vmm_bad_usage("--disk: at most %u disks", HV_MAX_DEVICES);
		if (parse_disk(arg, &o->disks[o->ndisks]) < 0)
			return vmm_bad_usage("--disk: '%s' is not FILE[,ro]", arg);
		o->ndisks++;
		break;
	case O_NET: {
		const char *net_why = NULL;

		if (o->nnets == HV_MAX_DEVICES)
			return vmm_bad_usage("--net: at most %u NICs", HV_MAX_DEVICES);
		if (parse_net(arg, &o->nets[o->nnets], o->nnets, &net_why) < 0)
			return vmm_bad_usage("--net: %s", net_why);
		o->nnets++;
		break;
	}
	case O_SNAPSHOT:
		if (o->nsnapshots == MAX_SNAPSHOTS)
			return vmm_bad_usage("--snapshot: at most %u files", MAX_SNAPSHOTS);
		o->snapshots[o->nsnapshots++] = arg;
		break;
	case O_PAUSED:
		o->start_paused = true;
		break;
	case O_LAZY:
		o->lazy = true;
		break;
	case O_PROTECT:
		o->protect = arg;
		break;
	case O_MODE:
		if (repl_mode_parse(arg, &o->ro.mode) < 0)
			return vmm_bad_usage("--mode: '%s' is not interval, output or async", arg);
		o->have_session_opts = true;
		break;
	case O_INTERVAL:
		o->have_session_opts = true;
		return parse_ms(op->name, arg, &o->ro.interval_ms);
	case O_MIN_SPACING:
		o->have_session_opts = true;
		return parse_ms(op->name, arg, &o->ro.min_spacing_ms);
	case O_RPO:
		o->have_session_opts = true;
		return parse_ms(op->name, arg, &o->ro.rpo_ms);
	case O_MAX_MBIT:
		if (util_parse_u64(arg, &v) < 0 || v == 0 || v > 100000)
			return vmm_bad_usage("--max-mbit: '%s' is not a rate in Mbit/s (1-100000)",
					     arg);
		o->ro.conn.max_rate_bytes = v * 125000u;
		o->have_session_opts = true;
		break;
	case O_REPL_TIMEOUT:
		return parse_ms(op->name, arg, &o->ro.conn.timeout_ms);
	case O_MAX_DIRTY:
		if (util_parse_u64(arg, &v) < 0 || v == 0)
			return vmm_bad_usage("--max-dirty: '%s' is not a page count", arg);
		o->ro.max_dirty_pages = v;
		o->have_session_opts = true;
		break;
	case O_VERIFY:
		o->ro.verify = true;
		o->have_session_opts = true;
		break;
	case O_EXACT_DIRTY:
		o->ro.exact_dirty = true;
		o->have_session_opts = true;
		break;
	case O_REPL_NICE:
		if (util_parse_i64(arg, &n) < 0 || n < -20 || n > 19)
			return vmm_bad_usage("--repl-nice: '%s' is not a nice value (-20..19)",
					     arg);
		o->ro.thread_nice = (int)n;
		break;
	case O_REPL_RT:
		if (util_parse_i64(arg, &n) < 0 || n < 0 || n > 99)
			return vmm_bad_usage("--repl-rt: '%s' is not a real-time priority (1..99, "
					     "0: none)",
					     arg);
		o->ro.thread_rt = n ? (int)n : -1;
		break;
	case O_EVENT_LOG:
		o->event_log = arg;
		break;
	case O_OUTPUT_QUEUE:
		if (util_parse_size(arg, &v) < 0 || v < 2048)
			return vmm_bad_usage("--output-queue: '%s' is not a size of 2K or more",
					     arg);
		o->outq_bytes = v;
		break;
	case O_LISTEN:
		o->listen = arg;
		break;
	case O_KEY:
		o->key_file = arg;
		break;
	case O_ENCRYPT:
		o->ro.encrypt = true;
		break;
	case O_INSECURE:
		o->insecure = true;
		break;
	case O_HELP:
		vmm_usage(stdout);
		exit(0);
	}
	return 0;
}

/*
 * Test hooks, kept out of the command line: CASTOR_TEST_CUT_AFTER=N cuts
 * every replication connection of this process after N bytes, as if its host
 * died mid-stream (every session); CASTOR_TEST_POSTCOPY_CUT=N cuts a
 * migration's link once, after N pages of postcopy (rounded up to 256).
 */
static int test_hooks(struct vmm_opts *o)
{
	const char *cut = getenv("CASTOR_TEST_CUT_AFTER");
	const char *pc = getenv("CASTOR_TEST_POSTCOPY_CUT");
	uint64_t v;

	if (cut && *cut) {
		if (util_parse_u64(cut, &v) < 0)
			return vmm_bad_usage("CASTOR_TEST_CUT_AFTER: '%s' is not a byte count",
					     cut);
		o->ro.conn.cut_after_bytes = v;
	}
	if (pc && *pc) {
		if (util_parse_u64(pc, &v) < 0 || !v)
			return vmm_bad_usage("CASTOR_TEST_POSTCOPY_CUT: '%s' is not a page count",
					     pc);
		o->pc_test_cut_pages = v;
	}
	return 0;
}

int vmm_opts_parse(int argc, char **argv, struct vmm_opts *o)
{
	struct option lo[N_OPTS + 1];
	size_t i;
	int c, rc;

	for (i = 0; i < N_OPTS; i++)
		lo[i] = (struct option){table[i].name, table[i].has_arg, NULL, table[i].id};
	lo[N_OPTS] = (struct option){0};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		const struct opt *op = NULL;

		for (i = 0; i < N_OPTS; i++)
			if (table[i].id == c)
				op = &table[i];
		if (c == ':')
			return vmm_bad_usage("option '%s' needs a value", argv[optind - 1]);
		if (!op)
			return vmm_bad_usage("unknown option '%s'", argv[optind - 1]);
		if (!(op->cmds & o->cmd))
			return vmm_bad_usage("--%s does not apply to 'castor-vmm %s'%s%s", op->name,
					     cmd_name(o->cmd), op->why_not ? ": " : "",
					     op->why_not ? op->why_not : "");
		rc = take(op, optarg, o);
		if (rc)
			return rc;
	}
	if (optind < argc)
		return vmm_bad_usage("unexpected argument '%s'", argv[optind]);
	if (!o->control)
		return vmm_bad_usage("--control PATH is required");
	if (o->have_session_opts && !o->protect)
		return vmm_bad_usage(
			"--mode, --interval, --min-spacing, --rpo, --max-dirty, --max-mbit, "
			"--verify and --exact-dirty need --protect HOST:PORT");
	if (o->ro.rpo_ms && o->ro.mode != REPL_MODE_ASYNC)
		return vmm_bad_usage("--rpo goes with --mode async");
	if (o->ro.encrypt && !o->key_file)
		return vmm_bad_usage("--encrypt needs --key FILE (castor key generate)");
	if (o->key_file && o->insecure)
		return vmm_bad_usage(
			"--insecure with --key: a keyed link is not insecure; give one");
	if (o->key_file) {
		char why[320];

		if (repl_key_load(o->key_file, &o->key, why, sizeof(why)) < 0)
			return vmm_bad_usage("--key: %s", why);
		o->ro.key = &o->key;
	}
	return test_hooks(o);
}

int vmm_link_allowed(const struct vmm_opts *o, const char *what, const char *addr, char *why,
		     size_t why_len)
{
	struct sockaddr_storage ss;
	char pwhy[192];
	unsigned len;

	if (repl_parse_addr(addr, &ss, &len, pwhy, sizeof(pwhy)) < 0)
		return util_why(why, why_len, -EINVAL, "%s: %s", what, pwhy);
	if (o->ro.key || o->insecure || repl_addr_is_loopback(&ss))
		return 0;
	/* a wildcard listen (0.0.0.0, ::) is reachable from everywhere: not loopback */
	return util_why(why, why_len, -EACCES,
			"%s %s is not a loopback address and there is no key: give --key FILE "
			"(castor key generate; the same file on both ends) or, on a network you "
			"trust, --insecure",
			what, addr);
}
