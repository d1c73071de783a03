/*
 * Recognising a Linux kernel image: a bzImage (Documentation/arch/x86/boot.rst,
 * the 64-bit boot protocol) or an uncompressed ELF vmlinux (its PT_LOAD
 * segments, and the Xen PVH note that gives a 32-bit entry point). The image
 * comes from a file the user named, so every offset and length in it is
 * checked before it is used: this is a parser with a fuzzer (fuzz_kernel).
 */
#define LOG_TAG "boot"
#include "hypervisor/boot/linux_boot.h"
#include "hypervisor/hv_vm.h"
#include "util/util.h"

#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#define BZ_BOOT_FLAG	  0xaa55u
#define BZ_HDR_MAGIC	  0x53726448u /* "HdrS" */
#define BZ_MIN_PROTOCOL	  0x020cu     /* 2.12: xloadflags, the 64-bit entry flag */
#define BZ_HDR_OFF	  0x1f1u
#define BZ_ENTRY64_OFF	  0x200u /* the 64-bit entry, from the protected-mode kernel's start */
#define XEN_NOTE_PHYS32	  18u	 /* XEN_ELFNOTE_PHYS32_ENTRY */
#define ELF_CMDLINE_MAX	  2047u	 /* COMMAND_LINE_SIZE - 1: no header says it for a vmlinux */
#define ELF_MAX_PHDRS	  64u
#define BZ_INITRD_MAX_OLD 0x37ffffffu /* initrd_addr_max before protocol 2.03 */

const char *boot_kernel_kind_str(enum boot_kernel_kind k)
{
	switch (k) {
	case BOOT_K_BZIMAGE:
		return "bzImage";
	case BOOT_K_ELF:
		return "ELF vmlinux";
	}
	return "?";
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static bool is_bzimage(const uint8_t *img, size_t len)
{
	return len >= 0x206 && get16(img + 0x1fe) == BZ_BOOT_FLAG &&
	       get32(img + 0x202) == BZ_HDR_MAGIC;
}

static bool is_elf(const uint8_t *img, size_t len)
{
	return len >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG);
}

static int parse_bzimage(const uint8_t *img, size_t len, struct boot_kernel *k, char *why,
			 size_t why_len)
{
	struct setup_header *h = &k->hdr;
	uint64_t setup_len, payload, start, hi;
	size_t end;

	/* the header ends at 0x202 + the byte at 0x201 (the jump over it) */
	end = 0x202u + img[0x201];
	if (end > len)
		return util_why(why, why_len, -EINVAL,
				"bzImage: the setup header ends at byte %zu, past the end of the "
				"file (%zu bytes): truncated",
				end, len);
	k->hdr_len = end - BZ_HDR_OFF;
	if (k->hdr_len > sizeof(*h))
		k->hdr_len = sizeof(*h);
	memcpy(h, img + BZ_HDR_OFF, k->hdr_len);
	k->protocol = h->version;
	if (h->version < BZ_MIN_PROTOCOL)
		return util_why(why, why_len, -ENOTSUP,
				"bzImage: boot protocol %u.%02u is older than 2.12, which a "
				"64-bit entry needs",
				h->version >> 8, h->version & 0xff);
	if (k->hdr_len < offsetof(struct setup_header, init_size) + sizeof(h->init_size))
		return util_why(why, why_len, -EINVAL,
				"bzImage: a protocol %u.%02u setup header cannot be %zu bytes",
				h->version >> 8, h->version & 0xff, k->hdr_len);
	if (!(h->loadflags & LOADED_HIGH))
		return util_why(why, why_len, -ENOTSUP,
				"bzImage: not loaded high (a zImage?): not supported");
	if (!(h->xloadflags & XLF_KERNEL_64))
		return util_why(why, why_len, -ENOTSUP,
				"bzImage: no 64-bit entry point (XLF_KERNEL_64 unset): a 32-bit "
				"kernel?");
	setup_len = ((uint64_t)(h->setup_sects ? h->setup_sects : 4) + 1) * 512;
	if (setup_len >= len)
		return util_why(why, why_len, -EINVAL,
				"bzImage: %llu bytes of setup code, but the file has %zu: "
				"truncated",
				(unsigned long long)setup_len, len);
	payload = len - setup_len;
	if (h->syssize && (uint64_t)h->syssize * 16 > payload)
		return util_why(why, why_len, -EINVAL,
				"bzImage: the header says %llu bytes of kernel, the file has %llu: "
				"truncated",
				(unsigned long long)h->syssize * 16, (unsigned long long)payload);
	if (payload <= BZ_ENTRY64_OFF)
		return util_why(why, why_len, -EINVAL, "bzImage: no kernel after the setup code");
	if (!h->init_size)
		return util_why(why, why_len, -EINVAL, "bzImage: init_size is 0");

	k->kind = BOOT_K_BZIMAGE;
	k->seg[0] = (struct boot_segment){.file_off = setup_len,
					  .filesz = payload,
					  .gpa = BOOT_LINUX_KERNEL_GPA,
					  .memsz = payload};
	k->nseg = 1;
	k->entry64 = BOOT_LINUX_KERNEL_GPA + BZ_ENTRY64_OFF;
	/*
	 * The decompressor runs where it was loaded and unpacks to pref_address
	 * (LOAD_PHYSICAL_ADDR) or above it: init_size bytes from there must be RAM.
	 */
	start = h->pref_address > BOOT_LINUX_KERNEL_GPA ? h->pref_address : BOOT_LINUX_KERNEL_GPA;
	if (start > (1ull << 40))
		return util_why(why, why_len, -EINVAL,
				"bzImage: preferred address 0x%llx with init_size %u is not a "
				"guest-physical range",
				(unsigned long long)h->pref_address, h->init_size);
	hi = start + h->init_size;
	if (hi < BOOT_LINUX_KERNEL_GPA + payload)
		hi = BOOT_LINUX_KERNEL_GPA + payload;
	k->lo = BOOT_LINUX_KERNEL_GPA;
	k->hi = hi;
	k->cmdline_max = h->cmdline_size ? h->cmdline_size : 255;
	if (k->cmdline_max > BOOT_LINUX_CMDLINE_MAX - 1)
		k->cmdline_max = BOOT_LINUX_CMDLINE_MAX - 1;
	k->initrd_addr_max = h->initrd_addr_max ? h->initrd_addr_max : BZ_INITRD_MAX_OLD;
	return 0;
}

