/*
 * castord: the cluster daemon, one per host (design.md §6, docs/cluster.md).
 *
 *   castord [--config FILE]
 *
 * Built so far: the configuration, membership and quorum from corosync
 * (membership.c), the control socket serving `castor node list` and the
 * cluster's VM definitions (`castor vm define|undefine|list|show`: defs.c,
 * replicated over CPG, kept in state_dir/vms), the pairs (pairs.c: `castor
 * vm start|stop`, every event over CPG), the castor-vmm processes of the VMs
 * that run on this host (supervise.c: a crash is reported to the cluster at
 * once), and the Prometheus endpoint (metrics.c). Protection, failover and
 * re-protection come next (docs/cluster.md says what exists).
 *
 * One libevent loop runs everything; corosync's fds join it. The control
 * socket is a unix socket, mode 0600, and a peer other than root or our own
 * uid is refused (SO_PEERCRED). Exit status: 0 on SIGTERM/SIGINT, 1 when the
 * daemon could not start, 2 for a bad command line or configuration.
 */
#define LOG_TAG "castord"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clusterd/castord.h"
#include "clusterd/cluster.h"
#include "proto/pb.h"
#include "util/util.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: castord [--config FILE]\n"
		   "\n"
		   "  --config FILE   castord.conf (default " CD_CONFIG_DEFAULT_PATH ")\n"
		   "  --help          this text\n"
		   "docs/cluster.md describes the file and what castord does.\n");
}

/* ---- the control socket ------------------------------------------------------------------ */

static void node_list(struct daemon *d, Castor__Response *resp, Castor__NodeList *nl,
		      Castor__NodeInfo *infos, Castor__NodeInfo **ptrs, struct cd_view_nodes *v)
{
	cd_membership_view(d->members, v);
	nl->connected = v->connected;
	nl->quorate = v->quorate;
	nl->local_nodeid = v->local_nodeid;
	nl->local_name = d->conf.node;
	nl->total_votes = v->total_votes;
	nl->expected_votes = v->expected_votes;
	nl->quorum = v->quorum;
	nl->layout_problem = (char *)cd_layout_problem(v, d->conf.allow_two_node);
	if (!nl->layout_problem)
		nl->layout_problem = "";
	for (unsigned i = 0; i < v->n; i++) {
		castor__node_info__init(&infos[i]);
		infos[i].nodeid = v->node[i].nodeid;
		infos[i].name = v->node[i].name;
		infos[i].member = v->node[i].member && v->connected;
		infos[i].witness = v->node[i].witness;
		infos[i].local = v->node[i].nodeid == v->local_nodeid;
		ptrs[i] = &infos[i];
	}
	nl->n_node = v->n;
	nl->node = ptrs;
	resp->body_case = CASTOR__RESPONSE__BODY_NODE_LIST;
	resp->node_list = nl;
}

/* ---- VM definitions, cluster-wide ----------------------------------------------------------- */

/* Multicast one change; it takes effect when CPG delivers it, here as everywhere. */
static int send_change(struct daemon *d, const struct cd_defmsg *msg)
{
	struct cd_defmsg_hdr hdr;
	struct iovec iov[2];
	unsigned n = cd_defmsg_encode(msg, &hdr, iov);

	return cd_membership_send(d->members, iov, n);
}

static void defs_msg(struct daemon *d, uint32_t from, const void *buf, size_t len)
{
	struct cd_defmsg m;
	char why[512];

	if (cd_defmsg_decode(buf, len, &m) < 0) {
		LOG_WARN("node %u sent a malformed message (%zu bytes); ignored", from, len);
		return;
	}
	if (cd_defs_apply(d->defs, m.name, m.text, m.text_len, m.generation, m.origin, why,
			  sizeof(why)) < 0)
		LOG_WARN("node %u: vm %s: %s; ignored", from, m.name, why);
}

/* Every message from the group, in agreed order: definitions or pairs, by magic. */
static void group_msg(void *arg, uint32_t from, const void *buf, size_t len)
{
	struct daemon *d = arg;
	uint64_t magic = 0;

	if (len >= sizeof(magic))
		memcpy(&magic, buf, sizeof(magic));
	if (magic == CD_PAIRMSG_MAGIC)
		vms_msg(d, from, buf, len);
	else
		defs_msg(d, from, buf, len);
}

