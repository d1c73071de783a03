/*
 * The cluster's pairs (clusterd/pairs.c): messages that survive encoding and
 * refuse malformations, and tables on several "nodes" that apply the same
 * messages in the same order and end the same -- with the guard decided on
 * the view the sender put in the message, stale events about a former
 * primary ignored, and SYNC replays won by the higher generation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterd/cluster.h"

static const struct cd_view quorate = {.quorate = true};
static const struct cd_view lost = {.quorate = true, .primary_gone = true};
static const struct cd_view alone = {.quorate = false};
#define NOW 1800000000ull /* a Unix time for the restart window */

static struct cd_pairmsg roundtrip(const struct cd_pairmsg *m)
{
	struct cd_pairmsg_hdr h;
	struct cd_pairmsg out;

	assert_int_equal(cd_pairmsg_encode(m, &h), sizeof(h));
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), 0);
	return out;
}

static void encode_decode(void **state)
{
	struct cd_pairmsg m, out;

	(void)state;
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "b", &quorate, "operator");
	out = roundtrip(&m);
	assert_int_equal(out.kind, CD_PAIRMSG_EVENT);
	assert_int_equal(out.event, CD_PAIR_E_START);
	assert_string_equal(out.vm, "vm1");
	assert_string_equal(out.primary, "b");
	assert_string_equal(out.reason, "operator");
	assert_int_equal(out.flags, 1);
}

static void malformed(void **state)
{
	struct cd_pairmsg m, out;
	struct cd_pairmsg_hdr h, bad;

	(void)state;
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "b", &quorate, "x");
	cd_pairmsg_encode(&m, &h);
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h) - 1, &out), -EBADMSG);
	bad = h;
	bad.magic ^= 1;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.event = CD_PAIR_N_EVENTS;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	memset(bad.vm, 'x', sizeof(bad.vm)); /* no NUL */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	strcpy(bad.primary, "../etc");
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.flags = 0x100;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.flags |= CD_PAIRMSG_F_HELD; /* the hold: on UNPROTECT and SYNC only */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.restarts = 1; /* a restart count: on RESTART and SYNC only */
	bad.restarted_at = 1;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	strcpy(bad.restart_host, "b"); /* where it ran: a SYNC of a defined VM only */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.event = CD_PAIR_E_RESTART; /* with no count */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad.restarts = CD_RESTART_MAX + 1;
	bad.restarted_at = 1;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad.restarts = 1;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), 0);
	bad.primary[0] = 0; /* nowhere to start it */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.kind = CD_PAIRMSG_SYNC; /* a SYNC needs a generation */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.kind = 7;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
}

/* FIGURES: what a primary's castor-vmm reported, carried whole; never a pair change. */
static void figures(void **state)
{
	struct cd_pairmsg m, out;
	struct cd_pairmsg_hdr h, bad;
	struct cd_pairs *t = calloc(1, sizeof(*t));
	const char *why = NULL;

	(void)state;
	cd_pairs_init(t);
	cd_pairmsg_figures(&m, "vm1", "a", 1234, 49500, 21000000);
	out = roundtrip(&m);
	assert_int_equal(out.kind, CD_PAIRMSG_FIGURES);
	assert_string_equal(out.vm, "vm1");
	assert_string_equal(out.primary, "a");
	assert_int_equal(out.epochs, 1234);
	assert_int_equal(out.epochs_milli_per_s, 49500);
	assert_int_equal(out.lag_ns, 21000000);
	/* applied to no table, and no entry made for the VM */
	assert_int_equal(cd_pairs_apply(t, &out, &why), -EINVAL);
	assert_non_null(why);
	assert_null(cd_pairs_find(t, "vm1"));
	cd_pairmsg_encode(&m, &h);
	bad = h;
	bad.primary[0] = 0; /* figures name their primary */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.generation = 3; /* fields of the other kinds stay zero */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	/* and an EVENT carries no figures */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "b", &quorate, "x");
	cd_pairmsg_encode(&m, &h);
	h.lag_ns = 1;
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	free(t);
}

