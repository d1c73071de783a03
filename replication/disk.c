/*
 * Disk writes with epoch barriers, the replica's side (repl.h, "disks: the
 * replica's epoch buffer"; docs/stream-format.md §10).
 *
 * The replica keeps every write, zeroing and flush of an epoch in arrival
 * order and touches its image only when the epoch commits, so the image is
 * always that of the last committed epoch and an epoch that never completes
 * leaves no trace. Memory is bounded by a cap that counts each record's data
 * and bookkeeping: past it the record is refused and the caller fails the
 * epoch (the primary then ends epochs earlier, or degrades), because a
 * replica that grew without bound would take the host down with it. An
 * apply that fails leaves the image between two epochs; the buffer then
 * refuses everything with that error until it is reset after a resync,
 * so a caller cannot commit later epochs on top of a hole.
 *
 * Also here: the §10 records, checked and decoded (repl_disk_op_parse, for
 * the replica and tests/fuzz/fuzz_disk.c) and encoded (repl_disk_op_encode).
 */
#define LOG_TAG "disk"
#include "replication/disk_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- §10 records ---------------------------------------------------------------------- */

const char *repl_disk_op_kind_str(enum repl_disk_op_kind k)
{
	switch (k) {
	case REPL_DISK_OP_WRITE:
		return "DISK_WRITE";
	case REPL_DISK_OP_ZERO:
		return "DISK_ZERO";
	case REPL_DISK_OP_FLUSH:
		return "DISK_FLUSH";
	case REPL_DISK_OP_SEAL:
		return "DISK_SEAL";
	}
	return "?";
}

static int op_size(const struct repl_disk_op *op, uint32_t *type, uint32_t *fixed)
{
	switch (op->kind) {
	case REPL_DISK_OP_WRITE:
		*type = REPL_DISK_REC_WRITE;
		*fixed = sizeof(struct disk_rec_write);
		return 0;
	case REPL_DISK_OP_ZERO:
		*type = REPL_DISK_REC_ZERO;
		*fixed = sizeof(struct disk_rec_zero);
		return 0;
	case REPL_DISK_OP_FLUSH:
		*type = REPL_DISK_REC_FLUSH;
		*fixed = sizeof(struct disk_rec_flush);
		return 0;
	case REPL_DISK_OP_SEAL:
		*type = REPL_DISK_REC_SEAL;
		*fixed = sizeof(struct disk_rec_seal);
		return 0;
	}
	return -EINVAL;
}

/* The rules of a range: sector-aligned, non-empty, no wrap past 2^64. */
static bool is_sector_range(uint64_t off, uint64_t len)
{
	return len && !(off % DISK_SECTOR) && !(len % DISK_SECTOR) && off + len > off;
}

