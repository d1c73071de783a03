/*
 * Snapshots: a VM's RAM and state as one stream (docs/stream-format.md), and
 * a new VM from a chain of them.
 *
 * Saving keeps the pause short. First a live pass, while the guest runs,
 * writes every page (full) or every page written since the previous snapshot
 * (incremental). The pause then holds only: a dirty-log take, a copy of the
 * pages written during the live pass into a staging buffer that stays mapped
 * between snapshots, and the vCPU, VM and device state (into the writer's
 * buffer, flushed beforehand so no write(2) happens while paused). Staged
 * pages are written to the file after the VM resumes; a reader applies
 * records in order, so the later copy of a page wins.
 */
#define LOG_TAG "snapshot"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <inttypes.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Keep the staging buffer mapped and faulted in at least this large. */
#define STAGE_MIN_PAGES 1024u

static int stage_reserve(struct hv_snap_chain *c, uint64_t pages)
{
	void *p;

	if (pages <= c->stage_pages)
		return 0;
	if (c->stage)
		munmap(c->stage, c->stage_pages * HV_PAGE_SIZE);
	c->stage = NULL;
	c->stage_pages = 0;
	p = mmap(NULL, pages * HV_PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	c->stage = p;
	c->stage_pages = pages;
	return 0;
}

/*
 * From this many pages (10 MiB) on, the pause copies with non-temporal stores
 * (x86-64): the staging lines are not read for ownership first, which takes a
 * quarter to a third off the copy of a large epoch (4 096 pages: 2.0 ms
 * instead of 2.8-3.1 ms bare; the pause of a 16 MiB hot set went from 4.2 to
 * 2.7 ms). The encoder then reads the stage from memory, after the guest has
 * resumed: with the threshold at 1 024 pages, epochs of 1 800 went from 1.4 to
 * 2.4 ms of encoding and from 198 to 138 a second at 5 ms, so smaller epochs
 * keep memcpy and leave the stage in the cache for the encoder.
 */
#define STAGE_STREAM_PAGES 2560u

/* Copy a page into the staging buffer (both page-aligned), bypassing the cache. */
static void stage_page_nt(uint8_t *dst, const uint8_t *src)
{
#if defined(__x86_64__)
	__m128i *d = (__m128i *)(void *)dst;
	const __m128i *s = (const __m128i *)(const void *)src;
	unsigned i;

	for (i = 0; i < HV_PAGE_SIZE / 16; i += 4) {
		__m128i a = _mm_load_si128(s + i), b = _mm_load_si128(s + i + 1);
		__m128i c = _mm_load_si128(s + i + 2), e = _mm_load_si128(s + i + 3);

		_mm_stream_si128(d + i, a);
		_mm_stream_si128(d + i + 1, b);
		_mm_stream_si128(d + i + 2, c);
		_mm_stream_si128(d + i + 3, e);
	}
#else
	memcpy(dst, src, HV_PAGE_SIZE);
#endif
}

int hv_snap_chain_new(struct hv_vm *vm, struct hv_snap_chain **out)
{
	struct hv_snap_chain *c = calloc(1, sizeof(*c));
	int rc = -ENOMEM;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->vm = vm;
	c->pfns = malloc(vm->mem.pages * sizeof(uint64_t));
	if (!c->pfns)
		goto fail;
	rc = stage_reserve(c, STAGE_MIN_PAGES);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	hv_snap_chain_free(c);
	return rc;
}

void hv_snap_chain_free(struct hv_snap_chain *c)
{
	if (!c)
		return;
	if (c->stage)
		munmap(c->stage, c->stage_pages * HV_PAGE_SIZE);
	hv_dirty_log_free(c->log);
	util_bitmap_dispose(&c->last);
	free(c->pfns);
	free(c);
}

int hv_snap_chain_rewind(struct hv_snap_chain *c, uint64_t to_id)
{
	if (!to_id)
		return -EINVAL;
	if (to_id == c->last_id)
		return 0;
	if (!c->prev_id || to_id != c->prev_id || !c->log)
		return -ESTALE;
	dirty_log_add(c->log, &c->last);
	LOG_INFO("vm %s: snapshot %016" PRIx64 " taken back: its %" PRIu64
		 " pages go into the next one, which follows %016" PRIx64,
		 c->vm->name, c->last_id, util_bitmap_count(&c->last), c->prev_id);
	c->last_id = c->prev_id;
	c->prev_id = 0;
	return 1;
}

/* After a snapshot saved whole: can it be taken back (hv_snap_chain_rewind)? */
static void note_rewind(struct hv_snap_chain *c, const struct hv_stream_header *h,
			const struct hv_snapshot_opts *o, struct util_bitmap *dirty)
{
	struct util_bitmap old = c->last;

	c->prev_id = 0;
	if (h->kind != HV_STREAM_INCREMENTAL || o->precopy || o->defer)
		return;
	/* the harvest's bitmap is kept, not copied: the caller frees the old one */
	c->last = *dirty;
	*dirty = old;
	c->prev_id = h->parent_id;
}

void snapshot_dispose(struct hv_vm *vm)
{
	hv_snap_chain_free(vm->chain);
	vm->chain = NULL;
}

/* The set bits of `b` as a pfn list in c->pfns; their count. */
uint64_t snapshot_collect(struct hv_snap_chain *c, const struct util_bitmap *b)
{
	uint64_t p, n = 0;

	for (p = util_bitmap_next_set(b, 0); p < b->nbits; p = util_bitmap_next_set(b, p + 1))
		c->pfns[n++] = p;
	return n;
}

static uint64_t random_id(void)
{
	uint64_t id = 0;

	while (!id)
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = util_now_ns() ^ (uint64_t)(uintptr_t)&id;
	return id;
}

/* The state records: every vCPU's, the VM's, the devices'. */
static int save_state(struct hv_vm *vm, struct hv_stream_writer *w)
{
	uint32_t c;
	int rc = 0;

	for (c = 0; !rc && c < vm->ncpus; c++)
		rc = state_save_vcpu(&vm->vcpus[c], w);
	if (!rc)
		rc = state_save_vm(vm, w);
	if (!rc)
		rc = persist_save_devices(vm, w);
	return rc;
}

/* The HEADER of a new stream of `vm`, with a fresh id. */
static void stream_header(const struct hv_vm *vm, enum hv_stream_kind kind, uint64_t parent_id,
			  struct hv_stream_header *h)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	memset(h, 0, sizeof(*h));
	h->magic = HV_STREAM_MAGIC;
	h->version = HV_STREAM_REVISION;
	h->kind = kind;
	h->ncpus = vm->ncpus;
	h->page_size = HV_PAGE_SIZE;
	h->mem_bytes = vm->mem.size;
	h->stream_id = random_id();
	h->parent_id = parent_id;
	h->created_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

void hv_snapshot_set_hook(struct hv_vm *vm, hv_snapshot_hook_fn fn, void *arg)
{
	vm->snap_hook = fn;
	vm->snap_hook_arg = arg;
}

int hv_snapshot_save(struct hv_vm *vm, int fd, enum hv_stream_kind kind,
		     struct hv_snapshot_stats *stats)
{
	/* one pass while the guest runs, then the pause re-sends what it wrote meanwhile */
	struct hv_precopy_passes one = {.max_passes = 1};
	struct hv_snapshot_opts o = {.precopy = hv_precopy_passes_policy, .precopy_arg = &one};
	struct hv_stream_writer *w = NULL;
	int rc;

	rc = hv_stream_writer_fd(fd, &w);
	if (!rc)
		rc = hv_snapshot_save_opts(vm, w, kind, &o, stats);
	else if (stats)
		memset(stats, 0, sizeof(*stats));
	hv_stream_writer_free(w);
	return rc;
}

int hv_snap_chain_pending(struct hv_snap_chain *c, uint64_t *pages_out)
{
	*pages_out = 0;
	if (!c->log)
		return -ENOENT;
	return hv_dirty_log_count(c->log, pages_out);
}

int hv_snapshot_pending(struct hv_vm *vm, uint64_t *pages_out)
{
	*pages_out = 0;
	return vm->chain ? hv_snap_chain_pending(vm->chain, pages_out) : -ENOENT;
}

int hv_snapshot_save_opts(struct hv_vm *vm, struct hv_stream_writer *w, enum hv_stream_kind kind,
			  const struct hv_snapshot_opts *o, struct hv_snapshot_stats *stats)
{
	int rc = 0;

	if (!vm->chain)
		rc = hv_snap_chain_new(vm, &vm->chain);
	if (rc < 0) {
		if (stats)
			memset(stats, 0, sizeof(*stats));
		return rc;
	}
	return hv_snap_chain_save(vm->chain, w, kind, o, stats);
}

/*
 * Why a pause was long. Stopping waits for every vCPU to leave KVM_RUN and for
 * the I/O thread's current handler; the copy and the state are bounded work,
 * so a long one there means this thread lost its CPU (host steal, preemption).
 */
static void slow_pause(struct hv_vm *vm, const struct hv_snapshot_stats *st, uint64_t pages)
{
	LOG_WARN("vm %s: a pause of %.1f ms: stopping the vCPUs and the I/O thread %.1f ms, "
		 "dirty log %.1f ms, copying %" PRIu64 " pages %.1f ms, state %.1f ms, the rest "
		 "%.1f ms",
		 vm->name, (double)st->pause_ns / 1e6, (double)st->stop_ns / 1e6,
		 (double)(st->harvest_ns - st->stop_ns) / 1e6, pages, (double)st->copy_ns / 1e6,
		 (double)st->state_ns / 1e6,
		 (double)(st->pause_ns - st->harvest_ns - st->copy_ns - st->state_ns) / 1e6);
}

int hv_snap_chain_save(struct hv_snap_chain *chain, struct hv_stream_writer *w,
		       enum hv_stream_kind kind, const struct hv_snapshot_opts *o,
		       struct hv_snapshot_stats *stats)
{
	struct hv_vm *vm = chain->vm;
	struct hv_snapshot_stats st = {0};
	struct hv_stream_header h = {0};
	struct util_bitmap dirty = {0};
	struct iovec iov = {&h, sizeof(h)};
	uint64_t t0 = util_now_ns(), tp, t1, n, i;
	bool paused = false;
	int rc;

	if (hv_vm_run_state(vm) != HV_S_RUNNING && hv_vm_run_state(vm) != HV_S_PAUSED)
		return -EINVAL;
	if (o->defer &&
	    (o->precopy || o->defer->nbits != vm->mem.pages || kind != HV_STREAM_INCREMENTAL))
		return -EINVAL;
	if (kind == HV_STREAM_INCREMENTAL && (!chain->log || !chain->last_id)) {
		LOG_ERR("vm %s: an incremental snapshot needs a full one to build on", vm->name);
		return -ENOENT;
	}
	rc = util_bitmap_init(&dirty, vm->mem.pages);
	if (rc < 0)
		goto out;
	if (kind == HV_STREAM_FULL) {
		/* a new chain: a fresh log counts every page as dirty */
		hv_dirty_log_free(chain->log);
		chain->log = NULL;
		chain->last_id = 0;
		rc = hv_dirty_log_new(vm, &chain->log);
		if (rc < 0)
			goto out;
	}
	stream_header(vm, kind, kind == HV_STREAM_INCREMENTAL ? chain->last_id : 0, &h);
	st.stream_id = h.stream_id;
	st.parent_id = h.parent_id;
	rc = hv_stream_write(w, HV_REC_HEADER, &iov, 1);
	if (rc < 0)
		goto out;

	/*
	 * Live passes, while the guest runs (precopy.c, as the policy says):
	 * every page (full) or every page written since the last snapshot
	 * (incremental) goes out now, then what was written during that pass,
	 * and so on; the pause re-sends only what was written during the last
	 * pass. With no policy everything is copied in the pause (replication
	 * epochs: one copy of each page).
	 */
	if (o->precopy) {
		struct hv_precopy_stats ps;

		rc = precopy_run(chain, w, &dirty, o->precopy, o->precopy_arg, &ps);
		st.precopy_pages = ps.total_pages;
		st.live_passes = ps.passes;
		st.precopy_ns = ps.total_ns;
		if (rc < 0)
			goto out;
	}
	rc = hv_stream_flush(w);
	if (rc < 0)
		goto out;
	if (vm->snap_hook)
		vm->snap_hook(vm->snap_hook_arg, vm, false);

	/* ---- paused from here ---- */
	tp = util_now_ns();
	rc = hv_vm_pause(vm);
	if (rc < 0)
		goto out;
	paused = true;
	st.stop_ns = util_now_ns() - tp;
	rc = hv_dirty_log_take(chain->log, &dirty, NULL);
	if (rc < 0)
		goto out;
	t1 = util_now_ns();
	st.harvest_ns = t1 - tp;
	if (o->defer) { /* postcopy: their pfns only, the pages stay where they are */
		util_bitmap_or(o->defer, &dirty);
		n = 0;
	} else {
		n = snapshot_collect(chain, &dirty);
	}
	rc = stage_reserve(chain, n); /* slow path: a larger staging buffer, faulted in now */
	if (rc < 0)
		goto out;
	if (n >= STAGE_STREAM_PAGES) {
		for (i = 0; i < n; i++)
			stage_page_nt(chain->stage + i * HV_PAGE_SIZE,
				      vm->mem.base + chain->pfns[i] * HV_PAGE_SIZE);
#if defined(__x86_64__)
		_mm_sfence(); /* the streamed stores are visible before anyone reads the stage */
#endif
	} else {
		for (i = 0; i < n; i++)
			memcpy(chain->stage + i * HV_PAGE_SIZE,
			       vm->mem.base + chain->pfns[i] * HV_PAGE_SIZE, HV_PAGE_SIZE);
	}
	st.copy_ns = util_now_ns() - t1;
	t1 = util_now_ns();
	rc = save_state(vm, w);
	st.state_ns = util_now_ns() - t1;
	if (!rc && o->pause_cb)
		rc = o->pause_cb(o->pause_arg, vm, w);
	if (vm->snap_hook)
		vm->snap_hook(vm->snap_hook_arg, vm, true);
	/*
	 * The pause ends when resume is issued: the vCPUs run from there on,
	 * and this thread may then wait for a core behind them.
	 */
	st.pause_ns = util_now_ns() - tp;
	hv_vm_resume(vm);
	paused = false;
	/* ---- running again ---- */
	if (rc < 0)
		goto out;
	if (st.pause_ns > HV_SLOW_PAUSE_MS * 1000000ull)
		slow_pause(vm, &st, n);
	st.staged_pages = n;
	rc = hv_stream_write_staged(w, chain->pfns, n, chain->stage);
	if (!rc)
		rc = hv_stream_finish(w);
	if (rc < 0)
		goto out;
	/* the next snapshot's pause should not have to grow the buffer */
	stage_reserve(chain, n + n / 2);
	note_rewind(chain, &h, o, &dirty);
	chain->last_id = h.stream_id;
	st.bytes = hv_stream_writer_bytes(w);
	st.total_ns = util_now_ns() - t0;
	LOG_INFO("vm %s: %s snapshot %016" PRIx64 ": %" PRIu64 " + %" PRIu64
		 " pages, %.1f MiB, paused %.3f ms",
		 vm->name, kind == HV_STREAM_FULL ? "full" : "incremental", h.stream_id,
		 st.precopy_pages, st.staged_pages, (double)st.bytes / (1 << 20),
		 (double)st.pause_ns / 1e6);
out:
	if (paused)
		hv_vm_resume(vm);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: snapshot", vm->name);
		if (kind == HV_STREAM_FULL) {
			/* no chain to build on after a failed full snapshot */
			chain->last_id = 0;
		}
	}
	util_bitmap_dispose(&dirty);
	if (stats)
		*stats = st;
	return rc;
}