/* Deliver one message to every table, as CPG does: same message, same order. */
static int deliver(struct cd_pairs *t, unsigned n, const struct cd_pairmsg *m)
{
	struct cd_pairmsg copy = roundtrip(m);
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		int r = cd_pairs_apply(&t[i], &copy, NULL);

		if (i && r != rc)
			fail_msg("node %u applied differently: %d vs %d", i, r, rc);
		rc = r;
	}
	return rc;
}

static void same_everywhere(void **state)
{
	struct cd_pairs *t = calloc(3, sizeof(*t));
	struct cd_pairmsg m;
	struct cd_pair_entry *e;

	(void)state;
	for (int i = 0; i < 3; i++)
		cd_pairs_init(&t[i]);
	/* a start decided without quorum is refused everywhere */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "b", &alone, "operator");
	assert_int_equal(deliver(t, 3, &m), -EPERM);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "b", &quorate, "operator");
	assert_int_equal(deliver(t, 3, &m), 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "b", &quorate, "pid 42");
	assert_int_equal(deliver(t, 3, &m), 0);
	for (int i = 0; i < 3; i++) {
		e = cd_pairs_find(&t[i], "vm1");
		assert_non_null(e);
		assert_int_equal(e->pair.state, CD_PAIR_S_UNPROTECTED);
		assert_string_equal(e->pair.primary, "b");
		assert_int_equal(e->generation, 2);
	}
	/* a second start while it runs means nothing */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "c", &quorate, "operator");
	assert_int_equal(deliver(t, 3, &m), -EINVAL);
	/* an event about another host is stale */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PRIMARY_LOST, "c", &lost, "host c left");
	assert_int_equal(deliver(t, 3, &m), -ESTALE);
	/* the primary's castor-vmm died: only a definition again, with the reason */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PRIMARY_LOST, "b", &quorate, "crashed");
	assert_int_equal(deliver(t, 3, &m), -EPERM); /* not known gone: refused */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PRIMARY_LOST, "b", &lost,
			 "castor-vmm on b killed by signal 9");
	assert_int_equal(deliver(t, 3, &m), 0);
	for (int i = 0; i < 3; i++) {
		e = cd_pairs_find(&t[i], "vm1");
		assert_int_equal(e->pair.state, CD_PAIR_S_DEFINED);
		assert_string_equal(e->pair.primary, "");
		assert_non_null(strstr(e->pair.last_reason, "killed by signal 9"));
	}
	free(t);
}

static void sync_newer_wins(void **state)
{
	struct cd_pairs *t = calloc(2, sizeof(*t));
	struct cd_pairmsg m;
	struct cd_pair_entry *e;

	(void)state;
	cd_pairs_init(&t[0]);
	cd_pairs_init(&t[1]);
	/* node 0 saw vm1 start and run; node 1 was away */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "a", &quorate, "operator");
	assert_int_equal(cd_pairs_apply(&t[0], &m, NULL), 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "a", &quorate, "");
	assert_int_equal(cd_pairs_apply(&t[0], &m, NULL), 0);
	/* both replay: node 1's empty entry cannot win, node 0's does */
	cd_pairmsg_sync(&m, cd_pairs_find(&t[0], "vm1"));
	assert_int_equal(deliver(t, 2, &m), 0);
	e = cd_pairs_find(&t[1], "vm1");
	assert_non_null(e);
	assert_int_equal(e->pair.state, CD_PAIR_S_UNPROTECTED);
	assert_string_equal(e->pair.primary, "a");
	assert_int_equal(e->generation, 2);
	/* an older replay changes nothing */
	m.generation = 1;
	m.state = CD_PAIR_S_STARTING;
	assert_int_equal(deliver(t, 2, &m), 0);
	assert_int_equal(cd_pairs_find(&t[0], "vm1")->pair.state, CD_PAIR_S_UNPROTECTED);
	assert_int_equal(cd_pairs_find(&t[1], "vm1")->pair.state, CD_PAIR_S_UNPROTECTED);
	free(t);
}

static void stop_cycle(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t));
	struct cd_pairmsg m;

	(void)state;
	cd_pairs_init(t);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "a", &quorate, "");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	/* stopping needs no quorum: it only makes the VM quieter */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "a", &alone, "operator");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOPPED, "a", &alone, "exited with status 0");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(cd_pairs_find(t, "vm1")->pair.state, CD_PAIR_S_DEFINED);
	/* and it can start again, elsewhere */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "c", &quorate, "");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_string_equal(cd_pairs_find(t, "vm1")->pair.primary, "c");
	free(t);
}

