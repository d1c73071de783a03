/*
 * castor-vmm's control socket: framed protobuf requests (proto/pb.h) on a unix
 * socket, served on the main thread's event loop. Bad input -- truncated,
 * oversized or undecodable frames -- gets an error reply or a closed
 * connection; it never reaches the VM.
 */
#define LOG_TAG "control"
#include "tools/vmm/vmm.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "netbuffer/netbuf.h"
#include "proto/pb.h"
#include "replication/repl.h"

#define CONTROL_MAX_CONNS 64

struct vmm_control {
	struct event_base *base;
	struct vmm *v;
	struct evconnlistener *listener;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool user_paused; /* the control socket holds one pause */
	struct util_bitmap dirty;
	unsigned nconns;
	struct conn *conns;		   /* open connections, freed with the server */
	struct util_ratelimit refused_log; /* connections from other uids */
};

struct conn {
	struct vmm_control *ctl;
	struct conn *next, **pprev;
	struct bufferevent *bev;
	bool close_after_write;
	bool quit_after_write;
};

static void conn_free(struct conn *c)
{
	c->ctl->nconns--;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	bufferevent_free(c->bev);
	free(c);
}

static int send_response(struct conn *c, Castor__Response *resp)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	rc = pb_frame_pack(&resp->base, &buf, &len);
	if (rc < 0)
		return rc;
	rc = bufferevent_write(c->bev, buf, len) < 0 ? -ENOMEM : 0;
	free(buf);
	return rc;
}

static void send_error(struct conn *c, uint64_t id, int err, const char *msg)
{
	Castor__Response resp = CASTOR__RESPONSE__INIT;

	resp.id = id;
	resp.error = err;
	resp.message = (char *)msg;
	send_response(c, &resp);
}

/* Everything a status reply points to lives here for the duration of the reply. */
struct status_buf {
	Castor__VmStatus st;
	Castor__VcpuStatus vs[HV_MAX_VCPUS];
	Castor__VcpuStatus *vsp[HV_MAX_VCPUS];
	Castor__NetStatus ns[HV_MAX_DEVICES];
	Castor__NetStatus *nsp[HV_MAX_DEVICES];
	char macs[HV_MAX_DEVICES][18], nnames[HV_MAX_DEVICES][16], backends[HV_MAX_DEVICES][32];
	Castor__DiskStatus ds[HV_MAX_DEVICES];
	Castor__DiskStatus *dsp[HV_MAX_DEVICES];
	char dnames[HV_MAX_DEVICES][16];
	Castor__TestGuestIo io;
};

static void status_devices(struct vmm_control *ctl, struct status_buf *b)
{
	const struct vmm_devices *d = &ctl->v->devs;
	struct hv_tg_io io;
	unsigned i;

	for (i = 0; d && i < d->ntaps; i++) {
		Castor__NetStatus *n = &b->ns[i];
		struct nb_tap_stats ts;
		struct hv_net_stats hs;

		castor__net_status__init(n);
		nb_tap_stats(d->taps[i], &ts);
		hv_net_stats(nb_tap_net(d->taps[i]), &hs);
		snprintf(b->nnames[i], sizeof(b->nnames[i]), "net%u", i);
		snprintf(b->backends[i], sizeof(b->backends[i]), "tap:%s", nb_tap_name(d->taps[i]));
		n->name = b->nnames[i];
		n->mac = b->macs[i];
		n->backend = b->backends[i];
		n->mmio_base = hv_net_mmio_base(nb_tap_net(d->taps[i]));
		n->tx_frames = ts.tx_frames;
		n->tx_bytes = ts.tx_bytes;
		n->tx_dropped = ts.tx_dropped;
		n->rx_frames = ts.rx_frames;
		n->rx_bytes = ts.rx_bytes;
		n->rx_dropped = ts.rx_dropped + hs.rx_dropped;
		n->rx_waits = ts.rx_waits;
		n->backend_gone = ts.dead;
		n->tx_held = ts.tx_queued;
		n->tx_queue_full = ts.tx_queue_full;
		n->announces = ts.announces;
		n->tx_malformed = hs.tx_malformed;
		hv_net_mac(nb_tap_net(d->taps[i]), b->macs[i]);
		b->nsp[i] = n;
	}
	b->st.n_net = d ? d->ntaps : 0;
	b->st.net = b->nsp;
	for (i = 0; d && i < d->ndisks; i++) {
		Castor__DiskStatus *x = &b->ds[i];
		struct hv_blk_stats bs;

		castor__disk_status__init(x);
		hv_blk_stats(d->disks[i].blk, &bs);
		snprintf(b->dnames[i], sizeof(b->dnames[i]), "blk%u", i);
		x->name = b->dnames[i];
		x->path = (char *)d->disks[i].path;
		x->read_only = d->disks[i].read_only;
		x->mmio_base = hv_blk_mmio_base(d->disks[i].blk);
		x->reads = bs.reads;
		x->writes = bs.writes;
		x->flushes = bs.flushes;
		x->discards = bs.discards;
		x->errors = bs.errors;
		x->bytes_read = bs.bytes_read;
		x->bytes_written = bs.bytes_written;
		x->malformed = bs.malformed;
		b->dsp[i] = x;
	}
	b->st.n_disk = d ? d->ndisks : 0;
	b->st.disk = b->dsp;
	if (hv_tg_is_loaded(ctl->v->vm) && hv_tg_io(ctl->v->vm, &io) == 0) {
		castor__test_guest_io__init(&b->io);
		b->io.net_up = io.net_up;
		b->io.blk_up = io.blk_up;
		b->io.udp_answered = io.udp_answered;
		b->io.tcp_answered = io.tcp_answered;
		b->io.tcp_conns = io.tcp_conns;
		b->io.tcp_retransmits = io.tcp_retransmits;
		b->io.icmp_replies = io.icmp_replies;
		b->io.blk_written = io.blk_written;
		b->io.blk_verified = io.blk_verified;
		b->io.blk_bad = io.blk_bad;
		b->io.blk_io_errors = io.blk_io_errors;
		b->io.blk_generation = io.blk_generation;
		b->io.blk_next = io.blk_next;
		b->st.guest_io = &b->io;
	}
}

