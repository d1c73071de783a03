/*
 * Differential fuzzing of the two readers of docs/stream-format.md revision 2:
 * replication's decoder (repl_decode, replication/codec_dec.c, which ends with
 * hv_stream_check() on what it produced) and the independent verifier
 * (stream_verify_buf, tools/castor/stream_verify*.c), written apart from the
 * spec. Both judge the same bytes; where both should judge them alike and do
 * not, one of them is wrong or the spec is silent, and the harness aborts with
 * both reasons. Comparable are the inputs
 *
 *  - whose HEADER, when it can be read, says mem_bytes = CODEC_FUZZ_MEM: the
 *    decoder plays a receiver of that size and refuses any other (§9.1);
 *  - that the verifier does not refuse for a rule the receiver checks only when
 *    it applies the stream against its VM (res.state_rule: the record set and
 *    order, state records' contents, a full snapshot's coverage); the decoder
 *    takes those streams, and hv_snapshot_apply_patched() refuses them later;
 *  - on which neither side ran out of memory.
 *
 * XOR payloads need no exception: neither side can judge what they do to a
 * page, and the decoder is given a base RAM (codec_fuzz_ram()), so XOR and
 * PATCH entries are legal to both. Everything else must agree: a stream the
 * verifier accepts, the decoder accepts, and the other way round.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "replication/codec.h"
#include "tests/fuzz/codec_common.h"
#include "tests/fuzz/fuzz.h"
#include "tools/castor/stream_verify.h"

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/*
 * Whether both sides should judge the input alike (see the top of the file):
 * the HEADER, when it can be read, is for the decoder's RAM size, and the
 * verifier's refusal, if any, is not one the receiver leaves to the apply step.
 */
static bool is_comparable(const uint8_t *data, size_t size, int ver,
			  const struct stream_verify_result *res)
{
	uint32_t type, len;

	if (ver == -EBADMSG && res->state_rule)
		return false;
	if (size < 8 + 32)
		return true;
	memcpy(&type, data, 4);
	memcpy(&len, data + 4, 4);
	if (type != SV_REC_HEADER || len < 32)
		return true;
	return load64(data + 8 + 24) == CODEC_FUZZ_MEM;
}

static void judge(const uint8_t *data, size_t size)
{
	static struct repl_buf out; /* reused, as the receiver does */
	static struct repl_patches patches;
	struct stream_verify_result res;
	char why[256];
	int dec, ver;

	why[0] = 0;
	dec = repl_decode(data, size, codec_fuzz_ram(), CODEC_FUZZ_MEM, &out, &patches, why,
			  sizeof(why));
	ver = stream_verify_buf(data, size, &res);
	FUZZ_CHECK(dec == 0 || dec == -EBADMSG || dec == -ENOMEM);
	FUZZ_CHECK(ver == 0 || ver == -EBADMSG || ver == -ENOMEM);
	if (dec != -ENOMEM && ver != -ENOMEM && is_comparable(data, size, ver, &res) &&
	    (dec == 0) != (ver == 0)) {
		fprintf(stderr, "disagreement on %zu bytes:\n  decoder:  %s\n", size,
			dec == 0 ? "valid" : why);
		if (ver == 0)
			fprintf(stderr, "  verifier: valid\n");
		else
			fprintf(stderr, "  verifier: offset %" PRIu64 ": %s\n", res.offset,
				res.error);
		abort();
	}
	stream_verify_result_dispose(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	judge(data, size);
	fixed = codec_fuzz_resigned(data, size);
	if (fixed) {
		judge(fixed, size);
		free(fixed);
	}
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	codec_fuzz_seeds(add, ctx);
}
