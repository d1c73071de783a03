/*
 * The devices' life cycle on vCPU 0: bring up what the params name at boot,
 * poll them once per workload iteration, reset them on mailbox command, and
 * print their lines on COM1. io_state (TG_IO_STATE_GPA) is zeroed here at
 * boot and written only by vCPU 0 afterwards.
 */
#include "hypervisor/guest/dev.h"

_Static_assert(sizeof(struct tg_dev) <= TGL_DEV_BYTES, "struct tg_dev outgrew TGL_DEV_BYTES");

static void put_hex2(uint8_t v)
{
	tg_serial_putc("0123456789abcdef"[v >> 4]);
	tg_serial_putc("0123456789abcdef"[v & 15]);
}

static void put_ipv4(uint32_t a)
{
	tg_serial_printf("%u.%u.%u.%u", a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255);
}

static uint32_t prefix_len(uint32_t mask)
{
	uint32_t n = 0;

	while (mask & 0x80000000u) {
		n++;
		mask <<= 1;
	}
	return n;
}

static void print_net(const struct tg_dev *d)
{
	const struct tg_net *n = &d->net;
	uint32_t i;

	tg_serial_printf("castor-tg: net mmio=0x%lx mac=", (unsigned long)n->mmio);
	for (i = 0; i < 6; i++) {
		if (i)
			tg_serial_putc(':');
		put_hex2(n->mac[i]);
	}
	tg_serial_puts(" ip=");
	put_ipv4(d->ip.addr);
	tg_serial_printf("/%u gw=", prefix_len(d->ip.mask));
	put_ipv4(d->ip.gw);
	tg_serial_printf(" features=0x%lx rxq=%u txq=%u link=%s\n", (unsigned long)n->features,
			 (unsigned)n->rxq.size, (unsigned)n->txq.size,
			 n->link & VIO_NET_S_LINK_UP ? "up" : "down");
}

static void print_blk(const struct tg_blk *b)
{
	tg_serial_printf("castor-tg: blk mmio=0x%lx capacity=%lu features=0x%lx ro=%u flush=%u "
			 "area=%lu+%lu rate=%lu mode=%s\n",
			 (unsigned long)b->mmio, (unsigned long)b->capacity,
			 (unsigned long)b->features, (unsigned)(b->features >> VIO_BLK_F_RO & 1),
			 (unsigned)(b->features >> VIO_BLK_F_FLUSH & 1), (unsigned long)b->first,
			 (unsigned long)b->count, (unsigned long)tg_params()->blk_rate,
			 b->verify_only ? "verify" : "write");
	if (b->count && !b->runnable)
		tg_serial_puts("castor-tg: blk: the workload area exceeds the disk: no disk "
			       "workload\n");
}

uint32_t tg_dev_init(const volatile struct tg_params *p, const char **why_out)
{
	struct tg_dev *d = tg_dev();
	volatile uint64_t *io = (volatile uint64_t *)tg_io();
	uint32_t i;

	for (i = 0; i < sizeof(struct tg_io_state) / 8; i++)
		io[i] = 0;
	d->tsc_per_ms = tg_tsc_per_ms(p->tsc_khz);
	d->net.mmio = p->net_mmio;
	d->net.up = 0;
	d->net.stack_on = p->ip != 0;
	d->blk.mmio = p->blk_mmio;
	d->blk.up = 0;
	d->blk.runnable = 0;
	tg_ip_init(d, p);
	tg_tcp_init(d);

	if (d->net.mmio) {
		if (tg_net_start(d, why_out)) {
			tg_serial_printf("castor-tg: net at 0x%lx: %s\n",
					 (unsigned long)d->net.mmio, *why_out);
			return TGL_FAULT_DEVICE;
		}
		tg_io()->net_up = TG_READY_MAGIC;
		print_net(d);
	}
	if (d->blk.mmio) {
		if (tg_blk_start(d, why_out)) {
			tg_serial_printf("castor-tg: blk at 0x%lx: %s\n",
					 (unsigned long)d->blk.mmio, *why_out);
			return TGL_FAULT_DEVICE;
		}
		tg_blk_workload_init(d, p);
		tg_io()->blk_up = TG_READY_MAGIC;
		print_blk(&d->blk);
	}
	return 0;
}

void tg_dev_poll(uint64_t now)
{
	struct tg_dev *d = tg_dev();

	tg_net_poll(d, now);
	tg_blk_poll(d, now);
}

uint32_t tg_dev_command(uint32_t cmd)
{
	struct tg_dev *d = tg_dev();
	volatile struct tg_io_state *io = tg_io();
	const char *why = "";

	if (cmd == TG_CMD_NET_RESET) {
		if (!d->net.mmio)
			return TG_MBOX_REJECTED;
		io->net_up = 0;
		if (tg_net_start(d, &why)) {
			tg_serial_printf("castor-tg: net reset: %s\n", why);
			return TG_MBOX_FAILED;
		}
		io->net_resets++;
		io->net_up = TG_READY_MAGIC;
		return TG_MBOX_OK;
	}
	if (cmd == TG_CMD_BLK_RESET) {
		if (!d->blk.mmio)
			return TG_MBOX_REJECTED;
		io->blk_up = 0;
		if (tg_blk_start(d, &why)) {
			tg_serial_printf("castor-tg: blk reset: %s\n", why);
			return TG_MBOX_FAILED;
		}
		io->blk_resets++;
		io->blk_up = TG_READY_MAGIC;
		return TG_MBOX_OK;
	}
	return TG_MBOX_REJECTED;
}

void tg_dev_print_tick(uint64_t secs)
{
	const struct tg_dev *d = tg_dev();
	volatile struct tg_io_state *io = tg_io();

	if (d->net.mmio)
		tg_serial_printf("castor-tg: t=%lu net rx=%lu tx=%lu drop=%lu udp=%lu tcp=%lu "
				 "conns=%lu rexmit=%lu\n",
				 (unsigned long)secs, (unsigned long)io->rx_frames,
				 (unsigned long)io->tx_frames, (unsigned long)io->rx_dropped,
				 (unsigned long)io->udp_answered, (unsigned long)io->tcp_answered,
				 (unsigned long)io->tcp_conns, (unsigned long)io->tcp_retransmits);
	if (d->blk.mmio)
		tg_serial_printf("castor-tg: t=%lu blk gen=%lu next=%lu ok=%lu bad=%lu err=%lu\n",
				 (unsigned long)secs, (unsigned long)io->blk_generation,
				 (unsigned long)io->blk_next, (unsigned long)io->blk_verified,
				 (unsigned long)io->blk_bad, (unsigned long)io->blk_io_errors);
}
