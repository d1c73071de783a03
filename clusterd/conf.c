/*
 * The line format of castord's files (castord.conf, VM definitions):
 *
 *   # a comment
 *   key = value
 *
 * One setting per line; blank lines and comments are skipped; whitespace
 * around the key and the value is not part of them. Anything else -- a line
 * without '=', an empty key, a NUL byte, a line over CD_CONF_MAX_LINE -- is
 * an error naming the file and the line. The meaning of keys is the caller's.
 */
#define LOG_TAG "conf"
#include "clusterd/cluster.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

bool cd_is_name(const char *s)
{
	size_t i, n = strlen(s);

	if (!n || n >= CD_NAME_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

int cd_conf_parse(const char *name, const char *text, size_t len, cd_conf_line_fn fn, void *arg,
		  char *why, size_t why_len)
{
	char line[CD_CONF_MAX_LINE + 1], what[256];
	size_t off = 0;
	unsigned no = 0;
	int rc = 0;

	if (len > CD_CONF_MAX_BYTES)
		return util_why(why, why_len, -EFBIG, "%s: over %u bytes", name, CD_CONF_MAX_BYTES);
	if (memchr(text, 0, len))
		return util_why(why, why_len, -EINVAL, "%s: a NUL byte: not a text file", name);
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (text + off)) : len - off;
		char *s, *eq, *key, *value;

		no++;
		if (n > CD_CONF_MAX_LINE)
			return util_why(why, why_len, -EINVAL, "%s:%u: a line over %u bytes", name,
					no, CD_CONF_MAX_LINE);
		memcpy(line, text + off, n);
		line[n] = 0;
		off += n + (nl ? 1 : 0);
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq)
			return util_why(why, why_len, -EINVAL,
					"%s:%u: expected 'key = value', got '%.60s'", name, no, s);
		*eq = 0;
		key = trim(s);
		value = trim(eq + 1);
		if (!*key)
			return util_why(why, why_len, -EINVAL, "%s:%u: a value without a key", name,
					no);
		what[0] = 0;
		rc = fn(arg, no, key, value, what, sizeof(what));
		if (rc < 0)
			return util_why(why, why_len, rc, "%s:%u: %s", name, no, what);
	}
	return 0;
}

int cd_conf_read_file(const char *path, char **buf_out, size_t *len_out, char *why, size_t why_len)
{
	char *buf = NULL;
	struct stat st;
	ssize_t r;
	int fd, rc = 0;

	*buf_out = NULL;
	*len_out = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return util_why(why, why_len, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = util_why(why, why_len, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > (off_t)CD_CONF_MAX_BYTES) {
		rc = util_why(why, why_len, -EFBIG, "%s: over %u bytes", path, CD_CONF_MAX_BYTES);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	r = read(fd, buf, (size_t)st.st_size + 1);
	if (r < 0)
		rc = util_why(why, why_len, -errno, "%s: %s", path, strerror(errno));
	else if (r > st.st_size) /* it grew while we read it */
		rc = util_why(why, why_len, -EAGAIN, "%s: changed while being read", path);
	if (rc < 0)
		goto out;
	*buf_out = buf;
	*len_out = (size_t)r;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}
