/*
 * castor_cluster: what castord (design.md §6) decides with, kept apart from
 * the daemon's event loop and corosync so that every rule can be tested
 * alone:
 *
 *   conf.c     the line format every castord file uses ("key = value")
 *   config.c   castord.conf: the node's identity, directories, addresses
 *   vmdef.c    VM definition files: what a VM is and how it is protected
 *   pair.c     the HA pair's state machine: one const table of transitions,
 *              each guarded by the safety rules (quorum, the primary known
 *              gone) and logged "vm3: syncing -(synced)-> protected"
 *   pairs.c    every VM's pair, the same on every node: events over CPG
 *   supervise.c  the castor-vmm processes castord starts on its host
 *
 * Parsers are strict: an unknown key, a repeated one, a bad value or a
 * missing required one is an error naming the file, the line and what is
 * wrong. They never allocate for what they refuse.
 */
#ifndef CASTOR_CLUSTER_H
#define CASTOR_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---- the line format (conf.c) ------------------------------------------------------- */

/*
 * One "key = value" line: `key` and `value` point into a copy of the line
 * (whitespace trimmed; value may be empty). Returns 0, or a negative errno
 * after writing one sentence into why (the caller adds the place).
 */
typedef int (*cd_conf_line_fn)(void *arg, unsigned line, const char *key, const char *value,
			       char *why, size_t why_len);
/*
 * Parse `text` (len bytes, not NUL-terminated, at most CD_CONF_MAX_BYTES):
 * blank lines and lines starting with '#' are skipped; every other line is
 * "key = value". `name` (a file name) starts every message: "NAME:LINE: ...".
 */
#define CD_CONF_MAX_BYTES (64u << 10)
#define CD_CONF_MAX_LINE  1024u
int cd_conf_parse(const char *name, const char *text, size_t len, cd_conf_line_fn fn, void *arg,
		  char *why, size_t why_len);
/* A regular file of at most CD_CONF_MAX_BYTES into a new buffer (the caller frees it). */
int cd_conf_read_file(const char *path, char **buf_out, size_t *len_out, char *why, size_t why_len);
/* A node or VM name: 1..63 of [A-Za-z0-9_-], starting with a letter or a digit. */
bool cd_is_name(const char *s);

/* ---- castord.conf (config.c) ----------------------------------------------------------- */

#define CD_PATH_MAX 256
#define CD_NAME_MAX 64

struct cd_config {
	char node[CD_NAME_MAX];	     /* this node's name (required) */
	char state_dir[CD_PATH_MAX]; /* definitions and pair state; default /var/lib/castor */
	char control[CD_PATH_MAX];   /* castord's socket; default /run/castor/castord.sock */
	char vmm[CD_PATH_MAX];	     /* castor-vmm to start; default "castor-vmm" */
	char replication_host[CD_NAME_MAX]; /* where this node's replicas listen; default 0.0.0.0 */
	uint16_t port_low, port_high;	    /* their ports; default 7800-7899 */
	char metrics[CD_NAME_MAX];	    /* HOST:PORT of the Prometheus endpoint, "" = off */
	char key_file[CD_PATH_MAX];	    /* the replication links' key; "" = none */
	bool witness;			    /* a quorum vote that hosts no VM */
	bool allow_two_node;		    /* run two voting nodes without a witness (forced) */
};
#define CD_CONFIG_DEFAULT_PATH "/etc/castor/castord.conf"
/* Parse castord.conf text: defaults, then the file's settings, then the checks. */
int cd_config_parse(const char *name, const char *text, size_t len, struct cd_config *out,
		    char *why, size_t why_len);
int cd_config_load(const char *path, struct cd_config *out, char *why, size_t why_len);

/* ---- VM definitions (vmdef.c) ------------------------------------------------------------- */

#define CD_MAX_DISKS	   4
#define CD_MAX_NICS	   4
#define CD_MAX_HOSTS	   8
#define CD_MAX_GUEST_PARAM 16

enum cd_protection { CD_PROT_NONE = 0, CD_PROT_INTERVAL, CD_PROT_OUTPUT };
const char *cd_protection_str(enum cd_protection p);
/* What the cluster does when the VM dies and no twin takes over (docs/cluster.md) */
enum cd_restart {
	CD_RESTART_NO = 0,     /* it stays defined: the operator starts it */
	CD_RESTART_ON_FAILURE, /* started again, at most CD_RESTART_MAX times a window */
};
const char *cd_restart_str(enum cd_restart r);
#define CD_RESTART_MAX	    3u
#define CD_RESTART_WINDOW_S 600u

