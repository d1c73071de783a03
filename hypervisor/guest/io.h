/*
 * Port I/O, TSC and ordering helpers for the test guest's ring-3 code. Ring 3
 * runs with IOPL 3 and uses in/out directly; where the hypervisor does not
 * honour IOPL (kvm_pvm) they raise #GP and entry.S carries them out in ring 0.
 * That handler knows exactly these encodings: inb %dx,%al (ec), outb
 * %al,%dx (ee), outl %eax,%dx (ef) -- hence "d", never "N", for the port.
 */
#ifndef CASTOR_TG_IO_H
#define CASTOR_TG_IO_H

#include <stdint.h>

#include "hypervisor/guest/abi.h"

/* Orders the compiler's memory accesses; x86 (TSO) keeps stores in order. */
#define tg_barrier() __asm__ volatile("" ::: "memory")

static inline void tg_outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "d"(port) : "memory");
}

static inline void tg_outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "d"(port) : "memory");
}

static inline uint8_t tg_inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "d"(port) : "memory");
	return v;
}

/* A 32-bit register of the Castor test device (abi.h: TG_REG_*). */
static inline void tg_mmio_write32(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(TG_MMIO_BASE + reg) = v;
}

static inline uint64_t tg_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void tg_pause(void)
{
	__asm__ volatile("pause" : : : "memory");
}

#endif
