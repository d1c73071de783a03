/*
 * Standalone driver for the fuzz harnesses (see fuzz.h), so that every harness
 * runs as an ordinary ctest with gcc, no libFuzzer needed:
 *
 *   NAME_smoke [-n ITERATIONS] [-s SEED] [FILE|DIR]...   run inputs
 *   NAME_smoke -w DIR                                    write the seeds as a corpus
 *
 * Files (and the regular files of a directory) run first, unchanged, and join the
 * seed pool; then ITERATIONS inputs are generated from a xorshift PRNG seeded
 * with SEED: random bytes, or a seed with a few byte-level mutations (bit flips,
 * inserts, deletes, truncation, splices, interesting 32-bit values such as
 * length headers). Same arguments, same inputs. Each input is passed in a buffer
 * of exactly its size, so sanitizers catch reads past its end. An input that
 * crashes the harness is saved as ./fuzz-crash-input for a rerun.
 */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX_INPUT (1u << 16) /* generated inputs stay below this */

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* Present when linked with a sanitizer runtime: its reports exit without a signal. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* Default for harnesses without seeds; a harness's definition overrides it. */
__attribute__((weak)) void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
}

struct blob {
	uint8_t *data;
	size_t len;
};

struct pool {
	struct blob *v;
	size_t n, cap;
};

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

static void pool_add(void *ctx, const uint8_t *data, size_t len)
{
	struct pool *p = ctx;

	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->v = realloc(p->v, p->cap * sizeof(*p->v));
		if (!p->v) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
	}
	p->v[p->n].data = xmalloc(len);
	memcpy(p->v[p->n].data, data, len);
	p->v[p->n].len = len;
	p->n++;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* The input being run, saved to CRASH_FILE when the harness dies on it. */
#define CRASH_FILE "fuzz-crash-input"
static const uint8_t *volatile cur_input;
static volatile size_t cur_len;

static void save_crash_input(void)
{
	static const char msg[] = "standalone fuzz driver: failing input saved to " CRASH_FILE
				  " (rerun: NAME_smoke -n 0 " CRASH_FILE ")\n";
	int fd;

	if (!cur_input)
		return;
	fd = open(CRASH_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, (const void *)cur_input, cur_len) == (ssize_t)cur_len &&
		    write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
			/* nothing more to do in a dying process */
		}
		close(fd);
	}
	cur_input = NULL;
}

static void on_fatal_signal(int sig)
{
	save_crash_input();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void run_one(const uint8_t *data, size_t len)
{
	uint8_t *copy = xmalloc(len);

	memcpy(copy, data, len);
	cur_len = len;
	cur_input = copy;
	LLVMFuzzerTestOneInput(copy, len);
	cur_input = NULL;
	free(copy);
}

static int read_file(const char *path, struct pool *pool)
{
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, r;
	FILE *f;

	f = fopen(path, "rb");
	if (!f)
		return -errno;
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 4096;
			buf = realloc(buf, cap);
			if (!buf) {
				fclose(f);
				return -ENOMEM;
			}
		}
		r = fread(buf + len, 1, cap - len, f);
		len += r;
		if (r == 0)
			break;
	}
	fclose(f);
	run_one(buf, len);
	pool_add(pool, buf, len);
	free(buf);
	return 0;
}