struct cd_vmdef {
	char name[CD_NAME_MAX];
	char guest[16]; /* "test": the test guest; "linux": kernel, initrd, cmdline */
	uint64_t mem_bytes;
	uint32_t cpus;
	char guest_param[CD_MAX_GUEST_PARAM][64]; /* test guest: "key=value" */
	unsigned nguest_param;
	char kernel[CD_PATH_MAX]; /* linux: castor-vmm's --kernel, absolute */
	char initrd[CD_PATH_MAX]; /* linux: --initrd, "" = none */
	char cmdline[1024];	  /* linux: --cmdline */
	/* "PATH" or "PATH,ro", as castor-vmm takes it; %n in PATH: the node's name */
	char disk[CD_MAX_DISKS][CD_PATH_MAX];
	unsigned ndisks;
	char nic[CD_MAX_NICS][96]; /* "tap=NAME[,mac=MAC]" */
	unsigned nnics;
	enum cd_protection protection;
	uint32_t interval_ms;		       /* 0: castor-vmm's default */
	char hosts[CD_MAX_HOSTS][CD_NAME_MAX]; /* preferred hosts, in order; none: any */
	unsigned nhosts;
	enum cd_restart restart;
};
int cd_vmdef_parse(const char *name, const char *text, size_t len, struct cd_vmdef *out, char *why,
		   size_t why_len);
int cd_vmdef_load(const char *path, struct cd_vmdef *out, char *why, size_t why_len);
/* Does the VM write a disk (one without ",ro")? */
bool cd_vmdef_writes_disk(const struct cd_vmdef *def);
/*
 * A definition's disk as castor-vmm on `node` takes it: "%n" replaced by the
 * node's name, "%%" by "%". -ENAMETOOLONG when it does not fit in out.
 */
int cd_vmdef_disk_on(const char *disk, const char *node, char *out, size_t out_len);

/* ---- the cluster's definitions, replicated (defs.c) ---------------------------------------- */

#define CD_MAX_DEFS 256

/* One VM's definition as every node holds it, or its tombstone once undefined. */
struct cd_def {
	struct cd_vmdef vm; /* parsed (only the name when removed) */
	char *text;	    /* the file as defined; NULL when removed */
	bool removed;
	uint64_t generation; /* version: (generation, origin); the higher wins */
	uint32_t origin;     /* corosync node id of the node that made the change */
};
struct cd_defs {
	char dir[CD_PATH_MAX]; /* where the entries are kept; "" = memory only */
	bool loading;	       /* cd_defs_load(): the files are not written back */
	unsigned n;
	struct cd_def def[CD_MAX_DEFS];
};
void cd_defs_init(struct cd_defs *s, const char *dir);
void cd_defs_dispose(struct cd_defs *s);
/* Read every entry kept in s->dir (created 0700 if missing); bad files are logged, skipped. */
int cd_defs_load(struct cd_defs *s);
/*
 * A DEFINE (text, len bytes: a VM definition file named `name`) or, with
 * text NULL, an UNDEFINE of `name`, at version (gen, origin): applied when
 * newer than what is held for that name, ignored otherwise (0 both ways).
 * A definition that does not parse is refused with why, nothing changed.
 */
int cd_defs_apply(struct cd_defs *s, const char *name, const char *text, size_t len, uint64_t gen,
		  uint32_t origin, char *why, size_t why_len);
const struct cd_def *cd_defs_find(const struct cd_defs *s, const char *name);
/* A generation above every one held: the version of this node's next change. */
uint64_t cd_defs_next_generation(const struct cd_defs *s);

/*
 * DEFINE and UNDEFINE on CPG (defs.c): a 96-byte header (magic "CDVMDEF1",
 * kind, text length, generation, origin node id, the VM's name) and, for a
 * DEFINE, the definition's text.
 */
