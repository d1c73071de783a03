/*
 * The session layer (repl.h, docs/stream-format.md §8.1): hello, welcome and
 * the key's proofs, heartbeats, goodbye.
 *
 * With a pre-shared key both ends prove they hold it before the replica
 * accepts any state: each sends a fresh random nonce, and each proof is a
 * keyed BLAKE2b over a hash of the HELLO and the WELCOME (its proof field
 * zeroed) -- both nonces, the flags, the sizes and the status -- under a
 * label naming the prover's role, so neither proof can be reflected or
 * replayed into another connection. Proofs are compared in constant time.
 * The link's two keys come from the same hash under a third label, through
 * crypto_kdf, one per direction: fresh for every connection even if one
 * end's nonce repeated.
 */
#define LOG_TAG "session"
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "replication/seal.h"
#include "util/util.h"

struct hello {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t mem_bytes;
	uint32_t ncpus;
	uint32_t reserved;
	/* version 1 ended here: its 32 bytes are read first, to name its version */
	uint8_t nonce[REPL_NONCE_BYTES]; /* with REPL_HELLO_F_AUTH, else 0 */
};
_Static_assert(sizeof(struct hello) == REPL_HELLO_BYTES, "hello layout");
#define HELLO_V1_BYTES offsetof(struct hello, nonce)

struct welcome {
	uint64_t magic;
	int32_t status;
	uint32_t idle_ms;
	uint32_t flags;
	uint32_t reserved;
	uint8_t nonce[REPL_NONCE_BYTES]; /* with REPL_HELLO_F_AUTH, else 0 */
	uint8_t proof[REPL_PROOF_BYTES]; /* the replica's, over both messages with this 0 */
	char text[REPL_WELCOME_TEXT];
};
_Static_assert(sizeof(struct welcome) == REPL_WELCOME_BYTES, "welcome layout");

struct proof {
	uint64_t magic;
	uint8_t proof[REPL_PROOF_BYTES]; /* the primary's */
};
_Static_assert(sizeof(struct proof) == 40, "proof layout");

#define LABEL_REPLICA "castor replica proof v2"
#define LABEL_PRIMARY "castor primary proof v2"
#define LABEL_KEYS    "castor link keys v2"
#define KDF_CONTEXT   "castorlk" /* crypto_kdf: 8 bytes */
#define KDF_P2R	      1
#define KDF_R2P	      2

void repl_handshake_init(struct repl_handshake *hs, const struct repl_key *key, bool encrypt)
{
	memset(hs, 0, sizeof(*hs));
	if (key) {
		hs->key = *key;
		hs->has_key = true;
		hs->encrypt = encrypt;
	}
}

void repl_handshake_dispose(struct repl_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
}

/* Keyed BLAKE2b-256 of `label` and the hash of both messages. */
static void keyed(const struct repl_handshake *hs, const char *label, uint8_t out[32])
{
	crypto_generichash_state st;
	uint8_t th[32];

	crypto_generichash_init(&st, NULL, 0, sizeof(th));
	crypto_generichash_update(&st, hs->hello, sizeof(hs->hello));
	crypto_generichash_update(&st, hs->welcome, sizeof(hs->welcome));
	crypto_generichash_final(&st, th, sizeof(th));
	crypto_generichash_init(&st, hs->key.k, sizeof(hs->key.k), 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label) + 1);
	crypto_generichash_update(&st, th, sizeof(th));
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

