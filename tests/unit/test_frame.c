/*
 * Control-protocol framing (proto/frame.c, proto/client.c): pack/check/decode,
 * the blocking send/recv over real sockets with truncated and stalled peers,
 * and the connect/call helpers against a server thread.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/pb.h"

/* ---- malloc accounting (the test links with -Wl,--wrap=malloc) ------------------ */

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);

static size_t max_malloc_seen;

void *__wrap_malloc(size_t size)
{
	size_t cur = __atomic_load_n(&max_malloc_seen, __ATOMIC_RELAXED);

	while (size > cur && !__atomic_compare_exchange_n(&max_malloc_seen, &cur, size, false,
							  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return __real_malloc(size);
}

static void malloc_reset(void)
{
	__atomic_store_n(&max_malloc_seen, 0, __ATOMIC_RELAXED);
}

/* ---- helpers ------------------------------------------------------------------- */

static void make_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void write_bytes(int fd, const void *p, size_t len)
{
	assert_int_equal(write(fd, p, len), (ssize_t)len);
}

static void pack_msg(const ProtobufCMessage *msg, uint8_t **buf, size_t *len)
{
	assert_int_equal(pb_frame_pack(msg, buf, len), 0);
}

/* A Request frame with a small non-empty body. */
static void pack_sample_request(uint8_t **buf, size_t *len)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__DirtyStatsRequest d = CASTOR__DIRTY_STATS_REQUEST__INIT;

	d.harvest = true;
	req.id = 0x1122334455667788ull;
	req.body_case = CASTOR__REQUEST__BODY_DIRTY_STATS;
	req.dirty_stats = &d;
	pack_msg(&req.base, buf, len);
}

/* ---- pack / check / decode ----------------------------------------------------- */

static void test_roundtrip_request(void **state)
{
	ProtobufCMessage *msg = NULL;
	Castor__Request *req;
	uint8_t *buf;
	size_t len, flen;

	pack_sample_request(&buf, &len);
	assert_true(len > PB_FRAME_HDR_LEN);
	/* the header is the big-endian body length */
	assert_int_equal(
		((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]),
		len - PB_FRAME_HDR_LEN);
	assert_int_equal(pb_frame_check(buf, len, &flen), PB_FRAME_READY);
	assert_int_equal(flen, len);
	assert_int_equal(pb_frame_decode(&castor__request__descriptor, buf + PB_FRAME_HDR_LEN,
					 flen - PB_FRAME_HDR_LEN, &msg),
			 0);
	req = (Castor__Request *)msg;
	assert_true(req->id == 0x1122334455667788ull);
	assert_int_equal(req->body_case, CASTOR__REQUEST__BODY_DIRTY_STATS);
	assert_non_null(req->dirty_stats);
	assert_true(req->dirty_stats->harvest);
	protobuf_c_message_free_unpacked(msg, NULL);
	free(buf);
}

static void test_roundtrip_response_status(void **state)
{
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	Castor__VmStatus st = CASTOR__VM_STATUS__INIT;
	Castor__VcpuStatus v0 = CASTOR__VCPU_STATUS__INIT, v1 = CASTOR__VCPU_STATUS__INIT;
	Castor__VcpuStatus *vs[2] = {&v0, &v1};
	ProtobufCMessage *msg = NULL;
	Castor__Response *out;
	uint8_t *buf;
	size_t len;

	st.name = "vm0";
	st.vcpus = 2;
	st.mem_bytes = 1ull << 30;
	st.run_state = "running";
	st.guest_counter = 123456;
	st.uptime_ns = 12300000000ull;
	st.n_vcpu = 2;
	st.vcpu = vs;
	v0.index = 0;
	v0.counter = 61728;
	v0.state = "running";
	v1.index = 1;
	v1.mmio_exits = UINT64_MAX;
	v1.state = "parked";
	resp.id = 7;
	resp.error = -16;
	resp.message = "busy";
	resp.body_case = CASTOR__RESPONSE__BODY_STATUS;
	resp.status = &st;

	pack_msg(&resp.base, &buf, &len);
	assert_int_equal(pb_frame_decode(&castor__response__descriptor, buf + PB_FRAME_HDR_LEN,
					 len - PB_FRAME_HDR_LEN, &msg),
			 0);
	out = (Castor__Response *)msg;
	assert_int_equal(out->id, 7);
	assert_int_equal(out->error, -16); /* sint32: negative errnos stay small on the wire */
	assert_string_equal(out->message, "busy");
	assert_int_equal(out->body_case, CASTOR__RESPONSE__BODY_STATUS);
	assert_string_equal(out->status->name, "vm0");
	assert_int_equal(out->status->vcpus, 2);
	assert_true(out->status->mem_bytes == 1ull << 30);
	assert_int_equal(out->status->n_vcpu, 2);
	assert_int_equal(out->status->vcpu[0]->counter, 61728);
	assert_string_equal(out->status->vcpu[1]->state, "parked");
	assert_true(out->status->vcpu[1]->mmio_exits == UINT64_MAX);
	protobuf_c_message_free_unpacked(msg, NULL);
	free(buf);
}

/* An event loop sees a frame byte by byte: never READY before the last one. */
static void test_check_every_prefix(void **state)
{
	uint8_t *buf, *copy;
	size_t len, k, flen;

	pack_sample_request(&buf, &len);
	for (k = 0; k < len; k++) {
		/* an exact-size copy, so ASan catches a read past the prefix */
		copy = malloc(k ? k : 1);
		assert_non_null(copy);
		memcpy(copy, buf, k);
		flen = 12345;
		assert_int_equal(pb_frame_check(copy, k, &flen), PB_FRAME_NEED_MORE);
		assert_int_equal(flen, k < PB_FRAME_HDR_LEN ? 0 : len);
		free(copy);
	}
	assert_int_equal(pb_frame_check(buf, len, &flen), PB_FRAME_READY);
	assert_int_equal(flen, len);
	assert_int_equal(pb_frame_check(buf, len, NULL), PB_FRAME_READY);
	free(buf);
}

/* Two frames back to back in one buffer: check reports the first one only. */
static void test_check_back_to_back(void **state)
{
	uint8_t *a, *two;
	size_t alen, flen;

	pack_sample_request(&a, &alen);
	two = malloc(2 * alen + 2);
	assert_non_null(two);
	memcpy(two, a, alen);
	memcpy(two + alen, a, alen);
	assert_int_equal(pb_frame_check(two, 2 * alen + 2, &flen), PB_FRAME_READY);
	assert_int_equal(flen, alen);
	assert_int_equal(pb_frame_check(two + alen, alen + 2, &flen), PB_FRAME_READY);
	assert_int_equal(flen, alen);
	assert_int_equal(pb_frame_check(two + 2 * alen, 2, &flen), PB_FRAME_NEED_MORE);
	free(two);
	free(a);
}

static void test_check_size_limit(void **state)
{
	uint8_t at_max[4] = {0x00, 0x10, 0x00, 0x00}; /* PB_FRAME_MAX: accepted */
	uint8_t over[4] = {0x00, 0x10, 0x00, 0x01};   /* PB_FRAME_MAX + 1 */
	uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
	size_t flen;

	assert_int_equal(PB_FRAME_MAX, 0x100000);
	assert_int_equal(pb_frame_check(at_max, 4, &flen), PB_FRAME_NEED_MORE);
	assert_int_equal(flen, PB_FRAME_HDR_LEN + PB_FRAME_MAX);
	flen = 99;
	assert_int_equal(pb_frame_check(over, 4, &flen), PB_FRAME_TOO_BIG);
	assert_int_equal(flen, 0);
	assert_int_equal(pb_frame_check(huge, 4, &flen), PB_FRAME_TOO_BIG);
	assert_string_equal(pb_frame_status_str(PB_FRAME_TOO_BIG), "too-big");
}

/* A Response whose body is exactly `body_len` bytes: one string field (tag, 3-byte varint). */
static void make_sized_response(Castor__Response *resp, char **text, size_t body_len)
{
	size_t n = body_len - 4;

	*text = malloc(n + 1);
	assert_non_null(*text);
	memset(*text, 'x', n);
	(*text)[n] = 0;
	*resp = (Castor__Response)CASTOR__RESPONSE__INIT;
	resp->message = *text;
	assert_int_equal(protobuf_c_message_get_packed_size(&resp->base), body_len);
}

static void test_pack_size_limit(void **state)
{
	Castor__Response resp;
	uint8_t *buf = NULL;
	size_t len = 0;
	char *text;

	make_sized_response(&resp, &text, PB_FRAME_MAX);
	assert_int_equal(pb_frame_pack(&resp.base, &buf, &len), 0);
	assert_int_equal(len, PB_FRAME_HDR_LEN + PB_FRAME_MAX);
	free(buf);
	free(text);

	make_sized_response(&resp, &text, PB_FRAME_MAX + 1);
	buf = NULL;
	assert_int_equal(pb_frame_pack(&resp.base, &buf, &len), -EMSGSIZE);
	assert_null(buf);
	assert_int_equal(pb_frame_send(-1, &resp.base), -EMSGSIZE);
	free(text);
}

static void test_decode_garbage(void **state)
{
	static const struct {
		const char *what;
		uint8_t bytes[8];
		size_t len;
	} bad[] = {
		{"invalid wire type 7", {0x0f}, 1},
		{"truncated varint", {0x08, 0x80}, 2},
		{"length past the end", {0x1a, 0x05, 'a'}, 3},
		{"start-group wire type", {0x0b}, 1},
		{"field number 0", {0x00, 0x00}, 2},
		/* protobuf-c itself accepts this one; pb_frame_decode must not */
		{"field number 0, two-byte tag", {0x80, 0x00, 0x40}, 3},
		{"field number 0 inside a oneof member", {0x52, 0x03, 0x80, 0x00, 0x01}, 5},
		{"varint runs off the end", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
	};
	ProtobufCMessage *msg = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *copy = malloc(bad[i].len);

		assert_non_null(copy);
		memcpy(copy, bad[i].bytes, bad[i].len);
		print_message("garbage: %s\n", bad[i].what);
		assert_int_equal(
			pb_frame_decode(&castor__request__descriptor, copy, bad[i].len, &msg),
			-EBADMSG);
		assert_int_equal(
			pb_frame_decode(&castor__response__descriptor, copy, bad[i].len, &msg),
			-EBADMSG);
		free(copy);
	}
	assert_null(msg);
}

static void test_decode_oversized_len(void **state)
{
	uint8_t one = 0;
	ProtobufCMessage *msg = NULL;

	/* refused on the length alone: the buffer is never read */
	assert_int_equal(
		pb_frame_decode(&castor__request__descriptor, &one, PB_FRAME_MAX + 1, &msg),
		-EMSGSIZE);
	assert_null(msg);
}

/* A zero-length body is a valid message with every field at its default. */
static void test_empty_body(void **state)
{
	Castor__Request empty = CASTOR__REQUEST__INIT;
	uint8_t frame[4] = {0, 0, 0, 0};
	ProtobufCMessage *msg = NULL;
	Castor__Response *resp;
	Castor__Request *req;
	uint8_t *buf;
	size_t len, flen;

	pack_msg(&empty.base, &buf, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(buf, frame, 4);
	free(buf);

	assert_int_equal(pb_frame_check(frame, 4, &flen), PB_FRAME_READY);
	assert_int_equal(flen, 4);
	assert_int_equal(pb_frame_decode(&castor__request__descriptor, NULL, 0, &msg), 0);
	req = (Castor__Request *)msg;
	assert_int_equal(req->id, 0);
	assert_int_equal(req->body_case, CASTOR__REQUEST__BODY__NOT_SET);
	protobuf_c_message_free_unpacked(msg, NULL);

	assert_int_equal(pb_frame_decode(&castor__response__descriptor, frame + 4, 0, &msg), 0);
	resp = (Castor__Response *)msg;
	assert_int_equal(resp->error, 0);
	assert_string_equal(resp->message, "");
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* A newer client's request body this side does not know: decodes, body NOT_SET. */
static void test_unknown_body_field(void **state)
{
	/* id = 5, then field 60 (length-delimited, empty) */
	const uint8_t body[] = {0x08, 0x05, 0xe2, 0x03, 0x00};
	ProtobufCMessage *msg = NULL;
	Castor__Request *req;

	assert_int_equal(pb_frame_decode(&castor__request__descriptor, body, sizeof(body), &msg),
			 0);
	req = (Castor__Request *)msg;
	assert_int_equal(req->id, 5);
	assert_int_equal(req->body_case, CASTOR__REQUEST__BODY__NOT_SET);
	protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- blocking send / recv --------------------------------------------------------- */

static void test_send_recv(void **state)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__PauseRequest p = CASTOR__PAUSE_REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	int sv[2];

	make_pair(sv);
	req.id = 42;
	req.body_case = CASTOR__REQUEST__BODY_PAUSE;
	req.pause = &p;
	assert_int_equal(pb_frame_send(sv[1], &req.base), 0);
	assert_int_equal(pb_frame_send(sv[1], &req.base), 0);
	/* two frames in the socket buffer: each recv takes exactly one */
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 1000), 0);
	assert_int_equal(((Castor__Request *)msg)->id, 42);
	assert_int_equal(((Castor__Request *)msg)->body_case, CASTOR__REQUEST__BODY_PAUSE);
	protobuf_c_message_free_unpacked(msg, NULL);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, -1), 0);
	protobuf_c_message_free_unpacked(msg, NULL);
	close(sv[0]);
	close(sv[1]);
}

