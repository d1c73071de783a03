/*
 * The test guest on the host side: load castor-tg.bin, fill its parameter
 * block, point every vCPU at its 64-bit entry, and talk to it through its
 * state pages, the mailbox and the test device (guest/abi.h).
 *
 * What the host knows of a loaded guest lives in struct hv_tg, here and
 * nowhere else; the VM only holds a pointer to it (vm->tg).
 */
#define LOG_TAG "tg"
#include "hypervisor/hv_int.h"
#include "hypervisor/guest/abi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TG_IMAGE_MAX (TG_WORK_BASE - TG_LOAD_ADDR)

struct hv_tg {
	bool loaded; /* by hv_tg_load(), or restored with a snapshot's test device */
	struct testguest_saved s;
};

/* vm->tg, made on first use (the VM is not running yet: no thread reads it). */
static struct hv_tg *tg_get(struct hv_vm *vm)
{
	if (!vm->tg)
		vm->tg = calloc(1, sizeof(*vm->tg));
	return vm->tg;
}

bool testguest_save(struct hv_vm *vm, struct testguest_saved *out)
{
	if (!hv_tg_is_loaded(vm))
		return false;
	*out = vm->tg->s;
	return true;
}

int testguest_restore(struct hv_vm *vm, const struct testguest_saved *in)
{
	struct hv_tg *tg = tg_get(vm);

	if (!tg)
		return -ENOMEM;
	tg->s = *in;
	tg->loaded = true;
	return 0;
}

void testguest_forget(struct hv_vm *vm)
{
	if (vm->tg)
		vm->tg->loaded = false;
}

void testguest_free(struct hv_tg *tg)
{
	free(tg);
}

void hv_tg_config_default(struct hv_tg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->wss_bytes = 4ull << 20;
	cfg->rate = 100;
	cfg->out_rate = 10;
	cfg->seed = 1;
	cfg->window_words = 64;
	cfg->serial_tick = true;
	cfg->netmask = htonl(0xffffff00u);
	cfg->blk_rate = 100;
}

int hv_tg_config_set(struct hv_tg_config *cfg, const char *kv, char *why, size_t why_len)
{
	const char *eq = strchr(kv, '=');
	char key[32];
	const char *val;
	uint64_t v;
	int rc;

	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
		snprintf(why, why_len, "guest parameter '%s' is not key=value", kv);
		return -EINVAL;
	}
	memcpy(key, kv, (size_t)(eq - kv));
	key[eq - kv] = 0;
	val = eq + 1;
	if (!strcmp(key, "wss")) {
		rc = util_parse_size(val, &v);
		if (!rc && (v < TG_PAGE_SIZE || v % TG_PAGE_SIZE))
			rc = -ERANGE;
		if (!rc)
			cfg->wss_bytes = v;
	} else if (!strcmp(key, "rate")) {
		rc = 0;
		if (!strcmp(val, "max"))
			cfg->rate = TG_RATE_MAX;
		else if (!(rc = util_parse_u64(val, &v)))
			cfg->rate = v;
	} else if (!strcmp(key, "outrate")) {
		rc = util_parse_u64(val, &v);
		if (!rc && v > 1000000)
			rc = -ERANGE;
		if (!rc)
			cfg->out_rate = v;
	} else if (!strcmp(key, "seed")) {
		rc = util_parse_u64(val, &v);
		if (!rc)
			cfg->seed = v;
	} else if (!strcmp(key, "window")) {
		rc = util_parse_u64(val, &v);
		if (!rc && (v < 1 || v > TG_WINDOW_MAX))
			rc = -ERANGE;
		if (!rc)
			cfg->window_words = (uint32_t)v;
	} else if (!strcmp(key, "tick")) {
		rc = util_parse_u64(val, &v);
		if (!rc && v > 1)
			rc = -ERANGE;
		if (!rc)
			cfg->serial_tick = v == 1;
	} else if (!strcmp(key, "ip") || !strcmp(key, "mask") || !strcmp(key, "gw")) {
		struct in_addr a;

		rc = inet_pton(AF_INET, val, &a) == 1 ? 0 : -EINVAL;
		if (!rc && !strcmp(key, "ip"))
			cfg->ip = a.s_addr;
		else if (!rc && !strcmp(key, "mask"))
			cfg->netmask = a.s_addr;
		else if (!rc)
			cfg->gateway = a.s_addr;
	} else if (!strcmp(key, "blkfirst") || !strcmp(key, "blkcount") ||
		   !strcmp(key, "blkrate")) {
		rc = util_parse_u64(val, &v);
		if (!rc && v > (1ull << 40))
			rc = -ERANGE;
		if (!rc && !strcmp(key, "blkfirst"))
			cfg->blk_first = v;
		else if (!rc && !strcmp(key, "blkcount"))
			cfg->blk_count = v;
		else if (!rc)
			cfg->blk_rate = v;
	} else if (!strcmp(key, "blkverify")) {
		rc = util_parse_u64(val, &v);
		if (!rc && v > 1)
			rc = -ERANGE;
		if (!rc)
			cfg->blk_verify_only = v == 1;
	} else {
		snprintf(why, why_len,
			 "unknown guest parameter '%s' (known: wss, rate, outrate, seed, window, "
			 "tick, ip, mask, gw, blkfirst, blkcount, blkrate, blkverify)",
			 key);
		return -EINVAL;
	}
	if (rc < 0)
		snprintf(why, why_len, "guest parameter %s: bad value '%s'%s", key, val,
			 rc == -ERANGE ? " (out of range)" : "");
	return rc;
}

