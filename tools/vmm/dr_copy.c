/*
 * A DR replica's copy of its newest checkpoint into a directory, for a test
 * boot (DrCopyRequest, `castor dr test`, docs/dr.md): the files named and
 * created here, the copy itself by repl_secondary_copy().
 */
#define LOG_TAG "castor-vmm"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/vmm/vmm.h"

/* DIR/name.tmp created for a DR copy; -EEXIST when DIR/name itself is there. */
static int dr_file(const char *dir, const char *name, char *path, size_t path_len, int *fd,
		   char *why, size_t why_len)
{
	char tmp[4200];

	if ((size_t)snprintf(path, path_len, "%s/%s", dir, name) >= path_len)
		return util_why(why, why_len, -ENAMETOOLONG, "the directory's name is too long");
	if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return util_why(why, why_len, -EEXIST,
				"%.3900s exists already (a test boot may be using it): give "
				"another directory or remove it",
				path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return util_file_create_private(tmp, fd, why, why_len);
}

/* DIR/name.tmp to DIR/name, never over a file that appeared meanwhile. */
static int dr_publish(const char *path, char *why, size_t why_len)
{
	char tmp[4200];

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0)
		return util_why(why, why_len, -errno, "%.3900s: %s", path, strerror(errno));
	return 0;
}

int vmm_dr_copy(struct vmm *v, const char *dir, struct vmm_dr_copy *out, char *why, size_t why_len)
{
	struct vmm_opts *o = v->o;
	int snap_fd = -1, disk_fds[REPL_DISK_MAX];
	struct repl_ckpt_copy cc;
	unsigned i, n = 0;
	struct stat sb;
	char name[32];
	int rc;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < REPL_DISK_MAX; i++)
		disk_fds[i] = -1;
	if (!v->secondary)
		return util_why(why, why_len, -EOPNOTSUPP,
				"this castor-vmm is not a replica: a DR copy comes from one");
	if (!dir || dir[0] != '/')
		return util_why(why, why_len, -EINVAL,
				"the directory must be an absolute path (castor-vmm's working "
				"directory is not yours)");
	if (stat(dir, &sb) < 0)
		return util_why(why, why_len, -errno, "%.3900s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return util_why(why, why_len, -ENOTDIR, "%.3900s is not a directory", dir);
	if (o->ndisks > REPL_DISK_MAX)
		return util_why(why, why_len, -E2BIG, "more disks than a replica copies");
	rc = dr_file(dir, "checkpoint.snap", out->snapshot, sizeof(out->snapshot), &snap_fd, why,
		     why_len);
	for (i = 0; !rc && i < o->ndisks; i++, n++) {
		out->disk_read_only[i] = o->disks[i].read_only;
		if (o->disks[i].read_only) { /* the test boot reads the replica's image */
			snprintf(out->disks[i], sizeof(out->disks[i]), "%s", o->disks[i].path);
			continue;
		}
		snprintf(name, sizeof(name), "disk%u.img", i);
		rc = dr_file(dir, name, out->disks[i], sizeof(out->disks[i]), &disk_fds[i], why,
			     why_len);
	}
	out->ndisks = o->ndisks;
	if (!rc)
		rc = repl_secondary_copy(v->secondary, snap_fd, disk_fds, o->ndisks, &cc, why,
					 why_len);
	if (!rc) {
		out->epoch = cc.epoch;
		out->age_ns = cc.age_ns;
		out->snap_bytes = cc.snap_bytes;
		out->disk_bytes = cc.disk_bytes;
	}
	if (snap_fd >= 0 && close(snap_fd) < 0 && !rc)
		rc = util_why(why, why_len, -errno, "closing the checkpoint: %s", strerror(errno));
	for (i = 0; i < n; i++)
		if (disk_fds[i] >= 0)
			close(disk_fds[i]);
	/* only whole copies get their names: the checkpoint last, once the disks have theirs */
	for (i = 0; !rc && i < n; i++)
		if (disk_fds[i] >= 0)
			rc = dr_publish(out->disks[i], why, why_len);
	if (!rc && snap_fd >= 0)
		rc = dr_publish(out->snapshot, why, why_len);
	if (rc < 0) {
		char tmp[4200];

		for (i = 0; i < n; i++)
			if (disk_fds[i] >= 0) {
				snprintf(tmp, sizeof(tmp), "%s.tmp", out->disks[i]);
				unlink(tmp);
			}
		if (snap_fd >= 0) {
			snprintf(tmp, sizeof(tmp), "%s.tmp", out->snapshot);
			unlink(tmp);
		}
		return rc;
	}
	for (i = 0; i < o->nnets && i < HV_MAX_DEVICES; i++)
		memcpy(out->macs[i], o->nets[i].mac, 6);
	out->nnets = o->nnets;
	return 0;
}
