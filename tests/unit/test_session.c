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
#include <string.h>
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
	{REPL_S_IDLE, REPL_S_SYNCING},		 {REPL_S_IDLE, REPL_S_STOPPED},
	{REPL_S_SYNCING, REPL_S_PROTECTED},	 {REPL_S_SYNCING, REPL_S_DEGRADED},
	{REPL_S_SYNCING, REPL_S_PRIMARY_LOST},	 {REPL_S_SYNCING, REPL_S_STOPPED},
	{REPL_S_SYNCING, REPL_S_IDLE},		 {REPL_S_PROTECTED, REPL_S_DEGRADED},
	{REPL_S_PROTECTED, REPL_S_PRIMARY_LOST}, {REPL_S_PROTECTED, REPL_S_FAILED_OVER},
	{REPL_S_PROTECTED, REPL_S_STOPPED},	 {REPL_S_PROTECTED, REPL_S_RELEASED},
	{REPL_S_DEGRADED, REPL_S_STOPPED},	 {REPL_S_PRIMARY_LOST, REPL_S_FAILED_OVER},
	{REPL_S_PRIMARY_LOST, REPL_S_STOPPED},	 {REPL_S_FAILED_OVER, REPL_S_STOPPED},
	{REPL_S_RELEASED, REPL_S_FAILED_OVER},	 {REPL_S_RELEASED, REPL_S_STOPPED},
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

static void replica_start(struct replica *r)
{
	struct repl_secondary_opts o = {.listen = "127.0.0.1:0",
					.conn = {.timeout_ms = 3000},
					.vm = {.name = "unit", .serial_fd = -1},
					.thread_rt = -1};
	char why[256];

	assert_int_equal(repl_secondary_start(&o, &r->s, why, sizeof(why)), 0);
	snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", repl_secondary_port(r->s));
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
	for (int i = 0; i < 500 && replica_state(r) != want; i++)
		usleep(10000);
	assert_string_equal(repl_state_str(replica_state(r)), repl_state_str(want));
}

static struct repl_conn *dial(struct replica *r)
{
	struct repl_conn_opts o = {.timeout_ms = 5000};
	struct repl_conn *c = NULL;

	assert_int_equal(T->connect(r->addr, &o, &c), 0);
	return c;
}

/* Say hello; returns the replica's answer (0 or its status), its text in why. */
static int hello(struct repl_conn *c, char *why, size_t why_len)
{
	struct repl_hello h = {.mem_bytes = 64ull << 20, .ncpus = 1};

	uint32_t idle = 0;
	int rc;

	assert_int_equal(repl_hello_send(T, c, &h), 0);
	rc = repl_welcome_recv(T, c, &idle, why, why_len);
	if (!rc)
		assert_int_equal(idle, 3000); /* the replica's --repl-timeout */
	return rc;
}

static void strangers_then_primaries(void **state)
{
	struct replica r;
	struct repl_conn *c, *p1, *p2, *p3;
	char why[256];

	(void)state;
	replica_start(&r);
	/* connect and close */
	c = dial(&r);
	T->close(c);
	/* garbage */
	c = dial(&r);
	{
		char junk[64];
		struct iovec iov = {junk, sizeof(junk)};

		memset(junk, 'x', sizeof(junk));
		assert_int_equal(T->send_iov(c, &iov, 1), 0);
	}
	T->close(c);
	/* a stall: connected, says nothing past the hello deadline */
	c = dial(&r);
	sleep(2);
	T->close(c);
	assert_int_equal(replica_state(&r), REPL_S_IDLE);

	/* the real primary */
	p1 = dial(&r);
	assert_int_equal(hello(p1, why, sizeof(why)), 0);
	wait_state(&r, REPL_S_SYNCING);
	/* a second primary is refused, with a reason, while the first is served */
	p2 = dial(&r);
	assert_int_equal(hello(p2, why, sizeof(why)), -EBUSY);
	assert_non_null(strstr(why, "serves another primary"));
	T->close(p2);
	/* the first is still served: its heartbeat is answered */
	assert_int_equal(repl_ping(T, p1), 0);
	assert_int_equal(repl_ping(T, p1), 0);
	assert_int_equal(replica_state(&r), REPL_S_SYNCING);
	/* it leaves before sending its copy: the replica waits for the next one */
	T->close(p1);
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
	T->close(p3);
	repl_secondary_free(r.s);
}

struct raw_hello {
	uint64_t magic;
	uint32_t version, flags;
	uint64_t mem_bytes;
	uint32_t ncpus, reserved;
};

static void bad_hellos(void **state)
{
	struct raw_hello bad[] = {
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION + 1, 0, 64 << 20, 1, 0},
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION, 1, 64 << 20, 1, 0},
		{REPL_HELLO_MAGIC, REPL_SESSION_VERSION, 0, 64 << 20, 1, 7},
		{REPL_EPOCH_MAGIC, REPL_SESSION_VERSION, 0, 64 << 20, 1, 0},
	};
	struct replica r;
	char why[256];

	(void)state;
	replica_start(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct repl_conn *c = dial(&r);
		struct iovec iov = {&bad[i], sizeof(bad[i])};

		assert_int_equal(T->send_iov(c, &iov, 1), 0);
		uint32_t idle;

		/* no welcome: the connection is closed */
		assert_int_not_equal(repl_welcome_recv(T, c, &idle, why, sizeof(why)), 0);
		T->close(c);
		assert_int_equal(replica_state(&r), REPL_S_IDLE);
	}
	/* a VM this host cannot hold is refused with a reason */
	{
		struct repl_conn *c = dial(&r);
		struct repl_hello h = {.mem_bytes = 1ull << 60, .ncpus = 1};
		uint32_t idle;

		assert_int_equal(repl_hello_send(T, c, &h), 0);
		assert_int_equal(repl_welcome_recv(T, c, &idle, why, sizeof(why)), -EFBIG);
		assert_non_null(strstr(why, "cannot hold"));
		T->close(c);
	}
	/* and a good one is still welcome */
	{
		struct repl_conn *c = dial(&r);

		assert_int_equal(hello(c, why, sizeof(why)), 0);
		T->close(c);
	}
	repl_secondary_free(r.s);
}

/* The replica answers a PING between epochs and refuses frames it does not know. */
static void frames(void **state)
{
	struct replica r;
	struct repl_conn *c;
	char why[256];

	(void)state;
	replica_start(&r);
	c = dial(&r);
	assert_int_equal(hello(c, why, sizeof(why)), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(repl_ping(T, c), 0);
	/* an unknown frame ends the session, and the replica waits for a primary again */
	{
		uint64_t hdr[2] = {0x1122334455667788ull, 0};
		struct iovec iov = {hdr, sizeof(hdr)};

		assert_int_equal(T->send_iov(c, &iov, 1), 0);
	}
	wait_state(&r, REPL_S_IDLE);
	T->close(c);
	repl_secondary_free(r.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_transition),
		cmocka_unit_test(strangers_then_primaries),
		cmocka_unit_test(bad_hellos),
		cmocka_unit_test(frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