static int read_image(const char *path, uint8_t **buf_out, size_t *len_out)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t done = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size < (off_t)(TG_IMAGE_HDR_OFFSET + sizeof(struct tg_image_header)) ||
	    (uint64_t)st.st_size > TG_IMAGE_MAX) {
		rc = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + done, (size_t)st.st_size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			goto out;
		}
		done += (size_t)r;
	}
	*buf_out = buf;
	*len_out = done;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static int check_header(const struct tg_image_header *h, size_t file_len, uint32_t ncpus,
			const char *path)
{
	const char *bad = NULL;

	if (h->magic != TG_IMAGE_MAGIC)
		bad = "no Castor test-guest header (bad magic)";
	else if (h->version != TG_IMAGE_VERSION)
		bad = "unsupported header version";
	else if (h->header_size < sizeof(*h))
		bad = "header too short";
	else if (h->load_addr != TG_LOAD_ADDR)
		bad = "unexpected load address";
	else if (h->load_end != h->load_addr + file_len)
		bad = "load_end does not match the file size";
	else if (h->entry64 < h->load_addr || h->entry64 >= h->load_end)
		bad = "entry point outside the image";
	else if (h->bss_end < h->load_end || h->bss_end > TG_WORK_BASE)
		bad = "image (with bss) overlaps the work regions";
	else if (h->rw_gpa < h->load_addr || h->rw_gpa + h->rw_bytes > h->bss_end)
		bad = "rw area outside the image";
	else if (h->state_gpa < h->rw_gpa ||
		 h->state_gpa + (uint64_t)h->max_cpus * TG_PAGE_SIZE > h->rw_gpa + h->rw_bytes)
		bad = "vCPU state pages outside the rw area";
	else if (h->max_cpus < ncpus)
		bad = "image supports fewer vCPUs than requested";
	if (!bad)
		return 0;
	LOG_ERR("%s: %s", path, bad);
	return -ENOEXEC;
}

