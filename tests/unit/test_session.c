/*
 * Replication sessions without a VM: the table of legal state changes, and
 * the session layer of a real replica (repl_secondary on loopback TCP) before
 * any guest state arrives:
 *   - connections that are not a primary (connect and close, garbage, a
 *     stall) are closed and the replica keeps listening;
 *   - the first primary that says hello is welcomed; a second one is refused
 *     with -EBUSY and a sentence while the first is served;
 *   - heartbeats (PING) are answered (PONG) during the wait for the copy;
 *   - a primary that leaves before its initial copy frees the replica for
 *     the next one;
 *   - a hello of another version, or with reserved bits, is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "replication/engine.h"
#include "replication/repl.h"

static const struct repl_transport_ops *T = &repl_tcp_ops;

/* ---- the state machine ---------------------------------------------------------------- */

/*
 * Every legal change, written out as pairs (the engine keeps a bit table):
 * any pair not listed must be refused, and a state's change to itself is a
 * no-op.
 */
static const enum repl_state legal[][2] = {
	{REPL_S_IDLE, REPL_S_SYNCING},
	{REPL_S_IDLE, REPL_S_STOPPED},
	{REPL_S_SYNCING, REPL_S_PROTECTED},
	{REPL_S_SYNCING, REPL_S_DEGRADED},
	{REPL_S_SYNCING, REPL_S_PRIMARY_LOST},
	{REPL_S_SYNCING, REPL_S_STOPPED},
	{REPL_S_SYNCING, REPL_S_IDLE},
	{REPL_S_PROTECTED, REPL_S_DEGRADED},
	{REPL_S_PROTECTED, REPL_S_PRIMARY_LOST},
	{REPL_S_PROTECTED, REPL_S_FAILED_OVER},
	{REPL_S_PROTECTED, REPL_S_STOPPED},
	{REPL_S_PROTECTED, REPL_S_RELEASED},
	{REPL_S_DEGRADED, REPL_S_STOPPED},
	{REPL_S_PRIMARY_LOST, REPL_S_FAILED_OVER},
	{REPL_S_PRIMARY_LOST, REPL_S_STOPPED},
	{REPL_S_FAILED_OVER, REPL_S_STOPPED},
	{REPL_S_RELEASED, REPL_S_FAILED_OVER},
	{REPL_S_RELEASED, REPL_S_STOPPED},
	/* live migration: the source's rounds and end, the destination's switch */
	{REPL_S_SYNCING, REPL_S_MIGRATING},
	{REPL_S_SYNCING, REPL_S_SWITCHING},
	{REPL_S_MIGRATING, REPL_S_MIGRATED},
	{REPL_S_MIGRATING, REPL_S_IN_DOUBT},
	{REPL_S_MIGRATING, REPL_S_STOPPED},
	{REPL_S_MIGRATED, REPL_S_STOPPED},
	{REPL_S_IN_DOUBT, REPL_S_STOPPED},
	{REPL_S_SWITCHING, REPL_S_FAILED_OVER},
	{REPL_S_SWITCHING, REPL_S_STOPPED},
	/* postcopy: the source serves the pages until the destination has them all */
	{REPL_S_MIGRATING, REPL_S_POSTCOPY},
	{REPL_S_POSTCOPY, REPL_S_MIGRATED},
	{REPL_S_POSTCOPY, REPL_S_POSTCOPY_BROKEN},
	{REPL_S_POSTCOPY, REPL_S_IN_DOUBT},
	{REPL_S_POSTCOPY, REPL_S_STOPPED},
	{REPL_S_POSTCOPY_BROKEN, REPL_S_STOPPED},
	{REPL_S_POSTCOPY_BROKEN, REPL_S_POSTCOPY},
	/* an async session resumed after its link broke (§8.7) */
	{REPL_S_DEGRADED, REPL_S_PROTECTED},
	{REPL_S_PRIMARY_LOST, REPL_S_PROTECTED},
};

static bool is_legal(enum repl_state a, enum repl_state b)
{
	for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
		if (legal[i][0] == a && legal[i][1] == b)
			return true;
	return false;
}

