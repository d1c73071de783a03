/*
 * castord: starting, stopping and watching VMs (docs/cluster.md, "Starting
 * and stopping VMs").
 *
 * Every change of a VM's pair is an EVENT multicast to the group and applied
 * by every node when CPG delivers it (pairs.c): `castor vm start` on any node
 * sends START naming the chosen host; the castord of that host, on applying
 * it, starts castor-vmm and reports STARTED once its control socket exists,
 * START_FAILED if it never got there, PRIMARY_LOST the moment it dies (its
 * wait status and last words in the reason), STOPPED after a stop. A host
 * that leaves the membership takes its VMs with it: the lowest-numbered
 * member that still has quorum reports them lost, once.
 *
 * Protection (a definition with protection interval or output): the
 * primary's castord asks for a replica (PROTECT, pair_policy.c); the chosen
 * host's castord starts `castor-vmm replica` on a port of its range and
 * reports REPLICA_READY with its address; the primary's castord then sends
 * castor-vmm a ProtectRequest toward it and reports SYNCED once castor-vmm
 * says protected. A primary lost while protected makes the replica's castord
 * ask its castor-vmm to fail over and report PROMOTED: the twin runs, and the
 * same castord (now the primary's) asks for a new replica. A replica lost
 * (REPLICA_LOST) leaves the pair degraded until it is re-protected elsewhere
 * or, with no host left, unprotected (its held output released). Once a
 * second, each castord also stops any castor-vmm of its own that the pairs
 * no longer place here -- so after a partition heals, a VM the majority moved
 * away never runs twice. The sessions themselves (replica, protect, promote,
 * unprotect, migrate, and their progress) are castord_sessions.c's.
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clusterd/castord.h"
#include "util/util.h"

#define RESEND_NS (5ull * 1000000000ull) /* the same duty is sent again after this long */
#define CALL_MS	  5000			 /* castor-vmm control requests */

/* ---- messages out ------------------------------------------------------------------------ */

void castord_view_of(struct daemon *d, struct cd_view *out)
{
	struct cd_view_nodes v;

	cd_membership_view(d->members, &v);
	memset(out, 0, sizeof(*out));
	out->quorate = v.quorate && !cd_layout_problem(&v, d->conf.allow_two_node);
}

/* Multicast one event; it takes effect when delivered, here too. */
int castord_send_msg(struct daemon *d, const struct cd_pairmsg *m)
{
	struct cd_pairmsg_hdr h;
	struct iovec iov;
	int rc;

	iov.iov_base = &h;
	iov.iov_len = cd_pairmsg_encode(m, &h);
	rc = cd_membership_send(d->members, &iov, 1);
	if (rc < 0)
		LOG_WARN("vm %s: cannot send %s to the cluster (%s)", m->vm,
			 cd_pair_event_str(m->event), strerror(-rc));
	return rc;
}

/* An event about `vm` whose primary is `host` (replica and addr "" when not about one). */
int vms_send_event(struct daemon *d, const char *vm, enum cd_pair_event e, const char *host,
		   const struct cd_view *v, const char *reason)
{
	struct cd_pairmsg m;

	cd_pairmsg_event(&m, vm, e, host, v, reason);
	return castord_send_msg(d, &m);
}

/* An event this node witnessed about its own primary: with its view, the host gone if lost. */
static void report(struct daemon *d, const char *vm, enum cd_pair_event e, bool gone,
		   const char *reason)
{
	struct cd_view v;

	castord_view_of(d, &v);
	v.primary_gone = gone;
	vms_send_event(d, vm, e, d->conf.node, &v, reason);
}

/* The same about the replica this node keeps (addr: REPLICA_READY's). */
void vms_report_about(struct daemon *d, const char *vm, enum cd_pair_event e, const char *replica,
		      const char *addr, const char *reason)
{
	struct cd_pair_entry *p = cd_pairs_find(d->pairs, vm);
	struct cd_pairmsg m;
	struct cd_view v;

	castord_view_of(d, &v);
	v.replica_gone = e == CD_PAIR_E_REPLICA_LOST;
	cd_pairmsg_event(&m, vm, e, p ? p->pair.primary : "", &v, reason);
	snprintf(m.replica, sizeof(m.replica), "%s", replica);
	snprintf(m.addr, sizeof(m.addr), "%s", addr ? addr : "");
	castord_send_msg(d, &m);
}

