/*
 * Control-message framing: {be32 length, packed protobuf body}. The pure half
 * (pack, check, decode) serves event loops; the blocking half (send, recv) serves
 * clients. Lengths are capped at PB_FRAME_MAX before any allocation.
 */
#define LOG_TAG "pb"

#include "proto/pb.h"
#include "util/util.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *pb_frame_status_str(enum pb_frame_status st)
{
	switch (st) {
	case PB_FRAME_NEED_MORE:
		return "need-more";
	case PB_FRAME_READY:
		return "ready";
	case PB_FRAME_TOO_BIG:
		return "too-big";
	}
	return "?";
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int pb_frame_pack(const ProtobufCMessage *msg, uint8_t **buf_out, size_t *len_out)
{
	uint8_t *buf = NULL;
	size_t body_len, packed;
	int rc;

	body_len = protobuf_c_message_get_packed_size(msg);
	if (body_len > PB_FRAME_MAX) {
		rc = -EMSGSIZE;
		goto out;
	}
	buf = malloc(PB_FRAME_HDR_LEN + body_len);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	put_be32(buf, (uint32_t)body_len);
	packed = protobuf_c_message_pack(msg, buf + PB_FRAME_HDR_LEN);
	if (packed != body_len) { /* protobuf-c promises equality; never trust it silently */
		rc = -EPROTO;
		goto out;
	}
	*buf_out = buf;
	*len_out = PB_FRAME_HDR_LEN + body_len;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	return rc;
}

enum pb_frame_status pb_frame_check(const uint8_t *buf, size_t len, size_t *frame_len_out)
{
	size_t frame_len;
	uint32_t body_len;

	if (frame_len_out)
		*frame_len_out = 0;
	if (len < PB_FRAME_HDR_LEN)
		return PB_FRAME_NEED_MORE;
	body_len = get_be32(buf);
	if (body_len > PB_FRAME_MAX)
		return PB_FRAME_TOO_BIG;
	frame_len = PB_FRAME_HDR_LEN + (size_t)body_len;
	if (frame_len_out)
		*frame_len_out = frame_len;
	return len >= frame_len ? PB_FRAME_READY : PB_FRAME_NEED_MORE;
}

/*
 * protobuf-c (1.4.1) accepts field number 0 when its tag is not minimally encoded
 * (0x80 0x00) and keeps it as an unknown field, which it then re-encodes into
 * bytes it refuses itself. Field 0 is invalid in protobuf; refuse it everywhere.
 */
static bool msg_has_field_zero(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	const ProtobufCFieldDescriptor *f;
	const char *base = (const char *)m;
	ProtobufCMessage *const *arr;
	ProtobufCMessage *sub;
	unsigned i;
	size_t k, n;

	for (i = 0; i < m->n_unknown_fields; i++)
		if (m->unknown_fields[i].tag == 0)
			return true;
	for (i = 0; i < desc->n_fields; i++) {
		f = &desc->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			arr = *(ProtobufCMessage *const *const *)(base + f->offset);
			for (k = 0; k < n; k++)
				if (arr[k] && msg_has_field_zero(arr[k]))
					return true;
			continue;
		}
		/* a oneof member's storage is shared: only the selected one is valid */
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		sub = *(ProtobufCMessage *const *)(base + f->offset);
		if (sub && msg_has_field_zero(sub))
			return true;
	}
	return false;
}

int pb_frame_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
		    ProtobufCMessage **msg_out)
{
	static const uint8_t empty[1];
	ProtobufCMessage *msg = NULL;
	int rc;

	if (len > PB_FRAME_MAX) {
		rc = -EMSGSIZE;
		goto out;
	}
	/* protobuf-c returns NULL for bad input and for failed allocations alike */
	msg = protobuf_c_message_unpack(desc, NULL, len, len ? body : empty);
	if (!msg || msg_has_field_zero(msg)) {
		rc = -EBADMSG;
		goto out;
	}
	*msg_out = msg;
	msg = NULL;
	rc = 0;
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	return rc;
}

/* ---- blocking I/O ------------------------------------------------------------------ */

/* Milliseconds left until `deadline_ns` (rounded up), -1 for "no deadline" (0). */
static int ms_left(uint64_t deadline_ns)
{
	uint64_t now;

	if (!deadline_ns)
		return -1;
	now = util_now_ns();
	if (now >= deadline_ns)
		return 0;
	return (int)((deadline_ns - now + 999999) / 1000000);
}

/* Wait until fd is ready for `events`: 0, -ETIMEDOUT or -errno. EINTR restarts. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int r;

	for (;;) {
		r = poll(&pfd, 1, ms_left(deadline_ns));
		if (r > 0)
			return 0; /* POLLHUP/POLLERR: the next read/send reports it */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(int fd, const uint8_t *p, size_t len)
{
	bool use_write = false;
	ssize_t r;
	int rc;

	while (len) {
		if (use_write)
			r = write(fd, p, len);
		else
			r = send(fd, p, len, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOTSOCK && !use_write) { /* a pipe in a test, say */
				use_write = true;
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				rc = wait_fd(fd, POLLOUT, 0);
				if (rc < 0)
					return rc;
				continue;
			}
			return -errno;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int pb_frame_send(int fd, const ProtobufCMessage *msg)
{
	uint8_t *buf = NULL;
	size_t len;
	int rc;

	rc = pb_frame_pack(msg, &buf, &len);
	if (rc < 0)
		goto out;
	rc = send_all(fd, buf, len);
out:
	free(buf);
	return rc;
}

/*
 * Read exactly len bytes before deadline_ns (0: none). End of stream at any point
 * is -ECONNRESET: a frame that stops early is as lost as a reset connection.
 */
static int recv_all(int fd, uint8_t *p, size_t len, uint64_t deadline_ns)
{
	ssize_t r;
	int rc;

	while (len) {
		rc = wait_fd(fd, POLLIN, deadline_ns);
		if (rc < 0)
			return rc;
		r = read(fd, p, len);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ECONNRESET;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

int pb_frame_recv(int fd, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg_out,
		  int timeout_ms)
{
	uint8_t hdr[PB_FRAME_HDR_LEN];
	uint8_t *body = NULL;
	uint64_t deadline_ns = 0;
	size_t frame_len, body_len;
	int rc;

	if (timeout_ms >= 0)
		deadline_ns = util_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	rc = recv_all(fd, hdr, sizeof(hdr), deadline_ns);
	if (rc < 0)
		goto out;
	if (pb_frame_check(hdr, sizeof(hdr), &frame_len) == PB_FRAME_TOO_BIG) {
		rc = -EMSGSIZE;
		goto out;
	}
	body_len = frame_len - PB_FRAME_HDR_LEN;
	if (body_len) {
		body = malloc(body_len);
		if (!body) {
			rc = -ENOMEM;
			goto out;
		}
		rc = recv_all(fd, body, body_len, deadline_ns);
		if (rc < 0)
			goto out;
	}
	rc = pb_frame_decode(desc, body, body_len, msg_out);
out:
	free(body);
	return rc;
}
