/*
 * Private to replication/ (and its tests and fuzzers): the wire layouts of
 * docs/stream-format.md §10 and §11 in the order the spec gives them, the
 * checks of §11's records as pure functions over bytes (so a fuzzer reaches
 * them without a socket), the dirty-region log's file format and the image
 * helpers the resync's two ends share.
 */
#ifndef CASTOR_REPL_DISK_INT_H
#define CASTOR_REPL_DISK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/repl.h"
#include "util/util.h"

#define DISK_SECTOR	    512u
#define DISK_ZERO_MAX	    (1ull << 40) /* one DISK_ZERO's most: 1 TiB */
#define DISK_REC_F_OPTIONAL 0x80000000u	 /* as HV_REC_F_OPTIONAL (§1) */

/* ---- §10: disk writes of an epoch ------------------------------------------------ */

struct disk_rec_write {
	uint64_t epoch;
	uint32_t disk;
	uint32_t flags;
	uint64_t offset;
	/* data follows */
};
_Static_assert(sizeof(struct disk_rec_write) == 24, "DISK_WRITE layout");

struct disk_rec_zero {
	uint64_t epoch;
	uint32_t disk;
	uint32_t reserved;
	uint64_t offset;
	uint64_t length;
};
_Static_assert(sizeof(struct disk_rec_zero) == 32, "DISK_ZERO layout");

struct disk_rec_flush {
	uint64_t epoch;
	uint32_t disk;
	uint32_t reserved;
};
_Static_assert(sizeof(struct disk_rec_flush) == 16, "DISK_FLUSH layout");

struct disk_rec_seal {
	uint64_t epoch;
	uint32_t disk;
	uint32_t reserved;
	uint64_t ops;
	uint64_t bytes;
};
_Static_assert(sizeof(struct disk_rec_seal) == 32, "DISK_SEAL layout");

/* The record header of §1. */
struct disk_rec_hdr {
	uint32_t type;
	uint32_t length;
};
_Static_assert(sizeof(struct disk_rec_hdr) == 8, "record header layout");
_Static_assert(REPL_DISK_OP_HEAD >= sizeof(struct disk_rec_hdr) + sizeof(struct disk_rec_zero),
	       "REPL_DISK_OP_HEAD holds the largest fixed part");

/* ---- §11: disk resync ------------------------------------------------------------ */

enum dsync_type {
	DSYNC_BEGIN = 0x0100,
	DSYNC_SUMS = 0x0101,
	DSYNC_DATA = 0x0102,
	DSYNC_ZERO = 0x0103,
	DSYNC_MARK = 0x0104,
	DSYNC_ACK = 0x0105,
	DSYNC_END = 0x0106,
	DSYNC_RESULT = 0x0107,
	DSYNC_ERROR = 0x0108,
};
const char *dsync_type_str(uint32_t type);

#define DSYNC_BATCH_RANGES 512u
#define DSYNC_RANGE_MIN	   4096u
#define DSYNC_RANGE_MAX	   (1u << 20)
#define DSYNC_F_VERIFY	   0x1u
/* an image's most: range arithmetic (ranges x range size) never wraps */
#define DSYNC_IMAGE_MAX (1ull << 60)
#define DSYNC_TEXT	120u
/* SUMS of a full batch: 16 + 8 * 8 + 512 * 32 */
#define DSYNC_SUMS_MAX (16u + 8u * (DSYNC_BATCH_RANGES / 64) + DSYNC_BATCH_RANGES * 32u)
/* the largest record of §11 (DATA of the largest range); unknown optional ones too */
#define DSYNC_REC_MAX (8u + DSYNC_RANGE_MAX)

struct dsync_begin {
	uint64_t image_bytes;
	uint32_t range_bytes;
	uint32_t batch_ranges;
	uint32_t mode;
	uint32_t flags;
	uint64_t reserved;
};
_Static_assert(sizeof(struct dsync_begin) == 32, "BEGIN layout");

