/*
 * The TCP transport on loopback: whole vectored sends and exact receives,
 * a silent peer reported within the timeout (an ack's wait grown with its
 * stream), a vanished peer reported (no SIGPIPE), the cut-after-K-bytes hook
 * delivering exactly K bytes, addresses by number and by name, and bad
 * addresses refused with a message naming why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "replication/repl.h"

static const struct repl_transport_ops *T = &repl_tcp_ops;
/* A plain link over a connection (plain links hold no state: one per call will do). */
#define PLAIN(conn) (&(struct repl_link){.t = T, .c = (conn)})

struct pair {
	struct repl_listener *l;
	struct repl_conn *a, *b; /* a: connected side, b: accepted side */
};

static void make_pair(struct pair *p, const struct repl_conn_opts *o)
{
	char addr[64];

	assert_int_equal(T->listen("127.0.0.1:0", o, &p->l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(p->l));
	assert_int_equal(T->connect(addr, o, &p->a), 0);
	assert_int_equal(T->accept(p->l, 2000, &p->b), 0);
}

static void free_pair(struct pair *p)
{
	T->close(p->a);
	T->close(p->b);
	T->close_listener(p->l);
}

struct big {
	struct repl_conn *c;
	uint8_t *buf;
	size_t len;
	int rc;
};

static void *receiver(void *arg)
{
	struct big *b = arg;

	b->rc = T->recv(b->c, b->buf, b->len);
	return NULL;
}

static void round_trip(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000};
	struct pair p;
	static uint8_t data[3 << 20], got[3 << 20];
	struct iovec iov[3] = {{data, 1000}, {data + 1000, 0}, {data + 1000, sizeof(data) - 1000}};
	struct big b = {.buf = got, .len = sizeof(got)};
	pthread_t th;
	size_t i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	make_pair(&p, &o);
	b.c = p.b;
	/* 3 MiB: more than the socket buffers, so both sides loop */
	assert_int_equal(pthread_create(&th, NULL, receiver, &b), 0);
	assert_int_equal(T->send_iov(p.a, iov, 3), 0);
	pthread_join(th, NULL);
	assert_int_equal(b.rc, 0);
	assert_memory_equal(got, data, sizeof(data));
	free_pair(&p);
}

struct sender {
	struct repl_conn *c;
	const uint8_t *buf;
	size_t len;
	int rc;
};

static void *send_then_hear(void *arg)
{
	struct sender *s = arg;
	uint8_t x;
	struct iovec iov = {(void *)s->buf, s->len};

	s->rc = T->send_iov(s->c, &iov, 1);
	if (!s->rc)
		s->rc = T->recv(s->c, &x, 1);
	return NULL;
}

/*
 * A receiver that stops reading for longer than the link's timeout (a replica
 * creating its VM before the initial copy) closes its window; a sender that
 * raised its timeout for that phase waits it out. The kernel would give up on
 * the zero window after the old TCP_USER_TIMEOUT if set_timeout left it.
 */
static void slow_reader_within_a_raised_timeout(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 300};
	static uint8_t data[8 << 20], got[8 << 20];
	struct sender s = {.buf = data, .len = sizeof(data)};
	struct timespec stall = {.tv_sec = 2};
	uint8_t ack = 1;
	struct iovec iov = {&ack, 1};
	struct pair p;
	pthread_t th;

	memset(data, 0x5a, sizeof(data));
	make_pair(&p, &o);
	T->set_timeout(p.a, 10000);
	T->set_timeout(p.b, 10000);
	s.c = p.a;
	assert_int_equal(pthread_create(&th, NULL, send_then_hear, &s), 0);
	nanosleep(&stall, NULL);
	assert_int_equal(T->recv(p.b, got, sizeof(got)), 0);
	assert_int_equal(T->send_iov(p.b, &iov, 1), 0);
	pthread_join(th, NULL);
	assert_int_equal(s.rc, 0);
	assert_memory_equal(got, data, sizeof(data));
	free_pair(&p);
}

static void silent_peer_times_out(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 200};
	struct pair p;
	uint8_t x;

	make_pair(&p, &o);
	assert_int_equal(T->recv(p.b, &x, 1), -ETIMEDOUT);
	free_pair(&p);
}

