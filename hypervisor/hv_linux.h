/*
 * hv_linux.h: booting an unmodified Linux kernel (docs/guests.md). A vmlinux
 * with the PVH note is entered in 32-bit mode with a PVH start_info; a bzImage
 * (or a vmlinux without the note) through the 64-bit boot protocol with
 * boot_params. Either way the VMM builds the e820 map, places the command
 * line and the initrd, and describes the vCPUs, the IOAPIC and every
 * virtio-mmio device in ACPI tables (the stock kernel finds virtio-mmio devices
 * only there). Part of castor_hv's public header hv.h.
 *
 * Typical use: hv_linux_check() while parsing a command line (no VM needed),
 * then hv_vm_create(), add disks and NICs, hv_linux_load(), hv_vm_start().
 */
#ifndef CASTOR_HV_LINUX_H
#define CASTOR_HV_LINUX_H

#include <stddef.h>
#include <stdint.h>

struct hv_vm;

struct hv_linux_config {
	const char *kernel;  /* vmlinux or bzImage */
	const char *initrd;  /* NULL: none */
	const char *cmdline; /* NULL: empty */
};

/*
 * Read both files and check that they fit a guest of `mem_bytes`: 0, or
 * -errno with `why` naming the file and the problem (not a kernel, truncated,
 * an initrd larger than RAM, a command line too long for this kernel).
 */
int hv_linux_check(const struct hv_linux_config *cfg, uint64_t mem_bytes, char *why,
		   size_t why_len);

/*
 * Load the kernel, initrd, command line, boot structures and ACPI tables into
 * a created VM that has not run, and set vCPU 0's entry state (the others
 * wait for the kernel's INIT/SIPI). Add every device first: the ACPI tables
 * list the virtio devices present now. 0, or -errno with `why`.
 */
int hv_linux_load(struct hv_vm *vm, const struct hv_linux_config *cfg, char *why, size_t why_len);

#endif