/*
 * The DR target (castor dr protect|unprotect VM): set on a running VM with quorum, the
 * same on every node, carried by SYNC, kept across a failover, dropped when the VM
 * stops; DR_FIGURES carry a DR session's state and change no pair.
 */
static void dr_target(void **state)
{
	struct cd_pairs *t = calloc(3, sizeof(*t));
	struct cd_pairmsg m, out;
	struct cd_pairmsg_hdr h, bad;
	const struct cd_pair *p;

	(void)state;
	for (int i = 0; i < 3; i++)
		cd_pairs_init(&t[i]);
	/* a VM that does not run keeps no DR copy */
	cd_pairmsg_dr(&m, "vm1", "", &quorate, "dr-site:7100", 2000, 20, "castor dr protect");
	assert_int_equal(deliver(t, 3, &m), -EINVAL);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "a", &quorate, "");
	assert_int_equal(deliver(t, 3, &m), 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "a", &quorate, "");
	assert_int_equal(deliver(t, 3, &m), 0);
	/* without quorum: refused everywhere */
	cd_pairmsg_dr(&m, "vm1", "a", &alone, "dr-site:7100", 2000, 20, "castor dr protect");
	assert_int_equal(deliver(t, 3, &m), -EPERM);
	assert_string_equal(cd_pairs_find(&t[0], "vm1")->pair.dr_addr, "");
	/* an event about a former primary is stale */
	cd_pairmsg_dr(&m, "vm1", "b", &quorate, "dr-site:7100", 2000, 20, "castor dr protect");
	assert_int_equal(deliver(t, 3, &m), -ESTALE);
	cd_pairmsg_dr(&m, "vm1", "a", &quorate, "dr-site:7100", 2000, 20, "castor dr protect");
	assert_int_equal(deliver(t, 3, &m), 0);
	for (int i = 0; i < 3; i++) {
		p = &cd_pairs_find(&t[i], "vm1")->pair;
		assert_string_equal(p->dr_addr, "dr-site:7100");
		assert_int_equal(p->dr_rpo_ms, 2000);
		assert_int_equal(p->dr_max_mbit, 20);
		assert_int_equal(p->state, CD_PAIR_S_UNPROTECTED); /* no state changed */
		assert_int_equal(cd_pairs_find(&t[i], "vm1")->generation, 3);
	}
	/* a node that was away learns it from a SYNC */
	cd_pairs_init(&t[2]);
	cd_pairmsg_sync(&m, cd_pairs_find(&t[0], "vm1"));
	out = roundtrip(&m);
	assert_int_equal(cd_pairs_apply(&t[2], &out, NULL), 0);
	assert_string_equal(cd_pairs_find(&t[2], "vm1")->pair.dr_addr, "dr-site:7100");
	assert_int_equal(cd_pairs_find(&t[2], "vm1")->pair.dr_rpo_ms, 2000);
	assert_int_equal(cd_pairs_find(&t[2], "vm1")->pair.dr_max_mbit, 20);
	/* cleared (no quorum needed), set again, then the VM stops: dropped */
	cd_pairmsg_dr(&m, "vm1", "a", &alone, NULL, 0, 0, "castor dr unprotect");
	assert_int_equal(deliver(t, 3, &m), 0);
	assert_string_equal(cd_pairs_find(&t[1], "vm1")->pair.dr_addr, "");
	cd_pairmsg_dr(&m, "vm1", "a", &quorate, "10.0.0.9:7100", 5000, 20, "castor dr protect");
	assert_int_equal(deliver(t, 3, &m), 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "a", &quorate, "");
	assert_int_equal(deliver(t, 3, &m), 0);
	assert_string_equal(cd_pairs_find(&t[1], "vm1")->pair.dr_addr, "10.0.0.9:7100");
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOPPED, "a", &quorate, "");
	assert_int_equal(deliver(t, 3, &m), 0);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(cd_pairs_find(&t[i], "vm1")->pair.dr_addr, "");
		assert_int_equal(cd_pairs_find(&t[i], "vm1")->pair.dr_rpo_ms, 0);
		assert_int_equal(cd_pairs_find(&t[i], "vm1")->pair.dr_max_mbit, 0);
	}
	/* DR_FIGURES: carried whole, applied to no pair */
	cd_pairmsg_dr_figures(&m, "vm1", "a", "dr-site:7100", "degraded: resuming: link down", 42,
			      7200000000ull, 5000, 3, 50);
	out = roundtrip(&m);
	assert_int_equal(out.kind, CD_PAIRMSG_DR_FIGURES);
	assert_string_equal(out.dr_addr, "dr-site:7100");
	assert_string_equal(out.reason, "degraded: resuming: link down");
	assert_int_equal(out.epochs, 42);
	assert_int_equal(out.dr_rpo_ns, 7200000000ull);
	assert_int_equal(out.dr_rpo_ms, 5000);
	assert_int_equal(out.dr_alerts, 3);
	assert_int_equal(out.dr_max_mbit, 50);
	assert_int_equal(cd_pairs_apply(&t[0], &out, NULL), -EINVAL);
	/* malformed: an RPO without a target, DR fields where they do not belong */
	cd_pairmsg_encode(&m, &h);
	bad = h;
	bad.dr_addr[0] = 0;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.lag_ns = 1;
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	bad = h;
	bad.restarts = 1; /* a restart count on figures */
	assert_int_equal(cd_pairmsg_decode(&bad, sizeof(bad), &out), -EBADMSG);
	cd_pairmsg_figures(&m, "vm1", "a", 1, 1, 1);
	cd_pairmsg_encode(&m, &h);
	h.dr_alerts = 1;
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "a", &quorate, "");
	cd_pairmsg_encode(&m, &h);
	snprintf(h.dr_addr, sizeof(h.dr_addr), "x:1");
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	cd_pairmsg_dr(&m, "vm1", "a", &quorate, "x:1", 5000, 0, "");
	cd_pairmsg_encode(&m, &h);
	h.dr_addr[0] = 0; /* DR_PROTECT names its target */
	h.dr_rpo_ms = 0;
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	memset(h.dr_addr, 'x', sizeof(h.dr_addr)); /* no NUL */
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	/* a SYNC of a VM that runs nowhere carries no DR target */
	cd_pairmsg_sync(&m, cd_pairs_find(&t[0], "vm1"));
	cd_pairmsg_encode(&m, &h);
	assert_int_equal(h.state, CD_PAIR_S_DEFINED);
	snprintf(h.dr_addr, sizeof(h.dr_addr), "x:1");
	assert_int_equal(cd_pairmsg_decode(&h, sizeof(h), &out), -EBADMSG);
	free(t);
}

