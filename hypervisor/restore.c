/*
 * Restore (docs/stream-format.md): a new VM from a chain of snapshots, a warm
 * restore into a standby made ahead of time, and a twin kept in step with
 * each epoch (hv_snapshot_apply). Every stream is checked whole before
 * anything of it is applied. Saving is snapshot.c.
 */
#define LOG_TAG "snapshot"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
