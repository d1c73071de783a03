/*
 * What castor-vmm makes of a kernel image, without a VM: recognition
 * (boot_kernel_parse) and the plan for a guest of --mem bytes with an initrd
 * (boot_linux_plan), printed as key=value lines for test_linux_images.sh.
 *
 *   linux_inspect KERNEL [MEM_BYTES [INITRD]]
 * exit: 0 accepted, 1 refused (the reason on stderr), 2 usage
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hypervisor/boot/linux_boot.h"

static const uint8_t *map(const char *path, size_t *len)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
		perror(path);
		exit(1);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror(path);
		exit(1);
	}
	*len = (size_t)st.st_size;
	return p;
}

int main(int argc, char **argv)
{
	struct boot_kernel k;
	struct boot_plan p;
	size_t len, ilen = 0;
	const uint8_t *img;
	char why[512];

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: linux_inspect KERNEL [MEM_BYTES [INITRD]]\n");
		return 2;
	}
	img = map(argv[1], &len);
	if (boot_kernel_parse(img, len, &k, why, sizeof(why)) < 0) {
		fprintf(stderr, "refused: %s\n", why);
		return 1;
	}
	printf("kind=%s\nprotocol=0x%04x\nsegments=%u\nlo=0x%" PRIx64 "\nhi=0x%" PRIx64
	       "\nentry64=0x%" PRIx64 "\npvh_entry=0x%" PRIx64 "\ncmdline_max=%u\n",
	       boot_kernel_kind_str(k.kind), k.protocol, k.nseg, k.lo, k.hi, k.entry64, k.pvh_entry,
	       k.cmdline_max);
	if (argc < 3)
		return 0;
	if (argc == 4)
		map(argv[3], &ilen);
	if (boot_linux_plan(&k, strtoull(argv[2], NULL, 10), ilen, 64, &p, why, sizeof(why)) < 0) {
		fprintf(stderr, "plan refused: %s\n", why);
		return 1;
	}
	printf("plan_entry=%s\ninitrd_gpa=0x%" PRIx64 "\ninitrd_size=%" PRIu64 "\n",
	       p.pvh ? "pvh" : "64-bit", p.initrd_gpa, p.initrd_size);
	return 0;
}