/*
 * A twin is never run: its RAM, vCPUs and devices stand still between two
 * applied epochs, so its full snapshot needs no pause, no dirty log and no
 * chain -- every page as it is, then the state KVM holds.
 */
int hv_snapshot_save_twin(struct hv_vm *vm, int fd, struct hv_snapshot_stats *stats)
{
	struct hv_snapshot_stats st = {0};
	struct hv_stream_header h = {0};
	struct iovec iov = {&h, sizeof(h)};
	struct hv_stream_writer *w = NULL;
	uint64_t t0 = util_now_ns(), *pfns = NULL, i;
	int rc;

	if (hv_vm_run_state(vm) != HV_S_CREATED || vm->lazy || !vm->restored) {
		rc = -EINVAL;
		goto out;
	}
	pfns = malloc(vm->mem.pages * sizeof(*pfns));
	if (!pfns) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < vm->mem.pages; i++)
		pfns[i] = i;
	rc = hv_stream_writer_fd(fd, &w);
	if (rc < 0)
		goto out;
	stream_header(vm, HV_STREAM_FULL, 0, &h);
	st.stream_id = h.stream_id;
	rc = hv_stream_write(w, HV_REC_HEADER, &iov, 1);
	if (!rc)
		rc = hv_stream_write_pages(w, pfns, vm->mem.pages, vm->mem.base);
	if (!rc)
		rc = save_state(vm, w);
	if (!rc)
		rc = hv_stream_finish(w);
	if (rc < 0)
		goto out;
	st.staged_pages = vm->mem.pages;
	st.bytes = hv_stream_writer_bytes(w);
	st.total_ns = util_now_ns() - t0;
