/*
 * castor-vmm: runs one KVM guest and serves its control socket.
 *
 *   castor-vmm run --mem SIZE --cpus N --test-guest [--guest-param key=value ...]
 *                  --control PATH [--serial FILE] [--name NAME]
 *                  [--disk FILE[,ro] ...] [--net tap=NAME[,mac=MAC] ...]
 *                  [--guest-image FILE] [--kvm DEVICE]
 *                  [--protect HOST:PORT [replication options]]
 *   castor-vmm restore --snapshot FILE ... --control PATH [...]
 *   castor-vmm replica --listen HOST:PORT --control PATH [--net/--disk as the primary]
 *   castor-vmm standby --mem SIZE --cpus N --control PATH [--lazy] [--net/--disk as the original]
 *
 * Exit status: 0 after a quit request or SIGTERM/SIGINT, 1 when the VM could
 * not be set up or run, 2 for a bad command line.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hypervisor/hv.h"
#include "netbuffer/netbuf.h"
#include "replication/repl.h"
#include "tools/vmm/vmm.h"

#ifndef CASTOR_GUEST_BIN
#define CASTOR_GUEST_BIN "castor-tg.bin"
#endif

#define MAX_GUEST_PARAMS 32
#define MAX_SNAPSHOTS	 64 /* a full snapshot and its incrementals */
#define NET_HDR_LEN	 12 /* the virtio-net header before every frame */

struct net_opt {
	const char *tap;
	uint8_t mac[6];
};

struct run_opts {
	struct hv_vm_config vm;
	struct hv_tg_config tg;
	const char *control;
	const char *serial;
	bool test_guest;
	struct net_opt nets[HV_MAX_DEVICES];
	unsigned nnets;
	struct vmm_disk disks[HV_MAX_DEVICES];
	unsigned ndisks;
	bool restore;
	bool standby;
	const char *snapshots[MAX_SNAPSHOTS];
	unsigned nsnapshots;
	bool start_paused;
	bool lazy;
	/* replication */
	bool replica;
	const char *listen;  /* replica */
	const char *protect; /* primary: the replica's HOST:PORT */
	struct repl_primary_opts ro;
	const char *event_log;
	uint64_t outq_bytes; /* bound of the output queue (0: the default) */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: castor-vmm run --mem SIZE --cpus N --test-guest --control PATH [options]\n"
		"       castor-vmm restore --snapshot FILE [--snapshot INCREMENTAL ...] --control "
		"PATH\n"
		"                          [--net ...] [--disk ...] [--paused] [--serial ...]\n"
		"       castor-vmm standby --mem SIZE --cpus N --control PATH [--lazy] [--net ...] "
		"[--disk ...]\n"
		"       castor-vmm replica --listen HOST:PORT --control PATH [--net ...] [--disk "
		"...]\n"
		"\n"
		"  --mem SIZE            guest RAM: 16M up to the host's available memory "
		"(K/M/G/T)\n"
		"  --cpus N              vCPUs, 1 to %u\n"
		"  --test-guest          run Castor's test guest (the only guest so far)\n"
		"  --guest-param K=V     test-guest parameter, repeatable: wss=SIZE rate=N|max\n"
		"                        outrate=N seed=N window=N tick=0|1 (docs/test-guest.md)\n"
		"  --guest-image FILE    test-guest image (default: the one built with "
		"castor-vmm)\n"
		"  --control PATH        unix socket for `castor vm ...`\n"
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
		"replication (docs/operations.md):\n"
		"  --protect HOST:PORT   (run) replicate to the replica listening there\n"
		"  --mode interval|output  Remus epochs every --interval, or Kemari: end the\n"
		"                        epoch at the guest's output (default interval)\n"
		"  --interval MS         epoch length; in output mode the longest (default 25)\n"
		"  --min-spacing MS      output mode: the shortest epoch (default 1)\n"
		"  --max-dirty PAGES     end an epoch early past this many dirty pages\n"
		"  --verify              compare a digest of all RAM at every epoch (costly)\n"
		"  --repl-timeout MS     a silent peer is dead after this long (default 2000)\n"
		"  --event-log FILE      append 'ack E', 'out V SEQ', ... lines (tests, audits)\n"
		"  --output-queue SIZE   bound of the outputs held for acks (default 16M)\n"
		"  --exact-dirty         re-protect every page each epoch (no hot pages)\n"
		"  --repl-nice N         nice value of the replication thread, -20..19 (run and\n"
		"                        replica; default 0): lower gets more CPU beside the "
		"vCPUs\n"
		"  --repl-rt N           its SCHED_FIFO priority, 1..99, or 0 for normal\n"
		"                        scheduling (run and replica; default 1)\n"
		"  --listen HOST:PORT    (replica) where the primary connects\n",
		HV_MAX_VCPUS, HV_MAX_DEVICES, HV_MAX_DEVICES);
}

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "castor-vmm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'castor-vmm run --help'.\n");
	return 2;
}

