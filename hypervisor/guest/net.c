/*
 * The poll-mode virtio-net driver: queue 0 receives, queue 1 transmits, and a
 * 12-byte struct virtio_net_hdr_v1 precedes every frame both ways. No
 * offloads are negotiated, so the header we send is all zero and the stack
 * computes every checksum itself.
 *
 * RX: descriptor i always points at 2 KiB buffer i; a consumed buffer is
 * re-posted at once, so the queue stays full. TX: descriptor i always points
 * at TX buffer i; free buffers sit on a stack and come back from the used
 * ring. Both queues are published (and notified, if the device wants it)
 * once per poll, not once per frame.
 */
#include "hypervisor/guest/dev.h"

/* A locally administered MAC for a device without VIRTIO_NET_F_MAC. */
static const uint8_t default_mac[6] = {0x02, 0x43, 0x54, 0x47, 0x00, 0x01};

static void read_mac(struct tg_net *n)
{
	uint32_t gen, i;

	if (!(n->features & 1ull << VIO_NET_F_MAC)) {
		tg_copy(n->mac, default_mac, 6);
		return;
	}
	do {
		gen = vio_read32(n->mmio, VIO_CONFIG_GENERATION);
		for (i = 0; i < 6; i++)
			n->mac[i] = vio_read8(n->mmio, VIO_CONFIG + i);
	} while (vio_read32(n->mmio, VIO_CONFIG_GENERATION) != gen);
}

static void tx_reclaim(struct tg_net *n)
{
	uint32_t id, len;

	while (tg_vq_get_used(&n->txq, &id, &len))
		if (id < n->txq.size && n->tx_nfree < n->txq.size)
			n->tx_free[n->tx_nfree++] = (uint16_t)id;
}

int tg_net_start(struct tg_dev *d, const char **why_out)
{
	struct tg_net *n = &d->net;
	uint64_t wanted = 1ull << VIO_F_RING_EVENT_IDX | 1ull << VIO_NET_F_MAC |
			  1ull << VIO_NET_F_MRG_RXBUF | 1ull << VIO_NET_F_STATUS;
	uint16_t i;

	n->up = 0;
	if (tg_virtio_begin(n->mmio, VIO_ID_NET, wanted, &n->features, why_out))
		return -1;
	read_mac(n);
	n->link = VIO_NET_S_LINK_UP;
	if (n->features & 1ull << VIO_NET_F_STATUS)
		n->link = vio_read16(n->mmio, VIO_CONFIG + 6);
	if (tg_vq_setup(&n->rxq, n->mmio, 0, &d->net_rxq_page, NET_RX_BUFS, 1, n->features,
			why_out) ||
	    tg_vq_setup(&n->txq, n->mmio, 1, &d->net_txq_page, NET_TX_BUFS, 1, n->features,
			why_out)) {
		tg_virtio_reset(n->mmio);
		return -1;
	}
	for (i = 0; i < n->rxq.size; i++) {
		n->rxq.desc[i].addr = (uint64_t)(uintptr_t)d->net_rx_buf[i];
		n->rxq.desc[i].len = NET_BUF_SIZE;
		n->rxq.desc[i].flags = VRING_DESC_F_WRITE;
		n->rxq.desc[i].next = 0;
		tg_vq_add(&n->rxq, i);
	}
	for (i = 0; i < n->txq.size; i++) {
		n->txq.desc[i].addr = (uint64_t)(uintptr_t)d->net_tx_buf[i];
		n->txq.desc[i].len = 0;
		n->txq.desc[i].flags = 0;
		n->txq.desc[i].next = 0;
		n->tx_free[i] = i;
	}
	n->tx_nfree = n->txq.size;
	n->rx_skip = 0;
	if (tg_virtio_driver_ok(n->mmio, why_out)) {
		tg_virtio_reset(n->mmio);
		return -1;
	}
	tg_vq_kick(&n->rxq); /* notifying is allowed only after DRIVER_OK */
	n->up = 1;
	return 0;
}

/* One used RX buffer: hand its frame up (or drop it); the caller re-posts. */
static void rx_one(struct tg_dev *d, const uint8_t *buf, uint32_t len, uint64_t now)
{
	struct tg_net *n = &d->net;
	volatile struct tg_io_state *io = tg_io();
	uint32_t nbufs = (uint32_t)buf[10] | (uint32_t)buf[11] << 8; /* little-endian */

	if (n->rx_skip) { /* the rest of a frame that spans buffers */
		n->rx_skip--;
		return;
	}
	io->rx_frames++;
	if ((n->features & 1ull << VIO_NET_F_MRG_RXBUF) && nbufs > 1) {
		n->rx_skip = nbufs - 1;
		io->rx_dropped++;
		return;
	}
	if (len < NET_HDR_LEN + ETH_HLEN || len > NET_BUF_SIZE || !n->stack_on) {
		io->rx_dropped++;
		return;
	}
	tg_eth_input(d, buf + NET_HDR_LEN, len - NET_HDR_LEN, now);
}

void tg_net_poll(struct tg_dev *d, uint64_t now)
{
	struct tg_net *n = &d->net;
	uint32_t budget = NET_RX_BUFS, id, len;

	if (!n->up)
		return;
	while (budget-- && tg_vq_get_used(&n->rxq, &id, &len)) {
		if (id >= n->rxq.size)
			continue; /* not a buffer of ours: nothing to re-post */
		rx_one(d, d->net_rx_buf[id], len, now);
		tg_vq_add(&n->rxq, (uint16_t)id);
	}
	tg_vq_kick(&n->rxq);
	tx_reclaim(n);
	if (n->stack_on)
		tg_tcp_poll(d, now);
	tg_vq_kick(&n->txq);
}

uint8_t *tg_net_tx_alloc(struct tg_dev *d, uint16_t *buf_out)
{
	struct tg_net *n = &d->net;
	uint8_t *b;
	uint32_t i;

	if (!n->up)
		return 0;
	if (n->tx_nfree == 0)
		tx_reclaim(n);
	if (n->tx_nfree == 0)
		return 0;
	*buf_out = n->tx_free[--n->tx_nfree];
	b = d->net_tx_buf[*buf_out];
	for (i = 0; i < NET_HDR_LEN; i++) /* no offloads: flags 0, GSO none */
		b[i] = 0;
	return b + NET_HDR_LEN;
}

void tg_net_tx_send(struct tg_dev *d, uint16_t buf, uint32_t len)
{
	struct tg_net *n = &d->net;
	uint8_t *f = d->net_tx_buf[buf] + NET_HDR_LEN;

	for (; len < 60; len++) /* the Ethernet minimum, without FCS */
		f[len] = 0;
	n->txq.desc[buf].len = NET_HDR_LEN + len;
	tg_vq_add(&n->txq, buf);
	tg_io()->tx_frames++;
}
