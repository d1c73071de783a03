/*
 * A small AML (ACPI Machine Language) encoder: just what the DSDT of acpi.c
 * needs -- scopes, devices, named integers and strings, and resource
 * templates -- written straight into a caller's buffer (ACPI 6.x, chapter 20
 * for the byte codes, section 6.4 for resource descriptors).
 *
 * Writes never go past the buffer: when it is too small, `len` keeps counting
 * what the output would have needed, so one pass with a NULL buffer measures
 * and a second one writes. The second pass needs `peak` bytes, a little more
 * than `len`: a body's header is reserved at its largest while the body is
 * written (see aml.c). Objects with a body (Scope, Device, Buffer) are
 * opened with *_begin(), which returns a mark, and closed with aml_end() or
 * aml_res_end(); they nest, and they must be closed in reverse order.
 *
 * Errors stick, like a stdio stream's: a bad name or id is skipped and
 * remembered, and aml_status() tells at the end whether the output is whole.
 */
#ifndef CASTOR_BOOT_AML_H
#define CASTOR_BOOT_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf; /* NULL to measure only */
	size_t cap;
	size_t len;    /* bytes written so far, or that would have been */
	size_t peak;   /* the most len has been */
	bool overflow; /* a write was dropped: buf holds no usable AML */
	bool bad_name; /* a name or id was refused (and left out) */
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
/* 0; -EINVAL after a bad name or id; else -ENOSPC if something did not fit */
int aml_status(const struct aml *a);

/*
 * A NameString: an optional leading '\' (root), then 1..4 character segments
 * separated by '.', each padded with '_' to four ("\_SB", "VIO0", "_HID",
 * "\_SB.COM1"). Bad: an empty segment, one longer than four characters, or a
 * character AML does not allow (A-Z, 0-9, '_'; no leading digit).
 */
void aml_name_string(struct aml *a, const char *path);

/* Data objects. */
void aml_integer(struct aml *a, uint64_t v); /* the shortest of Zero/One/Byte/Word/DWord/QWord */
void aml_string(struct aml *a, const char *s);
/* A compressed EISA id ("PNP0501": three capitals, four hex digits) as a DWord */
void aml_eisaid(struct aml *a, const char *id);

/* Name(path, <the data object the caller writes next>) */
void aml_name(struct aml *a, const char *path);

/* Scope(path) { ... } and Device(path) { ... }: give the mark to aml_end() after the body. */
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
void aml_end(struct aml *a, size_t mark);

/*
 * ResourceTemplate() { ... }: a Buffer holding resource descriptors and an
 * end tag. aml_res_end() writes the end tag and closes the buffer.
 */
size_t aml_res_begin(struct aml *a);
void aml_res_end(struct aml *a, size_t mark);

/* Memory32Fixed(ReadWrite or ReadOnly, base, size) */
void aml_res_memory32_fixed(struct aml *a, bool rw, uint32_t base, uint32_t size);
/* IO(Decode16, base, base, 0, len): a fixed range of I/O ports */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
/* IRQNoFlags() { irq }: an ISA interrupt (edge, active high, exclusive), irq < 16 */
void aml_res_irq_noflags(struct aml *a, unsigned irq);

/* Flags of Interrupt() (the Extended Interrupt descriptor), ACPI 6.4.3.6 */
#define AML_IRQ_CONSUMER     0x01u
#define AML_IRQ_EDGE	     0x02u /* clear: level-triggered */
#define AML_IRQ_ACTIVE_LOW   0x04u /* clear: active high */
#define AML_IRQ_SHARED	     0x08u /* clear: exclusive */
#define AML_IRQ_WAKE_CAPABLE 0x10u
/* Interrupt(...) { gsi }: one interrupt, flags from AML_IRQ_* */
void aml_res_interrupt(struct aml *a, uint8_t flags, uint32_t gsi);

#endif
