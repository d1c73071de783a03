/*
 * The stream verifier's page batches (stream_verify_int.h): PAGES in both
 * revisions (docs/stream-format.md §2.2, §9.2) and revision 2's PAGES_ZSTD
 * (§9.3), written from the spec alone like the rest of the verifier; it shares
 * no code with replication/codec*.c, only the zstd library. Every rule of §9
 * that can be checked without the receiver's RAM is checked here: what an XOR
 * or PATCH payload does to a page is the receiver's business, their presence,
 * shape and size are not.
 */
#include "tools/castor/stream_verify_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <zstd.h>

/* raw_len = 4096 x (RAW and XOR entries) <= 4096 x SV_PAGES_MAX: 16 MiB at most. */
_Static_assert(SV_RAW_LEN_MAX == 16u << 20, "§9.3: a PAGES_ZSTD holds at most 16 MiB of payloads");

/* What an entry table holds, by payload kind. */
struct batch {
	uint32_t count;
	uint32_t pages;	  /* RAW and XOR entries: 4096-byte payloads */
	uint32_t patches; /* PATCH entries: payloads sized by their own header */
};

static bool is_delta(unsigned enc)
{
	return enc == SV_ENC_XOR || enc == SV_ENC_PATCH;
}

/* §2.2, §9.2: entry i of a PAGES record, or of a PAGES_ZSTD one when zstd is true. */
static int check_entry(struct verifier *v, struct stream_verify_record *rec, uint32_t i, uint64_t e,
		       bool zstd)
{
	const struct stream_verify_result *res = v->res;
	uint64_t pfn = e & SV_PFN_MASK;
	unsigned enc = SV_ENTRY_ENC(e);
	const char *name = stream_verify_encoding_name(enc);

	if (SV_ENTRY_RSVD(e))
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): reserved bits 52-59 "
			       "are 0x%02x, must be 0",
			       i, pfn, SV_ENTRY_RSVD(e));
	if (enc > SV_ENC_PATCH)
		return sv_fail(v, "entry %" PRIu32 " (pfn %" PRIu64 "): unknown encoding %u", i,
			       pfn, enc);
	if (is_delta(enc) && res->version < 2)
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): encoding %u (%s) is "
			       "reserved for revision 2, refused in revision 1",
			       i, pfn, enc, name);
	if (enc == SV_ENC_PATCH && zstd)
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH in PAGES_ZSTD "
			       "(PATCH goes in PAGES only, §9.2)",
			       i, pfn);
	if (is_delta(enc) && res->kind != SV_KIND_INCREMENTAL)
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): %s in a full snapshot "
			       "(only incremental streams carry deltas, §9.2)",
			       i, pfn, name);
	if (pfn >= v->mem_pages)
		return sv_fail(v,
			       "entry %" PRIu32 ": pfn %" PRIu64 " out of range (the "
			       "RAM has %" PRIu64 " pages)",
			       i, pfn, v->mem_pages);
	/* the same record's earlier entries count: its base would be ambiguous all the same */
	if (is_delta(enc) && pfn_set_has(&v->pfns, pfn))
		return sv_fail(v,
			       "entry %" PRIu32 ": pfn %" PRIu64 " is %s-encoded but appeared "
			       "earlier in the stream (§9.2)",
			       i, pfn, name);
	rec->page_enc[enc]++;
	return pfn_set_add(&v->pfns, pfn);
}

/*
 * Count, reserved field and entries, the start both batch records share;
 * tail: the bytes that must follow the entries (PAGES_ZSTD's raw_len).
 */
static int check_table(struct verifier *v, struct stream_verify_record *rec, bool zstd,
		       struct batch *bt)
{
	const uint8_t *b = v->body;
	uint32_t i, tail = zstd ? 8 : 0;
	unsigned enc;
	uint64_t e;
	int rc;

	if (v->length < 8)
		return sv_fail(v, "length %" PRIu32 " cannot hold count and reserved (8 bytes)",
			       v->length);
	bt->count = le32(b);
	if (le32(b + 4))
		return sv_fail(v, "reserved field is 0x%" PRIx32 ", must be 0", le32(b + 4));
	if (bt->count < 1 || bt->count > SV_PAGES_MAX)
		return sv_fail(v, "count %" PRIu32 " out of range 1-%u", bt->count, SV_PAGES_MAX);
	if (v->length < 8 + 8 * (uint64_t)bt->count + tail)
		return sv_fail(v, "length %" PRIu32 " cannot hold %" PRIu32 " entries%s", v->length,
			       bt->count, zstd ? " and raw_len" : "");
	for (i = 0; i < bt->count; i++) {
		e = le64(b + 8 + 8 * (size_t)i);
		rc = check_entry(v, rec, i, e, zstd);
		if (rc < 0)
			return rc;
		enc = SV_ENTRY_ENC(e);
		if (enc == SV_ENC_RAW || enc == SV_ENC_XOR)
			bt->pages++;
		else if (enc == SV_ENC_PATCH)
			bt->patches++;
	}
	return 0;
}