static void every_transition(void **state)
{
	unsigned a, b, n_legal = 0;

	(void)state;
	for (a = 0; a < REPL_N_STATES; a++) {
		assert_string_not_equal(repl_state_str(a), "?");
		for (b = 0; b < REPL_N_STATES; b++) {
			enum repl_state s = a;
			int rc = repl_state_change("fsm", &s, b, "test");

			if (a == b) {
				assert_int_equal(rc, 0);
				assert_int_equal(s, a);
			} else if (is_legal(a, b)) {
				assert_int_equal(rc, 0);
				assert_int_equal(s, b);
				n_legal++;
			} else {
				assert_int_equal(rc, -EINVAL);
				assert_int_equal(s, a); /* a refused change changes nothing */
			}
		}
	}
	assert_int_equal(n_legal, sizeof(legal) / sizeof(legal[0]));
	/* out of range: refused, not read past the table */
	{
		enum repl_state s = REPL_S_IDLE;

		assert_int_equal(repl_state_change("fsm", &s, (enum repl_state)REPL_N_STATES, "x"),
				 -EINVAL);
		assert_int_equal(s, REPL_S_IDLE);
	}
}

/* ---- a replica's session layer ------------------------------------------------------------ */

struct replica {
	struct repl_secondary *s;
	char addr[64];
};

/* A replica on loopback; with a key it authenticates its primaries. */
static void replica_start_key(struct replica *r, const struct repl_key *key, bool encrypt)
{
	struct repl_secondary_opts o = {.listen = "127.0.0.1:0",
					.conn = {.timeout_ms = 3000},
					.key = key,
					.encrypt = encrypt,
					.vm = {.name = "unit", .serial_fd = -1},
					.thread_rt = -1};
	char why[256];

	assert_int_equal(repl_secondary_start(&o, &r->s, why, sizeof(why)), 0);
	snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", repl_secondary_port(r->s));
}

static void replica_start(struct replica *r)
{
	replica_start_key(r, NULL, false);
}

static enum repl_state replica_state(struct replica *r)
{
	struct repl_status st;

	repl_secondary_status(r->s, &st);
	return st.state;
}

/* Wait (bounded) until the replica is in `want`. */
static void wait_state(struct replica *r, enum repl_state want)
{
	for (int i = 0; i < 1500 && replica_state(r) != want; i++)
		usleep(10000);
	assert_string_equal(repl_state_str(replica_state(r)), repl_state_str(want));
}

/* A hand-written primary's end: a link over a new connection to the replica. */
static struct repl_link *dial_via(struct replica *r, const struct repl_transport_ops *t)
{
	struct repl_conn_opts o = {.timeout_ms = 5000};
	struct repl_link *l = calloc(1, sizeof(*l));

	assert_non_null(l);
	l->t = t;
	assert_int_equal(t->connect(r->addr, &o, &l->c), 0);
	return l;
}

static struct repl_link *dial(struct replica *r)
{
	return dial_via(r, T);
}

static void hang_up(struct repl_link *l)
{
	repl_link_dispose(l);
	l->t->close(l->c);
	free(l);
}

/*
 * Say hello, with a key or none; returns the replica's answer (0 or its
 * status), its text in why. With a key and 0, the link is sealed.
 */
static int hello_key(struct repl_link *l, const struct repl_key *key, bool encrypt, char *why,
		     size_t why_len)
{
	struct repl_hello h = {.mem_bytes = 64ull << 20, .ncpus = 1};
	struct repl_handshake hs;
	uint32_t idle = 0;
	int rc;

	repl_handshake_init(&hs, key, encrypt);
	assert_int_equal(repl_hello_send(l, &hs, &h), 0);
	rc = repl_welcome_recv(l, &hs, &idle, why, why_len);
	if (!rc)
		assert_int_equal(idle, 3000); /* the replica's --repl-timeout */
	repl_handshake_dispose(&hs);
	return rc;
}

static int hello(struct repl_link *l, char *why, size_t why_len)
{
	return hello_key(l, NULL, false, why, why_len);
}

