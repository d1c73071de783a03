/*
 * The epoch codec (codec.h, docs/stream-format.md §9): revision-1 streams to
 * revision-2 wire streams with ZERO, PATCH (changed words), XOR-delta and
 * zstd-compressed page batches, and back. This file holds what both
 * directions share: the reusable buffers and the record writing. The encoder
 * is codec_enc.c (the primary's sender thread, every epoch: its steady state
 * allocates nothing and touches each page a bounded number of times); the
 * decoder codec_dec.c (it treats its input as hostile).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "replication/codec_int.h"
#include "util/util.h"

/* ---- buffers -------------------------------------------------------------------- */

void repl_buf_init(struct repl_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void repl_buf_dispose(struct repl_buf *b)
{
	free(b->data);
	repl_buf_init(b);
}

/* Capacity for `need` bytes in all; doubling, so a reused buffer stops growing. */
int codec_buf_reserve(struct repl_buf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 65536;
	uint8_t *p;

	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/* The header and padding of a record whose body is already at start + 8. */
void codec_close_record(struct repl_buf *b, size_t start, uint32_t type, size_t len)
{
	put32(b->data + start, type);
	put32(b->data + start + 4, (uint32_t)len);
	memset(b->data + start + 8 + len, 0, pad8(len) - len);
	b->len = start + 8 + pad8(len);
}

/* A record copied as it is (its type keeps the optional flag). */
int codec_copy_record(struct repl_buf *out, uint32_t type, const uint8_t *body, size_t len)
{
	size_t start = out->len;
	int rc;

	rc = codec_buf_reserve(out, start + 8 + pad8(len));
	if (rc)
		return rc;
	memcpy(out->data + start + 8, body, len);
	codec_close_record(out, start, type, len);
	return 0;
}

/* END over everything in `out`: HEADER up to here. */
int codec_finish_stream(struct repl_buf *out, uint64_t records, uint64_t pages)
{
	struct hv_stream_end end = {
		.records = records,
		.checksum = util_crc32c_final(
			util_crc32c_update(UTIL_CRC32C_INIT, out->data, out->len)),
		.pages = pages,
	};

	return codec_copy_record(out, HV_REC_END, (const uint8_t *)&end, sizeof(end));
}
