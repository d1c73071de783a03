/* Pieces the primary and the secondary share (private to replication/). */
#ifndef CASTOR_REPL_ENGINE_H
#define CASTOR_REPL_ENGINE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>

#include "replication/repl.h"

/* A window of recent samples for p50/p99 (pause times, ack round trips). */
#define REPL_WINDOW 1024u
struct repl_window {
	uint64_t v[REPL_WINDOW];
	uint64_t n; /* samples ever added */
};
void repl_window_add(struct repl_window *w, uint64_t x);
uint64_t repl_window_pct(const struct repl_window *w, double pct);

/* CRC-32C of all of the VM's RAM (verify mode). */
uint32_t repl_ram_digest(const struct hv_vm *vm);

/* Format one event-log line and hand it to the log callback (if any). */
void repl_log_event(repl_log_fn cb, void *arg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The legal state changes of either end; -EINVAL (logged) for any other. */
int repl_state_change(const char *vm, enum repl_state *state, enum repl_state to, const char *why);

/*
 * Schedule the calling thread: nice value `nice` (0: leave it), and SCHED_FIFO
 * at priority `rt` (0: REPL_DEFAULT_RT, -1: stay SCHED_OTHER). The replication
 * threads compete with the guest's vCPUs for cores. A failure is logged, not
 * fatal (no CAP_SYS_NICE: the thread runs as it is).
 */
void repl_thread_sched(const char *vm_name, int nice, int rt);
/* The two values repl_thread_sched() takes, checked: 0, or -EINVAL with one sentence in why. */
int repl_sched_check(int nice, int rt, char *why, size_t why_len);

#endif
