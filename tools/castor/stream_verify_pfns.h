/*
 * The set of page numbers a stream's page entries have named, for the stream
 * verifier (a full snapshot's coverage, revision 2's rule against a delta for
 * a pfn seen before): memory follows the pages actually present,
 * never mem_bytes, which is only a number in a header. Private to tools/castor.
 */
#ifndef CASTOR_STREAM_VERIFY_PFNS_H
#define CASTOR_STREAM_VERIFY_PFNS_H

#include <stdbool.h>
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
/* Whether pfn has been added. */
bool pfn_set_has(const struct pfn_set *s, uint64_t pfn);
void pfn_set_dispose(struct pfn_set *s);
/* The first few ranges of pfns in [0, npages) that the set lacks, as "3, 5-6, ...". */
void pfn_set_describe_missing(const struct pfn_set *s, uint64_t npages, char *out, size_t size);

#endif
