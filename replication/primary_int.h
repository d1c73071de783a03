/*
 * The primary's insides, shared by primary.c (the session: connection,
 * initial copy, protection's epochs) and primary_mig.c (a migration's rounds,
 * its switch, postcopy). Nothing outside those two files includes it.
 */
#ifndef CASTOR_REPLICATION_PRIMARY_INT_H
#define CASTOR_REPLICATION_PRIMARY_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "replication/codec.h"
#include "replication/disk_int.h"
#include "replication/engine.h"

struct repl_primary {
	struct hv_vm *vm;
	struct repl_primary_opts o;
	char *peer;
	const struct repl_transport_ops *t;
	struct repl_link link; /* t is the transport above; sealed after a keyed handshake */
	struct repl_key key;   /* o.key points here (wiped on free) */
	struct repl_encoder *enc;
	struct hv_stream_writer *w;
	struct hv_snap_chain *chain; /* the session's own dirty log and staging */
	struct repl_buf wire;
	pthread_t thread;
	bool thread_live;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	bool stop, kicked;
	bool graceful;	       /* stop: finish the epoch in flight and say BYE */
	uint32_t idle_ms;      /* the replica's idle limit: a heartbeat every quarter */
	uint64_t last_io_ns;   /* the last time the replica answered */
	uint64_t epoch;	       /* the epoch being captured / last captured */
	int sealed;	       /* outputs sealed into it (set in the pause) */
	uint64_t unacked_ns;   /* pause time of the oldest unacked epoch; 0: none */
	struct repl_status st; /* st.state is the state machine's */
	uint64_t last_ship_ns; /* the last epoch's send and ack (a migration's link rate) */
	uint64_t ship_bytes, ship_total_ns; /* a migration's rounds: wire bytes, send and ack */
	uint64_t started_ns;
	struct repl_window pauses, rtts, harvests, copies, states, encodes;
	bool disk_wake;	  /* the disk queue asks for a send */
	bool pc_asked;	  /* a migration: switch to postcopy after this round */
	bool pc_switch;	  /* the pause of postcopy's switch: RAM is not whole there yet */
	bool pc_resume;	  /* after a break: 'castor migrate --resume' asked to reconnect */
	bool pc_cut_done; /* the test hook cut the link already */
	/* async mode: the pause of the newest acknowledged checkpoint; over the RPO target */
	uint64_t ckpt_ns;
	bool rpo_over;
	struct repl_window rpos;
	bool lost_link; /* the session failed on its link (not a refusal): async mode resumes */
	bool hot_on;	/* it turned hot pages on (hv_dirty_set_hot): it turns them off */

	struct disk_tx *dtx; /* the VM's writable disks: their writes go with the epochs */
};

void primary_set_state(struct repl_primary *p, enum repl_state to, const char *why);
/* Async mode, p->lock held: the checkpoint paused at pause_ns is acknowledged (the RPO). */
void primary_note_checkpoint(struct repl_primary *p, uint64_t pause_ns);
/*
 * Async mode after the link broke (primary_resume.c): connect again until the
 * replica takes the session back from its checkpoint. 0 once resumed (state
 * protected); -ECANCELED on stop, or -errno when it refused for good (degraded).
 */
int primary_resume_async(struct repl_primary *p);
/* The session failed at `what`: degraded (protection) or stopped (a migration). */
void primary_fail(struct repl_primary *p, int rc, const char *what);
/*
 * Capture into p->w: live passes while the guest runs when `live`, then the
 * pause (in_pause seals the outputs and, in verify mode, digests). `defer`:
 * postcopy's switch (hv_snapshot_opts.defer).
 */
int primary_capture(struct repl_primary *p, enum hv_stream_kind kind, bool live,
		    struct util_bitmap *defer, struct hv_snapshot_stats *st);
/* Encode, send and wait for the ack of the epoch in p->w; then release its outputs. */
int primary_ship(struct repl_primary *p, const struct hv_snapshot_stats *sst);
/*
 * Connect to the peer and shake hands on `l` (resume: a postcopy's source
 * coming back, §8.6); `why` says what failed.
 */
int primary_open_link(struct repl_primary *p, struct repl_link *l, bool resume, char *why,
		      size_t why_len);
void primary_note_pause(struct repl_primary *p, const struct hv_snapshot_stats *sst, uint64_t now);
bool primary_stopping(struct repl_primary *p);

/* ---- a migration (primary_mig.c) ---- */

/* It ends in state `to`; msg (may be NULL) becomes last_error and is logged. */
void primary_migration_over(struct repl_primary *p, enum repl_state to, const char *why,
			    const char *msg);
/*
 * After the initial copy (its stats in sst, begun at t0): rounds until the
 * policy says stop-and-copy (the switch), postcopy is asked for, or abort.
 */
void primary_migrate(struct repl_primary *p, const struct hv_snapshot_stats *sst, uint64_t t0);

#endif