int repl_disk_op_parse(uint32_t type, const uint8_t *body, size_t len, struct repl_disk_op *out,
		       char *why, size_t why_len)
{
	uint32_t base = type & ~DISK_REC_F_OPTIONAL;
	struct disk_rec_write w;
	struct disk_rec_zero z;
	struct disk_rec_flush f;
	struct disk_rec_seal s;

	memset(out, 0, sizeof(*out));
	if (base < REPL_DISK_REC_WRITE || base > REPL_DISK_REC_SEAL)
		return util_why(why, why_len, -EPROTONOSUPPORT,
				"record 0x%04x is not a disk record", base);
	if (type & DISK_REC_F_OPTIONAL)
		return util_why(why, why_len, -EPROTO, "record 0x%04x with the optional flag",
				base);
	switch (base) {
	case REPL_DISK_REC_WRITE:
		if (len < sizeof(w) + DISK_SECTOR || len - sizeof(w) > REPL_DISK_WRITE_MAX ||
		    (len - sizeof(w)) % DISK_SECTOR)
			return util_why(why, why_len, -EPROTO,
					"DISK_WRITE of %zu bytes: its data must be 512 B to 4 MiB "
					"in whole sectors",
					len);
		memcpy(&w, body, sizeof(w));
		if (w.flags & ~REPL_DISK_W_FUA)
			return util_why(why, why_len, -EPROTO, "DISK_WRITE with flags 0x%x",
					w.flags);
		*out = (struct repl_disk_op){.kind = REPL_DISK_OP_WRITE,
					     .epoch = w.epoch,
					     .disk = w.disk,
					     .flags = w.flags,
					     .offset = w.offset,
					     .len = len - sizeof(w),
					     .data = body + sizeof(w)};
		break;
	case REPL_DISK_REC_ZERO:
		if (len != sizeof(z))
			return util_why(why, why_len, -EPROTO, "DISK_ZERO of %zu bytes, not %zu",
					len, sizeof(z));
		memcpy(&z, body, sizeof(z));
		if (z.reserved)
			return util_why(why, why_len, -EPROTO, "DISK_ZERO with reserved bits");
		if (z.length > DISK_ZERO_MAX)
			return util_why(why, why_len, -EPROTO, "DISK_ZERO of %" PRIu64 " bytes",
					z.length);
		*out = (struct repl_disk_op){.kind = REPL_DISK_OP_ZERO,
					     .epoch = z.epoch,
					     .disk = z.disk,
					     .offset = z.offset,
					     .len = z.length};
		break;
	case REPL_DISK_REC_FLUSH:
		if (len != sizeof(f))
			return util_why(why, why_len, -EPROTO, "DISK_FLUSH of %zu bytes, not %zu",
					len, sizeof(f));
		memcpy(&f, body, sizeof(f));
		if (f.reserved)
			return util_why(why, why_len, -EPROTO, "DISK_FLUSH with reserved bits");
		*out = (struct repl_disk_op){
			.kind = REPL_DISK_OP_FLUSH, .epoch = f.epoch, .disk = f.disk};
		break;
	default: /* REPL_DISK_REC_SEAL */
		if (len != sizeof(s))
			return util_why(why, why_len, -EPROTO, "DISK_SEAL of %zu bytes, not %zu",
					len, sizeof(s));
		memcpy(&s, body, sizeof(s));
		if (s.reserved)
			return util_why(why, why_len, -EPROTO, "DISK_SEAL with reserved bits");
		*out = (struct repl_disk_op){.kind = REPL_DISK_OP_SEAL,
					     .epoch = s.epoch,
					     .disk = s.disk,
					     .ops = s.ops,
					     .bytes = s.bytes};
		break;
	}
	if (out->disk >= REPL_DISK_MAX)
		return util_why(why, why_len, -EPROTO, "%s for disk %u (at most %u disks)",
				repl_disk_op_kind_str(out->kind), out->disk, REPL_DISK_MAX);
	if ((out->kind == REPL_DISK_OP_WRITE || out->kind == REPL_DISK_OP_ZERO) &&
	    !is_sector_range(out->offset, out->len))
		return util_why(
			why, why_len, -EPROTO,
			"%s of epoch %" PRIu64 " at %" PRIu64 "+%" PRIu64 ": not whole sectors",
			repl_disk_op_kind_str(out->kind), out->epoch, out->offset, out->len);
	return 0;
}

