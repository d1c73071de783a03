/*
 * Epochs on a transport: a length-framed stream one way, an ack the other
 * (repl.h, docs/stream-format.md §8). The receiver never trusts a length
 * before checking it against its limit, and never keeps a partial epoch.
 */
#define LOG_TAG "epoch"
#include "replication/repl.h"

#include <errno.h>
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
	*stream_id_out = a.stream_id;
	*status_out = a.status;
	return 0;
}
