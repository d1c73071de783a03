/*
 * The test guest's ring-3 code: declarations shared by its files. Everything
 * declared here runs in ring 3 after entry.S has set up GDT/TSS/IDT and
 * iretq'd to tg_main() with IOPL 3 and interrupts off.
 *
 * Rule for every file: no writable globals. Mutable data lives on the
 * vCPU's ring-3 stack, in its state page or the device area (all in the rw
 * area), in the shared params/mailbox/io_state pages, or in the pages the
 * workload dirties.
 * Functions that can fail return 0 or a TGL_FAULT_* code.
 */
#ifndef CASTOR_TG_H
#define CASTOR_TG_H

#include <stdint.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/guest/layout.h"
#include "hypervisor/guest/io.h"

/* Defined by entry.S. */
extern char tg_vcpu_states[];

/* The shared pages; every access goes through volatile. */
static inline volatile struct tg_params *tg_params(void)
{
	return (volatile struct tg_params *)(uintptr_t)TG_PARAMS_GPA;
}

static inline volatile struct tg_mailbox *tg_mailbox(void)
{
	return (volatile struct tg_mailbox *)(uintptr_t)TG_MAILBOX_GPA;
}

static inline volatile struct tg_io_state *tg_io(void)
{
	return (volatile struct tg_io_state *)(uintptr_t)TG_IO_STATE_GPA;
}

static inline volatile struct tg_vcpu_state *tg_state(uint32_t idx)
{
	return (volatile struct tg_vcpu_state *)(tg_vcpu_states + (uint64_t)idx * TG_PAGE_SIZE);
}

/* TSC ticks per millisecond from params->tsc_khz (0 means 1 GHz). */
static inline uint64_t tg_tsc_per_ms(uint64_t tsc_khz)
{
	return tsc_khz ? tsc_khz : 1000000u;
}

/* main.c: report `fault` on TG_REG_FAULT and park this vCPU in ring 0. */
__attribute__((noreturn)) void tg_stop(uint32_t fault);

/* serial.c: COM1 output, polled. Only vCPU 0 prints. */
void tg_serial_putc(char c);
void tg_serial_puts(const char *s);
/* Understands %s, %c, %u, %x, %lu, %lx and %%. */
__attribute__((format(printf, 1, 2))) void tg_serial_printf(const char *fmt, ...);

/* params.c */
/* Multiboot path: fill the params page from the command line, clear the mailbox. */
uint32_t tg_params_from_multiboot(uint64_t mbi_gpa, const char **why_out);
/* Both paths: are the params the VMM (or we) wrote usable? */
uint32_t tg_params_check(const volatile struct tg_params *p, const char **why_out);

/* page.c: the page rule of abi.h, applied to one page. */
void tg_page_write(volatile uint64_t *page, uint64_t pfn, uint64_t c, uint64_t seed,
		   uint32_t window_words, int whole_page);

/* dev.c: the virtio devices and the network stack, vCPU 0 only (dev.h has
 * the internals). */
/* At boot: zero io_state, bring up the devices the params name. 0, or
 * TGL_FAULT_DEVICE with a reason (also printed). */
uint32_t tg_dev_init(const volatile struct tg_params *p, const char **why_out);
/* Once per workload iteration: NIC rings, TCP timers, the disk workload. */
void tg_dev_poll(uint64_t now);
/* TG_CMD_NET_RESET / TG_CMD_BLK_RESET: returns a TG_MBOX_* status. */
uint32_t tg_dev_command(uint32_t cmd);
/* The devices' counter lines that follow the tick line. */
void tg_dev_print_tick(uint64_t secs);
/* virtio.c: the first QEMU microvm transport holding `device_id`, or 0. */
uint64_t tg_virtio_find_microvm(uint32_t device_id);

/* mailbox.c: vCPU 0 carries out a pending mailbox command, if any. */
void tg_mailbox_service(volatile struct tg_vcpu_state *st, uint64_t scratch_first_pfn,
			uint64_t scratch_end_pfn);

/* workload.c: the per-vCPU loop (dirtying, outputs, and for vCPU 0 the
 * mailbox and the serial tick). The state page must be initialised. */
__attribute__((noreturn)) void tg_workload_run(uint32_t idx);

#endif
