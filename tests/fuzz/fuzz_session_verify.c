/*
 * The independent verifier on captured replication connections
 * (tools/castor/stream_verify_session.c) on arbitrary bytes. The first byte
 * picks a start -- the raw bytes, or the bytes after a valid HELLO, or after a
 * keyed HELLO and its PROOF (then read as sealed records) -- so that short
 * inputs reach the frames. Rules: the verdict is 0 or -EBADMSG; a refusal
 * explains itself at an offset inside the input; reads of any size give the
 * same verdict; a valid capture has no bytes after a BYE.
 */
#include "tests/fuzz/fuzz.h"
#include "tools/castor/stream_verify_session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mem {
	const uint8_t *p;
	size_t left, step;
};

static ssize_t mem_read(void *ctx, uint8_t *buf, size_t len)
{
	struct mem *m = ctx;
	size_t n = len < m->left ? len : m->left;

	if (n > m->step)
		n = m->step;
	memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	return (ssize_t)n;
}

static size_t prefix(uint8_t kind, uint8_t *out)
{
	const uint64_t hello_magic = 0x4f4c454852545343ull, proof_magic = 0x464f525052545343ull;
	const uint32_t version = 2, flags = kind == 2 ? 1 : 0, ncpus = 1;
	const uint64_t mem = 16u << 20;

	if (!kind)
		return 0;
	memset(out, 0, 104);
	memcpy(out, &hello_magic, 8);
	memcpy(out + 8, &version, 4);
	memcpy(out + 12, &flags, 4);
	memcpy(out + 16, &mem, 8);
	memcpy(out + 24, &ncpus, 4);
	if (kind == 1)
		return 64;
	out[32] = 1; /* a nonce, with AUTH */
	memcpy(out + 64, &proof_magic, 8);
	return 104;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_verify_session a, b;
	struct mem ma, mb;
	uint8_t *buf;
	size_t pre, len;
	int ra, rb;

	if (size < 1)
		return 0;
	buf = malloc(104 + size);
	if (!buf)
		return 0;
	pre = prefix(data[0] % 3, buf);
	memcpy(buf + pre, data + 1, size - 1);
	len = pre + size - 1;
	ma = (struct mem){buf, len, len ? len : 1};
	mb = (struct mem){buf, len, 1 + data[0] % 7};
	ra = stream_verify_session(mem_read, &ma, &a);
	rb = stream_verify_session(mem_read, &mb, &b);
	FUZZ_CHECK(ra == 0 || ra == -EBADMSG);
	FUZZ_CHECK(ra == rb && a.epochs == b.epochs && a.offset == b.offset);
	if (ra) {
		FUZZ_CHECK(a.error[0] && !a.valid);
		FUZZ_CHECK(a.offset <= len);
	} else {
		FUZZ_CHECK(a.valid && a.bytes == len);
	}
	free(buf);
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static const uint8_t ping_bye[] = {1,	'C', 'S', 'T', 'R', 'P', 'I', 'N', 'G', 0,   0,
					   0,	0,   0,	  0,   0,   0,	 'C', 'S', 'T', 'R', 'B',
					   'Y', 'E', '!', 0,   0,   0,	 0,   0,   0,	0,   0};
	static const uint8_t sealed[] = {2, 16, 0, 0, 0, 'C', 'S', 'T', 'R', 'P', 'I', 'N', 'G',
					 0, 0,	0, 0, 0, 0,   0,   0,	0,   0,	  0,   0,   0,
					 0, 0,	0, 0, 0, 0,   0,   0,	0,   0,	  0};

	add(ctx, ping_bye, sizeof(ping_bye));
	add(ctx, sealed, sizeof(sealed));
}
