/*
 * The Castor test device: four 32-bit MMIO registers through which the test
 * guest reports outputs, mailbox completions, readiness and faults
 * (hypervisor/guest/abi.h). Outputs are checked for order per vCPU and handed
 * to the output callback, the seam where output commit (netbuffer) attaches.
 */
#define LOG_TAG "testdev"
#include "hypervisor/hv_int.h"
#include "hypervisor/devices/persist.h"
#include "hypervisor/guest/abi.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

void testdev_init(struct hv_testdev *t, struct hv_vm *vm)
{
	memset(t, 0, sizeof(*t));
	t->vm = vm;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
}

void testdev_dispose(struct hv_testdev *t)
{
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

static void on_output(struct hv_testdev *t, uint32_t idx, uint32_t low)
{
	struct hv_testdev_vcpu *v = &t->vcpu[idx];
	struct tg_vcpu_state st;
	hv_tg_output_fn cb;
	uint64_t seq;
	void *arg;

	if (hv_mem_read(t->vm, t->state_gpa + (uint64_t)idx * TG_PAGE_SIZE, &st, sizeof(st)) < 0 ||
	    st.out_seq == 0 || (uint32_t)(st.out_seq - 1) != low) {
		LOG_GUEST_WARN("vm %s: vcpu %u: output %u does not match its state page",
			       t->vm->name, idx, low);
		pthread_mutex_lock(&t->lock);
		v->order_errors++;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	seq = st.out_seq - 1;
	pthread_mutex_lock(&t->lock);
	if (seq != v->next_seq) {
		LOG_GUEST_WARN("vm %s: vcpu %u: output %llu, expected %llu", t->vm->name, idx,
			       (unsigned long long)seq, (unsigned long long)v->next_seq);
		v->order_errors++;
	}
	v->next_seq = seq + 1;
	v->outputs++;
	cb = t->output_cb;
	arg = t->output_arg;
	pthread_mutex_unlock(&t->lock);
	if (cb)
		cb(arg, idx, seq, st.out_counter);
}

void testdev_access(void *dev, struct hv_vcpu *vcpu, uint64_t offset, uint8_t *data, uint32_t len,
		    bool is_write)
{
	struct hv_testdev *t = dev;
	uint32_t value = 0;

	if (!is_write || !vcpu) { /* outputs are per vCPU: ignore accesses from elsewhere */
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (len != 4)
		return;
	memcpy(&value, data, 4);
	switch ((uint32_t)offset) {
	case TG_REG_OUTPUT:
		on_output(t, vcpu->idx, value);
		break;
	case TG_REG_MBOX_DONE:
		pthread_mutex_lock(&t->lock);
		t->mbox_done = value;
		t->mbox_reports++;
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
		break;
	case TG_REG_READY:
		pthread_mutex_lock(&t->lock);
		t->vcpu[vcpu->idx].ready = true;
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
		LOG_DBG("vm %s: vcpu %u ready", t->vm->name, vcpu->idx);
		break;
	case TG_REG_FAULT:
		pthread_mutex_lock(&t->lock);
		t->vcpu[vcpu->idx].faulted = true;
		t->vcpu[vcpu->idx].fault = value;
		pthread_cond_broadcast(&t->cond);
		pthread_mutex_unlock(&t->lock);
		LOG_ERR("vm %s: vcpu %u: guest fault, vector %u at cpl %u", t->vm->name, vcpu->idx,
			value & 0xff, (value >> 8) & 0xff);
		break;
	default:
		break;
	}
}

/*
 * ---- state in snapshots: the output checks, the mailbox and the host's view
 * of the test guest (so hv_tg_* work on a restored VM) ----
 */

/* A vCPU's saved fields, listed once so that save and load cannot drift apart. */
#define VCPU_FIELDS(X) X(next_seq) X(outputs) X(order_errors) X(ready) X(faulted) X(fault)
#define VCPU_SAVE(f)   v[i].f = t->vcpu[i].f;
#define VCPU_LOAD(f)   t->vcpu[i].f = (__typeof__(t->vcpu[i].f))s->vcpu[i]->f;

static bool testdev_has_state(void *dev)
{
	struct hv_testdev *t = dev;

	return hv_tg_is_loaded(t->vm); /* no test guest, nothing to remember */
}

static int testdev_save(void *dev, Castor__DeviceState *out, struct persist_mem *mem)
{
	struct hv_testdev *t = dev;
	struct hv_vm *vm = t->vm;
	struct testguest_saved g;
	Castor__TestDevState *s = persist_new(mem, &castor__test_dev_state__descriptor);
	Castor__TestDevVcpu *v = persist_alloc(mem, vm->ncpus * sizeof(*v));
	Castor__TestDevVcpu **vp = persist_alloc(mem, vm->ncpus * sizeof(*vp));
	uint32_t i;

	if (!s || !v || !vp)
		return -ENOMEM;
	if (!testguest_save(vm, &g))
		return -ENOENT; /* has_state said there was a test guest */
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < vm->ncpus; i++) {
		castor__test_dev_vcpu__init(&v[i]);
		VCPU_FIELDS(VCPU_SAVE)
		vp[i] = &v[i];
	}
	s->mbox_done = t->mbox_done;
	s->mbox_reports = t->mbox_reports;
	pthread_mutex_unlock(&t->lock);
	s->n_vcpu = vm->ncpus;
	s->vcpu = vp;
	s->mbox_seq = g.mbox_seq;
	s->state_gpa = g.state_gpa;
	s->rw_gpa = g.rw_gpa;
	s->rw_bytes = g.rw_bytes;
	out->state_case = CASTOR__DEVICE_STATE__STATE_TESTDEV;
	out->testdev = s;
	return 0;
}

static int testdev_load(void *dev, const Castor__DeviceState *in, char *why, size_t why_len)
{
	struct hv_testdev *t = dev;
	struct hv_vm *vm = t->vm;
	const Castor__TestDevState *s = in->testdev;
	struct testguest_saved g = {.state_gpa = s->state_gpa,
				    .rw_gpa = s->rw_gpa,
				    .rw_bytes = s->rw_bytes,
				    .mbox_seq = s->mbox_seq};
	uint32_t i;
	int rc;

	if (s->n_vcpu != vm->ncpus) {
		snprintf(why, why_len, "testdev: %zu vCPUs in the snapshot, %u in the VM",
			 s->n_vcpu, vm->ncpus);
		return -EINVAL;
	}
	rc = testguest_restore(vm, &g); /* first: the one step that can fail */
	if (rc < 0) {
		snprintf(why, why_len, "testdev: %s", strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&t->lock);
	for (i = 0; i < vm->ncpus; i++) {
		VCPU_FIELDS(VCPU_LOAD)
	}
	t->mbox_done = s->mbox_done;
	t->mbox_reports = s->mbox_reports;
	t->state_gpa = s->state_gpa;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

const struct persist_ops testdev_persist_ops = {
	.kind = CASTOR__DEVICE_STATE__STATE_TESTDEV,
	.has_state = testdev_has_state,
	.save = testdev_save,
	.load = testdev_load,
};
