/*
 * castor-vmm internals. One process runs one VM; what it does with it is
 * its role, and the role is data on `struct vmm`, not a code path of main():
 *
 *   main.c          the command table (kvmtool's builtin idiom) and main()
 *   cmd_run.c       castor-vmm run       a new test guest (optionally protected)
 *   cmd_restore.c   castor-vmm restore   a VM from a snapshot chain
 *   cmd_replica.c   castor-vmm replica   a twin fed by a primary
 *   cmd_standby.c   castor-vmm standby   a VM made ready ahead of a restore
 *   cmd_incoming.c  castor-vmm incoming  a live migration's destination
 *   opts.c          the options every command shares, refused where they do not apply
 *   serve.c         what every command does around its VM: serial, event log,
 *                   output queue, control socket, signals, teardown
 *   outputs.c       devices, the output queue's release, the event log
 *   session.c       replication sessions on the running VM: protect, unprotect,
 *                   failover (the control socket and `run --protect` call these)
 *   control.c       the control socket server
 */
#ifndef CASTOR_TOOLS_VMM_H
#define CASTOR_TOOLS_VMM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "hypervisor/hv.h"
#include "migrate/mig.h"
#include "replication/repl.h"

#define HV_MAX_DEVICES	 4 /* NICs and disks, each, on castor-vmm's command line */
#define MAX_GUEST_PARAMS 32
#define MAX_SNAPSHOTS	 64 /* a full snapshot and its incrementals */

struct event;
struct event_base;
struct vmm_control;
struct nb_tap;
struct nb_queue;

/* ---- options (opts.c) ------------------------------------------------------------ */

/* The commands, as bits: which one an option applies to. */
enum vmm_cmd_bit {
	VMM_RUN = 1u << 0,
	VMM_RESTORE = 1u << 1,
	VMM_REPLICA = 1u << 2,
	VMM_STANDBY = 1u << 3,
	VMM_INCOMING = 1u << 4,
};

struct vmm_net_opt {
	const char *tap;
	uint8_t mac[6];
};

struct vmm_disk {
	struct hv_blk *blk;
	const char *path;
	bool read_only;
};

struct vmm_opts {
	unsigned cmd; /* one enum vmm_cmd_bit */
	struct hv_vm_config vm;
	struct hv_tg_config tg;
	struct hv_linux_config kernel; /* run --kernel: a Linux guest instead of the test guest */
	bool have_mem, have_cpus, test_guest;
	const char *control;
	const char *serial;
	const char *event_log;
	uint64_t outq_bytes; /* bound of the output queue (0: the default) */
	struct vmm_net_opt nets[HV_MAX_DEVICES];
	unsigned nnets;
	struct vmm_disk disks[HV_MAX_DEVICES];
	unsigned ndisks;
	const char *snapshots[MAX_SNAPSHOTS];
	unsigned nsnapshots;
	bool start_paused, lazy;
	const char *listen;  /* replica */
	const char *protect; /* run: the replica's HOST:PORT */
	/*
	 * Replication: the session options of run --protect; timeout, nice and
	 * real-time priority are also the defaults of every later session
	 * (`castor ha protect`, a replica's twin).
	 */
	struct repl_primary_opts ro;
	uint64_t pc_test_cut_pages; /* test hook CASTOR_TEST_POSTCOPY_CUT (opts.c) */
	bool have_session_opts;	    /* --mode, --interval, ... were given */
	/*
	 * --key: every session of this process (a replica's primaries, run
	 * --protect, castor ha protect) is authenticated with it (ro.key points
	 * here); --encrypt asks for encryption too. Without a key only loopback
	 * addresses are allowed, unless --insecure (vmm_link_allowed).
	 */
	const char *key_file;
	struct repl_key key;
	bool insecure;
};

/* Print the usage of every command. */
void vmm_usage(FILE *f);
/*
 * Parse argv (argv[0] is the command's name) into `o` (o->cmd set by the
 * caller, the rest zeroed with the defaults applied). An option that belongs
 * to another command is refused by name. 0, or the exit status 2 after a
 * message on stderr.
 */
int vmm_opts_parse(int argc, char **argv, struct vmm_opts *o);
/*
 * May a session use `addr` (HOST:PORT)? With a key, or --insecure, any
 * address; without, only a loopback one: -EACCES and a sentence naming the
 * options that would allow it. -EINVAL for an address that does not parse.
 */
int vmm_link_allowed(const struct vmm_opts *o, const char *what, const char *addr, char *why,
		     size_t why_len);
/* castor-vmm: <message>; try --help. Returns 2, the exit status of a bad command line. */
int vmm_bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the process (serve.c, outputs.c) --------------------------------------------- */