struct dsync_sums_head {
	uint64_t batch;
	uint32_t count;
	uint32_t reserved;
	/* the zero bitmap, then the digests */
};
_Static_assert(sizeof(struct dsync_sums_head) == 16, "SUMS layout");

struct dsync_zero {
	uint64_t offset;
	uint64_t length;
};
_Static_assert(sizeof(struct dsync_zero) == 16, "ZERO layout");

struct dsync_end {
	uint64_t ranges;
	uint64_t data_bytes;
	uint64_t zero_bytes;
	uint8_t digest[REPL_DISK_DIGEST_BYTES];
};
_Static_assert(sizeof(struct dsync_end) == 56, "END layout");

struct dsync_result {
	int32_t status;
	uint32_t reserved;
	uint8_t digest[REPL_DISK_DIGEST_BYTES];
	uint64_t written;
};
_Static_assert(sizeof(struct dsync_result) == 48, "RESULT layout");

struct dsync_error {
	int32_t status;
	uint32_t reserved;
	char text[DSYNC_TEXT];
};
_Static_assert(sizeof(struct dsync_error) == 128, "ERROR layout");

/* What BEGIN fixed: every later record is checked against it. */
struct dsync_params {
	uint64_t image_bytes;
	uint32_t range_bytes;
	uint32_t mode;
	uint32_t flags;
	uint64_t nranges, nbatches;
};

/* One §11 record, decoded; pointers point into the body. */
struct dsync_rec {
	uint32_t type; /* without the optional flag; 0: an unknown optional record (skip it) */
	union {
		struct dsync_begin begin;
		struct {
			uint64_t batch;
			uint32_t count;
			const uint8_t *zero_bits; /* ceil(count / 64) u64 words, little-endian */
			const uint8_t *digests;	  /* 32 bytes per range not marked */
		} sums;
		struct {
			uint64_t offset;
			const uint8_t *data;
			uint32_t len;
		} data;
		struct dsync_zero zero;
		uint64_t batch; /* MARK, ACK */
		struct dsync_end end;
		struct dsync_result result;
		struct dsync_error error; /* text made one printable line */
	} u;
};

/*
 * Check a record's header before its body is read: -EPROTO (with why) for a
 * length over what its type may have -- `p` NULL before BEGIN, when only
 * BEGIN and ERROR fit -- or a known type with the optional flag; an unknown
 * optional type passes (its body is read and skipped).
 */
int dsync_hdr_check(const struct dsync_params *p, uint32_t type, uint32_t length, char *why,
		    size_t why_len);
/*
 * Check and decode a whole record (body without its padding): lengths,
 * reserved fields, ranges against `p` (NULL: only BEGIN and ERROR). -EPROTO
 * with a sentence for anything §11 refuses. Ordering is the ends' business.
 */
int dsync_rec_parse(const struct dsync_params *p, uint32_t type, const uint8_t *body, uint32_t len,
		    struct dsync_rec *out, char *why, size_t why_len);
/* BEGIN's fields alone (the source checks its own choices with it too). */
int dsync_begin_check(const struct dsync_begin *b, char *why, size_t why_len);
/* SUMS: is range i of the batch marked as reading zeros? */
bool dsync_sums_is_zero(const struct dsync_rec *r, uint32_t i);
/* BEGIN's values into params (after dsync_rec_parse accepted it). */
void dsync_params_from_begin(const struct dsync_begin *b, struct dsync_params *out);
/* Ranges in batch k, and the byte length of range r. */
uint32_t dsync_batch_count(const struct dsync_params *p, uint64_t batch);
uint64_t dsync_range_len(const struct dsync_params *p, uint64_t range);

/* ---- digests (disk_wire.c) --------------------------------------------------------- */