static void strangers_then_primaries(void **state)
{
	struct replica r;
	struct repl_link *c, *p1, *p2, *p3;
	char why[256];

	(void)state;
	replica_start(&r);
	/* connect and close */
	c = dial(&r);
	hang_up(c);
	/* garbage */
	c = dial(&r);
	{
		char junk[64];
		struct iovec iov = {junk, sizeof(junk)};

		memset(junk, 'x', sizeof(junk));
		assert_int_equal(T->send_iov(c->c, &iov, 1), 0);
	}
	hang_up(c);
	/* a stall: connected, says nothing past the hello deadline */
	c = dial(&r);
	sleep(2);
	hang_up(c);
	assert_int_equal(replica_state(&r), REPL_S_IDLE);

	/* the real primary */
	p1 = dial(&r);
	assert_int_equal(hello(p1, why, sizeof(why)), 0);
	wait_state(&r, REPL_S_SYNCING);
	/* a second primary is refused, with a reason, while the first is served */
	p2 = dial(&r);
	assert_int_equal(hello(p2, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "serves another primary"));
	hang_up(p2);
	/* the first is still served: its heartbeat is answered */
	assert_int_equal(repl_ping(p1), 0);
	assert_int_equal(repl_ping(p1), 0);
	assert_int_equal(replica_state(&r), REPL_S_SYNCING);
	/* it leaves before sending its copy: the replica waits for the next one */
	hang_up(p1);
	wait_state(&r, REPL_S_IDLE);
	p3 = dial(&r);
	assert_int_equal(hello(p3, why, sizeof(why)), 0);
	wait_state(&r, REPL_S_SYNCING);
	/* failover without a twin is refused, forced or not */
	{
		struct hv_vm *vm = NULL;

		assert_int_equal(repl_secondary_failover(r.s, true, &vm, why, sizeof(why)),
				 -ENOENT);
		assert_null(vm);
	}
	hang_up(p3);
	repl_secondary_free(r.s);
}

struct raw_hello {
	uint64_t magic;
	uint32_t version, flags;
	uint64_t mem_bytes;
	uint32_t ncpus, reserved;
	uint8_t nonce[REPL_NONCE_BYTES];
};

static void bad_hellos(void **state)
{
	struct raw_hello bad[] = {
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION + 1, 0, 64 << 20, 1, 0, {0}},
		{REPL_HELLO_MAGIC, 1, 0, 64 << 20, 1, 0, {0}}, /* version 1: before keys */
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION, 4, 64 << 20, 1, 0, {0}},
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION, 0, 64 << 20, 1, 7, {0}},
		/* a nonce without the flag that says a key is held */
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION, 0, 64 << 20, 1, 0, {1}},
		{REPL_EPOCH_MAGIC, REPL_SESSION_VERSION, 0, 64 << 20, 1, 0, {0}},
		/* RESUME (§8.6, §8.7) never comes with DISK or SUMS */
		{REPL_HELLO_MAGIC,
		 REPL_SESSION_VERSION,
		 REPL_HELLO_F_RESUME | REPL_HELLO_F_DISK,
		 64 << 20,
		 1,
		 0,
		 {0}},
		{REPL_HELLO_MAGIC,
		 REPL_SESSION_VERSION,
		 REPL_HELLO_F_RESUME | REPL_HELLO_F_SUMS,
		 64 << 20,
		 1,
		 0,
		 {0}},
		{REPL_HELLO_MAGIC,
		 REPL_SESSION_VERSION,
		 REPL_HELLO_F_MIGRATE | REPL_HELLO_F_RESUME | REPL_HELLO_F_SUMS,
		 64 << 20,
		 1,
		 0,
		 {0}},
	};
	struct replica r;
	char why[256];

	(void)state;
	replica_start(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct repl_link *c = dial(&r);
		struct iovec iov = {&bad[i], sizeof(bad[i])};

		assert_int_equal(T->send_iov(c->c, &iov, 1), 0);
		uint32_t idle;

		/* no welcome: the connection is closed */
		struct repl_handshake hs;

		repl_handshake_init(&hs, NULL, false);
		assert_int_not_equal(repl_welcome_recv(c, &hs, &idle, why, sizeof(why)), 0);
		hang_up(c);
		assert_int_equal(replica_state(&r), REPL_S_IDLE);
	}
	/* a VM this host cannot hold is refused with a reason */
	{
		struct repl_link *c = dial(&r);
		struct repl_hello h = {.mem_bytes = 1ull << 60, .ncpus = 1};
		uint32_t idle;

		struct repl_handshake hs;

		repl_handshake_init(&hs, NULL, false);
		assert_int_equal(repl_hello_send(c, &hs, &h), 0);
		assert_int_equal(repl_welcome_recv(c, &hs, &idle, why, sizeof(why)), -EFBIG);
		assert_non_null(strstr(why, "cannot hold"));
		hang_up(c);
	}
	/* and a good one is still welcome */
	{
		struct repl_link *c = dial(&r);

		assert_int_equal(hello(c, why, sizeof(why)), 0);
		hang_up(c);
	}
	repl_secondary_free(r.s);
}

