/*
 * The records of the disk resync (docs/stream-format.md §11), checked and
 * decoded from bytes, and the digests both ends compute. Pure functions: the
 * two ends (disk_sync.c, disk_recv.c) and tests/fuzz/fuzz_disk.c call the
 * same checks. A record's header is judged before its body is read
 * (dsync_hdr_check), so a hostile length never reaches an allocation.
 */
#define LOG_TAG "disk-sync"
#include "replication/disk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

const char *dsync_type_str(uint32_t type)
{
	switch (type & ~DISK_REC_F_OPTIONAL) {
	case DSYNC_BEGIN:
		return "BEGIN";
	case DSYNC_SUMS:
		return "SUMS";
	case DSYNC_DATA:
		return "DATA";
	case DSYNC_ZERO:
		return "ZERO";
	case DSYNC_MARK:
		return "MARK";
	case DSYNC_ACK:
		return "ACK";
	case DSYNC_END:
		return "END";
	case DSYNC_RESULT:
		return "RESULT";
	case DSYNC_ERROR:
		return "ERROR";
	}
	return "?";
}

static bool is_known(uint32_t base)
{
	return base >= DSYNC_BEGIN && base <= DSYNC_ERROR;
}

/* The most a record of `base` may hold (known types only). */
static uint32_t max_len(const struct dsync_params *p, uint32_t base)
{
	switch (base) {
	case DSYNC_BEGIN:
		return sizeof(struct dsync_begin);
	case DSYNC_SUMS:
		return DSYNC_SUMS_MAX;
	case DSYNC_DATA:
		return 8 + p->range_bytes;
	case DSYNC_ZERO:
		return sizeof(struct dsync_zero);
	case DSYNC_MARK:
	case DSYNC_ACK:
		return 8;
	case DSYNC_END:
		return sizeof(struct dsync_end);
	case DSYNC_RESULT:
		return sizeof(struct dsync_result);
	default:
		return sizeof(struct dsync_error);
	}
}

int dsync_hdr_check(const struct dsync_params *p, uint32_t type, uint32_t length, char *why,
		    size_t why_len)
{
	uint32_t base = type & ~DISK_REC_F_OPTIONAL;

	if (!is_known(base)) {
		if (!(type & DISK_REC_F_OPTIONAL))
			return util_why(why, why_len, -EPROTO, "unknown mandatory record 0x%04x",
					base);
		if (length > DSYNC_REC_MAX)
			return util_why(why, why_len, -EPROTO,
					"optional record 0x%04x of %u bytes (limit %u)", base,
					length, DSYNC_REC_MAX);
		return 0;
	}
	if (type & DISK_REC_F_OPTIONAL)
		return util_why(why, why_len, -EPROTO, "record 0x%04x(%s) with the optional flag",
				base, dsync_type_str(base));
	if (!p && base != DSYNC_BEGIN && base != DSYNC_ERROR)
		return util_why(why, why_len, -EPROTO, "record 0x%04x(%s) before BEGIN", base,
				dsync_type_str(base));
	if (length > max_len(p, base))
		return util_why(why, why_len, -EPROTO, "record 0x%04x(%s) of %u bytes (limit %u)",
				base, dsync_type_str(base), length, max_len(p, base));
	return 0;
}

uint32_t dsync_batch_count(const struct dsync_params *p, uint64_t batch)
{
	uint64_t first = batch * DSYNC_BATCH_RANGES;

	if (first >= p->nranges)
		return 0;
	return p->nranges - first < DSYNC_BATCH_RANGES ? (uint32_t)(p->nranges - first)
						       : DSYNC_BATCH_RANGES;
}

uint64_t dsync_range_len(const struct dsync_params *p, uint64_t range)
{
	uint64_t off = range * p->range_bytes;

	return p->image_bytes - off < p->range_bytes ? p->image_bytes - off : p->range_bytes;
}

void dsync_params_from_begin(const struct dsync_begin *b, struct dsync_params *out)
{
	*out = (struct dsync_params){.image_bytes = b->image_bytes,
				     .range_bytes = b->range_bytes,
				     .mode = b->mode,
				     .flags = b->flags};
	out->nranges = b->image_bytes / b->range_bytes + !!(b->image_bytes % b->range_bytes);
	out->nbatches = out->nranges / DSYNC_BATCH_RANGES + !!(out->nranges % DSYNC_BATCH_RANGES);
}

bool dsync_sums_is_zero(const struct dsync_rec *r, uint32_t i)
{
	uint64_t w;

	memcpy(&w, r->u.sums.zero_bits + 8 * (i / 64), sizeof(w));
	return (w >> (i % 64)) & 1;
}

