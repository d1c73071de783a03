/*
 * The stream format, revision 1 (docs/stream-format.md): writing records with
 * their padding and a running CRC-32C, and checking and walking a stream held
 * in memory. Nothing of a stream is applied before hv_stream_check() passed.
 */
#define LOG_TAG "stream"
#include "hypervisor/hv_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WBUF_SIZE (1u << 20)

static const char *const rec_names[] = {
	[HV_REC_HEADER] = "HEADER",	  [HV_REC_PAGES] = "PAGES",	[HV_REC_VCPU] = "VCPU",
	[HV_REC_VCPU_MSRS] = "VCPU_MSRS", [HV_REC_IRQCHIP] = "IRQCHIP", [HV_REC_PIT] = "PIT",
	[HV_REC_CLOCK] = "CLOCK",	  [HV_REC_DEVICE] = "DEVICE",	[HV_REC_END] = "END",
};

const char *hv_rec_type_str(uint32_t type)
{
	type &= ~HV_REC_F_OPTIONAL;
	if (type < sizeof(rec_names) / sizeof(rec_names[0]) && rec_names[type])
		return rec_names[type];
	return "unknown";
}

/* ---- writer ------------------------------------------------------------------------- */

struct hv_stream_writer {
	int fd;	      /* -1: memory */
	uint8_t *buf; /* fd: the write buffer; memory: the whole stream */
	size_t len, cap;
	uint64_t bytes; /* total written */
	uint64_t records, pages;
	uint32_t crc;
	bool finished;
	int error;	   /* sticky */
	uint64_t *entries; /* PAGES scratch: HV_PAGES_MAX entries */
	struct iovec *iov; /* and 2 + HV_PAGES_MAX iovecs */
};

