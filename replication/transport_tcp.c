/*
 * The TCP transport: what replication uses wherever there is no RDMA. Nagle
 * is off (epoch ends must leave at once); a silent peer is detected by poll()
 * timeouts on receive and by TCP_USER_TIMEOUT on unacknowledged sends, with
 * keepalive for idle connections; MSG_NOSIGNAL turns a vanished peer into an
 * error instead of SIGPIPE.
 */
#define LOG_TAG "tcp"
#include "replication/repl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/util.h"

static int fcntl_clear_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

struct repl_listener {
	int fd;
	struct repl_conn_opts opts;
	uint16_t port;
};

struct repl_conn {
	int fd;
	struct repl_conn_opts opts;
	uint64_t sent;
	bool cut;
};

/* RFC 1123 host name: checked here so a typo is named without a DNS round trip. */
static bool is_host_name(const char *h)
{
	size_t label = 0;

	for (; *h; h++) {
		if (*h == '.') {
			if (!label || h[-1] == '-')
				return false;
			label = 0;
		} else if ((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
			   (*h >= '0' && *h <= '9') || (*h == '-' && label)) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return true;
}

/*
 * HOST is an IPv4 address, a bracketed IPv6 address or a name; a name is
 * resolved here (getaddrinfo, so /etc/hosts and DNS) and the first address in
 * the resolver's order is used: this runs once per listen or connect, off the
 * data path. PORT is decimal, 0..65535 (0: any free port, for listening).
 */
int repl_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *len_out, char *why,
		    size_t why_len)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char host[256];
	const char *colon, *port, *h;
	bool bracketed;
	uint64_t p;
	size_t hl;
	int r;

	colon = addr ? strrchr(addr, ':') : NULL;
	if (!colon) {
		snprintf(why, why_len, "'%s' is not HOST:PORT (an IPv6 address as [ADDR]:PORT)",
			 addr ? addr : "");
		return -EINVAL;
	}
	port = colon + 1;
	h = addr;
	hl = (size_t)(colon - addr);
	bracketed = addr[0] == '[';
	if (bracketed) {
		if (hl < 2 || colon[-1] != ']') {
			snprintf(why, why_len, "'%s': an IPv6 address is written [ADDR]:PORT",
				 addr);
			return -EINVAL;
		}
		h++;
		hl -= 2;
	} else if (memchr(addr, ':', hl)) {
		snprintf(why, why_len, "'%s': an IPv6 address needs brackets: [ADDR]:PORT", addr);
		return -EINVAL;
	}
	if (!hl || hl >= sizeof(host)) {
		snprintf(why, why_len, "'%s': the host is %s", addr, hl ? "too long" : "missing");
		return -EINVAL;
	}
	if (util_parse_u64(port, &p) < 0 || p > 65535) {
		snprintf(why, why_len, "'%s': port '%s' is not a number from 0 to 65535", addr,
			 port);
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	if (bracketed) {
		hints.ai_flags |= AI_NUMERICHOST;
		hints.ai_family = AF_INET6;
	} else if (!is_host_name(host)) {
		snprintf(why, why_len, "'%s': '%s' is neither an IP address nor a host name", addr,
			 host);
		return -EINVAL;
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0 || !res) {
		snprintf(why, why_len, "'%s': %s '%s': %s", addr,
			 bracketed ? "bad IPv6 address" : "cannot resolve", host,
			 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		if (res)
			freeaddrinfo(res);
		return r == EAI_AGAIN ? -EAGAIN : -EINVAL;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len_out = (unsigned)res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

bool repl_addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static void tune(int fd, const struct repl_conn_opts *o)
{
	int one = 1, idle, intvl, cnt = 3;
	unsigned utimeout = o->timeout_ms;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &utimeout, sizeof(utimeout));
	/* keepalive counts in whole seconds: the poll timeouts do the fine work */
	idle = (int)(o->timeout_ms / 3000);
	intvl = (int)(o->timeout_ms / 9000);
	idle = idle < 1 ? 1 : idle;
	intvl = intvl < 1 ? 1 : intvl;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (o->max_rate_bytes) {
		unsigned rate =
			o->max_rate_bytes > 0xfffffffeu ? 0xfffffffeu : (unsigned)o->max_rate_bytes;

		/* no fq qdisc needed: TCP paces internally once a cap is set (Linux >= 4.13) */
		if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate)) < 0)
			LOG_WARN("the link's rate cap (%u bytes/s) is not set: %s", rate,
				 strerror(errno));
	}
}