enum cd_defmsg_kind { CD_DEFMSG_DEFINE = 1, CD_DEFMSG_UNDEFINE = 2 };
struct cd_defmsg {
	enum cd_defmsg_kind kind;
	char name[CD_NAME_MAX];
	const char *text; /* DEFINE: the file (points into the message); else NULL */
	size_t text_len;
	uint64_t generation;
	uint32_t origin;
};
struct cd_defmsg_hdr {
	uint64_t magic;
	uint32_t kind;
	uint32_t text_len;
	uint64_t generation;
	uint32_t origin;
	uint32_t reserved;
	char name[CD_NAME_MAX];
};
_Static_assert(sizeof(struct cd_defmsg_hdr) == 96, "defmsg layout");
#define CD_DEFMSG_MAGIC 0x3146454d44564443ull /* "CDVMDEF1" */
/* The message of `m` as iov[0] (hdr, filled here) and iov[1] (the text); returns iovcnt. */
unsigned cd_defmsg_encode(const struct cd_defmsg *m, struct cd_defmsg_hdr *hdr,
			  struct iovec iov[2]);
/* -EBADMSG for anything that is not a well-formed DEFINE or UNDEFINE. */
int cd_defmsg_decode(const void *buf, size_t len, struct cd_defmsg *out);

/* ---- the HA pair (pair.c) ------------------------------------------------------------------ */

enum cd_pair_state {
	CD_PAIR_S_DEFINED = 0,	/* runs nowhere */
	CD_PAIR_S_STARTING,	/* its castor-vmm is being started on the primary host */
	CD_PAIR_S_UNPROTECTED,	/* runs, no twin */
	CD_PAIR_S_PLACING,	/* a replica is being started on another host */
	CD_PAIR_S_SYNCING,	/* initial copy to the replica */
	CD_PAIR_S_PROTECTED,	/* epochs flow */
	CD_PAIR_S_DEGRADED,	/* the replica is lost: output held until the majority agrees */
	CD_PAIR_S_FAILING_OVER, /* the primary is gone: the replica is being promoted */
	CD_PAIR_S_STOPPING,	/* being stopped on purpose */
	/* live migration (docs/migration.md); `replica` names the destination host */
	CD_PAIR_S_MOVING,    /* a castor-vmm incoming is being started on the destination */
	CD_PAIR_S_MIGRATING, /* the primary's castor-vmm migrates the VM to it */
	CD_PAIR_N_STATES,
};
enum cd_pair_event {
	CD_PAIR_E_START = 0,	  /* operator: start the VM */
	CD_PAIR_E_STARTED,	  /* its castor-vmm runs */
	CD_PAIR_E_START_FAILED,	  /* it could not be started */
	CD_PAIR_E_PROTECT,	  /* protection wanted and a replica host chosen */
	CD_PAIR_E_REPLICA_READY,  /* the replica listens; the primary was told to protect */
	CD_PAIR_E_SYNCED,	  /* the initial copy is acknowledged */
	CD_PAIR_E_REPLICA_LOST,	  /* the replica's host left or its castor-vmm died */
	CD_PAIR_E_PRIMARY_LOST,	  /* the primary's host left or its castor-vmm died */
	CD_PAIR_E_PROMOTED,	  /* the twin runs on the replica's host: it is the primary now */
	CD_PAIR_E_UNPROTECT,	  /* protection ends (operator, or the replica is gone for good) */
	CD_PAIR_E_STOP,		  /* operator: stop the VM */
	CD_PAIR_E_STOPPED,	  /* no castor-vmm of it runs any more */
	CD_PAIR_E_MIGRATE,	  /* operator: move the running VM to another host (named) */
	CD_PAIR_E_INCOMING_READY, /* the destination listens; the primary was told to migrate */
	CD_PAIR_E_MIGRATED,	  /* the VM runs on the destination: it is the primary now */
	CD_PAIR_E_MIGRATE_FAILED, /* given up or failed: the VM runs on where it was */
	/* disaster recovery (docs/dr.md): they set or clear the pair's DR target and change
	 * no state; the primary's castord keeps a DR session toward the target */
	CD_PAIR_E_DR_PROTECT,	/* operator: a DR copy at dr_addr with an RPO target */
	CD_PAIR_E_DR_UNPROTECT, /* operator: no DR copy any more */
	/* the speaker: start a VM that died with no twin again (its restart policy) */
	CD_PAIR_E_RESTART,
	CD_PAIR_N_EVENTS,
};
const char *cd_pair_state_str(enum cd_pair_state s);
const char *cd_pair_event_str(enum cd_pair_event e);