/* "FILE" or "FILE,ro" */
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
static int parse_net(char *arg, struct net_opt *n, unsigned idx, const char **why)
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
				       "52:54:00:12:34:56, "
				       "unicast)";
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

static int parse_run(int argc, char **argv, struct run_opts *o)
{
	static const struct option opts[] = {
		{"snapshot", required_argument, NULL, 'S'},
		{"paused", no_argument, NULL, 'P'},
		{"lazy", no_argument, NULL, 'L'},
		{"mem", required_argument, NULL, 'm'},
		{"cpus", required_argument, NULL, 'c'},
		{"test-guest", no_argument, NULL, 't'},
		{"guest-param", required_argument, NULL, 'p'},
		{"guest-image", required_argument, NULL, 'i'},
		{"control", required_argument, NULL, 'C'},
		{"serial", required_argument, NULL, 's'},
		{"name", required_argument, NULL, 'n'},
		{"kvm", required_argument, NULL, 'k'},
		{"disk", required_argument, NULL, 'd'},
		{"net", required_argument, NULL, 'N'},
		{"protect", required_argument, NULL, 0x100},
		{"mode", required_argument, NULL, 0x101},
		{"interval", required_argument, NULL, 0x102},
		{"min-spacing", required_argument, NULL, 0x103},
		{"max-dirty", required_argument, NULL, 0x104},
		{"verify", no_argument, NULL, 0x105},
		{"repl-timeout", required_argument, NULL, 0x106},
		{"event-log", required_argument, NULL, 0x107},
		{"listen", required_argument, NULL, 0x108},
		{"test-cut-after", required_argument, NULL, 0x109},
		{"output-queue", required_argument, NULL, 0x10a},
		{"exact-dirty", no_argument, NULL, 0x10b},
		{"repl-nice", required_argument, NULL, 0x10c},
		{"repl-rt", required_argument, NULL, 0x10d},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	bool have_mem = false, have_cpus = false;
	char why[256];
	uint64_t v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (util_parse_size(optarg, &v) < 0)
				return bad_usage("--mem: '%s' is not a size (e.g. 512M, 1G)",
						 optarg);
			o->vm.mem_bytes = v;
			have_mem = true;
			break;
		case 'c':
			if (util_parse_u64(optarg, &v) < 0 || v > UINT32_MAX)
				return bad_usage("--cpus: '%s' is not a number", optarg);
			o->vm.ncpus = (uint32_t)v;
			have_cpus = true;
			break;
		case 't':
			o->test_guest = true;
			break;
		case 'p':
			if (hv_tg_config_set(&o->tg, optarg, why, sizeof(why)) < 0)
				return bad_usage("--guest-param: %s", why);
			break;
		case 'i':
			o->tg.image_path = optarg;
			break;
		case 'C':
			o->control = optarg;
			break;
		case 's':
			o->serial = optarg;
			break;
		case 'n':
			o->vm.name = optarg;
			break;
		case 'k':
			o->vm.kvm_path = optarg;
			break;
		case 'd':
			if (o->ndisks == HV_MAX_DEVICES)
				return bad_usage("--disk: at most %s disks", "4");
			if (parse_disk(optarg, &o->disks[o->ndisks]) < 0)
				return bad_usage("--disk: '%s' is not FILE[,ro]", optarg);
			o->ndisks++;
			break;
		case 'N': {
			const char *net_why = NULL;

			if (o->nnets == HV_MAX_DEVICES)
				return bad_usage("--net: at most %s NICs", "4");
			if (parse_net(optarg, &o->nets[o->nnets], o->nnets, &net_why) < 0)
				return bad_usage("--net: %s", net_why);
			o->nnets++;
			break;
		}
		case 'S':
			if (!o->restore)
				return bad_usage("%s",
						 "--snapshot belongs to 'castor-vmm restore'");
			if (o->nsnapshots == MAX_SNAPSHOTS)
				return bad_usage("--snapshot: at most %s files", "64");
			o->snapshots[o->nsnapshots++] = optarg;
			break;
		case 'P':
			o->start_paused = true;
			break;
		case 0x100:
			o->protect = optarg;
			break;
		case 0x101:
			if (repl_mode_parse(optarg, &o->ro.mode) < 0)
				return bad_usage("--mode: '%s' is not interval or output", optarg);
			break;
		case 0x102:
		case 0x103:
		case 0x106:
			if (util_parse_u64(optarg, &v) < 0 || v == 0 || v > 60000)
				return bad_usage("'%s' is not a number of milliseconds (1-60000)",
						 optarg);
			if (c == 0x102)
				o->ro.interval_ms = (uint32_t)v;
			else if (c == 0x103)
				o->ro.min_spacing_ms = (uint32_t)v;
			else
				o->ro.conn.timeout_ms = (uint32_t)v;
			break;
		case 0x104:
			if (util_parse_u64(optarg, &v) < 0 || v == 0)
				return bad_usage("--max-dirty: '%s' is not a page count", optarg);
			o->ro.max_dirty_pages = v;
			break;
		case 0x105:
			o->ro.verify = true;
			break;
		case 0x107:
			o->event_log = optarg;
			break;
		case 0x108:
			o->listen = optarg;
			break;
		case 0x10a:
			if (util_parse_size(optarg, &v) < 0 || v < 2048)
				return bad_usage("--output-queue: '%s' is not a size of 2K or more",
						 optarg);
			o->outq_bytes = v;
			break;
		case 0x10b:
			o->ro.exact_dirty = true;
			break;
		case 0x10c: {
			int64_t n;

			if (util_parse_i64(optarg, &n) < 0 || n < -20 || n > 19)
				return bad_usage("--repl-nice: '%s' is not a nice value (-20..19)",
						 optarg);
			o->ro.thread_nice = (int)n;
			break;
		}
		case 0x10d: {
			int64_t n;

			if (util_parse_i64(optarg, &n) < 0 || n < 0 || n > 99)
				return bad_usage(
					"--repl-rt: '%s' is not a real-time priority (1..99, "
					"0: none)",
					optarg);
			o->ro.thread_rt = n ? (int)n : -1;
			break;
		}
		case 0x109: /* test hook: the connection dies after this many bytes */
			if (util_parse_u64(optarg, &v) < 0)
				return bad_usage("--test-cut-after: '%s' is not a byte count",
						 optarg);
			o->ro.conn.cut_after_bytes = v;
			break;
		case 'L':
			o->lazy = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			return bad_usage("option '%s' needs a value", argv[optind - 1]);
		default:
			return bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	if (o->replica) {
		if (!o->listen)
			return bad_usage("%s", "--listen HOST:PORT is required");
		if (!o->control)
			return bad_usage("%s", "--control is required");
		if (o->test_guest || have_mem || have_cpus || o->protect || o->nsnapshots)
			return bad_usage("%s", "a replica takes its guest from the primary: drop "
					       "--test-guest, --mem, --cpus, --protect");
		return 0;
	}
	if (o->listen)
		return bad_usage("%s", "--listen belongs to 'castor-vmm replica'");
	if (o->lazy && !o->restore && !o->standby)
		return bad_usage("%s", "--lazy belongs to 'castor-vmm restore' and 'standby'");
	if (o->start_paused && !o->restore)
		return bad_usage("%s", o->standby ? "a standby is not running anything: give "
						    "--paused to 'castor vm restore'"
						  : "--paused belongs to 'castor-vmm restore'");
	if (o->standby) {
		if (o->test_guest || o->protect)
			return bad_usage("%s", "a standby takes its guest from a snapshot: drop "
					       "--test-guest and --protect");
		if (!have_mem || !have_cpus)
			return bad_usage("%s", "a standby needs --mem and --cpus (those of the "
					       "snapshots it will restore)");
		if (!o->control)
			return bad_usage("%s", "--control is required");
		if (hv_vm_config_check(&o->vm, why, sizeof(why)) < 0)
			return bad_usage("%s", why);
		if (o->ro.verify || o->ro.exact_dirty || o->ro.max_dirty_pages ||
		    o->ro.interval_ms || o->ro.min_spacing_ms || o->ro.thread_nice ||
		    o->ro.thread_rt)
			return bad_usage("%s", "replication options need --protect HOST:PORT");
		return 0;
	}
	if (o->protect) {
		unsigned i;

		for (i = 0; i < o->ndisks; i++)
			if (!o->disks[i].read_only)
				return bad_usage(
					"--protect: disk %s is writable; a protected VM may "
					"have read-only disks only until disk replication "
					"exists (add ,ro)",
					o->disks[i].path);
		if (o->ro.mode == REPL_MODE_OUTPUT && o->ro.interval_ms &&
		    o->ro.min_spacing_ms > o->ro.interval_ms)
			return bad_usage("%s", "--min-spacing is longer than --interval");
	} else if (o->ro.verify || o->ro.exact_dirty || o->ro.max_dirty_pages ||
		   o->ro.interval_ms || o->ro.min_spacing_ms || o->ro.thread_nice ||
		   o->ro.thread_rt) {
		return bad_usage("%s", "replication options need --protect HOST:PORT");
	}
	if (o->restore) {
		if (!o->nsnapshots)
			return bad_usage("%s", "--snapshot FILE is required");
		if (o->test_guest || have_mem || have_cpus)
			return bad_usage("%s",
					 "restore takes the guest, its RAM size and vCPU count "
					 "from the snapshot: drop --test-guest, --mem, --cpus");
		if (!o->control)
			return bad_usage("%s", "--control is required");
		return 0;
	}
	if (!have_mem)
		return bad_usage("%s", "--mem is required");
	if (!have_cpus)
		return bad_usage("%s", "--cpus is required");
	if (!o->test_guest)
		return bad_usage("%s",
				 "--test-guest is required (no other guest is supported yet)");
	if (!o->control)
		return bad_usage("%s", "--control is required");
	if (hv_vm_config_check(&o->vm, why, sizeof(why)) < 0)
		return bad_usage("%s", why);
	return 0;
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	LOG_INFO("signal %d: shutting down", (int)sig);
	event_base_loopexit(arg, NULL);
}

static int open_serial(const char *path)
{
	if (!path || !strcmp(path, "-"))
		return dup(STDOUT_FILENO);
	if (!strcmp(path, "none"))
		return -1;
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

/* Disks and NICs, before the guest is loaded (it learns their addresses). */
static int add_devices(struct run_opts *o, struct hv_vm *vm, struct vmm_devices *devs)
{
	char why[256];
	unsigned i;
	int rc;

	for (i = 0; i < o->ndisks; i++) {
		struct hv_blk_config bc = {.path = o->disks[i].path,
					   .read_only = o->disks[i].read_only};

		rc = hv_blk_add(vm, &bc, &o->disks[i].blk);
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: disk %s: %s\n", o->disks[i].path,
				strerror(-rc));
			return rc;
		}
		devs->disks[devs->ndisks++] = o->disks[i];
	}
	for (i = 0; i < o->nnets; i++) {
		struct nb_tap *tap = NULL;

		rc = nb_tap_open(o->nets[i].tap, &tap, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: --net: %s\n", why);
			return rc;
		}
		memcpy(devs->macs[devs->ntaps], o->nets[i].mac, 6);
		devs->taps[devs->ntaps++] = tap;
		rc = nb_tap_attach(tap, vm, o->nets[i].mac);
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: NIC on tap %s: %s\n", o->nets[i].tap,
				strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* ---- outputs and the event log --------------------------------------------------- */

static int event_fd = -1; /* --event-log: one line per event, appended with one write(2) */

/*
 * "LINE t=NS": NS is CLOCK_REALTIME when the event happened (`ts`, or now),
 * comparable with packet capture timestamps.
 */
static void event_line_at(const struct timespec *at, const char *line)
{
	struct timespec ts;
	char buf[300];
	int n;

	if (event_fd < 0)
		return;
	if (at)
		ts = *at;
	else
		clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(buf, sizeof(buf), "%s t=%lld%09ld\n", line, (long long)ts.tv_sec,
		     (long)ts.tv_nsec);
	if (n > 0 && write(event_fd, buf, (size_t)n) < 0)
		LOG_WARN("event log: %s", strerror(errno));
}

struct tg_output {
	uint32_t vcpu;
	uint32_t reserved;
	uint64_t seq;
	uint64_t counter; /* the vCPU's page-write counter when it emitted the output */
};

static void event_line(void *arg, const char *line)
{
	(void)arg;
	event_line_at(NULL, line);
}

/*
 * A frame's length without Ethernet padding (an IPv4 frame ends with its
 * datagram): bridges may trim padding, so the event log's digest, like the
 * one tests/net/wirecap.py takes on the wire, covers only this much.
 */
static size_t frame_len(const uint8_t *f, size_t len)
{
	size_t ip;

	if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00)
		return len;
	ip = (size_t)f[16] << 8 | f[17];
	return 14 + ip < len ? 14 + ip : len;
}

/*
 * An output reaches the outside world: a frame goes to its tap, a test-device
 * output to the event log (which also records each frame: length and CRC-32C,
 * so a capture can be matched against it).
 */
static void release_cb(void *arg, uint32_t kind, const void *data, size_t len)
{
	struct vmm_ha *ha = arg;
	struct tg_output out;
	char line[64];

	if ((kind & NB_KIND_MASK) == NB_KIND_NET_FRAME) {
		uint32_t idx = NB_KIND_INDEX(kind);

		struct timespec at;

		if (!ha->devs || idx >= ha->devs->ntaps)
			return;
		clock_gettime(CLOCK_REALTIME, &at); /* the release time: before the write */
		nb_tap_release(ha->devs->taps[idx], data, len);
		if (event_fd >= 0 && len > NET_HDR_LEN) {
			const uint8_t *f = (const uint8_t *)data + NET_HDR_LEN;
			size_t n = frame_len(f, len - NET_HDR_LEN);

			snprintf(line, sizeof(line), "net %u %zu %08x", idx, n,
				 util_crc32c_final(util_crc32c_update(UTIL_CRC32C_INIT, f, n)));
			event_line_at(&at, line);
		}
		return;
	}
	if (kind != NB_KIND_TESTDEV || len != sizeof(out) || event_fd < 0)
		return;
	memcpy(&out, data, sizeof(out));
	snprintf(line, sizeof(line), "out %u %llu %llu", out.vcpu, (unsigned long long)out.seq,
		 (unsigned long long)out.counter);
	event_line(NULL, line);
}

static void kick(struct vmm_ha *ha)
{
	struct repl_primary *p = __atomic_load_n(&ha->primary, __ATOMIC_ACQUIRE);

	if (p)
		repl_primary_kick(p);
}

static void full_cb(void *arg)
{
	kick(arg);
}

/* A frame was queued: in output mode it ends the epoch. */
static void frame_queued_cb(void *arg)
{
	struct vmm_ha *ha = arg;

	if (ha->kick_on_output)
		kick(ha);
}

/* Route the NICs' TX through the output queue (used once it is protected). */
static void taps_to_queue(struct vmm_devices *devs, struct vmm_ha *ha)
{
	unsigned i;

	for (i = 0; i < devs->ntaps; i++)
		nb_tap_set_queue(devs->taps[i], ha->outq, i, frame_queued_cb, ha);
}

/* On the vCPU thread: every test-device output goes through the output queue. */
static void output_cb(void *arg, uint32_t vcpu, uint64_t seq, uint64_t counter)
{
	struct vmm_ha *ha = arg;
	struct tg_output out = {.vcpu = vcpu, .seq = seq, .counter = counter};
	int rc;

	rc = nb_output(ha->outq, NB_KIND_TESTDEV, &out, sizeof(out));
	if (rc == -ENOBUFS)
		__atomic_fetch_add(&ha->outputs_dropped, 1, __ATOMIC_RELAXED);
	if (ha->kick_on_output)
		kick(ha);
}

/* ---- run, restore, replica ------------------------------------------------------- */

struct restore_ctx {
	struct run_opts *o;
	struct vmm_devices *devs;
	struct vmm_ha *ha;
};

static int restore_add_devices(void *arg, struct hv_vm *vm)
{
	struct restore_ctx *r = arg;

	int rc;

	hv_tg_set_output_cb(vm, output_cb, r->ha);
	rc = add_devices(r->o, vm, r->devs);
	if (!rc)
		taps_to_queue(r->devs, r->ha);
	return rc;
}

static void unmap_snapshots(const uint8_t **maps, const size_t *lens, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		munmap((void *)maps[i], lens[i]);
}

/* Map the snapshot files read-only; on failure none stays mapped and `why` says which. */
static int map_snapshots(const char *const *paths, unsigned n, const uint8_t **maps, size_t *lens,
			 char *why, size_t why_len)
{
	unsigned i;
	int rc = 0;

	if (n > MAX_SNAPSHOTS) {
		snprintf(why, why_len, "at most %u snapshots in a chain", MAX_SNAPSHOTS);
		return -E2BIG;
	}
	for (i = 0; i < n; i++) {
		struct stat st;
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0 || !S_ISREG(st.st_mode)) {
			rc = fd < 0 || errno ? -errno : -EINVAL;
			snprintf(why, why_len, "snapshot %s: %s", paths[i],
				 fd < 0			? strerror(errno)
				 : !S_ISREG(st.st_mode) ? "not a regular file"
				 : st.st_size == 0	? "empty file"
							: strerror(errno));
			if (fd >= 0)
				close(fd);
			rc = rc ? rc : -EINVAL;
			break;
		}
		maps[i] = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		close(fd);
		if (maps[i] == MAP_FAILED) {
			rc = -errno;
			snprintf(why, why_len, "snapshot %s: %s", paths[i], strerror(errno));
			break;
		}
		lens[i] = (size_t)st.st_size;
	}
	if (rc < 0)
		unmap_snapshots(maps, lens, i);
	return rc;
}

