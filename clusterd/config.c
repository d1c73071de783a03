/*
 * castord.conf (docs/cluster.md): the node's name, its directories and
 * addresses. Every key may appear once; unknown keys are errors (a typo must
 * not silently leave a default in place).
 */
#define LOG_TAG "config"
#include "clusterd/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

enum key {
	K_NODE,
	K_STATE_DIR,
	K_CONTROL,
	K_VMM,
	K_REPL_HOST,
	K_REPL_PORTS,
	K_METRICS,
	K_KEY_FILE,
	K_WITNESS,
	K_ALLOW_TWO_NODE,
	N_KEYS
};

static const char *const names[N_KEYS] = {
	[K_NODE] = "node",
	[K_STATE_DIR] = "state_dir",
	[K_CONTROL] = "control",
	[K_VMM] = "vmm",
	[K_REPL_HOST] = "replication_host",
	[K_REPL_PORTS] = "replication_ports",
	[K_METRICS] = "metrics",
	[K_KEY_FILE] = "key_file",
	[K_WITNESS] = "witness",
	[K_ALLOW_TWO_NODE] = "allow_two_node",
};

struct ctx {
	struct cd_config *c;
	unsigned seen[N_KEYS]; /* the line each key was set on; 0: not yet */
};

static int set_str(char *dst, size_t size, const char *key, const char *v, char *why,
		   size_t why_len)
{
	if (!*v)
		return util_why(why, why_len, -EINVAL, "%s: an empty value", key);
	if (strlen(v) >= size)
		return util_why(why, why_len, -ENAMETOOLONG, "%s: longer than %zu characters", key,
				size - 1);
	snprintf(dst, size, "%s", v);
	return 0;
}

static int set_path(char *dst, const char *key, const char *v, char *why, size_t why_len)
{
	if (*v && *v != '/')
		return util_why(why, why_len, -EINVAL, "%s: '%.60s' is not an absolute path", key,
				v);
	return set_str(dst, CD_PATH_MAX, key, v, why, why_len);
}

static int parse_port(const char *s, uint16_t *out)
{
	uint64_t v;

	if (util_parse_u64(s, &v) < 0 || v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* "LOW-HIGH" */
static int set_ports(struct cd_config *c, const char *v, char *why, size_t why_len)
{
	char low[16];
	const char *dash = strchr(v, '-');

	if (!dash || (size_t)(dash - v) >= sizeof(low))
		goto bad;
	memcpy(low, v, (size_t)(dash - v));
	low[dash - v] = 0;
	if (parse_port(low, &c->port_low) < 0 || parse_port(dash + 1, &c->port_high) < 0 ||
	    c->port_low > c->port_high)
		goto bad;
	return 0;
bad:
	return util_why(why, why_len, -EINVAL,
			"replication_ports: '%.40s' is not LOW-HIGH with 1 <= LOW <= HIGH <= 65535",
			v);
}

static int set_bool(bool *dst, const char *key, const char *v, char *why, size_t why_len)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true"))
		*dst = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false"))
		*dst = false;
	else
		return util_why(why, why_len, -EINVAL, "%s: '%.40s' is not yes or no", key, v);
	return 0;
}

/* "HOST:PORT", a port in range: the address is resolved when it is used */
static int set_metrics(struct cd_config *c, const char *v, char *why, size_t why_len)
{
	const char *colon = strrchr(v, ':');
	uint16_t port;

	if (!strcmp(v, "off")) {
		c->metrics[0] = 0;
		return 0;
	}
	if (!colon || colon == v || parse_port(colon + 1, &port) < 0)
		return util_why(why, why_len, -EINVAL, "metrics: '%.60s' is not HOST:PORT or off",
				v);
	return set_str(c->metrics, sizeof(c->metrics), "metrics", v, why, why_len);
}

static int line_cb(void *arg, unsigned line, const char *key, const char *v, char *why,
		   size_t why_len)
{
	struct ctx *x = arg;
	struct cd_config *c = x->c;
	int k;

	for (k = 0; k < N_KEYS && strcmp(names[k], key); k++)
		;
	if (k == N_KEYS)
		return util_why(why, why_len, -EINVAL,
				"unknown setting '%.40s' (known: node, state_dir, control, vmm, "
				"replication_host, replication_ports, metrics, key_file, witness, "
				"allow_two_node)",
				key);
	if (x->seen[k])
		return util_why(why, why_len, -EINVAL, "%s is set again (first on line %u)", key,
				x->seen[k]);
	x->seen[k] = line;
	switch ((enum key)k) {
	case K_NODE:
		if (!cd_is_name(v))
			return util_why(why, why_len, -EINVAL,
					"node: '%.70s' is not a name (1-63 letters, digits, '-', "
					"'_'; starting with a letter or digit)",
					v);
		return set_str(c->node, sizeof(c->node), key, v, why, why_len);
	case K_STATE_DIR:
		return set_path(c->state_dir, key, v, why, why_len);
	case K_CONTROL:
		return set_path(c->control, key, v, why, why_len);
	case K_VMM:
		return set_str(c->vmm, sizeof(c->vmm), key, v, why, why_len);
	case K_REPL_HOST:
		if (strchr(v, ' ') || strchr(v, '\t'))
			return util_why(why, why_len, -EINVAL,
					"replication_host: '%.60s' is not "
					"an address or a host name",
					v);
		return set_str(c->replication_host, sizeof(c->replication_host), key, v, why,
			       why_len);
	case K_REPL_PORTS:
		return set_ports(c, v, why, why_len);
	case K_METRICS:
		return set_metrics(c, v, why, why_len);
	case K_KEY_FILE:
		return set_path(c->key_file, key, v, why, why_len);
	case K_WITNESS:
		return set_bool(&c->witness, key, v, why, why_len);
	case K_ALLOW_TWO_NODE:
		return set_bool(&c->allow_two_node, key, v, why, why_len);
	case N_KEYS:
		break;
	}
	return -EINVAL;
}

int cd_config_parse(const char *name, const char *text, size_t len, struct cd_config *out,
		    char *why, size_t why_len)
{
	struct ctx x = {.c = out};
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(out->state_dir, sizeof(out->state_dir), "/var/lib/castor");
	snprintf(out->control, sizeof(out->control), "/run/castor/castord.sock");
	snprintf(out->vmm, sizeof(out->vmm), "castor-vmm");
	snprintf(out->replication_host, sizeof(out->replication_host), "0.0.0.0");
	snprintf(out->metrics, sizeof(out->metrics), "127.0.0.1:9477");
	out->port_low = 7800;
	out->port_high = 7899;
	rc = cd_conf_parse(name, text, len, line_cb, &x, why, why_len);
	if (rc < 0)
		return rc;
	if (!x.seen[K_NODE])
		return util_why(why, why_len, -EINVAL, "%s: 'node = NAME' is required", name);
	return 0;
}

int cd_config_load(const char *path, struct cd_config *out, char *why, size_t why_len)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = cd_conf_read_file(path, &buf, &len, why, why_len);

	if (!rc)
		rc = cd_config_parse(path, buf, len, out, why, why_len);
	free(buf);
	return rc;
}
