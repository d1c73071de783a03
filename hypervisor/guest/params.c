/*
 * The test guest's parameters: checking the struct tg_params that castor-vmm
 * wrote, and, under a multiboot loader (QEMU -kernel), writing it ourselves
 * from the command line:
 *
 *   wss=<bytes>[K|M|G]  rate=<pages/ms>|max  outrate=<outputs/s>  seed=<n>
 *   window=<words>  tsckhz=<kHz>  flags=<n>
 *   net=<addr>|auto  blk=<addr>|auto  ip=A.B.C.D  mask=A.B.C.D  gw=A.B.C.D
 *   blkfirst=<sector>  blkcount=<blocks>  blkrate=<blocks/s>  blkverify=0|1
 *
 * "auto" scans QEMU microvm's virtio-mmio transports for the device.
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
#define DEF_NETMASK   0x00ffffffu /* 255.255.255.0 in network byte order */
#define DEF_BLK_RATE  100u

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

/* A.B.C.D into a network-byte-order value (as abi.h stores addresses). */
static int parse_ipv4(const char *s, uint32_t n, uint32_t *out)
{
	uint32_t i = 0, part, v = 0;

	for (part = 0; part < 4; part++) {
		uint32_t octet = 0, digits = 0;

		while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 3) {
			octet = octet * 10 + (uint32_t)(s[i++] - '0');
			digits++;
		}
		if (digits == 0 || octet > 255)
			return -1;
		v |= octet << (8 * part); /* first octet at the lowest address */
		if (part < 3 && (i >= n || s[i++] != '.'))
			return -1;
	}
	if (i != n)
		return -1;
	*out = v;
	return 0;
}

/* net= / blk=: an MMIO address, or "auto" to scan QEMU microvm's transports. */
static int parse_device(const char *val, uint32_t vlen, uint32_t device_id, uint64_t *out)
{
	if (!str_is(val, vlen, "auto"))
		return parse_u64(val, vlen, 0, out) || *out == 0 ? -1 : 0;
	*out = tg_virtio_find_microvm(device_id);
	if (*out == 0) {
		tg_serial_puts("castor-tg: no such virtio device on QEMU microvm's virtio-mmio "
			       "transports (is it -M microvm with "
			       "-global virtio-mmio.force-legacy=false?)\n");
		return -1;
	}
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
	} else if (str_is(key, klen, "net")) {
		if (parse_device(val, vlen, 1, &v))
			return -1;
		p->net_mmio = v;
	} else if (str_is(key, klen, "blk")) {
		if (parse_device(val, vlen, 2, &v))
			return -1;
		p->blk_mmio = v;
	} else if (str_is(key, klen, "ip") || str_is(key, klen, "mask") ||
		   str_is(key, klen, "gw")) {
		uint32_t a;

		if (parse_ipv4(val, vlen, &a))
			return -1;
		if (key[0] == 'i')
			p->ip = a;
		else if (key[0] == 'm')
			p->netmask = a;
		else
			p->gateway = a;
	} else if (str_is(key, klen, "blkfirst")) {
		if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->blk_first = v;
	} else if (str_is(key, klen, "blkcount")) {
		if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->blk_count = v;
	} else if (str_is(key, klen, "blkrate")) {
		if (parse_u64(val, vlen, 0, &v))
			return -1;
		p->blk_rate = v;
	} else if (str_is(key, klen, "blkverify")) {
		if (parse_u64(val, vlen, 0, &v) || v > 1)
			return -1;
		p->io_flags = (p->io_flags & ~TG_IO_F_BLK_VERIFY_ONLY) |
			      (v ? TG_IO_F_BLK_VERIFY_ONLY : 0);
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
	p->net_mmio = p->blk_mmio = 0;
	p->ip = p->gateway = 0;
	p->netmask = DEF_NETMASK;
	p->io_flags = 0;
	p->blk_first = p->blk_count = 0;
	p->blk_rate = DEF_BLK_RATE;
	for (i = 0; i < sizeof(p->reserved2) / sizeof(p->reserved2[0]); i++)
		p->reserved2[i] = 0;
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
			tg_serial_puts(
				"' (keys: wss rate outrate seed window tsckhz flags net blk ip "
				"mask gw blkfirst blkcount blkrate blkverify)\n");
			*why_out = "bad command line";
			return TGL_FAULT_BAD_PARAMS;
		}
		while (*s && is_space(*s))
			s++;
	}
	return 0;
}

/* A device transport: 4-byte aligned and not in RAM. */
static int mmio_is_ok(const volatile struct tg_params *p, uint64_t a)
{
	uint64_t hi_end = (1ull << 32) + p->ram_above_4g;

	return (a & 3) == 0 && a >= p->ram_below_4g && (a < (1ull << 32) || a >= hi_end);
}

/* The version-2 fields: devices, addresses, the disk workload. */
static const char *io_params_problem(const volatile struct tg_params *p)
{
	uint32_t ip = __builtin_bswap32(p->ip), mask = __builtin_bswap32(p->netmask);
	uint32_t gw = __builtin_bswap32(p->gateway);

	if (p->net_mmio && !mmio_is_ok(p, p->net_mmio))
		return "net_mmio is not a 4-byte aligned address outside RAM";
	if (p->blk_mmio && !mmio_is_ok(p, p->blk_mmio))
		return "blk_mmio is not a 4-byte aligned address outside RAM";
	if (ip && !p->net_mmio)
		return "an IP address but no NIC (net_mmio)";
	if (ip && (mask == 0 || (~mask & (~mask + 1)) != 0))
		return "netmask is not a contiguous prefix";
	if (ip && gw && ((gw & mask) != (ip & mask) || gw == ip))
		return "gateway is not another address on the guest's subnet";
	if (p->io_flags & ~TG_IO_F_BLK_VERIFY_ONLY)
		return "unknown io_flags";
	if (p->blk_count && !p->blk_mmio)
		return "a disk workload but no disk (blk_mmio)";
	if (p->blk_count > (UINT64_MAX - p->blk_first) / (TG_BLK_BLOCK / 512))
		return "blk_first + blk_count overflows";
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
	else if ((*why_out = io_params_problem(p)) == 0)
		return 0;
	return TGL_FAULT_BAD_PARAMS;
}
