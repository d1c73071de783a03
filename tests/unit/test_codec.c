/*
 * The epoch codec (replication/codec*.c, docs/stream-format.md §9): what the
 * encoder sends decodes to exactly the stream it was given, epoch after epoch,
 * against a twin RAM kept in step; the encoder picks ZERO, XOR and RAW as the
 * spec says (never XOR for a pfn already sent in the stream, never across an
 * evicted or reset cache); the test guest's pattern shrinks below 40 %; and
 * every kind of broken wire stream is refused with a reason, never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"
#include "replication/codec.h"

#define MEM    HV_MIN_MEM
#define NPAGES (MEM / HV_PAGE_SIZE)
#define PG     HV_PAGE_SIZE

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t rng = 0x1234567887654321ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, 8);
	}
}

static uint8_t *page(uint8_t *ram, uint64_t pfn)
{
	return ram + pfn * PG;
}

/* A stream built by hand, for the shapes hypervisor/stream.c never writes. */
struct sb {
	uint8_t *buf;
	size_t len;
};

static void sb_rec(struct sb *b, uint32_t type, const void *body, size_t len)
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

static struct hv_stream_header mkheader(uint32_t ver, uint32_t kind, uint64_t id)
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

static void sb_header(struct sb *b, uint32_t ver)
{
	struct hv_stream_header h = mkheader(ver, HV_STREAM_INCREMENTAL, 100);

	sb_rec(b, HV_REC_HEADER, &h, sizeof(h));
}

/*
 * Rewrite END (records, checksum, pages) for what precedes it, so that a test
 * of a broken rule is not caught by the checksum first. `b` ends with END.
 */
static void resign(uint8_t *buf, size_t len)
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

static void sb_end(struct sb *b)
{
	struct hv_stream_end end = {0};

	sb_rec(b, HV_REC_END, &end, sizeof(end));
	resign(b->buf, b->len);
}

static uint64_t ent(uint64_t pfn, unsigned enc)
{
	return pfn | (uint64_t)enc << HV_PAGE_ENC_SHIFT;
}

/* A PAGES body: count entries, then the payloads. */
static size_t pages_body(uint8_t *body, const uint64_t *ents, uint32_t count, const uint8_t *pl,
			 size_t pl_len)
{
	uint32_t hdr[2] = {count, 0};

	memcpy(body, hdr, 8);
	memcpy(body + 8, ents, 8 * (size_t)count);
	memcpy(body + 8 + 8 * (size_t)count, pl, pl_len);
	return 8 + 8 * (size_t)count + pl_len;
}

/* A PAGES_ZSTD body around a frame given as is. */
static size_t zstd_body(uint8_t *body, const uint64_t *ents, uint32_t count, uint64_t raw_len,
			const uint8_t *frame, size_t flen)
{
	uint32_t hdr[2] = {count, 0};

	memcpy(body, hdr, 8);
	memcpy(body + 8, ents, 8 * (size_t)count);
	memcpy(body + 8 + 8 * (size_t)count, &raw_len, 8);
	memcpy(body + 16 + 8 * (size_t)count, frame, flen);
	return 16 + 8 * (size_t)count + flen;
}

/* Apply a checked revision-1 stream's pages to `ram`, as the twin does. */
static void apply(uint8_t *ram, const uint8_t *s, size_t len)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	char why[256];

	assert_int_equal(hv_stream_check(s, len, NULL, why, sizeof(why)), 0);
	hv_stream_iter_init(&it, s, len);
	while (hv_stream_next(&it, &r) > 0) {
		const uint8_t *pl;
		uint32_t count, i;

		if (r.type != HV_REC_PAGES)
			continue;
		memcpy(&count, r.body, 4);
		pl = r.body + 8 + 8 * (size_t)count;
		for (i = 0; i < count; i++) {
			uint64_t e;

			memcpy(&e, r.body + 8 + 8 * (size_t)i, 8);
			if (e >> HV_PAGE_ENC_SHIFT == HV_PAGE_ZERO) {
				memset(page(ram, e & HV_PAGE_PFN_MASK), 0, PG);
			} else {
				assert_int_equal(e >> HV_PAGE_ENC_SHIFT, HV_PAGE_RAW);
				memcpy(page(ram, e & HV_PAGE_PFN_MASK), pl, PG);
				pl += PG;
			}
		}
	}
}

/* The encodings of a wire stream's entries in order (PAGES and PAGES_ZSTD alike). */
static size_t wire_encodings(const uint8_t *s, size_t len, unsigned *enc, uint64_t *pfns,
			     size_t max)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	size_t n = 0;

	hv_stream_iter_init(&it, s, len);
	while (hv_stream_next(&it, &r) > 0) {
		uint32_t count, i;

		if (r.type != HV_REC_PAGES && r.type != REPL_REC_PAGES_ZSTD)
			continue;
		memcpy(&count, r.body, 4);
		for (i = 0; i < count && n < max; i++, n++) {
			uint64_t e;

			memcpy(&e, r.body + 8 + 8 * (size_t)i, 8);
			enc[n] = e >> HV_PAGE_ENC_SHIFT;
			pfns[n] = e & HV_PAGE_PFN_MASK;
		}
	}
	return n;
}

/*
 * A revision-1 epoch as the hypervisor writes it: HEADER, the staged pages in
 * two PAGES records (split at `split`), then CLOCK, a DEVICE of odd length
 * and an unknown optional record, END.
 */
static void write_epoch(uint64_t id, const uint64_t *pfns, size_t n, size_t split,
			const uint8_t *staged, uint8_t **buf_out, size_t *len_out)
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

/*
 * One epoch end to end: encode `in`, decode against `twin`, apply it to
 * `twin` as the secondary does (the patches, then the stream). Without PATCH
 * entries the decoded stream is byte for byte the input.
 */
static void round_trip(struct repl_encoder *e, const uint8_t *in, size_t in_len, uint8_t *twin,
		       bool have_base, struct repl_codec_stats *st, struct repl_buf *wire)
{
	struct repl_patches patches;
	struct repl_buf dec;
	char why[256] = "";
	int rc;

	repl_buf_init(&dec);
	repl_patches_init(&patches);
	assert_int_equal(repl_encode(e, in, in_len, wire, st), 0);
	rc = repl_decode(wire->data, wire->len, have_base ? twin : NULL, MEM, &dec,
			 have_base ? &patches : NULL, why, sizeof(why));
	if (rc)
		fail_msg("decode: %d: %s", rc, why);
	if (!patches.n) {
		assert_int_equal(dec.len, in_len);
		assert_memory_equal(dec.data, in, in_len);
	}
	repl_patches_apply(&patches, twin);
	apply(twin, dec.data, dec.len);
	repl_buf_dispose(&dec);
	repl_patches_dispose(&patches);
}

/* A page written the way the test guest writes it (docs/test-guest.md, the page rule). */
static void tg_page(uint8_t *p, uint64_t pfn, uint64_t c, uint32_t window)
{
	for (uint32_t w = 0; w < TG_PAGE_WORDS; w++) {
		uint64_t v = tg_word(pfn, c, 7, window, w);

		memcpy(p + 8 * w, &v, 8);
	}
}

/* ---- round trips ---------------------------------------------------------------- */

enum change { CH_RANDOM, CH_ZERO, CH_FEW_WORDS, CH_TG, CH_HALF, CH_SAME, CH_N };

