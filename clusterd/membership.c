/*
 * castord's view of the cluster from corosync: CPG group "castor" for
 * membership and messages, votequorum for quorum. The one file that calls
 * corosync (style.md: one file per concern issues the calls).
 *
 * Both handles' fds join castord's libevent loop and are dispatched there.
 * castord starts whether or not corosync runs: until it is reached, and
 * whenever it is lost (a dispatch fails: the daemon died or restarted), the
 * view says "not connected, not quorate" and a timer tries again every
 * RECONNECT_MS. A node that cannot see corosync never thinks it has quorum,
 * so it never promotes and never releases output (clusterd/pair.c).
 *
 * Names: corosync knows nodes by id. Every castord multicasts an ANNOUNCE
 * (its node name, whether it is a witness) when it joins and whenever the
 * group changes, so every member learns every other's name.
 */
#define LOG_TAG "membership"
#include "clusterd/cluster.h"

#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define RECONNECT_MS	  1000
#define ANNOUNCE_RETRY_MS 100 /* CPG refuses sends (TRY_AGAIN) while the group syncs */
#define GROUP		  "castor"
#define ANNOUNCE_MAGIC	  0x4e554f4e4e414443ull /* "CDANNOUN" */

/* The ANNOUNCE message on CPG (little-endian hosts only, as all of Castor). */
struct announce {
	uint64_t magic;
	uint32_t version; /* 1 */
	uint32_t flags;	  /* bit 0: witness */
	char name[CD_NAME_MAX];
};
_Static_assert(sizeof(struct announce) == 80, "announce layout");

struct cd_membership {
	struct event_base *base;
	const struct cd_config *conf;
	cd_membership_fn cb;
	cd_membership_msg_fn msg_cb;
	void *arg;
	cpg_handle_t cpg;
	votequorum_handle_t vq;
	bool have_cpg, have_vq;
	struct event *cpg_ev, *vq_ev, *retry_ev, *announce_ev;
	struct cd_view_nodes view;
	bool lost_logged;
};