/* BLAKE2b-256 of `len` zero bytes (cached for the two lengths a sync uses). */
struct dsync_zero_digest {
	uint64_t len[2];
	uint8_t d[2][REPL_DISK_DIGEST_BYTES];
	uint8_t *zeros; /* DSYNC_RANGE_MAX zero bytes */
};
int dsync_zero_digest_init(struct dsync_zero_digest *z);
void dsync_zero_digest_dispose(struct dsync_zero_digest *z);
const uint8_t *dsync_zero_digest(struct dsync_zero_digest *z, uint64_t len);
void dsync_digest(const uint8_t *buf, size_t len, uint8_t out[REPL_DISK_DIGEST_BYTES]);

/* ---- the image (disk_image.c) ------------------------------------------------------ */

/*
 * Where data lies: the next data at or after an offset (SEEK_DATA), cached so
 * that scanning an image costs one lseek per data extent. A file system
 * without SEEK_DATA, or a block device, is all data.
 */
struct disk_holes {
	int fd;
	uint64_t size;
	uint64_t asked;	    /* the offset of the last lseek */
	uint64_t next_data; /* its answer: no data in [asked, next_data) */
	bool valid;
};
void disk_holes_init(struct disk_holes *h, int fd, uint64_t size);
/* True when [off, off + len) holds no data (reads as zeros without being read). */
bool disk_is_hole(struct disk_holes *h, uint64_t off, uint64_t len);
/*
 * The CRC-32C of the image's first `bytes` bytes, holes counted as the zeros
 * they read as (verify mode's DISK_DIGEST, stream-format.md §8).
 */
int disk_image_crc32c(int fd, uint64_t bytes, uint32_t *crc_out);

/*
 * ---- the replica's digests before an initial copy (disk_sums.c, stream-format.md §8.5) ----
 * Asked for by a primary's HELLO (REPL_HELLO_F_SUMS): right after the
 * handshake the replica sends, per writable copy, a BLAKE2b-256 digest of each
 * range (SUMS frames of at most DISK_SUMS_FRAME_RANGES digests), then an empty
 * SUMS frame. Ranges are the smallest power of two from 64 KiB that keeps an
 * image within DISK_SUMS_RANGES_MAX of them, at most 1 MiB; an image larger
 * than that (1 TiB) is not hashed and is copied whole.
 */
#define DISK_SUMS_MAGIC	       0x534d555352545343ull /* "CSTRSUMS" */
#define DISK_SUMS_HEAD_BYTES   32u
#define DISK_SUMS_FRAME_RANGES 4096u
#define DISK_SUMS_RANGE_MIN    (64u << 10)
#define DISK_SUMS_RANGE_MAX    (1u << 20)
#define DISK_SUMS_RANGES_MAX   (1u << 20)
/* A SUMS frame's head; count digests follow. */
struct disk_sums_head {
	uint32_t disk;
	uint32_t range_bytes;
	uint64_t image_bytes;
	uint64_t first;
	uint32_t count;
	uint32_t reserved;
};
_Static_assert(sizeof(struct disk_sums_head) == DISK_SUMS_HEAD_BYTES, "SUMS frame layout");
/* The range size for an image of image_bytes; 0 when it is too large to hash. */
uint32_t disk_sums_range_bytes(uint64_t image_bytes);
/* One SUMS frame's body, checked: digests point into it. */
struct disk_sums_frame {
	uint32_t disk, range_bytes, count;
	uint64_t image_bytes, first, nranges;
	const uint8_t *digests;
};
/* -EPROTO with why for anything §8.5 refuses. */
int disk_sums_frame_parse(const uint8_t *body, size_t len, struct disk_sums_frame *out, char *why,
			  size_t why_len);
/* The replica's end: its writable copies (disk: the index in the VM's --disk order). */
struct disk_sums_src {
	uint32_t disk;
	int fd;
	uint64_t image_bytes;
};
/* stop (may be NULL) is asked between frames: -ECANCELED when it says so. */
int disk_sums_send(struct repl_link *l, const struct disk_sums_src *src, unsigned n,
		   bool (*stop)(void *), void *stop_arg, char *why, size_t why_len);