static void change_page(uint8_t *p, uint64_t pfn, enum change ch, uint64_t epoch)
{
	unsigned k, n;

	switch (ch) {
	case CH_RANDOM:
		fill_random(p, PG);
		break;
	case CH_ZERO:
		memset(p, 0, PG);
		break;
	case CH_FEW_WORDS:
		for (k = 0, n = 1 + rnd() % 8; k < n; k++) {
			uint64_t v = rnd();

			memcpy(p + 8 * (rnd() % TG_PAGE_WORDS), &v, 8);
		}
		break;
	case CH_TG:
		tg_page(p, pfn, epoch * 1000 + pfn, 64);
		break;
	case CH_HALF: /* too much for the default PATCH, yet sparser than the page: XOR */
		fill_random(p, PG / 2);
		break;
	default:
		break; /* rewritten with the same content */
	}
}

/*
 * Epochs of random changes -- random, zero, few-word, test-guest-like and
 * unchanged pages, some pfns twice in a stream (within a record and across
 * records) -- with the twin kept by applying each decoded stream.
 */
static void random_epochs_with(size_t patch_max)
{
	struct repl_codec_stats st = {0};
	struct repl_encoder *e = NULL;
	struct repl_buf wire;
	uint8_t *src = calloc(1, MEM), *twin = calloc(1, MEM), *staged, *in;
	uint64_t *pfns = malloc(NPAGES * 2 * sizeof(uint64_t)), epoch, pfn, i, n;
	size_t in_len;

	assert_true(src && twin && pfns);
	staged = malloc(NPAGES * 2 * PG);
	assert_non_null(staged);
	repl_buf_init(&wire);
	assert_int_equal(repl_encoder_new(MEM, NPAGES, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, patch_max), 0);

	/* epoch 1: the initial synchronisation, every page, applied to nothing */
	for (pfn = 0; pfn < NPAGES; pfn++) {
		change_page(page(src, pfn), pfn, (enum change)(pfn % 4), 0);
		pfns[pfn] = pfn;
	}
	write_epoch(1, pfns, NPAGES, NPAGES / 2, src, &in, &in_len);
	round_trip(e, in, in_len, twin, false, &st, &wire);
	free(in);
	assert_memory_equal(twin, src, MEM);
	assert_int_equal(st.xor_pages + st.patch_pages, 0); /* nothing cached before this stream */

	for (epoch = 2; epoch <= 10; epoch++) {
		struct repl_codec_stats es = {0};

		n = 0;
		for (i = 0; i < 300; i++) { /* may pick a pfn twice: fine, tested below */
			pfn = rnd() % 1024;
			change_page(page(src, pfn), pfn, (enum change)(rnd() % CH_N), epoch);
			pfns[n] = pfn;
			memcpy(staged + n * PG, page(src, pfn), PG);
			n++;
		}
		/* ten pfns again at the end: an intermediate copy first, then the final one */
		for (i = 0; i < 10; i++) {
			pfn = pfns[i * 7];
			pfns[n] = pfn;
			memcpy(staged + n * PG, page(src, pfn), PG);
			memcpy(staged + (i * 7) * PG, page(src, pfn), PG);
			fill_random(staged + (i * 7) * PG, 64); /* the stale copy sent first */
			n++;
		}
		write_epoch(epoch, pfns, n, n - 40, staged, &in, &in_len);
		round_trip(e, in, in_len, twin, true, &es, &wire);
		free(in);
		assert_memory_equal(twin, src, MEM);
		assert_true(patch_max < REPL_PATCH_MAX ? es.xor_pages > 0 : es.xor_pages == 0);
		assert_true(patch_max ? es.patch_pages > 0 : es.patch_pages == 0);
		assert_int_equal(es.pages, n);
		assert_int_equal(es.pages,
				 es.zero_pages + es.xor_pages + es.patch_pages + es.raw_pages);
		assert_true(es.out_bytes < es.in_bytes);
		st.xor_pages += es.xor_pages;
		st.zstd_records += es.zstd_records;
		st.zero_pages += es.zero_pages;
		st.raw_pages += es.raw_pages;
	}
	assert_true(st.zstd_records > 0 && st.zero_pages > 0 && st.raw_pages > 0);

	repl_encoder_free(e);
	repl_buf_dispose(&wire);
	free(src);
	free(twin);
	free(staged);
	free(pfns);
}

static void random_epochs(void **state)
{
	random_epochs_with(0);			/* ZERO, XOR, RAW */
	random_epochs_with(REPL_PATCH_DEFAULT); /* and PATCH */
	random_epochs_with(REPL_PATCH_MAX);
}

/* The wire's encodings are `want`, in order. */
static void assert_encs(const unsigned *enc, const unsigned *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (enc[i] != want[i])
			fail_msg("entry %zu: encoding %u, expected %u", i, enc[i], want[i]);
}

/* The stats of the last encode_pages(). */
static struct repl_codec_stats last;

/* Encode one stream of `n` staged pages; the wire's encodings in order. */
static void encode_pages(struct repl_encoder *e, uint64_t id, const uint64_t *pfns, size_t n,
			 const uint8_t *staged, uint8_t *twin, unsigned *enc)
{
	uint64_t got[64];
	struct repl_buf wire;
	uint8_t *in;
	size_t in_len;

	repl_buf_init(&wire);
	write_epoch(id, pfns, n, n, staged, &in, &in_len);
	memset(&last, 0, sizeof(last));
	round_trip(e, in, in_len, twin, id > 1, &last, &wire);
	assert_int_equal(wire_encodings(wire.data, wire.len, enc, got, 64), n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(got[i], pfns[i]);
	free(in);
	repl_buf_dispose(&wire);
}

/* The choice per page, as §9.6 describes it. */
static void encoder_choices(void **state)
{
	uint8_t *twin = calloc(1, MEM), *st = calloc(8, PG);
	struct repl_encoder *e = NULL;
	unsigned enc[64];

	assert_true(twin && st);
	assert_int_equal(repl_encoder_new(MEM, 1024, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, 0), 0); /* PATCH: patch_choices */

	/* epoch 1: 10 tg-like, 11 zero, 12 random, 13 tg-like */
	tg_page(st, 10, 1, 64);
	fill_random(st + 2 * PG, PG);
	tg_page(st + 3 * PG, 13, 1, 64);
	encode_pages(e, 1, (uint64_t[]){10, 11, 12, 13}, 4, st, twin, enc);
	assert_int_equal(enc[0], HV_PAGE_RAW);
	assert_int_equal(enc[1], HV_PAGE_ZERO);
	assert_int_equal(enc[2], HV_PAGE_RAW);

	/*
	 * epoch 2: 10 rewritten by the guest (XOR), 11 now random (its cached copy
	 * is zero: RAW), 12 all new (the delta is no sparser: RAW), 13 unchanged
	 * (XOR, an all-zero delta), 14 never sent (RAW), 10 again (sent already in
	 * this stream: RAW), 13 now zero (ZERO).
	 */
	tg_page(st, 10, 2, 64);
	fill_random(st + PG, PG);
	fill_random(st + 2 * PG, PG);
	tg_page(st + 3 * PG, 13, 1, 64);
	fill_random(st + 4 * PG, PG);
	tg_page(st + 5 * PG, 10, 3, 64);
	memset(st + 6 * PG, 0, PG);
	encode_pages(e, 2, (uint64_t[]){10, 11, 12, 13, 14, 10, 13}, 7, st, twin, enc);
	assert_encs(enc,
		    (unsigned[]){REPL_PAGE_XOR, HV_PAGE_RAW, HV_PAGE_RAW, REPL_PAGE_XOR,
				 HV_PAGE_RAW, HV_PAGE_RAW, HV_PAGE_ZERO},
		    7);
	/* only 13's first entry equalled the receiver's copy: an unwritten (hot) page */
	assert_int_equal(last.unchanged_pages, 1);

	/* epoch 3: what was sent last -- 10's second copy, 13 as zero -- is the base */
	tg_page(st, 10, 4, 64);
	tg_page(st + PG, 13, 5, 64);
	memset(st + 2 * PG, 0, PG);
	encode_pages(e, 3, (uint64_t[]){10, 13, 11}, 3, st, twin, enc);
	assert_int_equal(enc[0], REPL_PAGE_XOR);
	assert_int_equal(enc[1], HV_PAGE_RAW);
	assert_int_equal(enc[2], HV_PAGE_ZERO);
	assert_int_equal(last.unchanged_pages, 0);
	/* a zero page sent as zero before is unchanged too */
	encode_pages(e, 30, (uint64_t[]){11}, 1, st + 2 * PG, twin, enc);
	assert_int_equal(enc[0], HV_PAGE_ZERO);
	assert_int_equal(last.unchanged_pages, 1);

	/* a full stream stands alone: no XOR, though 10 is cached; it refills the cache */
	tg_page(st, 10, 5, 64);
	encode_pages(e, 1, (uint64_t[]){10}, 1, st, twin, enc);
	assert_int_equal(enc[0], HV_PAGE_RAW);
	tg_page(st, 10, 6, 64);
	encode_pages(e, 4, (uint64_t[]){10}, 1, st, twin, enc);
	assert_int_equal(enc[0], REPL_PAGE_XOR);

	/* after a reset nothing is XOR-encoded */
	repl_encoder_reset(e);
	tg_page(st, 10, 7, 64);
	encode_pages(e, 5, (uint64_t[]){10}, 1, st, twin, enc);
	assert_int_equal(enc[0], HV_PAGE_RAW);

	repl_encoder_free(e);
	free(twin);
	free(st);
}

/* The first record of `type` from `from` on: its body, or NULL. */
static const uint8_t *rec_body(const uint8_t *s, size_t len, uint32_t type, size_t from,
			       size_t *off_out)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;

	hv_stream_iter_init(&it, s, len);
	while (hv_stream_next(&it, &r) > 0) {
		if (r.type == type && r.offset >= from) {
			*off_out = r.offset;
			return r.body;
		}
	}
	return NULL;
}