/* Map every snapshot file and build the VM from the chain. */
static int restore_vm(struct run_opts *o, struct vmm_devices *devs, struct vmm_ha *ha,
		      struct hv_vm **vm_out)
{
	const uint8_t *maps[MAX_SNAPSHOTS];
	size_t lens[MAX_SNAPSHOTS];
	struct restore_ctx ctx = {o, devs, ha};
	char why[512];
	int rc;

	rc = map_snapshots(o->snapshots, o->nsnapshots, maps, lens, why, sizeof(why));
	if (!rc) {
		rc = hv_snapshot_restore(&o->vm, maps, lens, o->nsnapshots,
					 o->lazy ? HV_RESTORE_LAZY : 0, restore_add_devices, &ctx,
					 vm_out, why, sizeof(why));
		/* a lazy VM loads its pages from these mappings: they live with the process */
		if (rc < 0 || !o->lazy)
			unmap_snapshots(maps, lens, o->nsnapshots);
	}
	if (rc < 0)
		fprintf(stderr, "castor-vmm: cannot restore: %s\n", why);
	return rc;
}

int vmm_standby_restore(struct vmm_standby *sb, char *const *paths, unsigned n, uint64_t *bytes,
			char *why, size_t why_len)
{
	const uint8_t *maps[MAX_SNAPSHOTS];
	size_t lens[MAX_SNAPSHOTS];
	int rc;

	rc = map_snapshots((const char *const *)paths, n, maps, lens, why, why_len);
	if (rc < 0)
		return rc;
	rc = hv_snapshot_restore_into(sb->vm, maps, lens, n, sb->lazy ? HV_RESTORE_LAZY : 0, NULL,
				      NULL, why, why_len);
	if (!rc) {
		rc = hv_vm_start(sb->vm);
		if (rc < 0)
			snprintf(why, why_len, "cannot start the restored VM: %s", strerror(-rc));
		sb->used = true; /* started or not, it is no longer blank */
	}
	*bytes = 0;
	for (unsigned i = 0; i < n; i++)
		*bytes += lens[i];
	if (rc < 0 || !sb->lazy)
		unmap_snapshots(maps, lens, n);
	if (!rc)
		LOG_INFO("vm %s: standby restored %u snapshot(s), %.1f MiB%s", hv_vm_name(sb->vm),
			 n, (double)*bytes / (1 << 20), sb->lazy ? ", lazily" : "");
	return rc;
}