/* Write `n` bytes of a valid frame, close the writer, expect -ECONNRESET. */
static void recv_truncated(size_t n)
{
	ProtobufCMessage *msg = NULL;
	uint8_t *buf;
	size_t len;
	int sv[2];

	pack_sample_request(&buf, &len);
	assert_true(n < len);
	make_pair(sv);
	if (n)
		write_bytes(sv[1], buf, n);
	close(sv[1]);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 1000),
			 -ECONNRESET);
	assert_null(msg);
	close(sv[0]);
	free(buf);
}

static void test_recv_peer_closes_before_any_byte(void **state)
{
	recv_truncated(0);
}

static void test_recv_peer_closes_mid_length(void **state)
{
	recv_truncated(2);
}

static void test_recv_peer_closes_after_length(void **state)
{
	recv_truncated(PB_FRAME_HDR_LEN);
}

static void test_recv_peer_closes_mid_body(void **state)
{
	recv_truncated(PB_FRAME_HDR_LEN + 3);
}

static void test_recv_timeout(void **state)
{
	ProtobufCMessage *msg = NULL;
	uint8_t *buf;
	size_t len;
	int sv[2];

	make_pair(sv);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 50), -ETIMEDOUT);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 0), -ETIMEDOUT);
	/* a partial frame that stalls times out too */
	pack_sample_request(&buf, &len);
	write_bytes(sv[1], buf, len - 1);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 50), -ETIMEDOUT);
	assert_null(msg);
	free(buf);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_oversized_length(void **state)
{
	const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xfe};
	const uint8_t over[4] = {0x00, 0x10, 0x00, 0x01};
	ProtobufCMessage *msg = NULL;
	int sv[2];

	make_pair(sv);
	write_bytes(sv[1], huge, sizeof(huge));
	malloc_reset();
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 1000), -EMSGSIZE);
	assert_true(max_malloc_seen < PB_FRAME_MAX);
	close(sv[0]);
	close(sv[1]);

	make_pair(sv);
	write_bytes(sv[1], over, sizeof(over));
	malloc_reset();
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 1000), -EMSGSIZE);
	assert_true(max_malloc_seen < PB_FRAME_MAX);
	assert_null(msg);
	close(sv[0]);
	close(sv[1]);
}