/* Both proofs checked: seal the link with this connection's keys. */
static int seal_link(struct repl_link *l, const struct repl_handshake *hs, bool primary)
{
	uint8_t master[crypto_kdf_KEYBYTES], p2r[REPL_SEAL_KEY_BYTES], r2p[REPL_SEAL_KEY_BYTES];
	int rc;

	_Static_assert(crypto_kdf_KEYBYTES == 32, "kdf key size");
	keyed(hs, LABEL_KEYS, master);
	crypto_kdf_derive_from_key(p2r, sizeof(p2r), KDF_P2R, KDF_CONTEXT, master);
	crypto_kdf_derive_from_key(r2p, sizeof(r2p), KDF_R2P, KDF_CONTEXT, master);
	repl_link_dispose(l);
	rc = primary ? repl_seal_new(hs->encrypt, p2r, r2p, &l->seal)
		     : repl_seal_new(hs->encrypt, r2p, p2r, &l->seal);
	sodium_memzero(master, sizeof(master));
	sodium_memzero(p2r, sizeof(p2r));
	sodium_memzero(r2p, sizeof(r2p));
	return rc;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	return sodium_is_zero(p, n) == 1;
}

int repl_hello_send(struct repl_link *l, struct repl_handshake *hs, const struct repl_hello *h)
{
	struct hello m = {.magic = REPL_HELLO_MAGIC,
			  .version = REPL_SESSION_VERSION,
			  .mem_bytes = h->mem_bytes,
			  .ncpus = h->ncpus};
	struct iovec iov = {&m, sizeof(m)};

	if (hs->has_key) {
		if (sodium_init() < 0)
			return -EIO;
		m.flags = REPL_HELLO_F_AUTH | (hs->encrypt ? REPL_HELLO_F_ENCRYPT : 0);
		randombytes_buf(m.nonce, sizeof(m.nonce));
	}
	if (hs->disk)
		m.flags |= REPL_HELLO_F_DISK;
	if (hs->migrate)
		m.flags |= REPL_HELLO_F_MIGRATE;
	if (hs->sums && !hs->disk)
		m.flags |= REPL_HELLO_F_SUMS;
	if (hs->resume && !hs->disk)
		m.flags |= REPL_HELLO_F_RESUME;
	memcpy(hs->hello, &m, sizeof(m));
	return repl_link_send_iov(l, &iov, 1);
}

int repl_hello_recv(struct repl_link *l, struct repl_handshake *hs, struct repl_hello *out,
		    char *why, size_t why_len)
{
	struct hello m = {0};
	int rc = repl_link_recv(l, &m, HELLO_V1_BYTES);

	if (rc < 0) {
		snprintf(why, why_len, "no hello (%s)", strerror(-rc));
		return rc;
	}
	if (m.magic != REPL_HELLO_MAGIC)
		return util_why(why, why_len, -EPROTO,
				"not a Castor primary (bad hello magic 0x%016llx)",
				(unsigned long long)m.magic);
	if (m.version != REPL_SESSION_VERSION)
		return util_why(why, why_len, -EPROTONOSUPPORT,
				"session layer version %u; this build speaks %u", m.version,
				REPL_SESSION_VERSION);
	rc = repl_link_recv(l, m.nonce, sizeof(m.nonce));
	if (rc < 0) {
		snprintf(why, why_len, "a hello cut short (%s)", strerror(-rc));
		return rc;
	}
	if ((m.flags & ~(REPL_HELLO_F_AUTH | REPL_HELLO_F_ENCRYPT | REPL_HELLO_F_DISK |
			 REPL_HELLO_F_MIGRATE | REPL_HELLO_F_SUMS | REPL_HELLO_F_RESUME)) ||
	    m.reserved ||
	    (!(m.flags & REPL_HELLO_F_AUTH) &&
	     ((m.flags & ~(REPL_HELLO_F_DISK | REPL_HELLO_F_MIGRATE | REPL_HELLO_F_SUMS |
			   REPL_HELLO_F_RESUME)) ||
	      !is_zero(m.nonce, sizeof(m.nonce)))) ||
	    ((m.flags & REPL_HELLO_F_DISK) &&
	     (m.flags & (REPL_HELLO_F_MIGRATE | REPL_HELLO_F_SUMS))) ||
	    ((m.flags & REPL_HELLO_F_RESUME) &&
	     (m.flags & (REPL_HELLO_F_DISK | REPL_HELLO_F_SUMS))))
		return util_why(why, why_len, -EPROTO, "hello with reserved bits set");
	/* the two kinds of session never pass for each other (docs/stream-format.md §8.1) */
	if (!(m.flags & REPL_HELLO_F_DISK) != !hs->disk)
		return util_why(why, why_len, -EPROTO,
				hs->disk ? "a VM primary, not a disk source (castor disk sync)"
					 : "a disk source (castor disk sync), not a VM primary");
	if (!(m.flags & REPL_HELLO_F_MIGRATE) != !hs->migrate)
		return util_why(why, why_len, -EOPNOTSUPP,
				hs->migrate
					? "a protecting primary, not a migration source: "
					  "this is a migration destination (castor-vmm incoming)"
					: "a migration source (castor migrate), not a protecting "
					  "primary: migrate to a 'castor-vmm incoming'");
	memcpy(hs->hello, &m, sizeof(m));
	hs->peer_key = m.flags & REPL_HELLO_F_AUTH;
	hs->sums = m.flags & REPL_HELLO_F_SUMS;
	hs->resume = m.flags & REPL_HELLO_F_RESUME;
	out->mem_bytes = m.mem_bytes;
	out->ncpus = m.ncpus;
	return 0;
}

