/*
 * The epoch decoder (repl_decode, replication/codec_dec.c) on arbitrary bytes.
 * Rules: never crash, leak or read out of bounds; a refusal is -EBADMSG with
 * a reason; what it accepts is a revision-1 stream hv_stream_check() accepts,
 * no larger than the documented bound, plus word patches that stay inside
 * RAM when applied (ASan watches); with no base RAM, no XOR or PATCH is
 * accepted (the same input with a base then decodes to the same stream, with
 * no patches, or is refused only for lack of one).
 */
#include <errno.h>
#include <string.h>

#include "hypervisor/hv.h"
#include "replication/codec.h"
#include "tests/fuzz/fuzz.h"

#define MEM HV_MIN_MEM

static uint8_t *ram(void)
{
	static uint8_t *base;

	if (!base) {
		base = malloc(MEM);
		FUZZ_CHECK(base != NULL);
		for (size_t i = 0; i < MEM; i++)
			base[i] = (uint8_t)(i * 131 >> 7);
	}
	return base;
}

/* RAM for the patches to land in: exactly MEM bytes, so that ASan sees a write past it. */
static uint8_t *scratch(void)
{
	static uint8_t *ram;

	if (!ram) {
		ram = calloc(1, MEM);
		FUZZ_CHECK(ram != NULL);
	}
	return ram;
}

static void decode_one(const uint8_t *data, size_t size, const uint8_t *base, struct repl_buf *out,
		       struct repl_patches *patches, int *rc_out)
{
	char why[256];
	int rc;

	why[0] = 0;
	rc = repl_decode(data, size, base, MEM, out, patches, why, sizeof(why));
	if (rc < 0) {
		FUZZ_CHECK(rc == -EBADMSG || rc == -ENOMEM);
		FUZZ_CHECK(why[0] != 0);
	} else {
		FUZZ_CHECK(rc == 0);
		FUZZ_CHECK(out->len <= size + 2 * (uint64_t)MEM);
		FUZZ_CHECK(hv_stream_check(out->data, out->len, NULL, why, sizeof(why)) == 0);
		if (patches)
			repl_patches_apply(patches, scratch());
	}
	*rc_out = rc;
}

static void decode_both(const uint8_t *data, size_t size)
{
	static struct repl_buf with, without; /* reused, as the receiver does */
	static struct repl_patches patches;
	int rc_with, rc_without;

	decode_one(data, size, ram(), &with, &patches, &rc_with);
	decode_one(data, size, NULL, &without, NULL, &rc_without);
	/* a base only adds XOR and PATCH entries to what decodes */
	if (rc_without == 0) {
		FUZZ_CHECK(rc_with == 0 && patches.n == 0);
		FUZZ_CHECK(with.len == without.len && !memcmp(with.data, without.data, with.len));
	}
}

/*
 * A copy of the input with END's counts and checksum made right (when it is
 * framed well enough to find END), so that mutations get past the checksum
 * to the entry, length and zstd checks.
 */
static uint8_t *resigned(const uint8_t *data, size_t size)
{
	struct hv_stream_end end = {0};
	struct hv_stream_iter it;
	struct hv_stream_record r;
	uint32_t crc = UTIL_CRC32C_INIT, count;
	uint8_t *copy;
	int more;

	hv_stream_iter_init(&it, data, size);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		crc = util_crc32c_update(crc, data + r.offset, 8 + ((r.len + 7u) & ~7u));
		end.records++;
		if ((r.type == HV_REC_PAGES || r.type == REPL_REC_PAGES_ZSTD) && r.len >= 4) {
			memcpy(&count, r.body, 4);
			end.pages += count;
		}
	}
	if (more < 0 || r.len != sizeof(end))
		return NULL;
	copy = malloc(size);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	end.checksum = util_crc32c_final(crc);
	memcpy(copy + (r.body - data), &end, sizeof(end));
	return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	decode_both(data, size);
	fixed = resigned(data, size);
	if (fixed) {
		decode_both(fixed, size);
		free(fixed);
	}
	return 0;
}

