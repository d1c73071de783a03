/*
 * The test-guest checker: verifies a copy of guest RAM against the page rule
 * of guest/abi.h and the counters stored in that same copy, so any copy
 * (a live VM, a snapshot, a replica) can be proven exact.
 */
#define LOG_TAG "tgcheck"
#include "hypervisor/hv_int.h"
#include "hypervisor/guest/abi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void expected_page(uint64_t *w, uint64_t pfn, uint64_t c, uint64_t seed, uint32_t win)
{
	uint32_t ws = tg_window_start(pfn, seed, win), i;

	for (i = 0; i < TG_PAGE_WORDS; i++)
		w[i] = i < 256 ? tg_mix(seed ^ (pfn << 9) ^ i) : 0;
	w[0] = pfn ^ seed;
	w[1] = c;
	for (i = ws; i < ws + win; i++)
		w[i] = tg_mix(seed ^ (pfn << 20) ^ (c * 0xd6e8feb86659fd93ull) ^ i);
}

static bool is_zero_page(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	uint32_t i;

	for (i = 0; i < TG_PAGE_WORDS; i++)
		if (w[i])
			return false;
	return true;
}

static void bad(struct hv_tg_check *res, uint64_t gpa, const char *fmt, uint64_t a, uint64_t b)
{
	if (!res->pages_bad++) {
		res->first_bad_gpa = gpa;
		snprintf(res->why, sizeof(res->why), fmt, gpa, a, b);
	}
}

int hv_tg_check_ram(const uint8_t *ram, uint64_t mem_bytes, struct hv_tg_check *res)
{
	const struct tg_params *p;
	const struct tg_image_header *h;
	uint64_t low = mem_bytes < HV_HOLE_START ? mem_bytes : HV_HOLE_START;
	uint64_t expect[TG_PAGE_WORDS];
	uint32_t i;

	memset(res, 0, sizeof(*res));
	if (low < TG_WORK_BASE) {
		snprintf(res->why, sizeof(res->why), "RAM too small for a test guest");
		return -EINVAL;
	}
	p = (const struct tg_params *)(ram + TG_PARAMS_GPA);
	h = (const struct tg_image_header *)(ram + TG_LOAD_ADDR + TG_IMAGE_HDR_OFFSET);
	if (p->magic != TG_PARAMS_MAGIC || p->version != TG_PARAMS_VERSION ||
	    h->magic != TG_IMAGE_MAGIC) {
		snprintf(res->why, sizeof(res->why), "no test guest in this RAM image");
		return -EINVAL;
	}
	if (p->ncpus < 1 || p->ncpus > TG_MAX_CPUS || !p->wss_pages || p->window_words < 1 ||
	    p->window_words > TG_WINDOW_MAX || tg_scratch_base(p->ncpus, p->wss_pages) > low ||
	    h->state_gpa + (uint64_t)p->ncpus * TG_PAGE_SIZE > TG_WORK_BASE) {
		snprintf(res->why, sizeof(res->why), "test-guest parameters out of range");
		return -EINVAL;
	}
	res->ncpus = p->ncpus;
	for (i = 0; i < p->ncpus; i++) {
		const struct tg_vcpu_state *st =
			(const struct tg_vcpu_state *)(ram + h->state_gpa +
						       (uint64_t)i * TG_PAGE_SIZE);
		uint64_t c = st->counter, n = p->wss_pages, base = tg_region_base(i, n), k;

		res->counters[i] = c;
		for (k = 0; k < n; k++) {
			uint64_t gpa = base + k * TG_PAGE_SIZE, pfn = gpa / TG_PAGE_SIZE, ck;
			const uint8_t *page = ram + gpa;

			/* the page of write #c may be half-written when the copy was taken */
			if (k == c % n)
				continue;
			res->pages_checked++;
			if (k >= c) {
				if (!is_zero_page(page))
					bad(res, gpa,
					    "page 0x%" PRIx64
					    " should be untouched (counter %" PRIu64
					    ") but holds counter %" PRIu64,
					    c, ((const uint64_t *)page)[1]);
				continue;
			}
			ck = k + n * ((c - 1 - k) / n);
			expected_page(expect, pfn, ck, p->seed, p->window_words);
			if (memcmp(page, expect, TG_PAGE_SIZE))
				bad(res, gpa,
				    "page 0x%" PRIx64 " should hold write #%" PRIu64
				    " but word 1 says %" PRIu64,
				    ck, ((const uint64_t *)page)[1]);
		}
	}
	return res->pages_bad ? -EBADMSG : 0;
}

/* Does the block hold pass g (all zeros for g == 0)? */
static bool block_is_pass(const uint8_t *blk, uint64_t b, uint64_t g, uint64_t seed)
{
	const uint64_t *w = (const uint64_t *)blk;
	uint32_t i;

	for (i = 0; i < TG_BLK_BLOCK / 8; i++)
		if (w[i] != (g ? tg_blk_word(b, g, seed, i) : 0))
			return false;
	return true;
}

int hv_tg_check_disk(const uint8_t *img, uint64_t img_bytes, uint64_t first_sector, uint64_t count,
		     uint64_t seed, uint64_t generation, uint64_t next,
		     struct hv_tg_disk_check *res)
{
	uint64_t b, start = first_sector * 512;

	memset(res, 0, sizeof(*res));
	if (start > img_bytes || count > (img_bytes - start) / TG_BLK_BLOCK) {
		snprintf(res->why, sizeof(res->why), "workload area outside the image");
		return -EINVAL;
	}
	/*
	 * At a pass boundary the guest stores blk_next = 0 before it raises
	 * blk_generation: a copy taken in between holds pass `generation` in every
	 * block. Accept that state whole, or check the usual prefix/suffix split.
	 */
	if (next == 0 && generation) {
		for (b = 0; b < count; b++)
			if (!block_is_pass(img + start + b * TG_BLK_BLOCK, b, generation, seed))
				break;
		if (b == count) {
			res->blocks_checked = count;
			return 0;
		}
	}
	for (b = 0; b < count; b++) {
		const uint8_t *blk = img + start + b * TG_BLK_BLOCK;
		uint64_t want = b < next ? generation : generation ? generation - 1 : 0;
		bool ok = block_is_pass(blk, b, want, seed) ||
			  (b == next && block_is_pass(blk, b, generation, seed));

		res->blocks_checked++;
		if (!ok && !res->blocks_bad++) {
			res->first_bad = b;
			snprintf(res->why, sizeof(res->why),
				 "block %" PRIu64 " should hold pass %" PRIu64
				 " but word 1 says %" PRIu64,
				 b, want, ((const uint64_t *)blk)[1]);
		}
	}
	return res->blocks_bad ? -EBADMSG : 0;
}
