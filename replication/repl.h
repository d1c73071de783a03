/*
 * castor_repl: checkpoint replication (design.md §4): the transport
 * interface and its TCP implementation, epochs on a connection, page
 * encoding (codec.h, private), the primary's epoch loop (primary.c) and the
 * secondary with failover (secondary.c); for disks, the replica's epoch
 * buffer (disk.c), the dirty-region log (disk_log.c) and the resync of an
 * image between two hosts (disk_sync.c).
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
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
	/*
	 * The most bytes a second this end sends (SO_MAX_PACING_RATE: TCP paces
	 * its sends to it), as a WAN link's bandwidth would; 0 = no cap. A DR
	 * link shares the site's WAN; `castor bench dr` emulates one with it.
	 */
	uint64_t max_rate_bytes;
};

#define REPL_DEFAULT_TIMEOUT_MS 2000u
/*
 * The replication threads run SCHED_FIFO at this priority by default, the
 * lowest real-time one: the guest's vCPUs never sleep, and a thread that
 * holds the guest's outputs until its ack must not wait for them to yield
 * a core (docs/architecture.md, "Scheduling").
 */
#define REPL_DEFAULT_RT 1
/* While the initial copy is built, sent and restored, both ends wait this long. */
#define REPL_SYNC_TIMEOUT_MS 120000u

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
	 * From another thread: make every blocked and later send/recv on `c`
	 * fail at once (the connection is being given up). `c` stays valid
	 * until close. NULL is fine.
	 */
	void (*abort)(struct repl_conn *c);
	/*
	 * Change how long a silent peer is waited for (the initial copy takes
	 * longer to build than an epoch). NULL: the timeout stays as opened.
	 */
	void (*set_timeout)(struct repl_conn *c, uint32_t timeout_ms);
	/*
	 * Zero-copy transports (RDMA) make a memory region reachable by the peer.
	 * May be NULL: TCP copies.
	 */
	int (*register_region)(struct repl_conn *c, void *addr, size_t len);
	/*
	 * The other end's address as text ("ADDR:PORT"), for logs of refused
	 * peers. May be NULL; -errno when it cannot be told.
	 */
	int (*peer_name)(struct repl_conn *c, char *buf, size_t len);
	/*
	 * Wait up to timeout_ms (0: just look) for something to read: 1 when
	 * there is, 0 when not, -errno. NULL: a transport that cannot say
	 * (postcopy, which reads and writes from one thread, needs it).
	 */
	int (*wait_readable)(struct repl_conn *c, int timeout_ms);
};

extern const struct repl_transport_ops repl_tcp_ops;

/*
 * ---- links: a connection, plain or sealed (seal.c, docs/stream-format.md §8.2) ----
 * Everything above the transport speaks through a link. A plain link passes
 * bytes straight through. After an authenticated handshake (§8.1) the link is
 * sealed: each send becomes records of at most REPL_SEAL_RECORD_MAX bytes,
 * each authenticated (and encrypted, if the ends agreed to) under a key of
 * its own connection and direction, with the record's sequence number as
 * the nonce. A record injected, altered, replayed, reordered or dropped fails
 * the receiver's check: -EBADMSG, and the link refuses everything after.
 */
struct repl_seal;
struct repl_link {
	const struct repl_transport_ops *t;
	struct repl_conn *c;
	struct repl_seal *seal; /* NULL: plain. Owned by the link: repl_link_dispose frees it */
	uint64_t tx_bytes, rx_bytes; /* carried by the transport, seal headers and tags included */
};
#define REPL_SEAL_RECORD_MAX (1u << 20)
#define REPL_SEAL_TAG	     16u

/* Every byte, or fail as the transport does. */
int repl_link_send_iov(struct repl_link *l, const struct iovec *iov, int iovcnt);
/* Exactly len bytes, each authenticated before it is returned when sealed. */
int repl_link_recv(struct repl_link *l, void *buf, size_t len);
/*
 * 1 when a repl_link_recv would find something (opened and kept by the seal,
 * or on the connection) within timeout_ms (0: now), 0 when not, -errno
 * (-EOPNOTSUPP: the transport cannot tell).
 */
int repl_link_wait_readable(struct repl_link *l, int timeout_ms);
bool repl_link_is_sealed(const struct repl_link *l);
bool repl_link_is_encrypted(const struct repl_link *l);
/* Frees the seal and wipes its keys; the connection stays the caller's. Idempotent. */
void repl_link_dispose(struct repl_link *l);

/*
 * The record primitives on their own, for `castor bench seal` and tests: a
 * pair of seals sharing a random key, `tx` sealing what `rx` opens, in order.
 * Sealing is in place (encrypted or only tagged); opening checks the tag and
 * decrypts in place, -EBADMSG when the record is not the next one of `tx`.
 */
int repl_seal_pair_new(bool encrypt, struct repl_seal **tx_out, struct repl_seal **rx_out);
int repl_seal_record(struct repl_seal *s, uint8_t *buf, size_t len, uint8_t tag[REPL_SEAL_TAG]);
int repl_seal_open(struct repl_seal *s, uint8_t *buf, size_t len, const uint8_t tag[REPL_SEAL_TAG]);
void repl_seal_free(struct repl_seal *s); /* NULL is fine */

/*
 * ---- pre-shared keys (key.c) ------------------------------------------------------
 * A key file holds 32 random bytes as 64 hex digits and a newline, owner-only
 * (0600). Loading refuses a file that is a symbolic link, readable or writable
 * by group or others, or not exactly that, with a sentence naming the file.
 */
#define REPL_KEY_BYTES 32u
struct repl_key {
	uint8_t k[REPL_KEY_BYTES];
};
/* Create `path` (O_EXCL|O_NOFOLLOW, 0600) with a fresh key; -EEXIST if it exists. */
int repl_key_generate(const char *path, char *why, size_t why_len);
int repl_key_load(const char *path, struct repl_key *out, char *why, size_t why_len);
void repl_key_wipe(struct repl_key *k);

/*
 * ---- epochs on a link (docs/stream-format.md §8) ----------------------------------
 * An epoch is one stream (hypervisor/stream.c: HEADER ... END), sent as
 * { u64 magic "CSTREPCH", u64 length } then the stream's bytes. The receiver
 * answers each with an ack { u64 magic "CSTRACK1", u64 stream_id, s32 status,
 * u32 reserved = 0 }: status 0 = applied, else a negative errno.
 */
