/*
 * The epoch codec (codec.h, docs/stream-format.md §9): revision-1 streams to
 * revision-2 wire streams with ZERO, PATCH (changed words), XOR-delta and zstd-compressed page
 * batches, and back. The encoder runs on the primary's sender thread for
 * every epoch, so its steady state allocates nothing and touches each page a
 * bounded number of times; the decoder treats its input as hostile.
 */
#define LOG_TAG "codec"
#include "replication/codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "util/util.h"

#define PAGE_WORDS (HV_PAGE_SIZE / 8u)
#define CACHE_WAYS 4u

/* A PAGES record goes compressed only when the frame saves at least a tenth. */
static bool zstd_pays(size_t frame_len, size_t raw_len)
{
	return (uint64_t)frame_len * 10 < (uint64_t)raw_len * 9;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static const char *rec_name(uint32_t type)
{
	return type == REPL_REC_PAGES_ZSTD ? "PAGES_ZSTD" : hv_rec_type_str(type);
}

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
static int buf_reserve(struct repl_buf *b, size_t need)
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
static void close_record(struct repl_buf *b, size_t start, uint32_t type, size_t len)
{
	put32(b->data + start, type);
	put32(b->data + start + 4, (uint32_t)len);
	memset(b->data + start + 8 + len, 0, pad8(len) - len);
	b->len = start + 8 + pad8(len);
}

/* ---- encoder -------------------------------------------------------------------- */

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

/* dst ^= src, a page. */
static void xor_page(uint8_t *restrict dst, const uint8_t *restrict src)
{
	unsigned i;

	for (i = 0; i < PAGE_WORDS; i++)
		put64(dst + 8 * i, get64(dst + 8 * i) ^ get64(src + 8 * i));
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
	close_record(out, start, HV_REC_PAGES, 8 + 8 * (size_t)count + payload_len);
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
	rc = buf_reserve(&e->payload, (size_t)count * HV_PAGE_SIZE);
	if (!rc && e->patch_max)
		rc = buf_reserve(&e->patch, (size_t)count * e->patch_max);
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
	rc = buf_reserve(out, out->len + 16 + 8 * (size_t)np + e->patch.len + 8 + 16 +
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
			close_record(out, start, REPL_REC_PAGES_ZSTD, 8 + 8 * (size_t)no + 8 + z);
			s->zstd_records++;
			goto out;
		}
	}
	put_pages(out, e->oents, no, e->payload.data, e->payload.len);
	s->plain_records++;
out:
	return rc;
}

/* A record copied as it is (its type keeps the optional flag). */
static int copy_record(struct repl_buf *out, uint32_t type, const uint8_t *body, size_t len)
{
	size_t start = out->len;
	int rc;

	rc = buf_reserve(out, start + 8 + pad8(len));
	if (rc)
		return rc;
	memcpy(out->data + start + 8, body, len);
	close_record(out, start, type, len);
	return 0;
}

/* END over everything in `out`: HEADER up to here. */
static int finish_stream(struct repl_buf *out, uint64_t records, uint64_t pages)
{
	struct hv_stream_end end = {
		.records = records,
		.checksum = util_crc32c_final(
			util_crc32c_update(UTIL_CRC32C_INIT, out->data, out->len)),
		.pages = pages,
	};

	return copy_record(out, HV_REC_END, (const uint8_t *)&end, sizeof(end));
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
	rc = buf_reserve(out, in_len + 4096);
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
			rc = copy_record(out, type, (const uint8_t *)&h, sizeof(h));
			records++;
		} else if (type == HV_REC_PAGES) {
			rc = encode_pages(e, &r, out, s, &records);
		} else {
			rc = copy_record(out, type, r.body, r.len);
			records++;
		}
		if (rc) {
			LOG_ERRNO(rc, "encode: offset %" PRIu64 ": record 0x%04x(%s)", r.offset,
				  r.type, rec_name(r.type));
			return rc;
		}
	}
	if (more < 0 || !records || r.len != sizeof(struct hv_stream_end) || it.off != in_len) {
		LOG_ERR("encode: offset %zu: the input stream does not end with END", it.off);
		return -EINVAL;
	}
	return finish_stream(out, records, s->pages);
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

