/*
 * castor stream <command>: look at a file in the Castor stream format
 * (docs/stream-format.md) with the independent verifier of stream_verify.h.
 *
 *   castor stream verify FILE [--json] [--quiet]   every rule of the spec; exit 0 valid, 1 not
 *   castor stream dump FILE                        one line per record, then the verdict
 *
 * FILE "-" is standard input, so a stream can be checked as it comes off a pipe.
 * Revision 1 (files, snapshots, migration) and revision 2 (replication epochs as
 * they are on the wire, §9) are both understood.
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/castor/json.h"
#include "tools/castor/stream_verify.h"
#include "tools/castor/stream_verify_session.h"

/* The sizes §2.3 and §2.5 give; dump reads these structures out of the records. */
_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs: §2.3 says 144 bytes");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs: §2.3 says 312 bytes");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "kvm_xsave: §2.3 says 4096 bytes");
_Static_assert(sizeof(struct kvm_xcrs) == 392, "kvm_xcrs: §2.3 says 392 bytes");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "kvm_debugregs: §2.3 says 128 bytes");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "kvm_lapic_state: §2.3 says 1024 bytes");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events: §2.3 says 64 bytes");
_Static_assert(sizeof(struct kvm_mp_state) == 4, "kvm_mp_state: §2.3 says 4 bytes");
_Static_assert(8 + 144 + 312 + 4096 + 392 + 128 + 1024 + 64 + 4 + 4 == SV_VCPU_LEN,
	       "the VCPU body adds up to 6176 bytes");
_Static_assert(sizeof(struct kvm_irqchip) == SV_IRQCHIP_ONE, "kvm_irqchip: §2.5 says 520 bytes");
_Static_assert(sizeof(struct kvm_pit_state2) == SV_PIT_LEN, "kvm_pit_state2: §2.5 says 112");
_Static_assert(sizeof(struct kvm_clock_data) == SV_CLOCK_LEN, "kvm_clock_data: §2.5 says 48");

#define EFER_LMA (1ull << 10)
#define CR0_PE	 1ull

struct stream_opts {
	const char *file;
	bool json;
	bool quiet;
};

/* Run a command on o->file; returns an enum cli_exit. */
typedef int (*stream_run_fn)(const struct stream_opts *o);

struct stream_cmd {
	const char *name;
	const char *summary;
	bool takes_output_opts; /* accepts --json and --quiet */
	stream_run_fn run;
};

static int stream_verify_cmd(const struct stream_opts *o);
static int stream_dump_cmd(const struct stream_opts *o);

static const struct stream_cmd stream_cmds[] = {
	{"verify", "check a stream against every rule of docs/stream-format.md", true,
	 stream_verify_cmd},
	{"dump", "one line per record: offset, type, length and what it holds", false,
	 stream_dump_cmd},
};

#define N_STREAM_CMDS (sizeof(stream_cmds) / sizeof(stream_cmds[0]))

void cli_stream_usage(FILE *f)
{
	size_t i;

	fputs("usage: castor stream <command> FILE [options]\n"
	      "\n"
	      "commands:\n",
	      f);
	for (i = 0; i < N_STREAM_CMDS; i++)
		fprintf(f, "  %-8s %s\n", stream_cmds[i].name, stream_cmds[i].summary);
	fputs("\n"
	      "FILE is a stream in the Castor stream format: revision 1 (a snapshot) or 2 (a\n"
	      "replication epoch as sent on the wire); '-' reads standard input. Both\n"
	      "commands exit 0 when the stream is valid and 1 when it is not; the\n"
	      "first broken rule is printed as 'castor: FILE: offset N: record TYPE(name): ...'.\n"
	      "\n"
	      "options (verify only):\n"
	      "  -j, --json    print the verdict as one JSON object, valid or not\n"
	      "  -q, --quiet   no summary and no error line: the exit status is the answer\n"
	      "  -h, --help    this text\n",
	      f);
}

static const struct stream_cmd *cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_STREAM_CMDS; i++)
		if (!strcmp(stream_cmds[i].name, name))
			return &stream_cmds[i];
	return NULL;
}

/* ---- input -------------------------------------------------------------------- */

