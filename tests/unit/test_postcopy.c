/*
 * Postcopy's wire and its source (replication/postcopy.c) over a real
 * loopback link, the test playing the destination:
 *   - a POSTCOPY frame arrives as the bitmap that was sent; one for another
 *     RAM size, of the wrong length, or with bits past the end of RAM is
 *     refused with the reason;
 *   - the source sends every missing page once -- data as it is in its RAM,
 *     zero pages as a flag with no data -- then END; with RUNNING and DONE
 *     it returns 0, every page gone from its bitmap, the request counted;
 *   - RUNNING with an error ends it at once (the source resumes);
 *   - a request beyond RAM, a second RUNNING, and DONE before every page was
 *     sent are refused.
 * The destination's side needs a VM (userfaultfd on its RAM): kvm_migrate_postcopy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/repl.h"
#include "util/util.h"

static const struct repl_transport_ops *T = &repl_tcp_ops;

struct pair {
	struct repl_listener *l;
	struct repl_conn *a, *b;
	struct repl_link la, lb; /* a: the source, b: the destination (this test) */
};

static void pair_open(struct pair *p, uint32_t timeout_ms)
{
	struct repl_conn_opts o = {.timeout_ms = timeout_ms};
	char addr[64];

	assert_int_equal(T->listen("127.0.0.1:0", &o, &p->l), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", T->local_port(p->l));
	assert_int_equal(T->connect(addr, &o, &p->a), 0);
	assert_int_equal(T->accept(p->l, 2000, &p->b), 0);
	p->la = (struct repl_link){.t = T, .c = p->a};
	p->lb = (struct repl_link){.t = T, .c = p->b};
}

static void pair_close(struct pair *p)
{
	T->close(p->a);
	T->close(p->b);
	T->close_listener(p->l);
}

/* The messages of §8.6: 24 bytes, the ack's layout. */
struct msg {
	uint64_t magic, value;
	uint32_t flags, reserved;
};

static void send_msg(struct repl_link *l, uint64_t magic, uint64_t value, uint32_t flags)
{
	struct msg m = {.magic = magic, .value = value, .flags = flags};
	struct iovec iov = {&m, sizeof(m)};

	assert_int_equal(repl_link_send_iov(l, &iov, 1), 0);
}

static void frame_round_trip(void **state)
{
	struct util_bitmap sent, got = {0}, bad = {0};
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	enum repl_frame kind;
	struct pair p;
	char why[200];

	(void)state;
	assert_int_equal(util_bitmap_init(&sent, 1000), 0);
	util_bitmap_set(&sent, 0);
	util_bitmap_set_range(&sent, 500, 37);
	util_bitmap_set(&sent, 999);
	pair_open(&p, 2000);
	assert_int_equal(repl_postcopy_frame_send(&p.la, &sent), 0);
	assert_int_equal(repl_frame_recv_into(&p.lb, 1 << 20, &buf, &cap, &len, &kind), 0);
	assert_int_equal(kind, REPL_FRAME_POSTCOPY);
	assert_int_equal(repl_postcopy_frame_parse(buf, len, 1000, &got, why, sizeof(why)), 0);
	assert_true(util_bitmap_is_equal(&sent, &got));
	/* another RAM size, a short body, a bit past the end of RAM */
	assert_int_equal(repl_postcopy_frame_parse(buf, len, 1024, &bad, why, sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "1000 pages"));
	assert_int_equal(repl_postcopy_frame_parse(buf, len - 8, 1000, &bad, why, sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "expected"));
	buf[len - 1] |= 0x80; /* bit 1023 */
	assert_int_equal(repl_postcopy_frame_parse(buf, len, 1000, &bad, why, sizeof(why)),
			 -EBADMSG);
	assert_non_null(strstr(why, "past the end"));
	free(buf);
	util_bitmap_dispose(&sent);
	util_bitmap_dispose(&got);
	pair_close(&p);
}

struct server {
	struct repl_link *l;
	const uint8_t *ram;
	struct util_bitmap *missing;
	int32_t ran;
	int rc;
	struct repl_pc_progress last;
};

static void note(void *arg, const struct repl_pc_progress *pr)
{
	((struct server *)arg)->last = *pr;
}

static void *serve(void *arg)
{
	struct server *s = arg;

	struct repl_pc_progress pr = {0};

	s->ran = REPL_PC_NOT_YET;
	s->rc = repl_postcopy_serve(s->l, s->ram, s->missing, 2000, &s->ran, &pr, note, s);
	return NULL;
}

#define PAGES 64u

static void every_page_once(void **state)
{
	static uint8_t ram[PAGES * HV_PAGE_SIZE], page[HV_PAGE_SIZE];
	struct util_bitmap missing, seen;
	struct server s = {.ram = ram};
	uint64_t n = 0, zero = 0;
	struct pair p;
	pthread_t th;

	(void)state;
	for (size_t i = 0; i < sizeof(ram); i++)
		ram[i] = (uint8_t)(i * 7 + i / HV_PAGE_SIZE);
	memset(ram + 5 * HV_PAGE_SIZE, 0, HV_PAGE_SIZE); /* a zero page among the missing */
	assert_int_equal(util_bitmap_init(&missing, PAGES), 0);
	assert_int_equal(util_bitmap_init(&seen, PAGES), 0);
	util_bitmap_set(&missing, 3);
	util_bitmap_set(&missing, 5);
	util_bitmap_set_range(&missing, 10, 11);
	util_bitmap_set(&missing, 63);
	pair_open(&p, 2000);
	s.l = &p.la;
	s.missing = &missing;
	assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);
	/* RUNNING, and a request, as a destination that started and faulted */
	send_msg(&p.lb, REPL_RUNNING_MAGIC, 0, 0);
	send_msg(&p.lb, REPL_PC_REQ_MAGIC, 20, 0);
	for (;;) {
		struct msg m;

		assert_int_equal(repl_link_recv(&p.lb, &m, sizeof(m)), 0);
		if (m.magic == REPL_PC_END_MAGIC) {
			assert_int_equal(m.value, 14);
			break;
		}
		assert_int_equal(m.magic, REPL_PC_PAGE_MAGIC);
		assert_true(m.value < PAGES);
		assert_false(util_bitmap_is_set(&seen, m.value)); /* once */
		util_bitmap_set(&seen, m.value);
		n++;
		if (m.flags) {
			assert_int_equal(m.flags, 1); /* zero: no data follows */
			assert_int_equal(m.value, 5);
			zero++;
			continue;
		}
		assert_int_equal(repl_link_recv(&p.lb, page, HV_PAGE_SIZE), 0);
		assert_memory_equal(page, ram + m.value * HV_PAGE_SIZE, HV_PAGE_SIZE);
	}
	assert_int_equal(n, 14);
	assert_int_equal(zero, 1);
	send_msg(&p.lb, REPL_PC_DONE_MAGIC, 14, 0);
	pthread_join(th, NULL);
	assert_int_equal(s.rc, 0);
	assert_int_equal(s.ran, 0);
	assert_int_equal(util_bitmap_count(&missing), 0);
	assert_int_equal(s.last.pages, 14);
	assert_int_equal(s.last.sent, 14);
	assert_int_equal(s.last.zero, 1);
	assert_int_equal(s.last.asked, 1);
	assert_true(s.last.running_ns > 0);
	util_bitmap_dispose(&missing);
	util_bitmap_dispose(&seen);
	pair_close(&p);
}

