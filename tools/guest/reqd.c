/*
 * castor-reqd: the TCP request/response service of the test guest
 * (docs/test-guest.md, design.md §8) for the Linux guest image (castor
 * mkguest), so that the same clients (tests/net/tgclient.py) check a Linux
 * guest across a failover as they check the test guest.
 *
 *   castor-reqd [--port N] [--background]
 *
 * A client sends ASCII lines "<seq>\n"; each is answered with
 * "<seq> <count>\n", count = requests answered since the start, this one
 * included, one counter across all connections. The rules are the test
 * guest's (hypervisor/guest/tcp.c):
 * - A request is 1..20 decimal digits with a value below 2^64, an optional
 *   '\r' before the '\n'. Anything else, or a line longer than LINE_MAX
 *   bytes: no more answers on that connection, the rest of its input is
 *   discarded and we close our side once the answers before it are sent.
 * - Requests are read only while the connection's answer buffer has room for
 *   one more answer, so a client that does not read sees its window close.
 * - After the client's EOF, its remaining complete lines are answered, a last
 *   line without '\n' gets no answer, and we close.
 *
 * --background: the port is open when the command returns (the server goes
 * on in a child), so a script can start the service and announce it at once
 * without a race. One thread, one poll() loop, libc only: it is linked
 * statically into the guest's initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQD_PORT  7700
#define MAX_CONNS  64
#define LINE_MAX_B 32u	 /* request bytes without a newline before we give up */
#define ANSWER_MAX 42u	 /* "<20 digits> <20 digits>\n" */
#define RX_BYTES   512u	 /* one read's worth of requests */
#define TX_BYTES   4096u /* answers not yet taken by the kernel */

struct conn {
	int fd;	      /* -1: free slot */
	bool eof;     /* the client closed its side */
	bool discard; /* a bad request: no more answers, input dropped */
	bool shut;    /* our FIN is sent (shutdown SHUT_WR) */
	uint32_t rx_len, tx_len;
	char rx[RX_BYTES];
	char tx[TX_BYTES];
};

static uint64_t answered;
static struct conn conns[MAX_CONNS];

static void usage(FILE *f)
{
	fputs("usage: castor-reqd [--port N] [--background]\n"
	      "  Answers each line \"<seq>\\n\" on TCP port N (default 7700) with\n"
	      "  \"<seq> <count>\\n\", count = requests answered since the start.\n"
	      "  --background  return once the port is open; serve in a child process\n",
	      f);
}

/* 1..20 decimal digits below 2^64 -> 0 and *out; otherwise -EINVAL. */
static int parse_seq(const char *s, uint32_t n, uint64_t *out)
{
	uint64_t v = 0;
	uint32_t i;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		uint64_t digit = (uint64_t)(s[i] - '0');

		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - digit) / 10)
			return -EINVAL;
		v = v * 10 + digit;
	}
	*out = v;
	return 0;
}

/* Answer c's complete lines while its answer buffer has room for one more. */
static void process_lines(struct conn *c)
{
	uint32_t pos = 0;

	while (pos < c->rx_len && !c->discard) {
		char *nl = memchr(c->rx + pos, '\n', c->rx_len - pos);
		uint32_t end, len;
		uint64_t seq;
		int n;

		if (!nl) {
			if (c->rx_len - pos > LINE_MAX_B)
				c->discard = true;
			break;
		}
		len = (uint32_t)(nl - (c->rx + pos));
		end = len && c->rx[pos + len - 1] == '\r' ? len - 1 : len;
		if (parse_seq(c->rx + pos, end, &seq) < 0) {
			c->discard = true;
			break;
		}
		if (TX_BYTES - c->tx_len < ANSWER_MAX)
			break;
		answered++;
		n = snprintf(c->tx + c->tx_len, TX_BYTES - c->tx_len, "%" PRIu64 " %" PRIu64 "\n",
			     seq, answered);
		c->tx_len += (uint32_t)n;
		pos += len + 1;
	}
	if (c->discard) {
		c->rx_len = 0;
		return;
	}
	memmove(c->rx, c->rx + pos, c->rx_len - pos);
	c->rx_len -= pos;
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
}

