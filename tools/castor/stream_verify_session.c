/*
 * The independent verifier on a captured replication connection: the bytes the
 * primary sent (docs/stream-format.md §8-§8.2), from its HELLO on. Written from
 * the specification alone, like the rest of the verifier, and sharing no code
 * with replication/: each epoch's stream is handed to stream_verify_read(), and
 * the epochs must chain (the first a full stream, each later one an
 * incremental whose parent is the previous stream).
 *
 * Layers, innermost last: the capture; after a PROOF (a keyed session), the
 * sealed records of §8.2, whose bodies are read as one byte stream -- their tags
 * are not checked, which takes the key, and an encrypted link cannot be read
 * at all; the frames of §8.1 (EPCH with its stream, PING, BYE), DISK frames
 * (§8.4: §10 records of the epoch under way, each disk sealed once before its
 * epoch's frame) and, in a live migration (§8.3, the HELLO's MIGRATE), SWITCH
 * after its last round -- and with postcopy (§8.6) a POSTCOPY frame before that
 * round, the PAGE messages and END after SWITCH; a RESUME capture is only
 * those messages. Not checked: that the switch's epoch carries none of the
 * named pages (its pages are the stream verifier's business).
 */
#include "tools/castor/stream_verify_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_MAGIC    0x4f4c454852545343ull /* "CSTRHELO" */
#define PROOF_MAGIC    0x464f525052545343ull /* "CSTRPROF" */
#define EPCH_MAGIC     0x4843504552545343ull /* "CSTREPCH" */
#define PING_MAGIC     0x474e495052545343ull /* "CSTRPING" */
#define BYE_MAGIC      0x2145594252545343ull /* "CSTRBYE!" */
#define SWCH_MAGIC     0x4843575352545343ull /* "CSTRSWCH" */
#define DISK_MAGIC     0x4b53494452545343ull /* "CSTRDISK" */
#define PCPY_MAGIC     0x5950435052545343ull /* "CSTRPCPY" */
#define PAGE_MAGIC     0x4547415052545343ull /* "CSTRPAGE" */
#define PEND_MAGIC     0x444e455052545343ull /* "CSTRPEND" */
#define PC_MSG_LEN     24u
#define DISK_FRAME_MAX (8u << 20)
#define DISKS_MAX      4u
#define REC_DISK_WRITE 0x0050u
#define REC_DISK_SEAL  0x0053u
#define HELLO_LEN      64u
#define PROOF_LEN      40u
#define FRAME_LEN      16u
#define SESSION_V      2u
#define F_AUTH	       0x1u
#define F_ENCRYPT      0x2u
#define F_DISK	       0x4u
#define F_MIGRATE      0x8u
#define F_SUMS	       0x10u
#define F_RESUME       0x20u
#define SEAL_MAX       (1u << 20)
#define SEAL_TAG       16u

struct reader {
	stream_verify_read_fn read;
	void *ctx;
	uint64_t offset; /* bytes of the capture consumed */
	bool sealed;
	uint64_t record_left; /* sealed: body bytes left in the current record */
	uint64_t records;
	uint64_t frame_left; /* inside an epoch: its stream's bytes not read yet */
	bool in_frame;
	int err; /* the capture's own read error */
	char why[SV_ERROR_MAX];
};

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* Exactly len bytes of the capture itself: 0, 1 at its end before any, or -EBADMSG. */
static int raw_exact(struct reader *r, uint8_t *buf, size_t len, bool end_ok)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = r->read(r->ctx, buf + got, len - got);

		if (n < 0) {
			r->err = (int)n;
			return (int)n;
		}
		if (n == 0) {
			if (!got && end_ok)
				return 1;
			snprintf(r->why, sizeof(r->why),
				 "the capture ends %zu bytes into a %zu-byte %s", got, len,
				 r->sealed ? "sealed record" : "field");
			return -EBADMSG;
		}
		got += (size_t)n;
		r->offset += (uint64_t)n;
	}
	return 0;
}

