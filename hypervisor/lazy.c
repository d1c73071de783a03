/*
 * Lazy restore: the guest runs before its RAM is loaded. Guest RAM is
 * registered with a userfaultfd in "missing" mode; a page touched before it is
 * loaded -- by a vCPU through KVM, or by the VMM -- faults, and this file's
 * thread fills it from the snapshot (UFFDIO_COPY) or with zeros
 * (UFFDIO_ZEROPAGE). Between faults the thread loads the remaining pages in
 * the background; when none is left it unregisters RAM and exits.
 *
 * Rules: a page is never overwritten (UFFDIO_COPY fails with EEXIST on a
 * present page, so a page the guest has written keeps its data); the stream
 * buffers the index points into stay mapped until the fill is done (the
 * caller's promise, see hv_snapshot_restore()).
 *
 * Postcopy (hv_postcopy_begin) is the same machinery on a VM that exists:
 * the pages the source still has are punched out of the memfd, and their
 * content comes from elsewhere -- a fault asks the owner for the page once
 * (request callback) and the owner places it (hv_postcopy_place) when it
 * arrives; there is no background fill here, the owner pushes the rest. A
 * fault on a page that is not missing is a never-written page: zeros.
 */
#define LOG_TAG "lazy"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILL_BATCH 64 /* pages loaded between two looks at the fault queue */

struct hv_lazy {
	struct hv_vm *vm;
	int uffd;
	int stop_fd;
	pthread_t thread;
	bool thread_started;
	const uint8_t **src; /* per RAM page: its latest RAW copy, or NULL for zeros */
	uint64_t next;	     /* background fill cursor */
	_Atomic uint64_t faults, filled;
	atomic_bool done;
	/* postcopy: the pages still to come, those asked for, and whom to ask */
	bool remote;
	pthread_mutex_t lock; /* guards missing, asked, left */
	struct util_bitmap missing, asked;
	uint64_t left;
	pthread_mutex_t req_lock; /* held while request runs: detach waits for it */
	hv_page_request_fn request;
	void *request_arg;
};

int lazy_init(struct hv_vm *vm)
{
	struct hv_lazy *l = calloc(1, sizeof(*l));
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {
		.range = {.start = (uint64_t)(uintptr_t)vm->mem.base, .len = vm->mem.size},
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int rc;

	if (!l)
		return -ENOMEM;
	l->vm = vm;
	l->stop_fd = -1;
	l->src = calloc(vm->mem.pages, sizeof(*l->src));
	l->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (!l->src || l->uffd < 0) {
		rc = l->src ? -errno : -ENOMEM;
		goto fail;
	}
	if (ioctl(l->uffd, UFFDIO_API, &api) < 0 || ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
		rc = -errno;
		goto fail;
	}
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->stop_fd < 0) {
		rc = -errno;
		goto fail;
	}
	vm->lazy = l;
	return 0;
fail:
	LOG_ERRNO(rc, "vm %s: userfaultfd for a lazy restore", vm->name);
	if (l->uffd >= 0)
		close(l->uffd);
	free(l->src);
	free(l);
	return rc;
}

void lazy_set_page(struct hv_vm *vm, uint64_t pfn, const uint8_t *data)
{
	vm->lazy->src[pfn] = data;
}

/* Load one page; false when it was already present. */
static bool fill_page(struct hv_lazy *l, uint64_t pfn, bool wake)
{
	uint64_t dst = (uint64_t)(uintptr_t)l->vm->mem.base + pfn * HV_PAGE_SIZE;
	int r;

	if (l->src[pfn]) {
		struct uffdio_copy c = {.dst = dst,
					.src = (uint64_t)(uintptr_t)l->src[pfn],
					.len = HV_PAGE_SIZE,
					.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};

		r = ioctl(l->uffd, UFFDIO_COPY, &c);
	} else {
		struct uffdio_zeropage z = {.range = {.start = dst, .len = HV_PAGE_SIZE},
					    .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE};

		r = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
	}
	if (r < 0 && errno == EEXIST) {
		if (wake) { /* someone filled it first: the faulting thread still waits */
			struct uffdio_range w = {.start = dst, .len = HV_PAGE_SIZE};

			ioctl(l->uffd, UFFDIO_WAKE, &w);
		}
		return false;
	}
	if (r < 0) {
		LOG_WARN_ERRNO(-errno, "vm %s: loading page 0x%llx", l->vm->name,
			       (unsigned long long)pfn);
		return false;
	}
	atomic_fetch_add(&l->filled, 1);
	return true;
}