/* ---- decoder -------------------------------------------------------------------- */

struct dec {
	const uint8_t *in;
	size_t in_len;
	const uint8_t *base; /* may be NULL: no XOR */
	uint64_t npages;
	bool full; /* a full stream: no XOR */
	struct repl_buf *out;
	uint64_t out_max;
	struct util_bitmap seen;      /* pfns met so far in the stream (incremental only) */
	ZSTD_DCtx *dctx;	      /* created at the first PAGES_ZSTD */
	struct repl_patches *patches; /* NULL: PATCH refused */
	uint64_t records, pages;      /* of the revision-1 stream so far */
	char *why;
	size_t why_len;
};

static int fail(struct dec *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct dec *d, int rc, const char *fmt, ...)
{
	va_list ap;

	if (d->why_len) {
		va_start(ap, fmt);
		vsnprintf(d->why, d->why_len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

#define BAD(d, r, fmt, ...)                                                                        \
	fail(d, -EBADMSG, "offset %" PRIu64 ": record 0x%04x(%s): " fmt, (r)->offset, (r)->type,   \
	     rec_name((r)->type), ##__VA_ARGS__)

/* Room for `len` more output bytes, within the cap on what a stream may decode to. */
static int out_reserve(struct dec *d, const struct hv_stream_record *r, uint64_t len)
{
	if (len > d->out_max - d->out->len)
		return BAD(d, r, "decodes past the limit of %" PRIu64 " bytes", d->out_max);
	if (buf_reserve(d->out, d->out->len + (size_t)len) < 0)
		return fail(d, -ENOMEM, "out of memory for %" PRIu64 " decoded bytes",
			    d->out->len + len);
	return 0;
}

/*
 * Pass 1, over the wire bytes only: framing, padding, the END counts and
 * checksum. Nothing is decompressed before the stream is known intact.
 */
static int check_wire(struct dec *d)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	struct hv_stream_end end;
	uint64_t records = 0, pages = 0;
	uint32_t crc = UTIL_CRC32C_INIT;
	size_t i, padded;
	int more;

	hv_stream_iter_init(&it, d->in, d->in_len);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		padded = pad8(r.len);
		for (i = r.len; i < padded; i++)
			if (r.body[i])
				return BAD(d, &r, "non-zero padding");
		crc = util_crc32c_update(crc, d->in + r.offset, 8 + padded);
		records++;
		if (r.type == HV_REC_HEADER && r.offset)
			return BAD(d, &r, "a second HEADER");
		if (r.type == HV_REC_PAGES || r.type == REPL_REC_PAGES_ZSTD) {
			if (r.optional)
				return BAD(d, &r, "the optional flag on a type revision 2 defines");
			if (r.len < 8)
				return BAD(d, &r, "body of %u bytes, too short for its count",
					   r.len);
			pages += get32(r.body);
		}
	}
	if (more < 0)
		return fail(d, -EBADMSG, "offset %zu: truncated or oversized record (no END)",
			    it.off);
	if (r.optional)
		return BAD(d, &r, "the optional flag on END");
	if (r.len != sizeof(end))
		return BAD(d, &r, "length %u, expected %zu", r.len, sizeof(end));
	if (it.off != d->in_len)
		return fail(d, -EBADMSG, "offset %zu: %zu bytes after END", it.off,
			    d->in_len - it.off);
	memcpy(&end, r.body, sizeof(end));
	if (end.reserved || end.records != records || end.pages != pages)
		return BAD(d, &r,
			   "counts %" PRIu64 " records/%" PRIu64 " pages, the stream has %" PRIu64
			   "/%" PRIu64 " (or a reserved field is set)",
			   end.records, end.pages, records, pages);
	if (end.checksum != util_crc32c_final(crc))
		return BAD(d, &r, "checksum mismatch (stream 0x%08x, computed 0x%08x)",
			   end.checksum, util_crc32c_final(crc));
	return 0;
}

/*
 * A PATCH payload at p, `avail` bytes to the end of the record: its size into
 * *size, or a reason into msg.
 */
static bool patch_ok(const uint8_t *p, size_t avail, size_t *size, char *msg, size_t msg_len)
{
	uint32_t runs, words, r, sum = 0, next = 0;
	size_t need;

	if (avail < 8) {
		snprintf(msg, msg_len, "its PATCH payload is cut off");
		return false;
	}
	runs = get32(p);
	words = get32(p + 4);
	if (runs > PAGE_WORDS / 2 || words >= PAGE_WORDS || !runs != !words) {
		snprintf(msg, msg_len, "a PATCH of %u runs and %u words", runs, words);
		return false;
	}
	need = 8 + pad8(4 * (size_t)runs) + 8 * (size_t)words;
	if (need > REPL_PATCH_MAX || need > avail) {
		snprintf(msg, msg_len, "a PATCH of %zu bytes, %zu left in the record (at most %u)",
			 need, avail, REPL_PATCH_MAX);
		return false;
	}
	for (r = 0; r < runs; r++) {
		uint16_t first, len;

		memcpy(&first, p + 8 + 4 * r, 2);
		memcpy(&len, p + 10 + 4 * r, 2);
		if (!len || first < next || first + len > PAGE_WORDS) {
			snprintf(msg, msg_len,
				 "PATCH run %u (words %u..%u) is empty, out of order or past the "
				 "page",
				 r, first, first + len);
			return false;
		}
		next = first + len;
		sum += len;
	}
	if (runs & 1 && get32(p + 8 + 4 * runs)) {
		snprintf(msg, msg_len, "non-zero padding after the PATCH runs");
		return false;
	}
	if (sum != words) {
		snprintf(msg, msg_len, "PATCH runs of %u words, its header says %u", sum, words);
		return false;
	}
	*size = need;
	return true;
}

/*
 * The count/reserved prefix and the entries of a PAGES or PAGES_ZSTD body
 * (`tail`: bytes that must follow the entries at least); marks the pfns seen
 * and sums the payload sizes the entries announce, walking the payloads of a
 * PAGES record (`zstd` false) to size and check its PATCH entries.
 */
static int check_entries(struct dec *d, const struct hv_stream_record *r, size_t tail, bool zstd,
			 uint32_t *count_out, uint64_t *payload_out, uint32_t *npatch_out)
{
	uint64_t payload = 0;
	uint32_t count, i, npatch = 0;
	char msg[160];
	size_t size;

	count = get32(r->body); /* check_wire saw len >= 8 */
	if (get32(r->body + 4))
		return BAD(d, r, "reserved field is %u", get32(r->body + 4));
	if (count < 1 || count > HV_PAGES_MAX)
		return BAD(d, r, "count %u, not 1..%u", count, HV_PAGES_MAX);
	if (r->len < 8 + 8ull * count + tail)
		return BAD(d, r, "length %u, too short for %u entries", r->len, count);
	for (i = 0; i < count; i++) {
		uint64_t ent = get64(r->body + 8 + 8 * (size_t)i), pfn = ent & HV_PAGE_PFN_MASK;
		unsigned enc = ent >> HV_PAGE_ENC_SHIFT;
		const char *name = enc == REPL_PAGE_XOR ? "XOR" : "PATCH";

		if (ent >> 52 & 0xff)
			return BAD(d, r, "entry %u: reserved bits set", i);
		if (pfn >= d->npages)
			return BAD(d, r, "entry %u: pfn %" PRIu64 " beyond RAM (%" PRIu64 " pages)",
				   i, pfn, d->npages);
		if (enc == REPL_PAGE_XOR || enc == REPL_PAGE_PATCH) {
			if (d->full)
				return BAD(d, r,
					   "entry %u: %s for pfn %" PRIu64 " in a full stream", i,
					   name, pfn);
			if (!d->base || (enc == REPL_PAGE_PATCH && !d->patches))
				return BAD(d, r,
					   "entry %u: %s for pfn %" PRIu64 " with no base RAM", i,
					   name, pfn);
			if (util_bitmap_is_set(&d->seen, pfn))
				return BAD(d, r,
					   "entry %u: %s for pfn %" PRIu64
					   ", which appeared earlier in the stream",
					   i, name, pfn);
		}
		switch (enc) {
		case HV_PAGE_RAW:
		case REPL_PAGE_XOR:
			payload += HV_PAGE_SIZE;
			break;
		case HV_PAGE_ZERO:
			break;
		case REPL_PAGE_PATCH:
			if (zstd)
				return BAD(d, r,
					   "entry %u: PATCH for pfn %" PRIu64 " in PAGES_ZSTD", i,
					   pfn);
			/* payloads so far fit: the record is at least this long */
			if (payload > r->len - 8 - 8ull * count ||
			    !patch_ok(r->body + 8 + 8ull * count + payload,
				      r->len - 8 - 8 * (size_t)count - (size_t)payload, &size, msg,
				      sizeof(msg)))
				return BAD(d, r, "entry %u (pfn %" PRIu64 "): %s", i, pfn,
					   payload > r->len - 8 - 8ull * count
						   ? "its payload starts past the record's end"
						   : msg);
			payload += size;
			npatch++;
			break;
		default:
			return BAD(d, r, "entry %u: unknown page encoding %u", i, enc);
		}
		util_bitmap_set(&d->seen, pfn);
	}
	*count_out = count;
	*payload_out = payload;
	*npatch_out = npatch;
	return 0;
}

/*
 * Write the revision-1 entries (XOR becomes RAW) at d->out->len + 16 and turn
 * the XOR payloads, already in place after them, into page contents.
 */
static void resolve_entries(struct dec *d, const uint8_t *ents, uint32_t count)
{
	uint8_t *o = d->out->data + d->out->len + 16, *pl = o + 8 * (size_t)count;
	uint32_t i;

	for (i = 0; i < count; i++) {
		uint64_t ent = get64(ents + 8 * (size_t)i), pfn = ent & HV_PAGE_PFN_MASK;
		unsigned enc = ent >> HV_PAGE_ENC_SHIFT;

		if (enc == REPL_PAGE_XOR) {
			xor_page(pl, d->base + pfn * HV_PAGE_SIZE);
			ent = pfn | (uint64_t)HV_PAGE_RAW << HV_PAGE_ENC_SHIFT;
		}
		put64(o + 8 * (size_t)i, ent);
		if (enc != HV_PAGE_ZERO)
			pl += HV_PAGE_SIZE;
	}
}

/* Room for one more patch. */
static int patches_reserve(struct dec *d)
{
	struct repl_patches *p = d->patches;
	struct repl_patch *v;
	size_t cap;

	if (p->n < p->cap)
		return 0;
	cap = p->cap ? p->cap * 2 : 1024;
	v = realloc(p->v, cap * sizeof(*v));
	if (!v)
		return fail(d, -ENOMEM, "out of memory for %zu page patches", cap);
	p->v = v;
	p->cap = cap;
	return 0;
}

/*
 * A PAGES record with PATCH entries: those go to d->patches, the others to a
 * revision-1 PAGES record of their own (none when all are PATCH).
 */
static int split_pages(struct dec *d, const struct hv_stream_record *r, uint32_t count,
		       uint32_t npatch, uint64_t payload)
{
	const uint8_t *src = r->body + 8 + 8 * (size_t)count;
	size_t start = d->out->len, len;
	uint32_t i, n = 0;
	uint8_t *o, *pl;
	int rc;

	len = 8 + 8 * (size_t)(count - npatch) + (size_t)payload; /* an upper bound */
	rc = out_reserve(d, r, 8 + pad8(len));
	if (rc)
		return rc;
	o = d->out->data + start + 16;
	pl = o + 8 * (size_t)(count - npatch);
	for (i = 0; i < count; i++) {
		uint64_t ent = get64(r->body + 8 + 8 * (size_t)i), pfn = ent & HV_PAGE_PFN_MASK;
		unsigned enc = ent >> HV_PAGE_ENC_SHIFT;

		if (enc == REPL_PAGE_PATCH) {
			rc = patches_reserve(d);
			if (rc)
				return rc;
			d->patches->v[d->patches->n++] = (struct repl_patch){pfn, src};
			src += 8 + pad8(4 * (size_t)get32(src)) + 8 * (size_t)get32(src + 4);
			continue;
		}
		if (enc != HV_PAGE_ZERO) {
			memcpy(pl, src, HV_PAGE_SIZE);
			if (enc == REPL_PAGE_XOR)
				xor_page(pl, d->base + pfn * HV_PAGE_SIZE);
			src += HV_PAGE_SIZE;
			pl += HV_PAGE_SIZE;
			ent = pfn | (uint64_t)HV_PAGE_RAW << HV_PAGE_ENC_SHIFT;
		}
		put64(o + 8 * (size_t)n++, ent);
	}
	if (!n)
		return 0;
	put32(d->out->data + start + 8, n);
	put32(d->out->data + start + 12, 0);
	close_record(d->out, start, HV_REC_PAGES, (size_t)(pl - d->out->data) - start - 8);
	d->records++;
	d->pages += n;
	return 0;
}

static int decode_pages(struct dec *d, const struct hv_stream_record *r)
{
	uint64_t payload;
	uint32_t count, npatch;
	size_t start = d->out->len;
	int rc;

	rc = check_entries(d, r, 0, false, &count, &payload, &npatch);
	if (rc)
		return rc;
	if (r->len != 8 + 8ull * count + payload)
		return BAD(d, r, "length %u, its entries make %" PRIu64, r->len,
			   (uint64_t)8 + 8 * (uint64_t)count + payload);
	if (npatch)
		return split_pages(d, r, count, npatch, payload);
	rc = out_reserve(d, r, 8 + pad8(r->len));
	if (rc)
		return rc;
	memcpy(d->out->data + start + 8, r->body, r->len);
	resolve_entries(d, r->body + 8, count);
	close_record(d->out, start, HV_REC_PAGES, r->len);
	d->records++;
	d->pages += count;
	return 0;
}

static int decode_pages_zstd(struct dec *d, const struct hv_stream_record *r)
{
	const uint8_t *frame;
	uint64_t payload, raw_len, fcs;
	size_t start = d->out->len, flen, z, len;
	uint32_t count, npatch;
	int rc;

	rc = check_entries(d, r, 8, true, &count, &payload, &npatch);
	if (rc)
		return rc;
	raw_len = get64(r->body + 8 + 8 * (size_t)count);
	if (raw_len != payload)
		return BAD(d, r, "raw_len %" PRIu64 ", its entries make %" PRIu64, raw_len,
			   payload);
	if (!raw_len)
		return BAD(d, r, "no entry carries a payload");
	frame = r->body + 16 + 8 * (size_t)count;
	flen = r->len - 16 - 8 * (size_t)count;
	if (flen < 4 || get32(frame) != ZSTD_MAGICNUMBER)
		return BAD(d, r, "the payload is not a zstd frame");
	fcs = ZSTD_getFrameContentSize(frame, flen);
	if (fcs == ZSTD_CONTENTSIZE_ERROR)
		return BAD(d, r, "malformed zstd frame header");
	if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
		return BAD(d, r, "the zstd frame does not state its content size");
	if (fcs != raw_len)
		return BAD(d, r, "the zstd frame holds %" PRIu64 " bytes, raw_len says %" PRIu64,
			   fcs, raw_len);
	z = ZSTD_findFrameCompressedSize(frame, flen);
	if (ZSTD_isError(z))
		return BAD(d, r, "truncated zstd frame (%s)", ZSTD_getErrorName(z));
	if (z != flen)
		return BAD(d, r, "%zu bytes after the zstd frame", flen - z);
	len = 8 + 8 * (size_t)count + (size_t)raw_len; /* <= HV_REC_MAX_LEN: count <= 4096 */
	rc = out_reserve(d, r, 8 + pad8(len));
	if (rc)
		return rc;
	if (!d->dctx) {
		d->dctx = ZSTD_createDCtx();
		if (!d->dctx)
			return fail(d, -ENOMEM, "out of memory for a zstd context");
	}
	memcpy(d->out->data + start + 16, r->body + 8, 8 * (size_t)count);
	z = ZSTD_decompressDCtx(d->dctx, d->out->data + start + 16 + 8 * (size_t)count,
				(size_t)raw_len, frame, flen);
	if (ZSTD_isError(z))
		return BAD(d, r, "the zstd frame does not decode: %s", ZSTD_getErrorName(z));
	if (z != raw_len)
		return BAD(d, r, "the zstd frame decodes to %zu bytes, not %" PRIu64, z, raw_len);
	put32(d->out->data + start + 8, count);
	put32(d->out->data + start + 12, 0);
	resolve_entries(d, r->body + 8, count);
	close_record(d->out, start, HV_REC_PAGES, len);
	d->records++;
	d->pages += count;
	return 0;
}

/* Pass 2: the revision-1 stream, record by record (framing known good). */
static int decode_wire(struct dec *d)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	struct hv_stream_header h;
	int rc = 0;

	hv_stream_iter_init(&it, d->in, d->in_len);
	while (hv_stream_next(&it, &r) > 0) {
		const uint8_t *body = r.body;

		if (r.type == HV_REC_PAGES) {
			rc = decode_pages(d, &r);
		} else if (r.type == REPL_REC_PAGES_ZSTD) {
			rc = decode_pages_zstd(d, &r);
		} else {
			/* HEADER, state and unknown records: hv_stream_check() judges them below */
			if (r.type == HV_REC_HEADER) {
				memcpy(&h, r.body, sizeof(h)); /* length checked by the caller */
				h.version = HV_STREAM_REVISION;
				body = (const uint8_t *)&h;
			}
			rc = out_reserve(d, &r, 8 + pad8(r.len));
			if (!rc)
				rc = copy_record(d->out,
						 r.type | (r.optional ? HV_REC_F_OPTIONAL : 0),
						 body, r.len);
			d->records++;
		}
		if (rc)
			return rc;
	}
	rc = out_reserve(d, &r, 8 + sizeof(struct hv_stream_end));
	if (!rc)
		rc = finish_stream(d->out, d->records, d->pages);
	return rc;
}

void repl_patches_init(struct repl_patches *p)
{
	p->v = NULL;
	p->n = 0;
	p->cap = 0;
}

void repl_patches_dispose(struct repl_patches *p)
{
	free(p->v);
	repl_patches_init(p);
}

void repl_patches_apply(const struct repl_patches *p, uint8_t *ram)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		const uint8_t *pl = p->v[i].payload, *v;
		uint8_t *page = ram + p->v[i].pfn * HV_PAGE_SIZE;
		uint32_t runs = get32(pl), r;

		v = pl + 8 + pad8(4 * (size_t)runs);
		for (r = 0; r < runs; r++) {
			uint16_t first, len;

			memcpy(&first, pl + 8 + 4 * r, 2);
			memcpy(&len, pl + 10 + 4 * r, 2);
			memcpy(page + 8 * (size_t)first, v, 8 * (size_t)len);
			v += 8 * (size_t)len;
		}
	}
}

