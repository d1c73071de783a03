/*
 * What the harnesses of replication's decoder share (fuzz_codec.c,
 * fuzz_differential.c): the base RAM a decoder is given, wire streams the
 * encoder makes as seeds, and a way past the END checksum for mutated inputs.
 */
#include "tests/fuzz/codec_common.h"

#include <string.h>

#include "hypervisor/state.h"
#include "replication/codec.h"

uint8_t *codec_fuzz_ram(void)
{
	static uint8_t *base;

	if (!base) {
		base = malloc(CODEC_FUZZ_MEM);
		FUZZ_CHECK(base != NULL);
		for (size_t i = 0; i < CODEC_FUZZ_MEM; i++)
			base[i] = (uint8_t)(i * 131 >> 7);
	}
	return base;
}

/*
 * A copy of the input with END's counts and checksum made right (when it is
 * framed well enough to find END), so that mutations get past the checksum
 * to the entry, length and zstd checks.
 */
uint8_t *codec_fuzz_resigned(const uint8_t *data, size_t size)
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

/*
 * One vCPU's state and the VM's, as §2.3-§2.5 lay them out (contents zero but
 * for the indexes), so that an epoch is whole to the independent verifier too.
 */
static int write_state(struct hv_stream_writer *w)
{
	static uint8_t vcpu[HV_VCPU_REC_LEN], msrs[8], irqchip[3 * 520], pit[112];
	int rc;

	irqchip[520] = 1; /* chip_id: PIC master 0, PIC slave 1, IOAPIC 2 */
	irqchip[1040] = 2;
	rc = hv_stream_write(w, HV_REC_VCPU, &(struct iovec){vcpu, sizeof(vcpu)}, 1);
	if (!rc)
		rc = hv_stream_write(w, HV_REC_VCPU_MSRS, &(struct iovec){msrs, sizeof(msrs)}, 1);
	if (!rc)
		rc = hv_stream_write(w, HV_REC_IRQCHIP, &(struct iovec){irqchip, sizeof(irqchip)},
				     1);
	if (!rc)
		rc = hv_stream_write(w, HV_REC_PIT, &(struct iovec){pit, sizeof(pit)}, 1);
	return rc;
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
				     .mem_bytes = CODEC_FUZZ_MEM,
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
	    !hv_stream_write_staged(w, pfns, n, staged) && !write_state(w) &&
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
 * compress), one with a pfn sent twice; and a revision-1 epoch.
 */
void codec_fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	uint8_t *base = codec_fuzz_ram(), *st = calloc(4, HV_PAGE_SIZE), *in = NULL;
	struct repl_encoder *e = NULL, *ex = NULL; /* ex: no PATCH, so XOR */
	struct repl_buf wire;
	uint64_t pfns[4] = {1, 2, 3, 4}, pfns_rep[3] = {2, 3, 2}, x;
	uint8_t *rep;
	size_t len, i;

	repl_buf_init(&wire);
	if (!st || repl_encoder_new(CODEC_FUZZ_MEM, 64, 1, &e) < 0 ||
	    repl_encoder_new(CODEC_FUZZ_MEM, 64, 1, &ex) < 0 ||
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
	/*
	 * epoch 3 for the PATCH encoder: one word changed in pages 2 and 3 (PATCH of
	 * one run, so with padding), then page 2 again (RAW: it was seen): the
	 * repeat rule and the padding are a bit flip away.
	 */
	rep = malloc(3 * HV_PAGE_SIZE);
	if (!rep)
		goto out;
	memcpy(rep, st + HV_PAGE_SIZE, 2 * HV_PAGE_SIZE);
	rep[8] ^= 0x5a;
	rep[HV_PAGE_SIZE + 16] ^= 0xa5;
	memcpy(rep + 2 * HV_PAGE_SIZE, rep, HV_PAGE_SIZE);
	rep[2 * HV_PAGE_SIZE + 24] ^= 0x3c;
	epoch(3, pfns_rep, 3, rep, &in, &len);
	if (in && !repl_encode(e, in, len, &wire, NULL))
		add(ctx, wire.data, wire.len);
	free(in);
	free(rep);
out:
	repl_encoder_free(e);
	repl_encoder_free(ex);
	repl_buf_dispose(&wire);
	free(st);
}
