/*
 * The test guest's parameters: checking the struct tg_params that castor-vmm
 * wrote, and, under a multiboot loader (QEMU -kernel), writing it ourselves
 * from the command line:
 *
 *   wss=<bytes>[K|M|G]  rate=<pages/ms>|max  outrate=<outputs/s>  seed=<n>
 *   window=<words>  tsckhz=<kHz>  flags=<n>
 *
 * Numbers are decimal or 0x-hex. Words without '=' (QEMU passes the kernel's
 * file name first) are ignored; an unknown key or a bad value stops the guest.
 */
#include "hypervisor/guest/tg.h"

#define MB_INFO_MEM	0x1u /* mem_lower / mem_upper valid */
#define MB_INFO_CMDLINE 0x4u /* cmdline valid */

/* struct multiboot_info, the fields we read (as 32-bit words). */
#define MB_FLAGS     0
#define MB_MEM_UPPER 2 /* KiB of RAM from 1 MiB up to the first hole */
#define MB_CMDLINE   4

#define TSC_KHZ_MAX 1000000000ull /* 1 THz: anything above is a mistake */

/* Defaults of the multiboot path (castor-vmm always passes every field). */
#define DEF_WSS_PAGES 1024u /* 4 MiB */
#define DEF_RATE      100u
#define DEF_OUT_RATE  10u
#define DEF_SEED      1u
#define DEF_WINDOW    64u
#define DEF_TSC_KHZ   2000000u

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int str_is(const char *s, uint32_t n, const char *lit)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (lit[i] != s[i])
			return 0;
	return lit[n] == '\0';
}

/* [s, s + n) as decimal or 0x-hex, with an optional K/M/G multiplier if
 * `sized`; 0 on success. */
static int parse_u64(const char *s, uint32_t n, int sized, uint64_t *out)
{
	uint64_t v = 0, mul = 1, base = 10;
	uint32_t i = 0;

	if (sized && n > 0) {
		switch (s[n - 1]) {
		case 'K':
		case 'k':
			mul = 1ull << 10;
			n--;
			break;
		case 'M':
		case 'm':
			mul = 1ull << 20;
			n--;
			break;
		case 'G':
		case 'g':
			mul = 1ull << 30;
			n--;
			break;
		default:
			break;
		}
	}
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == n)
		return -1;
	for (; i < n; i++) {
		char ch = s[i];
		uint64_t d;

		if (ch >= '0' && ch <= '9')
			d = (uint64_t)(ch - '0');
		else if (base == 16 && ch >= 'a' && ch <= 'f')
			d = (uint64_t)(ch - 'a' + 10);
		else if (base == 16 && ch >= 'A' && ch <= 'F')
			d = (uint64_t)(ch - 'A' + 10);
		else
			return -1;
		if (v > (UINT64_MAX - d) / base)
			return -1;
		v = v * base + d;
	}
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

/* One key=value word into *p; 0 on success. */
static int apply_word(volatile struct tg_params *p, const char *key, uint32_t klen, const char *val,
		      uint32_t vlen)
{
	uint64_t v;

	if (str_is(key, klen, "wss")) {
		if (parse_u64(val, vlen, 1, &v) || v == 0)
			return -1;
		p->wss_pages = v / TG_PAGE_SIZE + (v % TG_PAGE_SIZE != 0);
	} else if (str_is(key, klen, "rate")) {
		if (str_is(val, vlen, "max"))
			v = TG_RATE_MAX;
		else if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->rate = v;
	} else if (str_is(key, klen, "outrate")) {
		if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->out_rate = v;
	} else if (str_is(key, klen, "seed")) {
		if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->seed = v;
	} else if (str_is(key, klen, "window")) {
		if (parse_u64(val, vlen, 0, &v) || v == 0 || v > TG_WINDOW_MAX)
			return -1;
		p->window_words = (uint32_t)v;
	} else if (str_is(key, klen, "tsckhz")) {
		if (parse_u64(val, vlen, 0, &v) || v > TSC_KHZ_MAX)
			return -1;
		p->tsc_khz = v;
	} else if (str_is(key, klen, "flags")) {
		if (parse_u64(val, vlen, 0, &v) || v > UINT32_MAX)
			return -1;
		p->flags = (uint32_t)v;
	} else {
		return -1;
	}
	return 0;
}

