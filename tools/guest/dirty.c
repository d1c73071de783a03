/*
 * castor-dirty: a memory dirtier for the Linux guest image (castor mkguest),
 * the Linux counterpart of the test guest's page dirtier: it gives
 * replication and migration a known write load inside a Linux guest.
 *
 *   castor-dirty [--wss SIZE] [--rate N|max] [--seconds S]
 *
 * It maps SIZE bytes of anonymous memory (the working set; K, M, G suffixes,
 * default 64M), touches every page once, then writes pages round-robin at N
 * pages per second (K, M suffixes allowed; or as fast as it can with `max`, the default): each
 * write stores the number of page writes so far, this one included, and the page's index at the
 * start of the page, so every write changes the page. Once a second it prints one progress line:
 *
 *   castor-dirty: 3 s: 4096 pages/s, 12288 writes, pass 0, wss 16384 pages
 *
 * With --seconds S it stops after S seconds (exit 0); without it, it runs
 * until killed. libc only: it is linked statically into the initramfs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_WSS (64ull << 20)
#define MAX_BATCH   256u /* pages written between two looks at the clock */
#define NS_PER_S    UINT64_C(1000000000)

struct dirty_opts {
	uint64_t wss;	  /* bytes */
	uint64_t rate;	  /* pages per second; 0 = max */
	uint64_t seconds; /* 0 = forever */
};

static void usage(FILE *f)
{
	fputs("usage: castor-dirty [--wss SIZE] [--rate N|max] [--seconds S]\n"
	      "  --wss SIZE    working set, bytes with an optional K, M or G suffix\n"
	      "                (default 64M)\n"
	      "  --rate N|max  pages written per second (default max: as fast as it can)\n"
	      "  --seconds S   stop after S seconds (default: run until killed)\n",
	      f);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/*
 * A decimal number, with an optional K/M/G suffix (x1024) where `suffix`
 * -> 0, or -EINVAL.
 */
static int parse_num(const char *s, bool suffix, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end && !end[1] && suffix) {
		switch (*end) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		default:
			return -EINVAL;
		}
	} else if (*end) {
		return -EINVAL;
	}
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* 0, 1 after --help was printed, or 2 (the exit status) after a message. */
static int parse_opts(int argc, char **argv, struct dirty_opts *o)
{
	static const struct option opts[] = {
		{"wss", required_argument, NULL, 'w'},
		{"rate", required_argument, NULL, 'r'},
		{"seconds", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct dirty_opts){.wss = DEFAULT_WSS};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'w':
			if (parse_num(optarg, true, &o->wss) < 0 || o->wss == 0) {
				fprintf(stderr, "castor-dirty: --wss '%s': not a size (e.g. 64M)\n",
					optarg);
				return 2;
			}
			break;
		case 'r':
			if (!strcmp(optarg, "max")) {
				o->rate = 0;
			} else if (parse_num(optarg, true, &o->rate) < 0 || o->rate == 0) {
				fprintf(stderr,
					"castor-dirty: --rate '%s': give pages per second (> 0) "
					"or max\n",
					optarg);
				return 2;
			}
			break;
		case 's':
			if (parse_num(optarg, false, &o->seconds) < 0 || o->seconds == 0) {
				fprintf(stderr, "castor-dirty: --seconds '%s': not a number > 0\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			fprintf(stderr, "castor-dirty: option '%s' needs a value\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "castor-dirty: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "castor-dirty: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct dirty_opts o;
	uint64_t page, npages, writes = 0, next = 0, t0, last_print, last_writes = 0;
	long psz = sysconf(_SC_PAGESIZE);
	char rate[32];
	uint8_t *mem;
	int rc;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc == 1 ? 0 : rc;
	npages = (o.wss + (uint64_t)psz - 1) / (uint64_t)psz;
	if (npages > SIZE_MAX / (uint64_t)psz) {
		fprintf(stderr, "castor-dirty: --wss too large\n");
		return 2;
	}
	mem = mmap(NULL, npages * (size_t)psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED) {
		fprintf(stderr, "castor-dirty: cannot map %" PRIu64 " bytes: %s\n",
			npages * (uint64_t)psz, strerror(errno));
		return 1;
	}
	for (page = 0; page < npages; page++)
		memset(mem + page * (uint64_t)psz, 0, 16); /* fault every page in now */
	if (o.rate)
		snprintf(rate, sizeof(rate), "%" PRIu64 " pages/s", o.rate);
	printf("castor-dirty: wss %" PRIu64 " pages of %ld bytes, rate %s\n", npages, psz,
	       o.rate ? rate : "max");
	fflush(stdout);

	t0 = last_print = now_ns();
	for (;;) {
		uint64_t t = now_ns(), due, n, i;

		if (t - last_print >= NS_PER_S) {
			printf("castor-dirty: %" PRIu64 " s: %" PRIu64 " pages/s, %" PRIu64
			       " writes, pass %" PRIu64 ", wss %" PRIu64 " pages\n",
			       (t - t0) / NS_PER_S,
			       (writes - last_writes) * NS_PER_S / (t - last_print), writes,
			       writes / npages, npages);
			fflush(stdout);
			last_print = t;
			last_writes = writes;
		}
		if (o.seconds && t - t0 >= o.seconds * NS_PER_S)
			break;
		if (o.rate) {
			/* the writes due by now, at most a batch at a time */
			due = (uint64_t)((unsigned __int128)(t - t0) * o.rate / NS_PER_S);
			n = due > writes ? due - writes : 0;
			if (n > MAX_BATCH)
				n = MAX_BATCH;
			if (!n) {
				struct timespec ts = {.tv_nsec = 1000000};

				nanosleep(&ts, NULL);
				continue;
			}
		} else {
			n = MAX_BATCH;
		}
		for (i = 0; i < n; i++) {
			volatile uint64_t *p = (volatile uint64_t *)(mem + next * (uint64_t)psz);

			p[0] = ++writes;
			p[1] = next;
			next = next + 1 == npages ? 0 : next + 1;
		}
	}
	printf("castor-dirty: done: %" PRIu64 " writes in %" PRIu64 " s\n", writes, o.seconds);
	return 0;
}
