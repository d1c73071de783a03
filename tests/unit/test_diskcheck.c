/* The disk checker (hv_tg_check_disk) on images built here from the disk rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/guest/abi.h"
#include "hypervisor/hv.h"

#define N    16
#define SEED 7

static void fill(uint8_t *img, uint64_t b, uint64_t g)
{
	uint64_t *w = (uint64_t *)(img + b * TG_BLK_BLOCK);
	uint32_t i;

	for (i = 0; i < TG_BLK_BLOCK / 8; i++)
		w[i] = g ? tg_blk_word(b, g, SEED, i) : 0;
}

/* The state the guest leaves mid-pass: blocks < next at g, the rest at g - 1. */
static uint8_t *image(uint64_t g, uint64_t next)
{
	uint8_t *img = calloc(N, TG_BLK_BLOCK);
	uint64_t b;

	for (b = 0; b < N; b++)
		fill(img, b, b < next ? g : g - 1);
	return img;
}

static void mid_pass(void **state)
{
	struct hv_tg_disk_check r;
	uint8_t *img = image(3, 5);

	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 3, 5, &r), 0);
	assert_int_equal(r.blocks_checked, N);
	fill(img, 5, 3); /* the block in flight may already hold the new pass */
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 3, 5, &r), 0);
	fill(img, 6, 3); /* but not the one after it */
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 3, 5, &r), -EBADMSG);
	assert_int_equal(r.first_bad, 6);
	free(img);
}

static void first_pass_over_zeros(void **state)
{
	struct hv_tg_disk_check r;
	uint8_t *img = image(1, 4);

	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 1, 4, &r), 0);
	img[10 * TG_BLK_BLOCK + 17] = 1; /* a never-written block must be zero */
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 1, 4, &r), -EBADMSG);
	assert_int_equal(r.first_bad, 10);
	free(img);
}

/* blk_next = 0 is stored before blk_generation rises: every block at `generation`. */
static void pass_boundary(void **state)
{
	struct hv_tg_disk_check r;
	uint8_t *img = image(2, N); /* pass 2 complete */

	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 2, 0, &r), 0);
	/* and the state just after the rise: next 0, generation 3, all still at 2 */
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 3, 0, &r), 0);
	/* a mix that is neither is refused */
	fill(img, 9, 1);
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 2, 0, &r), -EBADMSG);
	free(img);
}

static void one_flipped_byte(void **state)
{
	struct hv_tg_disk_check r;
	uint8_t *img = image(4, 8);

	img[3 * TG_BLK_BLOCK + 1000] ^= 0x80;
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N, SEED, 4, 8, &r), -EBADMSG);
	assert_int_equal(r.first_bad, 3);
	assert_int_equal(r.blocks_bad, 1);
	assert_true(strlen(r.why) > 0);
	free(img);
}

static void area_outside_image(void **state)
{
	struct hv_tg_disk_check r;
	uint8_t *img = image(1, 0);

	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 8, N, SEED, 1, 0, &r), -EINVAL);
	assert_int_equal(hv_tg_check_disk(img, N * TG_BLK_BLOCK, 0, N + 1, SEED, 1, 0, &r),
			 -EINVAL);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(mid_pass),	      cmocka_unit_test(first_pass_over_zeros),
		cmocka_unit_test(pass_boundary),      cmocka_unit_test(one_flipped_byte),
		cmocka_unit_test(area_outside_image),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
