/*
 * VM definition files (docs/cluster.md): what a VM is -- its guest, RAM,
 * vCPUs, disks and NICs, as castor-vmm takes them -- and how it is
 * protected. Repeatable keys: guest_param, disk, nic. Everything is checked
 * here, when the definition is made, not when a host first tries to start it.
 */
#define LOG_TAG "vmdef"
#include "clusterd/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor/hv.h"
#include "netbuffer/netbuf.h"
#include "util/util.h"

#define MIN_MEM (16ull << 20)
#define MAX_MEM (1ull << 40)

enum key {
	K_NAME,
	K_GUEST,
	K_MEM,
	K_CPUS,
	K_GUEST_PARAM,
	K_DISK,
	K_NIC,
	K_PROTECTION,
	K_INTERVAL,
	K_HOSTS,
	K_KERNEL,
	K_INITRD,
	K_CMDLINE,
	K_RESTART,
	N_KEYS
};

static const char *const names[N_KEYS] = {
	[K_NAME] = "name",
	[K_GUEST] = "guest",
	[K_MEM] = "mem",
	[K_CPUS] = "cpus",
	[K_GUEST_PARAM] = "guest_param",
	[K_DISK] = "disk",
	[K_NIC] = "nic",
	[K_PROTECTION] = "protection",
	[K_INTERVAL] = "interval",
	[K_HOSTS] = "hosts",
	[K_KERNEL] = "kernel",
	[K_INITRD] = "initrd",
	[K_CMDLINE] = "cmdline",
	[K_RESTART] = "restart",
};
static const bool repeatable[N_KEYS] = {[K_GUEST_PARAM] = true, [K_DISK] = true, [K_NIC] = true};

struct ctx {
	struct cd_vmdef *d;
	unsigned seen[N_KEYS];
};

/* The words of the settings that take one, in their enum's order. */
static const char *const protection_words[] = {"none", "interval", "output"};
static const char *const restart_words[] = {"no", "on-failure"};

const char *cd_protection_str(enum cd_protection p)
{
	return (unsigned)p < 3 ? protection_words[p] : "?";
}

const char *cd_restart_str(enum cd_restart r)
{
	return (unsigned)r < 2 ? restart_words[r] : "?";
}

bool cd_vmdef_writes_disk(const struct cd_vmdef *def)
{
	for (unsigned i = 0; i < def->ndisks; i++) {
		size_t n = strlen(def->disk[i]);

		if (n < 3 || strcmp(def->disk[i] + n - 3, ",ro"))
			return true;
	}
	return false;
}

int cd_vmdef_disk_on(const char *disk, const char *node, char *out, size_t out_len)
{
	size_t n = 0;

	for (const char *p = disk; *p; p++) {
		const char *add = p;
		size_t len = 1;

		if (*p == '%' && p[1] == 'n') {
			add = node;
			len = strlen(node);
			p++;
		} else if (*p == '%' && p[1] == '%') {
			p++;
		}
		if (n + len >= out_len)
			return -ENAMETOOLONG;
		memcpy(out + n, add, len);
		n += len;
	}
	if (!out_len)
		return -ENAMETOOLONG;
	out[n] = 0;
	return 0;
}

/*
 * "PATH" or "PATH,ro" / "PATH,rw", PATH absolute (a host's castor-vmm opens
 * it); "%n" in it is the node's name (a copy per host on one file system),
 * "%%" a percent sign, any other '%' refused.
 */
static int take_disk(struct cd_vmdef *d, const char *v, char *why, size_t why_len)
{
	const char *comma = strrchr(v, ',');

	for (const char *p = strchr(v, '%'); p; p = strchr(p + 2, '%'))
		if (p[1] != 'n' && p[1] != '%')
			return util_why(why, why_len, -EINVAL,
					"disk: '%.60s' has a '%%' that is neither %%n (the node's "
					"name) nor %%%%",
					v);

	if (d->ndisks == CD_MAX_DISKS)
		return util_why(why, why_len, -E2BIG, "disk: at most %u disks", CD_MAX_DISKS);
	if (*v != '/' || (comma && strcmp(comma, ",ro") && strcmp(comma, ",rw")))
		return util_why(why, why_len, -EINVAL,
				"disk: '%.60s' is not /ABSOLUTE/PATH[,ro|,rw]", v);
	if (strlen(v) >= sizeof(d->disk[0]))
		return util_why(why, why_len, -ENAMETOOLONG, "disk: a path too long");
	snprintf(d->disk[d->ndisks++], sizeof(d->disk[0]), "%s", v);
	return 0;
}