int dsync_begin_check(const struct dsync_begin *b, char *why, size_t why_len)
{
	uint32_t r = b->range_bytes;

	if (!b->image_bytes || b->image_bytes > DSYNC_IMAGE_MAX)
		return util_why(why, why_len, -EPROTO,
				"BEGIN of an image of %" PRIu64 " bytes (1 to 2^60)",
				b->image_bytes);
	if (r < DSYNC_RANGE_MIN || r > DSYNC_RANGE_MAX || (r & (r - 1)))
		return util_why(why, why_len, -EPROTO,
				"BEGIN: ranges of %u bytes (a power of two, 4 KiB to 1 MiB)", r);
	if (b->batch_ranges != DSYNC_BATCH_RANGES)
		return util_why(why, why_len, -EPROTO, "BEGIN: batches of %u ranges, not %u",
				b->batch_ranges, DSYNC_BATCH_RANGES);
	if (b->mode < REPL_DISK_SYNC_FULL || b->mode > REPL_DISK_SYNC_DIRTY)
		return util_why(why, why_len, -EPROTO, "BEGIN: unknown mode %u", b->mode);
	if ((b->flags & ~DSYNC_F_VERIFY) || b->reserved)
		return util_why(why, why_len, -EPROTO, "BEGIN with reserved bits set");
	return 0;
}

static int check_sums(const struct dsync_params *p, const uint8_t *body, uint32_t len,
		      struct dsync_rec *out, char *why, size_t why_len)
{
	struct dsync_sums_head h;
	uint32_t nwords, marked = 0;
	uint64_t want;

	if (len < sizeof(h))
		return util_why(why, why_len, -EPROTO, "SUMS of %u bytes", len);
	memcpy(&h, body, sizeof(h));
	if (h.batch >= p->nbatches || h.count != dsync_batch_count(p, h.batch) || h.reserved)
		return util_why(why, why_len, -EPROTO,
				"SUMS of batch %" PRIu64 " with %u ranges (the image has %" PRIu64
				" batches)",
				h.batch, h.count, p->nbatches);
	nwords = (h.count + 63) / 64;
	if (len < sizeof(h) + 8 * nwords)
		return util_why(why, why_len, -EPROTO, "SUMS of batch %" PRIu64 " cut short",
				h.batch);
	for (uint32_t i = 0; i < nwords; i++) {
		uint64_t w;

		memcpy(&w, body + sizeof(h) + 8 * i, sizeof(w));
		if (i == nwords - 1 && h.count % 64 && (w >> (h.count % 64)))
			return util_why(why, why_len, -EPROTO,
					"SUMS of batch %" PRIu64 ": bits past its ranges", h.batch);
		marked += (uint32_t)__builtin_popcountll(w);
	}
	want = sizeof(h) + 8ull * nwords + 32ull * (h.count - marked);
	if (len != want)
		return util_why(why, why_len, -EPROTO,
				"SUMS of batch %" PRIu64 ": %u bytes for %u digests (want %" PRIu64
				")",
				h.batch, len, h.count - marked, want);
	out->u.sums.batch = h.batch;
	out->u.sums.count = h.count;
	out->u.sums.zero_bits = body + sizeof(h);
	out->u.sums.digests = body + sizeof(h) + 8 * nwords;
	return 0;
}

/* A range's first byte inside the image. */
static int check_offset(const struct dsync_params *p, const char *what, uint64_t off, char *why,
			size_t why_len)
{
	if (off % p->range_bytes || off >= p->image_bytes)
		return util_why(why, why_len, -EPROTO,
				"%s at %" PRIu64 ": not a range's start inside the image (%" PRIu64
				" bytes in ranges of %u)",
				what, off, p->image_bytes, p->range_bytes);
	return 0;
}

