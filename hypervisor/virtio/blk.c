/*
 * virtio-blk (device ID 2) on a raw image file: read, write, flush, get-id
 * and discard (a hole punched in the file), one queue, requests served
 * synchronously on the I/O thread. A read-only disk offers VIRTIO_BLK_F_RO
 * and completes writes and discards with VIRTIO_BLK_S_IOERR. Data read from
 * the image reaches guest memory through hv_mem_write(), so it is dirty-tracked.
 */
#define LOG_TAG "virtio-blk"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hypervisor/devices/persist.h"
#include "hypervisor/hv_int.h"

#define VIRTIO_ID_BLOCK	      2
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO	      5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9
#define VIRTIO_BLK_F_DISCARD  13

#define VIRTIO_BLK_T_IN	     0
#define VIRTIO_BLK_T_OUT     1
#define VIRTIO_BLK_T_FLUSH   4
#define VIRTIO_BLK_T_GET_ID  8
#define VIRTIO_BLK_T_DISCARD 11

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR		    512u
#define BLK_QUEUE_MAX	    128
#define BLK_SEG_MAX	    (VQ_MAX_SEGS - 2) /* header and status take two */
#define BLK_REQ_MAX	    (4u << 20)	      /* bytes of data in one request */
#define BLK_DISCARD_SEG_MAX 32u
#define BLK_ID_LEN	    20u

struct hv_blk {
	struct hv_vm *vm;
	struct virtio_mmio *m;
	int fd;
	bool read_only;
	uint64_t sectors;
	char path[256];
	char id[BLK_ID_LEN];
	uint8_t *buf; /* BLK_REQ_MAX bounce buffer */
	struct vq_elem elem;
	struct hv_blk_stats stats;
	const struct hv_blk_observer_ops *obs; /* under m->lock, as requests are served */
	void *obs_arg;
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

static uint64_t blk_features(void *dev)
{
	struct hv_blk *b = dev;
	uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_FLUSH);

	if (b->read_only)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= 1ull << VIRTIO_BLK_F_DISCARD;
	return f;
}

/* struct virtio_blk_config, the fields we fill, at their spec offsets */
static void blk_config_read(void *dev, uint64_t off, uint8_t *data, uint32_t len)
{
	struct hv_blk *b = dev;
	uint8_t cfg[64] = {0};
	uint32_t v;

	memcpy(cfg + 0, &b->sectors, 8); /* capacity */
	v = BLK_REQ_MAX;
	memcpy(cfg + 8, &v, 4); /* size_max */
	v = BLK_SEG_MAX;
	memcpy(cfg + 12, &v, 4); /* seg_max */
	v = SECTOR;
	memcpy(cfg + 20, &v, 4); /* blk_size */
	v = BLK_REQ_MAX / SECTOR;
	memcpy(cfg + 36, &v, 4); /* max_discard_sectors */
	v = BLK_DISCARD_SEG_MAX;
	memcpy(cfg + 40, &v, 4); /* max_discard_seg */
	v = 1;
	memcpy(cfg + 44, &v, 4); /* discard_sector_alignment */
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, off + len <= sizeof(cfg) ? len : sizeof(cfg) - off);
}

static bool in_range(struct hv_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / SECTOR;

	return bytes % SECTOR == 0 && sector <= b->sectors && n <= b->sectors - sector;
}

static int full_pread(int fd, uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) { /* past the end of a file that shrank: zeros */
			memset(buf, 0, len);
			return 0;
		}
		buf += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

static int full_pwrite(int fd, const uint8_t *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		buf += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

static uint8_t do_discard(struct hv_blk *b, struct vq *q, struct vq_elem *e, uint64_t bytes)
{
	struct blk_discard_seg seg;
	uint64_t i;

	if (b->read_only)
		return VIRTIO_BLK_S_IOERR;
	if (bytes % sizeof(seg) || bytes / sizeof(seg) > BLK_DISCARD_SEG_MAX)
		return VIRTIO_BLK_S_IOERR;
	for (i = 0; i < bytes / sizeof(seg); i++) {
		if (vq_read_out(q, e, sizeof(struct blk_req_hdr) + i * sizeof(seg), &seg,
				sizeof(seg)) < 0 ||
		    !in_range(b, seg.sector, (uint64_t)seg.num_sectors * SECTOR))
			return VIRTIO_BLK_S_IOERR;
		if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(seg.sector * SECTOR), (off_t)seg.num_sectors * SECTOR) < 0)
			return VIRTIO_BLK_S_IOERR;
		if (b->obs && b->obs->zeroed(b->obs_arg, seg.sector * SECTOR,
					     (uint64_t)seg.num_sectors * SECTOR) < 0)
			return VIRTIO_BLK_S_IOERR;
	}
	b->stats.discards++;
	return VIRTIO_BLK_S_OK;
}

