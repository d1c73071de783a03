/*
 * castord's insides, shared by its files (castord.c: the daemon, its control
 * socket and the definitions; castord_vms.c: starting, stopping and watching
 * VMs through the pairs; castord_sessions.c: the replication and migration
 * sessions between two hosts). Not a library header: only castord includes it.
 */
#ifndef CASTOR_CASTORD_H
#define CASTOR_CASTORD_H

#include <stdbool.h>

#include "clusterd/cluster.h"
#include "proto/pb.h"

struct evbuffer;

#define MAX_CONNS    64
#define ARGV_MAX     (20 + 2 * (CD_MAX_GUEST_PARAM + CD_MAX_DISKS + CD_MAX_NICS))
#define STOP_GRACE_S 10 /* SIGTERM, then SIGKILL after this long */

/* What a castor-vmm this castord started is to its VM. */
enum local_role {
	LOCAL_PRIMARY = 0, /* castor-vmm run: the VM runs here */
	LOCAL_REPLICA,	   /* castor-vmm replica: its twin is kept here */
	LOCAL_INCOMING,	   /* castor-vmm incoming: a migration's destination */
};
struct local_vm {
	char name[CD_NAME_MAX];
	struct cd_proc *proc; /* NULL: the slot is free */
	enum local_role role; /* a replica whose twin took over, or an incoming that took a
			       * migration, is a primary */
	char sock[CD_PATH_MAX + CD_NAME_MAX + 24]; /* its control socket */
	uint16_t port;				   /* a replica's listening port */
	bool ready;				   /* its control socket exists */
	bool stopping; /* asked to stop: its exit is STOPPED, not a loss */
	struct event *kill_ev;
	/* a protecting primary's replication, as castor-vmm said at the last tick (metrics) */
	struct local_repl {
		bool valid;
		uint64_t epochs, pause_p50_ns, pause_p99_ns, lag_ns, wire_bytes;
		uint64_t output_delay_p50_ns, output_delay_p99_ns, outputs_held;
		uint64_t at_ns; /* when read (monotonic) */
	} repl;
	/* a primary's DR session, kept by castord toward its pair's DR target (castord_dr.c) */
	struct local_dr {
		bool valid;	   /* read at the last tick (metrics) */
		bool started;	   /* castord asked for the session running now */
		uint64_t asked_ns; /* the last protect asked (monotonic); 0: never */
		char addr[64];	   /* where that session goes */
		char state[160];   /* "protected", "degraded: WHY", "refused: WHY" */
		char logged[160];  /* the last refusal logged (logged once) */
		uint64_t rpo_ns, alerts, checkpoints;
		uint32_t rpo_target_ms;
	} dr;
};

/* What this node heard about a VM beyond its pair (castor status), kept by name. */
struct vm_heard {
	char vm[CD_NAME_MAX];	   /* "": the slot is free */
	char primary[CD_NAME_MAX]; /* who sent the figures */
	uint64_t epochs, epochs_milli_per_s, lag_ns;
	uint64_t figures_at_ns;	  /* when they came (monotonic); 0: never */
	uint64_t last_failover_s; /* wall clock of the last PROMOTED applied here; 0: none */
	/* the DR session's figures, from the primary's DR_FIGURES */
	char dr_primary[CD_NAME_MAX];
	char dr_addr[64];
	char dr_state[160];
	uint64_t dr_rpo_ns, dr_alerts, dr_checkpoints;
	uint32_t dr_rpo_target_ms;
	uint64_t dr_at_ns; /* when they came (monotonic); 0: never */
};

struct daemon {
	struct event_base *base;
	struct cd_config conf;
	struct cd_membership *members;
	struct cd_defs *defs;	/* the cluster's VM definitions (large: on the heap) */
	struct cd_pairs *pairs; /* every VM's pair, the same on every node (heap too) */
	struct local_vm local[CD_MAX_DEFS];
	struct event *tick_ev; /* castord_vms.c: duties, sync progress, reconciling */
	/* ticks in a row a pair placed here had no castor-vmm here (index as d->pairs) */
	uint8_t orphan[CD_MAX_DEFS];
	/* what the policy sent last, per pair (index as d->pairs), and when */
	struct {
		uint64_t gen;
		int event;
		uint64_t at_ns;
	} sent[CD_MAX_DEFS];
	struct vm_heard heard[CD_MAX_DEFS];
	uint64_t replayed_joins; /* the view's join count when the table was last replayed */
	bool layout_logged;	 /* the layout refusal was logged (once per refusal) */
	struct evconnlistener *listener;
	unsigned nconns;
	struct cd_metrics *metrics;
};

