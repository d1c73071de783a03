/*
 * Kernel images made byte by byte from the boot protocol (Documentation/arch/
 * x86/boot.rst) and the ELF spec, for the tests of the Linux loader
 * (unit_boot, unit_linux_load): a bzImage with a 64 KiB file and a vmlinux
 * with one PT_LOAD segment and, optionally, Xen's PVH entry note.
 */
#include "tests/unit/kernel_images.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <stdlib.h>
#include <string.h>

void kimg_put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}
void kimg_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* ---- a bzImage as the boot protocol describes it ----------------------------------------- */

uint8_t *bzimage(uint16_t version, uint16_t xloadflags)
{
	uint8_t *b = calloc(1, BZ_LEN);

	b[0x1f1] = BZ_SECTS;
	kimg_put16(b + 0x1fe, 0xaa55);
	b[0x201] = 0x6a; /* header ends at 0x26c */
	kimg_put32(b + 0x202, 0x53726448);
	kimg_put16(b + 0x206, version);
	b[0x211] = LOADED_HIGH;
	kimg_put32(b + 0x1f4, (BZ_LEN - (BZ_SECTS + 1) * 512) / 16); /* syssize */
	kimg_put32(b + 0x214, 0x100000);			     /* code32_start */
	kimg_put32(b + 0x22c, 0x7fffffff);			     /* initrd_addr_max */
	kimg_put32(b + 0x230, 0x200000);			     /* kernel_alignment */
	b[0x234] = 1;						     /* relocatable */
	kimg_put16(b + 0x236, xloadflags);
	kimg_put32(b + 0x238, 2047);	  /* cmdline_size */
	put64(b + 0x258, 0x1000000);	  /* pref_address */
	kimg_put32(b + 0x260, 20u << 20); /* init_size */
	return b;
}

/* ---- an ELF vmlinux: one PT_LOAD, one PT_NOTE with Xen's PVH entry -------------------------- */

uint8_t *vmlinux(bool with_note)
{
	uint8_t *b = calloc(1, ELF_LEN);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	Elf64_Phdr ph[2];

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = ELF_PADDR + 0x40; /* phys_startup_64 */
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 2;
	memset(ph, 0, sizeof(ph));
	ph[0].p_type = PT_LOAD;
	ph[0].p_offset = ELF_LOAD_AT;
	ph[0].p_vaddr = 0xffffffff81000000ull;
	ph[0].p_paddr = ELF_PADDR;
	ph[0].p_filesz = 0x1000;
	ph[0].p_memsz = 0x300000; /* bss */
	ph[1].p_type = PT_NOTE;
	ph[1].p_offset = ELF_NOTE_AT;
	ph[1].p_filesz = with_note ? 12 + 4 + 4 : 0;
	memcpy(b + sizeof(*eh), ph, sizeof(ph));
	kimg_put32(b + ELF_NOTE_AT, 4);	     /* namesz */
	kimg_put32(b + ELF_NOTE_AT + 4, 4);  /* descsz */
	kimg_put32(b + ELF_NOTE_AT + 8, 18); /* XEN_ELFNOTE_PHYS32_ENTRY */
	memcpy(b + ELF_NOTE_AT + 12, "Xen", 4);
	kimg_put32(b + ELF_NOTE_AT + 16, (uint32_t)ELF_PADDR + 0x100);
	return b;
}