out:
	if (rc < 0)
		LOG_ERRNO(rc, "vm %s: saving the twin", vm->name);
	hv_stream_writer_free(w);
	free(pfns);
	if (stats)
		*stats = st;
	return rc;
}

/* ---- restore ------------------------------------------------------------------------- */

/* How many entries from `ent` on are RAW pages of consecutive pfns (>= 1). */
static uint32_t raw_run(const uint8_t *ent, uint32_t left)
{
	uint64_t e0, e;
	uint32_t n = 1;

	memcpy(&e0, ent, 8);
	for (; n < left; n++) {
		memcpy(&e, ent + 8ull * n, 8);
		if (e >> HV_PAGE_ENC_SHIFT != HV_PAGE_RAW ||
		    (e & HV_PAGE_PFN_MASK) != (e0 & HV_PAGE_PFN_MASK) + n)
			break;
	}
	return n;
}

/*
 * Pages into RAM that was never touched: pwrite(2) into the memfd allocates
 * them without a page fault each (1.7 against 2.6 µs a page measured here),
 * and one call covers a run of consecutive pages. The bits are set after the
 * data, as hv_mem_write() does.
 */
static int fresh_write(struct hv_vm *vm, const uint8_t *src, uint32_t npages, uint64_t off)
{
	size_t len = (size_t)npages * HV_PAGE_SIZE, done = 0;

	while (done < len) {
		ssize_t r = pwrite(vm->mem.memfd, src + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	mem_mark_dirty(vm, off / HV_PAGE_SIZE, npages);
	return 0;
}

/* Has this restore (or the VMM) written the page? */
static bool page_written(const struct hv_vm *vm, uint64_t pfn)
{
	return vm->mem.vmm_dirty[pfn / 64] >> (pfn % 64) & 1;
}

/*
 * `fresh`: RAM is still all zeros (the chain's first stream): ZERO pages need no
 * write. With a lazy restore, only remember where each page's latest copy is.
 */
static int apply_pages(struct hv_vm *vm, const struct hv_stream_record *r, bool fresh)
{
	uint32_t count, i;
	const uint8_t *payload;

	memcpy(&count, r->body, 4);
	payload = r->body + 8 + 8ull * count;
	for (i = 0; i < count; i++) {
		uint64_t e, pfn, off;

		memcpy(&e, r->body + 8 + 8ull * i, 8);
		pfn = e & HV_PAGE_PFN_MASK;
		off = pfn * HV_PAGE_SIZE;
		if (vm->lazy) {
			bool raw = e >> HV_PAGE_ENC_SHIFT == HV_PAGE_RAW;

			lazy_set_page(vm, pfn, raw ? payload : NULL);
			payload += raw ? HV_PAGE_SIZE : 0;
			continue;
		}
		/*
		 * RAM offsets map to guest-physical through the hole: write by
		 * offset. Pages not yet allocated: pwrite (no page-table faults);
		 * a standby's pre-faulted RAM: memcpy, twice as fast.
		 */
		if (e >> HV_PAGE_ENC_SHIFT == HV_PAGE_RAW && fresh && !vm->mem.prealloc) {
			uint32_t run = raw_run(r->body + 8 + 8ull * i, count - i);
			int rc = fresh_write(vm, payload, run, off);

			if (rc < 0)
				return rc;
			payload += (uint64_t)run * HV_PAGE_SIZE;
			i += run - 1;
			continue;
		} else if (e >> HV_PAGE_ENC_SHIFT == HV_PAGE_RAW) {
			memcpy(vm->mem.base + off, payload, HV_PAGE_SIZE);
			payload += HV_PAGE_SIZE;
		} else if (fresh && !page_written(vm, pfn)) {
			/*
			 * Still the zero page of a new memfd, never written by this
			 * restore (its bit is clear): leave it unallocated. A page
			 * sent RAW earlier in the stream has its bit set and is
			 * zeroed below like any other. A full snapshot is mostly
			 * such pages: take them a run at a time.
			 */
			uint32_t run = 1;

			while (i + run < count) {
				uint64_t n;

				memcpy(&n, r->body + 8 + 8ull * (i + run), 8);
				if (n >> HV_PAGE_ENC_SHIFT != HV_PAGE_ZERO ||
				    (n & HV_PAGE_PFN_MASK) != pfn + run ||
				    page_written(vm, pfn + run))
					break;
				run++;
			}
			mem_mark_dirty(vm, pfn, run);
			i += run - 1;
			continue;
		} else {
			memset(vm->mem.base + off, 0, HV_PAGE_SIZE);
		}
		mem_mark_dirty(vm, pfn, 1);
	}
	return 0;
}

int snapshot_check_records(struct hv_vm *vm, const uint8_t *buf, size_t len, unsigned which,
			   char *why, size_t why_len)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	uint32_t seen_vcpus = 0, seen_devs = 0, pending = UINT32_MAX;
	unsigned chip = 0, pit = 0, clock = 0;
	char what[256];
	int rc = 0, more;

	hv_stream_iter_init(&it, buf, len);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		const struct hv_vcpu_rec *v = (const struct hv_vcpu_rec *)r.body;
		uint32_t idx;

		if (pending != UINT32_MAX && r.type != HV_REC_VCPU_MSRS)
			FAIL_WHY("stream %u, offset %" PRIu64 ": VCPU %u without its VCPU_MSRS",
				 which, r.offset, pending);
		switch (r.type) {
		case HV_REC_VCPU:
			if (r.len != sizeof(*v) || v->index >= vm->ncpus ||
			    (seen_vcpus >> v->index & 1) || v->reserved || v->reserved2)
				FAIL_WHY("stream %u, offset %" PRIu64
					 ": bad or repeated VCPU record",
					 which, r.offset);
			pending = v->index;
			break;
		case HV_REC_VCPU_MSRS:
			if (r.len >= 4)
				memcpy(&idx, r.body, 4);
			if (r.len < 8 || pending == UINT32_MAX || idx != pending)
				FAIL_WHY("stream %u, offset %" PRIu64
					 ": VCPU_MSRS without its VCPU",
					 which, r.offset);
			seen_vcpus |= 1u << idx;
			pending = UINT32_MAX;
			break;
		case HV_REC_IRQCHIP:
		case HV_REC_PIT:
		case HV_REC_CLOCK: {
			unsigned *n = r.type == HV_REC_IRQCHIP ? &chip
				      : r.type == HV_REC_PIT   ? &pit
							       : &clock;

			if (++*n > 1)
				FAIL_WHY("stream %u, offset %" PRIu64 ": a second %s record", which,
					 r.offset, hv_rec_type_str(r.type));
			break;
		}
		case HV_REC_DEVICE:
			rc = persist_check_device(vm, r.body, r.len, &seen_devs, what,
						  sizeof(what));
			if (rc < 0)
				FAIL_WHY("stream %u, offset %" PRIu64 ": %s", which, r.offset,
					 what);
			break;
		default:
			break; /* HEADER, PAGES; optional records of later revisions */
		}
	}
	if (more < 0)
		FAIL_WHY("stream %u: malformed framing", which);
	if (pending != UINT32_MAX)
		FAIL_WHY("stream %u: VCPU %u without its VCPU_MSRS", which, pending);
	if (seen_vcpus != (1u << vm->ncpus) - 1)
		FAIL_WHY("stream %u: state of some vCPUs is missing", which);
	if (persist_devices_check(vm, seen_devs, what, sizeof(what)) < 0)
		FAIL_WHY("stream %u: %s", which, what);
out:
	return rc;
}

