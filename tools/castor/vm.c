/*
 * castor vm <command>: one request to a castor-vmm control socket, its reply
 * printed for people or, with --json, as one JSON object.
 */
#include "tools/castor/cli.h"
#include "tools/castor/json.h"
#include "proto/pb.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VM_MAX_SNAPSHOTS 64u /* as castor-vmm takes */

struct vm_opts {
	const char *socket;
	bool json;
	bool harvest;
	bool incremental;
	const char *file;
	int timeout_ms;
	char *snapshots[VM_MAX_SNAPSHOTS]; /* restore: absolute when they resolve here */
	unsigned nsnapshots;
	bool paused;
};

struct vm_cmd;

/* Print a successful reply (error == 0); returns an enum cli_exit. */
typedef int (*vm_print_fn)(const struct vm_cmd *cmd, const struct vm_opts *o,
			   const Castor__Response *resp);

struct vm_cmd {
	const char *name;
	const char *summary;
	Castor__Request__BodyCase body;
	bool takes_harvest; /* accepts --harvest */
	vm_print_fn print;
};

static int print_ok(const struct vm_cmd *cmd, const struct vm_opts *o,
		    const Castor__Response *resp);
static int print_status(const struct vm_cmd *cmd, const struct vm_opts *o,
			const Castor__Response *resp);
static int print_dirty(const struct vm_cmd *cmd, const struct vm_opts *o,
		       const Castor__Response *resp);
static int print_snapshot(const struct vm_cmd *cmd, const struct vm_opts *o,
			  const Castor__Response *resp);
static int print_restore(const struct vm_cmd *cmd, const struct vm_opts *o,
			 const Castor__Response *resp);

static const struct vm_cmd vm_cmds[] = {
	{"status", "run state, counters and per-vCPU statistics", CASTOR__REQUEST__BODY_STATUS,
	 false, print_status},
	{"pause", "stop every vCPU and park the I/O thread", CASTOR__REQUEST__BODY_PAUSE, false,
	 print_ok},
	{"resume", "run a paused VM again", CASTOR__REQUEST__BODY_RESUME, false, print_ok},
	{"quit", "stop the VM; castor-vmm exits", CASTOR__REQUEST__BODY_QUIT, false, print_ok},
	{"dirty", "dirty-tracking statistics (--harvest: enable tracking, harvest now)",
	 CASTOR__REQUEST__BODY_DIRTY_STATS, true, print_dirty},
	{"snapshot", "save a snapshot to --file F on the VM's host (--incremental: since the last)",
	 CASTOR__REQUEST__BODY_SNAPSHOT, false, print_snapshot},
	{"restore", "restore --snapshot F [--snapshot INC ...] into a castor-vmm standby, start it",
	 CASTOR__REQUEST__BODY_RESTORE, false, print_restore},
};

#define N_VM_CMDS (sizeof(vm_cmds) / sizeof(vm_cmds[0]))

void cli_vm_usage(FILE *f)
{
	size_t i;

	fputs("usage: castor vm <command> --socket PATH [--json] [--timeout SEC]\n"
	      "\n"
	      "commands:\n",
	      f);
	for (i = 0; i < N_VM_CMDS; i++)
		fprintf(f, "  %-8s %s\n", vm_cmds[i].name, vm_cmds[i].summary);
	fprintf(f,
		"\n"
		"options:\n"
		"  -s, --socket PATH   control socket of the castor-vmm (required)\n"
		"  -j, --json          print the reply as one JSON object\n"
		"  -t, --timeout SEC   wait at most SEC seconds for the reply (default %d)\n"
		"      --harvest       (dirty only) enable dirty tracking and harvest now\n"
		"  -f, --file PATH     (snapshot only) where castor-vmm writes the snapshot\n"
		"      --incremental   (snapshot only) pages since the previous snapshot\n"
		"      --snapshot PATH (restore only) a full snapshot, then its incrementals in\n"
		"                      order (repeat it); files on the standby's host\n"
		"      --paused        (restore only) leave the restored VM paused\n"
		"  -h, --help          this text\n\n",
		PB_CALL_TIMEOUT_MS / 1000);
	cli_vm_cluster_usage(f);
}

