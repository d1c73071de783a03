/*
 * The mailbox (abi.h, struct tg_mailbox at TG_MAILBOX_GPA): host-to-guest
 * commands, serviced by vCPU 0 once per workload loop. The host writes the
 * arguments, then seq; the guest carries the command out, writes status, then
 * state->mbox_done = seq, then reports seq on TG_REG_MBOX_DONE. Device resets
 * (TG_CMD_NET_RESET, TG_CMD_BLK_RESET) are dev.c's.
 */
#include "hypervisor/guest/tg.h"

/* Are pages first + k * stride, k < count, all in [lo, end)? */
static int range_is_inside(uint64_t first, uint64_t count, uint64_t stride, uint64_t lo,
			   uint64_t end)
{
	if (stride < 1)
		return 0;
	if (count == 0)
		return 1;
	if (first < lo || first >= end)
		return 0;
	/* The last page is first + (count - 1) * stride; compare without overflow. */
	return count - 1 <= (end - 1 - first) / stride;
}

void tg_mailbox_service(volatile struct tg_vcpu_state *st, uint64_t scratch_first_pfn,
			uint64_t scratch_end_pfn)
{
	volatile struct tg_mailbox *mb = tg_mailbox();
	uint64_t seq = mb->seq;
	uint64_t first, count, stride, value, k;
	uint32_t cmd, status = TG_MBOX_REJECTED;

	if (seq == st->mbox_done)
		return;
	tg_barrier(); /* the arguments were written before seq */
	cmd = mb->cmd;
	first = mb->first;
	count = mb->count;
	stride = mb->stride;
	value = mb->value;

	if (cmd == TG_CMD_DIRTY_RANGE &&
	    range_is_inside(first, count, stride, scratch_first_pfn, scratch_end_pfn)) {
		for (k = 0; k < count; k++)
			*(volatile uint64_t *)(uintptr_t)((first + k * stride) * TG_PAGE_SIZE) =
				value;
		status = TG_MBOX_OK;
	} else if (cmd == TG_CMD_NET_RESET || cmd == TG_CMD_BLK_RESET) {
		status = tg_dev_command(cmd);
	}
	mb->status = status;
	tg_barrier();
	st->mbox_done = seq;
	tg_barrier();
	tg_mmio_write32(TG_REG_MBOX_DONE, (uint32_t)seq);
}
