/*
 * The VM's devices and outputs: disks and NICs from the command line, the
 * output queue every output goes through (frames to the taps, test-device
 * records to the event log), and the event log itself.
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "netbuffer/netbuf.h"
#include "tools/vmm/vmm.h"

#define NET_HDR_LEN 12 /* the virtio-net header before every frame */

/* ---- the event log ------------------------------------------------------------------ */

static int event_fd = -1; /* --event-log: one line per event, appended with one write(2) */

int vmm_event_log_open(const char *path)
{
	event_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	return event_fd < 0 ? -errno : 0;
}

void vmm_event_log_close(void)
{
	if (event_fd >= 0)
		close(event_fd);
	event_fd = -1;
}

/*
 * "LINE t=NS": NS is CLOCK_REALTIME when the event happened (`at`, or now),
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

void vmm_event_line(void *arg, const char *line)
{
	(void)arg;
	event_line_at(NULL, line);
}

/* ---- outputs -------------------------------------------------------------------------- */

/* A test-device output record, as queued (NB_KIND_RECORD). */
struct tg_output {
	uint32_t vcpu;
	uint32_t reserved;
	uint64_t seq;
	uint64_t counter; /* the vCPU's page-write counter when it emitted the output */
};

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
	struct vmm *v = arg;
	struct tg_output out;
	char line[64];

	if ((kind & NB_KIND_MASK) == NB_KIND_NET_FRAME) {
		uint32_t idx = NB_KIND_INDEX(kind);
		struct timespec at;

		if (idx >= v->devs.ntaps)
			return;
		clock_gettime(CLOCK_REALTIME, &at); /* the release time: before the write */
		nb_tap_release(v->devs.taps[idx], data, len);
		if (event_fd >= 0 && len > NET_HDR_LEN) {
			const uint8_t *f = (const uint8_t *)data + NET_HDR_LEN;
			size_t n = frame_len(f, len - NET_HDR_LEN);

			snprintf(line, sizeof(line), "net %u %zu %08x", idx, n,
				 util_crc32c_final(util_crc32c_update(UTIL_CRC32C_INIT, f, n)));
			event_line_at(&at, line);
		}
		return;
	}
	if (kind != NB_KIND_RECORD || len != sizeof(out) || event_fd < 0)
		return;
	memcpy(&out, data, sizeof(out));
	snprintf(line, sizeof(line), "out %u %llu %llu", out.vcpu, (unsigned long long)out.seq,
		 (unsigned long long)out.counter);
	vmm_event_line(NULL, line);
}

static void full_cb(void *arg)
{
	vmm_kick(arg);
}

int vmm_outq_new(struct vmm *v)
{
	struct nb_queue_opts qo = {.name = v->o->vm.name, .max_bytes = v->o->outq_bytes};

	return nb_queue_new(&qo, release_cb, full_cb, v, &v->outq);
}

/* A frame was queued: in output mode it ends the epoch. */
static void frame_queued_cb(void *arg)
{
	struct vmm *v = arg;

	if (__atomic_load_n(&v->kick_on_output, __ATOMIC_RELAXED))
		vmm_kick(v);
}

/* On the vCPU thread: every test-device output goes through the output queue. */
static void output_cb(void *arg, uint32_t vcpu, uint64_t seq, uint64_t counter)
{
	struct vmm *v = arg;
	struct tg_output out = {.vcpu = vcpu, .seq = seq, .counter = counter};
	int rc;

	rc = nb_output(v->outq, NB_KIND_RECORD, &out, sizeof(out));
	if (rc == -ENOBUFS)
		__atomic_fetch_add(&v->outputs_dropped, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&v->kick_on_output, __ATOMIC_RELAXED))
		vmm_kick(v);
}

/* ---- devices -------------------------------------------------------------------------- */

int vmm_add_devices(struct vmm *v, struct hv_vm *vm)
{
	struct vmm_opts *o = v->o;
	struct vmm_devices *devs = &v->devs;
	char why[256];
	unsigned i;
	int rc;

	hv_tg_set_output_cb(vm, output_cb, v);
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
		/* TX goes through the output queue: passed through until it is protected */
		nb_tap_set_queue(tap, v->outq, i, frame_queued_cb, v);
	}
	return 0;
}

int vmm_restore_add_devices(void *arg, struct hv_vm *vm)
{
	return vmm_add_devices(arg, vm);
}

/* ---- snapshot chains -------------------------------------------------------------------- */

void vmm_unmap_snapshots(const uint8_t **maps, const size_t *lens, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		munmap((void *)maps[i], lens[i]);
}

int vmm_map_snapshots(const char *const *paths, unsigned n, const uint8_t **maps, size_t *lens,
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
		vmm_unmap_snapshots(maps, lens, i);
	return rc;
}

int vmm_standby_restore(struct vmm_standby *sb, char *const *paths, unsigned n, uint64_t *bytes,
			char *why, size_t why_len)
{
	const uint8_t *maps[MAX_SNAPSHOTS];
	size_t lens[MAX_SNAPSHOTS];
	int rc;

	rc = vmm_map_snapshots((const char *const *)paths, n, maps, lens, why, why_len);
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
		vmm_unmap_snapshots(maps, lens, n);
	if (!rc)
		LOG_INFO("vm %s: standby restored %u snapshot(s), %.1f MiB%s", hv_vm_name(sb->vm),
			 n, (double)*bytes / (1 << 20), sb->lazy ? ", lazily" : "");
	return rc;
}
