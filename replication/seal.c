/*
 * Sealed links (repl.h, docs/stream-format.md §8.2): after an authenticated
 * handshake every byte either way travels in records
 *
 *   { u32 length (1..REPL_SEAL_RECORD_MAX) | body | tag (16 bytes) }
 *
 * sealed with ChaCha20-Poly1305 (IETF) under the direction's key, the
 * nonce being the record's sequence number in that direction (u64, little
 * endian, after 4 zero bytes). The sequence is never sent: a record replayed,
 * reordered or dropped is opened with the wrong nonce and fails, and a
 * length altered on the way changes what Poly1305 covers. Authenticate-only
 * mode passes the body as additional data (sent in clear), encryption
 * encrypts it; docs/security.md has the measured cost of each.
 *
 * A record's failure (or a transport error inside a record) breaks the link
 * for good: what follows can no longer be framed or trusted.
 */
#define LOG_TAG "seal"
#include "replication/seal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* Auth-only records this large are tagged where they lie, not copied first. */
#define DIRECT_MIN (64u << 10)

struct repl_seal {
	bool encrypt;
	bool broken; /* a record failed, or the stream broke inside one */
	uint8_t tx_key[REPL_SEAL_KEY_BYTES], rx_key[REPL_SEAL_KEY_BYTES];
	uint64_t tx_seq, rx_seq;
	uint8_t *tx; /* a record being filled (REPL_SEAL_RECORD_MAX) */
	uint8_t *rx; /* an opened record not yet read to its end (REPL_SEAL_RECORD_MAX) */
	size_t rx_off, rx_len;
};

_Static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == REPL_SEAL_TAG, "tag size");
_Static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == REPL_SEAL_KEY_BYTES, "key size");

static void nonce_of(uint64_t seq, uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES])
{
	memset(n, 0, crypto_aead_chacha20poly1305_ietf_NPUBBYTES);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(seq >> (8 * i));
}

int repl_seal_new(bool encrypt, const uint8_t tx_key[REPL_SEAL_KEY_BYTES],
		  const uint8_t rx_key[REPL_SEAL_KEY_BYTES], struct repl_seal **out)
{
	struct repl_seal *s;

	*out = NULL;
	if (sodium_init() < 0)
		return -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->encrypt = encrypt;
	memcpy(s->tx_key, tx_key, REPL_SEAL_KEY_BYTES);
	memcpy(s->rx_key, rx_key, REPL_SEAL_KEY_BYTES);
	s->tx = malloc(REPL_SEAL_RECORD_MAX);
	s->rx = malloc(REPL_SEAL_RECORD_MAX);
	if (!s->tx || !s->rx) {
		repl_seal_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void repl_seal_free(struct repl_seal *s)
{
	if (!s)
		return;
	free(s->tx);
	free(s->rx);
	sodium_memzero(s, sizeof(*s));
	free(s);
}

int repl_seal_pair_new(bool encrypt, struct repl_seal **tx_out, struct repl_seal **rx_out)
{
	uint8_t k[REPL_SEAL_KEY_BYTES], other[REPL_SEAL_KEY_BYTES];
	int rc;

	*tx_out = *rx_out = NULL;
	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(k, sizeof(k));
	randombytes_buf(other, sizeof(other));
	rc = repl_seal_new(encrypt, k, other, tx_out);
	if (!rc)
		rc = repl_seal_new(encrypt, other, k, rx_out);
	if (rc < 0) {
		repl_seal_free(*tx_out);
		*tx_out = NULL;
	}
	sodium_memzero(k, sizeof(k));
	return rc;
}

int repl_seal_record(struct repl_seal *s, uint8_t *buf, size_t len, uint8_t tag[REPL_SEAL_TAG])
{
	uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	unsigned long long tlen;
	uint8_t none = 0;
	int r;

	if (!len || len > REPL_SEAL_RECORD_MAX)
		return -EMSGSIZE;
	nonce_of(s->tx_seq, n);
	if (s->encrypt)
		r = crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, tag, &tlen, buf, len,
								       NULL, 0, NULL, n, s->tx_key);
	else /* the body is additional data: authenticated, sent as it is */
		r = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
			&none, tag, &tlen, &none, 0, buf, len, NULL, n, s->tx_key);
	if (r)
		return -EIO;
	s->tx_seq++;
	return 0;
}

int repl_seal_open(struct repl_seal *s, uint8_t *buf, size_t len, const uint8_t tag[REPL_SEAL_TAG])
{
	uint8_t n[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	const uint8_t none = 0;
	int r;

	if (s->broken)
		return -EBADMSG;
	nonce_of(s->rx_seq, n);
	if (s->encrypt)
		r = crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, len, tag,
								       NULL, 0, n, s->rx_key);
	else
		r = crypto_aead_chacha20poly1305_ietf_decrypt_detached(NULL, NULL, &none, 0, tag,
								       buf, len, n, s->rx_key);
	if (r) {
		s->broken = true;
		LOG_ERR("record %llu of %zu bytes failed authentication: altered, replayed, "
			"reordered or injected; the link is given up",
			(unsigned long long)s->rx_seq, len);
		return -EBADMSG;
	}
	s->rx_seq++;
	return 0;
}

