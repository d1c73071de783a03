/*
 * Postcopy's wire (docs/stream-format.md §8.6) and its two loops:
 *   - the source's page server: after SWITCH it answers the destination's
 *     requests first and pushes every other page the destination lacks, from
 *     its own RAM (the VM stays paused there), then END; it returns when the
 *     destination says DONE, or the link fails;
 *   - the destination's page receiver: each page placed into the running VM
 *     (hv_postcopy_place, which wakes whoever faulted on it); DONE once every
 *     missing page is in and END has come.
 * The destination's requests are sent from the userfaultfd thread of
 * hypervisor/lazy.c (repl_postcopy_request), its RUNNING answer from the
 * thread that started the VM: the caller serialises the destination's sends.
 */
#define LOG_TAG "postcopy"
#include "replication/seal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* Every postcopy message has the ack's 24-byte layout (seal.h). */
struct pc_msg {
	uint64_t magic;
	uint64_t value; /* PAGE, REQ: the pfn; END, DONE: a page count */
	uint32_t flags; /* PAGE: PC_PAGE_ZERO */
	uint32_t reserved;
};
_Static_assert(sizeof(struct pc_msg) == 24, "postcopy message layout");

#define PC_PAGE_ZERO 1u

int repl_postcopy_frame_send(struct repl_link *l, const struct util_bitmap *missing)
{
	uint64_t words = UTIL_BITMAP_WORDS(missing->nbits);
	struct epoch_hdr h = {.magic = REPL_POSTCOPY_MAGIC, .len = 8 + words * 8};
	uint64_t pages = missing->nbits;
	struct iovec iov[3] = {{&h, sizeof(h)}, {&pages, 8}, {missing->words, words * 8}};

	return repl_link_send_iov(l, iov, 3);
}

int repl_postcopy_frame_parse(const uint8_t *buf, size_t len, uint64_t pages,
			      struct util_bitmap *out, char *why, size_t why_len)
{
	uint64_t n, words = UTIL_BITMAP_WORDS(pages), last;

	if (len < 8)
		return util_why(why, why_len, -EBADMSG, "a POSTCOPY frame of %zu bytes", len);
	memcpy(&n, buf, 8);
	if (n != pages)
		return util_why(why, why_len, -EBADMSG,
				"a POSTCOPY frame for %" PRIu64
				" pages of RAM; this VM has %" PRIu64,
				n, pages);
	if (len != 8 + words * 8)
		return util_why(why, why_len, -EBADMSG,
				"a POSTCOPY frame of %zu bytes (%" PRIu64 " expected)", len,
				8 + words * 8);
	if (util_bitmap_init(out, pages) < 0)
		return util_why(why, why_len, -ENOMEM, "out of memory");
	memcpy(out->words, buf + 8, words * 8);
	last = pages % 64 ? out->words[words - 1] >> (pages % 64) : 0;
	if (last) {
		util_bitmap_dispose(out);
		return util_why(why, why_len, -EBADMSG,
				"a POSTCOPY frame with bits past the end of RAM");
	}
	return 0;
}

static int msg_send(struct repl_link *l, uint64_t magic, uint64_t value, uint32_t flags,
		    const void *page)
{
	struct pc_msg m = {.magic = magic, .value = value, .flags = flags};
	struct iovec iov[2] = {{&m, sizeof(m)}, {(void *)page, HV_PAGE_SIZE}};

	return repl_link_send_iov(l, iov, page ? 2 : 1);
}

int repl_postcopy_request(struct repl_link *l, uint64_t pfn)
{
	return msg_send(l, REPL_PC_REQ_MAGIC, pfn, 0, NULL);
}

int repl_postcopy_done_send(struct repl_link *l, uint64_t placed)
{
	return msg_send(l, REPL_PC_DONE_MAGIC, placed, 0, NULL);
}

/* The source: one page out, as data or as a zero page; it is no longer missing there. */
static int send_page(struct repl_link *l, const uint8_t *ram, uint64_t pfn,
		     struct util_bitmap *missing, struct repl_pc_progress *pr)
{
	const uint8_t *page = ram + pfn * HV_PAGE_SIZE;
	bool zero = util_is_zero(page, HV_PAGE_SIZE);
	int rc = msg_send(l, REPL_PC_PAGE_MAGIC, pfn, zero ? PC_PAGE_ZERO : 0, zero ? NULL : page);

	if (rc < 0)
		return rc;
	util_bitmap_clear(missing, pfn);
	pr->sent++;
	pr->zero += zero;
	return 0;
}

/* The source: what the destination said -- a request, its RUNNING answer, DONE. */
static int take_msg(struct repl_link *l, struct util_bitmap *missing, uint64_t *asked,
		    unsigned *n_asked, unsigned cap, int32_t *ran, bool *done,
		    struct repl_pc_progress *pr)
{
	struct pc_msg m;
	int rc = repl_link_recv(l, &m, sizeof(m));

	if (rc < 0)
		return rc;
	if (m.magic == REPL_RUNNING_MAGIC) {
		int32_t st = (int32_t)m.flags;

		if (m.value || m.reserved || *ran != REPL_PC_NOT_YET || st > 0 || st < -4095)
			return -EBADMSG;
		*ran = st;
		pr->running_ns = util_now_ns();
		return 0;
	}
	if (m.flags || m.reserved)
		return -EBADMSG;
	if (m.magic == REPL_PC_REQ_MAGIC) {
		if (m.value >= missing->nbits)
			return -EBADMSG;
		pr->asked++;
		/* one already sent is on its way; a full list: the push will get there */
		if (util_bitmap_is_set(missing, m.value) && *n_asked < cap)
			asked[(*n_asked)++] = m.value;
		return 0;
	}
	if (m.magic == REPL_PC_DONE_MAGIC) {
		/* only after every page, and after RUNNING */
		if (*ran != 0 || util_bitmap_count(missing) || m.value != pr->pages)
			return -EPROTO;
		*done = true;
		return 0;
	}
	return -EBADMSG;
}