/* The ends' names in messages: a disk resync has a source and a destination. */
#define REPLICA(hs) ((hs)->disk ? "destination" : "replica")
#define PRIMARY(hs) ((hs)->disk ? "source" : "primary")

int repl_handshake_check(const struct repl_handshake *hs, char *text, size_t text_len)
{
	if (hs->has_key && !hs->peer_key)
		return util_why(text, text_len, -EACCES,
				"this %s has a key and the %s none: give the %s the same key "
				"(--key)",
				REPLICA(hs), PRIMARY(hs), PRIMARY(hs));
	if (!hs->has_key && hs->peer_key)
		return util_why(text, text_len, -EACCES,
				"this %s has no key and the %s one: give the %s the same key "
				"(--key)",
				REPLICA(hs), PRIMARY(hs), REPLICA(hs));
	return 0;
}

int repl_welcome_send(struct repl_link *l, struct repl_handshake *hs, int32_t status,
		      uint32_t idle_ms, const char *text)
{
	struct welcome m = {.magic = REPL_WELCOME_MAGIC, .status = status, .idle_ms = idle_ms};
	struct iovec iov = {&m, sizeof(m)};
	struct hello h;

	memcpy(&h, hs->hello, sizeof(h));
	snprintf(m.text, sizeof(m.text), "%s", text ? text : "");
	if (!status && hs->has_key && hs->peer_key) {
		if (sodium_init() < 0)
			return -EIO;
		/* encrypted when either end asks */
		hs->encrypt = hs->encrypt || (h.flags & REPL_HELLO_F_ENCRYPT);
		m.flags = REPL_HELLO_F_AUTH | (hs->encrypt ? REPL_HELLO_F_ENCRYPT : 0);
		randombytes_buf(m.nonce, sizeof(m.nonce));
		memcpy(hs->welcome, &m, sizeof(m));
		keyed(hs, LABEL_REPLICA, m.proof);
	}
	return repl_link_send_iov(l, &iov, 1);
}

/* The primary's side of a welcome of status 0 under a key: check, prove, seal. */
static int prove(struct repl_link *l, struct repl_handshake *hs, struct welcome *m, char *why,
		 size_t why_len)
{
	uint8_t theirs[REPL_PROOF_BYTES], want[REPL_PROOF_BYTES];
	struct proof p = {.magic = REPL_PROOF_MAGIC};
	struct iovec iov = {&p, sizeof(p)};
	int rc;

	if (!(m->flags & REPL_HELLO_F_AUTH))
		return util_why(why, why_len, -EACCES,
				"the %s runs without a key: it would take any %s", REPLICA(hs),
				PRIMARY(hs));
	memcpy(theirs, m->proof, sizeof(theirs));
	memset(m->proof, 0, sizeof(m->proof));
	memcpy(hs->welcome, m, sizeof(*m));
	keyed(hs, LABEL_REPLICA, want);
	rc = crypto_verify_32(theirs, want);
	sodium_memzero(want, sizeof(want));
	if (rc)
		return util_why(why, why_len, -EACCES,
				"the %s could not prove it holds our key: the keys differ",
				REPLICA(hs));
	hs->encrypt = m->flags & REPL_HELLO_F_ENCRYPT;
	keyed(hs, LABEL_PRIMARY, p.proof);
	rc = repl_link_send_iov(l, &iov, 1);
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot send our proof (%s)", strerror(-rc));
	rc = seal_link(l, hs, true);
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot seal the link (%s)", strerror(-rc));
	return 0;
}