int repl_disk_op_encode(const struct repl_disk_op *op, uint8_t head[REPL_DISK_OP_HEAD])
{
	struct disk_rec_hdr h;
	uint32_t type, fixed;
	uint8_t *p = head + sizeof(h);

	if (op_size(op, &type, &fixed) < 0 || op->disk >= REPL_DISK_MAX)
		return -EINVAL;
	if (op->kind == REPL_DISK_OP_WRITE &&
	    (op->len > REPL_DISK_WRITE_MAX || !is_sector_range(op->offset, op->len) ||
	     (op->flags & ~REPL_DISK_W_FUA)))
		return -EINVAL;
	if (op->kind == REPL_DISK_OP_ZERO &&
	    (op->len > DISK_ZERO_MAX || !is_sector_range(op->offset, op->len)))
		return -EINVAL;
	h = (struct disk_rec_hdr){
		.type = type,
		.length = fixed + (op->kind == REPL_DISK_OP_WRITE ? (uint32_t)op->len : 0)};
	memcpy(head, &h, sizeof(h));
	switch (op->kind) {
	case REPL_DISK_OP_WRITE: {
		struct disk_rec_write w = {.epoch = op->epoch,
					   .disk = op->disk,
					   .flags = op->flags,
					   .offset = op->offset};
		memcpy(p, &w, sizeof(w));
		break;
	}
	case REPL_DISK_OP_ZERO: {
		struct disk_rec_zero z = {.epoch = op->epoch,
					  .disk = op->disk,
					  .offset = op->offset,
					  .length = op->len};
		memcpy(p, &z, sizeof(z));
		break;
	}
	case REPL_DISK_OP_FLUSH: {
		struct disk_rec_flush f = {.epoch = op->epoch, .disk = op->disk};
		memcpy(p, &f, sizeof(f));
		break;
	}
	case REPL_DISK_OP_SEAL: {
		struct disk_rec_seal s = {
			.epoch = op->epoch, .disk = op->disk, .ops = op->ops, .bytes = op->bytes};
		memcpy(p, &s, sizeof(s));
		break;
	}
	}
	return (int)(sizeof(h) + fixed);
}

size_t repl_disk_op_pad(const struct repl_disk_op *op)
{
	uint32_t type, fixed;
	uint64_t len;

	if (op_size(op, &type, &fixed) < 0)
		return 0;
	len = fixed + (op->kind == REPL_DISK_OP_WRITE ? op->len : 0);
	return (size_t)((8 - len % 8) % 8);
}

/* ---- the epoch buffer -------------------------------------------------------------------- */

struct entry {
	struct entry *next;
	uint64_t epoch;
	enum repl_disk_op_kind kind;
	uint32_t flags;
	uint64_t offset, len;
	uint8_t data[]; /* WRITE: len bytes */
};

struct repl_disk_epoch {
	int fd;
	uint64_t image_bytes;
	uint64_t cap;
	char name[64];
	struct entry *head, *tail; /* arrival order */
	uint64_t held;		   /* bytes counted against the cap */
	uint64_t newest;	   /* epoch of the tail, when head */
	struct repl_disk_epoch_stats st;
	bool committed; /* st.last_committed is valid */
};

int repl_disk_epoch_new(int fd, uint64_t image_bytes, uint64_t cap_bytes, const char *name,
			struct repl_disk_epoch **out)
{
	struct repl_disk_epoch *b;

	*out = NULL;
	if (fd < 0 || !image_bytes)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->fd = fd;
	b->image_bytes = image_bytes;
	b->cap = cap_bytes ? cap_bytes : REPL_DISK_EPOCH_CAP;
	snprintf(b->name, sizeof(b->name), "%s", name ? name : "disk");
	*out = b;
	return 0;
}

static void free_entries(struct entry *e)
{
	while (e) {
		struct entry *next = e->next;

		free(e);
		e = next;
	}
}

static uint64_t entry_cost(const struct entry *e)
{
	return sizeof(*e) + (e->kind == REPL_DISK_OP_WRITE ? e->len : 0);
}

/* May a record of `epoch` covering [off, off + len) be kept? (0 or -errno, logged) */
static int admit(struct repl_disk_epoch *b, uint64_t epoch, uint64_t off, uint64_t len,
		 uint64_t cost)
{
	if (b->st.error)
		return b->st.error;
	if ((b->committed && epoch <= b->st.last_committed) || (b->head && epoch < b->newest)) {
		LOG_ERR("%s: a record of epoch %" PRIu64 " after epoch %" PRIu64 " (%s)", b->name,
			epoch, b->head && epoch < b->newest ? b->newest : b->st.last_committed,
			b->head && epoch < b->newest ? "buffered" : "committed");
		return -ESTALE;
	}
	if (off > b->image_bytes || len > b->image_bytes - off) {
		LOG_ERR("%s: epoch %" PRIu64 ": %" PRIu64 "+%" PRIu64
			" passes the image's end (%" PRIu64 " bytes)",
			b->name, epoch, off, len, b->image_bytes);
		return -EINVAL;
	}
	if (cost > b->cap - b->held || b->held > b->cap) {
		LOG_ERR("%s: epoch %" PRIu64 ": %" PRIu64 " more bytes would pass the buffer's cap "
			"(%" PRIu64 " of %" PRIu64 " held): the epoch cannot be kept",
			b->name, epoch, cost, b->held, b->cap);
		return -ENOBUFS;
	}
	return 0;
}

