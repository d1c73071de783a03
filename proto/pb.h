/*
 * castor_pb: the control protocol's framing and client helpers. Control messages
 * (proto/control.proto, C types Castor__Request, Castor__Response, ...) travel
 * over unix stream sockets as frames: a 4-byte big-endian body length, then the
 * packed protobuf message. Lengths above PB_FRAME_MAX are refused before anything
 * is allocated.
 *
 * Event-loop servers (castor-vmm, castord) use the pure functions: pb_frame_check()
 * on the bytes received so far tells whether a whole frame is there, and
 * pb_frame_decode() unpacks its body; replies are built with pb_frame_pack().
 * Blocking clients (the CLI, tests) use pb_frame_send()/pb_frame_recv() on a
 * socket, or pb_call() for a whole request/response exchange. Every function
 * returns 0 or a negative errno; protobuf-c's NULL returns are translated here.
 *
 * Ownership: a message returned through msg_out/resp_out belongs to the caller,
 * who frees it with protobuf_c_message_free_unpacked(msg, NULL) (or the generated
 * castor__response__free_unpacked()). A buffer from pb_frame_pack() is freed
 * with free().
 */
#ifndef CASTOR_PROTO_PB_H
#define CASTOR_PROTO_PB_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "control.pb-c.h"

#define PB_FRAME_HDR_LEN 4u	    /* big-endian u32 body length */
#define PB_FRAME_MAX	 (1u << 20) /* largest accepted body, in bytes */

/* Default reply timeout of blocking clients, in milliseconds. */
#define PB_CALL_TIMEOUT_MS 5000

enum pb_frame_status {
	PB_FRAME_NEED_MORE, /* header or body incomplete: read more and call again */
	PB_FRAME_READY,	    /* a whole frame is at the start of the buffer */
	PB_FRAME_TOO_BIG,   /* the header announces more than PB_FRAME_MAX: drop the peer */
};

const char *pb_frame_status_str(enum pb_frame_status st);

/*
 * Frame `msg` into a new buffer (header + body) of *len_out bytes; the caller
 * frees *buf_out. -EMSGSIZE when the packed body exceeds PB_FRAME_MAX, -ENOMEM.
 */
int pb_frame_pack(const ProtobufCMessage *msg, uint8_t **buf_out, size_t *len_out);

/*
 * Look at a receive buffer holding `len` bytes so far. Only the first
 * min(len, PB_FRAME_HDR_LEN) bytes are read, so the rest need not be contiguous
 * (an evbuffer pulled up to the header is fine). *frame_len_out (may be NULL)
 * receives the total frame length, header included, as soon as the header is
 * complete and acceptable (NEED_MORE with >= 4 bytes, and READY); it is 0 when the
 * header is incomplete or TOO_BIG. A reader can therefore pass just the 4 header
 * bytes, learn how much to wait for, and decode the body at
 * buf + PB_FRAME_HDR_LEN, frame_len - PB_FRAME_HDR_LEN bytes, once it is there.
 */
enum pb_frame_status pb_frame_check(const uint8_t *buf, size_t len, size_t *frame_len_out);

/*
 * Unpack one frame body (without its header) as a message of type `desc`
 * (e.g. &castor__request__descriptor). -EBADMSG when it is not a valid encoding,
 * -EMSGSIZE when len > PB_FRAME_MAX. A zero-length body is a valid message with
 * every field at its default. Unknown fields are kept and ignored; a oneof whose
 * member this side does not know decodes as *_BODY__NOT_SET.
 */
int pb_frame_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len,
		    ProtobufCMessage **msg_out);

/*
 * Blocking send of one frame on a stream socket (MSG_NOSIGNAL: a closed peer is
 * -EPIPE, never SIGPIPE). Short writes and EINTR are retried; a non-blocking fd
 * is waited on with poll().
 */
int pb_frame_send(int fd, const ProtobufCMessage *msg);

/*
 * Blocking receive of one frame, decoded as `desc`. timeout_ms bounds the whole
 * frame (< 0: wait forever). Errors: -ETIMEDOUT; -ECONNRESET when the peer closes
 * before a complete frame (including before its first byte); -EMSGSIZE for a
 * length above PB_FRAME_MAX (nothing is allocated, the stream is unusable after);
 * -EBADMSG for a body that does not decode; other -errno from the socket.
 */
int pb_frame_recv(int fd, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg_out,
		  int timeout_ms);

/*
 * Connect a blocking, close-on-exec unix stream socket to `path`. -ENAMETOOLONG
 * when the path does not fit sockaddr_un, -EINVAL for an empty path, otherwise
 * connect()'s errno (-ENOENT, -ECONNREFUSED, -EACCES, ...). *fd_out is set on success only.
 */
int pb_unix_connect(const char *path, int *fd_out);

/*
 * One exchange: connect to socket_path, send `req`, wait up to timeout_ms for the
 * Response, close. Returns 0 when a Response with req->id arrived -- its `error`
 * field still has to be checked -- or one with id 0 and an error (the server's
 * answer to a request it could not read); -EPROTO when the reply carries another id.
 * Transport errors are those of pb_unix_connect()/pb_frame_send()/pb_frame_recv().
 */
int pb_call(const char *socket_path, const Castor__Request *req, Castor__Response **resp_out,
	    int timeout_ms);

/*
 * The next whole frame of a libevent input buffer (evframe.c): 0 when none is
 * complete yet; 1 when one was taken off the buffer (*frame_len_out bytes),
 * *msg_out then holding the message, or NULL when it does not decode (the
 * caller answers "malformed" and goes on); -EMSGSIZE when the next frame
 * announces more than PB_FRAME_MAX (drop the peer). The caller frees *msg_out.
 */
struct evbuffer;
int pb_evbuffer_next(struct evbuffer *in, const ProtobufCMessageDescriptor *desc,
		     ProtobufCMessage **msg_out, size_t *frame_len_out);

#endif