/* "tap=NAME[,mac=MAC]" */
static int take_nic(struct cd_vmdef *d, const char *v, char *why, size_t why_len)
{
	char buf[sizeof(d->nic[0])], *save = NULL, *tok;
	bool tap = false;
	uint8_t mac[6];

	if (d->nnics == CD_MAX_NICS)
		return util_why(why, why_len, -E2BIG, "nic: at most %u NICs", CD_MAX_NICS);
	if (strlen(v) >= sizeof(buf))
		return util_why(why, why_len, -ENAMETOOLONG, "nic: too long");
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4) && tok[4] && strlen(tok + 4) < 16)
			tap = true;
		else if (!strncmp(tok, "mac=", 4) && nb_mac_parse(tok + 4, mac) == 0)
			continue;
		else
			return util_why(why, why_len, -EINVAL,
					"nic: '%.60s' is not tap=NAME[,mac=MAC] (a unicast MAC "
					"like 52:54:00:12:34:56)",
					v);
	}
	if (!tap)
		return util_why(why, why_len, -EINVAL, "nic: tap=NAME is missing");
	snprintf(d->nic[d->nnics++], sizeof(d->nic[0]), "%s", v);
	return 0;
}

/* "a,b,c": preferred hosts, each a name, none twice */
static int take_hosts(struct cd_vmdef *d, const char *v, char *why, size_t why_len)
{
	char buf[CD_MAX_HOSTS * CD_NAME_MAX], *save = NULL, *tok;

	if (strlen(v) >= sizeof(buf))
		return util_why(why, why_len, -ENAMETOOLONG, "hosts: too long");
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *t = tok;

		while (*t == ' ')
			t++;
		for (char *e = t + strlen(t); e > t && e[-1] == ' ';)
			*--e = 0;
		if (!cd_is_name(t))
			return util_why(why, why_len, -EINVAL, "hosts: '%.60s' is not a node name",
					t);
		for (unsigned i = 0; i < d->nhosts; i++)
			if (!strcmp(d->hosts[i], t))
				return util_why(why, why_len, -EINVAL, "hosts: %s is listed twice",
						t);
		if (d->nhosts == CD_MAX_HOSTS)
			return util_why(why, why_len, -E2BIG, "hosts: at most %u", CD_MAX_HOSTS);
		snprintf(d->hosts[d->nhosts++], CD_NAME_MAX, "%s", t);
	}
	if (!d->nhosts)
		return util_why(why, why_len, -EINVAL, "hosts: no host named");
	return 0;
}

/* One of `n` words (their index; -EINVAL naming them all: "is not a, b or c"). */
static int take_word(const char *key, const char *v, const char *const *words, unsigned n,
		     char *why, size_t why_len)
{
	char list[128];
	size_t len = 0;

	for (unsigned i = 0; i < n; i++)
		if (!strcmp(v, words[i]))
			return (int)i;
	list[0] = 0;
	for (unsigned i = 0; i < n && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
					!i	    ? ""
					: i + 1 < n ? ", "
						    : " or ",
					words[i]);
	return util_why(why, why_len, -EINVAL, "%s: '%.40s' is not %s", key, v, list);
}

static int take(struct cd_vmdef *d, enum key k, const char *v, char *why, size_t why_len)
{
	struct hv_tg_config tg;
	uint64_t n;

	switch (k) {
	case K_NAME:
		if (!cd_is_name(v))
			return util_why(why, why_len, -EINVAL,
					"name: '%.60s' is not a name (1-63 letters, digits, '-', "
					"'_'; starting with a letter or digit)",
					v);
		snprintf(d->name, sizeof(d->name), "%s", v);
		return 0;
	case K_GUEST:
		if (strcmp(v, "test") && strcmp(v, "linux"))
			return util_why(
				why, why_len, -EINVAL,
				"guest: '%.40s' is not a guest castor-vmm runs ('test', the "
				"test guest, or 'linux', a kernel)",
				v);
		snprintf(d->guest, sizeof(d->guest), "%s", v);
		return 0;
	case K_KERNEL:
	case K_INITRD:
		/* absolute: the chosen host's castor-vmm opens it, in its own directory */
		if (*v != '/' || strlen(v) >= sizeof(d->kernel))
			return util_why(why, why_len, -EINVAL, "%s: '%.60s' is not /ABSOLUTE/PATH",
					names[k], v);
		snprintf(k == K_KERNEL ? d->kernel : d->initrd, sizeof(d->kernel), "%s", v);
		return 0;
	case K_CMDLINE:
		if (strlen(v) >= sizeof(d->cmdline))
			return util_why(why, why_len, -E2BIG, "cmdline: longer than %zu bytes",
					sizeof(d->cmdline) - 1);
		snprintf(d->cmdline, sizeof(d->cmdline), "%s", v);
		return 0;
	case K_MEM:
		if (util_parse_size(v, &n) < 0 || n < MIN_MEM || n > MAX_MEM || n % 4096)
			return util_why(why, why_len, -EINVAL,
					"mem: '%.40s' is not a size from 16M to 1T in whole pages",
					v);
		d->mem_bytes = n;
		return 0;
	case K_CPUS:
		if (util_parse_u64(v, &n) < 0 || n < 1 || n > HV_MAX_VCPUS)
			return util_why(why, why_len, -EINVAL, "cpus: '%.40s' is not 1 to %u", v,
					HV_MAX_VCPUS);
		d->cpus = (uint32_t)n;
		return 0;
	case K_GUEST_PARAM:
		if (d->nguest_param == CD_MAX_GUEST_PARAM)
			return util_why(why, why_len, -E2BIG, "guest_param: at most %u",
					CD_MAX_GUEST_PARAM);
		hv_tg_config_default(&tg);
		if (strlen(v) >= sizeof(d->guest_param[0]) ||
		    hv_tg_config_set(&tg, v, why, why_len) < 0) {
			if (!*why)
				snprintf(why, why_len, "guest_param: too long");
			return -EINVAL;
		}
		snprintf(d->guest_param[d->nguest_param++], sizeof(d->guest_param[0]), "%s", v);
		return 0;
	case K_DISK:
		return take_disk(d, v, why, why_len);
	case K_NIC:
		return take_nic(d, v, why, why_len);
	case K_PROTECTION: {
		int i = take_word(names[k], v, protection_words, 3, why, why_len);

		if (i >= 0)
			d->protection = (enum cd_protection)i;
		return i < 0 ? i : 0;
	}
	case K_INTERVAL:
		if (util_parse_u64(v, &n) < 0 || n < 1 || n > 600000)
			return util_why(why, why_len, -EINVAL,
					"interval: '%.40s' is not 1 to 600000 milliseconds", v);
		d->interval_ms = (uint32_t)n;
		return 0;
	case K_HOSTS:
		return take_hosts(d, v, why, why_len);
	case K_RESTART: {
		int i = take_word(names[k], v, restart_words, 2, why, why_len);

		if (i >= 0)
			d->restart = (enum cd_restart)i;
		return i < 0 ? i : 0;
	}
	case N_KEYS:
		break;
	}
	return -EINVAL;
}