struct late_ack {
	struct repl_conn *c;
	int rc;
};

static void *ack_after_a_second(void *arg)
{
	struct late_ack *a = arg;
	struct timespec t = {.tv_sec = 1};

	nanosleep(&t, NULL);
	a->rc = repl_ack_send(PLAIN(a->c), 7, 0);
	return NULL;
}

/*
 * A peer acks a stream once it has applied it: the ack of a big stream (a
 * migration's round) is waited for longer than the link's timeout, which holds
 * again afterwards; a small stream's late ack is a dead peer.
 */
static void ack_wait_grows_with_the_stream(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 300};
	struct late_ack la = {0};
	struct pair p;
	pthread_t th;
	uint64_t id = 0;
	int32_t st = 1;
	uint8_t x;

	assert_int_equal(repl_ack_wait_ms(300, 0), 300);
	assert_int_equal(repl_ack_wait_ms(300, 64ull << 20),
			 300 + (64u << 20) / REPL_ACK_APPLY_BYTES_PER_MS);
	assert_int_equal(repl_ack_wait_ms(300, 1ull << 40), REPL_SYNC_TIMEOUT_MS);
	assert_int_equal(repl_ack_wait_ms(REPL_SYNC_TIMEOUT_MS + 1, 1ull << 40),
			 REPL_SYNC_TIMEOUT_MS + 1);

	make_pair(&p, &o);
	la.c = p.b;
	assert_int_equal(pthread_create(&th, NULL, ack_after_a_second, &la), 0);
	assert_int_equal(repl_ack_recv_sized(PLAIN(p.a), 300, 64ull << 20, &id, &st), 0);
	pthread_join(th, NULL);
	assert_int_equal(la.rc, 0);
	assert_int_equal(id, 7);
	assert_int_equal(st, 0);
	/* the link's own timeout is back: silence is a dead peer again */
	assert_int_equal(T->recv(p.a, &x, 1), -ETIMEDOUT);

	/* a small stream's ack a second late is not waited for */
	assert_int_equal(pthread_create(&th, NULL, ack_after_a_second, &la), 0);
	assert_int_equal(repl_ack_recv_sized(PLAIN(p.a), 300, 4096, &id, &st), -ETIMEDOUT);
	pthread_join(th, NULL);
	free_pair(&p);
}

static void vanished_peer(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000};
	struct pair p;
	uint8_t x[16] = {0};
	struct iovec iov = {x, sizeof(x)};
	int k, rc = 0;

	make_pair(&p, &o);
	T->close(p.b);
	p.b = NULL;
	assert_int_equal(T->recv(p.a, x, 1), -ECONNRESET);
	/* sending into a closed connection fails, and never raises SIGPIPE */
	for (k = 0; k < 10 && !rc; k++)
		rc = T->send_iov(p.a, &iov, 1);
	assert_int_equal(rc, -ECONNRESET);
	free_pair(&p);
}

static void peer_dies_mid_message(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000};
	struct pair p;
	uint8_t half[100] = {1}, buf[200];
	struct iovec iov = {half, sizeof(half)};

	make_pair(&p, &o);
	assert_int_equal(T->send_iov(p.a, &iov, 1), 0);
	T->close(p.a);
	p.a = NULL;
	assert_int_equal(T->recv(p.b, buf, sizeof(buf)), -ECONNRESET);
	free_pair(&p);
}

/* The test hook: exactly K bytes reach the peer, then the connection is gone. */
static void cut_after_bytes(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000, .cut_after_bytes = 4000};
	struct repl_conn_opts plain = {.timeout_ms = 2000};
	struct repl_listener *l;
	struct repl_conn *a, *b;
	static uint8_t data[10000], got[10000];
	struct iovec iov[2] = {{data, 3000}, {data + 3000, 7000}};
	char addr[64];
	size_t i;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	assert_int_equal(T->listen("127.0.0.1:0", &plain, &l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(l));
	assert_int_equal(T->connect(addr, &o, &a), 0);
	assert_int_equal(T->accept(l, 2000, &b), 0);
	assert_int_equal(T->send_iov(a, iov, 2), -ECONNRESET);
	assert_int_equal(T->send_iov(a, iov, 1), -ECONNRESET); /* stays cut */
	assert_int_equal(T->recv(b, got, 4000), 0);
	assert_memory_equal(got, data, 4000);
	assert_int_equal(T->recv(b, got, 1), -ECONNRESET);
	T->close(a);
	T->close(b);
	T->close_listener(l);
}

