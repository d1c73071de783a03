/*
 * Where a Linux boot puts things: the kernel where its image says, the
 * command line and boot structures below 1 MiB (linux_boot.h), and the initrd
 * as high as the kernel may look for it, below the 3 GiB hole and above the
 * kernel. Every refusal says what did not fit and how much room there was.
 */
#define LOG_TAG "boot"
#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/hv_vm.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define MIB(x)		 ((unsigned long long)((x) >> 20))
#define INITRD_ALIGN	 0x200000ull /* 2 MiB, as bootloaders do: huge-page friendly */
#define INITRD_ALIGN_MIN 0x1000ull
#define KERNEL_HEADROOM	 (16ull << 20) /* early page tables, the decompressor's heap */

int boot_linux_plan(const struct boot_kernel *k, uint64_t mem_bytes, uint64_t initrd_size,
		    size_t cmdline_len, struct boot_plan *out, char *why, size_t why_len)
{
	uint64_t top, gpa;

	memset(out, 0, sizeof(*out));
	out->lowmem_end = mem_bytes < HV_HOLE_START ? mem_bytes : HV_HOLE_START;
	out->pvh = k->pvh_entry != 0;
	if (cmdline_len > k->cmdline_max)
		return util_why(why, why_len, -E2BIG,
				"the command line is %zu bytes; this kernel takes at most %u",
				cmdline_len, k->cmdline_max);
	out->cmdline_len = cmdline_len;
	if (k->hi > out->lowmem_end)
		return util_why(why, why_len, -ENOMEM,
				"the kernel needs RAM up to %llu MiB once unpacked (%s), but the "
				"guest has %llu MiB below the 3 GiB hole: give it more --mem",
				MIB(k->hi + (1ull << 20) - 1), boot_kernel_kind_str(k->kind),
				MIB(out->lowmem_end));
	if (!initrd_size)
		return 0;
	if (initrd_size > mem_bytes)
		return util_why(why, why_len, -E2BIG,
				"the initrd (%llu MiB) is larger than the guest's RAM (%llu MiB)",
				MIB(initrd_size + (1ull << 20) - 1), MIB(mem_bytes));
	top = out->lowmem_end;
	if (k->initrd_addr_max < top - 1)
		top = k->initrd_addr_max + 1;
	/* the kernel unpacks the initrd into RAM it allocates above itself: leave it room */
	if (top < k->hi + KERNEL_HEADROOM || top - k->hi - KERNEL_HEADROOM < initrd_size)
		return util_why(why, why_len, -ENOMEM,
				"the initrd (%llu MiB) does not fit between the kernel (up to "
				"%llu MiB) and the highest address the kernel reads an initrd "
				"from (%llu MiB): give the guest more --mem",
				MIB(initrd_size + (1ull << 20) - 1), MIB(k->hi), MIB(top));
	gpa = (top - initrd_size) & ~(INITRD_ALIGN - 1);
	if (gpa < k->hi + KERNEL_HEADROOM)
		gpa = (top - initrd_size) & ~(INITRD_ALIGN_MIN - 1);
	out->initrd_gpa = gpa;
	out->initrd_size = initrd_size;
	return 0;
}
