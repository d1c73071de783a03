#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int util_bitmap_init(struct util_bitmap *b, uint64_t nbits)
{
	size_t words = UTIL_BITMAP_WORDS(nbits);

	b->nbits = 0;
	b->words = calloc(words ? words : 1, sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	return 0;
}

void util_bitmap_dispose(struct util_bitmap *b)
{
	free(b->words);
	b->words = NULL;
	b->nbits = 0;
}

void util_bitmap_clear_all(struct util_bitmap *b)
{
	memset(b->words, 0, UTIL_BITMAP_WORDS(b->nbits) * sizeof(uint64_t));
}

/* Bits past nbits in the last word stay clear, so counts and compares stay exact. */
static void trim_tail(struct util_bitmap *b)
{
	if (b->nbits % 64)
		b->words[b->nbits / 64] &= (1ull << (b->nbits % 64)) - 1;
}

void util_bitmap_set_all(struct util_bitmap *b)
{
	memset(b->words, 0xff, UTIL_BITMAP_WORDS(b->nbits) * sizeof(uint64_t));
	trim_tail(b);
}

void util_bitmap_set(struct util_bitmap *b, uint64_t bit)
{
	if (bit < b->nbits)
		b->words[bit / 64] |= 1ull << (bit % 64);
}

void util_bitmap_clear(struct util_bitmap *b, uint64_t bit)
{
	if (bit < b->nbits)
		b->words[bit / 64] &= ~(1ull << (bit % 64));
}

bool util_bitmap_is_set(const struct util_bitmap *b, uint64_t bit)
{
	return bit < b->nbits && (b->words[bit / 64] >> (bit % 64)) & 1;
}

void util_bitmap_set_range(struct util_bitmap *b, uint64_t first, uint64_t count)
{
	uint64_t end, bit;

	if (first >= b->nbits)
		return;
	end = count > b->nbits - first ? b->nbits : first + count;
	bit = first;
	while (bit < end && bit % 64)
		util_bitmap_set(b, bit++);
	while (bit + 64 <= end) {
		b->words[bit / 64] = ~0ull;
		bit += 64;
	}
	while (bit < end)
		util_bitmap_set(b, bit++);
}

uint64_t util_bitmap_count(const struct util_bitmap *b)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; i < UTIL_BITMAP_WORDS(b->nbits); i++)
		n += (uint64_t)__builtin_popcountll(b->words[i]);
	return n;
}

void util_bitmap_or(struct util_bitmap *dst, const struct util_bitmap *src)
{
	uint64_t nbits = dst->nbits < src->nbits ? dst->nbits : src->nbits;
	size_t i, full = nbits / 64;

	for (i = 0; i < full; i++)
		dst->words[i] |= src->words[i];
	if (nbits % 64)
		dst->words[full] |= src->words[full] & ((1ull << (nbits % 64)) - 1);
}

uint64_t util_bitmap_next_set(const struct util_bitmap *b, uint64_t from)
{
	uint64_t i, w;

	if (from >= b->nbits)
		return b->nbits;
	i = from / 64;
	w = b->words[i] & (~0ull << (from % 64));
	for (;;) {
		if (w) {
			uint64_t bit = i * 64 + (uint64_t)__builtin_ctzll(w);

			return bit < b->nbits ? bit : b->nbits;
		}
		if (++i >= UTIL_BITMAP_WORDS(b->nbits))
			return b->nbits;
		w = b->words[i];
	}
}

bool util_bitmap_is_equal(const struct util_bitmap *a, const struct util_bitmap *b)
{
	return a->nbits == b->nbits &&
	       !memcmp(a->words, b->words, UTIL_BITMAP_WORDS(a->nbits) * sizeof(uint64_t));
}
