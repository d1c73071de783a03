/*
 * The TCP service on TG_TCP_PORT (abi.h): each request line "<seq>\n" is
 * answered with "<seq> <count>\n", count = tcp_answered after incrementing.
 * A minimal server for TCP_CONNS connections:
 *
 *   LISTEN -SYN-> SYN-RCVD -ACK-> ESTABLISHED -FIN-> CLOSE-WAIT -(our FIN)-> LAST-ACK -> CLOSED
 *   ESTABLISHED -(bad request: our FIN)-> FIN-WAIT-1 -> FIN-WAIT-2 / CLOSING -> TIME-WAIT -> CLOSED
 *
 * TIME-WAIT lasts TIME_WAIT_MS (its slot is reused first when all are busy,
 * and a new SYN from the same port replaces it); FIN-WAIT-2 ends after
 * FIN_WAIT_2_MS without the peer's FIN. A NIC reset leaves connections alone.
 *
 * Rules kept here:
 * - In-order data only: a segment that starts beyond rcv_nxt, or lies wholly
 *   before it, is dropped and answered with a duplicate ACK; one that overlaps
 *   rcv_nxt is trimmed. Data beyond the receive buffer's free space (the
 *   window we advertise) is dropped.
 * - Options: the SYN-ACK carries MSS 1460 and nothing else; of the peer's
 *   options only MSS is read, so no window scaling, timestamps or SACK.
 * - Answers wait in a per-connection ring until acknowledged. On a
 *   retransmission timeout (RTO 200 ms, doubling to 3.2 s, back to 200 ms on
 *   progress) the oldest unacknowledged segment is sent again and sending
 *   resumes from there (go-back-N); after TCP_MAX_RETRIES timeouts without
 *   progress the connection is reset and dropped. The same timer probes a
 *   zero window; a peer that answers the probes (window still 0) is alive
 *   and never dropped. The third duplicate ACK in a row also resends the
 *   oldest segment (fast retransmit), without going back.
 * - Requests are read only while the send ring has room for an answer, so
 *   a client that does not read its answers sees the window close.
 * - A request that is not 1..20 decimal digits (an optional '\r' before the
 *   '\n' is allowed) or a line longer than TCP_LINE_MAX: no more answers, the
 *   rest of the input is discarded and we close (our FIN).
 * - RST for a segment to another port or to no connection (never for a
 *   RST), and for a SYN when all TCP_CONNS slots are busy.
 */
#include "hypervisor/guest/dev.h"

#define TCP_F_FIN 0x01u
#define TCP_F_SYN 0x02u
#define TCP_F_RST 0x04u
#define TCP_F_PSH 0x08u
#define TCP_F_ACK 0x10u

#define TCP_HLEN	20u
#define TCP_OPT_MSS	2u
#define TCP_MSS_OURS	(ETH_MTU - IP_HLEN - TCP_HLEN) /* 1460 */
#define TCP_MSS_DEFAULT 536u			       /* RFC 1122, without the option */
#define TCP_MSS_MIN	64u
#define RTO_MIN_MS	200u
#define RTO_MAX_MS	3200u
#define TCP_MAX_RETRIES 8u
#define TCP_DUPACKS	3u /* duplicate ACKs that trigger a fast retransmit */
#define TIME_WAIT_MS	1000u
#define FIN_WAIT_2_MS	10000u /* a peer that never closes its side */
#define TCP_LINE_MAX	32u    /* request bytes without a newline before we give up */
#define ANSWER_MAX	42u    /* "<20 digits> <20 digits>\n" */

/* Sequence-space comparisons (mod 2^32). */
static int seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static int seq_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

/* The parts of a received segment we use. */
struct seg {
	uint32_t seq, ack, flags, wnd;
	uint16_t sport, dport;
	const uint8_t *data;
	uint32_t dlen;
};

void tg_tcp_init(struct tg_dev *d)
{
	uint32_t i;

	for (i = 0; i < TCP_CONNS; i++)
		d->tcp[i].state = TCP_S_CLOSED;
}

static uint32_t rcv_wnd(const struct tg_tcp_conn *c)
{
	return c->discard ? TCP_RXBUF : TCP_RXBUF - c->rx_len;
}

/*
 * One segment from our port `sport` to (mac, dst, dport): header, an MSS
 * option on a SYN, and n payload bytes from c's send ring starting `off`
 * bytes after snd_una. Returns 0, or -1 when no TX buffer is free.
 */