/* Apply one checked stream: pages, and the state it holds. */
static int apply_stream(struct hv_vm *vm, const uint8_t *buf, size_t len, unsigned which,
			bool fresh, char *why, size_t why_len)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	const struct hv_vcpu_rec *vrec = NULL;
	uint32_t seen_vcpus = 0, seen_devs = 0;
	int rc = 0, more;

	hv_stream_iter_init(&it, buf, len);
	while ((more = hv_stream_next(&it, &r)) > 0) {
		switch (r.type) {
		case HV_REC_PAGES:
			rc = apply_pages(vm, &r, fresh);
			break;
		case HV_REC_VCPU:
			vrec = (const struct hv_vcpu_rec *)r.body;
			if (vrec->index >= vm->ncpus || (seen_vcpus >> vrec->index & 1) ||
			    vrec->reserved || vrec->reserved2)
				FAIL_WHY("stream %u, offset %" PRIu64
					 ": bad or repeated VCPU record",
					 which, r.offset);
			break;
		case HV_REC_VCPU_MSRS: {
			uint32_t idx;

			memcpy(&idx, r.body, 4);
			if (!vrec || r.len < 8 || idx != vrec->index)
				FAIL_WHY("stream %u, offset %" PRIu64
					 ": VCPU_MSRS without its VCPU",
					 which, r.offset);
			rc = state_load_vcpu(&vm->vcpus[idx], vrec, r.body, r.len);
			if (rc < 0)
				FAIL_WHY("stream %u: vCPU %u state refused by KVM (%s)", which, idx,
					 strerror(-rc));
			seen_vcpus |= 1u << idx;
			vrec = NULL;
			break;
		}
		case HV_REC_IRQCHIP:
			rc = state_load_irqchip(vm, r.body);
			break;
		case HV_REC_PIT:
			rc = state_load_pit(vm, r.body);
			break;
		case HV_REC_CLOCK:
			rc = state_load_clock(vm, r.body);
			break;
		case HV_REC_DEVICE:
			rc = persist_load_device(vm, r.body, r.len, &seen_devs, why, why_len);
			if (rc < 0)
				goto out;
			break;
		default:
			break; /* HEADER; optional records of later revisions */
		}
		if (rc < 0)
			FAIL_WHY("stream %u, offset %" PRIu64
				 ": record %s could not be applied (%s)",
				 which, r.offset, hv_rec_type_str(r.type), strerror(-rc));
	}
	/* snapshot_check_records() has seen every vCPU and every required device */
	if (more < 0)
		FAIL_WHY("stream %u: malformed framing", which);