int hv_tg_load(struct hv_vm *vm, const struct hv_tg_config *cfg)
{
	struct tg_image_header h;
	struct tg_params p;
	uint64_t low = vm->mem.size < HV_HOLE_START ? vm->mem.size : HV_HOLE_START;
	uint64_t wss_pages = cfg->wss_bytes / TG_PAGE_SIZE;
	uint8_t *img = NULL;
	uint32_t khz = 0, i;
	size_t len = 0;
	struct hv_tg *tg;
	int rc;

	if (hv_tg_is_loaded(vm) || hv_vm_run_state(vm) != HV_S_CREATED)
		return -EBUSY;
	tg = tg_get(vm);
	if (!tg)
		return -ENOMEM;
	if (!wss_pages || cfg->window_words < 1 || cfg->window_words > TG_WINDOW_MAX) {
		LOG_ERR("vm %s: bad test-guest parameters", vm->name);
		return -EINVAL;
	}
	if (tg_scratch_base(vm->ncpus, wss_pages) > low) {
		LOG_ERR("vm %s: %u work regions of %" PRIu64 " KiB do not fit in %" PRIu64
			" MiB of low RAM",
			vm->name, vm->ncpus, cfg->wss_bytes >> 10, low >> 20);
		return -ERANGE;
	}
	rc = read_image(cfg->image_path, &img, &len);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: test-guest image %s", vm->name, cfg->image_path);
		goto out;
	}
	memcpy(&h, img + TG_IMAGE_HDR_OFFSET, sizeof(h));
	rc = check_header(&h, len, vm->ncpus, cfg->image_path);
	if (rc < 0)
		goto out;
	rc = hv_mem_write(vm, TG_LOAD_ADDR, img, len);
	if (rc < 0)
		goto out;
	rc = boot_vcpu_tsc_khz(&vm->vcpus[0], &khz);
	if (rc < 0) {
		LOG_WARN_ERRNO(rc, "vm %s: KVM_GET_TSC_KHZ; assuming 1 GHz", vm->name);
		khz = 1000000;
	}
	memset(&p, 0, sizeof(p));
	p.magic = TG_PARAMS_MAGIC;
	p.version = TG_PARAMS_VERSION;
	p.ncpus = vm->ncpus;
	p.tsc_khz = khz;
	p.seed = cfg->seed;
	p.wss_pages = wss_pages;
	p.rate = cfg->rate;
	p.out_rate = cfg->out_rate;
	p.window_words = cfg->window_words;
	p.flags = cfg->serial_tick ? TG_F_SERIAL_TICK : 0;
	p.ram_below_4g = low;
	p.ram_above_4g = vm->mem.size - low;
	p.net_mmio = vm->nnets ? hv_net_mmio_base(vm->nets[0]) : 0;
	p.blk_mmio = vm->nblks ? hv_blk_mmio_base(vm->blks[0]) : 0;
	p.ip = cfg->ip;
	p.netmask = cfg->netmask;
	p.gateway = cfg->gateway;
	p.blk_first = cfg->blk_first;
	p.blk_count = cfg->blk_count;
	p.blk_rate = cfg->blk_rate;
	p.io_flags = cfg->blk_verify_only ? TG_IO_F_BLK_VERIFY_ONLY : 0;
	rc = hv_mem_write(vm, TG_PARAMS_GPA, &p, sizeof(p));
	if (!rc)
		rc = boot_build_page_tables(vm);
	for (i = 0; !rc && i < vm->ncpus; i++)
		rc = boot_vcpu_entry64(&vm->vcpus[i], h.entry64, i, TG_BOOT_CASTOR, 0);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: setting up the test guest", vm->name);
		goto out;
	}
	vm->testdev.state_gpa = h.state_gpa;
	/* mbox_seq goes on from any earlier (refused) restore, as testdev's mbox_done does */
	tg->s.state_gpa = h.state_gpa;
	tg->s.rw_gpa = h.rw_gpa;
	tg->s.rw_bytes = h.rw_bytes;
	tg->loaded = true;
	vm->booted = true;
	LOG_INFO("vm %s: test guest loaded: %zu bytes, entry 0x%" PRIx64 ", wss %" PRIu64
		 " pages/vCPU, tsc %u kHz",
		 vm->name, len, h.entry64, wss_pages, khz);
out:
	free(img);
	return rc;
}