/*
 * PATCH (§9.2): a test-guest write goes as two runs, the counter word and the
 * window; an unchanged hot page as an empty patch; a delta over the limit as
 * XOR; PATCH pages first, in a plain PAGES record of their own; never for a
 * pfn repeated in the stream (its later copy wins) nor in a full stream.
 */
static void patch_choices(void **state)
{
	uint8_t *twin = calloc(1, MEM), *st = calloc(8, PG), want10[PG];
	struct repl_codec_stats cs = {0};
	struct repl_encoder *e = NULL;
	struct repl_buf wire;
	uint64_t pfns[8], got[8], first_pfn;
	unsigned enc[8];
	const uint8_t *body;
	uint32_t u32, ws = tg_window_start(10, 7, 64);
	uint16_t u16;
	size_t in_len, off;
	uint8_t *in;

	assert_true(twin && st);
	repl_buf_init(&wire);
	assert_int_equal(repl_encoder_new(MEM, 1024, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, REPL_PATCH_MAX + 1), -EINVAL);

	/* epoch 1 (full): 10, 13 tg-like; 11, 12, 15 random */
	tg_page(st, 10, 1, 64);
	fill_random(st + PG, 2 * PG);
	tg_page(st + 3 * PG, 13, 1, 64);
	fill_random(st + 4 * PG, PG);
	write_epoch(1, (uint64_t[]){10, 11, 12, 13, 15}, 5, 5, st, &in, &in_len);
	round_trip(e, in, in_len, twin, false, &cs, &wire);
	free(in);
	assert_int_equal(cs.patch_pages, 0); /* a full stream stands alone */

	/*
	 * epoch 2: 10 rewritten by the guest (PATCH), 11 half new (XOR), 12 all
	 * new (RAW), 13 unchanged (an empty PATCH), 14 never sent (RAW), 15 now
	 * zero (ZERO), then 10 again (RAW, and it wins).
	 */
	tg_page(st, 10, 2, 64);
	fill_random(st + PG, PG / 2);
	fill_random(st + 2 * PG, PG);
	fill_random(st + 4 * PG, PG);
	memset(st + 5 * PG, 0, PG);
	tg_page(st + 6 * PG, 10, 3, 64);
	memcpy(want10, st + 6 * PG, PG);
	memcpy(pfns, (uint64_t[]){10, 11, 12, 13, 14, 15, 10}, 7 * 8);
	memset(&cs, 0, sizeof(cs));
	write_epoch(2, pfns, 7, 7, st, &in, &in_len);
	round_trip(e, in, in_len, twin, true, &cs, &wire);
	free(in);
	assert_memory_equal(page(twin, 10), want10, PG);
	assert_memory_equal(page(twin, 13), st + 3 * PG, PG);
	assert_memory_equal(page(twin, 11), st + PG, PG);
	assert_int_equal(wire_encodings(wire.data, wire.len, enc, got, 8), 7);
	/* the PATCH pages first, then the others in their order */
	assert_memory_equal(got, ((uint64_t[]){10, 13, 11, 12, 14, 15, 10}), 7 * sizeof(uint64_t));
	assert_encs(enc,
		    (unsigned[]){REPL_PAGE_PATCH, REPL_PAGE_PATCH, REPL_PAGE_XOR, HV_PAGE_RAW,
				 HV_PAGE_RAW, HV_PAGE_ZERO, HV_PAGE_RAW},
		    7);
	assert_int_equal(cs.patch_pages, 2);
	assert_int_equal(cs.unchanged_pages, 1); /* 13 */

	/* the PATCH record: plain PAGES, 10's payload as §9.2 lays it out, then 13's */
	body = rec_body(wire.data, wire.len, HV_REC_PAGES, 0, &off);
	assert_non_null(body);
	memcpy(&u32, body, 4);
	assert_int_equal(u32, 2);
	memcpy(&first_pfn, body + 8, 8);
	assert_int_equal(first_pfn, ent(10, REPL_PAGE_PATCH));
	body += 8 + 16;
	memcpy(&u32, body, 4);
	assert_int_equal(u32, 2); /* runs: the counter word, the window */
	memcpy(&u32, body + 4, 4);
	assert_int_equal(u32, 65);
	memcpy(&u16, body + 8, 2);
	assert_int_equal(u16, 1);
	memcpy(&u16, body + 10, 2);
	assert_int_equal(u16, 1);
	memcpy(&u16, body + 12, 2);
	assert_int_equal(u16, ws);
	memcpy(&u16, body + 14, 2);
	assert_int_equal(u16, 64);
	assert_memory_equal(body + 16, st + 8, 8);
	assert_memory_equal(body + 24, st + 8 * ws, 64 * 8);
	body += 16 + 65 * 8; /* 13: no runs, no words */
	memcpy(&u32, body, 4);
	assert_int_equal(u32, 0);
	memcpy(&u32, body + 4, 4);
	assert_int_equal(u32, 0);
	assert_null(
		rec_body(wire.data, wire.len, HV_REC_PAGES, off + 1, &off)); /* the rest: zstd */

	/* with PATCH up to 4096 bytes the half-new page goes as PATCH too */
	assert_int_equal(repl_encoder_set_patch_max(e, REPL_PATCH_MAX), 0);
	fill_random(st + PG, PG / 2);
	write_epoch(3, (uint64_t[]){11}, 1, 1, st + PG, &in, &in_len);
	round_trip(e, in, in_len, twin, true, NULL, &wire);
	free(in);
	assert_int_equal(wire_encodings(wire.data, wire.len, enc, got, 8), 1);
	assert_int_equal(enc[0], REPL_PAGE_PATCH);
	assert_memory_equal(page(twin, 11), st + PG, PG);

	repl_encoder_free(e);
	repl_buf_dispose(&wire);
	free(twin);
	free(st);
}