/* Serve one request; returns the status byte, *data_in_out = bytes written for the guest. */
static uint8_t serve(struct hv_blk *b, struct vq *q, struct vq_elem *e, uint64_t *data_in_out)
{
	struct blk_req_hdr h;
	uint64_t in_data = e->in_bytes - 1; /* the last writable byte is the status */
	uint64_t out_data;
	int rc;

	*data_in_out = 0;
	if (e->out_bytes < sizeof(h) || vq_read_out(q, e, 0, &h, sizeof(h)) < 0)
		return VIRTIO_BLK_S_IOERR;
	out_data = e->out_bytes - sizeof(h);
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		if (in_data > BLK_REQ_MAX || !in_range(b, h.sector, in_data))
			return VIRTIO_BLK_S_IOERR;
		rc = full_pread(b->fd, b->buf, in_data, (off_t)(h.sector * SECTOR));
		if (!rc)
			rc = vq_write_in(q, e, 0, b->buf, in_data);
		if (rc < 0)
			return VIRTIO_BLK_S_IOERR;
		*data_in_out = in_data;
		b->stats.reads++;
		b->stats.bytes_read += in_data;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_OUT:
		if (b->read_only || out_data > BLK_REQ_MAX || !in_range(b, h.sector, out_data))
			return VIRTIO_BLK_S_IOERR;
		rc = vq_read_out(q, e, sizeof(h), b->buf, out_data);
		if (!rc)
			rc = full_pwrite(b->fd, b->buf, out_data, (off_t)(h.sector * SECTOR));
		if (!rc && b->obs && out_data)
			rc = b->obs->wrote(b->obs_arg, h.sector * SECTOR, b->buf, out_data);
		if (rc < 0)
			return VIRTIO_BLK_S_IOERR;
		b->stats.writes++;
		b->stats.bytes_written += out_data;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		if (!b->read_only && fdatasync(b->fd) < 0)
			return VIRTIO_BLK_S_IOERR;
		if (b->obs && b->obs->flushed(b->obs_arg) < 0)
			return VIRTIO_BLK_S_IOERR;
		b->stats.flushes++;
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = in_data < BLK_ID_LEN ? in_data : BLK_ID_LEN;

		if (vq_write_in(q, e, 0, b->id, n) < 0)
			return VIRTIO_BLK_S_IOERR;
		*data_in_out = n;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
		return do_discard(b, q, e, out_data);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static void blk_queue_notify(void *dev, unsigned qidx)
{
	struct hv_blk *b = dev;
	struct vq *q = &b->m->queues[0];
	bool pushed = false;
	int rc;

	for (;;) {
		while ((rc = vq_pop(q, &b->elem)) == 0) {
			uint64_t data_in = 0;
			uint8_t status;

			if (b->elem.in_bytes < 1) {
				/* nowhere to put a status: the driver broke the protocol */
				LOG_GUEST_WARN("%s: request without a status byte", b->m->name);
				b->stats.malformed++;
				vq_push(q, &b->elem, 0);
				pushed = true;
				continue;
			}
			status = serve(b, q, &b->elem, &data_in);
			if (status != VIRTIO_BLK_S_OK)
				b->stats.errors++;
			vq_write_in(q, &b->elem, b->elem.in_bytes - 1, &status, 1);
			vq_push(q, &b->elem, (uint32_t)(data_in + 1));
			pushed = true;
		}
		if (rc == -EBADMSG) {
			virtio_mmio_needs_reset(b->m, 0);
			break;
		}
		vq_publish_avail_event(q);
		if (!vq_has_avail(q))
			break;
	}
	if (pushed)
		virtio_mmio_notify_used(b->m, 0);
}

/* State in snapshots: nothing is in flight at a pause; the image must be the same size. */
static int blk_save(void *dev, Castor__VirtioMmioState *out, struct persist_mem *mem)
{
	struct hv_blk *b = dev;
	Castor__BlkDeviceState *s = persist_new(mem, &castor__blk_device_state__descriptor);

	if (!s)
		return -ENOMEM;
	s->sectors = b->sectors;
	s->read_only = b->read_only;
	out->device_case = CASTOR__VIRTIO_MMIO_STATE__DEVICE_BLK;
	out->blk = s;
	return 0;
}

static int blk_load(void *dev, const Castor__VirtioMmioState *in, char *why, size_t why_len)
{
	struct hv_blk *b = dev;
	int rc = 0;

	if (in->device_case != CASTOR__VIRTIO_MMIO_STATE__DEVICE_BLK)
		FAIL_WHY("device %s: no disk state in the snapshot", b->m->name);
	if (in->blk->sectors != b->sectors)
		FAIL_WHY("device %s: the disk has %" PRIu64 " sectors, the snapshot's had %" PRIu64,
			 b->m->name, b->sectors, in->blk->sectors);
	if (in->blk->read_only != b->read_only)
		FAIL_WHY("device %s: read-only in one and writable in the other", b->m->name);
out:
	return rc;
}

static const struct virtio_dev_ops blk_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.nqueues = 1,
	.queue_max = BLK_QUEUE_MAX,
	.features = blk_features,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.save = blk_save,
	.load = blk_load,
};