static int cs_errno(cs_error_t e)
{
	switch (e) {
	case CS_OK:
		return 0;
	case CS_ERR_TRY_AGAIN:
		return -EAGAIN;
	case CS_ERR_NO_MEMORY:
		return -ENOMEM;
	case CS_ERR_ACCESS:
		return -EACCES;
	case CS_ERR_LIBRARY:
	case CS_ERR_BAD_HANDLE:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

static struct cd_node_info *node_slot(struct cd_membership *m, uint32_t nodeid, bool add)
{
	struct cd_view_nodes *v = &m->view;

	for (unsigned i = 0; i < v->n; i++)
		if (v->node[i].nodeid == nodeid)
			return &v->node[i];
	if (!add || v->n == CD_MAX_NODES)
		return NULL;
	v->node[v->n] = (struct cd_node_info){.nodeid = nodeid};
	return &v->node[v->n++];
}

static void changed(struct cd_membership *m)
{
	if (m->cb)
		m->cb(m->arg);
}

static void announce(struct cd_membership *m)
{
	struct announce a = {.magic = ANNOUNCE_MAGIC, .version = 1, .flags = m->conf->witness};
	struct iovec iov = {&a, sizeof(a)};
	cs_error_t e;

	if (!m->have_cpg)
		return;
	snprintf(a.name, sizeof(a.name), "%s", m->conf->node);
	e = cpg_mcast_joined(m->cpg, CPG_TYPE_AGREED, &iov, 1);
	if (e == CS_ERR_TRY_AGAIN) {
		/* the group is syncing: try again from a timer, not in a loop */
		event_add(m->announce_ev, &(struct timeval){.tv_usec = ANNOUNCE_RETRY_MS * 1000});
		return;
	}
	if (e != CS_OK)
		LOG_WARN("cannot announce this node on CPG (corosync error %d)", (int)e);
}

static void announce_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	announce(arg);
}

static void deliver_cb(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid, uint32_t pid,
		       void *msg, size_t len)
{
	struct cd_membership *m = NULL;
	struct cd_node_info *n;
	struct announce a;

	(void)group, (void)pid;
	cpg_context_get(h, (void **)&m);
	if (!m)
		return;
	if (len < sizeof(uint64_t) || memcmp(msg, &(uint64_t){ANNOUNCE_MAGIC}, 8)) {
		if (m->msg_cb)
			m->msg_cb(m->arg, nodeid, msg, len);
		return;
	}
	if (len != sizeof(a)) {
		LOG_WARN("node %u sent an ANNOUNCE of %zu bytes; ignored", nodeid, len);
		return;
	}
	memcpy(&a, msg, sizeof(a));
	a.name[sizeof(a.name) - 1] = 0;
	if (a.magic != ANNOUNCE_MAGIC || a.version != 1 || !cd_is_name(a.name)) {
		LOG_WARN("node %u sent a message that is not a castord ANNOUNCE; ignored", nodeid);
		return;
	}
	n = node_slot(m, nodeid, true);
	if (!n)
		return;
	if (strcmp(n->name, a.name))
		LOG_INFO("node %u is %s%s", nodeid, a.name, a.flags & 1 ? " (witness)" : "");
	snprintf(n->name, sizeof(n->name), "%s", a.name);
	n->witness = a.flags & 1;
	changed(m);
}

static void confchg_cb(cpg_handle_t h, const struct cpg_name *group,
		       const struct cpg_address *members, size_t nmembers,
		       const struct cpg_address *left, size_t nleft,
		       const struct cpg_address *joined, size_t njoined)
{
	struct cd_membership *m = NULL;
	size_t i;

	(void)group;
	cpg_context_get(h, (void **)&m);
	if (!m)
		return;
	for (i = 0; i < m->view.n; i++)
		m->view.node[i].member = false;
	for (i = 0; i < nmembers; i++) {
		struct cd_node_info *n = node_slot(m, members[i].nodeid, true);

		if (n)
			n->member = true;
	}
	for (i = 0; i < nleft; i++)
		LOG_INFO("node %u (%s) left the group", left[i].nodeid,
			 node_slot(m, left[i].nodeid, false)
				 ? node_slot(m, left[i].nodeid, false)->name
				 : "?");
	if (njoined) {
		m->view.joins++;
		announce(m); /* newcomers learn our name */
	}
	changed(m);
}

static void quorum_cb(votequorum_handle_t h, uint64_t context, uint32_t quorate, uint32_t n,
		      votequorum_node_t nodes[])
{
	struct cd_membership *m = NULL;
	struct votequorum_info info;

	(void)context, (void)n, (void)nodes;
	votequorum_context_get(h, (void **)&m);
	if (!m)
		return;
	if (m->view.quorate != !!quorate)
		LOG_INFO("quorum %s", quorate ? "gained" : "LOST: no promotion, no release");
	m->view.quorate = quorate;
	if (votequorum_getinfo(h, m->view.local_nodeid, &info) == CS_OK) {
		m->view.total_votes = info.total_votes;
		m->view.expected_votes = info.node_expected_votes;
		m->view.quorum = info.quorum;
		m->view.two_node = info.flags & VOTEQUORUM_INFO_TWONODE;
	}
	changed(m);
}

static void disconnect(struct cd_membership *m)
{
	if (m->announce_ev)
		event_del(m->announce_ev);
	if (m->cpg_ev)
		event_free(m->cpg_ev);
	if (m->vq_ev)
		event_free(m->vq_ev);
	m->cpg_ev = m->vq_ev = NULL;
	if (m->have_cpg)
		cpg_finalize(m->cpg);
	if (m->have_vq)
		votequorum_finalize(m->vq);
	m->have_cpg = m->have_vq = false;
	m->view.connected = false;
	m->view.quorate = false;
	for (unsigned i = 0; i < m->view.n; i++)
		m->view.node[i].member = false;
}

static void lost(struct cd_membership *m, const char *what, int rc)
{
	LOG_ERR("corosync lost (%s: %s): no quorum until it is back; retrying every %u ms", what,
		strerror(-rc), RECONNECT_MS);
	disconnect(m);
	event_add(m->retry_ev, &(struct timeval){.tv_usec = RECONNECT_MS * 1000});
	changed(m);
}

static void cpg_ready(evutil_socket_t fd, short what, void *arg)
{
	struct cd_membership *m = arg;
	int rc = cs_errno(cpg_dispatch(m->cpg, CS_DISPATCH_ALL));

	(void)fd, (void)what;
	if (rc < 0 && rc != -EAGAIN)
		lost(m, "cpg", rc);
}

static void vq_ready(evutil_socket_t fd, short what, void *arg)
{
	struct cd_membership *m = arg;
	int rc = cs_errno(votequorum_dispatch(m->vq, CS_DISPATCH_ALL));

	(void)fd, (void)what;
	if (rc < 0 && rc != -EAGAIN)
		lost(m, "votequorum", rc);
}

/* Connect both handles and join the group; -EAGAIN or -ENOTCONN: try again later. */
static int connect_corosync(struct cd_membership *m)
{
	static cpg_callbacks_t cpg_cbs = {.cpg_deliver_fn = deliver_cb,
					  .cpg_confchg_fn = confchg_cb};
	static votequorum_callbacks_t vq_cbs = {.votequorum_quorum_notify_fn = quorum_cb};
	struct cpg_name group = {.length = sizeof(GROUP) - 1, .value = GROUP};
	unsigned int local = 0;
	int fd, rc;

	rc = cs_errno(cpg_initialize(&m->cpg, &cpg_cbs));
	if (rc < 0)
		goto fail;
	m->have_cpg = true;
	cpg_context_set(m->cpg, m);
	rc = cs_errno(votequorum_initialize(&m->vq, &vq_cbs));
	if (rc < 0)
		goto fail;
	m->have_vq = true;
	votequorum_context_set(m->vq, m);
	rc = cs_errno(cpg_local_get(m->cpg, &local));
	if (!rc)
		rc = cs_errno(cpg_join(m->cpg, &group));
	if (!rc)
		rc = cs_errno(votequorum_trackstart(m->vq, 0, CS_TRACK_CHANGES));
	if (rc < 0)
		goto fail;
	m->view.local_nodeid = local;
	{
		struct cd_node_info *me = node_slot(m, local, true);

		if (me) {
			snprintf(me->name, sizeof(me->name), "%s", m->conf->node);
			me->witness = m->conf->witness;
		}
	}
	cpg_fd_get(m->cpg, &fd);
	m->cpg_ev = event_new(m->base, fd, EV_READ | EV_PERSIST, cpg_ready, m);
	votequorum_fd_get(m->vq, &fd);
	m->vq_ev = event_new(m->base, fd, EV_READ | EV_PERSIST, vq_ready, m);
	if (!m->cpg_ev || !m->vq_ev || event_add(m->cpg_ev, NULL) < 0 ||
	    event_add(m->vq_ev, NULL) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	m->view.connected = true;
	m->lost_logged = false;
	LOG_INFO("joined CPG group %s as node %u (%s)", GROUP, local, m->conf->node);
	return 0;
fail:
	disconnect(m);
	return rc;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cd_membership *m = arg;
	int rc;

	(void)fd, (void)what;
	rc = connect_corosync(m);
	if (rc < 0) {
		if (!m->lost_logged)
			LOG_WARN("corosync is not reachable (%s); retrying every %u ms",
				 strerror(-rc), RECONNECT_MS);
		m->lost_logged = true;
		event_add(m->retry_ev, &(struct timeval){.tv_usec = RECONNECT_MS * 1000});
		return;
	}
	changed(m);
}

int cd_membership_send(struct cd_membership *m, const struct iovec *iov, unsigned iovcnt)
{
	cs_error_t e = CS_ERR_LIBRARY;

	for (int i = 0; m->have_cpg && i < 10; i++) {
		e = cpg_mcast_joined(m->cpg, CPG_TYPE_AGREED, iov, iovcnt);
		if (e != CS_ERR_TRY_AGAIN)
			break;
		util_sleep_ns(20 * 1000000ull); /* flow control: corosync drains it by itself */
	}
	return m->have_cpg ? cs_errno(e) : -ENOTCONN;
}

int cd_membership_open(struct event_base *base, const struct cd_config *conf, cd_membership_fn cb,
		       cd_membership_msg_fn msg_cb, void *arg, struct cd_membership **out)
{
	struct cd_membership *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base = base;
	m->conf = conf;
	m->cb = cb;
	m->msg_cb = msg_cb;
	m->arg = arg;
	m->retry_ev = evtimer_new(base, retry_cb, m);
	m->announce_ev = evtimer_new(base, announce_cb, m);
	if (!m->retry_ev || !m->announce_ev) {
		if (m->retry_ev)
			event_free(m->retry_ev);
		free(m);
		return -ENOMEM;
	}
	/* the first try runs from the loop, like every later one */
	event_active(m->retry_ev, EV_TIMEOUT, 0);
	*out = m;
	return 0;
}

void cd_membership_view(const struct cd_membership *m, struct cd_view_nodes *out)
{
	*out = m->view;
}

void cd_membership_free(struct cd_membership *m)
{
	if (!m)
		return;
	disconnect(m);
	event_free(m->retry_ev);
	event_free(m->announce_ev);
	free(m);
}