/* A node joined: replay the whole table, so it catches up (versions decide). */
static void replay_defs(struct daemon *d)
{
	for (unsigned i = 0; i < d->defs->n; i++) {
		const struct cd_def *e = &d->defs->def[i];
		struct cd_defmsg m = {.kind = e->removed ? CD_DEFMSG_UNDEFINE : CD_DEFMSG_DEFINE,
				      .text = e->text,
				      .text_len = e->text ? strlen(e->text) : 0,
				      .generation = e->generation,
				      .origin = e->origin};
		int rc;

		snprintf(m.name, sizeof(m.name), "%s", e->vm.name);
		rc = send_change(d, &m);
		if (rc < 0)
			LOG_WARN("vm %s: cannot replay its definition to the group (%s)", m.name,
				 strerror(-rc));
	}
}

/* `hosts` (CD_MAX_HOSTS pointers) must live as long as `o`: one array per reply entry. */
static void fill_def(Castor__VmDefinition *o, const struct cd_def *e, bool text, char **hosts)
{
	const struct cd_vmdef *v = &e->vm;

	o->name = (char *)v->name;
	o->guest = (char *)v->guest;
	o->mem_bytes = v->mem_bytes;
	o->cpus = v->cpus;
	o->protection = (char *)cd_protection_str(v->protection);
	o->interval_ms = v->interval_ms;
	o->restart = (char *)cd_restart_str(v->restart);
	for (unsigned i = 0; i < v->nhosts; i++)
		hosts[i] = (char *)v->hosts[i];
	o->n_hosts = v->nhosts;
	o->hosts = hosts;
	o->disks = v->ndisks;
	o->nics = v->nnics;
	o->generation = e->generation;
	o->origin = e->origin;
	if (text && e->text)
		o->text = e->text;
}

/* The hosts of a reply that carries one definition (the loop is single-threaded). */
static char *one_hosts[CD_MAX_HOSTS];

/* The change needs quorum: a partition must not rewrite what the majority holds. */
int castord_need_quorum(struct daemon *d, const char **msg)
{
	struct cd_view_nodes v;

	cd_membership_view(d->members, &v);
	*msg = cd_layout_problem(&v, d->conf.allow_two_node);
	if (*msg)
		return -EPERM;
	if (v.quorate)
		return 0;
	*msg = v.connected ? "no quorum: definitions change only in the quorate partition"
			   : "castord cannot reach corosync: no quorum, no change";
	return -EPERM;
}

static int vm_define(struct daemon *d, const Castor__VmDefineRequest *r, Castor__VmDefinition *o,
		     const char **msg)
{
	static char why[600];
	static struct cd_def parsed;
	const struct cd_def *old;
	struct cd_view_nodes v;
	const char *file = r->file && *r->file ? r->file : "definition";
	int rc;

	rc = cd_vmdef_parse(file, r->text, strlen(r->text), &parsed.vm, why, sizeof(why));
	if (rc < 0) {
		*msg = why;
		return rc;
	}
	old = cd_defs_find(d->defs, parsed.vm.name);
	if (old && !old->removed) {
		snprintf(why, sizeof(why), "vm %s is defined already: undefine it first",
			 parsed.vm.name);
		*msg = why;
		return -EEXIST;
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	cd_membership_view(d->members, &v);
	parsed.generation = cd_defs_next_generation(d->defs);
	parsed.origin = v.local_nodeid;
	parsed.text = (char *)r->text;
	{
		struct cd_defmsg m = {.kind = CD_DEFMSG_DEFINE,
				      .text = r->text,
				      .text_len = strlen(r->text),
				      .generation = parsed.generation,
				      .origin = parsed.origin};

		snprintf(m.name, sizeof(m.name), "%s", parsed.vm.name);
		rc = send_change(d, &m);
	}
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot send the definition to the cluster (%s)%s",
			 strerror(-rc), rc == -EAGAIN ? ": the group is syncing, try again" : "");
		*msg = why;
		return rc;
	}
	fill_def(o, &parsed, false, one_hosts);
	return 0;
}