static int open_image(struct hv_blk *b, const struct hv_blk_config *cfg)
{
	struct stat st;
	uint64_t bytes;

	b->fd = open(cfg->path, (cfg->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0)
		return -errno;
	if (fstat(b->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
	} else if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
	} else {
		return -EINVAL;
	}
	if (bytes < SECTOR)
		return -EINVAL;
	if (bytes % SECTOR)
		LOG_WARN("%s: size %" PRIu64 " is not a multiple of 512; the tail is ignored",
			 cfg->path, bytes);
	b->sectors = bytes / SECTOR;
	return 0;
}

int hv_blk_add(struct hv_vm *vm, const struct hv_blk_config *cfg, struct hv_blk **out)
{
	const char *base;
	struct hv_blk *b;
	char name[16];
	int rc;

	if (hv_vm_run_state(vm) != HV_S_CREATED || vm->nblks >= HV_MAX_VIRTIO)
		return -EBUSY;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->vm = vm;
	b->fd = -1;
	b->read_only = cfg->read_only;
	snprintf(b->path, sizeof(b->path), "%s", cfg->path);
	base = strrchr(cfg->path, '/');
	base = base ? base + 1 : cfg->path;
	/* the serial is up to 20 bytes, NUL-padded but not NUL-terminated when full */
	memcpy(b->id, base, strnlen(base, BLK_ID_LEN));
	rc = open_image(b, cfg);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: disk image %s", vm->name, cfg->path);
		goto fail;
	}
	b->buf = malloc(BLK_REQ_MAX);
	if (!b->buf) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(name, sizeof(name), "blk%u", vm->nblks);
	rc = virtio_mmio_create(vm, &blk_ops, b, name, &b->m);
	if (rc < 0)
		goto fail;
	vm->blks[vm->nblks++] = b;
	LOG_INFO("vm %s: %s: %s, %" PRIu64 " MiB%s", vm->name, name, cfg->path,
		 b->sectors * SECTOR >> 20, b->read_only ? ", read-only" : "");
	*out = b;
	return 0;
fail:
	blk_free(b);
	return rc;
}

void blk_free(struct hv_blk *b)
{
	if (!b)
		return;
	virtio_mmio_free(b->m);
	if (b->fd >= 0)
		close(b->fd);
	free(b->buf);
	free(b);
}

void hv_blk_stats(struct hv_blk *b, struct hv_blk_stats *out)
{
	pthread_mutex_lock(&b->m->lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->m->lock);
}

uint64_t hv_blk_mmio_base(const struct hv_blk *b)
{
	return b->m->base;
}

uint32_t hv_blk_irq(const struct hv_blk *b)
{
	return b->m->gsi;
}

int hv_blk_set_observer(struct hv_blk *b, const struct hv_blk_observer_ops *ops, void *arg)
{
	if (b->read_only && ops)
		return -EROFS;
	pthread_mutex_lock(&b->m->lock);
	b->obs = ops;
	b->obs_arg = ops ? arg : NULL;
	pthread_mutex_unlock(&b->m->lock);
	return 0;
}

bool hv_blk_read_only(const struct hv_blk *b)
{
	return b->read_only;
}

uint64_t hv_blk_bytes(const struct hv_blk *b)
{
	return b->sectors * SECTOR;
}

const char *hv_blk_path(const struct hv_blk *b)
{
	return b->path;
}

struct hv_blk *hv_vm_blk(struct hv_vm *vm, unsigned idx)
{
	return idx < vm->nblks ? vm->blks[idx] : NULL;
}
