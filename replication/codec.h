/*
 * The epoch codec: revision-1 streams to revision-2 "wire" streams and back
 * (docs/stream-format.md §9). Private to replication/.
 *
 * The primary's engine hands each epoch's stream, as hypervisor/stream.c wrote
 * it, to repl_encode() and sends the result; the secondary passes what it
 * received to repl_decode() with its twin's RAM as the XOR base, and applies
 * the revision-1 stream that comes out, with the word patches it set aside,
 * through hv_snapshot_apply_patched(). Pages go as ZERO when all zero; when
 * the encoder's cache knows the copy the receiver holds, as PATCH (the words
 * that changed, in place of the receiver's) when that is small, else as XOR
 * when the delta is sparser than the page; else RAW. The ZERO, XOR and RAW
 * pages of a PAGES record are zstd-compressed when that saves at least a
 * tenth; PATCH pages travel in a plain PAGES record of their own, before
 * them. Other records pass unchanged.
 *
 * The rule the engine must keep: an XOR entry is decoded against the
 * receiver's RAM, which equals the encoder's cache only if every epoch the
 * encoder produced was applied there, in order. So call repl_encoder_reset()
 * whenever an epoch is not acknowledged as applied (a refused epoch, a send
 * that failed, a lost connection) and before encoding for a receiver whose
 * RAM came from anywhere else. repl_encode() resets the cache itself when it
 * fails. A full stream (the initial synchronisation) never carries XOR
 * entries, so it decodes without a base; it does fill the cache.
 *
 * Threads: an encoder is used by one thread at a time; repl_decode() keeps no
 * state and may run on several threads at once.
 */
#ifndef CASTOR_REPL_CODEC_H
#define CASTOR_REPL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"

/* ---- the wire format, revision 2 (docs/stream-format.md §9) ---------------------- */

#define REPL_WIRE_REVISION 2u
/* PAGES_ZSTD: count, reserved, entries, u64 raw_len, one zstd frame of raw_len bytes. */
#define REPL_REC_PAGES_ZSTD 0x0003u
/* Page encoding 2: payload = new content XOR the receiver's copy at the epoch's start. */
#define REPL_PAGE_XOR 2u
_Static_assert(REPL_PAGE_XOR == HV_PAGE_XOR_ZSTD, "XOR reuses the value revision 1 reserved");
/*
 * Page encoding 3: the receiver's copy with some 64-bit words replaced. Payload:
 * u32 runs, u32 words, runs x {u16 first word, u16 count} padded to 8, the
 * words' new values; at most REPL_PATCH_MAX bytes. Only in PAGES records.
 */
#define REPL_PAGE_PATCH 3u
#define REPL_PATCH_MAX	4096u
_Static_assert(REPL_PAGE_PATCH == HV_PAGE_ZSTD, "PATCH reuses the value revision 1 reserved");

/* ---- buffers -------------------------------------------------------------------- */

/* A growable byte buffer, kept across epochs so that steady state allocates nothing. */
struct repl_buf {
	uint8_t *data;
	size_t len, cap;
};

void repl_buf_init(struct repl_buf *b);	   /* empty, safe to dispose */
void repl_buf_dispose(struct repl_buf *b); /* idempotent */

/* ---- encoder (primary) --------------------------------------------------------------- */

struct repl_encoder;

struct repl_codec_stats {
	uint64_t pages;		  /* page entries encoded */
	uint64_t zero_pages;	  /* of them, sent as ZERO */
	uint64_t xor_pages;	  /* as XOR */
	uint64_t patch_pages;	  /* as PATCH */
	uint64_t raw_pages;	  /* as RAW */
	uint64_t in_bytes;	  /* revision-1 stream bytes in */
	uint64_t out_bytes;	  /* wire stream bytes out */
	uint64_t zstd_records;	  /* PAGES records sent as PAGES_ZSTD */
	uint64_t plain_records;	  /* PAGES records sent uncompressed */
	uint64_t unchanged_pages; /* equal to the receiver's copy: a hot page not written */
	uint64_t cache_pages;	  /* set, not added: pages the XOR cache holds after the call */
};