static int keep(struct repl_disk_epoch *b, uint64_t epoch, enum repl_disk_op_kind kind,
		uint64_t off, uint64_t len, const void *data, uint32_t flags)
{
	size_t dlen = kind == REPL_DISK_OP_WRITE ? (size_t)len : 0;
	struct entry *e;
	int rc;

	rc = admit(b, epoch, off, len, sizeof(*e) + dlen);
	if (rc < 0)
		return rc;
	e = malloc(sizeof(*e) + dlen);
	if (!e)
		return -ENOMEM;
	*e = (struct entry){
		.epoch = epoch, .kind = kind, .flags = flags, .offset = off, .len = len};
	if (dlen)
		memcpy(e->data, data, dlen);
	if (b->tail)
		b->tail->next = e;
	else
		b->head = e;
	b->tail = e;
	b->newest = epoch;
	b->held += entry_cost(e);
	b->st.buffered_ops++;
	b->st.buffered_bytes += dlen;
	return 0;
}

int repl_disk_epoch_write(struct repl_disk_epoch *b, uint64_t epoch, uint64_t offset,
			  const void *data, size_t len, uint32_t flags)
{
	if (!len || len > REPL_DISK_WRITE_MAX || (flags & ~REPL_DISK_W_FUA))
		return -EINVAL;
	return keep(b, epoch, REPL_DISK_OP_WRITE, offset, len, data, flags);
}

int repl_disk_epoch_zero(struct repl_disk_epoch *b, uint64_t epoch, uint64_t offset, uint64_t len)
{
	if (!len)
		return -EINVAL;
	return keep(b, epoch, REPL_DISK_OP_ZERO, offset, len, NULL, 0);
}

int repl_disk_epoch_flush(struct repl_disk_epoch *b, uint64_t epoch)
{
	return keep(b, epoch, REPL_DISK_OP_FLUSH, 0, 0, NULL, 0);
}

int repl_disk_epoch_add(struct repl_disk_epoch *b, const struct repl_disk_op *op)
{
	switch (op->kind) {
	case REPL_DISK_OP_WRITE:
		return repl_disk_epoch_write(b, op->epoch, op->offset, op->data, (size_t)op->len,
					     op->flags);
	case REPL_DISK_OP_ZERO:
		return repl_disk_epoch_zero(b, op->epoch, op->offset, op->len);
	case REPL_DISK_OP_FLUSH:
		return repl_disk_epoch_flush(b, op->epoch);
	case REPL_DISK_OP_SEAL:
		break;
	}
	return -EINVAL;
}

int repl_disk_epoch_check(struct repl_disk_epoch *b, uint64_t epoch, uint64_t ops, uint64_t bytes)
{
	uint64_t n = 0, data = 0;

	if (b->st.error)
		return b->st.error;
	for (const struct entry *e = b->head; e; e = e->next)
		if (e->epoch == epoch) {
			n++;
			data += e->kind == REPL_DISK_OP_WRITE ? e->len : 0;
		}
	if (n == ops && data == bytes)
		return 0;
	LOG_ERR("%s: epoch %" PRIu64 ": %" PRIu64 " records of %" PRIu64
		" bytes held, the primary sent %" PRIu64 " of %" PRIu64,
		b->name, epoch, n, data, ops, bytes);
	return -EBADMSG;
}

/* Drop the first entries up to (not including) `stop`, keeping the counts right. */
static void drop_until(struct repl_disk_epoch *b, struct entry *stop)
{
	while (b->head != stop) {
		struct entry *e = b->head;

		b->head = e->next;
		b->held -= entry_cost(e);
		b->st.buffered_ops--;
		b->st.buffered_bytes -= e->kind == REPL_DISK_OP_WRITE ? e->len : 0;
		free(e);
	}
	if (!b->head)
		b->tail = NULL;
}

