/*
 * Fuzz the disk parsers of replication/ (docs/stream-format.md §10, §11;
 * the dirty-region log's file). The first byte picks one:
 *   0: a §10 record (repl_disk_op_parse): whatever it accepts is within the
 *      spec's bounds and encodes back to the same record;
 *   1: a §11 conversation: a BEGIN (its 32 bytes), then framed records, each
 *      judged by dsync_hdr_check before its body is looked at and then by
 *      dsync_rec_parse: whatever they accept lies inside the image and its
 *      batches, DATA holds exactly its range, SUMS exactly its digests;
 *   2: a dirty-region log file (dlog_parse) for an image size and region size
 *      taken from the input: what it accepts has no bit past the last region;
 *      what it refuses comes with a reason;
 *   0xff (before the modulo): a SUMS frame's body (disk_sums_frame_parse, §8.5):
 *      what it accepts names ranges inside its image, in ranges §8.5 allows,
 *      and exactly its digests.
 */
#include "tests/fuzz/fuzz.h"
#include "replication/disk_int.h"

#include <errno.h>
#include <string.h>

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void op(const uint8_t *data, size_t size)
{
	uint8_t head[REPL_DISK_OP_HEAD], again[REPL_DISK_OP_HEAD];
	struct repl_disk_op o, back;
	struct disk_rec_hdr h, in;
	char why[192] = "";
	int n;

	if (size < sizeof(h))
		return;
	memcpy(&h, data, sizeof(h));
	size -= sizeof(h);
	data += sizeof(h);
	if (h.length > size)
		h.length = (uint32_t)size;
	if (repl_disk_op_parse(h.type, data, h.length, &o, why, sizeof(why)) < 0) {
		FUZZ_CHECK(why[0]);
		return;
	}
	FUZZ_CHECK(o.disk < REPL_DISK_MAX);
	if (o.kind == REPL_DISK_OP_WRITE || o.kind == REPL_DISK_OP_ZERO) {
		FUZZ_CHECK(o.len && !(o.offset % 512) && !(o.len % 512) &&
			   o.offset + o.len > o.offset);
	}
	if (o.kind == REPL_DISK_OP_WRITE) {
		FUZZ_CHECK(o.len <= REPL_DISK_WRITE_MAX);
		FUZZ_CHECK(o.data == data + sizeof(struct disk_rec_write));
		FUZZ_CHECK(o.len == h.length - sizeof(struct disk_rec_write));
	}
	/* what parses encodes back to the same header and fixed fields */
	in = h;
	n = repl_disk_op_encode(&o, head);
	FUZZ_CHECK(n > (int)sizeof(h));
	memcpy(&h, head, sizeof(h));
	FUZZ_CHECK(h.type == in.type && h.length == in.length);
	FUZZ_CHECK(!memcmp(head + sizeof(h), data, (size_t)n - sizeof(h)));
	FUZZ_CHECK(repl_disk_op_parse(h.type, head + sizeof(h), (size_t)n - sizeof(h), &back, why,
				      sizeof(why)) == (o.kind == REPL_DISK_OP_WRITE ? -EPROTO : 0));
	FUZZ_CHECK(repl_disk_op_encode(&o, again) == n && !memcmp(head, again, (size_t)n));
	FUZZ_CHECK((h.length + repl_disk_op_pad(&o)) % 8 == 0);
}

static void check_rec(const struct dsync_params *p, const struct dsync_rec *r, const uint8_t *body,
		      uint32_t len)
{
	switch (r->type) {
	case DSYNC_BEGIN:
		FUZZ_CHECK(r->u.begin.image_bytes && r->u.begin.range_bytes >= DSYNC_RANGE_MIN);
		break;
	case DSYNC_SUMS: {
		uint32_t marked = 0;

		FUZZ_CHECK(r->u.sums.batch < p->nbatches);
		FUZZ_CHECK(r->u.sums.count == dsync_batch_count(p, r->u.sums.batch));
		for (uint32_t i = 0; i < r->u.sums.count; i++)
			marked += dsync_sums_is_zero(r, i);
		FUZZ_CHECK(r->u.sums.digests + 32ull * (r->u.sums.count - marked) == body + len);
		break;
	}
	case DSYNC_DATA:
		FUZZ_CHECK(!(r->u.data.offset % p->range_bytes));
		FUZZ_CHECK(r->u.data.offset < p->image_bytes);
		FUZZ_CHECK(r->u.data.len == dsync_range_len(p, r->u.data.offset / p->range_bytes));
		FUZZ_CHECK(r->u.data.data + r->u.data.len == body + len);
		break;
	case DSYNC_ZERO:
		FUZZ_CHECK(r->u.zero.length && !(r->u.zero.offset % p->range_bytes));
		FUZZ_CHECK(r->u.zero.offset + r->u.zero.length <= p->image_bytes);
		FUZZ_CHECK(r->u.zero.offset + r->u.zero.length > r->u.zero.offset);
		break;
	case DSYNC_MARK:
	case DSYNC_ACK:
		FUZZ_CHECK(r->u.batch < p->nbatches);
		break;
	case DSYNC_RESULT:
		FUZZ_CHECK(r->u.result.status <= 0 && r->u.result.status >= -4095);
		break;
	case DSYNC_ERROR:
		FUZZ_CHECK(r->u.error.status < 0 && r->u.error.status >= -4095);
		FUZZ_CHECK(strlen(r->u.error.text) < DSYNC_TEXT);
		for (const char *c = r->u.error.text; *c; c++)
			FUZZ_CHECK(*c >= 0x20 && *c <= 0x7e);
		break;
	}
}

