/*
 * The page rule (abi.h, tg_word()) applied to one page, fast enough for the
 * dirtying loop: the window's start and the per-write key are computed once
 * per page instead of once per word. Must stay bit-for-bit equal to
 * tg_word(); no port I/O here, so a host test can link this file alone.
 */
#include "hypervisor/guest/tg.h"

#define TG_WINDOW_K   0xd6e8feb86659fd93ull /* the K of tg_word()'s window words */
#define TG_BASE_WORDS 256u		    /* words below this have a fixed base value */

void tg_page_write(volatile uint64_t *page, uint64_t pfn, uint64_t c, uint64_t seed,
		   uint32_t window_words, int whole_page)
{
	uint32_t ws = tg_window_start(pfn, seed, window_words);
	uint32_t we = ws + window_words;
	uint64_t wkey = seed ^ (pfn << 20) ^ (c * TG_WINDOW_K);
	uint32_t w;

	if (whole_page) {
		uint64_t bkey = seed ^ (pfn << 9);

		page[0] = pfn ^ seed;
		for (w = 2; w < TG_PAGE_WORDS; w++) {
			if (w >= ws && w < we)
				page[w] = tg_mix(wkey ^ w);
			else if (w < TG_BASE_WORDS)
				page[w] = tg_mix(bkey ^ w);
			else
				page[w] = 0;
		}
	} else {
		for (w = ws; w < we; w++)
			page[w] = tg_mix(wkey ^ w);
	}
	page[1] = c;
}