static int seg_send(struct tg_dev *d, const uint8_t *mac, uint32_t dst, uint32_t sport,
		    uint32_t dport, uint32_t seq, uint32_t ack, uint32_t flags, uint32_t wnd,
		    const struct tg_tcp_conn *c, uint32_t off, uint32_t n, uint64_t now)
{
	uint32_t hlen = flags & TCP_F_SYN ? TCP_HLEN + 4 : TCP_HLEN;
	uint16_t buf;
	uint8_t *p = tg_ip_tx_begin(d, mac, dst, &buf, now);

	if (!p)
		return -1;
	put16(p, sport);
	put16(p + 2, dport);
	put32(p + 4, seq);
	put32(p + 8, ack);
	p[12] = (uint8_t)(hlen / 4 << 4);
	p[13] = (uint8_t)flags;
	put16(p + 14, wnd);
	put16(p + 16, 0);
	put16(p + 18, 0);
	if (flags & TCP_F_SYN) {
		p[20] = TCP_OPT_MSS;
		p[21] = 4;
		put16(p + 22, TCP_MSS_OURS);
	}
	if (n) {
		uint32_t start = (c->tx_head + off) % TCP_TXBUF;
		uint32_t first = TCP_TXBUF - start < n ? TCP_TXBUF - start : n;

		tg_copy(p + hlen, c->tx + start, first);
		tg_copy(p + hlen + first, c->tx, n - first);
	}
	put16(p + 16, tg_csum_fold(tg_csum_pseudo(d->ip.addr, dst, IP_PROTO_TCP, hlen + n) +
				   tg_csum_add(0, p, hlen + n)));
	tg_ip_tx_end(d, buf, dst, IP_PROTO_TCP, hlen + n);
	return 0;
}

/* A segment of connection c: always with ACK = rcv_nxt and our window. */
static int conn_send(struct tg_dev *d, struct tg_tcp_conn *c, uint32_t seq, uint32_t flags,
		     uint32_t off, uint32_t n, uint64_t now)
{
	return seg_send(d, c->peer_mac, c->peer_ip, TG_TCP_PORT, c->peer_port, seq, c->rcv_nxt,
			flags | TCP_F_ACK, rcv_wnd(c), c, off, n, now);
}

static void send_ack(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now)
{
	conn_send(d, c, c->snd_nxt, 0, 0, 0, now);
}

static void send_synack(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now)
{
	conn_send(d, c, c->iss, TCP_F_SYN, 0, 0, now);
}

/* RFC 793 reset generation for a segment that belongs to no connection. */
static void rst_reply(struct tg_dev *d, const uint8_t *mac, uint32_t src, const struct seg *s,
		      uint64_t now)
{
	if (s->flags & TCP_F_RST)
		return;
	if (s->flags & TCP_F_ACK)
		seg_send(d, mac, src, s->dport, s->sport, s->ack, 0, TCP_F_RST, 0, 0, 0, 0, now);
	else
		seg_send(d, mac, src, s->dport, s->sport, 0,
			 s->seq + s->dlen + !!(s->flags & TCP_F_SYN) + !!(s->flags & TCP_F_FIN),
			 TCP_F_RST | TCP_F_ACK, 0, 0, 0, 0, now);
	tg_io()->tcp_resets++;
}

/* Give up on a connection: tell the peer, free the slot. */
static void conn_abort(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now)
{
	conn_send(d, c, c->snd_nxt, TCP_F_RST, 0, 0, now);
	tg_io()->tcp_resets++;
	c->state = TCP_S_CLOSED;
}

static void timer_restart(struct tg_tcp_conn *c, uint64_t now)
{
	c->rto_at = now + c->rto;
}

/* Our FIN went out for the first time: the state moves on. */
static void fin_sent(struct tg_tcp_conn *c)
{
	if (c->state == TCP_S_ESTABLISHED)
		c->state = TCP_S_FIN_WAIT_1;
	else if (c->state == TCP_S_CLOSE_WAIT)
		c->state = TCP_S_LAST_ACK;
}

