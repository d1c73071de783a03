/*
 * castor_repl: checkpoint replication (design.md §4). Built so far: the
 * transport interface and its TCP implementation. Epochs, the primary loop,
 * the secondary and failover come with issue 5.
 *
 * A transport moves a replication stream between two hosts. It is a const
 * ops table (style.md) so TCP and RDMA are interchangeable: listen/accept on
 * the secondary, connect on the primary, then whole-buffer vectored sends and
 * exact-length receives. Every call is blocking and bounded: a peer that
 * stops answering is reported as -ETIMEDOUT within the configured time, and a
 * peer that goes away as -ECONNRESET (never SIGPIPE).
 */
#ifndef CASTOR_REPL_H
#define CASTOR_REPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct repl_conn;
struct repl_listener;

struct repl_conn_opts {
	/* A peer silent this long is dead: receives give up, unacknowledged sends fail. */
	uint32_t timeout_ms;
	/*
	 * Test hook: after this many bytes have been sent, the connection is cut
	 * (as if the sender's host died mid-stream). 0 = off.
	 */
	uint64_t cut_after_bytes;
};

#define REPL_DEFAULT_TIMEOUT_MS 2000u

struct repl_transport_ops {
	const char *name;
	/* Bind `addr` ("HOST:PORT", "[V6]:PORT"; port 0 picks one, see local_port). */
	int (*listen)(const char *addr, const struct repl_conn_opts *o, struct repl_listener **out);
	uint16_t (*local_port)(const struct repl_listener *l);
	/* Wait up to timeout_ms (< 0: for ever) for one connection. */
	int (*accept)(struct repl_listener *l, int timeout_ms, struct repl_conn **out);
	void (*close_listener)(struct repl_listener *l); /* NULL is fine */
	int (*connect)(const char *addr, const struct repl_conn_opts *o, struct repl_conn **out);
	/* Send every byte of the iovec, or fail: -ECONNRESET, -ETIMEDOUT, -EPIPE. */
	int (*send_iov)(struct repl_conn *c, const struct iovec *iov, int iovcnt);
	/* Receive exactly len bytes, or fail: -ECONNRESET (peer gone), -ETIMEDOUT. */
	int (*recv)(struct repl_conn *c, void *buf, size_t len);
	void (*close)(struct repl_conn *c); /* NULL is fine */
	/*
	 * Zero-copy transports (RDMA) make a memory region reachable by the peer.
	 * May be NULL: TCP copies.
	 */
	int (*register_region)(struct repl_conn *c, void *addr, size_t len);
};

extern const struct repl_transport_ops repl_tcp_ops;

/*
 * ---- epochs on a transport (docs/stream-format.md §8) ----------------------------
 * An epoch is one stream (hypervisor/stream.c: HEADER ... END), sent as
 * { u64 magic "CSTREPCH", u64 length } then the stream's bytes. The receiver
 * answers each with an ack { u64 magic "CSTRACK1", u64 stream_id, s32 status,
 * u32 reserved = 0 }: status 0 = applied, else a negative errno.
 */
#define REPL_EPOCH_MAGIC 0x4843504552545343ull /* "CSTREPCH" */
#define REPL_ACK_MAGIC	 0x314b434152545343ull /* "CSTRACK1" */

int repl_epoch_send(const struct repl_transport_ops *t, struct repl_conn *c, const uint8_t *buf,
		    size_t len);
/*
 * Receive one epoch into a new buffer (the caller frees it). The length is
 * checked against max_len before anything is allocated: -EMSGSIZE. A wrong
 * magic is -EBADMSG; transport errors pass through (-ECONNRESET, -ETIMEDOUT):
 * whatever part of an epoch arrived is then discarded.
 */
int repl_epoch_recv(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t max_len,
		    uint8_t **buf_out, size_t *len_out);
int repl_ack_send(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t stream_id,
		  int32_t status);
int repl_ack_recv(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t *stream_id_out,
		  int32_t *status_out);

/* "HOST:PORT" -> a socket address; -EINVAL with `why` for anything else. */
struct sockaddr_storage;
int repl_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *len_out, char *why,
		    size_t why_len);

#endif
