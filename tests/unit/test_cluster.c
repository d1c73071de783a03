/*
 * castord's decisions without castord: castord.conf and VM definition files
 * (every refusal names the line and the problem), and the HA pair's state
 * machine: every (state, event) pair is legal or refused exactly as the table
 * in this test says, and the safety rules hold -- no promotion without quorum
 * or while the primary is not known gone, no release of held output without
 * quorum and the replica known gone, a node without quorum starts nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clusterd/cluster.h"

/* ---- castord.conf ---------------------------------------------------------------------- */

static void config_good(void **state)
{
	static const char text[] = "# node A\n"
				   "node = alpha-1\n"
				   "\n"
				   "state_dir = /var/lib/castor-a\n"
				   "  control=/run/a.sock  \n"
				   "replication_host = 10.77.0.11\n"
				   "replication_ports = 7000-7010\n"
				   "metrics = 10.77.0.11:9100\n"
				   "key_file = /etc/castor/pair.key\n"
				   "witness = no\n"
				   "allow_two_node = yes\n";
	struct cd_config c;
	char why[256];

	(void)state;
	assert_int_equal(cd_config_parse("a.conf", text, strlen(text), &c, why, sizeof(why)), 0);
	assert_string_equal(c.node, "alpha-1");
	assert_string_equal(c.state_dir, "/var/lib/castor-a");
	assert_string_equal(c.control, "/run/a.sock");
	assert_string_equal(c.replication_host, "10.77.0.11");
	assert_int_equal(c.port_low, 7000);
	assert_int_equal(c.port_high, 7010);
	assert_string_equal(c.metrics, "10.77.0.11:9100");
	assert_string_equal(c.key_file, "/etc/castor/pair.key");
	assert_false(c.witness);
	assert_true(c.allow_two_node);
	/* defaults */
	{
		static const char t2[] = "node = b\nwitness = yes\nmetrics = off\n";

		assert_int_equal(cd_config_parse("b.conf", t2, strlen(t2), &c, why, sizeof(why)),
				 0);
	}
	assert_string_equal(c.state_dir, "/var/lib/castor");
	assert_string_equal(c.control, "/run/castor/castord.sock");
	assert_int_equal(c.port_low, 7800);
	assert_true(c.witness);
	assert_string_equal(c.metrics, "");
}

static void config_bad(void **state)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
		{"", "'node = NAME' is required"},
		{"node = a\nnode = b\n", "x.conf:2: node is set again (first on line 1)"},
		{"node = a\nnde = b\n", "x.conf:2: unknown setting 'nde'"},
		{"node = -a\n", "x.conf:1: node: '-a' is not a name"},
		{"node = a b\n", "is not a name"},
		{"node = a\nstate_dir = var/lib\n", "x.conf:2: state_dir: 'var/lib' is not an "
						    "absolute path"},
		{"node = a\nreplication_ports = 7900-7800\n", "x.conf:2: replication_ports"},
		{"node = a\nreplication_ports = 0-10\n", "replication_ports"},
		{"node = a\nreplication_ports = 010-70000\n", "replication_ports"},
		{"node = a\nmetrics = localhost\n", "x.conf:2: metrics: 'localhost' is not"},
		{"node = a\nwitness = maybe\n", "witness: 'maybe' is not yes or no"},
		{"node = a\njust words\n", "x.conf:2: expected 'key = value'"},
		{"node = a\n= 4\n", "x.conf:2: a value without a key"},
		{"node = a\ncontrol =\n", "control: an empty value"},
	};
	struct cd_config c;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = 0;
		assert_int_not_equal(cd_config_parse("x.conf", bad[i].text, strlen(bad[i].text), &c,
						     why, sizeof(why)),
				     0);
		if (!strstr(why, bad[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, why, bad[i].want);
	}
	/* a NUL byte, an endless line */
	assert_int_not_equal(cd_config_parse("x.conf", "node = a\0b\n", 11, &c, why, sizeof(why)),
			     0);
	assert_non_null(strstr(why, "NUL"));
	{
		static char longline[CD_CONF_MAX_LINE + 10];

		memset(longline, 'a', sizeof(longline) - 1);
		assert_int_not_equal(
			cd_config_parse("x.conf", longline, strlen(longline), &c, why, sizeof(why)),
			0);
		assert_non_null(strstr(why, "x.conf:1: a line over"));
	}
}

