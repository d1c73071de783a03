/*
 * The per-vCPU workload loop: dirty the vCPU's work region at params->rate
 * pages per ms following the page rule, emit params->out_rate outputs per
 * second on TG_REG_OUTPUT, and on vCPU 0 also poll the devices (dev.c),
 * service the mailbox and print the once-a-second tick line. rate, out_rate,
 * window_words and flags are re-read on every iteration, so the host may
 * change them at run time.
 *
 * The loop's own state (struct work) lives on the ring-3 stack; what the host
 * reads is mirrored into the vCPU's state page.
 */
#include "hypervisor/guest/tg.h"

#define BATCH_PAGES 64u /* at most this many page writes between services */
#define MAX_LAG_MS  10u /* further behind than this: drop the backlog */

struct work {
	uint32_t idx;
	uint32_t window; /* window_words of the writes now being made */
	uint64_t seed;
	uint64_t wss_pages;
	uint64_t region_pfn;  /* first page of this vCPU's work region */
	uint64_t counter;     /* == state->counter: the next write's counter value */
	uint64_t whole_until; /* writes with counter < this lay down the whole page */
	uint64_t next_page;   /* == counter % wss_pages */
	uint64_t loops;
	uint64_t tsc_per_ms;
	uint64_t tsc_per_s;
	/* rate: allowed(now) = rate_count + rate * (now - rate_tsc) / tsc_per_ms */
	uint64_t rate;
	uint64_t rate_tsc;
	uint64_t rate_count;
	/* outputs */
	uint64_t out_rate;
	uint64_t out_period;
	uint64_t out_next;
	/* vCPU 0 */
	uint64_t scratch_first_pfn;
	uint64_t scratch_end_pfn;
	uint64_t tick_start;
	uint64_t tick_next;
};

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	if (a && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void rate_rebase(struct work *w, uint64_t rate, uint64_t now)
{
	w->rate = rate;
	w->rate_tsc = now;
	w->rate_count = w->counter;
}

/* How many pages to write now, at most BATCH_PAGES. */
static uint64_t pages_due(struct work *w, uint64_t rate, uint64_t now)
{
	uint64_t ticks, allowed, behind;

	if (rate == 0 || rate == TG_RATE_MAX) {
		w->rate = rate;
		return rate ? BATCH_PAGES : 0;
	}
	/* A new rate, or a TSC that went backwards (restored elsewhere): start over. */
	if (rate != w->rate || now < w->rate_tsc) {
		rate_rebase(w, rate, now);
		return 0;
	}
	ticks = now - w->rate_tsc;
	allowed = add_sat(w->rate_count,
			  add_sat(mul_sat(rate, ticks / w->tsc_per_ms),
				  mul_sat(rate, ticks % w->tsc_per_ms) / w->tsc_per_ms));
	if (allowed <= w->counter)
		return 0;
	behind = allowed - w->counter;
	if (behind > mul_sat(rate, MAX_LAG_MS)) {
		/* Paused by the host, or rate beyond reach: no catch-up burst. */
		rate_rebase(w, rate, now);
		return 0;
	}
	return behind < BATCH_PAGES ? behind : BATCH_PAGES;
}

/*
 * A new window size moves every page's window (tg_window_start depends on
 * it), so the next wss_pages writes, one per page, lay down whole pages.
 */
static void window_update(struct work *w, uint32_t window)
{
	if (window == w->window || window < 1 || window > TG_WINDOW_MAX)
		return;
	w->window = window;
	w->whole_until = w->counter + w->wss_pages;
}

static void write_next_page(struct work *w, volatile struct tg_vcpu_state *st)
{
	uint64_t c = w->counter;
	uint64_t pfn = w->region_pfn + w->next_page;

	tg_page_write((volatile uint64_t *)(uintptr_t)(pfn * TG_PAGE_SIZE), pfn, c, w->seed,
		      w->window, c < w->whole_until);
	tg_barrier(); /* the page before the counter that says it is written */
	w->counter = c + 1;
	st->counter = c + 1;
	if (++w->next_page == w->wss_pages)
		w->next_page = 0;
}

/* One output when its time has come: numbered out_seq, on TG_REG_OUTPUT. */
static void output_service(struct work *w, volatile struct tg_vcpu_state *st, uint64_t out_rate,
			   uint64_t now)
{
	uint64_t n;

	if (out_rate == 0) {
		w->out_rate = 0;
		return;
	}
	if (out_rate != w->out_rate) {
		w->out_rate = out_rate;
		w->out_period = w->tsc_per_s / out_rate ? w->tsc_per_s / out_rate : 1;
		w->out_next = now + w->out_period;
		return;
	}
	if (now < w->out_next) {
		if (w->out_next - now > w->out_period) /* the TSC went backwards */
			w->out_next = now + w->out_period;
		return;
	}
	n = st->out_seq;
	st->out_counter = w->counter;
	tg_barrier();
	st->out_seq = n + 1;
	tg_barrier();
	tg_mmio_write32(TG_REG_OUTPUT, (uint32_t)n);
	w->out_next += w->out_period;
	if (w->out_next <= now) /* fell behind: skip, never burst */
		w->out_next = now + w->out_period;
}

/* vCPU 0: "castor-tg: t=<secs> c0=<counter> o0=<out_seq>" once a second. */
static void tick_service(struct work *w, volatile struct tg_vcpu_state *st, uint32_t flags,
			 uint64_t now)
{
	if (now < w->tick_start) { /* the TSC went backwards */
		w->tick_start = now;
		w->tick_next = now + w->tsc_per_s;
	}
	if (now < w->tick_next)
		return;
	w->tick_next += w->tsc_per_s;
	if (w->tick_next <= now)
		w->tick_next = now + w->tsc_per_s;
	if (flags & TG_F_SERIAL_TICK) {
		uint64_t secs = (now - w->tick_start) / w->tsc_per_s;

		tg_serial_printf("castor-tg: t=%lu c0=%lu o0=%lu\n", (unsigned long)secs,
				 (unsigned long)w->counter, (unsigned long)st->out_seq);
		tg_dev_print_tick(secs);
	}
}

void tg_workload_run(uint32_t idx)
{
	volatile struct tg_params *p = tg_params();
	volatile struct tg_vcpu_state *st = tg_state(idx);
	uint64_t now = tg_rdtsc();
	struct work w = {
		.idx = idx,
		.window = p->window_words,
		.seed = p->seed,
		.wss_pages = p->wss_pages,
		.tsc_per_ms = tg_tsc_per_ms(p->tsc_khz),
		.rate = 0,
		.out_rate = 0,
		.tick_start = now,
	};

	w.region_pfn = tg_region_base(idx, w.wss_pages) / TG_PAGE_SIZE;
	w.whole_until = w.wss_pages; /* the first visit of each page */
	w.tsc_per_s = w.tsc_per_ms * 1000;
	w.tick_next = now + w.tsc_per_s;
	w.scratch_first_pfn = tg_scratch_base(p->ncpus, w.wss_pages) / TG_PAGE_SIZE;
	w.scratch_end_pfn = p->ram_below_4g / TG_PAGE_SIZE;

	for (;;) {
		uint64_t n, i;

		now = tg_rdtsc();
		window_update(&w, p->window_words);
		n = pages_due(&w, p->rate, now);
		for (i = 0; i < n; i++)
			write_next_page(&w, st);
		output_service(&w, st, p->out_rate, now);
		if (idx == 0) {
			tg_dev_poll(now);
			tg_mailbox_service(st, w.scratch_first_pfn, w.scratch_end_pfn);
			tick_service(&w, st, p->flags, now);
		}
		st->loops = ++w.loops;
		if (n == 0)
			tg_pause();
	}
}