static void conversation(const uint8_t *data, size_t size)
{
	struct dsync_params params, *p = NULL;
	struct dsync_rec r;
	char why[192];
	size_t off;

	if (size < sizeof(struct dsync_begin))
		return;
	why[0] = 0;
	if (!dsync_rec_parse(NULL, DSYNC_BEGIN, data, sizeof(struct dsync_begin), &r, why,
			     sizeof(why))) {
		dsync_params_from_begin(&r.u.begin, &params);
		FUZZ_CHECK(params.nranges && params.nbatches);
		FUZZ_CHECK(params.nranges * params.range_bytes >= params.image_bytes);
		p = &params;
	} else {
		FUZZ_CHECK(why[0]);
	}
	for (off = sizeof(struct dsync_begin); off + sizeof(struct disk_rec_hdr) <= size;) {
		struct disk_rec_hdr h;
		size_t padded;

		memcpy(&h, data + off, sizeof(h));
		off += sizeof(h);
		why[0] = 0;
		if (dsync_hdr_check(p, h.type, h.length, why, sizeof(why)) < 0) {
			FUZZ_CHECK(why[0]);
			return; /* a reader stops here, its body unread */
		}
		FUZZ_CHECK(h.length <= DSYNC_REC_MAX);
		padded = h.length + (8 - h.length % 8) % 8;
		if (padded > size - off)
			return;
		if (dsync_rec_parse(p, h.type, data + off, h.length, &r, why, sizeof(why)) < 0)
			FUZZ_CHECK(why[0]);
		else if (r.type)
			check_rec(p, &r, data + off, h.length);
		off += padded;
	}
}

static void log_file(const uint8_t *data, size_t size)
{
	uint64_t image, gen = 0;
	uint32_t region;
	struct util_bitmap bm;
	char why[192] = "";

	if (size < 3)
		return;
	region = DSYNC_RANGE_MIN << (data[0] % 9);
	image = ((uint64_t)data[1] << 8 | data[2]) * 4096ull + 1 + data[0];
	data += 3;
	size -= 3;
	if (util_bitmap_init(&bm, image / region + !!(image % region)) < 0)
		return;
	if (dlog_parse(data, size, image, region, &bm, &gen, why, sizeof(why)) < 0) {
		FUZZ_CHECK(why[0]);
	} else {
		uint64_t n = bm.nbits;

		FUZZ_CHECK(size == sizeof(struct dlog_header) + UTIL_BITMAP_WORDS(n) * 8);
		FUZZ_CHECK(util_bitmap_next_set(&bm, 0) <= n);
		if (n % 64)
			FUZZ_CHECK(!(bm.words[UTIL_BITMAP_WORDS(n) - 1] >> (n % 64)));
		FUZZ_CHECK(gen == rd64(data + offsetof(struct dlog_header, generation)));
	}
	util_bitmap_dispose(&bm);
}

static void sums_frame(const uint8_t *data, size_t size)
{
	struct disk_sums_frame f;
	char why[192] = "";

	if (disk_sums_frame_parse(data, size, &f, why, sizeof(why)) < 0) {
		FUZZ_CHECK(why[0]);
		return;
	}
	FUZZ_CHECK(f.disk < REPL_DISK_MAX);
	FUZZ_CHECK(f.range_bytes == disk_sums_range_bytes(f.image_bytes) && f.range_bytes);
	FUZZ_CHECK(f.nranges == f.image_bytes / f.range_bytes + !!(f.image_bytes % f.range_bytes));
	FUZZ_CHECK(f.nranges <= DISK_SUMS_RANGES_MAX);
	FUZZ_CHECK(f.count && f.count <= DISK_SUMS_FRAME_RANGES);
	FUZZ_CHECK(f.first < f.nranges && f.count <= f.nranges - f.first);
	FUZZ_CHECK(size == DISK_SUMS_HEAD_BYTES + (size_t)f.count * REPL_DISK_DIGEST_BYTES);
	FUZZ_CHECK(f.digests == data + DISK_SUMS_HEAD_BYTES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] == 0xff) {
		sums_frame(data + 1, size - 1);
		return 0;
	}
	switch (data[0] % 3) {
	case 0:
		op(data + 1, size - 1);
		break;
	case 1:
		conversation(data + 1, size - 1);
		break;
	default:
		log_file(data + 1, size - 1);
		break;
	}
	return 0;
}