struct vmm_devices {
	struct nb_tap *taps[HV_MAX_DEVICES];
	uint8_t macs[HV_MAX_DEVICES][6];
	unsigned ntaps;
	struct vmm_disk disks[HV_MAX_DEVICES];
	unsigned ndisks;
};

/*
 * castor-vmm standby: a VM created and made ready ahead of time -- KVM slots
 * registered, devices attached, RAM allocated unless lazy -- that a
 * RestoreRequest fills from a snapshot chain and starts.
 */
struct vmm_standby {
	struct hv_vm *vm; /* blank until a restore succeeds, then the running VM */
	bool lazy;	  /* restores load RAM on first touch */
	bool used;	  /* a chain was restored into it */
};

struct vmm {
	struct vmm_opts *o;
	const char *name;
	/*
	 * The VM that runs here: NULL on a replica until its twin takes over and
	 * on a standby until a restore. Main thread only.
	 */
	struct hv_vm *vm;
	struct vmm_devices devs;
	struct nb_queue *outq;	  /* every output of the VM: frames and test-device records */
	uint64_t outputs_dropped; /* refused by a full queue (atomic) */

	/*
	 * Replication. Either sessions from here (primary, dr) or a secondary.
	 * `primary` is the synchronous session (interval or output mode: it owns
	 * the output queue's commit) or a live migration; `dr` the asynchronous
	 * (DR) session, alone or beside the synchronous one, never holding an
	 * output (docs/dr.md). The vCPU and I/O threads kick the primary (output
	 * mode, full queue) under kick_lock, so a session stopped on the main
	 * thread is never kicked after free.
	 */
	pthread_mutex_t kick_lock;
	struct repl_primary *primary;
	struct repl_primary *dr;
	bool kick_on_output; /* output mode: an output ends the epoch */
	struct repl_secondary *secondary;
	bool failed_over;  /* this replica's twin runs (vm is it) */
	uint64_t sessions; /* replication sessions started here, ever */

	bool is_standby;
	struct vmm_standby standby;
	struct vmm_control *ctl;
	struct event_base *base;
	int exit_status; /* of the process once the loop ends (0 unless a role says otherwise) */

	/*
	 * Live migration (session.c). Source: `primary` carries it, `mig` is its
	 * policy and throttle, `mig_watch` ends the throttle when the session
	 * ends and the process once the destination runs the VM. Destination
	 * (incoming): the receiving thread signals the end of its source's
	 * stream through mig_pipe; mig_end acts on it on the main thread.
	 */
	struct mig_source *mig;
	struct mig_progress mig_last; /* mig's progress when it was freed */
	struct event *mig_watch;
	uint64_t migrated_ns; /* when the destination said it runs the VM */
	int mig_pipe[2];
	struct event *mig_end;
};

/*
 * What each command adds to the shared scaffolding of serve.c: build the VM
 * (or the replica's listener, or the standby) once the output queue exists,
 * and start it once the control socket is open.
 */
struct vmm_role_ops {
	int (*build)(struct vmm *v);
	int (*start)(struct vmm *v); /* NULL: nothing to start */
};
/* Run the process around `role`: returns the exit status (0, or 1 on failure). */
int vmm_serve(struct vmm_opts *o, const struct vmm_role_ops *role);

/* Disks and NICs on a VM not yet started; their frames go through the output queue. */
int vmm_add_devices(struct vmm *v, struct hv_vm *vm);
/* hv_snapshot_restore's device callback: the same devices on a restored VM. */
int vmm_restore_add_devices(void *arg, struct hv_vm *vm);
/* The event log (--event-log): one line per event; NULL arg is fine. */
void vmm_event_line(void *arg, const char *line);
int vmm_event_log_open(const char *path);
void vmm_event_log_close(void);
/* The output queue of `v` with its release and full callbacks. */
int vmm_outq_new(struct vmm *v);
/* Map a snapshot chain; on failure nothing stays mapped and `why` says which file. */
int vmm_map_snapshots(const char *const *paths, unsigned n, const uint8_t **maps, size_t *lens,
		      char *why, size_t why_len);
void vmm_unmap_snapshots(const uint8_t **maps, const size_t *lens, unsigned n);
/*
 * Restore the chain of snapshot files `paths` into the standby's VM and start
 * it. On failure `why` says why and the VM stays blank, ready for another try.
 */
int vmm_standby_restore(struct vmm_standby *sb, char *const *paths, unsigned n, uint64_t *bytes,
			char *why, size_t why_len);

/* ---- replication sessions on the running VM (session.c) ----------------------------- */

