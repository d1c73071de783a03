/*
 * A twin kept in step with a running primary by applying epochs (incremental
 * streams) -- the secondary's core operation for replication (issue 5), here
 * without the network:
 *   - after every epoch the twin's RAM is byte-identical to the primary's at
 *     the epoch's pause (hash), 100 epochs of a guest dirtying at full speed;
 *   - a partial (truncated) or corrupt epoch is refused whole and the twin
 *     does not change; an epoch out of order is refused;
 *   - failover: the twin starts from its last epoch and runs on, its counters
 *     at least those of the last committed epoch, its RAM exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "tests/kvm/kvm_common.h"

#define SEC    1000000000ull
#define MEM    (64ull << 20)
#define EPOCHS kvm_test_reps(100)

static void twin_stays_exact(void **state)
{
	struct hv_vm_config cfg = {.name = "twin", .serial_fd = -1};
	struct hv_tg_config tg;
	struct hv_vm *primary, *twin = NULL;
	struct hv_tg_vcpu committed[2] = {0}, t, after[2];
	struct hv_tg_check chk;
	struct kvm_blob b;
	const uint8_t *s;
	char why[256] = "";
	uint32_t h, i;
	unsigned e, refused = 0;

	kvm_test_tg_config(&tg);
	tg.rate = TG_RATE_MAX;
	tg.wss_bytes = 2 << 20;
	tg.out_rate = 500;
	primary = kvm_test_vm(2, MEM, &tg, -1);
	assert_non_null(primary);

	/* initial synchronisation: a full stream, applied to a new VM that does not run */
	b = kvm_snapshot(primary, HV_STREAM_FULL);
	s = b.data;
	if (hv_snapshot_restore(&cfg, &s, &b.len, 1, 0, NULL, NULL, &twin, why, sizeof(why)) < 0)
		fail_msg("initial sync: %s", why);
	free(b.data);

	for (e = 1; e <= EPOCHS; e++) {
		util_sleep_ns(2 * 1000000ull);
		assert_int_equal(hv_vm_pause(primary), 0);
		b = kvm_snapshot(primary, HV_STREAM_INCREMENTAL);
		h = kvm_ram_hash(primary); /* the primary at this epoch's pause */
		for (i = 0; i < 2; i++)
			assert_int_equal(hv_tg_vcpu(primary, i, &committed[i]), 0);
		assert_int_equal(hv_vm_resume(primary), 0);

		if (e % 10 == 0) {
			/* the primary died mid-epoch: the part that arrived is refused whole */
			size_t cut = (size_t)((e * 7919) % b.len);
			uint32_t before = kvm_ram_hash(twin);

			assert_int_equal(hv_snapshot_apply(twin, b.data, cut, why, sizeof(why)),
					 -EBADMSG);
			assert_int_equal(kvm_ram_hash(twin), before);
			/* and so is a corrupt one */
			b.data[b.len / 2] ^= 1;
			assert_int_equal(hv_snapshot_apply(twin, b.data, b.len, why, sizeof(why)),
					 -EBADMSG);
			b.data[b.len / 2] ^= 1;
			assert_int_equal(kvm_ram_hash(twin), before);
			refused++;
		}
		if (hv_snapshot_apply(twin, b.data, b.len, why, sizeof(why)) < 0)
			fail_msg("epoch %u: %s", e, why);
		if (kvm_ram_hash(twin) != h)
			fail_msg("epoch %u: the twin's RAM differs from the primary's", e);
		if (e == EPOCHS / 2) {
			/* applying the same epoch again: it does not follow the twin's position */
			assert_int_equal(hv_snapshot_apply(twin, b.data, b.len, why, sizeof(why)),
					 -EINVAL);
			assert_non_null(strstr(why, "does not follow"));
		}
		free(b.data);
	}
	assert_int_equal(refused, EPOCHS / 10);

	/* failover: the primary is gone; the twin runs from its last epoch */
	hv_vm_free(primary);
	if (hv_tg_check_ram(hv_ram_base(twin), MEM, &chk) < 0)
		fail_msg("twin RAM before failover: %s", chk.why);
	assert_int_equal(hv_vm_start(twin), 0);
	assert_true(kvm_run_past(twin, 2, committed, after)); /* it runs on */
	for (i = 0; i < 2; i++) {
		t = after[i];
		assert_true(t.out_seq >= committed[i].out_seq);
		assert_int_equal(t.order_errors, 0);
		assert_false(t.faulted);
	}
	if (hv_tg_check_ram(hv_ram_base(twin), MEM, &chk) < 0)
		fail_msg("twin RAM after failover: %s", chk.why);
	/* a running VM is no twin any more */
	assert_int_equal(hv_snapshot_apply(twin, (const uint8_t *)"x", 1, why, sizeof(why)),
			 -EINVAL);
	hv_vm_free(twin);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(twin_stays_exact),
	};

	kvm_test_require();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
