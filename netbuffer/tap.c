/*
 * The tap backend of virtio-net: pass-through between the guest's NIC and a
 * tap device. Reads happen on the VM's I/O thread (behind its pause gate, so
 * frames arriving while the VM is paused wait in the tap's queue); a frame the
 * guest has no buffer for is kept and the tap is not read again until the
 * guest posts buffers.
 */
#define LOG_TAG "tap"
#include "netbuffer/netbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h> /* before linux/if_tun.h, which must not pull in linux/if.h */
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/util.h"

#define TAP_VNET_HDR_LEN 12
#define TAP_FRAME_MAX	 (TAP_VNET_HDR_LEN + 65535)
#define TAP_READ_BATCH	 64

struct nb_tap {
	char name[IFNAMSIZ];
	int fd;
	struct hv_vm *vm;
	struct hv_net *net;
	struct hv_io_watch *watch;
	pthread_mutex_t lock; /* stats */
	struct nb_tap_stats stats;
	size_t pending_len; /* a read frame waiting for guest buffers */
	uint8_t buf[TAP_FRAME_MAX];
	/* output commit: TX goes through the queue while it is protected */
	struct nb_queue *q;
	uint32_t q_index;
	nb_queued_fn queued_cb;
	void *queued_arg;
	pthread_mutex_t tx_lock;      /* txbuf: TX may come from more than one thread */
	uint8_t txbuf[TAP_FRAME_MAX]; /* a TX frame made flat for the queue */
	/* the announce thread */
	pthread_t announce_thread;
	bool announcing;
	uint8_t announce_mac[6];
	uint32_t announce_ip;
	unsigned announce_rounds;
};

int nb_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	int i;

	if (!s || strlen(s) != 17 ||
	    sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (i = 0; i < 17; i++)
		if ((i % 3 == 2) != (s[i] == ':'))
			return -EINVAL;
	if (v[0] & 1)
		return -EINVAL; /* multicast/broadcast: not a NIC address */
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

void nb_mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
}

int nb_tap_open(const char *ifname, struct nb_tap **out, char *why, size_t why_len)
{
	struct nb_tap *t = NULL;
	struct ifreq ifr;
	int hdr = TAP_VNET_HDR_LEN, rc;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ) {
		snprintf(why, why_len, "'%s' is not an interface name", ifname ? ifname : "");
		return -EINVAL;
	}
	/* TUNSETIFF would create a missing tap: refuse instead, the name is likely a typo */
	if (!if_nametoindex(ifname)) {
		snprintf(why, why_len,
			 "tap %s does not exist (create it first: ip tuntap add dev %s mode tap)",
			 ifname, ifname);
		return -ENODEV;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_mutex_init(&t->tx_lock, NULL);
	snprintf(t->name, sizeof(t->name), "%s", ifname);
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot open /dev/net/tun: %s", strerror(errno));
		goto fail;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot attach to %s (is it a tap, and free?): %s", ifname,
			 strerror(errno));
		goto fail;
	}
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(t->fd, TUNSETOFFLOAD, 0) < 0) {
		rc = -errno;
		snprintf(why, why_len, "%s: setting up the virtio header: %s", ifname,
			 strerror(errno));
		goto fail;
	}
	*out = t;
	return 0;
fail:
	nb_tap_free(t);
	return rc;
}

static void mark_dead(struct nb_tap *t, int err)
{
	pthread_mutex_lock(&t->lock);
	if (!t->stats.dead)
		LOG_ERR("vm %s: tap %s is gone (%s); the guest's NIC is now cut off",
			hv_vm_name(t->vm), t->name, strerror(err));
	t->stats.dead = true;
	pthread_mutex_unlock(&t->lock);
	if (t->watch)
		hv_io_watch_enable(t->watch, false);
}

static bool is_gone(int err)
{
	return err == EBADFD || err == EIO || err == ENXIO || err == ENODEV;
}

