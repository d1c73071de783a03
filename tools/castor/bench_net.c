/*
 * castor bench net: request/response latency and rate against the test
 * guest's services (UDP 7701, TCP 7700; docs/test-guest.md), from wherever it
 * runs -- normally the client namespace of tests/net/lan.sh:
 *
 *   ip netns exec TAG-client castor bench net --target 10.66.0.2
 *
 * Every answer is checked (its seq, and counts that rise by one), so a figure
 * is never reported over broken service.
 */
#include "tools/castor/cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hypervisor/guest/abi.h"
#include "tools/castor/json.h"
#include "util/util.h"

struct net_opts {
	const char *target;
	uint64_t count;
	uint64_t window;
	uint64_t timeout_ms;
	bool json;
};

struct net_result {
	const char *name;
	uint64_t requests;
	uint64_t ns;
	uint64_t p50_ns, p99_ns; /* 0 when not measured (pipelined runs) */
	uint64_t bytes;		 /* request + response payload bytes */
};

static int parse_answer(const char *s, uint64_t *seq, uint64_t *count)
{
	unsigned long long a, b;
	char tail;

	if (sscanf(s, "%llu %llu%c", &a, &b, &tail) != 2)
		return -EBADMSG;
	*seq = a;
	*count = b;
	return 0;
}

/* Count must rise by one per answer over the run. */
static int check_answer(const char *what, uint64_t want_seq, uint64_t seq, uint64_t count,
			uint64_t *last_count)
{
	if (seq != want_seq) {
		cli_err("bench net: %s: answer for %llu, expected %llu", what,
			(unsigned long long)seq, (unsigned long long)want_seq);
		return -EPROTO;
	}
	if (*last_count && count != *last_count + 1) {
		cli_err("bench net: %s: count %llu after %llu", what, (unsigned long long)count,
			(unsigned long long)*last_count);
		return -EPROTO;
	}
	*last_count = count;
	return 0;
}

