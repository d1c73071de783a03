/*
 * What the stream verifier's files share (stream_verify.c: framing, HEADER,
 * state records, END, the loop; stream_verify_pages.c: the page batches of
 * both revisions). Private to tools/castor; users see stream_verify.h only.
 */
#ifndef CASTOR_TOOLS_STREAM_VERIFY_INT_H
#define CASTOR_TOOLS_STREAM_VERIFY_INT_H

#include "tools/castor/stream_verify.h"
#include "tools/castor/stream_verify_pfns.h"

/* ---- little-endian loads (the format is little-endian whatever the host) ------ */

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Where the stream is in the §3 grammar: what may come next. */
enum sv_phase {
	PH_START,   /* HEADER is due */
	PH_PAGES,   /* after HEADER: PAGES, or VCPU 0 */
	PH_VCPU,    /* VCPU of vCPU vcpus_done is due */
	PH_MSRS,    /* VCPU_MSRS of vCPU vcpus_done is due */
	PH_IRQCHIP, /* then PIT, then CLOCK */
	PH_PIT,
	PH_CLOCK,
	PH_DEVICES, /* after CLOCK: DEVICE, PAGES or END */
	PH_TAIL,    /* PAGES after the state: PAGES or END */
	PH_DONE,    /* END has been read */
};

struct verifier {
	stream_verify_read_fn read_cb;
	void *read_ctx;
	stream_verify_record_fn record_cb;
	void *record_ctx;
	struct stream_verify_result *res;

	uint8_t *buf; /* the current record's body and padding */
	size_t cap;
	const uint8_t *body; /* buf, or a static empty array before the first allocation */

	uint64_t off; /* of the current record */
	bool in_rec;  /* its header has been read */
	uint32_t type, length;
	uint8_t hdr[SV_REC_HDR_LEN];

	uint32_t crc; /* over every record before END */
	enum sv_phase phase;
	uint32_t vcpus_done; /* vCPUs with both VCPU and VCPU_MSRS read */
	uint64_t mem_pages;
	/*
	 * Every pfn the stream's page entries named so far: a full snapshot's
	 * coverage (§2.2) and the revision-2 rule that an XOR or PATCH entry's pfn
	 * has not appeared before (§9.2).
	 */
	struct pfn_set pfns;

	/*
	 * §9.5's bound: the revision-1 stream a receiver decodes this one into is
	 * at most the wire size plus 2 x mem_bytes. wire and decoded sum the
	 * records accepted so far; decoded_rec is the current record's share,
	 * set by its check (its wire size unless a page batch says otherwise).
	 */
	uint64_t wire, decoded, decoded_rec;

	void *zctx;    /* a ZSTD_DCtx, made at the first PAGES_ZSTD */
	uint8_t *zbuf; /* where a frame is decompressed to, raw_len bytes */
	size_t zbuf_cap;

	size_t *id_slot; /* hash set of device ids: index into res->devices + 1 */
	size_t id_cap;
};

/*
 * Describe the first broken rule in v->res (at the current record) and return
 * -EBADMSG, so that a check reads `return sv_fail(v, "...")`.
 */
__attribute__((format(printf, 2, 3))) int sv_fail(struct verifier *v, const char *fmt, ...);

/*
 * The page batches: PAGES (§2.2, §9.2) and PAGES_ZSTD (§9.3). Each checks the
 * body in v->body, counts the entries by encoding in rec, adds their pfns to
 * v->pfns and sets v->decoded to the size the record has once decoded to
 * revision 1 (§9.5). 0, -EBADMSG, or -ENOMEM.
 */
int sv_check_pages(struct verifier *v, struct stream_verify_record *rec);
int sv_check_pages_zstd(struct verifier *v, struct stream_verify_record *rec);
/* Free what the page checks keep between records (the zstd context and buffer). */
void sv_pages_dispose(struct verifier *v);

#endif
