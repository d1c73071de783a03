/*
 * The epoch encoder (codec.h, docs/stream-format.md §9.6): a revision-1 epoch
 * into a revision-2 wire stream, choosing ZERO, PATCH, XOR or RAW per page
 * against a cache of what the receiver holds, and compressing page batches
 * with zstd when that pays.
 */
#define LOG_TAG "codec"
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "replication/codec_int.h"
#include "util/util.h"

#define CACHE_WAYS 4u

/* A PAGES record goes compressed only when the frame saves at least a tenth. */
static bool zstd_pays(size_t frame_len, size_t raw_len)
{
	return (uint64_t)frame_len * 10 < (uint64_t)raw_len * 9;
}

/*
 * The XOR cache: set-associative, `ways` slots per set, set = pfn % nsets, so
 * a contiguous working set no larger than the cache never evicts itself.
 * When the cache covers all of RAM it is direct-mapped on the pfn (one way).
 */
struct cache_slot {
	uint64_t tag;	/* pfn + 1; 0 = empty */
	uint64_t used;	/* LRU clock at the last fill; 0 = empty */
	uint64_t epoch; /* the encode call that last emitted this pfn */
	bool zero;	/* the copy is all zeros; its page bytes are stale */
};

struct repl_encoder {
	uint64_t mem_bytes, npages;
	uint64_t nsets; /* 0: no cache */
	unsigned ways;
	struct cache_slot *slots; /* nsets * ways */
	uint8_t *pages;		  /* nsets * ways * 4096: the copy of slot i at i * 4096 */
	uint64_t cached;	  /* slots in use */
	uint64_t clock, epoch;
	bool full;	  /* the stream being encoded is a full one: no XOR */
	size_t patch_max; /* repl_encoder_set_patch_max() */
	ZSTD_CCtx *cctx;
	struct repl_buf payload; /* the payload run of the PAGES record being encoded */
	struct repl_buf patch;	 /* its PATCH payloads */
	uint64_t *pents, *oents; /* its PATCH entries and the others, HV_PAGES_MAX each */
};

int repl_encoder_new(uint64_t mem_bytes, uint64_t cache_pages, int zstd_level,
		     struct repl_encoder **out)
{
	struct repl_encoder *e = NULL;
	uint64_t slots;
	size_t z;
	int rc = 0;

	if (!mem_bytes || mem_bytes % HV_PAGE_SIZE || zstd_level < ZSTD_minCLevel() ||
	    zstd_level > ZSTD_maxCLevel()) {
		rc = -EINVAL;
		goto out;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	repl_buf_init(&e->payload);
	repl_buf_init(&e->patch);
	e->patch_max = REPL_PATCH_DEFAULT;
	e->pents = malloc(HV_PAGES_MAX * sizeof(*e->pents));
	e->oents = malloc(HV_PAGES_MAX * sizeof(*e->oents));
	if (!e->pents || !e->oents) {
		rc = -ENOMEM;
		goto out;
	}
	e->mem_bytes = mem_bytes;
	e->npages = mem_bytes / HV_PAGE_SIZE;
	if (cache_pages >= e->npages) {
		e->ways = 1;
		e->nsets = e->npages;
	} else if (cache_pages) {
		e->ways = cache_pages < CACHE_WAYS ? (unsigned)cache_pages : CACHE_WAYS;
		e->nsets = cache_pages / e->ways;
	}
	slots = e->nsets * e->ways;
	if (slots > SIZE_MAX / HV_PAGE_SIZE) {
		rc = -ENOMEM;
		goto out;
	}
	if (slots) {
		e->slots = calloc((size_t)slots, sizeof(*e->slots));
		/* not touched until used: a large cache costs memory as it fills */
		e->pages = malloc((size_t)slots * HV_PAGE_SIZE);
		if (!e->slots || !e->pages) {
			rc = -ENOMEM;
			goto out;
		}
	}
	e->cctx = ZSTD_createCCtx();
	if (!e->cctx) {
		rc = -ENOMEM;
		goto out;
	}
	z = ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_compressionLevel, zstd_level);
	/* the decoder requires the content size in every frame header */
	if (!ZSTD_isError(z))
		z = ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag, 1);
	if (ZSTD_isError(z)) {
		LOG_ERR("zstd refused level %d: %s", zstd_level, ZSTD_getErrorName(z));
		rc = -EINVAL;
		goto out;
	}
	*out = e;
	e = NULL;