/* Up to len bytes of the session's byte stream (record bodies once sealed); 0 at the end. */
static ssize_t session_read(struct reader *r, uint8_t *buf, size_t len)
{
	if (!r->sealed) {
		ssize_t n = r->read(r->ctx, buf, len);

		if (n > 0)
			r->offset += (uint64_t)n;
		if (n < 0)
			r->err = (int)n;
		return n;
	}
	if (!r->record_left) {
		uint8_t tag[SEAL_TAG], hdr[4];
		uint32_t length;
		int rc;

		if (r->records) {
			rc = raw_exact(r, tag, SEAL_TAG, false); /* the previous record's tag */
			if (rc)
				return rc < 0 ? rc : -EBADMSG;
		}
		rc = raw_exact(r, hdr, 4, true);
		if (rc)
			return rc > 0 ? 0 : rc;
		length = get32(hdr);
		if (!length || length > SEAL_MAX) {
			snprintf(r->why, sizeof(r->why),
				 "sealed record %llu: length %u (1 to %u bytes)",
				 (unsigned long long)r->records, length, SEAL_MAX);
			return -EBADMSG;
		}
		r->record_left = length;
		r->records++;
	}
	if (len > r->record_left)
		len = (size_t)r->record_left;
	{
		ssize_t n = r->read(r->ctx, buf, len);

		if (n < 0)
			r->err = (int)n;
		if (n <= 0) {
			if (!n)
				snprintf(r->why, sizeof(r->why),
					 "the capture ends inside sealed record %llu",
					 (unsigned long long)r->records - 1);
			return n ? n : -EBADMSG;
		}
		r->offset += (uint64_t)n;
		r->record_left -= (uint64_t)n;
		return n;
	}
}

/* Exactly len bytes of the session stream: 0, 1 at its clean end before any, or -errno. */
static int session_exact(struct reader *r, uint8_t *buf, size_t len, bool end_ok)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = session_read(r, buf + got, len - got);

		if (n < 0)
			return (int)n;
		if (n == 0) {
			if (!got && end_ok)
				return 1;
			snprintf(r->why, sizeof(r->why), "the capture ends %zu bytes into a frame",
				 got);
			return -EBADMSG;
		}
		got += (size_t)n;
	}
	return 0;
}

/* The verifier's read function: the epoch's stream, no further than its frame says. */
static ssize_t epoch_read(void *ctx, uint8_t *buf, size_t len)
{
	struct reader *r = ctx;
	ssize_t n;

	if (!r->frame_left)
		return 0;
	if (len > r->frame_left)
		len = (size_t)r->frame_left;
	n = session_read(r, buf, len);
	if (n > 0)
		r->frame_left -= (uint64_t)n;
	if (n == 0) {
		snprintf(r->why, sizeof(r->why),
			 "the capture ends %llu bytes before the epoch's end",
			 (unsigned long long)r->frame_left);
		return -EBADMSG;
	}
	return n;
}

