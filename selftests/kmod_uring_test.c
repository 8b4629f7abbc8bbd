// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/mheap's io_uring commands complete, whichever way io_uring issues
 * them, as a kselftest.
 *
 * io_uring issues a command inline from io_uring_enter(), or punts it to an
 * io-wq worker: always with IOSQE_ASYNC, and for a command linked behind
 * one that was punted; IOSQE_IO_DRAIN defers it until everything before it
 * has completed. Every command must complete on every one of these paths
 * with its own result (0 or -errno), must not cancel the commands linked
 * after it, and must leave no request behind: once the ring and the device
 * are closed, the module's reference count is what it was, so that the
 * module can be unloaded (tools/vm-init.sh checks rmmod after the suite).
 * A STATS that returned its byte count as cqe->res did none of that on 6.1:
 * inline it cancelled the commands linked after it, and from io-wq it never
 * completed at all, leaking the request and its file reference.
 *
 * Without the module every test reports SKIP.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/mheap.h>

#include "kselftest_harness.h"
#include "mheap_test.h"

#define DEV_PATH	"/dev/" MHEAP_DEVICE_NAME
#define NO_DEVICE	DEV_PATH " not present: module not loaded"
#define NPAGES		4

/* See kmod_test.c: SKIP() from a FIXTURE_SETUP(), skipping the body too. */
#define SKIP_SETUP(fmt, ...) \
	SKIP(longjmp(_metadata->env, 1), fmt, ##__VA_ARGS__)

/* The module's reference count from sysfs, or -1 when it cannot be read. */
static long module_refcnt(void)
{
	return (long)read_number_file("/sys/module/mheap/refcnt");
}

/* Poll until the reference count is want again; the last value read. */
static long refcnt_settles_at(long want)
{
	const struct timespec tick = { .tv_nsec = 10 * 1000 * 1000 };
	long n = module_refcnt();

	for (int waited = 0; n != want && waited < 5000; waited += 10) {
		nanosleep(&tick, NULL);
		n = module_refcnt();
	}
	return n;
}

static void prep_cmd(struct io_uring_sqe *sqe, int fd, uint32_t op,
		     const void *arg, size_t len, uint64_t data, uint8_t flags)
{
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	sqe->cmd_op = op;
	memcpy((char *)sqe + offsetof(struct io_uring_sqe, cmd), arg, len);
	sqe->user_data = data;
	sqe->flags = flags;
}

/*
 * Submit what is queued and collect n completions, results by user_data
 * (res[] starts out as 1, which no command may answer). Waits at most a few
 * seconds for each: a command that never completes must fail the test, not
 * hang it. Returns how many completions came.
 */
static unsigned int uring_collect(struct io_uring *ring, unsigned int n,
				  int *res)
{
	struct __kernel_timespec ts = { .tv_sec = 5 };
	struct io_uring_cqe *cqe;
	unsigned int got = 0;

	for (unsigned int i = 0; i < n; i++)
		res[i] = 1;
	if (io_uring_submit(ring) < 0)
		return 0;
	while (got < n && !io_uring_wait_cqe_timeout(ring, &cqe, &ts)) {
		if (cqe->user_data < n)
			res[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	return got;
}

FIXTURE(ring) {
	long refcnt;		/* the module's, before this test opened anything */
	int fd;
	size_t page;
	char *mem;
	struct io_uring ring;
	bool ring_up;
};

FIXTURE_SETUP(ring)
{
	struct io_uring_probe *probe;

	self->fd = -1;
	self->mem = MAP_FAILED;
	self->ring_up = false;
	self->page = (size_t)sysconf(_SC_PAGESIZE);
	if (access(DEV_PATH, F_OK))
		SKIP_SETUP(NO_DEVICE);
	self->refcnt = module_refcnt();
	if (io_uring_queue_init(16, &self->ring, 0))
		SKIP_SETUP("no io_uring: %s", strerror(errno));
	self->ring_up = true;
	probe = io_uring_get_probe_ring(&self->ring);
	if (!probe || !io_uring_opcode_supported(probe, IORING_OP_URING_CMD)) {
		io_uring_free_probe(probe);
		SKIP_SETUP("io_uring has no IORING_OP_URING_CMD");
	}
	io_uring_free_probe(probe);
	self->fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", DEV_PATH, strerror(errno));
	self->mem = mmap(NULL, NPAGES * self->page, PROT_READ | PROT_WRITE,
			 MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, self->mem) TH_LOG("mmap: %s", strerror(errno));
	memset(self->mem, 'P', NPAGES * self->page);
}

FIXTURE_TEARDOWN(ring)
{
	if (self->ring_up)
		io_uring_queue_exit(&self->ring);
	if (self->mem != MAP_FAILED)
		munmap(self->mem, NPAGES * self->page);
	if (self->fd >= 0)
		close(self->fd);
}

/*
 * Three commands, FAULT of page 0, STATS, FAULT of page 1, with these SQE
 * flags each: the ways io_uring may issue them.
 */
FIXTURE_VARIANT(ring) {
	uint8_t flags[3];
};

/* Inline, linked: nothing after STATS may be cancelled. */
FIXTURE_VARIANT_ADD(ring, inline_linked) {
	.flags = { IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

/* Each one punted to io-wq. */
FIXTURE_VARIANT_ADD(ring, async) {
	.flags = { IOSQE_ASYNC, IOSQE_ASYNC, IOSQE_ASYNC },
};

/* Each one deferred until those before it completed. */
FIXTURE_VARIANT_ADD(ring, drain) {
	.flags = { IOSQE_IO_DRAIN, IOSQE_IO_DRAIN, IOSQE_IO_DRAIN },
};

/* Linked behind a punted command: the rest run in the io-wq worker too. */
FIXTURE_VARIANT_ADD(ring, linked_behind_async) {
	.flags = { IOSQE_ASYNC | IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

/* Drained and linked at once. */
FIXTURE_VARIANT_ADD(ring, drain_linked) {
	.flags = { IOSQE_IO_DRAIN | IOSQE_IO_LINK, IOSQE_IO_LINK, 0 },
};

TEST_F(ring, every_command_completes_once_with_its_result)
{
	struct mheap_range r0 = { (uintptr_t)self->mem, self->page };
	struct mheap_range r1 = { (uintptr_t)self->mem + self->page, self->page };
	struct mheap_stats st, after;
	struct mheap_uring_stats sarg = {
		.stats = (uintptr_t)&st, .size = sizeof(st),
	};
	unsigned int got;
	int res[3];

	memset(&st, 0xff, sizeof(st));
	prep_cmd(io_uring_get_sqe(&self->ring), self->fd, MHEAP_URING_CMD_FAULT,
		 &r0, sizeof(r0), 0, variant->flags[0]);
	prep_cmd(io_uring_get_sqe(&self->ring), self->fd, MHEAP_URING_CMD_STATS,
		 &sarg, sizeof(sarg), 1, variant->flags[1]);
	prep_cmd(io_uring_get_sqe(&self->ring), self->fd, MHEAP_URING_CMD_FAULT,
		 &r1, sizeof(r1), 2, variant->flags[2]);
	got = uring_collect(&self->ring, 3, res);
	EXPECT_EQ(3, got) TH_LOG("only %u of 3 commands completed", got);
	EXPECT_EQ(0, res[0]);
	EXPECT_EQ(0, res[1]) TH_LOG("STATS completed with %d", res[1]);
	EXPECT_EQ(0, res[2]) TH_LOG("the FAULT after STATS: %d%s", res[2],
				    res[2] == -ECANCELED ? " (cancelled)" : "");
	/* STATS says how much it filled in through the struct itself. */
	EXPECT_EQ(sizeof(st), st.size);
	EXPECT_EQ(0, st.reserved);
	EXPECT_LE(1, st.self.commands);

	/* Both FAULTs took effect. */
	after.size = sizeof(after);
	after.flags = 0;
	after.reserved = 0;
	ASSERT_EQ(0, ioctl(self->fd, MHEAP_IOC_STATS, &after));
	EXPECT_EQ(2 * self->page, after.self.quarantined_bytes);
	EXPECT_EQ(1, after.self.quarantined_ranges);
	EXPECT_EQ('P', self->mem[2 * self->page]);

	/* Nothing left behind: every request dropped its file reference. */
	io_uring_queue_exit(&self->ring);
	self->ring_up = false;
	munmap(self->mem, NPAGES * self->page);
	self->mem = MAP_FAILED;
	close(self->fd);
	self->fd = -1;
	if (self->refcnt >= 0)
		EXPECT_EQ(self->refcnt, refcnt_settles_at(self->refcnt))
			TH_LOG("a request still holds /dev/mheap open");
}

TEST_HARNESS_MAIN