#define REPL_EPOCH_MAGIC 0x4843504552545343ull /* "CSTREPCH" */
#define REPL_ACK_MAGIC	 0x314b434152545343ull /* "CSTRACK1" */

int repl_epoch_send(struct repl_link *l, const uint8_t *buf, size_t len);
/*
 * Receive one epoch into a new buffer (the caller frees it). The length is
 * checked against max_len before anything is allocated: -EMSGSIZE. A wrong
 * magic is -EBADMSG; link errors pass through (-ECONNRESET, -ETIMEDOUT,
 * -EBADMSG for a record that fails authentication): whatever part of an
 * epoch arrived is then discarded.
 */
int repl_epoch_recv(struct repl_link *l, uint64_t max_len, uint8_t **buf_out, size_t *len_out);
/*
 * The same into a buffer kept across epochs (no allocation per epoch once it
 * is large enough): *buf_io (malloc'd by us, may start NULL with *cap_io 0)
 * grows to the epoch's length and stays the caller's to free. On failure
 * *len_out is 0 and the buffer holds nothing usable.
 */
int repl_epoch_recv_into(struct repl_link *l, uint64_t max_len, uint8_t **buf_io, size_t *cap_io,
			 size_t *len_out);
int repl_ack_send(struct repl_link *l, uint64_t stream_id, int32_t status);
int repl_ack_recv(struct repl_link *l, uint64_t *stream_id_out, int32_t *status_out);
/*
 * The ack of a stream of `stream_bytes`, waited for longer than the link's
 * timeout_ms (what it is set back to after): a peer acks only once it has
 * decoded and applied the whole stream, and a migration's round of tens of
 * MiB takes it longer than the silence that means a dead peer. The wait is
 * repl_ack_wait_ms(timeout_ms, stream_bytes); the link's timeout is left as
 * it is when that adds less than 100 ms (most epochs: no syscalls for them).
 */
int repl_ack_recv_sized(struct repl_link *l, uint32_t timeout_ms, uint64_t stream_bytes,
			uint64_t *stream_id_out, int32_t *status_out);
/* timeout_ms, plus 1 ms per REPL_ACK_APPLY_BYTES_PER_MS of stream, at most REPL_SYNC_TIMEOUT_MS. */
uint32_t repl_ack_wait_ms(uint32_t timeout_ms, uint64_t stream_bytes);
/* 8 MiB/s: far below any host's apply rate, above an emulated test host's. */
#define REPL_ACK_APPLY_BYTES_PER_MS 8192u

/*
 * Send an epoch in `chunk`-byte pieces, calling progress(arg, sent, len) after
 * each (the initial copy: `castor ha status` shows how far it is).
 */
typedef void (*repl_progress_fn)(void *arg, uint64_t sent, uint64_t total);
int repl_epoch_send_progress(struct repl_link *l, const uint8_t *buf, size_t len, size_t chunk,
			     repl_progress_fn progress, void *arg);

/*
 * ---- the session layer (session.c, docs/stream-format.md §8.1) -------------------
 * A primary opens a connection with a HELLO; the replica answers WELCOME with
 * status 0 (go on: the initial copy follows) or a negative errno and a line of
 * text (-EBUSY: it serves another primary; -EACCES: one end has a key and the
 * other has none), then closes. With a key, HELLO and WELCOME carry each
 * end's fresh nonce, WELCOME the replica's proof that it holds the key, and a
 * PROOF from the primary answers it; each end checks the other's proof and
 * then both seal the link with keys derived from the key and both nonces.
 * Between epochs an idle primary sends PING frames (an epoch header of magic
 * "CSTRPING", length 0), which the replica answers with a PONG (an ack of
 * magic "CSTRPONG", all else 0), so a dead link is noticed however long the
 * interval. BYE (magic "CSTRBYE!", length 0) says the primary stops
 * protecting on purpose.
 */
#define REPL_HELLO_MAGIC     0x4f4c454852545343ull /* "CSTRHELO" */
#define REPL_WELCOME_MAGIC   0x4d434c5752545343ull /* "CSTRWLCM" */
#define REPL_PROOF_MAGIC     0x464f525052545343ull /* "CSTRPROF" */
#define REPL_PING_MAGIC	     0x474e495052545343ull /* "CSTRPING" */
#define REPL_PONG_MAGIC	     0x474e4f5052545343ull /* "CSTRPONG" */
#define REPL_BYE_MAGIC	     0x2145594252545343ull /* "CSTRBYE!" */
#define REPL_SESSION_VERSION 2u
#define REPL_WELCOME_TEXT    112
#define REPL_NONCE_BYTES     32u
#define REPL_PROOF_BYTES     32u
#define REPL_HELLO_F_AUTH    0x1u  /* HELLO, WELCOME: this end holds a key; nonces follow */
#define REPL_HELLO_F_ENCRYPT 0x2u  /* HELLO: encrypt, please; WELCOME: the link is encrypted */
#define REPL_HELLO_F_DISK    0x4u  /* HELLO: a disk resync (§11), mem_bytes the image's size */
#define REPL_HELLO_F_MIGRATE 0x8u  /* HELLO: a live migration (§8.3): the destination runs it */
#define REPL_HELLO_F_SUMS    0x10u /* HELLO: send your disks' digests first (§8.5); not with DISK */
#define REPL_HELLO_F_RESUME                                                                        \
	0x20u /* HELLO: a postcopy's source reconnecting (§8.6); MIGRATE only                     \
	       */
#define REPL_HELLO_BYTES   64u
#define REPL_WELCOME_BYTES 200u

/*
 * One handshake's state on either end (on the stack, wiped by
 * repl_handshake_dispose): the key, whether to ask for encryption, and the
 * messages both proofs and the link's keys are computed over.
 */
struct repl_handshake {
	struct repl_key key;
	bool has_key;
	bool encrypt;  /* asked for by this end; after WELCOME: agreed */
	bool peer_key; /* the hello said it has a key (replica side) */
	bool disk;     /* a disk resync session: the HELLO carries REPL_HELLO_F_DISK */
	bool migrate;  /* a live migration: the HELLO carries REPL_HELLO_F_MIGRATE */
	bool sums;     /* the primary asks for the replica's disk digests (REPL_HELLO_F_SUMS) */
	bool resume;   /* a postcopy's source comes back (REPL_HELLO_F_RESUME) */
	uint8_t hello[REPL_HELLO_BYTES];
	uint8_t welcome[REPL_WELCOME_BYTES];
};
/* key may be NULL (no key: a plain link, which `encrypt` cannot change). */
void repl_handshake_init(struct repl_handshake *hs, const struct repl_key *key, bool encrypt);
void repl_handshake_dispose(struct repl_handshake *hs);

