/*
 * The set of page numbers a full snapshot has covered, for the stream
 * verifier (stream_verify.c): memory follows the pages actually present,
 * never mem_bytes, which is only a number in a header. Private to tools/castor.
 */
#ifndef CASTOR_STREAM_VERIFY_PFNS_H
#define CASTOR_STREAM_VERIFY_PFNS_H

#include <stddef.h>
#include <stdint.h>

#define LEAF_PAGES 512u

struct pfn_leaf {
	uint64_t key;
	uint64_t bits[LEAF_PAGES / 64];
};

struct pfn_set {
	struct pfn_leaf *slot;
	size_t cap; /* a power of two, or 0 */
	size_t used;
	uint64_t distinct; /* pages present */
};

/* Add one pfn: 0, or -ENOMEM. */
int pfn_set_add(struct pfn_set *s, uint64_t pfn);
void pfn_set_dispose(struct pfn_set *s);
/* The first few ranges of pfns in [0, npages) that the set lacks, as "3, 5-6, ...". */
void pfn_set_describe_missing(const struct pfn_set *s, uint64_t npages, char *out, size_t size);

#endif
