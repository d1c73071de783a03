/*
 * The virtio-mmio transport, version 2 (virtio 1.x §4.2.2): the register
 * window each device gets in the MMIO hole, feature negotiation, queue setup,
 * device status and reset. Queue notifications arrive through one ioeventfd
 * per queue (the guest's QueueNotify store never leaves the kernel) and are
 * handled on the I/O thread; interrupts go out through an irqfd with a
 * resample fd, so the line behaves level-triggered like InterruptStatus.
 * The transport saves and loads its own registers and queues in snapshots
 * and hands the device model's part to the model (virtio_dev_ops save/load).
 */
#define LOG_TAG "virtio-mmio"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hypervisor/devices/persist.h"
#include "hypervisor/hv_int.h"

#define VIRTIO_MMIO_MAGIC  0x74726976u /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x52545343u /* "CSTR" */

enum {
	REG_MAGIC = 0x000,
	REG_VERSION = 0x004,
	REG_DEVICE_ID = 0x008,
	REG_VENDOR_ID = 0x00c,
	REG_DEVICE_FEATURES = 0x010,
	REG_DEVICE_FEATURES_SEL = 0x014,
	REG_DRIVER_FEATURES = 0x020,
	REG_DRIVER_FEATURES_SEL = 0x024,
	REG_QUEUE_SEL = 0x030,
	REG_QUEUE_NUM_MAX = 0x034,
	REG_QUEUE_NUM = 0x038,
	REG_QUEUE_READY = 0x044,
	REG_QUEUE_NOTIFY = 0x050,
	REG_INTERRUPT_STATUS = 0x060,
	REG_INTERRUPT_ACK = 0x064,
	REG_STATUS = 0x070,
	REG_QUEUE_DESC_LOW = 0x080,
	REG_QUEUE_DESC_HIGH = 0x084,
	REG_QUEUE_DRIVER_LOW = 0x090,
	REG_QUEUE_DRIVER_HIGH = 0x094,
	REG_QUEUE_DEVICE_LOW = 0x0a0,
	REG_QUEUE_DEVICE_HIGH = 0x0a4,
	REG_CONFIG_GENERATION = 0x0fc,
	REG_CONFIG = 0x100,
};

/* Legacy-free IRQ lines for up to HV_MAX_VIRTIO devices. */
static const uint32_t virtio_gsi[HV_MAX_VIRTIO] = {5, 6, 7, 9, 10, 11, 12, 14};

void virtio_mmio_slot(unsigned idx, uint64_t *base_out, uint32_t *gsi_out)
{
	*base_out = HV_VIRTIO_BASE + (uint64_t)idx * VIRTIO_MMIO_SIZE;
	*gsi_out = virtio_gsi[idx];
}

static const uint8_t *mem_ptr_cb(void *ctx, uint64_t gpa, uint64_t len)
{
	return mem_ptr(ctx, gpa, len);
}

static int mem_write_cb(void *ctx, uint64_t gpa, const void *src, size_t len)
{
	return hv_mem_write(ctx, gpa, src, len);
}

static uint64_t offered_features(const struct virtio_mmio *m)
{
	return m->ops->features(m->dev) | (1ull << VIRTIO_F_VERSION_1) |
	       (1ull << VIRTIO_RING_F_EVENT_IDX);
}

bool virtio_mmio_has_feature(const struct virtio_mmio *m, unsigned bit)
{
	return (m->drv_features >> bit) & 1;
}