/*
 * A RESUME hello (`migrate`: a postcopy's source; else an async primary) that
 * `r` cannot take is refused with -ENOENT and `want` in the reason; a fresh
 * session of the same kind is still welcome after. Frees r.
 */
static void resume_refused(struct replica *r, bool migrate, const char *want)
{
	struct repl_hello h = {.mem_bytes = 64 << 20, .ncpus = 1};
	struct repl_handshake hs;
	struct repl_link *c;
	char why[256];
	uint32_t idle;

	for (int fresh = 0; fresh < 2; fresh++) {
		c = dial(r);
		repl_handshake_init(&hs, NULL, false);
		hs.migrate = migrate;
		hs.resume = !fresh;
		assert_int_equal(repl_hello_send(c, &hs, &h), 0);
		assert_int_equal(repl_welcome_recv(c, &hs, &idle, why, sizeof(why)),
				 fresh ? 0 : -ENOENT);
		if (!fresh)
			assert_non_null(strstr(why, want));
		repl_handshake_dispose(&hs);
		hang_up(c);
		if (!fresh)
			assert_int_equal(replica_state(r), REPL_S_IDLE);
	}
	repl_secondary_free(r->s);
}

/* A postcopy's source coming back to a migration destination that waits for no postcopy. */
static void resume_without_postcopy(void **state)
{
	struct repl_secondary_opts o = {.listen = "127.0.0.1:0",
					.conn = {.timeout_ms = 3000},
					.vm = {.name = "unit", .serial_fd = -1},
					.thread_rt = -1,
					.incoming = true};
	struct replica r;
	char why[256];

	(void)state;
	assert_int_equal(repl_secondary_start(&o, &r.s, why, sizeof(why)), 0);
	snprintf(r.addr, sizeof(r.addr), "127.0.0.1:%u", repl_secondary_port(r.s));
	resume_refused(&r, true, "no postcopy waits for it here");
}

/* An async primary coming back (RESUME without MIGRATE, §8.7) to a replica that holds nothing. */
static void resume_without_checkpoint(void **state)
{
	struct replica r;

	(void)state;
	replica_start(&r);
	resume_refused(&r, false, "nothing to resume here: no checkpoint held");
}

