/*
 * Device state in the stream: one DEVICE record (a protobuf castor.DeviceState,
 * proto/state.proto) per device -- the 16550, the test device, and each
 * virtio-mmio transport with its queues and device model. Loading checks that
 * the VM has the same devices at the same addresses as the snapshot.
 */
#define LOG_TAG "persist"
#include "hypervisor/hv_int.h"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.pb-c.h"

static int write_device(struct hv_stream_writer *w, const Castor__DeviceState *d)
{
	size_t len = castor__device_state__get_packed_size(d);
	uint8_t *buf = malloc(len ? len : 1);
	struct iovec iov = {buf, len};
	int rc;

	if (!buf)
		return -ENOMEM;
	castor__device_state__pack(d, buf);
	rc = hv_stream_write(w, HV_REC_DEVICE, &iov, 1);
	free(buf);
	return rc;
}

static int save_serial(struct hv_vm *vm, struct hv_stream_writer *w)
{
	Castor__DeviceState d = CASTOR__DEVICE_STATE__INIT;
	Castor__SerialState s = CASTOR__SERIAL_STATE__INIT;
	struct hv_serial *u = &vm->serial;

	pthread_mutex_lock(&u->lock);
	s.ier = u->ier;
	s.lcr = u->lcr;
	s.mcr = u->mcr;
	s.scr = u->scr;
	s.dll = u->dll;
	s.dlm = u->dlm;
	s.fcr = u->fcr;
	pthread_mutex_unlock(&u->lock);
	d.id = "serial0";
	d.state_case = CASTOR__DEVICE_STATE__STATE_SERIAL;
	d.serial = &s;
	return write_device(w, &d);
}

static int save_testdev(struct hv_vm *vm, struct hv_stream_writer *w)
{
	Castor__DeviceState d = CASTOR__DEVICE_STATE__INIT;
	Castor__TestDevState t = CASTOR__TEST_DEV_STATE__INIT;
	Castor__TestDevVcpu v[HV_MAX_VCPUS], *vp[HV_MAX_VCPUS];
	struct hv_testdev *td = &vm->testdev;
	uint32_t i;

	pthread_mutex_lock(&td->lock);
	for (i = 0; i < vm->ncpus; i++) {
		castor__test_dev_vcpu__init(&v[i]);
		v[i].next_seq = td->vcpu[i].next_seq;
		v[i].outputs = td->vcpu[i].outputs;
		v[i].order_errors = td->vcpu[i].order_errors;
		v[i].ready = td->vcpu[i].ready;
		v[i].faulted = td->vcpu[i].faulted;
		v[i].fault = td->vcpu[i].fault;
		vp[i] = &v[i];
	}
	t.mbox_done = td->mbox_done;
	t.mbox_reports = td->mbox_reports;
	pthread_mutex_unlock(&td->lock);
	t.n_vcpu = vm->ncpus;
	t.vcpu = vp;
	t.mbox_seq = vm->tg_mbox_seq;
	t.state_gpa = vm->tg_state_gpa;
	t.rw_gpa = vm->tg_rw_gpa;
	t.rw_bytes = vm->tg_rw_bytes;
	d.id = "testdev";
	d.state_case = CASTOR__DEVICE_STATE__STATE_TESTDEV;
	d.testdev = &t;
	return write_device(w, &d);
}

/* A transport and its queues; `dev` adds the device model's part. */
static int save_virtio(struct virtio_mmio *m, struct hv_stream_writer *w,
		       Castor__NetDeviceState *net, Castor__BlkDeviceState *blk)
{
	Castor__DeviceState d = CASTOR__DEVICE_STATE__INIT;
	Castor__VirtioMmioState s = CASTOR__VIRTIO_MMIO_STATE__INIT;
	Castor__VirtqueueState q[VIRTIO_MMIO_MAX_QUEUES], *qp[VIRTIO_MMIO_MAX_QUEUES];
	unsigned i;

	pthread_mutex_lock(&m->lock);
	s.device_id = m->ops->device_id;
	s.mmio_base = m->base;
	s.status = m->status;
	s.dev_features_sel = m->dev_features_sel;
	s.drv_features_sel = m->drv_features_sel;
	s.drv_features = m->drv_features;
	s.queue_sel = m->queue_sel;
	s.interrupt_status = m->interrupt_status;
	s.config_generation = m->config_generation;
	for (i = 0; i < m->ops->nqueues; i++) {
		const struct vq *v = &m->queues[i];

		castor__virtqueue_state__init(&q[i]);
		q[i].size = v->size;
		q[i].ready = v->ready;
		q[i].broken = v->broken;
		q[i].event_idx = v->event_idx;
		q[i].desc = v->desc;
		q[i].avail = v->avail;
		q[i].used = v->used;
		q[i].last_avail = v->last_avail;
		q[i].used_idx = v->used_idx;
		q[i].signalled_used = v->signalled_used;
		q[i].signalled_valid = v->signalled_valid;
		qp[i] = &q[i];
	}
	s.n_queue = m->ops->nqueues;
	s.queue = qp;
	if (net) {
		s.device_case = CASTOR__VIRTIO_MMIO_STATE__DEVICE_NET;
		s.net = net;
	} else {
		s.device_case = CASTOR__VIRTIO_MMIO_STATE__DEVICE_BLK;
		s.blk = blk;
	}
	pthread_mutex_unlock(&m->lock);
	d.id = m->name;
	d.state_case = CASTOR__DEVICE_STATE__STATE_VIRTIO;
	d.virtio = &s;
	return write_device(w, &d);
}