struct repl_hello {
	uint64_t mem_bytes; /* the VM's RAM: the replica refuses what it could not hold */
	uint32_t ncpus;
};
int repl_hello_send(struct repl_link *l, struct repl_handshake *hs, const struct repl_hello *h);
/*
 * -EPROTO / -EPROTONOSUPPORT with `why` for anything that is not a hello of
 * our version, or of the other kind of session (the DISK flag differs from
 * hs->disk: a disk resync at a VM replica, or a VM at a disk destination; the
 * MIGRATE flag differs from hs->migrate -- a migration at a replica, or a
 * protecting primary at a migration destination -- is -EOPNOTSUPP, a hello
 * worth answering with a WELCOME that says so).
 */
int repl_hello_recv(struct repl_link *l, struct repl_handshake *hs, struct repl_hello *out,
		    char *why, size_t why_len);
/*
 * After repl_hello_recv: -EACCES and a sentence for the WELCOME when one end
 * has a key and the other none; else 0.
 */
int repl_handshake_check(const struct repl_handshake *hs, char *text, size_t text_len);
/*
 * `idle_ms`: the replica takes a primary silent this long for dead, so the
 * primary sends something (a heartbeat at least) every quarter of it. A
 * welcome of status 0 with a key carries the replica's nonce and proof.
 */
int repl_welcome_send(struct repl_link *l, struct repl_handshake *hs, int32_t status,
		      uint32_t idle_ms, const char *text);
/*
 * The primary's end: the replica's answer: 0 and its idle time, or its
 * negative status with its text in `why`. With a key it also checks the
 * replica's proof (-EACCES: the keys differ), sends its own and seals `l`.
 */
int repl_welcome_recv(struct repl_link *l, struct repl_handshake *hs, uint32_t *idle_ms_out,
		      char *why, size_t why_len);
/*
 * The replica's end, after a welcome of status 0: with a key, receive and
 * check the primary's proof (-EACCES: a wrong key) and seal `l`; without one,
 * 0 at once.
 */
int repl_proof_recv(struct repl_link *l, struct repl_handshake *hs, char *why, size_t why_len);
/* A heartbeat: PING, then wait for the PONG. */
int repl_ping(struct repl_link *l);
int repl_bye_send(struct repl_link *l);

/*
 * Live migration (§8.3). After the final epoch of a migration is acked -- the
 * source is paused and stays so -- the source sends SWITCH (an epoch header
 * of magic "CSTRSWCH", length 0): run the VM now. The destination starts it
 * and answers RUNNING (an ack of magic "CSTRRUNS", stream_id 0, status 0 when
 * the VM runs there, else the negative errno why it could not start). Only
 * then may the source go away; until then it may resume.
 */
#define REPL_SWITCH_MAGIC  0x4843575352545343ull /* "CSTRSWCH" */
#define REPL_RUNNING_MAGIC 0x534e555252545343ull /* "CSTRRUNS" */
int repl_switch_send(struct repl_link *l);
int repl_running_send(struct repl_link *l, int32_t status);
/* 0 with the destination's status, or a link error / -EBADMSG. */
int repl_running_recv(struct repl_link *l, int32_t *status_out);

enum repl_frame {
	REPL_FRAME_EPOCH,
	REPL_FRAME_BYE,
	REPL_FRAME_SWITCH,
	REPL_FRAME_DISK,
	REPL_FRAME_POSTCOPY
};
/*
 * A DISK frame (magic "CSTRDISK", then the length of what follows): §10
 * records of a protected VM's disk writes, sent between epoch frames
 * (docs/stream-format.md §8.4). At most REPL_DISK_FRAME_MAX bytes.
 */
#define REPL_DISK_MAGIC	    0x4b53494452545343ull /* "CSTRDISK" */
#define REPL_DISK_FRAME_MAX (REPL_DISK_WRITE_MAX + (4u << 20))
int repl_disk_frame_send(struct repl_link *l, const uint8_t *buf, size_t len);
/*
 * ---- postcopy (postcopy.c, docs/stream-format.md §8.6) ----
 * A POSTCOPY frame (magic "CSTRPCPY", then the length of what follows: a u64
 * page count and the bitmap of the pages the destination lacks, u64 words,
 * bit 0 first) comes before the final epoch of a migration that switches to
 * postcopy; that epoch carries the state and none of those pages; SWITCH
 * follows. Then 24-byte messages: the source sends PAGE (the pfn; a page of
 * data unless it is a zero page) and, once it has sent every page, END; the
 * destination sends RUNNING (as for any switch), REQ (a pfn it faulted on)
 * and DONE (every page placed).
 */
#define REPL_POSTCOPY_MAGIC	0x5950435052545343ull /* "CSTRPCPY" */
#define REPL_POSTCOPY_FRAME_MAX ((32ull << 20) + 8)   /* 1 TiB of RAM */
#define REPL_PC_PAGE_MAGIC	0x4547415052545343ull /* "CSTRPAGE" */
#define REPL_PC_END_MAGIC	0x444e455052545343ull /* "CSTRPEND" */
#define REPL_PC_REQ_MAGIC	0x5145525052545343ull /* "CSTRPREQ" */
#define REPL_PC_DONE_MAGIC	0x4e4f445052545343ull /* "CSTRPDON" */
#define REPL_PC_NOT_YET		1		      /* serve's *ran before RUNNING came */
struct repl_pc_progress {
	uint64_t pages;	     /* missing at the switch */
	uint64_t sent;	     /* sent (source) / placed (destination) */
	uint64_t zero;	     /* of them, zero pages (no data on the wire) */
	uint64_t asked;	     /* requests (source: received; destination: faults) */
	uint64_t on_demand;  /* source: pages sent because they were asked for */
	uint64_t running_ns; /* source: when RUNNING came (util_now_ns), 0 before */
};
typedef void (*repl_pc_progress_fn)(void *arg, const struct repl_pc_progress *p);
struct util_bitmap;
struct hv_vm;
int repl_postcopy_frame_send(struct repl_link *l, const struct util_bitmap *missing);
/* A POSTCOPY frame's body for a VM of `pages` pages into *out (initialised here). */
int repl_postcopy_frame_parse(const uint8_t *buf, size_t len, uint64_t pages,
			      struct util_bitmap *out, char *why, size_t why_len);
