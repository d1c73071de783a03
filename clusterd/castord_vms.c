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
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clusterd/castord.h"
#include "util/util.h"

#define ARGV_MAX (16 + 2 * (CD_MAX_GUEST_PARAM + CD_MAX_DISKS + CD_MAX_NICS))

/* ---- messages out ------------------------------------------------------------------------ */

static void view_of(struct daemon *d, struct cd_view *out)
{
	struct cd_view_nodes v;

	cd_membership_view(d->members, &v);
	memset(out, 0, sizeof(*out));
	out->quorate = v.quorate && !cd_layout_problem(&v, d->conf.allow_two_node);
}

/* Multicast one event about `vm` on `host`; it takes effect when delivered, here too. */
static int send_event(struct daemon *d, const char *vm, enum cd_pair_event e, const char *host,
		      const struct cd_view *v, const char *reason)
{
	struct cd_pairmsg m;
	struct cd_pairmsg_hdr h;
	struct iovec iov;
	int rc;

	cd_pairmsg_event(&m, vm, e, host, v, reason);
	iov.iov_base = &h;
	iov.iov_len = cd_pairmsg_encode(&m, &h);
	rc = cd_membership_send(d->members, &iov, 1);
	if (rc < 0)
		LOG_WARN("vm %s: cannot send %s to the cluster (%s)", vm, cd_pair_event_str(e),
			 strerror(-rc));
	return rc;
}