/* The PVH entry in one PT_NOTE segment, if it has one. */
static int find_pvh_note(const uint8_t *img, uint64_t off, uint64_t size, uint64_t *entry_out,
			 char *why, size_t why_len)
{
	uint64_t pos = 0;

	while (size - pos >= 12) {
		const uint8_t *n = img + off + pos;
		uint64_t namesz = get32(n), descsz = get32(n + 4), type = get32(n + 8);
		uint64_t name_pad = (namesz + 3) & ~3ull, desc_pad = (descsz + 3) & ~3ull;

		if (name_pad > size - pos - 12 || desc_pad > size - pos - 12 - name_pad)
			return util_why(why, why_len, -EINVAL,
					"ELF: a note at offset %llu runs past its segment",
					(unsigned long long)(off + pos));
		if (namesz == 4 && !memcmp(n + 12, "Xen", 4) && type == XEN_NOTE_PHYS32) {
			const uint8_t *d = n + 12 + name_pad;

			if (descsz == 4)
				*entry_out = get32(d);
			else if (descsz == 8)
				*entry_out = get64(d);
			else
				return util_why(
					why, why_len, -EINVAL,
					"ELF: the PVH entry note has %llu bytes, not 4 or 8",
					(unsigned long long)descsz);
			return 0;
		}
		pos += 12 + name_pad + desc_pad;
	}
	return 0;
}