static const struct vm_cmd *cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_VM_CMDS; i++)
		if (!strcmp(vm_cmds[i].name, name))
			return &vm_cmds[i];
	return NULL;
}

/*
 * "5", "0.25": seconds, > 0 and small enough for an int of milliseconds.
 * Decimal digits and one '.', nothing else: strtod alone would take "0x1p3"
 * and "1e3".
 */
static int parse_timeout(const char *s, int *ms_out)
{
	size_t digits;
	double sec;
	char *end;

	if (!s || !*s || !(s[0] >= '0' && s[0] <= '9'))
		return -EINVAL;
	digits = strspn(s, "0123456789");
	if (s[digits] == '.')
		digits += 1 + strspn(s + digits + 1, "0123456789");
	if (s[digits])
		return -EINVAL;
	errno = 0;
	sec = strtod(s, &end);
	if (errno || *end || !isfinite(sec) || sec <= 0 || sec > INT_MAX / 1000)
		return -EINVAL;
	*ms_out = (int)ceil(sec * 1000.0);
	return 0;
}

/* ---- output ------------------------------------------------------------------- */

/* A server-supplied string, with control characters shown as '?'. */
static void put_safe(FILE *f, const char *s)
{
	for (; s && *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static void fmt_bytes(char *buf, size_t size, uint64_t v)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v;
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", v);
		return;
	}
	d /= 1024.0;
	while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		d /= 1024.0;
		u++;
	}
	snprintf(buf, size, "%.1f %s", d, units[u]);
}