static struct repl_conn_opts opts_or_default(const struct repl_conn_opts *o)
{
	struct repl_conn_opts d = {.timeout_ms = REPL_DEFAULT_TIMEOUT_MS};

	if (o)
		d = *o;
	if (!d.timeout_ms)
		d.timeout_ms = REPL_DEFAULT_TIMEOUT_MS;
	return d;
}

static int tcp_listen(const char *addr, const struct repl_conn_opts *o, struct repl_listener **out)
{
	struct sockaddr_storage ss;
	unsigned len;
	char why[512];
	struct repl_listener *l;
	int one = 1, rc;

	rc = repl_parse_addr(addr, &ss, &len, why, sizeof(why));
	if (rc < 0) {
		LOG_ERR("%s", why);
		return rc;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->opts = opts_or_default(o);
	l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		rc = -errno;
		goto fail;
	}
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&ss, len) < 0 || listen(l->fd, 4) < 0) {
		rc = -errno;
		goto fail;
	}
	len = sizeof(ss);
	getsockname(l->fd, (struct sockaddr *)&ss, (socklen_t *)&len);
	l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	*out = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	free(l);
	return rc;
}

static uint16_t tcp_local_port(const struct repl_listener *l)
{
	return l->port;
}

static int conn_new(int fd, const struct repl_conn_opts *o, struct repl_conn **out)
{
	struct repl_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->opts = *o;
	tune(fd, o);
	*out = c;
	return 0;
}

static int tcp_accept(struct repl_listener *l, int timeout_ms, struct repl_conn **out)
{
	struct pollfd p = {.fd = l->fd, .events = POLLIN};
	int r, fd;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	return conn_new(fd, &l->opts, out);
}

static void tcp_close_listener(struct repl_listener *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}

static int tcp_connect(const char *addr, const struct repl_conn_opts *o, struct repl_conn **out)
{
	struct repl_conn_opts opts = opts_or_default(o);
	struct sockaddr_storage ss;
	struct pollfd p;
	unsigned len;
	char why[512];
	int fd, rc, err = 0;
	socklen_t elen = sizeof(err);

	rc = repl_parse_addr(addr, &ss, &len, why, sizeof(why));
	if (rc < 0) {
		LOG_ERR("%s", why);
		return rc;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* non-blocking connect, so an unreachable peer costs timeout_ms, not minutes */
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	p = (struct pollfd){.fd = fd, .events = POLLOUT};
	do
		rc = poll(&p, 1, (int)opts.timeout_ms);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		rc = -ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
		rc = err ? -err : -errno;
		goto fail;
	}
	/* blocking from here on; every wait is bounded by poll() */
	if (fcntl_clear_nonblock(fd) < 0) {
		rc = -errno;
		goto fail;
	}
	return conn_new(fd, &opts, out);
fail:
	close(fd);
	return rc;
}

/* Wait until fd is ready for `events`, at most the connection's timeout. */
static int wait_fd(struct repl_conn *c, short events)
{
	struct pollfd p = {.fd = c->fd, .events = events};
	int r;

	do
		r = poll(&p, 1, (int)c->opts.timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	return 0;
}

static int tcp_wait_readable(struct repl_conn *c, int timeout_ms)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	int r;

	if (c->cut)
		return -ECONNRESET;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r > 0; /* a hang-up reads as readable: the read then says what happened */
}

static int cut_now(struct repl_conn *c)
{
	LOG_WARN("connection cut after %llu bytes (test hook)", (unsigned long long)c->sent);
	c->cut = true;
	shutdown(c->fd, SHUT_RDWR);
	return -ECONNRESET;
}