/*
 * Epochs into a kept buffer: it grows once and is reused; a peer that dies
 * inside an epoch leaves no length; a set_timeout makes a silent peer wait
 * longer; abort wakes a blocked receive at once.
 */
static void epochs_into_a_kept_buffer(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 300};
	static uint8_t e1[50000], e2[1000];
	uint8_t *buf = NULL, *first;
	size_t cap = 0, len = 99;
	struct pair p;
	uint64_t t0;

	memset(e1, 0x11, sizeof(e1));
	memset(e2, 0x22, sizeof(e2));
	make_pair(&p, &o);
	assert_int_equal(repl_epoch_send(PLAIN(p.a), e1, sizeof(e1)), 0);
	assert_int_equal(repl_epoch_recv_into(PLAIN(p.b), 1 << 20, &buf, &cap, &len), 0);
	assert_int_equal(len, sizeof(e1));
	assert_memory_equal(buf, e1, sizeof(e1));
	first = buf;
	assert_int_equal(repl_epoch_send(PLAIN(p.a), e2, sizeof(e2)), 0);
	assert_int_equal(repl_epoch_recv_into(PLAIN(p.b), 1 << 20, &buf, &cap, &len), 0);
	assert_int_equal(len, sizeof(e2));
	assert_ptr_equal(buf, first); /* no new allocation for a smaller epoch */
	assert_memory_equal(buf, e2, sizeof(e2));
	/* over the limit: refused before anything is read into the buffer */
	assert_int_equal(repl_epoch_send(PLAIN(p.a), e1, sizeof(e1)), 0);
	assert_int_equal(repl_epoch_recv_into(PLAIN(p.b), 1000, &buf, &cap, &len), -EMSGSIZE);
	assert_int_equal(len, 0);
	free_pair(&p);

	/* a longer timeout is honoured, and abort ends the wait at once */
	make_pair(&p, &o);
	T->set_timeout(p.b, 5000);
	t0 = (uint64_t)time(NULL);
	T->abort(p.b);
	assert_int_not_equal(repl_epoch_recv_into(PLAIN(p.b), 1 << 20, &buf, &cap, &len), 0);
	assert_true((uint64_t)time(NULL) - t0 < 3);
	assert_int_equal(len, 0);
	free_pair(&p);

	/* the peer dies in the middle of an epoch: no length, an error */
	make_pair(&p, &o);
	{
		uint64_t hdr[2] = {REPL_EPOCH_MAGIC, 4096};
		struct iovec iov = {hdr, sizeof(hdr)};

		assert_int_equal(T->send_iov(p.a, &iov, 1), 0);
		T->close(p.a);
		p.a = NULL;
	}
	assert_int_equal(repl_epoch_recv_into(PLAIN(p.b), 1 << 20, &buf, &cap, &len), -ECONNRESET);
	assert_int_equal(len, 0);
	free_pair(&p);
	free(buf);
}

/* parse_ok ADDR FAMILY PORT: repl_parse_addr gives that family and port */
static void parse_ok(const char *addr, int family, uint16_t port)
{
	struct sockaddr_storage ss;
	unsigned len = 0;
	char why[256] = "";

	if (repl_parse_addr(addr, &ss, &len, why, sizeof(why)) != 0)
		fail_msg("%s: %s", addr, why);
	assert_int_equal(ss.ss_family, family);
	if (family == AF_INET) {
		assert_int_equal(len, sizeof(struct sockaddr_in));
		assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), port);
	} else {
		assert_int_equal(len, sizeof(struct sockaddr_in6));
		assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), port);
	}
}

/* parse_bad ADDR WHY: refused with -EINVAL and a message containing WHY */
static void parse_bad(const char *addr, const char *want)
{
	struct sockaddr_storage ss;
	unsigned len = 0;
	char why[256] = "";

	assert_int_equal(repl_parse_addr(addr, &ss, &len, why, sizeof(why)), -EINVAL);
	if (!strstr(why, want))
		fail_msg("%s: '%s' lacks '%s'", addr ? addr : "(null)", why, want);
}

