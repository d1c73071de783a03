/*
 * castord's files: castord.conf (cd_config_parse) and VM definitions
 * (cd_vmdef_parse) on arbitrary bytes, and the same bytes as a definition
 * message from another node (cd_defmsg_decode). Rules: never crash or read past the
 * input; a refusal explains itself with the file name first; what is
 * accepted holds the documented bounds (a node name, absolute paths, a port
 * range in order, at most 4 disks and NICs, an interval only with protection).
 */
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
	return 0;
}