/* ---- the policy (pair_policy.c) ----------------------------------------------------------- */

/* Nodes a(1), b(2), c(3) and a witness w(4); `members` like "abc". */
static void view_nodes(struct cd_view_nodes *v, const char *members, uint32_t local)
{
	static const char *const names[] = {"a", "b", "c", "w"};

	memset(v, 0, sizeof(*v));
	v->connected = v->quorate = true;
	v->local_nodeid = local;
	v->expected_votes = 4;
	v->n = 4;
	for (unsigned i = 0; i < 4; i++) {
		v->node[i].nodeid = i + 1;
		strcpy(v->node[i].name, names[i]);
		v->node[i].member = strchr(members, names[i][0]) != NULL;
		v->node[i].witness = i == 3;
	}
}

static struct cd_vmdef vmdef(const char *hosts, enum cd_protection prot)
{
	struct cd_vmdef d;

	memset(&d, 0, sizeof(d));
	strcpy(d.name, "vm1");
	strcpy(d.guest, "test");
	d.protection = prot;
	for (const char *h = hosts; *h; h++)
		snprintf(d.hosts[d.nhosts++], CD_NAME_MAX, "%c", *h);
	return d;
}

static void choose_host(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t));
	struct cd_view_nodes v;
	struct cd_vmdef d = vmdef("cb", CD_PROT_INTERVAL);
	char out[CD_NAME_MAX];

	(void)state;
	cd_pairs_init(t);
	view_nodes(&v, "abcw", 1);
	/* the definition's order first, skipping what is avoided */
	assert_true(cd_choose_host(&d, &v, t, "", "", out));
	assert_string_equal(out, "c");
	assert_true(cd_choose_host(&d, &v, t, "c", "", out));
	assert_string_equal(out, "b");
	/* none of its hosts live: the least loaded other host, never the witness */
	view_nodes(&v, "aw", 1);
	assert_true(cd_choose_host(&d, &v, t, "", "", out));
	assert_string_equal(out, "a");
	assert_false(cd_choose_host(&d, &v, t, "a", "", out));
	/* no preference: the least loaded, then the lowest name */
	d = vmdef("", CD_PROT_NONE);
	view_nodes(&v, "abcw", 1);
	t->n = 1;
	cd_pair_init(&t->e[0].pair, "other");
	strcpy(t->e[0].pair.primary, "a");
	assert_true(cd_choose_host(&d, &v, t, "", "", out));
	assert_string_equal(out, "b");
	free(t);
}