/*
 * What the cluster knows when an event is applied; the safety rules are
 * decided from this, never from how long something has been silent.
 */
struct cd_view {
	bool quorate;		/* this node is in the quorate partition */
	bool primary_gone;	/* the primary's node left the membership, or its
				 * castord reported the VM's castor-vmm dead */
	bool replica_gone;	/* the same for the replica */
	bool have_replica_host; /* a live host other than the primary's can take a replica */
};

struct cd_pair {
	char vm[CD_NAME_MAX];
	enum cd_pair_state state;
	char primary[CD_NAME_MAX]; /* node names; "" = none */
	char replica[CD_NAME_MAX];
	char replica_addr[64]; /* HOST:PORT the replica listens on, once it is ready */
	bool held; /* unprotected by the operator: not re-protected by castord until asked */
	uint64_t failovers;
	char last_reason[256];
	/* the DR target (castor dr protect VM --to): HOST:PORT of a DR replica outside the
	 * cluster and the RPO target; "" = none. Kept across failovers and migrations,
	 * cleared when the VM stops (the DR copy was of the run that ended) */
	char dr_addr[64];
	uint32_t dr_rpo_ms;
	uint32_t dr_max_mbit; /* the DR link's cap in Mbit/s; 0: none */
	/*
	 * Restarts (a definition's restart = on-failure): the host the VM ran on when
	 * it died with no twin, while it is `defined` and may be started again ("" =
	 * no restart due: never ran, stopped, failed to start); the automatic restarts
	 * counted in the window that began at `restarted_at` (a Unix time, the
	 * sender's clock). `castor vm start` clears the count.
	 */
	char restart_host[CD_NAME_MAX];
	uint32_t restarts;
	uint64_t restarted_at;
};

/* A pair in DEFINED for VM `vm` (copied). */
void cd_pair_init(struct cd_pair *p, const char *vm);
/*
 * Apply `e`: the state changes as the transition table says if the event is
 * legal in the current state and its guard holds in `v`; the change is logged
 * "VM: from -(event: reason)-> to". Otherwise nothing changes and the refusal
 * is logged: -EINVAL (the event means nothing in this state) or -EPERM (a
 * safety rule forbids it now; why_out, if not NULL, says which).
 */
int cd_pair_apply(struct cd_pair *p, enum cd_pair_event e, const struct cd_view *v,
		  const char *reason, const char **why_out);
/* Whether `e` is legal from `s` (ignoring guards): for tests and the CLI's errors. */
bool cd_pair_is_legal(enum cd_pair_state s, enum cd_pair_event e);
/* May this node release the held outputs of its primaries now? Only with quorum. */
bool cd_view_can_release_output(const struct cd_view *v);
/*
 * Is the cluster's layout one Castor runs in? Three or more voting nodes, or
 * two and a witness. Two voting nodes alone (or votequorum's two_node mode)
 * cannot tell a dead peer from a partition: refused unless `allow_two_node`
 * (castord.conf), returning the sentence to print; NULL when the layout is fine
 * (or not known yet: no corosync).
 */
struct cd_view_nodes;
const char *cd_layout_problem(const struct cd_view_nodes *v, bool allow_two_node);

/* ---- the cluster's pairs, replicated (pairs.c) ---------------------------------------------- */

/* One VM's pair as every node holds it; `generation` counts the events applied to it. */
struct cd_pair_entry {
	struct cd_pair pair;
	uint64_t generation;
};
struct cd_pairs {
	unsigned n;
	struct cd_pair_entry e[CD_MAX_DEFS];
};
void cd_pairs_init(struct cd_pairs *s);
struct cd_pair_entry *cd_pairs_find(struct cd_pairs *s, const char *vm);

/* flags of a pair message: the sender's view (EVENT), and the operator's hold */
#define CD_PAIRMSG_F_QUORATE	  0x01u
#define CD_PAIRMSG_F_PRIMARY_GONE 0x02u
#define CD_PAIRMSG_F_REPLICA_GONE 0x04u
#define CD_PAIRMSG_F_REPLICA_HOST 0x08u
#define CD_PAIRMSG_F_HELD	  0x10u /* EVENT UNPROTECT: by the operator; SYNC: held */
/*
 * EVENT, SYNC, FIGURES and DR_FIGURES on CPG: a 736-byte message (magic
 * "CDPAIRM4"). An EVENT is one cd_pair_event for one VM with the view its
 * sender decided on (the guards are evaluated on it, the same on every node)
 * and the host it is about (START: the chosen primary); a SYNC is a whole
 * entry, replayed when a node joins (the higher generation wins). FIGURES is
 * what a replicating primary's castor-vmm reported at its castord's last
 * tick, sent once a second so that `castor status` on any node shows it;
 * DR_FIGURES the same of its DR session (docs/dr.md). Neither changes a pair.
 */