static ssize_t fd_read(void *ctx, uint8_t *buf, size_t len)
{
	int fd = *(int *)ctx;
	ssize_t r;

	do
		r = read(fd, buf, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Open FILE ("-": standard input); -1 after a message. */
static int open_input(const char *file)
{
	int fd;

	if (!strcmp(file, "-"))
		return STDIN_FILENO;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		cli_err("cannot open %s: %s", file, strerror(errno));
	return fd;
}

static void close_input(int fd)
{
	if (fd > STDIN_FILENO)
		close(fd);
}

/* ---- output ------------------------------------------------------------------- */

/* An id from the stream, with control characters shown as '?'. */
static void put_safe(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static const char *kind_str(uint32_t kind)
{
	return kind == SV_KIND_FULL ? "full" : kind == SV_KIND_INCREMENTAL ? "incremental" : "?";
}

/* "0x0002(PAGES)" */
static void fmt_type(char *buf, size_t size, uint32_t type)
{
	const char *name = stream_verify_type_name(type);

	if (type & SV_REC_F_OPTIONAL && !strcmp(name, "unknown"))
		name = "unknown, optional";
	snprintf(buf, size, "0x%04" PRIx32 "(%s)", type, name);
}

static void fmt_bytes(char *buf, size_t size, uint64_t v)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v / 1024.0;
	size_t u = 0;

	if (v < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", v);
		return;
	}
	while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		d /= 1024.0;
		u++;
	}
	snprintf(buf, size, "%.1f %s", d, units[u]);
}

/* The first broken rule, or why the file could not be read to its end. */
static void print_error(const char *file, const struct stream_verify_result *res)
{
	char type[48];

	if (!res->has_type) {
		cli_err("%s: offset %" PRIu64 ": %s", file, res->offset, res->error);
		return;
	}
	fmt_type(type, sizeof(type), res->type);
	cli_err("%s: offset %" PRIu64 ": record %s: %s", file, res->offset, type, res->error);
}

/* 0, or -EIO when stdout failed. */
static int verify_json(const struct stream_verify_result *res)
{
	struct cli_json j;
	size_t i;

	cli_json_init(&j, stdout);
	cli_json_object_begin(&j, NULL);
	cli_json_bool(&j, "valid", res->valid);
	cli_json_str(&j, "error", res->valid ? NULL : res->error);
	if (res->valid)
		cli_json_str(&j, "offset", NULL);
	else
		cli_json_u64(&j, "offset", res->offset);
	cli_json_u64(&j, "records", res->records);
	cli_json_u64(&j, "pages", res->pages);
	if (res->has_header) {
		cli_json_u64(&j, "kind", res->kind);
		cli_json_u64(&j, "ncpus", res->ncpus);
		cli_json_u64(&j, "mem_bytes", res->mem_bytes);
		cli_json_u64(&j, "stream_id", res->stream_id);
		cli_json_u64(&j, "parent_id", res->parent_id);
	} else {
		cli_json_str(&j, "kind", NULL);
		cli_json_str(&j, "ncpus", NULL);
		cli_json_str(&j, "mem_bytes", NULL);
		cli_json_str(&j, "stream_id", NULL);
		cli_json_str(&j, "parent_id", NULL);
	}
	cli_json_array_begin(&j, "devices");
	for (i = 0; i < res->n_devices; i++) {
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "id", res->devices[i].id);
		cli_json_str(&j, "kind", res->devices[i].kind);
		cli_json_object_end(&j);
	}
	cli_json_array_end(&j);
	cli_json_object_end(&j);
	return cli_json_finish(&j) < 0 ? -EIO : 0;
}

static void verify_summary(const char *file, const struct stream_verify_result *res)
{
	char mem[32];

	fmt_bytes(mem, sizeof(mem), res->mem_bytes);
	printf("%s: valid, revision %" PRIu32 " %s snapshot, stream_id 0x%016" PRIx64, file,
	       res->version, kind_str(res->kind), res->stream_id);
	if (res->kind == SV_KIND_INCREMENTAL)
		printf(", parent_id 0x%016" PRIx64, res->parent_id);
	printf("\n  ncpus %" PRIu32 ", mem_bytes %" PRIu64 " (%s), page entries %" PRIu64
	       " (RAW %" PRIu64 ", ZERO %" PRIu64,
	       res->ncpus, res->mem_bytes, mem, res->pages, res->enc_pages[SV_ENC_RAW],
	       res->enc_pages[SV_ENC_ZERO]);
	if (res->version >= 2)
		printf(", XOR %" PRIu64 ", PATCH %" PRIu64 "; in PAGES_ZSTD records %" PRIu64,
		       res->enc_pages[SV_ENC_XOR], res->enc_pages[SV_ENC_PATCH], res->zstd_records);
	printf("), devices %zu, records %" PRIu64 "\n", res->n_devices, res->records);
}

/* The input with its first bytes read ahead, to tell a session capture from a stream. */
struct peek {
	int fd;
	uint8_t head[8];
	size_t len, pos;
};