/* Postcopy: a missing page is asked for once; any other untouched page is a zero page. */
static void remote_fault(struct hv_lazy *l, uint64_t pfn)
{
	bool missing, ask = false;

	pthread_mutex_lock(&l->lock);
	missing = util_bitmap_is_set(&l->missing, pfn);
	if (missing && !util_bitmap_is_set(&l->asked, pfn)) {
		util_bitmap_set(&l->asked, pfn);
		ask = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (ask) {
		pthread_mutex_lock(&l->req_lock);
		if (l->request) /* detached: the toucher waits for a page that may never come */
			l->request(l->request_arg, pfn);
		pthread_mutex_unlock(&l->req_lock);
	} else if (!missing)
		fill_page(l, pfn, true); /* src[] is all NULL here: zeros, or a wake */
}

static void serve_faults(struct hv_lazy *l)
{
	struct uffd_msg msg[16];
	ssize_t n;
	int i;

	while ((n = read(l->uffd, msg, sizeof(msg))) > 0) {
		for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			uint64_t off;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			off = msg[i].arg.pagefault.address - (uint64_t)(uintptr_t)l->vm->mem.base;
			if (off >= l->vm->mem.size)
				continue;
			atomic_fetch_add(&l->faults, 1);
			if (l->remote)
				remote_fault(l, off / HV_PAGE_SIZE);
			else
				fill_page(l, off / HV_PAGE_SIZE, true);
		}
	}
}

static void *lazy_main(void *arg)
{
	struct hv_lazy *l = arg;
	struct hv_vm *vm = l->vm;

	pthread_setname_np(pthread_self(), "hv-lazy");
	for (;;) {
		struct pollfd p[2] = {{.fd = l->uffd, .events = POLLIN},
				      {.fd = l->stop_fd, .events = POLLIN}};
		unsigned k;

		/* block only when nothing is left to load in the background */
		if (poll(p, 2, l->next < vm->mem.pages ? 0 : -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			serve_faults(l);
		for (k = 0; k < FILL_BATCH && l->next < vm->mem.pages; l->next++) {
			/* zero pages need no loading: they are filled when touched */
			if (l->src[l->next] && fill_page(l, l->next, false))
				k++;
		}
		if (l->next == vm->mem.pages && !l->remote) {
			struct uffdio_range r = {.start = (uint64_t)(uintptr_t)vm->mem.base,
						 .len = vm->mem.size};

			serve_faults(l);
			/* every page with data is in: untouched pages are zero pages anyway */
			if (ioctl(l->uffd, UFFDIO_UNREGISTER, &r) < 0)
				LOG_WARN_ERRNO(-errno, "vm %s: unregistering guest RAM", vm->name);
			ioctl(l->uffd, UFFDIO_WAKE, &r);
			atomic_store(&l->done, true);
			LOG_INFO("vm %s: lazy restore done: %llu pages loaded, %llu on demand",
				 vm->name, (unsigned long long)atomic_load(&l->filled),
				 (unsigned long long)atomic_load(&l->faults));
			break;
		}
	}
	return NULL;
}

int lazy_start(struct hv_vm *vm)
{
	struct hv_lazy *l = vm->lazy;
	int r = pthread_create(&l->thread, NULL, lazy_main, l);

	if (r)
		return -r;
	l->thread_started = true;
	return 0;
}

void lazy_dispose(struct hv_vm *vm)
{
	struct hv_lazy *l = vm->lazy;
	uint64_t one = 1;

	if (!l)
		return;
	if (l->thread_started) {
		if (write(l->stop_fd, &one, sizeof(one)) < 0)
			LOG_WARN("vm %s: stopping the lazy-restore thread", vm->name);
		pthread_join(l->thread, NULL);
	}
	close(l->stop_fd);
	close(l->uffd);
	free(l->src);
	if (l->remote) {
		util_bitmap_dispose(&l->missing);
		util_bitmap_dispose(&l->asked);
		pthread_mutex_destroy(&l->lock);
		pthread_mutex_destroy(&l->req_lock);
	}
	free(l);
	vm->lazy = NULL;
}

bool hv_snapshot_lazy_done(struct hv_vm *vm, uint64_t *loaded_out, uint64_t *faults_out)
{
	struct hv_lazy *l = vm->lazy;

	if (!l)
		return true;
	if (loaded_out)
		*loaded_out = atomic_load(&l->filled);
	if (faults_out)
		*faults_out = atomic_load(&l->faults);
	return atomic_load(&l->done);
}

/* ---- postcopy ------------------------------------------------------------------------ */

/* Drop the missing pages from the memfd, run by run: they are absent from here on. */
static int punch_missing(struct hv_vm *vm, const struct util_bitmap *missing)
{
	uint64_t p = util_bitmap_next_set(missing, 0);

	while (p < missing->nbits) {
		uint64_t end = p + 1;

		while (end < missing->nbits && util_bitmap_is_set(missing, end))
			end++;
		if (fallocate(vm->mem.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(p * HV_PAGE_SIZE), (off_t)((end - p) * HV_PAGE_SIZE)) < 0)
			return -errno;
		p = util_bitmap_next_set(missing, end);
	}
	return 0;
}

int hv_postcopy_begin(struct hv_vm *vm, const struct util_bitmap *missing,
		      hv_page_request_fn request, void *arg)
{
	struct hv_lazy *l;
	int rc;

	if (vm->lazy || !request || missing->nbits != vm->mem.pages ||
	    hv_vm_run_state(vm) == HV_S_RUNNING)
		return -EINVAL;
	rc = punch_missing(vm, missing);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: dropping the pages postcopy brings", vm->name);
		return rc;
	}
	rc = lazy_init(vm);
	if (rc < 0)
		return rc;
	l = vm->lazy;
	l->remote = true;
	l->next = vm->mem.pages; /* no background fill: the owner pushes */
	l->request = request;
	l->request_arg = arg;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->req_lock, NULL);
	if (util_bitmap_init(&l->missing, vm->mem.pages) < 0 ||
	    util_bitmap_init(&l->asked, vm->mem.pages) < 0) {
		lazy_dispose(vm);
		return -ENOMEM;
	}
	util_bitmap_or(&l->missing, missing);
	l->left = util_bitmap_count(missing);
	if (!l->left) { /* nothing to wait for: no userfaultfd at all */
		lazy_dispose(vm);
		return 0;
	}
	rc = lazy_start(vm);
	if (rc < 0)
		lazy_dispose(vm);
	return rc;
}

