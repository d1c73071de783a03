/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * stream format's END record. The SSE4.2 crc32 instruction does 8 bytes a
 * step; a table serves CPUs without it.
 *
 * The instruction has a latency of 3 cycles but can start one a cycle, so
 * long buffers are cut into three blocks of STRIDE bytes whose CRCs run side
 * by side, then joined: the CRC register is linear, so
 *   crc(s, A B C) = shift(shift(crc(s, A)) ^ crc(0, B)) ^ crc(0, C)
 * where shift(t) = crc(t, STRIDE zero bytes), applied through four byte tables.
 */
#include "util/util.h"

#include <pthread.h>
#include <string.h>

#define STRIDE 4096u /* bytes per block of the three-way loop */

static uint32_t table[256];
static uint32_t shift_tab[4][256]; /* shift() of each byte of the register */
static bool have_sse42;

__attribute__((target("sse4.2"))) static uint32_t crc_hw1(uint32_t crc, const uint8_t *p,
							  size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}

/* shift_tab[k][v] = shift(v << 8k): each a CRC over STRIDE zero bytes. */
static void shift_init(void)
{
	static const uint8_t zeros[STRIDE];
	uint32_t basis[32];

	for (int b = 0; b < 32; b++)
		basis[b] = crc_hw1(1u << b, zeros, STRIDE);
	for (int k = 0; k < 4; k++)
		for (uint32_t v = 0; v < 256; v++) {
			uint32_t r = 0;

			for (int b = 0; b < 8; b++)
				if (v >> b & 1)
					r ^= basis[8 * k + b];
			shift_tab[k][v] = r;
		}
}

static void crc_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		table[i] = c;
	}
	have_sse42 = __builtin_cpu_supports("sse4.2");
	if (have_sse42)
		shift_init();
}

/* The CRC register after STRIDE zero bytes, from the tables. */
static uint32_t shift(uint32_t c)
{
	return shift_tab[0][c & 0xff] ^ shift_tab[1][(c >> 8) & 0xff] ^
	       shift_tab[2][(c >> 16) & 0xff] ^ shift_tab[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = __builtin_ia32_crc32qi(crc, *p++);
		len--;
	}
	for (; len >= 3 * STRIDE; len -= 3 * STRIDE, p += 3 * STRIDE) {
		uint64_t a = crc, b = 0, c = 0;

		for (size_t i = 0; i < STRIDE; i += 8) {
			uint64_t va, vb, vc;

			memcpy(&va, p + i, 8);
			memcpy(&vb, p + STRIDE + i, 8);
			memcpy(&vc, p + 2 * STRIDE + i, 8);
			a = __builtin_ia32_crc32di(a, va);
			b = __builtin_ia32_crc32di(b, vb);
			c = __builtin_ia32_crc32di(c, vc);
		}
		crc = shift(shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
	}
	return crc_hw1(crc, p, len);
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

uint32_t util_crc32c_update(uint32_t state, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, crc_init);
	return have_sse42 ? crc_hw(state, buf, len) : crc_sw(state, buf, len);
}

uint32_t util_crc32c_sw_update(uint32_t state, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, crc_init);
	return crc_sw(state, buf, len);
}
