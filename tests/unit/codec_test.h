/*
 * Helpers shared by the codec's unit tests (test_codec.c: round trips and the
 * encoder's choices; test_codec_bad.c: refused wire streams): a random source,
 * streams built by hand for shapes hypervisor/stream.c never writes, and a
 * revision-1 epoch as the hypervisor writes it. Include cmocka.h first.
 */
#ifndef CASTOR_TESTS_UNIT_CODEC_TEST_H
#define CASTOR_TESTS_UNIT_CODEC_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"
#include "replication/codec.h"

#define MEM    HV_MIN_MEM
#define NPAGES (MEM / HV_PAGE_SIZE)
#define PG     HV_PAGE_SIZE

uint64_t rnd(void); /* xorshift, the same sequence every run */
void fill_random(uint8_t *p, size_t len);
uint8_t *page(uint8_t *ram, uint64_t pfn);

/* A stream built by hand, for the shapes hypervisor/stream.c never writes. */
struct sb {
	uint8_t *buf;
	size_t len;
};
void sb_rec(struct sb *b, uint32_t type, const void *body, size_t len);
/* A header of revision `ver` for MEM bytes, incremental streams' parent id - 1. */
struct hv_stream_header mkheader(uint32_t ver, uint32_t kind, uint64_t id);
void sb_header(struct sb *b, uint32_t ver); /* an incremental HEADER, id 100 */
/*
 * Rewrite END (records, checksum, pages) for what precedes it, so that a test
 * of a broken rule is not caught by the checksum first. `buf` ends with END.
 */
void resign(uint8_t *buf, size_t len);
void sb_end(struct sb *b); /* append END, signed */
uint64_t ent(uint64_t pfn, unsigned enc);
/* A PAGES body: count entries, then the payloads. Its length. */
size_t pages_body(uint8_t *body, const uint64_t *ents, uint32_t count, const uint8_t *pl,
		  size_t pl_len);
/* A PAGES_ZSTD body around a frame given as is. Its length. */
size_t zstd_body(uint8_t *body, const uint64_t *ents, uint32_t count, uint64_t raw_len,
		 const uint8_t *frame, size_t flen);
/*
 * A revision-1 epoch as the hypervisor writes it: HEADER, the staged pages in
 * two PAGES records (split at `split`), then CLOCK, a DEVICE of odd length
 * and an unknown optional record, END. *buf_out is malloc'd.
 */
void write_epoch(uint64_t id, const uint64_t *pfns, size_t n, size_t split, const uint8_t *staged,
		 uint8_t **buf_out, size_t *len_out);

#endif
