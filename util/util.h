/*
 * castor_util: the few helpers every Castor library shares -- logging with a
 * per-file subsystem tag, monotonic time, strict number/size parsing, and the
 * page bitmaps that dirty tracking, snapshots and replication pass around.
 *
 * Logging: define LOG_TAG ("hv", "vcpu", ...) before including this header,
 * then LOG_ERR("vm %s: ...", ...). Messages go to stderr with a timestamp;
 * util_log_set_level() and CASTOR_LOG=debug|info|warn|err choose the level.
 * LOG_ERRNO(rc, fmt, ...) appends strerror(-rc) for a negative errno rc.
 */
#ifndef CASTOR_UTIL_H
#define CASTOR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- logging ------------------------------------------------------------------ */

enum util_log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DBG };

void util_log_set_level(enum util_log_level level);
enum util_log_level util_log_get_level(void);
void util_log(enum util_log_level level, const char *tag, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#ifndef LOG_TAG
#define LOG_TAG "castor"
#endif
#define LOG_ERR(...)  util_log(LOG_LVL_ERR, LOG_TAG, 0, __VA_ARGS__)
#define LOG_WARN(...) util_log(LOG_LVL_WARN, LOG_TAG, 0, __VA_ARGS__)
#define LOG_INFO(...) util_log(LOG_LVL_INFO, LOG_TAG, 0, __VA_ARGS__)
#define LOG_DBG(...)                                                                               \
	do {                                                                                       \
		if (util_log_get_level() >= LOG_LVL_DBG)                                           \
			util_log(LOG_LVL_DBG, LOG_TAG, 0, __VA_ARGS__);                            \
	} while (0)
/* rc is a negative errno; its text is appended to the message. */
#define LOG_ERRNO(rc, ...)	util_log(LOG_LVL_ERR, LOG_TAG, (rc), __VA_ARGS__)
#define LOG_WARN_ERRNO(rc, ...) util_log(LOG_LVL_WARN, LOG_TAG, (rc), __VA_ARGS__)

/*
 * Fill `why` (why_len bytes; NULL/0 is fine) with the message and return `rc`,
 * a negative errno: the caller's cause travels on with the text.
 *   return util_why(why, why_len, -ERANGE, "interval %u ms is over %u", v, max);
 */
int util_why(char *why, size_t why_len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- time ----------------------------------------------------------------------- */

uint64_t util_now_ns(void); /* CLOCK_MONOTONIC */
/* A util_now_ns() instant as a timespec, for pthread_cond_timedwait on a CLOCK_MONOTONIC cond. */
struct timespec util_mono_ts(uint64_t ns);
void util_sleep_ns(uint64_t ns);

/* ---- parsing: whole-string, no silent truncation; 0 or -EINVAL/-ERANGE ------------ */

/* Decimal only: "010" is 10, "0x10" is -EINVAL (never octal or hex). */
int util_parse_u64(const char *s, uint64_t *out);
int util_parse_i64(const char *s, int64_t *out); /* decimal, optional leading '-' */
/* "4096", "64K", "16M", "1G", "1T" (binary multiples, optional trailing 'B/iB') */
int util_parse_size(const char *s, uint64_t *out);

/* ---- files and sockets (files.c) ------------------------------------------------ */

/*
 * Create `path` owner-only (0600) with O_EXCL|O_NOFOLLOW: a symbolic link or
 * anything else already at `path` is refused (-EEXIST, `why` says what is
 * there), except a regular file we own, taken for the leftover of an
 * interrupted run and replaced. *fd_out is write-only, close-on-exec.
 */
int util_file_create_private(const char *path, int *fd_out, char *why, size_t why_len);
/* SO_PEERCRED of a connected unix socket. */
int util_peer_cred(int fd, uint32_t *uid_out, int32_t *pid_out);
/* Root and the uid we run as may use our sockets; nobody else. */
bool util_uid_is_trusted(uint32_t uid);

/* ---- rate limiting --------------------------------------------------------------- */

/* Zero-initialise with interval_ns set. */
struct util_ratelimit {
	uint64_t interval_ns;
	uint64_t last_ns;
	uint64_t suppressed; /* events refused since the last one let through */
	bool primed;
};

/*
 * True at most once per interval_ns (now_ns: util_now_ns()); then
 * *suppressed_out is the number of events refused since the previous one.
 */
bool util_ratelimit_is_open(struct util_ratelimit *rl, uint64_t now_ns, uint64_t *suppressed_out);

/*
 * util_log() through `rl` (thread-safe): a message let through after others
 * were refused ends with "(N more like this since)".
 */
void util_log_limited(struct util_ratelimit *rl, enum util_log_level level, const char *tag,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * A warning the guest can cause at will (a malformed frame or request, a
 * broken queue): at most one line a second from each call site, so a guest
 * cannot flood the host's log; the devices count the events themselves.
 */
#define LOG_GUEST_WARN(...)                                                                        \
	do {                                                                                       \
		static struct util_ratelimit guest_rl_ = {.interval_ns = 1000000000ull};           \
		util_log_limited(&guest_rl_, LOG_LVL_WARN, LOG_TAG, __VA_ARGS__);                  \
	} while (0)

/* ---- statistics ----------------------------------------------------------------- */

/* Percentile p (0..100) of n samples; sorts `v` in place. 0 when n == 0. */
uint64_t util_percentile(uint64_t *v, size_t n, double p);

/* ---- CRC-32C ------------------------------------------------------------------------ */

/*
 * Running CRC-32C: start with UTIL_CRC32C_INIT, feed every chunk, finish with
 * util_crc32c_final(). (The _sw variant is the table path, for tests.)
 */
#define UTIL_CRC32C_INIT 0xffffffffu
uint32_t util_crc32c_update(uint32_t state, const void *buf, size_t len);
/* True when buf[0..len) is all zeros (true for len 0). */
bool util_is_zero(const void *buf, size_t len);
uint32_t util_crc32c_sw_update(uint32_t state, const void *buf, size_t len);
static inline uint32_t util_crc32c_final(uint32_t state)
{
	return state ^ 0xffffffffu;
}

/* ---- bitmaps (one bit per page, 64-bit words) ------------------------------------ */

struct util_bitmap {
	uint64_t *words;
	uint64_t nbits;
};

#define UTIL_BITMAP_WORDS(n) (((n) + 63) / 64)

int util_bitmap_init(struct util_bitmap *b, uint64_t nbits); /* all clear; -ENOMEM */
void util_bitmap_dispose(struct util_bitmap *b);	     /* idempotent */
void util_bitmap_clear_all(struct util_bitmap *b);
void util_bitmap_set_all(struct util_bitmap *b);
void util_bitmap_set(struct util_bitmap *b, uint64_t bit);
void util_bitmap_clear(struct util_bitmap *b, uint64_t bit);
bool util_bitmap_is_set(const struct util_bitmap *b, uint64_t bit);
void util_bitmap_set_range(struct util_bitmap *b, uint64_t first, uint64_t count);
uint64_t util_bitmap_count(const struct util_bitmap *b);
/* dst |= src over the first min(nbits) bits. */
void util_bitmap_or(struct util_bitmap *dst, const struct util_bitmap *src);
/* Next set bit at or after `from`, or b->nbits when there is none. */
uint64_t util_bitmap_next_set(const struct util_bitmap *b, uint64_t from);
bool util_bitmap_is_equal(const struct util_bitmap *a, const struct util_bitmap *b);

#endif
