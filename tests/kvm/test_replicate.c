/*
 * Epochs over a real TCP connection on loopback, in one process: a primary
 * test-guest VM and a secondary thread that keeps a twin.
 *   - initial sync (a full stream), then epochs: each is received whole,
 *     checked, applied to the twin and acked; after every ack the twin's RAM
 *     equals the primary's at that epoch's pause;
 *   - the primary dies in the middle of sending an epoch (it sends the
 *     header and part of the stream, then its connection goes): the secondary
 *     discards the partial epoch and fails over to the last acked one -- its
 *     RAM is that epoch's, it runs on, and its counters are at least the
 *     committed ones.
 * (The replication engine itself -- epoch loop, sender thread, modes -- is
 * issue 5's; this checks the secondary's side of the protocol end to end.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "replication/repl.h"
#include "tests/kvm/kvm_common.h"

#define SEC 1000000000ull
#define MEM (64ull << 20)

static const struct repl_transport_ops *T = &repl_tcp_ops;
/* A plain link over a connection (plain links hold no state: one per call will do). */
#define PLAIN(conn) (&(struct repl_link){.t = T, .c = (conn)})

struct secondary {
	struct repl_listener *l;
	struct hv_vm *twin;
	unsigned applied;
	int end_rc; /* why the stream ended */
	char why[256];
};

static void *secondary_main(void *arg)
{
	struct secondary *s = arg;
	struct hv_vm_config cfg = {.name = "secondary", .serial_fd = -1};
	struct repl_conn *c = NULL;
	uint8_t *buf;
	size_t len;
	int rc;

	rc = T->accept(s->l, 10000, &c);
	if (rc < 0) {
		s->end_rc = rc;
		return NULL;
	}
	for (;;) {
		struct hv_stream_header h = {0};

		rc = repl_epoch_recv(PLAIN(c), 1ull << 30, &buf, &len);
		if (rc < 0)
			break; /* the primary is gone: whatever arrived of this epoch is dropped */
		if (len >= 8 + sizeof(h)) /* HEADER's body, for the ack; applying checks it */
			memcpy(&h, buf + 8, sizeof(h));
		if (!s->twin) {
			const uint8_t *p = buf;

			rc = hv_snapshot_restore(&cfg, &p, &len, 1, 0, NULL, NULL, &s->twin, s->why,
						 sizeof(s->why));
		} else {
			rc = hv_snapshot_apply(s->twin, buf, len, s->why, sizeof(s->why));
		}
		free(buf);
		if (rc == 0)
			s->applied++;
		if (repl_ack_send(PLAIN(c), h.stream_id, rc) < 0 || rc < 0)
			break;
	}
	s->end_rc = rc;
	T->close(c);
	return NULL;
}

/* The primary's side of one epoch: snapshot while paused, remember the state. */
static uint8_t *take(struct hv_vm *vm, enum hv_stream_kind kind, size_t *len, uint32_t *hash,
		     struct hv_tg_vcpu *counters, uint64_t *id)
{
	struct hv_snapshot_stats st;
	struct kvm_blob b;
	uint32_t i;

	assert_int_equal(hv_vm_pause(vm), 0);
	b = kvm_snapshot_stats(vm, kind, &st);
	*hash = kvm_ram_hash(vm);
	for (i = 0; i < 2; i++)
		assert_int_equal(hv_tg_vcpu(vm, i, &counters[i]), 0);
	assert_int_equal(hv_vm_resume(vm), 0);
	*len = b.len;
	*id = st.stream_id;
	return b.data;
}