void vms_report_replica(struct daemon *d, const char *vm, enum cd_pair_event e, const char *addr,
			const char *reason)
{
	vms_report_about(d, vm, e, d->conf.node, addr, reason);
}

void vms_replay(struct daemon *d)
{
	for (unsigned i = 0; i < d->pairs->n; i++) {
		struct cd_pairmsg m;
		struct cd_pairmsg_hdr h;
		struct iovec iov = {&h, 0};

		if (!d->pairs->e[i].generation)
			continue; /* never changed: every node has it so */
		cd_pairmsg_sync(&m, &d->pairs->e[i]);
		iov.iov_len = cd_pairmsg_encode(&m, &h);
		if (cd_membership_send(d->members, &iov, 1) < 0)
			LOG_WARN("vm %s: cannot replay its pair to the group", m.vm);
	}
}

/* ---- the castor-vmm processes of this host ------------------------------------------------- */

struct local_vm *vms_local(struct daemon *d, const char *vm, enum local_role role)
{
	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (d->local[i].proc && d->local[i].role == role && !strcmp(d->local[i].name, vm))
			return &d->local[i];
	return NULL;
}

static struct local_vm *local_of(struct daemon *d, const struct cd_proc *p)
{
	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (d->local[i].proc == p)
			return &d->local[i];
	return NULL;
}

static void local_release(struct local_vm *l)
{
	if (l->kill_ev)
		event_free(l->kill_ev);
	l->kill_ev = NULL;
	cd_proc_free(l->proc);
	l->proc = NULL;
	l->stopping = false;
	l->ready = false;
}

void vms_finish_stop(struct local_vm *l)
{
	cd_proc_kill(l->proc, SIGKILL);
	for (int i = 0; i < 100 && cd_proc_is_running(l->proc); i++)
		util_sleep_ns(10000000ull);
	local_release(l);
}