/* A cache smaller than the working set: LRU per set, and never a wrong base. */
static void cache_eviction(void **state)
{
	struct repl_codec_stats st = {0};
	struct repl_encoder *e = NULL;
	uint8_t *twin = calloc(1, MEM), *src = calloc(1, MEM), *staged = malloc(200 * PG);
	uint64_t pfns[200], epoch, pfn;
	unsigned enc[64];
	size_t n, i;

	assert_true(twin && src && staged);

	/* one set of 4 ways: 0..5 sent, 2..5 stay; then 5 and 4 hit, 0 misses */
	assert_int_equal(repl_encoder_new(MEM, 4, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, 0), 0);
	for (i = 0; i < 6; i++)
		tg_page(staged + i * PG, i, 1, 64);
	encode_pages(e, 1, (uint64_t[]){0, 1, 2, 3, 4, 5}, 6, staged, twin, enc);
	tg_page(staged, 5, 2, 64);
	tg_page(staged + PG, 4, 2, 64);
	tg_page(staged + 2 * PG, 0, 2, 64);
	encode_pages(e, 2, (uint64_t[]){5, 4, 0}, 3, staged, twin, enc);
	assert_int_equal(enc[0], REPL_PAGE_XOR);
	assert_int_equal(enc[1], REPL_PAGE_XOR);
	assert_int_equal(enc[2], HV_PAGE_RAW);
	repl_encoder_free(e);

	/*
	 * 64 pages of cache, 32 hot pages rewritten every epoch, then 40 cold
	 * ones that sweep through RAM and evict some: the round trip stays exact.
	 */
	memset(twin, 0, MEM);
	assert_int_equal(repl_encoder_new(MEM, 64, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, 0), 0);
	for (epoch = 1; epoch <= 8; epoch++) {
		struct repl_buf wire;
		uint8_t *in;
		size_t in_len;

		n = 0;
		for (pfn = 0; pfn < 32; pfn++)
			pfns[n++] = pfn;
		for (i = 0; i < 40; i++) /* never the same pfn twice in 8 epochs */
			pfns[n++] = 100 + (epoch * 100 + i * 37) % (NPAGES - 100);
		for (i = 0; i < n; i++) {
			change_page(page(src, pfns[i]), pfns[i], epoch == 1 ? CH_TG : CH_FEW_WORDS,
				    epoch);
			memcpy(staged + i * PG, page(src, pfns[i]), PG);
		}
		repl_buf_init(&wire);
		write_epoch(epoch, pfns, n, n / 2, staged, &in, &in_len);
		round_trip(e, in, in_len, twin, epoch > 1, &st, &wire);
		assert_memory_equal(twin, src, MEM);
		assert_true(st.cache_pages <= 64);
		free(in);
		repl_buf_dispose(&wire);
	}
	assert_int_equal(st.cache_pages, 64);
	print_message("cache of 64 pages, 32 hot + 40 cold per epoch: %" PRIu64 " XOR, %" PRIu64
		      " RAW\n",
		      st.xor_pages, st.raw_pages);
	assert_true(st.xor_pages > 0);
	assert_true(st.xor_pages < 7 * 32);	  /* some hot pages were evicted */
	assert_true(st.raw_pages >= 8 * 40 + 32); /* every cold page misses */
	repl_encoder_free(e);

	/* no cache: no XOR */
	memset(&st, 0, sizeof(st));
	assert_int_equal(repl_encoder_new(MEM, 0, 1, &e), 0);
	for (epoch = 1; epoch <= 2; epoch++)
		encode_pages(e, epoch, pfns, 32, staged, twin, enc);
	for (i = 0; i < 32; i++)
		assert_true(enc[i] == HV_PAGE_RAW || enc[i] == HV_PAGE_ZERO);
	repl_encoder_free(e);

	free(twin);
	free(src);
	free(staged);
}

/*
 * The test guest's pattern (half of each page zero, a window of W = 64 words
 * rewritten per write): epochs of 2000 page writes over a 2048-page work
 * region encode to less than 40 % of the revision-1 stream.
 */
static void test_guest_ratio_with(size_t patch_max)
{
	const uint64_t wss = 2048, base = TG_WORK_BASE / PG;
	struct repl_codec_stats first = {0}, steady = {0};
	struct repl_encoder *e = NULL;
	uint8_t *twin = calloc(1, MEM), *staged = malloc(wss * PG), *in;
	uint64_t pfns[2048], c = 0, epoch, k, i;
	struct repl_buf wire;
	size_t in_len, n;

	assert_true(twin && staged);
	repl_buf_init(&wire);
	assert_int_equal(repl_encoder_new(MEM, NPAGES, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, patch_max), 0);
	for (epoch = 1; epoch <= 6; epoch++) {
		/* epoch 1 writes every page once; later ones 2000 writes each */
		uint64_t writes = epoch == 1 ? wss : 2000;

		for (i = 0, n = 0; i < writes; i++, c++) {
			k = c % wss;
			pfns[n] = base + k;
			tg_page(staged + n * PG, base + k, c, 64);
			n++;
		}
		write_epoch(epoch, pfns, n, n, staged, &in, &in_len);
		round_trip(e, in, in_len, twin, epoch > 1, epoch == 1 ? &first : &steady, &wire);
		free(in);
	}
	print_message("test-guest pattern, PATCH up to %zu bytes: first epoch %.1f %% of raw, "
		      "then %.1f %% (%" PRIu64 " PATCH, %" PRIu64 " XOR of %" PRIu64
		      " pages, %" PRIu64 " zstd records)\n",
		      patch_max, 100.0 * first.out_bytes / first.in_bytes,
		      100.0 * steady.out_bytes / steady.in_bytes, steady.patch_pages,
		      steady.xor_pages, steady.pages, steady.zstd_records);
	assert_true(steady.out_bytes * 100 < steady.in_bytes * 40);
	/* a write changes the window's 64 words and the counter: 8 + 8 + 65 * 8 bytes */
	assert_int_equal(patch_max ? steady.patch_pages : steady.xor_pages, steady.pages);
	repl_encoder_free(e);
	repl_buf_dispose(&wire);
	free(twin);
	free(staged);
}

static void test_guest_ratio(void **state)
{
	test_guest_ratio_with(0);
	test_guest_ratio_with(REPL_PATCH_DEFAULT);
}