static void policy_protects(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t));
	struct cd_vmdef d = vmdef("ab", CD_PROT_INTERVAL);
	struct cd_view_nodes v;
	struct cd_pairmsg m;
	struct cd_pair_entry *e;

	(void)state;
	cd_pairs_init(t);
	view_nodes(&v, "abcw", 1);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "a", &quorate, "");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	e = cd_pairs_find(t, "vm1");
	/* starting: nothing to do yet */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "a", &quorate, "");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	/* only the primary's host asks for a replica, on b (its definition's next host) */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "b", false, NOW, &m));
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_PROTECT);
	assert_string_equal(m.replica, "b");
	/* not without quorum, not for an unprotected definition */
	v.quorate = false;
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	v.quorate = true;
	{
		struct cd_vmdef none = vmdef("ab", CD_PROT_NONE);

		assert_false(cd_pair_next(&e->pair, &none, &v, t, "a", false, NOW, &m));
	}
	/* placing, syncing, protected: the events of the replica's castord and the primary's */
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_PLACING);
	assert_string_equal(e->pair.replica, "b");
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_REPLICA_READY, "a", &quorate, "");
	strcpy(m.replica, "b");
	strcpy(m.addr, "10.0.0.2:7800");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_string_equal(e->pair.replica_addr, "10.0.0.2:7800");
	/* a REPLICA_READY about another replica host is stale */
	strcpy(m.replica, "c");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), -ESTALE);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_SYNCED, "a", &quorate, "");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_PROTECTED);
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));

	/* host a leaves: the speaker (b, now the lowest) reports the primary lost ... */
	view_nodes(&v, "bcw", 3); /* as c sees it: not the speaker */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "c", false, NOW, &m));
	view_nodes(&v, "bcw", 2);
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "b", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_PRIMARY_LOST);
	assert_string_equal(m.primary, "a");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_FAILING_OVER);
	/* ... the twin on b takes over, and its castord asks for a new replica on c */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PROMOTED, "a", &quorate, "the twin runs on b");
	strcpy(m.replica, "b");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_UNPROTECTED);
	assert_string_equal(e->pair.primary, "b");
	assert_int_equal(e->pair.failovers, 1);
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "b", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_PROTECT);
	assert_string_equal(m.replica, "c");
	free(t);
}

/* A fresh table with vm1 taken through `flow` on primary a, its replica on b. */
static struct cd_pair_entry *apply_flow(struct cd_pairs *t, const enum cd_pair_event *flow,
					unsigned n)
{
	struct cd_pairmsg m;

	cd_pairs_init(t);
	for (unsigned i = 0; i < n; i++) {
		cd_pairmsg_event(&m, "vm1", flow[i], "a", &quorate, "");
		if (flow[i] == CD_PAIR_E_PROTECT || flow[i] == CD_PAIR_E_REPLICA_READY)
			strcpy(m.replica, "b");
		m.flags |= CD_PAIRMSG_F_REPLICA_HOST;
		assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	}
	return cd_pairs_find(t, "vm1");
}