out:
	return rc;
}

/*
 * The first stream's HEADER, read before the stream is checked so the VM can
 * be created (its slots register in the background) while the check runs.
 * Only what creating a VM needs is looked at; hv_stream_check() does the rest.
 */
static int peek_header(const uint8_t *buf, size_t len, struct hv_stream_header *h)
{
	uint32_t type, rlen;

	if (len < 8 + sizeof(*h))
		return -EBADMSG;
	memcpy(&type, buf, 4);
	memcpy(&rlen, buf + 4, 4);
	if (type != HV_REC_HEADER || rlen != sizeof(*h))
		return -EBADMSG;
	memcpy(h, buf + 8, sizeof(*h));
	if (h->magic != HV_STREAM_MAGIC || h->version != HV_STREAM_REVISION || h->ncpus < 1 ||
	    h->ncpus > HV_MAX_VCPUS || h->page_size != HV_PAGE_SIZE || !h->mem_bytes ||
	    h->mem_bytes % HV_PAGE_SIZE)
		return -EBADMSG;
	return 0;
}

/* Check every stream of the chain (whole) against the first one's HEADER `first`. */
static int check_chain(const uint8_t *const *streams, const size_t *lens, unsigned nstreams,
		       const struct hv_stream_header *first, uint64_t *last_id, char *why,
		       size_t why_len)
{
	struct hv_stream_header h;
	uint64_t prev_id = 0;
	unsigned i;

	for (i = 0; i < nstreams; i++) {
		char what[200];

		if (hv_stream_check(streams[i], lens[i], &h, what, sizeof(what)) < 0) {
			snprintf(why, why_len, "snapshot %u: %s", i + 1, what);
			return -EBADMSG;
		}
		if (i == 0 && h.kind != HV_STREAM_FULL)
			return util_why(
				why, why_len, -EINVAL,
				"snapshot 1 is incremental: a chain starts with a full snapshot");
		if (i > 0 && (h.kind != HV_STREAM_INCREMENTAL || h.parent_id != prev_id))
			return util_why(
				why, why_len, -EINVAL,
				"snapshot %u does not follow snapshot %u (parent %016" PRIx64
				", expected %016" PRIx64 ")",
				i + 1, i, h.parent_id, prev_id);
		if (i > 0 && (h.mem_bytes != first->mem_bytes || h.ncpus != first->ncpus))
			return util_why(
				why, why_len, -EINVAL,
				"snapshot %u has another RAM size or vCPU count than snapshot 1",
				i + 1);
		prev_id = h.stream_id;
	}
	*last_id = prev_id;
	return 0;
}