/* The replica answers a PING between epochs and refuses frames it does not know. */
static void frames(void **state)
{
	struct replica r;
	struct repl_link *c;
	char why[256];

	(void)state;
	replica_start(&r);
	c = dial(&r);
	assert_int_equal(hello(c, why, sizeof(why)), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(repl_ping(c), 0);
	/* an unknown frame ends the session, and the replica waits for a primary again */
	{
		uint64_t hdr[2] = {0x1122334455667788ull, 0};
		struct iovec iov = {hdr, sizeof(hdr)};

		assert_int_equal(T->send_iov(c->c, &iov, 1), 0);
	}
	wait_state(&r, REPL_S_IDLE);
	hang_up(c);
	repl_secondary_free(r.s);
}

/* ---- authenticated links (docs/security.md) ------------------------------------------------ */

static void random_key(struct repl_key *k, uint8_t fill)
{
	memset(k->k, fill, sizeof(k->k));
	k->k[0] ^= (uint8_t)time(NULL);
}

/*
 * The replica's log (stderr) while `fn` runs, so a test can see that a
 * refusal names the peer; returned when `want` appears in it (bounded wait:
 * the listener logs from its own thread).
 */
static char logbuf[16384];
static int saved_stderr = -1;
static FILE *log_file;

static void log_capture_begin(void)
{
	fflush(stderr);
	log_file = tmpfile();
	assert_non_null(log_file);
	saved_stderr = dup(2);
	dup2(fileno(log_file), 2);
}

static const char *log_capture_wait(const char *want)
{
	size_t n = 0;

	for (int i = 0; i < 1000; i++) {
		fflush(stderr);
		n = (size_t)pread(fileno(log_file), logbuf, sizeof(logbuf) - 1, 0);
		logbuf[n < sizeof(logbuf) ? n : 0] = 0;
		if (strstr(logbuf, want))
			break;
		usleep(10000);
	}
	return logbuf;
}

static void log_capture_end(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	fclose(log_file);
	fputs(logbuf, stderr); /* still shown in the test's output */
}

/* The same key: welcomed, the link sealed (encrypted if either end asks), frames flow. */
static void right_key(void **state)
{
	/* {primary asks, replica asks}: encrypted if either does */
	static const bool modes[][2] = {{false, false}, {true, false}, {false, true}};
	struct repl_key k;
	char why[256];

	(void)state;
	random_key(&k, 0x5a);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		bool enc = modes[m][0] || modes[m][1];
		struct repl_status st;
		struct replica r;
		struct repl_link *p;

		replica_start_key(&r, &k, modes[m][1]);
		p = dial(&r);
		assert_int_equal(hello_key(p, &k, modes[m][0], why, sizeof(why)), 0);
		assert_true(repl_link_is_sealed(p));
		assert_int_equal(repl_link_is_encrypted(p), enc);
		wait_state(&r, REPL_S_SYNCING);
		repl_secondary_status(r.s, &st);
		assert_true(st.link_authenticated);
		assert_int_equal(st.link_encrypted, enc);
		for (int i = 0; i < 5; i++)
			assert_int_equal(repl_ping(p), 0);
		hang_up(p);
		wait_state(&r, REPL_S_IDLE);
		repl_secondary_free(r.s);
	}
}

/* A PROOF that is not the key's, as a primary with another key would send. */
static void send_bad_proof(struct repl_link *p)
{
	struct repl_hello h = {.mem_bytes = 64ull << 20, .ncpus = 1};
	struct repl_handshake hs;
	uint8_t welcome[REPL_WELCOME_BYTES];
	struct {
		uint64_t magic;
		uint8_t proof[REPL_PROOF_BYTES];
	} proof = {REPL_PROOF_MAGIC, {7}};
	struct repl_key other;
	struct iovec iov = {&proof, sizeof(proof)};
	int32_t status;

	random_key(&other, 0x11);
	repl_handshake_init(&hs, &other, false);
	assert_int_equal(repl_hello_send(p, &hs, &h), 0);
	assert_int_equal(T->recv(p->c, welcome, sizeof(welcome)), 0);
	memcpy(&status, welcome + 8, sizeof(status));
	assert_int_equal(status, 0);
	assert_int_equal(T->send_iov(p->c, &iov, 1), 0);
	repl_handshake_dispose(&hs);
}

/*
 * A wrong key is refused both ways: the primary finds the replica's proof
 * wrong; the replica finds a primary's proof wrong, logs it with the peer's
 * address, closes, and keeps serving: a primary with the key is then welcomed.
 */