/*
 * The source, after SWITCH: serve `missing` (cleared as pages go) from `ram`
 * until the destination says DONE (0). Its RUNNING answer comes on the way:
 * set *ran to REPL_PC_NOT_YET before the first call; it becomes its status
 * (< 0: it could not start the VM; returns 0 at once). A link that fails:
 * -errno, *ran as it was. *prog ({0} at first) carries the counts across
 * calls (a resume), fn(arg) sees them as they go.
 */
int repl_postcopy_serve(struct repl_link *l, const uint8_t *ram, struct util_bitmap *missing,
			uint32_t timeout_ms, int32_t *ran, struct repl_pc_progress *prog,
			repl_pc_progress_fn fn, void *arg);
/*
 * The destination, the VM running with hv_postcopy_begin() done: place every
 * page the source sends, then DONE (sent under send_lock, which every sender
 * on `l` takes). 0 once every page is in; -errno when the link fails first
 * (the pages still missing then are only at the source).
 */
int repl_postcopy_receive(struct repl_link *l, struct hv_vm *vm, pthread_mutex_t *send_lock,
			  struct repl_pc_progress *prog, repl_pc_progress_fn fn, void *arg);
/* The destination asks for a page it faulted on (the caller holds send_lock). */
int repl_postcopy_request(struct repl_link *l, uint64_t pfn);
int repl_postcopy_done_send(struct repl_link *l, uint64_t placed);

/*
 * The replica's receive: the next epoch (as repl_epoch_recv_into), a BYE, a
 * SWITCH, a DISK or a POSTCOPY frame; PINGs on the way are answered and
 * skipped.
 */
int repl_frame_recv_into(struct repl_link *l, uint64_t max_len, uint8_t **buf_io, size_t *cap_io,
			 size_t *len_out, enum repl_frame *kind_out);

/*
 * "HOST:PORT" -> a socket address. HOST: IPv4 address, [IPv6] or a host name
 * (resolved now); PORT decimal 0..65535. -EINVAL (-EAGAIN for a temporary
 * resolver failure) with `why` naming the problem.
 */
struct sockaddr_storage;
int repl_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *len_out, char *why,
		    size_t why_len);
/*
 * 127.0.0.0/8, ::1 or a v4-mapped 127.x: the only addresses a link without a
 * key may use unless the operator says --insecure (docs/security.md). A
 * wildcard (0.0.0.0, ::) is reachable from everywhere: not loopback.
 */
bool repl_addr_is_loopback(const struct sockaddr_storage *ss);

/*
 * ---- disks: the replica's epoch buffer (disk.c, docs/stream-format.md §10) --------
 * A protected VM's disk writes travel during their epoch; the replica keeps
 * them aside and writes them to its copy of the image only when the epoch
 * commits, so its image is always that of its last committed epoch. An epoch
 * that does not complete is discarded whole. Memory is bounded: an epoch
 * whose writes would pass the buffer's cap is refused (-ENOBUFS) rather than
 * grown without end, and an apply that fails (-ENOSPC, -EIO, -EFBIG) is
 * returned so the caller reports the disk degraded; once an apply failed the
 * image is half an epoch ahead and every later call fails the same way until
 * repl_disk_epoch_reset() (after a resync).
 */
#define REPL_DISK_MAX	    4u		   /* disks of one VM */
#define REPL_DISK_EPOCH_CAP (256ull << 20) /* default cap of buffered bytes */
#define REPL_DISK_WRITE_MAX (4u << 20)	   /* one write's data, as virtio-blk's */
#define REPL_DISK_W_FUA	    0x1u	   /* durable once the epoch commits */
#define REPL_DISK_REC_WRITE 0x0050u
#define REPL_DISK_REC_ZERO  0x0051u
#define REPL_DISK_REC_FLUSH 0x0052u
#define REPL_DISK_REC_SEAL  0x0053u

enum repl_disk_op_kind {
	REPL_DISK_OP_WRITE = 1,
	REPL_DISK_OP_ZERO,
	REPL_DISK_OP_FLUSH,
	REPL_DISK_OP_SEAL,
};
const char *repl_disk_op_kind_str(enum repl_disk_op_kind k);

/* One record of §10, decoded. `data` points into the record's body. */
struct repl_disk_op {
	enum repl_disk_op_kind kind;
	uint64_t epoch;
	uint32_t disk;
	uint32_t flags;	     /* WRITE: REPL_DISK_W_FUA */
	uint64_t offset;     /* WRITE, ZERO */
	uint64_t len;	     /* WRITE: data bytes; ZERO: bytes zeroed */
	const uint8_t *data; /* WRITE */
	uint64_t ops, bytes; /* SEAL: the epoch's records and data bytes for the disk */
};

/*
 * Check and decode one §10 record (type without framing, its body and
 * length): -EPROTO with a sentence in why for anything the spec refuses,
 * -EPROTONOSUPPORT for a type that is not one of §10's.
 */
int repl_disk_op_parse(uint32_t type, const uint8_t *body, size_t len, struct repl_disk_op *out,
		       char *why, size_t why_len);
/*
 * Walk a DISK frame's records (§8.4: {u32 type, u32 length, body, pad to 8}):
 * 1 with the record at *off parsed into out and *off moved past it, 0 at the
 * frame's end, -EBADMSG (a record cut short) or repl_disk_op_parse's error,
 * with why.
 */
int repl_disk_frame_next(const uint8_t *buf, size_t len, size_t *off, struct repl_disk_op *out,
			 char *why, size_t why_len);
/*
 * Encode `op` as a record: the header and fixed fields into head (at most
 * REPL_DISK_OP_HEAD bytes; returns how many), then the caller sends op->data
 * (WRITE) and repl_disk_op_pad(op) zero bytes. -EINVAL for what the spec refuses.
 */
#define REPL_DISK_OP_HEAD 40u
int repl_disk_op_encode(const struct repl_disk_op *op, uint8_t head[REPL_DISK_OP_HEAD]);
size_t repl_disk_op_pad(const struct repl_disk_op *op);

struct repl_disk_epoch;
struct repl_disk_epoch_stats {
	uint64_t buffered_bytes, buffered_ops; /* now, every epoch not committed */
	uint64_t committed_epochs, applied_bytes, syncs;
	uint64_t last_committed; /* valid when committed_epochs */
	int error;		 /* 0, or the failure every call now returns */
	uint64_t failed_epoch;	 /* the epoch whose apply failed */
};
/*
 * A buffer for the image open at `fd` (read-write; stays the caller's) of
 * image_bytes; cap_bytes: the most data buffered at once (0: REPL_DISK_EPOCH_CAP).
 * `name` names it in logs ("vm3 disk 0"), copied.
 */
