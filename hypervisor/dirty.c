/*
 * Dirty tracking: KVM's dirty log in manual-protect, initially-all-set mode,
 * merged with the VMM-side bitmap that hv_mem_write() fills.
 */
#define LOG_TAG "dirty"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/*
 * Hot pages (docs/architecture.md, "Hot pages"). A page is left writable in
 * KVM -- hot -- when the guest writes it again soon after it last did, where
 * "soon" is counted in the guest's own progress, not in time: the write
 * faults taken in between (cold faults) plus the pages already hot must be at
 * most the hot set's limit (hot_max), i.e. the page comes back within a
 * working set that the hot set can hold. Faults slow the guest and stretch
 * time, but not this count, so the same workload reaches the same hot set
 * from any start and at any harvest interval.
 *
 * A cursor sweeps RAM once every HOT_RECHECK_NS, whatever the interval, and
 * protects again the hot pages it passes: a page still written faults once and
 * is hot again at once (its distance is a few faults); a page that cooled
 * stays protected and stops being reported. The period must be longer than the
 * largest hot set takes to sweep at fault speed (16384 pages x ~30 us under
 * kvm_pvm's emulation, 0.5 s): were it shorter, a guest slowed by faults would
 * find its pages re-checked before it came back to them, fault on every
 * write and stay slow -- the trap of the time windows this rule replaced. It
 * costs a fault per hot page per period, and a page that cooled is resent for
 * at most a period.
 */
#define HOT_RECHECK_NS (2ull * 1000000000ull)

/* Turn KVM logging on (lock held); every page starts dirty (initially-all-set). */
static int tracking_on(struct hv_vm *vm)
{
	int rc;

	if (atomic_load(&vm->mem.tracking))
		return 0;
	memset(vm->mem.vmm_dirty, 0, UTIL_BITMAP_WORDS(vm->mem.pages) * sizeof(uint64_t));
	if (!vm->dirty.scratch.words) {
		rc = util_bitmap_init(&vm->dirty.scratch, vm->mem.pages);
		if (rc < 0)
			return rc;
	}
	rc = mem_slots_set_logging(vm, true);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: enabling the dirty log", vm->name);
		mem_slots_set_logging(vm, false);
		return rc;
	}
	atomic_store(&vm->mem.tracking, true);
	LOG_DBG("vm %s: dirty tracking on", vm->name);
	return 0;
}

static void tracking_off(struct hv_vm *vm)
{
	int rc;

	if (!atomic_load(&vm->mem.tracking) || vm->dirty.logs)
		return;
	atomic_store(&vm->mem.tracking, false);
	rc = mem_slots_set_logging(vm, false);
	if (rc < 0)
		LOG_ERRNO(rc, "vm %s: disabling the dirty log", vm->name);
}

static int log_new_locked(struct hv_vm *vm, struct hv_dirty_log **out)
{
	struct hv_dirty_log *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return -ENOMEM;
	rc = util_bitmap_init(&l->acc, vm->mem.pages);
	if (!rc)
		rc = tracking_on(vm);
	if (rc < 0) {
		util_bitmap_dispose(&l->acc);
		free(l);
		return rc;
	}
	util_bitmap_set_all(&l->acc); /* nothing was seen yet: everything is news */
	l->vm = vm;
	l->next = vm->dirty.logs;
	vm->dirty.logs = l;
	*out = l;
	return 0;
}