static int print_ok(const struct vm_cmd *cmd, const struct vm_opts *o, const Castor__Response *resp)
{
	struct cli_json j;

	if (!o->json) {
		puts("ok");
		return CLI_EXIT_OK;
	}
	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_bool(&j, "ok", true);
	cli_json_object_end(&j);
	return cli_json_finish(&j) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int status_json(const Castor__VmStatus *st)
{
	struct cli_json j;
	size_t i;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_str(&j, "name", str_or_empty(st->name));
	cli_json_u64(&j, "vcpus", st->vcpus);
	cli_json_u64(&j, "mem_bytes", st->mem_bytes);
	cli_json_str(&j, "run_state", str_or_empty(st->run_state));
	cli_json_u64(&j, "guest_counter", st->guest_counter);
	cli_json_u64(&j, "exits", st->exits);
	cli_json_u64(&j, "uptime_ns", st->uptime_ns);
	cli_json_u64(&j, "pauses", st->pauses);
	cli_json_u64(&j, "outputs", st->outputs);
	cli_json_array_begin(&j, "vcpu");
	for (i = 0; i < st->n_vcpu; i++) {
		const Castor__VcpuStatus *v = st->vcpu[i];

		cli_json_object_begin(&j, NULL);
		cli_json_u64(&j, "index", v->index);
		cli_json_str(&j, "state", str_or_empty(v->state));
		cli_json_u64(&j, "counter", v->counter);
		cli_json_u64(&j, "out_seq", v->out_seq);
		cli_json_u64(&j, "exits", v->exits);
		cli_json_u64(&j, "io_exits", v->io_exits);
		cli_json_u64(&j, "mmio_exits", v->mmio_exits);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_array_begin(&j, "net");
	for (i = 0; i < st->n_net; i++) {
		const Castor__NetStatus *n = st->net[i];

		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", str_or_empty(n->name));
		cli_json_str(&j, "mac", str_or_empty(n->mac));
		cli_json_str(&j, "backend", str_or_empty(n->backend));
		cli_json_u64(&j, "mmio_base", n->mmio_base);
		cli_json_u64(&j, "tx_frames", n->tx_frames);
		cli_json_u64(&j, "tx_bytes", n->tx_bytes);
		cli_json_u64(&j, "tx_dropped", n->tx_dropped);
		cli_json_u64(&j, "rx_frames", n->rx_frames);
		cli_json_u64(&j, "rx_bytes", n->rx_bytes);
		cli_json_u64(&j, "rx_dropped", n->rx_dropped);
		cli_json_u64(&j, "rx_waits", n->rx_waits);
		cli_json_bool(&j, "backend_gone", n->backend_gone);
		cli_json_u64(&j, "tx_held", n->tx_held);
		cli_json_u64(&j, "tx_queue_full", n->tx_queue_full);
		cli_json_u64(&j, "announces", n->announces);
		cli_json_u64(&j, "tx_malformed", n->tx_malformed);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_array_begin(&j, "disk");
	for (i = 0; i < st->n_disk; i++) {
		const Castor__DiskStatus *d = st->disk[i];

		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "name", str_or_empty(d->name));
		cli_json_str(&j, "path", str_or_empty(d->path));
		cli_json_bool(&j, "read_only", d->read_only);
		cli_json_u64(&j, "mmio_base", d->mmio_base);
		cli_json_u64(&j, "reads", d->reads);
		cli_json_u64(&j, "writes", d->writes);
		cli_json_u64(&j, "flushes", d->flushes);
		cli_json_u64(&j, "discards", d->discards);
		cli_json_u64(&j, "errors", d->errors);
		cli_json_u64(&j, "bytes_read", d->bytes_read);
		cli_json_u64(&j, "bytes_written", d->bytes_written);
		cli_json_u64(&j, "malformed", d->malformed);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	if (st->guest_io) {
		const Castor__TestGuestIo *g = st->guest_io;

		cli_json_object_begin(&j, "guest_io");
		cli_json_bool(&j, "net_up", g->net_up);
		cli_json_bool(&j, "blk_up", g->blk_up);
		cli_json_u64(&j, "udp_answered", g->udp_answered);
		cli_json_u64(&j, "tcp_answered", g->tcp_answered);
		cli_json_u64(&j, "tcp_conns", g->tcp_conns);
		cli_json_u64(&j, "tcp_retransmits", g->tcp_retransmits);
		cli_json_u64(&j, "icmp_replies", g->icmp_replies);
		cli_json_u64(&j, "blk_written", g->blk_written);
		cli_json_u64(&j, "blk_verified", g->blk_verified);
		cli_json_u64(&j, "blk_bad", g->blk_bad);
		cli_json_u64(&j, "blk_io_errors", g->blk_io_errors);
		cli_json_u64(&j, "blk_generation", g->blk_generation);
		cli_json_u64(&j, "blk_next", g->blk_next);
		cli_json_object_end(&j);
	}
	cli_json_object_end(&j);
	return cli_json_finish(&j) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

/* NICs, disks and the test guest's own I/O counters, one line each. */
static void status_devices(const Castor__VmStatus *st)
{
	size_t i;

	for (i = 0; i < st->n_net; i++) {
		const Castor__NetStatus *n = st->net[i];

		put_safe(stdout, str_or_empty(n->name));
		fputs("  ", stdout);
		put_safe(stdout, str_or_empty(n->mac));
		fputs("  ", stdout);
		put_safe(stdout, str_or_empty(n->backend));
		printf("%s  tx %" PRIu64 " frames (%" PRIu64 " dropped)  rx %" PRIu64
		       " frames (%" PRIu64 " dropped)\n",
		       n->backend_gone ? " (GONE)" : "", n->tx_frames, n->tx_dropped, n->rx_frames,
		       n->rx_dropped);
	}
	for (i = 0; i < st->n_disk; i++) {
		const Castor__DiskStatus *d = st->disk[i];

		put_safe(stdout, str_or_empty(d->name));
		fputs("  ", stdout);
		put_safe(stdout, str_or_empty(d->path));
		printf("%s  reads %" PRIu64 "  writes %" PRIu64 "  flushes %" PRIu64
		       "  errors %" PRIu64 "\n",
		       d->read_only ? " (ro)" : "", d->reads, d->writes, d->flushes, d->errors);
	}
	if (st->guest_io && (st->guest_io->net_up || st->guest_io->blk_up)) {
		const Castor__TestGuestIo *g = st->guest_io;

		printf("guest io: udp %" PRIu64 "  tcp %" PRIu64 " (%" PRIu64 " conns, %" PRIu64
		       " retransmits)  ping %" PRIu64 "  disk: pass %" PRIu64 ", %" PRIu64
		       " written, %" PRIu64 " verified, %" PRIu64 " bad, %" PRIu64 " io errors\n",
		       g->udp_answered, g->tcp_answered, g->tcp_conns, g->tcp_retransmits,
		       g->icmp_replies, g->blk_generation, g->blk_written, g->blk_verified,
		       g->blk_bad, g->blk_io_errors);
	}
}

enum { COL_VCPU, COL_STATE, COL_COUNTER, COL_OUT_SEQ, COL_EXITS, COL_IO, COL_MMIO, N_COLS };

#define CELL_MAX 24

/* The vCPU table, columns as wide as their widest cell. */
static int status_table(const Castor__VmStatus *st)
{
	static const char *const head[N_COLS] = {"vcpu",  "state", "counter", "out_seq",
						 "exits", "io",	   "mmio"};
	char(*cells)[N_COLS][CELL_MAX] = NULL;
	size_t width[N_COLS];
	size_t i, c;
	int rc;

	if (st->n_vcpu) {
		cells = calloc(st->n_vcpu, sizeof(*cells));
		if (!cells) {
			cli_err("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out;
		}
	}
	for (c = 0; c < N_COLS; c++)
		width[c] = strlen(head[c]);
	for (i = 0; i < st->n_vcpu; i++) {
		const Castor__VcpuStatus *v = st->vcpu[i];

		snprintf(cells[i][COL_VCPU], CELL_MAX, "%" PRIu32, v->index);
		/* state is a server string: cut to the cell, printed through put_safe() */
		snprintf(cells[i][COL_STATE], CELL_MAX, "%s", str_or_empty(v->state));
		snprintf(cells[i][COL_COUNTER], CELL_MAX, "%" PRIu64, v->counter);
		snprintf(cells[i][COL_OUT_SEQ], CELL_MAX, "%" PRIu64, v->out_seq);
		snprintf(cells[i][COL_EXITS], CELL_MAX, "%" PRIu64, v->exits);
		snprintf(cells[i][COL_IO], CELL_MAX, "%" PRIu64, v->io_exits);
		snprintf(cells[i][COL_MMIO], CELL_MAX, "%" PRIu64, v->mmio_exits);
		for (c = 0; c < N_COLS; c++)
			if (strlen(cells[i][c]) > width[c])
				width[c] = strlen(cells[i][c]);
	}
	for (i = 0; i <= st->n_vcpu; i++) { /* row 0 is the header */
		for (c = 0; c < N_COLS; c++) {
			const char *cell = i ? cells[i - 1][c] : head[c];

			put_safe(stdout, cell);
			if (c + 1 < N_COLS)
				printf("%*s", (int)(width[c] - strlen(cell) + 2), "");
		}
		putchar('\n');
	}
	rc = CLI_EXIT_OK;
out:
	free(cells);
	return rc;
}

static int print_status(const struct vm_cmd *cmd, const struct vm_opts *o,
			const Castor__Response *resp)
{
	const Castor__VmStatus *st = resp->status;
	char mem[32];

	if (resp->body_case != CASTOR__RESPONSE__BODY_STATUS || !st) {
		cli_err("unexpected reply from %s: no status in it", o->socket);
		return CLI_EXIT_FAIL;
	}
	if (o->json)
		return status_json(st);

	fmt_bytes(mem, sizeof(mem), st->mem_bytes);
	fputs("vm: ", stdout);
	put_safe(stdout, str_or_empty(st->name));
	fputs("  state: ", stdout);
	put_safe(stdout, str_or_empty(st->run_state));
	printf("  vcpus: %" PRIu32 "  memory: %s  uptime: %.1f s\n", st->vcpus, mem,
	       (double)st->uptime_ns / 1e9);
	printf("guest counter: %" PRIu64 "  outputs: %" PRIu64 "  exits: %" PRIu64
	       "  pauses: %" PRIu64 "\n",
	       st->guest_counter, st->outputs, st->exits, st->pauses);
	status_devices(st);
	return status_table(st);
}

static int print_dirty(const struct vm_cmd *cmd, const struct vm_opts *o,
		       const Castor__Response *resp)
{
	const Castor__DirtyStats *d = resp->dirty_stats;
	struct cli_json j;
	char ram[32];

	if (resp->body_case != CASTOR__RESPONSE__BODY_DIRTY_STATS || !d) {
		cli_err("unexpected reply from %s: no dirty statistics in it", o->socket);
		return CLI_EXIT_FAIL;
	}
	if (o->json) {
		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_bool(&j, "tracking", d->tracking);
		cli_json_u64(&j, "harvests", d->harvests);
		cli_json_u64(&j, "last_dirty_pages", d->last_dirty_pages);
		cli_json_u64(&j, "last_harvest_ns", d->last_harvest_ns);
		cli_json_u64(&j, "vmm_dirty_pages", d->vmm_dirty_pages);
		cli_json_u64(&j, "ram_pages", d->ram_pages);
		cli_json_object_end(&j);
		return cli_json_finish(&j) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	}
	fmt_bytes(ram, sizeof(ram), d->ram_pages * 4096);
	printf("dirty tracking: %s  harvests: %" PRIu64 "  guest RAM: %" PRIu64 " pages (%s)\n",
	       d->tracking ? "on" : "off", d->harvests, d->ram_pages, ram);
	if (d->harvests)
		printf("last harvest: %" PRIu64 " dirty pages (%" PRIu64
		       " from VMM writes) in %.3f ms\n",
		       d->last_dirty_pages, d->vmm_dirty_pages, (double)d->last_harvest_ns / 1e6);
	else
		puts("last harvest: none");
	return CLI_EXIT_OK;
}

/* ---- the exchange ------------------------------------------------------------- */

static const char *errstr(int err)
{
	return strerror(err < 0 ? -err : err);
}

/* Send one request and print its reply; returns an enum cli_exit. */
static int print_snapshot(const struct vm_cmd *cmd, const struct vm_opts *o,
			  const Castor__Response *resp)
{
	const Castor__SnapshotResult *r = resp->snapshot;

	if (resp->body_case != CASTOR__RESPONSE__BODY_SNAPSHOT || !r) {
		cli_err("unexpected reply from %s: no snapshot result in it", o->socket);
		return CLI_EXIT_FAIL;
	}
	if (o->json) {
		struct cli_json j;
		char id[17], parent[17];

		snprintf(id, sizeof(id), "%016" PRIx64, r->stream_id);
		snprintf(parent, sizeof(parent), "%016" PRIx64, r->parent_id);
		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "path", str_or_empty(r->path));
		cli_json_str(&j, "stream_id", id);
		cli_json_str(&j, "parent_id", parent);
		cli_json_u64(&j, "pause_ns", r->pause_ns);
		cli_json_u64(&j, "precopy_pages", r->precopy_pages);
		cli_json_u64(&j, "staged_pages", r->staged_pages);
		cli_json_u64(&j, "bytes", r->bytes);
		cli_json_u64(&j, "total_ns", r->total_ns);
		cli_json_object_end(&j);
		return cli_json_finish(&j) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	}
	fputs("snapshot ", stdout);
	put_safe(stdout, str_or_empty(r->path));
	printf(": %s %016" PRIx64 ", %" PRIu64 " bytes, %" PRIu64 " + %" PRIu64
	       " pages, paused %.3f ms, %.1f ms in all\n",
	       r->parent_id ? "incremental" : "full", r->stream_id, r->bytes, r->precopy_pages,
	       r->staged_pages, (double)r->pause_ns / 1e6, (double)r->total_ns / 1e6);
	return CLI_EXIT_OK;
}

static int print_restore(const struct vm_cmd *cmd, const struct vm_opts *o,
			 const Castor__Response *resp)
{
	const Castor__RestoreResult *r = resp->restore;

	if (resp->body_case != CASTOR__RESPONSE__BODY_RESTORE || !r) {
		cli_err("unexpected reply from %s: no restore result in it", o->socket);
		return CLI_EXIT_FAIL;
	}
	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_u64(&j, "snapshots", r->snapshots);
		cli_json_u64(&j, "bytes", r->bytes);
		cli_json_bool(&j, "lazy", r->lazy);
		cli_json_bool(&j, "paused", o->paused);
		cli_json_u64(&j, "restore_ns", r->restore_ns);
		cli_json_object_end(&j);
		return cli_json_finish(&j) < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
	}
	printf("restored %u snapshot%s (%.1f MiB)%s: %s after %.3f ms\n", r->snapshots,
	       r->snapshots == 1 ? "" : "s", (double)r->bytes / (1 << 20),
	       r->lazy ? ", RAM loading on first touch" : "", o->paused ? "paused" : "running",
	       (double)r->restore_ns / 1e6);
	return CLI_EXIT_OK;
}

static int vm_run(const struct vm_cmd *cmd, const struct vm_opts *o)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__StatusRequest status = CASTOR__STATUS_REQUEST__INIT;
	Castor__PauseRequest pause = CASTOR__PAUSE_REQUEST__INIT;
	Castor__ResumeRequest resume = CASTOR__RESUME_REQUEST__INIT;
	Castor__QuitRequest quit = CASTOR__QUIT_REQUEST__INIT;
	Castor__DirtyStatsRequest dirty = CASTOR__DIRTY_STATS_REQUEST__INIT;
	Castor__SnapshotRequest snap = CASTOR__SNAPSHOT_REQUEST__INIT;
	Castor__RestoreRequest restore = CASTOR__RESTORE_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	Castor__Response *resp;
	int fd = -1;
	int rc, ret;

	req.id = (uint64_t)getpid();
	req.body_case = cmd->body;
	switch (cmd->body) {
	case CASTOR__REQUEST__BODY_STATUS:
		req.status = &status;
		break;
	case CASTOR__REQUEST__BODY_PAUSE:
		req.pause = &pause;
		break;
	case CASTOR__REQUEST__BODY_RESUME:
		req.resume = &resume;
		break;
	case CASTOR__REQUEST__BODY_QUIT:
		req.quit = &quit;
		break;
	case CASTOR__REQUEST__BODY_DIRTY_STATS:
		dirty.harvest = o->harvest;
		req.dirty_stats = &dirty;
		break;
	case CASTOR__REQUEST__BODY_SNAPSHOT:
		snap.path = (char *)o->file;
		snap.incremental = o->incremental;
		req.snapshot = &snap;
		break;
	case CASTOR__REQUEST__BODY_RESTORE:
		restore.n_snapshot = o->nsnapshots;
		restore.snapshot = (char **)o->snapshots;
		restore.paused = o->paused;
		req.restore = &restore;
		break;
	default:
		cli_err("vm %s: no request body for this command", cmd->name);
		ret = CLI_EXIT_FAIL;
		goto out;
	}

	rc = pb_unix_connect(o->socket, &fd);
	if (rc < 0) {
		cli_err("cannot connect to %s: %s", o->socket, errstr(rc));
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	rc = pb_frame_send(fd, &req.base);
	if (rc < 0) {
		cli_err("cannot send to %s: %s", o->socket, errstr(rc));
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	rc = pb_frame_recv(fd, &castor__response__descriptor, &msg, o->timeout_ms);
	if (rc < 0) {
		cli_err("no valid reply from %s: %s", o->socket, errstr(rc));
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	resp = (Castor__Response *)msg;
	/* id 0 with an error: the server could not read our request at all */
	if (resp->id != req.id && !(resp->id == 0 && resp->error)) {
		cli_err("reply from %s answers request %" PRIu64 ", not %" PRIu64, o->socket,
			resp->id, req.id);
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	if (resp->error) {
		if (resp->message && *resp->message) {
			fputs("castor: ", stderr);
			put_safe(stderr, resp->message);
			fprintf(stderr, " (%s)\n", errstr(resp->error));
		} else {
			cli_err("vm %s failed (%s)", cmd->name, errstr(resp->error));
		}
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	ret = cmd->print(cmd, o, resp);
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* ---- argument parsing --------------------------------------------------------- */

/*
 * castor-vmm has its own working directory: a relative path is made absolute
 * against ours before it is sent. An existing file is resolved fully
 * (realpath); one still to be written keeps its name under our directory.
 */
static int abs_path(const char *in, char *out, size_t out_len)
{
	char buf[PATH_MAX];

	if (realpath(in, buf) && strlen(buf) < out_len) {
		memcpy(out, buf, strlen(buf) + 1);
		return 0;
	}
	if (in[0] == '/') {
		if ((size_t)snprintf(out, out_len, "%s", in) >= out_len)
			return -ENAMETOOLONG;
		return 0;
	}
	if (!getcwd(buf, sizeof(buf)))
		return -errno;
	if ((size_t)snprintf(out, out_len, "%s/%s", buf, in) >= out_len)
		return -ENAMETOOLONG;
	return 0;
}

enum { OPT_HARVEST = 0x100, OPT_INCREMENTAL, OPT_SNAPSHOT, OPT_PAUSED };

/* After an option error the full usage would bury the message: point to it. */
static int usage_error(void)
{
	fputs("castor: see 'castor vm --help'\n", stderr);
	return CLI_EXIT_USAGE;
}

/* clang-format off */
static const struct option vm_long_opts[] = {
	{"socket", required_argument, NULL, 's'},
	{"json", no_argument, NULL, 'j'},
	{"timeout", required_argument, NULL, 't'},
	{"harvest", no_argument, NULL, OPT_HARVEST},
	{"file", required_argument, NULL, 'f'},
	{"incremental", no_argument, NULL, OPT_INCREMENTAL},
	{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
	{"paused", no_argument, NULL, OPT_PAUSED},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};
/* clang-format on */

int cli_vm_main(int argc, char **argv)
{
	static char resolved[VM_MAX_SNAPSHOTS][PATH_MAX], file[PATH_MAX];
	struct vm_opts o = {.timeout_ms = PB_CALL_TIMEOUT_MS};
	const struct vm_cmd *cmd;
	int c, rc;

	if (argc < 2) {
		cli_err("vm: missing command");
		cli_vm_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		cli_vm_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (cli_vm_is_cluster_cmd(argv[1]))
		return cli_vm_cluster_main(argc, argv);
	cmd = cmd_find(argv[1]);
	if (!cmd) {
		if (argv[1][0] == '-')
			cli_err("vm: expected a command before option '%s'", argv[1]);
		else
			cli_err("vm: unknown command '%s'", argv[1]);
		cli_vm_usage(stderr);
		return CLI_EXIT_USAGE;
	}

	/* getopt sees the command as its argv[0]; we print our own messages */
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:jt:f:h", vm_long_opts, NULL)) != -1) {
		switch (c) {
		case 'f':
		case OPT_INCREMENTAL:
			if (cmd->body != CASTOR__REQUEST__BODY_SNAPSHOT) {
				cli_err("vm %s: %s applies to 'vm snapshot' only", cmd->name,
					c == 'f' ? "--file" : "--incremental");
				return usage_error();
			}
			if (c == 'f' && *optarg &&
			    (rc = abs_path(optarg, file, sizeof(file))) < 0) {
				cli_err("vm snapshot: --file %s: cannot make it absolute: %s",
					optarg, strerror(-rc));
				return CLI_EXIT_FAIL;
			}
			if (c == 'f')
				o.file = *optarg ? file : optarg;
			else
				o.incremental = true;
			break;
		case OPT_SNAPSHOT:
		case OPT_PAUSED:
			if (cmd->body != CASTOR__REQUEST__BODY_RESTORE) {
				cli_err("vm %s: %s applies to 'vm restore' only", cmd->name,
					c == OPT_PAUSED ? "--paused" : "--snapshot");
				return usage_error();
			}
			if (c == OPT_PAUSED) {
				o.paused = true;
				break;
			}
			if (o.nsnapshots == VM_MAX_SNAPSHOTS) {
				cli_err("vm restore: at most %u snapshots in a chain",
					VM_MAX_SNAPSHOTS);
				return usage_error();
			}
			if (!*optarg) {
				cli_err("vm restore: --snapshot wants a path");
				return usage_error();
			}
			rc = abs_path(optarg, resolved[o.nsnapshots], PATH_MAX);
			if (rc < 0) {
				cli_err("vm restore: --snapshot %s: cannot make it absolute: %s",
					optarg, strerror(-rc));
				return CLI_EXIT_FAIL;
			}
			o.snapshots[o.nsnapshots] = resolved[o.nsnapshots];
			o.nsnapshots++;
			break;
		case 's':
			o.socket = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			if (parse_timeout(optarg, &o.timeout_ms) < 0) {
				cli_err("vm %s: --timeout wants a positive number of seconds, not "
					"'%s'",
					cmd->name, optarg);
				return usage_error();
			}
			break;
		case OPT_HARVEST:
			if (!cmd->takes_harvest) {
				cli_err("vm %s: --harvest applies to 'vm dirty' only", cmd->name);
				return usage_error();
			}
			o.harvest = true;
			break;
		case 'h':
			cli_vm_usage(stdout);
			return CLI_EXIT_OK;
		default: { /* '?' or ':' */
			char who[32];

			snprintf(who, sizeof(who), "vm %s", cmd->name);
			cli_opt_error(who, c, argv);
			return usage_error();
		}
		}
	}
	if (optind < argc) {
		cli_err("vm %s: unexpected argument '%s'", cmd->name, argv[optind]);
		return usage_error();
	}
	if (!o.socket) {
		cli_err("vm %s: missing --socket PATH", cmd->name);
		return usage_error();
	}
	if (cmd->body == CASTOR__REQUEST__BODY_SNAPSHOT && (!o.file || !*o.file)) {
		cli_err("vm snapshot: missing --file PATH");
		return usage_error();
	}
	if (cmd->body == CASTOR__REQUEST__BODY_RESTORE && !o.nsnapshots) {
		cli_err("vm restore: missing --snapshot PATH");
		return usage_error();
	}
	if (cmd->body == CASTOR__REQUEST__BODY_SNAPSHOT && o.timeout_ms == PB_CALL_TIMEOUT_MS)
		o.timeout_ms = 600 * 1000; /* writing a large VM's RAM takes a while */
	if (!*o.socket) {
		cli_err("vm %s: --socket wants a path", cmd->name);
		return usage_error();
	}
	return vm_run(cmd, &o);
}