/* A revision-1 epoch is checked and copied through unchanged. */
static void revision1_passes(void **state)
{
	uint8_t *st = calloc(2, PG), *in;
	struct repl_buf dec;
	char why[256];
	size_t in_len;

	assert_non_null(st);
	fill_random(st, PG);
	write_epoch(5, (uint64_t[]){3, 4}, 2, 1, st, &in, &in_len);
	repl_buf_init(&dec);
	assert_int_equal(repl_decode(in, in_len, NULL, MEM, &dec, NULL, why, sizeof(why)), 0);
	assert_int_equal(dec.len, in_len);
	assert_memory_equal(dec.data, in, in_len);
	/* and a broken one is refused with hv_stream_check's reason */
	in[72 + 8 + 8 + 8 + 10] ^= 1; /* a payload byte of the first PAGES record */
	assert_int_equal(repl_decode(in, in_len, NULL, MEM, &dec, NULL, why, sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "checksum"));
	repl_buf_dispose(&dec);
	free(in);
	free(st);
}

static void bad_arguments(void **state)
{
	struct repl_encoder *e = NULL;
	struct repl_buf out;
	uint8_t junk[64] = {0};
	char why[128];

	repl_buf_init(&out);
	assert_int_equal(repl_encoder_new(0, 0, 1, &e), -EINVAL);
	assert_int_equal(repl_encoder_new(MEM + 1, 0, 1, &e), -EINVAL);
	assert_int_equal(repl_encoder_new(MEM, 0, 1000, &e), -EINVAL);
	repl_encoder_free(NULL);
	assert_int_equal(repl_encoder_new(MEM, 8, -5, &e), 0);
	assert_int_equal(repl_encode(e, junk, sizeof(junk), &out, NULL), -EINVAL);
	assert_int_equal(repl_encode(e, junk, 0, &out, NULL), -EINVAL);
	repl_encoder_free(e);
	assert_int_equal(repl_decode(junk, sizeof(junk), NULL, 1000, &out, NULL, why, sizeof(why)),
			 -EINVAL);
	repl_buf_dispose(&out);
	repl_buf_dispose(&out);
}

/* ---- refused wire streams ------------------------------------------------------------ */

struct bad {
	uint8_t *base; /* the twin's RAM */
	uint8_t *body; /* scratch for a record body */
	struct repl_buf dec;
	struct repl_patches patches;
	char why[256];
};

static int setup_bad(void **state)
{
	struct bad *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->base = calloc(1, MEM);
	b->body = malloc(HV_REC_MAX_LEN);
	assert_true(b->base && b->body);
	fill_random(b->base, 64 * PG);
	repl_buf_init(&b->dec);
	repl_patches_init(&b->patches);
	*state = b;
	return 0;
}

static int teardown_bad(void **state)
{
	struct bad *b = *state;

	repl_buf_dispose(&b->dec);
	repl_patches_dispose(&b->patches);
	free(b->base);
	free(b->body);
	free(b);
	return 0;
}

/* Decoding must fail with -EBADMSG and a reason that contains `what`. */
static void refused(struct bad *b, const uint8_t *s, size_t len, const char *what)
{
	int rc;

	b->why[0] = 0;
	rc = repl_decode(s, len, b->base, MEM, &b->dec, &b->patches, b->why, sizeof(b->why));
	if (rc != -EBADMSG || !strstr(b->why, what))
		fail_msg("expected -EBADMSG with \"%s\", got %d: \"%s\"", what, rc, b->why);
}

static void accepted(struct bad *b, const uint8_t *s, size_t len)
{
	int rc = repl_decode(s, len, b->base, MEM, &b->dec, &b->patches, b->why, sizeof(b->why));

	if (rc)
		fail_msg("expected success, got %d: %s", rc, b->why);
}

/* A well-formed wire stream from the encoder: PAGES_ZSTD with XOR and RAW entries. */
static void good_wire(struct bad *b, struct repl_buf *wire)
{
	struct repl_codec_stats st = {0};
	struct repl_encoder *e = NULL;
	uint8_t *st8 = malloc(4 * PG), *in;
	size_t in_len;

	assert_non_null(st8);
	assert_int_equal(repl_encoder_new(MEM, 64, 1, &e), 0);
	assert_int_equal(repl_encoder_set_patch_max(e, 0), 0);
	/* epoch 1 (not decoded here) fills the cache with the base's pages 1..3 */
	for (int i = 0; i < 3; i++)
		memcpy(st8 + i * PG, page(b->base, 1 + i), PG);
	write_epoch(1, (uint64_t[]){1, 2, 3}, 3, 3, st8, &in, &in_len);
	assert_int_equal(repl_encode(e, in, in_len, wire, NULL), 0);
	free(in);
	for (int i = 0; i < 4; i++) {
		memcpy(st8 + i * PG, page(b->base, 1 + i), PG);
		st8[i * PG + 100] ^= 0x5a;
	}
	/* pfn 4 is not cached: RAW */
	write_epoch(2, (uint64_t[]){1, 2, 3, 4}, 4, 4, st8, &in, &in_len);
	assert_int_equal(repl_encode(e, in, in_len, wire, &st), 0);
	assert_int_equal(st.zstd_records, 1);
	assert_int_equal(st.xor_pages, 3);
	free(in);
	free(st8);
	repl_encoder_free(e);
}

/* The offset of the first record of `type` in a stream. */
static size_t find_rec(const uint8_t *s, size_t len, uint32_t type)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;

	hv_stream_iter_init(&it, s, len);
	while (hv_stream_next(&it, &r) >= 0) {
		if (r.type == type)
			return r.offset;
		if (r.type == HV_REC_END)
			break;
	}
	fail_msg("no record 0x%x", type);
	return 0;
}

static void truncated_and_flipped(void **state)
{
	struct bad *b = *state;
	struct repl_buf w;
	size_t cuts[] = {0, 7, 8, 71, 72, 100, 0, 0, 0}, i, z;

	repl_buf_init(&w);
	good_wire(b, &w);
	accepted(b, w.data, w.len);
	cuts[6] = w.len / 2;
	cuts[7] = w.len - 24;
	cuts[8] = w.len - 1;
	for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		uint8_t *copy = malloc(cuts[i] ? cuts[i] : 1);

		memcpy(copy, w.data, cuts[i]); /* exact size: ASan sees any overread */
		refused(b, copy, cuts[i], cuts[i] < 72 ? "no HEADER" : "truncated");
		free(copy);
	}
	/* a flipped byte in the frame, in an entry, in a state record: the checksum */
	z = find_rec(w.data, w.len, REPL_REC_PAGES_ZSTD);
	w.data[z + 8 + 16 + 4 * 8 + 20] ^= 0x10;
	refused(b, w.data, w.len, "checksum mismatch");
	w.data[z + 8 + 16 + 4 * 8 + 20] ^= 0x10;
	w.data[z + 8 + 8 + 3] ^= 0x01;
	refused(b, w.data, w.len, "checksum mismatch");
	w.data[z + 8 + 8 + 3] ^= 0x01;
	w.data[find_rec(w.data, w.len, HV_REC_CLOCK) + 20] ^= 0x80;
	refused(b, w.data, w.len, "checksum mismatch");
	repl_buf_dispose(&w);
}

