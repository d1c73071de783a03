/*
 * The test guest's ABI: everything the VMM, the host-side checker and the
 * guest itself agree on. Freestanding (only <stdint.h>), included by the guest
 * (built with -ffreestanding) and by host code alike. Documented for users in
 * docs/test-guest.md; a change here is a change of that document.
 *
 * Guest-physical layout (identity-mapped, all user-accessible):
 *   0x1000          struct tg_params   (filled by the VMM, or by the guest from
 *                                       the multiboot command line under QEMU)
 *   0x2000          struct tg_mailbox  (host -> guest commands)
 *   0x3000          struct tg_io_state (written by the guest: network and disk
 *                                       counters, for the host and tests)
 *   0x100000        the image: multiboot header at offset 0, struct
 *                   tg_image_header at offset TG_IMAGE_HDR_OFFSET, code, data,
 *                   bss (GDT/IDT/TSS, stacks, vCPU state pages)
 *   TG_WORK_BASE    vCPU i's work region: wss_pages pages at
 *                   TG_WORK_BASE + i * wss_pages * 4096
 *   after them      the scratch area, up to the end of RAM below 4 GiB; only
 *                   mailbox commands write it
 */
#ifndef CASTOR_TG_ABI_H
#define CASTOR_TG_ABI_H

#include <stdint.h>

#define TG_PAGE_SIZE  4096u
#define TG_PAGE_WORDS (TG_PAGE_SIZE / 8u)
#define TG_MAX_CPUS   8u

#define TG_PARAMS_GPA	0x1000ull
#define TG_MAILBOX_GPA	0x2000ull
#define TG_IO_STATE_GPA 0x3000ull
#define TG_LOAD_ADDR	0x100000ull
#define TG_WORK_BASE	0x400000ull

/* ---- the image header, at TG_LOAD_ADDR + TG_IMAGE_HDR_OFFSET ---------------- */

#define TG_IMAGE_HDR_OFFSET 64u
#define TG_IMAGE_MAGIC	    0x31474d4952545343ull /* "CSTRIMG1" little-endian */
#define TG_IMAGE_VERSION    1u

struct tg_image_header {
	uint64_t magic;	      /* TG_IMAGE_MAGIC */
	uint32_t version;     /* TG_IMAGE_VERSION */
	uint32_t header_size; /* sizeof(struct tg_image_header) */
	uint64_t load_addr;   /* where the flat file's first byte goes: TG_LOAD_ADDR */
	uint64_t entry64;     /* 64-bit entry, see "boot protocol" below */
	uint64_t load_end;    /* end of the file's bytes in guest memory */
	uint64_t bss_end;     /* end of everything the image uses */
	uint64_t rw_gpa;      /* [rw_gpa, rw_gpa + rw_bytes): the only image bytes the */
	uint64_t rw_bytes;    /*   guest writes once running (stacks, vCPU state pages) */
	uint64_t state_gpa;   /* struct tg_vcpu_state[TG_MAX_CPUS], one page each */
	uint32_t max_cpus;    /* TG_MAX_CPUS */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tg_image_header) == 80, "tg_image_header layout");

/*
 * Boot protocol (castor-vmm): every vCPU starts in 64-bit mode, ring 0, at
 * entry64 with identity page tables (U/S set on every level) covering all RAM,
 * a flat 64-bit code segment, RFLAGS = 0x2, interrupts off, and
 *   rdi = vCPU index, rsi = TG_BOOT_CASTOR, rdx = 0, rsp = a boot stack.
 * Under a multiboot loader (QEMU -kernel) the 32-bit entry builds the same
 * state itself and enters entry64 with rdi = 0, rsi = TG_BOOT_MULTIBOOT,
 * rdx = the multiboot info address.
 * entry64 loads the guest's own GDT/TSS/IDT and iretq's to ring 3 with IOPL 3;
 * everything else runs in ring 3.
 */
#define TG_BOOT_CASTOR	  0u
#define TG_BOOT_MULTIBOOT 1u

/* ---- parameters, at TG_PARAMS_GPA ------------------------------------------- */

#define TG_PARAMS_MAGIC	  0x4754524f54534143ull /* "CASTORTG" */
#define TG_PARAMS_VERSION 2u
#define TG_RATE_MAX	  UINT64_MAX		/* dirty as fast as possible */
#define TG_READY_MAGIC	  0x5944414552475443ull /* "CTGREADY" */