out:
	repl_encoder_free(e);
	return rc;
}

void repl_encoder_free(struct repl_encoder *e)
{
	if (!e)
		return;
	ZSTD_freeCCtx(e->cctx);
	repl_buf_dispose(&e->payload);
	repl_buf_dispose(&e->patch);
	free(e->pents);
	free(e->oents);
	free(e->slots);
	free(e->pages);
	free(e);
}

int repl_encoder_set_patch_max(struct repl_encoder *e, size_t bytes)
{
	if (bytes > REPL_PATCH_MAX)
		return -EINVAL;
	e->patch_max = bytes;
	return 0;
}

void repl_encoder_reset(struct repl_encoder *e)
{
	if (e->slots)
		memset(e->slots, 0, (size_t)(e->nsets * e->ways) * sizeof(*e->slots));
	e->cached = 0;
}

/* The slot holding pfn (*hit), else the one to fill with it: an empty one or the LRU. */
static struct cache_slot *cache_slot(struct repl_encoder *e, uint64_t pfn, bool *hit)
{
	struct cache_slot *set = e->slots + (pfn % e->nsets) * e->ways, *victim = set;
	unsigned w;

	for (w = 0; w < e->ways; w++) {
		if (set[w].tag == pfn + 1) {
			*hit = true;
			return &set[w];
		}
		if (set[w].used < victim->used)
			victim = &set[w];
	}
	*hit = false;
	return victim;
}

/*
 * The page loops below run for every page of every epoch: the XOR loops are
 * written so that the compiler vectorizes them at -O2 (restrict, no branch);
 * the counting loops, which it does not vectorize, use vector types.
 */
typedef uint64_t u64x2 __attribute__((vector_size(16)));

