/*
 * The `castor` command line: `castor <group> <command> [options]`. main.c holds
 * the const table of groups and dispatches argv to a group's main function; each
 * group lives in its own file (vm.c, ...) with its own table of commands.
 * To add a group: write GROUP.c defining cli_GROUP_main() and cli_GROUP_usage(),
 * declare them below, add one row to the table in main.c and the file to
 * CASTOR_CLI_SOURCES in CMakeLists.txt.
 *
 * Exit status, for every group: 0 success, 1 the operation failed (connection,
 * error reply, ...), 2 usage error (unknown group, command or option, missing or
 * bad argument). Messages go to stderr as "castor: ..."; only main() exits.
 */
#ifndef CASTOR_CLI_H
#define CASTOR_CLI_H

#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAIL = 1,
	CLI_EXIT_USAGE = 2,
};

/* argv[0] is the group name, argv[1] (if any) the command; returns an enum cli_exit. */
typedef int (*cli_main_fn)(int argc, char **argv);
/* Print the group's commands and options to f. */
typedef void (*cli_usage_fn)(FILE *f);

struct cli_group {
	const char *name;
	const char *summary;
	cli_main_fn main;
	cli_usage_fn usage;
};

/* "castor: " + message + newline on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * getopt_long's complaint c ('?' or ':') about argv, the vector it parsed, as
 * "castor: WHO: ..." -- "option '--mem' needs a value", "unknown option
 * '--x'", "option '--json=1' takes no argument". The optstring must start
 * with ':' (and opterr be 0) for a missing value to be told apart.
 */
void cli_opt_error(const char *who, int c, char *const *argv);

/* ---- groups ---------------------------------------------------------------------- */

int cli_vm_main(int argc, char **argv);
void cli_vm_usage(FILE *f);

int cli_bench_main(int argc, char **argv);
void cli_bench_usage(FILE *f);
/* bench_net.c: `castor bench net` (argv[0] is "net") */
int cli_bench_net(int argc, char **argv);
/*
 * bench.c: a running test-guest VM for a benchmark (2 vCPUs or more as asked;
 * rate in pages/ms per vCPU, wss 0 = the default); NULL after an error message.
 */
struct hv_vm;
struct hv_vm *cli_bench_vm(const char *image, uint64_t mem, uint32_t ncpus, uint64_t rate,
			   uint64_t wss);
/*
 * "A,B,C" into out[] (at most cap values, each 1..hi, or `word` for word_value);
 * -EINVAL for an empty or bad list.
 */
int cli_bench_list(const char *s, uint64_t *out, unsigned *n, unsigned cap, const char *word,
		   uint64_t word_value, uint64_t hi);
/* The test guest's page writes so far, all vCPUs (its counter). */
uint64_t cli_bench_guest_pages(struct hv_vm *vm);
/* bench_seal.c: `castor bench seal` (argv[0] is "seal") */
int cli_bench_seal(int argc, char **argv);
/* bench_resync.c: `castor bench resync` (argv[0] is "resync") */
int cli_bench_resync(int argc, char **argv);
/* bench_checkpoint.c: `castor bench checkpoint` (argv[0] is "checkpoint") */
int cli_bench_checkpoint(int argc, char **argv);
/* bench_dr.c: `castor bench dr` (argv[0] is "dr") */
int cli_bench_dr(int argc, char **argv);

/* ha.c: `castor ha status|failover` (replication of one castor-vmm) */
int cli_ha_main(int argc, char **argv);
/* `castor ha protect|unprotect|failover VM` (no --socket): through castord (ha_cluster.c) */
bool cli_ha_is_cluster_call(int argc, char **argv);
int cli_ha_cluster_main(int argc, char **argv); /* argv[1] is the command */
void cli_ha_usage(FILE *f);

/* dr.c: `castor dr status|failover|test|unprotect` (disaster recovery at one castor-vmm) */
int cli_dr_main(int argc, char **argv);
void cli_dr_usage(FILE *f);
/* `castor dr protect|unprotect|status VM` (no --socket): through castord (dr_cluster.c) */
bool cli_dr_is_cluster_call(int argc, char **argv);
int cli_dr_cluster_main(int argc, char **argv); /* argv[1] is the command */
void cli_dr_cluster_usage(FILE *f);
/* A VM's DR copy in a line (castor dr status VM, castor status) */
struct Castor__VmDefinition;
void cli_dr_line(const struct Castor__VmDefinition *v, char *out, size_t len);

/* key.c: `castor key generate FILE` (pre-shared keys of replication links) */
/* castor vm define|undefine|list|show (vm_cluster.c): through castord. */
bool cli_vm_is_cluster_cmd(const char *cmd);
int cli_vm_cluster_main(int argc, char **argv); /* argv[1] is the command */
void cli_vm_cluster_usage(FILE *f);

/*
 * One request (castord_client.c): the reply, whose body answers the request's,
 * or -errno after one message "castor: WHO: ..." (no reply -- naming castord
 * when `castord` --, the server's refusal, an unexpected reply).
 */
struct Castor__Request;
struct Castor__Response;
int cli_call(const char *who, const char *socket, int timeout_ms, bool castord,
	     struct Castor__Request *req, struct Castor__Response **resp_out);

#define CLI_CASTORD_SOCKET "/run/castor/castord.sock"
/*
 * The options of a command that talks to castord (castord_client.c):
 * --castord PATH (or --socket PATH), --json, --help, and --host H where
 * `host` is not NULL. 0, 1 after --help was printed, or -EINVAL after a
 * message; optind is left after the options.
 */
int cli_castord_opts(const char *who, int argc, char **argv, const char **socket, bool *json,
		     const char **host, void (*usage)(FILE *f));
/*
 * One request to castord (castord_client.c): the reply, or -errno after a message as
 * "castor: WHO: ..." (no castord, its refusal, an unexpected reply body).
 */
int cli_castord_call(const char *who, const char *socket, struct Castor__Request *req,
		     struct Castor__Response **resp_out);
/* Does a command line (argv[2] on) name a castor-vmm's --socket (else: castord's VM)? */
bool cli_names_socket(int argc, char **argv);
/* The one VM named after the options (argv[optind]), or NULL after a message. */
const char *cli_one_vm(const char *who, int argc, char **argv);

int cli_status_main(int argc, char **argv);
void cli_status_usage(FILE *f);

int cli_node_main(int argc, char **argv);
void cli_node_usage(FILE *f);

int cli_key_main(int argc, char **argv);
void cli_key_usage(FILE *f);

/* disk.c: `castor disk sync|receive|log`, disk images between hosts without a VM */
int cli_disk_main(int argc, char **argv);
void cli_disk_usage(FILE *f);

/* stream.c: `castor stream verify|dump FILE`, the independent stream verifier */
int cli_stream_main(int argc, char **argv);
void cli_stream_usage(FILE *f);

/* migrate.c: `castor migrate --socket PATH --to HOST:PORT` (live migration; no command word) */
int cli_migrate_main(int argc, char **argv);
void cli_migrate_usage(FILE *f);

/* mkguest.c: `castor mkguest [options]` builds the Linux guest image (no command word) */
int cli_mkguest_main(int argc, char **argv);
void cli_mkguest_usage(FILE *f);

#endif
