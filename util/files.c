/*
 * Files and sockets that hold a guest's memory or control it. castor-vmm often
 * runs as root and writes into directories other users can write to, so what
 * it creates is owner-only and is never reached through a name someone else
 * planted; a control connection is let in only from root or our own uid.
 */
#define LOG_TAG "files"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_str(mode_t m)
{
	return S_ISLNK(m)    ? "a symbolic link"
	       : S_ISDIR(m)  ? "a directory"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISREG(m)  ? "a regular file"
			     : "a device or other special file";
}

/*
 * A name already there is either a stale file of ours from an interrupted
 * run -- a regular file we own, removed so the next open creates a fresh one
 * -- or something we refuse to touch. Removing is safe even if the name
 * changes under us: unlink acts on the name, never writes the inode behind
 * it, and the open that follows is O_EXCL|O_NOFOLLOW again.
 */
static int clear_stale(const char *path, char *why, size_t why_len)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		if (S_ISREG(st.st_mode))
			snprintf(why, why_len,
				 "%s exists and belongs to uid %u, not to us: remove it if it is "
				 "stale",
				 path, (unsigned)st.st_uid);
		else
			snprintf(why, why_len,
				 "%s exists and is %s: refusing to write through it (remove it if "
				 "it is stale)",
				 path, kind_str(st.st_mode));
		return -EEXIST;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	LOG_WARN("removed %s: a stale file of ours from an interrupted run", path);
	return 0;
}

int util_file_create_private(const char *path, int *fd_out, char *why, size_t why_len)
{
	int fd, tries, rc = -EEXIST;

	why[0] = 0;
	/* twice at most: a name that reappears after we cleared it is someone else's */
	for (tries = 0; tries < 2; tries++) {
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			*fd_out = fd;
			return 0;
		}
		rc = -errno;
		if (rc != -EEXIST)
			break;
		rc = clear_stale(path, why, why_len);
		if (rc < 0)
			break;
		rc = -EEXIST;
	}
	if (!why[0])
		snprintf(why, why_len, "cannot create %s: %s", path, strerror(-rc));
	return rc;
}

int util_peer_cred(int fd, uint32_t *uid_out, int32_t *pid_out)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*uid_out = cred.uid;
	*pid_out = cred.pid;
	return 0;
}

bool util_uid_is_trusted(uint32_t uid)
{
	return uid == 0 || uid == geteuid();
}
