/*
 * The stream verifier (see stream_verify.h). Every rule here is one that
 * docs/stream-format.md states; the § numbers point there. Where the spec leaves a
 * question open, the strictest reasonable reading is taken and marked "strict:".
 */
#include "tools/castor/stream_verify_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.pb-c.h"

/* ---- CRC-32C, table-driven, eight bytes per step ------------------------------- */

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[8][256];

__attribute__((constructor)) static void crc_table_init(void)
{
	uint32_t c;
	unsigned i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^
					  crc_table[0][crc_table[k - 1][i] & 0xff];
}

uint32_t stream_verify_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t lo, hi;

	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8) {
		lo = crc ^ le32(p);
		hi = le32(p + 4);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
	}
	for (; len; p++, len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p) & 0xff];
	return ~crc;
}

/* ---- names --------------------------------------------------------------------- */

/* Whether a stream of revision ver defines the type (bits 0-30 of the field). */
static bool is_known_type(uint32_t base, uint32_t ver)
{
	switch (base) {
	case SV_REC_PAGES_ZSTD:
		return ver >= 2;
	case SV_REC_HEADER:
	case SV_REC_PAGES:
	case SV_REC_VCPU:
	case SV_REC_VCPU_MSRS:
	case SV_REC_IRQCHIP:
	case SV_REC_PIT:
	case SV_REC_CLOCK:
	case SV_REC_DEVICE:
	case SV_REC_END:
		return true;
	}
	return false;
}

const char *stream_verify_type_name(uint32_t type)
{
	switch (type & ~SV_REC_F_OPTIONAL) {
	case SV_REC_HEADER:
		return "HEADER";
	case SV_REC_PAGES:
		return "PAGES";
	case SV_REC_PAGES_ZSTD:
		return "PAGES_ZSTD";
	case SV_REC_VCPU:
		return "VCPU";
	case SV_REC_VCPU_MSRS:
		return "VCPU_MSRS";
	case SV_REC_IRQCHIP:
		return "IRQCHIP";
	case SV_REC_PIT:
		return "PIT";
	case SV_REC_CLOCK:
		return "CLOCK";
	case SV_REC_DEVICE:
		return "DEVICE";
	case SV_REC_END:
		return "END";
	}
	return "unknown";
}

const char *stream_verify_encoding_name(unsigned enc)
{
	static const char *const names[] = {"RAW", "ZERO", "XOR", "PATCH"};

	return enc < sizeof(names) / sizeof(names[0]) ? names[enc] : "unknown";
}

/* ---- the verifier ---------------------------------------------------------------- */

int sv_fail(struct verifier *v, const char *fmt, ...)
{
	struct stream_verify_result *res = v->res;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	res->offset = v->off;
	res->has_type = v->in_rec;
	res->type = v->type;
	res->state_rule = false;
	return -EBADMSG;
}

/* A rule about the record set or a state record's contents: see stream_verify_result. */
#define sv_fail_state(v, ...) (sv_fail(v, __VA_ARGS__), (v)->res->state_rule = true, -EBADMSG)