/* Seal `len` bytes at buf (s->tx, or the caller's own in auth-only mode) and send them. */
static int send_record(struct repl_link *l, uint8_t *buf, size_t len)
{
	uint8_t tag[REPL_SEAL_TAG];
	uint32_t hdr = (uint32_t)len;
	struct iovec iov[3] = {{&hdr, sizeof(hdr)}, {buf, len}, {tag, sizeof(tag)}};
	int rc;

	rc = repl_seal_record(l->seal, buf, len, tag);
	if (!rc)
		rc = l->t->send_iov(l->c, iov, 3);
	if (rc < 0)
		l->seal->broken = true; /* the peer's next record would not be this one */
	else
		l->tx_bytes += sizeof(hdr) + len + sizeof(tag);
	return rc;
}

int repl_link_send_iov(struct repl_link *l, const struct iovec *iov, int iovcnt)
{
	struct repl_seal *s = l->seal;
	size_t fill = 0;
	int rc = 0;

	if (!s) {
		rc = l->t->send_iov(l->c, iov, iovcnt);
		for (int i = 0; !rc && i < iovcnt; i++)
			l->tx_bytes += iov[i].iov_len;
		return rc;
	}
	if (s->broken)
		return -EPIPE;
	for (int i = 0; i < iovcnt && !rc; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left && !rc) {
			size_t n;

			if (!fill && !s->encrypt && left >= DIRECT_MIN) {
				/* sealing only tags: the caller's bytes go out as they are */
				n = left < REPL_SEAL_RECORD_MAX ? left : REPL_SEAL_RECORD_MAX;
				rc = send_record(l, p, n);
			} else {
				n = REPL_SEAL_RECORD_MAX - fill;
				n = left < n ? left : n;
				memcpy(s->tx + fill, p, n);
				fill += n;
				if (fill == REPL_SEAL_RECORD_MAX) {
					rc = send_record(l, s->tx, fill);
					fill = 0;
				}
			}
			p += n;
			left -= n;
		}
	}
	if (!rc && fill)
		rc = send_record(l, s->tx, fill);
	return rc;
}

/* The next record, into `buf` (at least its length: checked), opened. */
static int recv_record_into(struct repl_link *l, uint8_t *buf, size_t len)
{
	uint8_t tag[REPL_SEAL_TAG];
	int rc;

	rc = l->t->recv(l->c, buf, len);
	if (!rc)
		rc = l->t->recv(l->c, tag, sizeof(tag));
	if (!rc) {
		l->rx_bytes += sizeof(uint32_t) + len + sizeof(tag);
		rc = repl_seal_open(l->seal, buf, len, tag);
	}
	return rc;
}

int repl_link_wait_readable(struct repl_link *l, int timeout_ms)
{
	if (l->seal && l->seal->rx_off < l->seal->rx_len)
		return 1;
	if (!l->t->wait_readable)
		return -EOPNOTSUPP;
	return l->t->wait_readable(l->c, timeout_ms);
}

int repl_link_recv(struct repl_link *l, void *buf, size_t len)
{
	struct repl_seal *s = l->seal;
	uint8_t *p = buf;
	int rc = 0;

	if (!s) {
		rc = l->t->recv(l->c, buf, len);
		if (!rc)
			l->rx_bytes += len;
		return rc;
	}
	while (len && !rc) {
		uint32_t n;

		if (s->broken) {
			rc = -EBADMSG;
			break;
		}
		if (s->rx_off < s->rx_len) {
			size_t take = s->rx_len - s->rx_off;

			take = take < len ? take : len;
			memcpy(p, s->rx + s->rx_off, take);
			s->rx_off += take;
			p += take;
			len -= take;
			continue;
		}
		rc = l->t->recv(l->c, &n, sizeof(n));
		if (rc < 0)
			break;
		if (!n || n > REPL_SEAL_RECORD_MAX) {
			LOG_ERR("a sealed record of %u bytes (limit %u): not our peer's", n,
				REPL_SEAL_RECORD_MAX);
			rc = -EBADMSG;
			break;
		}
		if (n <= len) {
			/* a record the caller wants whole: opened where it lands */
			rc = recv_record_into(l, p, n);
			p += n;
			len -= n;
		} else {
			s->rx_off = s->rx_len = 0;
			rc = recv_record_into(l, s->rx, n);
			if (!rc)
				s->rx_len = n;
		}
	}
	if (rc < 0)
		s->broken = true;
	return rc;
}

bool repl_link_is_sealed(const struct repl_link *l)
{
	return l->seal != NULL;
}

bool repl_link_is_encrypted(const struct repl_link *l)
{
	return l->seal && l->seal->encrypt;
}

void repl_link_dispose(struct repl_link *l)
{
	repl_seal_free(l->seal);
	l->seal = NULL;
}