/* Fast retransmit: the oldest unacknowledged segment again; snd_nxt stays. */
static void retransmit_oldest(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now)
{
	uint32_t sent = c->snd_max - c->snd_una; /* bytes (and FIN) in flight */
	uint32_t n = c->tx_len < c->mss ? c->tx_len : c->mss;
	uint32_t fin;

	if (n > sent)
		n = sent;
	fin = c->fin_queued && c->snd_una + n == c->fin_seq && seq_lt(c->fin_seq, c->snd_max);
	if (n + fin == 0)
		return;
	if (conn_send(d, c, c->snd_una, TCP_F_PSH * (n != 0) | TCP_F_FIN * fin, 0, n, now) == 0)
		tg_io()->tcp_retransmits++;
}

/*
 * Send from snd_nxt what the peer's window allows (`force`: the first
 * segment regardless, for a retransmission or a window probe), at most
 * `limit` segments (0: no limit). Returns the number sent.
 */
static uint32_t conn_output(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now, uint32_t limit,
			    int force)
{
	uint32_t sent = 0;

	if (c->state == TCP_S_CLOSED || c->state == TCP_S_SYN_RCVD ||
	    c->state == TCP_S_FIN_WAIT_2 || c->state == TCP_S_TIME_WAIT)
		return 0;
	while (limit == 0 || sent < limit) {
		uint32_t data_end = c->snd_una + c->tx_len;
		uint32_t seq = c->snd_nxt, n = 0, fin = 0;

		if (seq_lt(seq, data_end)) {
			uint32_t in_flight = seq - c->snd_una;

			n = data_end - seq < c->mss ? data_end - seq : c->mss;
			if (!force) {
				if (in_flight >= c->snd_wnd)
					break;
				if (n > c->snd_wnd - in_flight)
					n = c->snd_wnd - in_flight;
			}
			fin = c->fin_queued && seq + n == c->fin_seq;
		} else if (c->fin_queued && seq == c->fin_seq) {
			fin = 1;
		} else {
			break;
		}
		if (conn_send(d, c, seq, TCP_F_PSH * (n != 0) | TCP_F_FIN * fin, seq - c->snd_una,
			      n, now))
			break; /* no TX buffer now: the next poll goes on */
		if (seq_lt(seq, c->snd_max))
			tg_io()->tcp_retransmits++;
		c->snd_nxt = seq + n + fin;
		if (seq_lt(c->snd_max, c->snd_nxt))
			c->snd_max = c->snd_nxt;
		if (fin)
			fin_sent(c);
		if (!c->rto_at)
			timer_restart(c, now);
		sent++;
		force = 0;
	}
	/* Unsent data and no timer: the window is shut; the timer probes it. */
	if (!c->rto_at && (seq_lt(c->snd_nxt, c->snd_una + c->tx_len) ||
			   (c->fin_queued && seq_le(c->snd_nxt, c->fin_seq))))
		timer_restart(c, now);
	return sent;
}

/* Append one answer to the send ring (the caller checked the room). */
static void tx_append(struct tg_tcp_conn *c, const uint8_t *s, uint32_t n)
{
	uint32_t i, pos = (c->tx_head + c->tx_len) % TCP_TXBUF;

	for (i = 0; i < n; i++) {
		c->tx[pos] = s[i];
		pos = pos + 1 == TCP_TXBUF ? 0 : pos + 1;
	}
	c->tx_len += n;
}

/* Turn complete request lines into answers while the send ring has room. */
static void process_lines(struct tg_tcp_conn *c)
{
	volatile struct tg_io_state *io = tg_io();
	uint32_t pos = 0, i;

	while (pos < c->rx_len) {
		uint32_t nl = pos, end, n;
		uint64_t seq, count;
		uint8_t ans[ANSWER_MAX];

		while (nl < c->rx_len && c->rx[nl] != '\n')
			nl++;
		if (nl == c->rx_len) {
			if (nl - pos > TCP_LINE_MAX)
				c->discard = 1;
			break;
		}
		end = nl > pos && c->rx[nl - 1] == '\r' ? nl - 1 : nl;
		if (tg_parse_dec(c->rx + pos, end - pos, &seq)) {
			c->discard = 1;
			break;
		}
		if (TCP_TXBUF - c->tx_len < ANSWER_MAX)
			break; /* wait for ACKs to make room */
		count = io->tcp_answered + 1;
		io->tcp_answered = count;
		n = tg_format_dec(ans, seq);
		ans[n++] = ' ';
		n += tg_format_dec(ans + n, count);
		ans[n++] = '\n';
		tx_append(c, ans, n);
		pos = nl + 1;
	}
	if (c->discard) {
		c->rx_len = 0;
		return;
	}
	for (i = pos; i < c->rx_len; i++)
		c->rx[i - pos] = c->rx[i];
	c->rx_len -= pos;
}

