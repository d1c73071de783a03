/*
 * Frames out of a libevent input buffer, for the servers that read requests
 * on an event loop (castor-vmm's control.c, castord.c): the framing rules of
 * frame.c applied to an evbuffer that may hold part of a frame, one frame or
 * several.
 */
#include "proto/pb.h"

#include <errno.h>
#include <event2/buffer.h>

int pb_evbuffer_next(struct evbuffer *in, const ProtobufCMessageDescriptor *desc,
		     ProtobufCMessage **msg_out, size_t *frame_len_out)
{
	size_t len = evbuffer_get_length(in), flen = 0;
	enum pb_frame_status fs;
	uint8_t *data;

	*msg_out = NULL;
	*frame_len_out = 0;
	if (!len)
		return 0;
	data = evbuffer_pullup(in, len < PB_FRAME_HDR_LEN ? -1 : (ssize_t)PB_FRAME_HDR_LEN);
	fs = pb_frame_check(data, len, &flen);
	if (fs == PB_FRAME_TOO_BIG)
		return -EMSGSIZE;
	if (fs == PB_FRAME_NEED_MORE || len < flen)
		return 0;
	data = evbuffer_pullup(in, (ssize_t)flen);
	if (pb_frame_decode(desc, data + PB_FRAME_HDR_LEN, flen - PB_FRAME_HDR_LEN, msg_out) < 0)
		*msg_out = NULL;
	evbuffer_drain(in, flen);
	*frame_len_out = flen;
	return 1;
}