/* A frame is held for its epoch's ack: flat copy into the queue. */
static int queue_tx(struct nb_tap *t, const struct iovec *iov, int iovcnt, size_t len)
{
	size_t off = 0;
	int i, rc;

	if (len > sizeof(t->txbuf))
		return -EMSGSIZE;
	pthread_mutex_lock(&t->tx_lock);
	for (i = 0; i < iovcnt; i++) {
		memcpy(t->txbuf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	rc = nb_output(t->q, NB_KIND_NET_FRAME | t->q_index << 8, t->txbuf, len);
	pthread_mutex_unlock(&t->tx_lock);
	pthread_mutex_lock(&t->lock);
	if (!rc)
		t->stats.tx_queued++;
	else
		t->stats.tx_queue_full++; /* dropped, as a congested wire would: TCP resends */
	pthread_mutex_unlock(&t->lock);
	if (!rc && t->queued_cb)
		t->queued_cb(t->queued_arg);
	return 0;
}

/* Frame to the tap, counted (the unprotected path, and released frames). */
static void write_frame(struct nb_tap *t, const struct iovec *iov, int iovcnt, size_t len)
{
	ssize_t r;

	if (t->stats.dead) {
		pthread_mutex_lock(&t->lock);
		t->stats.tx_dropped++;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	do
		r = writev(t->fd, iov, iovcnt);
	while (r < 0 && errno == EINTR);
	if (r < 0 && is_gone(errno))
		mark_dead(t, errno);
	pthread_mutex_lock(&t->lock);
	if (r == (ssize_t)len) {
		t->stats.tx_frames++;
		t->stats.tx_bytes += len - TAP_VNET_HDR_LEN;
	} else {
		t->stats.tx_dropped++; /* a full tap queue drops, as a wire would */
	}
	pthread_mutex_unlock(&t->lock);
}

static int tap_tx(void *be, const struct iovec *iov, int iovcnt, size_t len)
{
	struct nb_tap *t = be;

	if (t->q && nb_queue_is_protected(t->q))
		return queue_tx(t, iov, iovcnt, len);
	write_frame(t, iov, iovcnt, len);
	return 0;
}

/* Deliver the pending frame; false when the guest still has no buffer. */
static bool deliver_pending(struct nb_tap *t)
{
	int rc;

	if (!t->pending_len)
		return true;
	rc = hv_net_rx(t->net, t->buf, t->pending_len);
	if (rc == -ENOBUFS)
		return false;
	pthread_mutex_lock(&t->lock);
	if (rc == 0) {
		t->stats.rx_frames++;
		t->stats.rx_bytes += t->pending_len - TAP_VNET_HDR_LEN;
	} else {
		t->stats.rx_dropped++; /* the NIC is not running */
	}
	pthread_mutex_unlock(&t->lock);
	t->pending_len = 0;
	return true;
}

static void tap_read_cb(void *arg, int fd, short events)
{
	struct nb_tap *t = arg;
	int i;

	for (i = 0; i < TAP_READ_BATCH; i++) {
		ssize_t r;

		if (!deliver_pending(t)) {
			pthread_mutex_lock(&t->lock);
			t->stats.rx_waits++;
			pthread_mutex_unlock(&t->lock);
			hv_io_watch_enable(t->watch, false); /* until rx_ready() */
			return;
		}
		r = read(t->fd, t->buf, sizeof(t->buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (is_gone(errno))
				mark_dead(t, errno);
			return;
		}
		if (r < TAP_VNET_HDR_LEN)
			continue;
		t->pending_len = (size_t)r;
	}
	deliver_pending(t);
}

static void tap_rx_ready(void *be)
{
	struct nb_tap *t = be;

	if (t->stats.dead || !t->watch)
		return;
	if (deliver_pending(t))
		hv_io_watch_enable(t->watch, true);
}

static const struct hv_net_backend_ops tap_ops = {
	.tx = tap_tx,
	.rx_ready = tap_rx_ready,
};

int nb_tap_attach(struct nb_tap *t, struct hv_vm *vm, const uint8_t mac[6])
{
	struct hv_net_config cfg = {.ops = &tap_ops, .be = t};
	int rc;

	memcpy(cfg.mac, mac, 6);
	t->vm = vm;
	rc = hv_net_add(vm, &cfg, &t->net);
	if (rc < 0)
		return rc;
	return hv_io_watch_add(vm, t->fd, HV_IO_READ, tap_read_cb, t, &t->watch);
}

void nb_tap_set_queue(struct nb_tap *t, struct nb_queue *q, uint32_t index, nb_queued_fn queued_cb,
		      void *arg)
{
	t->q = q;
	t->q_index = index;
	t->queued_cb = queued_cb;
	t->queued_arg = arg;
}

void nb_tap_release(struct nb_tap *t, const void *frame, size_t len)
{
	struct iovec iov = {(void *)frame, len};

	write_frame(t, &iov, 1, len);
}

/* ---- announce ------------------------------------------------------------------ */

/* One frame out of the tap, with an all-zero virtio-net header. */
static void send_raw(struct nb_tap *t, const uint8_t *eth, size_t len)
{
	uint8_t frame[TAP_VNET_HDR_LEN + 64] = {0};

	memcpy(frame + TAP_VNET_HDR_LEN, eth, len);
	nb_tap_release(t, frame, TAP_VNET_HDR_LEN + (len < 60 ? 60 : len));
	pthread_mutex_lock(&t->lock);
	t->stats.announces++;
	pthread_mutex_unlock(&t->lock);
}

/*
 * ARP-format body: htype 1, ptype 0x0800, hlen 6, plen 4, op, sender MAC/IP,
 * target MAC/IP. RARP "request reverse" (op 3) names the MAC as both sender
 * and target, as QEMU's announce does; a gratuitous ARP is a request (op 1)
 * for the sender's own IP.
 */
static size_t announce_frame(uint8_t *f, const uint8_t mac[6], uint16_t ethertype, uint16_t op,
			     uint32_t ip)
{
	static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t *a = f + 14;

	memset(f, 0, 60);
	memcpy(f, bcast, 6);
	memcpy(f + 6, mac, 6);
	f[12] = (uint8_t)(ethertype >> 8);
	f[13] = (uint8_t)ethertype;
	a[1] = 1;				  /* htype: Ethernet */
	a[2] = 0x08;				  /* ptype: IPv4 */
	a[4] = 6;				  /* hlen */
	a[5] = 4;				  /* plen */
	a[7] = (uint8_t)op;			  /* op (high byte 0) */
	memcpy(a + 8, mac, 6);			  /* sender MAC */
	memcpy(a + 14, &ip, 4);			  /* sender IP */
	memcpy(a + 18, op == 3 ? mac : bcast, 6); /* target MAC */
	memcpy(a + 24, &ip, 4);			  /* target IP */
	if (op == 1)
		memset(a + 18, 0, 6); /* gratuitous ARP request: target MAC unknown */
	return 60;
}

static void *announce_main(void *arg)
{
	struct nb_tap *t = arg;
	uint8_t f[64];
	unsigned i;

	pthread_setname_np(pthread_self(), "castor-announce");
	for (i = 0; i < t->announce_rounds; i++) {
		if (i)
			util_sleep_ns((uint64_t)(50 * i) * 1000000ull); /* 50, 100, 150 ms ... */
		send_raw(t, f, announce_frame(f, t->announce_mac, 0x8035, 3, 0));
		if (t->announce_ip)
			send_raw(t, f,
				 announce_frame(f, t->announce_mac, 0x0806, 1, t->announce_ip));
	}
	LOG_INFO("tap %s: announced %02x:%02x:%02x:%02x:%02x:%02x %u times", t->name,
		 t->announce_mac[0], t->announce_mac[1], t->announce_mac[2], t->announce_mac[3],
		 t->announce_mac[4], t->announce_mac[5], t->announce_rounds);
	return NULL;
}

int nb_tap_announce(struct nb_tap *t, const uint8_t mac[6], uint32_t ipv4, unsigned rounds)
{
	int rc;

	if (t->announcing) {
		pthread_join(t->announce_thread, NULL);
		t->announcing = false;
	}
	memcpy(t->announce_mac, mac, 6);
	t->announce_ip = ipv4;
	t->announce_rounds = rounds ? rounds : 1;
	rc = -pthread_create(&t->announce_thread, NULL, announce_main, t);
	if (!rc)
		t->announcing = true;
	return rc;
}

void nb_tap_free(struct nb_tap *t)
{
	if (!t)
		return;
	if (t->announcing)
		pthread_join(t->announce_thread, NULL);
	hv_io_watch_free(t->watch);
	if (t->fd >= 0)
		close(t->fd);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->tx_lock);
	free(t);
}

void nb_tap_stats(struct nb_tap *t, struct nb_tap_stats *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->stats;
	pthread_mutex_unlock(&t->lock);
}

const char *nb_tap_name(const struct nb_tap *t)
{
	return t->name;
}

struct hv_net *nb_tap_net(struct nb_tap *t)
{
	return t->net;
}
