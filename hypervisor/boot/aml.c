/*
 * AML encoder for the VMM's DSDT (aml.h). Byte codes from ACPI 6.x chapter 20
 * (AML grammar) and section 6.4 (resource descriptors); integers in AML are
 * little-endian.
 *
 * A body's PkgLength counts itself, and its own size (1 to 4 bytes) depends on
 * the total, so *_begin() reserves the largest header and the matching end
 * slides the body back over what the shortest encoding did not use. AML holds
 * no absolute offsets, so moving a finished body is safe.
 */
#include "hypervisor/boot/aml.h"

#include <errno.h>
#include <string.h>

#define AML_ZERO_OP	      0x00
#define AML_ONE_OP	      0x01
#define AML_NAME_OP	      0x08
#define AML_BYTE_PREFIX	      0x0a
#define AML_WORD_PREFIX	      0x0b
#define AML_DWORD_PREFIX      0x0c
#define AML_STRING_PREFIX     0x0d
#define AML_QWORD_PREFIX      0x0e
#define AML_SCOPE_OP	      0x10
#define AML_BUFFER_OP	      0x11
#define AML_DUAL_NAME_PREFIX  0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX     0x5b
#define AML_DEVICE_OP	      0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR	      0x5c
#define AML_NULL_NAME	      0x00

#define RES_IRQ_NOFLAGS	   0x22 /* small item 0x04, 2 bytes */
#define RES_IO		   0x47 /* small item 0x08, 7 bytes */
#define RES_END_TAG	   0x79 /* small item 0x0f, 1 byte */
#define RES_MEMORY32_FIXED 0x86 /* large item 0x06 */
#define RES_EXT_IRQ	   0x89 /* large item 0x09 */

#define PKG_LENGTH_MAX 4 /* bytes of the longest PkgLength */
#define INTEGER_MAX    9 /* bytes of the longest integer (QWordPrefix + 8) */
#define NAME_SEGS_MAX  8 /* deeper than anything we name */

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	a->buf = buf;
	a->cap = buf ? cap : 0;
	a->len = a->peak = 0;
	a->overflow = false;
	a->bad_name = false;
}

int aml_status(const struct aml *a)
{
	if (a->bad_name)
		return -EINVAL;
	return a->overflow ? -ENOSPC : 0;
}

static void put(struct aml *a, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (a->overflow || n > a->cap - a->len)
		a->overflow = true;
	else
		memcpy(a->buf + a->len, p, n);
	a->len += n;
	if (a->len > a->peak)
		a->peak = a->len;
}

static void put8(struct aml *a, uint8_t v)
{
	put(a, &v, 1);
}

static void put16(struct aml *a, uint16_t v)
{
	const uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

	put(a, b, sizeof(b));
}

static void put32(struct aml *a, uint32_t v)
{
	const uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			      (uint8_t)(v >> 24)};

	put(a, b, sizeof(b));
}

/* The shortest encoding of v into out; its length. */
static size_t encode_integer(uint8_t out[INTEGER_MAX], uint64_t v)
{
	size_t n, i;

	if (v <= 1) {
		out[0] = v ? AML_ONE_OP : AML_ZERO_OP;
		return 1;
	}
	if (v <= 0xff) {
		out[0] = AML_BYTE_PREFIX;
		n = 1;
	} else if (v <= 0xffff) {
		out[0] = AML_WORD_PREFIX;
		n = 2;
	} else if (v <= 0xffffffffu) {
		out[0] = AML_DWORD_PREFIX;
		n = 4;
	} else {
		out[0] = AML_QWORD_PREFIX;
		n = 8;
	}
	for (i = 0; i < n; i++)
		out[1 + i] = (uint8_t)(v >> (8 * i));
	return 1 + n;
}

/*
 * PkgLength for a body of `body` bytes following it: one byte up to 63 in
 * all, else a lead byte (count of extra bytes in bits 7-6, low nibble in
 * bits 3-0) and up to three more bytes, 28 bits in all.
 */
