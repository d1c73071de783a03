/*
 * Pre-shared key files (repl.h, docs/security.md "Key management"): 32
 * random bytes as 64 lower- or upper-case hex digits and a newline. Whoever
 * reads the file can impersonate either end of a replication link, so a key
 * is only taken from a regular file, not through a symbolic link, that
 * neither group nor others may read or write; the refusal says which file
 * and why, and how to fix it.
 */
#define LOG_TAG "key"
#include "replication/repl.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define KEY_HEX (2 * REPL_KEY_BYTES)

void repl_key_wipe(struct repl_key *k)
{
	sodium_memzero(k, sizeof(*k));
}

int repl_key_generate(const char *path, char *why, size_t why_len)
{
	uint8_t k[REPL_KEY_BYTES];
	char hex[KEY_HEX + 2];
	ssize_t r;
	int fd = -1, rc;

	if (sodium_init() < 0)
		return util_why(why, why_len, -EIO, "libsodium would not initialise");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot create the key file %s (%s)%s", path, strerror(-rc),
			 rc == -EEXIST ? ": it exists; a key is never overwritten" : "");
		goto out;
	}
	randombytes_buf(k, sizeof(k));
	sodium_bin2hex(hex, sizeof(hex), k, sizeof(k));
	hex[KEY_HEX] = '\n';
	r = write(fd, hex, KEY_HEX + 1);
	rc = r == KEY_HEX + 1 ? 0 : r < 0 ? -errno : -EIO;
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(why, why_len, "cannot write the key file %s (%s)", path, strerror(-rc));
		unlink(path);
	}
out:
	if (fd >= 0)
		close(fd);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(hex, sizeof(hex));
	return rc;
}

int repl_key_load(const char *path, struct repl_key *out, char *why, size_t why_len)
{
	char buf[KEY_HEX + 2];
	size_t bin_len = 0;
	struct stat st;
	ssize_t r;
	int fd = -1, rc = 0;

	if (sodium_init() < 0)
		return util_why(why, why_len, -EIO, "libsodium would not initialise");
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "key file %s: %s", path,
			 rc == -ELOOP ? "a symbolic link: name the file itself" : strerror(-rc));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = util_why(why, why_len, -errno, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = util_why(why, why_len, -EINVAL, "key file %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = util_why(why, why_len, -EPERM,
			      "key file %s: mode %04o lets group or others at the key: "
			      "chmod 600 it (and make a new key if others may have read it)",
			      path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	r = read(fd, buf, sizeof(buf));
	if (r < 0) {
		rc = util_why(why, why_len, -errno, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (r != KEY_HEX + 1 || buf[KEY_HEX] != '\n' ||
	    sodium_hex2bin(out->k, sizeof(out->k), buf, KEY_HEX, NULL, &bin_len, NULL) ||
	    bin_len != REPL_KEY_BYTES) {
		repl_key_wipe(out);
		rc = util_why(why, why_len, -EINVAL,
			      "key file %s: not a key (64 hex digits and a newline, as "
			      "`castor key generate` writes)",
			      path);
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}