/*
 * mem_bytes: the guest's RAM size (a non-zero multiple of 4096); every stream
 * encoded must be for it. cache_pages: how many pages the XOR cache keeps (the
 * content last sent for a pfn; 4 KiB each, allocated here, capped at
 * mem_bytes / 4096); 0 = no XOR. zstd_level: ZSTD_minCLevel() .. ZSTD_maxCLevel(),
 * e.g. 1, or negative for faster. -EINVAL, -ENOMEM.
 */
int repl_encoder_new(uint64_t mem_bytes, uint64_t cache_pages, int zstd_level,
		     struct repl_encoder **out);
void repl_encoder_free(struct repl_encoder *e); /* NULL is fine */
/*
 * The largest PATCH payload the encoder sends, in bytes: a page whose patch
 * would be larger goes as XOR or RAW. 0 sends no PATCH; the default is
 * REPL_PATCH_DEFAULT. -EINVAL above REPL_PATCH_MAX.
 */
#define REPL_PATCH_DEFAULT 2048u
int repl_encoder_set_patch_max(struct repl_encoder *e, size_t bytes);
/* Forget every cached page (O(cache_pages) on metadata): the next epoch sends no XOR nor PATCH. */
void repl_encoder_reset(struct repl_encoder *e);
/*
 * in: a revision-1 stream, already checked by its producer (its END checksum
 * is not verified again; its framing and PAGES arithmetic are, -EINVAL).
 * out: the wire stream, out->len set (the buffer grows as needed and is
 * reused). Stats of this call are added to *st when st is not NULL. On any
 * failure the cache is reset and out's content is meaningless.
 */
int repl_encode(struct repl_encoder *e, const uint8_t *in, size_t in_len, struct repl_buf *out,
		struct repl_codec_stats *st);

/* ---- decoder (secondary) ----------------------------------------------------------- */

/*
 * The PATCH entries of a decoded epoch: validated, in stream order, each
 * pointing into the wire stream, which must outlive them.
 */
struct repl_patch {
	uint64_t pfn;
	const uint8_t *payload;
};
struct repl_patches {
	struct repl_patch *v; /* n of them, in `mem` */
	size_t n;
	struct repl_buf mem;
};

void repl_patches_init(struct repl_patches *p);	   /* empty, safe to dispose */
void repl_patches_dispose(struct repl_patches *p); /* idempotent */
/* Write every patch into `ram` (pfn * 4096 indexing), in order. */
void repl_patches_apply(const struct repl_patches *p, uint8_t *ram);

/*
 * in: a received wire stream, untrusted. base: the receiver's RAM as of the
 * start of this epoch, mem_bytes long, indexed by pfn * 4096, only read; NULL
 * when the receiver has none yet (the first, full epoch), and then any XOR
 * or PATCH entry is refused. mem_bytes: the receiver's RAM size; a stream for
 * another size is refused. out: a revision-1 stream that hv_stream_check()
 * accepts (the decoder runs it as its last step), out->len set. patches: the
 * stream's PATCH entries, taken out of `out` (NULL refuses them); the epoch is
 * the patches applied to `base` first, then `out` (hv_snapshot_apply_patched).
 *
 * Everything is validated before use: framing, lengths (capped before
 * anything is allocated; the decoded stream may not exceed in_len + 2 *
 * mem_bytes), padding and reserved fields, the END counts and checksum (before
 * any frame is decompressed), entries (pfn < mem_bytes / 4096, known
 * encodings, no XOR or PATCH in a full stream nor for a pfn seen earlier in
 * the stream, PATCH payloads whole), raw_len against the entries and the
 * frame's content size. A
 * revision-1 stream is checked and copied through. Returns 0, or -EBADMSG
 * (or -ENOMEM) with one sentence in why; out's content is then meaningless.
 * (-EINVAL: mem_bytes is not a non-zero multiple of 4096, a caller's bug.)
 * Each call on an incremental stream allocates a bitmap of mem_bytes / 4096
 * bits, and one with PAGES_ZSTD a zstd context; out is reused. mem_bytes
 * should be the receiver's own size, not read from the stream: it also sets
 * the output cap.
 */
int repl_decode(const uint8_t *in, size_t in_len, const uint8_t *base, uint64_t mem_bytes,
		struct repl_buf *out, struct repl_patches *patches, char *why, size_t why_len);

#endif