/*
 * §9.2: the PATCH payload of entry i at body offset pos; its size and the
 * words it replaces come back in *size_out and *words_out.
 */
static int check_patch(struct verifier *v, uint32_t i, uint64_t pfn, uint64_t pos,
		       uint32_t *size_out, uint32_t *words_out)
{
	const uint8_t *p = v->body + pos;
	uint32_t runs, words, size, r, first, count, next = 0, sum = 0;

	if (pos + 8 > v->length)
		return sv_fail(v,
			       "length %" PRIu32 " ends inside the PATCH payload of entry %" PRIu32
			       " (pfn %" PRIu64 ")",
			       v->length, i, pfn);
	runs = le32(p);
	words = le32(p + 4);
	if (runs > SV_PATCH_RUNS_MAX)
		return sv_fail(
			v, "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH runs %" PRIu32 " over %u", i,
			pfn, runs, SV_PATCH_RUNS_MAX);
	if (words > SV_PATCH_WORDS_MAX)
		return sv_fail(
			v, "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH words %" PRIu32 " over %u",
			i, pfn, words, SV_PATCH_WORDS_MAX);
	if ((runs == 0) != (words == 0))
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH of %" PRIu32
			       " runs and %" PRIu32 " words (words is 0 exactly when runs is 0)",
			       i, pfn, runs, words);
	size = 8 + 4 * (runs + runs % 2) + 8 * words;
	if (size > SV_PATCH_MAX)
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH payload of %" PRIu32
			       " bytes over %u",
			       i, pfn, size, SV_PATCH_MAX);
	if (pos + size > v->length)
		return sv_fail(v,
			       "length %" PRIu32 " ends inside the PATCH payload of entry %" PRIu32
			       " (pfn %" PRIu64 ", %" PRIu32 " bytes)",
			       v->length, i, pfn, size);
	for (r = 0; r < runs; r++) {
		first = le16(p + 8 + 4 * r);
		count = le16(p + 8 + 4 * r + 2);
		if (count == 0)
			return sv_fail(v,
				       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH run %" PRIu32
				       " has count 0",
				       i, pfn, r);
		if (first < next)
			return sv_fail(v,
				       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH run %" PRIu32
				       " starts at word %" PRIu32 ", before word %" PRIu32
				       " (runs in increasing order, not overlapping)",
				       i, pfn, r, first, next);
		if (first + count > SV_PAGE_WORDS)
			return sv_fail(v,
				       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH run %" PRIu32
				       " (words %" PRIu32 "-%" PRIu32 ") ends past word %u",
				       i, pfn, r, first, first + count - 1, SV_PAGE_WORDS - 1);
		next = first + count;
		sum += count;
	}
	if (runs % 2 && le32(p + 8 + 4 * runs))
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH padding after the "
			       "runs is 0x%" PRIx32 ", must be 0",
			       i, pfn, le32(p + 8 + 4 * runs));
	if (sum != words)
		return sv_fail(v,
			       "entry %" PRIu32 " (pfn %" PRIu64 "): PATCH runs cover %" PRIu32
			       " words, but words is %" PRIu32,
			       i, pfn, sum, words);
	*size_out = size;
	*words_out = words;
	return 0;
}

static int length_error(struct verifier *v, uint32_t count, uint64_t want)
{
	return sv_fail(v,
		       "length %" PRIu32 ", but %" PRIu32 " entries and their payloads "
		       "make %" PRIu64,
		       v->length, count, want);
}

int sv_check_pages(struct verifier *v, struct stream_verify_record *rec)
{
	const uint8_t *b = v->body;
	uint32_t i, size = 0, words = 0;
	uint64_t pos, removed = 0, e;
	struct batch bt = {0};
	int rc;

	rc = check_table(v, rec, false, &bt);
	if (rc < 0)
		return rc;
	pos = 8 + 8 * (uint64_t)bt.count;
	/* payloads in entry order; a PATCH's size is read from its own header */
	for (i = 0; i < bt.count; i++) {
		e = le64(b + 8 + 8 * (size_t)i);
		switch (SV_ENTRY_ENC(e)) {
		case SV_ENC_RAW:
		case SV_ENC_XOR:
			pos += SV_PAGE_SIZE;
			break;
		case SV_ENC_PATCH:
			rc = check_patch(v, i, e & SV_PFN_MASK, pos, &size, &words);
			if (rc < 0)
				return rc;
			pos += size;
			removed += 8 + size;
			rec->patch_words += words;
			break;
		}
	}
	if (v->length != pos)
		return length_error(v, bt.count, pos);
	/*
	 * §9.5: decoding takes the PATCH entries out, and drops the record when
	 * nothing is left. Every payload is a multiple of 8, so there is no padding.
	 */
	v->decoded_rec = bt.patches == bt.count ? 0 : SV_REC_HDR_LEN + v->length - removed;
	return 0;
}