static int tcp_send_iov(struct repl_conn *c, const struct iovec *iov_in, int iovcnt)
{
	struct iovec iov[64];
	struct msghdr m = {0};
	int i, n = 0, rc;

	if (c->cut)
		return -ECONNRESET;
	for (i = 0; i < iovcnt; i++) {
		if (!iov_in[i].iov_len)
			continue;
		if (n == 64)
			return -E2BIG;
		iov[n++] = iov_in[i];
	}
	m.msg_iov = iov;
	while (n) {
		ssize_t r;
		size_t want = 0;

		m.msg_iovlen = (size_t)n;
		for (i = 0; i < n; i++)
			want += iov[i].iov_len;
		if (c->opts.cut_after_bytes) {
			uint64_t room = c->opts.cut_after_bytes - c->sent;

			if (!room)
				return cut_now(c);
			/* send only up to the cut */
			if (want > room) {
				size_t keep = (size_t)room;

				for (i = 0; i < n && keep >= iov[i].iov_len; i++)
					keep -= iov[i].iov_len;
				if (i < n) {
					iov[i].iov_len = keep;
					n = keep ? i + 1 : i;
				}
				m.msg_iovlen = (size_t)n;
				if (!n)
					return cut_now(c);
			}
		}
		r = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = wait_fd(c, POLLOUT);
			if (rc < 0)
				return rc;
			continue;
		}
		if (r < 0)
			return errno == EPIPE ? -ECONNRESET : -errno;
		c->sent += (uint64_t)r;
		/* advance past what went out */
		while (n && (size_t)r >= iov[0].iov_len) {
			r -= (ssize_t)iov[0].iov_len;
			memmove(iov, iov + 1, (size_t)(--n) * sizeof(iov[0]));
		}
		if (n && r) {
			iov[0].iov_base = (uint8_t *)iov[0].iov_base + r;
			iov[0].iov_len -= (size_t)r;
		}
		if (c->opts.cut_after_bytes && c->sent >= c->opts.cut_after_bytes)
			return cut_now(c);
	}
	return 0;
}

static int tcp_recv(struct repl_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;
	int rc;

	if (c->cut)
		return -ECONNRESET;
	while (len) {
		ssize_t r;

		rc = wait_fd(c, POLLIN);
		if (rc < 0)
			return rc;
		r = recv(c->fd, p, len, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r < 0)
			return errno == ECONNRESET || errno == EPIPE ? -ECONNRESET : -errno;
		if (r == 0)
			return -ECONNRESET; /* the peer closed, mid-message or between messages */
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static void tcp_abort(struct repl_conn *c)
{
	if (c)
		shutdown(c->fd, SHUT_RDWR);
}

static void tcp_set_timeout(struct repl_conn *c, uint32_t timeout_ms)
{
	unsigned utimeout = timeout_ms;

	if (!c || !timeout_ms)
		return;
	/*
	 * The poll waits, and so does TCP_USER_TIMEOUT: a receiver that stops
	 * reading (a replica creating its VM or restoring the initial copy) closes
	 * its window, and Linux gives up on a zero window after the user timeout.
	 */
	c->opts.timeout_ms = timeout_ms;
	setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &utimeout, sizeof(utimeout));
}

static void tcp_close(struct repl_conn *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

/* "ADDR:PORT" or "[V6]:PORT" of the other end, for the logs. */
static int tcp_peer_name(struct repl_conn *c, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];
	const void *a;
	unsigned port;

	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET) {
		a = &((struct sockaddr_in *)&ss)->sin_addr;
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	if (!inet_ntop(ss.ss_family, a, host, sizeof(host)))
		return -errno;
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
	return 0;
}

const struct repl_transport_ops repl_tcp_ops = {
	.name = "tcp",
	.listen = tcp_listen,
	.local_port = tcp_local_port,
	.accept = tcp_accept,
	.close_listener = tcp_close_listener,
	.connect = tcp_connect,
	.send_iov = tcp_send_iov,
	.recv = tcp_recv,
	.close = tcp_close,
	.abort = tcp_abort,
	.set_timeout = tcp_set_timeout,
	.register_region = NULL,
	.peer_name = tcp_peer_name,
	.wait_readable = tcp_wait_readable,
};
