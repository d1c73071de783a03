/*
 * tgcheck_snap [--nics N] [--disk IMAGE,FIRST,COUNT,SEED] SNAPSHOT [INCREMENTAL...]:
 * restore a snapshot chain of the test guest into a VM that never runs, check
 * its RAM against the guest's own rule (hv_tg_check_ram) and, with --disk, the
 * disk workload's area of IMAGE (first sector, blocks, seed as the guest was
 * given them) against the pass and block its RAM says it reached
 * (hv_tg_check_disk); --nics: the VM had N NICs (they never send); print one
 * JSON line:
 *   {"ok": true|false, "why": "...", "counter": [..], "out_seq": [..]}
 * Exit 0 when the RAM verifies, 1 when it does not, 2 on a usage or restore
 * error. Used by tests that can only reach a VM through its process
 * (test_replication.py: the twin after a failover).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hypervisor/hv.h"

#define MAX_FILES 16

/* A NIC's backend for a VM that never runs: nothing is ever sent. */
static int drop_tx(void *be, const struct iovec *iov, int iovcnt, size_t len)
{
	(void)be;
	(void)iov;
	(void)iovcnt;
	(void)len;
	return 0;
}

static const struct hv_net_backend_ops drop_ops = {.tx = drop_tx};

struct devs {
	const char *disk; /* "" : none */
	unsigned nics;
};

/*
 * The snapshot's devices in castor-vmm's order (disks, then NICs): the disk
 * as the VM had it (writable; the VM never runs, so never writes), NICs that
 * drop what they would send.
 */
static int add_devices(void *arg, struct hv_vm *vm)
{
	const struct devs *d = arg;
	struct hv_blk_config bc = {.path = d->disk};
	struct hv_blk *b;
	struct hv_net *net;
	unsigned i;
	int rc = 0;

	if (d->disk[0])
		rc = hv_blk_add(vm, &bc, &b);
	for (i = 0; !rc && i < d->nics; i++) {
		struct hv_net_config nc = {.ops = &drop_ops,
					   .mac = {0x52, 0x54, 0, 0x12, 0x34, (uint8_t)(0x56 + i)}};

		rc = hv_net_add(vm, &nc, &net);
	}
	return rc;
}

int main(int argc, char **argv)
{
	const uint8_t *maps[MAX_FILES];
	size_t lens[MAX_FILES];
	struct hv_vm_config cfg = {.name = "check", .serial_fd = -1};
	struct hv_tg_check chk;
	struct hv_vm *vm = NULL;
	char why[256] = "", disk[512] = "";
	unsigned long long first = 0, count = 0, seed = 0;
	int i, n, rc;
	uint32_t c;

	struct devs devs = {.disk = disk};

	while (argc > 2 && !strcmp(argv[1], "--nics")) {
		if (sscanf(argv[2], "%u", &devs.nics) != 1 || devs.nics > 4) {
			fprintf(stderr, "tgcheck_snap: --nics N (0-4)\n");
			return 2;
		}
		argv += 2;
		argc -= 2;
	}
	if (argc > 2 && !strcmp(argv[1], "--disk")) {
		char *comma;

		if (sscanf(argv[2], "%511[^,],%llu,%llu,%llu", disk, &first, &count, &seed) != 4) {
			fprintf(stderr, "tgcheck_snap: --disk IMAGE,FIRST,COUNT,SEED\n");
			return 2;
		}
		comma = strchr(disk, ',');
		if (comma)
			*comma = 0;
		argv += 2;
		argc -= 2;
	}
	n = argc - 1;
	if (n < 1 || n > MAX_FILES) {
		fprintf(stderr,
			"usage: tgcheck_snap [--nics N] [--disk IMAGE,FIRST,COUNT,SEED] SNAPSHOT "
			"[INCREMENTAL...]\n");
		return 2;
	}
	for (i = 0; i < n; i++) {
		struct stat st;
		int fd = open(argv[i + 1], O_RDONLY);

		if (fd < 0 || fstat(fd, &st) < 0 || !st.st_size) {
			fprintf(stderr, "tgcheck_snap: %s: cannot read it\n", argv[i + 1]);
			return 2;
		}
		maps[i] = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		lens[i] = (size_t)st.st_size;
		close(fd);
		if (maps[i] == MAP_FAILED) {
			fprintf(stderr, "tgcheck_snap: %s: %s\n", argv[i + 1], strerror(errno));
			return 2;
		}
	}
	rc = hv_snapshot_restore(&cfg, maps, lens, (unsigned)n, 0,
				 disk[0] || devs.nics ? add_devices : NULL, &devs, &vm, why,
				 sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "tgcheck_snap: restore: %s\n", why);
		return 2;
	}
	rc = hv_tg_check_ram(hv_ram_base(vm), hv_vm_mem_bytes(vm), &chk);
	if (!rc && disk[0]) {
		struct hv_tg_disk_check dc;
		struct hv_tg_io io;
		struct stat st;
		const uint8_t *img;
		int fd = open(disk, O_RDONLY);

		if (fd < 0 || fstat(fd, &st) < 0 || hv_tg_io(vm, &io) < 0) {
			fprintf(stderr, "tgcheck_snap: %s: cannot read it\n", disk);
			return 2;
		}
		img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		if (img == MAP_FAILED) {
			fprintf(stderr, "tgcheck_snap: %s: %s\n", disk, strerror(errno));
			return 2;
		}
		rc = hv_tg_check_disk(img, (uint64_t)st.st_size, first, count, seed,
				      io.blk_generation, io.blk_next, &dc);
		if (rc) {
			printf("{\"ok\": false, \"why\": \"disk at pass %" PRIu64 ", block %" PRIu64
			       ": %s\"}\n",
			       io.blk_generation, io.blk_next, dc.why);
			return 1;
		}
	}
	printf("{\"ok\": %s, \"why\": \"%s\", \"counter\": [", rc ? "false" : "true",
	       rc ? chk.why : "");
	for (c = 0; c < hv_vm_ncpus(vm); c++) {
		struct hv_tg_vcpu t = {0};

		hv_tg_vcpu(vm, c, &t);
		printf("%s%" PRIu64, c ? ", " : "", t.counter);
	}
	printf("], \"out_seq\": [");
	for (c = 0; c < hv_vm_ncpus(vm); c++) {
		struct hv_tg_vcpu t = {0};

		hv_tg_vcpu(vm, c, &t);
		printf("%s%" PRIu64, c ? ", " : "", t.out_seq);
	}
	printf("]}\n");
	hv_vm_free(vm);
	return rc ? 1 : 0;
}
