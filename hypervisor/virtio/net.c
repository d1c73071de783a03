/*
 * virtio-net (device ID 1): queue 0 receives, queue 1 transmits. Frames keep
 * their 12-byte virtio_net_hdr_v1 across the backend interface, so a tap with
 * IFF_VNET_HDR passes them through untouched. Mergeable receive buffers are
 * offered (a frame may span several posted buffers); no offloads, so frames
 * carry complete checksums both ways.
 */
#define LOG_TAG "virtio-net"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/devices/persist.h"
#include "hypervisor/hv_int.h"

#define VIRTIO_ID_NET	       1
#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS    16
#define VIRTIO_NET_S_LINK_UP   1

#define NET_HDR_LEN	12u
#define NET_RXQ		0
#define NET_TXQ		1
#define NET_QUEUE_MAX	256
#define NET_FRAME_MAX	(NET_HDR_LEN + 65535u)
#define NET_RX_MAX_BUFS 16 /* buffers one received frame may span */

struct hv_net {
	struct hv_vm *vm;
	struct virtio_mmio *m;
	uint8_t mac[6];
	const struct hv_net_backend_ops *ops;
	void *be;
	bool rx_blocked; /* hv_net_rx() said -ENOBUFS; rx_ready() owed */
	struct hv_net_stats stats;
	struct vq_elem rx_elems[NET_RX_MAX_BUFS];
	struct vq_elem tx_elem;
};

