/*
 * The dirty-region log (repl.h, "disks: the dirty-region log"): one bit per
 * region of an image, set when the region is written, cleared all at once
 * when a replica is known to hold the image again; a resync in dirty mode
 * sends only the regions set.
 *
 * The file (docs/disks.md) is a 48-byte header -- magic, version, region
 * size, image size, region count, a generation, a CRC-32C over header and
 * bitmap -- and the bitmap's little-endian 64-bit words. It is replaced
 * whole, never written in place: a crash leaves the old file or the new one.
 * Anything that is not exactly a log of this image (missing, short, long,
 * another size or region size, a bad CRC, a stray bit past the end) loads as
 * every region dirty: a log that claims too little would make a resync skip
 * writes, one that claims too much only costs bytes.
 */
#include "replication/disk_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct repl_disk_log {
	char *path;
	uint64_t image_bytes;
	uint32_t region_bytes;
	struct util_bitmap bm;
	uint64_t generation;
	bool complete; /* false: loaded as all dirty */
};

static bool region_ok(uint32_t r)
{
	return r >= DSYNC_RANGE_MIN && r <= DSYNC_RANGE_MAX && !(r & (r - 1));
}

static uint64_t regions_of(uint64_t image_bytes, uint32_t region_bytes)
{
	return image_bytes / region_bytes + !!(image_bytes % region_bytes);
}

static uint32_t crc_of(const struct dlog_header *h, const uint64_t *words, size_t nwords)
{
	struct dlog_header c = *h;
	uint32_t st;

	c.crc32c = 0;
	st = util_crc32c_update(UTIL_CRC32C_INIT, &c, sizeof(c));
	st = util_crc32c_update(st, words, nwords * sizeof(uint64_t));
	return util_crc32c_final(st);
}

int dlog_parse(const uint8_t *buf, size_t len, uint64_t image_bytes, uint32_t region_bytes,
	       struct util_bitmap *bm, uint64_t *generation_out, char *why, size_t why_len)
{
	uint64_t regions = regions_of(image_bytes, region_bytes);
	size_t nwords = (size_t)UTIL_BITMAP_WORDS(regions);
	struct dlog_header h;

	if (len < sizeof(h))
		return util_why(why, why_len, -EBADMSG, "%zu bytes: shorter than a header", len);
	memcpy(&h, buf, sizeof(h));
	if (h.magic != DLOG_MAGIC)
		return util_why(why, why_len, -EBADMSG, "not a dirty-region log (magic)");
	if (h.version != DLOG_VERSION)
		return util_why(why, why_len, -EBADMSG, "version %u (this build reads %u)",
				h.version, DLOG_VERSION);
	if (h.image_bytes != image_bytes || h.region_bytes != region_bytes || h.regions != regions)
		return util_why(why, why_len, -EBADMSG,
				"made for an image of %" PRIu64 " bytes in regions of %u bytes, "
				"not %" PRIu64 " in %u",
				h.image_bytes, h.region_bytes, image_bytes, region_bytes);
	if (h.reserved)
		return util_why(why, why_len, -EBADMSG, "reserved field set");
	if (len != sizeof(h) + nwords * sizeof(uint64_t))
		return util_why(why, why_len, -EBADMSG, "%zu bytes, not %zu (truncated?)", len,
				sizeof(h) + nwords * sizeof(uint64_t));
	memcpy(bm->words, buf + sizeof(h), nwords * sizeof(uint64_t));
	if (crc_of(&h, bm->words, nwords) != h.crc32c) {
		util_bitmap_clear_all(bm);
		return util_why(why, why_len, -EBADMSG, "checksum mismatch (damaged)");
	}
	if (regions % 64 && (bm->words[nwords - 1] >> (regions % 64))) {
		util_bitmap_clear_all(bm);
		return util_why(why, why_len, -EBADMSG, "bits set past the last region");
	}
	*generation_out = h.generation;
	return 0;
}

