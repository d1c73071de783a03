/*
 * tg_main(): where every vCPU lands in ring 3 (entry.S's iretq passes
 * rdi/rsi/rdx through). Sets up the parameters (multiboot path) or checks
 * them (castor path), initialises this vCPU's state page, reports ready and
 * runs the workload. vCPU 0 prints the banner and brings up the devices.
 */
#include "hypervisor/guest/tg.h"

__attribute__((noreturn, used)) void tg_main(uint64_t idx, uint64_t boot, uint64_t arg);

void tg_stop(uint32_t fault)
{
	tg_mmio_write32(TG_REG_FAULT, fault);
	/* Where no Castor test device listens (QEMU): a ring-3 hlt faults, and
	 * entry.S's #GP handler halts the vCPU in ring 0. */
	for (;;)
		__asm__ volatile("hlt" : : : "memory");
}

static void state_init(volatile struct tg_vcpu_state *st)
{
	uint32_t i;

	st->counter = 0;
	st->out_seq = 0;
	st->out_counter = 0;
	st->loops = 0;
	st->mbox_done = 0;
	for (i = 0; i < sizeof(st->reserved) / sizeof(st->reserved[0]); i++)
		st->reserved[i] = 0;
	tg_barrier();
	st->started = 0;
}

static void print_banner(uint64_t boot, const volatile struct tg_params *p)
{
	uint64_t rate = p->rate;

	tg_serial_printf("castor-tg: boot=%s vcpus=%u wss_pages=%lu rate=",
			 boot == TG_BOOT_MULTIBOOT ? "multiboot" : "castor", p->ncpus,
			 (unsigned long)p->wss_pages);
	if (rate == TG_RATE_MAX)
		tg_serial_puts("max");
	else
		tg_serial_printf("%lu", (unsigned long)rate);
	tg_serial_printf(" outrate=%lu seed=%lu window=%u\n", (unsigned long)p->out_rate,
			 (unsigned long)p->seed, p->window_words);
}

void tg_main(uint64_t idx, uint64_t boot, uint64_t arg)
{
	volatile struct tg_params *p = tg_params();
	volatile struct tg_vcpu_state *st = tg_state((uint32_t)idx);
	const char *why = "";
	uint32_t fault = 0;

	if (boot == TG_BOOT_MULTIBOOT && idx == 0) {
		fault = tg_params_from_multiboot(arg, &why);
	} else if (boot != TG_BOOT_CASTOR) {
		fault = TGL_FAULT_BAD_BOOT;
		why = "unknown boot kind";
	}
	if (!fault)
		fault = tg_params_check(p, &why);
	if (fault) {
		if (idx == 0)
			tg_serial_printf("castor-tg: stopped (fault 0x%x): %s\n", fault, why);
		tg_stop(fault);
	}

	state_init(st);
	if (idx == 0) {
		print_banner(boot, p);
		fault = tg_dev_init(p, &why);
		if (fault) {
			tg_serial_printf("castor-tg: stopped (fault 0x%x): %s\n", fault, why);
			tg_stop(fault);
		}
	}
	tg_barrier();
	st->started = TG_READY_MAGIC;
	tg_barrier();
	tg_mmio_write32(TG_REG_READY, (uint32_t)idx);
	if (idx >= p->ncpus) {
		/* A vCPU beyond params->ncpus has no work region: idle. */
		for (;;)
			tg_pause();
	}
	if (idx == 0) {
		tg_barrier();
		p->ready = TG_READY_MAGIC;
	}
	tg_workload_run((uint32_t)idx);
}