enum cd_pairmsg_kind {
	CD_PAIRMSG_EVENT = 1,
	CD_PAIRMSG_SYNC = 2,
	CD_PAIRMSG_FIGURES = 3,
	CD_PAIRMSG_DR_FIGURES = 4,
};
struct cd_pairmsg {
	enum cd_pairmsg_kind kind;
	enum cd_pair_event event; /* EVENT */
	enum cd_pair_state state; /* SYNC */
	uint32_t flags;		  /* EVENT: the sender's view */
	uint64_t generation;	  /* SYNC */
	uint32_t failovers;	  /* SYNC */
	char vm[CD_NAME_MAX];
	char primary[CD_NAME_MAX]; /* EVENT: the primary it is about; SYNC: the entry's */
	char replica[CD_NAME_MAX]; /* EVENT: the replica host it is about (PROTECT: chosen) */
	char addr[64];		   /* REPLICA_READY: where it listens; SYNC: the entry's */
	/* EVENT DR_PROTECT, SYNC and DR_FIGURES: the DR target, its RPO target and its
	 * link's cap (Mbit/s, 0: none) */
	char dr_addr[64];
	uint32_t dr_rpo_ms, dr_max_mbit;
	/* DR_FIGURES: the DR session's state as castor-vmm said it ("protected",
	 * "degraded: WHY", "refused: WHY", ...) */
	char reason[256];
	/* FIGURES (primary: the sender): epochs acknowledged in all, epochs a second over
	 * the last tick (in thousandths), the replica's lag. DR_FIGURES: checkpoints
	 * acknowledged (epochs), the RPO now and the alerts counted by castor-vmm */
	uint64_t epochs, epochs_milli_per_s, lag_ns;
	uint64_t dr_rpo_ns, dr_alerts;
	/* EVENT RESTART: the count it makes and when (the sender's Unix time); SYNC: the
	 * entry's, with restart_host */
	uint32_t restarts;
	uint64_t restarted_at;
	char restart_host[CD_NAME_MAX];
};
struct cd_pairmsg_hdr {
	uint64_t magic;
	uint32_t kind, event, state, flags;
	uint64_t generation;
	uint32_t failovers, dr_rpo_ms;
	uint32_t dr_max_mbit, restarts;
	uint64_t epochs, epochs_milli_per_s, lag_ns;
	uint64_t dr_rpo_ns, dr_alerts;
	uint64_t restarted_at;
	char vm[CD_NAME_MAX];
	char primary[CD_NAME_MAX];
	char replica[CD_NAME_MAX];
	char restart_host[CD_NAME_MAX];
	char addr[64];
	char dr_addr[64];
	char reason[256];
};
_Static_assert(sizeof(struct cd_pairmsg_hdr) == 736, "pairmsg layout");
#define CD_PAIRMSG_MAGIC 0x344d524941504443ull /* "CDPAIRM4" */
/* An EVENT about `vm` and `host` decided on view `v`. */
void cd_pairmsg_event(struct cd_pairmsg *m, const char *vm, enum cd_pair_event e, const char *host,
		      const struct cd_view *v, const char *reason);
void cd_pairmsg_sync(struct cd_pairmsg *m, const struct cd_pair_entry *e);
/* FIGURES about `vm`, whose primary `host` (this node) replicates it. */
void cd_pairmsg_figures(struct cd_pairmsg *m, const char *vm, const char *host, uint64_t epochs,
			uint64_t epochs_milli_per_s, uint64_t lag_ns);
/* DR_FIGURES about `vm`'s DR session toward `dr_addr` from its primary `host` (this node):
 * its state (text), checkpoints acknowledged, the RPO now, its target and the alerts. */
void cd_pairmsg_dr_figures(struct cd_pairmsg *m, const char *vm, const char *host,
			   const char *dr_addr, const char *state, uint64_t checkpoints,
			   uint64_t rpo_ns, uint32_t rpo_target_ms, uint64_t alerts,
			   uint32_t max_mbit);
