/*
 * An independent verifier of the Castor stream format, revisions 1 and 2
 * (docs/stream-format.md; revision 2, §9, is what replication sends on the wire). It is written
 *from the specification alone and shares no code with the writer and reader in hypervisor/, so that
 *a mistake in either shows up as a disagreement. `castor stream verify|dump` (stream.c) and
 * tests/fuzz/fuzz_stream_verify.c are its users.
 *
 * The verifier pulls the stream through a read function one record at a time. A
 * record's body goes into a buffer that grows only as bytes actually arrive and
 * never beyond REC_MAX_LEN (plus padding), so no length field can make it
 * allocate; a stream of any size is checked in bounded memory, apart from the
 * set of page numbers seen (at most ~150 bytes per 512 pages present), and,
 * for a PAGES_ZSTD record, its raw_len (at most 16 MiB, checked against the
 * entries before the frame is decompressed). It stops at the first broken rule and describes it in
 *the result: what is wrong, at which offset, in which record.
 *
 *	struct stream_verify_result res;
 *	rc = stream_verify_buf(buf, len, &res);   // 0 valid, -EBADMSG not, or -errno
 *	... res.error, res.offset, res.devices ...
 *	stream_verify_result_dispose(&res);
 *
 * Every function returns 0 when the stream is valid, -EBADMSG when it is not
 * (res->error says why), and another -errno when it could not be read to a
 * verdict (-ENOMEM, or the read function's error); res is filled in every case
 * and must be disposed of by the caller.
 */
#ifndef CASTOR_TOOLS_STREAM_VERIFY_H
#define CASTOR_TOOLS_STREAM_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the format, as docs/stream-format.md states it --------------------------- */

#define SV_REVISION	  2u			/* the newest this verifier knows */
#define SV_MAGIC	  0x4d52545352545343ull /* "CSTRSTRM" */
#define SV_REC_HDR_LEN	  8u
#define SV_REC_ALIGN	  8u
#define SV_REC_MAX_LEN	  ((16u << 20) + 65536u) /* body bytes, before padding */
#define SV_REC_F_OPTIONAL 0x80000000u
#define SV_PAGE_SIZE	  4096u
#define SV_MAX_NCPUS	  8u
#define SV_PAGES_MAX	  4096u /* entries in one PAGES record */
#define SV_MSRS_MAX	  1024u /* entries in one VCPU_MSRS record */

enum sv_rec_type {
	SV_REC_HEADER = 0x0001,
	SV_REC_PAGES = 0x0002,
	SV_REC_PAGES_ZSTD = 0x0003, /* revision 2 (§9.3) */
	SV_REC_VCPU = 0x0010,
	SV_REC_VCPU_MSRS = 0x0011,
	SV_REC_IRQCHIP = 0x0020,
	SV_REC_PIT = 0x0021,
	SV_REC_CLOCK = 0x0022,
	SV_REC_DEVICE = 0x0030,
	SV_REC_END = 0x00ff,
};

/* Fixed body lengths (§2). */
#define SV_HEADER_LEN  64u
#define SV_VCPU_LEN    6176u
#define SV_IRQCHIP_LEN 1560u /* 3 x struct kvm_irqchip */
#define SV_IRQCHIP_ONE 520u
#define SV_PIT_LEN     112u /* struct kvm_pit_state2 */
#define SV_CLOCK_LEN   48u  /* struct kvm_clock_data */
#define SV_END_LEN     24u

/* Where the KVM structures sit in a VCPU body (§2.3). */
#define SV_VCPU_REGS_OFF  8u   /* struct kvm_regs, 144 bytes */
#define SV_VCPU_SREGS_OFF 152u /* struct kvm_sregs, 312 bytes */
#define SV_VCPU_RSVD2_OFF 6172u

enum sv_header_kind {
	SV_KIND_FULL = 1,
	SV_KIND_INCREMENTAL = 2,
};

/* A PAGES entry: pfn in bits 0-51, reserved 52-59, encoding 60-63. */
#define SV_PFN_MASK	 ((1ull << 52) - 1)
#define SV_ENTRY_RSVD(e) ((unsigned)(((e) >> 52) & 0xff))
#define SV_ENTRY_ENC(e)	 ((unsigned)((e) >> 60))
#define SV_N_ENCODINGS	 16u /* the 4-bit field's values */

enum sv_page_encoding {
	SV_ENC_RAW = 0,
	SV_ENC_ZERO = 1,
	SV_ENC_XOR = 2,	  /* revision 2: the page XOR the receiver's copy (§9.2) */
	SV_ENC_PATCH = 3, /* revision 2: words of the receiver's copy replaced (§9.2) */
};