static uint64_t net_features(void *dev)
{
	return (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |
	       (1ull << VIRTIO_NET_F_STATUS);
}

static void net_config_read(void *dev, uint64_t off, uint8_t *data, uint32_t len)
{
	struct hv_net *n = dev;
	uint8_t cfg[8];
	uint16_t status = VIRTIO_NET_S_LINK_UP;

	memcpy(cfg, n->mac, 6);
	memcpy(cfg + 6, &status, 2);
	if (off < sizeof(cfg))
		memcpy(data, cfg + off, off + len <= sizeof(cfg) ? len : sizeof(cfg) - off);
}

static void tx_one(struct hv_net *n, struct vq *q, struct vq_elem *e)
{
	struct iovec iov[VQ_MAX_SEGS];
	unsigned i;

	if (e->out_bytes < NET_HDR_LEN || e->out_bytes > NET_FRAME_MAX) {
		LOG_GUEST_WARN("%s: transmit of %llu bytes dropped", n->m->name,
			       (unsigned long long)e->out_bytes);
		n->stats.tx_malformed++;
		return;
	}
	for (i = 0; i < e->n_out; i++) {
		/* vq_pop checked every buffer against RAM */
		iov[i].iov_base = (void *)mem_ptr(n->vm, e->out[i].gpa, e->out[i].len);
		iov[i].iov_len = e->out[i].len;
	}
	if (n->ops && n->ops->tx)
		n->ops->tx(n->be, iov, (int)e->n_out, e->out_bytes);
	n->stats.tx_frames++;
	n->stats.tx_bytes += e->out_bytes - NET_HDR_LEN;
}

static void tx_process(struct hv_net *n)
{
	struct vq *q = &n->m->queues[NET_TXQ];
	bool pushed = false;
	int rc;

	for (;;) {
		while ((rc = vq_pop(q, &n->tx_elem)) == 0) {
			tx_one(n, q, &n->tx_elem);
			vq_push(q, &n->tx_elem, 0);
			pushed = true;
		}
		if (rc == -EBADMSG) {
			virtio_mmio_needs_reset(n->m, NET_TXQ);
			break;
		}
		/* with EVENT_IDX: re-arm, then look again so no notification is missed */
		vq_publish_avail_event(q);
		if (!vq_has_avail(q))
			break;
	}
	if (pushed)
		virtio_mmio_notify_used(n->m, NET_TXQ);
}

static void net_queue_notify(void *dev, unsigned qidx)
{
	struct hv_net *n = dev;

	if (qidx == NET_TXQ) {
		tx_process(n);
	} else if (qidx == NET_RXQ && n->rx_blocked) {
		n->rx_blocked = false;
		if (n->ops && n->ops->rx_ready)
			n->ops->rx_ready(n->be); /* may call hv_net_rx(): the lock is recursive */
	}
}

static void net_driver_ok(void *dev)
{
	struct hv_net *n = dev;

	/* frames may be waiting from before the reset */
	if (n->ops && n->ops->rx_ready)
		n->ops->rx_ready(n->be);
}

static void net_reset(void *dev)
{
	struct hv_net *n = dev;

	n->rx_blocked = false;
}

/* State in snapshots: the MAC (checked, not restored) and an owed rx_ready(). */
static int net_save(void *dev, Castor__VirtioMmioState *out, struct persist_mem *mem)
{
	struct hv_net *n = dev;
	Castor__NetDeviceState *s = persist_new(mem, &castor__net_device_state__descriptor);

	if (!s)
		return -ENOMEM;
	s->mac.data = n->mac;
	s->mac.len = sizeof(n->mac);
	s->rx_blocked = n->rx_blocked;
	out->device_case = CASTOR__VIRTIO_MMIO_STATE__DEVICE_NET;
	out->net = s;
	return 0;
}

static int net_load(void *dev, const Castor__VirtioMmioState *in, char *why, size_t why_len)
{
	struct hv_net *n = dev;
	int rc = 0;

	if (in->device_case != CASTOR__VIRTIO_MMIO_STATE__DEVICE_NET ||
	    in->net->mac.len != sizeof(n->mac))
		FAIL_WHY("device %s: no NIC state in the snapshot", n->m->name);
	if (memcmp(in->net->mac.data, n->mac, sizeof(n->mac)))
		LOG_WARN("vm %s: %s: the snapshot's MAC differs from --net's; the guest keeps its "
			 "own",
			 n->vm->name, n->m->name);
	n->rx_blocked = in->net->rx_blocked;
out:
	return rc;
}

static const struct virtio_dev_ops net_ops = {
	.device_id = VIRTIO_ID_NET,
	.nqueues = 2,
	.queue_max = NET_QUEUE_MAX,
	.features = net_features,
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
};

int hv_net_rx(struct hv_net *n, const void *frame, size_t len)
{
	struct vq *q = &n->m->queues[NET_RXQ];
	uint32_t written[NET_RX_MAX_BUFS];
	const uint8_t *src = frame;
	uint16_t nbufs = 0, i;
	size_t off = 0;
	bool mergeable;
	int rc = 0;

	if (len < NET_HDR_LEN || len > NET_FRAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&n->m->lock);
	if (!virtio_mmio_is_live(n->m) || !q->ready || q->broken) {
		rc = -EIO;
		goto out;
	}
	mergeable = virtio_mmio_has_feature(n->m, VIRTIO_NET_F_MRG_RXBUF);
	while (off < len) {
		struct vq_elem *e = &n->rx_elems[nbufs];
		size_t take;

		rc = vq_pop(q, e);
		if (rc == -ENOENT) {
			/* ask to be notified when buffers come, then look once more */
			vq_publish_avail_event(q);
			rc = vq_pop(q, e);
		}
		if (rc == -ENOENT) {
			vq_unpop(q, nbufs);
			n->rx_blocked = true;
			n->stats.rx_no_buffer++;
			rc = -ENOBUFS;
			goto out;
		}
		if (rc < 0) {
			virtio_mmio_needs_reset(n->m, NET_RXQ);
			rc = -EIO;
			goto out;
		}
		take = e->in_bytes < len - off ? e->in_bytes : len - off;
		if (!take || (!mergeable && take < len) ||
		    (take < len - off && nbufs + 1 == NET_RX_MAX_BUFS)) {
			/* what the guest posted cannot hold this frame: drop the frame */
			vq_unpop(q, (uint16_t)(nbufs + 1));
			n->stats.rx_dropped++;
			rc = 0;
			goto out;
		}
		rc = vq_write_in(q, e, 0, src + off, take);
		if (rc < 0)
			goto out;
		written[nbufs++] = (uint32_t)take;
		off += take;
	}
	/* num_buffers is the header's last field */
	rc = vq_write_in(q, &n->rx_elems[0], 10, &nbufs, sizeof(nbufs));
	for (i = 0; !rc && i < nbufs; i++)
		rc = vq_push(q, &n->rx_elems[i], written[i]);
	if (!rc) {
		n->stats.rx_frames++;
		n->stats.rx_bytes += len - NET_HDR_LEN;
		virtio_mmio_notify_used(n->m, NET_RXQ);
	}
out:
	pthread_mutex_unlock(&n->m->lock);
	return rc;
}

int hv_net_add(struct hv_vm *vm, const struct hv_net_config *cfg, struct hv_net **out)
{
	struct hv_net *n;
	char name[16];
	int rc;

	if (hv_vm_run_state(vm) != HV_S_CREATED || vm->nnets >= HV_MAX_VIRTIO)
		return -EBUSY;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->vm = vm;
	memcpy(n->mac, cfg->mac, 6);
	n->ops = cfg->ops;
	n->be = cfg->be;
	snprintf(name, sizeof(name), "net%u", vm->nnets);
	rc = virtio_mmio_create(vm, &net_ops, n, name, &n->m);
	if (rc < 0) {
		free(n);
		return rc;
	}
	vm->nets[vm->nnets++] = n;
	*out = n;
	return 0;
}

void net_free(struct hv_net *n)
{
	if (!n)
		return;
	virtio_mmio_free(n->m);
	free(n);
}

void hv_net_stats(struct hv_net *n, struct hv_net_stats *out)
{
	pthread_mutex_lock(&n->m->lock);
	*out = n->stats;
	pthread_mutex_unlock(&n->m->lock);
}

uint64_t hv_net_mmio_base(const struct hv_net *n)
{
	return n->m->base;
}

void hv_net_mac(const struct hv_net *n, char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1], n->mac[2],
		 n->mac[3], n->mac[4], n->mac[5]);
}

uint32_t hv_net_irq(const struct hv_net *n)
{
	return n->m->gsi;
}