/* The first stream's HEADER, or why it is unusable. */
static int first_header(const uint8_t *const *streams, const size_t *lens, unsigned nstreams,
			struct hv_stream_header *first, char *why, size_t why_len)
{
	struct hv_stream_header h;
	char what[200];

	if (!nstreams)
		return util_why(why, why_len, -EINVAL, "no snapshot given");
	if (peek_header(streams[0], lens[0], first) == 0)
		return 0;
	/* a header that does not even parse: say what the full check says */
	if (hv_stream_check(streams[0], lens[0], &h, what, sizeof(what)) < 0)
		snprintf(why, why_len, "snapshot 1: %s", what);
	else
		snprintf(why, why_len, "snapshot 1: unusable HEADER");
	return -EBADMSG;
}

/* Restore the chain into `vm` (created, blank, not started). */
static int restore_chain(struct hv_vm *vm, const uint8_t *const *streams, const size_t *lens,
			 unsigned nstreams, const struct hv_stream_header *first, unsigned flags,
			 hv_restore_devices_fn add_devices, void *arg, char *why, size_t why_len)
{
	uint64_t last_id = 0;
	unsigned i;
	int rc;

	/* every stream is checked whole before anything is applied */
	rc = check_chain(streams, lens, nstreams, first, &last_id, why, why_len);
	if (rc < 0)
		return rc;
	if (flags & HV_RESTORE_LAZY) {
		rc = lazy_init(vm);
		if (rc < 0)
			return util_why(why, why_len, rc, "lazy restore: no userfaultfd (%s)",
					strerror(-rc));
	}
	if (add_devices) {
		rc = add_devices(arg, vm);
		if (rc < 0)
			return util_why(why, why_len, rc, "cannot add the devices (%s)",
					strerror(-rc));
	}
	/* the record sets of every stream, before the first byte of RAM is written */
	for (i = 0; i < nstreams; i++) {
		rc = snapshot_check_records(vm, streams[i], lens[i], i + 1, why, why_len);
		if (rc < 0)
			return rc;
	}
	for (i = 0; i < nstreams; i++) {
		rc = apply_stream(vm, streams[i], lens[i], i + 1, i == 0, why, why_len);
		if (rc < 0)
			return rc;
	}
	if (vm->lazy) {
		rc = lazy_start(vm);
		if (rc < 0)
			return util_why(why, why_len, rc,
					"lazy restore: cannot start the loader (%s)",
					strerror(-rc));
	}
	vm->restored = true;
	if (vm->chain)
		vm->chain->last_id = 0; /* a restored VM starts a new chain */
	vm->applied_id = last_id;	/* the twin's position, for hv_snapshot_apply() */
	return 0;
}

