/*
 * Epochs on a transport: a length-framed stream one way, an ack the other
 * (repl.h, docs/stream-format.md §8). The receiver never trusts a length
 * before checking it against its limit, and never keeps a partial epoch.
 */
#define LOG_TAG "epoch"
#include "replication/repl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct epoch_hdr {
	uint64_t magic;
	uint64_t len;
};
_Static_assert(sizeof(struct epoch_hdr) == 16, "epoch header layout");

struct ack {
	uint64_t magic;
	uint64_t stream_id;
	int32_t status;
	uint32_t reserved;
};
_Static_assert(sizeof(struct ack) == 24, "ack layout");

int repl_epoch_send(const struct repl_transport_ops *t, struct repl_conn *c, const uint8_t *buf,
		    size_t len)
{
	struct epoch_hdr h = {.magic = REPL_EPOCH_MAGIC, .len = len};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)buf, len}};

	return t->send_iov(c, iov, 2);
}

/* The body of an epoch whose header `h` was received. */
static int recv_body(const struct repl_transport_ops *t, struct repl_conn *c,
		     const struct epoch_hdr *hp, uint64_t max_len, uint8_t **buf_io, size_t *cap_io,
		     size_t *len_out)
{
	struct epoch_hdr h = *hp;
	int rc;

	if (!h.len || h.len > max_len || h.len > SIZE_MAX) {
		LOG_ERR("epoch of %llu bytes refused (limit %llu)", (unsigned long long)h.len,
			(unsigned long long)max_len);
		return -EMSGSIZE;
	}
	if (h.len > *cap_io) {
		uint8_t *nb = realloc(*buf_io, (size_t)h.len);

		if (!nb)
			return -ENOMEM;
		*buf_io = nb;
		*cap_io = (size_t)h.len;
	}
	rc = t->recv(c, *buf_io, (size_t)h.len);
	if (rc < 0)
		return rc; /* whatever arrived is not an epoch: *len_out stays 0 */
	*len_out = (size_t)h.len;
	return 0;
}

int repl_epoch_recv_into(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t max_len,
			 uint8_t **buf_io, size_t *cap_io, size_t *len_out)
{
	struct epoch_hdr h;
	int rc;

	*len_out = 0;
	rc = t->recv(c, &h, sizeof(h));
	if (rc < 0)
		return rc;
	if (h.magic != REPL_EPOCH_MAGIC) {
		LOG_ERR("epoch header with a bad magic 0x%016llx", (unsigned long long)h.magic);
		return -EBADMSG;
	}
	return recv_body(t, c, &h, max_len, buf_io, cap_io, len_out);
}

int repl_epoch_send_progress(const struct repl_transport_ops *t, struct repl_conn *c,
			     const uint8_t *buf, size_t len, size_t chunk,
			     repl_progress_fn progress, void *arg)
{
	struct epoch_hdr h = {.magic = REPL_EPOCH_MAGIC, .len = len};
	struct iovec iov = {&h, sizeof(h)};
	size_t off = 0;
	int rc;

	rc = t->send_iov(c, &iov, 1);
	while (!rc && off < len) {
		size_t n = len - off < chunk ? len - off : chunk;

		iov = (struct iovec){(void *)(buf + off), n};
		rc = t->send_iov(c, &iov, 1);
		off += n;
		if (!rc && progress)
			progress(arg, off, len);
	}
	return rc;
}

int repl_epoch_recv(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t max_len,
		    uint8_t **buf_out, size_t *len_out)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc;

	rc = repl_epoch_recv_into(t, c, max_len, &buf, &cap, len_out);
	if (rc < 0) {
		free(buf); /* a partial epoch is never kept */
		return rc;
	}
	*buf_out = buf;
	return 0;
}

int repl_ack_send(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t stream_id,
		  int32_t status)
{
	struct ack a = {.magic = REPL_ACK_MAGIC, .stream_id = stream_id, .status = status};
	struct iovec iov = {&a, sizeof(a)};

	return t->send_iov(c, &iov, 1);
}

int repl_ack_recv(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t *stream_id_out,
		  int32_t *status_out)
{
	struct ack a;
	int rc = t->recv(c, &a, sizeof(a));

	if (rc < 0)
		return rc;
	if (a.magic != REPL_ACK_MAGIC || a.reserved)
		return -EBADMSG;
	/* a status is 0 or a negative errno; anything else is a broken or hostile peer */
	if (a.status > 0 || a.status < -4095)
		return -EBADMSG;
	*stream_id_out = a.stream_id;
	*status_out = a.status;
	return 0;
}

/* ---- the session layer: hello, heartbeats, goodbye (docs/stream-format.md §8.1) ---- */

struct hello {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t mem_bytes;
	uint32_t ncpus;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hello) == 32, "hello layout");

