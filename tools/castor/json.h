/*
 * A tiny streaming JSON writer for the CLI's --json output: one compact object
 * per line, keys in call order, no DOM. Strings are escaped per RFC 8259; bytes
 * that are not valid UTF-8 become U+FFFD, so output is valid JSON whatever a
 * server sent. Usage:
 *
 *	struct cli_json j;
 *	cli_json_init(&j, stdout);
 *	cli_json_object_begin(&j, NULL);
 *	cli_json_str(&j, "name", name);
 *	cli_json_array_begin(&j, "vcpu"); ... cli_json_array_end(&j);
 *	cli_json_object_end(&j);
 *	rc = cli_json_finish(&j);
 *
 * `key` is the member name inside an object and must be NULL inside an array or
 * at the top level. Misuse (unbalanced ends, nesting deeper than
 * CLI_JSON_MAX_DEPTH, a missing or stray key) is recorded and reported by
 * cli_json_finish() as -EINVAL.
 */
#ifndef CASTOR_CLI_JSON_H
#define CASTOR_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_JSON_MAX_DEPTH 16

struct cli_json {
	FILE *f;
	unsigned depth;			    /* open containers */
	bool in_object[CLI_JSON_MAX_DEPTH]; /* container kind per level */
	bool has_items[CLI_JSON_MAX_DEPTH]; /* a comma is due before the next item */
	bool has_value;			    /* the top-level value has begun */
	bool misuse;
};

void cli_json_init(struct cli_json *j, FILE *f);
void cli_json_object_begin(struct cli_json *j, const char *key);
void cli_json_object_end(struct cli_json *j);
void cli_json_array_begin(struct cli_json *j, const char *key);
void cli_json_array_end(struct cli_json *j);
void cli_json_str(struct cli_json *j, const char *key, const char *s); /* NULL -> null */
void cli_json_u64(struct cli_json *j, const char *key, uint64_t v);
void cli_json_i64(struct cli_json *j, const char *key, int64_t v);
void cli_json_double(struct cli_json *j, const char *key, double v); /* NaN/inf -> null */
void cli_json_bool(struct cli_json *j, const char *key, bool v);
/* Write the escaped, quoted form of s (len bytes, NULs included) to f. */
void cli_json_write_string(FILE *f, const char *s, size_t len);
/* Close the line; 0, -EINVAL on misuse or open containers, -EIO on a write error. */
int cli_json_finish(struct cli_json *j);

#endif