int repl_decode(const uint8_t *in, size_t in_len, const uint8_t *base, uint64_t mem_bytes,
		struct repl_buf *out, struct repl_patches *patches, char *why, size_t why_len)
{
	struct dec d = {.in = in,
			.in_len = in_len,
			.base = base,
			.npages = mem_bytes / HV_PAGE_SIZE,
			.out = out,
			.patches = patches,
			.why = why,
			.why_len = why_len};
	struct hv_stream_header h;
	struct hv_stream_iter it;
	struct hv_stream_record r;
	char what[200];
	int rc;

	out->len = 0;
	if (patches)
		patches->n = 0;
	if (why_len)
		why[0] = 0;
	/* a stream grows by its payloads; Castor sends a page at most twice (live pass, pause) */
	d.out_max = mem_bytes > (UINT64_MAX - in_len) / 2 ? UINT64_MAX : in_len + 2 * mem_bytes;
	if (!mem_bytes || mem_bytes % HV_PAGE_SIZE) {
		rc = fail(&d, -EINVAL, "RAM size %" PRIu64 " is not a multiple of 4096", mem_bytes);
		goto out;
	}
	hv_stream_iter_init(&it, in, in_len);
	if (hv_stream_next(&it, &r) < 0 || r.type != HV_REC_HEADER || r.optional ||
	    r.len != sizeof(h)) {
		rc = fail(&d, -EBADMSG,
			  "offset 0: no HEADER record (not a Castor stream, or "
			  "truncated)");
		goto out;
	}
	memcpy(&h, r.body, sizeof(h));
	if (h.magic != HV_STREAM_MAGIC) {
		rc = fail(&d, -EBADMSG, "offset 0: bad magic 0x%016" PRIx64, h.magic);
		goto out;
	}
	if (!h.version || h.version > REPL_WIRE_REVISION) {
		rc = fail(&d, -EBADMSG, "offset 0: stream revision %u, this decoder reads 1 and 2",
			  h.version);
		goto out;
	}
	if (h.page_size != HV_PAGE_SIZE || h.mem_bytes != mem_bytes) {
		rc = fail(&d, -EBADMSG,
			  "offset 0: a stream for %" PRIu64 " bytes of RAM in %u-byte pages, the "
			  "receiver has %" PRIu64,
			  h.mem_bytes, h.page_size, mem_bytes);
		goto out;
	}
	if (h.version == 1) {
		if (hv_stream_check(in, in_len, NULL, what, sizeof(what)) < 0) {
			rc = fail(&d, -EBADMSG, "%s", what);
			goto out;
		}
		rc = out_reserve(&d, &r, in_len);
		if (rc)
			goto out;
		memcpy(out->data, in, in_len);
		out->len = in_len;
		goto out;
	}
	d.full = h.kind != HV_STREAM_INCREMENTAL;
	rc = check_wire(&d);
	if (rc)
		goto out;
	/* a full stream has no XOR to check: its receiver may not even know its RAM size yet */
	if (!d.full && util_bitmap_init(&d.seen, d.npages) < 0) {
		rc = fail(&d, -ENOMEM, "out of memory for a bitmap of %" PRIu64 " pages", d.npages);
		goto out;
	}
	rc = decode_wire(&d);
	if (rc)
		goto out;
	/* the revision-1 rules the wire walk did not look at (state records, HEADER fields) */
	if (hv_stream_check(out->data, out->len, NULL, what, sizeof(what)) < 0)
		rc = fail(&d, -EBADMSG, "the decoded stream breaks revision 1: %s", what);
out:
	util_bitmap_dispose(&d.seen);
	ZSTD_freeDCtx(d.dctx);
	return rc;
}
