/*
 * Split virtqueues, device side (virtio 1.x §2.7): take chains from the
 * available ring, return them on the used ring, and decide about interrupts
 * and notifications with or without VIRTIO_RING_F_EVENT_IDX. Everything read
 * from guest memory is checked before it is trusted (virtio.h).
 */
#define LOG_TAG "virtq"
#include "hypervisor/virtio/virtio.h"

#include <errno.h>
#include <string.h>

#include "util/util.h"

#define DESC_SIZE      16u
#define USED_ELEM_SIZE 8u

static uint64_t avail_bytes(uint16_t size)
{
	return 4u + 2u * size + 2u; /* flags, idx, ring, used_event */
}

static uint64_t used_bytes(uint16_t size)
{
	return 4u + USED_ELEM_SIZE * size + 2u; /* flags, idx, ring, avail_event */
}

static uint16_t load16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

void vq_init(struct vq *q, const struct vq_mem *mem, const char *name)
{
	memset(q, 0, sizeof(*q));
	q->mem = mem;
	q->name = name;
}

void vq_reset(struct vq *q)
{
	const struct vq_mem *mem = q->mem;
	const char *name = q->name;

	vq_init(q, mem, name);
}

static int broken(struct vq *q, const char *why, uint64_t a, uint64_t b)
{
	if (!q->broken)
		LOG_GUEST_WARN("%s: %s (0x%llx, 0x%llx); queue stopped until the driver resets the "
			       "device",
			       q->name, why, (unsigned long long)a, (unsigned long long)b);
	q->broken = true;
	return -EBADMSG;
}

int vq_validate(struct vq *q)
{
	if (!q->size || q->size > VQ_MAX_SIZE || (q->size & (q->size - 1)))
		return broken(q, "queue size is not a power of 2 up to the maximum", q->size, 0);
	if (q->desc % 16 || q->avail % 2 || q->used % 4)
		return broken(q, "misaligned ring", q->desc, q->used);
	if (!q->mem->ptr(q->mem->ctx, q->desc, (uint64_t)DESC_SIZE * q->size) ||
	    !q->mem->ptr(q->mem->ctx, q->avail, avail_bytes(q->size)) ||
	    !q->mem->ptr(q->mem->ctx, q->used, used_bytes(q->size)))
		return broken(q, "ring outside guest RAM", q->desc, q->avail);
	return 0;
}

static const uint8_t *avail_ring(struct vq *q)
{
	return q->mem->ptr(q->mem->ctx, q->avail, avail_bytes(q->size));
}

static uint16_t avail_idx(struct vq *q)
{
	const uint8_t *a = avail_ring(q);

	return a ? __atomic_load_n((const uint16_t *)(a + 2), __ATOMIC_ACQUIRE) : q->last_avail;
}

int vq_pop(struct vq *q, struct vq_elem *e)
{
	const uint8_t *a;
	uint16_t idx, i;
	unsigned steps = 0;

	if (!q->ready || q->broken)
		return q->broken ? -EBADMSG : -ENOENT;
	a = avail_ring(q);
	if (!a)
		return broken(q, "available ring outside guest RAM", q->avail, 0);
	idx = __atomic_load_n((const uint16_t *)(a + 2), __ATOMIC_ACQUIRE);
	if (idx == q->last_avail)
		return -ENOENT;
	if ((uint16_t)(idx - q->last_avail) > q->size)
		return broken(q, "available index ran ahead of the queue size", idx, q->last_avail);
	i = load16(a + 4 + 2u * (q->last_avail % q->size));
	if (i >= q->size)
		return broken(q, "chain head out of range", i, q->size);

	memset(e, 0, offsetof(struct vq_elem, out));
	e->head = i;
	for (;;) {
		const uint8_t *d;
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;

		if (++steps > q->size)
			return broken(q, "descriptor chain loops", e->head, steps);
		d = q->mem->ptr(q->mem->ctx, q->desc + (uint64_t)DESC_SIZE * i, DESC_SIZE);
		if (!d)
			return broken(q, "descriptor table outside guest RAM", q->desc, i);
		memcpy(&addr, d, 8);
		memcpy(&len, d + 8, 4);
		flags = load16(d + 12);
		next = load16(d + 14);
		if (flags & VIRTQ_DESC_F_INDIRECT)
			return broken(q, "indirect descriptor (not negotiated)", e->head, i);
		if (len && !q->mem->ptr(q->mem->ctx, addr, len))
			return broken(q, "buffer outside guest RAM", addr, len);
		if (flags & VIRTQ_DESC_F_WRITE) {
			if (e->n_in >= VQ_MAX_SEGS)
				return broken(q, "chain too long", e->head, VQ_MAX_SEGS);
			e->in[e->n_in++] = (struct vq_buf){addr, len};
			e->in_bytes += len;
		} else {
			if (e->n_in)
				return broken(q, "device-readable buffer after a writable one",
					      addr, len);
			if (e->n_out >= VQ_MAX_SEGS)
				return broken(q, "chain too long", e->head, VQ_MAX_SEGS);
			e->out[e->n_out++] = (struct vq_buf){addr, len};
			e->out_bytes += len;
		}
		if (!(flags & VIRTQ_DESC_F_NEXT))
			break;
		if (next >= q->size)
			return broken(q, "next descriptor out of range", next, q->size);
		i = next;
	}
	q->last_avail++;
	return 0;
}