static void replicate_then_die_mid_epoch(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 5000};
	struct secondary s = {0};
	struct hv_tg_config tg;
	struct hv_tg_vcpu counters[2], committed[2] = {0}, t, after[2];
	struct hv_tg_check chk;
	struct repl_conn *c = NULL;
	struct hv_vm *primary;
	pthread_t th;
	char addr[64];
	uint32_t hash, committed_hash = 0, i;
	uint64_t id, acked;
	int32_t status;
	uint8_t *buf;
	size_t len;
	unsigned e;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.wss_bytes = 2 << 20;
	tg.out_rate = 500;
	primary = kvm_test_vm(2, MEM, &tg, -1);
	assert_non_null(primary);

	assert_int_equal(T->listen("127.0.0.1:0", &o, &s.l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(s.l));
	assert_int_equal(pthread_create(&th, NULL, secondary_main, &s), 0);
	assert_int_equal(T->connect(addr, &o, &c), 0);

	for (e = 0; e <= 30; e++) {
		buf = take(primary, e ? HV_STREAM_INCREMENTAL : HV_STREAM_FULL, &len, &hash,
			   counters, &id);
		if (e == 30) {
			/* the primary dies mid-epoch: header and half the stream, then nothing */
			uint64_t h[2] = {REPL_EPOCH_MAGIC, len};
			struct iovec iov[2] = {{h, sizeof(h)}, {buf, len / 2}};

			assert_int_equal(T->send_iov(c, iov, 2), 0);
			T->close(c);
			c = NULL;
			free(buf);
			break;
		}
		assert_int_equal(repl_epoch_send(PLAIN(c), buf, len), 0);
		free(buf);
		assert_int_equal(repl_ack_recv(PLAIN(c), &acked, &status), 0);
		if (status)
			fail_msg("epoch %u refused: %s", e, s.why);
		assert_true(acked == id);
		/* acked: this is now the committed state */
		committed_hash = hash;
		memcpy(committed, counters, sizeof(committed));
		util_sleep_ns(3 * 1000000ull);
	}
	hv_vm_free(primary); /* the primary host is gone */
	pthread_join(th, NULL);
	T->close_listener(s.l);

	assert_int_equal(s.applied, 30);
	assert_int_equal(s.end_rc, -ECONNRESET); /* it saw the connection die mid-epoch */
	assert_non_null(s.twin);
	/* the twin holds exactly the last acked epoch: the partial one left no trace */
	assert_int_equal(kvm_ram_hash(s.twin), committed_hash);
	assert_int_equal(hv_tg_check_ram(hv_ram_base(s.twin), MEM, &chk), 0);
	/* failover */
	assert_int_equal(hv_vm_start(s.twin), 0);
	assert_true(kvm_run_past(s.twin, 2, committed, after)); /* it runs on */
	for (i = 0; i < 2; i++) {
		t = after[i];
		assert_true(t.out_seq >= committed[i].out_seq);
		assert_int_equal(t.order_errors, 0);
	}
	if (hv_tg_check_ram(hv_ram_base(s.twin), MEM, &chk) < 0)
		fail_msg("after failover: %s", chk.why);
	hv_vm_free(s.twin);
}

/* Bad framing: a wrong magic and an oversized length are refused before allocating. */
static void bad_framing(void **state)
{
	struct repl_conn_opts o = {.timeout_ms = 2000};
	struct repl_listener *l;
	struct repl_conn *a, *b;
	char addr[64];
	uint64_t h[2];
	struct iovec iov = {h, sizeof(h)};
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(T->listen("127.0.0.1:0", &o, &l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(l));
	assert_int_equal(T->connect(addr, &o, &a), 0);
	assert_int_equal(T->accept(l, 2000, &b), 0);
	h[0] = 0x1234;
	h[1] = 10;
	assert_int_equal(T->send_iov(a, &iov, 1), 0);
	assert_int_equal(repl_epoch_recv(PLAIN(b), 1 << 20, &buf, &len), -EBADMSG);
	h[0] = REPL_EPOCH_MAGIC;
	h[1] = 1ull << 62;
	assert_int_equal(T->send_iov(a, &iov, 1), 0);
	assert_int_equal(repl_epoch_recv(PLAIN(b), 1 << 20, &buf, &len), -EMSGSIZE);
	h[1] = 0;
	assert_int_equal(T->send_iov(a, &iov, 1), 0);
	assert_int_equal(repl_epoch_recv(PLAIN(b), 1 << 20, &buf, &len), -EMSGSIZE);
	assert_null(buf);
	T->close(a);
	T->close(b);
	T->close_listener(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(replicate_then_die_mid_epoch),
		cmocka_unit_test(bad_framing),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