/* The text of an ERROR as one printable line. */
static void clean_text(char *t, size_t n)
{
	t[n - 1] = 0;
	for (char *c = t; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
}

int dsync_rec_parse(const struct dsync_params *p, uint32_t type, const uint8_t *body, uint32_t len,
		    struct dsync_rec *out, char *why, size_t why_len)
{
	uint32_t base = type & ~DISK_REC_F_OPTIONAL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = dsync_hdr_check(p, type, len, why, why_len);
	if (rc < 0 || !is_known(base))
		return rc; /* an unknown optional record: type 0, skipped */
	if (base != DSYNC_DATA && base != DSYNC_SUMS && len != max_len(p, base))
		return util_why(why, why_len, -EPROTO, "%s of %u bytes, not %u",
				dsync_type_str(base), len, max_len(p, base));
	out->type = base;
	switch (base) {
	case DSYNC_BEGIN:
		memcpy(&out->u.begin, body, sizeof(out->u.begin));
		return dsync_begin_check(&out->u.begin, why, why_len);
	case DSYNC_SUMS:
		return check_sums(p, body, len, out, why, why_len);
	case DSYNC_DATA:
		if (len < 8)
			return util_why(why, why_len, -EPROTO, "DATA of %u bytes", len);
		memcpy(&out->u.data.offset, body, 8);
		rc = check_offset(p, "DATA", out->u.data.offset, why, why_len);
		if (rc < 0)
			return rc;
		if (len - 8 != dsync_range_len(p, out->u.data.offset / p->range_bytes))
			return util_why(why, why_len, -EPROTO,
					"DATA at %" PRIu64 " of %u bytes, not its range's %" PRIu64,
					out->u.data.offset, len - 8,
					dsync_range_len(p, out->u.data.offset / p->range_bytes));
		out->u.data.data = body + 8;
		out->u.data.len = len - 8;
		return 0;
	case DSYNC_ZERO:
		memcpy(&out->u.zero, body, sizeof(out->u.zero));
		rc = check_offset(p, "ZERO", out->u.zero.offset, why, why_len);
		if (rc < 0)
			return rc;
		if (!out->u.zero.length ||
		    out->u.zero.length > p->image_bytes - out->u.zero.offset ||
		    (out->u.zero.length % p->range_bytes &&
		     out->u.zero.offset + out->u.zero.length != p->image_bytes))
			return util_why(why, why_len, -EPROTO,
					"ZERO at %" PRIu64 " of %" PRIu64
					" bytes: not whole ranges inside the image",
					out->u.zero.offset, out->u.zero.length);
		return 0;
	case DSYNC_MARK:
	case DSYNC_ACK:
		memcpy(&out->u.batch, body, 8);
		if (out->u.batch >= p->nbatches)
			return util_why(why, why_len, -EPROTO,
					"%s of batch %" PRIu64 " (the image has %" PRIu64 ")",
					dsync_type_str(base), out->u.batch, p->nbatches);
		return 0;
	case DSYNC_END:
		memcpy(&out->u.end, body, sizeof(out->u.end));
		return 0;
	case DSYNC_RESULT:
		memcpy(&out->u.result, body, sizeof(out->u.result));
		if (out->u.result.status > 0 || out->u.result.status < -4095 ||
		    out->u.result.reserved)
			return util_why(why, why_len, -EPROTO, "RESULT with status %d",
					out->u.result.status);
		return 0;
	default: /* DSYNC_ERROR */
		memcpy(&out->u.error, body, sizeof(out->u.error));
		if (out->u.error.status >= 0 || out->u.error.status < -4095 ||
		    out->u.error.reserved)
			return util_why(why, why_len, -EPROTO, "ERROR with status %d",
					out->u.error.status);
		clean_text(out->u.error.text, sizeof(out->u.error.text));
		return 0;
	}
}

/* ---- digests ----------------------------------------------------------------------------- */

void dsync_digest(const uint8_t *buf, size_t len, uint8_t out[REPL_DISK_DIGEST_BYTES])
{
	crypto_generichash(out, REPL_DISK_DIGEST_BYTES, buf, len, NULL, 0);
}

int dsync_zero_digest_init(struct dsync_zero_digest *z)
{
	memset(z, 0, sizeof(*z));
	if (sodium_init() < 0)
		return -EIO;
	z->zeros = calloc(1, DSYNC_RANGE_MAX);
	return z->zeros ? 0 : -ENOMEM;
}

void dsync_zero_digest_dispose(struct dsync_zero_digest *z)
{
	free(z->zeros);
	z->zeros = NULL;
}

const uint8_t *dsync_zero_digest(struct dsync_zero_digest *z, uint64_t len)
{
	/* a sync asks for two lengths at most: a whole range and the image's last one */
	for (int i = 0; i < 2; i++)
		if (z->len[i] == len)
			return z->d[i];
	memmove(z->d[1], z->d[0], sizeof(z->d[0]));
	z->len[1] = z->len[0];
	dsync_digest(z->zeros, (size_t)len, z->d[0]);
	z->len[0] = len;
	return z->d[0];
}

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(struct dsync_image_digest) &&
		       _Alignof(crypto_generichash_state) <= _Alignof(struct dsync_image_digest),
	       "image digest state size");

void dsync_image_digest_init(struct dsync_image_digest *g, const struct dsync_params *p)
{
	crypto_generichash_state *st = (crypto_generichash_state *)g->state;
	uint8_t head[16];
	uint32_t zero = 0;

	memcpy(head, &p->image_bytes, 8);
	memcpy(head + 8, &p->range_bytes, 4);
	memcpy(head + 12, &zero, 4);
	crypto_generichash_init(st, NULL, 0, REPL_DISK_DIGEST_BYTES);
	crypto_generichash_update(st, head, sizeof(head));
}