/* An EVENT DR_PROTECT (dr_addr set) or DR_UNPROTECT (dr_addr NULL) about `vm` on `host`. */
void cd_pairmsg_dr(struct cd_pairmsg *m, const char *vm, const char *host, const struct cd_view *v,
		   const char *dr_addr, uint32_t rpo_ms, uint32_t max_mbit, const char *reason);
/* Fill `h`, the whole message; returns its length. */
unsigned cd_pairmsg_encode(const struct cd_pairmsg *m, struct cd_pairmsg_hdr *h);
/* -EBADMSG for anything that is not a well-formed EVENT, SYNC, FIGURES or DR_FIGURES. */
int cd_pairmsg_decode(const void *buf, size_t len, struct cd_pairmsg *out);
/*
 * Apply a delivered message. EVENT: through cd_pair_apply() with the
 * message's view (-EINVAL/-EPERM as it returns, nothing changed), -ESTALE for
 * an event about a host that is not the VM's primary any more. SYNC: taken
 * when newer. 0 when applied (or an older SYNC ignored). FIGURES and
 * DR_FIGURES: -EINVAL (they are not applied to pairs). DR_PROTECT sets the
 * pair's DR target (-EINVAL unless the VM runs), DR_UNPROTECT clears it; the
 * state stays. Any event that brings a pair to DEFINED clears it too.
 */
int cd_pairs_apply(struct cd_pairs *s, const struct cd_pairmsg *m, const char **why_out);

/* ---- what to do next (pair_policy.c) ------------------------------------------------------- */

/* A member (by name) that may run VMs: not a witness. */
bool cd_host_can_run(const struct cd_view_nodes *v, const char *host);
/*
 * A host for a VM: the definition's hosts in order, else the live host that
 * runs the fewest primaries and replicas (the lowest name on a tie); never
 * `avoid` or `avoid2` ("" = none). false when no host can.
 */
bool cd_choose_host(const struct cd_vmdef *def, const struct cd_view_nodes *v,
		    const struct cd_pairs *all, const char *avoid, const char *avoid2,
		    char out[CD_NAME_MAX]);
/*
 * The event node `me` must send now about pair `p` (false: none): as the
 * speaker, the loss of a host that left, and the RESTART of a VM that died
 * with no twin when its definition says restart = on-failure (`now_s`: Unix
 * time, for the restart window); as the primary's host, a replica to place
 * (PROTECT) or, in DEGRADED with nowhere to re-protect, UNPROTECT. Nothing
 * without quorum. `def` may be NULL (undefined: no protection, no restart).
 */
bool cd_pair_next(const struct cd_pair *p, const struct cd_vmdef *def,
		  const struct cd_view_nodes *v, const struct cd_pairs *all, const char *me,
		  bool allow_two_node, uint64_t now_s, struct cd_pairmsg *out);
/*
 * For a `defined` VM whose definition says restart = on-failure: NULL when the
 * cluster starts it again now, on `host`, as restart `*count_out` + 1 of the
 * window; else why not ("" when no restart is due at all: it never ran, was
 * stopped, could not start, or restart = no). The reason is a static buffer.
 */
const char *cd_restart_blocked(const struct cd_pair *p, const struct cd_vmdef *def,
			       const struct cd_view_nodes *v, const struct cd_pairs *all,
			       uint64_t now_s, uint32_t *count_out, char host[CD_NAME_MAX]);

/* ---- the processes castord starts (supervise.c) --------------------------------------------- */

struct event_base;
struct cd_proc;
/* The child is ready: its ready_path exists as a socket (castor-vmm's control socket). */
typedef void (*cd_proc_ready_fn)(void *arg, struct cd_proc *p);
/*
 * The child ended: its wait status (-1 when unknown) and the last line of its
 * log. Call cd_proc_free(p) from here or later; nothing else of p is used.
 */
typedef void (*cd_proc_exit_fn)(void *arg, struct cd_proc *p, int wstatus, const char *last_line);
struct cd_proc_spec {
	const char *name;	/* the VM, for logs */
	char *const *argv;	/* argv[0] is the program; PATH is searched */
	const char *log_path;	/* its stdout and stderr, appended (0600) */
	const char *ready_path; /* a socket the child makes when it is ready */
	cd_proc_ready_fn ready_cb;
	cd_proc_exit_fn exit_cb;
	void *arg;
};
/*
 * Spawn the child (its own process group, stdin /dev/null, default signal
 * handling) and watch it on `base`'s loop through a pidfd. 0, or -errno with
 * why (a program that cannot be run is an error here, not an exit later).
 */
