/*
 * Helpers the disk tests share (disk_test.c): a scratch folder, a small
 * tmpfs that fills up for real (mounted in a private mount namespace, so it
 * vanishes with the test process), and images whose contents are a pure
 * function of (seed, offset).
 */
#ifndef CASTOR_TEST_DISK_H
#define CASTOR_TEST_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * main() of a disk test: with small_fs_bytes, first (before any thread) a
 * private mount namespace and a tmpfs of that size at dt_small_fs_path (when
 * allowed: root; else dt_have_small_fs stays false, said once, and the tests
 * that need it skip), then the tests, then the tmpfs is gone.
 */
struct CMUnitTest;
extern char dt_small_fs_path[];
extern bool dt_have_small_fs;
int dt_run(const char *name, const struct CMUnitTest *tests, size_t n, uint64_t small_fs_bytes);

/* A new scratch folder under /tmp (path into dir); removed by dt_rmdir. */
void dt_mkdir(char *dir, size_t len);
void dt_rmdir(const char *dir);

/* dir/name into out. */
void dt_path(char *out, size_t len, const char *dir, const char *name);

/* A file of `size` bytes: a hole (sparse) or data from dt_fill. */
void dt_image(const char *path, uint64_t size, bool sparse, uint32_t seed);
/* Overwrite [off, off + len) of path with seeded data (seed 0: zeros). */
void dt_write(const char *path, uint64_t off, uint64_t len, uint32_t seed);
/* Seeded bytes: the same seed and offset give the same bytes. */
void dt_fill(uint8_t *buf, size_t len, uint64_t off, uint32_t seed);
/* True when both files hold the same bytes. */
bool dt_same(const char *a, const char *b);
/* True when [off, off + len) of path holds no data (SEEK_DATA). */
bool dt_is_hole(const char *path, uint64_t off, uint64_t len);

#endif