static void test_recv_garbage(void **state)
{
	const uint8_t frame[] = {0, 0, 0, 3, 0x1a, 0x05, 'a'};
	ProtobufCMessage *msg = NULL;
	int sv[2];

	make_pair(sv);
	write_bytes(sv[1], frame, sizeof(frame));
	assert_int_equal(pb_frame_recv(sv[0], &castor__response__descriptor, &msg, 1000), -EBADMSG);
	assert_null(msg);
	close(sv[0]);
	close(sv[1]);
}

struct sender {
	int fd;
	const ProtobufCMessage *msg;
	pthread_t kick; /* if set, signalled repeatedly before sending */
	bool has_kick;
	int rc;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	int i;

	if (s->has_kick) {
		for (i = 0; i < 20; i++) {
			pthread_kill(s->kick, SIGUSR1);
			usleep(2000);
		}
	}
	s->rc = pb_frame_send(s->fd, s->msg);
	return NULL;
}

/* A frame of PB_FRAME_MAX bytes is larger than the socket buffer: short writes and reads. */
static void test_send_recv_max_frame(void **state)
{
	Castor__Response resp;
	struct sender s = {0};
	ProtobufCMessage *msg = NULL;
	pthread_t t;
	char *text;
	int sv[2];

	make_sized_response(&resp, &text, PB_FRAME_MAX);
	make_pair(sv);
	s.fd = sv[1];
	s.msg = &resp.base;
	assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
	assert_int_equal(pb_frame_recv(sv[0], &castor__response__descriptor, &msg, 10000), 0);
	pthread_join(t, NULL);
	assert_int_equal(s.rc, 0);
	assert_string_equal(((Castor__Response *)msg)->message, text);
	protobuf_c_message_free_unpacked(msg, NULL);
	free(text);
	close(sv[0]);
	close(sv[1]);
}

