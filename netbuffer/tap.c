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

static int tap_tx(void *be, const struct iovec *iov, int iovcnt, size_t len)
{
	struct nb_tap *t = be;
	ssize_t r;

	if (t->stats.dead) {
		pthread_mutex_lock(&t->lock);
		t->stats.tx_dropped++;
		pthread_mutex_unlock(&t->lock);
		return 0;
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

void nb_tap_free(struct nb_tap *t)
{
	if (!t)
		return;
	hv_io_watch_free(t->watch);
	if (t->fd >= 0)
		close(t->fd);
	pthread_mutex_destroy(&t->lock);
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
