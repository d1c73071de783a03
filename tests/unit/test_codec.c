/*
 * The epoch codec (replication/codec*.c, docs/stream-format.md §9): what the
 * encoder sends decodes to exactly the stream it was given, epoch after epoch,
 * against a twin RAM kept in step; the encoder picks ZERO, PATCH, XOR and RAW
 * as the spec says (never XOR for a pfn already sent in the stream, never
 * across an evicted or reset cache); the test guest's pattern shrinks below
 * 40 %. The refused streams are test_codec_bad.c.
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
#include "tests/unit/codec_test.h"

/* ---- helpers ------------------------------------------------------------------ */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_epochs),    cmocka_unit_test(encoder_choices),
		cmocka_unit_test(patch_choices),    cmocka_unit_test(cache_eviction),
		cmocka_unit_test(test_guest_ratio), cmocka_unit_test(revision1_passes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