static void on_sigusr1(int sig)
{
}

/* Signals that interrupt the wait (no SA_RESTART) must not end the receive. */
static void test_recv_survives_signals(void **state)
{
	struct sigaction sa = {.sa_handler = on_sigusr1}, old;
	Castor__Request req = CASTOR__REQUEST__INIT;
	struct sender s = {0};
	ProtobufCMessage *msg = NULL;
	pthread_t t;
	int sv[2];

	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	make_pair(sv);
	req.id = 9;
	s.fd = sv[1];
	s.msg = &req.base;
	s.kick = pthread_self();
	s.has_kick = true;
	assert_int_equal(pthread_create(&t, NULL, sender_main, &s), 0);
	assert_int_equal(pb_frame_recv(sv[0], &castor__request__descriptor, &msg, 10000), 0);
	pthread_join(t, NULL);
	assert_int_equal(s.rc, 0);
	assert_int_equal(((Castor__Request *)msg)->id, 9);
	protobuf_c_message_free_unpacked(msg, NULL);
	sigaction(SIGUSR1, &old, NULL);
	close(sv[0]);
	close(sv[1]);
}

/* Sending to a closed peer is an error return, not a SIGPIPE that kills the caller. */
static void test_send_to_closed_peer(void **state)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	int sv[2];

	make_pair(sv);
	close(sv[0]);
	assert_int_equal(pb_frame_send(sv[1], &req.base), -EPIPE);
	close(sv[1]);
}

