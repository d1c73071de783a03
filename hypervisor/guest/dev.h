/*
 * The test guest's devices and network stack, all run by vCPU 0 in ring 3
 * from its workload loop: poll-mode virtio-net and virtio-blk drivers
 * (net.c, blk.c, on virtio.c), Ethernet/ARP/IPv4/ICMP/UDP (ip.c), a small TCP
 * server (tcp.c) and the glue that initialises, polls and resets them
 * (dev.c). The services and the disk rule are abi.h's; counters go to
 * struct tg_io_state at TG_IO_STATE_GPA.
 *
 * All of their state, rings and buffers is one struct tg_dev in the rw area
 * (entry.S reserves TGL_DEV_BYTES at tg_dev_area); nothing here relies on it
 * being zero at boot. The devices write into it too: RX frames, used rings,
 * disk-read data and the blk status byte.
 *
 * Addresses and ports are kept in host byte order; the get/put helpers
 * below convert at the packet.
 */
#ifndef CASTOR_TG_DEV_H
#define CASTOR_TG_DEV_H

#include <stdint.h>

#include "hypervisor/guest/tg.h"
#include "hypervisor/guest/virtio.h"

/* ---- sizes ---------------------------------------------------------------- */

#define NET_RX_BUFS  64u   /* RX queue entries, one 2 KiB buffer each */
#define NET_TX_BUFS  32u   /* TX queue entries and buffer pool */
#define NET_BUF_SIZE 2048u /* a 12-byte virtio_net_hdr_v1 + a 1514-byte frame fit */
#define NET_HDR_LEN  12u   /* struct virtio_net_hdr_v1, num_buffers included */
#define ETH_MTU	     1500u

#define TCP_CONNS   4u
#define TCP_RXBUF   8192u  /* per connection; the receive window is its free space */
#define TCP_TXBUF   16384u /* per connection: unacknowledged and unsent answers */
#define ARP_ENTRIES 8u

#define BLK_QUEUE_SIZE 4u /* one request (3 descriptors) in flight at a time */

/* ---- virtio-net feature bits we may accept ---------------------------------- */

#define VIO_NET_F_MAC	    5
#define VIO_NET_F_MRG_RXBUF 15
#define VIO_NET_F_STATUS    16
#define VIO_NET_S_LINK_UP   1u

/* ---- virtio-blk -------------------------------------------------------------- */

#define VIO_BLK_F_RO	      5
#define VIO_BLK_F_FLUSH	      9
#define VIO_BLK_T_IN	      0u
#define VIO_BLK_T_OUT	      1u
#define VIO_BLK_T_FLUSH	      4u
#define VIO_BLK_T_GET_ID      8u
#define VIO_BLK_S_OK	      0u
#define BLK_SECTORS_PER_BLOCK (TG_BLK_BLOCK / 512u)

/* ---- state ------------------------------------------------------------------- */

struct tg_net {
	uint64_t mmio; /* 0: no NIC */
	uint64_t features;
	uint32_t up;	   /* the NIC runs (DRIVER_OK done) */
	uint32_t stack_on; /* params->ip != 0: IP services answer */
	uint32_t rx_skip;  /* MRG_RXBUF: buffers of an oversized frame still to drop */
	uint16_t link;	   /* config status (VIRTIO_NET_F_STATUS), else link up */
	uint8_t mac[6];
	uint16_t tx_nfree;
	uint16_t tx_free[NET_TX_BUFS];
	struct tg_vq rxq, txq;
};

struct tg_arp_entry {
	uint32_t ip; /* 0: unused */
	uint8_t mac[6];
};

struct tg_ip {
	uint32_t addr, mask, gw; /* host byte order; addr 0: the stack is off */
	uint16_t id;		 /* IPv4 identification of our next datagram */
	uint32_t arp_victim;	 /* next cache slot to replace */
	uint64_t arp_req_tsc;	 /* last ARP request we sent (rate limit) */
	struct tg_arp_entry arp[ARP_ENTRIES];
};

enum tcp_state {
	TCP_S_CLOSED = 0, /* a free slot */
	TCP_S_SYN_RCVD,
	TCP_S_ESTABLISHED,
	TCP_S_CLOSE_WAIT,
	TCP_S_LAST_ACK,
	TCP_S_FIN_WAIT_1,
	TCP_S_FIN_WAIT_2,
	TCP_S_CLOSING,
	TCP_S_TIME_WAIT,
};

struct tg_tcp_conn {
	uint8_t rx[TCP_RXBUF]; /* received bytes not yet turned into answers */
	uint8_t tx[TCP_TXBUF]; /* ring: answers from snd_una on, acked bytes dropped */
	uint32_t state;	       /* enum tcp_state */
	uint32_t peer_ip;
	uint16_t peer_port;
	uint8_t peer_mac[6];
	uint32_t iss, irs;
	uint32_t snd_una, snd_nxt, snd_max; /* snd_max: highest seq sent + 1 */
	uint32_t snd_wnd;		    /* the peer's window */
	uint32_t mss;			    /* our segments' payload limit */
	uint32_t rcv_nxt;
	uint32_t rx_len;
	uint32_t tx_head, tx_len; /* tx[tx_head] holds the byte at snd_una */
	uint32_t fin_queued;	  /* our FIN follows the last byte in tx */
	uint32_t fin_seq;	  /* its sequence number, once queued */
	uint32_t fin_rcvd;
	uint32_t discard; /* a bad request: answer nothing more, close */
	uint32_t retries; /* timeouts since the last progress */
	uint32_t dupacks; /* duplicate ACKs in a row (fast retransmit at 3) */
	uint64_t rto;	  /* current retransmission timeout, TSC ticks */
	uint64_t rto_at;  /* TSC deadline; 0 = timer off */
	uint64_t tw_until;
};

