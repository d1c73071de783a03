/*
 * Snapshots: a VM's RAM and state as one stream (docs/stream-format.md).
 * A new VM from a chain of them is restore.c.
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