static void put_word(const char *s, uint32_t n)
{
	while (n--)
		tg_serial_putc(*s++);
}

uint32_t tg_params_from_multiboot(uint64_t mbi_gpa, const char **why_out)
{
	const volatile uint32_t *mbi = (const volatile uint32_t *)(uintptr_t)mbi_gpa;
	volatile struct tg_params *p = tg_params();
	volatile struct tg_mailbox *mb = tg_mailbox();
	uint32_t flags = mbi[MB_FLAGS];
	const char *s;
	uint32_t i;

	if (!(flags & MB_INFO_MEM)) {
		*why_out = "the multiboot loader gave no memory size";
		return TGL_FAULT_BAD_BOOT;
	}
	/* Nothing has set these pages up under a multiboot loader. */
	p->magic = TG_PARAMS_MAGIC;
	p->version = TG_PARAMS_VERSION;
	p->ncpus = 1;
	p->tsc_khz = DEF_TSC_KHZ;
	p->seed = DEF_SEED;
	p->wss_pages = DEF_WSS_PAGES;
	p->rate = DEF_RATE;
	p->out_rate = DEF_OUT_RATE;
	p->window_words = DEF_WINDOW;
	p->flags = TG_F_SERIAL_TICK;
	p->ram_below_4g = ((uint64_t)mbi[MB_MEM_UPPER] + 1024) * 1024;
	p->ram_above_4g = 0;
	p->ready = 0;
	for (i = 0; i < sizeof(p->reserved) / sizeof(p->reserved[0]); i++)
		p->reserved[i] = 0;
	mb->seq = 0;
	mb->cmd = TG_CMD_NONE;
	mb->status = TG_MBOX_OK;
	mb->first = mb->count = mb->stride = mb->value = 0;

	if (!(flags & MB_INFO_CMDLINE) || !mbi[MB_CMDLINE])
		return 0;
	s = (const char *)(uintptr_t)mbi[MB_CMDLINE];
	while (*s) {
		const char *word = s, *eq = 0;
		uint32_t n;

		while (*s && !is_space(*s)) {
			if (*s == '=' && !eq)
				eq = s;
			s++;
		}
		n = (uint32_t)(s - word);
		if (eq &&
		    apply_word(p, word, (uint32_t)(eq - word), eq + 1, (uint32_t)(s - eq - 1))) {
			tg_serial_puts("castor-tg: bad parameter '");
			put_word(word, n);
			tg_serial_puts("' (keys: wss rate outrate seed window tsckhz flags)\n");
			*why_out = "bad command line";
			return TGL_FAULT_BAD_PARAMS;
		}
		while (*s && is_space(*s))
			s++;
	}
	return 0;
}

uint32_t tg_params_check(const volatile struct tg_params *p, const char **why_out)
{
	uint64_t ram_pages = p->ram_below_4g / TG_PAGE_SIZE;
	uint64_t work_first = TG_WORK_BASE / TG_PAGE_SIZE;
	uint32_t ncpus = p->ncpus;

	if (p->magic != TG_PARAMS_MAGIC || p->version != TG_PARAMS_VERSION)
		*why_out = "params magic or version mismatch";
	else if (ncpus < 1 || ncpus > TG_MAX_CPUS)
		*why_out = "ncpus out of range";
	else if (p->wss_pages == 0)
		*why_out = "wss_pages is 0";
	else if (p->window_words < 1 || p->window_words > TG_WINDOW_MAX)
		*why_out = "window_words out of range";
	else if (p->tsc_khz > TSC_KHZ_MAX)
		*why_out = "tsc_khz out of range";
	else if (ram_pages < work_first || p->wss_pages > (ram_pages - work_first) / ncpus)
		*why_out = "the work regions do not fit in ram_below_4g";
	else
		return 0;
	return TGL_FAULT_BAD_PARAMS;
}