bool hv_tg_is_loaded(struct hv_vm *vm)
{
	return vm->tg && vm->tg->loaded;
}

static int read_params(struct hv_vm *vm, struct tg_params *p)
{
	if (!hv_tg_is_loaded(vm))
		return -EINVAL;
	return hv_mem_read(vm, TG_PARAMS_GPA, p, sizeof(*p));
}

int hv_tg_vcpu(struct hv_vm *vm, uint32_t idx, struct hv_tg_vcpu *out)
{
	struct tg_vcpu_state st;
	struct hv_testdev_vcpu *tv;
	int rc;

	if (!hv_tg_is_loaded(vm) || idx >= vm->ncpus)
		return -EINVAL;
	rc = hv_mem_read(vm, vm->tg->s.state_gpa + (uint64_t)idx * TG_PAGE_SIZE, &st, sizeof(st));
	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->counter = st.counter;
	out->out_seq = st.out_seq;
	pthread_mutex_lock(&vm->testdev.lock);
	tv = &vm->testdev.vcpu[idx];
	out->outputs_seen = tv->outputs;
	out->order_errors = tv->order_errors;
	out->ready = tv->ready;
	out->faulted = tv->faulted;
	out->fault = tv->fault;
	pthread_mutex_unlock(&vm->testdev.lock);
	return 0;
}

static void deadline_after(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000ull);
	ts->tv_nsec = (long)(ns % 1000000000ull);
}

int hv_tg_io_state(struct hv_vm *vm, struct tg_io_state *out)
{
	if (!hv_tg_is_loaded(vm))
		return -EINVAL;
	return hv_mem_read(vm, TG_IO_STATE_GPA, out, sizeof(*out));
}

int hv_tg_io(struct hv_vm *vm, struct hv_tg_io *out)
{
	struct tg_io_state io;
	int rc = hv_tg_io_state(vm, &io);

	if (rc < 0)
		return rc;
	*out = (struct hv_tg_io){
		.net_up = io.net_up == TG_READY_MAGIC,
		.blk_up = io.blk_up == TG_READY_MAGIC,
		.udp_answered = io.udp_answered,
		.tcp_answered = io.tcp_answered,
		.tcp_conns = io.tcp_conns,
		.tcp_retransmits = io.tcp_retransmits,
		.icmp_replies = io.icmp_replies,
		.blk_written = io.blk_written,
		.blk_verified = io.blk_verified,
		.blk_bad = io.blk_bad,
		.blk_io_errors = io.blk_io_errors,
		.blk_generation = io.blk_generation,
		.blk_next = io.blk_next,
	};
	return 0;
}

