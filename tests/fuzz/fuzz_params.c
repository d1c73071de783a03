/*
 * Command-line values: util_parse_size(), util_parse_u64() and the test-guest
 * parameter parser hv_tg_config_set() on arbitrary strings. Rules: never crash;
 * a value that is accepted is within the documented range; a refused
 * parameter leaves the config untouched and explains itself.
 */
#include <string.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_tg_config cfg, before;
	char s[256], why[256];
	uint64_t v;

	if (size >= sizeof(s))
		size = sizeof(s) - 1;
	memcpy(s, data, size);
	s[size] = 0;

	if (util_parse_size(s, &v) == 0)
		FUZZ_CHECK(s[0] >= '0' && s[0] <= '9');
	if (util_parse_u64(s, &v) == 0) /* decimal only: nothing but digits */
		FUZZ_CHECK(strspn(s, "0123456789") == strlen(s));

	hv_tg_config_default(&cfg);
	before = cfg;
	why[0] = 0;
	if (hv_tg_config_set(&cfg, s, why, sizeof(why)) == 0) {
		FUZZ_CHECK(cfg.wss_bytes >= TG_PAGE_SIZE && cfg.wss_bytes % TG_PAGE_SIZE == 0);
		FUZZ_CHECK(cfg.window_words >= 1 && cfg.window_words <= TG_WINDOW_MAX);
		FUZZ_CHECK(cfg.out_rate <= 1000000);
	} else {
		FUZZ_CHECK(!memcmp(&cfg, &before, sizeof(cfg)));
		FUZZ_CHECK(why[0] != 0);
	}
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static const char *const seeds[] = {"wss=4M",	  "rate=max",  "rate=100",
					    "outrate=10", "seed=0x42", "window=64",
					    "tick=1",	  "1G",	       "64KiB"};
	size_t i;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		add(ctx, (const uint8_t *)seeds[i], strlen(seeds[i]));
}
