/*
 * The epoch decoder (codec.h, docs/stream-format.md §9.5): a received wire
 * stream, untrusted, checked whole and turned back into a revision-1 stream
 * plus the word patches it carried.
 */
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

/* dst ^= src, a page. */
static void xor_page(uint8_t *restrict dst, const uint8_t *restrict src)
{
	unsigned i;

	for (i = 0; i < PAGE_WORDS; i++)
		put64(dst + 8 * i, get64(dst + 8 * i) ^ get64(src + 8 * i));
}

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
	     codec_rec_name((r)->type), ##__VA_ARGS__)

/* Room for `len` more output bytes, within the cap on what a stream may decode to. */
static int out_reserve(struct dec *d, const struct hv_stream_record *r, uint64_t len)
{
	if (len > d->out_max - d->out->len)
		return BAD(d, r, "decodes past the limit of %" PRIu64 " bytes", d->out_max);
	if (codec_buf_reserve(d->out, d->out->len + (size_t)len) < 0)
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
	size_t size, room;

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
			/* the bytes left for it (none when earlier payloads overran: "cut off") */
			room = r->len - 8 - 8 * (size_t)count;
			if (!patch_ok(r->body + 8 + 8 * (size_t)count +
					      (payload < room ? payload : 0),
				      payload < room ? room - (size_t)payload : 0, &size, msg,
				      sizeof(msg)))
				return BAD(d, r, "entry %u (pfn %" PRIu64 "): %s", i, pfn, msg);
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

	if (codec_buf_reserve(&p->mem, (p->n + 1) * sizeof(*p->v)))
		return fail(d, -ENOMEM, "out of memory for %zu page patches", p->n + 1);
	p->v = (struct repl_patch *)(void *)p->mem.data;
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
	codec_close_record(d->out, start, HV_REC_PAGES, (size_t)(pl - d->out->data) - start - 8);
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
	codec_close_record(d->out, start, HV_REC_PAGES, r->len);
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
	codec_close_record(d->out, start, HV_REC_PAGES, len);
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
				rc = codec_copy_record(
					d->out, r.type | (r.optional ? HV_REC_F_OPTIONAL : 0), body,
					r.len);
			d->records++;
		}
		if (rc)
			return rc;
	}
	rc = out_reserve(d, &r, 8 + sizeof(struct hv_stream_end));
	if (!rc)
		rc = codec_finish_stream(d->out, d->records, d->pages);
	return rc;
}

void repl_patches_init(struct repl_patches *p)
{
	p->v = NULL;
	p->n = 0;
	repl_buf_init(&p->mem);
}

void repl_patches_dispose(struct repl_patches *p)
{
	repl_buf_dispose(&p->mem);
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
