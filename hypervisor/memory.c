/*
 * Guest RAM: one memfd mapped shared, registered in one KVM slot below the
 * 3 GiB hole and one above 4 GiB. hv_mem_write() is the only way the VMM
 * writes it.
 */
#define LOG_TAG "mem"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int hv_ram_gpa_to_offset(uint64_t mem_bytes, uint64_t gpa, uint64_t *off_out)
{
	uint64_t low = mem_bytes < HV_HOLE_START ? mem_bytes : HV_HOLE_START;

	if (gpa < low) {
		*off_out = gpa;
		return 0;
	}
	if (gpa >= HV_HOLE_END && gpa - HV_HOLE_END < mem_bytes - low) {
		*off_out = gpa - HV_HOLE_END + low;
		return 0;
	}
	return -EFAULT;
}

static int slot_register(struct hv_vm *vm, struct hv_slot *s, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.flags = flags,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.base + s->ram_off),
	};

	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	s->flags = flags;
	return 0;
}

static void *slots_thread(void *arg)
{
	struct hv_vm *vm = arg;
	unsigned i;
	int rc = 0;

	pthread_setname_np(pthread_self(), "castor-slots");
	for (i = 0; !rc && i < vm->mem.nslots; i++) {
		rc = slot_register(vm, &vm->mem.slots[i], 0);
		if (rc < 0)
			LOG_ERRNO(rc, "vm %s: KVM_SET_USER_MEMORY_REGION slot %u", vm->name, i);
	}
	vm->mem.slot_rc = rc;
	return NULL;
}

int mem_init(struct hv_vm *vm, uint64_t size)
{
	struct hv_mem *m = &vm->mem;
	uint64_t low = size < HV_HOLE_START ? size : HV_HOLE_START;
	m->memfd = memfd_create("castor-ram", MFD_CLOEXEC);
	if (m->memfd < 0)
		return -errno;
	if (ftruncate(m->memfd, (off_t)size) < 0)
		return -errno;
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, m->memfd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return -errno;
	}
	m->size = size;
	m->pages = size / HV_PAGE_SIZE;
	m->vmm_dirty = calloc(UTIL_BITMAP_WORDS(m->pages), sizeof(uint64_t));
	if (!m->vmm_dirty)
		return -ENOMEM;

	m->slots[0] = (struct hv_slot){.id = 0, .gpa = 0, .size = low, .ram_off = 0};
	m->nslots = 1;
	if (size > low) {
		m->slots[1] = (struct hv_slot){
			.id = 1, .gpa = HV_HOLE_END, .size = size - low, .ram_off = low};
		m->nslots = 2;
	}
	if (!pthread_create(&m->slot_thread, NULL, slots_thread, vm)) {
		m->slot_thread_live = true;
		return 0;
	}
	slots_thread(vm); /* no thread: register them here */
	return m->slot_rc;
}

int mem_slots_wait(struct hv_vm *vm)
{
	if (vm->mem.slot_thread_live) {
		pthread_join(vm->mem.slot_thread, NULL);
		vm->mem.slot_thread_live = false;
	}
	return vm->mem.slot_rc;
}

int mem_prealloc(struct hv_vm *vm)
{
	/*
	 * Fault every page in, writable: shmem allocates and zeroes it now and
	 * our page tables map it, so a restore only copies. (fallocate would
	 * allocate without zeroing: the zeroing would still come on first write.)
	 */
	if (madvise(vm->mem.base, vm->mem.size, MADV_POPULATE_WRITE) < 0)
		return -errno;
	vm->mem.prealloc = true;
	return 0;
}

int mem_wipe(struct hv_vm *vm)
{
	struct hv_mem *m = &vm->mem;

	if (fallocate(m->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->size) < 0)
		return -errno;
	memset(m->vmm_dirty, 0, UTIL_BITMAP_WORDS(m->pages) * sizeof(uint64_t));
	return m->prealloc ? mem_prealloc(vm) : 0;
}

void mem_dispose(struct hv_mem *m)
{
	if (m->base)
		munmap(m->base, m->size);
	m->base = NULL;
	if (m->memfd >= 0)
		close(m->memfd);
	m->memfd = -1;
	free(m->vmm_dirty);
	m->vmm_dirty = NULL;
}

int mem_slots_set_logging(struct hv_vm *vm, bool on)
{
	unsigned i;
	int rc;

	rc = mem_slots_wait(vm);
	if (rc < 0)
		return rc;
	for (i = 0; i < vm->mem.nslots; i++) {
		rc = slot_register(vm, &vm->mem.slots[i], on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

uint64_t hv_ram_pages(const struct hv_vm *vm)
{
	return vm->mem.pages;
}

const uint8_t *hv_ram_base(const struct hv_vm *vm)
{
	return vm->mem.base;
}

int hv_ram_memfd(const struct hv_vm *vm)
{
	return vm->mem.memfd;
}

/* Ranges never straddle the hole: both sides must be RAM and contiguous in the memfd. */
static int range_to_offset(struct hv_vm *vm, uint64_t gpa, size_t len, uint64_t *off_out)
{
	uint64_t off, last;

	if (len == 0)
		return hv_ram_gpa_to_offset(vm->mem.size, gpa, off_out);
	if (gpa + len < gpa)
		return -EFAULT;
	if (hv_ram_gpa_to_offset(vm->mem.size, gpa, &off) < 0 ||
	    hv_ram_gpa_to_offset(vm->mem.size, gpa + len - 1, &last) < 0 || last - off != len - 1)
		return -EFAULT;
	*off_out = off;
	return 0;
}

const uint8_t *mem_ptr(struct hv_vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t off;

	if (len > SIZE_MAX || range_to_offset(vm, gpa, (size_t)len, &off) < 0)
		return NULL;
	return vm->mem.base + off;
}

int hv_mem_read(struct hv_vm *vm, uint64_t gpa, void *dst, size_t len)
{
	uint64_t off;
	int rc;

	rc = range_to_offset(vm, gpa, len, &off);
	if (rc < 0)
		return rc;
	memcpy(dst, vm->mem.base + off, len);
	return 0;
}

int hv_mem_write(struct hv_vm *vm, uint64_t gpa, const void *src, size_t len)
{
	uint64_t off, first, last;
	int rc;

	rc = range_to_offset(vm, gpa, len, &off);
	if (rc < 0)
		return rc;
	if (!len)
		return 0;
	memcpy(vm->mem.base + off, src, len);
	/* data first, then the bit: a harvest that takes the bit sees the data */
	first = off / HV_PAGE_SIZE;
	last = (off + len - 1) / HV_PAGE_SIZE;
	mem_mark_dirty(vm, first, last - first + 1);
	return 0;
}

void mem_mark_dirty(struct hv_vm *vm, uint64_t first_pfn, uint64_t npages)
{
	uint64_t p = first_pfn, end = first_pfn + npages;

	/* one atomic OR per bitmap word of the run */
	while (p < end) {
		uint64_t bit = p % 64, n = 64 - bit < end - p ? 64 - bit : end - p;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << bit;

		__atomic_fetch_or(&vm->mem.vmm_dirty[p / 64], mask, __ATOMIC_RELEASE);
		p += n;
	}
}