/*
 * Protect v->vm toward the replica at o->peer: the initial copy runs while
 * the guest runs, then epochs. A synchronous session (v->primary) or, with
 * mode async, the DR session (v->dr), either beside the other. Refused
 * (-EALREADY) when that session exists (a degraded one is replaced),
 * (-ENODEV) when no VM runs here, (-EOPNOTSUPP) for a second session of a
 * VM with a writable disk, (-EBUSY) for a DR session while migrating. A
 * synchronous session's initial copy takes the VM's held outputs (a degraded
 * primary's): released once the new replica has it.
 */
int vmm_protect(struct vmm *v, const struct repl_primary_opts *o, char *why, size_t why_len);
/*
 * Stop protecting. A protected primary finishes the epoch in flight and tells
 * the replica (which then refuses a failover unless forced); every held output
 * is released -- on a degraded primary these are outputs no replica
 * acknowledged, produced by the only copy that runs. A primary still making
 * its initial copy is stopped only with `force`. `released_out` counts the
 * outputs released. `dr`: the DR session instead, which holds none (without
 * it the synchronous session, or the DR session when it is the only one).
 * -ENOENT when there is no such session.
 */
int vmm_unprotect(struct vmm *v, bool force, bool dr, uint64_t *released_out, char *why,
		  size_t why_len);
/*
 * Replica (dr_copy.c): a copy of the twin's newest checkpoint in `dir` for a test boot
 * (DrCopyRequest, `castor dr test`): checkpoint.snap and disk<i>.img for
 * each writable disk; read-only disks are named as they are.
 */
struct vmm_dr_copy {
	char snapshot[4096];
	char disks[HV_MAX_DEVICES][4096];
	bool disk_read_only[HV_MAX_DEVICES];
	unsigned ndisks;
	uint8_t macs[HV_MAX_DEVICES][6];
	unsigned nnets;
	uint64_t epoch, age_ns, snap_bytes, disk_bytes;
};
int vmm_dr_copy(struct vmm *v, const char *dir, struct vmm_dr_copy *out, char *why, size_t why_len);
/* Replica: start the twin. Refused while the primary still streams unless `force`. */
int vmm_failover(struct vmm *v, bool force, char *why, size_t why_len);
/*
 * Live migration of v->vm to the `castor-vmm incoming` at `peer` (migrate/,
 * docs/migration.md): a session like protection's, but its outputs are not
 * held, rounds follow the initial copy until the policy says stop-and-copy,
 * then the VM pauses here for good and runs there; this process exits a while
 * after (or on `castor vm quit`). Refused (-EALREADY) while protecting or
 * migrating, (-ENODEV) with no VM, (-EPERM) with a writable disk.
 */
struct vmm_migrate_req {
	const char *peer;
	uint32_t downtime_ms, timeout_s, timeout_ms;
	bool verify, no_throttle;
	bool postcopy; /* switch to postcopy right after the initial copy */
};
int vmm_migrate(struct vmm *v, const struct vmm_migrate_req *r, char *why, size_t why_len);
/*
 * Give the migration up: the VM runs on here. In state in-doubt (the
 * destination did not answer the switch) this resumes the paused VM: the
 * operator says the destination does not run it.
 */
int vmm_migrate_cancel(struct vmm *v, char *why, size_t why_len);
/* The migration under way switches to postcopy at the end of its round. */
int vmm_migrate_postcopy(struct vmm *v, char *why, size_t why_len);
/* A postcopy whose link broke reconnects to its destination. */
int vmm_migrate_resume(struct vmm *v, char *why, size_t why_len);
/* Incoming: watch for the end of the source's stream (after the control socket opens). */
int vmm_incoming_watch(struct vmm *v);
/* Kick the primary, if any: end the epoch early. Any thread. */
void vmm_kick(struct vmm *v);
/* Stop every session (process exit). */
void vmm_sessions_stop(struct vmm *v);

/* ---- the control socket (control.c) ------------------------------------------------- */

/*
 * Listen on `path` (a unix socket) and serve control requests for `v` on
 * `base`. A stale socket file is replaced; one a live process answers on is
 * refused with -EADDRINUSE. QuitRequest ends the loop after its reply.
 */
int vmm_control_open(struct event_base *base, struct vmm *v, const char *path,
		     struct vmm_control **ctl_out);
/* Pause the VM on behalf of the control socket (as `castor vm pause` would). */
int vmm_control_hold_pause(struct vmm_control *ctl);
/* Closes every connection and removes the socket file. NULL is fine. */
void vmm_control_free(struct vmm_control *ctl);
/*
 * control_ha.c: a replication request (HA status, protect, unprotect,
 * failover, migrate, DR copy) answered into `resp`, with *rc and *msg as the
 * request's outcome; false for any other request (control.c's).
 */
struct Castor__Request;
struct Castor__Response;
bool vmm_control_ha(struct vmm *v, const struct Castor__Request *req, struct Castor__Response *resp,
		    int *rc, const char **msg);

#endif