/* Records moved, doubled or appended: each refused with its own reason. */
static void reordered_and_duplicated(void **state)
{
	struct bad *b = *state;
	struct repl_buf w;
	uint8_t *s;
	size_t z, c, d, end, zl, cl;

	repl_buf_init(&w);
	good_wire(b, &w);
	z = find_rec(w.data, w.len, REPL_REC_PAGES_ZSTD);
	c = find_rec(w.data, w.len, HV_REC_CLOCK);
	d = find_rec(w.data, w.len, HV_REC_DEVICE);
	end = find_rec(w.data, w.len, HV_REC_END);
	zl = c - z;
	cl = d - c;
	s = malloc(w.len + 128);
	assert_non_null(s);

	/* PAGES_ZSTD and CLOCK swapped: the checksum is order-sensitive */
	memcpy(s, w.data, z);
	memcpy(s + z, w.data + c, cl);
	memcpy(s + z + cl, w.data + z, zl);
	memcpy(s + z + cl + zl, w.data + d, w.len - d);
	refused(b, s, w.len, "checksum mismatch");

	/* HEADER after the pages, END re-signed */
	memcpy(s, w.data + z, zl);
	memcpy(s + zl, w.data, z);
	memcpy(s + z + zl, w.data + c, w.len - c);
	resign(s, w.len);
	refused(b, s, w.len, "no HEADER");

	/* a second HEADER */
	memcpy(s, w.data, z);
	memcpy(s + z, w.data, z);
	memcpy(s + 2 * z, w.data + z, w.len - z);
	resign(s, w.len + z);
	refused(b, s, w.len + z, "a second HEADER");

	/* END doubled */
	memcpy(s, w.data, w.len);
	memcpy(s + w.len, w.data + end, 32);
	refused(b, s, w.len + 32, "bytes after END");

	/* END in the middle: an END for the part before CLOCK, then the rest */
	memcpy(s, w.data, c);
	memcpy(s + c, w.data + end, 32);
	resign(s, c + 32);
	memcpy(s + c + 32, w.data + c, w.len - c);
	refused(b, s, w.len + 32, "bytes after END");

	/* END counts: one record too many */
	memcpy(s, w.data, w.len);
	s[end + 8] += 1;
	refused(b, s, w.len, "records");
	free(s);
	repl_buf_dispose(&w);
}

/* Build a one-record wire stream (HEADER, the record, END) and expect a refusal. */
static void one_record(struct bad *b, uint32_t type, size_t len, const char *what)
{
	struct sb s = {0};

	sb_header(&s, 2);
	sb_rec(&s, type, b->body, len);
	sb_end(&s);
	refused(b, s.buf, s.len, what);
	free(s.buf);
}

/* The PAGES record of `len` bytes in b->body, in a full stream: refused. */
static void refused_in_full(struct bad *b, size_t len, const char *what)
{
	struct hv_stream_header h = mkheader(2, HV_STREAM_FULL, 100);
	struct sb s = {0};

	sb_rec(&s, HV_REC_HEADER, &h, sizeof(h));
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	refused(b, s.buf, s.len, what);
	free(s.buf);
}

static void bad_pages(void **state)
{
	struct bad *b = *state;
	uint8_t pl[2 * PG];
	uint64_t e[3];
	struct sb s = {0};
	size_t len;

	memset(pl, 0xab, sizeof(pl));

	/* sanity: a hand-built plain PAGES with an XOR entry decodes to base ^ payload */
	e[0] = ent(5, REPL_PAGE_XOR);
	e[1] = ent(6, HV_PAGE_ZERO);
	len = pages_body(b->body, e, 2, pl, PG);
	sb_header(&s, 2);
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	accepted(b, s.buf, s.len);
	assert_int_equal(b->base[5 * PG + 9] ^ 0xab, b->dec.data[72 + 8 + 8 + 16 + 9]);
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* pfn out of range */
	e[0] = ent(NPAGES, HV_PAGE_ZERO);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, 0), "beyond RAM");
	/* unknown encodings: 4 is reserved, 15 never was */
	e[0] = ent(1, 4);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, PG), "unknown page encoding 4");
	e[0] = ent(1, 15);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, PG), "unknown page encoding");
	/* reserved bits of an entry, reserved field of the batch */
	e[0] = ent(1, HV_PAGE_ZERO) | 1ull << 55;
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, 0), "reserved bits");
	e[0] = ent(1, HV_PAGE_ZERO);
	len = pages_body(b->body, e, 1, pl, 0);
	b->body[4] = 1;
	one_record(b, HV_REC_PAGES, len, "reserved field");
	/* counts */
	len = pages_body(b->body, e, 1, pl, 0);
	memset(b->body, 0, 4);
	one_record(b, HV_REC_PAGES, len, "count 0");
	len = pages_body(b->body, e, 1, pl, 0);
	memcpy(b->body, &(uint32_t){HV_PAGES_MAX + 1}, 4);
	one_record(b, HV_REC_PAGES, len, "count 4097");
	len = pages_body(b->body, e, 1, pl, 0);
	memcpy(b->body, &(uint32_t){1000}, 4);
	one_record(b, HV_REC_PAGES, len, "too short for 1000 entries");
	one_record(b, HV_REC_PAGES, 4, "too short for its count");
	/* length against the entries: a payload too many, one too few */
	e[0] = ent(1, HV_PAGE_RAW);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, 2 * PG), "its entries make");
	e[1] = ent(2, HV_PAGE_RAW);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 2, pl, PG), "its entries make");

	/* XOR for a pfn seen earlier: in the same record, and in an earlier one */
	e[0] = ent(7, HV_PAGE_ZERO);
	e[1] = ent(7, REPL_PAGE_XOR);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 2, pl, PG), "appeared earlier");
	sb_header(&s, 2);
	e[0] = ent(7, HV_PAGE_RAW);
	sb_rec(&s, HV_REC_PAGES, b->body, pages_body(b->body, e, 1, pl, PG));
	e[0] = ent(8, REPL_PAGE_XOR);
	e[1] = ent(7, REPL_PAGE_XOR);
	sb_rec(&s, HV_REC_PAGES, b->body, pages_body(b->body, e, 2, pl, 2 * PG));
	sb_end(&s);
	refused(b, s.buf, s.len, "entry 1: XOR for pfn 7, which appeared earlier");
	/* ... while a RAW repeat is fine (the later copy wins) */
	memcpy(s.buf + 72 + (8 + 16 + PG) + 8 + 8 + 8, &(uint64_t){ent(7, HV_PAGE_RAW)}, 8);
	resign(s.buf, s.len);
	accepted(b, s.buf, s.len);
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* XOR without a base (the first epoch) */
	e[0] = ent(5, REPL_PAGE_XOR);
	len = pages_body(b->body, e, 1, pl, PG);
	sb_header(&s, 2);
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	b->why[0] = 0;
	assert_int_equal(
		repl_decode(s.buf, s.len, NULL, MEM, &b->dec, NULL, b->why, sizeof(b->why)),
		-EBADMSG);
	assert_non_null(strstr(b->why, "no base RAM"));
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* XOR in a full stream, even with a base */
	refused_in_full(b, len, "XOR for pfn 5 in a full stream");

	/* XOR in a revision-1 stream */
	sb_header(&s, 1);
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	refused(b, s.buf, s.len, "malformed batch");
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* the optional flag on PAGES; non-zero padding */
	e[0] = ent(1, HV_PAGE_ZERO);
	one_record(b, HV_REC_PAGES | HV_REC_F_OPTIONAL, pages_body(b->body, e, 1, pl, 0),
		   "optional flag");
	len = pages_body(b->body, e, 1, pl, 0);
	sb_header(&s, 2);
	sb_rec(&s, HV_REC_DEVICE, b->body, 5);
	s.buf[s.len - 1] = 1;
	sb_end(&s);
	refused(b, s.buf, s.len, "non-zero padding");
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* an unknown mandatory record; a state record of the wrong length */
	one_record(b, 0x0004, 8, "unknown mandatory record type 0x4");
	one_record(b, HV_REC_CLOCK, 40, "length 40, expected 48");
}