static int do_status(struct vmm_control *ctl, Castor__Response *resp, struct status_buf *b)
{
	Castor__VmStatus *st = &b->st;
	Castor__VcpuStatus *vs = b->vs, **vsp = b->vsp;

	struct hv_pause_stats ps;
	uint32_t i, n = hv_vm_ncpus(ctl->v->vm);

	hv_vm_pause_stats(ctl->v->vm, &ps);
	st->name = (char *)hv_vm_name(ctl->v->vm);
	st->vcpus = n;
	st->mem_bytes = hv_vm_mem_bytes(ctl->v->vm);
	st->run_state = (char *)hv_run_state_str(hv_vm_run_state(ctl->v->vm));
	st->uptime_ns = ps.uptime_ns;
	st->pauses = ps.pauses;
	for (i = 0; i < n; i++) {
		struct hv_vcpu_stats s;
		struct hv_tg_vcpu t = {0};

		hv_vcpu_stats(ctl->v->vm, i, &s);
		if (hv_tg_is_loaded(ctl->v->vm))
			hv_tg_vcpu(ctl->v->vm, i, &t);
		castor__vcpu_status__init(&vs[i]);
		vs[i].index = i;
		vs[i].counter = t.counter;
		vs[i].out_seq = t.out_seq;
		vs[i].exits = s.exits;
		vs[i].io_exits = s.io_exits;
		vs[i].mmio_exits = s.mmio_exits;
		vs[i].state = (char *)hv_vcpu_state_str(s.state);
		vsp[i] = &vs[i];
		st->guest_counter += t.counter;
		st->outputs += t.outputs_seen;
		st->exits += s.exits;
	}
	st->n_vcpu = n;
	st->vcpu = vsp;
	status_devices(ctl, b);
	resp->body_case = CASTOR__RESPONSE__BODY_STATUS;
	resp->status = st;
	return 0;
}

static int do_dirty(struct vmm_control *ctl, bool harvest, Castor__Response *resp,
		    Castor__DirtyStats *ds)
{
	struct hv_dirty_totals t;
	int rc;

	if (harvest) {
		if (!hv_dirty_is_tracking(ctl->v->vm)) {
			rc = hv_dirty_start(ctl->v->vm);
			if (rc < 0)
				return rc;
		}
		if (!ctl->dirty.words) {
			rc = util_bitmap_init(&ctl->dirty, hv_ram_pages(ctl->v->vm));
			if (rc < 0)
				return rc;
		}
		rc = hv_dirty_harvest(ctl->v->vm, &ctl->dirty, NULL);
		if (rc < 0)
			return rc;
	}
	hv_dirty_totals(ctl->v->vm, &t);
	ds->tracking = hv_dirty_is_tracking(ctl->v->vm);
	ds->harvests = t.harvests;
	ds->last_dirty_pages = t.last_pages;
	ds->last_harvest_ns = t.last_ns;
	ds->vmm_dirty_pages = t.vmm_pages;
	ds->ram_pages = hv_ram_pages(ctl->v->vm);
	resp->body_case = CASTOR__RESPONSE__BODY_DIRTY_STATS;
	resp->dirty_stats = ds;
	return 0;
}

