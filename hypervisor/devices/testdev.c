/*
 * The Castor test device: four 32-bit MMIO registers through which the test
 * guest reports outputs, mailbox completions, readiness and faults
 * (hypervisor/guest/abi.h). Outputs are checked for order per vCPU and handed
 * to the output callback, the seam where output commit (netbuffer) attaches.
 */
#define LOG_TAG "testdev"
#include "hypervisor/hv_int.h"
#include "hypervisor/guest/abi.h"

#include <stddef.h>
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
		LOG_WARN("vm %s: vcpu %u: output %u does not match its state page", t->vm->name,
			 idx, low);
		pthread_mutex_lock(&t->lock);
		v->order_errors++;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	seq = st.out_seq - 1;
	pthread_mutex_lock(&t->lock);
	if (seq != v->next_seq) {
		LOG_WARN("vm %s: vcpu %u: output %llu, expected %llu", t->vm->name, idx,
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
