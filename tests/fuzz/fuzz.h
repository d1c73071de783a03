/*
 * The contract of a Castor fuzz harness. A harness is one file defining
 * LLVMFuzzerTestOneInput(); it must never crash, leak or hang on any input, and
 * it aborts when the code under test breaks one of its rules. The same file
 * links into two programs (see CMakeLists.txt): the libFuzzer binary NAME
 * (clang, -DCASTOR_FUZZ=ON) and NAME_smoke, built with any compiler around
 * standalone_main.c, which runs deterministic pseudo-random and mutated-seed
 * inputs (and any files named on its command line) as a ctest.
 *
 * A harness may also define fuzz_seeds() to hand the smoke driver well-formed
 * inputs to mutate; `NAME_smoke -w DIR` writes them out as a libFuzzer corpus.
 */
#ifndef CASTOR_TESTS_FUZZ_H
#define CASTOR_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by fuzz_seeds() once per seed; the driver copies the bytes. */
typedef void (*fuzz_seed_fn)(void *ctx, const uint8_t *data, size_t len);

/* Optional (a weak default exists): add the harness's seed inputs. */
void fuzz_seeds(fuzz_seed_fn add, void *ctx);

/* In a harness, a broken rule is a crash the fuzzer reports with the input. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
