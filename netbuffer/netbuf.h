/*
 * castor_netbuf: the network side of a VM. Today: the tap backend of
 * virtio-net -- frames pass straight through between the guest's NIC and a
 * tap device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, non-blocking, served on the
 * VM's I/O thread). Output commit (per-epoch queues released on the
 * secondary's ack, design.md §5) is added here by later issues.
 *
 * Use: nb_tap_open() an existing tap, nb_tap_attach() it to a VM that has not
 * started (this adds the virtio-net device), and nb_tap_free() after
 * hv_vm_stop() and before hv_vm_free().
 *
 * A tap that disappears while the VM runs (its interface deleted) is logged
 * and marked dead; the guest keeps running and its frames are dropped.
 */
#ifndef CASTOR_NETBUF_H
#define CASTOR_NETBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"

/* "52:54:00:12:34:56" -> 6 bytes; -EINVAL unless exactly that form (unicast). */
int nb_mac_parse(const char *s, uint8_t mac[6]);
void nb_mac_format(const uint8_t mac[6], char out[18]);

struct nb_tap;

/*
 * Open the existing tap interface `ifname` (-ENODEV when there is none: taps
 * are created by the operator, e.g. `ip tuntap add dev NAME mode tap`).
 * `why` receives a sentence on failure.
 */
int nb_tap_open(const char *ifname, struct nb_tap **out, char *why, size_t why_len);
/* Add a virtio-net device with `mac` to `vm` and connect it to the tap. */
int nb_tap_attach(struct nb_tap *tap, struct hv_vm *vm, const uint8_t mac[6]);
void nb_tap_free(struct nb_tap *tap); /* NULL is fine */

struct nb_tap_stats {
	uint64_t tx_frames, tx_bytes, tx_dropped; /* guest -> tap */
	uint64_t rx_frames, rx_bytes, rx_dropped; /* tap -> guest */
	uint64_t rx_waits;			  /* times the guest had no buffer */
	bool dead;				  /* the interface went away */
};
void nb_tap_stats(struct nb_tap *tap, struct nb_tap_stats *out);
const char *nb_tap_name(const struct nb_tap *tap);
struct hv_net *nb_tap_net(struct nb_tap *tap);

#endif
