/*
 * Fuzz postcopy's POSTCOPY frame parser (repl_postcopy_frame_parse,
 * docs/stream-format.md §8.6). The first 4 bytes are the destination's RAM
 * in pages (1 to 2^20), the rest the frame's body. What it accepts is a
 * bitmap of exactly that many pages, nothing set past its end, bit for bit
 * the body's; what it refuses says why and leaves nothing to free.
 */
#include "tests/fuzz/fuzz.h"
#include "replication/repl.h"

#include <string.h>

#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct util_bitmap b = {0};
	char why[200] = "";
	uint32_t pages;

	if (size < 4)
		return 0;
	memcpy(&pages, data, 4);
	pages = pages % (1u << 20) + 1;
	data += 4;
	size -= 4;
	if (repl_postcopy_frame_parse(data, size, pages, &b, why, sizeof(why)) < 0) {
		FUZZ_CHECK(why[0]);
		FUZZ_CHECK(!b.words);
		return 0;
	}
	FUZZ_CHECK(b.nbits == pages);
	FUZZ_CHECK(size == 8 + UTIL_BITMAP_WORDS(pages) * 8);
	FUZZ_CHECK(!memcmp(b.words, data + 8, size - 8));
	FUZZ_CHECK(util_bitmap_next_set(&b, 0) <= pages);
	FUZZ_CHECK(util_bitmap_count(&b) <= pages);
	util_bitmap_dispose(&b);
	return 0;
}