/* Run a file, or every regular file of a directory; returns how many ran or -errno. */
static int run_path(const char *path, struct pool *pool)
{
	char sub[4096];
	struct dirent *de;
	struct stat st;
	int n = 0, rc;
	DIR *d;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		rc = read_file(path, pool);
		return rc < 0 ? rc : 1;
	}
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (stat(sub, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (read_file(sub, pool) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Apply one mutation to buf[0..*len) (capacity FUZZ_MAX_INPUT). */
static void mutate(uint8_t *buf, size_t *len, const struct pool *pool)
{
	static const uint32_t interesting[] = {0,	   1,	       2,	   3,
					       4,	   0x7f,       0x80,	   0xff,
					       0x100,	   0xffff,     1u << 20,   (1u << 20) + 1,
					       0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
	size_t n = *len, pos, k, j;
	const struct blob *other;

	switch (rnd_below(9)) {
	case 0: /* flip a bit */
		if (n)
			buf[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
		break;
	case 1: /* random byte */
		if (n)
			buf[rnd_below(n)] = (uint8_t)rnd();
		break;
	case 2: /* boundary byte */
		if (n)
			buf[rnd_below(n)] = (uint8_t[]){0x00, 0x01, 0x7f, 0x80, 0xff}[rnd_below(5)];
		break;
	case 3: /* insert bytes */
		k = 1 + rnd_below(8);
		if (n + k > FUZZ_MAX_INPUT)
			break;
		pos = rnd_below(n + 1);
		memmove(buf + pos + k, buf + pos, n - pos);
		for (j = 0; j < k; j++)
			buf[pos + j] = (uint8_t)rnd();
		*len = n + k;
		break;
	case 4: /* delete a range */
		if (!n)
			break;
		pos = rnd_below(n);
		k = 1 + rnd_below(n - pos);
		memmove(buf + pos, buf + pos + k, n - pos - k);
		*len = n - k;
		break;
	case 5: /* truncate */
		*len = rnd_below(n + 1);
		break;
	case 6: /* a 32-bit big-endian interesting value, often at 0 (a length header) */
		if (n < 4)
			break;
		pos = rnd_below(2) ? 0 : rnd_below(n - 3);
		if (rnd_below(4) == 0)
			put_be32(buf + pos, (uint32_t)(n - 4 + rnd_below(3) - 1));
		else
			put_be32(buf + pos, interesting[rnd_below(sizeof(interesting) /
								  sizeof(interesting[0]))]);
		break;
	case 7: /* splice: the tail of another seed after a prefix of this one */
		if (!pool->n)
			break;
		other = &pool->v[rnd_below(pool->n)];
		pos = rnd_below(n + 1);
		k = rnd_below(other->len + 1);
		if (pos + (other->len - k) > FUZZ_MAX_INPUT)
			break;
		memcpy(buf + pos, other->data + k, other->len - k);
		*len = pos + (other->len - k);
		break;
	case 8: /* duplicate a chunk in place */
		if (!n)
			break;
		pos = rnd_below(n);
		k = 1 + rnd_below(n - pos < 64 ? n - pos : 64);
		if (n + k > FUZZ_MAX_INPUT)
			break;
		memmove(buf + pos + k, buf + pos, n - pos);
		*len = n + k;
		break;
	}
}

static int write_seeds(const char *dir, const struct pool *pool)
{
	char path[4096];
	size_t i;
	FILE *f;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		perror(dir);
		return 1;
	}
	for (i = 0; i < pool->n; i++) {
		snprintf(path, sizeof(path), "%s/seed-%03zu", dir, i);
		f = fopen(path, "wb");
		if (!f || fwrite(pool->v[i].data, 1, pool->v[i].len, f) != pool->v[i].len ||
		    fclose(f) != 0) {
			perror(path);
			return 1;
		}
	}
	printf("%zu seeds written to %s\n", pool->n, dir);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long iterations = 10000, seed = 1, i;
	const char *write_dir = NULL;
	struct pool pool = {0};
	size_t n_builtin, len, m, muts;
	uint8_t *buf;
	int files = 0, c, r;
	char *end;

	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(save_crash_input);
	signal(SIGABRT, on_fatal_signal);
	signal(SIGSEGV, on_fatal_signal);
	signal(SIGBUS, on_fatal_signal);
	signal(SIGILL, on_fatal_signal);
	signal(SIGFPE, on_fatal_signal);
	while ((c = getopt(argc, argv, "n:s:w:h")) != -1) {
		switch (c) {
		case 'n':
		case 's':
			errno = 0;
			i = strtoull(optarg, &end, 0);
			if (errno || *end || !*optarg) {
				fprintf(stderr, "%s: bad number '%s'\n", argv[0], optarg);
				return 2;
			}
			if (c == 'n')
				iterations = i;
			else
				seed = i;
			break;
		case 'w':
			write_dir = optarg;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-n ITERATIONS] [-s SEED] [FILE|DIR]... | -w DIR\n",
				argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}

	fuzz_seeds(pool_add, &pool);
	n_builtin = pool.n;
	if (write_dir)
		return write_seeds(write_dir, &pool);
	for (; optind < argc; optind++) {
		r = run_path(argv[optind], &pool);
		if (r < 0) {
			fprintf(stderr, "%s: %s: %s\n", argv[0], argv[optind], strerror(-r));
			return 1;
		}
		files += r;
	}
	for (m = 0; m < n_builtin; m++)
		run_one(pool.v[m].data, pool.v[m].len);

	rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
	buf = xmalloc(FUZZ_MAX_INPUT);
	for (i = 0; i < iterations; i++) {
		if (!pool.n || rnd_below(4) == 0) {
			/* mostly short inputs: that is where framing edge cases live */
			len = rnd_below(8) ? rnd_below(64) : rnd_below(4096);
			for (m = 0; m < len; m++)
				buf[m] = (uint8_t)rnd();
		} else {
			const struct blob *b = &pool.v[rnd_below(pool.n)];

			len = b->len < FUZZ_MAX_INPUT ? b->len : FUZZ_MAX_INPUT;
			memcpy(buf, b->data, len);
			muts = 1 + rnd_below(4);
			while (muts--)
				mutate(buf, &len, &pool);
		}
		run_one(buf, len);
	}
	free(buf);
	printf("%s: %llu generated inputs, %zu built-in seeds, %d files: no failure\n", argv[0],
	       iterations, n_builtin, files);
	for (m = 0; m < pool.n; m++)
		free(pool.v[m].data);
	free(pool.v);
	return 0;
}
