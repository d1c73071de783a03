/*
 * Ethernet II, ARP, IPv4, ICMP echo and the UDP service (abi.h TG_UDP_PORT:
 * "<seq>" -> "<seq> <count>"), for the test guest's network stack. IPv4
 * only, no fragments (dropped), IP options skipped. Every checksum is
 * computed and verified here (no offloads). Replies go back to the MAC the
 * request came from, so a server never needs to ARP; tg_ip_tx_begin()
 * without a MAC resolves through the ARP cache and sends an ARP request on
 * a miss (the datagram is dropped).
 *
 * rx_dropped counts received frames that no service used: not addressed to
 * us, not IPv4/ARP, malformed, a bad checksum, a fragment, an unknown
 * protocol or port.
 */
#include "hypervisor/guest/dev.h"

#define ETH_P_IP	0x0800u
#define ETH_P_ARP	0x0806u
#define ARP_LEN		28u
#define ARP_REQUEST	1u
#define ARP_REPLY	2u
#define ARP_RETRY_MS	100u /* at most one ARP request per this */
#define IP_TTL		64u
#define IP_DF		0x4000u
#define ICMP_ECHO_REPLY 0u
#define ICMP_ECHO	8u

static const uint8_t mac_bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static int mac_eq(const uint8_t *a, const uint8_t *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static void drop(void)
{
	tg_io()->rx_dropped++;
}

uint64_t tg_csum_add(uint64_t sum, const uint8_t *p, uint32_t n)
{
	for (; n > 1; n -= 2, p += 2)
		sum += get16(p);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

uint16_t tg_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint64_t tg_csum_pseudo(uint32_t src, uint32_t dst, uint32_t proto, uint32_t len)
{
	return (uint64_t)(src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

int tg_parse_dec(const uint8_t *s, uint32_t n, uint64_t *out)
{
	uint64_t v = 0;
	uint32_t i;

	if (n == 0 || n > 20)
		return -1;
	for (i = 0; i < n; i++) {
		uint64_t digit = (uint64_t)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - digit) / 10)
			return -1;
		v = v * 10 + digit;
	}
	*out = v;
	return 0;
}

uint32_t tg_format_dec(uint8_t *out, uint64_t v)
{
	uint8_t tmp[20];
	uint32_t n = 0, i;

	do {
		tmp[n++] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

void tg_ip_init(struct tg_dev *d, const volatile struct tg_params *p)
{
	struct tg_ip *ip = &d->ip;
	uint32_t i;

	ip->addr = __builtin_bswap32(p->ip);
	ip->mask = __builtin_bswap32(p->netmask);
	ip->gw = __builtin_bswap32(p->gateway);
	ip->id = (uint16_t)tg_rdtsc();
	ip->arp_victim = 0;
	ip->arp_req_tsc = 0;
	for (i = 0; i < ARP_ENTRIES; i++)
		ip->arp[i].ip = 0;
}

/* ---- ARP ------------------------------------------------------------------- */

static struct tg_arp_entry *arp_find(struct tg_ip *ip, uint32_t addr)
{
	uint32_t i;

	for (i = 0; i < ARP_ENTRIES; i++)
		if (ip->arp[i].ip == addr)
			return &ip->arp[i];
	return 0;
}

static void arp_learn(struct tg_ip *ip, uint32_t addr, const uint8_t *mac, int insert)
{
	struct tg_arp_entry *e = arp_find(ip, addr);

	if (!e && insert) {
		e = arp_find(ip, 0);
		if (!e) {
			e = &ip->arp[ip->arp_victim];
			ip->arp_victim = (ip->arp_victim + 1) % ARP_ENTRIES;
		}
		e->ip = addr;
	}
	if (e)
		tg_copy(e->mac, mac, 6);
}

/* An ARP packet (request or reply) into a fresh TX buffer. */
static void arp_send(struct tg_dev *d, uint32_t op, const uint8_t *dst_mac, const uint8_t *tha,
		     uint32_t tpa)
{
	uint16_t buf;
	uint8_t *f = tg_net_tx_alloc(d, &buf), *a;

	if (!f)
		return;
	tg_copy(f, dst_mac, 6);
	tg_copy(f + 6, d->net.mac, 6);
	put16(f + 12, ETH_P_ARP);
	a = f + ETH_HLEN;
	put16(a, 1); /* Ethernet */
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	tg_copy(a + 8, d->net.mac, 6);
	put32(a + 14, d->ip.addr);
	tg_copy(a + 18, tha, 6);
	put32(a + 24, tpa);
	tg_net_tx_send(d, buf, ETH_HLEN + ARP_LEN);
}

static void arp_input(struct tg_dev *d, const uint8_t *eth, const uint8_t *a, uint32_t len)
{
	struct tg_ip *ip = &d->ip;
	uint32_t op, spa, tpa;

	if (len < ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4) {
		drop();
		return;
	}
	op = get16(a + 6);
	spa = get32(a + 14);
	tpa = get32(a + 24);
	/* RFC 826: refresh a known sender; add it when the packet is for us. */
	if (spa != 0)
		arp_learn(ip, spa, a + 8, tpa == ip->addr);
	if (tpa != ip->addr || (op != ARP_REQUEST && op != ARP_REPLY)) {
		drop();
		return;
	}
	if (op == ARP_REQUEST) {
		arp_send(d, ARP_REPLY, eth + 6, a + 8, spa);
		tg_io()->arp_replies++;
	}
}

/* ---- IPv4 output ------------------------------------------------------------- */

uint8_t *tg_ip_tx_begin(struct tg_dev *d, const uint8_t *mac, uint32_t dst, uint16_t *buf_out,
			uint64_t now)
{
	struct tg_ip *ip = &d->ip;
	uint8_t *f;

	if (!mac) {
		uint32_t hop = (dst & ip->mask) == (ip->addr & ip->mask) ? dst : ip->gw;
		struct tg_arp_entry *e = hop ? arp_find(ip, hop) : 0;
		uint8_t zero_mac[6] = {0, 0, 0, 0, 0, 0};

		if (!hop)
			return 0; /* off-link and no gateway */
		if (!e) {
			if (now - ip->arp_req_tsc >= ARP_RETRY_MS * d->tsc_per_ms) {
				ip->arp_req_tsc = now;
				arp_send(d, ARP_REQUEST, mac_bcast, zero_mac, hop);
			}
			return 0;
		}
		mac = e->mac;
	}
	f = tg_net_tx_alloc(d, buf_out);
	if (!f)
		return 0;
	tg_copy(f, mac, 6);
	return f + ETH_HLEN + IP_HLEN;
}

void tg_ip_tx_end(struct tg_dev *d, uint16_t buf, uint32_t dst, uint32_t proto, uint32_t len)
{
	uint8_t *f = d->net_tx_buf[buf] + NET_HDR_LEN, *h = f + ETH_HLEN;

	tg_copy(f + 6, d->net.mac, 6);
	put16(f + 12, ETH_P_IP);
	h[0] = 0x45;
	h[1] = 0;
	put16(h + 2, IP_HLEN + len);
	put16(h + 4, d->ip.id++);
	put16(h + 6, IP_DF);
	h[8] = IP_TTL;
	h[9] = (uint8_t)proto;
	put16(h + 10, 0);
	put32(h + 12, d->ip.addr);
	put32(h + 16, dst);
	put16(h + 10, tg_csum_fold(tg_csum_add(0, h, IP_HLEN)));
	tg_net_tx_send(d, buf, ETH_HLEN + IP_HLEN + len);
}

/* ---- ICMP and UDP -------------------------------------------------------------- */

static void icmp_input(struct tg_dev *d, const uint8_t *mac, uint32_t src, const uint8_t *m,
		       uint32_t len, uint64_t now)
{
	uint16_t buf;
	uint8_t *p;

	if (len < 8 || tg_csum_fold(tg_csum_add(0, m, len)) != 0 || m[0] != ICMP_ECHO || m[1]) {
		drop();
		return;
	}
	p = tg_ip_tx_begin(d, mac, src, &buf, now);
	if (!p)
		return;
	tg_copy(p, m, len);
	p[0] = ICMP_ECHO_REPLY;
	put16(p + 2, 0);
	put16(p + 2, tg_csum_fold(tg_csum_add(0, p, len)));
	tg_ip_tx_end(d, buf, src, IP_PROTO_ICMP, len);
	tg_io()->icmp_replies++;
}

/* "<seq>" or "<seq>\n" -> "<seq> <count>" (with the same trailing newline). */
static void udp_input(struct tg_dev *d, const uint8_t *mac, uint32_t src, const uint8_t *u,
		      uint32_t len, uint64_t now)
{
	volatile struct tg_io_state *io = tg_io();
	uint32_t ulen, n, newline, out;
	uint64_t seq, count;
	uint16_t buf, csum;
	uint8_t *p;

	if (len < 8 || (ulen = get16(u + 4)) < 8 || ulen > len) {
		drop();
		return;
	}
	if (get16(u + 6) != 0 && tg_csum_fold(tg_csum_pseudo(src, d->ip.addr, IP_PROTO_UDP, ulen) +
					      tg_csum_add(0, u, ulen)) != 0) {
		drop();
		return;
	}
	n = ulen - 8;
	newline = n > 0 && u[8 + n - 1] == '\n';
	if (get16(u + 2) != TG_UDP_PORT || tg_parse_dec(u + 8, n - newline, &seq)) {
		drop();
		return;
	}
	p = tg_ip_tx_begin(d, mac, src, &buf, now);
	if (!p)
		return;
	count = io->udp_answered + 1;
	io->udp_answered = count;
	out = 8;
	out += tg_format_dec(p + out, seq);
	p[out++] = ' ';
	out += tg_format_dec(p + out, count);
	if (newline)
		p[out++] = '\n';
	put16(p, TG_UDP_PORT);
	put16(p + 2, get16(u));
	put16(p + 4, out);
	put16(p + 6, 0);
	csum = tg_csum_fold(tg_csum_pseudo(d->ip.addr, src, IP_PROTO_UDP, out) +
			    tg_csum_add(0, p, out));
	put16(p + 6, csum ? csum : 0xffff);
	tg_ip_tx_end(d, buf, src, IP_PROTO_UDP, out);
}

/* ---- input ------------------------------------------------------------------- */

static int is_bad_source(const struct tg_ip *ip, uint32_t src)
{
	uint32_t bcast = (ip->addr & ip->mask) | ~ip->mask;

	return src == 0 || src == 0xffffffffu || (src >> 28) == 0xe || src == bcast ||
	       src == ip->addr;
}

static void ip_input(struct tg_dev *d, const uint8_t *eth, const uint8_t *h, uint32_t len,
		     uint64_t now)
{
	struct tg_ip *ip = &d->ip;
	uint32_t ihl, tot, src, proto;
	const uint8_t *pl;

	if (len < IP_HLEN || h[0] >> 4 != 4 || (ihl = (h[0] & 0xfu) * 4) < IP_HLEN ||
	    (tot = get16(h + 2)) < ihl || tot > len || tg_csum_fold(tg_csum_add(0, h, ihl)) != 0 ||
	    (get16(h + 6) & 0x3fffu) != 0 /* MF or an offset: a fragment */ ||
	    get32(h + 16) != ip->addr || is_bad_source(ip, get32(h + 12))) {
		drop();
		return;
	}
	src = get32(h + 12);
	proto = h[9];
	pl = h + ihl;
	tot -= ihl;
	switch (proto) {
	case IP_PROTO_ICMP:
		icmp_input(d, eth + 6, src, pl, tot, now);
		break;
	case IP_PROTO_UDP:
		udp_input(d, eth + 6, src, pl, tot, now);
		break;
	case IP_PROTO_TCP:
		if (tot < 20 || tg_csum_fold(tg_csum_pseudo(src, ip->addr, IP_PROTO_TCP, tot) +
					     tg_csum_add(0, pl, tot)) != 0) {
			drop();
			return;
		}
		tg_tcp_input(d, eth + 6, src, pl, tot, now);
		break;
	default:
		drop();
		break;
	}
}

void tg_eth_input(struct tg_dev *d, const uint8_t *f, uint32_t len, uint64_t now)
{
	uint32_t type;

	if (len < ETH_HLEN || !(mac_eq(f, d->net.mac) || mac_eq(f, mac_bcast))) {
		drop();
		return;
	}
	type = get16(f + 12);
	if (type == ETH_P_ARP)
		arp_input(d, f, f + ETH_HLEN, len - ETH_HLEN);
	else if (type == ETH_P_IP)
		ip_input(d, f, f + ETH_HLEN, len - ETH_HLEN, now);
	else
		drop();
}
