// SPDX-License-Identifier: MIT
/*
 * The kmod backend's io_uring transport (MHEAP_KMOD_IO=uring): FAULT and
 * RELEASE batches as IORING_OP_URING_CMD submissions on the device, one SQE
 * per range, linked so that after a failure the rest are cancelled, and one
 * io_uring_enter() for the whole batch (fault_kmod.c has the backend and
 * says why ioctl is the default). The ring is set up with the three
 * io_uring system calls rather than liburing, so that the library takes on
 * no link dependency, on first use, and checked by asking the module for
 * its statistics through it: a kernel that does not pass URING_CMD on to
 * the module leaves the backend on ioctl. One ring serves all threads,
 * under kmod_ring_lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/io_uring.h>
#include <linux/mheap.h>

#include "fault.h"
#include "fault_kmod_impl.h"
#include "sysmem.h"

#define RING_ENTRIES	64u

/*
 * The ring, mapped as io_uring_setup(2) describes. state: 0 not tried yet,
 * 1 usable, -1 not (no io_uring, or no URING_CMD for the module). Only used
 * with MHEAP_KMOD_IO=uring.
 */
static struct {
	int state;
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
	void *sq_map, *cq_map;
	size_t sq_len, cq_len, sqes_len;
} ring = { .fd = -1 };
mh_lock_t kmod_ring_lock = MH_LOCK_INIT;

static void ring_unmap(void)
{
	if (ring.sqes)
		kmod_meta_unmap(ring.sqes, ring.sqes_len);
	if (ring.cq_map && ring.cq_map != ring.sq_map)
		kmod_meta_unmap(ring.cq_map, ring.cq_len);
	if (ring.sq_map)
		kmod_meta_unmap(ring.sq_map, ring.sq_len);
	if (ring.fd >= 0)
		close(ring.fd);
	memset(&ring, 0, sizeof(ring));
	ring.fd = -1;
}

static void *ring_mmap(size_t len, off_t off)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       ring.fd, off);

	if (p == MAP_FAILED)
		return NULL;
	sys_metadata_note(p, len);
	return p;
}

/* Take every completion there is: res[user_data] = result; returns how many. */
static unsigned ring_reap(unsigned n, int *res)
{
	unsigned head = *ring.cq_head, count = 0;

	for (unsigned t = LOAD_ACQUIRE(ring.cq_tail); head != t; head++, count++) {
		const struct io_uring_cqe *c = &ring.cqes[head & *ring.cq_mask];

		if (c->user_data < n)
			res[c->user_data] = c->res;
	}
	STORE_RELEASE(ring.cq_head, head);
	return count;
}

/* Submit n prepared SQEs and wait for their n CQEs; res[i] by user_data. */
static int ring_run(unsigned n, int *res)
{
	unsigned submitted = 0, seen = 0;

	while (seen < n) {
		long ret = syscall(__NR_io_uring_enter, ring.fd, n - submitted, n - seen,
				   IORING_ENTER_GETEVENTS, NULL, 0);

		if (ret < 0 && errno != EINTR)
			return -errno;
		if (ret > 0)
			submitted += (unsigned)ret;
		seen += ring_reap(n, res);
	}
	return 0;
}

/* The i-th SQE of the next submission: IORING_OP_URING_CMD on the device. */
static struct io_uring_sqe *ring_sqe(unsigned i, unsigned cmd_op, const void *arg,
				     size_t len, bool link)
{
	unsigned idx = (*ring.sq_tail + i) & *ring.sq_mask;
	struct io_uring_sqe *sqe = &ring.sqes[idx];

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = kmod_dev_fd;
	sqe->cmd_op = cmd_op;
	sqe->user_data = i;
	if (link)
		sqe->flags = IOSQE_IO_LINK;
	/* The command area, sqe->cmd: 16 bytes where addr3 lies otherwise. */
	memcpy((char *)sqe + offsetof(struct io_uring_sqe, cmd), arg, len);
	ring.sq_array[idx] = idx;
	return sqe;
}

