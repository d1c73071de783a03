/*
 * A 16550 UART on COM1, output only: enough for a guest that polls the line
 * status register and writes bytes, and for Linux's 8250 driver, which also
 * probes the modem-control loopback and sends with the "THR empty" interrupt
 * on IRQ 4. Output is written a line at a time.
 */
#define LOG_TAG "serial"
#include "hypervisor/hv_int.h"
#include "hypervisor/devices/persist.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum {
	UART_RBR_THR = 0, /* DLL with DLAB */
	UART_IER = 1,	  /* DLM with DLAB */
	UART_IIR_FCR = 2,
	UART_LCR = 3,
	UART_MCR = 4,
	UART_LSR = 5,
	UART_MSR = 6,
	UART_SCR = 7,
};
#define UART_LCR_DLAB	0x80
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_IIR_NO_INT 0x01
#define UART_IIR_THRI	0x02
#define UART_IER_THRI	0x02
#define UART_MCR_LOOP	0x10

void serial_init(struct hv_serial *s, int out_fd)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->dll = 12; /* 9600 baud, as firmware leaves it */
}

void serial_set_irq(struct hv_serial *s, serial_irq_fn cb, void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->irq_cb = cb;
	s->irq_arg = arg;
	pthread_mutex_unlock(&s->lock);
}

static bool thre_irq(const struct hv_serial *s)
{
	return (s->ier & UART_IER_THRI) && s->thre_pending;
}

/* Move the line on its edges only; the caller holds the lock. */
static void update_irq(struct hv_serial *s)
{
	bool level = thre_irq(s);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->irq_cb)
		s->irq_cb(s->irq_arg, level);
}

/* MSR: in loopback, the modem outputs come back as inputs (DTR->DSR, RTS->CTS, ...). */
static uint8_t msr(const struct hv_serial *s)
{
	if (!(s->mcr & UART_MCR_LOOP))
		return 0xb0; /* CTS, DSR, DCD: a cable that is always ready */
	return (uint8_t)((s->mcr & 0x02 ? 0x10 : 0) | (s->mcr & 0x01 ? 0x20 : 0) |
			 (s->mcr & 0x04 ? 0x40 : 0) | (s->mcr & 0x08 ? 0x80 : 0));
}

static void flush_line(struct hv_serial *s)
{
	size_t done = 0;

	while (s->out_fd >= 0 && done < s->line_len) {
		ssize_t r = write(s->out_fd, s->line + done, s->line_len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* a closed console must not stop the guest */
		done += (size_t)r;
	}
	s->line_len = 0;
}

void serial_dispose(struct hv_serial *s)
{
	pthread_mutex_lock(&s->lock);
	flush_line(s);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&s->lock);
}

static void put_byte(struct hv_serial *s, uint8_t c)
{
	s->line[s->line_len++] = (char)c;
	if (c == '\n' || s->line_len == sizeof(s->line))
		flush_line(s);
}

void serial_access(void *dev, struct hv_vcpu *vcpu, uint64_t offset, uint8_t *data, uint32_t len,
		   bool is_write)
{
	struct hv_serial *s = dev;
	bool dlab;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&s->lock);
	dlab = s->lcr & UART_LCR_DLAB;
	if (is_write) {
		switch (offset) {
		case UART_RBR_THR:
			if (dlab) {
				s->dll = data[0];
			} else {
				put_byte(s, data[0]);
				s->thre_pending = true; /* sent already: empty again */
			}
			break;
		case UART_IER:
			if (dlab) {
				s->dlm = data[0];
				break;
			}
			if (!(s->ier & UART_IER_THRI) && (data[0] & UART_IER_THRI))
				s->thre_pending = true;
			s->ier = data[0] & 0x0f;
			break;
		case UART_IIR_FCR:
			s->fcr = data[0];
			break;
		case UART_LCR:
			s->lcr = data[0];
			break;
		case UART_MCR:
			s->mcr = data[0] & 0x1f;
			break;
		case UART_SCR:
			s->scr = data[0];
			break;
		default:
			break;
		}
	} else {
		switch (offset) {
		case UART_RBR_THR:
			data[0] = dlab ? s->dll : 0;
			break;
		case UART_IER:
			data[0] = dlab ? s->dlm : s->ier;
			break;
		case UART_IIR_FCR:
			data[0] = (thre_irq(s) ? UART_IIR_THRI : UART_IIR_NO_INT) |
				  (s->fcr & 1 ? 0xc0 : 0);
			if (thre_irq(s))
				s->thre_pending = false; /* reading IIR acknowledges it */
			break;
		case UART_LCR:
			data[0] = s->lcr;
			break;
		case UART_MCR:
			data[0] = s->mcr;
			break;
		case UART_LSR:
			data[0] = UART_LSR_THRE | UART_LSR_TEMT;
			break;
		case UART_MSR:
			data[0] = msr(s);
			break;
		case UART_SCR:
			data[0] = s->scr;
			break;
		default:
			data[0] = 0xff;
		}
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- state in snapshots: the registers (output only, so nothing is in flight) ---- */

/* The saved registers, listed once so that save and load cannot drift apart. */
#define SERIAL_REGS(X) X(ier) X(lcr) X(mcr) X(scr) X(dll) X(dlm) X(fcr)
#define REG_SAVE(f)    s->f = u->f;
#define REG_LOAD(f)    u->f = (uint8_t)s->f;

static int serial_save(void *dev, Castor__DeviceState *out, struct persist_mem *mem)
{
	struct hv_serial *u = dev;
	Castor__SerialState *s = persist_new(mem, &castor__serial_state__descriptor);

	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&u->lock);
	SERIAL_REGS(REG_SAVE)
	pthread_mutex_unlock(&u->lock);
	out->state_case = CASTOR__DEVICE_STATE__STATE_SERIAL;
	out->serial = s;
	return 0;
}

static int serial_load(void *dev, const Castor__DeviceState *in, char *why, size_t why_len)
{
	struct hv_serial *u = dev;
	const Castor__SerialState *s = in->serial;

	pthread_mutex_lock(&u->lock);
	SERIAL_REGS(REG_LOAD)
	/* the transmitter was empty; the line's level came back with the irqchip's state */
	u->thre_pending = u->ier & UART_IER_THRI;
	u->irq_level = thre_irq(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

const struct persist_ops serial_persist_ops = {
	.kind = CASTOR__DEVICE_STATE__STATE_SERIAL,
	.save = serial_save,
	.load = serial_load,
};