int repl_welcome_recv(struct repl_link *l, struct repl_handshake *hs, uint32_t *idle_ms_out,
		      char *why, size_t why_len)
{
	struct welcome m;
	int rc = repl_link_recv(l, &m, sizeof(m));

	if (rc < 0) {
		snprintf(why, why_len, "no answer to the hello (%s)", strerror(-rc));
		return rc;
	}
	if (m.magic != REPL_WELCOME_MAGIC) {
		snprintf(why, why_len, "not a Castor replica (bad answer to the hello)");
		return -EPROTO;
	}
	if (m.status > 0 || m.status < -4095 || m.reserved ||
	    (m.flags & ~(REPL_HELLO_F_AUTH | REPL_HELLO_F_ENCRYPT))) {
		snprintf(why, why_len, "a malformed answer to the hello (status %d)", m.status);
		return -EPROTO;
	}
	m.text[sizeof(m.text) - 1] = 0;
	for (char *p = m.text; *p; p++) /* it is printed: keep it one line of text */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	if (m.status) {
		snprintf(why, why_len, "%s", m.text[0] ? m.text : strerror(-m.status));
		return m.status;
	}
	if (!m.idle_ms) {
		snprintf(why, why_len, "a replica that gives no idle time");
		return -EPROTO;
	}
	if (hs->has_key)
		rc = prove(l, hs, &m, why, why_len);
	else if (m.flags)
		rc = util_why(why, why_len, -EACCES, "the %s expects a key and we have none",
			      REPLICA(hs));
	if (rc < 0)
		return rc;
	*idle_ms_out = m.idle_ms;
	return 0;
}

int repl_proof_recv(struct repl_link *l, struct repl_handshake *hs, char *why, size_t why_len)
{
	uint8_t want[REPL_PROOF_BYTES];
	struct proof p;
	int rc;

	if (!hs->has_key)
		return 0;
	rc = repl_link_recv(l, &p, sizeof(p));
	if (rc < 0)
		return util_why(why, why_len, rc,
				"no proof of the key from the %s (%s): it holds another key?",
				PRIMARY(hs), strerror(-rc));
	if (p.magic != REPL_PROOF_MAGIC)
		return util_why(why, why_len, -EPROTO, "not a proof (magic 0x%016llx)",
				(unsigned long long)p.magic);
	keyed(hs, LABEL_PRIMARY, want);
	rc = crypto_verify_32(p.proof, want);
	sodium_memzero(want, sizeof(want));
	if (rc)
		return util_why(why, why_len, -EACCES,
				"the %s's proof does not match our key: a wrong key", PRIMARY(hs));
	rc = seal_link(l, hs, false);
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot seal the link (%s)", strerror(-rc));
	return 0;
}

static int send_hdr(struct repl_link *l, uint64_t magic)
{
	struct epoch_hdr h = {.magic = magic};
	struct iovec iov = {&h, sizeof(h)};

	return repl_link_send_iov(l, &iov, 1);
}

int repl_ping(struct repl_link *l)
{
	struct ack a;
	int rc = send_hdr(l, REPL_PING_MAGIC);

	if (!rc)
		rc = repl_link_recv(l, &a, sizeof(a));
	if (!rc && (a.magic != REPL_PONG_MAGIC || a.stream_id || a.status || a.reserved))
		rc = -EBADMSG;
	return rc;
}