static u64x2 load2(const uint8_t *p)
{
	u64x2 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/*
 * dst = page ^ copy and copy = page in one pass, counting the non-zero 64-bit
 * words of the page and of the delta. The delta is
 * written whatever encoding is then chosen; the caller ignores it unless XOR.
 */
static void count_xor_keep(uint8_t *restrict dst, const uint8_t *restrict page,
			   uint8_t *restrict copy, unsigned *nz_page, unsigned *nz_delta)
{
	u64x2 np = {0, 0}, nd = {0, 0};
	unsigned i;

	for (i = 0; i < PAGE_WORDS; i += 2) {
		u64x2 p = load2(page + 8 * i), x = p ^ load2(copy + 8 * i);

		np -= (u64x2)(p != 0);
		nd -= (u64x2)(x != 0);
		memcpy(dst + 8 * i, &x, sizeof(x));
		memcpy(copy + 8 * i, &p, sizeof(p));
	}
	*nz_page = (unsigned)(np[0] + np[1]);
	*nz_delta = (unsigned)(nd[0] + nd[1]);
}

/*
 * The PATCH payload (§9.2) that turns `copy` into `page`, written at dst when
 * it takes at most `max` bytes, and the copy updated to the page. Returns the
 * payload's size, or 0 when it would be larger (then nothing is written and
 * the copy is as it was). *page_nz: the page has a non-zero word; *words: how
 * many words differ. A block of eight words (a cache line) is compared at
 * once: the guest changes a few runs of a page, so most blocks pass whole.
 */
static size_t make_patch(uint8_t *restrict dst, const uint8_t *restrict page,
			 uint8_t *restrict copy, size_t max, bool *page_nz, unsigned *words_out)
{
	uint16_t first[PAGE_WORDS / 2], len[PAGE_WORDS / 2]; /* runs alternate at worst */
	u64x2 nz = {0, 0};
	unsigned runs = 0, words = 0, b, w, k, r;
	uint8_t *v;

	for (b = 0; b < PAGE_WORDS; b += 8) {
		u64x2 d = {0, 0};

		for (k = 0; k < 8; k += 2) {
			u64x2 p = load2(page + 8 * (b + k));

			nz |= p;
			d |= p ^ load2(copy + 8 * (b + k));
		}
		if (!(d[0] | d[1]))
			continue;
		for (w = b; w < b + 8; w++) {
			if (get64(page + 8 * w) == get64(copy + 8 * w))
				continue;
			if (runs && first[runs - 1] + len[runs - 1] == w) {
				len[runs - 1]++;
			} else {
				first[runs] = (uint16_t)w;
				len[runs] = 1;
				runs++;
			}
			words++;
		}
		if (8 + pad8(4 * (size_t)runs) + 8 * (size_t)words > max)
			return 0;
	}
	*page_nz = nz[0] | nz[1];
	*words_out = words;
	put32(dst, runs);
	put32(dst + 4, words);
	for (r = 0; r < runs; r++) {
		memcpy(dst + 8 + 4 * r, &first[r], 2);
		memcpy(dst + 10 + 4 * r, &len[r], 2);
	}
	if (runs & 1)
		memset(dst + 8 + 4 * runs, 0, 4);
	v = dst + 8 + pad8(4 * (size_t)runs);
	for (r = 0; r < runs; r++) {
		memcpy(v, page + 8 * first[r], 8 * (size_t)len[r]);
		memcpy(copy + 8 * first[r], v, 8 * (size_t)len[r]);
		v += 8 * (size_t)len[r];
	}
	return (size_t)(v - dst);
}

/* Whether a page is all zeros. */
static bool is_zero_page(const uint8_t *page)
{
	u64x2 acc = {0, 0};
	unsigned i;

	for (i = 0; i < PAGE_WORDS; i += 2)
		acc |= load2(page + 8 * i);
	return !(acc[0] | acc[1]);
}

/*
 * Choose the encoding of one page (NULL: a ZERO entry of the input), append
 * its payload to e->payload or, for PATCH, e->patch (room reserved by the
 * caller) and remember what was sent. Returns the encoding.
 */
static unsigned encode_page(struct repl_encoder *e, uint64_t pfn, const uint8_t *page,
			    struct repl_codec_stats *s)
{
	struct cache_slot *slot = NULL;
	uint8_t *copy = NULL, *dst = e->payload.data + e->payload.len;
	unsigned enc, nz_page = 0, nz_delta = 0;
	bool hit = false, can_xor, pnz = false;
	size_t patch = 0;

	if (e->nsets) {
		slot = cache_slot(e, pfn, &hit);
		copy = e->pages + (size_t)(slot - e->slots) * HV_PAGE_SIZE;
	}
	/*
	 * XOR and PATCH only against the copy the receiver held when the epoch
	 * began: once a pfn was emitted in this stream, the receiver's base for
	 * it would be ambiguous (§9 forbids it). A full stream stands alone,
	 * without a base. A copy known to be zero gains nothing.
	 */
	can_xor = hit && !e->full && !slot->zero && slot->epoch != e->epoch;
	if (page && can_xor && e->patch_max)
		patch = make_patch(e->patch.data + e->patch.len, page, copy, e->patch_max, &pnz,
				   &nz_delta);
	if (patch) {
		nz_page = pnz; /* the copy is the page now */
	} else if (page && can_xor) {
		/* one pass: the delta into the payload, the page into the cache, both counts */
		count_xor_keep(dst, page, copy, &nz_page, &nz_delta);
	} else if (page) {
		nz_page = !is_zero_page(page); /* nothing to weigh it against: zero or not */
	}
	if (!nz_page) {
		enc = HV_PAGE_ZERO;
		s->zero_pages++;
	} else if (patch) {
		enc = REPL_PAGE_PATCH;
		e->patch.len += patch;
		s->patch_pages++;
	} else if (can_xor && nz_delta < nz_page) {
		enc = REPL_PAGE_XOR; /* the delta is in place */
		e->payload.len += HV_PAGE_SIZE;
		s->xor_pages++;
	} else {
		enc = HV_PAGE_RAW;
		memcpy(dst, page, HV_PAGE_SIZE);
		e->payload.len += HV_PAGE_SIZE;
		s->raw_pages++;
	}
	s->pages++;
	/* the receiver's copy is this page already: the guest did not write it */
	if (hit && !e->full && slot->epoch != e->epoch &&
	    (can_xor ? nz_page && !nz_delta : slot->zero && !nz_page)) {
		s->unchanged_pages++;
	}
	if (!slot)
		return enc;
	if (!slot->tag)
		e->cached++;
	if (enc == HV_PAGE_RAW && !can_xor) /* with can_xor the passes above kept it */
		memcpy(copy, page, HV_PAGE_SIZE);
	slot->tag = pfn + 1;
	slot->used = ++e->clock;
	slot->epoch = e->epoch;
	slot->zero = enc == HV_PAGE_ZERO;
	return enc;
}

/* A plain PAGES record of `count` entries and their payloads, appended (room reserved). */
static void put_pages(struct repl_buf *out, const uint64_t *ents, uint32_t count,
		      const uint8_t *payload, size_t payload_len)
{
	size_t start = out->len;

	put32(out->data + start + 8, count);
	put32(out->data + start + 12, 0);
	memcpy(out->data + start + 16, ents, 8 * (size_t)count);
	memcpy(out->data + start + 16 + 8 * (size_t)count, payload, payload_len);
	codec_close_record(out, start, HV_REC_PAGES, 8 + 8 * (size_t)count + payload_len);
}

/*
 * One input PAGES record -> a PAGES record of its PATCH pages, if any, then
 * one PAGES_ZSTD of the others, or PAGES when compression does not pay. A
 * PATCH page never follows a copy of itself in the stream (can_xor), so the
 * order stays right for "the later copy wins". *nrec: records written.
 */
static int encode_pages(struct repl_encoder *e, const struct hv_stream_record *r,
			struct repl_buf *out, struct repl_codec_stats *s, uint64_t *nrec)
{
	const uint8_t *src, *end = r->body + r->len;
	size_t start, run, bound, z;
	uint32_t count, i, np = 0, no = 0;
	int rc = 0;

	count = r->len >= 8 ? get32(r->body) : 0;
	if (!count || count > HV_PAGES_MAX || get32(r->body + 4) || r->len < 8 + 8ull * count) {
		rc = -EINVAL;
		goto out;
	}
	rc = codec_buf_reserve(&e->payload, (size_t)count * HV_PAGE_SIZE);
	if (!rc && e->patch_max)
		rc = codec_buf_reserve(&e->patch, (size_t)count * e->patch_max);
	if (rc)
		goto out;
	e->payload.len = 0;
	e->patch.len = 0;
	src = r->body + 8 + 8 * (size_t)count;
	for (i = 0; i < count; i++) {
		uint64_t ent = get64(r->body + 8 + 8 * (size_t)i), pfn = ent & HV_PAGE_PFN_MASK;
		const uint8_t *page = NULL;
		unsigned enc = ent >> HV_PAGE_ENC_SHIFT;

		if (pfn >= e->npages || (ent >> 52 & 0xff) ||
		    (enc != HV_PAGE_RAW && enc != HV_PAGE_ZERO) ||
		    (enc == HV_PAGE_RAW && (size_t)(end - src) < HV_PAGE_SIZE)) {
			rc = -EINVAL;
			goto out;
		}
		if (enc == HV_PAGE_RAW) {
			page = src;
			src += HV_PAGE_SIZE;
		}
		enc = encode_page(e, pfn, page, s);
		if (enc == REPL_PAGE_PATCH)
			e->pents[np++] = pfn | (uint64_t)enc << HV_PAGE_ENC_SHIFT;
		else
			e->oents[no++] = pfn | (uint64_t)enc << HV_PAGE_ENC_SHIFT;
	}
	if (src != end) {
		rc = -EINVAL;
		goto out;
	}
	bound = no ? ZSTD_compressBound(e->payload.len) : 0;
	rc = codec_buf_reserve(out, out->len + 16 + 8 * (size_t)np + e->patch.len + 8 + 16 +
					    8 * (size_t)no + 8 + bound + e->payload.len + 8);
	if (rc)
		goto out;
	if (np) {
		put_pages(out, e->pents, np, e->patch.data, e->patch.len);
		++*nrec;
	}
	if (!no)
		goto out;
	++*nrec;
	start = out->len;
	run = start + 16 + 8 * (size_t)no; /* PAGES: payloads; PAGES_ZSTD: raw_len, frame */
	if (e->payload.len) {
		z = ZSTD_compress2(e->cctx, out->data + run + 8, bound, e->payload.data,
				   e->payload.len);
		/* a zstd failure only costs the compression: a plain record is always valid */
		if (ZSTD_isError(z))
			LOG_WARN("zstd: %s; the batch goes uncompressed", ZSTD_getErrorName(z));
		if (!ZSTD_isError(z) && zstd_pays(z, e->payload.len) &&
		    8 + 8ull * no + 8 + z <= HV_REC_MAX_LEN) {
			put32(out->data + start + 8, no);
			put32(out->data + start + 12, 0);
			memcpy(out->data + start + 16, e->oents, 8 * (size_t)no);
			put64(out->data + run, e->payload.len);
			codec_close_record(out, start, REPL_REC_PAGES_ZSTD,
					   8 + 8 * (size_t)no + 8 + z);
			s->zstd_records++;
			goto out;
		}
	}
	put_pages(out, e->oents, no, e->payload.data, e->payload.len);
	s->plain_records++;
out:
	return rc;
}
/* The wire stream of `in` into `out`, record by record; counts into *s. */
static int encode_stream(struct repl_encoder *e, const uint8_t *in, size_t in_len,
			 struct repl_buf *out, struct repl_codec_stats *s)
{
	struct hv_stream_header h;
	struct hv_stream_iter it;
	struct hv_stream_record r = {0};
	uint64_t records = 0;
	int more, rc;

	out->len = 0;
	/* the wire stream is never longer than the input, but for a frame's bound */
	rc = codec_buf_reserve(out, in_len + 4096);
	if (rc)
		return rc;
	hv_stream_iter_init(&it, in, in_len);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		uint32_t type = r.type | (r.optional ? HV_REC_F_OPTIONAL : 0);

		if (!records) {
			if (type != HV_REC_HEADER || r.len != sizeof(h)) {
				LOG_ERR("encode: the input does not start with a HEADER");
				return -EINVAL;
			}
			memcpy(&h, r.body, sizeof(h));
			if (h.magic != HV_STREAM_MAGIC || h.version != 1 ||
			    h.mem_bytes != e->mem_bytes) {
				LOG_ERR("encode: a HEADER of revision %u for %" PRIu64
					" bytes of RAM (want revision 1, %" PRIu64 " bytes)",
					h.version, h.mem_bytes, e->mem_bytes);
				return -EINVAL;
			}
			e->full = h.kind != HV_STREAM_INCREMENTAL;
			h.version = REPL_WIRE_REVISION;
			rc = codec_copy_record(out, type, (const uint8_t *)&h, sizeof(h));
			records++;
		} else if (type == HV_REC_PAGES) {
			rc = encode_pages(e, &r, out, s, &records);
		} else {
			rc = codec_copy_record(out, type, r.body, r.len);
			records++;
		}
		if (rc) {
			LOG_ERRNO(rc, "encode: offset %" PRIu64 ": record 0x%04x(%s)", r.offset,
				  r.type, codec_rec_name(r.type));
			return rc;
		}
	}
	if (more < 0 || !records || r.len != sizeof(struct hv_stream_end) || it.off != in_len) {
		LOG_ERR("encode: offset %zu: the input stream does not end with END", it.off);
		return -EINVAL;
	}
	return codec_finish_stream(out, records, s->pages);
}

int repl_encode(struct repl_encoder *e, const uint8_t *in, size_t in_len, struct repl_buf *out,
		struct repl_codec_stats *st)
{
	struct repl_codec_stats s = {0};
	int rc;

	e->epoch++;
	rc = encode_stream(e, in, in_len, out, &s);
	if (rc) {
		repl_encoder_reset(e); /* it cached pages that will never be sent */
		return rc;
	}
	if (st) {
		st->pages += s.pages;
		st->zero_pages += s.zero_pages;
		st->xor_pages += s.xor_pages;
		st->patch_pages += s.patch_pages;
		st->unchanged_pages += s.unchanged_pages;
		st->raw_pages += s.raw_pages;
		st->in_bytes += in_len;
		st->out_bytes += out->len;
		st->zstd_records += s.zstd_records;
		st->plain_records += s.plain_records;
		st->cache_pages = e->cached;
	}
	return 0;
}