static void ring_publish(unsigned n)
{
	STORE_RELEASE(ring.sq_tail, *ring.sq_tail + n);
}

/* Set the ring up (kmod_ring_lock held); true if usable. */
bool kmod_ring_ready(void)
{
	struct io_uring_params p;
	struct mheap_stats st;
	struct mheap_uring_stats arg;
	int res = 0;

	if (ring.state)
		return ring.state > 0;
	ring.state = -1;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SUBMIT_ALL;
	ring.fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
	if (ring.fd < 0) {
		ring.fd = -1;
		return false;
	}
	int high = fcntl(ring.fd, F_DUPFD_CLOEXEC, 512);	/* as device_open() */
	if (high >= 0) {
		close(ring.fd);
		ring.fd = high;
	}
	ring.sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	ring.cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (ring.cq_len > ring.sq_len)
			ring.sq_len = ring.cq_len;
		ring.cq_len = ring.sq_len;
	}
	ring.sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	ring.sq_map = ring_mmap(ring.sq_len, IORING_OFF_SQ_RING);
	ring.cq_map = p.features & IORING_FEAT_SINGLE_MMAP ? ring.sq_map :
			ring_mmap(ring.cq_len, IORING_OFF_CQ_RING);
	ring.sqes = ring_mmap(ring.sqes_len, IORING_OFF_SQES);
	if (!ring.sq_map || !ring.cq_map || !ring.sqes) {
		ring_unmap();
		ring.state = -1;
		return false;
	}
	char *sq = ring.sq_map, *cq = ring.cq_map;
	ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
	ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	ring.sq_array = (unsigned *)(sq + p.sq_off.array);
	ring.cq_head = (unsigned *)(cq + p.cq_off.head);
	ring.cq_tail = (unsigned *)(cq + p.cq_off.tail);
	ring.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	ring.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

	/* Does the kernel pass URING_CMD on to the module? Ask for stats. */
	arg.stats = (uintptr_t)&st;
	arg.size = sizeof(st);
	arg.flags = 0;
	ring_sqe(0, MHEAP_URING_CMD_STATS, &arg, sizeof(arg), false);
	ring_publish(1);
	/* res is 0 (1.1.0 modules: the size, which st.size says as well);
	 * a 1.1 module fills only the 1.1 struct and says so in st.size. */
	st.size = 0;
	if (ring_run(1, &res) || st.size < MHEAP_STATS_SIZE_V1 || st.size > sizeof(st) ||
	    (res != 0 && res != (int)st.size)) {
		ring_unmap();
		ring.state = -1;
		return false;
	}
	ring.state = 1;
	return true;
}

/* FAULT or RELEASE n ranges through the ring (kmod_ring_lock held). */
unsigned kmod_ring_ranges(unsigned cmd_op, const struct fault_range *r, unsigned n, int *err)
{
	int res[RING_ENTRIES];
	unsigned done = 0;

	while (done < n) {
		unsigned k = n - done < RING_ENTRIES ? n - done : RING_ENTRIES;

		for (unsigned i = 0; i < k; i++) {
			struct mheap_range mr = {
				.addr = (uintptr_t)r[done + i].base,
				.len = r[done + i].len,
			};

			res[i] = -ECANCELED;
			ring_sqe(i, cmd_op, &mr, sizeof(mr), i + 1 < k);
		}
		ring_publish(k);
		int ret = ring_run(k, res);
		if (ret) {
			*err = ret;
			return done;
		}
		for (unsigned i = 0; i < k; i++) {
			if (res[i] < 0) {
				*err = res[i];
				return done + i;
			}
		}
		done += k;
	}
	return n;
}

/* In a child of fork (kmod_ring_lock held): the ring's pages are shared
 * with the parent, so drop our copy; the child sets up its own if needed. */
void kmod_ring_forget(void)
{
	if (ring.state > 0)
		ring_unmap();
	ring.state = 0;
}