/* Allocate the zstd context and a buffer of len bytes, once and growing. */
static int zstd_reserve(struct verifier *v, size_t len)
{
	uint8_t *nbuf;

	if (!v->zctx) {
		v->zctx = ZSTD_createDCtx();
		if (!v->zctx)
			return -ENOMEM;
	}
	if (v->zbuf_cap < len) {
		nbuf = realloc(v->zbuf, len);
		if (!nbuf)
			return -ENOMEM;
		v->zbuf = nbuf;
		v->zbuf_cap = len;
	}
	return 0;
}

/* §9.3: f[0..flen) is exactly one zstd frame that decompresses to raw_len bytes. */
static int check_frame(struct verifier *v, const uint8_t *f, size_t flen, uint64_t raw_len)
{
	unsigned long long fcs;
	unsigned dict;
	size_t r;
	int rc;

	if (flen < 4)
		return sv_fail(v, "no zstd frame after raw_len: %zu bytes", flen);
	if (le32(f) != SV_ZSTD_MAGIC)
		return sv_fail(v,
			       "the frame starts with 0x%08" PRIx32 ", not the zstd magic "
			       "0x%08x",
			       le32(f), SV_ZSTD_MAGIC);
	fcs = ZSTD_getFrameContentSize(f, flen);
	if (fcs == ZSTD_CONTENTSIZE_ERROR)
		return sv_fail(v, "the zstd frame header is malformed or cut short");
	if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
		return sv_fail(v, "the zstd frame header has no Frame_Content_Size");
	if (fcs != raw_len)
		return sv_fail(v,
			       "the zstd frame's Frame_Content_Size is %llu, but raw_len %" PRIu64,
			       fcs, raw_len);
	dict = ZSTD_getDictID_fromFrame(f, flen);
	if (dict)
		return sv_fail(v, "the zstd frame needs dictionary %u (none is allowed)", dict);
	r = ZSTD_findFrameCompressedSize(f, flen);
	if (ZSTD_isError(r))
		return sv_fail(v, "the zstd frame is cut short or malformed: %s",
			       ZSTD_getErrorName(r));
	if (r != flen)
		return sv_fail(v,
			       "the zstd frame ends %zu bytes before the body does (one frame, "
			       "to the end of the body)",
			       flen - r);
	/* raw_len matched the entries: at most SV_RAW_LEN_MAX bytes are allocated here */
	rc = zstd_reserve(v, raw_len);
	if (rc < 0)
		return rc;
	r = ZSTD_decompressDCtx(v->zctx, v->zbuf, raw_len, f, flen);
	if (ZSTD_isError(r))
		return sv_fail(
			v, "the zstd frame does not decompress to raw_len %" PRIu64 " bytes: %s",
			raw_len, ZSTD_getErrorName(r));
	if (r != raw_len)
		return sv_fail(v, "the zstd frame decompresses to %zu bytes, but raw_len %" PRIu64,
			       r, raw_len);
	return 0;
}

int sv_check_pages_zstd(struct verifier *v, struct stream_verify_record *rec)
{
	struct batch bt = {0};
	uint64_t raw_len, want, head;
	int rc;

	rc = check_table(v, rec, true, &bt);
	if (rc < 0)
		return rc;
	head = 8 + 8 * (uint64_t)bt.count;
	raw_len = le64(v->body + head);
	want = (uint64_t)bt.pages * SV_PAGE_SIZE;
	if (raw_len != want)
		return sv_fail(v,
			       "raw_len %" PRIu64 ", but the entries' payloads make %" PRIu64
			       " (4096 per RAW or XOR entry)",
			       raw_len, want);
	if (raw_len < SV_PAGE_SIZE)
		return sv_fail(v, "raw_len 0: a batch without payloads goes as PAGES (§9.3)");
	rc = check_frame(v, v->body + head + 8, v->length - head - 8, raw_len);
	if (rc < 0)
		return rc;
	rec->raw_len = raw_len;
	/* §9.5: decoded, it is a PAGES record with the payloads in place of raw_len and frame */
	v->decoded_rec = SV_REC_HDR_LEN + head + raw_len;
	return 0;
}

void sv_pages_dispose(struct verifier *v)
{
	ZSTD_freeDCtx(v->zctx);
	v->zctx = NULL;
	free(v->zbuf);
	v->zbuf = NULL;
	v->zbuf_cap = 0;
}