static size_t encode_pkg_length(uint8_t out[PKG_LENGTH_MAX], size_t body)
{
	size_t n, total, i;

	if (body + 1 <= 0x3f) {
		out[0] = (uint8_t)(body + 1);
		return 1;
	}
	for (n = 2; n < PKG_LENGTH_MAX && body + n >= (1u << (4 + 8 * (n - 1))); n++)
		;
	total = body + n; /* callers stay far below 2^28 (the DSDT is a few KiB) */
	out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
	for (i = 1; i < n; i++)
		out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

void aml_integer(struct aml *a, uint64_t v)
{
	uint8_t b[INTEGER_MAX];

	put(a, b, encode_integer(b, v));
}

void aml_string(struct aml *a, const char *s)
{
	put8(a, AML_STRING_PREFIX);
	put(a, s, strlen(s) + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Three letters, five bits each (A = 1), then four hex digits; the 32-bit
 * value is stored most significant byte first, unlike every other integer.
 */
static int eisaid_value(const char *id, uint32_t *v_out)
{
	uint32_t v = 0;
	unsigned i;

	if (strlen(id) != 7)
		return -EINVAL;
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return -EINVAL;
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (i = 3; i < 7; i++) {
		if (hex_digit(id[i]) < 0)
			return -EINVAL;
		v = (v << 4) | (uint32_t)hex_digit(id[i]);
	}
	*v_out = v;
	return 0;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v;

	if (eisaid_value(id, &v) < 0) {
		a->bad_name = true;
		return;
	}
	{
		const uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
				      (uint8_t)v};

		put8(a, AML_DWORD_PREFIX);
		put(a, b, sizeof(b));
	}
}

static bool is_name_char(char c, bool lead)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!lead && c >= '0' && c <= '9');
}

struct name {
	bool root;
	size_t nsegs;
	char segs[NAME_SEGS_MAX][4];
};

/* Checked in full before anything is written, so a bad name leaves no trace. */
static int parse_name_string(const char *path, struct name *n)
{
	const char *p = path;

	n->root = *p == '\\';
	n->nsegs = 0;
	if (n->root)
		p++;
	while (*p) {
		size_t len = 0;

		if (n->nsegs == NAME_SEGS_MAX)
			return -EINVAL;
		while (p[len] && p[len] != '.') {
			if (len == 4 || !is_name_char(p[len], len == 0))
				return -EINVAL;
			len++;
		}
		if (len == 0)
			return -EINVAL;
		memset(n->segs[n->nsegs], '_', 4);
		memcpy(n->segs[n->nsegs], p, len);
		n->nsegs++;
		p += len;
		if (*p == '.' && !*++p)
			return -EINVAL; /* a trailing dot */
	}
	return n->root || n->nsegs ? 0 : -EINVAL;
}

static int parse_name(struct aml *a, const char *path, struct name *n)
{
	int rc = parse_name_string(path, n);

	if (rc < 0)
		a->bad_name = true;
	return rc;
}

static void put_name(struct aml *a, const struct name *n)
{
	size_t i;

	if (n->root)
		put8(a, AML_ROOT_CHAR);
	if (n->nsegs == 0) {
		put8(a, AML_NULL_NAME);
	} else if (n->nsegs == 2) {
		put8(a, AML_DUAL_NAME_PREFIX);
	} else if (n->nsegs > 2) {
		put8(a, AML_MULTI_NAME_PREFIX);
		put8(a, (uint8_t)n->nsegs);
	}
	for (i = 0; i < n->nsegs; i++)
		put(a, n->segs[i], 4);
}

void aml_name_string(struct aml *a, const char *path)
{
	struct name n;

	if (parse_name(a, path, &n) == 0)
		put_name(a, &n);
}