/* Read what the client sent; 0, or -errno when the connection is gone. */
static int conn_read(struct conn *c)
{
	char junk[RX_BYTES];
	ssize_t r;

	if (c->discard || c->eof)
		r = read(c->fd, junk, sizeof(junk));
	else if (c->rx_len == RX_BYTES)
		return 0; /* not polled for input then: see serve() */
	else
		r = read(c->fd, c->rx + c->rx_len, RX_BYTES - c->rx_len);
	if (r < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (r == 0) {
		c->eof = true;
		return 0;
	}
	if (!c->discard && !c->eof)
		c->rx_len += (uint32_t)r;
	return 0;
}

/* Hand buffered answers to the kernel; 0, or -errno when the connection is gone. */
static int conn_write(struct conn *c)
{
	ssize_t r = send(c->fd, c->tx, c->tx_len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (r < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	memmove(c->tx, c->tx + r, c->tx_len - (uint32_t)r);
	c->tx_len -= (uint32_t)r;
	return 0;
}

/*
 * After I/O on c: answer, then decide on our FIN. Returns false when the
 * connection is finished (both sides closed, answers sent).
 */
static bool conn_service(struct conn *c)
{
	if (!c->discard)
		process_lines(c);
	if (c->tx_len)
		return true;
	if (!c->shut && (c->discard || (c->eof && !memchr(c->rx, '\n', c->rx_len)))) {
		/* a last line without '\n' gets no answer */
		shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	return !(c->shut && c->eof);
}

static void conn_accept(int lfd)
{
	int fd = accept(lfd, NULL, NULL), one = 1, i;

	if (fd < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			fprintf(stderr, "castor-reqd: accept: %s\n", strerror(errno));
		return;
	}
	for (i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd < 0)
			break;
	if (i == MAX_CONNS) {
		fprintf(stderr, "castor-reqd: %d connections open, refusing one more\n", MAX_CONNS);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&conns[i], 0, sizeof(conns[i]));
	conns[i].fd = fd;
}

static int listen_on(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd, one = 1, rc;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* The poll() loop; returns only on a poll() failure (-errno). */
static int serve(int lfd)
{
	struct pollfd pfd[MAX_CONNS + 1];
	int map[MAX_CONNS + 1];

	for (;;) {
		int n = 0, i;

		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		map[n++] = -1;
		for (i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			short ev = 0;

			if (c->fd < 0)
				continue;
			/* read only while an answer fits: back-pressure on the client */
			if (!c->eof && (c->discard || TX_BYTES - c->tx_len >= ANSWER_MAX))
				ev |= POLLIN;
			if (c->tx_len)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
			map[n++] = i;
		}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (i = 1; i < n; i++) {
			struct conn *c = &conns[map[i]];
			int rc = 0;

			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
				rc = conn_read(c);
			if (!rc && (pfd[i].revents & POLLOUT))
				rc = conn_write(c);
			if (rc < 0 || !conn_service(c))
				conn_close(c);
			else if (c->tx_len && conn_write(c) < 0)
				conn_close(c);
		}
		if (pfd[0].revents & POLLIN)
			conn_accept(lfd);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},
		{"background", no_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool background = false;
	long port = REQD_PORT;
	char *end;
	int c, i, lfd, fd, rc;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			errno = 0;
			port = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || port < 1 || port > 65535) {
				fprintf(stderr, "castor-reqd: --port '%s': not a port (1..65535)\n",
					optarg);
				return 2;
			}
			break;
		case 'b':
			background = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "castor-reqd: option '%s' needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "castor-reqd: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "castor-reqd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	lfd = listen_on((int)port);
	if (lfd < 0) {
		fprintf(stderr, "castor-reqd: cannot listen on TCP port %ld: %s\n", port,
			strerror(-lfd));
		return 1;
	}
	if (background) {
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "castor-reqd: fork: %s\n", strerror(errno));
			return 1;
		}
		if (pid > 0) {
			fprintf(stderr, "castor-reqd: listening on TCP port %ld, pid %d\n", port,
				(int)pid);
			return 0;
		}
		setsid();
		fd = open("/dev/null", O_RDONLY);
		if (fd > 0) {
			dup2(fd, 0);
			close(fd);
		}
	} else {
		fprintf(stderr, "castor-reqd: listening on TCP port %ld, pid %d\n", port,
			(int)getpid());
	}
	rc = serve(lfd);
	fprintf(stderr, "castor-reqd: poll: %s\n", strerror(-rc));
	return 1;
}