static int apply(struct repl_disk_epoch *b, const struct entry *e)
{
	switch (e->kind) {
	case REPL_DISK_OP_WRITE:
		return disk_write_full(b->fd, e->data, (size_t)e->len, e->offset);
	case REPL_DISK_OP_ZERO:
		return disk_zero_range(b->fd, e->offset, e->len);
	default:
		return 0; /* a flush: the commit's fdatasync */
	}
}

/* The image is now between two epochs: remember why and refuse from now on. */
static int fail(struct repl_disk_epoch *b, uint64_t epoch, int rc)
{
	b->st.error = rc;
	b->st.failed_epoch = epoch;
	drop_until(b, NULL);
	return rc;
}

int repl_disk_epoch_commit(struct repl_disk_epoch *b, uint64_t epoch)
{
	struct entry *e;
	bool sync = false;
	uint64_t bytes = 0;
	int rc;

	if (b->st.error)
		return b->st.error;
	if (b->committed && epoch <= b->st.last_committed) {
		LOG_ERR("%s: epoch %" PRIu64 " committed again (last %" PRIu64 ")", b->name, epoch,
			b->st.last_committed);
		return -ESTALE;
	}
	for (e = b->head; e && e->epoch <= epoch; e = e->next) {
		rc = apply(b, e);
		if (rc < 0) {
			LOG_ERRNO(rc,
				  "%s: epoch %" PRIu64 ": %s of %" PRIu64 " bytes at %" PRIu64
				  " failed; the image is part-way into the epoch and must be "
				  "resynchronised",
				  b->name, e->epoch, repl_disk_op_kind_str(e->kind), e->len,
				  e->offset);
			return fail(b, e->epoch, rc);
		}
		sync |= e->kind == REPL_DISK_OP_FLUSH || (e->flags & REPL_DISK_W_FUA);
		bytes += e->kind == REPL_DISK_OP_WRITE ? e->len : 0;
	}
	/*
	 * One fdatasync at the end satisfies every flush of the epoch: the
	 * replica's image only counts at epoch boundaries, so the order of
	 * writes inside the epoch needs no barrier of its own.
	 */
	if (sync && fdatasync(b->fd) < 0) {
		rc = -errno;
		LOG_ERRNO(rc,
			  "%s: epoch %" PRIu64 ": fdatasync failed; the epoch's writes may "
			  "not be on disk",
			  b->name, epoch);
		return fail(b, epoch, rc);
	}
	drop_until(b, e);
	b->st.syncs += sync;
	b->st.applied_bytes += bytes;
	b->st.committed_epochs++;
	b->st.last_committed = epoch;
	b->committed = true;
	return 0;
}

void repl_disk_epoch_discard(struct repl_disk_epoch *b, uint64_t epoch)
{
	struct entry **pp = &b->head, *keep_tail = NULL;

	/* entries are in epoch order: cut the list at the first of `epoch` or later */
	while (*pp && (*pp)->epoch < epoch) {
		keep_tail = *pp;
		pp = &(*pp)->next;
	}
	for (struct entry *e = *pp; e; e = e->next) {
		b->held -= entry_cost(e);
		b->st.buffered_ops--;
		b->st.buffered_bytes -= e->kind == REPL_DISK_OP_WRITE ? e->len : 0;
	}
	free_entries(*pp);
	*pp = NULL;
	b->tail = keep_tail;
	if (keep_tail)
		b->newest = keep_tail->epoch;
}

void repl_disk_epoch_reset(struct repl_disk_epoch *b)
{
	drop_until(b, NULL);
	b->st.error = 0;
	b->st.failed_epoch = 0;
	b->committed = false;
}

void repl_disk_epoch_stats(const struct repl_disk_epoch *b, struct repl_disk_epoch_stats *out)
{
	*out = b->st;
}

void repl_disk_epoch_free(struct repl_disk_epoch *b)
{
	if (!b)
		return;
	free_entries(b->head);
	free(b);
}