/* A revision-1 epoch of `n` pages; the caller frees *buf_out. */
static void epoch(uint64_t id, const uint64_t *pfns, size_t n, const uint8_t *staged,
		  uint8_t **buf_out, size_t *len_out)
{
	struct hv_stream_header h = {.magic = HV_STREAM_MAGIC,
				     .version = HV_STREAM_REVISION,
				     .kind = id == 1 ? HV_STREAM_FULL : HV_STREAM_INCREMENTAL,
				     .ncpus = 1,
				     .page_size = HV_PAGE_SIZE,
				     .mem_bytes = MEM,
				     .stream_id = id,
				     .parent_id = id - 1};
	struct hv_stream_writer *w = NULL;
	uint8_t clock[48] = {1, 2, 3};
	struct iovec iov = {&h, sizeof(h)};
	const uint8_t *p;

	*buf_out = NULL;
	if (hv_stream_writer_mem(&w) < 0)
		return;
	if (!hv_stream_write(w, HV_REC_HEADER, &iov, 1) &&
	    !hv_stream_write_staged(w, pfns, n, staged) &&
	    !hv_stream_write(w, HV_REC_CLOCK, &(struct iovec){clock, sizeof(clock)}, 1) &&
	    !hv_stream_finish(w)) {
		p = hv_stream_writer_data(w, len_out);
		*buf_out = malloc(*len_out);
		if (*buf_out)
			memcpy(*buf_out, p, *len_out);
	}
	hv_stream_writer_free(w);
}

/*
 * Wire streams the encoder makes against ram(): a first epoch (RAW, ZERO),
 * then one with PATCH entries, the same with XOR entries compressed
 * (PAGES_ZSTD), one with XOR entries left plain (dense deltas that do not
 * compress); and a revision-1 epoch.
 */
void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	uint8_t *base = ram(), *st = calloc(4, HV_PAGE_SIZE), *in = NULL;
	struct repl_encoder *e = NULL, *ex = NULL; /* ex: no PATCH, so XOR */
	struct repl_buf wire;
	uint64_t pfns[4] = {1, 2, 3, 4}, x;
	size_t len, i;

	repl_buf_init(&wire);
	if (!st || repl_encoder_new(MEM, 64, 1, &e) < 0 || repl_encoder_new(MEM, 64, 1, &ex) < 0 ||
	    repl_encoder_set_patch_max(ex, 0) < 0)
		goto out;
	/* epoch 1: pages 1..3 as the base holds them, 4 zero */
	memcpy(st, base + HV_PAGE_SIZE, 3 * HV_PAGE_SIZE);
	epoch(1, pfns, 4, st, &in, &len);
	if (in && !repl_encode(e, in, len, &wire, NULL)) {
		add(ctx, wire.data, wire.len);
		add(ctx, in, len);
	}
	if (in && repl_encode(ex, in, len, &wire, NULL) < 0)
		goto out;
	free(in);
	/* epoch 2: a few words changed (PATCH; XOR, compressed), 4 still zero */
	for (i = 0; i < 3; i++) {
		st[i * HV_PAGE_SIZE + 8 * i] ^= 0x77;
		st[i * HV_PAGE_SIZE + 8 * i + 80] ^= 0x11;
	}
	epoch(2, pfns, 4, st, &in, &len);
	if (in && !repl_encode(e, in, len, &wire, NULL))
		add(ctx, wire.data, wire.len);
	if (in && !repl_encode(ex, in, len, &wire, NULL))
		add(ctx, wire.data, wire.len);
	free(in);
	/* epoch 3: page 1 rewritten but for its last words: XOR, dense and random (plain PAGES) */
	for (i = 0, x = 12345; i < HV_PAGE_SIZE - 64; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		st[i] = (uint8_t)(x >> 56) | 1;
	}
	epoch(3, pfns, 1, st, &in, &len);
	if (in && !repl_encode(ex, in, len, &wire, NULL))
		add(ctx, wire.data, wire.len);
	free(in);
out:
	repl_encoder_free(e);
	repl_encoder_free(ex);
	repl_buf_dispose(&wire);
	free(st);
}