static ssize_t peek_read(void *ctx, uint8_t *buf, size_t len)
{
	struct peek *p = ctx;

	if (p->pos < p->len) {
		size_t n = len < p->len - p->pos ? len : p->len - p->pos;

		memcpy(buf, p->head + p->pos, n);
		p->pos += n;
		return (ssize_t)n;
	}
	return fd_read(&p->fd, buf, len);
}

static int peek_head(struct peek *p)
{
	while (p->len < sizeof(p->head)) {
		ssize_t n = fd_read(&p->fd, p->head + p->len, sizeof(p->head) - p->len);

		if (n < 0)
			return (int)n;
		if (!n)
			break;
		p->len += (size_t)n;
	}
	return 0;
}

static bool is_session_capture(const struct peek *p)
{
	return p->len == 8 && !memcmp(p->head, "CSTRHELO", 8);
}

/* A captured replication connection (stream_verify_session.c). */
static int session_verify_cmd(const struct stream_opts *o, struct peek *p)
{
	struct stream_verify_session s;
	int rc = stream_verify_session(peek_read, p, &s);

	if (rc != 0 && rc != -EBADMSG) {
		cli_err("%s: cannot read it to its end: %s", o->file, strerror(-rc));
		return CLI_EXIT_FAIL;
	}
	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_bool(&j, "valid", s.valid);
		cli_json_str(&j, "error", s.valid ? NULL : s.error);
		cli_json_str(&j, "kind", "session");
		cli_json_u64(&j, "offset", s.offset);
		cli_json_u64(&j, "session_version", s.version);
		cli_json_u64(&j, "flags", s.flags);
		cli_json_u64(&j, "mem_bytes", s.mem_bytes);
		cli_json_u64(&j, "ncpus", s.ncpus);
		cli_json_bool(&j, "sealed", s.sealed);
		cli_json_u64(&j, "sealed_records", s.records);
		cli_json_u64(&j, "epochs", s.epochs);
		cli_json_u64(&j, "pages", s.pages);
		cli_json_u64(&j, "pings", s.pings);
		cli_json_bool(&j, "bye", s.bye);
		cli_json_bool(&j, "migration", s.migration);
		cli_json_bool(&j, "switched", s.switched);
		cli_json_u64(&j, "disk_frames", s.disk_frames);
		cli_json_u64(&j, "disk_records", s.disk_records);
		cli_json_u64(&j, "disks", (uint64_t)__builtin_popcount(s.disks));
		cli_json_bool(&j, "postcopy", s.postcopy);
		cli_json_bool(&j, "resume", s.resume);
		cli_json_u64(&j, "postcopy_named", s.pc_named);
		cli_json_u64(&j, "postcopy_pages", s.pc_pages);
		cli_json_u64(&j, "postcopy_zero", s.pc_zero);
		cli_json_bool(&j, "postcopy_end", s.pc_end);
		cli_json_object_end(&j);
		if (cli_json_finish(&j) < 0)
			return CLI_EXIT_FAIL;
	}
	if (rc) {
		if (!o->quiet)
			cli_err("%s: offset %" PRIu64 ": %s", o->file, s.offset, s.error);
		return CLI_EXIT_FAIL;
	}
	if (!o->quiet && !o->json && (s.postcopy || s.resume))
		printf("%s: postcopy%s: %" PRIu64 " pages named at the switch, %" PRIu64
		       " PAGEs (%" PRIu64 " zero)%s\n",
		       o->file,
		       s.resume ? " resumed (RESUME: the names are the destination's)" : "",
		       s.pc_named, s.pc_pages, s.pc_zero,
		       s.pc_end ? ", then END" : ", the capture ends before END");
	if (!o->quiet && !o->json && s.disk_frames)
		printf("%s: %" PRIu64 " DISK frames, %" PRIu64 " disk records, %d disk(s) sealed\n",
		       o->file, s.disk_frames, s.disk_records, __builtin_popcount(s.disks));
	if (!o->quiet && !o->json)
		printf("%s: valid replication session capture, session layer %u%s\n"
		       "  %" PRIu64 " MiB of RAM, %u vCPUs; %" PRIu64 " epochs (the first full, "
		       "the rest incremental, chained), %" PRIu64 " page entries, %" PRIu64
		       " heartbeats%s%s\n",
		       o->file, s.version,
		       s.sealed ? ", keyed (sealed records read, tags not checked: that takes "
				  "the key)"
				: ", no key",
		       s.mem_bytes >> 20, s.ncpus, s.epochs, s.pages, s.pings,
		       s.bye ? ", then BYE" : "",
		       s.switched    ? ", then SWITCH (a live migration handed over)"
		       : s.migration ? " (a live migration)"
				     : "");
	return CLI_EXIT_OK;
}

