/*
 * The replicated definition store (clusterd/defs.c): the higher version wins
 * whatever order changes arrive in, a removal is a tombstone that an older
 * replayed definition never undoes, a definition that does not parse changes
 * nothing, entries survive a restart (kept 0600 in the state directory), and
 * the CPG message round-trips and refuses malformed bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clusterd/cluster.h"

static const char VM[] = "name = vm1\nguest = test\nmem = 64M\ncpus = 1\n";
static const char VM_BIG[] = "name = vm1\nguest = test\nmem = 128M\ncpus = 2\n";

static int apply(struct cd_defs *s, const char *text, uint64_t gen, uint32_t origin)
{
	char why[256];

	return cd_defs_apply(s, "vm1", text, text ? strlen(text) : 0, gen, origin, why,
			     sizeof(why));
}

static void versions_decide(void **state)
{
	static struct cd_defs s;
	const struct cd_def *d;

	(void)state;
	cd_defs_init(&s, NULL);
	assert_int_equal(apply(&s, VM, 5, 1), 0);
	assert_int_equal(cd_defs_next_generation(&s), 6);
	/* older or equal: ignored */
	assert_int_equal(apply(&s, VM_BIG, 4, 9), 0);
	assert_int_equal(apply(&s, VM_BIG, 5, 1), 0);
	d = cd_defs_find(&s, "vm1");
	assert_int_equal(d->vm.mem_bytes, 64ull << 20);
	/* same generation, higher origin: wins (two nodes' concurrent changes agree) */
	assert_int_equal(apply(&s, VM_BIG, 5, 2), 0);
	assert_int_equal(d->vm.mem_bytes, 128ull << 20);
	/* removal, then an older definition replayed by a node that was away: still removed */
	assert_int_equal(apply(&s, NULL, 7, 1), 0);
	assert_true(d->removed);
	assert_int_equal(apply(&s, VM, 6, 3), 0);
	assert_true(cd_defs_find(&s, "vm1")->removed);
	/* a newer definition brings it back */
	assert_int_equal(apply(&s, VM, 8, 1), 0);
	assert_false(cd_defs_find(&s, "vm1")->removed);
	/* a definition that does not parse, or names another VM: refused, nothing changed */
	assert_int_equal(apply(&s, "name = vm1\nmem = 1\n", 9, 1), -EINVAL);
	assert_int_equal(apply(&s, "name = vm2\nguest = test\nmem = 64M\ncpus = 1\n", 9, 1),
			 -EINVAL);
	assert_int_equal(cd_defs_find(&s, "vm1")->generation, 8);
	cd_defs_dispose(&s);
}

static void kept_across_restarts(void **state)
{
	static struct cd_defs s, t;
	char dir[] = "/tmp/castor-test-defs.XXXXXX", path[300];
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	cd_defs_init(&s, dir);
	assert_int_equal(apply(&s, VM, 3, 2), 0);
	snprintf(path, sizeof(path), "%s/vm1.conf", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	cd_defs_init(&t, dir);
	assert_int_equal(cd_defs_load(&t), 0);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.def[0].generation, 3);
	assert_int_equal(t.def[0].origin, 2);
	assert_string_equal(t.def[0].text, VM);
	cd_defs_dispose(&t);
	/* a removal replaces the file by a tombstone, which a restart keeps */
	assert_int_equal(apply(&s, NULL, 4, 2), 0);
	assert_int_not_equal(stat(path, &st), 0);
	cd_defs_init(&t, dir);
	assert_int_equal(cd_defs_load(&t), 0);
	assert_true(t.def[0].removed);
	assert_int_equal(t.def[0].generation, 4);
	cd_defs_dispose(&t);
	cd_defs_dispose(&s);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

static void messages(void **state)
{
	struct cd_defmsg m = {.kind = CD_DEFMSG_DEFINE,
			      .text = VM,
			      .text_len = strlen(VM),
			      .generation = 12,
			      .origin = 3},
			 out;
	struct cd_defmsg_hdr hdr;
	struct iovec iov[2];
	uint8_t buf[512];
	size_t len = 0;
	unsigned n;

	(void)state;
	snprintf(m.name, sizeof(m.name), "vm1");
	n = cd_defmsg_encode(&m, &hdr, iov);
	for (unsigned i = 0; i < n; i++) {
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	assert_int_equal(cd_defmsg_decode(buf, len, &out), 0);
	assert_string_equal(out.name, "vm1");
	assert_int_equal(out.text_len, strlen(VM));
	assert_memory_equal(out.text, VM, out.text_len);
	assert_int_equal(out.generation, 12);
	assert_int_equal(out.origin, 3);
	/* truncated, a text length that lies, a bad name, an undefine with text */
	assert_int_equal(cd_defmsg_decode(buf, len - 1, &out), -EBADMSG);
	assert_int_equal(cd_defmsg_decode(buf, sizeof(hdr) - 1, &out), -EBADMSG);
	hdr.name[0] = '-';
	memcpy(buf, &hdr, sizeof(hdr));
	assert_int_equal(cd_defmsg_decode(buf, len, &out), -EBADMSG);
	snprintf(hdr.name, sizeof(hdr.name), "vm1");
	hdr.kind = CD_DEFMSG_UNDEFINE;
	memcpy(buf, &hdr, sizeof(hdr));
	assert_int_equal(cd_defmsg_decode(buf, len, &out), -EBADMSG);
	hdr.kind = 7;
	memcpy(buf, &hdr, sizeof(hdr));
	assert_int_equal(cd_defmsg_decode(buf, len, &out), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(versions_decide),
		cmocka_unit_test(kept_across_restarts),
		cmocka_unit_test(messages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