/* A PATCH payload (§9.2): u32 runs, u32 words, runs x {u16 first, u16 count}, pad, words x u64. */
#define SV_PATCH_MAX	   4096u /* bytes */
#define SV_PATCH_RUNS_MAX  256u
#define SV_PATCH_WORDS_MAX 511u
#define SV_PAGE_WORDS	   (SV_PAGE_SIZE / 8)

/* PAGES_ZSTD (§9.3): raw_len is at least one page and at most SV_PAGES_MAX pages. */
#define SV_ZSTD_MAGIC  0xfd2fb528u
#define SV_RAW_LEN_MAX ((uint64_t)SV_PAGES_MAX * SV_PAGE_SIZE)

/* ---- results ------------------------------------------------------------------ */

#define SV_ERROR_MAX 320

struct stream_verify_device {
	char *id;	  /* DeviceState.id, NUL-terminated copy; owned by the result */
	const char *kind; /* "serial", "testdev", "virtio-net", "virtio-blk", "virtio", "none" */
	uint64_t offset;  /* of its DEVICE record */
};

struct stream_verify_result {
	bool valid;
	char error[SV_ERROR_MAX]; /* the first broken rule; "" when valid */
	uint64_t offset;	  /* invalid: the offending record's offset, or where stray
				     bytes or the premature end of the input are */
	bool has_type;		  /* invalid: the error is about a record whose header was read */
	uint32_t type;		  /* ... and this is its type field */
	/*
	 * invalid: the broken rule is about which records the stream holds and
	 * in what order (§3, a full snapshot's coverage) or what a state record
	 * holds beyond its length (§2.3-§2.6: vCPU indexes, MSRs, chip ids,
	 * DEVICE). A receiver checks those against its VM when it applies the
	 * stream, not when it decodes it; false for framing, HEADER, lengths,
	 * page batches and END. tests/fuzz/fuzz_differential.c relies on it.
	 */
	bool state_rule;

	uint64_t records;		    /* records read and accepted, END included */
	uint64_t pages;			    /* PAGES and PAGES_ZSTD entries accepted */
	uint64_t enc_pages[SV_N_ENCODINGS]; /* ... by encoding */
	uint64_t missing_pages;		    /* full snapshot: pages no PAGES entry covers */
	uint64_t zstd_records;		    /* PAGES_ZSTD records accepted */

	bool has_header; /* a HEADER was accepted; the fields below are valid */
	uint32_t version;
	uint32_t kind;
	uint32_t ncpus;
	uint64_t mem_bytes;
	uint64_t stream_id;
	uint64_t parent_id;
	uint64_t created_ns;

	struct stream_verify_device *devices; /* in stream order */
	size_t n_devices;
	size_t devices_cap;
};

/* One accepted record, as handed to a stream_verify_record_fn. */
struct stream_verify_record {
	uint64_t offset;
	uint32_t type;			   /* the type field as written, REC_F_OPTIONAL included */
	uint32_t length;		   /* body length, without padding */
	const uint8_t *body;		   /* length bytes, valid during the call only */
	uint32_t page_enc[SV_N_ENCODINGS]; /* PAGES, PAGES_ZSTD: entries by encoding */
	uint32_t patch_words;		   /* PAGES: words the PATCH entries replace */
	uint64_t raw_len;		   /* PAGES_ZSTD: the decompressed size */
	const struct stream_verify_device *device; /* DEVICE: the decoded id and kind */
};

/* Read up to len bytes into buf: how many were read, 0 at the end of the input, or -errno. */
typedef ssize_t (*stream_verify_read_fn)(void *ctx, uint8_t *buf, size_t len);

/* Called for each record once it passed every check that can be made on it alone. */
typedef void (*stream_verify_record_fn)(void *ctx, const struct stream_verify_record *rec);

/*
 * Verify the stream that read_cb yields, to its end. record_cb may be NULL.
 * Short reads are fine; read_cb is called again until it returns 0.
 */
int stream_verify_read(stream_verify_read_fn read_cb, void *read_ctx,
		       stream_verify_record_fn record_cb, void *record_ctx,
		       struct stream_verify_result *res);

/* Verify the stream held in buf[0..len). */
int stream_verify_buf(const uint8_t *buf, size_t len, struct stream_verify_result *res);

/* Free what the result owns; idempotent. */
void stream_verify_result_dispose(struct stream_verify_result *res);

/* "PAGES", ... for a type field (REC_F_OPTIONAL ignored); "unknown" otherwise. */
const char *stream_verify_type_name(uint32_t type);

/* "RAW", "ZERO", "XOR", "PATCH", or "unknown". */
const char *stream_verify_encoding_name(unsigned enc);

/*
 * CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final
 * xor 0xFFFFFFFF). Start with crc = 0 and chain: crc = stream_verify_crc32c(crc, ...).
 */
uint32_t stream_verify_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