/* The standby's VM: created, devices attached, slots registered, RAM allocated unless lazy. */
static int build_standby(struct run_opts *o, struct vmm_devices *devs, struct vmm_ha *ha,
			 struct vmm_standby *sb)
{
	uint64_t t0 = util_now_ns();
	int rc;

	rc = hv_vm_create(&o->vm, &sb->vm);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot create the VM: %s\n", strerror(-rc));
		return rc;
	}
	sb->lazy = o->lazy;
	hv_tg_set_output_cb(sb->vm, output_cb, ha);
	rc = add_devices(o, sb->vm, devs);
	if (rc < 0)
		return rc;
	taps_to_queue(devs, ha);
	rc = hv_vm_prepare(sb->vm, !o->lazy);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot make the standby ready: %s\n", strerror(-rc));
		return rc;
	}
	LOG_INFO("vm %s: standby ready in %.1f ms: %u vCPUs, %" PRIu64 " MiB%s", hv_vm_name(sb->vm),
		 (double)(util_now_ns() - t0) / 1e6, hv_vm_ncpus(sb->vm),
		 hv_vm_mem_bytes(sb->vm) >> 20,
		 o->lazy ? ", RAM loads on first touch" : ", RAM allocated");
	return 0;
}

/* The VM of `run` or `restore`, built and loaded but not started. */
static int build_vm(struct run_opts *o, struct vmm_devices *devs, struct vmm_ha *ha,
		    struct hv_vm **vm_out)
{
	struct hv_vm *vm = NULL;
	int rc;