int persist_save_devices(struct hv_vm *vm, struct hv_stream_writer *w)
{
	unsigned i;
	int rc;

	rc = save_serial(vm, w);
	if (!rc && vm->tg_loaded)
		rc = save_testdev(vm, w);
	for (i = 0; !rc && i < vm->nnets; i++) {
		Castor__NetDeviceState n = CASTOR__NET_DEVICE_STATE__INIT;
		uint8_t mac[6];
		bool blocked;

		net_persist_save(vm->nets[i], mac, &blocked);
		n.mac.data = mac;
		n.mac.len = 6;
		n.rx_blocked = blocked;
		rc = save_virtio(net_transport(vm->nets[i]), w, &n, NULL);
	}
	for (i = 0; !rc && i < vm->nblks; i++) {
		Castor__BlkDeviceState b = CASTOR__BLK_DEVICE_STATE__INIT;

		b.sectors = blk_sectors(vm->blks[i]);
		b.read_only = blk_read_only(vm->blks[i]);
		rc = save_virtio(blk_transport(vm->blks[i]), w, NULL, &b);
	}
	return rc;
}

static int load_virtio(struct hv_vm *vm, const Castor__DeviceState *d, char *why, size_t why_len)
{
	const Castor__VirtioMmioState *s = d->virtio;
	struct virtio_mmio *m = NULL;
	struct hv_net *net = NULL;
	unsigned i;
	int rc = 0;

	for (i = 0; i < vm->nnets && !m; i++)
		if (!strcmp(net_transport(vm->nets[i])->name, d->id))
			m = net_transport(net = vm->nets[i]);
	for (i = 0; i < vm->nblks && !m; i++)
		if (!strcmp(blk_transport(vm->blks[i])->name, d->id))
			m = blk_transport(vm->blks[i]);
	if (!m)
		FAIL_WHY("the snapshot has device %s, this VM has none by that name (add it with "
			 "--net "
			 "or "
			 "--disk, in the same order)",
			 d->id);
	if (s->device_id != m->ops->device_id || s->mmio_base != m->base ||
	    s->n_queue != m->ops->nqueues)
		FAIL_WHY("device %s differs from the snapshot's (type %u at 0x%" PRIx64 ")", d->id,
			 s->device_id, s->mmio_base);
	if (net &&
	    (s->device_case != CASTOR__VIRTIO_MMIO_STATE__DEVICE_NET || s->net->mac.len != 6))
		FAIL_WHY("device %s: no NIC state in the snapshot", d->id);
	if (!net) {
		struct hv_blk *b = NULL;

		for (i = 0; i < vm->nblks; i++)
			if (blk_transport(vm->blks[i]) == m)
				b = vm->blks[i];
		if (s->device_case != CASTOR__VIRTIO_MMIO_STATE__DEVICE_BLK)
			FAIL_WHY("device %s: no disk state in the snapshot", d->id);
		if (s->blk->sectors != blk_sectors(b))
			FAIL_WHY("device %s: the disk has %" PRIu64
				 " sectors, the snapshot's had %" PRIu64,
				 d->id, blk_sectors(b), s->blk->sectors);
		if (s->blk->read_only != blk_read_only(b))
			FAIL_WHY("device %s: read-only in one and writable in the other", d->id);
	}
	if (net && memcmp(s->net->mac.data, net_mac(net), 6))
		LOG_WARN("vm %s: %s: the snapshot's MAC differs from --net's; the guest keeps its "
			 "own",
			 vm->name, d->id);
	pthread_mutex_lock(&m->lock);
	m->status = s->status;
	m->dev_features_sel = s->dev_features_sel;
	m->drv_features_sel = s->drv_features_sel;
	m->drv_features = s->drv_features;
	m->queue_sel = s->queue_sel;
	m->interrupt_status = s->interrupt_status;
	m->config_generation = s->config_generation;
	for (i = 0; i < m->ops->nqueues; i++) {
		const Castor__VirtqueueState *q = s->queue[i];
		struct vq *v = &m->queues[i];

		v->size = (uint16_t)q->size;
		v->ready = q->ready;
		v->broken = q->broken;
		v->event_idx = q->event_idx;
		v->desc = q->desc;
		v->avail = q->avail;
		v->used = q->used;
		v->last_avail = (uint16_t)q->last_avail;
		v->used_idx = (uint16_t)q->used_idx;
		v->signalled_used = (uint16_t)q->signalled_used;
		v->signalled_valid = q->signalled_valid;
		if (v->ready && vq_validate(v) < 0)
			virtio_mmio_needs_reset(m, i);
	}
	if (net)
		net_persist_load(net, s->net->rx_blocked);
	pthread_mutex_unlock(&m->lock);
out:
	return rc;
}

