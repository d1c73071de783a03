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
#include "tests/fuzz/codec_common.h"
#include "tests/fuzz/fuzz.h"

/* RAM for the patches to land in: exactly CODEC_FUZZ_MEM bytes, so that ASan sees a write past. */
static uint8_t *scratch(void)
{
	static uint8_t *ram;

	if (!ram) {
		ram = calloc(1, CODEC_FUZZ_MEM);
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
	rc = repl_decode(data, size, base, CODEC_FUZZ_MEM, out, patches, why, sizeof(why));
	if (rc < 0) {
		FUZZ_CHECK(rc == -EBADMSG || rc == -ENOMEM);
		FUZZ_CHECK(why[0] != 0);
	} else {
		FUZZ_CHECK(rc == 0);
		FUZZ_CHECK(out->len <= size + 2 * (uint64_t)CODEC_FUZZ_MEM);
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

	decode_one(data, size, codec_fuzz_ram(), &with, &patches, &rc_with);
	decode_one(data, size, NULL, &without, NULL, &rc_without);
	/* a base only adds XOR and PATCH entries to what decodes */
	if (rc_without == 0) {
		FUZZ_CHECK(rc_with == 0 && patches.n == 0);
		FUZZ_CHECK(with.len == without.len && !memcmp(with.data, without.data, with.len));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	decode_both(data, size);
	fixed = codec_fuzz_resigned(data, size);
	if (fixed) {
		decode_both(fixed, size);
		free(fixed);
	}
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	codec_fuzz_seeds(add, ctx);
}