int hv_postcopy_place(struct hv_vm *vm, uint64_t pfn, const void *page)
{
	struct hv_lazy *l = vm->lazy;
	bool was, last = false;

	if (!l || !l->remote || pfn >= vm->mem.pages)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	was = util_bitmap_is_set(&l->missing, pfn);
	pthread_mutex_unlock(&l->lock);
	if (!was)
		return 0; /* placed before (a page sent twice, or asked for and pushed) */
	l->src[pfn] = page;
	fill_page(l, pfn, true);
	l->src[pfn] = NULL;
	pthread_mutex_lock(&l->lock);
	if (util_bitmap_is_set(&l->missing, pfn)) {
		util_bitmap_clear(&l->missing, pfn);
		last = --l->left == 0;
	}
	pthread_mutex_unlock(&l->lock);
	if (last) {
		struct uffdio_range r = {.start = (uint64_t)(uintptr_t)vm->mem.base,
					 .len = vm->mem.size};

		/* every page is in: faults are over, RAM runs at full speed again */
		if (ioctl(l->uffd, UFFDIO_UNREGISTER, &r) < 0)
			LOG_WARN_ERRNO(-errno, "vm %s: unregistering guest RAM", vm->name);
		ioctl(l->uffd, UFFDIO_WAKE, &r);
		atomic_store(&l->done, true);
		LOG_INFO("vm %s: postcopy done: every missing page is in; %llu faults, %llu pages "
			 "filled (placed, or zeros never written)",
			 vm->name, (unsigned long long)atomic_load(&l->faults),
			 (unsigned long long)atomic_load(&l->filled));
	}
	return 0;
}

void hv_postcopy_progress(struct hv_vm *vm, uint64_t *left_out, uint64_t *faults_out)
{
	struct hv_lazy *l = vm->lazy;

	*left_out = *faults_out = 0;
	if (!l || !l->remote)
		return;
	pthread_mutex_lock(&l->lock);
	*left_out = l->left;
	pthread_mutex_unlock(&l->lock);
	*faults_out = atomic_load(&l->faults);
}

void hv_postcopy_detach(struct hv_vm *vm)
{
	struct hv_lazy *l = vm->lazy;

	if (!l || !l->remote)
		return;
	pthread_mutex_lock(&l->req_lock);
	l->request = NULL;
	l->request_arg = NULL;
	pthread_mutex_unlock(&l->req_lock);
}

int hv_postcopy_missing(struct hv_vm *vm, struct util_bitmap *out)
{
	struct hv_lazy *l = vm->lazy;

	if (!l || !l->remote)
		return -EINVAL;
	if (util_bitmap_init(out, vm->mem.pages) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	util_bitmap_or(out, &l->missing);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int hv_postcopy_reask(struct hv_vm *vm)
{
	struct hv_lazy *l = vm->lazy;
	struct util_bitmap ask;
	uint64_t pfn;

	if (!l || !l->remote)
		return -EINVAL;
	if (util_bitmap_init(&ask, vm->mem.pages) < 0)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	for (pfn = util_bitmap_next_set(&l->asked, 0); pfn < ask.nbits;
	     pfn = util_bitmap_next_set(&l->asked, pfn + 1))
		if (util_bitmap_is_set(&l->missing, pfn))
			util_bitmap_set(&ask, pfn);
	pthread_mutex_unlock(&l->lock);
	pthread_mutex_lock(&l->req_lock);
	for (pfn = util_bitmap_next_set(&ask, 0); l->request && pfn < ask.nbits;
	     pfn = util_bitmap_next_set(&ask, pfn + 1))
		l->request(l->request_arg, pfn);
	pthread_mutex_unlock(&l->req_lock);
	util_bitmap_dispose(&ask);
	return 0;
}