static int has_line(const struct tg_tcp_conn *c)
{
	uint32_t i;

	for (i = 0; i < c->rx_len; i++)
		if (c->rx[i] == '\n')
			return 1;
	return 0;
}

/* After input: answer what can be answered, decide on our FIN, send. */
static uint32_t conn_service(struct tg_dev *d, struct tg_tcp_conn *c, uint64_t now)
{
	if (!c->discard && !c->fin_queued && c->state != TCP_S_SYN_RCVD)
		process_lines(c);
	if (!c->fin_queued && (c->state == TCP_S_ESTABLISHED || c->state == TCP_S_CLOSE_WAIT) &&
	    (c->discard || (c->fin_rcvd && !has_line(c)))) {
		c->rx_len = 0; /* a last line without '\n' gets no answer */
		c->fin_queued = 1;
		c->fin_seq = c->snd_una + c->tx_len;
	}
	return conn_output(d, c, now, 0, 0);
}

/*
 * The ACK field of an acceptable segment: drop acknowledged bytes, and on
 * progress start the RTO over. Returns 1 when the connection is finished
 * (our FIN acknowledged in LAST-ACK).
 */
static int ack_input(struct tg_dev *d, struct tg_tcp_conn *c, const struct seg *s, uint64_t now)
{
	if (s->ack == c->snd_una && s->wnd == 0) {
		/* Our probe answered, the window still shut: the peer is alive
		 * (RFC 1122 4.2.2.17); keep probing at the backed-off RTO. */
		c->retries = 0;
	} else if (s->ack == c->snd_una && s->dlen == 0 && !(s->flags & TCP_F_FIN) &&
		   c->snd_una != c->snd_max) {
		if (++c->dupacks == TCP_DUPACKS)
			retransmit_oldest(d, c, now);
	} else if (seq_lt(c->snd_una, s->ack)) {
		uint32_t acked = s->ack - c->snd_una;
		uint32_t data = acked < c->tx_len ? acked : c->tx_len;

		c->tx_head = (c->tx_head + data) % TCP_TXBUF;
		c->tx_len -= data;
		c->snd_una = s->ack;
		if (seq_lt(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		c->rto = RTO_MIN_MS * d->tsc_per_ms;
		c->retries = 0;
		c->dupacks = 0;
		c->rto_at = 0;
		if (c->snd_una != c->snd_max)
			timer_restart(c, now);
		/* ack <= snd_max, so an ack beyond fin_seq means our FIN was sent and is acked. */
		if (c->fin_queued && seq_lt(c->fin_seq, s->ack)) {
			if (c->state == TCP_S_LAST_ACK)
				return 1;
			if (c->state == TCP_S_FIN_WAIT_1) {
				c->state = TCP_S_FIN_WAIT_2;
				c->tw_until = now + FIN_WAIT_2_MS * d->tsc_per_ms;
			} else if (c->state == TCP_S_CLOSING) {
				c->state = TCP_S_TIME_WAIT;
				c->tw_until = now + TIME_WAIT_MS * d->tsc_per_ms;
			}
		}
	}
	if (seq_le(c->snd_una, s->ack))
		c->snd_wnd = s->wnd;
	return 0;
}

static void conn_input(struct tg_dev *d, struct tg_tcp_conn *c, const uint8_t *mac,
		       const struct seg *s0, uint64_t now)
{
	volatile struct tg_io_state *io = tg_io();
	struct seg s = *s0;
	uint32_t fin = !!(s.flags & TCP_F_FIN), taken = 0, need_ack = 0;

	if (s.flags & TCP_F_RST) {
		int ok = c->state == TCP_S_SYN_RCVD
				 ? s.seq == c->rcv_nxt
				 : seq_le(c->rcv_nxt, s.seq) &&
					   seq_lt(s.seq, c->rcv_nxt + rcv_wnd(c) + 1);

		if (ok)
			c->state = TCP_S_CLOSED;
		return;
	}
	if (s.flags & TCP_F_SYN) {
		if (c->state == TCP_S_SYN_RCVD && s.seq == c->irs) {
			send_synack(d, c, now); /* our SYN-ACK was lost */
			io->tcp_retransmits++;
		} else {
			send_ack(d, c, now); /* RFC 5961 challenge ACK */
		}
		return;
	}
	if (!(s.flags & TCP_F_ACK))
		return;
	if (c->state == TCP_S_SYN_RCVD) {
		if (s.ack != c->iss + 1) {
			rst_reply(d, mac, c->peer_ip, &s, now);
			return;
		}
		c->state = TCP_S_ESTABLISHED;
		c->snd_una = s.ack;
		c->snd_wnd = s.wnd;
		c->retries = 0;
		c->rto = RTO_MIN_MS * d->tsc_per_ms;
		c->rto_at = 0;
		io->tcp_conns++;
	}

	/* Sequence check: in order, or trimmed to start at rcv_nxt. */
	if (s.seq != c->rcv_nxt) {
		if (s.dlen + fin > 0 && seq_lt(s.seq, c->rcv_nxt) &&
		    seq_lt(c->rcv_nxt, s.seq + s.dlen + fin)) {
			uint32_t trim = c->rcv_nxt - s.seq;

			s.data += trim;
			s.dlen -= trim;
			s.seq = c->rcv_nxt;
		} else if (!(s.dlen + fin == 0 && seq_lt(c->rcv_nxt, s.seq) &&
			     seq_le(s.seq, c->rcv_nxt + rcv_wnd(c)))) {
			send_ack(d, c, now); /* duplicate ACK */
			return;
		}
	}
	if (seq_lt(c->snd_max, s.ack)) { /* acknowledges what we never sent */
		send_ack(d, c, now);
		return;
	}
	if (ack_input(d, c, &s, now)) {
		c->state = TCP_S_CLOSED;
		return;
	}
	tg_copy(c->peer_mac, mac, 6);

	if (s.dlen > 0 && s.seq == c->rcv_nxt) {
		need_ack = 1;
		if (c->state == TCP_S_ESTABLISHED || c->state == TCP_S_FIN_WAIT_1 ||
		    c->state == TCP_S_FIN_WAIT_2) {
			taken = s.dlen;
			if (!c->discard) {
				if (taken > TCP_RXBUF - c->rx_len)
					taken = TCP_RXBUF - c->rx_len;
				tg_copy(c->rx + c->rx_len, s.data, taken);
				c->rx_len += taken;
			}
			c->rcv_nxt += taken;
		}
	}
	if (fin && taken == s.dlen && s.seq + s.dlen == c->rcv_nxt &&
	    (c->state == TCP_S_ESTABLISHED || c->state == TCP_S_FIN_WAIT_1 ||
	     c->state == TCP_S_FIN_WAIT_2)) {
		c->rcv_nxt++;
		c->fin_rcvd = 1;
		need_ack = 1;
		if (c->state == TCP_S_ESTABLISHED) {
			c->state = TCP_S_CLOSE_WAIT;
		} else if (c->state == TCP_S_FIN_WAIT_1) {
			c->state = TCP_S_CLOSING;
		} else {
			c->state = TCP_S_TIME_WAIT;
			c->tw_until = now + TIME_WAIT_MS * d->tsc_per_ms;
		}
	}
	if (conn_service(d, c, now) == 0 && need_ack)
		send_ack(d, c, now);
}

/* The peer's MSS option, if any, bounded to what one of our frames holds. */
static uint32_t parse_mss(const uint8_t *opt, uint32_t n)
{
	uint32_t i = 0, mss = TCP_MSS_DEFAULT;

	while (i < n && opt[i] != 0) {
		if (opt[i] == 1) { /* NOP */
			i++;
			continue;
		}
		if (i + 1 >= n || opt[i + 1] < 2 || i + opt[i + 1] > n)
			break;
		if (opt[i] == TCP_OPT_MSS && opt[i + 1] == 4)
			mss = get16(opt + i + 2);
		i += opt[i + 1];
	}
	if (mss > TCP_MSS_OURS)
		mss = TCP_MSS_OURS;
	return mss < TCP_MSS_MIN ? TCP_MSS_MIN : mss;
}

static void accept_syn(struct tg_dev *d, const uint8_t *mac, uint32_t src, const struct seg *s,
		       const uint8_t *opt, uint32_t optlen, uint64_t now)
{
	struct tg_tcp_conn *c = 0;
	uint32_t i;

	for (i = 0; i < TCP_CONNS && !c; i++)
		if (d->tcp[i].state == TCP_S_CLOSED)
			c = &d->tcp[i];
	for (i = 0; i < TCP_CONNS && !c; i++)
		if (d->tcp[i].state == TCP_S_TIME_WAIT)
			c = &d->tcp[i];
	if (!c) {
		rst_reply(d, mac, src, s, now); /* all slots busy */
		return;
	}
	c->state = TCP_S_SYN_RCVD;
	c->peer_ip = src;
	c->peer_port = s->sport;
	tg_copy(c->peer_mac, mac, 6);
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	c->iss = (uint32_t)tg_mix(now);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->snd_wnd = s->wnd;
	c->mss = parse_mss(opt, optlen);
	c->rx_len = c->tx_head = c->tx_len = 0;
	c->fin_queued = c->fin_seq = c->fin_rcvd = c->discard = 0;
	c->retries = c->dupacks = 0;
	c->rto = RTO_MIN_MS * d->tsc_per_ms;
	timer_restart(c, now);
	c->tw_until = 0;
	send_synack(d, c, now);
}

void tg_tcp_input(struct tg_dev *d, const uint8_t *src_mac, uint32_t src_ip, const uint8_t *p,
		  uint32_t len, uint64_t now)
{
	uint32_t hlen = (uint32_t)(p[12] >> 4) * 4, i;
	struct tg_tcp_conn *c = 0;
	struct seg s;

	if (hlen < TCP_HLEN || hlen > len) {
		tg_io()->rx_dropped++;
		return;
	}
	s.sport = get16(p);
	s.dport = get16(p + 2);
	s.seq = get32(p + 4);
	s.ack = get32(p + 8);
	s.flags = p[13] & 0x3fu; /* no ECN */
	s.wnd = get16(p + 14);
	s.data = p + hlen;
	s.dlen = len - hlen;
	if (s.dport != TG_TCP_PORT) {
		rst_reply(d, src_mac, src_ip, &s, now);
		return;
	}
	for (i = 0; i < TCP_CONNS && !c; i++)
		if (d->tcp[i].state != TCP_S_CLOSED && d->tcp[i].peer_ip == src_ip &&
		    d->tcp[i].peer_port == s.sport)
			c = &d->tcp[i];
	/* A new SYN from a port whose old connection waits in TIME-WAIT. */
	if (c && c->state == TCP_S_TIME_WAIT &&
	    (s.flags & (TCP_F_SYN | TCP_F_ACK | TCP_F_RST)) == TCP_F_SYN) {
		c->state = TCP_S_CLOSED;
		c = 0;
	}
	if (c)
		conn_input(d, c, src_mac, &s, now);
	else if ((s.flags & (TCP_F_SYN | TCP_F_ACK | TCP_F_RST)) == TCP_F_SYN)
		accept_syn(d, src_mac, src_ip, &s, p + TCP_HLEN, hlen - TCP_HLEN, now);
	else
		rst_reply(d, src_mac, src_ip, &s, now);
}

void tg_tcp_poll(struct tg_dev *d, uint64_t now)
{
	uint32_t i;

	for (i = 0; i < TCP_CONNS; i++) {
		struct tg_tcp_conn *c = &d->tcp[i];

		if (c->state == TCP_S_CLOSED)
			continue;
		if (c->state == TCP_S_TIME_WAIT || c->state == TCP_S_FIN_WAIT_2) {
			if ((int64_t)(now - c->tw_until) >= 0)
				c->state = TCP_S_CLOSED;
			continue;
		}
		conn_output(d, c, now, 0, 0);
		if (!c->rto_at || (int64_t)(now - c->rto_at) < 0)
			continue;
		if (++c->retries > TCP_MAX_RETRIES) {
			conn_abort(d, c, now);
			continue;
		}
		c->rto *= 2;
		if (c->rto > RTO_MAX_MS * d->tsc_per_ms)
			c->rto = RTO_MAX_MS * d->tsc_per_ms;
		timer_restart(c, now);
		if (c->state == TCP_S_SYN_RCVD) {
			send_synack(d, c, now);
			tg_io()->tcp_retransmits++;
		} else {
			c->snd_nxt = c->snd_una; /* go back to the oldest unacknowledged byte */
			conn_output(d, c, now, 1, 1);
		}
	}
}