#define ASKED_MAX 1024u

int repl_postcopy_serve(struct repl_link *l, const uint8_t *ram, struct util_bitmap *missing,
			uint32_t timeout_ms, int32_t *ran, struct repl_pc_progress *prog,
			repl_pc_progress_fn fn, void *arg)
{
	struct repl_pc_progress pr = *prog;
	uint64_t *asked = calloc(ASKED_MAX, sizeof(*asked)), cursor = 0, last_note = pr.sent;
	unsigned n_asked = 0;
	bool done = false, end_sent = false;
	int rc = 0;

	if (!pr.pages)
		pr.pages = util_bitmap_count(missing);
	if (!asked)
		return -ENOMEM;
	while (!done) {
		bool idle = end_sent;

		/*
		 * What the destination said, first: its requests go before the push.
		 * Once all is sent, DONE comes when the pages still in the sockets
		 * are placed: waited for as an ack of that many bytes.
		 */
		rc = repl_link_wait_readable(
			l, idle ? (int)repl_ack_wait_ms(timeout_ms, pr.sent * HV_PAGE_SIZE) : 0);
		if (rc == 0 && idle)
			rc = -ETIMEDOUT;
		if (rc > 0)
			rc = take_msg(l, missing, asked, &n_asked, ASKED_MAX, ran, &done, &pr);
		if (rc < 0)
			break;
		if (*ran < 0) /* it could not start the VM: nothing more to send */
			break;
		if (n_asked) {
			uint64_t pfn = asked[--n_asked];

			if (util_bitmap_is_set(missing, pfn)) {
				rc = send_page(l, ram, pfn, missing, &pr);
				pr.on_demand++;
			}
		} else if ((cursor = util_bitmap_next_set(missing, cursor)) < missing->nbits) {
			rc = send_page(l, ram, cursor, missing, &pr);
		} else if (!end_sent) {
			rc = msg_send(l, REPL_PC_END_MAGIC, pr.sent, 0, NULL);
			end_sent = true;
		}
		if (rc < 0)
			break;
		if (fn && (pr.sent - last_note >= 256 || done || end_sent)) {
			fn(arg, &pr);
			last_note = pr.sent;
		}
	}
	free(asked);
	*prog = pr;
	if (fn)
		fn(arg, &pr);
	return rc < 0 ? rc : 0;
}

int repl_postcopy_receive(struct repl_link *l, struct hv_vm *vm, pthread_mutex_t *send_lock,
			  struct repl_pc_progress *prog, repl_pc_progress_fn fn, void *arg)
{
	struct repl_pc_progress pr = *prog;
	uint64_t left, faults;
	bool end = false, done_sent = false;
	uint8_t *page = NULL;
	int rc;

	if (posix_memalign((void **)&page, HV_PAGE_SIZE, HV_PAGE_SIZE))
		return -ENOMEM;
	hv_postcopy_progress(vm, &left, &faults);
	if (!pr.pages)
		pr.pages = left;
	while (!end || !done_sent) {
		struct pc_msg m;

		if (!done_sent) {
			hv_postcopy_progress(vm, &left, &faults);
			if (!left) {
				/* every page is in: the source may let go */
				pthread_mutex_lock(send_lock);
				rc = repl_postcopy_done_send(l, pr.pages);
				pthread_mutex_unlock(send_lock);
				if (rc < 0)
					break;
				done_sent = true;
				continue;
			}
		}
		rc = repl_link_recv(l, &m, sizeof(m));
		if (rc < 0)
			break;
		if (m.reserved || (m.magic == REPL_PC_END_MAGIC && m.flags) ||
		    (m.magic == REPL_PC_PAGE_MAGIC && (m.flags & ~PC_PAGE_ZERO))) {
			rc = -EBADMSG;
			break;
		}
		if (m.magic == REPL_PC_END_MAGIC) {
			/* the source sent all it had: a page still missing here is lost */
			hv_postcopy_progress(vm, &left, &faults);
			if (left) {
				LOG_ERR("vm %s: the source ended postcopy with %" PRIu64
					" pages still missing here",
					hv_vm_name(vm), left);
				rc = -EPROTO;
				break;
			}
			end = true;
			continue;
		}
		if (m.magic != REPL_PC_PAGE_MAGIC || end) {
			rc = -EBADMSG;
			break;
		}
		if (!(m.flags & PC_PAGE_ZERO)) {
			rc = repl_link_recv(l, page, HV_PAGE_SIZE);
			if (rc < 0)
				break;
		}
		rc = hv_postcopy_place(vm, m.value, m.flags & PC_PAGE_ZERO ? NULL : page);
		if (rc < 0)
			break;
		pr.sent++;
		pr.zero += !!(m.flags & PC_PAGE_ZERO);
		if (fn && !(pr.sent % 256)) {
			hv_postcopy_progress(vm, &left, &faults);
			pr.on_demand = pr.asked = faults;
			fn(arg, &pr);
		}
	}
	free(page);
	hv_postcopy_progress(vm, &left, &faults);
	pr.on_demand = pr.asked = faults;
	*prog = pr;
	if (fn)
		fn(arg, &pr);
	return rc < 0 ? rc : 0;
}