int repl_bye_send(struct repl_link *l)
{
	return send_hdr(l, REPL_BYE_MAGIC);
}

int repl_switch_send(struct repl_link *l)
{
	return send_hdr(l, REPL_SWITCH_MAGIC);
}

int repl_running_send(struct repl_link *l, int32_t status)
{
	struct ack a = {.magic = REPL_RUNNING_MAGIC, .status = status};
	struct iovec iov = {&a, sizeof(a)};

	return repl_link_send_iov(l, &iov, 1);
}

int repl_running_recv(struct repl_link *l, int32_t *status_out)
{
	struct ack a;
	int rc = repl_link_recv(l, &a, sizeof(a));

	if (rc < 0)
		return rc;
	if (a.magic != REPL_RUNNING_MAGIC || a.stream_id || a.reserved || a.status > 0 ||
	    a.status < -4095)
		return -EBADMSG;
	*status_out = a.status;
	return 0;
}

int repl_frame_recv_into(struct repl_link *l, uint64_t max_len, uint8_t **buf_io, size_t *cap_io,
			 size_t *len_out, enum repl_frame *kind_out)
{
	struct epoch_hdr h;
	int rc;

	*len_out = 0;
	for (;;) {
		rc = repl_link_recv(l, &h, sizeof(h));
		if (rc < 0)
			return rc;
		if (h.magic == REPL_EPOCH_MAGIC)
			break;
		if (h.magic == REPL_DISK_MAGIC) {
			if (!h.len || h.len > REPL_DISK_FRAME_MAX) {
				LOG_ERR("a DISK frame of %llu bytes refused",
					(unsigned long long)h.len);
				return -EMSGSIZE;
			}
			*kind_out = REPL_FRAME_DISK;
			return repl_epoch_recv_body(l, &h, REPL_DISK_FRAME_MAX, buf_io, cap_io,
						    len_out);
		}
		if (h.magic == REPL_POSTCOPY_MAGIC) {
			if (h.len < 8 || h.len > REPL_POSTCOPY_FRAME_MAX) {
				LOG_ERR("a POSTCOPY frame of %llu bytes refused",
					(unsigned long long)h.len);
				return -EMSGSIZE;
			}
			*kind_out = REPL_FRAME_POSTCOPY;
			return repl_epoch_recv_body(l, &h, REPL_POSTCOPY_FRAME_MAX, buf_io, cap_io,
						    len_out);
		}
		if ((h.magic == REPL_PING_MAGIC || h.magic == REPL_BYE_MAGIC ||
		     h.magic == REPL_SWITCH_MAGIC) &&
		    h.len) {
			LOG_ERR("session frame 0x%016llx with a length",
				(unsigned long long)h.magic);
			return -EBADMSG;
		}
		if (h.magic == REPL_BYE_MAGIC || h.magic == REPL_SWITCH_MAGIC) {
			*kind_out = h.magic == REPL_BYE_MAGIC ? REPL_FRAME_BYE : REPL_FRAME_SWITCH;
			return 0;
		}
		if (h.magic != REPL_PING_MAGIC) {
			LOG_ERR("frame with a bad magic 0x%016llx", (unsigned long long)h.magic);
			return -EBADMSG;
		}
		/* a heartbeat: answered at once, never seen by the caller */
		{
			struct ack a = {.magic = REPL_PONG_MAGIC};
			struct iovec iov = {&a, sizeof(a)};

			rc = repl_link_send_iov(l, &iov, 1);
			if (rc < 0)
				return rc;
		}
	}
	*kind_out = REPL_FRAME_EPOCH;
	return repl_epoch_recv_body(l, &h, max_len, buf_io, cap_io, len_out);
}

int repl_disk_frame_send(struct repl_link *l, const uint8_t *buf, size_t len)
{
	struct epoch_hdr h = {.magic = REPL_DISK_MAGIC, .len = len};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)buf, len}};

	if (!len || len > REPL_DISK_FRAME_MAX)
		return -EINVAL;
	return repl_link_send_iov(l, iov, 2);
}
