/*
 * castord: the sessions between two hosts that a pair needs -- a replica
 * started on the host the policy placed it on, protection asked of the
 * primary's castor-vmm toward it, the twin promoted on failover, protection
 * ended with quorum, a migration's destination started and the source sent
 * there, and the progress of each read from castor-vmm once a second
 * (docs/cluster.md). castord_vms.c calls these when an event is delivered or
 * the duty timer ticks; the castor-vmm processes themselves (slots, spawning,
 * control requests, reports) are castord_vms.c's.
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clusterd/castord.h"
#include "util/util.h"

/* ---- replicas and migration destinations, started here ---------------------------------- */

/* A port of castord.conf's range that no replica of this host listens on; 0: none. */
static uint16_t free_port(struct daemon *d)
{
	for (uint32_t port = d->conf.port_low; port <= d->conf.port_high; port++) {
		bool used = false;

		for (unsigned i = 0; i < CD_MAX_DEFS && !used; i++)
			used = d->local[i].proc && d->local[i].role != LOCAL_PRIMARY &&
			       d->local[i].port == port;
		if (!used)
			return (uint16_t)port;
	}
	return 0;
}

/*
 * A castor-vmm that listens for a peer (`cmd` replica or incoming) on a port of
 * this node's range, with `def`'s devices if not NULL: 0, or -errno and why.
 */
static int spawn_listening(struct daemon *d, const char *vm, const char *cmd, enum local_role role,
			   const struct cd_vmdef *def, char *why, size_t why_len)
{
	char sock[CD_PATH_MAX + CD_NAME_MAX + 24], listen[96];
	char disks[CD_MAX_DISKS][DISK_ARG_MAX];
	char *argv[ARGV_MAX];
	struct local_vm *slot = vms_free_slot(d);
	unsigned n = 0;
	uint16_t port = free_port(d);
	int rc;

	if (!strcmp(d->conf.replication_host, "0.0.0.0") || !strcmp(d->conf.replication_host, "::"))
		return util_why(why, why_len, -EADDRNOTAVAIL,
				"replication_host of %s is %s: its peer needs this node's address "
				"there (castord.conf)",
				d->conf.node, d->conf.replication_host);
	if (!slot || !port)
		return util_why(why, why_len, -ENOSPC,
				"%s has no free slot or port (replication_ports %u-%u)",
				d->conf.node, d->conf.port_low, d->conf.port_high);
	snprintf(sock, sizeof(sock), "%s/run/%s.%s.sock", d->conf.state_dir, vm, cmd);
	snprintf(listen, sizeof(listen), "%s:%u", d->conf.replication_host, port);
	argv[n++] = d->conf.vmm;
	argv[n++] = (char *)cmd;
	argv[n++] = "--name";
	argv[n++] = (char *)vm;
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--control";
	argv[n++] = sock;
	if (def) {
		rc = vms_devices_argv(d, def, argv, &n, disks, why, why_len);
		if (rc < 0)
			return rc;
	}
	if (d->conf.key_file[0]) {
		argv[n++] = "--key";
		argv[n++] = d->conf.key_file;
	}
	argv[n] = NULL;
	rc = vms_spawn(d, slot, vm, role, argv, sock, why, why_len);
	if (!rc)
		slot->port = port;
	return rc;
}

