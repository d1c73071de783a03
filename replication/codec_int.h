/*
 * What the encoder (codec_enc.c) and the decoder (codec_dec.c) share: little-
 * endian field access and the record writing both do. Private to codec*.c.
 */
#ifndef CASTOR_REPL_CODEC_INT_H
#define CASTOR_REPL_CODEC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "replication/codec.h"

#define PAGE_WORDS (HV_PAGE_SIZE / 8u)

static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static inline const char *codec_rec_name(uint32_t type)
{
	return type == REPL_REC_PAGES_ZSTD ? "PAGES_ZSTD" : hv_rec_type_str(type);
}

/* Capacity for `need` bytes in all; doubling, so a reused buffer stops growing. -ENOMEM. */
int codec_buf_reserve(struct repl_buf *b, size_t need);
/* The header and padding of a record whose body is already at start + 8. */
void codec_close_record(struct repl_buf *b, size_t start, uint32_t type, size_t len);
/* A record appended as it is (its type keeps the optional flag). */
int codec_copy_record(struct repl_buf *out, uint32_t type, const uint8_t *body, size_t len);
/* END over everything in `out`: HEADER up to here. */
int codec_finish_stream(struct repl_buf *out, uint64_t records, uint64_t pages);

#endif