/* An event this node witnessed about its own VM: with its view, and the host gone if lost. */
static void report(struct daemon *d, const char *vm, enum cd_pair_event e, bool gone,
		   const char *reason)
{
	struct cd_view v;

	view_of(d, &v);
	v.primary_gone = gone;
	send_event(d, vm, e, d->conf.node, &v, reason);
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

static struct local_vm *local_find(struct daemon *d, const char *vm)
{
	for (unsigned i = 0; i < CD_MAX_DEFS; i++)
		if (d->local[i].proc && !strcmp(d->local[i].name, vm))
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
}

static void vm_ready(void *arg, struct cd_proc *p)
{
	struct daemon *d = arg;
	char reason[96];

	snprintf(reason, sizeof(reason), "castor-vmm runs on %s, pid %d", d->conf.node,
		 (int)cd_proc_pid(p));
	report(d, cd_proc_name(p), CD_PAIR_E_STARTED, false, reason);
}

static void vm_exited(void *arg, struct cd_proc *p, int wstatus, const char *last)
{
	struct daemon *d = arg;
	struct local_vm *l = local_find(d, cd_proc_name(p));
	struct cd_pair_entry *e = cd_pairs_find(d->pairs, cd_proc_name(p));
	char st[96], reason[384]; /* cut to the message's 256 bytes when sent */
	char vm[CD_NAME_MAX];
	bool stopping = l && l->stopping;

	snprintf(vm, sizeof(vm), "%s", cd_proc_name(p));
	cd_wait_status_str(wstatus, st, sizeof(st));
	snprintf(reason, sizeof(reason), "castor-vmm on %s %s%s%.150s", d->conf.node, st,
		 last[0] ? ": " : "", last);
	if (l)
		local_release(l); /* p is freed with it */
	if (stopping || (e && e->pair.state == CD_PAIR_S_STOPPING))
		report(d, vm, CD_PAIR_E_STOPPED, true, reason);
	else if (e && e->pair.state == CD_PAIR_S_STARTING)
		report(d, vm, CD_PAIR_E_START_FAILED, true, reason);
	else
		report(d, vm, CD_PAIR_E_PRIMARY_LOST, true, reason);
}

/* castor-vmm's command line for a definition (strings point into `def` and `bufs`). */
static void vm_argv(struct daemon *d, const struct cd_vmdef *def, char *argv[ARGV_MAX],
		    char bufs[4][CD_PATH_MAX + CD_NAME_MAX + 16])
{
	unsigned n = 0, i;

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
	for (i = 0; i < def->ndisks; i++) {
		argv[n++] = "--disk";
		argv[n++] = (char *)def->disk[i];
	}
	for (i = 0; i < def->nnics; i++) {
		argv[n++] = "--net";
		argv[n++] = (char *)def->nic[i];
	}
	argv[n++] = "--control";
	argv[n++] = bufs[2];
	argv[n++] = "--serial";
	argv[n++] = bufs[3];
	argv[n] = NULL;
}

static int make_dir(const char *state_dir, const char *sub, char *why, size_t why_len)
{
	char path[CD_PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/%s", state_dir, sub);
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return util_why(why, why_len, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

/* START delivered for this host: run castor-vmm, or say at once why it cannot run. */
static void start_here(struct daemon *d, const char *vm)
{
	const struct cd_def *def = cd_defs_find(d->defs, vm);
	char *argv[ARGV_MAX], bufs[4][CD_PATH_MAX + CD_NAME_MAX + 16];
	char log[CD_PATH_MAX + CD_NAME_MAX + 16], why[256];
	struct local_vm *slot = NULL;
	int rc;

	if (local_find(d, vm)) {
		LOG_WARN("vm %s: a castor-vmm of it runs here already; not started twice", vm);
		return;
	}
	for (unsigned i = 0; i < CD_MAX_DEFS && !slot; i++)
		if (!d->local[i].proc)
			slot = &d->local[i];
	if (!def || def->removed) {
		rc = util_why(why, sizeof(why), -ENOENT, "%s has no definition here", d->conf.node);
		goto fail;
	}
	if (!slot) {
		rc = util_why(why, sizeof(why), -ENOSPC, "%s runs too many VMs", d->conf.node);
		goto fail;
	}
	vm_argv(d, &def->vm, argv, bufs);
	rc = make_dir(d->conf.state_dir, "run", why, sizeof(why));
	if (!rc)
		rc = make_dir(d->conf.state_dir, "log", why, sizeof(why));
	if (rc < 0)
		goto fail;
	snprintf(log, sizeof(log), "%s/log/%s.log", d->conf.state_dir, vm);
	unlink(bufs[2]); /* a socket left by an earlier run is not a sign of readiness */
	{
		const struct cd_proc_spec spec = {.name = vm,
						  .argv = argv,
						  .log_path = log,
						  .ready_path = bufs[2],
						  .ready_cb = vm_ready,
						  .exit_cb = vm_exited,
						  .arg = d};

		rc = cd_proc_start(d->base, &spec, &slot->proc, why, sizeof(why));
	}
	if (rc < 0)
		goto fail;
	snprintf(slot->name, sizeof(slot->name), "%s", vm);
	return;
fail:
	LOG_ERR("vm %s: cannot start here: %s", vm, why);
	{
		char reason[384]; /* cut to the message's 256 bytes when sent */

		snprintf(reason, sizeof(reason), "on %s: %s", d->conf.node, why);
		report(d, vm, CD_PAIR_E_START_FAILED, true, reason);
	}
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

/* STOP delivered for this host. */
static void stop_here(struct daemon *d, const char *vm)
{
	struct local_vm *l = local_find(d, vm);
	const struct timeval grace = {STOP_GRACE_S, 0};

	if (!l) {
		report(d, vm, CD_PAIR_E_STOPPED, true, "no castor-vmm of it ran here");
		return;
	}
	l->stopping = true;
	cd_proc_kill(l->proc, SIGTERM);
	if (!l->kill_ev)
		l->kill_ev = evtimer_new(d->base, kill_cb, l);
	if (l->kill_ev)
		evtimer_add(l->kill_ev, &grace);
}

/* ---- messages in --------------------------------------------------------------------------- */

void vms_msg(struct daemon *d, uint32_t from, const void *buf, size_t len)
{
	struct cd_pairmsg m;
	struct cd_pair_entry *e;
	const char *why = NULL;
	bool mine;

	if (cd_pairmsg_decode(buf, len, &m) < 0) {
		LOG_WARN("node %u sent a malformed pair message (%zu bytes); ignored", from, len);
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
	mine = e && !strcmp(e->pair.primary, d->conf.node);
	if (m.kind == CD_PAIRMSG_SYNC) {
		/* the cluster thinks it runs here, but this castord has no such process */
		if (mine && e->pair.state != CD_PAIR_S_DEFINED && !local_find(d, m.vm))
			report(d, m.vm,
			       e->pair.state == CD_PAIR_S_STOPPING   ? CD_PAIR_E_STOPPED
			       : e->pair.state == CD_PAIR_S_STARTING ? CD_PAIR_E_START_FAILED
								     : CD_PAIR_E_PRIMARY_LOST,
			       true, "castord restarted: no castor-vmm of it runs here");
		return;
	}
	if (m.event == CD_PAIR_E_START && mine)
		start_here(d, m.vm);
	else if (m.event == CD_PAIR_E_STOP && !strcmp(m.primary, d->conf.node))
		stop_here(d, m.vm);
}

/* Is `host` a node that was seen and is no member now? Unknown names are not "gone". */
static bool host_left(const struct cd_view_nodes *v, const char *host)
{
	for (unsigned i = 0; i < v->n; i++)
		if (!strcmp(v->node[i].name, host))
			return !v->node[i].member;
	return false;
}

void vms_view_changed(struct daemon *d, const struct cd_view_nodes *v)
{
	uint32_t lowest = UINT32_MAX;
	struct cd_view cv = {.quorate = v->quorate, .primary_gone = true};

	if (!v->connected || !v->quorate || cd_layout_problem(v, d->conf.allow_two_node))
		return;
	for (unsigned i = 0; i < v->n; i++)
		if (v->node[i].member && v->node[i].nodeid < lowest)
			lowest = v->node[i].nodeid;
	if (lowest != v->local_nodeid)
		return; /* one node speaks for the cluster: the lowest id */
	for (unsigned i = 0; i < d->pairs->n; i++) {
		const struct cd_pair *p = &d->pairs->e[i].pair;
		char reason[128];

		if (p->state == CD_PAIR_S_DEFINED || !p->primary[0] || !host_left(v, p->primary))
			continue;
		snprintf(reason, sizeof(reason), "host %s left the cluster", p->primary);
		send_event(d, p->vm,
			   p->state == CD_PAIR_S_STOPPING   ? CD_PAIR_E_STOPPED
			   : p->state == CD_PAIR_S_STARTING ? CD_PAIR_E_START_FAILED
							    : CD_PAIR_E_PRIMARY_LOST,
			   p->primary, &cv, reason);
	}
}

/* ---- requests ------------------------------------------------------------------------------ */

void vms_fill(struct daemon *d, Castor__VmDefinition *o, const char *name)
{
	struct cd_pair_entry *e = cd_pairs_find(d->pairs, name);

	o->state = (char *)cd_pair_state_str(e ? e->pair.state : CD_PAIR_S_DEFINED);
	o->primary = e ? e->pair.primary : "";
	o->replica = e ? e->pair.replica : "";
	o->last_event = e ? e->pair.last_reason : "";
	o->failovers = e ? e->pair.failovers : 0;
}

/* May `host` run a VM: a member (by name) that is not a witness? */
static bool can_host(const struct cd_view_nodes *v, const char *host)
{
	for (unsigned i = 0; i < v->n; i++)
		if (!strcmp(v->node[i].name, host))
			return v->node[i].member && !v->node[i].witness;
	return false;
}

/* The host for a start: the one asked for, else the definition's first live host, else
 * the live host with the fewest VMs (the lowest name on a tie). */
static int choose_host(struct daemon *d, const struct cd_vmdef *def, const char *asked, char *out,
		       char *why, size_t why_len)
{
	struct cd_view_nodes v;
	unsigned best_load = UINT32_MAX;

	cd_membership_view(d->members, &v);
	if (asked && *asked) {
		if (!can_host(&v, asked))
			return util_why(why, why_len, -EHOSTUNREACH,
					"host '%.64s' is not a live member that hosts VMs (see "
					"castor node list)",
					asked);
		snprintf(out, CD_NAME_MAX, "%s", asked);
		return 0;
	}
	for (unsigned i = 0; i < def->nhosts; i++)
		if (can_host(&v, def->hosts[i])) {
			snprintf(out, CD_NAME_MAX, "%s", def->hosts[i]);
			return 0;
		}
	out[0] = 0;
	for (unsigned i = 0; i < v.n; i++) {
		unsigned load = 0;

		if (!v.node[i].name[0] || !can_host(&v, v.node[i].name))
			continue;
		for (unsigned j = 0; j < d->pairs->n; j++)
			load += !strcmp(d->pairs->e[j].pair.primary, v.node[i].name);
		if (load < best_load || (load == best_load && strcmp(v.node[i].name, out) < 0)) {
			best_load = load;
			snprintf(out, CD_NAME_MAX, "%s", v.node[i].name);
		}
	}
	if (out[0])
		return 0;
	return util_why(why, why_len, -EHOSTUNREACH,
			def->nhosts ? "none of the VM's hosts is a live member, and no other "
				      "host can run it"
				    : "no live member can run VMs");
}

static const struct cd_def *defined(struct daemon *d, const char *name, char *why, size_t why_len)
{
	const struct cd_def *e = name ? cd_defs_find(d->defs, name) : NULL;

	if (!e || e->removed) {
		util_why(why, why_len, -ENOENT, "no VM named '%.64s' is defined", name ? name : "");
		return NULL;
	}
	return e;
}

/* Send the operator's event and fill the reply with what will follow once it is delivered. */
static int request(struct daemon *d, const char *vm, enum cd_pair_event ev, const char *host,
		   enum cd_pair_state next, Castor__VmDefinition *o, char *why, size_t why_len)
{
	struct cd_view v;
	int rc;

	view_of(d, &v);
	rc = send_event(d, vm, ev, host, &v,
			ev == CD_PAIR_E_START ? "castor vm start" : "castor vm stop");
	if (rc < 0)
		return util_why(why, why_len, rc, "cannot send the %s to the cluster (%s)%s",
				cd_pair_event_str(ev), strerror(-rc),
				rc == -EAGAIN ? ": the group is syncing, try again" : "");
	o->name = (char *)vm;
	o->state = (char *)cd_pair_state_str(next);
	o->primary = (char *)host;
	return 0;
}

int vms_start(struct daemon *d, const Castor__VmStartRequest *r, Castor__VmDefinition *o,
	      const char **msg)
{
	static char why[300];
	static char host[CD_NAME_MAX];
	const struct cd_def *e = defined(d, r->name, why, sizeof(why));
	struct cd_pair_entry *p;
	int rc;

	*msg = why;
	if (!e)
		return -ENOENT;
	p = cd_pairs_find(d->pairs, e->vm.name);
	if (p && !cd_pair_is_legal(p->pair.state, CD_PAIR_E_START)) {
		snprintf(why, sizeof(why), "vm %s is %s%s%s: stop it first", e->vm.name,
			 cd_pair_state_str(p->pair.state), p->pair.primary[0] ? " on " : "",
			 p->pair.primary);
		return -EBUSY;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	*msg = why;
	rc = choose_host(d, &e->vm, r->host, host, why, sizeof(why));
	if (rc < 0)
		return rc;
	return request(d, e->vm.name, CD_PAIR_E_START, host, CD_PAIR_S_STARTING, o, why,
		       sizeof(why));
}

int vms_stop(struct daemon *d, const Castor__VmStopRequest *r, Castor__VmDefinition *o,
	     const char **msg)
{
	static char why[300];
	const struct cd_def *e = defined(d, r->name, why, sizeof(why));
	struct cd_pair_entry *p;

	*msg = why;
	if (!e)
		return -ENOENT;
	p = cd_pairs_find(d->pairs, e->vm.name);
	if (!p || !cd_pair_is_legal(p->pair.state, CD_PAIR_E_STOP)) {
		snprintf(why, sizeof(why), "vm %s is %s: nothing to stop", e->vm.name,
			 cd_pair_state_str(p ? p->pair.state : CD_PAIR_S_DEFINED));
		return -EALREADY;
	}
	/* stopping needs no quorum: it only makes the VM quieter */
	return request(d, e->vm.name, CD_PAIR_E_STOP, p->pair.primary, CD_PAIR_S_STOPPING, o, why,
		       sizeof(why));
}

void vms_shutdown(struct daemon *d)
{
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