static void policy_replica_lost(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t));
	struct cd_vmdef d = vmdef("ab", CD_PROT_INTERVAL);
	struct cd_view_nodes v;
	struct cd_pairmsg m;
	struct cd_pair_entry *e;
	static const enum cd_pair_event flow[] = {CD_PAIR_E_START, CD_PAIR_E_STARTED,
						  CD_PAIR_E_PROTECT, CD_PAIR_E_REPLICA_READY,
						  CD_PAIR_E_SYNCED};

	(void)state;
	e = apply_flow(t, flow, sizeof(flow) / sizeof(flow[0]));
	assert_int_equal(e->pair.state, CD_PAIR_S_PROTECTED);
	/* b leaves: the speaker (a) reports the replica lost */
	view_nodes(&v, "acw", 1);
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_REPLICA_LOST);
	assert_string_equal(m.replica, "b");
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_DEGRADED);
	/* degraded on a: re-protect on c (b is gone) */
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_PROTECT);
	assert_string_equal(m.replica, "c");
	/* with no other host: go on unprotected, releasing the held output */
	view_nodes(&v, "aw", 1);
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	assert_int_equal(m.event, CD_PAIR_E_UNPROTECT);
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_int_equal(e->pair.state, CD_PAIR_S_UNPROTECTED);
	assert_string_equal(e->pair.replica, "");
	/* and nothing more to do until a host comes back */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	free(t);
}

/* The VM's castor-vmm on `on` died: primary-lost, through the wire, as its castord says it. */
static void lose(struct cd_pairs *t, const char *on)
{
	struct cd_pairmsg m;

	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PRIMARY_LOST, on, &lost, "castor-vmm killed");
	m = roundtrip(&m);
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
}

static void apply_wire(struct cd_pairs *t, struct cd_pairmsg *m)
{
	*m = roundtrip(m);
	assert_int_equal(cd_pairs_apply(t, m, NULL), 0);
}

static void policy_restart(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t)), *u = calloc(1, sizeof(*u));
	struct cd_vmdef d = vmdef("b", CD_PROT_NONE);
	struct cd_view_nodes v;
	struct cd_pairmsg m;
	struct cd_pair_entry *e;
	static const enum cd_pair_event flow[] = {CD_PAIR_E_START, CD_PAIR_E_STARTED};

	(void)state;
	view_nodes(&v, "abcw", 1); /* a is the speaker (the lowest node id) */
	e = apply_flow(t, flow, 2);
	lose(t, "a");
	assert_int_equal(e->pair.state, CD_PAIR_S_DEFINED);
	assert_string_equal(e->pair.restart_host, "a");
	/* restart = no (the default): it stays defined */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	d.restart = CD_RESTART_ON_FAILURE;
	/* the speaker alone sends it, and only with quorum */
	view_nodes(&v, "abcw", 2);
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "b", false, NOW, &m));
	view_nodes(&v, "abcw", 1);
	v.quorate = false;
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	v.quorate = true;
	assert_false(cd_pair_next(&e->pair, NULL, &v, t, "a", false, NOW, &m));
	/* three restarts in the window, on its preferred host, each counted */
	for (uint32_t i = 1; i <= CD_RESTART_MAX; i++) {
		assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + i, &m));
		assert_int_equal(m.event, CD_PAIR_E_RESTART);
		assert_string_equal(m.primary, "b");
		assert_int_equal(m.restarts, i);
		assert_int_equal(m.restarted_at, NOW + 1);
		assert_non_null(strstr(m.reason, "after primary-lost: castor-vmm killed"));
		apply_wire(t, &m);
		assert_int_equal(e->pair.state, CD_PAIR_S_STARTING);
		assert_string_equal(e->pair.primary, "b");
		assert_string_equal(e->pair.restart_host, "");
		assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + i, &m));
		cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "b", &quorate, "");
		apply_wire(t, &m);
		lose(t, "b");
		assert_string_equal(e->pair.restart_host, "b");
	}
	/* a fourth death inside the window: it stays defined */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + CD_RESTART_WINDOW_S, &m));
	/* the replay carries the count and where it ran */
	cd_pairs_init(u);
	cd_pairmsg_sync(&m, e);
	apply_wire(u, &m);
	assert_string_equal(cd_pairs_find(u, "vm1")->pair.restart_host, "b");
	assert_int_equal(cd_pairs_find(u, "vm1")->pair.restarts, CD_RESTART_MAX);
	assert_int_equal(cd_pairs_find(u, "vm1")->pair.restarted_at, NOW + 1);
	/* the window over, a new one begins */
	assert_true(
		cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 1 + CD_RESTART_WINDOW_S, &m));
	assert_int_equal(m.restarts, 1);
	assert_int_equal(m.restarted_at, NOW + 1 + CD_RESTART_WINDOW_S);
	/* a VM that could not start is not started again (it would fail again) */
	apply_wire(t, &m);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START_FAILED, "b", &quorate, "status 1");
	apply_wire(t, &m);
	assert_string_equal(e->pair.restart_host, "");
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 700, &m));
	/* the operator's start clears the count */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_START, "c", &quorate, "castor vm start");
	apply_wire(t, &m);
	assert_int_equal(e->pair.restarts, 0);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STARTED, "c", &quorate, "");
	apply_wire(t, &m);
	/* a VM that writes a disk: only on the host it ran on, whose disk has its writes */
	strcpy(d.disk[0], "/var/lib/castor/%n-vm1.img");
	d.ndisks = 1;
	lose(t, "c");
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 800, &m));
	assert_string_equal(m.primary, "c");
	view_nodes(&v, "abw", 1); /* c left the cluster: nowhere to restart it */
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 800, &m));
	/* a read-only disk moves with it: anywhere */
	strcat(d.disk[0], ",ro");
	assert_true(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 800, &m));
	assert_string_equal(m.primary, "b");
	/* stopped on purpose: no restart */
	apply_wire(t, &m);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOP, "b", &quorate, "castor vm stop");
	apply_wire(t, &m);
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_STOPPED, "b", &quorate, "exited");
	apply_wire(t, &m);
	assert_int_equal(e->pair.state, CD_PAIR_S_DEFINED);
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW + 900, &m));
	free(u);
	free(t);
}

