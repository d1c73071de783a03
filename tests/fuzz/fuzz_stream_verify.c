/*
 * Fuzz the independent stream verifier (tools/castor/stream_verify.h). Rules
 * checked on every input: a verdict is 0 or -EBADMSG with a consistent result;
 * the buffer and the streaming entry points agree, whatever sizes the reads come
 * in; the record callback sees each accepted record once, in order, 8-aligned.
 * And on every input found valid: it is a whole number of records ending in END;
 * any proper prefix, one more byte, or one changed bit outside the length fields
 * is refused (CRC-32C catches any burst of up to 32 bits; END's fields are all
 * checked; a type changed to END leaves bytes after it).
 */
#include "tests/fuzz/fuzz.h"
#include "tools/castor/stream_verify.h"

#include <errno.h>
#include <string.h>

/* ---- the streaming path, in reads of odd sizes -------------------------------- */

struct chunk_reader {
	const uint8_t *p;
	size_t left;
	size_t step; /* at most this many bytes per read */
	unsigned calls;
};

static ssize_t chunk_read(void *ctx, uint8_t *buf, size_t len)
{
	struct chunk_reader *c = ctx;
	size_t n = len < c->left ? len : c->left;

	/* vary the size: step, 1, step, 1, ... */
	if (n > c->step)
		n = c->step;
	if (n > 1 && (c->calls++ & 1))
		n = 1;
	if (n) {
		memcpy(buf, c->p, n);
		c->p += n;
		c->left -= n;
	}
	return (ssize_t)n;
}

#define MAX_RECS 4096

struct rec_log {
	uint64_t n;
	uint64_t next_off;
	bool ok;
	uint64_t off[MAX_RECS]; /* the first MAX_RECS record offsets */
};

static void log_record_cb(void *ctx, const struct stream_verify_record *rec)
{
	struct rec_log *l = ctx;

	if (rec->offset != l->next_off || rec->offset % SV_REC_ALIGN ||
	    rec->length > SV_REC_MAX_LEN || (rec->length && !rec->body))
		l->ok = false;
	if (l->n < MAX_RECS)
		l->off[l->n] = rec->offset;
	l->n++;
	l->next_off = rec->offset + SV_REC_HDR_LEN + rec->length +
		      (SV_REC_ALIGN - rec->length % SV_REC_ALIGN) % SV_REC_ALIGN;
}

static bool is_invalid(const uint8_t *data, size_t size)
{
	struct stream_verify_result res;
	int rc;

	rc = stream_verify_buf(data, size, &res);
	stream_verify_result_dispose(&res);
	FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
	return rc == -EBADMSG;
}

/* A bit to flip in a valid stream: anywhere but the length field of a record. */
static size_t pick_bit(const uint8_t *data, size_t size, const struct rec_log *log)
{
	uint64_t h = 1469598103934665603ull, bit;
	size_t i, k;

	for (i = 0; i < size; i += 61)
		h = (h ^ data[i]) * 1099511628211ull;
	for (k = 0; k < 8; k++) {
		bit = h % (size * 8);
		h = h * 6364136223846793005ull + 1442695040888963407ull;
		for (i = 0; i < log->n && i < MAX_RECS; i++)
			if (bit / 8 >= log->off[i] + 4 && bit / 8 < log->off[i] + 8)
				break;
		if (i == log->n || i == MAX_RECS)
			return (size_t)bit;
	}
	return 0; /* the magic's first bit */
}

