/*
 * What the `castor disk` commands share (disk.c): the link options (--key,
 * --encrypt, --insecure, --timeout) and their rule that a link without a key
 * stays on loopback, opening an image with the lock that keeps two commands
 * off one image, progress lines and the final summary.
 */
#ifndef CASTOR_CLI_DISK_H
#define CASTOR_CLI_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "replication/repl.h"

struct cli_disk_link {
	const char *key_file;
	bool encrypt;
	bool insecure;
	uint32_t timeout_ms;
	struct repl_key key;
	bool have_key;
};

/* What sync and receive both take: the link's options, --json, --quiet. */
struct cli_disk_common {
	struct cli_disk_link link;
	bool json;
	bool quiet; /* no progress lines */
};

/* Their long options, for a getopt_long table (ids 0x100..0x105, and 'h'). */
/* clang-format off */
#define CLI_DISK_COMMON_OPTS                                                                       \
	{"key", required_argument, NULL, 0x100}, {"encrypt", no_argument, NULL, 0x101},           \
	{"insecure", no_argument, NULL, 0x102}, {"timeout", required_argument, NULL, 0x103},       \
	{"json", no_argument, NULL, 0x104}, {"quiet", no_argument, NULL, 0x105},                   \
	{"help", no_argument, NULL, 'h'}
/* clang-format on */
/*
 * Take getopt_long's answer c that the command's own switch did not: one of
 * the common options (0), --help (1, printed), or a complaint about argv
 * (-EINVAL after a message).
 */
int cli_disk_common_opt(const char *who, struct cli_disk_common *k, int c, const char *arg,
			char **argv);
/* After the options: -EINVAL after a message when an argument is left. */
int cli_disk_no_args(const char *who, int argc, char **argv);
/*
 * After parsing: load the key, and refuse an address that is not loopback
 * without a key unless --insecure. 0 or -EINVAL after a message.
 */
int cli_disk_link_check(const char *who, struct cli_disk_link *k, const char *what,
			const char *addr);
void cli_disk_link_dispose(struct cli_disk_link *k);
/* The options into a sync's: key, encryption, timeout. */
void cli_disk_link_apply(const struct cli_disk_link *k, struct repl_disk_sync_opts *o);

/*
 * Open an image for reading (shared lock) or writing (exclusive lock), its
 * absolute path into abs (PATH_MAX) and its size. -errno after a message.
 */
int cli_disk_open(const char *who, const char *path, bool write, int *fd_out, char *abs,
		  uint64_t *size_out);

/* A progress callback printing a line to stderr at most once a second. */
struct cli_disk_progress {
	const char *who;
	bool source;
	uint64_t last_ns;
};
void cli_disk_progress(void *arg, const struct repl_disk_sync_stats *st);

/* The summary of a sync, on stdout: lines, or one JSON object. */
void cli_disk_summary(const char *who, const char *image, const char *peer, bool source,
		      const struct repl_disk_sync_stats *st, int rc, bool json);

int cli_disk_sync(int argc, char **argv);
int cli_disk_receive(int argc, char **argv);
int cli_disk_log(int argc, char **argv);

#endif
