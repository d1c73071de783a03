/*
 * castor key <command>: pre-shared keys of replication links
 * (docs/security.md).
 *
 *   castor key generate FILE
 *
 * The same file goes to both ends of a pair (castor-vmm --key FILE); it is
 * created owner-only, never overwritten, never written through a symlink.
 */
#include "tools/castor/cli.h"

#include <string.h>

#include "replication/repl.h"

void cli_key_usage(FILE *f)
{
	fputs("usage: castor key <command> FILE\n"
	      "\n"
	      "commands:\n"
	      "  generate FILE  write a new random key (32 bytes as 64 hex digits) to FILE,\n"
	      "                 mode 0600; refused if FILE exists or is a symbolic link.\n"
	      "                 Copy it to the other end of the pair (scp -p, keeping 0600)\n"
	      "                 and start both castor-vmm with --key FILE.\n",
	      f);
}

int cli_key_main(int argc, char **argv)
{
	char why[256];

	if (argc < 2) {
		cli_err("key: missing command");
		cli_key_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_key_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "generate")) {
		cli_err("key: unknown command '%s'", argv[1]);
		cli_key_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (argc != 3 || argv[2][0] == '-') {
		cli_err("key generate: give one FILE (and no options)");
		return CLI_EXIT_USAGE;
	}
	if (repl_key_generate(argv[2], why, sizeof(why)) < 0) {
		cli_err("key generate: %s", why);
		return CLI_EXIT_FAIL;
	}
	printf("castor: key written to %s (mode 0600)\n", argv[2]);
	return CLI_EXIT_OK;
}
