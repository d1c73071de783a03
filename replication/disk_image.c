/*
 * The image under a disk's replication: its size (a file or a block device),
 * where its holes are, and whole reads, writes and zeroings that return
 * -errno (disk_int.h). The epoch buffer (disk.c) and both ends of a resync
 * (disk_sync.c) go through these, so an error of the image reaches their
 * callers the same way everywhere: ENOSPC, EIO and EFBIG are never retried
 * or hidden.
 */
#define LOG_TAG "disk"
#include "replication/disk_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

int repl_disk_image_size(int fd, uint64_t *out, char *why, size_t why_len)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return util_why(why, why_len, -errno, "cannot stat the image (%s)",
				strerror(errno));
	if (S_ISREG(st.st_mode)) {
		*out = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, out) < 0)
			return util_why(why, why_len, -errno,
					"cannot read the block device's size (%s)",
					strerror(errno));
		return 0;
	}
	return util_why(why, why_len, -EINVAL, "not a regular file or a block device");
}

void disk_holes_init(struct disk_holes *h, int fd, uint64_t size)
{
	*h = (struct disk_holes){.fd = fd, .size = size};
}

bool disk_is_hole(struct disk_holes *h, uint64_t off, uint64_t len)
{
	/* the last answer holds for any offset in [asked, next_data] */
	if (!h->valid || off < h->asked || off > h->next_data) {
		off_t r = lseek(h->fd, (off_t)off, SEEK_DATA);

		if (r >= 0)
			h->next_data = (uint64_t)r;
		else if (errno == ENXIO) /* no data from off to the end */
			h->next_data = h->size;
		else /* no SEEK_DATA here: everything is data */
			h->next_data = off;
		h->asked = off;
		h->valid = true;
	}
	return h->next_data >= off + len;
}

int disk_image_crc32c(int fd, uint64_t bytes, uint32_t *crc_out)
{
	const size_t chunk = 1u << 20;
	uint32_t crc = UTIL_CRC32C_INIT;
	struct disk_holes h;
	uint8_t *buf = calloc(1, chunk);
	uint64_t off;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	disk_holes_init(&h, fd, bytes);
	for (off = 0; off < bytes; off += chunk) {
		size_t len = bytes - off < chunk ? (size_t)(bytes - off) : chunk;

		if (disk_is_hole(&h, off, len)) {
			memset(buf, 0, len); /* a read may have left data in it */
		} else {
			rc = disk_read_full(fd, buf, len, off);
			if (rc < 0)
				goto out;
		}
		crc = util_crc32c_update(crc, buf, len);
	}
	*crc_out = util_crc32c_final(crc);
out:
	free(buf);
	return rc;
}

int disk_read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EIO; /* the image is shorter than it said */
		buf += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int disk_write_full(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EIO;
		buf += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int disk_copy_image(int from, int to, uint64_t bytes)
{
	static uint8_t buf[1 << 20]; /* one copy at a time (a replica's, under its apply lock) */
	loff_t in = 0, out = 0;
	uint64_t done = 0;
	ssize_t n;
	int rc;

	if (ioctl(to, FICLONE, from) == 0)
		return 0;
	while (done < bytes) {
		n = copy_file_range(from, &in, to, &out, bytes - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* another file system, or a kernel without it: ours below */
		done += (uint64_t)n;
	}
	while (done < bytes) {
		size_t want = bytes - done < sizeof(buf) ? (size_t)(bytes - done) : sizeof(buf);

		rc = disk_read_full(from, buf, want, done);
		if (!rc)
			rc = disk_write_full(to, buf, want, done);
		if (rc < 0)
			return rc;
		done += want;
	}
	return 0;
}

int disk_zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 << 10];

	if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL)
		return -errno;
	/* a file system (or device) that cannot punch: the zeros are written */
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int rc = disk_write_full(fd, zeros, n, off);

		if (rc < 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}
