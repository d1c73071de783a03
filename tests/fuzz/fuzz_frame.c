/*
 * Fuzz the control-protocol reader: pb_frame_check() on any byte string, and
 * pb_frame_decode() of Request and Response bodies. Rules checked: check's
 * verdict and frame length agree with the header and the size limit; whatever
 * decodes re-encodes, and re-encoding a decoded message is stable.
 */
#include "tests/fuzz/fuzz.h"
#include "proto/pb.h"

#include <string.h>

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void decode_reencode(const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len)
{
	ProtobufCMessage *m1 = NULL, *m2 = NULL;
	uint8_t *f1 = NULL, *f2 = NULL;
	size_t l1 = 0, l2 = 0;
	int rc;

	if (pb_frame_decode(desc, body, len, &m1) < 0)
		goto out;
	rc = pb_frame_pack(m1, &f1, &l1);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(l1 - PB_FRAME_HDR_LEN <= len); /* decoding never invents bytes */
	rc = pb_frame_decode(desc, f1 + PB_FRAME_HDR_LEN, l1 - PB_FRAME_HDR_LEN, &m2);
	FUZZ_CHECK(rc == 0);
	rc = pb_frame_pack(m2, &f2, &l2);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(l1 == l2 && !memcmp(f1, f2, l1));
out:
	if (m1)
		protobuf_c_message_free_unpacked(m1, NULL);
	if (m2)
		protobuf_c_message_free_unpacked(m2, NULL);
	free(f1);
	free(f2);
}

static void decode_both(const uint8_t *body, size_t len)
{
	decode_reencode(&castor__request__descriptor, body, len);
	decode_reencode(&castor__response__descriptor, body, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t flen = 1;

	switch (pb_frame_check(data, size, &flen)) {
	case PB_FRAME_READY:
		FUZZ_CHECK(size >= PB_FRAME_HDR_LEN);
		FUZZ_CHECK(flen == PB_FRAME_HDR_LEN + be32(data) && flen <= size);
		FUZZ_CHECK(flen - PB_FRAME_HDR_LEN <= PB_FRAME_MAX);
		decode_both(data + PB_FRAME_HDR_LEN, flen - PB_FRAME_HDR_LEN);
		break;
	case PB_FRAME_NEED_MORE:
		if (size < PB_FRAME_HDR_LEN)
			FUZZ_CHECK(flen == 0);
		else
			FUZZ_CHECK(flen == PB_FRAME_HDR_LEN + be32(data) && flen > size &&
				   be32(data) <= PB_FRAME_MAX);
		break;
	case PB_FRAME_TOO_BIG:
		FUZZ_CHECK(size >= PB_FRAME_HDR_LEN && be32(data) > PB_FRAME_MAX && flen == 0);
		break;
	default:
		FUZZ_CHECK(!"unknown pb_frame_status");
	}
	/* most inputs are no frame at all: feed them to the decoder as bodies too */
	if (size <= PB_FRAME_MAX)
		decode_both(data, size);
	return 0;
}

/* Well-formed frames of every message, for the smoke driver to mutate. */
void fuzz_seeds(fuzz_seed_fn add, void *ctx)
{
	Castor__Request req = CASTOR__REQUEST__INIT;
	Castor__StatusRequest status = CASTOR__STATUS_REQUEST__INIT;
	Castor__PauseRequest pause = CASTOR__PAUSE_REQUEST__INIT;
	Castor__DirtyStatsRequest dreq = CASTOR__DIRTY_STATS_REQUEST__INIT;
	Castor__Response resp = CASTOR__RESPONSE__INIT;
	Castor__VmStatus st = CASTOR__VM_STATUS__INIT;
	Castor__VcpuStatus v0 = CASTOR__VCPU_STATUS__INIT, v1 = CASTOR__VCPU_STATUS__INIT;
	Castor__VcpuStatus *vs[2] = {&v0, &v1};
	Castor__DirtyStats ds = CASTOR__DIRTY_STATS__INIT;
	const ProtobufCMessage *msgs[6];
	uint8_t *buf;
	size_t len, i;

	req.id = 12345;
	req.body_case = CASTOR__REQUEST__BODY_STATUS;
	req.status = &status;
	msgs[0] = &req.base;

	st.name = "vm0";
	st.vcpus = 2;
	st.mem_bytes = 1ull << 30;
	st.run_state = "running";
	st.guest_counter = 123456;
	st.exits = 4567;
	st.uptime_ns = 12300000000ull;
	st.pauses = 3;
	st.outputs = 789;
	st.n_vcpu = 2;
	st.vcpu = vs;
	v0.counter = 61728;
	v0.out_seq = 394;
	v0.exits = 2300;
	v0.state = "running";
	v1.index = 1;
	v1.io_exits = 17;
	v1.mmio_exits = 3;
	v1.state = "parked";
	resp.id = 12345;
	resp.body_case = CASTOR__RESPONSE__BODY_STATUS;
	resp.status = &st;
	msgs[1] = &resp.base;

	for (i = 0; i < 2; i++) {
		if (pb_frame_pack(msgs[i], &buf, &len) == 0) {
			add(ctx, buf, len);
			free(buf);
		}
	}

	req.body_case = CASTOR__REQUEST__BODY_PAUSE;
	req.pause = &pause;
	if (pb_frame_pack(&req.base, &buf, &len) == 0) {
		add(ctx, buf, len);
		free(buf);
	}
	dreq.harvest = 1;
	req.body_case = CASTOR__REQUEST__BODY_DIRTY_STATS;
	req.dirty_stats = &dreq;
	if (pb_frame_pack(&req.base, &buf, &len) == 0) {
		add(ctx, buf, len);
		free(buf);
	}
	ds.tracking = 1;
	ds.harvests = 9;
	ds.last_dirty_pages = 345;
	ds.last_harvest_ns = 1234567;
	ds.vmm_dirty_pages = 3;
	ds.ram_pages = 262144;
	resp.body_case = CASTOR__RESPONSE__BODY_DIRTY_STATS;
	resp.dirty_stats = &ds;
	if (pb_frame_pack(&resp.base, &buf, &len) == 0) {
		add(ctx, buf, len);
		free(buf);
	}
	resp.body_case = CASTOR__RESPONSE__BODY__NOT_SET;
	resp.error = -16;
	resp.message = "vm is busy";
	if (pb_frame_pack(&resp.base, &buf, &len) == 0) {
		add(ctx, buf, len);
		free(buf);
	}
	add(ctx, (const uint8_t *)"\0\0\0\0", 4); /* the empty message */
}
