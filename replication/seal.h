/*
 * Private to replication/: the frames epoch.c and session.c share, and how
 * the session layer hands the keys it derived in the handshake to a link's
 * seal (seal.c).
 */
#ifndef CASTOR_REPL_SEAL_H
#define CASTOR_REPL_SEAL_H

#include "replication/repl.h"

#define REPL_SEAL_KEY_BYTES 32u

/* An epoch's header, and the PING and BYE frames (docs/stream-format.md §8). */
struct epoch_hdr {
	uint64_t magic;
	uint64_t len;
};
_Static_assert(sizeof(struct epoch_hdr) == 16, "epoch header layout");

/* An ack, and the PONG. */
struct ack {
	uint64_t magic;
	uint64_t stream_id;
	int32_t status;
	uint32_t reserved;
};
_Static_assert(sizeof(struct ack) == 24, "ack layout");

/* epoch.c: the body of an epoch whose header was received (checked against max_len). */
int repl_epoch_recv_body(struct repl_link *l, const struct epoch_hdr *h, uint64_t max_len,
			 uint8_t **buf_io, size_t *cap_io, size_t *len_out);

/*
 * A seal sending under tx_key and receiving under rx_key, both sequences at
 * 0, its record buffers allocated now (only ever after the peer proved the
 * key: nothing is allocated for a stranger). -ENOMEM.
 */
int repl_seal_new(bool encrypt, const uint8_t tx_key[REPL_SEAL_KEY_BYTES],
		  const uint8_t rx_key[REPL_SEAL_KEY_BYTES], struct repl_seal **out);

#endif