static void addresses(void **state)
{
	parse_ok("127.0.0.1:0", AF_INET, 0);
	parse_ok("127.0.0.1:7000", AF_INET, 7000);
	parse_ok("[::1]:5", AF_INET6, 5);
	parse_ok("[::ffff:127.0.0.1]:65535", AF_INET6, 65535);
	/* a name, resolved through /etc/hosts; either family is right for localhost */
	{
		struct sockaddr_storage ss;
		unsigned len;
		char why[256] = "";

		if (repl_parse_addr("localhost:1234", &ss, &len, why, sizeof(why)) != 0)
			fail_msg("localhost:1234: %s", why);
		assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
		assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 1234);
	}
	parse_ok("127.0.0.1:0080", AF_INET, 80); /* decimal, never octal */

	parse_bad(NULL, "is not HOST:PORT");
	parse_bad("", "is not HOST:PORT");
	parse_bad("127.0.0.1", "is not HOST:PORT");
	parse_bad(":80", "the host is missing");
	parse_bad("[]:80", "the host is missing");
	parse_bad("127.0.0.1:", "port '' is not a number");
	parse_bad("127.0.0.1:99999", "port '99999' is not a number from 0 to 65535");
	parse_bad("127.0.0.1:8x", "port '8x'");
	parse_bad("127.0.0.1:0x50", "port '0x50'");
	parse_bad("localhost:-1", "port '-1'");
	parse_bad("::1:80", "needs brackets");
	parse_bad("[::1:80", "is written [ADDR]:PORT");
	parse_bad("[localhost]:80", "bad IPv6 address 'localhost'");
	parse_bad("[127.0.0.1]:80", "bad IPv6 address");
	parse_bad("bad_host:80", "neither an IP address nor a host name");
	parse_bad("-x:80", "neither an IP address nor a host name");
	parse_bad("a..b:80", "neither an IP address nor a host name");
	/* RFC 6761: .invalid never resolves */
	parse_bad("no-such-host.invalid:80", "cannot resolve 'no-such-host.invalid'");
}

static void bad_addresses(void **state)
{
	struct repl_listener *l = NULL;
	struct repl_conn *c = NULL;
	struct repl_conn_opts o = {.timeout_ms = 500};
	static const char *const bad[] = {
		"",	  "127.0.0.1", "127.0.0.1:", ":80",	    "127.0.0.1:99999",
		"::1:80", "host_:80",  "[::1:80",    "127.0.0.1:8x"};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(T->connect(bad[i], &o, &c), -EINVAL);
		assert_int_equal(T->listen(bad[i], &o, &l), -EINVAL);
	}
	/* a well-formed address nobody listens on */
	assert_int_equal(T->listen("127.0.0.1:0", &o, &l), 0);
	{
		char addr[64];
		uint16_t port = T->local_port(l);

		T->close_listener(l);
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
		assert_int_equal(T->connect(addr, &o, &c), -ECONNREFUSED);
	}
	/* IPv6 loopback works */
	assert_int_equal(T->listen("[::1]:0", &o, &l), 0);
	T->close_listener(l);
	/* accept gives up after its timeout */
	assert_int_equal(T->listen("127.0.0.1:0", &o, &l), 0);
	assert_int_equal(T->accept(l, 50, &c), -ETIMEDOUT);
	T->close_listener(l);
}

/* A host name works end to end: listen and connect by name. */
static void by_name(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000};
	struct pair p;
	char addr[64];
	uint8_t x = 0;

	assert_int_equal(T->listen("localhost:0", &o, &p.l), 0);
	snprintf(addr, sizeof(addr), "localhost:%u", T->local_port(p.l));
	assert_int_equal(T->connect(addr, &o, &p.a), 0);
	assert_int_equal(T->accept(p.l, 2000, &p.b), 0);
	assert_int_equal(T->send_iov(p.a, &(struct iovec){.iov_base = "k", .iov_len = 1}, 1), 0);
	assert_int_equal(T->recv(p.b, &x, 1), 0);
	assert_int_equal(x, 'k');
	free_pair(&p);
}