static int writer_new(int fd, size_t cap, struct hv_stream_writer **out)
{
	struct hv_stream_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->cap = cap;
	w->buf = malloc(cap);
	w->crc = UTIL_CRC32C_INIT;
	if (!w->buf) {
		free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

int hv_stream_writer_fd(int fd, struct hv_stream_writer **out)
{
	return writer_new(fd, WBUF_SIZE, out);
}

int hv_stream_writer_mem(struct hv_stream_writer **out)
{
	return writer_new(-1, 1u << 16, out);
}

static int flush(struct hv_stream_writer *w)
{
	size_t done = 0;

	while (w->fd >= 0 && done < w->len) {
		ssize_t r = write(w->fd, w->buf + done, w->len - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return w->error = r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	if (w->fd >= 0)
		w->len = 0;
	return 0;
}

static int put(struct hv_stream_writer *w, const void *p, size_t n, bool checksum)
{
	const uint8_t *s = p;

	if (w->error)
		return w->error;
	w->bytes += n;
	/*
	 * The checksum is taken over the copy in our buffer, never over the
	 * source: a page of a running guest may change under us, and what we
	 * write must be what we checksummed.
	 */
	while (n) {
		size_t room;

		if (w->len == w->cap) {
			if (w->fd >= 0) {
				if (flush(w) < 0)
					return w->error;
			} else {
				uint8_t *nb = realloc(w->buf, w->cap * 2);

				if (!nb)
					return w->error = -ENOMEM;
				w->buf = nb;
				w->cap *= 2;
			}
		}
		room = w->cap - w->len < n ? w->cap - w->len : n;
		memcpy(w->buf + w->len, s, room);
		if (checksum)
			w->crc = util_crc32c_update(w->crc, w->buf + w->len, room);
		w->len += room;
		s += room;
		n -= room;
	}
	return 0;
}

static int write_record(struct hv_stream_writer *w, uint32_t type, const struct iovec *iov,
			int iovcnt, bool checksum)
{
	static const uint8_t zeros[8];
	uint32_t hdr[2] = {type, 0};
	size_t len = 0;
	int i, rc;

	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > HV_REC_MAX_LEN)
		return -EMSGSIZE;
	hdr[1] = (uint32_t)len;
	rc = put(w, hdr, sizeof(hdr), checksum);
	for (i = 0; !rc && i < iovcnt; i++)
		rc = put(w, iov[i].iov_base, iov[i].iov_len, checksum);
	if (!rc && len % 8)
		rc = put(w, zeros, 8 - len % 8, checksum);
	return rc;
}

int hv_stream_write(struct hv_stream_writer *w, uint32_t type, const struct iovec *iov, int iovcnt)
{
	int rc;

	if (w->finished || (type & ~HV_REC_F_OPTIONAL) == HV_REC_END)
		return -EINVAL;
	rc = write_record(w, type, iov, iovcnt, true);
	if (!rc)
		w->records++;
	if (!rc && (type & ~HV_REC_F_OPTIONAL) == HV_REC_PAGES && iovcnt && iov[0].iov_len >= 4) {
		uint32_t count;

		memcpy(&count, iov[0].iov_base, 4); /* END counts page entries */
		w->pages += count;
	}
	return rc;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned i;

	for (i = 0; i < HV_PAGE_SIZE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* One PAGES record per HV_PAGES_MAX pages; page i is at base + pfn (or i, staged) pages. */
static int write_pages(struct hv_stream_writer *w, const uint64_t *pfns, size_t n,
		       const uint8_t *base, bool staged)
{
	size_t done = 0;
	int rc = 0;

	if (!w->entries) {
		w->entries = malloc(HV_PAGES_MAX * sizeof(uint64_t));
		w->iov = malloc((2 + HV_PAGES_MAX) * sizeof(struct iovec));
		if (!w->entries || !w->iov)
			return -ENOMEM;
	}
	while (!rc && done < n) {
		uint32_t hdr[2] = {0, 0}, count = 0;
		int niov = 2;

		while (done + count < n && count < HV_PAGES_MAX) {
			uint64_t pfn = pfns[done + count];
			const uint8_t *page = base + (staged ? (done + count) : pfn) * HV_PAGE_SIZE;

			if (page_is_zero(page)) {
				w->entries[count] = pfn | (uint64_t)HV_PAGE_ZERO
								  << HV_PAGE_ENC_SHIFT;
			} else {
				w->entries[count] = pfn | (uint64_t)HV_PAGE_RAW
								  << HV_PAGE_ENC_SHIFT;
				w->iov[niov].iov_base = (void *)page;
				w->iov[niov].iov_len = HV_PAGE_SIZE;
				niov++;
			}
			count++;
		}
		hdr[0] = count;
		w->iov[0] = (struct iovec){hdr, sizeof(hdr)};
		w->iov[1] = (struct iovec){w->entries, count * sizeof(uint64_t)};
		rc = hv_stream_write(w, HV_REC_PAGES, w->iov, niov);
		done += count;
	}
	return rc;
}

int hv_stream_write_pages(struct hv_stream_writer *w, const uint64_t *pfns, size_t n,
			  const uint8_t *ram)
{
	return write_pages(w, pfns, n, ram, false);
}

int hv_stream_write_staged(struct hv_stream_writer *w, const uint64_t *pfns, size_t n,
			   const uint8_t *data)
{
	return write_pages(w, pfns, n, data, true);
}

int hv_stream_flush(struct hv_stream_writer *w)
{
	return w->error ? w->error : flush(w);
}

int hv_stream_finish(struct hv_stream_writer *w)
{
	struct hv_stream_end end = {
		.records = w->records, .checksum = util_crc32c_final(w->crc), .pages = w->pages};
	struct iovec iov = {&end, sizeof(end)};
	int rc;

	if (w->finished)
		return -EINVAL;
	rc = write_record(w, HV_REC_END, &iov, 1, false);
	if (!rc)
		rc = flush(w);
	w->finished = true;
	return rc;
}

int hv_stream_writer_reset(struct hv_stream_writer *w)
{
	if (w->fd >= 0)
		return -EINVAL;
	w->len = 0;
	w->bytes = 0;
	w->records = 0;
	w->pages = 0;
	w->crc = UTIL_CRC32C_INIT;
	w->finished = false;
	w->error = 0;
	return 0;
}

const uint8_t *hv_stream_writer_data(const struct hv_stream_writer *w, size_t *len)
{
	*len = w->fd < 0 ? w->len : 0;
	return w->fd < 0 ? w->buf : NULL;
}

uint64_t hv_stream_writer_bytes(const struct hv_stream_writer *w)
{
	return w->bytes;
}

void hv_stream_writer_free(struct hv_stream_writer *w)
{
	if (!w)
		return;
	free(w->entries);
	free(w->iov);
	free(w->buf);
	free(w);
}

/* ---- reader ------------------------------------------------------------------------- */

void hv_stream_iter_init(struct hv_stream_iter *it, const uint8_t *buf, size_t len)
{
	it->buf = buf;
	it->len = len;
	it->off = 0;
}

int hv_stream_next(struct hv_stream_iter *it, struct hv_stream_record *rec)
{
	uint32_t hdr[2];
	size_t padded;

	if (it->off + 8 > it->len)
		return -EBADMSG;
	memcpy(hdr, it->buf + it->off, 8);
	if (hdr[1] > HV_REC_MAX_LEN)
		return -EBADMSG;
	padded = (hdr[1] + 7u) & ~7u;
	if (padded > it->len - it->off - 8)
		return -EBADMSG;
	rec->type = hdr[0] & ~HV_REC_F_OPTIONAL;
	rec->optional = hdr[0] & HV_REC_F_OPTIONAL;
	rec->body = it->buf + it->off + 8;
	rec->len = hdr[1];
	rec->offset = it->off;
	it->off += 8 + padded;
	return rec->type == HV_REC_END ? 0 : 1;
}

static bool is_known(uint32_t type)
{
	switch (type) {
	case HV_REC_HEADER:
	case HV_REC_PAGES:
	case HV_REC_VCPU:
	case HV_REC_VCPU_MSRS:
	case HV_REC_IRQCHIP:
	case HV_REC_PIT:
	case HV_REC_CLOCK:
	case HV_REC_DEVICE:
	case HV_REC_END:
		return true;
	default:
		return false;
	}
}

/* Fixed body lengths (0: variable). */
static uint32_t fixed_len(uint32_t type)
{
	switch (type) {
	case HV_REC_HEADER:
		return sizeof(struct hv_stream_header);
	case HV_REC_VCPU:
		return HV_VCPU_REC_LEN;
	case HV_REC_IRQCHIP:
		return 3 * sizeof(struct kvm_irqchip);
	case HV_REC_PIT:
		return sizeof(struct kvm_pit_state2);
	case HV_REC_CLOCK:
		return sizeof(struct kvm_clock_data);
	case HV_REC_END:
		return sizeof(struct hv_stream_end);
	default:
		return 0;
	}
}

static int check_pages(const struct hv_stream_record *r, uint64_t npages, uint64_t *count_out)
{
	uint32_t count, reserved, i;
	uint64_t want;

	if (r->len < 8)
		return -EBADMSG;
	memcpy(&count, r->body, 4);
	memcpy(&reserved, r->body + 4, 4);
	if (reserved || count < 1 || count > HV_PAGES_MAX || r->len < 8 + 8ull * count)
		return -EBADMSG;
	want = 8 + 8ull * count;
	for (i = 0; i < count; i++) {
		uint64_t e;

		memcpy(&e, r->body + 8 + 8ull * i, 8);
		if ((e & HV_PAGE_PFN_MASK) >= npages || (e >> 52 & 0xff))
			return -EBADMSG;
		switch (e >> HV_PAGE_ENC_SHIFT) {
		case HV_PAGE_RAW:
			want += HV_PAGE_SIZE;
			break;
		case HV_PAGE_ZERO:
			break;
		default:
			return -EBADMSG; /* XOR_ZSTD, ZSTD: not in revision 1 */
		}
	}
	if (want != r->len)
		return -EBADMSG;
	*count_out = count;
	return 0;
}

#define BAD(...)                                                                                   \
	do {                                                                                       \
		snprintf(why, why_len, __VA_ARGS__);                                               \
		return -EBADMSG;                                                                   \
	} while (0)

int hv_stream_check(const uint8_t *buf, size_t len, struct hv_stream_header *hdr_out, char *why,
		    size_t why_len)
{
	struct hv_stream_iter it;
	struct hv_stream_record r;
	struct hv_stream_header h;
	struct hv_stream_end end;
	uint64_t records = 0, pages = 0, npages;
	uint32_t crc = UTIL_CRC32C_INIT;
	int rc;

	hv_stream_iter_init(&it, buf, len);
	rc = hv_stream_next(&it, &r);
	if (rc < 0 || r.type != HV_REC_HEADER || r.len != sizeof(h))
		BAD("offset 0: no HEADER record (not a Castor stream, or truncated)");
	memcpy(&h, r.body, sizeof(h));
	if (h.magic != HV_STREAM_MAGIC)
		BAD("offset 0: bad magic 0x%016" PRIx64, h.magic);
	if (h.version > HV_STREAM_REVISION)
		BAD("offset 0: stream revision %u is newer than this reader's (%u)", h.version,
		    HV_STREAM_REVISION);
	if (h.version < 1 || (h.kind != HV_STREAM_FULL && h.kind != HV_STREAM_INCREMENTAL) ||
	    h.ncpus < 1 || h.ncpus > HV_MAX_VCPUS || h.page_size != HV_PAGE_SIZE ||
	    h.mem_bytes < HV_MIN_MEM || h.mem_bytes % HV_PAGE_SIZE || h.reserved || !h.stream_id ||
	    (h.kind == HV_STREAM_INCREMENTAL && !h.parent_id) ||
	    (h.kind == HV_STREAM_FULL && h.parent_id) || h.parent_id == h.stream_id)
		BAD("offset 0: HEADER fields out of range");
	npages = h.mem_bytes / HV_PAGE_SIZE;
	it.off = 0;
	for (;;) {
		size_t padded;
		uint32_t fl;

		rc = hv_stream_next(&it, &r);
		if (rc < 0)
			BAD("offset %zu: truncated or oversized record (no END)", it.off);
		if (rc == 0)
			break;
		padded = (r.len + 7u) & ~7u;
		for (size_t i = r.len; i < padded; i++)
			if (r.body[i])
				BAD("offset %" PRIu64 ": record %s: non-zero padding", r.offset,
				    hv_rec_type_str(r.type));
		crc = util_crc32c_update(crc, buf + r.offset, 8 + padded);
		records++;
		if (r.type == HV_REC_HEADER && r.offset)
			BAD("offset %" PRIu64 ": a second HEADER", r.offset);
		if (is_known(r.type) && r.optional)
			BAD("offset %" PRIu64
			    ": the optional flag on %s, a type this revision defines",
			    r.offset, hv_rec_type_str(r.type));
		if (!is_known(r.type)) {
			if (r.optional)
				continue;
			BAD("offset %" PRIu64 ": unknown mandatory record type 0x%x", r.offset,
			    r.type);
		}
		fl = fixed_len(r.type);
		if (fl && r.len != fl)
			BAD("offset %" PRIu64 ": record %s: length %u, expected %u", r.offset,
			    hv_rec_type_str(r.type), r.len, fl);
		if (r.type == HV_REC_PAGES) {
			uint64_t n;

			if (check_pages(&r, npages, &n) < 0)
				BAD("offset %" PRIu64 ": record PAGES: malformed batch", r.offset);
			pages += n;
		}
	}
	if (r.len != sizeof(end))
		BAD("offset %" PRIu64 ": END of length %u", r.offset, r.len);
	memcpy(&end, r.body, sizeof(end));
	if (it.off != len)
		BAD("offset %zu: %zu bytes after END", it.off, len - it.off);
	if (end.reserved || end.records != records || end.pages != pages)
		BAD("offset %" PRIu64 ": END counts %" PRIu64 " records/%" PRIu64
		    " pages, the stream has %" PRIu64 "/%" PRIu64,
		    r.offset, end.records, end.pages, records, pages);
	if (end.checksum != util_crc32c_final(crc))
		BAD("offset %" PRIu64 ": checksum mismatch (stream 0x%08x, computed 0x%08x)",
		    r.offset, end.checksum, util_crc32c_final(crc));
	if (hdr_out)
		*hdr_out = h;
	return 0;
}
