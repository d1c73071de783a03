/*
 * The set of page numbers a full snapshot has covered (stream_verify_pfns.h):
 * a hash table of 512-page leaves, keyed by pfn / 512 + 1 (0 marks a free slot).
 */
#include "tools/castor/stream_verify_pfns.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t leaf_hash(uint64_t key, size_t cap)
{
	key *= 0x9e3779b97f4a7c15ull;
	return (size_t)(key ^ (key >> 32)) & (cap - 1);
}

static struct pfn_leaf *pfn_set_slot(struct pfn_leaf *slot, size_t cap, uint64_t key)
{
	size_t i = leaf_hash(key, cap);

	while (slot[i].key && slot[i].key != key)
		i = (i + 1) & (cap - 1);
	return &slot[i];
}

static int pfn_set_grow(struct pfn_set *s)
{
	size_t ncap = s->cap ? 2 * s->cap : 64, i;
	struct pfn_leaf *nslot;

	nslot = calloc(ncap, sizeof(*nslot));
	if (!nslot)
		return -ENOMEM;
	for (i = 0; i < s->cap; i++)
		if (s->slot[i].key)
			*pfn_set_slot(nslot, ncap, s->slot[i].key) = s->slot[i];
	free(s->slot);
	s->slot = nslot;
	s->cap = ncap;
	return 0;
}

int pfn_set_add(struct pfn_set *s, uint64_t pfn)
{
	uint64_t key = pfn / LEAF_PAGES + 1, mask;
	struct pfn_leaf *leaf;
	unsigned bit;
	int rc;

	if (2 * (s->used + 1) > s->cap) {
		rc = pfn_set_grow(s);
		if (rc < 0)
			return rc;
	}
	leaf = pfn_set_slot(s->slot, s->cap, key);
	if (!leaf->key) {
		leaf->key = key;
		s->used++;
	}
	bit = (unsigned)(pfn % LEAF_PAGES);
	mask = 1ull << (bit % 64);
	if (!(leaf->bits[bit / 64] & mask)) {
		leaf->bits[bit / 64] |= mask;
		s->distinct++;
	}
	return 0;
}

bool pfn_set_has(const struct pfn_set *s, uint64_t pfn)
{
	const struct pfn_leaf *leaf;
	uint64_t key = pfn / LEAF_PAGES + 1;
	unsigned bit = (unsigned)(pfn % LEAF_PAGES);

	if (!s->cap)
		return false;
	leaf = pfn_set_slot(s->slot, s->cap, key);
	return leaf->key && (leaf->bits[bit / 64] & 1ull << (bit % 64));
}

void pfn_set_dispose(struct pfn_set *s)
{
	free(s->slot);
	s->slot = NULL;
	s->cap = s->used = 0;
	s->distinct = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#define MISSING_RANGES_SHOWN 4

struct range_list {
	char *out;
	size_t size, len;
	unsigned n;
	bool more;
};

/* Append "a" or "a-b"; returns false once enough ranges have been listed. */
static bool range_add(struct range_list *r, uint64_t first, uint64_t last)
{
	int k;

	if (r->n == MISSING_RANGES_SHOWN) {
		r->more = true;
		return false;
	}
	if (first == last)
		k = snprintf(r->out + r->len, r->size - r->len, "%s%" PRIu64, r->n ? ", " : "",
			     first);
	else
		k = snprintf(r->out + r->len, r->size - r->len, "%s%" PRIu64 "-%" PRIu64,
			     r->n ? ", " : "", first, last);
	if (k > 0 && (size_t)k < r->size - r->len)
		r->len += (size_t)k;
	r->n++;
	return true;
}

/* The first few ranges of pfns in [0, npages) that the set lacks, as "3, 5-6, ...". */
void pfn_set_describe_missing(const struct pfn_set *s, uint64_t npages, char *out, size_t size)
{
	struct range_list r = {.out = out, .size = size};
	uint64_t *keys, next = 0, base, pfn, open = 0;
	bool is_open = false, go = true;
	size_t n = 0, i;
	unsigned b;

	out[0] = '\0';
	keys = malloc((s->used ? s->used : 1) * sizeof(*keys));
	if (!keys)
		return;
	for (i = 0; i < s->cap; i++)
		if (s->slot[i].key)
			keys[n++] = s->slot[i].key;
	qsort(keys, n, sizeof(*keys), cmp_u64);
	for (i = 0; i < n && go; i++) {
		const struct pfn_leaf *leaf = pfn_set_slot(s->slot, s->cap, keys[i]);

		base = (keys[i] - 1) * LEAF_PAGES;
		if (base > next && !is_open) {
			open = next;
			is_open = true;
		}
		for (b = 0; b < LEAF_PAGES && go; b++) {
			pfn = base + b;
			if (pfn >= npages)
				break;
			if (!is_open && b % 64 == 0 && leaf->bits[b / 64] == ~0ull) {
				b += 63;
				continue;
			}
			if (leaf->bits[b / 64] & (1ull << (b % 64))) {
				if (is_open)
					go = range_add(&r, open, pfn - 1);
				is_open = false;
			} else if (!is_open) {
				open = pfn;
				is_open = true;
			}
		}
		next = base + LEAF_PAGES;
	}
	if (go) {
		if (next < npages && !is_open) {
			open = next;
			is_open = true;
		}
		if (is_open)
			range_add(&r, open, npages - 1);
	}
	if (r.more && r.len + 6 < r.size)
		strcat(out, ", ...");
	free(keys);
}