/* A PATCH payload at p: `runs` {first, count} pairs, `words` values 0x1000 + i; its size. */
static size_t mkpatch(uint8_t *p, uint32_t runs, uint32_t words, const uint16_t *pairs)
{
	size_t table = 8 + ((4 * (size_t)runs + 7) & ~(size_t)7);

	memcpy(p, &runs, 4);
	memcpy(p + 4, &words, 4);
	memset(p + 8, 0, table - 8);
	if (runs)
		memcpy(p + 8, pairs, 4 * (size_t)runs);
	for (uint32_t i = 0; i < words; i++)
		memcpy(p + table + 8 * (size_t)i, &(uint64_t){0x1000 + i}, 8);
	return table + 8 * (size_t)words;
}

/* One PATCH entry for pfn 5, with the payload mkpatch() makes, expected refused. */
static void bad_patch(struct bad *b, uint32_t runs, uint32_t words, const uint16_t *pairs,
		      const char *what)
{
	static uint8_t pl[2 * PG];
	uint64_t e = ent(5, REPL_PAGE_PATCH);

	one_record(b, HV_REC_PAGES, pages_body(b->body, &e, 1, pl, mkpatch(pl, runs, words, pairs)),
		   what);
}

static void bad_patches(void **state)
{
	struct bad *b = *state;
	static uint8_t pl[3 * PG];
	static uint16_t many[2 * 257];
	uint8_t *twin = malloc(MEM);
	uint64_t e[3], v;
	struct sb s = {0};
	size_t len, n;

	assert_non_null(twin);
	/* sanity: PATCH, ZERO, RAW in one record: the patch is set aside, the rest decodes */
	e[0] = ent(5, REPL_PAGE_PATCH);
	e[1] = ent(6, HV_PAGE_ZERO);
	e[2] = ent(7, HV_PAGE_RAW);
	n = mkpatch(pl, 2, 3, (uint16_t[]){3, 2, 500, 1});
	memset(pl + n, 0xcd, PG);
	len = pages_body(b->body, e, 3, pl, n + PG);
	sb_header(&s, 2);
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	accepted(b, s.buf, s.len);
	assert_int_equal(b->patches.n, 1);
	assert_int_equal(b->patches.v[0].pfn, 5);
	memcpy(twin, b->base, MEM);
	repl_patches_apply(&b->patches, twin);
	for (unsigned w = 0; w < PG / 8; w++) {
		uint64_t want, got;

		memcpy(&want, page(b->base, 5) + 8 * w, 8);
		want = w == 3 ? 0x1000 : w == 4 ? 0x1001 : w == 500 ? 0x1002 : want;
		memcpy(&got, page(twin, 5) + 8 * w, 8);
		assert_int_equal(got, want);
	}
	/* the revision-1 record holds 6 and 7 only */
	memcpy(&v, b->dec.data + 72 + 8 + 8, 8);
	assert_int_equal(v, ent(6, HV_PAGE_ZERO));
	assert_int_equal(b->dec.data[72 + 8 + 8 + 16 + 9], 0xcd);
	/* a record of PATCH entries only leaves no PAGES record behind */
	len = pages_body(b->body, e, 1, pl, n);
	free(s.buf);
	memset(&s, 0, sizeof(s));
	sb_header(&s, 2);
	sb_rec(&s, HV_REC_PAGES, b->body, len);
	sb_end(&s);
	accepted(b, s.buf, s.len);
	assert_int_equal(b->patches.n, 1);
	assert_int_equal(b->dec.len, 72 + 32); /* HEADER, END */
	/* without a base, or a place for patches: refused */
	b->why[0] = 0;
	assert_int_equal(
		repl_decode(s.buf, s.len, NULL, MEM, &b->dec, &b->patches, b->why, sizeof(b->why)),
		-EBADMSG);
	assert_non_null(strstr(b->why, "PATCH for pfn 5 with no base RAM"));
	assert_int_equal(
		repl_decode(s.buf, s.len, b->base, MEM, &b->dec, NULL, b->why, sizeof(b->why)),
		-EBADMSG);
	assert_non_null(strstr(b->why, "PATCH for pfn 5 with no base RAM"));
	free(s.buf);
	memset(&s, 0, sizeof(s));
	/* in a full stream */
	refused_in_full(b, len, "PATCH for pfn 5 in a full stream");
	/* in PAGES_ZSTD (judged before the frame) */
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 1, PG, pl, 16),
		   "entry 0: PATCH for pfn 5 in PAGES_ZSTD");
	/* for a pfn seen earlier in the stream */
	e[0] = ent(5, HV_PAGE_ZERO);
	e[1] = ent(5, REPL_PAGE_PATCH);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 2, pl, n),
		   "entry 1: PATCH for pfn 5, which appeared earlier");
	/* cut off: no room for its header, then one word short */
	e[0] = ent(7, HV_PAGE_RAW);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 2, pl, PG + 4), "cut off");
	e[0] = ent(5, REPL_PAGE_PATCH);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, n - 8), "left in the record");
	/* ... and a byte too many */
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, n + 8), "its entries make");
	/* the header's counts */
	for (unsigned i = 0; i < 257; i++) {
		many[2 * i] = (uint16_t)(2 * i);
		many[2 * i + 1] = 1;
	}
	bad_patch(b, 257, 257, many, "a PATCH of 257 runs");
	bad_patch(b, 1, 512, (uint16_t[]){0, 512}, "a PATCH of 1 runs and 512 words");
	bad_patch(b, 0, 1, NULL, "a PATCH of 0 runs and 1 words");
	bad_patch(b, 1, 0, (uint16_t[]){0, 1}, "a PATCH of 1 runs and 0 words");
	bad_patch(b, 1, 511, (uint16_t[]){0, 511}, "(at most 4096)");
	/* the runs */
	bad_patch(b, 1, 0 + 1, (uint16_t[]){3, 0}, "PATCH run 0 (words 3..3) is empty");
	bad_patch(b, 2, 3, (uint16_t[]){5, 2, 6, 1},
		  "PATCH run 1 (words 6..7) is empty, out of order");
	bad_patch(b, 2, 2, (uint16_t[]){5, 1, 2, 1}, "out of order");
	bad_patch(b, 1, 3, (uint16_t[]){510, 3}, "past the page");
	bad_patch(b, 2, 3, (uint16_t[]){3, 2, 9, 2}, "runs of 4 words, its header says 3");
	n = mkpatch(pl, 1, 1, (uint16_t[]){3, 1});
	pl[12] = 1; /* the padding after an odd number of runs */
	e[0] = ent(5, REPL_PAGE_PATCH);
	one_record(b, HV_REC_PAGES, pages_body(b->body, e, 1, pl, n), "non-zero padding after");
	free(twin);
}

/* Compress `len` bytes into `frame` (content size in the header unless told not). */
static size_t compress(uint8_t *frame, size_t cap, const uint8_t *src, size_t len, bool fcs)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t z;

	assert_non_null(c);
	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, fcs ? 1 : 0);
	z = ZSTD_compress2(c, frame, cap, src, len);
	assert_false(ZSTD_isError(z));
	ZSTD_freeCCtx(c);
	return z;
}

/* Where a frame's Frame_Content_Size field sits, and its width (RFC 8878 §3.1.1.1). */
static size_t fcs_field(const uint8_t *frame, size_t *width)
{
	uint8_t fhd = frame[4];
	unsigned fcs_flag = fhd >> 6, single = fhd >> 5 & 1, did = fhd & 3;
	static const size_t did_len[4] = {0, 1, 2, 4};

	*width = fcs_flag == 0 ? single : (size_t)1 << fcs_flag;
	return 5 + (single ? 0 : 1) + did_len[did];
}

