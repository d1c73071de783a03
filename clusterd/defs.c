/*
 * The cluster's VM definitions, the same on every node (docs/cluster.md).
 *
 * A definition changes only through a message delivered to every member in
 * the same order (CPG agreed order): DEFINE carries the whole file,
 * UNDEFINE a name. Each carries a version (generation, origin node id); a
 * node keeps, per name, the highest version it has seen -- an undefined name
 * keeps a tombstone with its version, so an old definition replayed later
 * (by a node that was away) never brings a VM back. When a node joins, every
 * member replays its table; versions decide, so all members end with the
 * same table whatever order the replays arrive in.
 *
 * Each entry is kept in state_dir/vms/NAME.conf (the definition, after a
 * "# castord version G N" line) or NAME.undefined (a tombstone), written to a
 * temporary file and renamed, mode 0600, so a node that restarts still knows
 * every definition and every removal it had.
 */
#define LOG_TAG "defs"
#include "clusterd/cluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define VERSION_LINE "# castord version "

static bool newer(uint64_t gen, uint32_t node, const struct cd_def *d)
{
	return gen > d->generation || (gen == d->generation && node > d->origin);
}

static struct cd_def *find(struct cd_defs *s, const char *name)
{
	for (unsigned i = 0; i < s->n; i++)
		if (!strcmp(s->def[i].vm.name, name))
			return &s->def[i];
	return NULL;
}

void cd_defs_init(struct cd_defs *s, const char *dir)
{
	memset(s, 0, sizeof(*s));
	if (dir)
		snprintf(s->dir, sizeof(s->dir), "%s", dir);
}

void cd_defs_dispose(struct cd_defs *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->def[i].text);
	s->n = 0;
}

const struct cd_def *cd_defs_find(const struct cd_defs *s, const char *name)
{
	return find((struct cd_defs *)s, name);
}

uint64_t cd_defs_next_generation(const struct cd_defs *s)
{
	uint64_t g = 0;

	for (unsigned i = 0; i < s->n; i++)
		if (s->def[i].generation > g)
			g = s->def[i].generation;
	return g + 1;
}

/* Write `d` to its file in s->dir (nothing when the store has no directory). */
static int persist(const struct cd_defs *s, const struct cd_def *d)
{
	char path[CD_PATH_MAX + CD_NAME_MAX + 32], tmp[sizeof(path) + 8], other[sizeof(path)];
	FILE *f = NULL;
	int fd, rc = 0;

	if (!s->dir[0])
		return 0;
	snprintf(path, sizeof(path), "%s/%s.%s", s->dir, d->vm.name,
		 d->removed ? "undefined" : "conf");
	snprintf(other, sizeof(other), "%s/%s.%s", s->dir, d->vm.name,
		 d->removed ? "conf" : "undefined");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		rc = -errno;
		goto out;
	}
	fprintf(f, VERSION_LINE "%" PRIu64 " %u\n", d->generation, d->origin);
	if (!d->removed)
		fputs(d->text, f);
	if (fflush(f) || fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (!rc)
		unlink(other); /* a definition replaces its tombstone and the reverse */
out:
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int cd_defs_apply(struct cd_defs *s, const char *name, const char *text, size_t len, uint64_t gen,
		  uint32_t origin, char *why, size_t why_len)
{
	struct cd_vmdef vm;
	struct cd_def *d;
	char *copy = NULL;
	int rc;

	if (!cd_is_name(name))
		return util_why(why, why_len, -EINVAL, "'%.64s' is not a VM name", name);
	if (text) {
		rc = cd_vmdef_parse(name, text, len, &vm, why, why_len);
		if (rc < 0)
			return rc;
		if (strcmp(vm.name, name))
			return util_why(why, why_len, -EINVAL, "the definition names %s, not %s",
					vm.name, name);
		copy = malloc(len + 1);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, text, len);
		copy[len] = 0;
	}
	d = find(s, name);
	if (d && !newer(gen, origin, d)) {
		free(copy);
		return 0; /* what we hold is as new or newer: nothing changes */
	}
	if (!d) {
		if (s->n == CD_MAX_DEFS) {
			free(copy);
			return util_why(why, why_len, -ENOSPC, "at most %u VMs are defined",
					CD_MAX_DEFS);
		}
		d = &s->def[s->n++];
		memset(d, 0, sizeof(*d));
	}
	free(d->text);
	d->text = copy;
	d->removed = !text;
	d->generation = gen;
	d->origin = origin;
	if (text)
		d->vm = vm;
	else
		snprintf(d->vm.name, sizeof(d->vm.name), "%s", name);
	rc = s->loading ? 0 : persist(s, d);
	if (rc < 0)
		LOG_ERRNO(rc, "vm %s: cannot keep its definition in %s", name, s->dir);
	LOG_INFO("vm %s: %s (version %" PRIu64 " from node %u)", name,
		 text ? "defined" : "undefined", gen, origin);
	return 0;
}

