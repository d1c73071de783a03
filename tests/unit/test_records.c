/*
 * The record set of a stream is checked against the VM before anything of
 * it is applied (snapshot_check_records): a malformed epoch -- a repeated or
 * missing vCPU, a VCPU without its MSRs, a second IRQCHIP, a device this VM
 * does not have, a device twice, a required device missing -- is refused
 * whole, so the twin's RAM and state stay as they were. No KVM: the VM is a
 * struct hv_vm made by hand with two vCPUs and fake devices, and the loads of
 * the fake devices count, so the test also proves that checking loads nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/devices/persist.h"
#include "hypervisor/hv_int.h"

static unsigned loads;

static int fake_save(void *dev, Castor__DeviceState *out, struct persist_mem *mem)
{
	(void)dev, (void)out, (void)mem;
	return 0;
}

static int fake_load(void *dev, const Castor__DeviceState *in, char *why, size_t why_len)
{
	(void)dev, (void)in, (void)why, (void)why_len;
	loads++;
	return 0;
}

static const struct persist_ops serial_ops = {
	.kind = CASTOR__DEVICE_STATE__STATE_SERIAL, .save = fake_save, .load = fake_load};
static const struct persist_ops virtio_ops = {.kind = CASTOR__DEVICE_STATE__STATE_VIRTIO,
					       .required = true,
					       .save = fake_save,
					       .load = fake_load};

/* A stream being built: records appended as the format frames them. */
struct buf {
	uint8_t b[64 << 10];
	size_t n;
};

static void rec(struct buf *s, uint32_t type, const void *body, uint32_t len)
{
	uint32_t hdr[2] = {type, len};
	size_t pad = (len + 7u) & ~7u;

	assert_true(s->n + 8 + pad <= sizeof(s->b));
	memcpy(s->b + s->n, hdr, 8);
	memset(s->b + s->n + 8, 0, pad);
	memcpy(s->b + s->n + 8, body, len);
	s->n += 8 + pad;
}

static void vcpu(struct buf *s, uint32_t idx)
{
	static struct hv_vcpu_rec v;
	uint32_t msrs[2] = {idx, 0};

	memset(&v, 0, sizeof(v));
	v.index = idx;
	rec(s, HV_REC_VCPU, &v, sizeof(v));
	rec(s, HV_REC_VCPU_MSRS, msrs, sizeof(msrs));
}

static void device(struct buf *s, const char *id, int serial)
{
	Castor__DeviceState d = CASTOR__DEVICE_STATE__INIT;
	Castor__SerialState ser = CASTOR__SERIAL_STATE__INIT;
	Castor__VirtioMmioState vio = CASTOR__VIRTIO_MMIO_STATE__INIT;
	uint8_t out[512];
	size_t n;

	d.id = (char *)id;
	if (serial) {
		d.state_case = CASTOR__DEVICE_STATE__STATE_SERIAL;
		d.serial = &ser;
	} else {
		d.state_case = CASTOR__DEVICE_STATE__STATE_VIRTIO;
		d.virtio = &vio;
	}
	n = castor__device_state__pack(&d, out);
	rec(s, HV_REC_DEVICE, out, (uint32_t)n);
}

static void end(struct buf *s)
{
	uint8_t e[24] = {0};

	rec(s, HV_REC_END, e, sizeof(e));
}

static struct hv_vm *fake_vm(void)
{
	static int dev_a, dev_b, dev_c;
	struct hv_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->ncpus = 2;
	assert_int_equal(persist_register(vm, &serial_ops, &dev_a, "serial0", 0), 0);
	assert_int_equal(persist_register(vm, &virtio_ops, &dev_b, "net0", 1), 0);
	assert_int_equal(persist_register(vm, &virtio_ops, &dev_c, "blk0", 2), 0);
	return vm;
}

/* A whole, good record set: 2 vCPUs, the chip records, each device once. */
static void good(struct buf *s)
{
	uint8_t chip[8] = {0};

	s->n = 0;
	rec(s, HV_REC_PAGES, chip, sizeof(chip));
	vcpu(s, 0);
	vcpu(s, 1);
	rec(s, HV_REC_IRQCHIP, chip, sizeof(chip));
	rec(s, HV_REC_PIT, chip, sizeof(chip));
	rec(s, HV_REC_CLOCK, chip, sizeof(chip));
	device(s, "serial0", 1);
	device(s, "net0", 0);
	device(s, "blk0", 0);
}

static void expect(struct hv_vm *vm, struct buf *s, const char *want)
{
	char why[256] = "";
	int rc;

	end(s);
	rc = snapshot_check_records(vm, s->b, s->n, 1, why, sizeof(why));
	if (!want) {
		assert_int_equal(rc, 0);
		return;
	}
	assert_int_equal(rc, -EINVAL);
	if (!strstr(why, want))
		fail_msg("refusal '%s' lacks '%s'", why, want);
}

static void record_sets(void **state)
{
	struct hv_vm *vm = fake_vm();
	struct buf *s = calloc(1, sizeof(*s));
	uint8_t chip[8] = {0};

	(void)state;
	assert_non_null(s);
	good(s);
	expect(vm, s, NULL);

	good(s);
	vcpu(s, 1); /* a vCPU twice */
	expect(vm, s, "bad or repeated VCPU record");

	s->n = 0;
	vcpu(s, 0); /* vCPU 1 missing */
	device(s, "net0", 0);
	device(s, "blk0", 0);
	expect(vm, s, "state of some vCPUs is missing");

	good(s);
	vcpu(s, 2); /* an index past the VM's vCPUs */
	expect(vm, s, "bad or repeated VCPU record");

	{
		static struct hv_vcpu_rec v;

		s->n = 0;
		memset(&v, 0, sizeof(v));
		v.index = 0;
		rec(s, HV_REC_VCPU, &v, sizeof(v));
		rec(s, HV_REC_PIT, chip, sizeof(chip)); /* VCPU without its MSRs */
		expect(vm, s, "VCPU 0 without its VCPU_MSRS");
	}

	good(s);
	rec(s, HV_REC_IRQCHIP, chip, sizeof(chip));
	expect(vm, s, "a second IRQCHIP record");

	good(s);
	device(s, "net0", 0); /* a device twice */
	expect(vm, s, "device net0 has two DEVICE records");

	good(s);
	device(s, "net1", 0); /* a device this VM does not have */
	expect(vm, s, "this VM has none by that name");

	good(s);
	device(s, "blk9", 1);
	expect(vm, s, "this VM has none by that name");

	s->n = 0;
	vcpu(s, 0);
	vcpu(s, 1);
	device(s, "net0", 0); /* blk0, required, missing */
	expect(vm, s, "blk0 is missing");

	s->n = 0;
	vcpu(s, 0);
	vcpu(s, 1);
	device(s, "net0", 1); /* serial state for a virtio device */
	expect(vm, s, "device net0: the snapshot holds serial state");

	/* the serial port is not required: a stream without it is whole */
	s->n = 0;
	vcpu(s, 1);
	vcpu(s, 0);
	device(s, "blk0", 0);
	device(s, "net0", 0);
	expect(vm, s, NULL);

	assert_int_equal(loads, 0); /* checking applies nothing */
	free(s);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(record_sets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