static int vm_undefine(struct daemon *d, const Castor__VmUndefineRequest *r,
		       Castor__VmDefinition *o, const char **msg)
{
	static char why[300];
	const struct cd_def *e = r->name ? cd_defs_find(d->defs, r->name) : NULL;
	struct cd_view_nodes v;
	int rc;

	if (!e || e->removed) {
		snprintf(why, sizeof(why), "no VM named '%.64s' is defined",
			 r->name ? r->name : "");
		*msg = why;
		return -ENOENT;
	}
	{
		struct cd_pair_entry *p = cd_pairs_find(d->pairs, e->vm.name);

		if (p && p->pair.state != CD_PAIR_S_DEFINED) {
			snprintf(why, sizeof(why), "vm %s is %s on %s: stop it first", e->vm.name,
				 cd_pair_state_str(p->pair.state), p->pair.primary);
			*msg = why;
			return -EBUSY;
		}
	}
	rc = castord_need_quorum(d, msg);
	if (rc < 0)
		return rc;
	cd_membership_view(d->members, &v);
	{
		struct cd_defmsg m = {.kind = CD_DEFMSG_UNDEFINE,
				      .generation = cd_defs_next_generation(d->defs),
				      .origin = v.local_nodeid};

		snprintf(m.name, sizeof(m.name), "%s", e->vm.name);
		rc = send_change(d, &m);
	}
	if (rc < 0) {
		snprintf(why, sizeof(why), "cannot send the change to the cluster (%s)",
			 strerror(-rc));
		*msg = why;
		return rc;
	}
	fill_def(o, e, false, one_hosts);
	return 0;
}

static int vm_list(struct daemon *d, Castor__VmList *l)
{
	static Castor__VmDefinition defs[CD_MAX_DEFS];
	static Castor__VmDefinition *ptrs[CD_MAX_DEFS];
	static char *hosts[CD_MAX_DEFS][CD_MAX_HOSTS];
	unsigned n = 0;

	for (unsigned i = 0; i < d->defs->n; i++) {
		if (d->defs->def[i].removed)
			continue;
		castor__vm_definition__init(&defs[n]);
		fill_def(&defs[n], &d->defs->def[i], false, hosts[n]);
		vms_fill(d, &defs[n], d->defs->def[i].vm.name);
		ptrs[n] = &defs[n];
		n++;
	}
	l->n_vm = n;
	l->vm = ptrs;
	return 0;
}

static int vm_show(struct daemon *d, const Castor__VmShowRequest *r, Castor__VmDefinition *o,
		   const char **msg)
{
	static char why[200];
	const struct cd_def *e = r->name ? cd_defs_find(d->defs, r->name) : NULL;

	if (!e || e->removed) {
		snprintf(why, sizeof(why), "no VM named '%.64s' is defined",
			 r->name ? r->name : "");
		*msg = why;
		return -ENOENT;
	}
	fill_def(o, e, true, one_hosts);
	vms_fill(d, o, e->vm.name);
	return 0;
}