/* The primary's end: one disk's digests (d NULL: none came). */
struct disk_sums {
	uint32_t range_bytes;
	uint64_t image_bytes, nranges, got;
	uint8_t *d; /* nranges digests */
};
/*
 * Read the whole answer; keep the digests of the disks want[] names (by
 * --disk index), check and drop the others. -EPROTO / -EBADMSG with why for
 * a malformed answer; a link error as it is.
 */
int disk_sums_recv(struct repl_link *l, const bool want[REPL_DISK_MAX],
		   struct disk_sums out[REPL_DISK_MAX], char *why, size_t why_len);
/* Range r's digest, or NULL. */
const uint8_t *disk_sums_get(const struct disk_sums *s, uint64_t range);
void disk_sums_dispose(struct disk_sums *s);
/* An image hashed range by range as §8.5 says (holes are not read). */
struct disk_hasher {
	int fd;
	uint64_t image_bytes, nranges;
	uint32_t range_bytes;
	struct disk_holes holes;
	struct dsync_zero_digest zd;
	uint8_t *buf;
};
/* -EFBIG: an image §8.5 does not hash (over 1 TiB, or not whole sectors). */
int disk_hasher_init(struct disk_hasher *h, int fd, uint64_t image_bytes);
int disk_hasher_range(struct disk_hasher *h, uint64_t r, uint8_t out[REPL_DISK_DIGEST_BYTES]);
void disk_hasher_dispose(struct disk_hasher *h);
/* The whole image's digests into out (-ECANCELED when *stop, read atomically, turns true). */
int disk_sums_hash(int fd, uint64_t image_bytes, const bool *stop, struct disk_sums *out);

/*
 * ---- the primary's side of §10: a protected VM's disk writes, per epoch (disk_tx.c) ----
 * One queue for the VM's writable disks, fed by their virtio-blk observers
 * (disk_tx_observer with disk_tx_observer_arg(tx, i)). Records belong to the
 * open epoch, 0 at first; disk_tx_seal(e) in the pause closes e (I/O thread
 * parked) and opens e + 1. disk_tx_send() sends, as DISK frames, the queued
 * records of epochs <= upto (and with seal, then upto's DISK_SEALs: call it so
 * just before upto's epoch frame). `wake` (any thread; may be NULL) says that
 * records piled up (send some) or, with overflow, that the epoch should end
 * early -- or that the queue passed its cap: the session must fail (every
 * later call returns -ENOBUFS; nothing is queued any more).
 */
#define DISK_TX_CAP (256ull << 20) /* as the replica's REPL_DISK_EPOCH_CAP */
struct disk_tx;
typedef void (*disk_tx_wake_fn)(void *arg, bool overflow);
struct disk_tx_stats {
	uint64_t queued_ops, queued_bytes; /* records queued, data bytes, since the start */
	uint64_t frames, sent_bytes;	   /* DISK frames sent, their bytes */
	uint64_t pending_bytes;		   /* data bytes queued now */
	/* the initial copies: bytes the replica held already (not sent), data bytes sent */
	uint64_t copy_same_bytes, copy_data_bytes;
	uint64_t copy_rereads; /* chunks read again: a guest write raced their read */
	int error;
};
/* disks[i]: the index (in the VM's --disk order) of the i-th disk observed. */
int disk_tx_new(const uint32_t *disks, unsigned n, uint64_t cap, disk_tx_wake_fn wake,
		void *wake_arg, struct disk_tx **out);
