/*
 * Shared by the harnesses that run replication's decoder (codec_common.c):
 * the receiver they play has CODEC_FUZZ_MEM bytes of RAM.
 */
#ifndef CASTOR_TESTS_FUZZ_CODEC_COMMON_H
#define CASTOR_TESTS_FUZZ_CODEC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"
#include "tests/fuzz/fuzz.h"

#define CODEC_FUZZ_MEM HV_MIN_MEM

/* The receiver's RAM, CODEC_FUZZ_MEM bytes of a fixed pattern: the decoder's XOR and PATCH base. */
uint8_t *codec_fuzz_ram(void);

/*
 * A copy of data with END's counts and checksum made right (when it is framed
 * well enough to find END), so that mutations get past the checksum to the
 * entry, length and zstd checks; NULL when END cannot be found. Free it.
 */
uint8_t *codec_fuzz_resigned(const uint8_t *data, size_t size);

/* Wire streams repl_encode() makes against codec_fuzz_ram(), and a revision-1 epoch. */
void codec_fuzz_seeds(fuzz_seed_fn add, void *ctx);

#endif