int persist_load_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, char *why,
			size_t why_len)
{
	Castor__DeviceState *d = castor__device_state__unpack(NULL, len, body);
	uint32_t i;
	int rc = 0;

	if (!d || !d->id)
		FAIL_WHY("a DEVICE record does not decode");
	switch (d->state_case) {
	case CASTOR__DEVICE_STATE__STATE_SERIAL:
		pthread_mutex_lock(&vm->serial.lock);
		vm->serial.ier = (uint8_t)d->serial->ier;
		vm->serial.lcr = (uint8_t)d->serial->lcr;
		vm->serial.mcr = (uint8_t)d->serial->mcr;
		vm->serial.scr = (uint8_t)d->serial->scr;
		vm->serial.dll = (uint8_t)d->serial->dll;
		vm->serial.dlm = (uint8_t)d->serial->dlm;
		vm->serial.fcr = (uint8_t)d->serial->fcr;
		pthread_mutex_unlock(&vm->serial.lock);
		break;
	case CASTOR__DEVICE_STATE__STATE_TESTDEV: {
		const Castor__TestDevState *t = d->testdev;

		if (t->n_vcpu != vm->ncpus)
			FAIL_WHY("testdev: %zu vCPUs in the snapshot, %u in the VM", t->n_vcpu,
				 vm->ncpus);
		pthread_mutex_lock(&vm->testdev.lock);
		for (i = 0; i < vm->ncpus; i++) {
			vm->testdev.vcpu[i].next_seq = t->vcpu[i]->next_seq;
			vm->testdev.vcpu[i].outputs = t->vcpu[i]->outputs;
			vm->testdev.vcpu[i].order_errors = t->vcpu[i]->order_errors;
			vm->testdev.vcpu[i].ready = t->vcpu[i]->ready;
			vm->testdev.vcpu[i].faulted = t->vcpu[i]->faulted;
			vm->testdev.vcpu[i].fault = t->vcpu[i]->fault;
		}
		vm->testdev.mbox_done = t->mbox_done;
		vm->testdev.mbox_reports = t->mbox_reports;
		vm->testdev.state_gpa = t->state_gpa;
		pthread_mutex_unlock(&vm->testdev.lock);
		vm->tg_mbox_seq = t->mbox_seq;
		vm->tg_state_gpa = t->state_gpa;
		vm->tg_rw_gpa = t->rw_gpa;
		vm->tg_rw_bytes = t->rw_bytes;
		vm->tg_loaded = true;
		break;
	}
	case CASTOR__DEVICE_STATE__STATE_VIRTIO:
		rc = load_virtio(vm, d, why, why_len);
		if (!rc)
			rc = 1;
		break;
	default:
		FAIL_WHY("device %s: unknown kind of state", d->id);
	}
out:
	if (d)
		castor__device_state__free_unpacked(d, NULL);
	return rc;
}

void persist_devices_restart(struct hv_vm *vm)
{
	unsigned i;

	for (i = 0; i < vm->nnets; i++)
		virtio_mmio_restart(net_transport(vm->nets[i]));
	for (i = 0; i < vm->nblks; i++)
		virtio_mmio_restart(blk_transport(vm->blks[i]));
}