/* One file of the directory into the table; a bad one is logged and skipped. */
static void load_one(struct cd_defs *s, const char *file)
{
	char path[CD_PATH_MAX + 300], name[CD_NAME_MAX], why[256];
	const char *dot = strrchr(file, '.');
	size_t nlen = dot ? (size_t)(dot - file) : 0;
	bool removed = dot && !strcmp(dot, ".undefined");
	uint64_t gen;
	unsigned origin;
	char *buf = NULL, *body;
	size_t len;

	if (!dot || (!removed && strcmp(dot, ".conf")) || !nlen || nlen >= sizeof(name))
		return;
	memcpy(name, file, nlen);
	name[nlen] = 0;
	snprintf(path, sizeof(path), "%s/%s", s->dir, file);
	if (cd_conf_read_file(path, &buf, &len, why, sizeof(why)) < 0) {
		LOG_WARN("%s", why);
		return;
	}
	buf[len] = 0; /* cd_conf_read_file leaves a byte */
	if (sscanf(buf, VERSION_LINE "%" SCNu64 " %u", &gen, &origin) != 2 ||
	    !(body = strchr(buf, '\n'))) {
		LOG_WARN("%s: no version line; ignored", path);
		goto out;
	}
	body++;
	if (cd_defs_apply(s, name, removed ? NULL : body, removed ? 0 : strlen(body), gen, origin,
			  why, sizeof(why)) < 0)
		LOG_WARN("%s: %s; ignored", path, why);
out:
	free(buf);
}

int cd_defs_load(struct cd_defs *s)
{
	struct dirent *e;
	DIR *dir;

	if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	dir = opendir(s->dir);
	if (!dir)
		return -errno;
	s->loading = true;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			load_one(s, e->d_name);
	s->loading = false;
	closedir(dir);
	return 0;
}

unsigned cd_defmsg_encode(const struct cd_defmsg *m, struct cd_defmsg_hdr *hdr, struct iovec iov[2])
{
	*hdr = (struct cd_defmsg_hdr){.magic = CD_DEFMSG_MAGIC,
				      .kind = m->kind,
				      .text_len = (uint32_t)m->text_len,
				      .generation = m->generation,
				      .origin = m->origin};
	snprintf(hdr->name, sizeof(hdr->name), "%s", m->name);
	iov[0] = (struct iovec){hdr, sizeof(*hdr)};
	iov[1] = (struct iovec){(void *)m->text, m->text_len};
	return m->text_len ? 2 : 1;
}

int cd_defmsg_decode(const void *buf, size_t len, struct cd_defmsg *out)
{
	struct cd_defmsg_hdr h;

	if (len < sizeof(h))
		return -EBADMSG;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != CD_DEFMSG_MAGIC || h.reserved || !h.generation)
		return -EBADMSG;
	if (h.kind != CD_DEFMSG_DEFINE && h.kind != CD_DEFMSG_UNDEFINE)
		return -EBADMSG;
	if (h.text_len != len - sizeof(h) || h.text_len > CD_CONF_MAX_BYTES ||
	    (h.kind == CD_DEFMSG_DEFINE) != (h.text_len > 0))
		return -EBADMSG;
	if (!memchr(h.name, 0, sizeof(h.name)) || !cd_is_name(h.name))
		return -EBADMSG;
	*out = (struct cd_defmsg){.kind = h.kind,
				  .text = h.text_len ? (const char *)buf + sizeof(h) : NULL,
				  .text_len = h.text_len,
				  .generation = h.generation,
				  .origin = h.origin};
	snprintf(out->name, sizeof(out->name), "%s", h.name);
	return 0;
}
