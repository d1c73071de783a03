/*
 * The session layer on arbitrary bytes from the peer (replication/session.c,
 * docs/stream-format.md §8): the first byte picks a role -- a replica reading
 * a primary's HELLO and proof, or a primary reading a replica's WELCOME --
 * with or without a key; the rest is what the peer sent, followed by frames.
 * Rules: never crash, hang or allocate past a frame's cap; and with a key, no
 * input ever completes the handshake, because completing it takes a proof
 * over this end's fresh random nonce that only a holder of the key can make.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "replication/repl.h"
#include "tests/fuzz/fuzz.h"

/* A connection that reads the fuzz input and records what this end sends. */
struct repl_conn {
	const uint8_t *in;
	size_t in_len, in_pos;
	uint8_t out[4096];
	size_t out_len;
};

static int mem_send(struct repl_conn *c, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		size_t n = iov[i].iov_len;

		if (n > sizeof(c->out) - c->out_len)
			n = sizeof(c->out) - c->out_len;
		memcpy(c->out + c->out_len, iov[i].iov_base, n);
		c->out_len += n;
	}
	return 0;
}

static int mem_recv(struct repl_conn *c, void *buf, size_t len)
{
	if (len > c->in_len - c->in_pos)
		return -ECONNRESET;
	memcpy(buf, c->in + c->in_pos, len);
	c->in_pos += len;
	return 0;
}

static const struct repl_transport_ops mem_ops = {
	.name = "memory", .send_iov = mem_send, .recv = mem_recv};

static const struct repl_key fuzz_key = {.k = {1, 2, 3, 4, 5, 6, 7, 8, 9}};

/* What follows the handshake: frames, each capped, until the input ends. */
static void frames(struct repl_link *l)
{
	uint8_t *buf = NULL;
	size_t cap = 0, len;
	enum repl_frame kind;
	int n;

	for (n = 0; n < 16; n++) {
		if (repl_frame_recv_into(l, 1u << 16, &buf, &cap, &len, &kind) < 0)
			break;
		FUZZ_CHECK(len <= (1u << 16));
		if (kind == REPL_FRAME_BYE)
			break;
	}
	free(buf);
}

static void replica(struct repl_conn *c, bool with_key)
{
	struct repl_link l = {.t = &mem_ops, .c = c};
	struct repl_handshake hs;
	struct repl_hello h;
	char why[192] = "", text[REPL_WELCOME_TEXT];
	int rc;

	repl_handshake_init(&hs, with_key ? &fuzz_key : NULL, false);
	rc = repl_hello_recv(&l, &hs, &h, why, sizeof(why));
	if (rc < 0) {
		FUZZ_CHECK(why[0] != 0);
		goto out;
	}
	if (repl_handshake_check(&hs, text, sizeof(text)) < 0)
		goto out; /* one end has a key, the other none: refused before any proof */
	if (repl_welcome_send(&l, &hs, 0, 2000, "welcome") < 0)
		goto out;
	rc = repl_proof_recv(&l, &hs, why, sizeof(why));
	FUZZ_CHECK(!with_key || rc < 0); /* nobody without the key passes */
	if (rc == 0)
		frames(&l);
out:
	repl_handshake_dispose(&hs);
	repl_link_dispose(&l);
}

static void primary(struct repl_conn *c, bool with_key)
{
	struct repl_link l = {.t = &mem_ops, .c = c};
	const struct repl_hello h = {.mem_bytes = 64u << 20, .ncpus = 1};
	struct repl_handshake hs;
	char why[192] = "";
	uint32_t idle = 0;
	int rc;

	repl_handshake_init(&hs, with_key ? &fuzz_key : NULL, true);
	if (repl_hello_send(&l, &hs, &h) < 0)
		goto out;
	rc = repl_welcome_recv(&l, &hs, &idle, why, sizeof(why));
	FUZZ_CHECK(!with_key || rc < 0); /* the replica's proof covers our fresh nonce */
	if (rc < 0)
		FUZZ_CHECK(why[0] != 0);
	else
		frames(&l);
out:
	repl_handshake_dispose(&hs);
	repl_link_dispose(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repl_conn *c;

	if (size < 1)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return 0;
	c->in = data + 1;
	c->in_len = size - 1;
	switch (data[0] % 4) {
	case 0:
		replica(c, false);
		break;
	case 1:
		replica(c, true);
		break;
	case 2:
		primary(c, false);
		break;
	default:
		primary(c, true);
		break;
	}
	free(c);
	return 0;
}

/* Seeds: what a real primary and a real replica send, without a key and with one. */
void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	for (int mode = 0; mode < 4; mode++) {
		struct repl_conn *c = calloc(1, sizeof(*c));
		struct repl_link l = {.t = &mem_ops, .c = c};
		struct repl_handshake hs;
		uint8_t seed[1 + sizeof(c->out)];

		if (!c)
			return;
		repl_handshake_init(&hs, mode & 1 ? &fuzz_key : NULL, false);
		if (mode < 2) { /* a replica reads a hello */
			const struct repl_hello h = {.mem_bytes = 64u << 20, .ncpus = 1};

			repl_hello_send(&l, &hs, &h);
			if (mode & 1) { /* and a proof, made without the key: it must fail */
				const uint64_t magic = REPL_PROOF_MAGIC;
				uint8_t fake[8 + REPL_PROOF_BYTES] = {0};
				struct iovec iov = {fake, sizeof(fake)};

				memcpy(fake, &magic, 8);
				mem_send(c, &iov, 1);
			}
		} else { /* a primary reads a welcome */
			repl_welcome_send(&l, &hs, 0, 2000, "welcome");
		}
		seed[0] = (uint8_t)mode;
		memcpy(seed + 1, c->out, c->out_len);
		add(ctx, seed, 1 + c->out_len);
		repl_handshake_dispose(&hs);
		repl_link_dispose(&l);
		free(c);
	}
}