/* ---- seeds: one well-formed input of each kind ---------------------------------------- */

static size_t put_rec(uint8_t *buf, uint32_t type, const void *body, uint32_t len)
{
	struct disk_rec_hdr h = {.type = type, .length = len};
	size_t padded = len + (8 - len % 8) % 8;

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, len);
	memset(buf + sizeof(h) + len, 0, padded - len);
	return sizeof(h) + padded;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static uint8_t buf[2 * 4096 + 1024];
	struct repl_disk_op ops[] = {
		{.kind = REPL_DISK_OP_WRITE, .epoch = 3, .disk = 1, .offset = 4096, .len = 1024},
		{.kind = REPL_DISK_OP_ZERO, .epoch = 3, .offset = 512, .len = 8192},
		{.kind = REPL_DISK_OP_FLUSH, .epoch = 4, .disk = 2},
		{.kind = REPL_DISK_OP_SEAL, .epoch = 4, .ops = 2, .bytes = 1024},
	};
	static uint8_t zeros[1024];
	struct dsync_begin b = {.image_bytes = 3 * 4096 + 100,
				.range_bytes = 4096,
				.batch_ranges = DSYNC_BATCH_RANGES,
				.mode = REPL_DISK_SYNC_CHECKSUM,
				.flags = DSYNC_F_VERIFY};
	size_t n;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		int h;

		ops[i].data = zeros;
		buf[0] = 0;
		h = repl_disk_op_encode(&ops[i], buf + 1);
		n = 1 + (size_t)h;
		if (ops[i].kind == REPL_DISK_OP_WRITE) {
			memcpy(buf + n, zeros, ops[i].len);
			n += ops[i].len;
		}
		add(ctx, buf, n + repl_disk_op_pad(&ops[i]));
	}
	/* BEGIN; SUMS of the only batch (range 1 zero); DATA of range 0; ZERO; MARK; END */
	{
		struct dsync_sums_head sh = {.batch = 0, .count = 4};
		uint8_t sums[16 + 8 + 3 * 32] = {0};
		uint64_t bits = 2, off = 0, batch = 0;
		struct dsync_zero z = {.offset = 4096, .length = 4096};
		struct dsync_end e = {0};
		uint8_t data[8 + 4096] = {0};

		memcpy(sums, &sh, sizeof(sh));
		memcpy(sums + 16, &bits, 8);
		buf[0] = 1;
		memcpy(buf + 1, &b, sizeof(b));
		n = 1 + sizeof(b);
		n += put_rec(buf + n, DSYNC_SUMS, sums, sizeof(sums));
		memcpy(data, &off, 8);
		n += put_rec(buf + n, DSYNC_DATA, data, sizeof(data));
		n += put_rec(buf + n, DSYNC_ZERO, &z, sizeof(z));
		n += put_rec(buf + n, DSYNC_MARK, &batch, 8);
		n += put_rec(buf + n, DSYNC_END, &e, sizeof(e));
		add(ctx, buf, n);
	}
	/* a log of an image of 4097 bytes in 4 KiB regions: 2 regions, region 1 marked */
	{
		struct {
			struct dlog_header h;
			uint64_t w;
		} f = {.h = {.magic = DLOG_MAGIC,
			     .version = DLOG_VERSION,
			     .region_bytes = 4096,
			     .image_bytes = 4097,
			     .regions = 2},
		       .w = 2};
		uint32_t crc = util_crc32c_update(UTIL_CRC32C_INIT, &f, sizeof(f));

		f.h.crc32c = util_crc32c_final(crc);
		buf[0] = 2;
		buf[1] = 0; /* region 4096 << 0 */
		buf[2] = 0;
		buf[3] = 1; /* image = 1 * 4096 + 1 + 0 */
		memcpy(buf + 4, &f, sizeof(f));
		add(ctx, buf, 4 + sizeof(f));
	}
	/* SUMS: the last two ranges of a 1 MiB + 512 image (17 ranges of 64 KiB) */
	{
		struct disk_sums_head sh = {.disk = 1,
					    .range_bytes = DISK_SUMS_RANGE_MIN,
					    .image_bytes = (1u << 20) + 512,
					    .first = 15,
					    .count = 2};

		buf[0] = 0xff;
		memcpy(buf + 1, &sh, sizeof(sh));
		memset(buf + 1 + sizeof(sh), 0x5a, 2 * REPL_DISK_DIGEST_BYTES);
		add(ctx, buf, 1 + sizeof(sh) + 2 * REPL_DISK_DIGEST_BYTES);
	}
}
