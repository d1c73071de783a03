/*
 * The secondary's insides, shared by secondary.c (the connection, the twin's
 * RAM, failover), secondary_disk.c (the twin's writable disks) and
 * secondary_pc.c (postcopy's destination). Nothing outside them includes it.
 */
#ifndef CASTOR_REPLICATION_SECONDARY_INT_H
#define CASTOR_REPLICATION_SECONDARY_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "replication/codec.h"
#include "replication/disk_int.h"
#include "replication/engine.h"

struct repl_secondary {
	struct repl_secondary_opts o;
	struct repl_key key; /* o.key points here (wiped on free) */
	char *listen_addr;
	const struct repl_transport_ops *t;
	struct repl_listener *listener;
	pthread_t thread, listen_thread;
	bool thread_live, listen_live;
	struct repl_buf decoded;
	struct repl_patches patches; /* the decoded epoch's PATCH pages, into rx */
	uint8_t *rx;		     /* the epoch being received, kept across epochs */
	size_t rx_cap;
	uint64_t first_max; /* the largest initial copy the welcomed primary may send */
	bool sums;	    /* the welcomed primary asked for the disks' digests (§8.5) */

	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t cond;  /* a primary was handed over, or stop */
	bool stop;
	bool taken;			/* a primary's copy arrived: no other primary, ever */
	struct repl_conn *pending;	/* welcomed, not yet picked up by the receiver */
	struct repl_seal *pending_seal; /* its link's seal (NULL: plain), handed over with it */
	struct repl_conn *conn;		/* the primary being served */
	struct hv_vm *twin; /* NULL until the full copy is applied; handed out on failover */
	struct repl_link switch_link; /* a migration's source waiting for RUNNING */
	bool switch_held;
	bool twin_broken;    /* an apply failed half-way, or verify found it different */
	uint64_t commit_ns;  /* when the newest checkpoint (epoch) was applied whole */
	uint64_t applied_id; /* its stream id: where a resumed primary picks up */
	bool pending_resume; /* the welcomed primary resumes (async mode, §8.7) */
	struct repl_status st;
	/* held while an epoch is applied, and by failover: never both at once */
	pthread_mutex_t apply_lock;

	/*
	 * Postcopy (§8.6, secondary_pc.c): the pages the source named before
	 * its final epoch; after the switch, the thread that places them into
	 * the running VM (pc_vm) from pc_link. Every send on that link takes
	 * pc_send_lock (the fault thread's requests, RUNNING, DONE).
	 */
	struct util_bitmap pc_missing;
	pthread_mutex_t pc_send_lock;
	struct repl_link pc_link;
	struct hv_vm *pc_vm;
	pthread_t pc_thread;
	bool pc_live;
	bool pc_stop;	    /* under lock: the placing thread ends */
	bool pc_req_failed; /* under pc_send_lock: a request failed on this link (said once) */
	uint16_t pc_port;   /* where we listened: a source that lost its link comes back there */

	/* the twin's writable disks (receiving thread only) */
	struct twin_disk {
		int fd; /* -1: none, or read-only */
		uint64_t bytes;
		struct repl_disk_epoch *buf; /* epochs from 1 on; epoch 0 is written at once */
		bool replicated;	     /* the primary sealed epoch 0 for it */
		uint64_t ops0, bytes0;	     /* epoch 0's records as written */
		bool seal_valid;
		uint64_t seal_epoch, seal_ops, seal_bytes;
	} disks[REPL_DISK_MAX];
};

const char *secondary_name(struct repl_secondary *s);
/* last_error = fmt with what, under the lock, and logged. */
void secondary_note_error(struct repl_secondary *s, const char *fmt, const char *what);

/* ---- postcopy's destination (secondary_pc.c, docs/stream-format.md §8.6) ---- */

/* A POSTCOPY frame: the pages the final epoch will not carry. */
int twin_pc_frame(struct repl_secondary *s, const uint8_t *buf, size_t len);
/* Before the switched twin starts: its missing pages dropped and made to fault. */
int twin_pc_begin(struct repl_secondary *s, struct hv_vm *twin);
/*
 * The switch answered: RUNNING (status rc) sent; with postcopy and rc 0 the
 * link goes to the thread that places the pages (true: the caller must
 * neither dispose nor close it).
 */
bool twin_pc_answer(struct repl_secondary *s, int rc, int *send_rc);
/* The placing thread stopped and joined; the bitmap freed. */
void twin_pc_stop(struct repl_secondary *s);

/* ---- the twin's writable disks (secondary_disk.c; docs/stream-format.md §8.4, §8.5) ---- */

/* Open the --disk copies the replica writes (read-only ones are left alone). */
int twin_disks_open(struct repl_secondary *s, char *why, size_t why_len);
void twin_disks_close(struct repl_secondary *s);
/* A DISK frame of epoch `epoch`: each record checked and taken (epoch 0's written at once). */
int twin_disk_frame(struct repl_secondary *s, const uint8_t *buf, size_t len, uint64_t epoch);
/*
 * Epoch `epoch` arrived whole: the seals checked, the writes applied (made
 * durable for epoch 0). Returns how many disks were committed, or -errno.
 */
int twin_disks_commit(struct repl_secondary *s, uint64_t epoch);
/*
 * Verify mode: the epoch's DISK_DIGEST records (in its decoded stream), each
 * compared with our copy, its writes committed. 0, -EILSEQ when a copy
 * differs (the twin is then unusable), -EBADMSG for a record that names no
 * copy this replica writes.
 */
int twin_disks_verify(struct repl_secondary *s, const uint8_t *stream, size_t len, uint64_t epoch);
/*
 * A DR test's copy: disk i into fds[i] where that is >= 0, as the images stand
 * (under apply_lock: the last applied epoch's). FICLONE where the file system
 * shares extents, else copy_file_range, else read and write; made durable.
 */
int twin_disks_copy(struct repl_secondary *s, const int *fds, unsigned n, uint64_t *bytes_out,
		    char *why, size_t why_len);
/* The stream stopped during `epoch`: its writes are dropped. */
void twin_disks_discard(struct repl_secondary *s, uint64_t epoch);
/* The primary asked for the copies' digests (§8.5): false when they could not go. */
bool twin_disks_send_sums(struct repl_secondary *s, struct repl_link *l);

#endif
