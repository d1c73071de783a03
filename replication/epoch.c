/*
 * Epochs on a link: a length-framed stream one way, an ack the other
 * (repl.h, docs/stream-format.md §8). The receiver never trusts a length
 * before checking it against its limit, and never keeps a partial epoch.
 */
#define LOG_TAG "epoch"
#include "replication/seal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int repl_epoch_send(struct repl_link *l, const uint8_t *buf, size_t len)
{
	struct epoch_hdr h = {.magic = REPL_EPOCH_MAGIC, .len = len};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)buf, len}};

	return repl_link_send_iov(l, iov, 2);
}

int repl_epoch_recv_body(struct repl_link *l, const struct epoch_hdr *hp, uint64_t max_len,
			 uint8_t **buf_io, size_t *cap_io, size_t *len_out)
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
	rc = repl_link_recv(l, *buf_io, (size_t)h.len);
	if (rc < 0)
		return rc; /* whatever arrived is not an epoch: *len_out stays 0 */
	*len_out = (size_t)h.len;
	return 0;
}

int repl_epoch_recv_into(struct repl_link *l, uint64_t max_len, uint8_t **buf_io, size_t *cap_io,
			 size_t *len_out)
{
	struct epoch_hdr h;
	int rc;

	*len_out = 0;
	rc = repl_link_recv(l, &h, sizeof(h));
	if (rc < 0)
		return rc;
	if (h.magic != REPL_EPOCH_MAGIC) {
		LOG_ERR("epoch header with a bad magic 0x%016llx", (unsigned long long)h.magic);
		return -EBADMSG;
	}
	return repl_epoch_recv_body(l, &h, max_len, buf_io, cap_io, len_out);
}

int repl_epoch_send_progress(struct repl_link *l, const uint8_t *buf, size_t len, size_t chunk,
			     repl_progress_fn progress, void *arg)
{
	struct epoch_hdr h = {.magic = REPL_EPOCH_MAGIC, .len = len};
	struct iovec iov = {&h, sizeof(h)};
	size_t off = 0;
	int rc;

	rc = repl_link_send_iov(l, &iov, 1);
	while (!rc && off < len) {
		size_t n = len - off < chunk ? len - off : chunk;

		iov = (struct iovec){(void *)(buf + off), n};
		rc = repl_link_send_iov(l, &iov, 1);
		off += n;
		if (!rc && progress)
			progress(arg, off, len);
	}
	return rc;
}

int repl_epoch_recv(struct repl_link *l, uint64_t max_len, uint8_t **buf_out, size_t *len_out)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc;

	rc = repl_epoch_recv_into(l, max_len, &buf, &cap, len_out);
	if (rc < 0) {
		free(buf); /* a partial epoch is never kept */
		return rc;
	}
	*buf_out = buf;
	return 0;
}

int repl_ack_send(struct repl_link *l, uint64_t stream_id, int32_t status)
{
	struct ack a = {.magic = REPL_ACK_MAGIC, .stream_id = stream_id, .status = status};
	struct iovec iov = {&a, sizeof(a)};

	return repl_link_send_iov(l, &iov, 1);
}

int repl_ack_recv(struct repl_link *l, uint64_t *stream_id_out, int32_t *status_out)
{
	struct ack a;
	int rc = repl_link_recv(l, &a, sizeof(a));

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

#define ACK_RAISE_MIN_MS 100u /* a wait longer by less than this is not worth a syscall */

uint32_t repl_ack_wait_ms(uint32_t timeout_ms, uint64_t stream_bytes)
{
	uint64_t ms = (uint64_t)timeout_ms + stream_bytes / REPL_ACK_APPLY_BYTES_PER_MS;

	if (timeout_ms >= REPL_SYNC_TIMEOUT_MS)
		return timeout_ms;
	return ms > REPL_SYNC_TIMEOUT_MS ? REPL_SYNC_TIMEOUT_MS : (uint32_t)ms;
}

int repl_ack_recv_sized(struct repl_link *l, uint32_t timeout_ms, uint64_t stream_bytes,
			uint64_t *stream_id_out, int32_t *status_out)
{
	uint32_t wait = repl_ack_wait_ms(timeout_ms, stream_bytes);
	/* an epoch's few hundred KiB add little: no two syscalls per epoch for them */
	bool raised = wait >= timeout_ms + ACK_RAISE_MIN_MS && l->t->set_timeout;
	int rc;

	if (raised)
		l->t->set_timeout(l->c, wait);
	rc = repl_ack_recv(l, stream_id_out, status_out);
	if (raised)
		l->t->set_timeout(l->c, timeout_ms);
	return rc;
}