struct tg_params {
	uint64_t magic;	    /* TG_PARAMS_MAGIC */
	uint32_t version;   /* TG_PARAMS_VERSION */
	uint32_t ncpus;	    /* vCPUs running the workload, 1..TG_MAX_CPUS */
	uint64_t tsc_khz;   /* TSC frequency, for the guest's clock */
	uint64_t seed;	    /* seeds every page's contents */
	uint64_t wss_pages; /* work region size per vCPU, pages (>= 1) */
	/* read by the guest on every loop, so the host may change them at run time: */
	uint64_t rate;	       /* pages to write per ms per vCPU; 0 = none; TG_RATE_MAX */
	uint64_t out_rate;     /* outputs per second per vCPU; 0 = none */
	uint32_t window_words; /* words rewritten per page write, 1..TG_WINDOW_MAX */
	uint32_t flags;	       /* TG_F_* */
	uint64_t ram_below_4g; /* bytes of RAM from guest-physical 0 */
	uint64_t ram_above_4g; /* bytes of RAM from 4 GiB (not used by the guest) */
	/* written by the guest: */
	uint64_t ready; /* TG_READY_MAGIC once vCPU 0 runs its workload */
	uint64_t reserved[4];
	/* ---- version 2: devices (virtio-mmio, modern), all 0 when absent ---- */
	uint64_t net_mmio;  /* guest-physical base of the virtio-net transport */
	uint64_t blk_mmio;  /* guest-physical base of the virtio-blk transport */
	uint32_t ip;	    /* guest IPv4 address, network byte order (0: no IP stack) */
	uint32_t netmask;   /* network byte order */
	uint32_t gateway;   /* network byte order; 0 = none (answer on-link peers only) */
	uint32_t io_flags;  /* TG_IO_F_* */
	uint64_t blk_first; /* disk workload: first sector of its area */
	uint64_t blk_count; /* disk workload: blocks (TG_BLK_BLOCK bytes each); 0 = none */
	uint64_t blk_rate;  /* disk workload: blocks written (and read back) per second */
	uint64_t reserved2[4];
};
_Static_assert(sizeof(struct tg_params) == 208, "tg_params layout");

#define TG_IO_F_BLK_VERIFY_ONLY 0x1u /* disk workload: read and verify, never write */

#define TG_WINDOW_MAX	 256u
#define TG_F_SERIAL_TICK 0x1u /* vCPU 0 prints a status line on COM1 every second */

/* ---- per-vCPU state, one page each at image_header.state_gpa ---------------- */

struct tg_vcpu_state {
	uint64_t counter;     /* page writes completed; the next write uses this value */
	uint64_t out_seq;     /* outputs emitted; the next output is numbered out_seq */
	uint64_t out_counter; /* counter at the last output */
	uint64_t started;     /* TG_READY_MAGIC once this vCPU runs in ring 3 */
	uint64_t loops;	      /* workload loop iterations, for diagnostics */
	uint64_t mbox_done;   /* vCPU 0: seq of the last mailbox command done */
	uint64_t reserved[2];
};
_Static_assert(sizeof(struct tg_vcpu_state) == 64, "tg_vcpu_state layout");

/* ---- the mailbox, at TG_MAILBOX_GPA ------------------------------------------ */

#define TG_CMD_NONE	   0u
#define TG_CMD_DIRTY_RANGE 1u /* write word 0 of `count` scratch pages */
#define TG_CMD_NET_RESET   2u /* reset the virtio-net device and bring it up again */
#define TG_CMD_BLK_RESET   3u /* reset the virtio-blk device and bring it up again */
#define TG_MBOX_OK	   0u
#define TG_MBOX_REJECTED   1u /* a page outside the scratch area, or an unknown cmd */
#define TG_MBOX_FAILED	   2u /* a device did not come back after its reset */

/* The scratch area: after every vCPU's work region, up to the end of low RAM. */
static inline uint64_t tg_scratch_base(uint32_t ncpus, uint64_t wss_pages);

struct tg_mailbox {
	uint64_t seq;	 /* the host writes the arguments, then seq + 1 (release) */
	uint32_t cmd;	 /* TG_CMD_* */
	uint32_t status; /* written by the guest before it reports done: TG_MBOX_* */
	uint64_t first;	 /* guest-physical page number of the first page */
	uint64_t count;	 /* pages to write */
	uint64_t stride; /* page-number step between them (>= 1) */
	uint64_t value;	 /* value written to word 0 of each page */
};
_Static_assert(sizeof(struct tg_mailbox) == 48, "tg_mailbox layout");

/*
 * ---- the Castor test device: 32-bit MMIO registers (writes; ignored elsewhere) --
 * MMIO, not port I/O: a ring-3 store to an unbacked guest-physical address
 * exits straight to the VMM, while under kvm_pvm a ring-3 in/out raises #GP
 * (IOPL is not honoured) and has to be carried out by emulated ring-0 code.
 */
#define TG_MMIO_BASE 0xfe000000ull
#define TG_MMIO_SIZE 0x1000u
#define TG_REG_OUTPUT                                                                              \
	0x0u		      /* value: low 32 bits of the output's number; the                    \
				 vCPU's state page holds out_seq/out_counter */
#define TG_REG_MBOX_DONE 0x4u /* value: low 32 bits of the mailbox seq done */
#define TG_REG_READY	 0x8u /* value: vCPU index, once it runs in ring 3 */
#define TG_REG_FAULT	 0xcu /* value: vector | cpl << 8; the vCPU then stops */