int repl_disk_epoch_new(int fd, uint64_t image_bytes, uint64_t cap_bytes, const char *name,
			struct repl_disk_epoch **out);
/*
 * Keep a write (data copied), a zeroing, or a flush for epoch e. Epochs come in
 * order: -ESTALE for an epoch already committed or older than one buffered;
 * -EINVAL for a range past the image; -ENOBUFS when the cap would be passed
 * (nothing of this call is kept; the caller fails the epoch). FUA and flush
 * make the epoch's commit end with fdatasync.
 */
int repl_disk_epoch_write(struct repl_disk_epoch *b, uint64_t epoch, uint64_t offset,
			  const void *data, size_t len, uint32_t flags);
int repl_disk_epoch_zero(struct repl_disk_epoch *b, uint64_t epoch, uint64_t offset, uint64_t len);
int repl_disk_epoch_flush(struct repl_disk_epoch *b, uint64_t epoch);
/* The same from a decoded §10 record (SEAL: -EINVAL, see repl_disk_epoch_check). */
int repl_disk_epoch_add(struct repl_disk_epoch *b, const struct repl_disk_op *op);
/* SEAL: 0 when the buffer holds exactly `ops` records and `bytes` data bytes of epoch e, else
 * -EBADMSG. */
int repl_disk_epoch_check(struct repl_disk_epoch *b, uint64_t epoch, uint64_t ops, uint64_t bytes);
/*
 * Apply every buffered record of epochs <= e in order (pwrite; a punched
 * hole, or zeros, for a zeroing), then fdatasync if one of them was a flush
 * or a FUA write, and forget them. An epoch with nothing buffered commits
 * too. On failure (-ENOSPC, -EIO, -EFBIG, ...) the buffer is failed: see above.
 */
int repl_disk_epoch_commit(struct repl_disk_epoch *b, uint64_t epoch);
/* Forget every buffered record of epoch e and of later epochs (an epoch that did not complete). */
void repl_disk_epoch_discard(struct repl_disk_epoch *b, uint64_t epoch);
/* Forget everything and the failure (the image was resynchronised meanwhile). */
void repl_disk_epoch_reset(struct repl_disk_epoch *b);
void repl_disk_epoch_stats(const struct repl_disk_epoch *b, struct repl_disk_epoch_stats *out);
void repl_disk_epoch_free(struct repl_disk_epoch *b); /* NULL is fine */

/*
 * ---- disks: the dirty-region log (disk_log.c, docs/disks.md) ----------------------
 * Which regions (REPL_DISK_REGION bytes each) of an image were written since
 * a point -- the last time a replica was known to hold the same image -- so a
 * resync sends only those. The log lives in a file next to the image, saved
 * atomically (a new file renamed over the old): a restart of the primary
 * keeps it. Its rule is write-intent: a region's bit reaches the file before
 * any write to the region reaches the image (repl_disk_log_mark() says when a
 * save is due), so a crash can leave bits set for writes that never happened
 * but never a write without its bit. A log file that is missing or damaged
 * loads as "everything dirty", never as "nothing dirty".
 */
#define REPL_DISK_REGION (64u << 10)
struct repl_disk_log;
/*
 * Load the log at `path` for an image of image_bytes in regions of
 * region_bytes (0: REPL_DISK_REGION; a power of two, 4 KiB to 1 MiB). A file
 * that is missing, unreadable, damaged or made for another size loads as all
 * dirty: 0, with the reason in why (not logged: the caller knows whether it
 * matters) and repl_disk_log_is_complete() false.
 * -EINVAL for bad arguments, -ENOMEM.
 */
int repl_disk_log_open(const char *path, uint64_t image_bytes, uint32_t region_bytes,
		       struct repl_disk_log **out, char *why, size_t why_len);
/* False when the log was loaded as "everything dirty" (missing or damaged file). */
bool repl_disk_log_is_complete(const struct repl_disk_log *l);
/*
 * Mark [offset, offset + len) written: 1 when a region was not marked yet
 * (save before the write reaches the image), 0 when all were, -EINVAL past
 * the image.
 */
int repl_disk_log_mark(struct repl_disk_log *l, uint64_t offset, uint64_t len);
/* Write the log to its file atomically (path.tmp, fdatasync, rename, fsync of the folder). */
int repl_disk_log_save(struct repl_disk_log *l, char *why, size_t why_len);
/* Everything clean: the replica holds this image now (save to keep it). */
void repl_disk_log_clear(struct repl_disk_log *l);
uint32_t repl_disk_log_region_bytes(const struct repl_disk_log *l);
uint64_t repl_disk_log_regions(const struct repl_disk_log *l);
uint64_t repl_disk_log_count(const struct repl_disk_log *l); /* regions marked */
bool repl_disk_log_is_dirty(const struct repl_disk_log *l, uint64_t region);
/* Next marked region at or after `from`, or repl_disk_log_regions() when none. */
uint64_t repl_disk_log_next(const struct repl_disk_log *l, uint64_t from);
void repl_disk_log_free(struct repl_disk_log *l); /* NULL is fine */

/*
 * ---- disks: resync between two hosts (disk_sync.c, docs/stream-format.md §11) ------
 * The source connects, the destination listens; after the session layer's
 * handshake (HELLO with the DISK flag, keys and sealing as for VMs) the
 * destination's image becomes the source's, sending what differs: every
 * range (full), the ranges whose BLAKE2b digests differ (checksum; holes are
 * found with SEEK_DATA and never read), or the regions a dirty-region log
 * marks (dirty). With verify (the default) both ends then compare a digest
 * of the whole image. Every failure -- a wrong size, an image that cannot be
 * written or fills up, a peer that dies or goes silent at any byte, a
 * protocol breach -- ends both ends with -errno and a sentence, within the
 * timeout.
 */
#define REPL_DISK_SYNC_TIMEOUT_MS 30000u
#define REPL_DISK_DIGEST_BYTES	  32u

enum repl_disk_sync_mode {
	REPL_DISK_SYNC_FULL = 1,
	REPL_DISK_SYNC_CHECKSUM = 2,
	REPL_DISK_SYNC_DIRTY = 3,
};
const char *repl_disk_sync_mode_str(enum repl_disk_sync_mode m);
int repl_disk_sync_mode_parse(const char *s, enum repl_disk_sync_mode *out);

