/*
 * Owner-only files and sockets (util/files.c): a new file is 0600 whatever
 * the umask; a symbolic link, a directory or another user's file at the name
 * is refused and left as it was; a stale file of ours is replaced; a peer's
 * credentials are read; the log rate limiter lets one event per interval
 * through and counts the rest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

struct dir {
	char path[64];
	char name[PATH_MAX];
};

static int dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));

	snprintf(d->path, sizeof(d->path), "/tmp/castor-files.XXXXXX");
	if (!mkdtemp(d->path))
		return -1;
	snprintf(d->name, sizeof(d->name), "%s/snap.tmp", d->path);
	*state = d;
	return 0;
}

static int dir_teardown(void **state)
{
	struct dir *d = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
	if (system(cmd) != 0)
		return -1;
	free(d);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	return st.st_mode;
}

static void new_file_is_private(void **state)
{
	struct dir *d = *state;
	char why[256];
	mode_t old = umask(0);
	int fd = -1;

	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), 0);
	umask(old);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(mode_of(d->name) & 07777, 0600);
}

/* The attack of issue 12: a link at path.tmp must not make us write its target. */
static void symlink_refused(void **state)
{
	struct dir *d = *state;
	char target[PATH_MAX], why[512] = "", buf[16] = "";
	int fd = -1;
	FILE *f;

	snprintf(target, sizeof(target), "%s/victim", d->path);
	write_file(target, "precious");
	assert_int_equal(symlink(target, d->name), 0);
	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), -EEXIST);
	assert_int_equal(fd, -1);
	assert_non_null(strstr(why, "is a symbolic link"));
	assert_non_null(strstr(why, d->name));
	/* the link and its target are as they were */
	assert_true(S_ISLNK(mode_of(d->name)));
	f = fopen(target, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "precious");
	/* a dangling link too: O_CREAT would otherwise create its target */
	unlink(target);
	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), -EEXIST);
	assert_int_equal(access(target, F_OK), -1);
}

static void directory_refused(void **state)
{
	struct dir *d = *state;
	char why[512] = "";
	int fd = -1;

	assert_int_equal(mkdir(d->name, 0700), 0);
	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), -EEXIST);
	assert_non_null(strstr(why, "is a directory"));
	assert_true(S_ISDIR(mode_of(d->name)));
}

/* A crashed run's leftover of ours is replaced by a new, empty, 0600 file. */
static void stale_file_of_ours_replaced(void **state)
{
	struct dir *d = *state;
	char why[256];
	struct stat st;
	int fd = -1;

	write_file(d->name, "half a snapshot");
	assert_int_equal(chmod(d->name, 0644), 0);
	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

/* Another user's file is not ours to remove (needs root to make one). */
static void other_users_file_refused(void **state)
{
	struct dir *d = *state;
	char why[512] = "";
	int fd = -1;

	if (geteuid() != 0) {
		print_message("not root: cannot chown a file to another uid; checked as root\n");
		skip();
	}
	write_file(d->name, "theirs");
	assert_int_equal(chown(d->name, 65534, 65534), 0);
	assert_int_equal(util_file_create_private(d->name, &fd, why, sizeof(why)), -EEXIST);
	assert_non_null(strstr(why, "belongs to uid 65534"));
	assert_int_equal(access(d->name, F_OK), 0);
}

static void missing_directory(void **state)
{
	char why[256] = "";
	int fd = -1;

	assert_int_equal(util_file_create_private("/nonexistent-dir/x.tmp", &fd, why, sizeof(why)),
			 -ENOENT);
	assert_non_null(strstr(why, "cannot create /nonexistent-dir/x.tmp"));
}

static void peer_credentials(void **state)
{
	int sv[2];
	uint32_t uid = 12345;
	int32_t pid = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(util_peer_cred(sv[0], &uid, &pid), 0);
	assert_int_equal(uid, geteuid());
	assert_int_equal(pid, getpid());
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(util_peer_cred(-1, &uid, &pid), -EBADF);
	assert_true(util_uid_is_trusted(0));
	assert_true(util_uid_is_trusted(geteuid()));
	assert_false(util_uid_is_trusted(geteuid() + 1));
	assert_false(util_uid_is_trusted(65534));
}

static void rate_limit(void **state)
{
	struct util_ratelimit rl = {.interval_ns = 1000};
	uint64_t more = 99;

	assert_true(util_ratelimit_is_open(&rl, 5000, &more));
	assert_int_equal(more, 0);
	assert_false(util_ratelimit_is_open(&rl, 5001, &more));
	assert_false(util_ratelimit_is_open(&rl, 5999, &more));
	assert_true(util_ratelimit_is_open(&rl, 6000, &more));
	assert_int_equal(more, 2);
	assert_true(util_ratelimit_is_open(&rl, 9000, &more));
	assert_int_equal(more, 0);
	/* a clock at 0 on the first call still opens */
	rl = (struct util_ratelimit){.interval_ns = 1000};
	assert_true(util_ratelimit_is_open(&rl, 0, &more));
	assert_false(util_ratelimit_is_open(&rl, 10, &more));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(new_file_is_private, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(symlink_refused, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(directory_refused, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(stale_file_of_ours_replaced, dir_setup,
						dir_teardown),
		cmocka_unit_test_setup_teardown(other_users_file_refused, dir_setup, dir_teardown),
		cmocka_unit_test(missing_directory),
		cmocka_unit_test(peer_credentials),
		cmocka_unit_test(rate_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