/* One case of a destination that answers `magic, value, flags` first. */
static int serve_after(uint64_t magic, uint64_t value, uint32_t flags, bool running_first,
		       uint64_t pages, int32_t *ran)
{
	uint8_t *ram = calloc(pages, HV_PAGE_SIZE);
	struct util_bitmap missing;
	struct server s = {0};
	struct pair p;
	pthread_t th;

	assert_non_null(ram);
	for (uint64_t i = 0; i < pages; i++)
		ram[i * HV_PAGE_SIZE] = 1; /* no zero pages: every one is data */
	assert_int_equal(util_bitmap_init(&missing, pages), 0);
	util_bitmap_set_all(&missing);
	pair_open(&p, 2000);
	s.l = &p.la;
	s.ram = ram;
	s.missing = &missing;
	if (running_first)
		send_msg(&p.lb, REPL_RUNNING_MAGIC, 0, 0);
	send_msg(&p.lb, magic, value, flags);
	assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);
	pthread_join(th, NULL);
	*ran = s.ran;
	util_bitmap_dispose(&missing);
	free(ram);
	pair_close(&p);
	return s.rc;
}

static void refusals(void **state)
{
	int32_t ran;

	(void)state;
	/* the destination could not start the VM: the source stops serving at once */
	assert_int_equal(serve_after(REPL_RUNNING_MAGIC, 0, (uint32_t)-EIO, false, 4, &ran), 0);
	assert_int_equal(ran, -EIO);
	/* a request beyond RAM */
	assert_int_equal(serve_after(REPL_PC_REQ_MAGIC, 4, 0, false, 4, &ran), -EBADMSG);
	/* a second RUNNING */
	assert_int_equal(serve_after(REPL_RUNNING_MAGIC, 0, 0, true, 4, &ran), -EBADMSG);
	/* DONE while pages are still to go */
	assert_int_equal(serve_after(REPL_PC_DONE_MAGIC, 16, 0, true, 16, &ran), -EPROTO);
	/* a message the destination never sends */
	assert_int_equal(serve_after(REPL_PC_PAGE_MAGIC, 0, 0, false, 4, &ran), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(frame_round_trip),
		cmocka_unit_test(every_page_once),
		cmocka_unit_test(refusals),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