struct repl_disk_sync_stats {
	enum repl_disk_sync_mode mode;
	uint64_t image_bytes;
	uint32_t range_bytes;
	uint64_t ranges, batches;    /* of the image */
	uint64_t batches_done;	     /* acknowledged */
	uint64_t compared_bytes;     /* of the image, examined so far */
	uint64_t read_bytes;	     /* of the image, read (holes are examined, not read) */
	uint64_t ranges_sent;	     /* DATA, and ranges under ZERO */
	uint64_t data_bytes;	     /* DATA payloads */
	uint64_t zero_bytes;	     /* covered by ZERO */
	uint64_t written_bytes;	     /* destination: written and zeroed */
	uint64_t tx_bytes, rx_bytes; /* this end's link, handshake included, seals included */
	uint64_t elapsed_ns;	     /* from the connection to the RESULT */
	char peer[64];		     /* the other end ("ADDR:PORT") */
	bool verified;		     /* the image digests were compared and are equal */
	uint8_t digest[REPL_DISK_DIGEST_BYTES]; /* this end's image digest (with verify) */
};
/* After each acknowledged batch, and once at the end. */
typedef void (*repl_disk_progress_fn)(void *arg, const struct repl_disk_sync_stats *st);

struct repl_disk_sync_opts {
	const struct repl_transport_ops *transport; /* NULL: TCP */
	struct repl_conn_opts conn;		    /* timeout_ms 0: REPL_DISK_SYNC_TIMEOUT_MS */
	const struct repl_key *key;		    /* NULL: a plain link */
	bool encrypt;				    /* with a key */
	/* the source's choices (the destination follows the source's BEGIN) */
	enum repl_disk_sync_mode mode;
	uint32_t range_bytes; /* 0: REPL_DISK_REGION; dirty mode: the log's region size */
	bool no_verify; /* skip the image digests (dirty mode then reads only what it sends) */
	struct repl_disk_log *log; /* dirty mode: the regions to send; the caller clears it */
	repl_disk_progress_fn progress;
	void *progress_arg;
};

/*
 * The source: connect to `peer` (HOST:PORT) and make its image (`fd`, opened
 * for reading, image_bytes long) the source's. 0 only when the destination
 * reported success (and, with verify, equal digests).
 */
int repl_disk_sync_send(const char *peer, int fd, uint64_t image_bytes,
			const struct repl_disk_sync_opts *o, struct repl_disk_sync_stats *st,
			char *why, size_t why_len);
/*
 * The destination: accept on `l` until a disk source passes the handshake
 * (others are logged, answered if they said hello, and closed), waiting at
 * most wait_ms for it (< 0: for ever), then receive into `fd` (read-write,
 * image_bytes long).
 */
int repl_disk_sync_receive(const struct repl_transport_ops *t, struct repl_listener *l, int wait_ms,
			   int fd, uint64_t image_bytes, const struct repl_disk_sync_opts *o,
			   struct repl_disk_sync_stats *st, char *why, size_t why_len);
/*
 * The disk part of a protected VM's initial copy (disk_tx.c; docs/disks.md),
 * between two images of this host over loopback TCP, for `castor bench
 * resync`: the destination's digests first (§8.5; not with full), then epoch
 * 0's records of the ranges that differ, applied as a replica does (then
 * fdatasync). wire_bytes: both ways, as the link counted them.
 */
struct repl_disk_copy_stats {
	uint64_t wire_bytes, data_bytes, same_bytes;
	uint32_t range_bytes; /* §8.5's for this image (0: too large to hash) */
};
int repl_disk_copy_loopback(int src, int dst, uint64_t image_bytes, bool full,
			    struct repl_disk_copy_stats *st, char *why, size_t why_len);
/*
 * An image's size: a regular file's length, or a block device's. -EINVAL
 * (with why) for anything else.
 */
int repl_disk_image_size(int fd, uint64_t *out, char *why, size_t why_len);

/* ---- the checkpoint engine (primary.c, secondary.c) ----------------------------- */

#include "hypervisor/hv.h"

struct nb_queue;

enum repl_mode {
	REPL_MODE_INTERVAL = 0, /* Remus: an epoch every interval_ms */
	REPL_MODE_OUTPUT = 1,	/* Kemari: end the epoch when the guest emits output */
	/*
	 * Disaster recovery (issue 17): a checkpoint every interval_ms (rpo_ms / 2
	 * by default), no output held for it -- not output commit: the replica
	 * may be behind what clients saw, by at most the measured RPO.
	 */
	REPL_MODE_ASYNC = 2,
};
const char *repl_mode_str(enum repl_mode m);
int repl_mode_parse(const char *s, enum repl_mode *out);

/* Replication states of both ends; every change is logged "vm: a -(why)-> b". */
enum repl_state {
	REPL_S_IDLE = 0,
	REPL_S_SYNCING,	     /* primary: initial full copy / secondary: waiting for it */
	REPL_S_PROTECTED,    /* epochs flow and are acked */
	REPL_S_DEGRADED,     /* primary: the secondary is gone; output is held */
	REPL_S_PRIMARY_LOST, /* secondary: the stream stopped; the twin waits at its last epoch */
	REPL_S_FAILED_OVER,  /* secondary: the twin runs */
	REPL_S_STOPPED,
	REPL_S_RELEASED, /* secondary: the primary stopped protecting (BYE) and runs on */
	/* live migration (migrate/, docs/migration.md) */
	REPL_S_MIGRATING, /* source: the copy is done; rounds of dirty pages until it converges */
	REPL_S_MIGRATED,  /* source: the destination runs the VM; this copy stays paused */
	REPL_S_IN_DOUBT,  /* source: SWITCH sent, no answer: paused until someone looks */
	REPL_S_SWITCHING, /* destination: the source handed the VM over; it starts here */
	/* postcopy (§8.6): source only */
	REPL_S_POSTCOPY,	/* the destination runs the VM; the pages it lacks follow */
	REPL_S_POSTCOPY_BROKEN, /* the link broke before they all went: they are only here */
};
#define REPL_N_STATES (REPL_S_POSTCOPY_BROKEN + 1)
const char *repl_state_str(enum repl_state s);

