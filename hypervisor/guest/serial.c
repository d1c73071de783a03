/*
 * COM1 output for the test guest: polled (LSR bit 5 before each byte), no
 * initialisation, no interrupts. Only vCPU 0 prints, so there is no lock.
 * Every byte is a port exit, so lines are short and printed rarely.
 */
#include <stdarg.h>

#include "hypervisor/guest/tg.h"

#define COM1_THR (TG_COM1 + 0)
#define COM1_LSR (TG_COM1 + 5)
#define LSR_THRE 0x20

void tg_serial_putc(char c)
{
	/* A missing UART reads 0xff, so this cannot spin forever. */
	while (!(tg_inb(COM1_LSR) & LSR_THRE))
		tg_pause();
	tg_outb(COM1_THR, (uint8_t)c);
}

void tg_serial_puts(const char *s)
{
	while (*s)
		tg_serial_putc(*s++);
}

static void put_unsigned(uint64_t v, unsigned int base)
{
	char buf[20];
	unsigned int n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		tg_serial_putc(buf[--n]);
}

void tg_serial_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		int is_long = 0;

		if (*fmt != '%') {
			tg_serial_putc(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == 'l') {
			is_long = 1;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			tg_serial_puts(va_arg(ap, const char *));
			break;
		case 'c':
			tg_serial_putc((char)va_arg(ap, int));
			break;
		case 'u':
		case 'x':
			put_unsigned(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int),
				     *fmt == 'u' ? 10 : 16);
			break;
		case '%':
			tg_serial_putc('%');
			break;
		default: /* not understood: show it rather than guess */
			tg_serial_putc('%');
			if (!*fmt)
				goto out;
			tg_serial_putc(*fmt);
			break;
		}
	}
out:
	va_end(ap);
}
