/* The port and MMIO buses: address ranges mapped to device access handlers. */
#define LOG_TAG "bus"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <string.h>

int bus_add(struct hv_bus *bus, uint64_t base, uint64_t len, hv_bus_access_fn access, void *dev)
{
	unsigned i;

	if (!len || base + len < base)
		return -EINVAL;
	if (bus->n >= HV_BUS_MAX)
		return -ENOSPC;
	for (i = 0; i < bus->n; i++) {
		struct hv_bus_range *r = &bus->ranges[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	bus->ranges[bus->n++] = (struct hv_bus_range){base, len, access, dev};
	return 0;
}

bool bus_dispatch(struct hv_bus *bus, struct hv_vcpu *vcpu, uint64_t addr, uint8_t *data,
		  uint32_t len, bool is_write)
{
	unsigned i;

	for (i = 0; i < bus->n; i++) {
		struct hv_bus_range *r = &bus->ranges[i];

		if (addr >= r->base && addr - r->base < r->len) {
			r->access(r->dev, vcpu, addr - r->base, data, len, is_write);
			return true;
		}
	}
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}

int hv_mmio_access(struct hv_vm *vm, uint64_t gpa, void *data, uint32_t len, bool is_write)
{
	if (len == 0 || len > 8)
		return -EINVAL;
	return bus_dispatch(&vm->mmio, NULL, gpa, data, len, is_write) ? 0 : -EFAULT;
}