static void bad_zstd(void **state)
{
	struct bad *b = *state;
	size_t cap = ZSTD_compressBound(3 * PG), flen, at, width;
	uint8_t *pl = calloc(3, PG), *frame = malloc(cap + 16);
	uint64_t e[4], v = 0;
	struct sb s = {0};

	assert_true(pl && frame);
	fill_random(pl, 64);
	fill_random(pl + PG + 200, 64);
	e[0] = ent(1, HV_PAGE_RAW);
	e[1] = ent(2, REPL_PAGE_XOR);
	e[2] = ent(3, HV_PAGE_ZERO);

	/* sanity: a hand-made PAGES_ZSTD decodes */
	flen = compress(frame, cap, pl, 2 * PG, true);
	sb_header(&s, 2);
	sb_rec(&s, REPL_REC_PAGES_ZSTD, b->body, zstd_body(b->body, e, 3, 2 * PG, frame, flen));
	sb_end(&s);
	accepted(b, s.buf, s.len);
	free(s.buf);

	/* raw_len not what the entries make */
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 3 * PG, frame, flen),
		   "raw_len 12288, its entries make 8192");
	e[2] = ent(3, HV_PAGE_RAW);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen),
		   "raw_len 8192, its entries make 12288");
	/* the frame's content size not raw_len */
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 3 * PG, frame, flen),
		   "the zstd frame holds 8192 bytes, raw_len says 12288");
	/* a frame whose header lies: it says 12288 bytes, its blocks make 8192 */
	at = fcs_field(frame, &width);
	assert_true(width == 2 || width == 4 || width == 8);
	v = width == 2 ? 3 * PG - 256 : 3 * PG;
	memcpy(frame + at, &v, width);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 3 * PG, frame, flen),
		   "does not decode");
	/* ... and one whose blocks make more than it says */
	flen = compress(frame, cap, pl, 3 * PG, true);
	at = fcs_field(frame, &width);
	v = width == 2 ? 2 * PG - 256 : 2 * PG;
	memcpy(frame + at, &v, width);
	e[2] = ent(3, HV_PAGE_ZERO);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen),
		   "does not decode");
	/* no content size in the header */
	flen = compress(frame, cap, pl, 2 * PG, false);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen),
		   "does not state its content size");
	/* bytes after the frame; a frame cut short; not a frame; a skippable frame */
	flen = compress(frame, cap, pl, 2 * PG, true);
	memset(frame + flen, 0, 16);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen + 3),
		   "3 bytes after the zstd frame");
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen - 3),
		   "truncated zstd frame");
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, 2),
		   "not a zstd frame");
	memcpy(frame, &(uint32_t){0x184D2A50}, 4);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 3, 2 * PG, frame, flen),
		   "not a zstd frame");
	/* no payload at all */
	e[0] = ent(1, HV_PAGE_ZERO);
	e[1] = ent(2, HV_PAGE_ZERO);
	flen = compress(frame, cap, pl, 0, true);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 2, 0, frame, flen),
		   "no entry carries a payload");
	/* shorter than count + entries + raw_len; the optional flag */
	one_record(b, REPL_REC_PAGES_ZSTD, 8 + 16, "too short for 2 entries");
	one_record(b, REPL_REC_PAGES_ZSTD | HV_REC_F_OPTIONAL,
		   zstd_body(b->body, e, 2, 0, frame, flen), "optional flag");
	/* the XOR repeat rule holds inside PAGES_ZSTD too */
	e[0] = ent(9, HV_PAGE_RAW);
	e[1] = ent(9, REPL_PAGE_XOR);
	flen = compress(frame, cap, pl, 2 * PG, true);
	one_record(b, REPL_REC_PAGES_ZSTD, zstd_body(b->body, e, 2, 2 * PG, frame, flen),
		   "appeared earlier");
	free(pl);
	free(frame);
}

/* Small wire streams that would decode to far more than any real epoch. */
static void decoded_size_capped(void **state)
{
	struct bad *b = *state;
	size_t cap = ZSTD_compressBound(HV_PAGES_MAX * PG), flen, len;
	uint8_t *pl = calloc(HV_PAGES_MAX, PG), *frame = malloc(cap);
	uint64_t *e = malloc(HV_PAGES_MAX * 8);
	struct sb s = {0};
	int i;

	assert_true(pl && frame && e);
	for (i = 0; i < (int)HV_PAGES_MAX; i++)
		e[i] = ent(1, HV_PAGE_RAW); /* legal: RAW repeats */
	flen = compress(frame, cap, pl, HV_PAGES_MAX * PG, true);
	len = zstd_body(b->body, e, HV_PAGES_MAX, (uint64_t)HV_PAGES_MAX * PG, frame, flen);
	sb_header(&s, 2);
	for (i = 0; i < 3; i++) /* 3 x 16 MiB > 2 x mem_bytes */
		sb_rec(&s, REPL_REC_PAGES_ZSTD, b->body, len);
	sb_end(&s);
	assert_true(s.len < (1u << 20));
	refused(b, s.buf, s.len, "decodes past the limit");
	free(s.buf);
	free(pl);
	free(frame);
	free(e);
}

static void header_fields(void **state)
{
	struct bad *b = *state;
	struct hv_stream_header h = mkheader(2, HV_STREAM_INCREMENTAL, 100);
	struct sb s = {0};

	h.mem_bytes = 2 * MEM;
	sb_rec(&s, HV_REC_HEADER, &h, sizeof(h));
	sb_end(&s);
	refused(b, s.buf, s.len, "bytes of RAM");
	free(s.buf);
	memset(&s, 0, sizeof(s));

	h = mkheader(3, HV_STREAM_INCREMENTAL, 100);
	sb_rec(&s, HV_REC_HEADER, &h, sizeof(h));
	sb_end(&s);
	refused(b, s.buf, s.len, "revision 3");
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* fields the decoded stream's check judges: ncpus 0 */
	h = mkheader(2, HV_STREAM_INCREMENTAL, 100);
	h.ncpus = 0;
	sb_rec(&s, HV_REC_HEADER, &h, sizeof(h));
	sb_end(&s);
	refused(b, s.buf, s.len, "HEADER fields out of range");
	free(s.buf);
	memset(&s, 0, sizeof(s));

	/* END's reserved field */
	h = mkheader(2, HV_STREAM_INCREMENTAL, 100);
	sb_rec(&s, HV_REC_HEADER, &h, sizeof(h));
	sb_end(&s);
	accepted(b, s.buf, s.len);
	s.buf[s.len - 24 + 12] = 1;
	refused(b, s.buf, s.len, "reserved");
	free(s.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_epochs),
		cmocka_unit_test(encoder_choices),
		cmocka_unit_test(patch_choices),
		cmocka_unit_test(cache_eviction),
		cmocka_unit_test(test_guest_ratio),
		cmocka_unit_test(revision1_passes),
		cmocka_unit_test(bad_arguments),
		cmocka_unit_test_setup_teardown(truncated_and_flipped, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(reordered_and_duplicated, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(bad_pages, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(bad_patches, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(bad_zstd, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(decoded_size_capped, setup_bad, teardown_bad),
		cmocka_unit_test_setup_teardown(header_fields, setup_bad, teardown_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