/* The virtio-blk request: header (device reads), status (device writes). */
struct tg_blk_req {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
	uint8_t status;
	uint8_t pad[7];
};

enum blk_step {
	BLK_STEP_BLOCK = 0, /* start the next block when the rate allows */
	BLK_STEP_READBACK,  /* write mode: read back the block just written */
	BLK_STEP_FLUSH,	    /* end of a pass: flush before the next */
};

struct tg_blk {
	uint64_t mmio; /* 0: no disk */
	uint64_t features;
	uint64_t capacity; /* sectors */
	uint32_t up;
	uint32_t runnable; /* the workload is configured and fits the disk */
	uint32_t verify_only;
	uint32_t busy; /* a request is in flight */
	uint32_t step; /* enum blk_step */
	uint32_t cur_type;
	uint64_t first, count, seed;
	uint64_t gen, next; /* pass and block, mirrored to io_state */
	uint64_t rate;	    /* blocks/s the period was computed for */
	uint64_t period;    /* TSC ticks between blocks */
	uint64_t due;	    /* TSC at which the next block may start */
	struct tg_vq vq;
};

struct tg_dev {
	/* Device-visible memory first: page-aligned rings and buffers. */
	struct tg_vq_page net_rxq_page, net_txq_page, blk_q_page;
	uint64_t blk_data[TG_BLK_BLOCK / 8] __attribute__((aligned(4096)));
	uint8_t net_rx_buf[NET_RX_BUFS][NET_BUF_SIZE];
	uint8_t net_tx_buf[NET_TX_BUFS][NET_BUF_SIZE];
	struct tg_blk_req blk_req;
	/* Driver and stack state. */
	uint64_t tsc_per_ms;
	struct tg_net net;
	struct tg_ip ip;
	struct tg_blk blk;
	struct tg_tcp_conn tcp[TCP_CONNS];
};

/* Defined by entry.S: TGL_DEV_BYTES in the rw area, page-aligned. */
extern char tg_dev_area[];

static inline struct tg_dev *tg_dev(void)
{
	return (struct tg_dev *)(uintptr_t)tg_dev_area;
}

/* ---- bytes ------------------------------------------------------------------- */

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* No libc: byte loops the compiler must not turn into memcpy/memset calls. */
static inline void tg_copy(uint8_t *dst, const uint8_t *src, uint32_t n)
{
	while (n--)
		*dst++ = *src++;
}

/* ---- net.c: the virtio-net driver ---------------------------------------------- */

int tg_net_start(struct tg_dev *d, const char **why_out);
void tg_net_poll(struct tg_dev *d, uint64_t now);
/* A TX buffer: returns where the Ethernet frame goes (NET_BUF_SIZE -
 * NET_HDR_LEN bytes) and its index, or 0 when none is free. */
uint8_t *tg_net_tx_alloc(struct tg_dev *d, uint16_t *buf_out);
/* Queue the frame of `len` bytes in buffer `buf` (published at the end of
 * the poll). */
void tg_net_tx_send(struct tg_dev *d, uint16_t buf, uint32_t len);

/* ---- ip.c: Ethernet, ARP, IPv4, ICMP, UDP ---------------------------------------- */

#define IP_PROTO_ICMP 1u
#define IP_PROTO_TCP  6u
#define IP_PROTO_UDP  17u
#define ETH_HLEN      14u
#define IP_HLEN	      20u

void tg_ip_init(struct tg_dev *d, const volatile struct tg_params *p);
/* A received frame (without the virtio header). */
void tg_eth_input(struct tg_dev *d, const uint8_t *f, uint32_t len, uint64_t now);
/* Start a datagram to `dst` via `mac` (0: resolve dst by ARP; dropped on a
 * miss): returns where its payload goes (ETH_MTU - IP_HLEN bytes), or 0. */
uint8_t *tg_ip_tx_begin(struct tg_dev *d, const uint8_t *mac, uint32_t dst, uint16_t *buf_out,
			uint64_t now);
/* Fill in the Ethernet and IPv4 headers and send `len` payload bytes. */
void tg_ip_tx_end(struct tg_dev *d, uint16_t buf, uint32_t dst, uint32_t proto, uint32_t len);
/* The Internet checksum: sum 16-bit big-endian words, then fold. */
uint64_t tg_csum_add(uint64_t sum, const uint8_t *p, uint32_t n);
uint16_t tg_csum_fold(uint64_t sum);
/* Sum of the TCP/UDP pseudo-header. */
uint64_t tg_csum_pseudo(uint32_t src, uint32_t dst, uint32_t proto, uint32_t len);
/* Decimal ASCII: parse [s, s + n) (1..20 digits, no overflow), or format. */
int tg_parse_dec(const uint8_t *s, uint32_t n, uint64_t *out);
uint32_t tg_format_dec(uint8_t *out, uint64_t v);

/* ---- tcp.c ----------------------------------------------------------------------- */

void tg_tcp_init(struct tg_dev *d);
void tg_tcp_input(struct tg_dev *d, const uint8_t *src_mac, uint32_t src_ip, const uint8_t *seg,
		  uint32_t len, uint64_t now);
/* Retransmission and TIME-WAIT timers; sends what buffers and windows allow. */
void tg_tcp_poll(struct tg_dev *d, uint64_t now);

/* ---- blk.c: the virtio-blk driver and the disk workload ---------------------------- */

int tg_blk_start(struct tg_dev *d, const char **why_out);
void tg_blk_workload_init(struct tg_dev *d, const volatile struct tg_params *p);
void tg_blk_poll(struct tg_dev *d, uint64_t now);

#endif
