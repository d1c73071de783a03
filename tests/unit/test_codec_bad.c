/*
 * The epoch decoder (replication/codec_dec.c, docs/stream-format.md §9) treats
 * its input as hostile: every kind of broken wire stream -- truncated, flipped,
 * reordered, duplicated, bad entries, bad patches, bad zstd frames, oversized
 * output, bad header fields -- is refused with a reason, never a crash and
 * never a partial result; and the codec's calls refuse bad arguments.
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

#include "tests/unit/codec_test.h"

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

/* A stream of only HEADER `h` and END, refused for `what`. */
static void header_refused(struct bad *b, const struct hv_stream_header *h, const char *what)
{
	struct sb s = {0};

	sb_rec(&s, HV_REC_HEADER, h, sizeof(*h));
	sb_end(&s);
	refused(b, s.buf, s.len, what);
	free(s.buf);
}

static void header_fields(void **state)
{
	struct bad *b = *state;
	struct hv_stream_header h = mkheader(2, HV_STREAM_INCREMENTAL, 100);
	struct sb s = {0};

	h.mem_bytes = 2 * MEM;
	header_refused(b, &h, "bytes of RAM");
	h = mkheader(3, HV_STREAM_INCREMENTAL, 100);
	header_refused(b, &h, "revision 3");
	/* fields the decoded stream's check judges: ncpus 0 */
	h = mkheader(2, HV_STREAM_INCREMENTAL, 100);
	h.ncpus = 0;
	header_refused(b, &h, "HEADER fields out of range");

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
