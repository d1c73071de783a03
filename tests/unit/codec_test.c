/* Helpers shared by the codec's unit tests (codec_test.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/codec_test.h"

static uint64_t rng = 0x1234567887654321ull;

uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, 8);
	}
}

uint8_t *page(uint8_t *ram, uint64_t pfn)
{
	return ram + pfn * PG;
}

void sb_rec(struct sb *b, uint32_t type, const void *body, size_t len)
{
	size_t padded = (len + 7) & ~(size_t)7;
	uint32_t hdr[2] = {type, (uint32_t)len};

	b->buf = realloc(b->buf, b->len + 8 + padded);
	assert_non_null(b->buf);
	memcpy(b->buf + b->len, hdr, 8);
	if (len)
		memcpy(b->buf + b->len + 8, body, len);
	memset(b->buf + b->len + 8 + len, 0, padded - len);
	b->len += 8 + padded;
}

struct hv_stream_header mkheader(uint32_t ver, uint32_t kind, uint64_t id)
{
	struct hv_stream_header h = {.magic = HV_STREAM_MAGIC,
				     .version = ver,
				     .kind = kind,
				     .ncpus = 1,
				     .page_size = HV_PAGE_SIZE,
				     .mem_bytes = MEM,
				     .stream_id = id,
				     .parent_id = kind == HV_STREAM_INCREMENTAL ? id - 1 : 0};
	return h;
}

void sb_header(struct sb *b, uint32_t ver)
{
	struct hv_stream_header h = mkheader(ver, HV_STREAM_INCREMENTAL, 100);

	sb_rec(b, HV_REC_HEADER, &h, sizeof(h));
}

/*
 * Rewrite END (records, checksum, pages) for what precedes it, so that a test
 * of a broken rule is not caught by the checksum first. `b` ends with END.
 */
void resign(uint8_t *buf, size_t len)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	struct hv_stream_end end = {0};
	uint32_t crc = UTIL_CRC32C_INIT, count;
	int more;

	hv_stream_iter_init(&it, buf, len);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		crc = util_crc32c_update(crc, buf + r.offset, 8 + ((r.len + 7u) & ~7u));
		end.records++;
		if ((r.type == HV_REC_PAGES || r.type == REPL_REC_PAGES_ZSTD) && r.len >= 4) {
			memcpy(&count, r.body, 4);
			end.pages += count;
		}
	}
	assert_int_equal(more, 0);
	end.checksum = util_crc32c_final(crc);
	memcpy((uint8_t *)r.body, &end, sizeof(end));
}

void sb_end(struct sb *b)
{
	struct hv_stream_end end = {0};

	sb_rec(b, HV_REC_END, &end, sizeof(end));
	resign(b->buf, b->len);
}

uint64_t ent(uint64_t pfn, unsigned enc)
{
	return pfn | (uint64_t)enc << HV_PAGE_ENC_SHIFT;
}

/* A PAGES body: count entries, then the payloads. */
size_t pages_body(uint8_t *body, const uint64_t *ents, uint32_t count, const uint8_t *pl,
		  size_t pl_len)
{
	uint32_t hdr[2] = {count, 0};

	memcpy(body, hdr, 8);
	memcpy(body + 8, ents, 8 * (size_t)count);
	memcpy(body + 8 + 8 * (size_t)count, pl, pl_len);
	return 8 + 8 * (size_t)count + pl_len;
}

/* A PAGES_ZSTD body around a frame given as is. */
size_t zstd_body(uint8_t *body, const uint64_t *ents, uint32_t count, uint64_t raw_len,
		 const uint8_t *frame, size_t flen)
{
	uint32_t hdr[2] = {count, 0};

	memcpy(body, hdr, 8);
	memcpy(body + 8, ents, 8 * (size_t)count);
	memcpy(body + 8 + 8 * (size_t)count, &raw_len, 8);
	memcpy(body + 16 + 8 * (size_t)count, frame, flen);
	return 16 + 8 * (size_t)count + flen;
}

/*
 * A revision-1 epoch as the hypervisor writes it: HEADER, the staged pages in
 * two PAGES records (split at `split`), then CLOCK, a DEVICE of odd length
 * and an unknown optional record, END.
 */
void write_epoch(uint64_t id, const uint64_t *pfns, size_t n, size_t split, const uint8_t *staged,
		 uint8_t **buf_out, size_t *len_out)
{
	struct hv_stream_header h =
		mkheader(1, id == 1 ? HV_STREAM_FULL : HV_STREAM_INCREMENTAL, id);
	struct hv_stream_writer *w = NULL;
	uint8_t clock[48], dev[13];
	struct iovec iov;
	const uint8_t *data;

	fill_random(clock, sizeof(clock));
	memset(dev, (int)id, sizeof(dev));
	assert_int_equal(hv_stream_writer_mem(&w), 0);
	iov = (struct iovec){&h, sizeof(h)};
	assert_int_equal(hv_stream_write(w, HV_REC_HEADER, &iov, 1), 0);
	if (split)
		assert_int_equal(hv_stream_write_staged(w, pfns, split, staged), 0);
	if (n > split)
		assert_int_equal(
			hv_stream_write_staged(w, pfns + split, n - split, staged + split * PG), 0);
	iov = (struct iovec){clock, sizeof(clock)}; /* §2.5: struct kvm_clock_data, 48 bytes */
	assert_int_equal(hv_stream_write(w, HV_REC_CLOCK, &iov, 1), 0);
	iov = (struct iovec){dev, sizeof(dev)};
	assert_int_equal(hv_stream_write(w, HV_REC_DEVICE, &iov, 1), 0);
	iov = (struct iovec){dev, 5};
	assert_int_equal(hv_stream_write(w, 0x77 | HV_REC_F_OPTIONAL, &iov, 1), 0);
	assert_int_equal(hv_stream_finish(w), 0);
	data = hv_stream_writer_data(w, len_out);
	*buf_out = malloc(*len_out);
	assert_non_null(*buf_out);
	memcpy(*buf_out, data, *len_out);
	hv_stream_writer_free(w);
}
