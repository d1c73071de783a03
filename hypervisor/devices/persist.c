/*
 * Device state in the stream: one DEVICE record (a protobuf castor.DeviceState,
 * proto/state.proto) per device that has state. Each device saves and loads
 * its own state behind its persist_ops (devices/persist.h); this file walks
 * the VM's devices, frames the records, and on restore matches each record to
 * the device of the same id and checks that no required device is missing.
 */
#define LOG_TAG "persist"
#include "hypervisor/devices/persist.h"

#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/hv_int.h"

_Static_assert(HV_MAX_DEVS <= 32, "persist_load_device's `seen` has a bit per device");

struct persist_chunk {
	struct persist_chunk *next;
	alignas(max_align_t) unsigned char data[];
};

struct persist_mem {
	struct persist_chunk *chunks;
};

void *persist_alloc(struct persist_mem *mem, size_t size)
{
	struct persist_chunk *c = calloc(1, sizeof(*c) + size);

	if (!c)
		return NULL;
	c->next = mem->chunks;
	mem->chunks = c;
	return c->data;
}

void *persist_new(struct persist_mem *mem, const ProtobufCMessageDescriptor *desc)
{
	void *msg = persist_alloc(mem, desc->sizeof_message);

	if (msg)
		protobuf_c_message_init(desc, msg);
	return msg;
}

static void mem_dispose_chunks(struct persist_mem *mem)
{
	while (mem->chunks) {
		struct persist_chunk *c = mem->chunks;

		mem->chunks = c->next;
		free(c);
	}
}

int persist_register(struct hv_vm *vm, const struct persist_ops *ops, void *dev, const char *id,
		     unsigned rank)
{
	unsigned at;

	if (vm->ndevs >= HV_MAX_DEVS)
		return -ENOSPC;
	/* after every device of the same or a lower rank: registration order within a rank */
	for (at = vm->ndevs; at > 0 && vm->devs[at - 1].rank > rank; at--)
		vm->devs[at] = vm->devs[at - 1];
	vm->devs[at] = (struct hv_dev){.ops = ops, .dev = dev, .id = id, .rank = rank};
	vm->ndevs++;
	return 0;
}

static int write_device(struct hv_stream_writer *w, const Castor__DeviceState *d)
{
	size_t len = castor__device_state__get_packed_size(d);
	uint8_t *buf = malloc(len ? len : 1);
	struct iovec iov = {buf, len};
	int rc;

	if (!buf)
		return -ENOMEM;
	castor__device_state__pack(d, buf);
	rc = hv_stream_write(w, HV_REC_DEVICE, &iov, 1);
	free(buf);
	return rc;
}

static int save_device(struct hv_vm *vm, const struct hv_dev *dv, struct hv_stream_writer *w)
{
	Castor__DeviceState d = CASTOR__DEVICE_STATE__INIT;
	struct persist_mem mem = {NULL};
	int rc;

	rc = dv->ops->save(dv->dev, &d, &mem);
	if (rc < 0) {
		LOG_ERRNO(rc, "vm %s: %s: saving its state", vm->name, dv->id);
		goto out;
	}
	d.id = (char *)dv->id; /* protobuf-c's string fields are not const; it is only read */
	rc = write_device(w, &d);
out:
	mem_dispose_chunks(&mem);
	return rc;
}

int persist_save_devices(struct hv_vm *vm, struct hv_stream_writer *w)
{
	unsigned i;
	int rc = 0;

	for (i = 0; !rc && i < vm->ndevs; i++)
		if (!vm->devs[i].ops->has_state || vm->devs[i].ops->has_state(vm->devs[i].dev))
			rc = save_device(vm, &vm->devs[i], w);
	return rc;
}

/* The name of a DeviceState.state member ("serial", "virtio"), for errors; NULL if unknown. */
static const char *kind_str(Castor__DeviceState__StateCase kind)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&castor__device_state__descriptor, kind);

	return f ? f->name : NULL;
}

/*
 * Decode a DEVICE record and find this VM's device it belongs to: by id, of
 * the same kind, not seen before in this stream. *d_out is the caller's to free
 * (also on failure, when not NULL).
 */
static int match_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t seen,
			Castor__DeviceState **d_out, const struct hv_dev **dv_out, char *why,
			size_t why_len)
{
	Castor__DeviceState *d = castor__device_state__unpack(NULL, len, body);
	const struct hv_dev *dv = NULL;
	unsigned i;
	int rc = 0;

	*d_out = d;
	if (!d || !d->id)
		FAIL_WHY("a DEVICE record does not decode");
	if (d->state_case == CASTOR__DEVICE_STATE__STATE__NOT_SET || !kind_str(d->state_case))
		FAIL_WHY("device %s: unknown kind of state", d->id);
	for (i = 0; i < vm->ndevs && !dv; i++)
		if (!strcmp(vm->devs[i].id, d->id))
			dv = &vm->devs[i];
	if (!dv)
		FAIL_WHY("the snapshot has device %s, this VM has none by that name (add it with "
			 "--net or --disk, in the same order)",
			 d->id);
	if (d->state_case != dv->ops->kind)
		FAIL_WHY("device %s: the snapshot holds %s state, this VM's device is %s", d->id,
			 kind_str(d->state_case), kind_str(dv->ops->kind));
	if (seen >> (dv - vm->devs) & 1)
		FAIL_WHY("device %s has two DEVICE records", d->id);
	*dv_out = dv;
out:
	return rc;
}

/* A DEVICE record matched to this VM's device and, when `apply`, loaded into it. */
static int take_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t *seen,
		       bool apply, char *why, size_t why_len)
{
	Castor__DeviceState *d = NULL;
	const struct hv_dev *dv = NULL;
	int rc = match_device(vm, body, len, *seen, &d, &dv, why, why_len);

	if (!rc && apply)
		rc = dv->ops->load(dv->dev, d, why, why_len);
	if (!rc)
		*seen |= 1u << (dv - vm->devs);
	if (d)
		castor__device_state__free_unpacked(d, NULL);
	return rc;
}

int persist_check_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t *seen,
			 char *why, size_t why_len)
{
	return take_device(vm, body, len, seen, false, why, why_len);
}

int persist_load_device(struct hv_vm *vm, const uint8_t *body, uint32_t len, uint32_t *seen,
			char *why, size_t why_len)
{
	return take_device(vm, body, len, seen, true, why, why_len);
}

int persist_devices_check(struct hv_vm *vm, uint32_t seen, char *why, size_t why_len)
{
	const char *missing = NULL;
	unsigned i, required = 0, found = 0;

	for (i = 0; i < vm->ndevs; i++) {
		if (!vm->devs[i].ops->required)
			continue;
		required++;
		if (seen >> i & 1)
			found++;
		else if (!missing)
			missing = vm->devs[i].id;
	}
	if (!missing)
		return 0;
	/* only the virtio devices are required: the words are the ones users know */
	snprintf(why, why_len,
		 "the snapshot has %u virtio devices, this VM %u: %s is missing (give the same "
		 "--net and --disk options, in the same order)",
		 found, required, missing);
	return -EINVAL;
}

void persist_devices_restart(struct hv_vm *vm)
{
	unsigned i;

	for (i = 0; i < vm->ndevs; i++)
		if (vm->devs[i].ops->restart)
			vm->devs[i].ops->restart(vm->devs[i].dev);
}