static void policy_held(void **state)
{
	struct cd_pairs *t = calloc(1, sizeof(*t));
	struct cd_vmdef d = vmdef("ab", CD_PROT_INTERVAL);
	struct cd_view_nodes v;
	struct cd_pairmsg m;
	struct cd_pair_entry *e;
	static const enum cd_pair_event flow[] = {CD_PAIR_E_START, CD_PAIR_E_STARTED,
						  CD_PAIR_E_PROTECT};

	(void)state;
	view_nodes(&v, "abcw", 1);
	e = apply_flow(t, flow, sizeof(flow) / sizeof(flow[0]));
	/* the operator's unprotect holds it: castord does not protect it again by itself */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_UNPROTECT, "a", &quorate, "castor ha unprotect");
	m.flags |= CD_PAIRMSG_F_HELD;
	m = roundtrip(&m); /* the hold crosses the wire (it once did not: decode refused it) */
	assert_true(m.flags & CD_PAIRMSG_F_HELD);
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_true(e->pair.held);
	assert_false(cd_pair_next(&e->pair, &d, &v, t, "a", false, NOW, &m));
	/* the hold travels with the replay */
	{
		struct cd_pairs *u = calloc(1, sizeof(*u));

		cd_pairs_init(u);
		cd_pairmsg_sync(&m, e);
		m = roundtrip(&m);
		assert_int_equal(cd_pairs_apply(u, &m, NULL), 0);
		assert_true(cd_pairs_find(u, "vm1")->pair.held);
		free(u);
	}
	/* the operator's protect lifts it */
	cd_pairmsg_event(&m, "vm1", CD_PAIR_E_PROTECT, "a", &quorate, "castor ha protect");
	strcpy(m.replica, "c");
	m.flags |= CD_PAIRMSG_F_REPLICA_HOST;
	assert_int_equal(cd_pairs_apply(t, &m, NULL), 0);
	assert_false(e->pair.held);
	assert_string_equal(e->pair.replica, "c");
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(encode_decode),       cmocka_unit_test(malformed),
		cmocka_unit_test(policy_restart),      cmocka_unit_test(figures),
		cmocka_unit_test(same_everywhere),     cmocka_unit_test(sync_newer_wins),
		cmocka_unit_test(stop_cycle),	       cmocka_unit_test(dr_target),
		cmocka_unit_test(choose_host),	       cmocka_unit_test(policy_protects),
		cmocka_unit_test(policy_replica_lost), cmocka_unit_test(policy_held),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