/*
 * Write to path.tmp, sync, rename: no half-written snapshot under the final
 * name. The file holds guest RAM, so it is 0600, and path.tmp is created
 * O_EXCL|O_NOFOLLOW: a symbolic link planted there is refused, never written
 * through; a stale path.tmp of ours from a crashed run is replaced
 * (util_file_create_private). rename() replaces a link at `path` itself.
 */
static int do_snapshot(struct vmm_control *ctl, const Castor__SnapshotRequest *sr,
		       Castor__Response *resp, Castor__SnapshotResult *res, const char **msg)
{
	static char why[4200]; /* the event loop is single-threaded */
	struct hv_snapshot_stats st;
	char tmp[4096];
	int fd = -1, rc;

	if (!sr->path || !*sr->path) {
		*msg = "snapshot: a file path is required";
		return -EINVAL;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", sr->path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	if (sr->path[0] != '/') {
		*msg = "snapshot: the path must be absolute (castor-vmm's working directory is "
		       "not yours)";
		return -EINVAL;
	}
	rc = util_file_create_private(tmp, &fd, why + 10, sizeof(why) - 10);
	if (rc < 0) {
		memcpy(why, "snapshot: ", 10);
		*msg = why;
		return rc;
	}
	rc = hv_snapshot_save(ctl->v->vm, fd,
			      sr->incremental ? HV_STREAM_INCREMENTAL : HV_STREAM_FULL, &st);
	if (!rc && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp, sr->path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		if (rc == -ENOENT && sr->incremental)
			*msg = "snapshot: no full snapshot of this VM to build an incremental on";
		return rc;
	}
	res->path = (char *)sr->path;
	res->stream_id = st.stream_id;
	res->parent_id = st.parent_id;
	res->pause_ns = st.pause_ns;
	res->precopy_pages = st.precopy_pages;
	res->staged_pages = st.staged_pages;
	res->bytes = st.bytes;
	res->total_ns = st.total_ns;
	resp->body_case = CASTOR__RESPONSE__BODY_SNAPSHOT;
	resp->snapshot = res;
	return 0;
}

static int do_restore(struct vmm_control *ctl, const Castor__RestoreRequest *rr,
		      Castor__Response *resp, Castor__RestoreResult *res, const char **msg)
{
	static char why[1024]; /* the event loop is single-threaded */
	struct vmm_standby *sb = ctl->v->is_standby ? &ctl->v->standby : NULL;
	uint64_t t0 = util_now_ns(), bytes = 0;
	int rc;

	if (!sb) {
		*msg = "this castor-vmm is not a standby (start one with 'castor-vmm standby')";
		return -EOPNOTSUPP;
	}
	if (sb->used) {
		*msg = "this standby has taken a snapshot chain already: start a new standby for "
		       "another";
		return -EBUSY;
	}
	if (!rr->n_snapshot) {
		*msg = "restore: no snapshot given";
		return -EINVAL;
	}
	rc = vmm_standby_restore(sb, rr->snapshot, (unsigned)rr->n_snapshot, &bytes, why,
				 sizeof(why));
	if (rc < 0) {
		*msg = why;
		return rc;
	}
	ctl->v->vm = sb->vm;
	if (rr->paused)
		vmm_control_hold_pause(ctl);
	res->restore_ns = util_now_ns() - t0;
	res->bytes = bytes;
	res->snapshots = (uint32_t)rr->n_snapshot;
	res->lazy = sb->lazy;
	resp->body_case = CASTOR__RESPONSE__BODY_RESTORE;
	resp->restore = res;
	return 0;
}

/* Why a VM paused by its migration is not resumed by `castor vm resume`, or NULL. */
static const char *migration_paused(struct vmm *v)
{
	struct repl_status st;

	if (!v->primary)
		return NULL;
	repl_primary_status(v->primary, &st);
	if (st.migration && st.state == REPL_S_MIGRATED)
		return "the VM was migrated: it runs at the destination, and this copy never "
		       "resumes";
	if (st.migration && (st.state == REPL_S_POSTCOPY || st.state == REPL_S_POSTCOPY_BROKEN))
		return "the VM runs at the destination (postcopy): this copy holds the pages it "
		       "still lacks and never resumes (if the link broke before the destination "
		       "answered and it does not run the VM, 'castor migrate --cancel' resumes it "
		       "here)";
	if (st.migration && st.state == REPL_S_IN_DOUBT)
		return "the VM is paused by a migration in doubt: if the destination does not "
		       "run it, 'castor migrate --cancel' resumes it here";
	return NULL;
}