static int fail(struct stream_verify_session *s, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	s->valid = false;
	s->offset = offset;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static int check_hello(struct stream_verify_session *s, struct reader *r)
{
	uint8_t h[HELLO_LEN];
	static const uint8_t zero[32];
	int rc = raw_exact(r, h, HELLO_LEN, false);

	if (rc)
		return rc == -EBADMSG ? fail(s, r->offset, "HELLO: %s", r->why) : rc;
	if (get64(h) != HELLO_MAGIC)
		return fail(s, 0, "not a session capture: no HELLO magic");
	s->version = get32(h + 8);
	s->flags = get32(h + 12);
	s->mem_bytes = get64(h + 16);
	s->ncpus = get32(h + 24);
	if (s->version != SESSION_V)
		return fail(s, 8, "HELLO: session layer version %u; this verifier knows %u",
			    s->version, SESSION_V);
	if (s->flags & ~(F_AUTH | F_ENCRYPT | F_DISK | F_MIGRATE | F_SUMS | F_RESUME))
		return fail(s, 12, "HELLO: reserved flag bits 0x%x",
			    s->flags &
				    ~(F_AUTH | F_ENCRYPT | F_DISK | F_MIGRATE | F_SUMS | F_RESUME));
	if ((s->flags & F_RESUME) && (!(s->flags & F_MIGRATE) || (s->flags & F_SUMS)))
		return fail(s, 12, "HELLO: RESUME without MIGRATE, or with SUMS");
	s->resume = s->flags & F_RESUME;
	if ((s->flags & F_MIGRATE) && (s->flags & F_DISK))
		return fail(s, 12, "HELLO: MIGRATE with DISK");
	if ((s->flags & F_SUMS) && (s->flags & F_DISK))
		return fail(s, 12, "HELLO: SUMS with DISK");
	s->migration = s->flags & F_MIGRATE;
	if ((s->flags & F_ENCRYPT) && !(s->flags & F_AUTH))
		return fail(s, 12, "HELLO: ENCRYPT without AUTH");
	if (get32(h + 28))
		return fail(s, 28, "HELLO: reserved field not 0");
	if (!(s->flags & F_AUTH) && memcmp(h + 32, zero, 32))
		return fail(s, 32, "HELLO: a nonce without AUTH");
	if (s->flags & F_DISK)
		return fail(s, 12,
			    "HELLO: a disk resync (DISK, §11), not a VM's epochs: not "
			    "checked by this verifier");
	if (!s->mem_bytes || s->mem_bytes % SV_PAGE_SIZE || !s->ncpus || s->ncpus > SV_MAX_NCPUS)
		return fail(s, 16, "HELLO: %llu bytes of RAM and %u vCPUs is no VM",
			    (unsigned long long)s->mem_bytes, s->ncpus);
	return 0;
}

static int check_proof(struct stream_verify_session *s, struct reader *r)
{
	uint8_t p[PROOF_LEN];
	int rc = raw_exact(r, p, PROOF_LEN, false);

	if (rc)
		return rc == -EBADMSG ? fail(s, r->offset, "PROOF: %s", r->why) : rc;
	if (get64(p) != PROOF_MAGIC)
		return fail(s, HELLO_LEN, "no PROOF after a HELLO with AUTH");
	if (s->flags & F_ENCRYPT)
		return fail(s, HELLO_LEN + PROOF_LEN,
			    "the link is encrypted (the HELLO asked for it): its records cannot "
			    "be read without the key");
	r->sealed = true;
	s->sealed = true;
	return 0;
}

/* One epoch's stream through the verifier, and its place in the chain. */
static int check_epoch(struct stream_verify_session *s, struct reader *r, uint64_t length,
		       uint64_t at)
{
	struct stream_verify_result res = {0};
	int rc;

	/* epoch 0 names the replicated disks by sealing them; every later epoch seals the same */
	if (s->written_now & ~s->sealed_now)
		return fail(s, at, "epoch %llu: disk records without a seal (disks 0x%x)",
			    (unsigned long long)s->epochs, s->written_now & ~s->sealed_now);
	if (!s->epochs)
		s->disks = s->sealed_now;
	else if (s->sealed_now != s->disks)
		return fail(s, at,
			    "epoch %llu: its DISK frames sealed disks 0x%x, epoch 0 sealed 0x%x",
			    (unsigned long long)s->epochs, s->sealed_now, s->disks);
	s->sealed_now = s->written_now = 0;
	if (!length || length > 2 * s->mem_bytes + (64ull << 20)) {
		return fail(s, at, "epoch %llu: a stream of %llu bytes for %llu bytes of RAM",
			    (unsigned long long)s->epochs, (unsigned long long)length,
			    (unsigned long long)s->mem_bytes);
	}
	r->frame_left = length;
	r->why[0] = 0;
	rc = stream_verify_read(epoch_read, r, NULL, NULL, &res);
	if (rc == -EBADMSG && r->why[0])
		rc = fail(s, r->offset, "epoch %llu: %s", (unsigned long long)s->epochs, r->why);
	else if (rc == -EBADMSG)
		rc = fail(s, at + FRAME_LEN + res.offset, "epoch %llu, its offset %llu: %s",
			  (unsigned long long)s->epochs, (unsigned long long)res.offset, res.error);
	else if (rc == 0 && res.mem_bytes != s->mem_bytes)
		rc = fail(s, at, "epoch %llu: %llu bytes of RAM, the HELLO said %llu",
			  (unsigned long long)s->epochs, (unsigned long long)res.mem_bytes,
			  (unsigned long long)s->mem_bytes);
	else if (rc == 0 && !s->epochs && res.kind != SV_KIND_FULL)
		rc = fail(s, at, "epoch 0 is not a full stream (the initial copy)");
	else if (rc == 0 && s->epochs && res.kind != SV_KIND_INCREMENTAL)
		rc = fail(s, at, "epoch %llu is not an incremental stream",
			  (unsigned long long)s->epochs);
	else if (rc == 0 && s->epochs && res.parent_id != s->last_stream_id)
		rc = fail(s, at, "epoch %llu: parent 0x%016llx, the previous epoch was 0x%016llx",
			  (unsigned long long)s->epochs, (unsigned long long)res.parent_id,
			  (unsigned long long)s->last_stream_id);
	if (rc == 0) {
		s->last_stream_id = res.stream_id;
		s->pages += res.pages;
		s->epochs++;
	}
	stream_verify_result_dispose(&res);
	return rc;
}

/* A DISK frame: §10 records {u32 type, u32 length, body, zero pad}, of the epoch under way. */
static int check_disk(struct stream_verify_session *s, struct reader *r, uint64_t length,
		      uint64_t at)
{
	uint8_t *buf;
	uint64_t off = 0;
	int rc;

	if (!length || length > DISK_FRAME_MAX)
		return fail(s, at + 8, "a DISK frame of %llu bytes (1 to %u)",
			    (unsigned long long)length, DISK_FRAME_MAX);
	buf = malloc((size_t)length);
	if (!buf)
		return -ENOMEM;
	rc = session_exact(r, buf, (size_t)length, false);
	if (rc == -EBADMSG)
		rc = fail(s, r->offset, "%s", r->why);
	while (!rc && off < length) {
		uint64_t rat = at + FRAME_LEN + off, epoch, pad, i;
		uint32_t type, len, disk;

		if (length - off < 8) {
			rc = fail(s, rat, "a DISK frame ends inside a record's header");
			break;
		}
		type = get32(buf + off);
		len = get32(buf + off + 4);
		pad = (8 - len % 8) % 8;
		if (type < REC_DISK_WRITE || type > REC_DISK_SEAL) {
			rc = fail(s, rat,
				  "record type 0x%04x in a DISK frame (§10's are 0x0050-0x0053)",
				  type);
			break;
		}
		if (len < 16 || len + pad > length - off - 8) {
			rc = fail(s, rat + 4, "a record of %u bytes where %llu are left", len,
				  (unsigned long long)(length - off - 8));
			break;
		}
		for (i = 0; i < pad; i++)
			if (buf[off + 8 + len + i]) {
				rc = fail(s, rat + 8 + len + i, "padding that is not zero");
				break;
			}
		if (rc)
			break;
		epoch = get64(buf + off + 8);
		disk = get32(buf + off + 16);
		if (epoch != s->epochs)
			rc = fail(s, rat + 8,
				  "a record of epoch %llu while epoch %llu is under way",
				  (unsigned long long)epoch, (unsigned long long)s->epochs);
		else if (disk >= DISKS_MAX)
			rc = fail(s, rat + 16, "disk %u (0 to %u)", disk, DISKS_MAX - 1);
		else if (s->sealed_now & (1u << disk))
			rc = fail(s, rat, "disk %u: a record after its seal for epoch %llu", disk,
				  (unsigned long long)epoch);
		else if (s->epochs && type != REC_DISK_SEAL && !(s->disks & (1u << disk)))
			rc = fail(s, rat,
				  "disk %u: writes without an initial copy (epoch 0 did not "
				  "seal it)",
				  disk);
		if (!rc && type == REC_DISK_SEAL)
			s->sealed_now |= 1u << disk;
		else if (!rc)
			s->written_now |= 1u << disk;
		s->disk_records++;
		off += 8 + len + pad;
	}
	free(buf);
	if (!rc)
		s->disk_frames++;
	return rc;
}

static uint64_t pc_pages_of(const struct stream_verify_session *s)
{
	return s->mem_bytes / SV_PAGE_SIZE;
}

static bool bit(const uint64_t *w, uint64_t i)
{
	return w[i / 64] >> (i % 64) & 1;
}

/* POSTCOPY: the pages the switch's epoch leaves out, before that epoch. */
static int check_postcopy(struct stream_verify_session *s, struct reader *r, uint64_t length,
			  uint64_t at)
{
	uint64_t pages = pc_pages_of(s), words = (pages + 63) / 64, n, i;
	uint8_t b8[8];
	int rc;

	if (!s->migration)
		return fail(s, at, "POSTCOPY in a session that is no migration");
	if (!s->epochs)
		return fail(s, at, "POSTCOPY before any epoch: the copy comes first");
	if (s->postcopy)
		return fail(s, at, "a second POSTCOPY frame");
	if (length != 8 + 8 * words)
		return fail(s, at + 8, "POSTCOPY of %llu bytes; a VM of %llu pages takes %llu",
			    (unsigned long long)length, (unsigned long long)pages,
			    (unsigned long long)(8 + 8 * words));
	rc = session_exact(r, b8, 8, false);
	if (rc)
		return rc == -EBADMSG ? fail(s, r->offset, "%s", r->why) : rc;
	n = get64(b8);
	if (n != pages)
		return fail(s, at + 16, "POSTCOPY for %llu pages; the HELLO said %llu",
			    (unsigned long long)n, (unsigned long long)pages);
	s->pc_named_bits = calloc(words, 8);
	s->pc_sent_bits = calloc(words, 8);
	if (!s->pc_named_bits || !s->pc_sent_bits)
		return -ENOMEM;
	for (i = 0; i < words; i++) {
		rc = session_exact(r, b8, 8, false);
		if (rc)
			return rc == -EBADMSG ? fail(s, r->offset, "%s", r->why) : rc;
		s->pc_named_bits[i] = get64(b8);
		s->pc_named += (uint64_t)__builtin_popcountll(s->pc_named_bits[i]);
	}
	if (pages % 64 && s->pc_named_bits[words - 1] >> (pages % 64))
		return fail(s, at + 16 + 8 * words, "POSTCOPY names pages past the end of RAM");
	s->postcopy = true;
	s->pc_epochs_at = s->epochs;
	return 0;
}

/* After SWITCH with postcopy, or a RESUME from its HELLO on: PAGEs, then END. */
static int check_pc_messages(struct stream_verify_session *s, struct reader *r)
{
	uint64_t pages = pc_pages_of(s);
	uint8_t m[PC_MSG_LEN], page[SV_PAGE_SIZE];
	int rc;

	if (!s->pc_sent_bits) { /* a RESUME: what was named is the other end's */
		s->pc_sent_bits = calloc((pages + 63) / 64, 8);
		if (!s->pc_sent_bits)
			return -ENOMEM;
	}
	for (;;) {
		uint64_t at = r->offset, magic, v;
		uint32_t flags, reserved;

		rc = session_exact(r, m, PC_MSG_LEN, true);
		if (rc == 1) /* the capture ends between messages: a link that broke */
			return 0;
		if (rc)
			return rc == -EBADMSG ? fail(s, r->offset, "%s", r->why) : rc;
		magic = get64(m);
		v = get64(m + 8);
		flags = get32(m + 16);
		reserved = get32(m + 20);
		if (reserved)
			return fail(s, at + 20, "a postcopy message's reserved field is not 0");
		if (s->pc_end)
			return fail(s, at, "bytes after END: the source sends nothing more");
		if (magic == PEND_MAGIC) {
			if (flags)
				return fail(s, at + 16, "END with flags 0x%x", flags);
			if (v != s->pc_pages)
				return fail(s, at + 8, "END says %llu pages, %llu PAGEs came",
					    (unsigned long long)v, (unsigned long long)s->pc_pages);
			s->pc_end = true;
			continue;
		}
		if (magic != PAGE_MAGIC)
			return fail(s, at, "magic 0x%016llx after SWITCH: not PAGE or END",
				    (unsigned long long)magic);
		if (flags & ~1u)
			return fail(s, at + 16,
				    "PAGE with flags 0x%x (bit 0, zero, is the only one)", flags);
		if (v >= pages)
			return fail(s, at + 8, "PAGE 0x%llx past the end of RAM",
				    (unsigned long long)v);
		if (s->pc_named_bits && !bit(s->pc_named_bits, v))
			return fail(s, at + 8, "PAGE 0x%llx, which POSTCOPY did not name",
				    (unsigned long long)v);
		if (bit(s->pc_sent_bits, v))
			return fail(s, at + 8, "PAGE 0x%llx sent twice", (unsigned long long)v);
		s->pc_sent_bits[v / 64] |= 1ull << (v % 64);
		s->pc_pages++;
		if (flags) {
			s->pc_zero++;
			continue;
		}
		rc = session_exact(r, page, SV_PAGE_SIZE, false);
		if (rc)
			return rc == -EBADMSG ? fail(s, r->offset, "PAGE 0x%llx: %s",
						     (unsigned long long)v, r->why)
					      : rc;
	}
}

int stream_verify_session(stream_verify_read_fn read_cb, void *read_ctx,
			  struct stream_verify_session *s)
{
	struct reader r = {.read = read_cb, .ctx = read_ctx};
	int rc;

	memset(s, 0, sizeof(*s));
	rc = check_hello(s, &r);
	if (!rc && (s->flags & F_AUTH))
		rc = check_proof(s, &r);
	if (!rc && s->resume)
		rc = check_pc_messages(s, &r);
	while (!rc && !s->resume) {
		uint8_t f[FRAME_LEN];
		uint64_t at = r.offset, magic, length;

		rc = session_exact(&r, f, FRAME_LEN, true);
		if (rc == 1) { /* the capture ends between frames: fine */
			rc = 0;
			break;
		}
		if (rc == -EBADMSG) {
			rc = fail(s, r.offset, "%s", r.why);
			break;
		}
		if (rc)
			break;
		magic = get64(f);
		length = get64(f + 8);
		if (magic == EPCH_MAGIC) {
			if (s->postcopy && s->epochs > s->pc_epochs_at)
				rc = fail(s, at,
					  "a second epoch after POSTCOPY: the switch's is the "
					  "last");
			else
				rc = check_epoch(s, &r, length, at);
		} else if (magic == PCPY_MAGIC) {
			rc = check_postcopy(s, &r, length, at);
		} else if (magic == DISK_MAGIC) {
			rc = check_disk(s, &r, length, at);
		} else if (magic == PING_MAGIC || magic == BYE_MAGIC || magic == SWCH_MAGIC) {
			const char *name = magic == PING_MAGIC	? "PING"
					   : magic == BYE_MAGIC ? "BYE"
								: "SWITCH";

			if (length)
				rc = fail(s, at + 8, "%s with a length of %llu (0 is the only one)",
					  name, (unsigned long long)length);
			else if (magic == SWCH_MAGIC && !s->migration)
				rc = fail(s, at,
					  "SWITCH in a session that is no migration (its HELLO has "
					  "no MIGRATE)");
			else if (magic == SWCH_MAGIC && !s->epochs)
				rc = fail(s, at, "SWITCH before any epoch: nothing to run");
			else if (magic == SWCH_MAGIC && s->postcopy && s->epochs == s->pc_epochs_at)
				rc = fail(s, at,
					  "SWITCH right after POSTCOPY: the switch's epoch (the "
					  "state) is missing");
			else if (magic == PING_MAGIC)
				s->pings++;
			else if (magic == BYE_MAGIC)
				s->bye = true;
			else
				s->switched = true;
			if (!rc && s->switched && s->postcopy) {
				rc = check_pc_messages(s, &r);
				break;
			}
			if (!rc && (s->bye || s->switched)) {
				uint8_t one;

				rc = session_exact(&r, &one, 1, true);
				rc = rc == 1  ? 0
				     : s->bye ? fail(s, r.offset,
						     "bytes after BYE: the connection closes there")
					      : fail(s, r.offset,
						     "bytes after SWITCH: the source sends nothing "
						     "more");
				break;
			}
		} else {
			rc = fail(s, at,
				  "frame with magic 0x%016llx: not EPCH, DISK, POSTCOPY, PING or "
				  "BYE%s",
				  (unsigned long long)magic,
				  r.sealed ? " (if the replica runs with --encrypt, the link is "
					     "encrypted and cannot be read without the key)"
					   : "");
		}
	}
	if (r.err && !rc)
		rc = r.err;
	free(s->pc_named_bits);
	free(s->pc_sent_bits);
	s->pc_named_bits = s->pc_sent_bits = NULL;
	s->valid = rc == 0;
	s->records = r.records;
	s->bytes = r.offset;
	return rc;
}