static int parse_elf(const uint8_t *img, size_t len, struct boot_kernel *k, char *why,
		     size_t why_len)
{
	const Elf64_Ehdr *eh = (const void *)img;
	uint64_t lo = UINT64_MAX, hi = 0;
	unsigned i;
	int rc;

	if (len < sizeof(*eh))
		return util_why(why, why_len, -EINVAL, "ELF: truncated header (%zu bytes)", len);
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB)
		return util_why(why, why_len, -ENOEXEC,
				"ELF: not a 64-bit little-endian file (a 32-bit kernel?)");
	if (eh->e_machine != EM_X86_64)
		return util_why(why, why_len, -ENOEXEC, "ELF: machine %u, not x86-64",
				eh->e_machine);
	if (eh->e_type != ET_EXEC)
		return util_why(why, why_len, -ENOEXEC,
				"ELF: type %u, not an executable (a module or object file?)",
				eh->e_type);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phnum > ELF_MAX_PHDRS)
		return util_why(why, why_len, -EINVAL,
				"ELF: %u program headers of %u bytes: not a kernel", eh->e_phnum,
				eh->e_phentsize);
	if (eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return util_why(why, why_len, -EINVAL,
				"ELF: program headers run past the end of the file: truncated");

	k->kind = BOOT_K_ELF;
	for (i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, img + eh->e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_NOTE) {
			if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
				return util_why(
					why, why_len, -EINVAL,
					"ELF: note segment %u runs past the end of the file", i);
			rc = find_pvh_note(img, ph.p_offset, ph.p_filesz, &k->pvh_entry, why,
					   why_len);
			if (rc < 0)
				return rc;
			continue;
		}
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (k->nseg == BOOT_MAX_SEGMENTS)
			return util_why(why, why_len, -EINVAL,
					"ELF: more than %u loadable segments: not a kernel",
					BOOT_MAX_SEGMENTS);
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return util_why(why, why_len, -EINVAL,
					"ELF: segment %u (%llu bytes at offset %llu) runs past the "
					"end of the file (%zu bytes): truncated",
					i, (unsigned long long)ph.p_filesz,
					(unsigned long long)ph.p_offset, len);
		if (ph.p_filesz > ph.p_memsz)
			return util_why(why, why_len, -EINVAL,
					"ELF: segment %u has more file bytes than memory bytes", i);
		if (ph.p_paddr < BOOT_LINUX_KERNEL_GPA || ph.p_paddr > (1ull << 40) ||
		    ph.p_memsz > (1ull << 40))
			return util_why(why, why_len, -EINVAL,
					"ELF: segment %u at physical 0x%llx (+%llu): a kernel "
					"loads at 1 MiB or above",
					i, (unsigned long long)ph.p_paddr,
					(unsigned long long)ph.p_memsz);
		k->seg[k->nseg++] = (struct boot_segment){.file_off = ph.p_offset,
							  .filesz = ph.p_filesz,
							  .gpa = ph.p_paddr,
							  .memsz = ph.p_memsz};
		if (ph.p_paddr < lo)
			lo = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > hi)
			hi = ph.p_paddr + ph.p_memsz;
	}
	if (!k->nseg)
		return util_why(why, why_len, -EINVAL, "ELF: no loadable segment");
	k->lo = lo;
	k->hi = hi;
	/* vmlinux's entry is startup_64's physical address (phys_startup_64) */
	if (eh->e_entry >= lo && eh->e_entry < hi)
		k->entry64 = eh->e_entry;
	if (k->pvh_entry && (k->pvh_entry < lo || k->pvh_entry >= hi))
		return util_why(why, why_len, -EINVAL,
				"ELF: the PVH entry 0x%llx is outside the kernel [0x%llx, 0x%llx)",
				(unsigned long long)k->pvh_entry, (unsigned long long)lo,
				(unsigned long long)hi);
	if (!k->entry64 && !k->pvh_entry)
		return util_why(why, why_len, -ENOEXEC,
				"ELF: neither a PVH note nor an entry point inside the kernel "
				"(0x%llx): not a vmlinux",
				(unsigned long long)eh->e_entry);
	k->cmdline_max = ELF_CMDLINE_MAX;
	k->initrd_addr_max = HV_HOLE_START - 1;
	return 0;
}

int boot_kernel_parse(const uint8_t *img, size_t len, struct boot_kernel *out, char *why,
		      size_t why_len)
{
	memset(out, 0, sizeof(*out));
	if (is_elf(img, len))
		return parse_elf(img, len, out, why, why_len);
	if (is_bzimage(img, len))
		return parse_bzimage(img, len, out, why, why_len);
	if (len >= 0x206 && get16(img + 0x1fe) == BZ_BOOT_FLAG)
		return util_why(why, why_len, -ENOEXEC,
				"a boot sector without a Linux setup header (\"HdrS\"): not a "
				"bzImage");
	return util_why(why, why_len, -ENOEXEC,
			"neither an ELF vmlinux nor a bzImage (%zu bytes; first bytes %02x %02x "
			"%02x %02x)",
			len, len > 0 ? img[0] : 0, len > 1 ? img[1] : 0, len > 2 ? img[2] : 0,
			len > 3 ? img[3] : 0);
}