/* An optional record of an epoch stream: the RAM digest of verify mode. */
#define REPL_REC_DIGEST (0x0040u | HV_REC_F_OPTIONAL)
struct repl_digest_rec {
	uint64_t epoch;
	uint32_t crc32c; /* CRC-32C of all guest RAM, in RAM-offset order, at the pause */
	uint32_t reserved;
};
_Static_assert(sizeof(struct repl_digest_rec) == 16, "DIGEST layout");
/*
 * Another, per replicated disk: its image's CRC-32C at the pause (holes as
 * zeros). Disks over REPL_VERIFY_DISK_MAX are not digested: reading them
 * would make every pause long.
 */
#define REPL_REC_DISK_DIGEST (0x0041u | HV_REC_F_OPTIONAL)
struct repl_disk_digest_rec {
	uint64_t epoch;
	uint32_t disk; /* the device's index, as in DISK records */
	uint32_t crc32c;
	uint64_t image_bytes;
};
_Static_assert(sizeof(struct repl_disk_digest_rec) == 24, "DISK_DIGEST layout");
#define REPL_VERIFY_DISK_MAX (256ull << 20)

/* One line of the engine's event log (ack and release order, for tests and operators). */
typedef void (*repl_log_fn)(void *arg, const char *line);

struct repl_primary_opts {
	const struct repl_transport_ops *transport; /* NULL: TCP */
	const char *peer;			    /* the secondary's HOST:PORT */
	struct repl_conn_opts conn;
	const struct repl_key *key; /* NULL: an unauthenticated link; copied at start */
	bool encrypt;		    /* with a key: encrypt the link too */
	enum repl_mode mode;
	uint32_t interval_ms;	  /* interval: epoch length; output: the longest epoch */
	uint32_t min_spacing_ms;  /* output: the shortest epoch */
	uint32_t rpo_ms;	  /* async: the RPO target (0: 5000); an alert is logged past it */
	uint64_t max_dirty_pages; /* end an epoch early past this many dirty pages; 0: no cap */
	bool verify;		  /* digest all RAM in every pause (costly: tests, audits) */
	bool exact_dirty;	  /* no hot-page retention (hv_dirty_set_hot): more faults */
	int zstd_level;		  /* 0: -1 (fast) */
	uint64_t cache_pages;	  /* XOR cache; 0: 16384 (64 MiB) */
	struct nb_queue *outq;	  /* the VM's outputs (may be NULL); protected from epoch 0 on
				   * (the owner may protect it before starting the VM) */
	int thread_nice;	  /* nice value of the replication thread (-20..19); 0: inherit */
	int thread_rt;		  /* its SCHED_FIFO priority, 1..99; 0: REPL_DEFAULT_RT; -1: none */
	repl_log_fn log_cb;	  /* may be NULL */
	void *log_arg;
	/*
	 * A live migration instead of protection (NULL: protection). The initial
	 * copy is made as for protection; then, while the guest runs, rounds of
	 * the pages dirtied meanwhile (each with live passes and a short pause),
	 * the policy asked after each; on stop-and-copy the VM is paused for good,
	 * the last round and SWITCH are sent, and it resumes only if the
	 * destination says it could not start it. No output is held (outq is
	 * ignored): the source runs unprotected until the switch.
	 */
	const struct repl_migration *migrate;
};
struct repl_migration {
	hv_precopy_policy_fn policy; /* after each round, the initial copy counting as round 1 */
	void *policy_arg;
	/*
	 * Switch to postcopy (§8.6) right after the initial copy, instead of
	 * rounds until the policy says stop-and-copy; repl_primary_postcopy()
	 * asks for it mid-way.
	 */
	bool postcopy;
	uint64_t test_cut_pages; /* test hook: cut the link once after this many postcopy pages */
};

/* Status of either end, for `castor ha status`. Times in ns. */
struct repl_status {
	enum repl_state state;
	bool is_primary;
	enum repl_mode mode;
	uint32_t interval_ms;
	uint64_t epoch;	      /* primary: last epoch sent; secondary: last applied */
	uint64_t acked_epoch; /* primary: last acknowledged */
	uint64_t epochs;      /* epochs completed (acked / applied) */
	uint64_t last_pause_ns, pause_p50_ns, pause_p99_ns;
	/* the pause's parts, p50: vCPU kick + dirty-log take, page copy, state */
	uint64_t harvest_p50_ns, copy_p50_ns, state_p50_ns;
	uint64_t last_raw_bytes, last_wire_bytes; /* last epoch before / after encoding */
	uint64_t total_raw_bytes, total_wire_bytes;
	uint64_t last_pages;
	uint64_t ack_rtt_last_ns, ack_rtt_p50_ns;
	uint64_t encode_p50_ns; /* the sender's encoding of an epoch, after the pause */
	uint64_t lag_ns;	/* primary: since the pause of the oldest epoch not yet acked */
	uint64_t early_ends;	/* epochs ended early: output, queue full, dirty cap */
	/* epochs' digests compared (secondary) / acks that said so */
	uint64_t verify_ok, verify_bad;
	uint64_t disk_verify_ok; /* secondary: disk images found equal to the primary's */
	uint64_t sync_sent_bytes, sync_total_bytes; /* the initial copy, as sent (primary) */
	uint64_t heartbeats;			    /* pings answered */
	bool twin_unusable; /* secondary: a failover is refused (why in last_error) */
	/* writable disks replicated with the epochs; their data bytes (primary: taken
	 * from the guest's writes; secondary: written to the copies), and the primary's
	 * bytes not sent yet */
	uint32_t disks;
	uint64_t disk_bytes, disk_pending_bytes;
	/* primary: the disks' initial copy -- data bytes sent, bytes the replica held already
	 * (its digests matched: not sent) */
	uint64_t disk_copy_bytes, disk_copy_same_bytes;
	/* primary: hot pages after the last harvest, write faults counted by the hot-page
	 * rule (docs/architecture.md, "Hot pages") */
	uint64_t hot_pages, cold_faults;
	bool link_authenticated, link_encrypted; /* the session's link (sealed, §8.2) */
	char peer[64];				 /* primary: the replica it protects to */
	char last_error[160];
	/* a migration's source: its last round, as the policy saw it */
	bool migration;
	uint32_t rounds;
	uint64_t pending_pages, dirty_rate_pps, link_rate_bps;
	uint64_t migration_ns; /* since the session started, until the destination ran it */
	uint64_t downtime_ns;  /* from the final pause to the destination's RUNNING */
	uint64_t final_pages;  /* copied in the final pause */
	/*
	 * async mode (primary): the RPO -- the age of the newest checkpoint the
	 * replica acknowledged -- now, its p50/p99 sampled just before each ack,
	 * the target, and how often it went past the target
	 */
	uint32_t rpo_target_ms;
	uint64_t rpo_ns, rpo_p50_ns, rpo_p99_ns, rpo_alerts;
	/* primary: the link's rate cap (repl_conn_opts.max_rate_bytes), 0: none */
	uint64_t max_rate_bytes;
	/* secondary holding a twin: since its newest checkpoint was applied whole */
	uint64_t ckpt_age_ns;
	/* postcopy (both ends): the pages the destination lacked at the switch, sent (placed) */
	bool postcopy;
	struct repl_pc_progress pc;
};