/* PROTECT delivered naming this host: start the replica, or say why it cannot run. */
void sess_replica_here(struct daemon *d, const char *vm)
{
	const struct cd_def *def = cd_defs_find(d->defs, vm);
	struct local_vm *old = vms_local(d, vm, LOCAL_REPLICA);
	char why[256], reason[384];
	int rc;

	if (old && !old->stopping) {
		LOG_WARN("vm %s: a replica of it runs here already; not started twice", vm);
		return;
	}
	if (old) { /* the one the pair lost, still stopping: the new one needs its place now */
		LOG_INFO("vm %s: the replica it lost here is killed to start a new one", vm);
		vms_finish_stop(old);
	}
	/* the twin has the primary's devices: its stream names them (its NICs' taps here) */
	if (!def || def->removed)
		rc = util_why(why, sizeof(why), -ENOENT, "%s has no definition here", d->conf.node);
	else
		rc = spawn_listening(d, vm, "replica", LOCAL_REPLICA, &def->vm, why, sizeof(why));
	if (!rc)
		return;
	LOG_ERR("vm %s: cannot keep its replica here: %s", vm, why);
	snprintf(reason, sizeof(reason), "replica on %s: %s", d->conf.node, why);
	vms_report_replica(d, vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
}

/*
 * A session request (protect, migrate) to this node's primary toward the host p->replica
 * (at p->replica_addr); refused, `fail_event` goes to the cluster with castor-vmm's reason.
 */
static void ask_toward(struct daemon *d, const struct cd_pair *p, struct local_vm *l,
		       Castor__Request *req, const char *doing, enum cd_pair_event fail_event)
{
	char why[300];
	struct cd_view v;
	int rc = vms_call(l, req, NULL, why, sizeof(why));

	if (!rc) {
		LOG_INFO("vm %s: %s %s (%s)", p->vm, doing, p->replica, p->replica_addr);
		return;
	}
	LOG_ERR("vm %s: %s %s refused: %s", p->vm, doing, p->replica_addr, why);
	castord_view_of(d, &v);
	vms_send_event(d, p->vm, fail_event, d->conf.node, &v, why);
}

/* MIGRATE delivered naming this host: start the destination, or say why it cannot run. */
void sess_incoming_here(struct daemon *d, const char *vm)
{
	const struct cd_def *def = cd_defs_find(d->defs, vm);
	char why[256], reason[384];
	int rc;

	if (vms_local(d, vm, LOCAL_INCOMING) || vms_local(d, vm, LOCAL_PRIMARY)) {
		LOG_WARN("vm %s: a castor-vmm of it runs here already; no destination started", vm);
		return;
	}
	if (!def || def->removed)
		rc = util_why(why, sizeof(why), -ENOENT, "%s has no definition here", d->conf.node);
	else
		rc = spawn_listening(d, vm, "incoming", LOCAL_INCOMING, &def->vm, why, sizeof(why));
	if (!rc)
		return;
	LOG_ERR("vm %s: cannot take its migration here: %s", vm, why);
	snprintf(reason, sizeof(reason), "destination %s: %s", d->conf.node, why);
	vms_report_replica(d, vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
}

/* INCOMING_READY delivered for this node's primary: migrate it there. */
void sess_migrate_toward(struct daemon *d, const struct cd_pair *p)
{
	struct local_vm *l = vms_local(d, p->vm, LOCAL_PRIMARY);
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__MigrateRequest mr = CASTOR__MIGRATE_REQUEST__INIT;

	if (!l)
		return; /* its loss is reported by its exit */
	mr.peer = (char *)p->replica_addr;
	req.body_case = CASTOR__REQUEST__BODY_MIGRATE;
	req.migrate = &mr;
	ask_toward(d, p, l, &req, "migrating to", CD_PAIR_E_MIGRATE_FAILED);
}

Castor__Response *sess_ha_status(struct daemon *d, const struct cd_pair *p, bool dr,
				 struct local_vm **l_out)
{
	struct local_vm *l = vms_local(d, p->vm, LOCAL_PRIMARY);
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__HaStatusRequest hr = CASTOR__HA_STATUS_REQUEST__INIT;
	Castor__Response *resp = NULL;
	char why[300];

	if (l_out)
		*l_out = l;
	if (!l || !l->ready)
		return NULL;
	hr.dr = dr;
	req.body_case = CASTOR__REQUEST__BODY_HA_STATUS;
	req.ha_status = &hr;
	if (vms_call(l, &req, &resp, why, sizeof(why)) < 0) {
		LOG_WARN("vm %s: %s", p->vm, why);
		return NULL;
	}
	return resp;
}

/* MIGRATING with the source here: MIGRATED once the destination runs it, or why not. */
void sess_mig_progress(struct daemon *d, const struct cd_pair *p)
{
	Castor__Response *resp = sess_ha_status(d, p, false, NULL);
	const Castor__HaStatus *h;
	char reason[256];
	struct cd_view v;

	if (!resp)
		return;
	h = resp->ha_status;
	castord_view_of(d, &v);
	if (h && h->migration && h->state && !strcmp(h->state, "migrated")) {
		snprintf(reason, sizeof(reason), "runs on %s; downtime %.1f ms, %u rounds",
			 p->replica, (double)h->downtime_ns / 1e6, h->rounds);
		vms_send_event(d, p->vm, CD_PAIR_E_MIGRATED, d->conf.node, &v, reason);
	} else if (h && h->migration && h->state &&
		   (!strcmp(h->state, "stopped") || !strcmp(h->state, "in-doubt"))) {
		snprintf(reason, sizeof(reason), "%s: %.200s", h->state,
			 h->last_error ? h->last_error : "");
		vms_send_event(d, p->vm, CD_PAIR_E_MIGRATE_FAILED, d->conf.node, &v, reason);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* REPLICA_READY delivered for this node's primary: protect toward it. */
void sess_protect_toward(struct daemon *d, const struct cd_pair *p)
{
	const struct cd_def *def = cd_defs_find(d->defs, p->vm);
	struct local_vm *l = vms_local(d, p->vm, LOCAL_PRIMARY);
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__ProtectRequest pr = CASTOR__PROTECT_REQUEST__INIT;

	if (!l || !def || def->removed)
		return; /* its loss is reported by its exit */
	pr.peer = (char *)p->replica_addr;
	pr.mode = def->vm.protection == CD_PROT_OUTPUT ? "output" : "interval";
	pr.interval_ms = def->vm.interval_ms;
	req.body_case = CASTOR__REQUEST__BODY_PROTECT;
	req.protect = &pr;
	/* castor-vmm holds nothing for a session that never began: unprotected again */
	ask_toward(d, p, l, &req, "protecting toward", CD_PAIR_E_UNPROTECT);
}

/* FAILING_OVER with the twin here: ask the replica to take over. */
void sess_promote_here(struct daemon *d, const struct cd_pair *p)
{
	struct local_vm *l = vms_local(d, p->vm, LOCAL_REPLICA);
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__FailoverRequest fr = CASTOR__FAILOVER_REQUEST__INIT;
	char why[300], reason[384];
	int rc;

	if (!l) {
		vms_report_replica(d, p->vm, CD_PAIR_E_REPLICA_LOST, NULL,
				   "the twin to promote does not run here");
		return;
	}
	/* the primary is known gone (the guard of FAILING_OVER): nothing streams any more */
	fr.force = true;
	req.body_case = CASTOR__REQUEST__BODY_FAILOVER;
	req.failover = &fr;
	rc = vms_call(l, &req, NULL, why, sizeof(why));
	if (rc < 0) {
		LOG_ERR("vm %s: the twin here cannot take over: %s", p->vm, why);
		snprintf(reason, sizeof(reason), "failover refused: %s", why);
		vms_report_replica(d, p->vm, CD_PAIR_E_REPLICA_LOST, NULL, reason);
		return;
	}
	l->role = LOCAL_PRIMARY; /* the same castor-vmm runs the VM now */
	snprintf(reason, sizeof(reason), "the twin runs on %s", d->conf.node);
	vms_report_replica(d, p->vm, CD_PAIR_E_PROMOTED, NULL, reason);
}

/* UNPROTECT delivered for this node's primary: castor-vmm stops replicating and lets its
 * held output go (the cluster decided, with quorum, that no twin can take over). */
void sess_unprotect_here(struct daemon *d, const struct cd_pair *p)
{
	struct local_vm *l = vms_local(d, p->vm, LOCAL_PRIMARY);
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__UnprotectRequest ur = CASTOR__UNPROTECT_REQUEST__INIT;
	Castor__Response *resp = NULL;
	char why[300];

	if (!l)
		return;
	ur.force = true; /* an initial copy in progress is abandoned too */
	req.body_case = CASTOR__REQUEST__BODY_UNPROTECT;
	req.unprotect = &ur;
	if (vms_call(l, &req, &resp, why, sizeof(why)) < 0) {
		/* -ENOENT: it was not protecting (the session never began): nothing held */
		LOG_WARN("vm %s: unprotect: %s", p->vm, why);
		return;
	}
	LOG_INFO("vm %s: unprotected; %llu held outputs released", p->vm,
		 resp->unprotect ? (unsigned long long)resp->unprotect->outputs_released : 0ull);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/*
 * The primary here stopped replicating (castor-vmm says degraded: its replica refused
 * an epoch, stopped acking, or the link broke) though the replica's host and castor-vmm
 * may live on: to the cluster its replica is lost -- REPLICA_LOST naming that replica,
 * so the pair goes degraded, the replica's castord stops its castor-vmm (the pairs no
 * longer place one there) and this one protects the VM again elsewhere. Its output stays
 * held meanwhile (castor-vmm holds it).
 */
static void replica_stopped(struct daemon *d, const struct cd_pair *p, const char *error)
{
	char reason[300];

	snprintf(reason, sizeof(reason), "castor-vmm on %s stopped replicating to %s: %s",
		 d->conf.node, p->replica, error && *error ? error : "no reason given");
	LOG_WARN("vm %s: %s", p->vm, reason);
	vms_report_about(d, p->vm, CD_PAIR_E_REPLICA_LOST, p->replica, NULL, reason);
}

/*
 * A primary here that replicates: its figures for /metrics; while it syncs, SYNCED once
 * castor-vmm says protected; REPLICA_LOST when it says degraded.
 */
void sess_repl_progress(struct daemon *d, const struct cd_pair *p)
{
	struct local_vm *l;
	Castor__Response *resp = sess_ha_status(d, p, false, &l);
	struct cd_view v;

	if (!resp)
		return;
	if (resp->ha_status) {
		const Castor__HaStatus *h = resp->ha_status;
		uint64_t now = util_now_ns(), rate = 0;
		struct cd_pairmsg m;

		/* epochs a second since the last tick, in thousandths */
		if (l->repl.valid && h->epochs >= l->repl.epochs && now > l->repl.at_ns)
			rate = (uint64_t)((double)(h->epochs - l->repl.epochs) * 1e12 /
					  (double)(now - l->repl.at_ns));
		cd_pairmsg_figures(&m, p->vm, d->conf.node, h->epochs, rate, h->lag_ns);
		castord_send_msg(d, &m);
		l->repl = (struct local_repl){.valid = true,
					      .at_ns = now,
					      .epochs = h->epochs,
					      .pause_p50_ns = h->pause_p50_ns,
					      .pause_p99_ns = h->pause_p99_ns,
					      .lag_ns = h->lag_ns,
					      .wire_bytes = h->total_wire_bytes,
					      .output_delay_p50_ns = h->output_delay_p50_ns,
					      .output_delay_p99_ns = h->output_delay_p99_ns,
					      .outputs_held = h->outputs_held};
	}
	if (p->state == CD_PAIR_S_SYNCING && resp->ha_status && resp->ha_status->state &&
	    !strcmp(resp->ha_status->state, "protected")) {
		castord_view_of(d, &v);
		vms_send_event(d, p->vm, CD_PAIR_E_SYNCED, d->conf.node, &v,
			       "the initial copy is acknowledged");
	}
	if ((p->state == CD_PAIR_S_SYNCING || p->state == CD_PAIR_S_PROTECTED) && resp->ha_status &&
	    resp->ha_status->state && !strcmp(resp->ha_status->state, "degraded"))
		replica_stopped(d, p, resp->ha_status->last_error);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}
