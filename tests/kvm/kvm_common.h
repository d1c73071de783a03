/* Helpers shared by the KVM tests: run the test guest in-process. */
#ifndef CASTOR_TESTS_KVM_COMMON_H
#define CASTOR_TESTS_KVM_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"

/*
 * Exit 77 (skipped) with a reason when /dev/kvm cannot be used; exit 1 (failed)
 * instead under CASTOR_REQUIRE_KVM=1, so that CI cannot pass without a VM
 * (tests/require.sh is the shell tests' copy of this rule).
 */
static inline void kvm_test_require(void)
{
	const char *req = getenv("CASTOR_REQUIRE_KVM");
	char why[256];

	if (hv_kvm_probe(NULL, why, sizeof(why)) < 0) {
		if (req && !strcmp(req, "1")) {
			fprintf(stderr, "FAIL: CASTOR_REQUIRE_KVM=1 but this test cannot run: %s\n",
				why);
			exit(1);
		}
		fprintf(stderr, "SKIP: %s\n", why);
		exit(77);
	}
}

/* On the nested test machine (CASTOR_NESTED=1, tests/nested/nest.sh)? */
static inline bool kvm_test_nested(void)
{
	const char *nested = getenv("CASTOR_NESTED");

	return nested && !strcmp(nested, "1");
}

/*
 * How many times to repeat a check that a test repeats n times: a fifth (at
 * least one) on the nested test machine, where everything is emulated and
 * several times slower (castortest.reps()).
 */
static inline unsigned kvm_test_reps(unsigned n)
{
	if (kvm_test_nested())
		return n / 5 ? n / 5 : 1;
	return n;
}

/*
 * A running test-guest VM. serial_fd may be -1. Returns NULL on failure (the
 * caller asserts). Waits until every vCPU reported ready.
 */
static inline struct hv_vm *kvm_test_vm(uint32_t ncpus, uint64_t mem, const struct hv_tg_config *tg,
					int serial_fd)
{
	struct hv_vm_config cfg = {
		.name = "test", .mem_bytes = mem, .ncpus = ncpus, .serial_fd = serial_fd};
	struct hv_vm *vm = NULL;

	if (hv_vm_create(&cfg, &vm) < 0)
		return NULL;
	if (hv_tg_load(vm, tg) < 0 || hv_vm_start(vm) < 0 ||
	    hv_tg_wait_ready(vm, 30ull * 1000000000ull) < 0) {
		hv_vm_free(vm);
		return NULL;
	}
	return vm;
}

/*
 * Let `vm` (running) run until every one of its `n` vCPUs' counters is past
 * t0's, and leave it paused; t1 gets the counters then. Progress, not time, is
 * what the callers check: 50 ms is the usual case, but a vCPU thread on a
 * loaded (or emulated) host may not run for a while, so this polls for up to
 * 10 s. Returns true when all got past.
 */
static inline bool kvm_run_past(struct hv_vm *vm, uint32_t n, const struct hv_tg_vcpu *t0,
				struct hv_tg_vcpu *t1)
{
	uint64_t end = util_now_ns() + 10ull * 1000000000ull;
	bool past;

	for (;;) {
		util_sleep_ns(50 * 1000000ull);
		if (hv_vm_pause(vm) < 0)
			return false;
		past = true;
		for (uint32_t i = 0; i < n; i++) {
			if (hv_tg_vcpu(vm, i, &t1[i]) < 0)
				return false;
			past &= t1[i].counter > t0[i].counter;
		}
		if (!past && util_now_ns() > end) {
			/* say which vCPU stood still, for the next time it happens */
			for (uint32_t i = 0; i < n; i++)
				fprintf(stderr, "kvm_run_past: vCPU %u: counter %llu, was %llu%s\n",
					i, (unsigned long long)t1[i].counter,
					(unsigned long long)t0[i].counter,
					t1[i].counter > t0[i].counter ? "" : " (did not run)");
			return false;
		}
		if (past)
			return true;
		if (hv_vm_resume(vm) < 0)
			return false;
	}
}

/*
 * Pages whose contents differ between `copy` (an earlier copy of the VM's RAM)
 * and its RAM now: how many; *missed_out is the first of them not set in the
 * harvest `h` (UINT64_MAX when every changed page was harvested).
 */
static inline uint64_t kvm_changed_pages(struct hv_vm *vm, const uint8_t *copy,
					 const struct util_bitmap *h, uint64_t *missed_out)
{
	uint64_t p, changed = 0;

	*missed_out = UINT64_MAX;
	for (p = 0; p < hv_ram_pages(vm); p++) {
		if (!memcmp(copy + p * HV_PAGE_SIZE, hv_ram_base(vm) + p * HV_PAGE_SIZE,
			    HV_PAGE_SIZE))
			continue;
		changed++;
		if (!util_bitmap_is_set(h, p) && *missed_out == UINT64_MAX)
			*missed_out = p;
	}
	return changed;
}

/* A snapshot (or an epoch) of `vm` in memory. Needs cmocka.h included first. */
struct kvm_blob {
	uint8_t *data;
	size_t len;
};

/* `stats` may be NULL. */
static inline struct kvm_blob kvm_snapshot_stats(struct hv_vm *vm, enum hv_stream_kind kind,
						 struct hv_snapshot_stats *stats)
{
	struct kvm_blob b = {0};
	struct stat st;
	int fd = memfd_create("snapshot", 0);

	assert_true(fd >= 0);
	assert_int_equal(hv_snapshot_save(vm, fd, kind, stats), 0);
	assert_int_equal(fstat(fd, &st), 0);
	b.len = (size_t)st.st_size;
	b.data = malloc(b.len);
	assert_int_equal(pread(fd, b.data, b.len, 0), (ssize_t)b.len);
	close(fd);
	return b;
}

static inline struct kvm_blob kvm_snapshot(struct hv_vm *vm, enum hv_stream_kind kind)
{
	return kvm_snapshot_stats(vm, kind, NULL);
}

static inline uint32_t kvm_ram_hash(struct hv_vm *vm)
{
	return util_crc32c_update(UTIL_CRC32C_INIT, hv_ram_base(vm), hv_vm_mem_bytes(vm));
}

static inline void kvm_test_tg_config(struct hv_tg_config *tg)
{
	hv_tg_config_default(tg);
	tg->image_path = CASTOR_GUEST_BIN;
	tg->serial_tick = false;
}

#endif
