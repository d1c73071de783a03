/*
 * Blocking client side of the control socket: connect to a unix socket path and
 * run one request/response exchange. Servers never use this file.
 */
#define LOG_TAG "pb"

#include "proto/pb.h"
#include "util/util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int pb_unix_connect(const char *path, int *fd_out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;
	int fd = -1;
	int rc;

	if (!path || !*path)
		return -EINVAL;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	/*
	 * A unix-socket connect() completes or fails at once unless the listen
	 * backlog is full; after EINTR it carries on in the kernel, so a retry that
	 * reports EISCONN means success.
	 */
	for (;;) {
		if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EISCONN)
			break;
		rc = -errno;
		goto out;
	}
	*fd_out = fd;
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int pb_call(const char *socket_path, const Castor__Request *req, Castor__Response **resp_out,
	    int timeout_ms)
{
	ProtobufCMessage *msg = NULL;
	Castor__Response *resp;
	int fd = -1;
	int rc;

	rc = pb_unix_connect(socket_path, &fd);
	if (rc < 0)
		goto out;
	rc = pb_frame_send(fd, &req->base);
	if (rc < 0)
		goto out;
	rc = pb_frame_recv(fd, &castor__response__descriptor, &msg, timeout_ms);
	if (rc < 0)
		goto out;
	resp = (Castor__Response *)msg;
	/* id 0 with an error: the server could not read the request at all */
	if (resp->id != req->id && !(resp->id == 0 && resp->error)) {
		LOG_DBG("%s: reply id %llu for request %llu", socket_path,
			(unsigned long long)resp->id, (unsigned long long)req->id);
		rc = -EPROTO;
		goto out;
	}
	*resp_out = resp;
	msg = NULL;
	rc = 0;
out:
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
	if (fd >= 0)
		close(fd);
	return rc;
}