static void check_valid(const uint8_t *data, size_t size, const struct stream_verify_result *res,
			const struct rec_log *log)
{
	uint8_t *copy;
	size_t bit, cut;

	FUZZ_CHECK(size % SV_REC_ALIGN == 0 && size >= SV_REC_HDR_LEN + SV_HEADER_LEN);
	FUZZ_CHECK(res->has_header && res->ncpus >= 1 && res->ncpus <= SV_MAX_NCPUS);
	FUZZ_CHECK(res->kind == SV_KIND_FULL || res->kind == SV_KIND_INCREMENTAL);
	FUZZ_CHECK(res->kind == SV_KIND_FULL ? res->parent_id == 0 : res->parent_id != 0);
	/* HEADER, VCPU and VCPU_MSRS per vCPU, IRQCHIP, PIT, CLOCK, END */
	FUZZ_CHECK(res->records >= 2ull * res->ncpus + 5);
	FUZZ_CHECK(res->kind != SV_KIND_FULL || res->pages >= res->mem_bytes / SV_PAGE_SIZE);
	FUZZ_CHECK(log->next_off == size);
	FUZZ_CHECK(log->n > MAX_RECS ||
		   !memcmp(data + log->off[log->n - 1], "\xff\0\0\0\x18\0\0\0", 8));

	FUZZ_CHECK(is_invalid(data, size - 1 - (size_t)(res->stream_id % (size - 1))));
	cut = (size_t)(res->created_ns % size);
	FUZZ_CHECK(is_invalid(data, cut));

	copy = malloc(size + 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	copy[size] = 0;
	FUZZ_CHECK(is_invalid(copy, size + 1));
	bit = pick_bit(data, size, log);
	copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	FUZZ_CHECK(is_invalid(copy, size));
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_verify_result r1, r2;
	struct chunk_reader cr = {.p = data, .left = size};
	struct rec_log *log;
	int rc1, rc2;

	rc1 = stream_verify_buf(data, size, &r1);
	FUZZ_CHECK(rc1 == 0 || rc1 == -EBADMSG);
	FUZZ_CHECK(r1.valid == (rc1 == 0));
	FUZZ_CHECK(r1.valid == (r1.error[0] == '\0'));
	FUZZ_CHECK(memchr(r1.error, '\0', sizeof(r1.error)) != NULL);
	FUZZ_CHECK(r1.valid || r1.offset <= size);
	FUZZ_CHECK(r1.pages <= size / 8);
	FUZZ_CHECK(r1.n_devices <= r1.records);

	log = calloc(1, sizeof(*log));
	FUZZ_CHECK(log != NULL);
	log->ok = true;
	cr.step = 1 + (size ? data[size / 2] % 97 : 0);
	rc2 = stream_verify_read(chunk_read, &cr, log_record_cb, log, &r2);
	FUZZ_CHECK(rc2 == rc1);
	FUZZ_CHECK(!strcmp(r1.error, r2.error) && r1.offset == r2.offset);
	FUZZ_CHECK(r1.has_type == r2.has_type && r1.type == r2.type);
	FUZZ_CHECK(r1.records == r2.records && r1.pages == r2.pages);
	FUZZ_CHECK(r1.n_devices == r2.n_devices);
	FUZZ_CHECK(log->ok && log->n == r2.records);

	if (rc1 == 0)
		check_valid(data, size, &r1, log);

	free(log);
	stream_verify_result_dispose(&r1);
	stream_verify_result_dispose(&r2);
	stream_verify_result_dispose(&r2); /* idempotent */
	return 0;
}

/* ---- seeds: valid streams built here from the spec ------------------------------ */

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	uint64_t records, pages;
	uint32_t crc;
};

