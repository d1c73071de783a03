/*
 * Postcopy's destination (docs/migration.md, docs/stream-format.md §8.6):
 * the source names the pages its final epoch leaves out (POSTCOPY frame);
 * before the switched twin starts they are dropped from its RAM and made to
 * fault (hv_postcopy_begin), a fault asking the source for its page; after
 * RUNNING a thread of ours places every page the source sends until the VM
 * has them all, then says DONE. A link that breaks first leaves the VM
 * running with whatever it does not touch; a vCPU that touches a page still
 * missing waits for it -- and the thread listens again on the port the
 * migration came to, for the source to come back (a HELLO with RESUME):
 * it tells it which pages it still lacks, asks again for those a fault
 * waits on, and places the rest as before.
 */
#define LOG_TAG "secondary"
#include "replication/secondary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

int twin_pc_frame(struct repl_secondary *s, const uint8_t *buf, size_t len)
{
	char why[160];
	int rc;

	if (!s->o.incoming || !s->twin) {
		secondary_note_error(s, "%s",
				     "a POSTCOPY frame outside a migration's rounds: refused");
		return -EPROTO;
	}
	if (s->pc_missing.nbits) {
		secondary_note_error(s, "%s", "a second POSTCOPY frame: refused");
		return -EPROTO;
	}
	s->pc_port = repl_secondary_port(s);
	rc = repl_postcopy_frame_parse(buf, len, hv_ram_pages(s->twin), &s->pc_missing, why,
				       sizeof(why));
	if (rc < 0) {
		secondary_note_error(s, "postcopy refused: %s", why);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	s->st.postcopy = true;
	s->st.pc.pages = util_bitmap_count(&s->pc_missing);
	pthread_mutex_unlock(&s->lock);
	LOG_INFO("vm %s: postcopy: %" PRIu64 " pages will come after the switch", secondary_name(s),
		 s->st.pc.pages);
	return 0;
}

/* From lazy.c's fault thread: ask the source for a page a vCPU (or the VMM) touched. */
static void pc_request(void *arg, uint64_t pfn)
{
	struct repl_secondary *s = arg;
	bool say = false;
	int rc = -ENOTCONN;

	pthread_mutex_lock(&s->pc_send_lock);
	if (s->pc_link.c)
		rc = repl_postcopy_request(&s->pc_link, pfn);
	/* once per link: a broken one fails every request until the source is back */
	if (rc < 0 && !s->pc_req_failed)
		say = s->pc_req_failed = true;
	pthread_mutex_unlock(&s->pc_send_lock);
	if (say)
		LOG_WARN("vm %s: postcopy: asking the source for page 0x%" PRIx64
			 " (%s); the vCPU that touched it waits",
			 secondary_name(s), pfn, strerror(-rc));
}

int twin_pc_begin(struct repl_secondary *s, struct hv_vm *twin)
{
	int rc;

	if (!s->pc_missing.nbits)
		return 0;
	s->pc_link = s->switch_link; /* requests may go before RUNNING: the same link */
	rc = hv_postcopy_begin(twin, &s->pc_missing, pc_request, s);
	if (rc < 0)
		LOG_ERRNO(rc, "vm %s: postcopy", secondary_name(s));
	else
		s->pc_vm = twin;
	return rc;
}

static void pc_progress(void *arg, const struct repl_pc_progress *pr)
{
	struct repl_secondary *s = arg;

	pthread_mutex_lock(&s->lock);
	s->st.pc = *pr;
	pthread_mutex_unlock(&s->lock);
}

static bool pc_stopping(struct repl_secondary *s)
{
	bool stop;

	pthread_mutex_lock(&s->lock);
	stop = s->pc_stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

#define PC_HELLO_WAIT_MS  5000
#define PC_ACCEPT_POLL_MS 200

/* A connection to the port we listen on again: only our source, coming back. */
static int greet_resume(struct repl_secondary *s, struct repl_conn *c, struct repl_link *out)
{
	struct repl_link l = {.t = s->t, .c = c};
	char why[192], text[REPL_WELCOME_TEXT] = "";
	struct repl_handshake hs;
	struct repl_hello h;
	int rc;

	repl_handshake_init(&hs, s->o.key, s->o.encrypt);
	hs.migrate = true;
	if (s->t->set_timeout)
		s->t->set_timeout(c, PC_HELLO_WAIT_MS);
	rc = repl_hello_recv(&l, &hs, &h, why, sizeof(why));
	if (rc == -EOPNOTSUPP)
		repl_welcome_send(&l, &hs, rc, 0, why);
	if (rc < 0) {
		LOG_WARN("vm %s: postcopy: a peer refused while waiting for the source: %s",
			 secondary_name(s), why);
		goto out;
	}
	rc = repl_handshake_check(&hs, text, sizeof(text));
	if (!rc && !hs.resume) {
		rc = -EBUSY;
		snprintf(text, sizeof(text),
			 "this destination runs a VM in postcopy and waits for its source only");
	}
	if (!rc && h.mem_bytes != hv_vm_mem_bytes(s->pc_vm)) {
		rc = -EINVAL;
		snprintf(text, sizeof(text), "a source of another VM (%" PRIu64 " bytes of RAM)",
			 h.mem_bytes);
	}
	if (rc < 0) {
		LOG_WARN("vm %s: postcopy: a peer refused: %s", secondary_name(s), text);
		repl_welcome_send(&l, &hs, rc, 0, text);
		goto out;
	}
	rc = repl_welcome_send(
		&l, &hs, 0, s->o.conn.timeout_ms ? s->o.conn.timeout_ms : REPL_DEFAULT_TIMEOUT_MS,
		"welcome back");
	if (!rc)
		rc = repl_proof_recv(&l, &hs, why, sizeof(why));
	if (rc < 0) {
		LOG_WARN("vm %s: postcopy: the source's handshake failed (%s)", secondary_name(s),
			 strerror(-rc));
		goto out;
	}
	if (s->t->set_timeout)
		s->t->set_timeout(c, s->o.conn.timeout_ms ? s->o.conn.timeout_ms
							  : REPL_DEFAULT_TIMEOUT_MS);
	*out = l;
	l = (struct repl_link){0};
out:
	repl_handshake_dispose(&hs);
	repl_link_dispose(&l);
	return rc;
}

/* Listen again where the migration came, until the source is back (0) or we stop. */
static int wait_source(struct repl_secondary *s)
{
	struct repl_listener *ls = NULL;
	struct repl_link nl = {0}, old;
	struct util_bitmap missing = {0};
	char addr[300];
	const char *colon = strrchr(s->listen_addr, ':');
	int rc;

	snprintf(addr, sizeof(addr), "%.*s:%u",
		 (int)(colon ? colon - s->listen_addr : (long)strlen(s->listen_addr)),
		 s->listen_addr, s->pc_port);
	while (!pc_stopping(s)) {
		struct repl_conn *c;

		if (!ls) {
			rc = s->t->listen(addr, &s->o.conn, &ls);
			if (rc < 0) { /* the port is busy for now: try again */
				struct timespec t = {0, PC_ACCEPT_POLL_MS * 1000000L};

				ls = NULL;
				nanosleep(&t, NULL);
				continue;
			}
			LOG_INFO("vm %s: postcopy: waiting on %s for the source to come back",
				 secondary_name(s), addr);
		}
		rc = s->t->accept(ls, PC_ACCEPT_POLL_MS, &c);
		if (rc < 0)
			continue;
		if (greet_resume(s, c, &nl) == 0)
			break;
		s->t->close(c);
	}
	if (ls && s->t->close_listener)
		s->t->close_listener(ls);
	if (!nl.c)
		return -ECANCELED;
	/* the new link in; then what we still lack, and what a fault still waits for */
	pthread_mutex_lock(&s->pc_send_lock);
	old = s->pc_link;
	s->pc_link = nl;
	s->pc_req_failed = false;
	rc = hv_postcopy_missing(s->pc_vm, &missing);
	if (!rc)
		rc = repl_postcopy_frame_send(&s->pc_link, &missing);
	pthread_mutex_unlock(&s->pc_send_lock);
	repl_link_dispose(&old);
	s->t->close(old.c);
	LOG_INFO("vm %s: postcopy: the source is back; %" PRIu64 " pages still to come",
		 secondary_name(s), rc ? 0 : util_bitmap_count(&missing));
	util_bitmap_dispose(&missing);
	if (!rc)
		rc = hv_postcopy_reask(s->pc_vm);
	return rc;
}

static void *pc_main(void *arg)
{
	struct repl_secondary *s = arg;
	struct repl_pc_progress pr = {0};
	uint64_t t0 = util_now_ns(), left, faults;
	int rc;

	pthread_setname_np(pthread_self(), "castor-postcopy");
	for (;;) {
		char what[240];

		rc = repl_postcopy_receive(&s->pc_link, s->pc_vm, &s->pc_send_lock, &pr,
					   pc_progress, s);
		hv_postcopy_progress(s->pc_vm, &left, &faults);
		if (!rc || !left) /* every page is here: a link lost after that costs nothing */
			break;
		/* short: last_error holds 160 bytes */
		snprintf(what, sizeof(what),
			 "the source's link broke (%s), %" PRIu64
			 " pages to come: listens on port %u for it",
			 strerror(-rc), left, s->pc_port);
		secondary_note_error(s, "postcopy: %s", what);
		repl_log_event(s->o.log_cb, s->o.log_arg, "postcopy-broken %" PRIu64, left);
		if (pc_stopping(s) || wait_source(s) < 0)
			return NULL;
		repl_log_event(s->o.log_cb, s->o.log_arg, "postcopy-resumed %" PRIu64, left);
	}
	hv_postcopy_progress(s->pc_vm, &left, &faults);
	LOG_INFO("vm %s: postcopy: every page is here (%.1f ms after the switch; %" PRIu64
		 " faults asked for one)",
		 secondary_name(s), (double)(util_now_ns() - t0) / 1e6, faults);
	repl_log_event(s->o.log_cb, s->o.log_arg, "postcopy-done %" PRIu64, faults);
	return NULL;
}

bool twin_pc_answer(struct repl_secondary *s, int rc, int *send_rc)
{
	if (!s->pc_vm) {
		*send_rc = repl_running_send(&s->switch_link, rc);
		return false;
	}
	pthread_mutex_lock(&s->pc_send_lock);
	*send_rc = repl_running_send(&s->pc_link, rc);
	if (rc >= 0) {
		/* the VM runs: the link is the placing thread's now */
		rc = -pthread_create(&s->pc_thread, NULL, pc_main, s);
		if (rc < 0)
			LOG_ERRNO(rc, "vm %s: postcopy: starting the thread that places the pages",
				  secondary_name(s));
	}
	s->pc_live = rc >= 0;
	if (!s->pc_live) /* the caller closes the link: nobody sends on it any more */
		s->pc_link = (struct repl_link){0};
	pthread_mutex_unlock(&s->pc_send_lock);
	return s->pc_live;
}

void twin_pc_stop(struct repl_secondary *s)
{
	if (s->pc_live) {
		pthread_mutex_lock(&s->lock);
		s->pc_stop = true;
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_lock(&s->pc_send_lock);
		if (s->t->abort)
			s->t->abort(s->pc_link.c);
		pthread_mutex_unlock(&s->pc_send_lock);
		pthread_join(s->pc_thread, NULL);
		s->pc_live = false;
	}
	if (s->pc_vm) /* the VM may outlive us: its faults must not call us any more */
		hv_postcopy_detach(s->pc_vm);
	if (s->pc_vm && s->pc_link.c) {
		repl_link_dispose(&s->pc_link);
		s->t->close(s->pc_link.c);
		s->pc_link = (struct repl_link){0};
	}
	s->pc_vm = NULL;
	util_bitmap_dispose(&s->pc_missing);
}