/* ---- VM definitions ---------------------------------------------------------------------- */

static void vmdef_good(void **state)
{
	static const char text[] = "name = vm3\n"
				   "guest = test\n"
				   "mem = 256M\n"
				   "cpus = 2\n"
				   "guest_param = rate=100\n"
				   "guest_param = wss=1M\n"
				   "disk = /srv/img/vm3.img,ro\n"
				   "nic = tap=tap0,mac=52:54:00:12:34:56\n"
				   "protection = output\n"
				   "interval = 50\n"
				   "hosts = a, b,c\n"
				   "restart = on-failure\n";
	struct cd_vmdef d;
	char why[256];

	(void)state;
	assert_int_equal(cd_vmdef_parse("vm3.conf", text, strlen(text), &d, why, sizeof(why)), 0);
	assert_string_equal(d.name, "vm3");
	assert_int_equal(d.mem_bytes, 256ull << 20);
	assert_int_equal(d.cpus, 2);
	assert_int_equal(d.nguest_param, 2);
	assert_string_equal(d.guest_param[1], "wss=1M");
	assert_int_equal(d.ndisks, 1);
	assert_int_equal(d.nnics, 1);
	assert_int_equal(d.protection, CD_PROT_OUTPUT);
	assert_int_equal(d.interval_ms, 50);
	assert_int_equal(d.nhosts, 3);
	assert_string_equal(d.hosts[2], "c");
	assert_string_equal(cd_protection_str(d.protection), "output");
	assert_int_equal(d.restart, CD_RESTART_ON_FAILURE);
	assert_false(cd_vmdef_writes_disk(&d)); /* its one disk is ,ro */
}

static void vmdef_linux(void **state)
{
	static const char text[] = "name = deb1\nguest = linux\nmem = 512M\ncpus = 2\n"
				   "kernel = /var/lib/castor/guest/vmlinux\n"
				   "initrd = /var/lib/castor/guest/initramfs.cpio.gz\n"
				   "cmdline = console=ttyS0 castor.ip=10.0.0.2/24\n";
	struct cd_vmdef d;
	char why[256];

	(void)state;
	assert_int_equal(cd_vmdef_parse("l.conf", text, strlen(text), &d, why, sizeof(why)), 0);
	assert_string_equal(d.guest, "linux");
	assert_string_equal(d.kernel, "/var/lib/castor/guest/vmlinux");
	assert_string_equal(d.initrd, "/var/lib/castor/guest/initramfs.cpio.gz");
	assert_string_equal(d.cmdline, "console=ttyS0 castor.ip=10.0.0.2/24");
}

/* A protected VM with a writable disk, a copy per node: %n is the node's name. */
static void vmdef_disk_per_node(void **state)
{
	static const char text[] = "name = w\nguest = test\nmem = 64M\ncpus = 1\n"
				   "protection = interval\ndisk = /srv/%n/w.img\n"
				   "disk = /srv/100%%/%n-%n.img,ro\n";
	char out[64], why[256];
	struct cd_vmdef d;

	(void)state;
	assert_int_equal(cd_vmdef_parse("w.conf", text, strlen(text), &d, why, sizeof(why)), 0);
	assert_int_equal(d.restart, CD_RESTART_NO); /* the default */
	assert_true(cd_vmdef_writes_disk(&d));
	assert_int_equal(cd_vmdef_disk_on(d.disk[0], "b", out, sizeof(out)), 0);
	assert_string_equal(out, "/srv/b/w.img");
	assert_int_equal(cd_vmdef_disk_on(d.disk[1], "node2", out, sizeof(out)), 0);
	assert_string_equal(out, "/srv/100%/node2-node2.img,ro");
	assert_int_equal(cd_vmdef_disk_on(d.disk[0], "b", out, 12), -ENAMETOOLONG);
	assert_int_equal(cd_vmdef_disk_on(d.disk[0], "b", out, 13), 0);
}