#define TG_COM1 0x3f8u

/* ---- the page rule ------------------------------------------------------------ */

/* splitmix64 finaliser: the one mixing function of the rule. */
static inline uint64_t tg_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t tg_region_base(uint32_t vcpu, uint64_t wss_pages)
{
	return TG_WORK_BASE + (uint64_t)vcpu * wss_pages * TG_PAGE_SIZE;
}

static inline uint64_t tg_scratch_base(uint32_t ncpus, uint64_t wss_pages)
{
	return tg_region_base(ncpus, wss_pages);
}

/*
 * Content of the page at guest-physical page number `pfn` after its last
 * write with counter value `c`:
 *   word 0                pfn ^ seed                       (header)
 *   word 1                c                                (header)
 *   words [ws, ws + W)    tg_mix(seed ^ pfn << 20 ^ c * K ^ w)   (the window,
 *                         rewritten by every write; W = window_words)
 *   other words < 256     tg_mix(seed ^ pfn << 9 ^ w)      (fixed base)
 *   other words >= 256    0
 * with ws = tg_window_start(). The first write of a page lays down the whole
 * page; later writes rewrite words 1 and the window only, so consecutive
 * copies differ in W + 1 words (what XOR-delta encoding exploits), and the
 * page is half zero (what compression exploits).
 */
static inline uint32_t tg_window_start(uint64_t pfn, uint64_t seed, uint32_t window_words)
{
	return 2u + (uint32_t)(tg_mix(pfn ^ seed) % (TG_PAGE_WORDS - 2u - window_words + 1u));
}

static inline uint64_t tg_word(uint64_t pfn, uint64_t c, uint64_t seed, uint32_t window_words,
			       uint32_t w)
{
	uint32_t ws = tg_window_start(pfn, seed, window_words);

	if (w == 0)
		return pfn ^ seed;
	if (w == 1)
		return c;
	if (w >= ws && w < ws + window_words)
		return tg_mix(seed ^ (pfn << 20) ^ (c * 0xd6e8feb86659fd93ull) ^ w);
	if (w < 256)
		return tg_mix(seed ^ (pfn << 9) ^ w);
	return 0;
}

/* ---- network and disk (version 2) ------------------------------------------------ */

#define TG_TCP_PORT  7700u /* "<seq>\n" -> "<seq> <count>\n", count = TCP requests answered */
#define TG_UDP_PORT  7701u /* "<seq>" -> "<seq> <count>", count = UDP requests answered */
#define TG_BLK_BLOCK 4096u /* the disk workload's block size */

/*
 * Counters the guest keeps at TG_IO_STATE_GPA (vCPU 0 writes them; the host
 * reads). `tcp_answered` and `udp_answered` are the counts the services send.
 */
struct tg_io_state {
	uint64_t net_up; /* TG_READY_MAGIC once the NIC is initialised */
	uint64_t blk_up; /* TG_READY_MAGIC once the disk is initialised */
	uint64_t rx_frames, tx_frames, rx_dropped;
	uint64_t arp_replies, icmp_replies;
	uint64_t udp_answered;
	uint64_t tcp_answered;
	uint64_t tcp_conns; /* connections accepted */
	uint64_t tcp_retransmits;
	uint64_t tcp_resets;		 /* resets sent */
	uint64_t blk_written;		 /* blocks written and completed OK */
	uint64_t blk_verified;		 /* blocks read back and found exact */
	uint64_t blk_bad;		 /* blocks read back and found wrong */
	uint64_t blk_io_errors;		 /* requests completed with a non-OK status */
	uint64_t blk_generation;	 /* passes over the workload area begun (1 = first) */
	uint64_t blk_next;		 /* next block of the current pass */
	uint64_t net_resets, blk_resets; /* device resets done on mailbox command */
	uint64_t reserved[12];
};
_Static_assert(sizeof(struct tg_io_state) == 256, "tg_io_state layout");

/*
 * The disk rule: block b (0-based in the workload area) written in pass g holds,
 * as 512 little-endian words w: w0 = b ^ seed, w1 = g, w2..511 = tg_mix(seed ^
 * b << 24 ^ g << 8 ^ w). Pass g writes blocks 0..blk_count-1 in order, each
 * followed by a read-back and verify; then pass g + 1 begins. So on disk every
 * block before `blk_next` holds pass `blk_generation`, the rest pass
 * `blk_generation - 1` (or zeros when that is 0), the block being written
 * possibly either. At a pass boundary the guest stores blk_next = 0 before
 * blk_generation = g + 1: a reader that stops the guest between the two
 * stores sees blk_next = 0 with every block already at pass blk_generation.
 */
static inline uint64_t tg_blk_word(uint64_t b, uint64_t g, uint64_t seed, uint32_t w)
{
	if (w == 0)
		return b ^ seed;
	if (w == 1)
		return g;
	return tg_mix(seed ^ (b << 24) ^ (g << 8) ^ w);
}

#endif
