/*
 * castor bench resync: what re-protecting a disk costs after part of it was
 * rewritten (docs/benchmarks.md, "Disk resync").
 *
 * Makes an image of --size filled with data (no holes: every range must be
 * read), a copy of it (the replica as it was), then rewrites --changed of
 * the source in random --piece pieces aligned to --align, marking a
 * dirty-region log as a primary would. Then it makes the copy equal to the
 * source again, over loopback TCP with the destination on a thread of its
 * own, the copy put back to its old contents before each run:
 *
 *   full      every range sent (the initial copy of a new replica)
 *   checksum  the destination's BLAKE2b digests, and the ranges that differ
 *   dirty     the ranges the log marks, then the image digests compared
 *   dirty-nv  the same without the digests (--no-verify): only the marked
 *             ranges are read
 *   protect   a protected VM's initial copy (disk_tx.c, stream-format.md §8.5):
 *             the replica's digests first, then epoch 0's records of the
 *             ranges that differ, applied as the replica does; the images are
 *             compared afterwards (not timed)
 *   protect-full  the same without the digests: what protection sent before
 *             §8.5, every range
 *
 * and prints per run the bytes on the wire (both ways, as the link counted
 * them), the data sent, the wall time and the wire bytes over the bytes
 * rewritten (the target: at most 2). No key: a sealed link adds 20
 * bytes per record of up to 1 MiB. Both ends read from the page cache (the
 * files were just written): the figures are CPU and loopback, not a disk.
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "replication/repl.h"
#include "tools/castor/json.h"
#include "util/util.h"

#define WHO   "bench resync"
#define CHUNK (1u << 20)
#define BLOCK 4096u

struct resync_opts {
	uint64_t size, piece, align, range;
	double changed; /* fraction */
	const char *dir;
	bool keep, json;
};

/* Deterministic contents: 8 bytes at a time from (seed, offset); seed 0 is never used. */
static void fill(uint8_t *buf, size_t len, uint64_t off, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = (off + i) * 0x9e3779b97f4a7c15ull ^ seed * 0xd1b54a32d192ed03ull;

		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ull;
		x ^= x >> 32;
		memcpy(buf + i, &x, 8);
	}
}