int hv_tg_wait_ready(struct hv_vm *vm, uint64_t timeout_ns)
{
	struct hv_testdev *t = &vm->testdev;
	struct timespec dl;
	int rc = 0;

	deadline_after(&dl, timeout_ns);
	pthread_mutex_lock(&t->lock);
	for (;;) {
		uint32_t i, ready = 0;
		bool faulted = false;

		for (i = 0; i < vm->ncpus; i++) {
			ready += t->vcpu[i].ready;
			faulted |= t->vcpu[i].faulted;
		}
		if (faulted) {
			rc = -EIO;
			break;
		}
		if (ready == vm->ncpus)
			break;
		if (pthread_cond_timedwait(&t->cond, &t->lock, &dl) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int hv_tg_set_rates(struct hv_vm *vm, uint64_t rate, uint64_t out_rate)
{
	int rc;

	if (!hv_tg_is_loaded(vm))
		return -EINVAL;
	rc = hv_mem_write(vm, TG_PARAMS_GPA + offsetof(struct tg_params, rate), &rate,
			  sizeof(rate));
	if (!rc)
		rc = hv_mem_write(vm, TG_PARAMS_GPA + offsetof(struct tg_params, out_rate),
				  &out_rate, sizeof(out_rate));
	return rc;
}

uint32_t hv_tg_guest_ip(struct hv_vm *vm)
{
	struct tg_params p;

	return read_params(vm, &p) < 0 ? 0 : p.ip;
}

int hv_tg_scratch(struct hv_vm *vm, uint64_t *first_pfn_out, uint64_t *end_pfn_out)
{
	struct tg_params p;
	int rc = read_params(vm, &p);

	if (rc < 0)
		return rc;
	*first_pfn_out = tg_scratch_base(p.ncpus, p.wss_pages) / TG_PAGE_SIZE;
	*end_pfn_out = p.ram_below_4g / TG_PAGE_SIZE;
	return 0;
}

/* Post one mailbox command and wait for vCPU 0 to report it done; its status. */
static int mailbox_run(struct hv_vm *vm, struct tg_mailbox *mb, uint64_t timeout_ns)
{
	struct hv_testdev *t = &vm->testdev;
	struct timespec dl;
	uint64_t seq;
	uint32_t status;
	int rc;

	if (!hv_tg_is_loaded(vm))
		return -EINVAL;
	seq = ++vm->tg->s.mbox_seq;
	/* arguments first, seq last: the guest acts when seq changes */
	rc = hv_mem_write(vm, TG_MAILBOX_GPA + 8, (uint8_t *)mb + 8, sizeof(*mb) - 8);
	if (rc < 0)
		return rc;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	rc = hv_mem_write(vm, TG_MAILBOX_GPA, &seq, sizeof(seq));
	if (rc < 0)
		return rc;
	deadline_after(&dl, timeout_ns);
	pthread_mutex_lock(&t->lock);
	while (t->mbox_done != (uint32_t)seq && rc == 0)
		if (pthread_cond_timedwait(&t->cond, &t->lock, &dl) == ETIMEDOUT)
			rc = -ETIMEDOUT;
	pthread_mutex_unlock(&t->lock);
	if (rc < 0) {
		LOG_ERR("vm %s: mailbox command %u (seq %" PRIu64 ") not done in time", vm->name,
			mb->cmd, seq);
		return rc;
	}
	rc = hv_mem_read(vm, TG_MAILBOX_GPA + offsetof(struct tg_mailbox, status), &status,
			 sizeof(status));
	if (rc < 0)
		return rc;
	return status == TG_MBOX_OK ? 0 : status == TG_MBOX_FAILED ? -EIO : -EINVAL;
}

int hv_tg_dirty_range(struct hv_vm *vm, uint64_t first_pfn, uint64_t count, uint64_t stride,
		      uint64_t value, uint64_t timeout_ns)
{
	struct tg_mailbox mb = {.cmd = TG_CMD_DIRTY_RANGE,
				.first = first_pfn,
				.count = count,
				.stride = stride,
				.value = value};

	return mailbox_run(vm, &mb, timeout_ns);
}

int hv_tg_mailbox(struct hv_vm *vm, uint32_t cmd, uint64_t timeout_ns)
{
	struct tg_mailbox mb = {.cmd = cmd};

	return mailbox_run(vm, &mb, timeout_ns);
}

int hv_tg_housekeeping(struct hv_vm *vm, struct util_bitmap *out)
{
	if (!hv_tg_is_loaded(vm) || out->nbits != vm->mem.pages)
		return -EINVAL;
	util_bitmap_clear_all(out);
	/* parameter block, mailbox, boot GDT, boot stacks, page tables (A/D bits) */
	util_bitmap_set_range(out, 0, TG_LOAD_ADDR / TG_PAGE_SIZE);
	util_bitmap_set_range(out, vm->tg->s.rw_gpa / TG_PAGE_SIZE,
			      (vm->tg->s.rw_bytes + TG_PAGE_SIZE - 1) / TG_PAGE_SIZE);
	return 0;
}

void hv_tg_set_output_cb(struct hv_vm *vm, hv_tg_output_fn cb, void *arg)
{
	pthread_mutex_lock(&vm->testdev.lock);
	vm->testdev.output_cb = cb;
	vm->testdev.output_arg = arg;
	pthread_mutex_unlock(&vm->testdev.lock);
}