int hv_snapshot_restore(const struct hv_vm_config *cfg, const uint8_t *const *streams,
			const size_t *lens, unsigned nstreams, unsigned flags,
			hv_restore_devices_fn add_devices, void *arg, struct hv_vm **vm_out,
			char *why, size_t why_len)
{
	struct hv_stream_header first = {0};
	struct hv_vm_config c = *cfg;
	struct hv_vm *vm = NULL;
	int rc;

	*vm_out = NULL;
	rc = first_header(streams, lens, nstreams, &first, why, why_len);
	if (rc < 0)
		return rc;
	if (c.mem_bytes && c.mem_bytes != first.mem_bytes)
		return util_why(why, why_len, -EINVAL,
				"RAM size mismatch: the snapshot holds %" PRIu64 " MiB, %" PRIu64
				" MiB requested",
				first.mem_bytes >> 20, c.mem_bytes >> 20);
	if (c.ncpus && c.ncpus != first.ncpus)
		return util_why(why, why_len, -EINVAL,
				"vCPU count mismatch: the snapshot has %u, %u requested",
				first.ncpus, c.ncpus);
	c.mem_bytes = first.mem_bytes;
	c.ncpus = first.ncpus;
	rc = hv_vm_create(&c, &vm);
	if (rc < 0)
		return util_why(why, why_len, rc,
				"cannot create a VM of %" PRIu64 " MiB and %u vCPUs (%s)",
				c.mem_bytes >> 20, c.ncpus, strerror(-rc));
	rc = restore_chain(vm, streams, lens, nstreams, &first, flags, add_devices, arg, why,
			   why_len);
	if (rc < 0) {
		hv_vm_free(vm);
		return rc;
	}
	*vm_out = vm;
	return 0;
}

