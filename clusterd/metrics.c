/*
 * castord's Prometheus endpoint: GET /metrics on the `metrics` address of
 * castord.conf, in the text exposition format (version 0.0.4), served by
 * libevent's evhttp on castord's loop. Node-level figures: corosync
 * reachable, quorum, votes, each known node's membership; per VM, from the
 * pairs every node holds: its state (one series per state, 1 for the current
 * one) and failovers. Replication figures (epochs/s, pause, lag) join when
 * castord protects VMs.
 */
#define LOG_TAG "metrics"
#include "clusterd/cluster.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

struct cd_metrics {
	struct evhttp *http;
	cd_metrics_fill_fn fill;
	void *arg;
};

static void gauge(struct evbuffer *b, const char *name, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

void cd_metrics_render(const char *node, const struct cd_view_nodes *v, struct evbuffer *b)
{
	unsigned members = 0;

	for (unsigned i = 0; i < v->n; i++)
		members += v->node[i].member && v->connected;
	gauge(b, "castor_corosync_connected", "1 when castord reaches corosync");
	evbuffer_add_printf(b, "castor_corosync_connected{node=\"%s\"} %d\n", node, v->connected);
	gauge(b, "castor_quorate", "1 when this node's partition has quorum");
	evbuffer_add_printf(b, "castor_quorate{node=\"%s\"} %d\n", node, v->quorate);
	gauge(b, "castor_members", "nodes in the CPG group castor, this one included");
	evbuffer_add_printf(b, "castor_members{node=\"%s\"} %u\n", node, members);
	gauge(b, "castor_votes", "votequorum's votes: total present, expected, needed");
	evbuffer_add_printf(b, "castor_votes{node=\"%s\",kind=\"total\"} %u\n", node,
			    v->total_votes);
	evbuffer_add_printf(b, "castor_votes{node=\"%s\",kind=\"expected\"} %u\n", node,
			    v->expected_votes);
	evbuffer_add_printf(b, "castor_votes{node=\"%s\",kind=\"quorum\"} %u\n", node, v->quorum);
	gauge(b, "castor_node_member", "1 when that node is in the group, as this node sees it");
	for (unsigned i = 0; i < v->n; i++)
		/* names are [A-Za-z0-9_-]: nothing to escape in a label value */
		evbuffer_add_printf(
			b, "castor_node_member{node=\"%s\",peer=\"%s\",nodeid=\"%u\"} %d\n", node,
			v->node[i].name[0] ? v->node[i].name : "unknown", v->node[i].nodeid,
			v->node[i].member && v->connected);
}

static void serve(struct evhttp_request *req, void *arg)
{
	struct cd_metrics *m = arg;
	struct evbuffer *b;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "only GET");
		return;
	}
	b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	m->fill(m->arg, b);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

int cd_metrics_open(struct event_base *base, const char *addr, cd_metrics_fill_fn fill, void *arg,
		    struct cd_metrics **out, char *why, size_t why_len)
{
	struct cd_metrics *m = calloc(1, sizeof(*m));
	char host[CD_NAME_MAX];
	const char *colon = strrchr(addr, ':');
	uint64_t port;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	if (!colon || (size_t)(colon - addr) >= sizeof(host) ||
	    util_parse_u64(colon + 1, &port) < 0 || !port || port > 65535) {
		free(m);
		return util_why(why, why_len, -EINVAL, "metrics: '%s' is not HOST:PORT", addr);
	}
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = 0;
	m->fill = fill;
	m->arg = arg;
	m->http = evhttp_new(base);
	if (!m->http || evhttp_bind_socket(m->http, host, (uint16_t)port) < 0) {
		if (m->http)
			evhttp_free(m->http);
		free(m);
		return util_why(why, why_len, -EADDRNOTAVAIL, "metrics: cannot listen on %s", addr);
	}
	evhttp_set_cb(m->http, "/metrics", serve, m);
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
	*out = m;
	return 0;
}

void cd_metrics_free(struct cd_metrics *m)
{
	if (!m)
		return;
	evhttp_free(m->http);
	free(m);
}

void cd_metrics_render_pairs(const char *node, const struct cd_pairs *p, struct evbuffer *b)
{
	gauge(b, "castor_vm_state", "1 for the VM's current pair state, 0 for the others");
	for (unsigned i = 0; i < p->n; i++)
		for (int s = 0; s < CD_PAIR_N_STATES; s++)
			evbuffer_add_printf(b,
					    "castor_vm_state{node=\"%s\",vm=\"%s\",state=\"%s\","
					    "host=\"%s\"} %d\n",
					    node, p->e[i].pair.vm, cd_pair_state_str(s),
					    p->e[i].pair.primary,
					    p->e[i].pair.state == (enum cd_pair_state)s);
	evbuffer_add_printf(b, "# HELP castor_vm_failovers_total failovers of the VM since it was "
			       "defined\n# TYPE castor_vm_failovers_total counter\n");
	for (unsigned i = 0; i < p->n; i++)
		evbuffer_add_printf(b, "castor_vm_failovers_total{node=\"%s\",vm=\"%s\"} %llu\n",
				    node, p->e[i].pair.vm,
				    (unsigned long long)p->e[i].pair.failovers);
}
