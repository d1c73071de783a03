/*
 * Fuzz the CLI's JSON string escaper (tools/castor/json.c) with arbitrary server
 * bytes. Rule checked: the output is one JSON string -- quoted, only valid
 * escapes, no raw control characters, valid UTF-8 -- and escaping valid UTF-8
 * text without specials changes nothing.
 */
#include "tests/fuzz/fuzz.h"
#include "tools/castor/json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of a well-formed UTF-8 sequence at s, or 0 (independent of json.c). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		n = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *o;
	bool plain = true;
	char *out = NULL;
	size_t olen = 0, i, n;
	FILE *f;

	f = open_memstream(&out, &olen);
	FUZZ_CHECK(f);
	cli_json_write_string(f, (const char *)data, size);
	FUZZ_CHECK(fclose(f) == 0);
	o = (const unsigned char *)out;

	FUZZ_CHECK(olen >= 2 && o[0] == '"' && o[olen - 1] == '"');
	for (i = 1; i < olen - 1; i += n) {
		FUZZ_CHECK(o[i] >= 0x20 && o[i] != 0x7f && o[i] != '"');
		if (o[i] == '\\') {
			FUZZ_CHECK(i + 1 < olen - 1);
			if (o[i + 1] == 'u') {
				FUZZ_CHECK(i + 5 < olen - 1 && is_hex(o[i + 2]) &&
					   is_hex(o[i + 3]) && is_hex(o[i + 4]) &&
					   is_hex(o[i + 5]));
				n = 6;
			} else {
				FUZZ_CHECK(strchr("\"\\/bfnrt", o[i + 1]) && o[i + 1]);
				n = 2;
			}
			continue;
		}
		n = utf8_len(o + i, olen - 1 - i);
		FUZZ_CHECK(n > 0);
	}

	/* printable, valid UTF-8 input without quotes or backslashes passes unchanged */
	for (i = 0; i < size && plain; i += n) {
		n = utf8_len(data + i, size - i);
		plain = n && data[i] >= 0x20 && data[i] != 0x7f && data[i] != '"' &&
			data[i] != '\\';
		if (!n)
			n = 1;
	}
	if (plain)
		FUZZ_CHECK(olen == size + 2 && !memcmp(o + 1, data, size));
	free(out);
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static const char *const seeds[] = {
		"vm0",
		"running",
		"we\"ird\\\n\x01",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		"\xed\xa0\x80 surrogate",
		"\xc0\xaf overlong",
		"\xf4\x90\x80\x80 too big",
		"\x7f\x1f\t\r",
	};
	size_t i;

	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		add(ctx, (const uint8_t *)seeds[i], strlen(seeds[i]));
}
