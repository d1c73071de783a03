/*
 * castor_hv: the KVM virtual machine monitor library.
 *
 * One struct hv_vm is one KVM guest: its RAM (a memfd mapped shared and
 * registered in KVM memory slots, with a hole below 4 GiB), vCPU threads, a
 * small PIO/MMIO bus with a 16550 serial port and the Castor test device, and
 * an I/O thread for devices that work asynchronously.
 *
 * What replication and migration rely on (design.md §3) is here:
 *   - hv_vm_pause()/hv_vm_resume(): every vCPU out of KVM_RUN and parked, the
 *     I/O thread between two events; counted, so independent callers nest.
 *   - hv_dirty_start()/hv_dirty_harvest()/hv_dirty_stop(): the pages written
 *     since the last harvest, by the guest (KVM's dirty log, manual protect)
 *     and by the VMM itself.
 *   - hv_mem_write(): the one way the VMM writes guest RAM; it marks the pages
 *     dirty. Writing guest RAM any other way is a bug that corrupts replicas.
 *
 * Typical use: hv_vm_create(), hv_tg_load() (the test guest) or hv_linux_load()
 * (a Linux kernel), hv_vm_start(),
 * then pause/harvest/resume at will, hv_vm_free() at the end.
 *
 * Threads: every function may be called from any thread that is not a vCPU
 * thread, unless its comment says otherwise. Functions that read vCPU state
 * need the VM paused.
 */
#ifndef CASTOR_HV_H
#define CASTOR_HV_H

/* One header per area; this one is what users include. */
#include "hv_vm.h"
#include "hv_mem.h"
#include "hv_io.h"
#include "hv_dev.h"
#include "hv_precopy.h"
#include "hv_stream.h"
#include "hv_tg.h"
#include "hv_linux.h"

#endif