/* Not a socket: send falls back to write(). */
static void test_send_recv_pipe(void **state)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	ProtobufCMessage *msg = NULL;
	int p[2];

	assert_int_equal(pipe(p), 0);
	req.id = 77;
	assert_int_equal(pb_frame_send(p[1], &req.base), 0);
	assert_int_equal(pb_frame_recv(p[0], &castor__request__descriptor, &msg, 1000), 0);
	assert_int_equal(((Castor__Request *)msg)->id, 77);
	protobuf_c_message_free_unpacked(msg, NULL);
	close(p[0]);
	close(p[1]);
}

/* ---- connect and call -------------------------------------------------------------- */

struct server {
	char dir[64];
	char path[128];
	int lfd;
	enum { SRV_ECHO_ID, SRV_WRONG_ID, SRV_ERROR_ID0, SRV_CLOSE, SRV_SILENT } mode;
	pthread_t thread;
};

static void *server_main(void *arg)
{
	struct server *srv = arg;
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	Castor__VmStatus st = CASTOR__VM_STATUS__INIT;
	ProtobufCMessage *msg = NULL;
	Castor__Request *req;
	char buf[1];
	int fd;

	fd = accept(srv->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	if (pb_frame_recv(fd, &castor__request__descriptor, &msg, 5000) < 0)
		goto out;
	req = (Castor__Request *)msg;
	switch (srv->mode) {
	case SRV_ECHO_ID:
	case SRV_WRONG_ID:
		resp.id = srv->mode == SRV_ECHO_ID ? req->id : req->id + 1;
		st.name = "vm-test";
		st.run_state = "paused";
		resp.body_case = CASTOR__RESPONSE__BODY_STATUS;
		resp.status = &st;
		pb_frame_send(fd, &resp.base);
		break;
	case SRV_ERROR_ID0: /* what a server says to a request it cannot decode */
		resp.error = -EBADMSG;
		resp.message = "malformed request";
		pb_frame_send(fd, &resp.base);
		break;
	case SRV_CLOSE:
		break;
	case SRV_SILENT: /* until the client gives up and closes */
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		break;
	}
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	close(fd);
	return NULL;
}

static void server_start(struct server *srv, int mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	strcpy(srv->dir, "/tmp/castor-test-frame-XXXXXX");
	assert_non_null(mkdtemp(srv->dir));
	snprintf(srv->path, sizeof(srv->path), "%s/vmm.sock", srv->dir);
	srv->mode = mode;
	srv->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(srv->lfd >= 0);
	strcpy(sa.sun_path, srv->path);
	assert_int_equal(bind(srv->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(srv->lfd, 4), 0);
	assert_int_equal(pthread_create(&srv->thread, NULL, server_main, srv), 0);
}

static void server_stop(struct server *srv)
{
	pthread_join(srv->thread, NULL);
	close(srv->lfd);
	unlink(srv->path);
	rmdir(srv->dir);
}

static void call_status(struct server *srv, Castor__Response **resp, int expect_rc, int timeout_ms)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__StatusRequest s = CASTOR__STATUS_REQUEST__INIT;

	req.id = 1234;
	req.body_case = CASTOR__REQUEST__BODY_STATUS;
	req.status = &s;
	*resp = NULL;
	assert_int_equal(pb_call(srv->path, &req, resp, timeout_ms), expect_rc);
}

static void test_call(void **state)
{
	struct server srv;
	Castor__Response *resp;

	server_start(&srv, SRV_ECHO_ID);
	call_status(&srv, &resp, 0, 5000);
	server_stop(&srv);
	assert_non_null(resp);
	assert_int_equal(resp->id, 1234);
	assert_int_equal(resp->body_case, CASTOR__RESPONSE__BODY_STATUS);
	assert_string_equal(resp->status->name, "vm-test");
	assert_string_equal(resp->status->run_state, "paused");
	castor__response__free_unpacked(resp, NULL);
}

static void test_call_wrong_id(void **state)
{
	struct server srv;
	Castor__Response *resp;

	server_start(&srv, SRV_WRONG_ID);
	call_status(&srv, &resp, -EPROTO, 5000);
	server_stop(&srv);
	assert_null(resp);
}

static void test_call_error_reply_id0(void **state)
{
	struct server srv;
	Castor__Response *resp;

	server_start(&srv, SRV_ERROR_ID0);
	call_status(&srv, &resp, 0, 5000);
	server_stop(&srv);
	assert_non_null(resp);
	assert_int_equal(resp->error, -EBADMSG);
	assert_string_equal(resp->message, "malformed request");
	castor__response__free_unpacked(resp, NULL);
}

static void test_call_server_closes(void **state)
{
	struct server srv;
	Castor__Response *resp;

	server_start(&srv, SRV_CLOSE);
	call_status(&srv, &resp, -ECONNRESET, 5000);
	server_stop(&srv);
	assert_null(resp);
}

static void test_call_timeout(void **state)
{
	struct server srv;
	Castor__Response *resp;

	server_start(&srv, SRV_SILENT);
	call_status(&srv, &resp, -ETIMEDOUT, 50);
	server_stop(&srv);
	assert_null(resp);
}

static void test_connect_errors(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/castor-test-conn-XXXXXX";
	char path[300], sock[128];
	int fd = -1, bound;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/missing.sock", dir);
	assert_int_equal(pb_unix_connect(path, &fd), -ENOENT);
	assert_int_equal(pb_unix_connect("", &fd), -EINVAL);
	assert_int_equal(pb_unix_connect(NULL, &fd), -EINVAL);

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	assert_int_equal(pb_unix_connect(path, &fd), -ENAMETOOLONG);
	/* 107 characters fit sun_path (108 with the NUL), 108 do not */
	path[sizeof(sa.sun_path)] = 0;
	assert_int_equal(pb_unix_connect(path, &fd), -ENAMETOOLONG);
	path[sizeof(sa.sun_path) - 1] = 0;
	assert_int_equal(pb_unix_connect(path, &fd), -ENOENT);

	/* a socket that is bound but not listening refuses */
	snprintf(sock, sizeof(sock), "%s/bound.sock", dir);
	bound = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(bound >= 0);
	strcpy(sa.sun_path, sock);
	assert_int_equal(bind(bound, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(pb_unix_connect(sock, &fd), -ECONNREFUSED);
	assert_int_equal(fd, -1);
	close(bound);
	unlink(sock);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_request),
		cmocka_unit_test(test_roundtrip_response_status),
		cmocka_unit_test(test_check_every_prefix),
		cmocka_unit_test(test_check_back_to_back),
		cmocka_unit_test(test_check_size_limit),
		cmocka_unit_test(test_pack_size_limit),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_decode_oversized_len),
		cmocka_unit_test(test_empty_body),
		cmocka_unit_test(test_unknown_body_field),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_recv_peer_closes_before_any_byte),
		cmocka_unit_test(test_recv_peer_closes_mid_length),
		cmocka_unit_test(test_recv_peer_closes_after_length),
		cmocka_unit_test(test_recv_peer_closes_mid_body),
		cmocka_unit_test(test_recv_timeout),
		cmocka_unit_test(test_recv_oversized_length),
		cmocka_unit_test(test_recv_garbage),
		cmocka_unit_test(test_send_recv_max_frame),
		cmocka_unit_test(test_recv_survives_signals),
		cmocka_unit_test(test_send_to_closed_peer),
		cmocka_unit_test(test_send_recv_pipe),
		cmocka_unit_test(test_call),
		cmocka_unit_test(test_call_wrong_id),
		cmocka_unit_test(test_call_error_reply_id0),
		cmocka_unit_test(test_call_server_closes),
		cmocka_unit_test(test_call_timeout),
		cmocka_unit_test(test_connect_errors),
	};

	return cmocka_run_group_tests_name("unit_frame", tests, NULL, NULL);
}
