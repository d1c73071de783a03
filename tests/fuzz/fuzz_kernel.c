/*
 * Kernel images (boot_kernel_parse) and the boot plan on arbitrary bytes. The
 * first byte picks a starting point -- raw bytes, or the bytes laid over a
 * valid bzImage setup header or ELF64 header -- so that short inputs reach deep
 * into both parsers. Rules: never crash or read out of bounds; an accepted
 * kernel's segments lie inside the file and at or above 1 MiB, its entries lie
 * inside the kernel; a refusal explains itself; a plan that is accepted fits
 * the RAM it was given.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/hv.h"
#include "tests/fuzz/fuzz.h"

#define IMG_MAX (64 * 1024)

static void template_bzimage(uint8_t *b)
{
	const uint32_t hdrs = 0x53726448, init_size = 1 << 20;
	const uint16_t flag = 0xaa55, version = 0x020f, xlf = XLF_KERNEL_64;

	b[0x1f1] = 4;
	memcpy(b + 0x1fe, &flag, 2);
	b[0x201] = 0x6a;
	memcpy(b + 0x202, &hdrs, 4);
	memcpy(b + 0x206, &version, 2);
	b[0x211] = LOADED_HIGH;
	memcpy(b + 0x236, &xlf, 2);
	memcpy(b + 0x260, &init_size, 4);
}

static void template_elf(uint8_t *b)
{
	Elf64_Ehdr eh = {0};

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_phoff = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 3;
	memcpy(b, &eh, sizeof(eh));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t img[IMG_MAX];
	struct boot_kernel k;
	struct boot_plan p;
	char why[256];
	size_t len, off = 0;
	unsigned i;
	int rc;

	if (size < 1)
		return 0;
	memset(img, 0, sizeof(img));
	switch (data[0] % 3) {
	case 1:
		template_bzimage(img);
		off = 0x1f1; /* the fuzz bytes land on the setup header and beyond */
		break;
	case 2:
		template_elf(img);
		off = 0x18; /* after e_ident, e_type, e_machine, e_version */
		break;
	default:
		break;
	}
	len = size - 1 > IMG_MAX - off ? IMG_MAX - off : size - 1;
	memcpy(img + off, data + 1, len);
	len += off;
	if (data[0] % 3 == 1 && len < 0x300)
		len = 0x300;

	why[0] = 0;
	rc = boot_kernel_parse(img, len, &k, why, sizeof(why));
	if (rc < 0) {
		FUZZ_CHECK(why[0] != 0);
		return 0;
	}
	FUZZ_CHECK(k.nseg >= 1 && k.nseg <= BOOT_MAX_SEGMENTS);
	for (i = 0; i < k.nseg; i++) {
		FUZZ_CHECK(k.seg[i].file_off <= len && k.seg[i].filesz <= len - k.seg[i].file_off);
		FUZZ_CHECK(k.seg[i].filesz <= k.seg[i].memsz);
		FUZZ_CHECK(k.seg[i].gpa >= BOOT_LINUX_KERNEL_GPA);
		FUZZ_CHECK(k.seg[i].gpa >= k.lo && k.seg[i].gpa + k.seg[i].memsz <= k.hi);
	}
	FUZZ_CHECK(k.lo < k.hi);
	FUZZ_CHECK(k.entry64 || k.pvh_entry);
	FUZZ_CHECK(!k.entry64 || (k.entry64 >= k.lo && k.entry64 < k.hi));
	FUZZ_CHECK(!k.pvh_entry || (k.pvh_entry >= k.lo && k.pvh_entry < k.hi));
	FUZZ_CHECK(k.cmdline_max < BOOT_LINUX_CMDLINE_MAX);

	/* a plan for a RAM size and initrd taken from the input */
	{
		uint64_t mem = (16ull << 20) << (data[size - 1] % 10);
		uint64_t initrd = (uint64_t)(data[size / 2] % 64) << 20;

		why[0] = 0;
		if (boot_linux_plan(&k, mem, initrd, size % 3000, &p, why, sizeof(why)) < 0) {
			FUZZ_CHECK(why[0] != 0);
			return 0;
		}
		FUZZ_CHECK(k.hi <= p.lowmem_end);
		FUZZ_CHECK(!initrd ||
			   (p.initrd_gpa >= k.hi && p.initrd_gpa + p.initrd_size <= p.lowmem_end &&
			    p.initrd_gpa + p.initrd_size - 1 <= k.initrd_addr_max));
	}
	return 0;
}