bool virtio_mmio_is_live(const struct virtio_mmio *m)
{
	return (m->status & VIRTIO_STATUS_DRIVER_OK) && !(m->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Assert the line through the irqfd (lock held); KVM lowers it on the guest's EOI. */
static void assert_line(struct virtio_mmio *m)
{
	uint64_t one = 1;

	if (m->irq_fd >= 0 && write(m->irq_fd, &one, sizeof(one)) < 0)
		LOG_WARN("%s: irqfd write failed", m->name);
}

static void raise_irq(struct virtio_mmio *m, uint32_t why)
{
	m->interrupt_status |= why;
	m->interrupts++;
	assert_line(m);
}

void virtio_mmio_notify_used(struct virtio_mmio *m, unsigned qidx)
{
	if (vq_should_interrupt(&m->queues[qidx]))
		raise_irq(m, VIRTIO_MMIO_INT_VRING);
}

void virtio_mmio_needs_reset(struct virtio_mmio *m, unsigned qidx)
{
	if (m->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	LOG_ERR("%s: queue %u is broken; device needs a reset", m->name, qidx);
	m->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (m->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(m, VIRTIO_MMIO_INT_CONFIG);
}

static void device_reset(struct virtio_mmio *m)
{
	unsigned i;

	if (m->ops->reset)
		m->ops->reset(m->dev);
	for (i = 0; i < m->ops->nqueues; i++)
		vq_reset(&m->queues[i]);
	m->status = 0;
	m->dev_features_sel = m->drv_features_sel = 0;
	m->drv_features = 0;
	m->queue_sel = 0;
	m->interrupt_status = 0;
	m->config_generation++;
	LOG_DBG("%s: reset", m->name);
}

static void set_status(struct virtio_mmio *m, uint32_t v)
{
	unsigned i;

	if (v == 0) {
		device_reset(m);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(m->status & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t extra = m->drv_features & ~offered_features(m);

		if (extra || !virtio_mmio_has_feature(m, VIRTIO_F_VERSION_1)) {
			LOG_GUEST_WARN("%s: driver features 0x%llx refused (%s)", m->name,
				       (unsigned long long)m->drv_features,
				       extra ? "not offered" : "no VIRTIO_F_VERSION_1");
			v &= ~(uint32_t)VIRTIO_STATUS_FEATURES_OK;
		}
		for (i = 0; i < m->ops->nqueues; i++)
			m->queues[i].event_idx =
				virtio_mmio_has_feature(m, VIRTIO_RING_F_EVENT_IDX);
	}
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(m->status & VIRTIO_STATUS_DRIVER_OK)) {
		m->status = v;
		LOG_DBG("%s: driver ok, features 0x%llx", m->name,
			(unsigned long long)m->drv_features);
		if (m->ops->driver_ok)
			m->ops->driver_ok(m->dev);
		return;
	}
	/* the driver may not clear NEEDS_RESET itself */
	m->status = v | (m->status & VIRTIO_STATUS_NEEDS_RESET);
}

static struct vq *selected(struct virtio_mmio *m)
{
	return m->queue_sel < m->ops->nqueues ? &m->queues[m->queue_sel] : NULL;
}

static void set_addr_half(uint64_t *addr, bool high, uint32_t v)
{
	if (high)
		*addr = (*addr & 0xffffffffull) | (uint64_t)v << 32;
	else
		*addr = (*addr & ~0xffffffffull) | v;
}

static void reg_write(struct virtio_mmio *m, uint64_t off, uint32_t v)
{
	struct vq *q = selected(m);

	switch (off) {
	case REG_DEVICE_FEATURES_SEL:
		m->dev_features_sel = v;
		break;
	case REG_DRIVER_FEATURES:
		if (m->status & VIRTIO_STATUS_FEATURES_OK)
			break; /* frozen once accepted */
		if (m->drv_features_sel == 0)
			m->drv_features = (m->drv_features & ~0xffffffffull) | v;
		else if (m->drv_features_sel == 1)
			m->drv_features = (m->drv_features & 0xffffffffull) | (uint64_t)v << 32;
		break;
	case REG_DRIVER_FEATURES_SEL:
		m->drv_features_sel = v;
		break;
	case REG_QUEUE_SEL:
		m->queue_sel = v;
		break;
	case REG_QUEUE_NUM:
		if (q && !q->ready)
			q->size = (uint16_t)(v <= m->ops->queue_max ? v : 0);
		break;
	case REG_QUEUE_READY:
		if (!q)
			break;
		if (v == 1 && !q->ready) {
			q->ready = true;
			if (vq_validate(q) < 0)
				virtio_mmio_needs_reset(m, m->queue_sel);
		} else if (v == 0) {
			q->ready = false;
		}
		break;
	case REG_QUEUE_NOTIFY:
		/* only when no ioeventfd caught it: hand it to the I/O thread all the same */
		virtio_mmio_kick(m, v);
		break;
	case REG_INTERRUPT_ACK:
		m->interrupt_status &= ~v;
		break;
	case REG_STATUS:
		set_status(m, v);
		break;
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
		if (q && !q->ready)
			set_addr_half(&q->desc, off == REG_QUEUE_DESC_HIGH, v);
		break;
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
		if (q && !q->ready)
			set_addr_half(&q->avail, off == REG_QUEUE_DRIVER_HIGH, v);
		break;
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		if (q && !q->ready)
			set_addr_half(&q->used, off == REG_QUEUE_DEVICE_HIGH, v);
		break;
	default:
		LOG_DBG("%s: write to unknown register 0x%llx", m->name, (unsigned long long)off);
		break;
	}
}

static uint32_t reg_read(struct virtio_mmio *m, uint64_t off)
{
	struct vq *q = selected(m);

	switch (off) {
	case REG_MAGIC:
		return VIRTIO_MMIO_MAGIC;
	case REG_VERSION:
		return 2;
	case REG_DEVICE_ID:
		return m->ops->device_id;
	case REG_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case REG_DEVICE_FEATURES:
		if (m->dev_features_sel > 1)
			return 0;
		return (uint32_t)(offered_features(m) >> (32 * m->dev_features_sel));
	case REG_QUEUE_NUM_MAX:
		return q ? m->ops->queue_max : 0;
	case REG_QUEUE_READY:
		return q ? q->ready : 0;
	case REG_INTERRUPT_STATUS:
		return m->interrupt_status;
	case REG_STATUS:
		return m->status;
	case REG_CONFIG_GENERATION:
		return m->config_generation;
	default:
		return 0;
	}
}

static void mmio_access(void *dev, struct hv_vcpu *vcpu, uint64_t off, uint8_t *data, uint32_t len,
			bool is_write)
{
	struct virtio_mmio *m = dev;
	uint32_t v = 0;

	pthread_mutex_lock(&m->lock);
	if (off >= REG_CONFIG) {
		if (is_write) {
			if (m->ops->config_write)
				m->ops->config_write(m->dev, off - REG_CONFIG, data, len);
		} else {
			memset(data, 0, len);
			if (m->ops->config_read)
				m->ops->config_read(m->dev, off - REG_CONFIG, data, len);
		}
	} else if (len != 4 || off % 4) {
		/* registers are 32-bit: anything else is ignored, reads as zero */
		if (!is_write)
			memset(data, 0, len);
	} else if (is_write) {
		memcpy(&v, data, 4);
		reg_write(m, off, v);
	} else {
		v = reg_read(m, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&m->lock);
}

static void notify_cb(void *arg, int fd, short events)
{
	struct virtio_mmio *m = arg;
	uint64_t n;
	unsigned q;

	if (read(fd, &n, sizeof(n)) < 0)
		return;
	for (q = 0; q < m->ops->nqueues; q++)
		if (m->notify_fd[q] == fd)
			break;
	if (q == m->ops->nqueues)
		return;
	pthread_mutex_lock(&m->lock);
	if (virtio_mmio_is_live(m) && m->queues[q].ready && m->ops->queue_notify)
		m->ops->queue_notify(m->dev, q);
	pthread_mutex_unlock(&m->lock);
}

void virtio_mmio_kick(struct virtio_mmio *m, unsigned qidx)
{
	uint64_t one = 1;

	if (qidx < m->ops->nqueues && m->notify_fd[qidx] >= 0 &&
	    write(m->notify_fd[qidx], &one, sizeof(one)) < 0)
		LOG_WARN("%s: notify eventfd write failed", m->name);
}

static void resample_cb(void *arg, int fd, short events)
{
	struct virtio_mmio *m = arg;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0)
		return;
	/* the guest acknowledged the line at the interrupt controller: still pending? */
	pthread_mutex_lock(&m->lock);
	if (m->interrupt_status)
		assert_line(m);
	pthread_mutex_unlock(&m->lock);
}

static int setup_eventfds(struct virtio_mmio *m)
{
	struct hv_vm *vm = m->vm;
	unsigned q;
	int rc;

	for (q = 0; q < m->ops->nqueues; q++) {
		struct kvm_ioeventfd io = {
			.datamatch = q,
			.addr = m->base + REG_QUEUE_NOTIFY,
			.len = 4,
			.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
		};

		m->notify_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->notify_fd[q] < 0)
			return -errno;
		io.fd = m->notify_fd[q];
		if (ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0)
			return -errno;
		rc = hv_io_watch_add(vm, m->notify_fd[q], HV_IO_READ, notify_cb, m,
				     &m->notify_watch[q]);
		if (rc < 0)
			return rc;
	}
	m->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->resample_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->irq_fd < 0 || m->resample_fd < 0)
		return -errno;
	{
		struct kvm_irqfd irq = {
			.fd = (uint32_t)m->irq_fd,
			.gsi = m->gsi,
			.flags = KVM_IRQFD_FLAG_RESAMPLE,
			.resamplefd = (uint32_t)m->resample_fd,
		};

		if (ioctl(vm->fd, KVM_IRQFD, &irq) < 0)
			return -errno;
	}
	return hv_io_watch_add(vm, m->resample_fd, HV_IO_READ, resample_cb, m, &m->resample_watch);
}

/* ---- state in snapshots: the registers, every queue, and the device model's part ---- */

/* The saved registers and queue fields, listed once so that save and load cannot drift apart. */
/* clang-format off */
#define MMIO_REGS(X)                                                                               \
	X(status) X(dev_features_sel) X(drv_features_sel) X(drv_features) X(queue_sel)             \
	X(interrupt_status) X(config_generation)
#define VQ_FIELDS(X)                                                                               \
	X(size) X(ready) X(broken) X(event_idx) X(desc) X(avail) X(used) X(last_avail)            \
	X(used_idx) X(signalled_used) X(signalled_valid)
/* clang-format on */
#define REG_SAVE(f) s->f = m->f;
#define REG_LOAD(f) m->f = (__typeof__(m->f))s->f;
#define VQ_SAVE(f)  q[i].f = v->f;
#define VQ_LOAD(f)  v->f = (__typeof__(v->f))q->f;

static int transport_save(void *dev, Castor__DeviceState *out, struct persist_mem *mem)
{
	struct virtio_mmio *m = dev;
	unsigned i, nq = m->ops->nqueues;
	Castor__VirtioMmioState *s = persist_new(mem, &castor__virtio_mmio_state__descriptor);
	Castor__VirtqueueState *q = persist_alloc(mem, nq * sizeof(*q));
	Castor__VirtqueueState **qp = persist_alloc(mem, nq * sizeof(*qp));
	int rc = 0;

	if (!s || !q || !qp)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	s->device_id = m->ops->device_id;
	s->mmio_base = m->base;
	MMIO_REGS(REG_SAVE)
	for (i = 0; i < nq; i++) {
		const struct vq *v = &m->queues[i];

		castor__virtqueue_state__init(&q[i]);
		VQ_FIELDS(VQ_SAVE)
		qp[i] = &q[i];
	}
	s->n_queue = nq;
	s->queue = qp;
	if (m->ops->save)
		rc = m->ops->save(m->dev, s, mem);
	pthread_mutex_unlock(&m->lock);
	out->state_case = CASTOR__DEVICE_STATE__STATE_VIRTIO;
	out->virtio = s;
	return rc;
}

/* The transport's part of a checked record; the lock is held. */
static void transport_apply(struct virtio_mmio *m, const Castor__VirtioMmioState *s)
{
	unsigned i;

	MMIO_REGS(REG_LOAD)
	for (i = 0; i < m->ops->nqueues; i++) {
		const Castor__VirtqueueState *q = s->queue[i];
		struct vq *v = &m->queues[i];

		VQ_FIELDS(VQ_LOAD)
		if (v->ready && vq_validate(v) < 0)
			virtio_mmio_needs_reset(m, i);
	}
}

static int transport_load(void *dev, const Castor__DeviceState *in, char *why, size_t why_len)
{
	struct virtio_mmio *m = dev;
	const Castor__VirtioMmioState *s = in->virtio;
	int rc = 0;

	if (s->device_id != m->ops->device_id || s->mmio_base != m->base ||
	    s->n_queue != m->ops->nqueues)
		FAIL_WHY("device %s differs from the snapshot's (type %u at 0x%" PRIx64 ")",
			 m->name, s->device_id, s->mmio_base);
	pthread_mutex_lock(&m->lock);
	/* the model checks its part first: a refused record changes nothing */
	if (m->ops->load)
		rc = m->ops->load(m->dev, s, why, why_len);
	if (!rc)
		transport_apply(m, s);
	pthread_mutex_unlock(&m->lock);
out:
	return rc;
}

/*
 * After a restore, before the VM runs: kick every ready queue and re-raise a
 * pending interrupt (see persist_devices_restart).
 */
static void transport_restart(void *dev)
{
	struct virtio_mmio *m = dev;
	unsigned q;

	pthread_mutex_lock(&m->lock);
	if (virtio_mmio_is_live(m)) {
		for (q = 0; q < m->ops->nqueues; q++)
			if (m->queues[q].ready)
				virtio_mmio_kick(m, q);
		if (m->interrupt_status)
			assert_line(m);
	}
	pthread_mutex_unlock(&m->lock);
}

static const struct persist_ops transport_persist_ops = {
	.kind = CASTOR__DEVICE_STATE__STATE_VIRTIO,
	.required = true,
	.save = transport_save,
	.load = transport_load,
	.restart = transport_restart,
};

int virtio_mmio_create(struct hv_vm *vm, const struct virtio_dev_ops *ops, void *dev,
		       const char *name, struct virtio_mmio **out)
{
	struct virtio_mmio *m;
	unsigned i;
	int rc;

	if (vm->nvirtio >= HV_MAX_VIRTIO)
		return -ENOSPC;
	if (ops->nqueues > VIRTIO_MMIO_MAX_QUEUES)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	{
		pthread_mutexattr_t a;

		/* recursive: a device hook may call back into its own device (net rx_ready) */
		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&m->lock, &a);
		pthread_mutexattr_destroy(&a);
	}
	m->vm = vm;
	m->ops = ops;
	m->dev = dev;
	virtio_mmio_slot(vm->nvirtio, &m->base, &m->gsi);
	m->irq_fd = m->resample_fd = -1;
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->mem = (struct vq_mem){.ctx = vm, .ptr = mem_ptr_cb, .write = mem_write_cb};
	for (i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++) {
		m->notify_fd[i] = -1;
		snprintf(m->qnames[i], sizeof(m->qnames[i]), "vm %s: %s.q%u", vm->name, name, i);
		vq_init(&m->queues[i], &m->mem, m->qnames[i]);
	}
	rc = setup_eventfds(m);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: %s: notification/interrupt setup", vm->name, name);
		goto fail;
	}
	rc = bus_add(&vm->mmio, m->base, VIRTIO_MMIO_SIZE, mmio_access, m);
	/*
	 * Ranked by device type, so records go nets (1) before disks (2), each
	 * in the order added, after the 16550 and the test device (rank 0): the
	 * order snapshots have always had. Cannot fail: nvirtio was checked.
	 */
	if (!rc)
		rc = persist_register(vm, &transport_persist_ops, m, m->name, ops->device_id);
	if (rc < 0)
		goto fail;
	vm->virtio[vm->nvirtio++] = m;
	LOG_INFO("vm %s: %s at 0x%llx, irq %u", vm->name, name, (unsigned long long)m->base,
		 m->gsi);
	*out = m;
	return 0;
fail:
	virtio_mmio_free(m);
	return rc;
}

void virtio_mmio_free(struct virtio_mmio *m)
{
	unsigned q;

	if (!m)
		return;
	for (q = 0; q < VIRTIO_MMIO_MAX_QUEUES; q++) {
		hv_io_watch_free(m->notify_watch[q]);
		if (m->notify_fd[q] >= 0)
			close(m->notify_fd[q]);
	}
	hv_io_watch_free(m->resample_watch);
	if (m->irq_fd >= 0)
		close(m->irq_fd);
	if (m->resample_fd >= 0)
		close(m->resample_fd);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