static void put(struct sbuf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->p = realloc(b->p, b->cap);
		FUZZ_CHECK(b->p != NULL);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put_le(struct sbuf *b, uint64_t v, unsigned bytes)
{
	uint8_t x[8];
	unsigned i;

	for (i = 0; i < bytes; i++)
		x[i] = (uint8_t)(v >> (8 * i));
	put(b, x, bytes);
}

/* One record: header, body, zero padding; counted and checksummed unless END. */
static void put_rec(struct sbuf *b, uint32_t type, const void *body, size_t len)
{
	static const uint8_t zeros[8];
	size_t start = b->len;

	put_le(b, type, 4);
	put_le(b, len, 4);
	put(b, body, len);
	put(b, zeros, (SV_REC_ALIGN - len % SV_REC_ALIGN) % SV_REC_ALIGN);
	if (type != SV_REC_END) {
		b->crc = stream_verify_crc32c(b->crc, b->p + start, b->len - start);
		b->records++;
	}
}

static void put_header(struct sbuf *b, uint32_t kind, uint32_t ncpus, uint64_t mem, uint64_t parent)
{
	struct sbuf h = {0};

	put_le(&h, SV_MAGIC, 8);
	put_le(&h, SV_REVISION, 4);
	put_le(&h, kind, 4);
	put_le(&h, ncpus, 4);
	put_le(&h, SV_PAGE_SIZE, 4);
	put_le(&h, mem, 8);
	put_le(&h, 0x5eed0000c0ffee01ull + kind, 8);
	put_le(&h, parent, 8);
	put_le(&h, 1795310000123456789ull, 8);
	put_le(&h, 0, 8);
	put_rec(b, SV_REC_HEADER, h.p, h.len);
	free(h.p);
}

/* PAGES of pfns first..first+n-1; every raw_every-th one RAW (0: none). */
static void put_pages(struct sbuf *b, uint64_t first, uint32_t n, uint32_t raw_every)
{
	struct sbuf p = {0};
	uint8_t page[SV_PAGE_SIZE];
	uint32_t i;
	bool raw;

	put_le(&p, n, 4);
	put_le(&p, 0, 4);
	for (i = 0; i < n; i++) {
		raw = raw_every && i % raw_every == 0;
		put_le(&p, (first + i) | (uint64_t)(raw ? SV_ENC_RAW : SV_ENC_ZERO) << 60, 8);
	}
	for (i = 0; i < n; i++) {
		if (!raw_every || i % raw_every)
			continue;
		memset(page, (int)(first + i), sizeof(page));
		put(&p, page, sizeof(page));
	}
	put_rec(b, SV_REC_PAGES, p.p, p.len);
	b->pages += n;
	free(p.p);
}

static void put_state(struct sbuf *b, uint32_t ncpus, bool devices)
{
	static const uint8_t serial0[] = {0x0a, 0x07, 's',  'e',  'r',	'i', 'a',
					  'l',	'0',  0x52, 0x02, 0x08, 0x01};
	static const uint8_t net0[] = {0x0a, 0x04, 'n',	 'e',  't',  '0',  0x62, 0x0b, 0x08, 0x01,
				       0xa2, 0x01, 0x06, 0x0a, 0x04, 0x52, 0x54, 0x00, 0x12};
	uint8_t vcpu[SV_VCPU_LEN], chips[SV_IRQCHIP_LEN], pit[SV_PIT_LEN], clock[SV_CLOCK_LEN];
	struct sbuf m = {0};
	uint32_t i;

	for (i = 0; i < ncpus; i++) {
		memset(vcpu, 0, sizeof(vcpu));
		vcpu[0] = (uint8_t)i;
		vcpu[SV_VCPU_REGS_OFF + 128] = 0x10; /* rip */
		put_rec(b, SV_REC_VCPU, vcpu, sizeof(vcpu));
		m.len = 0;
		put_le(&m, i, 4);
		put_le(&m, 2, 4);
		put_le(&m, 0x10, 4); /* TSC */
		put_le(&m, 0, 4);
		put_le(&m, 12345, 8);
		put_le(&m, 0xc0000080, 4); /* EFER */
		put_le(&m, 0, 4);
		put_le(&m, 0x500, 8);
		put_rec(b, SV_REC_VCPU_MSRS, m.p, m.len);
	}
	free(m.p);
	memset(chips, 0, sizeof(chips));
	chips[SV_IRQCHIP_ONE] = 1;
	chips[2 * SV_IRQCHIP_ONE] = 2;
	put_rec(b, SV_REC_IRQCHIP, chips, sizeof(chips));
	memset(pit, 0, sizeof(pit));
	put_rec(b, SV_REC_PIT, pit, sizeof(pit));
	memset(clock, 0, sizeof(clock));
	clock[1] = 0x42;
	put_rec(b, SV_REC_CLOCK, clock, sizeof(clock));
	if (devices) {
		put_rec(b, SV_REC_DEVICE, serial0, sizeof(serial0));
		put_rec(b, SV_REC_DEVICE, net0, sizeof(net0));
	}
}

static void put_end(struct sbuf *b)
{
	uint8_t end[SV_END_LEN];
	unsigned i;

	for (i = 0; i < 8; i++) {
		end[i] = (uint8_t)(b->records >> (8 * i));
		end[16 + i] = (uint8_t)(b->pages >> (8 * i));
	}
	for (i = 0; i < 4; i++) {
		end[8 + i] = (uint8_t)(b->crc >> (8 * i));
		end[12 + i] = 0;
	}
	put_rec(b, SV_REC_END, end, sizeof(end));
}

static void add_seed(fuzz_seed_fn add, void *ctx, struct sbuf *b)
{
	struct stream_verify_result res;
	int rc;

	rc = stream_verify_buf(b->p, b->len, &res);
	if (rc)
		fprintf(stderr, "seed refused: offset %llu: %s\n", (unsigned long long)res.offset,
			res.error);
	FUZZ_CHECK(rc == 0); /* the seeds and the verifier read the spec alike */
	stream_verify_result_dispose(&res);
	add(ctx, b->p, b->len);
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static const uint8_t opt_body[] = "later";
	struct sbuf b = {0};

	/* full, 1 vCPU, 16 pages: pages before and after the state, an optional record */
	put_header(&b, SV_KIND_FULL, 1, 16 * SV_PAGE_SIZE, 0);
	put_pages(&b, 0, 16, 8);
	put_rec(&b, SV_REC_F_OPTIONAL | 0x777, opt_body, sizeof(opt_body));
	put_state(&b, 1, true);
	put_pages(&b, 3, 1, 1);
	put_end(&b);
	add_seed(add, ctx, &b);

	/* incremental, 2 vCPUs, no devices */
	put_header(&b, SV_KIND_INCREMENTAL, 2, 1 << 20, 0x5eed0000c0ffee01ull);
	put_pages(&b, 200, 3, 2);
	put_state(&b, 2, false);
	put_end(&b);
	add_seed(add, ctx, &b);

	/* full, 1 page, the smallest there is */
	put_header(&b, SV_KIND_FULL, 1, SV_PAGE_SIZE, 0);
	put_state(&b, 1, false);
	put_pages(&b, 0, 1, 0);
	put_end(&b);
	add_seed(add, ctx, &b);

	/* full, 3 vCPUs, 300 ZERO pages in two batches */
	put_header(&b, SV_KIND_FULL, 3, 300 * SV_PAGE_SIZE, 0);
	put_pages(&b, 0, 150, 0);
	put_pages(&b, 150, 150, 0);
	put_state(&b, 3, true);
	put_end(&b);
	add_seed(add, ctx, &b);
}