static void vmdef_bad(void **state)
{
	static const char base[] = "name = v\nguest = test\nmem = 64M\ncpus = 1\n";
	static const struct {
		const char *extra, *want;
	} bad[] = {
		{"mem = 1M\n", "d.conf:5: mem is set again"},
		{"colour = red\n", "d.conf:5: unknown setting 'colour'"},
		{"disk = img.raw\n", "d.conf:5: disk: 'img.raw' is not /ABSOLUTE/PATH"},
		{"disk = /a,rx\n", "is not /ABSOLUTE/PATH"},
		{"nic = tap0\n", "nic: 'tap0' is not tap=NAME"},
		{"nic = tap=t0,mac=01:00:5e:00:00:01\n", "is not tap=NAME[,mac=MAC]"},
		{"protection = always\n", "protection: 'always' is not none, interval or output"},
		{"restart = always\n", "d.conf:5: restart: 'always' is not no or on-failure"},
		{"interval = 0\n", "interval: '0' is not 1 to 600000"},
		{"protection = none\ninterval = 10\n", "d.conf:6: an interval for a VM with "
						       "protection none"},
		{"disk = /srv/%h/a.img\n", "has a '%' that is neither %n (the node's name) nor %%"},
		{"disk = /srv/a%\n", "has a '%' that is neither"},
		{"hosts = a,a\n", "hosts: a is listed twice"},
		{"hosts = a,-b\n", "hosts: '-b' is not a node name"},
		{"guest_param = colour=red\n", "d.conf:5:"},
		{"kernel = /boot/vmlinux\n", "d.conf:5: kernel is for a linux guest"},
		{"cmdline = quiet\n", "d.conf:5: cmdline is for a linux guest"},
	};
	struct cd_vmdef d;
	char text[512], why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", base, bad[i].extra);
		why[0] = 0;
		assert_int_not_equal(
			cd_vmdef_parse("d.conf", text, strlen(text), &d, why, sizeof(why)), 0);
		if (!strstr(why, bad[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, why, bad[i].want);
	}
	static const struct {
		const char *text, *want;
	} bare[] = {
		{"guest = test\nmem = 64M\ncpus = 1\n", "'name = ...' is required"},
		{"name = v\nguest = windows\n", "d.conf:2: guest: 'windows' is not a guest"},
		{"name = v\nguest = linux\nmem = 64M\ncpus = 1\n",
		 "a linux guest needs 'kernel = PATH'"},
		{"name = v\nguest = linux\nmem = 64M\ncpus = 1\nkernel = vmlinux\n",
		 "d.conf:5: kernel: 'vmlinux' is not /ABSOLUTE/PATH"},
		{"name = v\nguest = linux\nmem = 64M\ncpus = 1\nkernel = /k\nguest_param = "
		 "rate=1\n",
		 "d.conf:6: guest_param is for the test guest, not a linux guest"},
		{"name = v\nguest = test\nmem = 8M\n", "mem: '8M' is not a size from 16M"},
		{"name = v\nguest = test\nmem = 64M\ncpus = 99\n", "cpus: '99' is not 1 to"},
		{"name = v\nguest = test\nmem = 64M\n", "'cpus = ...' is required"},
	};
	for (size_t i = 0; i < sizeof(bare) / sizeof(bare[0]); i++) {
		why[0] = 0;
		assert_int_not_equal(cd_vmdef_parse("d.conf", bare[i].text, strlen(bare[i].text),
						    &d, why, sizeof(why)),
				     0);
		if (!strstr(why, bare[i].want))
			fail_msg("bare %zu: '%s' lacks '%s'", i, why, bare[i].want);
	}
}

/* ---- the pair state machine ----------------------------------------------------------------- */

#define S(x) CD_PAIR_S_##x
#define E(x) CD_PAIR_E_##x

/* Every legal (state, event) and where it leads, written out apart from pair.c's table. */
static const struct {
	enum cd_pair_state from;
	enum cd_pair_event e;
	enum cd_pair_state to;
} legal[] = {
	{S(DEFINED), E(START), S(STARTING)},
	{S(DEFINED), E(RESTART), S(STARTING)},
	{S(STARTING), E(STARTED), S(UNPROTECTED)},
	{S(STARTING), E(START_FAILED), S(DEFINED)},
	{S(STARTING), E(PRIMARY_LOST), S(DEFINED)},
	{S(STARTING), E(STOP), S(STOPPING)},
	{S(UNPROTECTED), E(PROTECT), S(PLACING)},
	{S(UNPROTECTED), E(PRIMARY_LOST), S(DEFINED)},
	{S(UNPROTECTED), E(STOP), S(STOPPING)},
	{S(PLACING), E(REPLICA_READY), S(SYNCING)},
	{S(PLACING), E(REPLICA_LOST), S(UNPROTECTED)},
	{S(PLACING), E(PRIMARY_LOST), S(DEFINED)},
	{S(PLACING), E(UNPROTECT), S(UNPROTECTED)},
	{S(PLACING), E(STOP), S(STOPPING)},
	{S(SYNCING), E(SYNCED), S(PROTECTED)},
	{S(SYNCING), E(REPLICA_LOST), S(DEGRADED)},
	{S(SYNCING), E(PRIMARY_LOST), S(DEFINED)},
	{S(SYNCING), E(UNPROTECT), S(UNPROTECTED)},
	{S(SYNCING), E(STOP), S(STOPPING)},
	{S(PROTECTED), E(REPLICA_LOST), S(DEGRADED)},
	{S(PROTECTED), E(PRIMARY_LOST), S(FAILING_OVER)},
	{S(PROTECTED), E(UNPROTECT), S(UNPROTECTED)},
	{S(PROTECTED), E(STOP), S(STOPPING)},
	{S(DEGRADED), E(UNPROTECT), S(UNPROTECTED)},
	{S(DEGRADED), E(PROTECT), S(PLACING)},
	{S(DEGRADED), E(PRIMARY_LOST), S(DEFINED)},
	{S(DEGRADED), E(STOP), S(STOPPING)},
	{S(FAILING_OVER), E(PROMOTED), S(UNPROTECTED)},
	{S(FAILING_OVER), E(REPLICA_LOST), S(DEFINED)},
	{S(FAILING_OVER), E(STOP), S(STOPPING)},
	{S(STOPPING), E(STOPPED), S(DEFINED)},
	/* live migration */
	{S(UNPROTECTED), E(MIGRATE), S(MOVING)},
	{S(MOVING), E(INCOMING_READY), S(MIGRATING)},
	{S(MOVING), E(REPLICA_LOST), S(UNPROTECTED)},
	{S(MOVING), E(MIGRATE_FAILED), S(UNPROTECTED)},
	{S(MOVING), E(PRIMARY_LOST), S(DEFINED)},
	{S(MOVING), E(STOP), S(STOPPING)},
	{S(MIGRATING), E(MIGRATED), S(UNPROTECTED)},
	{S(MIGRATING), E(MIGRATE_FAILED), S(UNPROTECTED)},
	{S(MIGRATING), E(REPLICA_LOST), S(UNPROTECTED)},
	{S(MIGRATING), E(PRIMARY_LOST), S(DEFINED)},
	{S(MIGRATING), E(STOP), S(STOPPING)},
	/* disaster recovery: the DR target set on a running VM, cleared wherever it can be */
	{S(UNPROTECTED), E(DR_PROTECT), S(UNPROTECTED)},
	{S(PLACING), E(DR_PROTECT), S(PLACING)},
	{S(SYNCING), E(DR_PROTECT), S(SYNCING)},
	{S(PROTECTED), E(DR_PROTECT), S(PROTECTED)},
	{S(DEGRADED), E(DR_PROTECT), S(DEGRADED)},
	{S(STARTING), E(DR_UNPROTECT), S(STARTING)},
	{S(UNPROTECTED), E(DR_UNPROTECT), S(UNPROTECTED)},
	{S(PLACING), E(DR_UNPROTECT), S(PLACING)},
	{S(SYNCING), E(DR_UNPROTECT), S(SYNCING)},
	{S(PROTECTED), E(DR_UNPROTECT), S(PROTECTED)},
	{S(DEGRADED), E(DR_UNPROTECT), S(DEGRADED)},
	{S(FAILING_OVER), E(DR_UNPROTECT), S(FAILING_OVER)},
	{S(STOPPING), E(DR_UNPROTECT), S(STOPPING)},
	{S(MOVING), E(DR_UNPROTECT), S(MOVING)},
	{S(MIGRATING), E(DR_UNPROTECT), S(MIGRATING)},
};

static int legal_to(enum cd_pair_state s, enum cd_pair_event e)
{
	for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
		if (legal[i].from == s && legal[i].e == e)
			return (int)legal[i].to;
	return -1;
}

static void every_transition(void **state)
{
	/* everything known: every guard holds */
	const struct cd_view all = {.quorate = true,
				    .primary_gone = true,
				    .replica_gone = true,
				    .have_replica_host = true};
	unsigned s, e, n = 0;

	(void)state;
	for (s = 0; s < CD_PAIR_N_STATES; s++) {
		assert_string_not_equal(cd_pair_state_str(s), "?");
		for (e = 0; e < CD_PAIR_N_EVENTS; e++) {
			struct cd_pair p;
			int to = legal_to(s, e), rc;

			assert_string_not_equal(cd_pair_event_str(e), "?");
			cd_pair_init(&p, "vm");
			p.state = s;
			rc = cd_pair_apply(&p, e, &all, "test", NULL);
			assert_int_equal(cd_pair_is_legal(s, e), to >= 0);
			if (to < 0) {
				assert_int_equal(rc, -EINVAL);
				assert_int_equal(p.state, s);
			} else {
				assert_int_equal(rc, 0);
				assert_int_equal(p.state, to);
				n++;
			}
		}
	}
	assert_int_equal(n, sizeof(legal) / sizeof(legal[0]));
}

/* Apply under `v`; the expected result. */
static void expect(enum cd_pair_state from, enum cd_pair_event e, struct cd_view v, int want_rc)
{
	struct cd_pair p;
	const char *why = NULL;

	cd_pair_init(&p, "vm");
	p.state = from;
	assert_int_equal(cd_pair_apply(&p, e, &v, "test", &why), want_rc);
	if (want_rc) {
		assert_int_equal(p.state, from); /* a refusal changes nothing */
		assert_non_null(why);
	}
}

static void safety_rules(void **state)
{
	const struct cd_view q = {.quorate = true};
	struct cd_view v;

	(void)state;
	/* promotion: quorum and the primary known gone, both needed */
	v = (struct cd_view){.quorate = true, .primary_gone = true};
	expect(S(PROTECTED), E(PRIMARY_LOST), v, 0);
	v.quorate = false;
	expect(S(PROTECTED), E(PRIMARY_LOST), v, -EPERM);
	expect(S(PROTECTED), E(PRIMARY_LOST), q, -EPERM); /* silent is not gone */
	/* a degraded primary releases its output only with quorum and the replica gone */
	v = (struct cd_view){.quorate = true, .replica_gone = true};
	expect(S(DEGRADED), E(UNPROTECT), v, 0);
	v.quorate = false;
	expect(S(DEGRADED), E(UNPROTECT), v, -EPERM);
	expect(S(DEGRADED), E(UNPROTECT), q, -EPERM);
	/* holding output is always allowed, with or without quorum */
	expect(S(PROTECTED), E(REPLICA_LOST), (struct cd_view){0}, 0);
	expect(S(SYNCING), E(REPLICA_LOST), (struct cd_view){0}, 0);
	/* without quorum: nothing starts, nothing is re-protected; stopping is fine */
	expect(S(DEFINED), E(START), (struct cd_view){0}, -EPERM);
	expect(S(DEFINED), E(START), q, 0);
	expect(S(DEGRADED), E(PROTECT), (struct cd_view){.have_replica_host = true}, -EPERM);
	expect(S(UNPROTECTED), E(PROTECT), q, -EPERM); /* no host for a replica */
	expect(S(PROTECTED), E(STOP), (struct cd_view){0}, 0);
	assert_false(cd_view_can_release_output(&(struct cd_view){0}));
	assert_true(cd_view_can_release_output(&q));
}

/* A failover moves the VM to the replica's host and counts. */
static void promotion_moves_the_vm(void **state)
{
	const struct cd_view all = {.quorate = true,
				    .primary_gone = true,
				    .replica_gone = true,
				    .have_replica_host = true};
	struct cd_pair p;

	(void)state;
	cd_pair_init(&p, "vm3");
	assert_int_equal(cd_pair_apply(&p, E(START), &all, "operator", NULL), 0);
	snprintf(p.primary, sizeof(p.primary), "a");
	assert_int_equal(cd_pair_apply(&p, E(STARTED), &all, "castor-vmm runs", NULL), 0);
	assert_int_equal(cd_pair_apply(&p, E(PROTECT), &all, "policy", NULL), 0);
	snprintf(p.replica, sizeof(p.replica), "b");
	assert_int_equal(cd_pair_apply(&p, E(REPLICA_READY), &all, "listening", NULL), 0);
	assert_int_equal(cd_pair_apply(&p, E(SYNCED), &all, "copy acked", NULL), 0);
	assert_int_equal(cd_pair_apply(&p, E(PRIMARY_LOST), &all, "node a left", NULL), 0);
	assert_int_equal(p.state, S(FAILING_OVER));
	assert_int_equal(cd_pair_apply(&p, E(PROMOTED), &all, "twin runs", NULL), 0);
	assert_int_equal(p.state, S(UNPROTECTED));
	assert_string_equal(p.primary, "b");
	assert_string_equal(p.replica, "");
	assert_int_equal(p.failovers, 1);
	assert_non_null(strstr(p.last_reason, "promoted: twin runs"));
	/* then migrated to c: c is the primary, no replica, no failover counted */
	assert_int_equal(cd_pair_apply(&p, E(MIGRATE), &all, "operator", NULL), 0);
	snprintf(p.replica, sizeof(p.replica), "c");
	assert_int_equal(cd_pair_apply(&p, E(INCOMING_READY), &all, "listening", NULL), 0);
	assert_int_equal(cd_pair_apply(&p, E(MIGRATED), &all, "runs on c", NULL), 0);
	assert_int_equal(p.state, S(UNPROTECTED));
	assert_string_equal(p.primary, "c");
	assert_string_equal(p.replica, "");
	assert_int_equal(p.failovers, 1);
	/* a migration that fails leaves it where it ran */
	assert_int_equal(cd_pair_apply(&p, E(MIGRATE), &all, "operator", NULL), 0);
	snprintf(p.replica, sizeof(p.replica), "a");
	assert_int_equal(cd_pair_apply(&p, E(MIGRATE_FAILED), &all, "given up", NULL), 0);
	assert_string_equal(p.primary, "c");
	assert_string_equal(p.replica, "");
	/* without quorum nothing starts moving */
	{
		const struct cd_view none = {0};

		assert_int_equal(cd_pair_apply(&p, E(MIGRATE), &none, "operator", NULL), -EPERM);
		assert_int_equal(p.state, S(UNPROTECTED));
	}
}

/* Two voting nodes need a witness, or an explicit allow_two_node. */
static void layouts(void **state)
{
	struct cd_view_nodes v = {.connected = true, .expected_votes = 3, .n = 3};

	(void)state;
	assert_null(cd_layout_problem(&v, false)); /* three nodes */
	v.expected_votes = 2;
	v.n = 2;
	assert_non_null(strstr(cd_layout_problem(&v, false), "without a witness"));
	assert_null(cd_layout_problem(&v, true)); /* forced */
	v.expected_votes = 3;
	v.n = 3;
	v.node[2].witness = true; /* two hosts and a witness */
	assert_null(cd_layout_problem(&v, false));
	v.two_node = true; /* votequorum's two_node mode: either node alone is quorate */
	assert_non_null(strstr(cd_layout_problem(&v, false), "two_node mode"));
	v.connected = false; /* nothing known yet: no complaint, and no quorum anyway */
	assert_null(cd_layout_problem(&v, false));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_good),	cmocka_unit_test(config_bad),
		cmocka_unit_test(vmdef_good),	cmocka_unit_test(vmdef_bad),
		cmocka_unit_test(vmdef_linux),	cmocka_unit_test(every_transition),
		cmocka_unit_test(safety_rules), cmocka_unit_test(promotion_moves_the_vm),
		cmocka_unit_test(layouts),	cmocka_unit_test(vmdef_disk_per_node),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