void dsync_image_digest_add(struct dsync_image_digest *g, const uint8_t d[REPL_DISK_DIGEST_BYTES])
{
	crypto_generichash_update((crypto_generichash_state *)g->state, d, REPL_DISK_DIGEST_BYTES);
}

void dsync_image_digest_final(struct dsync_image_digest *g, uint8_t out[REPL_DISK_DIGEST_BYTES])
{
	crypto_generichash_final((crypto_generichash_state *)g->state, out, REPL_DISK_DIGEST_BYTES);
}

/* ---- SUMS frames (§8.5; their senders and readers: disk_sums.c) ------------------------ */

uint32_t disk_sums_range_bytes(uint64_t image_bytes)
{
	uint32_t r = DISK_SUMS_RANGE_MIN;

	while (r < DISK_SUMS_RANGE_MAX &&
	       image_bytes / r + !!(image_bytes % r) > DISK_SUMS_RANGES_MAX)
		r *= 2;
	return image_bytes / r + !!(image_bytes % r) > DISK_SUMS_RANGES_MAX ? 0 : r;
}

int disk_sums_frame_parse(const uint8_t *body, size_t len, struct disk_sums_frame *out, char *why,
			  size_t why_len)
{
	struct disk_sums_head h;
	uint64_t nranges;

	if (len < sizeof(h))
		return util_why(why, why_len, -EPROTO, "a SUMS frame of %zu bytes (at least %zu)",
				len, sizeof(h));
	memcpy(&h, body, sizeof(h));
	if (h.disk >= REPL_DISK_MAX)
		return util_why(why, why_len, -EPROTO, "SUMS for disk %u (0 to %u)", h.disk,
				REPL_DISK_MAX - 1);
	if (h.reserved)
		return util_why(why, why_len, -EPROTO, "a SUMS frame with reserved bits set");
	if (!h.image_bytes || h.image_bytes % DISK_SECTOR)
		return util_why(why, why_len, -EPROTO,
				"SUMS of an image of %" PRIu64 " bytes (not whole sectors)",
				h.image_bytes);
	if (!h.range_bytes || h.range_bytes != disk_sums_range_bytes(h.image_bytes))
		return util_why(why, why_len, -EPROTO,
				"SUMS of a %" PRIu64
				"-byte image in ranges of %u bytes (§8.5 says %u)",
				h.image_bytes, h.range_bytes, disk_sums_range_bytes(h.image_bytes));
	nranges = h.image_bytes / h.range_bytes + !!(h.image_bytes % h.range_bytes);
	if (!h.count || h.count > DISK_SUMS_FRAME_RANGES || h.first >= nranges ||
	    h.count > nranges - h.first)
		return util_why(why, why_len, -EPROTO,
				"SUMS of ranges %" PRIu64 "+%u of an image of %" PRIu64
				" ranges (1 to %u a frame)",
				h.first, h.count, nranges, DISK_SUMS_FRAME_RANGES);
	if (len != sizeof(h) + (size_t)h.count * REPL_DISK_DIGEST_BYTES)
		return util_why(why, why_len, -EPROTO,
				"a SUMS frame of %zu bytes for %u digests (%zu expected)", len,
				h.count, sizeof(h) + (size_t)h.count * REPL_DISK_DIGEST_BYTES);
	*out = (struct disk_sums_frame){.disk = h.disk,
					.range_bytes = h.range_bytes,
					.image_bytes = h.image_bytes,
					.first = h.first,
					.count = h.count,
					.nranges = nranges,
					.digests = body + sizeof(h)};
	return 0;
}

int repl_disk_frame_next(const uint8_t *buf, size_t len, size_t *off, struct repl_disk_op *out,
			 char *why, size_t why_len)
{
	uint32_t type, rlen;
	int rc;

	if (*off >= len)
		return 0;
	if (len - *off < 8)
		return util_why(why, why_len, -EBADMSG, "a DISK frame: a record cut short");
	memcpy(&type, buf + *off, 4);
	memcpy(&rlen, buf + *off + 4, 4);
	if (rlen > len - *off - 8)
		return util_why(why, why_len, -EBADMSG,
				"a DISK frame: a record longer than the frame");
	rc = repl_disk_op_parse(type, buf + *off + 8, rlen, out, why, why_len);
	if (rc < 0)
		return rc;
	*off += 8 + (size_t)rlen + ((8 - rlen % 8) % 8);
	return 1;
}