void vq_unpop(struct vq *q, uint16_t n)
{
	q->last_avail -= n;
}

int vq_push(struct vq *q, const struct vq_elem *e, uint32_t written)
{
	uint32_t elem[2] = {e->head, written};
	uint16_t idx;
	int rc;

	if (!q->ready)
		return -EINVAL;
	rc = q->mem->write(q->mem->ctx,
			   q->used + 4 + (uint64_t)USED_ELEM_SIZE * (q->used_idx % q->size), elem,
			   sizeof(elem));
	if (rc < 0)
		return rc;
	/* the element must be visible before the index that publishes it */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	idx = ++q->used_idx;
	return q->mem->write(q->mem->ctx, q->used + 2, &idx, sizeof(idx));
}

bool vq_should_interrupt(struct vq *q)
{
	const uint8_t *a = avail_ring(q);
	uint16_t used_event, old, new;
	bool valid;

	if (!a)
		return false;
	/* our used index must be visible before we read what the driver asked for */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(load16(a) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	used_event = load16(a + 4 + 2u * q->size);
	old = q->signalled_used;
	new = q->used_idx;
	valid = q->signalled_valid;
	q->signalled_used = new;
	q->signalled_valid = true;
	return !valid || (uint16_t)(new - used_event - 1) < (uint16_t)(new - old);
}

int vq_publish_avail_event(struct vq *q)
{
	uint16_t v = q->last_avail;
	int rc;

	if (!q->event_idx || !q->ready)
		return 0;
	rc = q->mem->write(q->mem->ctx, q->used + 4 + (uint64_t)USED_ELEM_SIZE * q->size, &v,
			   sizeof(v));
	/* publish before re-reading the available index (the caller does) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return rc;
}

bool vq_has_avail(struct vq *q)
{
	return q->ready && !q->broken && avail_idx(q) != q->last_avail;
}

int vq_read_out(struct vq *q, const struct vq_elem *e, uint64_t off, void *dst, size_t len)
{
	uint8_t *d = dst;
	unsigned i;

	for (i = 0; i < e->n_out && len; i++) {
		const struct vq_buf *b = &e->out[i];
		const uint8_t *p;
		size_t n;

		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		n = b->len - off < len ? b->len - off : len;
		p = q->mem->ptr(q->mem->ctx, b->gpa + off, n);
		if (!p)
			return -EFAULT;
		memcpy(d, p, n);
		d += n;
		len -= n;
		off = 0;
	}
	return len ? -EMSGSIZE : 0;
}

int vq_write_in(struct vq *q, const struct vq_elem *e, uint64_t off, const void *src, size_t len)
{
	const uint8_t *s = src;
	unsigned i;
	int rc;

	for (i = 0; i < e->n_in && len; i++) {
		const struct vq_buf *b = &e->in[i];
		size_t n;

		if (off >= b->len) {
			off -= b->len;
			continue;
		}
		n = b->len - off < len ? b->len - off : len;
		rc = q->mem->write(q->mem->ctx, b->gpa + off, s, n);
		if (rc < 0)
			return rc;
		s += n;
		len -= n;
		off = 0;
	}
	return len ? -EMSGSIZE : 0;
}