static void answer(struct daemon *d, struct bufferevent *bev, const Castor__Request *req)
{
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	Castor__NodeList nl = CASTOR__NODE_LIST__INIT;
	Castor__VmDefinition def = CASTOR__VM_DEFINITION__INIT;
	Castor__VmList vl = CASTOR__VM_LIST__INIT;
	static Castor__NodeInfo infos[CD_MAX_NODES];
	static Castor__NodeInfo *ptrs[CD_MAX_NODES];
	static struct cd_view_nodes v;
	const char *msg = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = 0;

	resp.id = req ? req->id : 0;
	if (!req) {
		resp.error = -EBADMSG;
		resp.message = "malformed request";
	} else if (req->body_case == CASTOR__REQUEST__BODY_NODE_LIST) {
		node_list(d, &resp, &nl, infos, ptrs, &v);
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_DEFINE) {
		rc = vm_define(d, req->vm_define, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_DEFINE;
		resp.vm_define = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_UNDEFINE) {
		rc = vm_undefine(d, req->vm_undefine, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_UNDEFINE;
		resp.vm_undefine = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_LIST) {
		rc = vm_list(d, &vl);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_LIST;
		resp.vm_list = &vl;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_SHOW) {
		rc = vm_show(d, req->vm_show, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_SHOW;
		resp.vm_show = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_START) {
		rc = vms_start(d, req->vm_start, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_START;
		resp.vm_start = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_STOP) {
		rc = vms_stop(d, req->vm_stop, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_STOP;
		resp.vm_stop = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_PROTECT) {
		rc = vms_protect(d, req->vm_protect, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_PROTECT;
		resp.vm_protect = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_UNPROTECT) {
		rc = vms_unprotect(d, req->vm_unprotect, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_UNPROTECT;
		resp.vm_unprotect = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_MIGRATE) {
		rc = vms_migrate(d, req->vm_migrate, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_MIGRATE;
		resp.vm_migrate = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_FAILOVER) {
		rc = vms_failover(d, req->vm_failover, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_FAILOVER;
		resp.vm_failover = &def;
	} else if (req->body_case == CASTOR__REQUEST__BODY_VM_DR) {
		rc = vms_dr(d, req->vm_dr, &def, &msg);
		resp.body_case = CASTOR__RESPONSE__BODY_VM_DR;
		resp.vm_dr = &def;
	} else {
		resp.error = -EOPNOTSUPP;
		resp.message = "castord does not serve this request (yet): see docs/cluster.md";
	}
	if (rc < 0) {
		resp.body_case = CASTOR__RESPONSE__BODY__NOT_SET;
		resp.error = rc;
		resp.message = (char *)(msg ? msg : strerror(-rc));
	}
	if (pb_frame_pack(&resp.base, &buf, &len) == 0)
		bufferevent_write(bev, buf, len);
	free(buf);
}

static void conn_close(struct daemon *d, struct bufferevent *bev)
{
	bufferevent_free(bev);
	d->nconns--;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct daemon *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		ProtobufCMessage *msg = NULL;
		size_t flen = 0;
		int rc = pb_evbuffer_next(in, &castor__request__descriptor, &msg, &flen);

		if (rc < 0) {
			conn_close(d, bev);
			return;
		}
		if (rc == 0)
			return;
		answer(d, bev, (const Castor__Request *)msg);
		if (msg)
			protobuf_c_message_free_unpacked(msg, NULL);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(arg, bev);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	static struct util_ratelimit refused = {.interval_ns = 1000000000ull};
	struct daemon *d = arg;
	struct bufferevent *bev;
	uint32_t uid = 0;
	int32_t pid = 0;

	(void)l, (void)sa, (void)len;
	if (util_peer_cred(fd, &uid, &pid) < 0 || !util_uid_is_trusted(uid) ||
	    d->nconns >= MAX_CONNS) {
		util_log_limited(&refused, LOG_LVL_WARN, LOG_TAG,
				 "control connection refused (uid %u, pid %d)", uid, pid);
		close(fd);
		return;
	}
	bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		return;
	}
	d->nconns++;
	bufferevent_setwatermark(bev, EV_READ, 0, PB_FRAME_MAX + PB_FRAME_HDR_LEN);
	bufferevent_setcb(bev, read_cb, NULL, event_cb, d);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* A socket file nobody answers on is stale; one that answers is another castord. */
static int control_open(struct daemon *d, char *why, size_t why_len)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = d->conf.control;
	struct stat st;
	int fd, probe;

	if (strlen(path) >= sizeof(sun.sun_path))
		return util_why(why, why_len, -ENAMETOOLONG, "control socket %s: path too long",
				path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return util_why(why, why_len, -EEXIST,
					"control socket %s: a file that is not a socket is there",
					path);
		if (pb_unix_connect(path, &probe) == 0) {
			close(probe);
			return util_why(why, why_len, -EADDRINUSE,
					"control socket %s: another castord answers there", path);
		}
		unlink(path);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1); /* its length was checked above */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return util_why(why, why_len, -errno, "control socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0600) < 0) {
		int rc = -errno;

		close(fd);
		return util_why(why, why_len, rc, "control socket %s: %s", path, strerror(-rc));
	}
	d->listener = evconnlistener_new(d->base, accept_cb, d,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, fd);
	if (!d->listener) {
		close(fd);
		unlink(path);
		return util_why(why, why_len, -ENOMEM, "control socket %s: cannot listen", path);
	}
	return 0;
}

static void fill_metrics(void *arg, struct evbuffer *b)
{
	static struct cd_pairs shown; /* the pairs of VMs still defined */
	struct daemon *d = arg;
	struct cd_view_nodes v;

	cd_membership_view(d->members, &v);
	cd_metrics_render(d->conf.node, &v, b);
	shown.n = 0;
	for (unsigned i = 0; i < d->pairs->n; i++) {
		const struct cd_def *e = cd_defs_find(d->defs, d->pairs->e[i].pair.vm);

		if (e && !e->removed)
			shown.e[shown.n++] = d->pairs->e[i];
	}
	cd_metrics_render_pairs(d->conf.node, &shown, b);
	vms_render_metrics(d, b);
}

/* ---- main --------------------------------------------------------------------------------- */

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	LOG_INFO("signal %d: shutting down", (int)sig);
	event_base_loopexit(arg, NULL);
}

static void view_changed(void *arg)
{
	struct daemon *d = arg;
	struct cd_view_nodes v;
	unsigned members = 0;

	cd_membership_view(d->members, &v);
	for (unsigned i = 0; i < v.n; i++)
		members += v.node[i].member;
	{
		const char *layout = cd_layout_problem(&v, d->conf.allow_two_node);

		if (layout && !d->layout_logged)
			LOG_ERR("this cluster's layout is refused: %s", layout);
		d->layout_logged = layout != NULL;
	}
	if (v.connected && v.joins != d->replayed_joins) {
		d->replayed_joins = v.joins;
		replay_defs(d);
		vms_replay(d);
	}
	vms_view_changed(d, &v);
	LOG_DBG("view: %s, %s, %u members", v.connected ? "connected" : "no corosync",
		v.quorate ? "quorate" : "no quorum", members);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config = CD_CONFIG_DEFAULT_PATH;
	struct event *sigint_ev = NULL, *sigterm_ev = NULL;
	struct daemon d = {0};
	char why[512];
	int c, status = 1;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "castord: option '%s' needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "castord: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "castord: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (cd_config_load(config, &d.conf, why, sizeof(why)) < 0) {
		fprintf(stderr, "castord: %s\n", why);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	d.base = event_base_new();
	if (!d.base)
		goto out;
	if (control_open(&d, why, sizeof(why)) < 0) {
		fprintf(stderr, "castord: %s\n", why);
		goto out;
	}
	d.defs = calloc(1, sizeof(*d.defs));
	d.pairs = calloc(1, sizeof(*d.pairs));
	if (!d.defs || !d.pairs)
		goto out;
	cd_pairs_init(d.pairs);
	{
		char dir[CD_PATH_MAX + 8];

		snprintf(dir, sizeof(dir), "%s/vms", d.conf.state_dir);
		cd_defs_init(d.defs, dir);
		if (mkdir(d.conf.state_dir, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "castord: state_dir %s: %s\n", d.conf.state_dir,
				strerror(errno));
			goto out;
		}
		if (cd_defs_load(d.defs) < 0) {
			fprintf(stderr, "castord: %s: %s\n", dir, strerror(errno));
			goto out;
		}
	}
	if (cd_membership_open(d.base, &d.conf, view_changed, group_msg, &d, &d.members) < 0)
		goto out;
	if (vms_init(&d) < 0)
		goto out;
	if (d.conf.metrics[0] && cd_metrics_open(d.base, d.conf.metrics, fill_metrics, &d,
						 &d.metrics, why, sizeof(why)) < 0) {
		fprintf(stderr, "castord: %s\n", why);
		goto out;
	}
	sigint_ev = evsignal_new(d.base, SIGINT, stop_cb, d.base);
	sigterm_ev = evsignal_new(d.base, SIGTERM, stop_cb, d.base);
	if (!sigint_ev || !sigterm_ev || evsignal_add(sigint_ev, NULL) < 0 ||
	    evsignal_add(sigterm_ev, NULL) < 0)
		goto out;
	LOG_INFO("node %s%s: control socket %s", d.conf.node, d.conf.witness ? " (witness)" : "",
		 d.conf.control);
	event_base_dispatch(d.base);
	status = 0;
out:
	vms_shutdown(&d);
	cd_metrics_free(d.metrics);
	cd_membership_free(d.members);
	if (d.defs)
		cd_defs_dispose(d.defs);
	free(d.defs);
	free(d.pairs);
	if (d.listener) {
		evconnlistener_free(d.listener);
		unlink(d.conf.control);
	}
	if (sigint_ev)
		event_free(sigint_ev);
	if (sigterm_ev)
		event_free(sigterm_ev);
	if (d.base)
		event_base_free(d.base);
	return status;
}