	if (o->restore)
		return restore_vm(o, devs, ha, vm_out);
	rc = hv_vm_create(&o->vm, &vm);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: cannot create the VM: %s\n", strerror(-rc));
		return rc;
	}
	*vm_out = vm;
	hv_tg_set_output_cb(vm, output_cb, ha);
	rc = add_devices(o, vm, devs);
	if (rc < 0)
		return rc;
	taps_to_queue(devs, ha);
	rc = hv_tg_load(vm, &o->tg);
	if (rc < 0)
		fprintf(stderr, "castor-vmm: cannot load the test guest %s: %s\n", o->tg.image_path,
			strerror(-rc));
	return rc;
}

enum vmm_cmd { CMD_RUN, CMD_RESTORE, CMD_REPLICA, CMD_STANDBY };

static int cmd_run(int argc, char **argv, enum vmm_cmd cmd)
{
	bool replica = cmd == CMD_REPLICA;
	struct vmm_standby standby = {0};
	struct run_opts o;
	struct vmm_devices devs = {0};
	struct vmm_ha ha = {0};
	struct nb_queue_opts qo = {0};
	struct restore_ctx rctx = {&o, &devs, &ha};
	struct hv_vm *vm = NULL;
	struct vmm_control *ctl = NULL;
	struct event_base *base = NULL;
	struct event *sigint_ev = NULL, *sigterm_ev = NULL;
	char why[512];
	int rc, status = 1, serial_fd = -1;

	memset(&o, 0, sizeof(o));
	o.restore = cmd == CMD_RESTORE;
	o.replica = replica;
	o.standby = cmd == CMD_STANDBY;
	hv_tg_config_default(&o.tg);
	o.tg.image_path = CASTOR_GUEST_BIN;
	o.vm.serial_fd = -1;
	rc = parse_run(argc, argv, &o);
	if (rc)
		return rc;

	signal(SIGPIPE, SIG_IGN);
	serial_fd = open_serial(o.serial);
	if (serial_fd < 0 && o.serial && strcmp(o.serial, "none")) {
		fprintf(stderr, "castor-vmm: cannot open serial output %s: %s\n", o.serial,
			strerror(errno));
		goto out;
	}
	o.vm.serial_fd = serial_fd;
	if (o.event_log) {
		event_fd = open(o.event_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (event_fd < 0) {
			fprintf(stderr, "castor-vmm: --event-log %s: %s\n", o.event_log,
				strerror(errno));
			goto out;
		}
	}
	qo.name = o.vm.name;
	qo.max_bytes = o.outq_bytes;
	ha.devs = &devs;
	rc = nb_queue_new(&qo, release_cb, full_cb, &ha, &ha.outq);
	if (rc < 0)
		goto out;
	ha.kick_on_output = o.protect && o.ro.mode == REPL_MODE_OUTPUT;
	if (replica) {
		struct repl_secondary_opts so = {
			.listen = o.listen,
			.conn = o.ro.conn,
			.vm = o.vm,
			.add_devices = restore_add_devices,
			.add_devices_arg = &rctx,
			.thread_nice = o.ro.thread_nice,
			.thread_rt = o.ro.thread_rt,
			.log_cb = event_line,
		};

		rc = repl_secondary_start(&so, &ha.secondary, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: replica: %s\n", why);
			goto out;
		}
	} else if (o.standby) {
		ha.standby = &standby;
		rc = build_standby(&o, &devs, &ha, &standby);
		if (rc < 0)
			goto out;
	} else {
		rc = build_vm(&o, &devs, &ha, &vm);
		if (rc < 0)
			goto out;
	}
	base = event_base_new();
	if (!base)
		goto out;
	rc = vmm_control_open(base, vm, &devs, &ha, o.control, &ctl);
	if (rc < 0) {
		fprintf(stderr, "castor-vmm: control socket %s: %s\n", o.control, strerror(-rc));
		goto out;
	}
	sigint_ev = evsignal_new(base, SIGINT, stop_cb, base);
	sigterm_ev = evsignal_new(base, SIGTERM, stop_cb, base);
	if (!sigint_ev || !sigterm_ev || evsignal_add(sigint_ev, NULL) < 0 ||
	    evsignal_add(sigterm_ev, NULL) < 0)
		goto out;
	if (vm && o.protect) {
		/* a protected VM never emits unheld output, not even before the first epoch */
		rc = nb_queue_set_protected(ha.outq, true, 0);
		if (rc < 0)
			goto out;
	}
	if (vm) {
		rc = hv_vm_start(vm);
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: cannot start the VM: %s\n", strerror(-rc));
			goto out;
		}
	}
	if (vm && o.protect) {
		struct repl_primary *p = NULL;

		o.ro.peer = o.protect;
		o.ro.outq = ha.outq;
		o.ro.log_cb = event_line;
		rc = repl_primary_start(vm, &o.ro, &p, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "castor-vmm: --protect: %s\n", why);
			goto out;
		}
		__atomic_store_n(&ha.primary, p, __ATOMIC_RELEASE);
	}
	if (vm && o.start_paused)
		vmm_control_hold_pause(ctl);
	LOG_INFO("vm %s: control socket %s",
		 vm	     ? hv_vm_name(vm)
		 : o.standby ? "(standby)"
			     : "(replica)",
		 o.control);
	event_base_dispatch(base);
	status = 0;