struct repl_primary;
/*
 * Protect a running VM: connect to the secondary, send the initial full copy
 * (live passes while the guest runs), then run the epoch loop on its own
 * thread. The VM must own no other snapshot chain meanwhile. `why` gets a
 * sentence on failure.
 */
int repl_primary_start(struct hv_vm *vm, const struct repl_primary_opts *o,
		       struct repl_primary **out, char *why, size_t why_len);
/* End the current epoch as soon as allowed (output mode, queue full). Any thread. */
void repl_primary_kick(struct repl_primary *p);
void repl_primary_status(struct repl_primary *p, struct repl_status *out);
/*
 * Start the sample windows (pause and its parts, ack RTT) afresh, so the next
 * percentiles describe only what comes after; counters and totals go on.
 */
void repl_primary_reset_samples(struct repl_primary *p);
/*
 * Stop the loop; the guest keeps running. `graceful`: a protected primary
 * finishes the epoch in flight (its ack is waited for, within the timeout)
 * and tells the replica with a BYE that protection ends on purpose, so that
 * the replica refuses to take over unless forced. Otherwise the connection is
 * cut at once. Returns the last acknowledged epoch's number, or -ENOENT when
 * none was. Idempotent.
 */
int64_t repl_primary_stop(struct repl_primary *p, bool graceful);
/*
 * A migration's cancel, from any thread, without waiting: the session ends as
 * soon as its thread sees it (a send or ack wait is cut at once), in state
 * stopped ("cancelled"), the VM running; unless it was already past the
 * switch. repl_primary_stop() or _free() still join the thread.
 */
void repl_primary_cancel(struct repl_primary *p);
/*
 * A migration in its copy or its rounds switches to postcopy (§8.6) at the
 * end of the round under way. -EINVAL: not a migration; -EALREADY: past its
 * rounds.
 */
int repl_primary_postcopy(struct repl_primary *p);
/* A postcopy whose link broke reconnects (-EALREADY: it did not break). */
int repl_primary_postcopy_resume(struct repl_primary *p);
/* Stop (not gracefully) if still running, close the connection, free. NULL is fine. */
void repl_primary_free(struct repl_primary *p);

struct repl_secondary_opts {
	const struct repl_transport_ops *transport; /* NULL: TCP */
	const char *listen;			    /* HOST:PORT */
	struct repl_conn_opts conn;
	const struct repl_key *key;	   /* NULL: primaries need none (and may have none) */
	bool encrypt;			   /* with a key: encrypt every link, asked or not */
	struct hv_vm_config vm;		   /* name, serial, kvm path of the twin */
	hv_restore_devices_fn add_devices; /* the twin's devices (same as the primary's) */
	void *add_devices_arg;
	int thread_nice; /* nice value of the receiving thread (-20..19); 0: inherit */
	int thread_rt;	 /* its SCHED_FIFO priority, 1..99; 0: REPL_DEFAULT_RT; -1: none */
	repl_log_fn log_cb;
	void *log_arg;
	/*
	 * A migration destination (castor-vmm incoming): only a migrating source
	 * is served (REPL_HELLO_F_MIGRATE), no failover is allowed but the one its
	 * SWITCH asks for, and on_end (called from the receiving thread) says that
	 * its stream ended: in state "switching" (call repl_secondary_failover,
	 * which answers RUNNING) or otherwise lost (the source went away or gave
	 * up: nothing may run here).
	 */
	bool incoming;
	void (*on_end)(void *arg);
	void *end_arg;
	/*
	 * The twin's disks in --disk order, as add_devices gives them: a writable
	 * one is the copy the primary's writes land in, epoch by epoch (opened
	 * here at start: an image that cannot be written is an error now).
	 */
	struct repl_twin_disk {
		const char *path;
		bool read_only;
	} disks[REPL_DISK_MAX];
	unsigned ndisks;
};

struct repl_secondary;
/* Bind the listener (errors now) and receive on a thread of its own. */
int repl_secondary_start(const struct repl_secondary_opts *o, struct repl_secondary **out,
			 char *why, size_t why_len);
uint16_t repl_secondary_port(const struct repl_secondary *s);
/*
 * Failover: stop receiving (a partial epoch is discarded), and start the
 * twin from its last applied epoch. The running VM passes to the caller.
 * -ENOENT when no full copy ever arrived; -EALREADY after a failover;
 * -EIO when the twin is unusable (an epoch failed half-applied, or verify
 * found its RAM different from the primary's); -EBUSY, unless `force`, while
 * the primary still streams or after it stopped protecting on purpose (it
 * runs on: two copies would answer). On a migration destination only after
 * the source's SWITCH (force or not: -EPERM otherwise), and the source is
 * told whether the VM runs.
 */
int repl_secondary_failover(struct repl_secondary *s, bool force, struct hv_vm **vm_out, char *why,
			    size_t why_len);
void repl_secondary_status(struct repl_secondary *s, struct repl_status *out);
/*
 * A DR test's copy of the newest checkpoint (`castor dr test`), while the
 * stream goes on: the twin's RAM and state as a full snapshot into `snap_fd`,
 * and disk i (in --disk order) into disk_fds[i] where that is >= 0, all of
 * one checkpoint -- no epoch is applied meanwhile (it waits in the receiving
 * thread). A copied disk must be one the primary replicates. -ENOENT before
 * the initial copy, -EALREADY after a failover, -EIO when the twin is
 * unusable; `why` says which.
 */
struct repl_ckpt_copy {
	uint64_t epoch;	 /* the checkpoint copied */
	uint64_t age_ns; /* how old it was */
	uint64_t snap_bytes, disk_bytes;
};
int repl_secondary_copy(struct repl_secondary *s, int snap_fd, const int *disk_fds, unsigned ndisks,
			struct repl_ckpt_copy *out, char *why, size_t why_len);
/* Stops the thread; frees the twin unless failover handed it out. NULL is fine. */
void repl_secondary_free(struct repl_secondary *s);

#endif