/* Has anything been written into RAM (a VMM dirty bit set)? */
static bool mem_written(struct hv_vm *vm)
{
	for (uint64_t i = 0; i < UTIL_BITMAP_WORDS(vm->mem.pages); i++)
		if (vm->mem.vmm_dirty[i])
			return true;
	return false;
}

int hv_vm_prepare(struct hv_vm *vm, bool prealloc)
{
	int rc;

	if (atomic_load(&vm->run_state) != HV_S_CREATED || vm->restored || hv_tg_is_loaded(vm))
		return -EBUSY;
	rc = mem_slots_wait(vm);
	if (!rc && prealloc && !vm->mem.prealloc)
		rc = mem_prealloc(vm);
	return rc;
}

int hv_snapshot_restore_into(struct hv_vm *vm, const uint8_t *const *streams, const size_t *lens,
			     unsigned nstreams, unsigned flags, hv_restore_devices_fn add_devices,
			     void *arg, char *why, size_t why_len)
{
	struct hv_stream_header first = {0};
	int rc;

	if (atomic_load(&vm->run_state) != HV_S_CREATED || vm->restored || hv_tg_is_loaded(vm) ||
	    (vm->chain && vm->chain->last_id) || vm->lazy || mem_written(vm))
		return util_why(why, why_len, -EINVAL,
				"the VM is not blank: it has run, been loaded or restored");
	rc = first_header(streams, lens, nstreams, &first, why, why_len);
	if (rc < 0)
		return rc;
	if (first.mem_bytes != vm->mem.size)
		return util_why(why, why_len, -EINVAL,
				"RAM size mismatch: the snapshot holds %" PRIu64
				" MiB, the waiting VM has %" PRIu64 " MiB",
				first.mem_bytes >> 20, vm->mem.size >> 20);
	if (first.ncpus != vm->ncpus)
		return util_why(why, why_len, -EINVAL,
				"vCPU count mismatch: the snapshot has %u, the waiting VM %u",
				first.ncpus, vm->ncpus);
	if ((flags & HV_RESTORE_LAZY) && vm->mem.prealloc)
		return util_why(why, why_len, -EINVAL,
				"a lazy restore needs RAM that is not allocated yet; this VM's was "
				"allocated up front");
	rc = restore_chain(vm, streams, lens, nstreams, &first, flags, add_devices, arg, why,
			   why_len);
	if (rc < 0) {
		/*
		 * Refused, perhaps half-way (KVM refused state, the devices do not
		 * match): blank the VM again. vCPU, chip and device state need no
		 * undo: every restore sets all of it.
		 */
		lazy_dispose(vm);
		vm->restored = false;
		vm->booted = false;
		testguest_forget(vm);
		if (mem_written(vm) && mem_wipe(vm) < 0)
			LOG_WARN("vm %s: cannot wipe RAM after a failed restore", vm->name);
	}
	return rc;
}

int hv_snapshot_apply(struct hv_vm *vm, const uint8_t *buf, size_t len, char *why, size_t why_len)
{
	return hv_snapshot_apply_patched(vm, buf, len, NULL, NULL, why, why_len);
}

int hv_snapshot_apply_patched(struct hv_vm *vm, const uint8_t *buf, size_t len,
			      hv_ram_patch_fn *patch, void *arg, char *why, size_t why_len)
{
	struct hv_stream_header h;
	char what[200];
	int rc = 0;

	if (hv_vm_run_state(vm) != HV_S_CREATED || vm->lazy || !vm->restored)
		FAIL_WHY("the VM must be a restored twin that has not started");
	/* validated whole before anything changes: a partial or corrupt epoch leaves the twin as is
	 */
	if (hv_stream_check(buf, len, &h, what, sizeof(what)) < 0) {
		snprintf(why, why_len, "%s", what);
		return -EBADMSG;
	}
	if (h.mem_bytes != vm->mem.size || h.ncpus != vm->ncpus)
		FAIL_WHY("the stream is for another VM (%" PRIu64 " MiB, %u vCPUs)",
			 h.mem_bytes >> 20, h.ncpus);
	if (h.kind != HV_STREAM_INCREMENTAL || h.parent_id != vm->applied_id)
		FAIL_WHY("stream %016" PRIx64 " does not follow %016" PRIx64 " (parent %016" PRIx64
			 ")",
			 h.stream_id, vm->applied_id, h.parent_id);
	/* the record set too: a malformed epoch changes nothing, RAM included */
	rc = snapshot_check_records(vm, buf, len, 1, why, why_len);
	if (rc < 0)
		return rc;
	if (patch)
		patch(arg, vm->mem.base);
	rc = apply_stream(vm, buf, len, 1, false, why, why_len);
	if (rc < 0) {
		/* checked, yet refused while applying (KVM said no): the twin is now mixed */
		vm->applied_id = 0;
		return -EIO;
	}
	vm->applied_id = h.stream_id;
out:
	return rc;
}