/* One request to a local castor-vmm: 0, or -errno with its message in why. */
int vms_call(struct local_vm *l, Castor__Request *req, Castor__Response **resp_out, char *why,
	     size_t why_len)
{
	Castor__Response *resp = NULL;
	int rc;

	req->id = 1;
	rc = pb_call(l->sock, req, &resp, CALL_MS);
	if (rc < 0)
		return util_why(why, why_len, rc, "castor-vmm of %s does not answer (%s)", l->name,
				strerror(-rc));
	if (resp->error) {
		rc = resp->error < 0 && resp->error > -4096 ? resp->error : -EPROTO;
		util_why(why, why_len, rc, "castor-vmm of %s: %s", l->name,
			 resp->message && *resp->message ? resp->message : strerror(-rc));
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return rc;
	}
	if (resp_out)
		*resp_out = resp;
	else
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static void vm_ready(void *arg, struct cd_proc *p)
{
	struct daemon *d = arg;
	struct local_vm *l = local_of(d, p);
	char reason[160], addr[96];

	if (!l)
		return;
	l->ready = true;
	if (l->role == LOCAL_REPLICA || l->role == LOCAL_INCOMING) {
		snprintf(addr, sizeof(addr), "%s:%u", d->conf.replication_host, l->port);
		snprintf(reason, sizeof(reason), "%s listens on %s",
			 l->role == LOCAL_REPLICA ? "replica" : "migration destination", addr);
		vms_report_replica(d, l->name,
				   l->role == LOCAL_REPLICA ? CD_PAIR_E_REPLICA_READY
							    : CD_PAIR_E_INCOMING_READY,
				   addr, reason);
		return;
	}
	snprintf(reason, sizeof(reason), "castor-vmm runs on %s, pid %d", d->conf.node,
		 (int)cd_proc_pid(p));
	report(d, cd_proc_name(p), CD_PAIR_E_STARTED, false, reason);
}

static void vm_exited(void *arg, struct cd_proc *p, int wstatus, const char *last)
{
	struct daemon *d = arg;
	struct local_vm *l = local_of(d, p);
	struct cd_pair_entry *e = cd_pairs_find(d->pairs, cd_proc_name(p));
	char st[96], reason[384]; /* cut to the message's 256 bytes when sent */
	char vm[CD_NAME_MAX];
	bool stopping = l && l->stopping;
	enum local_role role = l ? l->role : LOCAL_PRIMARY;

	snprintf(vm, sizeof(vm), "%s", cd_proc_name(p));
	cd_wait_status_str(wstatus, st, sizeof(st));
	snprintf(reason, sizeof(reason), "castor-vmm%s on %s %s%s%.150s",
		 role == LOCAL_REPLICA	  ? " replica"
		 : role == LOCAL_INCOMING ? " incoming"
					  : "",
		 d->conf.node, st, last[0] ? ": " : "", last);
	if (l)
		local_release(l); /* p is freed with it */
	if (role == LOCAL_INCOMING) {
		/* a migration's destination gone before it took the VM: the source runs on */
		if (!stopping && e && !strcmp(e->pair.replica, d->conf.node) &&
		    (e->pair.state == CD_PAIR_S_MOVING || e->pair.state == CD_PAIR_S_MIGRATING))
			vms_report_replica(d, vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
		return;
	}
	if (role == LOCAL_REPLICA) {
		/* a replica the pairs still count on: lost; one stopped on purpose: nothing */
		if (!stopping && e && !strcmp(e->pair.replica, d->conf.node) &&
		    e->pair.state != CD_PAIR_S_STOPPING && e->pair.state != CD_PAIR_S_DEGRADED)
			vms_report_replica(d, vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
		return;
	}
	if (e && e->pair.state == CD_PAIR_S_FAILING_OVER &&
	    !strcmp(e->pair.replica, d->conf.node)) {
		/* the twin promoted here died before its PROMOTED was delivered: both gone */
		vms_report_replica(d, vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
		return;
	}
	if (e && strcmp(e->pair.primary, d->conf.node))
		return; /* stopped because the VM runs elsewhere now */
	if (stopping || (e && e->pair.state == CD_PAIR_S_STOPPING))
		report(d, vm, CD_PAIR_E_STOPPED, true, reason);
	else if (e && e->pair.state == CD_PAIR_S_STARTING)
		report(d, vm, CD_PAIR_E_START_FAILED, true, reason);
	else
		report(d, vm, CD_PAIR_E_PRIMARY_LOST, true, reason);
}

/*
 * The definition's disks (their paths as this node names them: %n is its
 * name) and NICs, as castor-vmm options, from argv[*n] on.
 */
int vms_devices_argv(struct daemon *d, const struct cd_vmdef *def, char *argv[ARGV_MAX],
		     unsigned *n, char disks[CD_MAX_DISKS][DISK_ARG_MAX], char *why, size_t why_len)
{
	for (unsigned i = 0; i < def->ndisks; i++) {
		if (cd_vmdef_disk_on(def->disk[i], d->conf.node, disks[i], DISK_ARG_MAX) < 0)
			return util_why(why, why_len, -ENAMETOOLONG,
					"disk %s: too long with %%n as '%s'", def->disk[i],
					d->conf.node);
		argv[(*n)++] = "--disk";
		argv[(*n)++] = disks[i];
	}
	for (unsigned i = 0; i < def->nnics; i++) {
		argv[(*n)++] = "--net";
		argv[(*n)++] = (char *)def->nic[i];
	}
	return 0;
}

/* castor-vmm's command line for a definition (strings point into `def`, `bufs`, `disks`). */
static int vm_argv(struct daemon *d, const struct cd_vmdef *def, char *argv[ARGV_MAX],
		   char bufs[4][CD_PATH_MAX + CD_NAME_MAX + 16],
		   char disks[CD_MAX_DISKS][DISK_ARG_MAX], char *why, size_t why_len)
{
	unsigned n = 0, i;
	int rc;

	snprintf(bufs[0], sizeof(bufs[0]), "%" PRIu64, def->mem_bytes);
	snprintf(bufs[1], sizeof(bufs[1]), "%u", def->cpus);
	snprintf(bufs[2], sizeof(bufs[2]), "%s/run/%s.sock", d->conf.state_dir, def->name);
	snprintf(bufs[3], sizeof(bufs[3]), "%s/log/%s.console", d->conf.state_dir, def->name);
	argv[n++] = d->conf.vmm;
	argv[n++] = "run";
	argv[n++] = "--name";
	argv[n++] = (char *)def->name;
	argv[n++] = "--mem";
	argv[n++] = bufs[0];
	argv[n++] = "--cpus";
	argv[n++] = bufs[1];
	if (!strcmp(def->guest, "linux")) {
		argv[n++] = "--kernel";
		argv[n++] = (char *)def->kernel;
		if (def->initrd[0]) {
			argv[n++] = "--initrd";
			argv[n++] = (char *)def->initrd;
		}
		if (def->cmdline[0]) {
			argv[n++] = "--cmdline";
			argv[n++] = (char *)def->cmdline;
		}
	} else {
		argv[n++] = "--test-guest";
	}
	for (i = 0; i < def->nguest_param; i++) {
		argv[n++] = "--guest-param";
		argv[n++] = (char *)def->guest_param[i];
	}
	rc = vms_devices_argv(d, def, argv, &n, disks, why, why_len);
	if (rc < 0)
		return rc;
	argv[n++] = "--control";
	argv[n++] = bufs[2];
	argv[n++] = "--serial";
	argv[n++] = bufs[3];
	if (d->conf.key_file[0]) { /* its sessions to replicas on other hosts */
		argv[n++] = "--key";
		argv[n++] = d->conf.key_file;
	}
	argv[n] = NULL;
	return 0;
}

static int make_dir(const char *state_dir, const char *sub, char *why, size_t why_len)
{
	char path[CD_PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/%s", state_dir, sub);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return util_why(why, why_len, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

struct local_vm *vms_free_slot(struct daemon *d)
{
	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (!d->local[i].proc)
			return &d->local[i];
	return NULL;
}

/* Spawn castor-vmm with `argv` into `slot`, logging to state_dir/log/NAME.log. */
int vms_spawn(struct daemon *d, struct local_vm *slot, const char *vm, enum local_role role,
	      char *const argv[], const char *sock, char *why, size_t why_len)
{
	char log[CD_PATH_MAX + CD_NAME_MAX + 24];
	int rc;

	rc = make_dir(d->conf.state_dir, "run", why, why_len);
	if (!rc)
		rc = make_dir(d->conf.state_dir, "log", why, why_len);
	if (rc < 0)
		return rc;
	snprintf(log, sizeof(log), "%s/log/%s%s.log", d->conf.state_dir, vm,
		 role == LOCAL_REPLICA	  ? ".replica"
		 : role == LOCAL_INCOMING ? ".incoming"
					  : "");
	unlink(sock); /* a socket left by an earlier run is not a sign of readiness */
	{
		const struct cd_proc_spec spec = {.name = vm,
						  .argv = argv,
						  .log_path = log,
						  .ready_path = sock,
						  .ready_cb = vm_ready,
						  .exit_cb = vm_exited,
						  .arg = d};

		rc = cd_proc_start(d->base, &spec, &slot->proc, why, why_len);
	}
	if (rc < 0)
		return rc;
	snprintf(slot->name, sizeof(slot->name), "%s", vm);
	snprintf(slot->sock, sizeof(slot->sock), "%s", sock);
	slot->role = role;
	slot->ready = false;
	slot->stopping = false;
	slot->repl.valid = false;
	slot->dr = (struct local_dr){0};
	return 0;
}

/* START delivered for this host: run castor-vmm, or say at once why it cannot run. */
static void start_here(struct daemon *d, const char *vm)
{
	const struct cd_def *def = cd_defs_find(d->defs, vm);
	char *argv[ARGV_MAX], bufs[4][CD_PATH_MAX + CD_NAME_MAX + 16];
	char disks[CD_MAX_DISKS][DISK_ARG_MAX];
	char why[256], reason[384]; /* cut to the message's 256 bytes when sent */
	struct local_vm *slot = vms_free_slot(d);
	int rc;

	if (vms_local(d, vm, LOCAL_PRIMARY)) {
		LOG_WARN("vm %s: a castor-vmm of it runs here already; not started twice", vm);
		return;
	}
	if (!def || def->removed)
		rc = util_why(why, sizeof(why), -ENOENT, "%s has no definition here", d->conf.node);
	else if (!slot)
		rc = util_why(why, sizeof(why), -ENOSPC, "%s runs too many VMs", d->conf.node);
	else {
		rc = vm_argv(d, &def->vm, argv, bufs, disks, why, sizeof(why));
		if (!rc)
			rc = vms_spawn(d, slot, vm, LOCAL_PRIMARY, argv, bufs[2], why, sizeof(why));
	}
	if (!rc)
		return;
	LOG_ERR("vm %s: cannot start here: %s", vm, why);
	snprintf(reason, sizeof(reason), "on %s: %s", d->conf.node, why);
	report(d, vm, CD_PAIR_E_START_FAILED, true, reason);
}

static void kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local_vm *l = arg;

	(void)fd;
	(void)what;
	if (l->proc) {
		LOG_WARN("vm %s: castor-vmm still runs %d s after SIGTERM: SIGKILL", l->name,
			 STOP_GRACE_S);
		cd_proc_kill(l->proc, SIGKILL);
	}
}

/* SIGTERM, then SIGKILL after the grace period. */
static void local_stop(struct daemon *d, struct local_vm *l)
{
	const struct timeval grace = {STOP_GRACE_S, 0};

	if (l->stopping)
		return;
	l->stopping = true;
	cd_proc_kill(l->proc, SIGTERM);
	if (!l->kill_ev)
		l->kill_ev = evtimer_new(d->base, kill_cb, l);
	if (l->kill_ev)
		evtimer_add(l->kill_ev, &grace);
}

/* STOP delivered: the primary here stops (STOPPED follows its exit); a replica here too. */
static void stop_here(struct daemon *d, const struct cd_pairmsg *m)
{
	struct local_vm *l = vms_local(d, m->vm, LOCAL_PRIMARY);
	struct local_vm *r = vms_local(d, m->vm, LOCAL_REPLICA);
	struct local_vm *in = vms_local(d, m->vm, LOCAL_INCOMING);

	if (r)
		local_stop(d, r);
	if (in)
		local_stop(d, in);
	if (strcmp(m->primary, d->conf.node))
		return;
	if (!l) {
		report(d, m->vm, CD_PAIR_E_STOPPED, true, "no castor-vmm of it ran here");
		return;
	}
	local_stop(d, l);
}

/* ---- messages in --------------------------------------------------------------------------- */

/* What this node does about an event just applied to pair `p`. */
static void react(struct daemon *d, const struct cd_pairmsg *m, const struct cd_pair *p)
{
	const char *me = d->conf.node;

	switch (m->event) {
	case CD_PAIR_E_START:
	case CD_PAIR_E_RESTART:
		if (!strcmp(p->primary, me))
			start_here(d, m->vm);
		break;
	case CD_PAIR_E_PROTECT:
		if (!strcmp(p->replica, me))
			sess_replica_here(d, m->vm);
		break;
	case CD_PAIR_E_REPLICA_READY:
		if (!strcmp(p->primary, me))
			sess_protect_toward(d, p);
		break;
	case CD_PAIR_E_PRIMARY_LOST:
		/* declared lost while it still runs here (a forced failover): fence it first */
		if (!strcmp(m->primary, me) && vms_local(d, m->vm, LOCAL_PRIMARY))
			local_stop(d, vms_local(d, m->vm, LOCAL_PRIMARY));
		if (p->state == CD_PAIR_S_FAILING_OVER && !strcmp(p->replica, me))
			sess_promote_here(d, p);
		break;
	case CD_PAIR_E_UNPROTECT:
		if (!strcmp(p->primary, me))
			sess_unprotect_here(d, p);
		break;
	case CD_PAIR_E_MIGRATE:
		if (!strcmp(p->replica, me))
			sess_incoming_here(d, m->vm);
		break;
	case CD_PAIR_E_INCOMING_READY:
		if (!strcmp(p->primary, me))
			sess_migrate_toward(d, p);
		break;
	case CD_PAIR_E_MIGRATED:
		/* the same castor-vmm that took the migration runs the VM now */
		if (!strcmp(p->primary, me) && vms_local(d, m->vm, LOCAL_INCOMING))
			vms_local(d, m->vm, LOCAL_INCOMING)->role = LOCAL_PRIMARY;
		break;
	case CD_PAIR_E_STOP:
		stop_here(d, m);
		break;
	default:
		break; /* the others change the table only; the duty timer does the rest */
	}
}

struct vm_heard *vms_heard(struct daemon *d, const char *vm, bool make)
{
	struct vm_heard *free_slot = NULL;

	for (unsigned i = 0; i < CD_MAX_DEFS; i++) {
		if (!strcmp(d->heard[i].vm, vm))
			return &d->heard[i];
		if (!d->heard[i].vm[0] && !free_slot)
			free_slot = &d->heard[i];
	}
	for (unsigned i = 0; make && !free_slot && i < CD_MAX_DEFS; i++) {
		const struct cd_def *def = cd_defs_find(d->defs, d->heard[i].vm);

		if (!def || def->removed)
			free_slot = &d->heard[i]; /* about a VM undefined since */
	}
	if (!make || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	snprintf(free_slot->vm, sizeof(free_slot->vm), "%s", vm);
	return free_slot;
}

/* A replicating primary's figures (any node's, this one's too): kept for castor status. */
static void figures_heard(struct daemon *d, const struct cd_pairmsg *m)
{
	struct vm_heard *h = vms_heard(d, m->vm, true);

	if (!h)
		return;
	snprintf(h->primary, sizeof(h->primary), "%s", m->primary);
	h->epochs = m->epochs;
	h->epochs_milli_per_s = m->epochs_milli_per_s;
	h->lag_ns = m->lag_ns;
	h->figures_at_ns = util_now_ns();
}

void vms_msg(struct daemon *d, uint32_t from, const void *buf, size_t len)
{
	struct cd_pairmsg m;
	struct cd_pair_entry *e;
	const char *why = NULL;

	if (cd_pairmsg_decode(buf, len, &m) < 0) {
		LOG_WARN("node %u sent a malformed pair message (%zu bytes); ignored", from, len);
		return;
	}
	if (m.kind == CD_PAIRMSG_FIGURES) {
		figures_heard(d, &m);
		return;
	}
	if (m.kind == CD_PAIRMSG_DR_FIGURES) {
		dr_heard(d, &m);
		return;
	}
	if (cd_pairs_apply(d->pairs, &m, &why) < 0) {
		LOG_INFO("node %u: vm %s: %s %s: not applied (%s)", from, m.vm,
			 m.kind == CD_PAIRMSG_SYNC ? "sync" : "event",
			 m.kind == CD_PAIRMSG_SYNC ? "" : cd_pair_event_str(m.event),
			 why ? why : "refused");
		return;
	}
	e = cd_pairs_find(d->pairs, m.vm);
	if (!e)
		return;
	if (m.kind == CD_PAIRMSG_SYNC)
		return; /* a VM placed here without a process: the duty timer reports it */
	if (m.event == CD_PAIR_E_PROMOTED) {
		struct vm_heard *h = vms_heard(d, m.vm, true);

		if (h)
			h->last_failover_s = (uint64_t)time(NULL);
	}
	react(d, &m, &e->pair);
}

/* ---- the duty timer ------------------------------------------------------------------------- */

/* This node's duties (pair_policy.c), each sent once per pair generation (again after 5 s). */
/*
 * The pairs say this VM runs here, but no castor-vmm of it does -- for 3 ticks in a
 * row, so that a report already on its way (a castor-vmm that just ended) goes first:
 * it ended in a way no event reported (castord restarted; a twin that died before its
 * PROMOTED came back). Reported lost, or its start failed, or its stop done.
 */
#define ORPHAN_TICKS 3

static bool runs_here_without_process(struct daemon *d, unsigned i, struct cd_pairmsg *m)
{
	const struct cd_pair *p = &d->pairs->e[i].pair;
	struct cd_view v;

	if (strcmp(p->primary, d->conf.node) || p->state == CD_PAIR_S_DEFINED ||
	    p->state == CD_PAIR_S_FAILING_OVER || vms_local(d, p->vm, LOCAL_PRIMARY)) {
		d->orphan[i] = 0;
		return false;
	}
	if (++d->orphan[i] < ORPHAN_TICKS)
		return false;
	castord_view_of(d, &v);
	v.primary_gone = true;
	cd_pairmsg_event(m, p->vm,
			 p->state == CD_PAIR_S_STOPPING	  ? CD_PAIR_E_STOPPED
			 : p->state == CD_PAIR_S_STARTING ? CD_PAIR_E_START_FAILED
							  : CD_PAIR_E_PRIMARY_LOST,
			 p->primary, &v,
			 "no castor-vmm of it runs on its host (castord restarted?)");
	return true;
}

static void duties(struct daemon *d, const struct cd_view_nodes *v)
{
	uint64_t now = util_now_ns();

	for (unsigned i = 0; i < d->pairs->n; i++) {
		const struct cd_pair_entry *e = &d->pairs->e[i];
		const struct cd_def *def = cd_defs_find(d->defs, e->pair.vm);
		struct cd_pairmsg m;

		if (!runs_here_without_process(d, i, &m) &&
		    !cd_pair_next(&e->pair, def && !def->removed ? &def->vm : NULL, v, d->pairs,
				  d->conf.node, d->conf.allow_two_node, (uint64_t)time(NULL), &m))
			continue;
		if (d->sent[i].gen == e->generation && d->sent[i].event == (int)m.event &&
		    now - d->sent[i].at_ns < RESEND_NS)
			continue;
		if (castord_send_msg(d, &m) == 0) {
			d->sent[i].gen = e->generation;
			d->sent[i].event = (int)m.event;
			d->sent[i].at_ns = now;
		}
	}
}

/*
 * Stop every castor-vmm of this host that the pairs no longer place here: a
 * primary of a VM that runs elsewhere now (a partition healed), a replica of a
 * pair that has another replica or none.
 */
static void reconcile(struct daemon *d)
{
	for (unsigned i = 0; i < CD_MAX_DEFS; i++) {
		struct local_vm *l = &d->local[i];
		struct cd_pair_entry *e;
		bool wanted;

		if (!l->proc || l->stopping)
			continue;
		e = cd_pairs_find(d->pairs, l->name);
		if (!e)
			continue; /* not heard of yet (just started): nothing to go by */
		if (l->role == LOCAL_PRIMARY)
			wanted = (!strcmp(e->pair.primary, d->conf.node) &&
				  e->pair.state != CD_PAIR_S_DEFINED) ||
				 /* a twin promoted here, before its PROMOTED comes back */
				 (e->pair.state == CD_PAIR_S_FAILING_OVER &&
				  !strcmp(e->pair.replica, d->conf.node));
		else if (l->role == LOCAL_INCOMING)
			wanted = !strcmp(e->pair.replica, d->conf.node) &&
				 (e->pair.state == CD_PAIR_S_MOVING ||
				  e->pair.state == CD_PAIR_S_MIGRATING);
		else
			wanted = !strcmp(e->pair.replica, d->conf.node) &&
				 (e->pair.state == CD_PAIR_S_PLACING ||
				  e->pair.state == CD_PAIR_S_SYNCING ||
				  e->pair.state == CD_PAIR_S_PROTECTED ||
				  e->pair.state == CD_PAIR_S_FAILING_OVER);
		if (wanted)
			continue;
		LOG_WARN("vm %s: its %s here is not wanted any more (%s on '%s'): stopped", l->name,
			 l->role == LOCAL_PRIMARY   ? "castor-vmm"
			 : l->role == LOCAL_REPLICA ? "replica"
						    : "migration destination",
			 cd_pair_state_str(e->pair.state),
			 l->role == LOCAL_PRIMARY ? e->pair.primary : e->pair.replica);
		local_stop(d, l);
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct cd_view_nodes v;

	(void)fd;
	(void)what;
	cd_membership_view(d->members, &v);
	duties(d, &v);
	for (unsigned i = 0; i < d->pairs->n; i++) {
		const struct cd_pair *p = &d->pairs->e[i].pair;

		if ((p->state == CD_PAIR_S_SYNCING || p->state == CD_PAIR_S_PROTECTED ||
		     p->state == CD_PAIR_S_DEGRADED) &&
		    !strcmp(p->primary, d->conf.node))
			sess_repl_progress(d, p);
		if (p->state == CD_PAIR_S_MIGRATING && !strcmp(p->primary, d->conf.node))
			sess_mig_progress(d, p);
		/* where a DR copy may be asked for, it is kept */
		if (cd_pair_is_legal(p->state, CD_PAIR_E_DR_PROTECT) &&
		    !strcmp(p->primary, d->conf.node))
			dr_progress(d, p);
	}
	reconcile(d);
}

int vms_init(struct daemon *d)
{
	const struct timeval second = {1, 0};

	d->tick_ev = event_new(d->base, -1, EV_PERSIST, tick_cb, d);
	if (!d->tick_ev || event_add(d->tick_ev, &second) < 0)
		return -ENOMEM;
	return 0;
}

void vms_view_changed(struct daemon *d, const struct cd_view_nodes *v)
{
	duties(d, v);
}

/* The primaries replicating from here that castor-vmm has reported on, one at a time. */
static const struct local_vm *next_repl(const struct daemon *d, unsigned *i)
{
	for (; *i < CD_MAX_DEFS; (*i)++) {
		const struct local_vm *l = &d->local[*i];

		if (l->proc && l->role == LOCAL_PRIMARY && l->repl.valid)
			return &d->local[(*i)++];
	}
	return NULL;
}

#define EACH_REPL(d, l, i) for (unsigned i = 0; ((l) = next_repl((d), &i));)

/* One series of a VM; with `quantile` set, its 0.5 and 0.99 values (v, v99). */
static void series(struct evbuffer *b, const char *name, const char *node, const char *vm,
		   bool quantile, double v, double v99)
{
	if (!quantile) {
		evbuffer_add_printf(b, "%s{node=\"%s\",vm=\"%s\"} %.9g\n", name, node, vm, v);
		return;
	}
	evbuffer_add_printf(b, "%s{node=\"%s\",vm=\"%s\",quantile=\"0.5\"} %.6f\n", name, node, vm,
			    v);
	evbuffer_add_printf(b, "%s{node=\"%s\",vm=\"%s\",quantile=\"0.99\"} %.6f\n", name, node, vm,
			    v99);
}

void vms_render_metrics(struct daemon *d, struct evbuffer *b)
{
	static const struct {
		const char *name, *type, *help;
		bool quantile;
	} fam[] = {
		{"castor_vm_epochs_total", "counter", "epochs acknowledged by the replica", false},
		{"castor_vm_pause_seconds", "gauge", "checkpoint pause, by quantile", true},
		{"castor_vm_lag_seconds", "gauge", "since the pause of the oldest unacked epoch",
		 false},
		{"castor_vm_wire_bytes_total", "counter", "replication bytes sent", false},
		{"castor_vm_output_delay_seconds", "gauge", "held output's delay, by quantile",
		 true},
		{"castor_vm_outputs_held", "gauge", "outputs waiting for their epoch's ack", false},
	};
	const struct local_vm *l;

	for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		evbuffer_add_printf(b,
				    "# HELP %s %s (primaries protected from this host)\n"
				    "# TYPE %s %s\n",
				    fam[k].name, fam[k].help, fam[k].name, fam[k].type);
		EACH_REPL(d, l, i)
		{
			const struct local_repl *r = &l->repl;
			/* in the order of fam[]: value, and the 0.99 quantile where there is one */
			const double v[][2] = {
				{(double)r->epochs, 0},
				{(double)r->pause_p50_ns / 1e9, (double)r->pause_p99_ns / 1e9},
				{(double)r->lag_ns / 1e9, 0},
				{(double)r->wire_bytes, 0},
				{(double)r->output_delay_p50_ns / 1e9,
				 (double)r->output_delay_p99_ns / 1e9},
				{(double)r->outputs_held, 0},
			};

			series(b, fam[k].name, d->conf.node, l->name, fam[k].quantile, v[k][0],
			       v[k][1]);
		}
	}
	dr_render_metrics(d, b);
}

void vms_shutdown(struct daemon *d)
{
	if (d->tick_ev)
		event_free(d->tick_ev);
	d->tick_ev = NULL;
	uint64_t deadline = util_now_ns() + (uint64_t)STOP_GRACE_S * 1000000000ull;
	bool any = false;

	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (d->local[i].proc) {
			LOG_INFO("vm %s: stopping its castor-vmm: castord exits", d->local[i].name);
			cd_proc_kill(d->local[i].proc, SIGTERM);
			any = true;
		}
	/* cd_proc_free reaps; give each the grace period to end on its own first */
	while (any && util_now_ns() < deadline) {
		any = false;
		for (unsigned i = 0; i < CD_MAX_DEFS; i++)
			if (d->local[i].proc && cd_proc_is_running(d->local[i].proc))
				any = true;
		if (any)
			util_sleep_ns(50000000ull);
	}
	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (d->local[i].proc)
			local_release(&d->local[i]);
}