/* 0, or -EPERM with the sentence to print: no quorum, or a layout castord refuses. */
int castord_need_quorum(struct daemon *d, const char **msg);

/* This node's view for an event it sends: quorate only without a layout problem. */
void castord_view_of(struct daemon *d, struct cd_view *out);
/* Multicast one pair message; it takes effect when delivered, here too. */
int castord_send_msg(struct daemon *d, const struct cd_pairmsg *m);

/* ---- castord_vms.c --------------------------------------------------------------------------- */

/* The duty timer (once a second); before the loop runs. 0 or -ENOMEM. */
int vms_init(struct daemon *d);
/* A CPG message about pairs (magic CD_PAIRMSG_MAGIC), in agreed order. */
void vms_msg(struct daemon *d, uint32_t from, const void *buf, size_t len);
/* Membership changed: this node's duties now (a host's VMs lost, replicas to place). */
void vms_view_changed(struct daemon *d, const struct cd_view_nodes *v);
/* A node joined: replay every pair entry (SYNC), so it catches up. */
void vms_replay(struct daemon *d);
/* castor vm start|stop: 0 with `o` filled, or -errno with the sentence in *msg. */
int vms_start(struct daemon *d, const Castor__VmStartRequest *r, Castor__VmDefinition *o,
	      const char **msg);
int vms_stop(struct daemon *d, const Castor__VmStopRequest *r, Castor__VmDefinition *o,
	     const char **msg);
/* castor ha protect|unprotect|failover VM: as vms_start. */
int vms_protect(struct daemon *d, const Castor__VmProtectRequest *r, Castor__VmDefinition *o,
		const char **msg);
int vms_unprotect(struct daemon *d, const Castor__VmUnprotectRequest *r, Castor__VmDefinition *o,
		  const char **msg);
/* castor migrate VM --to NODE: as vms_start. */
int vms_migrate(struct daemon *d, const Castor__VmMigrateRequest *r, Castor__VmDefinition *o,
		const char **msg);
int vms_failover(struct daemon *d, const Castor__VmFailoverRequest *r, Castor__VmDefinition *o,
		 const char **msg);
/* castor dr protect|unprotect VM: as vms_start (docs/dr.md). */
int vms_dr(struct daemon *d, const Castor__VmDrRequest *r, Castor__VmDefinition *o,
	   const char **msg);
/* The pair's fields of a definition reply (state, primary, ...); strings point into d. */
void vms_fill(struct daemon *d, Castor__VmDefinition *o, const char *name);
/* What was heard about `vm`: NULL when nothing (and `make` false, or no slot free). */
struct vm_heard *vms_heard(struct daemon *d, const char *vm, bool make);
/* Replication metrics of the primaries protected from this host (castord.c's /metrics). */
void vms_render_metrics(struct daemon *d, struct evbuffer *b);
/* castord exits: stop every castor-vmm it started (SIGTERM, then SIGKILL). */
void vms_shutdown(struct daemon *d);

/* The castor-vmm processes of this host, for castord_sessions.c. */
struct local_vm *vms_local(struct daemon *d, const char *vm, enum local_role role);
struct local_vm *vms_free_slot(struct daemon *d); /* NULL: none */
/* A castor-vmm being stopped: SIGKILL, reaped within a second; its slot is free. */
void vms_finish_stop(struct local_vm *l);
/* Spawn castor-vmm with `argv` into `slot` (its log in state_dir/log/); 0 or -errno and why. */
int vms_spawn(struct daemon *d, struct local_vm *slot, const char *vm, enum local_role role,
	      char *const argv[], const char *sock, char *why, size_t why_len);