extern const struct hv_blk_observer_ops disk_tx_observer;
void *disk_tx_observer_arg(struct disk_tx *tx, unsigned i);
unsigned disk_tx_ndisks(const struct disk_tx *tx);
int disk_tx_seal(struct disk_tx *tx, uint64_t epoch);
int disk_tx_send(struct disk_tx *tx, struct repl_link *l, uint64_t upto, bool seal);
/*
 * The initial copy of observed disk i (its image open at fd for reading, of
 * image_bytes) as epoch 0's records, sent as it goes with the guest's own.
 */
typedef void (*disk_tx_copy_progress_fn)(void *arg, uint64_t done, uint64_t total);
int disk_tx_copy(struct disk_tx *tx, unsigned i, int fd, uint64_t image_bytes, struct repl_link *l,
		 disk_tx_copy_progress_fn progress, void *arg);
/*
 * Re-protection (§8.5): hash this end's images (fds[i], image_bytes[i] of
 * observed disk i) on a thread of its own while the replica's digests arrive
 * on l; disk_tx_copy then skips every range both ends hashed alike, without
 * reading it again. Call it with the observers in place: a guest write after
 * a range was hashed is queued, so it follows the range either way. A replica
 * copy of another size gets the whole image (with a warning).
 */
int disk_tx_take_sums(struct disk_tx *tx, struct repl_link *l, const int *fds,
		      const uint64_t *image_bytes, char *why, size_t why_len);
/* Stop keeping records (the session ended) and drop what is queued. */
/*
 * Verify mode, in the pause of epoch `epoch` (the I/O thread parked: each
 * image is exactly that epoch's): a DISK_DIGEST record per observed disk of
 * at most REPL_VERIFY_DISK_MAX bytes, written to w. Larger disks are left out.
 */
int disk_tx_write_digests(struct disk_tx *tx, uint64_t epoch, struct hv_stream_writer *w);
void disk_tx_close(struct disk_tx *tx);
/*
 * A protected VM's queue: its writable disks found and their images opened
 * for the initial copy (*out NULL when it has none); disk_tx_start() reads the
 * replica's digests (with sums: the HELLO asked for them), puts the observers
 * on the devices and sends the initial copies (epoch 0), and
 * disk_tx_stop() takes the observers off and closes the queue (NULL is fine).
 */
int disk_tx_for_vm(struct hv_vm *vm, disk_tx_wake_fn wake, void *wake_arg, struct disk_tx **out,
		   char *why, size_t why_len);
int disk_tx_start(struct disk_tx *tx, struct repl_link *l, const char *vm, bool sums, char *why,
		  size_t why_len);
void disk_tx_stop(struct disk_tx *tx);
void disk_tx_stats(struct disk_tx *tx, struct disk_tx_stats *out);
void disk_tx_free(struct disk_tx *tx); /* detach the observers first; NULL is fine */

/* pread / pwrite of exactly len bytes: -errno; -EIO for an image that ended early. */
int disk_read_full(int fd, uint8_t *buf, size_t len, uint64_t off);
int disk_write_full(int fd, const uint8_t *buf, size_t len, uint64_t off);
/*
 * `bytes` of image `from` into `to` (empty, writable): shared extents
 * (FICLONE) where the file system has them, else copy_file_range, else read
 * and write. Not made durable.
 */
int disk_copy_image(int from, int to, uint64_t bytes);
/* Make [off, off + len) read as zeros: a punched hole, else written zeros. */
int disk_zero_range(int fd, uint64_t off, uint64_t len);

/* The image digest of §11.1, fed one range digest at a time in range order. */
struct dsync_image_digest {
	_Alignas(64) uint8_t state[384]; /* a crypto_generichash_state, kept opaque here */
};
void dsync_image_digest_init(struct dsync_image_digest *g, const struct dsync_params *p);
void dsync_image_digest_add(struct dsync_image_digest *g, const uint8_t d[REPL_DISK_DIGEST_BYTES]);
void dsync_image_digest_final(struct dsync_image_digest *g, uint8_t out[REPL_DISK_DIGEST_BYTES]);

/* ---- records on a link (disk_sync.c), shared by both ends ------------------------- */