static void log_free_locked(struct hv_dirty_log *l)
{
	struct hv_dirty_log **pp;

	for (pp = &l->vm->dirty.logs; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	if (l->vm->dirty.default_log == l)
		l->vm->dirty.default_log = NULL;
	util_bitmap_dispose(&l->acc);
	free(l);
}

int hv_dirty_log_new(struct hv_vm *vm, struct hv_dirty_log **out)
{
	int rc;

	pthread_mutex_lock(&vm->dirty.lock);
	rc = log_new_locked(vm, out);
	pthread_mutex_unlock(&vm->dirty.lock);
	return rc;
}

void hv_dirty_log_free(struct hv_dirty_log *l)
{
	struct hv_vm *vm;

	if (!l)
		return;
	vm = l->vm;
	pthread_mutex_lock(&vm->dirty.lock);
	log_free_locked(l);
	tracking_off(vm);
	pthread_mutex_unlock(&vm->dirty.lock);
}

void dirty_log_add(struct hv_dirty_log *l, const struct util_bitmap *b)
{
	pthread_mutex_lock(&l->vm->dirty.lock);
	util_bitmap_or(&l->acc, b);
	pthread_mutex_unlock(&l->vm->dirty.lock);
}

int hv_dirty_start(struct hv_vm *vm)
{
	int rc = 0;

	pthread_mutex_lock(&vm->dirty.lock);
	if (!vm->dirty.default_log)
		rc = log_new_locked(vm, &vm->dirty.default_log);
	pthread_mutex_unlock(&vm->dirty.lock);
	return rc;
}

int hv_dirty_stop(struct hv_vm *vm)
{
	pthread_mutex_lock(&vm->dirty.lock);
	if (vm->dirty.default_log)
		log_free_locked(vm->dirty.default_log);
	tracking_off(vm);
	pthread_mutex_unlock(&vm->dirty.lock);
	return 0;
}

bool hv_dirty_is_tracking(struct hv_vm *vm)
{
	return atomic_load(&vm->mem.tracking);
}

/*
 * Which of the dirty pages in words[0..n) (RAM words first..first+n) to
 * protect again: vm->dirty.mask. A page reported because it was left
 * writable stays hot unless the re-check cursor passes it now; a page that faulted
 * (cold) turns hot when it comes back within hot_max pages of progress and
 * the hot set has room. Stamps hold the cold-fault clock + 1 of a page's last
 * report (0: never seen; the clock wraps at 2^32, which can only make a page
 * hot early, and it cools at its next re-check).
 */
static void hot_masks(struct hv_vm *vm, uint64_t first, uint64_t n, const uint64_t *words)
{
	struct hv_dirty *d = &vm->dirty;
	uint32_t now = d->cold_clock + 1;
	uint64_t i, max = d->hot_max, total = UTIL_BITMAP_WORDS(vm->mem.pages);

	for (i = 0; i < n; i++) {
		uint64_t w = words[i], hot = d->hotmap[first + i], keep = 0, rest;

		if (!(w | hot)) { /* most words of a large VM: nothing written, nothing hot */
			d->mask[first + i] = 0;
			continue;
		}
		/* the cursor passed this word in this harvest: [from, from + len) mod total */
		bool again = (first + i + total - d->recheck_from) % total < d->recheck_len;

		/* a hot page is dirty in KVM until protected: one that is not was reset there */
		d->hot_count -= (uint64_t)__builtin_popcountll(hot & ~w);
		/* left writable and reported: still hot unless re-checked now */
		rest = w & hot;
		if (again) {
			d->hot_count -= (uint64_t)__builtin_popcountll(rest);
			rest = 0;
		}
		keep = rest;
		/* every reported page gets this harvest's stamp; a faulted one is a cold fault */
		for (rest = w; rest; rest &= rest - 1) {
			uint64_t bit = rest & -rest,
				 page = (first + i) * 64 + (uint64_t)__builtin_ctzll(rest);
			uint32_t last = d->stamp[page];

			d->stamp[page] = now;
			if ((hot & bit) || !last) /* left writable, or a first write */
				continue;
			d->cold_faults++;
			if (d->hot_count < max &&
			    (uint64_t)(uint32_t)(now - last) + d->hot_count <= max) {
				keep |= bit;
				d->hot_count++;
			}
		}
		d->hotmap[first + i] = keep;
		d->mask[first + i] = w & ~keep;
	}
}

/* GET then CLEAR one slot; `words` is the slot's part of a RAM-indexed bitmap. */
static int slot_get_clear(struct hv_vm *vm, struct hv_slot *s, uint64_t *words, uint64_t *get_ns,
			  uint64_t *clear_ns)
{
	struct kvm_dirty_log get = {.slot = s->id, .dirty_bitmap = words};
	struct kvm_clear_dirty_log clr = {
		.slot = s->id,
		.num_pages = (uint32_t)(s->size / HV_PAGE_SIZE),
		.first_page = 0,
		.dirty_bitmap = words,
	};
	uint64_t t0, t1, t2;

	t0 = util_now_ns();
	if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &get) < 0)
		return -errno;
	t1 = util_now_ns();
	if (vm->dirty.hot && vm->dirty.mask && !vm->dirty.hot_fresh) {
		uint64_t first = s->ram_off / HV_PAGE_SIZE / 64,
			 n = UTIL_BITMAP_WORDS(clr.num_pages);

		hot_masks(vm, first, n, words);
		clr.dirty_bitmap = vm->dirty.mask + first;
	}
	if (ioctl(vm->fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
		return -errno;
	t2 = util_now_ns();
	*get_ns += t1 - t0;
	*clear_ns += t2 - t1;
	return 0;
}

/*
 * KVM's dirty log of every slot into `words` (RAM-indexed), reset in KVM. Slot
 * boundaries (0 and 3 GiB) are multiples of 64 pages: each slot owns whole words.
 */
static int get_clear_slots(struct hv_vm *vm, struct util_bitmap *b, struct hv_harvest_stats *st)
{
	unsigned s;
	int rc;

	if (vm->dirty.hot) {
		/* the re-check cursor moves over RAM's words in step with time (HOT_RECHECK_NS) */
		uint64_t total = UTIL_BITMAP_WORDS(vm->mem.pages), now = util_now_ns();
		uint64_t due = now - vm->dirty.recheck_ns, len = 0;

		if (!vm->dirty.recheck_ns) {
			vm->dirty.recheck_ns = now;
		} else if (due >= HOT_RECHECK_NS) {
			len = total;
			vm->dirty.recheck_ns = now;
		} else {
			len = (uint64_t)((double)total * (double)due / (double)HOT_RECHECK_NS);
			vm->dirty.recheck_ns += len * HOT_RECHECK_NS / total;
		}
		vm->dirty.recheck_from = (vm->dirty.recheck_from + vm->dirty.recheck_len) % total;
		vm->dirty.recheck_len = len;
	}
	for (s = 0; s < vm->mem.nslots; s++) {
		struct hv_slot *sl = &vm->mem.slots[s];

		rc = slot_get_clear(vm, sl, b->words + sl->ram_off / HV_PAGE_SIZE / 64, &st->get_ns,
				    &st->clear_ns);
		if (rc < 0) {
			LOG_ERRNO(rc, "vm %s: dirty log of slot %u", vm->name, sl->id);
			return rc;
		}
	}
	/*
	 * The first harvest with hot pages on tells nothing about writes (it may be
	 * a new log's every page): it protects all, stamps none. The clock moves by
	 * this harvest's cold faults: the next harvest's distances.
	 */
	vm->dirty.hot_fresh = false;
	vm->dirty.cold_clock += (uint32_t)(vm->dirty.cold_faults - vm->dirty.clock_faults);
	vm->dirty.clock_faults = vm->dirty.cold_faults;
	vm->dirty.totals.hot_pages = vm->dirty.hot ? vm->dirty.hot_count : 0;
	vm->dirty.totals.cold_faults = vm->dirty.cold_faults;
	return 0;
}

/* Collect what KVM and the VMM saw since the last sync into every log (lock held). */
static int sync_logs(struct hv_vm *vm, struct hv_harvest_stats *st)
{
	struct util_bitmap *scr = &vm->dirty.scratch;
	uint64_t i, nwords = UTIL_BITMAP_WORDS(vm->mem.pages);
	struct hv_dirty_log *l;
	int rc;

	rc = get_clear_slots(vm, scr, st);
	if (rc < 0)
		return rc;
	for (i = 0; i < nwords; i++) {
		uint64_t w = __atomic_load_n(&vm->mem.vmm_dirty[i], __ATOMIC_RELAXED);

		if (!w)
			continue;
		w = __atomic_exchange_n(&vm->mem.vmm_dirty[i], 0, __ATOMIC_ACQUIRE);
		st->vmm_pages += (uint64_t)__builtin_popcountll(w);
		scr->words[i] |= w;
	}
	for (l = vm->dirty.logs; l; l = l->next)
		util_bitmap_or(&l->acc, scr);
	return 0;
}

int hv_dirty_log_take(struct hv_dirty_log *l, struct util_bitmap *out,
		      struct hv_harvest_stats *stats)
{
	struct hv_vm *vm = l->vm;
	struct hv_harvest_stats st = {0};
	uint64_t t0 = util_now_ns();
	int rc;

	if (out->nbits != vm->mem.pages)
		return -EINVAL;
	pthread_mutex_lock(&vm->dirty.lock);
	rc = sync_logs(vm, &st);
	if (rc < 0)
		goto out;
	memcpy(out->words, l->acc.words, UTIL_BITMAP_WORDS(out->nbits) * sizeof(uint64_t));
	util_bitmap_clear_all(&l->acc);
	st.pages = util_bitmap_count(out);
	st.total_ns = util_now_ns() - t0;
	vm->dirty.totals.harvests++;
	vm->dirty.totals.last_pages = st.pages;
	vm->dirty.totals.last_ns = st.total_ns;
	vm->dirty.totals.vmm_pages += st.vmm_pages;
out:
	pthread_mutex_unlock(&vm->dirty.lock);
	if (stats)
		*stats = st;
	return rc;
}

int hv_dirty_set_hot(struct hv_vm *vm, bool on)
{
	size_t words = UTIL_BITMAP_WORDS(vm->mem.pages);
	int rc = 0;

	pthread_mutex_lock(&vm->dirty.lock);
	if (on && !vm->dirty.hotmap) {
		uint64_t *hotmap = calloc(words, sizeof(uint64_t));
		uint64_t *mask = calloc(words, sizeof(uint64_t));
		uint32_t *stamp = calloc(vm->mem.pages, sizeof(uint32_t));

		if (hotmap && mask && stamp) {
			vm->dirty.hotmap = hotmap;
			vm->dirty.mask = mask;
			vm->dirty.stamp = stamp;
		} else {
			free(hotmap);
			free(mask);
			free(stamp);
			rc = -ENOMEM;
		}
	}
	if (!rc) {
		if (on && !vm->dirty.hot) { /* a fresh start: nothing hot, nothing seen */
			memset(vm->dirty.hotmap, 0, words * sizeof(uint64_t));
			memset(vm->dirty.stamp, 0, vm->mem.pages * sizeof(uint32_t));
			vm->dirty.hot_count = 0;
			vm->dirty.hot_fresh = true;
			vm->dirty.recheck_ns = vm->dirty.recheck_from = vm->dirty.recheck_len = 0;
			if (!vm->dirty.hot_max)
				vm->dirty.hot_max = HV_DIRTY_HOT_MAX_DEFAULT;
		}
		/* each session asks on and off for itself: hot while one still wants them */
		if (on)
			vm->dirty.hot_users++;
		else if (vm->dirty.hot_users)
			vm->dirty.hot_users--;
		/* off: the next harvest protects every page it reports */
		vm->dirty.hot = vm->dirty.hot_users > 0;
	}
	pthread_mutex_unlock(&vm->dirty.lock);
	return rc;
}

int hv_dirty_set_hot_max(struct hv_vm *vm, uint64_t pages)
{
	if (!pages || pages > vm->mem.pages)
		return -EINVAL;
	pthread_mutex_lock(&vm->dirty.lock);
	vm->dirty.hot_max = pages; /* a smaller limit than the hot set: it shrinks at re-checks */
	pthread_mutex_unlock(&vm->dirty.lock);
	return 0;
}

int hv_dirty_log_count(struct hv_dirty_log *l, uint64_t *pages_out)
{
	struct hv_vm *vm = l->vm;
	struct hv_harvest_stats st = {0};
	int rc;

	pthread_mutex_lock(&vm->dirty.lock);
	rc = sync_logs(vm, &st);
	*pages_out = rc < 0 ? 0 : util_bitmap_count(&l->acc);
	pthread_mutex_unlock(&vm->dirty.lock);
	return rc;
}

int hv_dirty_harvest(struct hv_vm *vm, struct util_bitmap *out, struct hv_harvest_stats *stats)
{
	struct hv_dirty_log *l;

	pthread_mutex_lock(&vm->dirty.lock);
	l = vm->dirty.default_log;
	pthread_mutex_unlock(&vm->dirty.lock);
	if (!l)
		return -EINVAL;
	return hv_dirty_log_take(l, out, stats);
}

void hv_dirty_totals(struct hv_vm *vm, struct hv_dirty_totals *out)
{
	pthread_mutex_lock(&vm->dirty.lock);
	*out = vm->dirty.totals;
	pthread_mutex_unlock(&vm->dirty.lock);
}

int hv_dirty_bare_ioctls(struct hv_vm *vm, uint64_t *ns_out)
{
	struct hv_harvest_stats st = {0};
	uint64_t t0;
	int rc = 0;

	pthread_mutex_lock(&vm->dirty.lock);
	if (!atomic_load(&vm->mem.tracking)) { /* tracking on means the scratch bitmap exists */
		rc = -EINVAL;
		goto out;
	}
	t0 = util_now_ns();
	rc = get_clear_slots(vm, &vm->dirty.scratch, &st);
	*ns_out = util_now_ns() - t0;
out:
	pthread_mutex_unlock(&vm->dirty.lock);
	return rc;
}

void dirty_dispose(struct hv_vm *vm)
{
	pthread_mutex_lock(&vm->dirty.lock);
	while (vm->dirty.logs)
		log_free_locked(vm->dirty.logs);
	pthread_mutex_unlock(&vm->dirty.lock);
	util_bitmap_dispose(&vm->dirty.scratch);
	free(vm->dirty.hotmap);
	free(vm->dirty.mask);
	free(vm->dirty.stamp);
	vm->dirty.hotmap = vm->dirty.mask = NULL;
	vm->dirty.stamp = NULL;
}