out:
	vmm_control_free(ctl);
	repl_primary_free(ha.primary); /* before the VM stops: its thread pauses the VM */
	repl_secondary_free(ha.secondary);
	if (!vm)
		vm = ha.failed_over ? ha.failed_over : standby.vm;
	if (vm)
		hv_vm_stop(vm); /* the taps' watches live on the VM's I/O thread */
	for (unsigned i = 0; i < devs.ntaps; i++)
		nb_tap_free(devs.taps[i]);
	hv_vm_free(vm);
	nb_queue_free(ha.outq);
	if (sigint_ev)
		event_free(sigint_ev);
	if (sigterm_ev)
		event_free(sigterm_ev);
	if (base)
		event_base_free(base);
	if (serial_fd >= 0)
		close(serial_fd);
	if (event_fd >= 0)
		close(event_fd);
	return status;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1, CMD_RUN);
	if (argc >= 2 && !strcmp(argv[1], "restore"))
		return cmd_run(argc - 1, argv + 1, CMD_RESTORE);
	if (argc >= 2 && !strcmp(argv[1], "replica"))
		return cmd_run(argc - 1, argv + 1, CMD_REPLICA);
	if (argc >= 2 && !strcmp(argv[1], "standby"))
		return cmd_run(argc - 1, argv + 1, CMD_STANDBY);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 2)
		fprintf(stderr, "castor-vmm: missing command\n");
	else
		fprintf(stderr, "castor-vmm: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