/*
 * Records go out through a buffer (one seal per buffer, not per record) that
 * is flushed before every wait for the peer, so neither end ever waits for an
 * answer to something it has not sent.
 */
struct dsync_io {
	struct repl_link *l;
	const struct dsync_params *p; /* NULL until BEGIN */
	uint8_t *out;		      /* DSYNC_OUT_BYTES */
	size_t out_len;
	uint8_t *in; /* the body of the last record received: DSYNC_REC_MAX + 8 */
};
#define DSYNC_OUT_BYTES (256u << 10)
int dsync_io_init(struct dsync_io *io, struct repl_link *l);
void dsync_io_dispose(struct dsync_io *io);
/* Queue a record whose body is a (alen bytes) then b (blen, may be 0); sends when full. */
int dsync_put(struct dsync_io *io, uint32_t type, const void *a, size_t alen, const void *b,
	      size_t blen);
int dsync_flush(struct dsync_io *io);
/*
 * Flush, then the peer's next record (unknown optional ones skipped): 0, a
 * link error (-ECONNRESET, -ETIMEDOUT, -EBADMSG), or -EPROTO for a record
 * that breaks §11 (why says which). An ERROR from the peer is returned as a
 * record: the caller reports the peer's words.
 */
int dsync_get(struct dsync_io *io, struct dsync_rec *out, char *why, size_t why_len);
/*
 * Both ends' last steps: the link's byte counts and the time since t0 (0:
 * none) into st, a last progress call, the buffers freed, the link closed.
 */
void dsync_io_finish(struct dsync_io *io, const struct repl_disk_sync_opts *o,
		     struct repl_disk_sync_stats *st, uint64_t t0);
/* A failure of the link itself (the peer cannot hear an ERROR any more). */
bool dsync_is_link_error(int rc);
/* Best effort: tell the peer why we stop (an ERROR record), flushed. */
void dsync_put_error(struct dsync_io *io, int status, const char *text);

/* What either end of a sync holds (disk_sync.c's source, disk_recv.c's destination). */
struct dsync_side {
	struct dsync_io io;
	struct dsync_params p;
	const struct repl_disk_sync_opts *o;
	struct repl_disk_sync_stats *st;
	int fd; /* the image */
	struct disk_holes holes;
	struct dsync_zero_digest zd;
	struct dsync_image_digest img; /* with VERIFY */
	uint8_t *buf;		       /* one range */
	char *why;
	size_t why_len;
};

/* One batch's range digests, and which ranges read as zeros (their digests unset). */
struct dsync_batch_sums {
	uint64_t zero[DSYNC_BATCH_RANGES / 64];
	uint8_t d[DSYNC_BATCH_RANGES][REPL_DISK_DIGEST_BYTES];
};

/* ---- the dirty-region log's file (disk_log.c) ------------------------------------ */

#define DLOG_MAGIC   0x474f4c4452545343ull /* "CSTRDLOG" */
#define DLOG_VERSION 1u
struct dlog_header {
	uint64_t magic;
	uint32_t version;
	uint32_t region_bytes;
	uint64_t image_bytes;
	uint64_t regions;
	uint64_t generation; /* saves so far: for people reading the file */
	uint32_t crc32c;     /* of the header with this field 0, then the bitmap */
	uint32_t reserved;
	/* ceil(regions / 64) little-endian u64 words follow */
};
_Static_assert(sizeof(struct dlog_header) == 48, "dirty log header layout");

/*
 * Check a log file's bytes against the image it should describe and fill
 * `bm` (initialised with the image's region count): 0, or -EBADMSG with the
 * reason in why (the caller then takes everything as dirty).
 */
int dlog_parse(const uint8_t *buf, size_t len, uint64_t image_bytes, uint32_t region_bytes,
	       struct util_bitmap *bm, uint64_t *generation_out, char *why, size_t why_len);

#endif
