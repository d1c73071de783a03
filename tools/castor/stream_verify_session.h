/*
 * The independent verifier on a captured replication connection
 * (stream_verify_session.c): the bytes a primary sent, from its HELLO on
 * (docs/stream-format.md §8-§8.2). Each epoch's stream goes through
 * stream_verify_read(); the epochs must chain. Records of a keyed session are
 * read without checking their tags (that takes the key); an encrypted link
 * cannot be read.
 */
#ifndef CASTOR_TOOLS_STREAM_VERIFY_SESSION_H
#define CASTOR_TOOLS_STREAM_VERIFY_SESSION_H

#include "tools/castor/stream_verify.h"

struct stream_verify_session {
	bool valid;
	char error[SV_ERROR_MAX]; /* the first broken rule; "" when valid */
	uint64_t offset;	  /* invalid: where in the capture */
	/* the HELLO */
	uint32_t version, flags, ncpus;
	uint64_t mem_bytes;
	bool sealed;	  /* a keyed session: the frames were read through sealed records */
	uint64_t records; /* sealed records read */
	/* what followed */
	uint64_t epochs, pages, pings;
	bool bye;
	bool migration; /* the HELLO's MIGRATE: a live migration's source (§8.3) */
	bool switched;	/* it ended with SWITCH: the destination was told to run the VM */
	/* DISK frames (§8.4): frames, §10 records, disks sealed by epoch 0 (a bit each) */
	uint64_t disk_frames, disk_records;
	uint32_t disks;
	uint32_t sealed_now;  /* disks sealed for the epoch under way */
	uint32_t written_now; /* disks with records in the epoch under way */
	uint64_t last_stream_id;
	uint64_t bytes; /* of the capture read */
	/*
	 * Postcopy (§8.6): a POSTCOPY frame named pc_named pages before the last
	 * epoch; after SWITCH, pc_pages PAGE messages (pc_zero of them zero
	 * pages), then END. A RESUME capture starts with the messages.
	 */
	bool postcopy, resume, pc_end;
	uint64_t pc_named, pc_pages, pc_zero;
	uint64_t pc_epochs_at;			/* epochs before the POSTCOPY frame */
	uint64_t *pc_named_bits, *pc_sent_bits; /* internal: freed before return */
};

/* 0 valid, -EBADMSG not (s->error says why), another -errno when it could not be read. */
int stream_verify_session(stream_verify_read_fn read_cb, void *read_ctx,
			  struct stream_verify_session *s);

#endif
