/*
 * COM1 as Linux's 8250 driver sees it: registers that read back, the modem
 * loopback its probe checks, and the "THR empty" interrupt it sends with --
 * raised when THRI is enabled or a byte goes out, cleared by reading IIR, and
 * never raised for a guest that only polls (the test guest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "hypervisor/hv_int.h"

enum { THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

struct line {
	int edges;
	bool level;
};

static void irq_cb(void *arg, bool level)
{
	struct line *l = arg;

	assert_true(level != l->level); /* edges only */
	l->level = level;
	l->edges++;
}

static uint8_t rd(struct hv_serial *s, unsigned reg)
{
	uint8_t v = 0;

	serial_access(s, NULL, reg, &v, 1, false);
	return v;
}

static void wr(struct hv_serial *s, unsigned reg, uint8_t v)
{
	serial_access(s, NULL, reg, &v, 1, true);
}

struct fixture {
	struct hv_serial s;
	struct line line;
	int fds[2];
};

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	if (pipe(f.fds) < 0)
		return -1;
	serial_init(&f.s, f.fds[1]);
	serial_set_irq(&f.s, irq_cb, &f.line);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	serial_dispose(&f->s);
	close(f->fds[0]);
	close(f->fds[1]);
	return 0;
}

static void registers_read_back(void **state)
{
	struct fixture *f = *state;

	wr(&f->s, SCR, 0xa5);
	assert_int_equal(rd(&f->s, SCR), 0xa5);
	wr(&f->s, IER, 0x0f);
	assert_int_equal(rd(&f->s, IER), 0x0f);
	wr(&f->s, IER, 0);
	assert_int_equal(rd(&f->s, IER), 0);
	wr(&f->s, LCR, 0x80); /* DLAB: the divisor */
	wr(&f->s, THR, 1);
	wr(&f->s, IER, 0);
	assert_int_equal(rd(&f->s, THR), 1);
	wr(&f->s, LCR, 0x03);
	assert_int_equal(rd(&f->s, LSR) & 0x60, 0x60); /* THRE and TEMT */
}

static void loopback(void **state)
{
	struct fixture *f = *state;

	/* what the 8250 probe writes, and the only answer it accepts: DCD and CTS */
	wr(&f->s, MCR, 0x10 | 0x08 | 0x02);
	assert_int_equal(rd(&f->s, MSR) & 0xf0, 0x90);
	wr(&f->s, MCR, 0x1f);
	assert_int_equal(rd(&f->s, MSR) & 0xf0, 0xf0);
	wr(&f->s, MCR, 0x10);
	assert_int_equal(rd(&f->s, MSR) & 0xf0, 0x00);
	wr(&f->s, MCR, 0x0b); /* out of loopback: the cable is ready */
	assert_int_equal(rd(&f->s, MSR) & 0xf0, 0xb0);
}

static void thre_interrupt(void **state)
{
	struct fixture *f = *state;
	char out[8] = {0};

	wr(&f->s, IER, 0x02); /* THRI on, transmitter empty: the interrupt is pending */
	assert_true(f->line.level);
	assert_int_equal(rd(&f->s, IIR) & 0x0f, 0x02);
	assert_false(f->line.level); /* reading IIR acknowledged it */
	assert_int_equal(rd(&f->s, IIR) & 0x0f, 0x01);
	/* a byte goes out at once: empty again, interrupt again */
	wr(&f->s, THR, 'o');
	assert_true(f->line.level);
	assert_int_equal(rd(&f->s, IIR) & 0x0f, 0x02);
	wr(&f->s, THR, 'k');
	wr(&f->s, THR, '\n');
	assert_int_equal(read(f->fds[0], out, sizeof(out)), 3);
	assert_string_equal(out, "ok\n");
	/* THRI off drops the line; on again re-raises it (the driver's THRE test) */
	wr(&f->s, IER, 0);
	assert_false(f->line.level);
	wr(&f->s, IER, 0x02);
	assert_true(f->line.level);
	wr(&f->s, IER, 0);
	assert_false(f->line.level);
}

static void polled_guest_no_interrupts(void **state)
{
	struct fixture *f = *state;
	char out[8] = {0};

	wr(&f->s, IER, 0);
	wr(&f->s, THR, 'a');
	wr(&f->s, THR, '\n');
	assert_int_equal(rd(&f->s, IIR) & 0x0f, 0x01);
	assert_int_equal(f->line.edges, 0);
	assert_int_equal(read(f->fds[0], out, sizeof(out)), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(registers_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(polled_guest_no_interrupts, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
