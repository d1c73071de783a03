/*
 * The stream reader (hv_stream_check + hv_stream_next) on arbitrary bytes.
 * Rules: never crash or read out of bounds; a stream that passes the check
 * walks to its END through hv_stream_next, every record inside the buffer,
 * every PAGES record within the limits the check promised.
 */
#include <string.h>

#include "hypervisor/hv.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hv_stream_header h;
	struct hv_stream_iter it;
	struct hv_stream_record r;
	char why[256];
	int more;

	why[0] = 0;
	if (hv_stream_check(data, size, &h, why, sizeof(why)) < 0) {
		FUZZ_CHECK(why[0] != 0);
		return 0;
	}
	FUZZ_CHECK(h.version <= HV_STREAM_REVISION && h.ncpus >= 1 && h.ncpus <= HV_MAX_VCPUS);
	hv_stream_iter_init(&it, data, size);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		FUZZ_CHECK(r.body >= data && r.body + r.len <= data + size);
		if (r.type == HV_REC_PAGES) {
			uint32_t count;

			memcpy(&count, r.body, 4);
			FUZZ_CHECK(count >= 1 && count <= HV_PAGES_MAX);
		}
	}
	FUZZ_CHECK(more == 0);
	FUZZ_CHECK(it.off == size);
	return 0;
}

/* A small valid stream: HEADER, two PAGES records (RAW and ZERO), END. */
void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	struct hv_stream_header h = {.magic = HV_STREAM_MAGIC,
				     .version = HV_STREAM_REVISION,
				     .kind = HV_STREAM_FULL,
				     .ncpus = 1,
				     .page_size = HV_PAGE_SIZE,
				     .mem_bytes = HV_MIN_MEM,
				     .stream_id = 42};
	struct hv_stream_writer *w = NULL;
	static uint8_t ram[2 * 4096];
	uint64_t pfns[2] = {0, 1};
	struct iovec iov = {&h, sizeof(h)};
	const uint8_t *buf;
	size_t len;

	memset(ram, 0x5a, 4096); /* page 0 RAW, page 1 ZERO */
	if (hv_stream_writer_mem(&w) < 0)
		return;
	if (!hv_stream_write(w, HV_REC_HEADER, &iov, 1) &&
	    !hv_stream_write_staged(w, pfns, 2, ram) && !hv_stream_finish(w)) {
		buf = hv_stream_writer_data(w, &len);
		add(ctx, buf, len);
	}
	hv_stream_writer_free(w);
}
