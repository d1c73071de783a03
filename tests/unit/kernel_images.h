/* Kernel images for the loader's tests (kernel_images.c). */
#ifndef CASTOR_TESTS_KERNEL_IMAGES_H
#define CASTOR_TESTS_KERNEL_IMAGES_H

#include <stdbool.h>
#include <stdint.h>

/* bzImage: BZ_LEN bytes, BZ_SECTS setup sectors, pref_address 16 MiB, init_size 20 MiB */
#define BZ_LEN	 (64 * 1024)
#define BZ_SECTS 4
uint8_t *bzimage(uint16_t version, uint16_t xloadflags); /* calloc'd */

/* vmlinux: ELF_LEN bytes; 4 KiB at ELF_LOAD_AT loaded at ELF_PADDR (3 MiB with bss);
 * entry ELF_PADDR + 0x40; PVH entry ELF_PADDR + 0x100 with the note */
#define ELF_LEN	    8192
#define ELF_PADDR   0x1000000ull
#define ELF_NOTE_AT 0x200
#define ELF_LOAD_AT 0x1000
uint8_t *vmlinux(bool with_note); /* calloc'd */

/* Little-endian stores, to break the images on purpose. */
void kimg_put16(uint8_t *p, uint16_t v);
void kimg_put32(uint8_t *p, uint32_t v);

#endif
