/*
 * castor mkguest: build the Linux guest image (docs/guests.md).
 *
 *   castor mkguest [--out DIR] [--kernel-package NAME] [--cache DIR]
 *
 * This file checks the options, so that a mistake is a usage error (exit 2)
 * before anything is fetched, and runs the builder, tools/guest/mkguest.sh,
 * which does the work: Debian's kernel and busybox-static packages fetched
 * with apt-get download (cached), vmlinuz, the vmlinux inside it, an
 * initramfs with the virtio-mmio modules and Castor's guest programs
 * (castor-reqd, castor-dirty), and a manifest. Both paths are fixed when
 * castor is built: CASTOR_MKGUEST_SCRIPT (in the source tree) and
 * CASTOR_GUEST_PROGS (the build tree's tools/guest).
 */
#include "tools/castor/cli.h"

#include <errno.h>
#include <getopt.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CASTOR_MKGUEST_SCRIPT
#error "CASTOR_MKGUEST_SCRIPT must name tools/guest/mkguest.sh (tools/castor/CMakeLists.txt)"
#endif
#ifndef CASTOR_GUEST_PROGS
#error "CASTOR_GUEST_PROGS must name the folder of castor-reqd (tools/castor/CMakeLists.txt)"
#endif

extern char **environ;

struct mkguest_opts {
	const char *out;     /* NULL: the builder's default, build/guest */
	const char *package; /* NULL: linux-image-cloud-amd64 */
	const char *cache;   /* NULL: /var/cache/castor/debs */
};

void cli_mkguest_usage(FILE *f)
{
	fputs("usage: castor mkguest [--out DIR] [--kernel-package NAME] [--cache DIR]\n"
	      "\n"
	      "Builds the Linux guest image from Debian's stock packages (docs/guests.md):\n"
	      "DIR/vmlinuz, DIR/vmlinux (the ELF inside vmlinuz), DIR/initramfs.cpio.gz\n"
	      "(busybox, virtio-mmio net and blk modules, castor-reqd, castor-dirty, /init)\n"
	      "and DIR/manifest. Packages are fetched with apt-get download, never installed.\n"
	      "\n"
	      "options:\n"
	      "  --out DIR              output folder (default build/guest, from here)\n"
	      "  --kernel-package NAME  a linux-image-* package or metapackage\n"
	      "                         (default linux-image-cloud-amd64)\n"
	      "  --cache DIR            keep downloaded .debs here\n"
	      "                         (default /var/cache/castor/debs)\n",
	      f);
}

/* A Debian package name (policy 5.6.1): [a-z0-9][a-z0-9+.-]+. */
static bool is_package_name(const char *s)
{
	size_t i, n = strlen(s);

	if (n < 2 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("+.-", s[i])))
			return false;
	return true;
}

/* A folder option: non-empty, and a folder if it exists. 0 or -EINVAL after a message. */
static int check_dir_opt(const char *opt, const char *path)
{
	struct stat st;

	if (!*path) {
		cli_err("mkguest: %s: empty path", opt);
		return -EINVAL;
	}
	if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode)) {
		cli_err("mkguest: %s '%s' exists and is not a folder", opt, path);
		return -EINVAL;
	}
	return 0;
}

/* 0, 1 after --help was printed, or -EINVAL after a message. */
static int parse_opts(int argc, char **argv, struct mkguest_opts *o)
{
	static const struct option opts[] = {
		{"out", required_argument, NULL, 'o'},
		{"kernel-package", required_argument, NULL, 'k'},
		{"cache", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct mkguest_opts){0};
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->out = optarg;
			break;
		case 'k':
			o->package = optarg;
			break;
		case 'c':
			o->cache = optarg;
			break;
		case 'h':
			cli_mkguest_usage(stdout);
			return 1;
		default:
			cli_opt_error("mkguest", c, argv);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		cli_err("mkguest: unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (o->out && check_dir_opt("--out", o->out) < 0)
		return -EINVAL;
	if (o->cache && check_dir_opt("--cache", o->cache) < 0)
		return -EINVAL;
	if (o->package && (!is_package_name(o->package) ||
			   strncmp(o->package, "linux-image-", 12) || !o->package[12])) {
		cli_err("mkguest: --kernel-package '%s': not a Debian kernel image package name "
			"(linux-image-..., e.g. linux-image-cloud-amd64)",
			o->package);
		return -EINVAL;
	}
	return 0;
}

/* Run the builder and wait for it: its exit status, or -errno after a message. */
static int run_builder(const struct mkguest_opts *o)
{
	const char *args[16];
	int n = 0, status, r;
	pid_t pid;

	args[n++] = "/bin/sh";
	args[n++] = CASTOR_MKGUEST_SCRIPT;
	args[n++] = "--progs";
	args[n++] = CASTOR_GUEST_PROGS;
	if (o->out) {
		args[n++] = "--out";
		args[n++] = o->out;
	}
	if (o->package) {
		args[n++] = "--kernel-package";
		args[n++] = o->package;
	}
	if (o->cache) {
		args[n++] = "--cache";
		args[n++] = o->cache;
	}
	args[n] = NULL;

	if (access(CASTOR_MKGUEST_SCRIPT, R_OK) < 0) {
		r = -errno;
		cli_err("mkguest: the builder %s: %s (castor was built from that source tree)",
			CASTOR_MKGUEST_SCRIPT, strerror(-r));
		return r;
	}
	r = posix_spawn(&pid, args[0], NULL, NULL, (char *const *)args, environ);
	if (r) {
		cli_err("mkguest: cannot run %s: %s", args[0], strerror(r));
		return -r;
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			r = -errno;
			cli_err("mkguest: waitpid: %s", strerror(-r));
			return r;
		}
	}
	if (WIFSIGNALED(status)) {
		cli_err("mkguest: the builder was killed by signal %d", WTERMSIG(status));
		return -EINTR;
	}
	return WEXITSTATUS(status);
}

int cli_mkguest_main(int argc, char **argv)
{
	struct mkguest_opts o;
	int rc;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	rc = run_builder(&o);
	if (rc == 0)
		return CLI_EXIT_OK;
	/* the builder printed why */
	return rc == CLI_EXIT_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
}