static void wrong_key(void **state)
{
	struct repl_key k, other;
	struct replica r;
	struct repl_link *p;
	uint8_t b;
	char why[256];

	(void)state;
	random_key(&k, 0x5a);
	random_key(&other, 0xa5);
	replica_start_key(&r, &k, false);
	/* the primary's side: the replica cannot prove our key */
	p = dial(&r);
	assert_int_equal(hello_key(p, &other, false, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "keys differ"));
	assert_false(repl_link_is_sealed(p));
	hang_up(p);
	/* the replica's side: a proof under another key */
	log_capture_begin();
	p = dial(&r);
	send_bad_proof(p);
	assert_int_not_equal(T->recv(p->c, &b, 1), 0); /* closed, nothing said */
	log_capture_wait("wrong key");
	log_capture_end();
	assert_non_null(strstr(logbuf, "127.0.0.1:"));
	assert_non_null(strstr(logbuf, "a wrong key"));
	hang_up(p);
	assert_int_equal(replica_state(&r), REPL_S_IDLE);
	/* the listener goes on: the right primary is welcomed */
	p = dial(&r);
	assert_int_equal(hello_key(p, &k, false, why, sizeof(why)), 0);
	wait_state(&r, REPL_S_SYNCING);
	assert_int_equal(repl_ping(p), 0);
	hang_up(p);
	repl_secondary_free(r.s);
}

/* A key on one end only: refused with a reason that says which end lacks it. */
static void key_on_one_end(void **state)
{
	struct repl_key k;
	struct replica r;
	struct repl_link *p;
	char why[256];

	(void)state;
	random_key(&k, 0x5a);
	replica_start_key(&r, &k, false);
	p = dial(&r);
	assert_int_equal(hello(p, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "replica has a key and the primary none"));
	hang_up(p);
	assert_int_equal(replica_state(&r), REPL_S_IDLE);
	repl_secondary_free(r.s);

	replica_start(&r);
	p = dial(&r);
	assert_int_equal(hello_key(p, &k, false, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "replica has no key and the primary one"));
	assert_false(repl_link_is_sealed(p));
	hang_up(p);
	assert_int_equal(replica_state(&r), REPL_S_IDLE);
	repl_secondary_free(r.s);
}

/*
 * A transport over TCP that, once armed, alters one byte of what is sent,
 * and that keeps a copy of the last send (one sealed record) for a replay.
 */
static int tamper_at = -1; /* offset in the next send to flip; -1: none */
static uint8_t last_sent[256];
static size_t last_len;

static int tamper_send_iov(struct repl_conn *c, const struct iovec *iov, int iovcnt)
{
	uint8_t buf[sizeof(last_sent)];
	struct iovec one = {buf, 0};

	for (int i = 0; i < iovcnt; i++) {
		assert_true(one.iov_len + iov[i].iov_len <= sizeof(buf));
		memcpy(buf + one.iov_len, iov[i].iov_base, iov[i].iov_len);
		one.iov_len += iov[i].iov_len;
	}
	memcpy(last_sent, buf, one.iov_len);
	last_len = one.iov_len;
	if (tamper_at >= 0 && (size_t)tamper_at < one.iov_len) {
		buf[tamper_at] ^= 0x01;
		tamper_at = -1;
	}
	return T->send_iov(c, &one, 1);
}

static struct repl_transport_ops tamper_ops;

static const struct repl_transport_ops *tamper(void)
{
	tamper_ops = *T;
	tamper_ops.send_iov = tamper_send_iov;
	return &tamper_ops;
}

/*
 * A sealed record altered on the way (body, tag, length) ends the connection.
 * A longer length makes the replica wait for more: the bytes that follow
 * (here 64 of padding) then fail as that record's body and tag.
 */
static void altered_record(void **state)
{
	/* 4: the first byte of the PING record's body; 20: its tag; 0: its length */
	static const int where[] = {4, 20, 0};
	uint64_t ping[2] = {REPL_PING_MAGIC, 0}, pad[8] = {0};
	struct iovec iov = {ping, sizeof(ping)}, piov = {pad, sizeof(pad)};
	struct repl_key k;
	struct replica r;
	char why[256];

	(void)state;
	random_key(&k, 0x5a);
	for (int enc = 0; enc < 2; enc++)
		for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
			struct repl_link *p;

			replica_start_key(&r, &k, enc);
			p = dial_via(&r, tamper());
			assert_int_equal(hello_key(p, &k, false, why, sizeof(why)), 0);
			wait_state(&r, REPL_S_SYNCING);
			assert_int_equal(repl_ping(p), 0);
			tamper_at = where[i];
			assert_int_equal(repl_link_send_iov(p, &iov, 1), 0);
			if (!where[i])
				assert_int_equal(T->send_iov(p->c, &piov, 1), 0);
			wait_state(&r, REPL_S_IDLE); /* dropped: the primary is gone */
			assert_int_not_equal(repl_ping(p), 0);
			hang_up(p);
			repl_secondary_free(r.s);
		}
}