static int stream_verify_cmd(const struct stream_opts *o)
{
	struct stream_verify_result res = {0};
	struct peek p = {0};
	int fd, rc, ret;

	fd = open_input(o->file);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	p.fd = fd;
	rc = peek_head(&p);
	if (!rc && is_session_capture(&p)) {
		ret = session_verify_cmd(o, &p);
		close_input(fd);
		return ret;
	}
	rc = rc ? rc : stream_verify_read(peek_read, &p, NULL, NULL, &res);
	close_input(fd);
	if (rc != 0 && rc != -EBADMSG) {
		/* no verdict: the file could not be read to its end */
		print_error(o->file, &res);
		ret = CLI_EXIT_FAIL;
		goto out;
	}
	ret = rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	if (o->json && verify_json(&res) < 0)
		ret = CLI_EXIT_FAIL;
	if (o->quiet)
		goto out;
	if (rc == 0 && !o->json)
		verify_summary(o->file, &res);
	else if (rc != 0)
		print_error(o->file, &res);
out:
	stream_verify_result_dispose(&res);
	return ret;
}

/* ---- dump --------------------------------------------------------------------- */

/*
 * The verifier has checked each record before it gets here, so the fixed layouts
 * hold. Fields are copied out with memcpy: castor runs on x86-64, little-endian
 * like the format.
 */

static void dump_header(const struct stream_verify_record *rec)
{
	const uint8_t *b = rec->body;
	uint64_t mem, sid, parent, created;
	uint32_t ver, kind, ncpus, pgsz;
	char m[32];

	memcpy(&ver, b + 8, 4);
	memcpy(&kind, b + 12, 4);
	memcpy(&ncpus, b + 16, 4);
	memcpy(&pgsz, b + 20, 4);
	memcpy(&mem, b + 24, 8);
	memcpy(&sid, b + 32, 8);
	memcpy(&parent, b + 40, 8);
	memcpy(&created, b + 48, 8);
	fmt_bytes(m, sizeof(m), mem);
	printf("revision %" PRIu32 ", kind %" PRIu32 " (%s), ncpus %" PRIu32 ", pgsz %" PRIu32
	       ", mem_bytes %" PRIu64 " (%s), stream_id 0x%016" PRIx64 ", parent_id 0x%016" PRIx64
	       ", created_ns %" PRIu64,
	       ver, kind, kind_str(kind), ncpus, pgsz, mem, m, sid, parent, created);
}

static void dump_pages(const struct stream_verify_record *rec)
{
	uint32_t count;
	unsigned e;

	memcpy(&count, rec->body, 4);
	printf("count %" PRIu32 ":", count);
	for (e = 0; e < SV_N_ENCODINGS; e++)
		if (rec->page_enc[e])
			printf(" %s %" PRIu32, stream_verify_encoding_name(e), rec->page_enc[e]);
	if (rec->page_enc[SV_ENC_PATCH])
		printf(" (%" PRIu32 " words)", rec->patch_words);
	if (rec->type == SV_REC_PAGES_ZSTD)
		printf(", raw_len %" PRIu64 " in a zstd frame of %" PRIu32 " bytes", rec->raw_len,
		       rec->length - 16 - 8 * count);
}

static void dump_vcpu(const struct stream_verify_record *rec)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t index;
	const char *mode;

	memcpy(&index, rec->body, 4);
	memcpy(&regs, rec->body + SV_VCPU_REGS_OFF, sizeof(regs));
	memcpy(&sregs, rec->body + SV_VCPU_SREGS_OFF, sizeof(sregs));
	if (sregs.efer & EFER_LMA)
		mode = "long mode";
	else if (sregs.cr0 & CR0_PE)
		mode = "protected mode";
	else
		mode = "real mode";
	/* KVM's CPL is the stack segment's DPL */
	printf("vcpu %" PRIu32 ", rip 0x%llx, cpl %u, %s", index, (unsigned long long)regs.rip,
	       sregs.ss.dpl, mode);
}