static int write_pattern(int fd, uint64_t off, uint64_t len, uint64_t seed, uint8_t *buf)
{
	while (len) {
		size_t n = len < CHUNK ? (size_t)len : CHUNK;

		fill(buf, n, off, seed);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			return errno ? -errno : -EIO;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- the destination's thread ------------------------------------------------------------ */

struct dest {
	pthread_t th;
	int fd;
	uint64_t size;
	struct repl_listener *ln;
	struct repl_disk_sync_opts o;
	struct repl_disk_sync_stats st;
	int rc;
	char why[512];
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;

	d->rc = repl_disk_sync_receive(&repl_tcp_ops, d->ln, 10000, d->fd, d->size, &d->o, &d->st,
				       d->why, sizeof(d->why));
	return NULL;
}

struct run {
	const char *name;
	enum repl_disk_sync_mode mode;
	bool no_verify;
	bool protect, protect_full; /* a protected VM's initial copy, not a §11 sync */
	struct repl_disk_sync_stats st;
	double secs;
};

/* The two images hold the same bytes (read in CHUNKs into buf and a second buffer). */
static int same_images(int a, int b, uint64_t size, uint8_t *buf, bool *same)
{
	uint8_t *other = malloc(CHUNK);
	int rc = 0;

	*same = true;
	if (!other)
		return -ENOMEM;
	for (uint64_t off = 0; off < size && *same; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;

		if (pread(a, buf, n, (off_t)off) != (ssize_t)n ||
		    pread(b, other, n, (off_t)off) != (ssize_t)n) {
			rc = errno ? -errno : -EIO;
			break;
		}
		*same = !memcmp(buf, other, n);
	}
	free(other);
	return rc;
}

static int protect_run(int src, int dst, uint64_t size, struct run *r, uint8_t *buf)
{
	struct repl_disk_copy_stats cs;
	char why[256];
	uint64_t t0 = util_now_ns();
	bool same;
	int rc;

	rc = repl_disk_copy_loopback(src, dst, size, r->protect_full, &cs, why, sizeof(why));
	r->secs = (double)(util_now_ns() - t0) / 1e9;
	if (rc < 0) {
		cli_err(WHO ": %s: %s", r->name, why);
		return rc;
	}
	rc = same_images(src, dst, size, buf, &same);
	if (rc < 0) {
		cli_err(WHO ": %s: comparing the images: %s", r->name, strerror(-rc));
		return rc;
	}
	if (!same) {
		cli_err(WHO ": %s: the images differ after the copy", r->name);
		return -EILSEQ;
	}
	r->st = (struct repl_disk_sync_stats){
		.image_bytes = size,
		.tx_bytes = cs.wire_bytes,
		.data_bytes = cs.data_bytes,
		/* data goes in whole §8.5 ranges */
		.ranges_sent = cs.range_bytes ? cs.data_bytes / cs.range_bytes : 0,
		.verified = true};
	return 0;
}

static int one_run(int src, int dst, uint64_t size, const struct resync_opts *o,
		   struct repl_disk_log *log, struct run *r)
{
	struct repl_disk_sync_opts so = {.mode = r->mode,
					 .range_bytes = (uint32_t)o->range,
					 .no_verify = r->no_verify,
					 .log = log};
	struct dest d = {.fd = dst, .size = size};
	char peer[32], why[512];
	uint64_t t0;
	int rc;

	rc = repl_tcp_ops.listen("127.0.0.1:0", &d.o.conn, &d.ln);
	if (rc < 0) {
		cli_err(WHO ": cannot listen on loopback: %s", strerror(-rc));
		return rc;
	}
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", repl_tcp_ops.local_port(d.ln));
	rc = pthread_create(&d.th, NULL, dest_main, &d);
	if (rc) {
		repl_tcp_ops.close_listener(d.ln);
		return -rc;
	}
	t0 = util_now_ns();
	rc = repl_disk_sync_send(peer, src, size, &so, &r->st, why, sizeof(why));
	pthread_join(d.th, NULL);
	r->secs = (double)(util_now_ns() - t0) / 1e9;
	repl_tcp_ops.close_listener(d.ln);
	if (rc < 0 || d.rc < 0) {
		cli_err(WHO ": %s: source: %s; destination: %s", r->name, rc < 0 ? why : "ok",
			d.rc < 0 ? d.why : "ok");
		return rc < 0 ? rc : d.rc;
	}
	if (!r->no_verify && !r->st.verified) {
		cli_err(WHO ": %s: the images were not verified equal", r->name);
		return -EILSEQ;
	}
	return 0;
}

static void report(const struct run *r, uint64_t rewritten, bool json)
{
	uint64_t wire = r->st.tx_bytes + r->st.rx_bytes;
	double ratio = (double)wire / (double)rewritten;

	if (json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "bench", "resync");
		cli_json_str(&j, "run", r->name);
		cli_json_u64(&j, "image_bytes", r->st.image_bytes);
		cli_json_u64(&j, "rewritten_bytes", rewritten);
		cli_json_u64(&j, "wire_bytes", wire);
		cli_json_u64(&j, "tx_bytes", r->st.tx_bytes);
		cli_json_u64(&j, "rx_bytes", r->st.rx_bytes);
		cli_json_u64(&j, "data_bytes", r->st.data_bytes);
		cli_json_u64(&j, "ranges_sent", r->st.ranges_sent);
		cli_json_u64(&j, "compared_bytes", r->st.compared_bytes);
		cli_json_double(&j, "seconds", r->secs);
		cli_json_double(&j, "wire_over_rewritten", ratio);
		cli_json_bool(&j, "verified", r->st.verified);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	printf("%-12s %12.1f %10.1f %9" PRIu64 " %10.2f %9.2f %10.0f %s\n", r->name,
	       (double)wire / (1 << 20), (double)r->st.data_bytes / (1 << 20), r->st.ranges_sent,
	       ratio, r->secs, (double)r->st.image_bytes / (1 << 20) / r->secs,
	       r->st.verified ? "yes" : "no");
}

/* Random pieces of the source rewritten (and marked); the union's bytes in *rewritten. */
static int rewrite(int src, uint64_t size, const struct resync_opts *o, struct repl_disk_log *log,
		   uint64_t **pieces_out, uint64_t *npieces_out, uint64_t *rewritten, uint8_t *buf)
{
	uint64_t want = (uint64_t)((double)size * o->changed), n = 0, cap,
		 x = 0x2545f4914f6cdd1dull;
	uint64_t slots = (size - o->piece) / o->align + 1;
	struct util_bitmap blocks = {0};
	uint64_t *pieces;
	int rc;

	cap = want / o->piece + 1;
	pieces = calloc(cap, sizeof(*pieces));
	rc = pieces ? util_bitmap_init(&blocks, size / BLOCK) : -ENOMEM;
	/* until the union of the pieces reaches `want` bytes */
	while (!rc && util_bitmap_count(&blocks) * BLOCK < want && n < cap) {
		uint64_t off;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		off = x % slots * o->align;
		util_bitmap_set_range(&blocks, off / BLOCK, o->piece / BLOCK);
		pieces[n++] = off;
		/* write-intent: the log knows before the image does */
		repl_disk_log_mark(log, off, o->piece);
		rc = write_pattern(src, off, o->piece, 2, buf);
	}
	*rewritten = util_bitmap_count(&blocks) * BLOCK;
	util_bitmap_dispose(&blocks);
	if (rc < 0) {
		free(pieces);
		return rc;
	}
	*pieces_out = pieces;
	*npieces_out = n;
	return 0;
}

/* The copy as it was before the rewrite: the pieces get their old contents back. */
static int restore(int dst, const struct resync_opts *o, const uint64_t *pieces, uint64_t n,
		   uint8_t *buf)
{
	int rc = 0;

	for (uint64_t i = 0; i < n && !rc; i++)
		rc = write_pattern(dst, pieces[i], o->piece, 1, buf);
	return rc;
}

static int parse(int argc, char **argv, struct resync_opts *o)
{
	static const struct option opts[] = {
		{"size", required_argument, NULL, 's'},
		{"changed", required_argument, NULL, 'c'},
		{"piece", required_argument, NULL, 'p'},
		{"align", required_argument, NULL, 'a'},
		{"range", required_argument, NULL, 'r'},
		{"dir", required_argument, NULL, 'd'},
		{"keep", no_argument, NULL, 'k'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	char *end;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		uint64_t *v = c == 's'	 ? &o->size
			      : c == 'p' ? &o->piece
			      : c == 'a' ? &o->align
					 : &o->range;

		switch (c) {
		case 's':
		case 'p':
		case 'a':
		case 'r':
			if (util_parse_size(optarg, v) < 0 || !*v || *v % BLOCK) {
				cli_err(WHO ": bad size '%s' (a multiple of 4K)", optarg);
				return -EINVAL;
			}
			break;
		case 'c':
			o->changed = strtod(optarg, &end) / 100.0;
			if (end == optarg || strcmp(end, "%") || o->changed <= 0 ||
			    o->changed > 1) {
				cli_err(WHO ": --changed: '%s' is not a percentage like 1%%",
					optarg);
				return -EINVAL;
			}
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'j':
			o->json = true;
			break;
		default:
			cli_opt_error(WHO, c, argv);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		cli_err(WHO ": unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (o->size < 16 * o->piece || o->size % BLOCK || (o->range & (o->range - 1)) ||
	    o->range < 4096 || o->range > (1u << 20) || o->piece % BLOCK) {
		cli_err(WHO ": --size must hold 16 pieces; --range a power of two, 4K to 1M");
		return -EINVAL;
	}
	return 0;
}

/* Enough room in o->dir for two images and a margin? */
static int check_room(const struct resync_opts *o)
{
	struct statvfs sv;

	if (statvfs(o->dir, &sv) < 0) {
		cli_err(WHO ": %s: %s", o->dir, strerror(errno));
		return -errno;
	}
	if ((uint64_t)sv.f_bavail * sv.f_frsize < 2 * o->size + (1ull << 30)) {
		cli_err(WHO ": %s has %.1f GiB free; two images of %.1f GiB and 1 GiB more are "
			    "needed (--dir)",
			o->dir, (double)sv.f_bavail * sv.f_frsize / (1 << 30),
			(double)o->size / (1 << 30));
		return -ENOSPC;
	}
	return 0;
}

int cli_bench_resync(int argc, char **argv)
{
	struct resync_opts o = {.size = 4ull << 30,
				.piece = 64 << 10,
				.align = 64 << 10,
				.range = REPL_DISK_REGION,
				.changed = 0.01,
				.dir = "/var/tmp"};
	struct run runs[] = {
		{.name = "checksum", .mode = REPL_DISK_SYNC_CHECKSUM},
		{.name = "dirty", .mode = REPL_DISK_SYNC_DIRTY},
		{.name = "dirty-nv", .mode = REPL_DISK_SYNC_DIRTY, .no_verify = true},
		{.name = "full", .mode = REPL_DISK_SYNC_FULL},
		{.name = "protect", .protect = true},
		{.name = "protect-full", .protect = true, .protect_full = true},
	};
	char dir[PATH_MAX], src_path[PATH_MAX + 16], dst_path[PATH_MAX + 16],
		log_path[PATH_MAX + 16], why[256];
	struct repl_disk_log *log = NULL;
	uint64_t *pieces = NULL, npieces = 0, rewritten = 0, t0;
	uint8_t *buf = NULL;
	int src = -1, dst = -1, rc;

	if (parse(argc, argv, &o) < 0)
		return CLI_EXIT_USAGE;
	rc = check_room(&o);
	if (rc < 0)
		return CLI_EXIT_FAIL;
	snprintf(dir, sizeof(dir), "%s/castor-bench-resync.XXXXXX", o.dir);
	if (!mkdtemp(dir)) {
		cli_err(WHO ": cannot make a folder in %s: %s", o.dir, strerror(errno));
		return CLI_EXIT_FAIL;
	}
	snprintf(src_path, sizeof(src_path), "%s/src.img", dir);
	snprintf(dst_path, sizeof(dst_path), "%s/dst.img", dir);
	snprintf(log_path, sizeof(log_path), "%s/src.dirtylog", dir);
	buf = malloc(CHUNK);
	src = open(src_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	dst = open(dst_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (!buf || src < 0 || dst < 0) {
		rc = -errno;
		cli_err(WHO ": cannot create the images in %s: %s", dir, strerror(errno));
		goto out;
	}
	/* the replica as it was: the same data on both sides */
	t0 = util_now_ns();
	for (uint64_t off = 0; off < o.size && !rc; off += CHUNK) {
		size_t n = o.size - off < CHUNK ? (size_t)(o.size - off) : CHUNK;

		fill(buf, n, off, 1);
		if (pwrite(src, buf, n, (off_t)off) != (ssize_t)n ||
		    pwrite(dst, buf, n, (off_t)off) != (ssize_t)n)
			rc = errno ? -errno : -EIO;
	}
	if (!rc && (fdatasync(src) < 0 || fdatasync(dst) < 0))
		rc = -errno;
	if (rc < 0) {
		cli_err(WHO ": writing the images: %s", strerror(-rc));
		goto out;
	}
	/* a new log (no file yet: all dirty), cleared: both images are equal now */
	rc = repl_disk_log_open(log_path, o.size, (uint32_t)o.range, &log, why, sizeof(why));
	if (!rc) {
		repl_disk_log_clear(log);
		rc = rewrite(src, o.size, &o, log, &pieces, &npieces, &rewritten, buf);
	}
	if (!rc)
		rc = repl_disk_log_save(log, why, sizeof(why));
	if (rc < 0) {
		cli_err(WHO ": rewriting the source: %s", strerror(-rc));
		goto out;
	}
	if (!o.json)
		printf("castor bench resync: %.1f GiB image (written in %.1f s), %.2f %% rewritten "
		       "in %" PRIu64 " pieces of %" PRIu64 " KiB aligned to %" PRIu64
		       " KiB = %.1f MiB; ranges of %" PRIu64 " KiB; loopback TCP, no key; "
		       "warm page cache\n"
		       "%-12s %12s %10s %9s %10s %9s %10s %s\n",
		       (double)o.size / (1 << 30), (double)(util_now_ns() - t0) / 1e9,
		       100.0 * (double)rewritten / (double)o.size, npieces, o.piece >> 10,
		       o.align >> 10, (double)rewritten / (1 << 20), o.range >> 10, "mode",
		       "wire_MiB", "data_MiB", "ranges", "wire/rewr", "seconds", "image_MB/s",
		       "verified");
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]) && !rc; i++) {
		rc = runs[i].protect ? protect_run(src, dst, o.size, &runs[i], buf)
				     : one_run(src, dst, o.size, &o, log, &runs[i]);
		if (!rc)
			report(&runs[i], rewritten, o.json);
		if (!rc && i + 1 < sizeof(runs) / sizeof(runs[0]))
			rc = restore(dst, &o, pieces, npieces, buf);
	}
out:
	repl_disk_log_free(log);
	free(pieces);
	free(buf);
	if (src >= 0)
		close(src);
	if (dst >= 0)
		close(dst);
	if (!o.keep) {
		unlink(src_path);
		unlink(dst_path);
		unlink(log_path);
		rmdir(dir);
	} else {
		printf("castor bench resync: kept %s\n", dir);
	}
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