static int line_cb(void *arg, unsigned line, const char *key, const char *v, char *why,
		   size_t why_len)
{
	struct ctx *x = arg;
	int k;

	for (k = 0; k < N_KEYS && strcmp(names[k], key); k++)
		;
	if (k == N_KEYS)
		return util_why(why, why_len, -EINVAL,
				"unknown setting '%.40s' (known: name, guest, mem, cpus, "
				"guest_param, kernel, initrd, cmdline, disk, nic, protection, "
				"interval, hosts, restart)",
				key);
	if (x->seen[k] && !repeatable[k])
		return util_why(why, why_len, -EINVAL, "%s is set again (first on line %u)", key,
				x->seen[k]);
	if (!x->seen[k])
		x->seen[k] = line;
	return take(x->d, (enum key)k, v, why, why_len);
}

int cd_vmdef_parse(const char *name, const char *text, size_t len, struct cd_vmdef *out, char *why,
		   size_t why_len)
{
	static const enum key required[] = {K_NAME, K_GUEST, K_MEM, K_CPUS};
	struct ctx x = {.d = out};
	int rc;

	memset(out, 0, sizeof(*out));
	rc = cd_conf_parse(name, text, len, line_cb, &x, why, why_len);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!x.seen[required[i]])
			return util_why(why, why_len, -EINVAL, "%s: '%s = ...' is required", name,
					names[required[i]]);
	if (!strcmp(out->guest, "linux") && !x.seen[K_KERNEL])
		return util_why(why, why_len, -EINVAL, "%s: a linux guest needs 'kernel = PATH'",
				name);
	if (!strcmp(out->guest, "test")) {
		static const enum key linux_only[] = {K_KERNEL, K_INITRD, K_CMDLINE};

		for (size_t i = 0; i < sizeof(linux_only) / sizeof(linux_only[0]); i++)
			if (x.seen[linux_only[i]])
				return util_why(
					why, why_len, -EINVAL,
					"%s:%u: %s is for a linux guest, not the test guest", name,
					x.seen[linux_only[i]], names[linux_only[i]]);
	} else if (x.seen[K_GUEST_PARAM]) {
		return util_why(why, why_len, -EINVAL,
				"%s:%u: guest_param is for the test guest, not a linux guest", name,
				x.seen[K_GUEST_PARAM]);
	}
	if (x.seen[K_INTERVAL] && out->protection == CD_PROT_NONE)
		return util_why(why, why_len, -EINVAL,
				"%s:%u: an interval for a VM with protection none", name,
				x.seen[K_INTERVAL]);
	return 0;
}

int cd_vmdef_load(const char *path, struct cd_vmdef *out, char *why, size_t why_len)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = cd_conf_read_file(path, &buf, &len, why, why_len);

	if (!rc)
		rc = cd_vmdef_parse(path, buf, len, out, why, why_len);
	free(buf);
	return rc;
}
