/* Helpers of the disk tests (disk_test.h). */
#include "disk_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

char dt_small_fs_path[PATH_MAX];
bool dt_have_small_fs;

static bool small_fs(uint64_t bytes)
{
	char opts[64];

	if (unshare(CLONE_NEWNS) < 0) {
		printf("no private mount namespace (%s): the disk-full tests skip\n",
		       strerror(errno));
		return false;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("cannot make mounts private (%s): the disk-full tests skip\n",
		       strerror(errno));
		return false;
	}
	dt_mkdir(dt_small_fs_path, PATH_MAX);
	snprintf(opts, sizeof(opts), "size=%llu", (unsigned long long)bytes);
	if (mount("castor-test", dt_small_fs_path, "tmpfs", 0, opts) < 0) {
		printf("cannot mount a tmpfs (%s): the disk-full tests skip\n", strerror(errno));
		rmdir(dt_small_fs_path);
		return false;
	}
	return true;
}

int dt_run(const char *name, const struct CMUnitTest *tests, size_t n, uint64_t small_fs_bytes)
{
	int rc;

	dt_have_small_fs = small_fs_bytes && small_fs(small_fs_bytes);
	rc = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
	if (dt_have_small_fs) {
		umount2(dt_small_fs_path, MNT_DETACH);
		rmdir(dt_small_fs_path);
	}
	return rc;
}

void dt_mkdir(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/castor-disk.XXXXXX");
	assert_non_null(mkdtemp(dir));
}

void dt_rmdir(const char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

void dt_path(char *out, size_t len, const char *dir, const char *name)
{
	assert_true((size_t)snprintf(out, len, "%s/%s", dir, name) < len);
}

void dt_fill(uint8_t *buf, size_t len, uint64_t off, uint32_t seed)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = (off + i) / 8 * 0x9e3779b97f4a7c15ull + seed * 0xbf58476d1ce4e5b9ull;

		x ^= x >> 31;
		buf[i] = seed ? (uint8_t)(x >> (8 * ((off + i) % 8))) : 0;
	}
}

void dt_write(const char *path, uint64_t off, uint64_t len, uint32_t seed)
{
	uint8_t buf[65536];
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	while (len) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);

		dt_fill(buf, n, off, seed);
		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
		off += n;
		len -= n;
	}
	close(fd);
}

void dt_image(const char *path, uint64_t size, bool sparse, uint32_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	if (!sparse)
		dt_write(path, 0, size, seed);
}

bool dt_same(const char *a, const char *b)
{
	uint8_t x[65536], y[65536];
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	bool same = fa >= 0 && fb >= 0;

	while (same) {
		ssize_t n = read(fa, x, sizeof(x)), m = read(fb, y, sizeof(y));

		same = n == m && n >= 0 && !memcmp(x, y, (size_t)(n > 0 ? n : 0));
		if (n <= 0)
			break;
	}
	close(fa);
	close(fb);
	return same;
}

bool dt_is_hole(const char *path, uint64_t off, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	off_t d;

	assert_true(fd >= 0);
	d = lseek(fd, (off_t)off, SEEK_DATA);
	close(fd);
	return (d < 0 && errno == ENXIO) || (uint64_t)d >= off + len;
}