/* A sealed record sent again (a replay) ends the connection. */
static void replayed_record(void **state)
{
	struct repl_key k;
	struct replica r;
	struct repl_link *p;
	struct iovec iov;
	uint8_t pong[64];
	char why[256];

	(void)state;
	random_key(&k, 0x5a);
	replica_start_key(&r, &k, false);
	p = dial_via(&r, tamper());
	assert_int_equal(hello_key(p, &k, false, why, sizeof(why)), 0);
	wait_state(&r, REPL_S_SYNCING);
	assert_int_equal(repl_ping(p), 0); /* its record is kept in last_sent */
	assert_int_equal(last_len, 4 + 16 + REPL_SEAL_TAG);
	iov = (struct iovec){last_sent, last_len};
	assert_int_equal(T->send_iov(p->c, &iov, 1), 0);
	/* no PONG: the connection ends */
	assert_int_not_equal(T->recv(p->c, pong, 4 + 24 + REPL_SEAL_TAG), 0);
	wait_state(&r, REPL_S_IDLE);
	hang_up(p);
	repl_secondary_free(r.s);
}

/* Key files: generate then load; refused when shared, a symlink, malformed or existing. */
static void key_files(void **state)
{
	char dir[] = "/tmp/castor-key-XXXXXX", path[128], link[128], why[256];
	struct repl_key k, k2;
	struct stat st;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k", dir);
	snprintf(link, sizeof(link), "%s/l", dir);
	assert_int_equal(repl_key_generate(path, why, sizeof(why)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 65);
	assert_int_equal(repl_key_load(path, &k, why, sizeof(why)), 0);
	/* never overwritten */
	assert_int_equal(repl_key_generate(path, why, sizeof(why)), -EEXIST);
	assert_non_null(strstr(why, path));
	assert_int_equal(repl_key_load(path, &k2, why, sizeof(why)), 0);
	assert_memory_equal(k.k, k2.k, sizeof(k.k));
	/* a symlink: refused, named */
	assert_int_equal(symlink(path, link), 0);
	assert_int_not_equal(repl_key_load(link, &k2, why, sizeof(why)), 0);
	assert_non_null(strstr(why, link));
	assert_non_null(strstr(why, "symbolic link"));
	assert_int_not_equal(repl_key_generate(link, why, sizeof(why)), 0);
	/* readable by others */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(repl_key_load(path, &k2, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, path));
	assert_non_null(strstr(why, "0644"));
	assert_int_equal(chmod(path, 0620), 0);
	assert_int_equal(repl_key_load(path, &k2, why, sizeof(why)), -EPERM);
	/* malformed: bad hex, short, no newline, trailing bytes */
	{
		static const char *bad[] = {
			"zz34567890123456789012345678901234567890123456789012345678901234\n",
			"1234\n",
			"1234567890123456789012345678901234567890123456789012345678901234",
			"1234567890123456789012345678901234567890123456789012345678901234\nx",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			unlink(path);
			f = fopen(path, "w");
			assert_non_null(f);
			fputs(bad[i], f);
			fclose(f);
			assert_int_equal(chmod(path, 0600), 0);
			assert_int_equal(repl_key_load(path, &k2, why, sizeof(why)), -EINVAL);
			assert_non_null(strstr(why, path));
		}
	}
	unlink(link);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_transition),
		cmocka_unit_test(strangers_then_primaries),
		cmocka_unit_test(bad_hellos),
		cmocka_unit_test(frames),
		cmocka_unit_test(right_key),
		cmocka_unit_test(wrong_key),
		cmocka_unit_test(key_on_one_end),
		cmocka_unit_test(altered_record),
		cmocka_unit_test(replayed_record),
		cmocka_unit_test(key_files),
		cmocka_unit_test(resume_without_postcopy),
		cmocka_unit_test(resume_without_checkpoint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