static void dump_record_cb(void *ctx, const struct stream_verify_record *rec)
{
	const uint8_t *b = rec->body;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	uint64_t records, pages;
	uint32_t u32a, u32b;
	char type[48];

	fmt_type(type, sizeof(type), rec->type);
	printf("%12" PRIu64 "  %-22s %9" PRIu32 "  ", rec->offset, type, rec->length);
	switch (rec->type) {
	case SV_REC_HEADER:
		dump_header(rec);
		break;
	case SV_REC_PAGES:
	case SV_REC_PAGES_ZSTD:
		dump_pages(rec);
		break;
	case SV_REC_VCPU:
		dump_vcpu(rec);
		break;
	case SV_REC_VCPU_MSRS:
		memcpy(&u32a, b, 4);
		memcpy(&u32b, b + 4, 4);
		printf("vcpu %" PRIu32 ", %" PRIu32 " MSRs", u32a, u32b);
		break;
	case SV_REC_IRQCHIP:
		fputs("chip_id 0 PIC master, 1 PIC slave, 2 IOAPIC", stdout);
		break;
	case SV_REC_PIT:
		memcpy(&pit, b, sizeof(pit));
		printf("channel 0: count %" PRIu32 ", mode %u, flags 0x%" PRIx32,
		       pit.channels[0].count, pit.channels[0].mode, pit.flags);
		break;
	case SV_REC_CLOCK:
		memcpy(&clock, b, sizeof(clock));
		printf("kvmclock %llu ns, flags 0x%" PRIx32, (unsigned long long)clock.clock,
		       clock.flags);
		break;
	case SV_REC_DEVICE:
		fputs("id ", stdout);
		put_safe(stdout, rec->device->id);
		printf(", kind %s", rec->device->kind);
		break;
	case SV_REC_END:
		memcpy(&records, b, 8);
		memcpy(&u32a, b + 8, 4);
		memcpy(&pages, b + 16, 8);
		printf("records %" PRIu64 ", checksum 0x%08" PRIx32 ", pages %" PRIu64, records,
		       u32a, pages);
		break;
	default:
		fputs("skipped", stdout);
		break;
	}
	putchar('\n');
}

static int stream_dump_cmd(const struct stream_opts *o)
{
	struct stream_verify_result res = {0};
	int fd, rc;

	fd = open_input(o->file);
	if (fd < 0)
		return CLI_EXIT_FAIL;
	rc = stream_verify_read(fd_read, &fd, dump_record_cb, NULL, &res);
	close_input(fd);
	fflush(stdout); /* the records before the error line */
	if (rc < 0)
		print_error(o->file, &res);
	stream_verify_result_dispose(&res);
	return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* ---- argument parsing --------------------------------------------------------- */

static int usage_error(void)
{
	fputs("castor: see 'castor stream --help'\n", stderr);
	return CLI_EXIT_USAGE;
}

/* clang-format off */
static const struct option stream_long_opts[] = {
	{"json", no_argument, NULL, 'j'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};
/* clang-format on */

int cli_stream_main(int argc, char **argv)
{
	struct stream_opts o = {0};
	const struct stream_cmd *cmd;
	int c;

	if (argc < 2) {
		cli_err("stream: missing command");
		cli_stream_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		cli_stream_usage(stdout);
		return CLI_EXIT_OK;
	}
	cmd = cmd_find(argv[1]);
	if (!cmd) {
		if (argv[1][0] == '-')
			cli_err("stream: expected a command before option '%s'", argv[1]);
		else
			cli_err("stream: unknown command '%s'", argv[1]);
		cli_stream_usage(stderr);
		return CLI_EXIT_USAGE;
	}

	/* getopt sees the command as its argv[0]; we print our own messages */
	argc--;
	argv++;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":jqh", stream_long_opts, NULL)) != -1) {
		switch (c) {
		case 'j':
		case 'q':
			if (!cmd->takes_output_opts) {
				cli_err("stream %s: %s applies to 'stream verify' only", cmd->name,
					c == 'j' ? "--json" : "--quiet");
				return usage_error();
			}
			if (c == 'j')
				o.json = true;
			else
				o.quiet = true;
			break;
		case 'h':
			cli_stream_usage(stdout);
			return CLI_EXIT_OK;
		default: { /* '?' or ':' */
			char who[32];

			snprintf(who, sizeof(who), "stream %s", cmd->name);
			cli_opt_error(who, c, argv);
			return usage_error();
		}
		}
	}
	if (optind >= argc) {
		cli_err("stream %s: missing FILE", cmd->name);
		return usage_error();
	}
	if (optind + 1 < argc) {
		cli_err("stream %s: unexpected argument '%s'", cmd->name, argv[optind + 1]);
		return usage_error();
	}
	o.file = argv[optind];
	if (!*o.file) {
		cli_err("stream %s: FILE is empty", cmd->name);
		return usage_error();
	}
	return cmd->run(&o);
}