int cd_proc_start(struct event_base *base, const struct cd_proc_spec *spec, struct cd_proc **out,
		  char *why, size_t why_len);
pid_t cd_proc_pid(const struct cd_proc *p);
/* Not ended yet (a child that ended but was not reported is not running). */
bool cd_proc_is_running(const struct cd_proc *p);
const char *cd_proc_name(const struct cd_proc *p);
/* A signal through the pidfd (never a recycled pid); -ESRCH once it ended. */
int cd_proc_kill(struct cd_proc *p, int sig);
/* Stops watching; a child still running is killed (SIGKILL) and reaped. NULL is fine. */
void cd_proc_free(struct cd_proc *p);
/* "exited with status 1", "killed by signal 9 (Killed)" */
void cd_wait_status_str(int wstatus, char *buf, size_t len);

/* ---- membership and quorum from corosync (membership.c) ---------------------------------- */

#define CD_MAX_NODES 32 /* corosync's token must visit every node: clusters stay small */

struct cd_node_info {
	uint32_t nodeid;
	char name[CD_NAME_MAX]; /* "" until its castord announced itself */
	bool member;		/* in the CPG group now */
	bool witness;
};
struct cd_view_nodes {
	bool connected; /* corosync is reachable */
	bool quorate;	/* votequorum says this partition has quorum (false when not connected) */
	uint32_t local_nodeid;
	uint32_t total_votes, expected_votes, quorum;
	bool two_node;	/* votequorum's two_node mode: one node of two is quorate alone */
	uint64_t joins; /* group changes that brought a node in (this one's joins too) */
	unsigned n;
	struct cd_node_info node[CD_MAX_NODES]; /* every node seen, members or not */
};
/* Something in the view changed (runs on the event loop). */
typedef void (*cd_membership_fn)(void *arg);
/*
 * A message from a member, other than castord's own ANNOUNCE, in the group's
 * agreed order (every member gets the same sequence, this node's own
 * messages included).
 */
typedef void (*cd_membership_msg_fn)(void *arg, uint32_t from, const void *msg, size_t len);
struct event_base;
struct cd_membership;
/*
 * Join the CPG group "castor" and track votequorum from `base`'s loop; the
 * first attempt runs from the loop, and while corosync is unreachable or
 * after it is lost, one every second. `conf` must outlive the object.
 */
int cd_membership_open(struct event_base *base, const struct cd_config *conf, cd_membership_fn cb,
		       cd_membership_msg_fn msg_cb, void *arg, struct cd_membership **out);
/*
 * Multicast `len` bytes to the group, agreed order. -ENOTCONN without
 * corosync; -EAGAIN when corosync still holds it back after a few short tries
 * (flow control while the group syncs): the caller says "try again".
 */
int cd_membership_send(struct cd_membership *m, const struct iovec *iov, unsigned iovcnt);
void cd_membership_view(const struct cd_membership *m, struct cd_view_nodes *out);
void cd_membership_free(struct cd_membership *m); /* NULL is fine */

/* ---- Prometheus metrics (metrics.c) ------------------------------------------------------ */

struct evbuffer;
struct cd_metrics;
/* Append the exposition of one request to `b` (runs on the event loop). */
typedef void (*cd_metrics_fill_fn)(void *arg, struct evbuffer *b);
/* Serve GET /metrics on `addr` ("HOST:PORT") from `base`'s loop. */
int cd_metrics_open(struct event_base *base, const char *addr, cd_metrics_fill_fn fill, void *arg,
		    struct cd_metrics **out, char *why, size_t why_len);
void cd_metrics_free(struct cd_metrics *m); /* NULL is fine */
/* The node-level metrics of `v` as node `node` sees them. */
void cd_metrics_render(const char *node, const struct cd_view_nodes *v, struct evbuffer *b);
/* The per-VM metrics of the pairs (names are [A-Za-z0-9_-]: nothing to escape). */
void cd_metrics_render_pairs(const char *node, const struct cd_pairs *p, struct evbuffer *b);

#endif