/* The receiving end of sealed_epochs: one epoch on link b. */
struct sealed_rx {
	struct repl_link *l;
	uint8_t *buf;
	size_t cap, len;
	int rc;
};

static void *sealed_receiver(void *arg)
{
	struct sealed_rx *x = arg;

	x->rc = repl_epoch_recv_into(x->l, 64 << 20, &x->buf, &x->cap, &x->len);
	return NULL;
}

/*
 * A sealed link (both modes) carries epochs of any size whole: across
 * records, straight into the caller's buffer and through the record buffer,
 * and the peer's name is told for the logs.
 */
static void sealed_epochs(void **state)
{
	static const size_t sizes[] = {1, 4095, REPL_SEAL_RECORD_MAX - 16, REPL_SEAL_RECORD_MAX,
				       3 * REPL_SEAL_RECORD_MAX + 12345};
	struct repl_conn_opts o = {.timeout_ms = 5000};
	struct repl_key k;
	char why[256], name[64];
	uint8_t *data;

	(void)state;
	memset(k.k, 0x42, sizeof(k.k));
	data = malloc(sizes[4]);
	assert_non_null(data);
	for (size_t i = 0; i < sizes[4]; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 13));
	for (int enc = 0; enc < 2; enc++) {
		struct repl_link a = {.t = T}, b = {.t = T};
		struct repl_handshake ha, hb;
		struct repl_hello h = {.mem_bytes = 1 << 20, .ncpus = 1}, got;
		struct sealed_rx x = {.l = &b};
		uint32_t idle;
		struct pair p;

		make_pair(&p, &o);
		a.c = p.a;
		b.c = p.b;
		assert_int_equal(T->peer_name(p.b, name, sizeof(name)), 0);
		assert_true(!strncmp(name, "127.0.0.1:", 10));
		/* the handshake fits the sockets' buffers: one thread plays both ends */
		repl_handshake_init(&ha, &k, enc);
		repl_handshake_init(&hb, &k, false);
		assert_int_equal(repl_hello_send(&a, &ha, &h), 0);
		assert_int_equal(repl_hello_recv(&b, &hb, &got, why, sizeof(why)), 0);
		assert_int_equal(repl_handshake_check(&hb, why, sizeof(why)), 0);
		assert_int_equal(repl_welcome_send(&b, &hb, 0, 1000, "welcome"), 0);
		assert_int_equal(repl_welcome_recv(&a, &ha, &idle, why, sizeof(why)), 0);
		assert_int_equal(repl_proof_recv(&b, &hb, why, sizeof(why)), 0);
		assert_int_equal(repl_link_is_encrypted(&a), enc);
		assert_int_equal(repl_link_is_encrypted(&b), enc);
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			pthread_t th;

			assert_int_equal(pthread_create(&th, NULL, sealed_receiver, &x), 0);
			assert_int_equal(repl_epoch_send(&a, data, sizes[i]), 0);
			pthread_join(th, NULL);
			assert_int_equal(x.rc, 0);
			assert_int_equal(x.len, sizes[i]);
			assert_memory_equal(x.buf, data, sizes[i]);
			/* and the ack the other way */
			assert_int_equal(repl_ack_send(&b, i, 0), 0);
			{
				uint64_t id;
				int32_t st;

				assert_int_equal(repl_ack_recv(&a, &id, &st), 0);
				assert_int_equal(id, i);
			}
		}
		free(x.buf);
		repl_handshake_dispose(&ha);
		repl_handshake_dispose(&hb);
		repl_link_dispose(&a);
		repl_link_dispose(&b);
		free_pair(&p);
	}
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(silent_peer_times_out),
		cmocka_unit_test(slow_reader_within_a_raised_timeout),
		cmocka_unit_test(ack_wait_grows_with_the_stream),
		cmocka_unit_test(vanished_peer),
		cmocka_unit_test(peer_dies_mid_message),
		cmocka_unit_test(cut_after_bytes),
		cmocka_unit_test(addresses),
		cmocka_unit_test(bad_addresses),
		cmocka_unit_test(by_name),
		cmocka_unit_test(epochs_into_a_kept_buffer),
		cmocka_unit_test(sealed_epochs),
	};

	signal(SIGPIPE,
	       SIG_DFL); /* a SIGPIPE would kill the test: the transport must not raise one */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
