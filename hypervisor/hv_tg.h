/*
 * hv_tg.h: the host side of the test guest (hypervisor/guest/,
 * docs/test-guest.md) -- its configuration, the loader, the calls that talk
 * to a running guest (counters, mailbox, rates, output callback) and the
 * checkers that prove a copy of its RAM or disk exact. Part of castor_hv's
 * public header hv.h.
 */
#ifndef CASTOR_HV_TG_H
#define CASTOR_HV_TG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#include "hv_vm.h" /* HV_MAX_VCPUS */

struct hv_vm;

/* ---- the test guest (hypervisor/guest/, docs/test-guest.md) ---------------------------- */

struct hv_tg_config {
	const char *image_path; /* castor-tg.bin */
	uint64_t wss_bytes;	/* work region per vCPU */
	uint64_t rate;		/* pages per ms per vCPU; TG_RATE_MAX = unthrottled */
	uint64_t out_rate;	/* outputs per second per vCPU */
	uint64_t seed;
	uint32_t window_words;
	bool serial_tick;
	/* network (needs a NIC): addresses in network byte order; ip 0 = no stack */
	uint32_t ip, netmask, gateway;
	/* disk workload (needs a disk): area and rate; blk_count 0 = none */
	uint64_t blk_first, blk_count, blk_rate;
	bool blk_verify_only;
};
void hv_tg_config_default(struct hv_tg_config *cfg);
/*
 * `key=value` as on castor-vmm's command line: wss, rate, outrate, seed, window,
 * tick, ip, mask, gw, blkfirst, blkcount, blkrate, blkverify.
 */
int hv_tg_config_set(struct hv_tg_config *cfg, const char *kv, char *why, size_t why_len);

/*
 * Load the image, write the parameter block and set every vCPU's entry state.
 * Add the devices first: the guest learns the first NIC's and the first
 * disk's addresses from the parameter block.
 */
int hv_tg_load(struct hv_vm *vm, const struct hv_tg_config *cfg);
bool hv_tg_is_loaded(struct hv_vm *vm);

struct hv_tg_vcpu {
	uint64_t counter;      /* from guest memory */
	uint64_t out_seq;      /* from guest memory */
	uint64_t outputs_seen; /* outputs the test device received */
	uint64_t order_errors; /* outputs whose number was not the next one */
	bool ready;	       /* reported TG_REG_READY */
	uint32_t fault;	       /* vector | cpl << 8 reported on TG_REG_FAULT, or 0 */
	bool faulted;
};
int hv_tg_vcpu(struct hv_vm *vm, uint32_t idx, struct hv_tg_vcpu *out);
/* The guest's network and disk counters (struct tg_io_state of guest/abi.h). */
struct tg_io_state;
int hv_tg_io_state(struct hv_vm *vm, struct tg_io_state *out);
/*
 * The same counters for a host program that does not speak the guest's ABI
 * (castor-vmm's status): the device bring-up as booleans. -EINVAL when no test
 * guest is loaded.
 */
struct hv_tg_io {
	bool net_up, blk_up;
	uint64_t udp_answered, tcp_answered, tcp_conns, tcp_retransmits, icmp_replies;
	uint64_t blk_written, blk_verified, blk_bad, blk_io_errors, blk_generation, blk_next;
};
int hv_tg_io(struct hv_vm *vm, struct hv_tg_io *out);
/* Wait until every vCPU reported ready; -ETIMEDOUT, or -EIO when one faulted. */
int hv_tg_wait_ready(struct hv_vm *vm, uint64_t timeout_ns);
/* Change the dirty rate / output rate of a running guest (read every loop). */
int hv_tg_set_rates(struct hv_vm *vm, uint64_t rate, uint64_t out_rate);
/* The test guest's IPv4 address (network order) from its parameters; 0 = none. */
uint32_t hv_tg_guest_ip(struct hv_vm *vm);
/* The guest-physical range of the scratch area (for mailbox commands). */
int hv_tg_scratch(struct hv_vm *vm, uint64_t *first_pfn_out, uint64_t *end_pfn_out);
/*
 * Ask vCPU 0 to write word 0 of pages first_pfn + k * stride, k < count, and
 * wait for it (the VM must be running). -EINVAL when the guest rejected it.
 */
int hv_tg_dirty_range(struct hv_vm *vm, uint64_t first_pfn, uint64_t count, uint64_t stride,
		      uint64_t value, uint64_t timeout_ns);
/*
 * Post an argument-less mailbox command (TG_CMD_NET_RESET, TG_CMD_BLK_RESET)
 * and wait for it: 0, -EINVAL (rejected), -EIO (the guest says it failed).
 */
int hv_tg_mailbox(struct hv_vm *vm, uint32_t cmd, uint64_t timeout_ns);
/*
 * Pages the guest may write besides its work regions and commanded scratch
 * pages (stacks, vCPU state pages, the parameter block): a bitmap of RAM pages.
 */
int hv_tg_housekeeping(struct hv_vm *vm, struct util_bitmap *out);

/* Called on the vCPU thread for every test-device output, in order per vCPU. */
typedef void (*hv_tg_output_fn)(void *arg, uint32_t vcpu, uint64_t seq, uint64_t counter);
void hv_tg_set_output_cb(struct hv_vm *vm, hv_tg_output_fn cb, void *arg);

/*
 * The checker: verify a copy of test-guest RAM (RAM-offset layout, as
 * hv_ram_base() or a snapshot holds it) against the guest's own rule and the
 * counters stored in that same copy. 0 when every work page is exact;
 * -EBADMSG with `why` describing the first bad page; -EINVAL when the copy
 * holds no test guest.
 */
struct hv_tg_check {
	uint32_t ncpus;
	uint64_t counters[HV_MAX_VCPUS];
	uint64_t pages_checked;
	uint64_t pages_bad;
	uint64_t first_bad_gpa;
	char why[200];
};
int hv_tg_check_ram(const uint8_t *ram, uint64_t mem_bytes, struct hv_tg_check *res);

/*
 * The disk checker: verify the test guest's disk workload area in an image
 * (the disk rule of guest/abi.h). Blocks before `next` must hold pass
 * `generation`, blocks after it pass `generation - 1` (all zeros for pass 0),
 * block `next` either (it may be in flight). 0, or -EBADMSG with `why`
 * naming the first bad block; -EINVAL when the area is not in the image.
 */
struct hv_tg_disk_check {
	uint64_t blocks_checked, blocks_bad, first_bad;
	char why[200];
};
int hv_tg_check_disk(const uint8_t *img, uint64_t img_bytes, uint64_t first_sector, uint64_t count,
		     uint64_t seed, uint64_t generation, uint64_t next,
		     struct hv_tg_disk_check *res);

#endif
