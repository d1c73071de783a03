/*
 * castord's files: castord.conf (cd_config_parse) and VM definitions
 * (cd_vmdef_parse) on arbitrary bytes, and the same bytes as a definition
 * message or a pair message from another node (cd_defmsg_decode,
 * cd_pairmsg_decode, then applied to a pair table). Rules: never crash or read past the
 * input; a refusal explains itself with the file name first; what is
 * accepted holds the documented bounds (a node name, absolute paths, a port
 * range in order, at most 4 disks and NICs, an interval only with protection).
 */
#include <stdio.h>
#include <string.h>

#include "clusterd/cluster.h"
#include "hypervisor/hv.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cd_config c;
	struct cd_vmdef d;
	char why[512];

	why[0] = 0;
	if (cd_config_parse("f.conf", (const char *)data, size, &c, why, sizeof(why)) == 0) {
		FUZZ_CHECK(cd_is_name(c.node));
		FUZZ_CHECK(c.state_dir[0] == '/' && c.control[0] == '/');
		FUZZ_CHECK(c.port_low >= 1 && c.port_low <= c.port_high);
	} else {
		FUZZ_CHECK(!strncmp(why, "f.conf", 6));
	}
	why[0] = 0;
	if (cd_vmdef_parse("f.vm", (const char *)data, size, &d, why, sizeof(why)) == 0) {
		FUZZ_CHECK(cd_is_name(d.name));
		FUZZ_CHECK(d.cpus >= 1 && d.cpus <= HV_MAX_VCPUS);
		FUZZ_CHECK(d.mem_bytes >= (16ull << 20) && d.mem_bytes % 4096 == 0);
		FUZZ_CHECK(d.ndisks <= CD_MAX_DISKS && d.nnics <= CD_MAX_NICS);
		FUZZ_CHECK(!d.interval_ms || d.protection != CD_PROT_NONE);
		FUZZ_CHECK(d.restart == CD_RESTART_NO || d.restart == CD_RESTART_ON_FAILURE);
	} else {
		FUZZ_CHECK(!strncmp(why, "f.vm", 4));
	}
	/* the same bytes as a DEFINE/UNDEFINE from another node (CPG) */
	{
		struct cd_defmsg m;

		if (cd_defmsg_decode(data, size, &m) == 0) {
			FUZZ_CHECK(cd_is_name(m.name) && m.generation > 0);
			FUZZ_CHECK((m.kind == CD_DEFMSG_DEFINE) == (m.text != NULL));
			FUZZ_CHECK(m.text_len == size - sizeof(struct cd_defmsg_hdr));
		}
	}
	/* ... and as a pair EVENT, SYNC, FIGURES or DR_FIGURES: decoded, then applied, twice
	 * (a replay) */
	{
		static struct cd_pairs t;
		struct cd_pairmsg m;
		const char *w;

		if (cd_pairmsg_decode(data, size, &m) == 0) {
			FUZZ_CHECK(cd_is_name(m.vm));
			FUZZ_CHECK(!m.primary[0] || cd_is_name(m.primary));
			cd_pairs_init(&t);
			cd_pairs_apply(&t, &m, &w);
			cd_pairs_apply(&t, &m, &w);
			if (m.kind == CD_PAIRMSG_FIGURES || m.kind == CD_PAIRMSG_DR_FIGURES)
				FUZZ_CHECK(t.n == 0); /* never a pair change */
			else
				FUZZ_CHECK(t.n == 1 && t.e[0].pair.state < CD_PAIR_N_STATES);
			/* a DR target only on a pair that runs, a restart only on one that does not
			 */
			if (t.n && t.e[0].pair.state == CD_PAIR_S_DEFINED)
				FUZZ_CHECK(!t.e[0].pair.dr_addr[0]);
			if (t.n && t.e[0].pair.state != CD_PAIR_S_DEFINED)
				FUZZ_CHECK(!t.e[0].pair.restart_host[0]);
			FUZZ_CHECK(!t.n || t.e[0].pair.restarts <= CD_RESTART_MAX);
		}
	}
	return 0;
}

void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	static const char *const seeds[] = {
		"node = a\nstate_dir = /var/lib/castor\ncontrol = /run/c.sock\n"
		"replication_ports = 7000-7010\nmetrics = 10.0.0.1:9477\nwitness = yes\n",
		"# vm\nname = vm3\nguest = test\nmem = 256M\ncpus = 2\nguest_param = rate=100\n"
		"disk = /srv/a.img,ro\nnic = tap=tap0,mac=52:54:00:12:34:56\n"
		"protection = output\ninterval = 50\nhosts = a, b\nrestart = on-failure\n",
	};
	struct cd_defmsg m = {.kind = CD_DEFMSG_DEFINE, .generation = 3, .origin = 1};
	struct cd_defmsg_hdr hdr;
	struct iovec iov[2];
	uint8_t buf[1024];
	size_t len = 0;
	unsigned n;

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		add(ctx, (const uint8_t *)seeds[i], strlen(seeds[i]));
	{
		const struct cd_view v = {.quorate = true};
		struct cd_pairmsg pm;
		struct cd_pairmsg_hdr ph;

		cd_pairmsg_event(&pm, "vm3", CD_PAIR_E_START, "b", &v, "castor vm start");
		add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		cd_pairmsg_figures(&pm, "vm3", "b", 4711, 49500, 21000000);
		add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		cd_pairmsg_dr(&pm, "vm3", "b", &v, "dr-site:7100", 5000, 20, "castor dr protect");
		add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		cd_pairmsg_dr_figures(&pm, "vm3", "b", "dr-site:7100", "protected", 42, 1200000000,
				      5000, 1, 20);
		add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		cd_pairmsg_event(&pm, "vm3", CD_PAIR_E_RESTART, "c", &v, "1 of 3 in 10 min");
		pm.restarts = 1;
		pm.restarted_at = 1800000000;
		add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		{
			struct cd_pair_entry e = {.generation = 7};

			cd_pair_init(&e.pair, "vm3");
			snprintf(e.pair.restart_host, sizeof(e.pair.restart_host), "b");
			e.pair.restarts = 2;
			e.pair.restarted_at = 1800000000;
			cd_pairmsg_sync(&pm, &e);
			add(ctx, (const uint8_t *)&ph, cd_pairmsg_encode(&pm, &ph));
		}
	}
	snprintf(m.name, sizeof(m.name), "vm3");
	m.text = seeds[1];
	m.text_len = strlen(seeds[1]);
	n = cd_defmsg_encode(&m, &hdr, iov);
	for (unsigned i = 0; i < n && len + iov[i].iov_len <= sizeof(buf); i++) {
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	add(ctx, buf, len);
}