/* Read the whole file (at most `max` bytes; one more tells a file too long). */
static int read_file(const char *path, size_t max, uint8_t **buf_out, size_t *len_out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (len < max + 1) {
		ssize_t r = read(fd, buf + len, max + 1 - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (!r)
			break;
		len += (size_t)r;
	}
	*buf_out = buf;
	*len_out = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int repl_disk_log_open(const char *path, uint64_t image_bytes, uint32_t region_bytes,
		       struct repl_disk_log **out, char *why, size_t why_len)
{
	struct repl_disk_log *l = NULL;
	uint8_t *buf = NULL;
	size_t len = 0, max;
	char pwhy[160];
	int rc;

	*out = NULL;
	if (why && why_len)
		why[0] = 0;
	if (!region_bytes)
		region_bytes = REPL_DISK_REGION;
	if (!path || !*path || !image_bytes || !region_ok(region_bytes))
		return util_why(why, why_len, -EINVAL,
				"a log needs a path, an image size and a region size of 4 KiB to "
				"1 MiB, a power of two");
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->image_bytes = image_bytes;
	l->region_bytes = region_bytes;
	l->path = strdup(path);
	rc = l->path ? util_bitmap_init(&l->bm, regions_of(image_bytes, region_bytes)) : -ENOMEM;
	if (rc < 0)
		goto out;
	max = sizeof(struct dlog_header) + UTIL_BITMAP_WORDS(l->bm.nbits) * sizeof(uint64_t);
	rc = read_file(path, max, &buf, &len);
	if (rc == -ENOMEM)
		goto out;
	if (rc < 0)
		snprintf(pwhy, sizeof(pwhy), "cannot read it (%s)", strerror(-rc));
	else
		rc = dlog_parse(buf, len, image_bytes, region_bytes, &l->bm, &l->generation, pwhy,
				sizeof(pwhy));
	l->complete = !rc;
	if (rc < 0) {
		/* never "nothing dirty" from a log we cannot trust; the caller says so */
		util_bitmap_set_all(&l->bm);
		util_why(why, why_len, rc, "%s: %s; every region is taken as dirty", path, pwhy);
	}
	rc = 0;
	*out = l;
	l = NULL;
out:
	free(buf);
	repl_disk_log_free(l);
	return rc;
}

bool repl_disk_log_is_complete(const struct repl_disk_log *l)
{
	return l->complete;
}

int repl_disk_log_mark(struct repl_disk_log *l, uint64_t offset, uint64_t len)
{
	uint64_t first, last;
	int fresh = 0;

	if (!len)
		return 0;
	if (offset > l->image_bytes || len > l->image_bytes - offset)
		return -EINVAL;
	first = offset / l->region_bytes;
	last = (offset + len - 1) / l->region_bytes;
	for (uint64_t r = first; r <= last; r++)
		if (!util_bitmap_is_set(&l->bm, r)) {
			util_bitmap_set(&l->bm, r);
			fresh = 1;
		}
	return fresh;
}

/* fsync the folder holding `path`, so the rename survives a crash. */
static int sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int repl_disk_log_save(struct repl_disk_log *l, char *why, size_t why_len)
{
	size_t nwords = (size_t)UTIL_BITMAP_WORDS(l->bm.nbits);
	struct dlog_header h = {.magic = DLOG_MAGIC,
				.version = DLOG_VERSION,
				.region_bytes = l->region_bytes,
				.image_bytes = l->image_bytes,
				.regions = l->bm.nbits,
				.generation = l->generation + 1};
	char tmp[4096], fwhy[256];
	int fd = -1, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", l->path) >= (int)sizeof(tmp))
		return util_why(why, why_len, -ENAMETOOLONG, "%s: path too long", l->path);
	h.crc32c = crc_of(&h, l->bm.words, nwords);
	rc = util_file_create_private(tmp, &fd, fwhy, sizeof(fwhy));
	if (rc < 0)
		return util_why(why, why_len, rc, "%s", fwhy);
	rc = disk_write_full(fd, (const uint8_t *)&h, sizeof(h), 0);
	if (!rc)
		rc = disk_write_full(fd, (const uint8_t *)l->bm.words, nwords * sizeof(uint64_t),
				     sizeof(h));
	if (!rc && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc && rename(tmp, l->path) < 0)
		rc = -errno;
	if (!rc)
		rc = sync_dir(l->path);
	if (rc < 0) {
		unlink(tmp);
		return util_why(why, why_len, rc, "cannot save the dirty-region log %s (%s)",
				l->path, strerror(-rc));
	}
	l->generation++;
	l->complete = true;
	return 0;
}

void repl_disk_log_clear(struct repl_disk_log *l)
{
	util_bitmap_clear_all(&l->bm);
}

uint32_t repl_disk_log_region_bytes(const struct repl_disk_log *l)
{
	return l->region_bytes;
}

uint64_t repl_disk_log_regions(const struct repl_disk_log *l)
{
	return l->bm.nbits;
}

uint64_t repl_disk_log_count(const struct repl_disk_log *l)
{
	return util_bitmap_count(&l->bm);
}

bool repl_disk_log_is_dirty(const struct repl_disk_log *l, uint64_t region)
{
	return region < l->bm.nbits && util_bitmap_is_set(&l->bm, region);
}

uint64_t repl_disk_log_next(const struct repl_disk_log *l, uint64_t from)
{
	return util_bitmap_next_set(&l->bm, from);
}

void repl_disk_log_free(struct repl_disk_log *l)
{
	if (!l)
		return;
	util_bitmap_dispose(&l->bm);
	free(l->path);
	free(l);
}