void aml_name(struct aml *a, const char *path)
{
	struct name n;

	if (parse_name(a, path, &n) < 0)
		return;
	put8(a, AML_NAME_OP);
	put_name(a, &n);
}

/* Leave room for the largest header of a body; the mark is where it starts. */
static size_t reserve(struct aml *a, size_t n)
{
	static const uint8_t zero[PKG_LENGTH_MAX + INTEGER_MAX];
	size_t mark = a->len;

	put(a, zero, n);
	return mark;
}

/*
 * Close a body opened with reserve(mark, reserved): write PkgLength, then
 * `head` (a Buffer's size), then slide the body down to follow them.
 */
static void close_body(struct aml *a, size_t mark, size_t reserved, const uint8_t *head,
		       size_t head_len)
{
	size_t body = a->len - mark - reserved;
	uint8_t pkg[PKG_LENGTH_MAX];
	size_t pkg_len = encode_pkg_length(pkg, head_len + body);

	if (!a->overflow) {
		memcpy(a->buf + mark, pkg, pkg_len);
		if (head_len)
			memcpy(a->buf + mark + pkg_len, head, head_len);
		memmove(a->buf + mark + pkg_len + head_len, a->buf + mark + reserved, body);
	}
	a->len = mark + pkg_len + head_len + body;
}

/*
 * A bad name still opens the body (with a null name), so that the caller's
 * aml_end() has a mark to close; aml_status() reports the name.
 */
static size_t begin_named(struct aml *a, const uint8_t *op, size_t op_len, const char *path)
{
	static const struct name null_name = {.root = false, .nsegs = 0};
	struct name n;
	size_t mark;

	if (parse_name(a, path, &n) < 0)
		n = null_name;
	put(a, op, op_len);
	mark = reserve(a, PKG_LENGTH_MAX);
	put_name(a, &n);
	return mark;
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	static const uint8_t op[] = {AML_SCOPE_OP};

	return begin_named(a, op, sizeof(op), path);
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	static const uint8_t op[] = {AML_EXT_OP_PREFIX, AML_DEVICE_OP};

	return begin_named(a, op, sizeof(op), path);
}

void aml_end(struct aml *a, size_t mark)
{
	close_body(a, mark, PKG_LENGTH_MAX, NULL, 0);
}

size_t aml_res_begin(struct aml *a)
{
	put8(a, AML_BUFFER_OP);
	return reserve(a, PKG_LENGTH_MAX + INTEGER_MAX);
}

void aml_res_end(struct aml *a, size_t mark)
{
	uint8_t size[INTEGER_MAX];
	size_t size_len;

	/* checksum 0: "the descriptors are valid" without one (ACPI 6.4.2.9) */
	put8(a, RES_END_TAG);
	put8(a, 0);
	size_len = encode_integer(size, a->len - mark - PKG_LENGTH_MAX - INTEGER_MAX);
	close_body(a, mark, PKG_LENGTH_MAX + INTEGER_MAX, size, size_len);
}

void aml_res_memory32_fixed(struct aml *a, bool rw, uint32_t base, uint32_t size)
{
	put8(a, RES_MEMORY32_FIXED);
	put16(a, 9); /* bytes after the length field */
	put8(a, rw ? 1 : 0);
	put32(a, base);
	put32(a, size);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	put8(a, RES_IO);
	put8(a, 1);	/* decodes 16 address bits */
	put16(a, base); /* minimum */
	put16(a, base); /* maximum: the range does not move */
	put8(a, 0);	/* alignment, meaningless for a fixed range */
	put8(a, len);
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	put8(a, RES_IRQ_NOFLAGS);
	put16(a, (uint16_t)(1u << (irq & 15)));
}

void aml_res_interrupt(struct aml *a, uint8_t flags, uint32_t gsi)
{
	put8(a, RES_EXT_IRQ);
	put16(a, 6); /* flags, count, one 32-bit interrupt number */
	put8(a, flags);
	put8(a, 1);
	put32(a, gsi);
}