static void handle_request(struct conn *c, const Castor__Request *req)
{
	struct vmm_control *ctl = c->ctl;
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	struct status_buf *sb = NULL;
	Castor__DirtyStats ds = CASTOR__DIRTY_STATS__INIT;
	Castor__SnapshotResult snap = CASTOR__SNAPSHOT_RESULT__INIT;
	Castor__RestoreResult rres = CASTOR__RESTORE_RESULT__INIT;
	const char *msg = NULL;
	int rc = 0;

	resp.id = req->id;
	if (!ctl->v->vm && req->body_case != CASTOR__REQUEST__BODY_HA_STATUS &&
	    req->body_case != CASTOR__REQUEST__BODY_FAILOVER &&
	    req->body_case != CASTOR__REQUEST__BODY_RESTORE &&
	    req->body_case != CASTOR__REQUEST__BODY_PROTECT &&
	    req->body_case != CASTOR__REQUEST__BODY_UNPROTECT &&
	    req->body_case != CASTOR__REQUEST__BODY_DR_COPY &&
	    req->body_case != CASTOR__REQUEST__BODY_QUIT) {
		rc = -ENODEV;
		msg = ctl->v->is_standby
			      ? "no VM runs here yet: this is a standby waiting for 'castor vm "
				"restore'"
		      : ctl->v->o->cmd == VMM_INCOMING
			      ? "no VM runs here yet: this is a migration destination waiting for "
				"its source"
			      : "no VM runs here yet: this is a replica waiting for a failover";
		req = NULL;
	}
	/* replication's requests: control_ha.c */
	if (req && vmm_control_ha(ctl->v, req, &resp, &rc, &msg))
		goto reply;
	switch (req ? req->body_case : CASTOR__REQUEST__BODY__NOT_SET) {
	case CASTOR__REQUEST__BODY_STATUS:
		sb = calloc(1, sizeof(*sb));
		if (!sb) {
			rc = -ENOMEM;
			break;
		}
		castor__vm_status__init(&sb->st);
		rc = do_status(ctl, &resp, sb);
		break;
	case CASTOR__REQUEST__BODY_PAUSE:
		if (!ctl->user_paused) {
			rc = hv_vm_pause(ctl->v->vm);
			ctl->user_paused = rc == 0;
			if (!rc)
				LOG_INFO("vm %s: paused by request", hv_vm_name(ctl->v->vm));
		}
		break;
	case CASTOR__REQUEST__BODY_RESUME:
		if (!ctl->user_paused) {
			rc = -EINVAL;
			msg = migration_paused(ctl->v) ?: "the VM is not paused";
			break;
		}
		rc = hv_vm_resume(ctl->v->vm);
		if (!rc) {
			ctl->user_paused = false;
			LOG_INFO("vm %s: resumed by request", hv_vm_name(ctl->v->vm));
		}
		break;
	case CASTOR__REQUEST__BODY_QUIT:
		LOG_INFO("vm %s: quit requested",
			 ctl->v->vm ? hv_vm_name(ctl->v->vm) : "(none yet)");
		c->quit_after_write = true;
		break;
	case CASTOR__REQUEST__BODY_SNAPSHOT:
		/* replication has a snapshot chain of its own: both may go on at once */
		rc = do_snapshot(ctl, req->snapshot, &resp, &snap, &msg);
		break;
	case CASTOR__REQUEST__BODY_RESTORE:
		rc = do_restore(ctl, req->restore, &resp, &rres, &msg);
		break;
	case CASTOR__REQUEST__BODY_DIRTY_STATS:
		rc = do_dirty(ctl, req->dirty_stats->harvest, &resp, &ds);
		break;
	default:
		if (!rc) {
			rc = -EOPNOTSUPP;
			msg = "unknown or empty request";
		}
		break;
	}
reply:
	if (rc < 0) {
		resp.body_case = CASTOR__RESPONSE__BODY__NOT_SET;
		resp.error = rc;
		resp.message = (char *)(msg ? msg : strerror(-rc));
	}
	if (send_response(c, &resp) < 0)
		c->close_after_write = true;
	free(sb);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->close_after_write && !c->quit_after_write) {
		ProtobufCMessage *msg = NULL;
		size_t flen = 0;
		int rc = pb_evbuffer_next(in, &castor__request__descriptor, &msg, &flen);

		if (rc == -EMSGSIZE) {
			LOG_WARN("vm %s: control frame over %u bytes; closing the connection",
				 c->ctl->v->name, PB_FRAME_MAX);
			send_error(c, 0, -EMSGSIZE, "frame too large");
			c->close_after_write = true;
			break;
		}
		if (rc == 0)
			break;
		if (!msg) {
			LOG_WARN("vm %s: undecodable control request (%zu bytes)", c->ctl->v->name,
				 flen);
			send_error(c, 0, -EBADMSG, "malformed request");
			continue;
		}
		handle_request(c, (const Castor__Request *)msg);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	if ((c->close_after_write || c->quit_after_write) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		bool quit = c->quit_after_write;
		struct event_base *base = c->ctl->base;

		conn_free(c);
		if (quit)
			event_base_loopexit(base, NULL);
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->close_after_write || c->quit_after_write) {
		bool quit = c->quit_after_write;
		struct event_base *base = c->ctl->base;

		conn_free(c);
		if (quit)
			event_base_loopexit(base, NULL);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bool quit = c->quit_after_write;
		struct event_base *base = c->ctl->base;

		conn_free(c);
		if (quit)
			event_base_loopexit(base, NULL);
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct vmm_control *ctl = arg;
	struct conn *c;
	uint64_t more;
	uint32_t uid = UINT32_MAX;
	int32_t pid = -1;

	/* the socket is 0600 already; this also holds where it was made looser */
	if (util_peer_cred(fd, &uid, &pid) < 0 || !util_uid_is_trusted(uid)) {
		if (util_ratelimit_is_open(&ctl->refused_log, util_now_ns(), &more)) {
			char also[64] = "";

			if (more)
				snprintf(also, sizeof(also), "; %" PRIu64 " more refused before",
					 more);
			LOG_WARN("vm %s: refused a control connection from uid %u pid %d: only "
				 "root and uid %u may use %s%s",
				 ctl->v->name, uid, pid, (unsigned)geteuid(), ctl->path, also);
		}
		close(fd);
		return;
	}
	if (ctl->nconns >= CONTROL_MAX_CONNS) {
		LOG_WARN("vm %s: too many control connections; refusing one", ctl->v->name);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	ctl->nconns++;
	c->next = ctl->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &ctl->conns;
	ctl->conns = c;
	/* stop reading past one maximal frame until it is handled */
	bufferevent_setwatermark(c->bev, EV_READ, 0, PB_FRAME_MAX + PB_FRAME_HDR_LEN);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* A socket file nobody answers on is stale; one that answers is in use. */
static int clear_stale_socket(const char *path)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	rc = pb_unix_connect(path, &fd);
	if (rc == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	if (unlink(path) < 0)
		return -errno;
	return 0;
}

int vmm_control_open(struct event_base *base, struct vmm *v, const char *path,
		     struct vmm_control **ctl_out)
{
	struct vmm_control *ctl = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = -1, rc;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	rc = clear_stale_socket(path);
	if (rc < 0)
		return rc;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->base = base;
	ctl->v = v;
	ctl->refused_log.interval_ns = 1000000000ull;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		goto fail;
	}
	/* owner-only before listen(): until then every connect is refused anyway */
	if (chmod(path, 0600) < 0) {
		rc = -errno;
		unlink(path);
		goto fail;
	}
	ctl->listener = evconnlistener_new(base, accept_cb, ctl,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, fd);
	if (!ctl->listener) {
		rc = -errno ? -errno : -ENOMEM;
		unlink(path);
		goto fail;
	}
	*ctl_out = ctl;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(ctl);
	return rc;
}

int vmm_control_hold_pause(struct vmm_control *ctl)
{
	int rc = 0;

	if (!ctl->user_paused) {
		rc = hv_vm_pause(ctl->v->vm);
		ctl->user_paused = rc == 0;
	}
	return rc;
}

void vmm_control_free(struct vmm_control *ctl)
{
	if (!ctl)
		return;
	while (ctl->conns)
		conn_free(ctl->conns);
	if (ctl->listener) {
		evconnlistener_free(ctl->listener);
		unlink(ctl->path);
	}
	util_bitmap_dispose(&ctl->dirty);
	free(ctl);
}