/* Text of an untrusted string for a message: printable ASCII, cut at 48 bytes. */
static const char *safe_str(const char *s, char *buf, size_t size)
{
	size_t i, n = 0;

	for (i = 0; s[i] && n + 4 < size; i++) {
		if (i == 48) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		buf[n++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	}
	buf[n] = '\0';
	return buf;
}

/* Read exactly len bytes unless the input ends; *got_out says how many came. */
static int read_exact(struct verifier *v, uint8_t *dst, size_t len, size_t *got_out)
{
	size_t got = 0;
	ssize_t r;

	*got_out = 0;
	while (got < len) {
		r = v->read_cb(v->read_ctx, dst + got, len - got);
		if (r < 0)
			return (int)r;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*got_out = got;
	return 0;
}

/*
 * Read need bytes of body and padding into v->buf, growing it only as data comes
 * in, so a length field alone never makes it big.
 */
#define BUF_STEP (64u * 1024)

static int read_body(struct verifier *v, size_t need, size_t *got_out)
{
	size_t got = 0, ncap, want;
	uint8_t *nbuf;
	ssize_t r;

	*got_out = 0;
	while (got < need) {
		if (got == v->cap) {
			ncap = v->cap ? 2 * v->cap : BUF_STEP;
			if (ncap < BUF_STEP)
				ncap = BUF_STEP;
			if (ncap > need)
				ncap = need;
			nbuf = realloc(v->buf, ncap);
			if (!nbuf)
				return -ENOMEM;
			v->buf = nbuf;
			v->cap = ncap;
		}
		want = (need < v->cap ? need : v->cap) - got;
		r = v->read_cb(v->read_ctx, v->buf + got, want);
		if (r < 0)
			return (int)r;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*got_out = got;
	return 0;
}

static uint8_t empty_body[SV_REC_ALIGN];

static uint32_t pad_len(uint32_t length)
{
	return (SV_REC_ALIGN - length % SV_REC_ALIGN) % SV_REC_ALIGN;
}

/* What the §3 grammar wants next, for messages. */
static const char *expected(const struct verifier *v, char *buf, size_t size)
{
	switch (v->phase) {
	case PH_START:
		return "HEADER";
	case PH_PAGES:
		return "PAGES or VCPU 0";
	case PH_VCPU:
		snprintf(buf, size, "VCPU %" PRIu32, v->vcpus_done);
		return buf;
	case PH_MSRS:
		snprintf(buf, size, "VCPU_MSRS of vCPU %" PRIu32, v->vcpus_done);
		return buf;
	case PH_IRQCHIP:
		return "IRQCHIP";
	case PH_PIT:
		return "PIT";
	case PH_CLOCK:
		return "CLOCK";
	case PH_DEVICES:
		return "DEVICE, PAGES or END";
	case PH_TAIL:
		return "PAGES or END";
	case PH_DONE:
		break;
	}
	return "nothing";
}

/* ---- record bodies ---------------------------------------------------------------- */

static int check_length(struct verifier *v, uint32_t want)
{
	if (v->length != want)
		return sv_fail(v, "length %" PRIu32 ", expected %" PRIu32, v->length, want);
	return 0;
}

/* §2.1; the first record of every stream. */
static int check_header(struct verifier *v)
{
	struct stream_verify_result *res = v->res;
	const uint8_t *b = v->body;
	uint64_t magic, mem, sid, parent;
	uint32_t ver, kind, ncpus, pgsz;

	/* magic and revision first: a newer revision may well have another length */
	if (v->length < 8)
		return sv_fail(v, "length %" PRIu32 ", expected %u", v->length, SV_HEADER_LEN);
	magic = le64(b);
	if (magic != SV_MAGIC)
		return sv_fail(v, "bad magic 0x%016" PRIx64 ", expected 0x%016llx (\"CSTRSTRM\")",
			       magic, SV_MAGIC);
	if (v->length >= 12) {
		ver = le32(b + 8);
		if (ver > SV_REVISION)
			return sv_fail(v, "revision %" PRIu32 " is newer than this verifier's (%u)",
				       ver, SV_REVISION);
		if (ver == 0)
			return sv_fail(v, "revision 0 does not exist");
	}
	if (v->length != SV_HEADER_LEN)
		return sv_fail(v, "length %" PRIu32 ", expected %u", v->length, SV_HEADER_LEN);
	ver = le32(b + 8);
	kind = le32(b + 12);
	ncpus = le32(b + 16);
	pgsz = le32(b + 20);
	mem = le64(b + 24);
	sid = le64(b + 32);
	parent = le64(b + 40);
	if (le64(b + 56))
		return sv_fail(v, "reserved field (offset 56) is 0x%" PRIx64 ", must be 0",
			       le64(b + 56));
	if (kind != SV_KIND_FULL && kind != SV_KIND_INCREMENTAL)
		return sv_fail(v,
			       "kind %" PRIu32 " unknown: the format knows 1 (full) and "
			       "2 (incremental)",
			       kind);
	if (ncpus < 1 || ncpus > SV_MAX_NCPUS)
		return sv_fail(v, "ncpus %" PRIu32 " out of range 1-%u", ncpus, SV_MAX_NCPUS);
	if (pgsz != SV_PAGE_SIZE)
		return sv_fail(v, "page size %" PRIu32 ", must be %u", pgsz, SV_PAGE_SIZE);
	/* strict: RAM is whole pages, so mem_bytes is a non-zero multiple of 4096 */
	if (mem == 0 || mem % SV_PAGE_SIZE)
		return sv_fail(v, "mem_bytes %" PRIu64 " is not a non-zero multiple of %u", mem,
			       SV_PAGE_SIZE);
	/* strict: 0 is "no parent" in parent_id, so no stream may be called 0 */
	if (sid == 0)
		return sv_fail(v, "stream_id is 0");
	if (kind == SV_KIND_FULL && parent != 0)
		return sv_fail(v, "full snapshot with parent_id 0x%016" PRIx64 ", must be 0",
			       parent);
	if (kind == SV_KIND_INCREMENTAL && parent == 0)
		return sv_fail(v, "incremental snapshot with parent_id 0");
	if (kind == SV_KIND_INCREMENTAL && parent == sid)
		return sv_fail(v, "incremental snapshot whose parent_id is its own stream_id");

	res->has_header = true;
	res->version = ver;
	res->kind = kind;
	res->ncpus = ncpus;
	res->mem_bytes = mem;
	res->stream_id = sid;
	res->parent_id = parent;
	res->created_ns = le64(b + 48);
	v->mem_pages = mem / SV_PAGE_SIZE;
	v->phase = PH_PAGES;
	return 0;
}

/* §2.3: the body alone; the order of vCPUs is check_order()'s. */
static int check_vcpu(struct verifier *v, uint32_t *index_out)
{
	const uint8_t *b = v->body;
	int rc;

	rc = check_length(v, SV_VCPU_LEN);
	if (rc < 0)
		return rc;
	*index_out = le32(b);
	if (*index_out >= v->res->ncpus)
		return sv_fail_state(v, "vCPU index %" PRIu32 " >= ncpus %" PRIu32, *index_out,
				     v->res->ncpus);
	if (le32(b + 4))
		return sv_fail_state(v, "reserved field (offset 4) is 0x%" PRIx32 ", must be 0",
				     le32(b + 4));
	if (le32(b + SV_VCPU_RSVD2_OFF))
		return sv_fail_state(v, "reserved field (offset %u) is 0x%" PRIx32 ", must be 0",
				     SV_VCPU_RSVD2_OFF, le32(b + SV_VCPU_RSVD2_OFF));
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* §2.4 */
static int check_msrs(struct verifier *v, uint32_t *index_out)
{
	uint32_t msr[SV_MSRS_MAX];
	const uint8_t *b = v->body, *e;
	uint32_t count, i;

	if (v->length < 8)
		return sv_fail_state(v, "length %" PRIu32 " cannot hold index and count (8 bytes)",
				     v->length);
	*index_out = le32(b);
	count = le32(b + 4);
	if (*index_out >= v->res->ncpus)
		return sv_fail_state(v, "vCPU index %" PRIu32 " >= ncpus %" PRIu32, *index_out,
				     v->res->ncpus);
	if (count > SV_MSRS_MAX)
		return sv_fail_state(v, "count %" PRIu32 " over %u", count, SV_MSRS_MAX);
	if (v->length != 8 + 16 * count)
		return sv_fail_state(v,
				     "length %" PRIu32 ", expected 8 + 16 x %" PRIu32 " = %" PRIu32,
				     v->length, count, 8 + 16 * count);
	for (i = 0; i < count; i++) {
		e = b + 8 + 16 * (size_t)i;
		msr[i] = le32(e);
		if (le32(e + 4))
			return sv_fail_state(v,
					     "MSR entry %" PRIu32 " (0x%" PRIx32
					     "): reserved field is "
					     "0x%" PRIx32 ", must be 0",
					     i, msr[i], le32(e + 4));
	}
	/* strict: KVM_SET_MSRS would take a repeated MSR, but a list of "every MSR" has none */
	qsort(msr, count, sizeof(msr[0]), cmp_u32);
	for (i = 1; i < count; i++)
		if (msr[i] == msr[i - 1])
			return sv_fail_state(v, "MSR 0x%" PRIx32 " listed twice", msr[i]);
	return 0;
}

/* §2.5 */
static int check_irqchip(struct verifier *v)
{
	uint32_t i, id;
	int rc;

	rc = check_length(v, SV_IRQCHIP_LEN);
	if (rc < 0)
		return rc;
	for (i = 0; i < 3; i++) {
		id = le32(v->body + SV_IRQCHIP_ONE * i);
		if (id != i)
			return sv_fail_state(v,
					     "chip %" PRIu32 " has chip_id %" PRIu32
					     ", expected %" PRIu32
					     " (PIC master, PIC slave, IOAPIC in this order)",
					     i, id, i);
	}
	return 0;
}

static const char *device_kind(const Castor__DeviceState *ds)
{
	switch (ds->state_case) {
	case CASTOR__DEVICE_STATE__STATE_SERIAL:
		return "serial";
	case CASTOR__DEVICE_STATE__STATE_TESTDEV:
		return "testdev";
	case CASTOR__DEVICE_STATE__STATE_VIRTIO:
		if (ds->virtio && ds->virtio->device_case == CASTOR__VIRTIO_MMIO_STATE__DEVICE_NET)
			return "virtio-net";
		if (ds->virtio && ds->virtio->device_case == CASTOR__VIRTIO_MMIO_STATE__DEVICE_BLK)
			return "virtio-blk";
		return "virtio";
	default: /* none, or a member this side does not know (§2.6: ignored) */
		return "none";
	}
}

static size_t id_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return (size_t)(h ^ (h >> 32));
}

/* The slot for id: the device holding it, or the free slot where it would go. */
static size_t *id_slot(size_t *slot, size_t cap, const struct stream_verify_device *devs,
		       const char *id)
{
	size_t i = id_hash(id) & (cap - 1);

	while (slot[i] && strcmp(devs[slot[i] - 1].id, id))
		i = (i + 1) & (cap - 1);
	return &slot[i];
}

/* Make room for one more device in the result and the id set. */
static int devices_reserve(struct verifier *v)
{
	struct stream_verify_result *res = v->res;
	struct stream_verify_device *ndev;
	size_t ncap, i, *nslot;

	if (res->n_devices == res->devices_cap) {
		ncap = res->devices_cap ? 2 * res->devices_cap : 8;
		ndev = realloc(res->devices, ncap * sizeof(*ndev));
		if (!ndev)
			return -ENOMEM;
		res->devices = ndev;
		res->devices_cap = ncap;
	}
	if (2 * (res->n_devices + 1) > v->id_cap) {
		ncap = v->id_cap ? 2 * v->id_cap : 16;
		nslot = calloc(ncap, sizeof(*nslot));
		if (!nslot)
			return -ENOMEM;
		for (i = 0; i < res->n_devices; i++)
			*id_slot(nslot, ncap, res->devices, res->devices[i].id) = i + 1;
		free(v->id_slot);
		v->id_slot = nslot;
		v->id_cap = ncap;
	}
	return 0;
}

/* §2.6 */
static int check_device(struct verifier *v, struct stream_verify_record *rec)
{
	struct stream_verify_result *res = v->res;
	Castor__DeviceState *ds;
	struct stream_verify_device *d;
	char safe[64];
	size_t *slot;
	int rc;

	ds = castor__device_state__unpack(NULL, v->length, v->body);
	if (!ds)
		return sv_fail_state(v, "body does not decode as castor.DeviceState");
	if (!ds->id || !ds->id[0]) {
		rc = sv_fail_state(v, "DeviceState.id is empty");
		goto out;
	}
	rc = devices_reserve(v);
	if (rc < 0)
		goto out;
	slot = id_slot(v->id_slot, v->id_cap, res->devices, ds->id);
	if (*slot) {
		rc = sv_fail_state(
			v, "device id \"%s\" appears twice (first at offset %" PRIu64 ")",
			safe_str(ds->id, safe, sizeof(safe)), res->devices[*slot - 1].offset);
		goto out;
	}
	d = &res->devices[res->n_devices];
	d->id = strdup(ds->id);
	if (!d->id) {
		rc = -ENOMEM;
		goto out;
	}
	d->kind = device_kind(ds);
	d->offset = v->off;
	res->n_devices++;
	*slot = res->n_devices;
	rec->device = d;
	rc = 0;
out:
	castor__device_state__free_unpacked(ds, NULL);
	return rc;
}

/*
 * §2.7, and what only the end can tell: the checksum, the counts, the coverage,
 * and §9.5's bound on the decoded size.
 */
static int check_end(struct verifier *v)
{
	struct stream_verify_result *res = v->res;
	const uint8_t *b = v->body;
	uint64_t records, pages, wire, decoded;
	uint32_t crc;
	char ranges[160];
	int rc;

	rc = check_length(v, SV_END_LEN);
	if (rc < 0)
		return rc;
	records = le64(b);
	crc = le32(b + 8);
	pages = le64(b + 16);
	if (le32(b + 12))
		return sv_fail(v, "reserved field (offset 12) is 0x%" PRIx32 ", must be 0",
			       le32(b + 12));
	if (records != res->records)
		return sv_fail(v, "records %" PRIu64 ", but %" PRIu64 " records precede END",
			       records, res->records);
	if (pages != res->pages)
		return sv_fail(v, "pages %" PRIu64 ", but the stream has %" PRIu64 " page entries",
			       pages, res->pages);
	if (crc != v->crc)
		return sv_fail(v,
			       "checksum 0x%08" PRIx32 ", but the records before END have "
			       "CRC-32C 0x%08" PRIx32,
			       crc, v->crc);
	if (res->kind == SV_KIND_FULL && v->pfns.distinct != v->mem_pages) {
		res->missing_pages = v->mem_pages - v->pfns.distinct;
		pfn_set_describe_missing(&v->pfns, v->mem_pages, ranges, sizeof(ranges));
		return sv_fail_state(v,
				     "full snapshot lacks %" PRIu64 " of %" PRIu64 " pages: pfn %s",
				     res->missing_pages, v->mem_pages, ranges);
	}
	/*
	 * strict: §9.5 bounds the revision-1 stream a receiver decodes this one
	 * into, END included (it is as long in both), by the wire size plus
	 * 2 x mem_bytes; a receiver refuses a stream past it, so a verdict of
	 * "valid" must not be given to one. Never reached by revision 1.
	 */
	wire = v->wire + SV_REC_HDR_LEN + SV_END_LEN;
	decoded = v->decoded + SV_REC_HDR_LEN + SV_END_LEN;
	if (decoded > wire + 2 * res->mem_bytes)
		return sv_fail(v,
			       "decoded, the stream would be %" PRIu64 " bytes: over the "
			       "wire size %" PRIu64 " + 2 x mem_bytes (§9.5)",
			       decoded, wire);
	return 0;
}

/* ---- order (§3) --------------------------------------------------------------------- */

static int order_error(struct verifier *v, const char *what)
{
	char buf[48];

	return sv_fail_state(v, "%s out of order: expected %s", what,
			     expected(v, buf, sizeof(buf)));
}

/* index: the vCPU of a VCPU or VCPU_MSRS record. */
static int check_order(struct verifier *v, uint32_t base, uint32_t index)
{
	char buf[48];

	switch (base) {
	case SV_REC_PAGES:
	case SV_REC_PAGES_ZSTD: /* strict: §9.3 makes it a page batch, placed as PAGES */
		if (v->phase == PH_PAGES || v->phase == PH_TAIL)
			return 0;
		if (v->phase == PH_DEVICES) {
			v->phase = PH_TAIL;
			return 0;
		}
		return sv_fail_state(v, "%s among the state records: expected %s",
				     stream_verify_type_name(base), expected(v, buf, sizeof(buf)));
	case SV_REC_VCPU:
		if (index < v->vcpus_done || (v->phase == PH_MSRS && index == v->vcpus_done) ||
		    v->phase > PH_MSRS)
			return sv_fail_state(v, "vCPU %" PRIu32 " appears twice", index);
		if (v->phase != PH_PAGES && v->phase != PH_VCPU)
			return order_error(v, "VCPU");
		if (index != v->vcpus_done)
			return sv_fail_state(v,
					     "VCPU %" PRIu32 " out of order: expected VCPU %" PRIu32
					     " (vCPUs come in index order)",
					     index, v->vcpus_done);
		v->phase = PH_MSRS;
		return 0;
	case SV_REC_VCPU_MSRS:
		if (v->phase == PH_MSRS && index == v->vcpus_done) {
			v->vcpus_done++;
			v->phase = v->vcpus_done == v->res->ncpus ? PH_IRQCHIP : PH_VCPU;
			return 0;
		}
		if (index < v->vcpus_done)
			return sv_fail_state(v, "VCPU_MSRS of vCPU %" PRIu32 " appears twice",
					     index);
		if (v->phase == PH_MSRS)
			return sv_fail_state(v, "VCPU_MSRS of vCPU %" PRIu32 " after VCPU %" PRIu32,
					     index, v->vcpus_done);
		return sv_fail_state(v,
				     "VCPU_MSRS of vCPU %" PRIu32 " without its VCPU before it: "
				     "expected %s",
				     index, expected(v, buf, sizeof(buf)));
	case SV_REC_IRQCHIP:
	case SV_REC_PIT:
	case SV_REC_CLOCK: {
		enum sv_phase want = base == SV_REC_IRQCHIP ? PH_IRQCHIP
				     : base == SV_REC_PIT   ? PH_PIT
							    : PH_CLOCK;

		if (v->phase == want) {
			v->phase++;
			return 0;
		}
		if (v->phase > want)
			return sv_fail_state(v, "%s appears twice", stream_verify_type_name(base));
		return order_error(v, stream_verify_type_name(base));
	}
	case SV_REC_DEVICE:
		if (v->phase == PH_DEVICES)
			return 0;
		if (v->phase == PH_TAIL)
			return sv_fail_state(
				v, "DEVICE after the PAGES that follow the state records");
		return order_error(v, "DEVICE");
	case SV_REC_END:
		if (v->phase == PH_DEVICES || v->phase == PH_TAIL) {
			v->phase = PH_DONE;
			return 0;
		}
		return sv_fail_state(v, "END too early: expected %s",
				     expected(v, buf, sizeof(buf)));
	}
	return 0;
}

/* ---- the loop ---------------------------------------------------------------------- */

/* Check the record just read (header in v->hdr, body and padding at v->body). */
static int check_record(struct verifier *v, struct stream_verify_record *rec)
{
	uint32_t base = v->type & ~SV_REC_F_OPTIONAL, index = 0;
	int rc;

	if (v->phase == PH_START)
		return check_header(v);
	if (!is_known_type(base, v->res->version)) {
		if (v->type & SV_REC_F_OPTIONAL)
			return 0; /* §1: skipped, but counted and checksummed */
		if (is_known_type(base, SV_REVISION))
			return sv_fail(v,
				       "record type 0x%04" PRIx32 " (%s) is revision 2's, "
				       "refused in revision %" PRIu32,
				       v->type, stream_verify_type_name(base), v->res->version);
		return sv_fail(v, "unknown mandatory record type 0x%04" PRIx32, v->type);
	}
	/* strict: the flag is for types a reader may not know; revision 1's are all mandatory */
	if (v->type & SV_REC_F_OPTIONAL)
		return sv_fail(v, "REC_F_OPTIONAL set on %s, a mandatory type",
			       stream_verify_type_name(base));
	switch (base) {
	case SV_REC_HEADER:
		return sv_fail(v, "a second HEADER");
	case SV_REC_PAGES:
		rc = sv_check_pages(v, rec);
		break;
	case SV_REC_PAGES_ZSTD:
		rc = sv_check_pages_zstd(v, rec);
		break;
	case SV_REC_VCPU:
		rc = check_vcpu(v, &index);
		break;
	case SV_REC_VCPU_MSRS:
		rc = check_msrs(v, &index);
		break;
	case SV_REC_IRQCHIP:
		rc = check_irqchip(v);
		break;
	case SV_REC_PIT:
		rc = check_length(v, SV_PIT_LEN);
		break;
	case SV_REC_CLOCK:
		rc = check_length(v, SV_CLOCK_LEN);
		break;
	case SV_REC_DEVICE:
		/* the order first: a refused record must not join res->devices */
		rc = check_order(v, base, 0);
		return rc < 0 ? rc : check_device(v, rec);
	default: /* SV_REC_END: the order first, so that a missing record is named */
		rc = check_order(v, base, 0);
		return rc < 0 ? rc : check_end(v);
	}
	return rc < 0 ? rc : check_order(v, base, index);
}

/*
 * Read and check one record at v->off. *eof_out is set, and nothing else done,
 * when the input ends exactly there.
 */
static int next_record(struct verifier *v, bool *eof_out)
{
	struct stream_verify_record rec;
	size_t got, need;
	uint32_t pad, i;
	int rc;

	*eof_out = false;
	v->in_rec = false;
	rc = read_exact(v, v->hdr, SV_REC_HDR_LEN, &got);
	if (rc < 0)
		return rc;
	if (got == 0) {
		*eof_out = true;
		return 0;
	}
	if (got < SV_REC_HDR_LEN)
		return sv_fail(v, "truncated record header: %zu of %u bytes", got, SV_REC_HDR_LEN);
	v->in_rec = true;
	v->type = le32(v->hdr);
	v->length = le32(v->hdr + 4);
	if (v->phase == PH_START && v->type != SV_REC_HEADER)
		return sv_fail(v, "the first record is not HEADER: not a Castor stream");
	if (v->length > SV_REC_MAX_LEN) /* §1: before anything is allocated */
		return sv_fail(v, "length %" PRIu32 " exceeds REC_MAX_LEN (%u)", v->length,
			       SV_REC_MAX_LEN);
	pad = pad_len(v->length);
	need = (size_t)v->length + pad;
	rc = read_body(v, need, &got);
	if (rc < 0)
		return rc;
	v->body = v->buf ? v->buf : empty_body; /* never NULL, even for length 0 */
	if (got < need)
		return sv_fail(v, "truncated: body and padding need %zu bytes, %zu present", need,
			       got);
	for (i = 0; i < pad; i++)
		if (v->body[v->length + i])
			return sv_fail(v, "padding byte %" PRIu32 " is 0x%02x, must be 0", i,
				       v->body[v->length + i]);

	memset(&rec, 0, sizeof(rec));
	rec.offset = v->off;
	rec.type = v->type;
	rec.length = v->length;
	rec.body = v->body;
	v->decoded_rec = SV_REC_HDR_LEN + need;
	rc = check_record(v, &rec);
	if (rc < 0)
		return rc;

	if (v->phase != PH_DONE) {
		v->crc = stream_verify_crc32c(v->crc, v->hdr, SV_REC_HDR_LEN);
		v->crc = stream_verify_crc32c(v->crc, v->body, need);
		v->wire += SV_REC_HDR_LEN + need;
		v->decoded += v->decoded_rec;
	}
	if (rec.type == SV_REC_PAGES_ZSTD)
		v->res->zstd_records++;
	for (i = 0; i < SV_N_ENCODINGS; i++) {
		v->res->enc_pages[i] += rec.page_enc[i];
		v->res->pages += rec.page_enc[i];
	}
	v->res->records++;
	if (v->record_cb)
		v->record_cb(v->record_ctx, &rec);
	v->off += SV_REC_HDR_LEN + need;
	return 0;
}

static void verifier_dispose(struct verifier *v)
{
	free(v->buf);
	v->buf = NULL;
	v->cap = 0;
	pfn_set_dispose(&v->pfns);
	sv_pages_dispose(v);
	free(v->id_slot);
	v->id_slot = NULL;
	v->id_cap = 0;
}

int stream_verify_read(stream_verify_read_fn read_cb, void *read_ctx,
		       stream_verify_record_fn record_cb, void *record_ctx,
		       struct stream_verify_result *res)
{
	struct verifier v = {
		.read_cb = read_cb,
		.read_ctx = read_ctx,
		.record_cb = record_cb,
		.record_ctx = record_ctx,
		.res = res,
		.phase = PH_START,
	};
	uint8_t extra;
	size_t got;
	bool eof;
	int rc;

	memset(res, 0, sizeof(*res));
	while (v.phase != PH_DONE) {
		rc = next_record(&v, &eof);
		if (rc < 0)
			goto out;
		if (eof) {
			v.in_rec = false;
			if (v.off == 0)
				rc = sv_fail(&v, "empty input: no HEADER");
			else
				rc = sv_fail(&v,
					     "the stream ends without END, after %" PRIu64
					     " records",
					     res->records);
			goto out;
		}
	}
	v.in_rec = false;
	rc = read_exact(&v, &extra, 1, &got);
	if (rc < 0)
		goto out;
	if (got) {
		rc = sv_fail(&v, "data after END");
		goto out;
	}
	res->valid = true;
	rc = 0;
out:
	if (rc < 0 && rc != -EBADMSG) {
		/* the input could not be read to a verdict */
		v.in_rec = false;
		if (rc == -ENOMEM)
			sv_fail(&v, "out of memory");
		else
			sv_fail(&v, "read error: %s", strerror(-rc));
	}
	verifier_dispose(&v);
	return rc;
}

struct mem_reader {
	const uint8_t *p;
	size_t left;
};

static ssize_t mem_read(void *ctx, uint8_t *buf, size_t len)
{
	struct mem_reader *m = ctx;
	size_t n = len < m->left ? len : m->left;

	if (n) {
		memcpy(buf, m->p, n);
		m->p += n;
		m->left -= n;
	}
	return (ssize_t)n;
}

int stream_verify_buf(const uint8_t *buf, size_t len, struct stream_verify_result *res)
{
	struct mem_reader m = {.p = buf, .left = len};

	return stream_verify_read(mem_read, &m, NULL, NULL, res);
}

void stream_verify_result_dispose(struct stream_verify_result *res)
{
	size_t i;

	for (i = 0; i < res->n_devices; i++)
		free(res->devices[i].id);
	free(res->devices);
	res->devices = NULL;
	res->n_devices = res->devices_cap = 0;
}
