/* Streaming JSON writer of the CLI (see json.h). */
#include "tools/castor/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

/*
 * Length of the well-formed UTF-8 sequence at s (at most `left` bytes), or 0.
 * Rejects overlong forms, surrogates and code points above U+10FFFF (RFC 3629).
 */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (left < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void cli_json_write_string(FILE *f, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, n;

	fputc('"', f);
	while (i < len) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c == '\r') {
			fputs("\\r", f);
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (c < 0x80) {
			fputc(c, f);
		} else {
			n = utf8_seq_len(s + i, len - i);
			if (!n) {
				fputs("\\ufffd", f);
				i++;
				continue;
			}
			fwrite(s + i, 1, n, f);
			i += n;
			continue;
		}
		i++;
	}
	fputc('"', f);
}

/* Comma and key before a value; records misuse instead of writing bad JSON. */
static bool item_begin(struct cli_json *j, const char *key)
{
	bool in_object = j->depth && j->in_object[j->depth - 1];

	if (j->misuse || (in_object != (key != NULL))) {
		j->misuse = true;
		return false;
	}
	if (j->depth) {
		if (j->has_items[j->depth - 1])
			fputc(',', j->f);
		j->has_items[j->depth - 1] = true;
	} else if (j->has_value) {
		/* a second top-level value would not be one JSON document */
		j->misuse = true;
		return false;
	} else {
		j->has_value = true;
	}
	if (key) {
		cli_json_write_string(j->f, key, strlen(key));
		fputc(':', j->f);
	}
	return true;
}

static void container_begin(struct cli_json *j, const char *key, bool is_object)
{
	if (j->depth >= CLI_JSON_MAX_DEPTH) {
		j->misuse = true;
		return;
	}
	if (!item_begin(j, key))
		return;
	fputc(is_object ? '{' : '[', j->f);
	j->depth++;
	j->in_object[j->depth - 1] = is_object;
	j->has_items[j->depth - 1] = false;
}

static void container_end(struct cli_json *j, bool is_object)
{
	if (j->misuse || !j->depth || j->in_object[j->depth - 1] != is_object) {
		j->misuse = true;
		return;
	}
	j->depth--;
	fputc(is_object ? '}' : ']', j->f);
}

void cli_json_object_begin(struct cli_json *j, const char *key)
{
	container_begin(j, key, true);
}

void cli_json_object_end(struct cli_json *j)
{
	container_end(j, true);
}

void cli_json_array_begin(struct cli_json *j, const char *key)
{
	container_begin(j, key, false);
}

void cli_json_array_end(struct cli_json *j)
{
	container_end(j, false);
}

void cli_json_str(struct cli_json *j, const char *key, const char *s)
{
	if (!item_begin(j, key))
		return;
	if (s)
		cli_json_write_string(j->f, s, strlen(s));
	else
		fputs("null", j->f);
}

void cli_json_u64(struct cli_json *j, const char *key, uint64_t v)
{
	if (item_begin(j, key))
		fprintf(j->f, "%" PRIu64, v);
}

void cli_json_i64(struct cli_json *j, const char *key, int64_t v)
{
	if (item_begin(j, key))
		fprintf(j->f, "%" PRId64, v);
}

void cli_json_double(struct cli_json *j, const char *key, double v)
{
	if (!item_begin(j, key))
		return;
	if (isfinite(v))
		fprintf(j->f, "%.15g", v);
	else
		fputs("null", j->f);
}

void cli_json_bool(struct cli_json *j, const char *key, bool v)
{
	if (item_begin(j, key))
		fputs(v ? "true" : "false", j->f);
}

int cli_json_finish(struct cli_json *j)
{
	if (j->misuse || j->depth || !j->has_value)
		return -EINVAL;
	fputc('\n', j->f);
	if (fflush(j->f) == EOF || ferror(j->f))
		return -EIO;
	return 0;
}