/* One request to a local castor-vmm: 0 with the reply (the caller frees it; resp_out NULL:
 * not wanted), or -errno and why. */
int vms_call(struct local_vm *l, Castor__Request *req, Castor__Response **resp_out, char *why,
	     size_t why_len);
/* The definition's disks and NICs, as castor-vmm options, from argv[*n] on. */
/* A disk argument as this node gives it: %n expanded (cd_vmdef_disk_on). */
#define DISK_ARG_MAX (CD_PATH_MAX + 4 * CD_NAME_MAX)
int vms_devices_argv(struct daemon *d, const struct cd_vmdef *def, char *argv[ARGV_MAX],
		     unsigned *n, char disks[CD_MAX_DISKS][DISK_ARG_MAX], char *why,
		     size_t why_len);
/* An event about `vm` whose primary is `host`, with view `v`. */
int vms_send_event(struct daemon *d, const char *vm, enum cd_pair_event e, const char *host,
		   const struct cd_view *v, const char *reason);
/* An event this node witnessed about the replica (or destination) it keeps of `vm`. */
void vms_report_replica(struct daemon *d, const char *vm, enum cd_pair_event e, const char *addr,
			const char *reason);
/* The same about the replica on host `replica` (a primary's castord reporting it lost). */
void vms_report_about(struct daemon *d, const char *vm, enum cd_pair_event e, const char *replica,
		      const char *addr, const char *reason);

/* ---- castord_sessions.c: what an event asks of this host, and progress ---------------------- */

/* PROTECT names this host: start the replica (REPLICA_READY), or REPLICA_LOST with why. */
void sess_replica_here(struct daemon *d, const char *vm);
/* REPLICA_READY for this node's primary: protect toward it (UNPROTECT if refused). */
void sess_protect_toward(struct daemon *d, const struct cd_pair *p);
/* FAILING_OVER with the twin here: promote it (PROMOTED), or REPLICA_LOST with why. */
void sess_promote_here(struct daemon *d, const struct cd_pair *p);
/* UNPROTECT for this node's primary: stop replicating, its held output released. */
void sess_unprotect_here(struct daemon *d, const struct cd_pair *p);
/* MIGRATE names this host: start the destination (INCOMING_READY), or REPLICA_LOST. */
void sess_incoming_here(struct daemon *d, const char *vm);
/* INCOMING_READY for this node's primary: migrate there (MIGRATE_FAILED if refused). */
void sess_migrate_toward(struct daemon *d, const struct cd_pair *p);
/* Each tick, for a primary here: its replication figures (metrics) and SYNCED. */
void sess_repl_progress(struct daemon *d, const struct cd_pair *p);
/*
 * The replication status of this node's castor-vmm for `p` (`dr`: its DR session's, else
 * the synchronous one's; the caller frees the reply), or NULL when it runs no ready one
 * here or does not answer (logged).
 */
Castor__Response *sess_ha_status(struct daemon *d, const struct cd_pair *p, bool dr,
				 struct local_vm **l_out);
/* Each tick, for a migrating source here: MIGRATED or MIGRATE_FAILED once castor-vmm says. */
void sess_mig_progress(struct daemon *d, const struct cd_pair *p);

/* ---- castord_dr.c: the DR session of a primary here (docs/dr.md) ---------------------------- */

/*
 * Each tick, for a running primary here: keep its castor-vmm's DR session as the
 * pair's DR target says (started, replaced after it gave up, stopped once the target
 * is cleared), log RPO alerts, and send DR_FIGURES for castor status.
 */
void dr_progress(struct daemon *d, const struct cd_pair *p);
/* A DR_FIGURES message heard (any node's, this one's too): kept for castor status. */
void dr_heard(struct daemon *d, const struct cd_pairmsg *m);
/* The DR metrics of the primaries here (castord.c's /metrics). */
void dr_render_metrics(struct daemon *d, struct evbuffer *b);
/* The DR fields of a definition reply (castor status, vm show): strings point into d. */
void dr_fill(struct daemon *d, Castor__VmDefinition *o, const struct cd_pair *p);

#endif