static int bench_udp(const struct net_opts *o, struct sockaddr_in *sa, struct net_result *r)
{
	uint64_t *lat = calloc(o->count, sizeof(uint64_t)), k, last = 0, t0;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

	r->name = "udp";
	if (!lat || fd < 0) {
		rc = -ENOMEM;
		goto out;
	}
	sa->sin_port = htons(TG_UDP_PORT);
	if (connect(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0) {
		rc = -errno;
		goto out;
	}
	t0 = util_now_ns();
	for (k = 0; k < o->count; k++) {
		char req[32], ans[64];
		uint64_t seq, count, ts = util_now_ns();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = snprintf(req, sizeof(req), "%llu", (unsigned long long)(k + 1));
		ssize_t got;

		if (send(fd, req, (size_t)n, 0) != n) {
			rc = -errno;
			goto out;
		}
		if (poll(&p, 1, (int)o->timeout_ms) != 1) {
			cli_err("bench net: udp: no answer to request %llu in %llu ms",
				(unsigned long long)(k + 1), (unsigned long long)o->timeout_ms);
			rc = -ETIMEDOUT;
			goto out;
		}
		got = recv(fd, ans, sizeof(ans) - 1, 0);
		if (got <= 0) {
			rc = -EIO;
			goto out;
		}
		ans[got] = 0;
		lat[k] = util_now_ns() - ts;
		rc = parse_answer(ans, &seq, &count);
		if (!rc)
			rc = check_answer("udp", k + 1, seq, count, &last);
		if (rc < 0)
			goto out;
		r->bytes += (uint64_t)n + (uint64_t)got;
	}
	r->ns = util_now_ns() - t0;
	r->requests = o->count;
	r->p50_ns = util_percentile(lat, o->count, 50);
	r->p99_ns = util_percentile(lat, o->count, 99);
out:
	if (fd >= 0)
		close(fd);
	free(lat);
	return rc;
}

/* Read answer lines until `want` more have arrived; checks each. */
struct tcp_reader {
	int fd;
	char buf[65536];
	size_t len;
	uint64_t next_seq, last_count, bytes;
};

static int tcp_read_lines(struct tcp_reader *t, uint64_t want, int timeout_ms)
{
	while (want) {
		char *nl = memchr(t->buf, '\n', t->len);
		struct pollfd p = {.fd = t->fd, .events = POLLIN};
		ssize_t got;

		if (nl) {
			uint64_t seq, count;
			size_t line = (size_t)(nl - t->buf) + 1;
			int rc;

			*nl = 0;
			rc = parse_answer(t->buf, &seq, &count);
			if (!rc)
				rc = check_answer("tcp", t->next_seq, seq, count, &t->last_count);
			if (rc < 0)
				return rc;
			memmove(t->buf, t->buf + line, t->len - line);
			t->len -= line;
			t->bytes += line;
			t->next_seq++;
			want--;
			continue;
		}
		if (t->len == sizeof(t->buf))
			return -EPROTO;
		if (poll(&p, 1, timeout_ms) != 1) {
			cli_err("bench net: tcp: no answer for request %llu in %d ms",
				(unsigned long long)t->next_seq, timeout_ms);
			return -ETIMEDOUT;
		}
		got = recv(t->fd, t->buf + t->len, sizeof(t->buf) - t->len, 0);
		if (got <= 0) {
			cli_err("bench net: tcp: connection %s",
				got ? "failed" : "closed by the guest");
			return -ECONNRESET;
		}
		t->len += (size_t)got;
	}
	return 0;
}

static int tcp_connect(const struct net_opts *o, struct sockaddr_in *sa, int *fd_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sa->sin_port = htons(TG_TCP_PORT);
	if (connect(fd, (struct sockaddr *)sa, sizeof(*sa)) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

/* window 1: latency of one request at a time; window > 1: pipelined rate. */
static int bench_tcp(const struct net_opts *o, struct sockaddr_in *sa, uint64_t window,
		     struct net_result *r)
{
	uint64_t *lat = calloc(o->count, sizeof(uint64_t)), sent = 0, t0;
	struct tcp_reader *t = calloc(1, sizeof(*t));
	int rc;

	r->name = window == 1 ? "tcp" : "tcp-pipelined";
	if (!lat || !t) {
		rc = -ENOMEM;
		goto out;
	}
	t->fd = -1;
	rc = tcp_connect(o, sa, &t->fd);
	if (rc < 0) {
		cli_err("bench net: cannot connect to %s:%u: %s", o->target, TG_TCP_PORT,
			strerror(-rc));
		goto out;
	}
	t->next_seq = 1;
	t0 = util_now_ns();
	while (t->next_seq <= o->count) {
		uint64_t ts = util_now_ns();

		while (sent < o->count && sent + 1 - t->next_seq < window) {
			char req[32];
			int n = snprintf(req, sizeof(req), "%llu\n",
					 (unsigned long long)(sent + 1));

			if (send(t->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
				rc = -errno;
				goto out;
			}
			r->bytes += (uint64_t)n;
			sent++;
		}
		rc = tcp_read_lines(t, 1, (int)o->timeout_ms);
		if (rc < 0)
			goto out;
		lat[t->next_seq - 2] = util_now_ns() - ts;
	}
	r->ns = util_now_ns() - t0;
	r->requests = o->count;
	r->bytes += t->bytes;
	if (window == 1) {
		r->p50_ns = util_percentile(lat, o->count, 50);
		r->p99_ns = util_percentile(lat, o->count, 99);
	}
out:
	if (t && t->fd >= 0)
		close(t->fd);
	free(t);
	free(lat);
	return rc;
}

static void report(const struct net_opts *o, const struct net_result *r)
{
	double secs = (double)r->ns / 1e9;

	if (o->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_object_begin(&j, NULL);
		cli_json_str(&j, "bench", "net");
		cli_json_str(&j, "test", r->name);
		cli_json_u64(&j, "requests", r->requests);
		cli_json_double(&j, "seconds", secs);
		cli_json_double(&j, "requests_per_s", (double)r->requests / secs);
		cli_json_double(&j, "p50_us", (double)r->p50_ns / 1e3);
		cli_json_double(&j, "p99_us", (double)r->p99_ns / 1e3);
		cli_json_double(&j, "payload_mbit_s", (double)r->bytes * 8 / secs / 1e6);
		cli_json_object_end(&j);
		cli_json_finish(&j);
		return;
	}
	printf("%-14s %9llu %10.0f", r->name, (unsigned long long)r->requests,
	       (double)r->requests / secs);
	if (r->p50_ns)
		printf(" %9.1f %9.1f", (double)r->p50_ns / 1e3, (double)r->p99_ns / 1e3);
	else
		printf(" %9s %9s", "-", "-");
	printf(" %12.2f\n", (double)r->bytes * 8 / secs / 1e6);
}

int cli_bench_net(int argc, char **argv)
{
	static const struct option opts[] = {
		{"target", required_argument, NULL, 't'},
		{"count", required_argument, NULL, 'n'},
		{"window", required_argument, NULL, 'w'},
		{"timeout-ms", required_argument, NULL, 'T'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	struct net_opts o = {.count = 2000, .window = 32, .timeout_ms = 2000};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct net_result r;
	uint64_t v;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			o.target = optarg;
			break;
		case 'n':
		case 'w':
		case 'T':
			if (util_parse_u64(optarg, &v) < 0 || v < 1 || v > 100000000) {
				cli_err("bench net: bad number '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			if (c == 'n')
				o.count = v;
			else if (c == 'w')
				o.window = v;
			else
				o.timeout_ms = v;
			break;
		case 'j':
			o.json = true;
			break;
		default: /* '?' or ':' */
			cli_opt_error("bench net", c, argv);
			return CLI_EXIT_USAGE;
		}
	}
	if (!o.target || inet_pton(AF_INET, o.target, &sa.sin_addr) != 1) {
		cli_err("bench net: --target IPV4 is required (the test guest's address)");
		return CLI_EXIT_USAGE;
	}
	if (!o.json)
		printf("castor bench net: test guest at %s, %llu requests per test, pipelined "
		       "window "
		       "%llu\n%-14s %9s %10s %9s %9s %12s\n",
		       o.target, (unsigned long long)o.count, (unsigned long long)o.window, "test",
		       "requests", "req/s", "p50_us", "p99_us", "payload_Mb/s");
	memset(&r, 0, sizeof(r));
	rc = bench_udp(&o, &sa, &r);
	if (!rc)
		report(&o, &r);
	memset(&r, 0, sizeof(r));
	if (!rc)
		rc = bench_tcp(&o, &sa, 1, &r);
	if (!rc)
		report(&o, &r);
	memset(&r, 0, sizeof(r));
	if (!rc)
		rc = bench_tcp(&o, &sa, o.window, &r);
	if (!rc)
		report(&o, &r);
	if (rc < 0)
		cli_err("bench net: %s", strerror(-rc));
	return rc < 0 ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