struct welcome {
	uint64_t magic;
	int32_t status;
	uint32_t idle_ms;
	char text[REPL_WELCOME_TEXT];
};
_Static_assert(sizeof(struct welcome) == 128, "welcome layout");

int repl_hello_send(const struct repl_transport_ops *t, struct repl_conn *c,
		    const struct repl_hello *h)
{
	struct hello m = {.magic = REPL_HELLO_MAGIC,
			  .version = REPL_SESSION_VERSION,
			  .mem_bytes = h->mem_bytes,
			  .ncpus = h->ncpus};
	struct iovec iov = {&m, sizeof(m)};

	return t->send_iov(c, &iov, 1);
}

int repl_hello_recv(const struct repl_transport_ops *t, struct repl_conn *c, struct repl_hello *out,
		    char *why, size_t why_len)
{
	struct hello m;
	int rc = t->recv(c, &m, sizeof(m));

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
	if (m.flags || m.reserved)
		return util_why(why, why_len, -EPROTO, "hello with reserved bits set");
	out->mem_bytes = m.mem_bytes;
	out->ncpus = m.ncpus;
	return 0;
}

int repl_welcome_send(const struct repl_transport_ops *t, struct repl_conn *c, int32_t status,
		      uint32_t idle_ms, const char *text)
{
	struct welcome m = {.magic = REPL_WELCOME_MAGIC, .status = status, .idle_ms = idle_ms};
	struct iovec iov = {&m, sizeof(m)};

	snprintf(m.text, sizeof(m.text), "%s", text ? text : "");
	return t->send_iov(c, &iov, 1);
}

int repl_welcome_recv(const struct repl_transport_ops *t, struct repl_conn *c,
		      uint32_t *idle_ms_out, char *why, size_t why_len)
{
	struct welcome m;
	int rc = t->recv(c, &m, sizeof(m));

	if (rc < 0) {
		snprintf(why, why_len, "no answer to the hello (%s)", strerror(-rc));
		return rc;
	}
	if (m.magic != REPL_WELCOME_MAGIC) {
		snprintf(why, why_len, "not a Castor replica (bad answer to the hello)");
		return -EPROTO;
	}
	if (m.status > 0 || m.status < -4095) {
		snprintf(why, why_len, "a malformed answer to the hello (status %d)", m.status);
		return -EPROTO;
	}
	m.text[sizeof(m.text) - 1] = 0;
	for (char *p = m.text; *p; p++) /* it is printed: keep it one line of text */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	if (m.status)
		snprintf(why, why_len, "%s", m.text[0] ? m.text : strerror(-m.status));
	else if (!m.idle_ms) {
		snprintf(why, why_len, "a replica that gives no idle time");
		return -EPROTO;
	}
	*idle_ms_out = m.idle_ms;
	return m.status;
}

static int send_hdr(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t magic)
{
	struct epoch_hdr h = {.magic = magic};
	struct iovec iov = {&h, sizeof(h)};

	return t->send_iov(c, &iov, 1);
}

int repl_ping(const struct repl_transport_ops *t, struct repl_conn *c)
{
	struct ack a;
	int rc = send_hdr(t, c, REPL_PING_MAGIC);

	if (!rc)
		rc = t->recv(c, &a, sizeof(a));
	if (!rc && (a.magic != REPL_PONG_MAGIC || a.stream_id || a.status || a.reserved))
		rc = -EBADMSG;
	return rc;
}

int repl_bye_send(const struct repl_transport_ops *t, struct repl_conn *c)
{
	return send_hdr(t, c, REPL_BYE_MAGIC);
}

int repl_frame_recv_into(const struct repl_transport_ops *t, struct repl_conn *c, uint64_t max_len,
			 uint8_t **buf_io, size_t *cap_io, size_t *len_out,
			 enum repl_frame *kind_out)
{
	struct epoch_hdr h;
	int rc;

	*len_out = 0;
	for (;;) {
		rc = t->recv(c, &h, sizeof(h));
		if (rc < 0)
			return rc;
		if (h.magic == REPL_EPOCH_MAGIC)
			break;
		if ((h.magic == REPL_PING_MAGIC || h.magic == REPL_BYE_MAGIC) && h.len) {
			LOG_ERR("session frame 0x%016llx with a length",
				(unsigned long long)h.magic);
			return -EBADMSG;
		}
		if (h.magic == REPL_BYE_MAGIC) {
			*kind_out = REPL_FRAME_BYE;
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

			rc = t->send_iov(c, &iov, 1);
			if (rc < 0)
				return rc;
		}
	}
	*kind_out = REPL_FRAME_EPOCH;
	return recv_body(t, c, &h, max_len, buf_io, cap_io, len_out);
}
